"""The one set of measuring tools of the benchmarks (edgecfg/bench/measure.py)."""

from __future__ import annotations

import math
import os
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.bench.measure import (
    TICKS,
    cpu_seconds,
    free_udp_port,
    median,
    peak_rss_mib,
    percentile,
    rss_mib,
)


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([3.0], 0.99, 3.0),
        ([1.0, 2.0, 3.0], 0.5, 2.0),
        ([5.0, 1.0, 4.0, 2.0, 3.0], 0.0, 1.0),  # unsorted in, nearest rank out
        ([5.0, 1.0, 4.0, 2.0, 3.0], 1.0, 5.0),
        ([float(n) for n in range(1, 101)], 0.99, 99.0),  # p99 of 1..100: the 99th
        ([float(n) for n in range(1, 11)], 0.9, 9.0),
    ],
)
def test_percentile_is_the_nearest_rank_on_the_n_minus_1_scale(
    values: list[float], fraction: float, expected: float
) -> None:
    assert percentile(values, fraction) == expected


def test_percentile_of_nothing_is_nan_and_a_bad_fraction_is_refused() -> None:
    assert math.isnan(percentile([], 0.5))
    for fraction in (-0.01, 1.01, 99.0):
        with pytest.raises(ValueError, match=r"within 0\.\.1"):
            percentile([1.0], fraction)


@pytest.mark.parametrize(
    ("values", "expected"),
    [([3.0], 3.0), ([1.0, 2.0, 3.0], 2.0), ([0.0, 1.0], 0.5), ([4.0, 1.0, 3.0, 2.0], 2.5)],
)
def test_median_is_the_usual_median(values: list[float], expected: float) -> None:
    # the mean of the middle two of an even sample (not a nearest rank)
    assert median(values) == expected


def test_median_of_nothing_is_nan() -> None:
    assert math.isnan(median([]))


samples = st.lists(st.floats(-1e300, 1e300), min_size=1, max_size=50)  # sums stay finite


@given(samples, st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_percentile_is_a_member_and_monotonic_in_the_fraction(
    values: list[float], low: float, high: float
) -> None:
    low, high = min(low, high), max(low, high)
    assert percentile(values, low) in values
    assert percentile(values, low) <= percentile(values, high)
    assert percentile(values, 0.0) == min(values) and percentile(values, 1.0) == max(values)
    ordered = sorted(values)
    middle = ordered[(len(ordered) - 1) // 2 : len(ordered) // 2 + 1]
    assert median(values) == pytest.approx(sum(middle) / len(middle))
    assert min(middle) <= median(values) <= max(middle)


def test_memory_probes_read_mib_of_a_real_process() -> None:
    now, peak = rss_mib(), peak_rss_mib()
    assert rss_mib(os.getpid()) == pytest.approx(now, abs=64)  # the same process
    # a Python interpreter with pytest loaded holds tens of MiB; MiB, not pages or KiB
    assert 10 < now <= peak + 1 < 8192


def test_cpu_seconds_counts_clock_ticks_of_a_process() -> None:
    used = cpu_seconds(os.getpid())
    assert used * TICKS == pytest.approx(round(used * TICKS))  # whole ticks
    assert cpu_seconds(os.getpid()) >= used  # never goes back


def test_a_free_udp_port_can_be_bound() -> None:
    port = free_udp_port()
    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", port))
