"""The generators are deterministic for a seed and stay within their ranges."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.errors import UsageError
from edgecfg.sim.generators import (
    CELLS,
    RSRP_RANGE,
    SINR_RANGE,
    capacity_factor,
    coverage_class,
    discharge,
    faults,
    link_walk,
    voltage,
    workload,
)

seeds = st.integers(min_value=0, max_value=2**32)


@given(seeds)
@settings(max_examples=20, deadline=None)
def test_one_seed_names_one_sequence_of_every_generator(seed: int) -> None:
    def run() -> tuple[object, ...]:
        return (
            list(discharge("alkaline-2aa", capacity_j=1000.0, load_w=0.01, step_s=3600.0,
                           steps=50, seed=seed)),
            list(link_walk(steps=200, step_s=3600.0, seed=seed, outage_rate_per_day=1.0)),
            list(workload(steps=200, step_s=600.0, seed=seed)),
            faults(days=30, seed=seed),
        )  # fmt: skip

    assert run() == run()


def test_different_seeds_give_different_walks() -> None:
    one = [s.rsrp_dbm for s in link_walk(steps=100, step_s=60.0, seed=1)]
    two = [s.rsrp_dbm for s in link_walk(steps=100, step_s=60.0, seed=2)]
    assert one != two


@pytest.mark.parametrize("chemistry", sorted(CELLS))
def test_voltage_falls_from_full_to_the_cut_off(chemistry: str) -> None:
    volts = [voltage(chemistry, depth / 100) for depth in range(101)]
    assert volts == sorted(volts, reverse=True)
    assert volts[-1] == CELLS[chemistry].cutoff_v  # type: ignore[index]


@pytest.mark.parametrize("chemistry", sorted(CELLS))
def test_the_cold_never_adds_capacity(chemistry: str) -> None:
    factors = [capacity_factor(chemistry, celsius) for celsius in range(-40, 61, 5)]
    assert factors == sorted(factors)
    assert capacity_factor(chemistry, 20.0) == 1.0


def test_alkaline_loses_more_in_the_cold_than_li_socl2() -> None:
    assert capacity_factor("alkaline-2aa", -20.0) < capacity_factor("li-socl2", -20.0)


@given(seeds, st.sampled_from(sorted(CELLS)))
@settings(max_examples=20, deadline=None)
def test_a_discharge_stays_in_range_and_empties_under_load(seed: int, chemistry: str) -> None:
    samples = list(discharge(chemistry, capacity_j=100.0, load_w=0.002, step_s=3600.0,
                             steps=30, seed=seed))  # fmt: skip
    assert len(samples) == 30
    cell = CELLS[chemistry]  # type: ignore[index]
    for sample in samples:
        assert 0.0 <= sample.percent <= 100.0
        assert cell.cutoff_v - 0.05 <= sample.volts <= cell.curve[0][1] + 0.05
    assert samples[0].percent == 100.0
    assert samples[-1].percent == 0.0  # 100 J at 2 mW is empty after ~14 h


@given(seeds)
@settings(max_examples=20, deadline=None)
def test_a_link_walk_stays_in_the_reporting_ranges(seed: int) -> None:
    for sample in link_walk(steps=300, step_s=3600.0, seed=seed, mean_rsrp=-125.0,
                            volatility=8.0, outage_rate_per_day=2.0):  # fmt: skip
        if sample.rsrp_dbm is None:
            assert sample.sinr_db is None and sample.coverage == "none"
            continue
        assert sample.sinr_db is not None
        assert RSRP_RANGE[0] <= sample.rsrp_dbm <= RSRP_RANGE[1]
        assert SINR_RANGE[0] <= sample.sinr_db <= SINR_RANGE[1]
        assert sample.coverage == coverage_class(sample.rsrp_dbm)


def test_outages_happen_at_about_their_rate() -> None:
    down = [s for s in link_walk(steps=24 * 365, step_s=3600.0, seed=5, outage_rate_per_day=0.5)
            if s.rsrp_dbm is None]  # fmt: skip
    assert 0 < len(down) < 24 * 365 / 2
    none = [s for s in link_walk(steps=24 * 365, step_s=3600.0, seed=5, outage_rate_per_day=0.0)
            if s.rsrp_dbm is None]  # fmt: skip
    assert none == []


def test_coverage_classes_follow_rsrp() -> None:
    assert [coverage_class(r) for r in (-90.0, -110.0, -115.0, -121.0)] == [
        "CE0", "CE0", "CE1", "CE2",
    ]  # fmt: skip


def test_bursts_raise_the_workload() -> None:
    quiet = sum(workload(steps=1000, step_s=600.0, seed=3, burst_rate_per_day=0.0))
    bursty = sum(workload(steps=1000, step_s=600.0, seed=3, burst_rate_per_day=4.0))
    assert 0 < quiet < bursty
    assert all(count >= 0 for count in workload(steps=500, step_s=60.0, seed=9,
                                                base_per_hour=500.0))  # fmt: skip


def test_faults_are_in_time_order_within_the_run() -> None:
    found = faults(days=100, seed=4, reboots_per_day=0.2, sensor_errors_per_day=0.5)
    assert found == sorted(found, key=lambda fault: (fault.t_s, fault.kind))
    assert all(0 <= fault.t_s < 100 * 86_400 for fault in found)
    kinds = {fault.kind for fault in found}
    assert kinds == {"reboot", "sensor-error"}
    assert faults(days=100, seed=4, reboots_per_day=0.0, sensor_errors_per_day=0.0) == []


@pytest.mark.parametrize(
    "call",
    [
        lambda: voltage("lead-acid", 0.5),
        lambda: voltage("li-ion", 1.5),
        lambda: list(discharge("li-ion", capacity_j=0.0, load_w=1.0, step_s=1.0, steps=1,
                               seed=1)),
        lambda: list(link_walk(steps=1, step_s=1.0, seed=1, mean_rsrp=-200.0)),
        lambda: list(workload(steps=1, step_s=0.0, seed=1)),
        lambda: faults(days=1, seed=1, error_burst=0),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused(call: object) -> None:
    with pytest.raises(UsageError):
        call()  # type: ignore[operator]
