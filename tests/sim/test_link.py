"""The lossy-link policy: pure, seeded decisions per datagram (no sockets, no clock)."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re

import pytest

from edgecfg.errors import UsageError
from edgecfg.sim.link import (
    LOSSY_30,
    NB_IOT_GOOD,
    NB_IOT_POOR,
    PERFECT,
    PRESETS,
    DirectionStats,
    LinkModel,
    LinkProfile,
    preset,
)

N = 20_000


def _decide_many(model: LinkModel, count: int, *, step: float = 0.001) -> list[tuple[float, ...]]:
    return [model.decide(i * step, "up") for i in range(count)]


def test_lossless_link_delivers_each_datagram_once_within_delay_and_jitter() -> None:
    model = LinkModel(LinkProfile(delay_s=0.1, jitter_s=0.05), seed=1)
    decisions = _decide_many(model, 1000)
    assert all(len(d) == 1 for d in decisions)
    delays = [d[0] for d in decisions]
    assert all(0.1 <= delay <= 0.15 for delay in delays)
    assert max(delays) - min(delays) > 0.04  # the jitter is actually used
    assert model.stats().up == DirectionStats(sent=1000)


def test_perfect_link_delivers_at_once() -> None:
    model = LinkModel(PERFECT, seed=0)
    assert {model.decide(float(i), "down") for i in range(100)} == {(0.0,)}


def test_total_loss_delivers_nothing() -> None:
    model = LinkModel(LinkProfile(loss=1.0, duplicate=1.0), seed=3)
    assert all(d == () for d in _decide_many(model, 1000))
    stats = model.stats().up
    assert (stats.sent, stats.dropped, stats.delivered, stats.duplicated) == (1000, 1000, 0, 0)


@pytest.mark.parametrize(("loss", "duplicate"), [(0.3, 0.0), (0.1, 0.01), (0.005, 0.2), (0.5, 0.5)])
def test_observed_loss_and_duplicate_rates_match_the_profile(loss: float, duplicate: float) -> None:
    model = LinkModel(LinkProfile(loss=loss, duplicate=duplicate), seed=42)
    decisions = _decide_many(model, N)
    dropped = sum(1 for d in decisions if not d)
    duplicated = sum(1 for d in decisions if len(d) == 2)
    assert abs(dropped / N - loss) <= 0.02
    assert abs(duplicated / (N - dropped) - duplicate) <= 0.02
    stats = model.stats().up
    assert (stats.sent, stats.dropped, stats.duplicated) == (N, dropped, duplicated)
    assert stats.delivered == sum(len(d) for d in decisions)


def test_duplicate_copy_arrives_slightly_after_the_first() -> None:
    model = LinkModel(LinkProfile(delay_s=0.02, duplicate=1.0, duplicate_gap_s=0.003), seed=0)
    first, second = model.decide(0.0, "up")
    assert first == pytest.approx(0.02)
    assert second == pytest.approx(0.023)


def test_same_seed_gives_same_decisions() -> None:
    a = LinkModel(NB_IOT_POOR, seed=9)
    b = LinkModel(NB_IOT_POOR, seed=9)
    c = LinkModel(NB_IOT_POOR, seed=10)
    run_a, run_b, run_c = (_decide_many(m, 2000) for m in (a, b, c))
    assert run_a == run_b
    assert run_a != run_c
    assert a.stats() == b.stats()


def test_directions_have_independent_streams() -> None:
    """The k-th datagram of a direction has one fate, however the directions interleave."""
    only_up = LinkModel(LOSSY_30, seed=5)
    mixed = LinkModel(LOSSY_30, seed=5)
    ups = [only_up.decide(0.0, "up") for _ in range(500)]
    interleaved: list[tuple[float, ...]] = []
    for _ in range(500):
        mixed.decide(0.0, "down")
        interleaved.append(mixed.decide(0.0, "up"))
    assert ups == interleaved
    assert mixed.stats().down.sent == 500


def test_more_loss_drops_a_superset_with_the_same_seed() -> None:
    light = _decide_many(LinkModel(LinkProfile(loss=0.1), seed=4), 2000)
    heavy = _decide_many(LinkModel(LinkProfile(loss=0.4), seed=4), 2000)
    dropped_light = {i for i, d in enumerate(light) if not d}
    dropped_heavy = {i for i, d in enumerate(heavy) if not d}
    assert dropped_light < dropped_heavy


def test_partition_windows_drop_everything_inside_and_nothing_outside() -> None:
    profile = LinkProfile(partitions=((1.0, 2.0), (5.0, math.inf)))
    model = LinkModel(profile, seed=0)
    inside = [1.0, 1.000001, 1.5, 1.999, 5.0, 100.0, 1e9]
    outside = [0.0, 0.999999, 2.0, 3.0, 4.999]
    for direction in ("up", "down"):
        assert all(model.decide(t, direction) == () for t in inside)
        assert all(model.decide(t, direction) == (0.0,) for t in outside)
    assert [model.partitioned(t) for t in (0.5, 1.0, 2.0, 6.0)] == [False, True, False, True]
    stats = model.stats()
    for direction_stats in (stats.up, stats.down):
        assert direction_stats.partitioned == direction_stats.dropped == len(inside)
        assert direction_stats.sent == len(inside) + len(outside)


def test_manual_partition_overrides_the_windows_until_handed_back() -> None:
    model = LinkModel(LinkProfile(partitions=((10.0, 20.0),)), seed=0)
    model.partition(True)
    assert model.decide(0.0, "up") == ()
    assert model.decide(30.0, "down") == ()
    model.partition(False)  # healed by hand, even inside a window
    assert model.decide(15.0, "up") == (0.0,)
    assert model.manual_partition is False
    model.partition(None)  # back to the windows
    assert model.decide(15.0, "up") == ()
    assert model.decide(25.0, "up") == (0.0,)


def test_set_profile_takes_effect_on_the_next_decision() -> None:
    model = LinkModel(PERFECT, seed=0)
    assert model.decide(0.0, "up") == (0.0,)
    model.set_profile(LinkProfile(loss=1.0))
    assert model.profile == LinkProfile(loss=1.0)
    assert model.decide(0.1, "up") == ()
    model.set_profile(PERFECT)
    assert model.decide(0.2, "up") == (0.0,)
    assert model.stats().up == DirectionStats(sent=3, dropped=1)


def test_reorder_lets_later_datagrams_overtake_earlier_ones() -> None:
    model = LinkModel(LinkProfile(delay_s=0.01, reorder=0.1, reorder_hold_s=0.05), seed=2)
    sent_at = [i * 0.002 for i in range(1000)]
    arrivals = [(t + model.decide(t, "up")[0], i) for i, t in enumerate(sent_at)]
    order = [i for _, i in sorted(arrivals)]
    overtaken = sum(1 for a, b in itertools.pairwise(order) if a > b)
    assert order != sorted(order)
    assert overtaken > 20
    assert 60 <= model.stats().up.reordered <= 140


def test_without_reorder_or_jitter_order_is_kept() -> None:
    model = LinkModel(LinkProfile(delay_s=0.03, loss=0.2), seed=2)
    arrivals = [t + d[0] for t in (i * 0.001 for i in range(1000)) if (d := model.decide(t, "up"))]
    assert arrivals == sorted(arrivals)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"loss": 1.5}, "loss"),
        ({"loss": -0.1}, "loss"),
        ({"loss": math.nan}, "loss"),
        ({"duplicate": 2.0}, "duplicate"),
        ({"reorder": -1.0}, "reorder"),
        ({"delay_s": -0.001}, "delay_s"),
        ({"delay_s": math.inf}, "delay_s"),
        ({"jitter_s": -1.0}, "jitter_s"),
        ({"duplicate_gap_s": math.nan}, "duplicate_gap_s"),
        ({"reorder_hold_s": -0.5}, "reorder_hold_s"),
        ({"partitions": ((2.0, 1.0),)}, "partitions[0]"),
        ({"partitions": ((0.0, 1.0), (3.0, 3.0))}, "partitions[1]"),
        ({"partitions": ((-1.0, 1.0),)}, "partitions[0]"),
    ],
)
def test_invalid_profile_raises_usage_error_naming_the_field(
    fields: dict[str, object], named: str
) -> None:
    with pytest.raises(UsageError, match=re.escape(f"LinkProfile.{named} ")):
        LinkProfile(**fields)  # type: ignore[arg-type]


def test_profiles_are_frozen_values() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        NB_IOT_GOOD.loss = 0.5  # type: ignore[misc]
    assert dataclasses.replace(LOSSY_30, loss=0.3) == LOSSY_30


def test_presets_are_named_and_plausible() -> None:
    assert preset("nb-iot-poor") is NB_IOT_POOR
    assert set(PRESETS) == {"perfect", "nb-iot-good", "nb-iot-poor", "lossy-30"}
    # NB-IoT good: 60 ms +- 40 ms one way; poor: 300 ms +- 200 ms.
    assert NB_IOT_GOOD.delay_s + NB_IOT_GOOD.jitter_s / 2 == pytest.approx(0.060)
    assert NB_IOT_POOR.delay_s + NB_IOT_POOR.jitter_s / 2 == pytest.approx(0.300)
    assert (LOSSY_30.loss, NB_IOT_POOR.loss, NB_IOT_POOR.duplicate) == (0.3, 0.1, 0.01)
    with pytest.raises(UsageError, match="unknown link profile 'dsl'"):
        preset("dsl")


def test_unknown_direction_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="direction"):
        LinkModel(PERFECT, seed=0).decide(0.0, "sideways")  # type: ignore[arg-type]
