"""SenML (RFC 8428) as devices send telemetry: edgecfg/wire/senml.py.

The vectors are RFC 8428's own examples: the SenML-JSON packs of §5.1 (turned
into SenML-CBOR with the labels of §6, Table 6, since devices send CBOR) with
the records they resolve to (§4.6), and the CBOR bytes of §6.  §5.1.2's
SenSML example is a stream (an array left open), not a pack: it is left out.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.errors import PeerError
from edgecfg.wire.senml import (
    MAX_NAME,
    MAX_RECORDS,
    MAX_STRING,
    Record,
    SenmlError,
    decode_senml,
    decode_senml_json,
    encode_senml,
    encode_senml_json,
)

# RFC 8428 §6, Table 6: SenML labels and their CBOR labels
CBOR_LABELS = {
    "bver": -1, "bn": -2, "bt": -3, "bu": -4, "bv": -5, "bs": -6,
    "n": 0, "u": 1, "v": 2, "vs": 3, "vb": 4, "s": 5, "t": 6, "ut": 7, "vd": 8,
}  # fmt: skip


def cbor_of_json(text: str) -> bytes:
    """The SenML-CBOR pack of a SenML-JSON one (RFC 8428 §6): integer labels,
    and a data value as a byte string, not base64url text."""
    pack: list[dict[int, Any]] = []
    for record in json.loads(text):
        item: dict[int, Any] = {}
        for label, value in record.items():
            padded = f"{value}{'=' * (-len(str(value)) % 4)}"
            item[CBOR_LABELS[label]] = base64.urlsafe_b64decode(padded) if label == "vd" else value
        pack.append(item)
    return cbor2.dumps(pack)


# ---------------------------------------------------------------- RFC 8428 §5.1

DEV = "urn:dev:ow:10e2073a01080063"
DEV6 = "urn:dev:ow:10e2073a0108006:"  # one digit short in the RFC's example too: kept as printed
BT_5_1_2 = 1.276020076001e09
BT_5_1_3 = 1.320067464e09
BT_5_1_6 = 1.320078429e09

# §5.1.1: a single datapoint, "now" (no time: 0, relative to now, §4.5.3)
SINGLE_DATAPOINT = """[
  {"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}
]"""

# §5.1.2: multiple datapoints, "now"
MULTIPLE_DATAPOINTS = """[
  {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
  {"n":"current","u":"A","v":1.2}
]"""

# §5.1.2: current at 1276020076.001 and each second for the previous 5 seconds
MULTIPLE_DATAPOINTS_AND_TIMES = """[
  {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
   "bu":"A","bver":5,
   "n":"voltage","u":"V","v":120.1},
  {"n":"current","t":-5,"v":1.2},
  {"n":"current","t":-4,"v":1.3},
  {"n":"current","t":-3,"v":1.4},
  {"n":"current","t":-2,"v":1.5},
  {"n":"current","t":-1,"v":1.6},
  {"n":"current","v":1.7}
]"""

# §5.1.3: humidity with position and battery from a mobile device
MULTIPLE_MEASUREMENTS = """[
  {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
   "bu":"%RH","v":20},
  {"u":"lon","v":24.30621},
  {"u":"lat","v":60.07965},
  {"t":60,"v":20.3},
  {"u":"lon","t":60,"v":24.30622},
  {"u":"lat","t":60,"v":60.07965},
  {"t":120,"v":20.7},
  {"u":"lon","t":120,"v":24.30623},
  {"u":"lat","t":120,"v":60.07966},
  {"u":"%EL","t":150,"v":98},
  {"t":180,"v":21.2},
  {"u":"lon","t":180,"v":24.30628},
  {"u":"lat","t":180,"v":60.07967}
]"""

# §5.1.4: the same, resolved
RESOLVED_DATA = """[
  {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067464e+09,"v":20},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067464e+09,"v":24.30621},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067464e+09,"v":60.07965},
  {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067524e+09,"v":20.3},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067524e+09,"v":24.30622},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067524e+09,"v":60.07965},
  {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067584e+09,"v":20.7},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067584e+09,"v":24.30623},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067584e+09,"v":60.07966},
  {"n":"urn:dev:ow:10e2073a01080063","u":"%EL","t":1.320067614e+09,"v":98},
  {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067644e+09,"v":21.2},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067644e+09,"v":24.30628},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067644e+09,"v":60.07967}
]"""

# §5.1.5: multiple data types
MULTIPLE_DATA_TYPES = """[
  {"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
  {"n":"label","vs":"Machine Room"},
  {"n":"open","vb":false},
  {"n":"nfc-reader","vd":"aGkgCg"}
]"""

# §5.1.6: a collection of resources; the last record keeps the first's base
# time and the third's base name
COLLECTION_OF_RESOURCES = """[
  {"bn":"2001:db8::2/","bt":1.320078429e+09,
   "n":"temperature","u":"Cel","v":25.2},
  {"n":"humidity","u":"%RH","v":30},
  {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
  {"n":"humidity","u":"%RH","v":67}
]"""

# §5.1.7: setting an actuator; the first record sets only the base name
SETTING_AN_ACTUATOR = """[
  {"bn":"urn:dev:ow:10e2073a01080063:"},
  {"n":"temp","u":"Cel","v":23.1},
  {"n":"heat","u":"/","v":1},
  {"n":"fan","u":"/","v":0}
]"""

# §5.1.7: two lights turned on at the same (base) time
LIGHTS_ON = """[
  {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":1},
  {"n":"2001:db8::4","v":1}
]"""

# §5.1.7: two lights dimmed now and switched off 100 ms later
LIGHTS_OFF = """[
  {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":0.5},
  {"n":"2001:db8::4","v":0.5},
  {"n":"2001:db8::3","t":0.1,"v":0},
  {"n":"2001:db8::4","t":0.1,"v":0}
]"""

MEASUREMENTS_RESOLVED = [
    Record(DEV, 20.0, "%RH", BT_5_1_3),
    Record(DEV, 24.30621, "lon", BT_5_1_3),
    Record(DEV, 60.07965, "lat", BT_5_1_3),
    Record(DEV, 20.3, "%RH", BT_5_1_3 + 60),
    Record(DEV, 24.30622, "lon", BT_5_1_3 + 60),
    Record(DEV, 60.07965, "lat", BT_5_1_3 + 60),
    Record(DEV, 20.7, "%RH", BT_5_1_3 + 120),
    Record(DEV, 24.30623, "lon", BT_5_1_3 + 120),
    Record(DEV, 60.07966, "lat", BT_5_1_3 + 120),
    Record(DEV, 98.0, "%EL", BT_5_1_3 + 150),
    Record(DEV, 21.2, "%RH", BT_5_1_3 + 180),
    Record(DEV, 24.30628, "lon", BT_5_1_3 + 180),
    Record(DEV, 60.07967, "lat", BT_5_1_3 + 180),
]

VOLTAGE_AND_CURRENTS = [
    Record(DEV6 + "voltage", 120.1, "V", BT_5_1_2),
    Record(DEV6 + "current", 1.2, "A", BT_5_1_2 - 5),
    Record(DEV6 + "current", 1.3, "A", BT_5_1_2 - 4),
    Record(DEV6 + "current", 1.4, "A", BT_5_1_2 - 3),
    Record(DEV6 + "current", 1.5, "A", BT_5_1_2 - 2),
    Record(DEV6 + "current", 1.6, "A", BT_5_1_2 - 1),
    Record(DEV6 + "current", 1.7, "A", BT_5_1_2),
]

RFC8428_EXAMPLES = [
    pytest.param(SINGLE_DATAPOINT, [Record(DEV, 23.1, "Cel", 0.0)], id="5.1.1-single"),
    pytest.param(
        MULTIPLE_DATAPOINTS,
        [Record(DEV + ":voltage", 120.1, "V", 0.0), Record(DEV + ":current", 1.2, "A", 0.0)],
        id="5.1.2-multiple",
    ),
    pytest.param(MULTIPLE_DATAPOINTS_AND_TIMES, VOLTAGE_AND_CURRENTS, id="5.1.2-times"),
    pytest.param(MULTIPLE_MEASUREMENTS, MEASUREMENTS_RESOLVED, id="5.1.3-measurements"),
    pytest.param(RESOLVED_DATA, MEASUREMENTS_RESOLVED, id="5.1.4-resolved"),
    pytest.param(
        MULTIPLE_DATA_TYPES,
        [
            Record(DEV + ":temp", 23.1, "Cel", 0.0),
            Record(DEV + ":label", "Machine Room", None, 0.0),
            Record(DEV + ":open", False, None, 0.0),
            Record(DEV + ":nfc-reader", b"hi \n", None, 0.0),
        ],
        id="5.1.5-data-types",
    ),
    pytest.param(
        COLLECTION_OF_RESOURCES,
        [
            Record("2001:db8::2/temperature", 25.2, "Cel", BT_5_1_6),
            Record("2001:db8::2/humidity", 30.0, "%RH", BT_5_1_6),
            Record("2001:db8::1/temperature", 12.3, "Cel", BT_5_1_6),
            Record("2001:db8::1/humidity", 67.0, "%RH", BT_5_1_6),
        ],
        id="5.1.6-collection",
    ),
    pytest.param(
        SETTING_AN_ACTUATOR,
        [
            Record(DEV + ":temp", 23.1, "Cel", 0.0),
            Record(DEV + ":heat", 1.0, "/", 0.0),
            Record(DEV + ":fan", 0.0, "/", 0.0),
        ],
        id="5.1.7-actuator",
    ),
    pytest.param(
        LIGHTS_ON,
        [Record("2001:db8::3", 1.0, "/", BT_5_1_6), Record("2001:db8::4", 1.0, "/", BT_5_1_6)],
        id="5.1.7-lights-on",
    ),
    pytest.param(
        LIGHTS_OFF,
        [
            Record("2001:db8::3", 0.5, "/", BT_5_1_6),
            Record("2001:db8::4", 0.5, "/", BT_5_1_6),
            Record("2001:db8::3", 0.0, "/", BT_5_1_6 + 0.1),
            Record("2001:db8::4", 0.0, "/", BT_5_1_6 + 0.1),
        ],
        id="5.1.7-lights-off",
    ),
]

# RFC 8428 §6: the CBOR of §5.1.2's pack with times, byte for byte (note the
# half-precision 1.5, f93e00, and the explicit time 0 of the last record).
RFC8428_SECTION_6 = bytes.fromhex(
    "87a721781b75726e3a6465763a6f773a3130653230373361303130383030363a22fb41d303a15b00106223"
    "614120050067766f6c7461676501615602fb405e066666666666a3006763757272656e74062402fb3ff333"
    "3333333333a3006763757272656e74062302fb3ff4cccccccccccda3006763757272656e74062202fb3ff6"
    "666666666666a3006763757272656e74062102f93e00a3006763757272656e74062002fb3ff99999999999"
    "9aa3006763757272656e74060002fb3ffb333333333333"
)


@pytest.mark.parametrize(("text", "records"), RFC8428_EXAMPLES)
def test_rfc8428_example_resolves_to_its_records(text: str, records: list[Record]) -> None:
    assert decode_senml(cbor_of_json(text)) == records


def test_rfc8428_section_6_cbor_decodes_to_the_records_of_section_5_1_2() -> None:
    assert cbor2.loads(RFC8428_SECTION_6) == cbor2.loads(
        cbor_of_json(MULTIPLE_DATAPOINTS_AND_TIMES.replace('{"n":"current","v":1.7}',
                                                           '{"n":"current","t":0,"v":1.7}'))
    )  # fmt: skip
    assert decode_senml(RFC8428_SECTION_6) == VOLTAGE_AND_CURRENTS


def test_resolving_the_measurements_gives_the_rfc_s_resolved_pack() -> None:
    # RFC 8428 §5.1.4 is §5.1.3 resolved: both give the same records
    assert decode_senml(cbor_of_json(MULTIPLE_MEASUREMENTS)) == decode_senml(
        cbor_of_json(RESOLVED_DATA)
    )


def test_resolved_records_written_as_senml_json_are_the_rfc_s_resolved_pack() -> None:
    written = json.loads(encode_senml_json(MEASUREMENTS_RESOLVED))
    assert written == json.loads(RESOLVED_DATA)


def test_a_data_value_is_written_in_base64url_without_padding() -> None:
    # RFC 8428 §5: vd in SenML-JSON is base64url with padding removed (§5.1.5: "aGkgCg")
    records = decode_senml(cbor_of_json(MULTIPLE_DATA_TYPES))
    written = json.loads(encode_senml_json(records))
    assert written[3] == {"n": DEV + ":nfc-reader", "t": 0.0, "vd": "aGkgCg"}
    assert written[1]["vs"] == "Machine Room" and written[2]["vb"] is False


# ---------------------------------------------------------------- encoding


def test_encoding_is_deterministic_cbor_with_integer_labels() -> None:
    data = encode_senml([Record("temp", 21.5, "Cel", 0.0)])
    # [{0: "temp", 1: "Cel", 2: 21.5, 6: 0.0}]: labels in order, floats in their
    # shortest exact form (21.5 and 0.0 fit half precision, RFC 8949 §4.2.1)
    assert data == bytes.fromhex("81a4006474656d70016343656c02f94d6006f90000")


records = st.builds(
    Record,
    name=st.text(min_size=1, max_size=MAX_NAME),
    value=st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.text(max_size=40)
    | st.binary(max_size=40),
    unit=st.none() | st.text(max_size=8),
    time=st.floats(min_value=-(2.0**28), max_value=2.0**34),
)


@given(st.lists(records, min_size=1, max_size=8))
def test_decode_of_encode_returns_the_records(pack: list[Record]) -> None:
    assert decode_senml(encode_senml(pack)) == pack


@given(st.lists(records, min_size=1, max_size=8))
def test_senml_json_holds_the_same_records(pack: list[Record]) -> None:
    written = json.loads(encode_senml_json(pack))
    assert [item["n"] for item in written] == [record.name for record in pack]
    assert [item["t"] for item in written] == [record.time for record in pack]
    assert [item.get("u") for item in written] == [record.unit for record in pack]
    for item, record in zip(written, pack, strict=True):
        if isinstance(record.value, bool):
            assert item["vb"] is record.value
        elif isinstance(record.value, str):
            assert item["vs"] == record.value
        elif isinstance(record.value, bytes):
            padded = item["vd"] + "=" * (-len(item["vd"]) % 4)
            assert "=" not in item["vd"]
            assert base64.urlsafe_b64decode(padded) == record.value
        else:
            assert item["v"] == record.value


# ---------------------------------------------------------------- refusals


def pack_of(*items: object) -> bytes:
    return cbor2.dumps(list(items))


BAD_PACKS = [
    pytest.param(b"\xff", "not valid CBOR", id="not-cbor"),
    pytest.param(cbor2.dumps({0: "x", 2: 1}), "non-empty CBOR array", id="not-an-array"),
    pytest.param(cbor2.dumps([]), "non-empty CBOR array", id="empty"),
    pytest.param(pack_of({0: "a", 2: 1}, 7), "record 1 is not a map", id="not-a-map"),
    pytest.param(pack_of({0: "a", 2: 1, 99: 0}), "record 0: unknown labels [99]", id="label"),
    pytest.param(pack_of({0: "a", 2: 1, 3: "x"}), "record 0 has more than one value", id="2-val"),
    pytest.param(pack_of({0: "a", 1: "Cel"}), "record 0 has no value", id="no-value"),
    pytest.param(pack_of({2: 1.0}), "record 0 has no name", id="no-name"),
    pytest.param(pack_of({-2: "dev:"}), "no measurement, only base fields", id="only-base"),
    pytest.param(pack_of({0: 5, 2: 1}), "record 0: name must be text, got int", id="name-type"),
    pytest.param(pack_of({0: "a", 2: "1"}), "value must be a finite number", id="value-type"),
    pytest.param(pack_of({0: "a", 2: True}), "value must be a finite number", id="bool-as-v"),
    pytest.param(pack_of({0: "a", 4: 1}), "boolean value must be true or false", id="vb"),
    pytest.param(pack_of({0: "a", 8: "aGk"}), "data value must be a byte string", id="vd-text"),
    pytest.param(pack_of({0: "a", 2: 1, 6: 2.0**35}), "record 0: time", id="future"),
    pytest.param(pack_of({0: "a", 2: 1, 6: -(2.0**29)}), "record 0: time", id="past"),
    pytest.param(pack_of({0: "a", 2: 1, 7: -1}), "update time must not be negative", id="ut"),
    pytest.param(pack_of({0: "a", 2: 1, -1: 11}), "base version must be an integer", id="bver"),
    pytest.param(pack_of({0: "a", 2: 1, -1: 0}), "base version must be an integer", id="bver-0"),
    pytest.param(pack_of({0: "a", -5: 1.7e308, 2: 1.7e308}), "finite number", id="bv+v-inf"),
    pytest.param(pack_of({0: "a", 2: 1, -3: 2.0**33, 6: 2.0**33 + 1}), "record 0: time", id="bt+t"),
    pytest.param(pack_of({0: "n" * (MAX_NAME + 1), 2: 1}), "characters exceeds", id="long-n"),
    pytest.param(pack_of({0: "a", 3: "s" * (MAX_STRING + 1)}), "exceeds 1024", id="long-vs"),
    pytest.param(pack_of({0: "a", 8: b"d" * (MAX_STRING + 1)}), "bytes exceeds", id="long-vd"),
    pytest.param(pack_of(*[{0: "a", 2: 1}] * (MAX_RECORDS + 1)), "exceeds 4096", id="records"),
]


@pytest.mark.parametrize(("data", "reason"), BAD_PACKS)
def test_a_malformed_pack_is_refused_naming_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(SenmlError) as raised:
        decode_senml(data)
    assert reason in str(raised.value)
    assert isinstance(raised.value, PeerError) and isinstance(raised.value, ValueError)


def test_a_sum_uses_the_base_sum_and_a_value_the_base_value() -> None:
    pack = pack_of({-2: "m:", -5: 100.0, -6: 1000.0, 0: "v", 2: 1.5}, {0: "s", 5: 2.5})
    assert decode_senml(pack) == [Record("m:v", 101.5), Record("m:s", 1002.5)]


def test_a_time_below_2_pow_28_is_relative_and_kept_as_given() -> None:
    # RFC 8428 §4.5.3: values below 2**28 are relative to now (negative: the past)
    assert decode_senml(pack_of({0: "a", 2: 1, 6: -60}))[0].time == -60.0
    assert decode_senml(pack_of({0: "a", 2: 1, 6: 2**28 - 1}))[0].time == 2**28 - 1
    assert decode_senml(pack_of({-3: 100.0, 0: "a", 2: 1, 6: -160}))[0].time == -60.0


@pytest.mark.parametrize(("text", "records"), RFC8428_EXAMPLES)
def test_rfc8428_example_as_senml_json_resolves_to_the_same_records(
    text: str, records: list[Record]
) -> None:
    assert decode_senml_json(text.encode()) == records


def test_senml_json_round_trips_resolved_records_with_data_values() -> None:
    records = [Record("a", b"\x00\xff", None, 5.0), Record("b", 1.5, "V", 6.0),
               Record("c", True, None, 7.0), Record("d", "on", None, 8.0)]  # fmt: skip
    assert decode_senml_json(encode_senml_json(records)) == records


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"{}", "non-empty JSON array"),
        (b"[1]", "record 0 is not an object"),
        (b'[{"n":"a","x":1}]', "unknown label 'x'"),
        (b'[{"n":"a","v":1,"v":2}]', "repeats a label"),
        (b'[{"n":"a","v":NaN}]', "finite number"),
        (b'[{"n":"a","vd":5}]', "base64url"),
        (b"\xff", "not valid JSON"),
        (b"[" * 100_000, "exceeds"),
    ],
)
def test_a_bad_senml_json_pack_is_refused_naming_what(text: bytes, message: str) -> None:
    with pytest.raises(SenmlError, match=message):
        decode_senml_json(text)
