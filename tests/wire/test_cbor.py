"""Canonical CBOR encoding and strict, bounded decoding (edgecfg.wire.cbor)."""

from __future__ import annotations

import copy
import hashlib
import marshal
import math
import subprocess
import sys
import textwrap
from decimal import Decimal
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgecfg
from edgecfg import DecodeError, DecodeLimits, EncodeError, decode, decode_tree, encode, etag
from edgecfg.core.delta import apply_traced, diff_traced
from edgecfg.core.tree import Value, values_equal
from edgecfg.errors import EdgecfgError, ModelError, PeerError, UsageError
from edgecfg.wire.cbor import (
    DEFAULT_LIMITS,
    content_key,
    content_key_parts,
    decode_extended,
    decode_item,
    encode_unchecked,
    etag_of_bytes,
    spliced_content_key,
    spliced_content_key_parts,
)
from edgecfg.wire.numbers import ContentFormat
from tests.strategies import (
    NAN_WITH_PAYLOAD,
    NEGATIVE_NAN,
    model_trees,
    model_values,
    value_pairs,
)

# ---------------------------------------------------------------- golden vectors

GOLDEN: list[tuple[Value, str]] = [
    # unsigned integers at every head-width boundary (RFC 8949 §3.1, §4.2.1)
    (0, "00"),
    (1, "01"),
    (23, "17"),
    (24, "1818"),
    (255, "18ff"),
    (256, "190100"),
    (65535, "19ffff"),
    (65536, "1a00010000"),
    (2**32 - 1, "1affffffff"),
    (2**32, "1b0000000100000000"),
    (2**64 - 1, "1bffffffffffffffff"),
    # negative integers
    (-1, "20"),
    (-24, "37"),
    (-25, "3818"),
    (-256, "38ff"),
    (-257, "390100"),
    (-65537, "3a00010000"),
    (-(2**32) - 1, "3b0000000100000000"),
    (-(2**64), "3bffffffffffffffff"),
    # floats: shortest form that keeps the value
    (0.0, "f90000"),
    (-0.0, "f98000"),
    (1.0, "f93c00"),
    (1.5, "f93e00"),
    (-4.0, "f9c400"),
    (65504.0, "f97bff"),
    (5.960464477539063e-8, "f90001"),
    (100000.0, "fa47c35000"),
    (3.4028234663852886e38, "fa7f7fffff"),
    (1.1, "fb3ff199999999999a"),
    (1e300, "fb7e37e43c8800759c"),
    (math.inf, "f97c00"),
    (-math.inf, "f9fc00"),
    (math.nan, "f97e00"),
    (NAN_WITH_PAYLOAD, "f97e00"),
    (NEGATIVE_NAN, "f97e00"),
    # simple values
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    # text and bytes
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ("ü", "62c3bc"),
    ("水", "63e6b0b4"),
    ("\U00010151", "64f0908591"),
    ("a" * 24, "7818" + "61" * 24),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    (b"\x00" * 24, "5818" + "00" * 24),
    # arrays and maps
    ([], "80"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    # map keys sorted by encoded length, then bytewise (RFC 8949 §4.2.1)
    ({"b": 1, "aa": 2, "a": 3}, "a3616103616201626161" + "02"),
    ({"é": 1, "z": 2, "aa": 3}, "a3617a02626161" + "0362c3a901"),
    ({"a": {"c": [], "b": None}}, "a16161a26162f6616380"),
]


@pytest.mark.parametrize(("value", "hex_"), GOLDEN, ids=[h[:24] for _, h in GOLDEN])
def test_encode_matches_golden_canonical_hex(value: Value, hex_: str) -> None:
    assert encode(value).hex() == hex_


@pytest.mark.parametrize(("value", "hex_"), GOLDEN, ids=[h[:24] for _, h in GOLDEN])
def test_decode_of_golden_hex_returns_the_value(value: Value, hex_: str) -> None:
    assert values_equal(decode(bytes.fromhex(hex_)), value)


@pytest.mark.parametrize(
    ("hex_", "value"),
    [
        ("1800", 0),  # non-preferred argument widths
        ("190017", 23),
        ("1b0000000000000001", 1),
        ("3800", -1),
        ("fb3ff0000000000000", 1.0),  # float64 that fits float16
        ("fa3fc00000", 1.5),
        ("fa7fc00000", math.nan),
        ("fb7ff8000000000001", math.nan),  # NaN payloads collapse to NaN
        ("a2616201616102", {"b": 1, "a": 2}),  # unsorted keys
        ("780161", "a"),  # long head for a short string
        ("5900020102", b"\x01\x02"),
        ("980100", [0]),
    ],
)
def test_decode_accepts_well_formed_non_canonical_input(hex_: str, value: Value) -> None:
    decoded = decode(bytes.fromhex(hex_))
    assert values_equal(decoded, value)
    assert encode(decoded) == encode(value)


def test_decode_returns_python_types_of_the_model() -> None:
    decoded = decode(bytes.fromhex("a5616101616241006163f93e006164f6616580"))
    assert decoded == {"a": 1, "b": b"\x00", "c": 1.5, "d": None, "e": []}
    assert isinstance(decoded, dict)
    assert type(decoded["c"]) is float


def test_decode_accepts_bytearray_and_memoryview() -> None:
    # typed as bytes, but any buffer works: decode copies it with bytes()
    assert decode(cast(Any, bytearray(b"\x83\x01\x02\x03"))) == [1, 2, 3]
    assert decode(cast(Any, memoryview(b"\xa0"))) == {}


def test_content_format_is_application_cbor() -> None:
    assert ContentFormat.CBOR == 60


# ---------------------------------------------------------------- etag

KNOWN_TREE: Value = {
    "net": {"uplink": {"interval_s": 300, "host": "gw.example"}},
    "log": {"level": "info", "sample": 0.5},
    "enabled": True,
    "key": b"\x00\x01",
    "tags": ["a", 1, None],
}
KNOWN_ENCODING = (
    "a5636b6579420001636c6f67a2656c6576656c64696e666f6673616d706c65f93800636e6574a1667570"
    "6c696e6ba264686f73746a67772e6578616d706c656a696e74657276616c5f7319012c647461677383616101"
    "f667656e61626c6564f5"
)


def test_encode_of_a_known_tree_is_pinned() -> None:
    assert encode(KNOWN_TREE).hex() == KNOWN_ENCODING


def test_etag_is_the_first_8_bytes_of_sha256_of_the_encoding() -> None:
    tag = etag(KNOWN_TREE)
    assert tag == hashlib.sha256(encode(KNOWN_TREE)).digest()[:8]
    assert tag.hex() == "e73094c6d14c5ab0"  # golden: catches any codec change
    assert etag_of_bytes(bytes.fromhex(KNOWN_ENCODING)) == tag
    assert etag({}).hex() == "c19a797fa1fd590c"


def test_equal_configurations_have_equal_etags_regardless_of_key_order() -> None:
    a = {"x": 1, "y": {"p": [1.5], "q": "s"}}
    b = {"y": {"q": "s", "p": [1.5]}, "x": 1}
    assert etag(a) == etag(b)
    assert len(etag(a)) == 8


@pytest.mark.parametrize(("a", "b"), [(0.0, -0.0), (1, 1.0), (True, 1), ({"a": None}, {})])
def test_values_that_python_confuses_have_different_etags(a: Value, b: Value) -> None:
    assert etag(a) != etag(b)


# ---------------------------------------------------------------- decode errors

DECODE_ERRORS: list[tuple[str, int, str]] = [
    # empty and trailing input
    ("", 0, "empty input"),
    ("0000", 1, "1 trailing bytes after the CBOR item"),
    ("a0ffff", 1, "2 trailing bytes"),
    ("83010203" + "f6", 4, "1 trailing bytes"),
    # duplicate keys, also when a key uses a non-canonical head
    ("a2616101616102", 4, "duplicate map key 'a'"),
    ("a261610178016102", 4, "duplicate map key 'a'"),
    ("a27900026162017a000000026162f6", 7, "duplicate map key 'ab'"),
    ("81a2616101616102", 5, "duplicate map key 'a'"),
    ("a16161a2600060f6", 6, "duplicate map key ''"),
    # indefinite lengths (not allowed) and breaks
    ("9f00ff", 0, "indefinite-length item (not allowed)"),
    ("bf616100ff", 0, "indefinite-length item"),
    ("5f4100ff", 0, "indefinite-length item"),
    ("7f6161ff", 0, "indefinite-length item"),
    ("82009f", 2, "indefinite-length item"),
    ("a1616bbf", 3, "indefinite-length item"),
    ("a17f6161ff00", 1, "indefinite-length item"),
    ("ff", 0, "break outside an indefinite-length item"),
    ("8201ff", 2, "break outside an indefinite-length item"),
    # tags
    ("c11a514b67b0", 0, "tag 1 is not a configuration value"),
    ("c249010000000000000000", 0, "tag 2 is not a configuration value"),
    ("8201d818456449455446", 2, "tag 24 is not a configuration value"),
    ("a16161db000000010000000000", 3, "tag 4294967296"),
    # undefined and other simple values
    ("f7", 0, "undefined is not a configuration value"),
    ("a16161f7", 3, "undefined is not a configuration value"),
    ("f0", 0, "simple value 16 is not a configuration value"),
    ("e0", 0, "simple value 0 is not a configuration value"),
    ("f3", 0, "simple value 19 is not a configuration value"),
    ("f820", 0, "simple value 32 is not a configuration value"),
    ("f8ff", 0, "simple value 255 is not a configuration value"),
    ("f814", 0, "simple value 20 in two-byte form"),
    ("f800", 0, "simple value 0 in two-byte form"),
    # reserved additional information 28-30 in every major type
    *[
        (f"{major << 5 | ai:02x}", 0, f"reserved additional information {ai}")
        for major in range(8)
        for ai in (28, 29, 30)
    ],
    ("811c", 1, "reserved additional information 28"),
    # truncation
    ("18", 0, "truncated head: 1-byte argument needs 1 more bytes"),
    ("1900", 0, "truncated head: 2-byte argument needs 1 more bytes"),
    ("1b000000", 0, "truncated head: 8-byte argument needs 5 more bytes"),
    ("fb3ff0", 0, "truncated head"),
    ("f9", 0, "truncated head"),
    ("f8", 0, "truncated head"),
    ("a17901", 1, "truncated head"),
    ("44010203", 0, "truncated string: declared 4 bytes, 3 remain"),
    ("64494554", 0, "truncated string"),
    ("a1636161", 1, "truncated string: declared 3 bytes, 2 remain"),
    ("82626161", 4, "truncated input: expected another item"),
    ("a1626161", 4, "truncated input: expected another item"),
    ("a263616161" + "00", 6, "truncated map: expected a key"),
    ("81", 0, "declared 1 entries but only 0 bytes remain"),
    ("a1", 0, "declared 1 entries but only 0 bytes remain"),
    ("a16161", 3, "truncated input: expected another item"),
    # length bombs: 9-byte inputs announcing 2**32 or 2**64-1 elements
    ("9b0000000100000000", 0, "declared 4294967296 entries but only 0 bytes remain"),
    ("9bffffffffffffffff", 0, "declared 18446744073709551615 entries"),
    ("bb0000000100000000", 0, "declared 4294967296 entries"),
    ("bbffffffffffffffff", 0, "declared 18446744073709551615 entries"),
    ("5b0000000100000000", 0, "truncated string: declared 4294967296 bytes, 0 remain"),
    ("5bffffffffffffffff", 0, "truncated string: declared 18446744073709551615 bytes"),
    ("7b0000000100000000", 0, "truncated string: declared 4294967296 bytes"),
    ("7bffffffffffffffff", 0, "truncated string"),
    ("9a00010000" + "00" * 4, 0, "declared 65536 entries but only 4 bytes remain"),
    ("a2" + "6161" + "00", 0, "declared 2 entries but only 3 bytes remain"),
    # invalid UTF-8 (offset of the first bad byte)
    ("62c0ae", 1, "invalid UTF-8 in text string"),
    ("636162ff", 3, "invalid UTF-8 in text string"),
    ("63eda080", 1, "invalid UTF-8"),  # an encoded surrogate is not UTF-8
    ("64f4908080", 1, "invalid UTF-8"),  # beyond U+10FFFF
    ("a162c328f6", 2, "invalid UTF-8"),  # in a map key
    ("8261616261ff", 5, "invalid UTF-8"),
    # map keys must be text
    ("a10101", 1, "map key is not a text string"),
    ("a1416101", 1, "map key is not a text string"),
    ("a1f600", 1, "map key is not a text string"),
    ("a18000", 1, "map key is not a text string"),
    ("a16161a1f93c0000", 4, "map key is not a text string"),
]


@pytest.mark.parametrize(
    ("hex_", "offset", "reason"), DECODE_ERRORS, ids=[e[0][:20] or "empty" for e in DECODE_ERRORS]
)
def test_decode_rejects_malformed_or_out_of_model_input_with_offset(
    hex_: str, offset: int, reason: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(bytes.fromhex(hex_))
    assert caught.value.offset == offset
    assert reason in caught.value.reason
    assert str(caught.value) == f"{caught.value.reason} at byte offset {offset}"


def test_decode_error_is_an_edgecfg_error_a_peer_error_and_a_value_error() -> None:
    with pytest.raises(DecodeError) as caught:
        decode(b"\xff")
    assert isinstance(caught.value, EdgecfgError)
    assert isinstance(caught.value, PeerError)
    assert isinstance(caught.value, ValueError)
    assert not isinstance(caught.value, UsageError)
    assert edgecfg.DecodeError is DecodeError


def test_decode_rejects_a_depth_bomb_at_the_depth_limit() -> None:
    bomb = b"\x81" * 10_000 + b"\x00"
    with pytest.raises(DecodeError, match="nesting deeper than 64") as caught:
        decode(bomb)
    assert caught.value.offset == 64


def test_decode_rejects_a_map_depth_bomb() -> None:
    bomb = b"\xa1\x61a" * 10_000 + b"\x00"
    with pytest.raises(DecodeError, match="nesting deeper than 64") as caught:
        decode(bomb)
    assert caught.value.offset == 64 * 3


@pytest.mark.parametrize("container", [b"\x81", b"\xa1\x61a"])
def test_decode_accepts_nesting_exactly_at_the_depth_limit(container: bytes) -> None:
    limit = DEFAULT_LIMITS.max_depth
    value = decode(container * limit + b"\x00")
    for _ in range(limit):
        value = value[0] if isinstance(value, list) else cast(dict[str, Value], value)["a"]
    assert value == 0
    with pytest.raises(DecodeError, match=f"nesting deeper than {limit}"):
        decode(container * (limit + 1) + b"\x00")


@pytest.mark.parametrize("max_depth", [0, 1, 2, 10, 500])
def test_decode_honours_a_custom_depth_limit(max_depth: int) -> None:
    limits = DecodeLimits(max_depth=max_depth)
    assert decode(b"\x81" * max_depth + b"\x00", limits=limits) is not None
    with pytest.raises(DecodeError, match=f"nesting deeper than {max_depth}") as caught:
        decode(b"\x81" * (max_depth + 1) + b"\x00", limits=limits)
    assert caught.value.offset == max_depth


def test_a_zero_depth_limit_still_accepts_scalars() -> None:
    assert decode(b"\x01", limits=DecodeLimits(max_depth=0)) == 1


def test_depth_limits_beyond_the_scanner_bound_are_refused() -> None:
    # The scanner recurses per level; limits above MAX_DEPTH_LIMIT would turn
    # deep input into RecursionError instead of a DecodeError.
    with pytest.raises(UsageError, match="max_depth 5000 outside"):
        DecodeLimits(max_depth=5000)
    deep = b"\x81" * 499 + b"\x00"
    expected: Value = 0
    for _ in range(499):
        expected = [expected]
    assert decode(deep, limits=DecodeLimits(max_depth=500)) == expected


def test_decode_rejects_a_size_bomb_before_scanning() -> None:
    limits = DecodeLimits(max_bytes=8)
    assert decode(b"\x87" + b"\x00" * 7, limits=limits) == [0] * 7
    with pytest.raises(DecodeError, match="input of 9 bytes exceeds the limit of 8") as caught:
        decode(b"\x88" + b"\x00" * 8, limits=limits)
    assert caught.value.offset == 8


def test_decode_rejects_input_beyond_the_default_size_limit() -> None:
    size = DEFAULT_LIMITS.max_bytes + 1
    blob = b"\x5a" + size.to_bytes(4, "big") + b"\x00" * (size - 5)
    with pytest.raises(DecodeError, match="exceeds the limit of 4194304") as caught:
        decode(blob)
    assert caught.value.offset == DEFAULT_LIMITS.max_bytes


def test_default_limits() -> None:
    assert DecodeLimits(max_bytes=4 * 1024 * 1024, max_depth=64) == DEFAULT_LIMITS


@pytest.mark.parametrize(
    ("hex_", "kind"), [("01", "int"), ("80", "list"), ("60", "str"), ("f6", "NoneType")]
)
def test_decode_tree_rejects_a_non_map_top_level(hex_: str, kind: str) -> None:
    with pytest.raises(DecodeError, match=f"expected a map at the top level, got {kind}") as caught:
        decode_tree(bytes.fromhex(hex_))
    assert caught.value.offset == 0


def test_decode_tree_returns_a_map_and_applies_limits() -> None:
    assert decode_tree(bytes.fromhex("a161610a")) == {"a": 10}
    with pytest.raises(DecodeError, match="nesting deeper than 0"):
        decode_tree(b"\xa0", limits=DecodeLimits(max_depth=0))


# ---------------------------------------------------------------- encode errors


class Text(str):
    pass


@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        ((1, 2), "", "tuple is not a configuration value at the root"),
        ({"a": {"b": (1,)}}, "a.b", "tuple is not a configuration value at a.b"),
        ({"a": [1, {2, 3}]}, "a", "set is not a configuration value at a"),
        ({"n": 2**64}, "n", "integer 18446744073709551616 outside the CBOR range"),
        ({"n": -(2**64) - 1}, "n", "outside the CBOR range [-2**64, 2**64-1] at n"),
        ({"m": {1: 2}}, "m", "map key 1 is not text at m"),
        ({"s": Text("x")}, "s", "Text is not a configuration value at s"),
        ({"x.y": {"z": object()}}, "x\\.y.z", "object is not a configuration value at x\\.y.z"),
    ],
)
def test_encode_rejects_out_of_model_values_with_encode_error_naming_the_path(
    value: object, path: str, message: str
) -> None:
    with pytest.raises(EncodeError) as caught:
        encode(cast(Any, value))
    assert caught.value.path == path
    assert message in str(caught.value)
    assert isinstance(caught.value, ModelError)
    assert isinstance(caught.value, UsageError)
    assert isinstance(caught.value, TypeError)


def test_etag_rejects_out_of_model_values_like_encode() -> None:
    with pytest.raises(EncodeError):
        etag(cast(Any, {"a": (1,)}))


@pytest.mark.parametrize("value", [{"a": "\ud800"}, {"\udfff": 1}])
def test_encode_rejects_text_that_is_not_unicode_scalar_values(value: Value) -> None:
    with pytest.raises(EncodeError):
        encode(value)


def test_encode_error_message_names_a_path_containing_at_once() -> None:
    with pytest.raises(EncodeError) as caught:
        encode(cast(Any, {"a at b": (1,)}))
    assert caught.value.path == "a at b"
    assert str(caught.value) == "tuple is not a configuration value at a at b"


def test_encode_of_a_very_deep_value_raises_encode_error_instead_of_crashing() -> None:
    # cbor2's C encoder overflows the C stack (SIGSEGV) around 10,000 levels, so
    # encode must refuse such values before handing them over.  Run in a child
    # process: a regression kills the interpreter, not the test session.
    script = textwrap.dedent(
        """
        import edgecfg
        value = []
        for _ in range(10_000):
            value = [value]
        try:
            edgecfg.encode(value)
        except edgecfg.EncodeError as error:
            print("EncodeError", error)
        print("survived")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "EncodeError value nested too deeply at the root" in result.stdout
    assert "survived" in result.stdout


# ---------------------------------------------------------------- laws


@given(model_values)
def test_decode_of_encode_returns_an_equal_value(value: Value) -> None:
    assert values_equal(decode(encode(value)), value)


@given(model_values)
def test_encode_is_canonical_a_round_trip_reproduces_the_same_bytes(value: Value) -> None:
    blob = encode(value)
    assert encode(decode(blob)) == blob


@given(model_trees)
def test_encode_does_not_depend_on_map_insertion_order(tree: dict[str, Value]) -> None:
    reordered = dict(reversed(list(tree.items())))
    assert encode(reordered) == encode(tree)
    assert etag(reordered) == etag(tree)


@given(model_trees)
def test_decode_tree_of_encode_returns_an_equal_tree(tree: dict[str, Value]) -> None:
    assert values_equal(decode_tree(encode(tree)), tree)


@given(model_values, st.data())
def test_every_proper_prefix_of_an_encoding_is_rejected(value: Value, data: st.DataObject) -> None:
    blob = encode(value)
    cut = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    with pytest.raises(DecodeError) as caught:
        decode(blob[:cut])
    assert 0 <= caught.value.offset <= cut


@given(model_values, st.binary(min_size=1, max_size=8))
def test_bytes_after_an_encoding_are_rejected_at_its_end(value: Value, tail: bytes) -> None:
    blob = encode(value)
    with pytest.raises(DecodeError, match="trailing bytes") as caught:
        decode(blob + tail)
    assert caught.value.offset == len(blob)


def _decode_or_decode_error(data: bytes) -> None:
    try:
        value = decode(data)
    except DecodeError as error:
        assert 0 <= error.offset <= len(data)
    else:
        # whatever is accepted is a model value that round-trips
        assert values_equal(decode(encode(value)), value)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64))
def test_random_bytes_never_raise_anything_but_decode_error(data: bytes) -> None:
    _decode_or_decode_error(data)


# heads of every kind, truncated and reserved ones included, and a few short items
CBOR_FRAGMENTS = [
    bytes.fromhex(h)
    for h in [
        "81", "82", "a1", "a2", "9f", "bf", "5f", "7f", "ff", "00", "17", "18", "19", "1a",
        "1b", "20", "38", "40", "41", "58", "60", "61", "62", "78", "80", "a0", "c0", "c1",
        "d8", "e0", "f4", "f5", "f6", "f7", "f8", "f9", "fa", "fb", "1c", "3d", "61c3",
        "63eda080", "6161", "f97e00",
    ]
]  # fmt: skip


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(CBOR_FRAGMENTS), max_size=16).map(b"".join))
def test_cbor_shaped_garbage_never_raises_anything_but_decode_error(data: bytes) -> None:
    _decode_or_decode_error(data)


@settings(max_examples=1000)
@given(model_values, st.data())
def test_mutated_encodings_never_raise_anything_but_decode_error(
    value: Value, data: st.DataObject
) -> None:
    blob = bytearray(encode(value))
    index = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    blob[index] = data.draw(st.integers(min_value=0, max_value=255))
    _decode_or_decode_error(bytes(blob))


# ---------------------------------------------------------------- extensions (delta format)


@given(model_values)
def test_encode_unchecked_equals_encode_for_model_values(value: Value) -> None:
    assert encode_unchecked(value) == encode(value)


def test_encode_unchecked_skips_the_model_check() -> None:
    assert encode_unchecked(cast(Any, (1, 2))) == encode([1, 2])


@pytest.mark.parametrize(
    ("hex_", "value"),
    [
        ("a10102", {1: 2}),
        ("a2613100" + "0100", {"1": 0, 1: 0}),  # text "1" and integer 1 are different keys
        ("a1616ba10007", {"k": {0: 7}}),
        ("c48221196ab3", Decimal("273.15")),  # RFC 8949 §3.4.4 decimal fraction
        ("c4820000", Decimal(0)),
        ("81c482203903e7", [Decimal("-100.0")]),
    ],
)
def test_decode_extended_admits_integer_keys_and_decimal_fractions(
    hex_: str, value: object
) -> None:
    assert decode_extended(bytes.fromhex(hex_), int_keys=True) == value


@pytest.mark.parametrize("hex_", ["a10102", "c48221196ab3"])
def test_integer_keys_and_decimals_are_refused_without_int_keys(hex_: str) -> None:
    for decoder in (decode, lambda data: decode_extended(data, int_keys=False)):
        with pytest.raises(DecodeError):
            decoder(bytes.fromhex(hex_))


@pytest.mark.parametrize(
    ("hex_", "offset", "reason"),
    [
        ("a201000100", 3, "duplicate map key '#1'"),
        ("a12000", 1, "map key is not a text string"),  # negative integers stay refused
        ("c100", 0, "tag 1 is not a configuration value"),
        ("c48100", 1, "decimal fraction must be a 2-element array"),
        ("c48200", 1, "decimal fraction must be a 2-element array"),
        ("c482f600", 1, "decimal fraction parts must be integers"),
        ("c482410000", 1, "decimal fraction parts must be integers"),
        ("c4821801", 1, "decimal fraction parts must be integers"),
        ("c4821900", 2, "truncated head"),
        ("c4830000", 1, "decimal fraction must be a 2-element array"),
        ("a101616101", 4, "1 trailing bytes"),
    ],
)
def test_decode_extended_still_rejects_everything_else(hex_: str, offset: int, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_extended(bytes.fromhex(hex_), int_keys=True)
    assert caught.value.offset == offset
    assert reason in caught.value.reason


def test_decode_item_decodes_one_item_inside_a_larger_buffer() -> None:
    data = bytes.fromhex("ff" + "820102" + "a1616100" + "ff")
    assert decode_item(data, 1) == ([1, 2], 4)
    assert decode_item(data, 4) == ({"a": 0}, 8)
    assert decode_item(bytes.fromhex("00a10102"), 1, int_keys=True) == ({1: 2}, 4)


@pytest.mark.parametrize(
    ("hex_", "start", "offset", "reason"),
    [
        ("0000", 2, 2, "truncated input: expected a CBOR item"),
        ("00", 5, 5, "truncated input"),
        ("0082", 1, 1, "declared 2 entries but only 0 bytes remain"),
        ("00c100", 1, 1, "tag 1"),
        ("00a16161a2", 1, 4, "declared 2 entries"),
        ("ffa10102", 1, 2, "map key is not a text string"),
    ],
)
def test_decode_item_reports_offsets_relative_to_the_whole_buffer(
    hex_: str, start: int, offset: int, reason: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_item(bytes.fromhex(hex_), start)
    assert caught.value.offset == offset
    assert reason in caught.value.reason


def test_decode_item_applies_the_size_limit_to_the_item() -> None:
    data = b"\x00\x43abc"
    assert decode_item(data, 1, limits=DecodeLimits(max_bytes=4)) == (b"abc", 5)
    with pytest.raises(DecodeError, match="item of 4 bytes exceeds the limit of 3") as caught:
        decode_item(data, 1, limits=DecodeLimits(max_bytes=3))
    assert caught.value.offset == 1


def test_decode_item_applies_the_depth_limit() -> None:
    with pytest.raises(DecodeError, match="nesting deeper than 1"):
        decode_item(b"\x81\x81\x00", 0, limits=DecodeLimits(max_depth=1))


@given(st.lists(model_values, min_size=1, max_size=4))
@settings(max_examples=200, deadline=None)
def test_subtree_encoder_is_byte_identical_to_canonical_encoding(values: list[Value]) -> None:
    from edgecfg.wire.cbor import SubtreeEncoder, encode_unchecked

    encoder = SubtreeEncoder(max_entries=8)
    shared: dict[str, Value] = {"shared": {"x": values[0]}}
    for value in values:  # trees that share a map object, as folds do
        tree: Value = {"a": value, "s": shared, "nested": {"s": shared, "v": value}}
        assert encoder.encode(tree) == encode_unchecked(tree)
        assert encoder.encode(value) == encode_unchecked(value)


def test_subtree_encoder_forgets_its_maps_past_its_byte_bound() -> None:
    from edgecfg.wire.cbor import SubtreeEncoder, encode_unchecked

    encoder = SubtreeEncoder(max_bytes=1000)
    trees: list[Value] = [{"n": {"i": i, "pad": "x" * 100}} for i in range(30)]
    for tree in trees:
        assert encoder.encode(tree) == encode_unchecked(tree)
        assert encoder.held_bytes <= 1000 + 2 * len(encode_unchecked(tree))
    assert encoder.count(trees[0]) is None  # long forgotten
    assert encoder.count(trees[-1]) == 4  # just encoded: the map, n, i, pad


@given(value_pairs())
@settings(max_examples=200, deadline=None)
def test_a_content_key_spliced_from_the_base_parts_is_the_whole_key(
    pair: tuple[Value, Value],
) -> None:
    old, new = pair
    base = content_key_parts(old)
    assert base is not None
    assert base.key == content_key(old)
    # A delta's result keeps the base's untouched entries as the same objects.
    result = apply_traced(old, diff_traced(old, new).ops).result
    assert spliced_content_key(result, base) == content_key(result)
    # Entries that are equal but other objects are serialised again, to the same bytes.
    assert spliced_content_key(copy.deepcopy(result), base) == content_key(result)
    # The spliced parts are the result's own: the next link of a chain splices from them.
    spliced = spliced_content_key_parts(result, base)
    whole = content_key_parts(result)
    assert spliced is not None and whole is not None
    assert (spliced.key, spliced.parts, spliced.root) == (whole.key, whole.parts, result)


def test_a_spliced_content_key_keeps_shared_entries_and_refuses_what_marshal_refuses() -> None:
    section = {"rate": 1, "list": [1.0, True, None, b"x"]}
    old: dict[str, Value] = {"a": section, "b": "text", "c": [section]}
    base = content_key_parts(old)
    assert base is not None and len(base.parts) == 3
    new: dict[str, Value] = {"a": section, "b": "other", "d": 0.0}
    assert spliced_content_key(new, base) == marshal.dumps(new, 2)
    items: list[Value] = [section, "x", section]
    listed = content_key_parts(items)
    assert listed is not None and listed.key == marshal.dumps(items, 2)
    assert spliced_content_key([section, -0.0], listed) == marshal.dumps([section, -0.0], 2)
    assert spliced_content_key(3, listed) == marshal.dumps(3, 2)  # another top-level type

    class Text(str):
        pass

    assert content_key_parts({Text("a"): 1}) is None  # type: ignore[dict-item]
    assert spliced_content_key({Text("a"): 1}, base) is None  # type: ignore[dict-item]
