"""The byte encoding of structural delta operations (edgecfg/wire/delta_ops.py).
Whole deltas (header, kinds, compression, bounds): tests/wire/test_delta.py."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgecfg.core.delta import apply, diff
from edgecfg.core.tree import Value
from edgecfg.errors import DecodeError, DeltaError
from edgecfg.wire.cbor import DEFAULT_LIMITS, encode
from edgecfg.wire.delta_ops import KeyBook, decode_ops, encode_ops, varint
from tests.strategies import value_pairs


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"), (16383, "ff7f"),
     (16384, "808001"), (2**35 - 1, "ffffffff7f")],
)  # fmt: skip
def test_varint_is_unsigned_leb128(value: int, encoded: str) -> None:
    assert varint(value).hex() == encoded


MODES = [(True, True), (True, False), (False, True), (False, False)]


@settings(max_examples=200, deadline=None)
@given(value_pairs())
def test_decoded_ops_do_what_the_ops_do_in_every_mode(pair: tuple[Value, Value]) -> None:
    # key refs, decimal floats and back-references change the bytes, never
    # the operations: applied to the base, they give the target, bit for bit
    base, target = pair
    ops = diff(base, target)
    book = KeyBook(base)
    for compact, memory in MODES:
        body = encode_ops(ops, book, compact=compact, memory=memory)
        decoded = decode_ops(body, KeyBook(base), DEFAULT_LIMITS)
        assert encode(apply(base, decoded)) == encode(target), (compact, memory)


def test_compact_values_are_no_longer_than_plain_ones() -> None:
    base: Value = {"net": {"uplink": {"interval_s": 60, "ratio": 0.5}}}
    target: Value = {"net": {"uplink": {"interval_s": 90, "ratio": 0.0125, "net": {"net": 1}}}}
    ops = diff(base, target)
    compact = encode_ops(ops, KeyBook(base))
    plain = encode_ops(ops, KeyBook(base), compact=False)
    assert len(compact) < len(plain)  # 0.0125 as a decimal fraction, "net" as a key ref


@settings(max_examples=300, deadline=None)
@given(value_pairs(), st.data())
def test_a_cut_or_flipped_body_is_refused_as_a_delta_error(
    pair: tuple[Value, Value], data: st.DataObject
) -> None:
    base, target = pair
    body = encode_ops(diff(base, target), KeyBook(base))
    assume(body)  # equal values have an empty body: nothing to damage
    at = data.draw(st.integers(0, len(body) - 1))
    for damaged in (body[:at], body[:at] + bytes([body[at] ^ 0xFF]) + body[at + 1 :]):
        # damage may still parse (into other operations); it never raises anything else
        with contextlib.suppress(DeltaError, DecodeError):
            decode_ops(damaged, KeyBook(base), DEFAULT_LIMITS)
