"""The delta wire format: laws, golden vectors, hostile input, priority classes."""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgecfg
import edgecfg.wire.delta as delta_module
from edgecfg.core.delta import apply as apply_ops
from edgecfg.core.delta import (
    apply_traced,
    canonical_keys,
    diff_traced,
    key_counts,
    size_table,
)
from edgecfg.core.schema import Schema
from edgecfg.core.schema_document import schema_from_document
from edgecfg.core.tree import Tree, UnsetType, Value, get, values_equal
from edgecfg.errors import (
    DecodeError,
    DeltaBaseMismatch,
    DeltaError,
    DeltaIntegrityError,
    EncodeError,
    UsageError,
)
from edgecfg.wire.cbor import (
    DEFAULT_LIMITS,
    DecodeLimits,
    Encoded,
    content_key,
    decode,
    encode,
    encode_reusing,
    etag,
    node_lengths,
    node_tables,
    parts_from_bytes,
)
from edgecfg.wire.delta import (
    EMPTY,
    FORMAT_VERSION,
    FULL,
    FULL_ZSTD,
    FULL_ZSTD_FRAME,
    HEADER_SIZE,
    KIND_NAMES,
    OPS,
    OPS_DEFLATE,
    OPS_ZSTD,
    OPS_ZSTD_FRAME,
    _Known,  # pyright: ignore[reportPrivateUsage] - the cache's entries are the subject
    apply_delta,
    apply_delta_encoded,
    delta_kind,
    encode_delta,
    forget_bases,
    make_delta,
    with_kind,
)
from edgecfg.wire.delta_ops import KeyBook, decode_ops, varint
from tests.strategies import edited, top_values, tree_pairs, trees, value_pairs


@given(tree_pairs())
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_apply_delta_of_make_delta_returns_target(pair: tuple[Tree, Tree]) -> None:
    old, new = pair
    result = apply_delta(old, make_delta(old, new))
    assert encode(result) == encode(new)


@given(trees())
@settings(max_examples=100, deadline=None)
def test_equal_trees_give_the_empty_delta(tree: Tree) -> None:
    delta = make_delta(tree, json_copy(tree))
    assert len(delta) == HEADER_SIZE
    assert delta[0] >> 3 == FORMAT_VERSION << 3 | EMPTY
    assert encode(apply_delta(tree, delta)) == encode(tree)


# ---------------------------------------------------------------- any top-level value


@given(value_pairs(), st.sampled_from([None, *KIND_NAMES]))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_kind_round_trips_for_every_top_level_type(
    pair: tuple[Value, Value], kind: int | None
) -> None:
    # No kind may be chosen that its decoder rejects: force each one, on maps,
    # lists, scalars and empty containers at the top level.
    old, new = pair
    if kind is None:
        delta = make_delta(old, new)
    elif kind == EMPTY:
        delta = encode_delta(old, old, EMPTY)
        new = old
    else:
        try:
            delta = encode_delta(old, new, kind)
        except UsageError:
            # zstd wrote a raw or RLE block: the framed kind carries it instead.
            assert kind in (OPS_ZSTD, FULL_ZSTD)
            delta = encode_delta(old, new, kind + 3)
        assert delta_kind(delta) in (KIND_NAMES[kind], KIND_NAMES[kind] + "-frame")
    assert encode(apply_delta(old, delta)) == encode(new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param([{"alias": "on", "on": []}], [{"alias": "off", "on": []}], id="list"),
        pytest.param([], [1], id="empty-list"),
        pytest.param({}, [], id="map-to-list"),
        pytest.param(3, "three", id="scalars"),
        pytest.param(None, {"a": 1}, id="null-to-map"),
    ],
)
@pytest.mark.parametrize("kind", [OPS, FULL, OPS_ZSTD_FRAME, FULL_ZSTD_FRAME])
def test_list_and_scalar_tops_apply_under_every_kind(old: Value, new: Value, kind: int) -> None:
    assert encode(apply_delta(old, encode_delta(old, new, kind))) == encode(new)


def test_home_assistant_style_list_top_round_trips_as_full_zstd() -> None:
    # The field failure: a list at the top, full+zstd chosen, refused on apply.
    old: Value = [{"id": str(n), "alias": f"light {n}", "trigger": [{"at": "07:00"}]}
                  for n in range(30)]  # fmt: skip
    new: Value = [{"id": "x", "alias": "all new", "mode": "single"} for _ in range(3)]
    delta = encode_delta(old, new, FULL_ZSTD)
    assert apply_delta(old, delta) == new
    assert apply_delta(old, make_delta(old, new)) == new


@given(top_values())
@settings(max_examples=100, deadline=None)
def test_equal_values_of_any_type_give_the_empty_delta(value: Value) -> None:
    delta = make_delta(value, edgecfg.decode(encode(value)))
    assert len(delta) == HEADER_SIZE
    assert encode(apply_delta(value, delta)) == encode(value)


def test_encode_delta_refuses_an_unknown_kind_and_an_unequal_empty() -> None:
    with pytest.raises(UsageError, match="unknown delta kind"):
        encode_delta({}, {}, 9)
    with pytest.raises(UsageError, match="equal"):
        encode_delta({}, {"a": 1}, EMPTY)


def test_encoded_configurations_are_maps_and_say_so() -> None:
    with pytest.raises(EncodeError, match="is a map"):
        Encoded.of([1, 2])  # type: ignore[arg-type]
    delta = make_delta({"a": 1}, [1])
    assert apply_delta({"a": 1}, delta) == [1]
    with pytest.raises(DeltaError, match="not a configuration map"):
        apply_delta_encoded(Encoded.of({"a": 1}), delta)


def test_classes_need_maps_on_both_sides() -> None:
    with pytest.raises(UsageError, match="maps"):
        make_delta([1], [2], schema=SCHEMA, classes={"critical"})


def json_copy(tree: Tree) -> Tree:
    return edgecfg.decode_tree(encode(tree))


def test_public_api_exports_make_and_apply() -> None:
    delta = edgecfg.make_delta({"a": 1}, {"a": 2})
    assert edgecfg.apply_delta({"a": 1}, delta) == {"a": 2}


# Golden vectors pin the format: a change here breaks devices in the field.
# Header byte 0b10_001_bbb = format 2, kind OPS (1), base check bbb (the top 3
# bits of the base's ETag); then the target check (2 bytes), then the body.
# Format 1 had 0x11 + a whole base-ETag byte: "11eb1d200802" is "8f1d200802"
# now (0xeb >> 5 = 7), with the body (0802) unchanged.
GOLDEN = [
    pytest.param({"a": 1}, {"a": 2}, "8f1d200802", id="set-node1"),
    pytest.param({"a": 1}, {"a": 1, "b": True}, "8f209a020462f5", id="add-literal-key"),
    pytest.param({"a": 1, "b": 2}, {"a": 1}, "8deb9811", id="delete-node2"),
    pytest.param(
        {"s": "hello world!"},
        {"s": "hello there world!"},
        "8ba2220c060666746865726520",
        id="splice-prefix6-suffix6",
    ),
    pytest.param({"l": [1, 2, 3]}, {"l": [1, 9, 2, 3]}, "8bda710d0101000109", id="list-insert"),
    pytest.param({"x": 0.5}, {"x": 0.0125}, "8e7a6908c48223187d", id="decimal-float"),
    pytest.param(
        {"sec": {"k1": 1, "k2": 2, "k3": "abc"}},
        {"sec": {"k1": 1, "k2": 2, "k3": "abc"}, "sec2": {"k1": 1, "k2": 3, "k3": "abc"}},
        "8b67d2070e03013201021003",
        id="copy-with-prefix-key",
    ),
    pytest.param(
        {"old": {"a": 1, "b": 2}}, {"new": {"a": 1, "b": 2}}, "8803f40b0c6e6577", id="rename"
    ),
]


@pytest.mark.parametrize(("old", "new", "hexed"), GOLDEN)
def test_golden_deltas(old: Tree, new: Tree, hexed: str) -> None:
    assert make_delta(old, new).hex() == hexed
    assert apply_delta(old, bytes.fromhex(hexed)) == new


def test_golden_delta_bytes_are_exact() -> None:
    # {"a": 1} -> {"a": 2}: version 2, kind OPS, base check, target check,
    # SET at node 1 (gap 1 << 3 | 0 = 0x08), value 2.
    delta = make_delta({"a": 1}, {"a": 2})
    assert delta[0] == 0b10_001_000 | etag({"a": 1})[0] >> 5
    assert delta[1:3] == etag({"a": 2})[:2]
    assert delta[3:] == bytes([0x08, 0x02])


def test_delete_and_add_and_float_vectors_are_exact() -> None:
    assert make_delta({"a": 1, "b": 2}, {"a": 1})[3:] == bytes([0x11])  # DELETE node 2
    added = make_delta({"a": 1}, {"a": 1, "b": True})[3:]
    assert added == bytes([0x02]) + varint(1 << 2 | 0) + b"b" + bytes([0xF5])  # ADD at root
    compact = make_delta({"x": 0.5}, {"x": 0.0125})[3:]
    assert compact == bytes([0x08]) + bytes.fromhex("c48223187d")  # decimal fraction 125e-4


def test_wrong_base_raises_base_mismatch_with_both_checks() -> None:
    delta = make_delta({"a": 1}, {"a": 2})
    wrong: Tree = next(
        {"a": n} for n in range(2, 99) if etag({"a": n})[0] >> 5 != etag({"a": 1})[0] >> 5
    )
    with pytest.raises(DeltaBaseMismatch) as caught:
        apply_delta(wrong, delta)
    assert caught.value.expected == bytes([etag({"a": 1})[0] >> 5])
    assert caught.value.actual == bytes([etag(wrong)[0] >> 5])


def test_corrupted_target_check_raises_integrity_error() -> None:
    delta = bytearray(make_delta({"a": 1}, {"a": 2}))
    delta[1] ^= 0xFF
    with pytest.raises(DeltaIntegrityError):
        apply_delta({"a": 1}, bytes(delta))


def _sample_delta() -> tuple[Tree, bytes]:
    old: Tree = {
        "net": {"uplink": {"interval_s": 300, "apn": "iot.example"}, "retries": 3},
        "macro": "G28\n" + "G1 X10 Y10\n" * 8,
        "list": [1, 2, 3, 4],
        "section_a": {"k1": 1, "k2": "two", "k3": 3.5},
    }
    new: Tree = {
        "net": {"uplink": {"interval_s": 600, "apn": "iot.example.org"}, "retries": 4},
        "macro": "G28\n" + "G1 X10 Y10\n" * 7 + "G1 X20\n",
        "list": [1, 5, 3, 4, 6],
        "section_b": {"k1": 1, "k2": "two", "k3": 3.5, "k4": None},
    }
    return old, make_delta(old, new)


_SAMPLE_KINDS = [None, OPS, OPS_DEFLATE, OPS_ZSTD_FRAME, FULL_ZSTD]  # None: make_delta picks


def _sample_of_kind(kind: int | None) -> tuple[Tree, bytes]:
    old, delta = _sample_delta()
    if kind is None:
        return old, delta
    return old, encode_delta(old, apply_delta(old, delta), kind)


@pytest.mark.parametrize("kind", _SAMPLE_KINDS)
def test_every_truncation_is_refused_cleanly(kind: int | None) -> None:
    old, delta = _sample_of_kind(kind)
    for end in range(len(delta)):
        with pytest.raises(DeltaError):
            apply_delta(old, delta[:end])


@pytest.mark.parametrize("kind", _SAMPLE_KINDS)
def test_every_single_bit_flip_is_refused_or_harmless(kind: int | None) -> None:
    old, delta = _sample_of_kind(kind)
    target = apply_delta(old, delta)
    for position in range(len(delta)):
        for bit in range(8):
            flipped = bytearray(delta)
            flipped[position] ^= 1 << bit
            try:
                result = apply_delta(old, bytes(flipped))
            except DeltaError:
                continue
            assert encode(result) == encode(target)


@given(st.binary(max_size=64))
@settings(max_examples=500, deadline=None)
def test_random_bodies_only_ever_raise_delta_errors(body: bytes) -> None:
    old: Tree = {"a": {"b": [1, 2, "x"], "c": "text"}, "d": 1.5}
    header = make_delta(old, {"a": 1})[:HEADER_SIZE]
    for kind in range(6):
        crafted = with_kind(header, kind) + body
        with contextlib.suppress(DeltaError):
            apply_delta(old, crafted)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (bytes([0x08]) + bytes.fromhex("9bffffffffffffffff"), "corrupt value"),  # 2**64 items
        (bytes([0x0D]) + b"\xff\xff\xff\xff\x7f", "list run count|ends inside"),
        (bytes([0x0D]) + b"\xff\xff\xff\xff\xff\xff", "longer than 5 bytes"),
        (bytes([0x02]) + b"\xfd\xff\xff\xff\x0f", "key ref"),  # key ref 2**30
        (bytes([0x02, 0x80, 0x00]), "overlong"),
        (bytes([0x07]) + varint(0) + varint(0) + varint(10**9), "runs past the end"),  # COPY
        (bytes([0xF8, 0x7F]) + bytes([0x08, 0x01]), "base has only"),  # op on node 2**12
    ],
)
def test_absurd_declared_lengths_give_clear_errors(body: bytes, message: str) -> None:
    old: Tree = {"a": 1}
    header = make_delta(old, {"a": 2})[:HEADER_SIZE]
    with pytest.raises(DeltaError, match=message):
        apply_delta(old, with_kind(header, OPS) + body)


def test_compressed_size_bomb_is_refused_before_decompressing() -> None:
    old: Tree = {"text": "x" * 4000}
    new: Tree = {"text": "y" * 4000, "more": "z" * 4000}
    delta = make_delta(old, new)
    assert delta_kind(delta) in {"full+zstd", "ops+zstd"}
    with pytest.raises(DeltaError, match="more than 100 bytes"):
        apply_delta(old, delta, limits=DecodeLimits(max_bytes=100))


def test_key_ref_amplification_is_bounded() -> None:
    long_key = "k" * 200
    old: Tree = {long_key: 1}
    # a SET of a map with 300 keys, all refs to the 200-byte key: duplicates are refused
    body = bytes([0x08]) + bytes([0xB9, 0x01, 0x2C]) + b"\x00\x01" * 300
    crafted = make_delta(old, {long_key: 2})[:HEADER_SIZE] + body
    with pytest.raises(DeltaError):
        apply_delta(old, crafted, limits=DecodeLimits(max_bytes=10_000))


def test_unknown_format_version_is_named_and_every_kind_field_value_is_a_kind() -> None:
    delta = bytearray(make_delta({"a": 1}, {"a": 2}))
    delta[0] = 0x11  # format 1 (4-byte header)
    with pytest.raises(DeltaError, match="format version 0; this edgecfg reads 2"):
        apply_delta({"a": 1}, bytes(delta))
    with pytest.raises(DeltaError, match="not an edgecfg delta"):
        delta_kind(bytes(delta))
    assert sorted(KIND_NAMES) == list(range(8))  # the 3-bit field has no unknown value
    delta[0] = 0b10_111_000 | etag({"a": 1})[0] >> 5
    assert delta_kind(bytes(delta)) == "ops+deflate"
    with pytest.raises(DeltaError, match="deflate"):
        apply_delta({"a": 1}, bytes(delta))


def test_full_kind_carries_the_target_for_an_unrelated_base() -> None:
    delta = make_delta({}, {"a": 1})
    assert delta_kind(delta) in ("full", "ops")
    assert apply_delta({}, delta) == {"a": 1}


# ---------------------------------------------------------------- priority classes

SCHEMA: Schema = schema_from_document(
    {
        "name": "t",
        "version": 1,
        "keys": {
            "sec.key": {"id": 1, "type": "str", "priority": "critical"},
            "net.interval": {"id": 2, "type": "int", "priority": "critical"},
            "net.apn": {"id": 3, "type": "str"},
            "scripts": {"id": 4, "type": "map", "priority": "bulk"},
            "free": {"id": 5, "type": "any"},
        },
    }
)

configs = st.fixed_dictionaries(
    {
        "sec": st.fixed_dictionaries({}, optional={"key": st.text(max_size=8)}),
        "net": st.fixed_dictionaries(
            {}, optional={"interval": st.integers(1, 10_000), "apn": st.text(max_size=8)}
        ),
        "scripts": st.dictionaries(st.text(max_size=4), st.text(max_size=30), max_size=3),
    },
    optional={"free": st.integers(-(2**63), 2**63) | st.text(max_size=5)},
)


@given(configs, configs)
@settings(max_examples=200, deadline=None)
def test_critical_delta_then_the_rest_yields_exactly_new(old: Tree, new: Tree) -> None:
    critical = make_delta(old, new, schema=SCHEMA, classes={"critical"})
    middle = apply_delta(old, critical)
    assert isinstance(middle, dict)
    for path in (("sec", "key"), ("net", "interval")):
        assert values_equal(edgecfg_get(middle, path), edgecfg_get(new, path))
    for path in (("net", "apn"), ("free",)):
        assert values_equal(edgecfg_get(middle, path), edgecfg_get(old, path))
    rest = make_delta(middle, new, schema=SCHEMA)
    assert encode(apply_delta(middle, rest)) == encode(new)


def edgecfg_get(tree: Tree, path: tuple[str, ...]) -> Value | UnsetType:
    return get(tree, path)


def test_classes_without_a_schema_are_refused() -> None:
    with pytest.raises(edgecfg.UsageError, match="need a schema"):
        make_delta({"a": 1}, {"a": 2}, classes={"critical"})


def test_unknown_class_names_are_refused() -> None:
    with pytest.raises(edgecfg.UsageError, match="urgent"):
        make_delta({"a": 1}, {"a": 2}, schema=SCHEMA, classes={"urgent"})


# ---------------------------------------------------------------- real configurations


def _corpus_pairs(shared: Path) -> list[tuple[Tree, Tree]]:
    pairs: list[tuple[Tree, Tree]] = []
    for file in sorted((shared / "corpus").glob("*.jsonl")):
        previous: dict[tuple[str, str], Tree] = {}
        for line in file.read_text().splitlines():
            record = json.loads(line)
            key = (record["repo"], record["path"])
            if key in previous:
                pairs.append((previous[key], record["tree"]))
            previous[key] = record["tree"]
    return pairs


def test_every_corpus_pair_round_trips(shared_dir: Path) -> None:
    pairs = _corpus_pairs(shared_dir)
    if not pairs:
        pytest.skip("no corpus in ../shared/corpus")
    for old, new in pairs:
        delta = make_delta(old, new)
        assert encode(apply_delta(old, delta)) == encode(new)
        if values_equal(old, new):
            assert len(delta) == HEADER_SIZE


# ---------------------------------------------------------------- encoded configurations


@given(tree_pairs())
@settings(max_examples=100, deadline=None)
def test_encoded_paths_agree_with_plain_trees(pair: tuple[Tree, Tree]) -> None:
    old, new = pair
    base, target = Encoded.of(old), Encoded.of(new)
    delta = make_delta(base, target)
    assert delta == make_delta(old, new)
    assert delta == make_delta(base, new) == make_delta(old, target)
    result = apply_delta_encoded(base, delta)
    assert result.cbor == target.cbor
    assert result.etag == etag(new)


def test_encoded_from_non_canonical_bytes_is_canonical() -> None:
    # {"b": 1, "a": 2} with keys out of order and 1 written in a 2-byte head
    loose = bytes.fromhex("a261621801616102")
    config = Encoded.from_bytes(loose)
    assert config.cbor == encode({"a": 2, "b": 1})
    assert config.etag == etag({"a": 2, "b": 1})


# ---------------------------------------------------------------- format 2 details


def test_compressed_kinds_carry_one_block_without_frame_and_block_headers() -> None:
    old: Tree = {f"section {n}": {"pin": f"PA{n}", "speed": n * 10} for n in range(40)}
    new: Tree = {**old, **{f"extra {n}": {"pin": f"PB{n}", "note": "x" * n} for n in range(9)}}
    block, frame = encode_delta(old, new, FULL_ZSTD), encode_delta(old, new, FULL_ZSTD_FRAME)
    # the frame: descriptor 0x00, window descriptor, 3-byte block header, then the block
    assert frame[HEADER_SIZE] == 0x00
    assert frame[HEADER_SIZE + 5 :] == block[HEADER_SIZE:]
    assert len(block) == len(frame) - 5
    assert apply_delta(old, block) == new
    assert apply_delta(old, frame) == new


_STEPPERS: Tree = {
    f"stepper_{axis}": {"step_pin": f"PA{n}", "dir_pin": f"PB{n}", "enable_pin": "!PC0",
                        "microsteps": 16}
    for n, axis in enumerate("xyz")
}  # fmt: skip
_REMAPPED: Tree = {
    f"stepper_{axis}": {"step_pin": f"PD{n + 3}", "dir_pin": f"!PE{n + 1}", "enable_pin": "!PC0",
                        "microsteps": 32}
    for n, axis in enumerate("xyz")
}  # fmt: skip


def test_ops_deflate_golden_vector() -> None:
    # kind 7: the OPS body as raw deflate primed with the base's canonical CBOR
    hexed = "b89c9713008ab81a722407b8180b4828807946209e098c670ce299027900"
    assert make_delta(_STEPPERS, _REMAPPED).hex() == hexed
    assert apply_delta(_STEPPERS, bytes.fromhex(hexed)) == _REMAPPED
    body = bytes.fromhex(hexed)[HEADER_SIZE:]
    # raw deflate (no zlib header), the base's encoding as preset dictionary
    ops_body = zlib.decompressobj(-15, zdict=encode(_STEPPERS)).decompress(body)
    ops = decode_ops(ops_body, KeyBook(_STEPPERS), DEFAULT_LIMITS)
    assert apply_ops(_STEPPERS, ops) == _REMAPPED


def test_ops_deflate_uses_the_last_32_kib_of_a_large_base() -> None:
    old: Tree = {f"section {n:04}": {"pin": f"PA{n}", "text": f"line {n} " * 6} for n in range(900)}
    new: Tree = {**old, "section 0899": {"pin": "PZ9", "text": "line 899 " * 5 + "changed"}}
    new["section 0001"] = {"pin": "PY1", "text": "line 1 " * 5 + "changed too"}
    assert len(encode(old)) > 32 * 1024
    delta = encode_delta(old, new, OPS_DEFLATE)
    assert encode(apply_delta(old, delta)) == encode(new)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        pytest.param(lambda body: body + b"\x00", "1 bytes after its stream", id="trailing"),
        pytest.param(lambda body: body[:-2], "ends inside its stream", id="truncated"),
        pytest.param(lambda body: b"\xff" + body, "corrupt deflate", id="corrupt"),
    ],
)
def test_a_malformed_deflate_body_is_refused(
    mangle: Callable[[bytes], bytes], message: str
) -> None:
    delta = encode_delta(_STEPPERS, _REMAPPED, OPS_DEFLATE)
    crafted = delta[:HEADER_SIZE] + mangle(delta[HEADER_SIZE:])
    with pytest.raises(DeltaError, match=message):
        apply_delta(_STEPPERS, crafted)


def test_a_deflate_bomb_is_refused_before_it_inflates() -> None:
    header = encode_delta(_STEPPERS, _REMAPPED, OPS_DEFLATE)[:HEADER_SIZE]
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = bomb.compress(bytes(1_000_000)) + bomb.flush()
    with pytest.raises(DeltaError, match="beyond 10000 bytes"):
        apply_delta(_STEPPERS, header + body, limits=DecodeLimits(max_bytes=10_000))


def test_a_frame_with_bytes_after_it_is_refused() -> None:
    old: Tree = {"text": "abc " * 200}
    new: Tree = {"text": "abd " * 200}
    frame = encode_delta(old, new, FULL_ZSTD_FRAME)
    with pytest.raises(DeltaError, match="1 bytes after its frame"):
        apply_delta(old, frame + b"\x00")


def test_an_oversized_block_is_refused() -> None:
    header = make_delta({"a": 1}, {"a": 2})[:HEADER_SIZE]
    with pytest.raises(DeltaError, match="exceeds"):
        apply_delta({"a": 1}, with_kind(header, FULL_ZSTD) + bytes(128 * 1024 + 1))


def test_repeated_new_keys_and_values_are_sent_once() -> None:
    old: Tree = {f"stepper_{axis}": {"step_pin": f"P{axis}"} for axis in "xyz"}
    new: Tree = {
        f"stepper_{axis}": {
            "step_pin": f"P{axis}", "microsteps_per_turn": 999999, "rotation_distance": 40.25
        }
        for axis in "xyz"
    }  # fmt: skip
    delta = encode_delta(old, new, OPS)
    body = delta[HEADER_SIZE:]
    assert body.count(b"microsteps_per_turn") == 1
    assert body.count(bytes.fromhex("1a000f423f")) == 1  # 999999 once, then value refs
    assert bytes([0xC6, 0x00]) in body
    assert apply_delta(old, delta) == new


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (bytes([0x08, 0xC6, 0x05]), "value ref 5"),  # SET node 1 to value #5 of none
        (bytes([0x08, 0xC6, 0x61]), "value ref"),  # the index is text
        (bytes([0x08, 0xC6]), "value ref"),  # truncated
        (bytes([0x02, 0x0D]), "key ref 3"),  # ADD with key ref 3: base has 1 key
    ],
)
def test_refs_beyond_what_was_said_are_refused(body: bytes, message: str) -> None:
    header = make_delta({"a": 1}, {"a": 2})[:HEADER_SIZE]
    with pytest.raises(DeltaError, match=message):
        apply_delta({"a": 1}, with_kind(header, OPS) + body)


def test_value_refs_cannot_amplify_a_delta_without_bound() -> None:
    old: Tree = {"l": []}
    big = "v" * 1000
    # LIST edit of node 1: one run inserting the big text, then 200 refs to it
    body = bytes([0x0D, 0x01, 0x00, 0x00]) + varint(201) + encode(big)
    body += bytes([0xC6, 0x00]) * 200
    crafted = with_kind(make_delta(old, {"l": [1]})[:HEADER_SIZE], OPS) + body
    with pytest.raises(DeltaError, match="value refs expand beyond"):
        apply_delta(old, crafted, limits=DecodeLimits(max_bytes=50_000))


# ---------------------------------------------------------------- spliced encodings


@given(value_pairs())
@settings(max_examples=300, deadline=None)
def test_spliced_encodings_equal_full_encodings(pair: tuple[Value, Value]) -> None:
    old, new = pair
    diffed = diff_traced(old, new)
    parts: dict[int, bytes] = {}
    assert encode_reusing(old, {id(n) for n in diffed.base_visited}, parts) == encode(old)
    assert encode_reusing(new, {id(n) for n in diffed.target_visited}, parts) == encode(new)
    applied = apply_traced(old, diffed.ops)
    parts = {}
    assert encode_reusing(old, {id(n) for n in applied.rebuilt}, parts) == encode(old)
    assert encode_reusing(applied.result, {id(n) for n in applied.built}, parts) == encode(new)


@pytest.mark.parametrize(
    "new",
    [
        {"a": (1, 2)},
        {"a": 1, "b": {1, 2}},
        {"a": 1, "b": [1, (2,)]},
        {"a": 1, "l": [1, 2, (3,)]},
        {"a": 1, 7: "int key"},
        {"a": 1, "s": "\udc80"},
    ],
)
def test_make_delta_refuses_a_target_outside_the_model(new: object) -> None:
    old: Tree = {"a": 1, "l": [1, 2], "s": "text"}
    with pytest.raises(EncodeError):
        make_delta(old, new)  # type: ignore[arg-type]


def test_make_delta_refuses_a_base_outside_the_model() -> None:
    with pytest.raises(EncodeError):
        make_delta({"a": (1,)}, {"a": [1]})  # type: ignore[dict-item]


def test_a_wrong_plain_base_is_named_even_when_the_operations_do_not_fit_it() -> None:
    old: Tree = {"a": {"b": {"c": 1}}}
    delta = make_delta(old, {"a": {"b": {"c": 2}}})
    wrong: Tree = next({"z": n} for n in range(99) if etag({"z": n})[0] >> 5 != etag(old)[0] >> 5)
    with pytest.raises(DeltaBaseMismatch):
        apply_delta(wrong, delta)


@given(value_pairs())
@settings(max_examples=200, deadline=None)
def test_parts_sliced_from_the_base_bytes_are_the_encodings(pair: tuple[Value, Value]) -> None:
    old, new = pair
    applied = apply_traced(old, diff_traced(old, new).ops)
    parts: dict[int, bytes] = {}
    assert parts_from_bytes(old, encode(old), {id(n) for n in applied.rebuilt}, parts) == b""
    for node in applied.rebuilt:
        if id(node) in parts:
            assert parts[id(node)] == encode(node)
    assert encode_reusing(applied.result, {id(n) for n in applied.built}, parts) == encode(new)


def test_parts_from_bytes_notices_bytes_of_another_value() -> None:
    value: Value = {"a": [1, 2], "b": {"c": 1}}
    inner = cast(dict[str, Value], value["b"])
    parts: dict[int, bytes] = {}
    other = encode({"a": [1, 2], "x": {"c": 1}})
    assert parts_from_bytes(value, other, {id(value)}, parts) is None
    assert parts_from_bytes(value, encode({"a": [1]}), {id(value)}, {}) is None
    assert parts_from_bytes(value, encode([1, 2]), {id(value)}, {}) is None
    truncated = encode({"a": [1, 2], "b": {"c": 1}})[:-1]
    assert parts_from_bytes(value, truncated, {id(value), id(inner)}, {}) is None
    assert parts_from_bytes(value, b"", set(), {}) == b""  # nothing to descend into
    # the root's last entry taken whole, its key included
    whole = parts_from_bytes(value, encode(value), {id(value)}, {}, root_tail=1)
    assert whole == encode({"b": {"c": 1}})[1:]


# ---------------------------------------------------------------- what is known of a base


def _preorder(value: Value) -> list[Value]:
    nodes = [value]
    if isinstance(value, dict):
        for key in canonical_keys(tuple(value)):
            nodes += _preorder(value[key])
    elif isinstance(value, list):
        for item in value:
            nodes += _preorder(item)
    return nodes


@given(top_values())
@settings(max_examples=300, deadline=None)
def test_node_lengths_measure_each_nodes_encoding(value: Value) -> None:
    data = encode(value)
    lengths = node_lengths(data)
    nodes = _preorder(value)
    assert len(lengths) == len(nodes)
    assert lengths[0] == len(data)
    for node, length in zip(nodes, lengths, strict=True):
        assert length == len(encode(node))
    # One pass gives the size table too, the one a walk of the value gives.
    assert node_tables(data) == (size_table(value), lengths)


@pytest.mark.parametrize("data", [b"\x82\x01", b"\xa1\x61", b"\x01\x02", b"\x1c"])
def test_node_lengths_refuse_malformed_bytes(data: bytes) -> None:
    with pytest.raises(DecodeError):
        node_lengths(data)


@given(value_pairs())
@settings(max_examples=200, deadline=None)
def test_parts_sliced_with_tables_equal_parts_sliced_by_decoding(
    pair: tuple[Value, Value],
) -> None:
    old, new = pair
    applied = apply_traced(old, diff_traced(old, new).ops)
    rebuilt = {id(n) for n in applied.rebuilt}
    data = encode(old)
    decoded: dict[int, bytes] = {}
    tabled: dict[int, bytes] = {}
    tables = (size_table(old), node_lengths(data))
    for tail in (0, 1):
        assert parts_from_bytes(old, data, rebuilt, tabled, root_tail=tail, tables=tables) == (
            parts_from_bytes(old, data, rebuilt, decoded, root_tail=tail)
        )
        assert tabled == decoded
    assert encode_reusing(applied.result, {id(n) for n in applied.built}, tabled) == encode(new)


def test_content_keys_keep_exact_types_apart() -> None:
    distinct: list[Value] = [
        [1],
        1,
        1.0,
        True,
        0.0,
        -0.0,
        "1",
        b"1",
        {"a": 1, "b": 2},
        {"b": 2, "a": 1},
    ]
    keys = [content_key(value) for value in distinct]
    assert None not in keys
    assert len(set(keys)) == len(keys)
    assert content_key((1,)) != content_key([1])  # type: ignore[arg-type]

    class Text(str):
        pass

    assert content_key({Text("a"): 1}) is None  # type: ignore[dict-item]


@given(value_pairs())
@settings(max_examples=150, deadline=None)
def test_a_base_met_again_gives_the_same_deltas_and_results(pair: tuple[Value, Value]) -> None:
    old, new = pair
    forget_bases()
    deltas = [make_delta(old, new) for _ in range(3)]  # the third uses the tables
    assert deltas[0] == deltas[1] == deltas[2]
    for _ in range(3):
        assert values_equal(apply_delta(old, deltas[0]), new)
    if isinstance(old, dict) and isinstance(new, dict):
        base = Encoded(old, encode(old), etag(old))
        for _ in range(3):
            assert apply_delta_encoded(base, deltas[0]).cbor == encode(new)


def test_a_base_changed_in_place_between_calls_is_another_base() -> None:
    forget_bases()
    old: Tree = {"a": {"b": 1, "c": [1, 2]}, "d": "text"}
    new: Tree = {"a": {"b": 2, "c": [1, 2]}, "d": "text"}
    delta = make_delta(old, new)
    for _ in range(3):
        assert apply_delta(old, delta) == new
    cast(dict[str, Value], old["a"])["c"] = [1, 2, 3]  # same objects, another content
    with pytest.raises((DeltaBaseMismatch, DeltaIntegrityError)):
        apply_delta(old, delta)
    changed = {"a": {"b": 2, "c": [1, 2, 3]}, "d": "text"}
    assert apply_delta(old, make_delta(old, changed)) == changed


def test_a_checked_base_does_not_vouch_for_a_tuple_in_its_place() -> None:
    forget_bases()
    make_delta({"a": [1]}, {"a": [2]})
    make_delta({"a": [1]}, {"a": [2]})
    with pytest.raises(EncodeError):
        make_delta({"a": (1,)}, {"a": [2]})  # type: ignore[dict-item]


@given(value_pairs())
@settings(max_examples=100, deadline=None)
def test_a_kept_zstd_dictionary_compresses_as_a_fresh_one(pair: tuple[Value, Value]) -> None:
    old, new = pair
    forget_bases()
    made = [make_delta(old, new) for _ in range(2)]  # the second with the digested dictionary
    kind = made[0][0] >> 3 & 7
    if kind in (OPS_ZSTD, FULL_ZSTD, OPS_ZSTD_FRAME, FULL_ZSTD_FRAME):
        assert made[0] == made[1] == encode_delta(old, new, kind)  # encode_delta keeps nothing


def test_a_kept_zstd_dictionary_compresses_a_large_change_as_a_fresh_one() -> None:
    forget_bases()
    old: Tree = {
        f"section {i}": {f"option_{j}": f"value {i}.{j}" for j in range(8)} for i in range(40)
    }
    new: Tree = {**old, **{f"new {i}": {"text": f"line {i} of a new macro " * 4} for i in range(6)}}
    made = [make_delta(old, new) for _ in range(3)]
    kind = made[0][0] >> 3 & 7
    assert kind in (OPS_ZSTD, FULL_ZSTD)
    assert made[0] == made[1] == made[2] == encode_delta(old, new, kind)
    assert apply_delta(old, made[2]) == new


@st.composite
def _histories(draw: st.DrawFn) -> list[Value]:
    """Versions of one value, each an edit of the one before (sometimes unrelated)."""
    first, second = draw(value_pairs())
    history = [first, second]
    for _ in range(draw(st.integers(1, 4))):
        previous = history[-1]
        if isinstance(previous, dict) and draw(st.integers(0, 4)):
            history.append(draw(edited(previous)))
        else:
            history.append(draw(top_values()))
    return history


@given(_histories())
@settings(max_examples=150, deadline=None)
def test_a_device_applying_each_delta_to_the_last_result_gets_every_version(
    history: list[Value],
) -> None:
    # The gateway makes each delta from the version before; the device, its
    # own copy decoded from bytes, applies each to the result of the last.
    forget_bases()
    deltas = [make_delta(old, new) for old, new in itertools.pairwise(history)]
    forget_bases()
    held = decode(encode(history[0]))
    for delta, new in zip(deltas, history[1:], strict=True):
        held = apply_delta(held, delta)
        assert encode(held) == encode(new)


@given(_histories())
@settings(max_examples=150, deadline=None)
def test_a_results_derived_tables_equal_the_tables_of_its_own_walk(
    history: list[Value],
) -> None:
    forget_bases()
    held = decode(encode(history[0]))
    for new in history[1:]:
        delta = make_delta(held, new)
        held = apply_delta(held, delta)
        known = _Known.keyed(held)[0]  # met as a base: what it inherited is derived now
        assert known.cbor in (None, encode(held))  # None: a base met often, no chain
        if known.sizes is not None:
            assert list(known.sizes) == size_table(held)
            assert known.lengths is not None
            assert list(known.lengths) == node_lengths(encode(held))
        if known.key_counts is not None:
            assert {k: n for k, n in known.key_counts.items() if n} == key_counts(held)


def test_a_result_changed_in_place_is_another_base() -> None:
    forget_bases()
    old: Tree = {"a": {"b": 1, "c": [1, 2]}, "d": "text"}
    new: Tree = {"a": {"b": 2, "c": [1, 2]}, "d": "text"}
    newer: Tree = {"a": {"b": 3, "c": [1, 2]}, "d": "text"}
    result = apply_delta(old, make_delta(old, new))
    onward = make_delta(new, newer)
    cast(dict[str, Value], result["a"])["b"] = 5  # type: ignore[index]
    with pytest.raises((DeltaBaseMismatch, DeltaIntegrityError)):
        apply_delta(result, onward)


def _chain_versions() -> list[Tree]:
    """Seven versions, each a few sections changed (and every other one a key added)."""
    versions: list[Tree] = [
        {f"section {i}": {"pin": f"PA{i}", "speed": i, "list": [i, i + 1]} for i in range(20)}
    ]
    for step in range(6):
        later = dict(versions[-1])
        later[f"section {step * 3}"] = {"pin": f"PB{step}", "speed": step, "list": [step]}
        if step % 2:
            later[f"new {step}"] = {"pin": "PC0"}  # keys change: counts follow
        versions.append(later)
    return versions


def _assert_derived_tables(value: Value) -> None:
    """``value``, met as a base for the first time now, has all its tables, derived."""
    known = _Known.keyed(value)[0]
    assert known.met == 1  # no walk built these
    assert list(known.sizes or ()) == size_table(value)
    assert list(known.lengths or ()) == node_lengths(encode(value))
    assert known.key_counts is not None
    assert {k: n for k, n in known.key_counts.items() if n} == key_counts(value)


def test_each_result_of_a_chain_inherits_its_bases_tables() -> None:
    forget_bases()
    versions = _chain_versions()
    held: Value = decode(encode(versions[0]))
    for old, new in itertools.pairwise(versions):
        held = apply_delta(held, make_delta(old, new))
    _assert_derived_tables(held)


def test_each_target_of_a_gateways_chain_inherits_its_bases_tables() -> None:
    # The gateway makes each delta from the target of the one before: from
    # the third link on, the base's tables are derived from the last base's.
    forget_bases()
    versions = _chain_versions()
    deltas = [make_delta(old, new) for old, new in itertools.pairwise(versions)]
    _assert_derived_tables(versions[-1])
    forget_bases()
    held: Value = decode(encode(versions[0]))
    for delta, new in zip(deltas, versions[1:], strict=True):
        held = apply_delta(held, delta)
        assert encode(held) == encode(new)


@given(_histories())
@settings(max_examples=150, deadline=None)
def test_a_made_targets_derived_tables_equal_the_tables_of_its_own_walk(
    history: list[Value],
) -> None:
    forget_bases()
    for old, new in itertools.pairwise(history):
        delta = make_delta(old, new)
        known = _Known.keyed(new)[0]  # met as the next base: derived now, if at all
        assert encode(apply_delta(old, delta)) == encode(new)
        if known.sizes is not None:
            assert list(known.sizes) == size_table(new)
            assert list(known.lengths or ()) == node_lengths(encode(new))
        if known.key_counts is not None:
            assert {k: n for k, n in known.key_counts.items() if n} == key_counts(new)


@pytest.mark.parametrize("edit", ["kept", "replaced"])
def test_a_base_changed_in_place_after_a_make_gives_its_target_true_tables(edit: str) -> None:
    forget_bases()
    versions: list[Tree] = [{f"s{i}": {"rate": i, "pins": [i, i + 1]} for i in range(12)}]
    for step in range(3):
        later = dict(versions[-1])
        later[f"s{step}"] = {"rate": -step, "pins": [step]}
        versions.append(later)
    for old, new in itertools.pairwise(versions):
        make_delta(old, new)  # the last target's tables wait to be derived from its base
    base, target = versions[-2], versions[-1]
    # The target is as made; only the base changes, where the delta kept its
    # section or where it edited one.
    if edit == "kept":
        base["s9"] = {"rate": 99, "extra": [1, 2, 3]}
    else:
        base["s2"] = {"other": "x" * 40}
    known = _Known.keyed(target)[0]
    if known.sizes is not None:  # derived only where they describe the target's bytes
        assert list(known.sizes) == size_table(target)
        assert list(known.lengths or ()) == node_lengths(encode(target))
    onward = {**target, "s7": {"rate": 7, "pins": []}}
    assert apply_delta(target, make_delta(target, onward)) == onward


@given(value_pairs())
@settings(max_examples=100, deadline=None)
def test_make_delta_takes_the_smaller_of_the_zstd_levels_and_each_applies(
    pair: tuple[Value, Value],
) -> None:
    old, new = pair
    chosen = make_delta(old, new)
    for level in (19, 2):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(delta_module, "_levels", lambda _size, level=level: (level,))
            single = make_delta(old, new)
        assert len(chosen) <= len(single)
        assert encode(apply_delta(old, single)) == encode(new)
    assert encode(apply_delta(old, chosen)) == encode(new)


@given(_histories())
@settings(max_examples=100, deadline=None)
def test_an_agent_applying_each_delta_to_its_last_encoded_config_gets_every_version(
    history: list[Value],
) -> None:
    maps = [version for version in history if isinstance(version, dict)]
    if len(maps) < 2:
        return
    deltas = [make_delta(old, new) for old, new in itertools.pairwise(maps)]
    forget_bases()
    held = Encoded.from_bytes(encode(maps[0]))
    for delta, new in zip(deltas, maps[1:], strict=True):
        held = apply_delta_encoded(held, delta)
        assert held.cbor == encode(new)
        known = _Known.keyed(Encoded.from_bytes(held.cbor))[0]  # as the store reads it back
        if known.sizes is not None:
            assert list(known.sizes) == size_table(held.tree)
            assert list(known.lengths or ()) == node_lengths(held.cbor)


def test_a_chain_of_applies_leaves_no_cycles_for_the_collector() -> None:
    # Each apply's walks free what they hold by reference counts: garbage
    # cycles (recursive closures holding their tables) were collected in
    # passes of 1-5 ms that landed in whichever later apply triggered them.
    versions: list[Value] = [
        {f"s{i}": {"rate": i, "name": f"n{i}", "pins": [i, i + 1]} for i in range(30)}
    ]
    for step in range(8):
        new = dict(cast(dict[str, Value], versions[-1]))
        new[f"s{step * 3}"] = {"rate": -step, "name": "x" * step, "pins": [step]}
        new[f"t{step}"] = {"added": step}
        versions.append(new)
    deltas = [make_delta(old, new) for old, new in itertools.pairwise(versions)]
    forget_bases()
    held = decode(encode(versions[0]))
    for delta in deltas[:2]:  # the second meeting builds the tables the rest derive
        held = apply_delta(held, delta)
    gc.collect()
    gc.disable()
    try:
        for delta in deltas[2:]:
            held = apply_delta(held, delta)
        assert gc.collect() == 0
    finally:
        gc.enable()
    assert encode(held) == encode(versions[-1])
    known = _Known.keyed(held)[0]
    assert known.sizes is not None  # the chain ran with its tables derived
