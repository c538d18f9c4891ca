"""Telemetry analysis, pure (edgecfg.core.telemetry): the aggregation laws,
counters with resets, name resolution, and the link degradation test."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from edgecfg.core.telemetry import (
    DAY,
    DEFAULT_CUSUM,
    HOUR,
    Aggregate,
    CusumParameters,
    Kind,
    LinkMonitor,
    Tally,
    aggregate,
    band,
    bucket,
    counter_delta,
    monitor_from_list,
    monitor_to_list,
    resolve_time,
    series_name,
)

# Readings on a grid of quarters: sums of them are exact in a double, so the
# laws hold with ==, not within a tolerance.
values = st.integers(-4_000_000, 4_000_000).map(lambda n: n / 4)
times = st.integers(0, 10**6).map(float)
readings = st.lists(st.tuples(values, times), min_size=1, max_size=30)


def of(items: list[tuple[float, float]]) -> Aggregate:
    found = aggregate(items)
    assert found is not None
    return found


@given(readings, readings, readings)
def test_merge_is_associative(a: list[tuple[float, float]], b: list[tuple[float, float]],
                              c: list[tuple[float, float]]) -> None:  # fmt: skip
    x, y, z = of(a), of(b), of(c)
    assert x.merge(y).merge(z) == x.merge(y.merge(z))


@given(readings, readings)
def test_merge_is_commutative(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> None:
    assert of(a).merge(of(b)) == of(b).merge(of(a))


@given(readings, readings)
def test_aggregate_of_a_concatenation_is_the_merge_of_the_aggregates(
    a: list[tuple[float, float]], b: list[tuple[float, float]]
) -> None:
    assert of(a + b) == of(a).merge(of(b))


@given(readings)
def test_a_tally_gives_the_aggregate_of_its_readings(a: list[tuple[float, float]]) -> None:
    tally = Tally(*a[0])
    for value, time in a[1:]:
        tally.add(value, time)
    assert tally.aggregate() == of(a)


@given(readings, st.randoms(use_true_random=False))
def test_the_aggregate_does_not_depend_on_arrival_order(
    a: list[tuple[float, float]], rng: random.Random
) -> None:
    shuffled = list(a)
    rng.shuffle(shuffled)
    assert of(shuffled) == of(a)


@given(readings)
def test_the_aggregate_holds_count_sum_min_max_and_the_latest_reading(
    a: list[tuple[float, float]],
) -> None:
    found = of(a)
    assert (found.count, found.total) == (len(a), sum(v for v, _ in a))
    assert (found.low, found.high) == (min(v for v, _ in a), max(v for v, _ in a))
    assert (found.last_time, found.last) == max((t, v) for v, t in a)


counts = st.integers(0, 10**6).map(float)
segments = st.lists(st.lists(counts, min_size=1, max_size=8).map(sorted), min_size=1, max_size=5)


@given(segments)
def test_counter_deltas_add_up_to_what_was_counted_across_resets(runs: list[list[float]]) -> None:
    # each run is the counter between two reboots; a reboot is visible as a
    # reading below the previous one
    assume(all(later[0] < earlier[-1] for earlier, later in itertools.pairwise(runs)))
    readings = [value for run in runs for value in run]
    deltas = [counter_delta(p, v) for p, v in zip([None, *readings], readings, strict=False)]
    counted = (runs[0][-1] - runs[0][0]) + sum(run[-1] for run in runs[1:])
    assert deltas[0] is None
    assert sum(d for d in deltas[1:] if d is not None) == counted
    assert all(d is not None and d >= 0 for d in deltas[1:])


def test_a_counter_below_its_previous_reading_was_reset() -> None:
    assert counter_delta(None, 5.0) is None
    assert counter_delta(5.0, 12.0) == 7.0
    assert counter_delta(12.0, 3.0) == 3.0  # rebooted: 3 since


def test_times_below_2_28_are_relative_to_arrival() -> None:
    assert resolve_time(0.0, 1_700_000_000.0) == 1_700_000_000.0
    assert resolve_time(-60.0, 1_700_000_000.0) == 1_699_999_940.0
    assert resolve_time(1_600_000_000.0, 1_700_000_000.0) == 1_600_000_000.0


@pytest.mark.parametrize(
    ("name", "unit", "series", "kind"),
    [
        ("battery", "%EL", "battery", Kind.GAUGE),
        ("battery", None, "battery", Kind.GAUGE),
        ("urn:dev:ow:10e2073a01080063:rsrp", "dBm", "rsrp", Kind.GAUGE),
        ("dev-1/uptime", "s", "uptime", Kind.COUNTER),
        ("reboots", None, "reboots", Kind.COUNT),
        ("battery", "V", "battery[V]", None),  # another unit: kept apart
        ("humidity", "%RH", "humidity", None),  # unknown: kept, not refused
    ],
)
def test_names_resolve_against_the_registry(
    name: str, unit: str | None, series: str, kind: Kind | None
) -> None:
    found, known = series_name(name, unit)
    assert found == series
    assert (None if known is None else known.kind) == kind


def test_buckets_and_bands_are_aligned() -> None:
    assert bucket(2 * DAY + 5 * HOUR + 7, HOUR) == 2 * DAY + 5 * HOUR
    assert bucket(2 * DAY + 5 * HOUR + 7, DAY) == 2 * DAY
    assert band("rsrp", -104.0) == "rsrp@-110"
    assert band("sinr", 3.0) == "sinr@0"
    assert band("battery", 50.0) is None


# -- the degradation test ----------------------------------------------------


def series(seed: int, length: int, *, step_at: int | None = None, drop: float = 0.0,
           sigma: float = 2.0) -> list[float]:  # fmt: skip
    """RSRP readings around -95 dBm, in whole dB as modems report them."""
    rng = random.Random(seed)
    return [
        float(round(-95 + rng.gauss(0, sigma) - (drop if step_at is not None and i >= step_at
                                                 else 0.0)))
        for i in range(length)
    ]  # fmt: skip


def watch(readings: list[float], test: CusumParameters = DEFAULT_CUSUM) -> LinkMonitor:
    monitor = LinkMonitor()
    for index, value in enumerate(readings):
        monitor = monitor.observe(value, float(index), test)
    return monitor


def test_a_step_drop_is_found_near_where_it_happened() -> None:
    for seed in range(50):
        monitor = watch(series(seed, 100, step_at=60, drop=6.0))  # 3 sigma
        assert monitor.degraded, seed
        assert monitor.flagged_at is not None and 60 <= monitor.flagged_at <= 75, seed
        assert monitor.changed_at is not None and 50 <= monitor.changed_at <= 61, seed
        assert monitor.before is not None and abs(monitor.before + 95) < 1.5


def test_stationary_links_are_rarely_flagged_over_many_seeds() -> None:
    # 300 wakes each: the baseline (32), then 268 readings under test
    flagged = sum(watch(series(seed, 300)).degraded for seed in range(400))
    assert flagged <= 8, f"{flagged} of 400 stationary devices flagged (bound 2%)"


def test_a_constant_link_is_not_flagged_and_a_one_db_dip_is_not_a_change() -> None:
    assert not watch([-100.0] * 200).degraded
    assert not watch([-100.0] * 100 + [-101.0] + [-100.0] * 100).degraded


def test_no_fixed_threshold_a_drop_is_judged_against_the_device_s_own_past() -> None:
    # the same -110 dBm level: a change for a device that sat at -90, not for
    # one that always sat there
    assert watch([-90.0] * 40 + [-110.0] * 10).degraded
    assert not watch([-110.0] * 50).degraded


def test_a_monitor_survives_its_storage_form() -> None:
    monitor = watch(series(3, 80, step_at=50, drop=8.0))
    assert monitor_from_list(monitor_to_list(monitor)) == monitor
    assert math.isfinite(monitor.sigma)
