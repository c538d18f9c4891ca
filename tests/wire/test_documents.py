"""Document formats: JSON, TOML, YAML, CBOR and diagnostic notation (edgecfg.wire.documents)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecfg import DecodeError, DecodeLimits, encode
from edgecfg.core.schema import Schema
from edgecfg.core.tree import Value, values_equal
from edgecfg.errors import PeerError, SchemaError, UsageError
from edgecfg.wire.documents import (
    CONFIG_FORMATS,
    DocumentError,
    diagnostic,
    guess_format,
    parse_text_document,
    read_config,
    read_schema,
    write_config,
)
from tests.strategies import model_values

CONFIG: Value = {
    "net": {"uplink": {"interval_s": 300, "host": "gw.example"}},
    "log": {"level": "info", "ratio": 0.5, "neg": -0.0},
    "tags": ["a", 1, None, True, 1.0],
    "unicode": "ü水😀",
}


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("cfg.json", "json"),
        ("schema.toml", "toml"),
        ("schema.yaml", "yaml"),
        ("schema.YML", "yaml"),
        ("dump.cbor", "cbor"),
        ("dump.diag", "diag"),
        ("dump.edn", "diag"),
        ("dir.d/noext", "json"),
        ("file.txt", "json"),
    ],
)
def test_guess_format_follows_the_suffix(name: str, fmt: str) -> None:
    assert guess_format(name) == fmt


def test_guess_format_returns_the_given_default_for_unknown_suffixes() -> None:
    assert guess_format("x.bin", default="cbor") == "cbor"


def test_config_formats() -> None:
    assert CONFIG_FORMATS == ("json", "cbor", "diag")


# ---------------------------------------------------------------- parse errors


@pytest.mark.parametrize(
    ("fmt", "text", "where"),
    [
        ("json", b'{"a": 1,\n "b": }', "line 2 column 7"),
        ("json", b"[1, 2", "line 1 column 6"),
        ("json", b"", "line 1 column 1"),
        ("toml", b"a = 1\nb = \n", "line 2, column 5"),
        ("toml", b"[t]\nx = 1\nx = 2\n", "line 3"),
        ("yaml", b"a: 1\nb: [1, 2\n", "line 2, column 4"),
        ("yaml", b"a: 1\n  b: 2\n", "line 2"),
    ],
)
def test_parse_errors_become_document_errors_with_line_info(
    fmt: Any, text: bytes, where: str
) -> None:
    with pytest.raises(DocumentError) as caught:
        parse_text_document(text, fmt, source="cfg.x")
    message = str(caught.value)
    assert message.startswith(f"cfg.x: invalid {fmt.upper()}")
    assert where in message
    assert "\n" not in message
    assert isinstance(caught.value, PeerError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("fmt", ["json", "toml", "yaml"])
def test_non_utf8_text_is_a_document_error_naming_the_byte(fmt: Any) -> None:
    with pytest.raises(DocumentError, match=r"cfg: not UTF-8 text \(byte 2\)"):
        parse_text_document(b"ab\xff", fmt, source="cfg")


@pytest.mark.parametrize(
    ("fmt", "text", "expected"),
    [
        ("json", b'{"a": [1, 2.5, null, true]}', {"a": [1, 2.5, None, True]}),
        ("toml", b"a = 1\n[b]\nc = 'x'\n", {"a": 1, "b": {"c": "x"}}),
        ("yaml", b"a: 1\nb:\n  c: x\n  d: [1, 2]\n", {"a": 1, "b": {"c": "x", "d": [1, 2]}}),
    ],
)
def test_parse_text_document_returns_plain_values(fmt: Any, text: bytes, expected: object) -> None:
    assert parse_text_document(text, fmt) == expected


# ---------------------------------------------------------------- read_config


def test_read_config_reads_json() -> None:
    text = json.dumps(CONFIG).encode()
    assert values_equal(read_config(text, "json"), CONFIG)


def test_read_config_reads_cbor_strictly() -> None:
    assert values_equal(read_config(encode(CONFIG), "cbor"), CONFIG)
    with pytest.raises(DecodeError, match="trailing bytes"):
        read_config(encode(CONFIG) + b"\x00", "cbor")


def test_read_config_applies_decode_limits_to_cbor_and_diag() -> None:
    limits = DecodeLimits(max_depth=1)
    with pytest.raises(DecodeError, match="nesting deeper than 1"):
        read_config(b"\x81\x81\x00", "cbor", limits=limits)
    with pytest.raises(DecodeError, match="nesting deeper than 1"):
        read_config(b"[[0]]", "diag", limits=limits)


def test_read_config_reads_diagnostic_notation() -> None:
    text = b'{"a": 1.5, "b": h\'0102\', "c": [null, true, -0.0, NaN, Infinity], "d": "x"}'
    value = read_config(text, "diag")
    assert values_equal(
        value, {"a": 1.5, "b": b"\x01\x02", "c": [None, True, -0.0, math.nan, math.inf], "d": "x"}
    )


@pytest.mark.parametrize("text", [b"[1, 2", b"{", b"h'zz'", b"", b"\xff"])
def test_read_config_rejects_malformed_diagnostic_notation(text: bytes) -> None:
    with pytest.raises(DocumentError, match=r"cfg\.diag: invalid CBOR diagnostic notation"):
        read_config(text, "diag", source="cfg.diag")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"undefined", "undefined is not a configuration value"),
        (b"1(2)", "tag 1 is not a configuration value"),
        (b"[_ 1]", "indefinite-length item"),
        (b"{1: 2}", "map key is not a text string"),
        (b"simple(16)", "simple value 16"),
    ],
)
def test_read_config_rejects_diagnostic_notation_outside_the_model(
    text: bytes, reason: str
) -> None:
    with pytest.raises(DecodeError, match=reason):
        read_config(text, "diag")


@pytest.mark.parametrize(
    ("fmt", "text", "message"),
    [
        ("json", b'{"a": 18446744073709551616}', "cfg: integer 18446744073709551616 outside"),
        ("yaml", b"a: 2024-01-01\n", "cfg: date is not a configuration value at a"),
        ("yaml", b"1: 2\n", "cfg: map key 1 is not text at the root"),
        ("yaml", b"a: !!set {x}\n", "cfg: set is not a configuration value at a"),
        ("toml", b"a = 2024-01-01\n", "cfg: date is not a configuration value at a"),
        ("toml", b"[t]\nwhen = 07:32:00\n", "cfg: time is not a configuration value at t.when"),
    ],
)
def test_read_config_rejects_text_documents_outside_the_model(
    fmt: Any, text: bytes, message: str
) -> None:
    with pytest.raises(DocumentError) as caught:
        read_config(text, fmt, source="cfg")
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("fmt", ["json", "toml", "yaml"])
def test_read_config_reports_parse_errors_of_text_formats(fmt: Any) -> None:
    with pytest.raises(DocumentError, match="line"):
        read_config(b"{[\n", fmt)


def test_read_config_reads_toml_and_yaml_configs() -> None:
    assert read_config(b"[net]\ninterval_s = 60\n", "toml") == {"net": {"interval_s": 60}}
    assert read_config(b"net:\n  interval_s: 60\n", "yaml") == {"net": {"interval_s": 60}}


# ---------------------------------------------------------------- write_config


@pytest.mark.parametrize("fmt", ["json", "cbor", "diag"])
def test_write_config_round_trips_through_read_config(fmt: Any) -> None:
    assert values_equal(read_config(write_config(CONFIG, fmt), fmt), CONFIG)


def test_write_config_writes_canonical_cbor() -> None:
    assert write_config(CONFIG, "cbor") == encode(CONFIG)


def test_write_config_writes_readable_json_and_diag_text() -> None:
    text = write_config({"a": "水", "b": b"\x01"}, "diag").decode()
    assert "h'01'" in text and "水" in text and text.endswith("\n")
    json_text = write_config({"a": "水"}, "json").decode()
    assert json_text == '{\n  "a": "水"\n}\n'


@given(model_values)
def test_write_config_as_diag_round_trips_any_model_value(value: Value) -> None:
    assert values_equal(read_config(write_config(value, "diag"), "diag"), value)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_write_config_as_json_round_trips_any_json_representable_value(value: Value) -> None:
    assert values_equal(read_config(write_config(value, "json"), "json"), value)


@pytest.mark.parametrize(
    ("value", "where", "what"),
    [
        (b"\x00", "<root>", "bytes"),
        ({"a": {"b": b"x"}}, "a.b", "bytes"),
        ({"a": [1, b"x"]}, "a[1]", "bytes"),
        ({"a": [[math.nan]]}, "a[0][0]", "nan"),
        ({"a": math.nan}, "a", "nan"),
        ({"a": math.inf}, "a", "inf"),
        ({"a": -math.inf}, "a", "-inf"),
        (math.inf, "<root>", "inf"),
    ],
)
def test_write_config_refuses_json_it_cannot_represent_naming_the_path(
    value: Value, where: str, what: str
) -> None:
    with pytest.raises(UsageError) as caught:
        write_config(value, "json")
    message = str(caught.value)
    assert f" at {where} " in message
    assert message.startswith(what)
    assert "use cbor or diag" in message


def test_write_config_refuses_values_outside_the_model_for_cbor_and_diag() -> None:
    with pytest.raises(UsageError):
        write_config({"a": (1,)}, "cbor")  # type: ignore[dict-item]
    with pytest.raises(UsageError):
        write_config({"a": (1,)}, "diag")  # type: ignore[dict-item]


# ---------------------------------------------------------------- diagnostic


def test_diagnostic_shows_arbitrary_cbor_even_outside_the_model() -> None:
    assert diagnostic(bytes.fromhex("d74401020304")) == "23(h'01020304')"
    assert diagnostic(bytes.fromhex("f0")) == "simple(16)"
    assert diagnostic(bytes.fromhex("f7")) == "undefined"
    assert diagnostic(encode({"a": [1, b"\x02"]})) == "{\"a\": [1, h'02']}"


@pytest.mark.parametrize("hex_", ["", "ff", "a1", "18", "5f"])
def test_diagnostic_of_malformed_bytes_is_a_document_error(hex_: str) -> None:
    with pytest.raises(DocumentError, match="not CBOR"):
        diagnostic(bytes.fromhex(hex_))


# ---------------------------------------------------------------- read_schema

SCHEMA_JSON = b"""{
  "name": "sensor", "version": 2,
  "keys": {
    "net.uplink.interval_s": {"id": 12, "type": "int", "default": 300, "min": 10,
                              "max": 86400, "unit": "s"},
    "log.level": {"id": 20, "type": "str", "enum": ["debug", "info"], "default": "info"}
  },
  "retired": {"old.path": 7}
}"""

SCHEMA_TOML = b"""
name = "sensor"
version = 2

[keys."net.uplink.interval_s"]
id = 12
type = "int"
default = 300
min = 10
max = 86400
unit = "s"

[keys."log.level"]
id = 20
type = "str"
enum = ["debug", "info"]
default = "info"

[retired]
"old.path" = 7
"""

SCHEMA_YAML = b"""
name: sensor
version: 2
keys:
  net.uplink.interval_s: {id: 12, type: int, default: 300, min: 10, max: 86400, unit: s}
  log.level:
    id: 20
    type: str
    enum: [debug, info]
    default: info
retired:
  old.path: 7
"""


@pytest.mark.parametrize(
    ("fmt", "text"), [("json", SCHEMA_JSON), ("toml", SCHEMA_TOML), ("yaml", SCHEMA_YAML)]
)
def test_read_schema_reads_the_same_schema_from_json_toml_and_yaml(fmt: Any, text: bytes) -> None:
    schema = read_schema(text, fmt)
    assert isinstance(schema, Schema)
    assert (schema.name, schema.version, len(schema)) == ("sensor", 2, 2)
    assert schema.retired == {("old", "path"): 7}
    interval = schema.spec(("net", "uplink", "interval_s"))
    assert interval is not None
    assert (interval.id, interval.type, interval.default) == (12, "int", 300)
    assert (interval.min, interval.max, interval.unit) == (10, 86400, "s")
    assert schema.defaults() == {"net": {"uplink": {"interval_s": 300}}, "log": {"level": "info"}}


@pytest.mark.parametrize(
    ("fmt", "text"), [("json", b"[1, 2]"), ("yaml", b"- a\n"), ("yaml", b"just text\n")]
)
def test_read_schema_requires_a_map_at_the_top_level(fmt: Any, text: bytes) -> None:
    with pytest.raises(
        DocumentError, match=r"s\.x: a schema document must be a map at the top level"
    ):
        read_schema(text, fmt, source="s.x")


def test_read_schema_reports_parse_errors_and_schema_errors() -> None:
    with pytest.raises(DocumentError, match="invalid TOML"):
        read_schema(b"name = \n", "toml")
    with pytest.raises(SchemaError, match="'type' must be one of"):
        read_schema(b'{"name": "s", "version": 1, "keys": {"a": {"id": 1, "type": "i"}}}', "json")
