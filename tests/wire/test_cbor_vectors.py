"""The strict decoder against the cbor-wg test vectors (../shared/vectors/cbor-wg,
read by tests/wire/cbor_vectors.py): only the ``encoded`` inputs go to
:func:`edgecfg.decode`.  ``encodeOptions``/``decodeOptions`` concern other
codecs' settings and are ignored.

Everything skips cleanly when ../shared is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from edgecfg import DecodeError, decode, encode
from edgecfg.core.tree import INT_MAX, INT_MIN, Value, values_equal
from edgecfg.wire.cbor import DEFAULT_LIMITS
from tests.wire.cbor_vectors import (
    APPENDIX_A,
    APPENDIX_A_VECTORS,
    BAD_VECTORS,
    GOOD_VECTORS,
    Vector,
    load_suite,
)

# Appendix A suites whose every input is outside the model for a reason the
# decoded value does not show (it is de-streamed), with the reason expected.
REJECTED_SUITES = {"streaming.cbor": "indefinite-length item"}


def _params(vectors: list[Vector]) -> list[Any]:
    return [
        pytest.param(v, id=f"{v.suite.removesuffix('.cbor')}-{v.index}-{v.encoded.hex()[:16]}")
        for v in vectors
    ]


def in_model(value: object) -> bool:
    """True when ``value`` (as cbor2 decoded it from a suite) is a configuration value."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is int:
            if not INT_MIN <= cast(int, item) <= INT_MAX:
                return False
        elif kind is list:
            stack.extend(cast(list[object], item))
        elif kind is dict:
            entries = cast(dict[object, object], item)
            if not all(type(key) is str for key in entries):
                return False
            stack.extend(entries.values())
        elif kind not in (float, bool, str, bytes, type(None)):
            return False
    return True


def nesting(value: object) -> int:
    """How many arrays/maps deep ``value`` goes."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list):
            stack.extend((child, depth + 1) for child in cast(list[object], item))
            deepest = max(deepest, depth + 1)
        elif isinstance(item, dict):
            stack.extend((child, depth + 1) for child in cast(dict[object, object], item).values())
            deepest = max(deepest, depth + 1)
    return deepest


def assert_rejected_as_outside_the_model(data: bytes, error: DecodeError) -> None:
    """The rejection names a model rule and its offset points at the culprit."""
    assert 0 <= error.offset < len(data), error
    initial = data[error.offset]
    major, info = initial >> 5, initial & 0x1F
    reason = error.reason
    if reason.startswith("tag "):
        assert major == 6, error
    elif reason.startswith("undefined"):
        assert initial == 0xF7, error
    elif reason.startswith("simple value"):
        assert major == 7, error
    elif reason.startswith("map key is not a text string"):
        assert major != 3, error
    elif reason.startswith("indefinite-length item"):
        assert info == 31, error
    elif reason.startswith("nesting deeper than"):
        assert major in (4, 5), error
    else:
        pytest.fail(f"rejected for a reason other than the model: {error}")


# ---------------------------------------------------------------- Appendix A


@pytest.mark.parametrize("vector", _params(APPENDIX_A_VECTORS))
def test_appendix_a_example_decodes_inside_the_model_and_is_rejected_outside(
    shared_dir: Path, vector: Vector
) -> None:
    assert vector.has_decoded
    expected_reason = REJECTED_SUITES.get(vector.suite)
    if expected_reason is None and in_model(vector.decoded):
        value = decode(vector.encoded)
        assert values_equal(value, cast(Value, vector.decoded))
        if vector.roundtrip:
            # RFC 8949 preferred serialization: a canonical input re-encodes to itself
            assert encode(value) == vector.encoded
        else:
            assert len(encode(value)) < len(vector.encoded)
    else:
        with pytest.raises(DecodeError) as caught:
            decode(vector.encoded)
        assert_rejected_as_outside_the_model(vector.encoded, caught.value)
        assert not caught.value.reason.startswith("nesting")
        if expected_reason is not None:
            assert caught.value.reason.startswith(expected_reason)


def test_appendix_a_suites_are_all_present_and_classified(shared_dir: Path) -> None:
    assert {v.suite for v in APPENDIX_A_VECTORS} == set(APPENDIX_A)
    accepted = [
        v for v in APPENDIX_A_VECTORS if v.suite not in REJECTED_SUITES and in_model(v.decoded)
    ]
    assert len(APPENDIX_A_VECTORS) == 81
    assert len(accepted) == 58  # ints, bytes, text, arrays, text-keyed maps, floats, bools, null


# ---------------------------------------------------------------- bad.cbor


@pytest.mark.parametrize("vector", _params(BAD_VECTORS))
def test_bad_input_is_rejected_with_decode_error(shared_dir: Path, vector: Vector) -> None:
    assert vector.fail
    with pytest.raises(DecodeError) as caught:
        decode(vector.encoded)
    assert 0 <= caught.value.offset <= len(vector.encoded)


def test_bad_suite_has_47_inputs_and_every_one_is_rejected(shared_dir: Path) -> None:
    assert len(BAD_VECTORS) == 47
    rejected = 0
    for vector in BAD_VECTORS:
        try:
            decode(vector.encoded)
        except DecodeError:
            rejected += 1
    assert rejected == 47


# ---------------------------------------------------------------- good.cbor


def check_well_formed(vector: Vector, *, check_roundtrip: bool) -> None:
    """Decode, or be rejected only for the model or for depth; never anything else."""
    try:
        value = decode(vector.encoded)
    except DecodeError as error:
        assert_rejected_as_outside_the_model(vector.encoded, error)
        if error.reason.startswith("nesting"):
            assert nesting(vector.decoded) > DEFAULT_LIMITS.max_depth
        return
    assert vector.has_decoded and in_model(vector.decoded), "accepted a value outside the model"
    assert values_equal(value, cast(Value, vector.decoded))
    if check_roundtrip and vector.roundtrip:
        assert encode(value) == vector.encoded


@pytest.mark.parametrize("vector", _params(GOOD_VECTORS))
def test_good_input_decodes_or_is_rejected_only_as_outside_the_model_or_too_deep(
    shared_dir: Path, vector: Vector
) -> None:
    assert not vector.fail
    check_well_formed(vector, check_roundtrip=True)


def test_good_suite_decodes_every_in_model_input_of_bounded_depth(shared_dir: Path) -> None:
    assert GOOD_VECTORS
    bounded = [
        v
        for v in GOOD_VECTORS
        if in_model(v.decoded) and nesting(v.decoded) <= DEFAULT_LIMITS.max_depth
    ]
    assert len(bounded) >= 70
    for vector in bounded:
        decode(vector.encoded)


# ---------------------------------------------------------------- spike.cbor


def test_spike_inputs_raise_nothing_but_decode_error(shared_dir: Path) -> None:
    vectors = load_suite(shared_dir, "spike/spike.cbor")
    assert len(vectors) == 1165
    failures: list[str] = []
    for vector in vectors:
        try:
            # NaN payloads collapse to the one canonical NaN, so spike's
            # "roundtrip" does not hold for them: only values are compared.
            check_well_formed(vector, check_roundtrip=False)
        except Exception as error:  # collect every failure, not just the first
            failures.append(
                f"{vector.index} {vector.encoded.hex()}: {type(error).__name__} {error}"
            )
    assert failures == []
