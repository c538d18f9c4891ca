"""Every decoder edge fed arbitrary and mutated-valid bytes (issue 7, fuzz).

The law for each: only edgecfg's documented errors (subclasses of
:class:`~edgecfg.errors.EdgecfgError`: DecodeError, DeltaError, SenmlError,
BadRequest, BadJournal, BadEntry, NotFound) may escape, never anything else,
and decoding is bounded (the limits hold; no example needs a deadline).
Found cases stay as ``@example``.  The whole module runs in a few seconds;
``tools/fuzz_atheris.py`` runs the same edges coverage-guided, by hand.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import aiocoap
import aiocoap.error
import cbor2
from aiocoap.numbers.codes import Code
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgecfg.core.ids import DeviceId
from edgecfg.core.layers import GLOBAL, layer_from_parts
from edgecfg.errors import EdgecfgError
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.sync import SyncService
from edgecfg.gateway.oscore import RESERVED_FLAGS, screen_oscore_option
from edgecfg.store import DeviceRecord, MemoryStore
from edgecfg.wire.cbor import DecodeLimits, Encoded, decode, encode
from edgecfg.wire.delta import apply_delta_encoded, make_delta
from edgecfg.wire.journal import read_frames
from edgecfg.wire.senml import Record, decode_senml, encode_senml

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALL = DecodeLimits(max_bytes=4096, max_depth=16)

BASE = Encoded.of({"net": {"uplink": {"interval_s": 60, "host": "gw.example"}}, "log": [1, 2.5]})
TARGET = Encoded.of({"net": {"uplink": {"interval_s": 90, "host": "gw.example"}}, "ota": True})
DELTA = make_delta(BASE, TARGET)
PACK = encode_senml([Record("temp", 21.5, "Cel", 1.7e9), Record("door", True)])
REPORT = encode({"applied": b"\x00" * 8, "agent": "1.0.0", "journal": [], "base": b"\x01" * 8})


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with a few bytes flipped, inserted, deleted or cut off."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[at : at + draw(st.integers(1, 4))]
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


def inputs(valid: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=256), mutated(valid))


def only_edgecfg_errors(call: Callable[[], object]) -> None:
    with contextlib.suppress(EdgecfgError):  # the documented refusal; anything else fails
        call()


@FUZZ
@given(inputs(encode({"a": [1, {"b": "c"}], "d": 1.5, "e": b"\x00"})))
@example(b"\x81" * 100 + b"\x00")  # depth bomb
@example(b"\x9b" + b"\xff" * 8)  # array size bomb
@example(b"\xfb\x7f\xf0\x00\x00\x00\x00\x00\x00")  # +inf
def test_cbor_decode_refuses_with_decode_error_only(data: bytes) -> None:
    only_edgecfg_errors(lambda: decode(data, limits=SMALL))


@FUZZ
@given(inputs(DELTA))
@example(DELTA[:1] + bytes([DELTA[1] ^ 0xFF]) + DELTA[2:])  # a wrong base check
@example(bytes([0x12]) + DELTA[1:4] + b"\x28\xb5\x2f\xfd" + b"\x00" * 8)  # bogus zstd
def test_delta_apply_refuses_with_delta_errors_only(data: bytes) -> None:
    def apply() -> None:
        result = apply_delta_encoded(BASE, data, limits=SMALL)
        assert result.etag == TARGET.etag or result.etag[:2] == data[2:4]

    only_edgecfg_errors(apply)


@FUZZ
@given(inputs(PACK))
@example(b"\x81\xa2\x00\x61t\x02\x3b" + b"\xff" * 8)  # v = -2**64: an integer, not a double
@example(cbor2.dumps([{-5: 1e308, 0: "t", 2: 1e308}]))  # bv + v overflows
def test_senml_decode_refuses_with_senml_error_only(data: bytes) -> None:
    def run() -> None:
        for record in decode_senml(data, limits=SMALL):
            if isinstance(record.value, float):
                assert math.isfinite(record.value)
            assert math.isfinite(record.time)

    only_edgecfg_errors(run)


@FUZZ
@given(inputs(bytes.fromhex("00000010") + REPORT))
def test_journal_frames_never_raise(data: bytes) -> None:
    entries, valid = read_frames(data)
    assert 0 <= valid <= len(data)
    assert isinstance(entries, list)


SERVICE_FLEET = Fleet(MemoryStore())
SERVICE_FLEET.add_device(DeviceRecord(DeviceId("dev-1"), {"region": "eu"}, hardware="h",
                                      firmware="1.0.0", agent_version="1.0.0"))  # fmt: skip
SERVICE_FLEET.write_layer(GLOBAL, layer_from_parts({"net": {"interval_s": 60}}), author="t",
                          message="", now=1)  # fmt: skip
SERVICE = SyncService(SERVICE_FLEET)


@FUZZ
@given(inputs(REPORT))
@example(encode({"agent": "9.9.9", "journal": "nope"}))
@example(encode({"journal": [[1, "net.interval_s", [1, 0, "n"], "set", 5]], "base": b"x" * 8}))
def test_device_report_refuses_with_edgecfg_errors_only(data: bytes) -> None:
    only_edgecfg_errors(lambda: SERVICE.report(DeviceId("dev-1"), data, now=2.0))


@FUZZ
@given(inputs(encode(["net.interval_s", "net"])))
def test_fetch_body_refuses_with_edgecfg_errors_only(data: bytes) -> None:
    only_edgecfg_errors(lambda: SERVICE.fetch(DeviceId("dev-1"), data))


def _with_oscore_option(value: bytes) -> aiocoap.Message:
    message = aiocoap.Message(code=Code.POST, payload=b"\x00" * 12)
    message.opt.oscore = value
    return message


@FUZZ
@given(st.one_of(st.binary(max_size=24), st.binary(min_size=1, max_size=24).map(
    lambda b: bytes([b[0] | 0x20]) + b[1:])))  # fmt: skip
@example(b"\x29\x01\x01")  # the group flag with a kid context (issue 20)
@example(b"\x31\x01\x01")  # the group flag with a kid
def test_oscore_option_screen_refuses_with_bad_option_only(option: bytes) -> None:
    # RFC 8613 §6.1: reserved flag bits (the group flag among them) are refused
    # before aiocoap tries a group signature on a pairwise context
    try:
        screen_oscore_option(_with_oscore_option(option))
    except aiocoap.error.BadOption:
        return
    assert not option or not option[0] & RESERVED_FLAGS
