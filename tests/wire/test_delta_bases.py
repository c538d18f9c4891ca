"""Roles that keep their delta bases apart (``bases_of``): one process playing a
gateway and its devices meets bases as two processes would."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

import edgecfg.wire.delta as delta_module
from edgecfg.core.tree import Tree
from edgecfg.wire.cbor import Encoded
from edgecfg.wire.delta import (
    BaseCache,
    apply_delta_encoded,
    bases_of,
    forget_bases,
    make_delta,
)


def _config(value: int, size: int = 60) -> Tree:
    return {"net": {"interval_s": value}, "keys": {f"k{n:03d}": n for n in range(size)}}


def _process_cache_size() -> int:
    return delta_module._CACHES[0].known.cache_info().currsize  # pyright: ignore[reportPrivateUsage]


def test_a_device_s_meetings_stay_in_its_own_cache() -> None:
    old, new = Encoded.trusted(_config(1)), Encoded.trusted(_config(2))
    delta = make_delta(old, new)
    forget_bases()  # room for new entries: a full cache would not grow either way
    before = _process_cache_size()
    device = BaseCache()
    with bases_of(device):
        result = apply_delta_encoded(old, delta)
    assert result.etag == new.etag
    assert device.known.cache_info().currsize >= 1
    assert _process_cache_size() == before


def test_the_process_cache_is_back_after_a_failing_call() -> None:
    device = BaseCache()
    with pytest.raises(RuntimeError), bases_of(device):
        assert delta_module._CACHES[-1] is device  # pyright: ignore[reportPrivateUsage]
        raise RuntimeError("the apply failed")
    assert delta_module._CACHES[-1] is not device  # pyright: ignore[reportPrivateUsage]
    assert len(delta_module._CACHES) == 1  # pyright: ignore[reportPrivateUsage]


@given(st.lists(st.integers(0, 10_000), min_size=2, max_size=6))
def test_a_chain_applies_the_same_in_a_role_s_cache_as_in_the_process_s(values: list[int]) -> None:
    versions = [Encoded.trusted(_config(v)) for v in values]
    deltas = [make_delta(a, b) for a, b in itertools.pairwise(versions)]
    plain, apart = versions[0], versions[0]
    device = BaseCache()
    for delta in deltas:
        plain = apply_delta_encoded(plain, delta)
        with bases_of(device):
            apart = apply_delta_encoded(apart, delta)
        assert apart.cbor == plain.cbor and apart.etag == plain.etag
    assert apart.etag == versions[-1].etag
