"""SenML records in CBOR (RFC 8428 §6) and JSON (§5), as devices send telemetry.

Labels are integers in SenML-CBOR: base name -2, base time -3, base unit -4,
base value -5, base sum -6, base version -1, name 0, unit 1, value 2, string
value 3, boolean value 4, sum 5, time 6, update time 7, data value 8.
Decoding resolves base fields into plain records and rejects anything else,
with the record index in the message, including values a sensor cannot mean:
sums that overflow a double (``bv + v``, ``bt + t``), a resolved time more
than 2**28 s in the past or past ``MAX_TIME`` (RFC 8428 §4.5.3: below 2**28
a time is relative to now, negative meaning the past), a negative update
time, a base version above 10 (§4.4), names and units over ``MAX_NAME``
characters, string and data values over ``MAX_STRING`` bytes, and a pack
without any measurement.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, cast

import cbor2

from edgecfg.errors import DecodeError, PeerError
from edgecfg.wire.cbor import DEFAULT_LIMITS, DecodeLimits, decode_extended

BVER, BN, BT, BU, BV, BS = -1, -2, -3, -4, -5, -6
N, U, V, VS, VB, S, T, UT, VD = 0, 1, 2, 3, 4, 5, 6, 7, 8
_LABELS: Final = frozenset({BVER, BN, BT, BU, BV, BS, N, U, V, VS, VB, S, T, UT, VD})
_VALUE_LABELS: Final = (V, VS, VB, VD, S)
MAX_RECORDS: Final = 4096
MAX_NAME: Final = 255
MAX_STRING: Final = 1024
SENML_VERSION: Final = 10  # RFC 8428 §4.4
MIN_TIME: Final = -float(2**28)  # relative, more than 8.5 years before now
MAX_TIME: Final = float(2**34)  # absolute, the year 2514


class SenmlError(PeerError, ValueError):
    """A SenML pack is malformed (names the record)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One resolved measurement: base name prefixed, base time added."""

    name: str
    value: float | str | bool | bytes
    unit: str | None = None
    time: float = 0.0


def decode_senml(data: bytes, *, limits: DecodeLimits = DEFAULT_LIMITS) -> list[Record]:
    """Decode and resolve a SenML-CBOR pack (an array of label maps)."""
    try:
        pack = decode_extended(data, limits=limits, int_keys=True, negative_keys=True)
    except DecodeError as error:
        raise SenmlError(f"SenML pack is not valid CBOR: {error}") from None
    if not isinstance(pack, list) or not pack:
        raise SenmlError("a SenML pack is a non-empty CBOR array of records")
    return _resolve(cast(list[object], pack))


JSON_LABELS: Final = {
    "bver": BVER, "bn": BN, "bt": BT, "bu": BU, "bv": BV, "bs": BS, "n": N,
    "u": U, "v": V, "vs": VS, "vb": VB, "s": S, "t": T, "ut": UT, "vd": VD,
}  # fmt: skip
"""SenML-JSON labels (RFC 8428 §4.3) and their SenML-CBOR numbers (§6)."""
MAX_JSON: Final = 64 * 1024


def decode_senml_json(data: bytes) -> list[Record]:
    """Decode and resolve a SenML-JSON pack (RFC 8428 §5): the same records,
    and the same checks, as :func:`decode_senml`; a data value (``vd``) is
    base64url (§5, padding optional).  Duplicate labels are refused."""
    if len(data) > MAX_JSON:
        raise SenmlError(f"SenML-JSON pack of {len(data)} bytes exceeds {MAX_JSON}")
    try:
        pack = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_labels)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise SenmlError(f"SenML pack is not valid JSON: {error}") from None
    if not isinstance(pack, list) or not pack:
        raise SenmlError("a SenML pack is a non-empty JSON array of records")
    items: list[object] = []
    for index, item in enumerate(cast(list[object], pack)):
        if not isinstance(item, dict):
            raise SenmlError(f"record {index} is not an object")
        fields: dict[object, object] = {}
        for label, value in cast(dict[str, object], item).items():
            number = JSON_LABELS.get(label)
            if number is None:
                raise SenmlError(f"record {index}: unknown label {label!r}")
            fields[number] = _base64url(value, index) if number == VD else value
        items.append(fields)
    return _resolve(items)


def _unique_labels(pairs: list[tuple[str, object]]) -> dict[str, object]:
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise ValueError("a record repeats a label")
    return fields


def _base64url(value: object, index: int) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * MAX_STRING:
        raise SenmlError(f"record {index}: data value must be base64url text")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        raise SenmlError(f"record {index}: data value is not base64url") from None


def _resolve(items: list[object]) -> list[Record]:
    if len(items) > MAX_RECORDS:
        raise SenmlError(f"SenML pack of {len(items)} records exceeds {MAX_RECORDS}")
    records: list[Record] = []
    base_name, base_time, base_unit, base_value, base_sum = "", 0.0, None, 0.0, 0.0
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise SenmlError(f"record {index} is not a map")
        fields = cast(dict[object, object], item)
        unknown = [key for key in fields if key not in _LABELS]
        if unknown:
            raise SenmlError(f"record {index}: unknown labels {unknown!r}")
        base_name = _text(fields.get(BN, base_name), index, "base name")
        base_time = _number(fields.get(BT, base_time), index, "base time")
        unit_field = fields.get(BU, base_unit)
        base_unit = None if unit_field is None else _text(unit_field, index, "base unit")
        base_value = _number(fields.get(BV, base_value), index, "base value")
        base_sum = _number(fields.get(BS, base_sum), index, "base sum")
        version = fields.get(BVER, SENML_VERSION)
        if type(version) is not int or not 1 <= version <= SENML_VERSION:
            raise SenmlError(f"record {index}: base version must be an integer 1..{SENML_VERSION}")
        if UT in fields and _number(fields[UT], index, "update time") < 0:
            raise SenmlError(f"record {index}: update time must not be negative")
        values = [label for label in _VALUE_LABELS if label in fields]
        if not values:
            if set(fields) <= {BVER, BN, BT, BU, BV, BS}:
                continue  # a record that only sets base fields
            raise SenmlError(f"record {index} has no value (v, vs, vb, vd or s)")
        if len(values) > 1:
            raise SenmlError(f"record {index} has more than one value field")
        name = _text(base_name + _text(fields.get(N, ""), index, "name"), index, "name", MAX_NAME)
        if not name:
            raise SenmlError(f"record {index} has no name (n or bn)")
        unit = fields.get(U, base_unit)
        time = base_time + _number(fields.get(T, 0.0), index, "time")
        if not MIN_TIME <= time <= MAX_TIME:
            raise SenmlError(f"record {index}: time {time:g} is not in [-2**28, 2**34]")
        base = base_sum if values[0] == S else base_value
        records.append(
            Record(
                name=name,
                value=_value(values[0], fields[values[0]], base, index),
                unit=None if unit is None else _text(unit, index, "unit", MAX_NAME),
                time=time,
            )
        )
    if not records:
        raise SenmlError("SenML pack has no measurement, only base fields")
    return records


def encode_senml(records: Sequence[Record]) -> bytes:
    """A SenML-CBOR pack of plain records (no base fields)."""
    pack: list[dict[int, object]] = []
    for record in records:
        item: dict[int, object] = {N: record.name, T: record.time}
        if record.unit is not None:
            item[U] = record.unit
        value = record.value
        label = (
            VB
            if isinstance(value, bool)
            else VS
            if isinstance(value, str)
            else (VD if isinstance(value, bytes) else V)
        )
        item[label] = value
        pack.append(item)
    return cbor2.dumps(pack, canonical=True)


def encode_senml_json(records: Sequence[Record]) -> bytes:
    """The same records as SenML-JSON (RFC 8428 §5): text labels, data values
    in base64url without padding, for tools that want text."""
    pack: list[dict[str, object]] = []
    for record in records:
        item: dict[str, object] = {"n": record.name, "t": record.time}
        if record.unit is not None:
            item["u"] = record.unit
        value = record.value
        if isinstance(value, bool):
            item["vb"] = value
        elif isinstance(value, str):
            item["vs"] = value
        elif isinstance(value, bytes):
            item["vd"] = base64.urlsafe_b64encode(value).rstrip(b"=").decode("ascii")
        else:
            item["v"] = value
        pack.append(item)
    return json.dumps(pack, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _text(value: object, index: int, what: str, limit: int = MAX_STRING) -> str:
    if not isinstance(value, str):
        raise SenmlError(f"record {index}: {what} must be text, got {type(value).__name__}")
    if len(value) > limit:
        raise SenmlError(f"record {index}: {what} of {len(value)} characters exceeds {limit}")
    return value


def _number(value: object, index: int, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SenmlError(f"record {index}: {what} must be a finite number")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond a double
        number = math.inf
    if not math.isfinite(number):
        raise SenmlError(f"record {index}: {what} must be a finite number")
    return number


def _value(label: int, value: object, base: float, index: int) -> float | str | bool | bytes:
    if label in (V, S):
        return _number(base + _number(value, index, "value"), index, "value")  # bv + v overflows
    if label == VS:
        return _text(value, index, "string value")
    if label == VB:
        if not isinstance(value, bool):
            raise SenmlError(f"record {index}: boolean value must be true or false")
        return value
    if not isinstance(value, bytes):
        raise SenmlError(f"record {index}: data value must be a byte string")
    if len(value) > MAX_STRING:
        raise SenmlError(f"record {index}: data value of {len(value)} bytes exceeds {MAX_STRING}")
    return value
