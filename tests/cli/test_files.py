"""The files named on the command line (edgecfg/cli/files.py): ``-`` is standard
input or output, the format comes from the suffix, and every failure is one
line naming the file."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from edgecfg.cli.files import (
    config_format,
    dump_config,
    load_config,
    load_schema,
    read_bytes,
    write_bytes,
)
from edgecfg.core.tree import Value
from edgecfg.errors import CommandError, UsageError
from edgecfg.wire.documents import ConfigFormat
from tests.paths import SCHEMA


def test_a_missing_file_a_directory_and_an_unwritable_path_are_one_line_each(
    tmp_path: Path,
) -> None:
    missing = str(tmp_path / "nope.json")
    with pytest.raises(CommandError, match=r"^.*nope\.json: no such file$"):
        read_bytes(missing)
    with pytest.raises(CommandError, match=r": is a directory, expected a file$"):
        read_bytes(str(tmp_path))
    with pytest.raises(CommandError, match=r"^.*out\.cbor: cannot write: "):
        write_bytes(str(tmp_path / "no-such-dir" / "out.cbor"), b"\x00")


def test_dash_is_standard_input_and_output(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"a": 1}')))
    assert load_config("-") == {"a": 1}
    write_bytes("-", b"\xa1\x61a\x01")
    assert capsysbinary.readouterr().out == b"\xa1\x61a\x01"


@pytest.mark.parametrize(
    ("name", "given", "fmt"),
    [("c.json", None, "json"), ("c.cbor", None, "cbor"), ("c.toml", None, "toml"),
     ("c.yaml", None, "yaml"), ("c.diag", None, "diag"), ("c.txt", "yaml", "yaml")],
)  # fmt: skip
def test_the_format_is_the_given_one_else_the_suffix(
    name: str, given: str | None, fmt: str
) -> None:
    assert config_format(name, given) == fmt


def test_an_unknown_format_is_refused_naming_the_choices() -> None:
    with pytest.raises(UsageError, match=r"c\.x: unknown format 'xml'; use json, cbor, diag"):
        config_format("c.x", "xml")


@pytest.mark.parametrize("fmt", ["json", "cbor", "diag"])  # what the CLI writes
def test_a_config_written_in_a_format_reads_back(tmp_path: Path, fmt: ConfigFormat) -> None:
    value: Value = {"net": {"uplink": {"interval_s": 900, "host": "gw"}}, "on": True}
    name = str(tmp_path / f"c.{fmt}")
    dump_config(value, name, fmt)
    assert load_config(name) == value


def test_a_bad_config_names_the_file_once(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(CommandError) as raised:
        load_config(str(bad))
    assert str(raised.value).startswith(f"{bad}")
    assert str(raised.value).count(str(bad)) == 1


def test_the_fixture_schema_loads_and_a_bad_one_names_its_file(tmp_path: Path) -> None:
    assert load_schema(str(SCHEMA)).name == "edgecfg-device"
    bad = tmp_path / "schema.json"
    bad.write_text('{"name": "x", "version": 1, "keys": {"a": {"type": "nope", "id": 1}}}')
    with pytest.raises(CommandError, match=r"schema\.json"):
        load_schema(str(bad))
