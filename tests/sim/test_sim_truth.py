"""The simulator's gateway work per sync: counted in the virtual fleet, and
the same mix played against a real gateway process (``bench sim-truth``).
Outcomes only (counts, the same mix on both sides), never CPU figures."""

from __future__ import annotations

import asyncio

import pytest

from edgecfg.bench.sim_truth import Phase, fit, real, virtual
from edgecfg.sim.virtual import DAY_S, NO_PROTOCOL, Day, ProtocolCost, Scenario, VirtualFleet, run


def test_the_virtual_fleet_counts_requests_by_kind_and_the_service_s_cpu() -> None:
    sim = VirtualFleet(Scenario(devices=30, days=3, writes_per_day=0, seed=2))
    first = sim.sync_round(0.0)
    again = sim.sync_round(DAY_S)
    assert first.syncs == again.syncs == 30
    assert first.requests == first.round_trips  # every exchange reached the gateway logic
    assert (first.valid, first.content, first.reports) == (0, 30 * 7, 30)  # blocks, a report
    assert (again.valid, again.content, again.reports) == (30, 0, 0)  # one 2.03 each
    assert first.service_cpu_s > again.service_cpu_s > 0


def test_gateway_work_per_sync_adds_the_protocol_cost_of_each_kind_of_request() -> None:
    day = Day(syncs=4, valid=2, content=6, reports=2, service_cpu_s=0.002)
    assert day.gateway_us_per_sync(NO_PROTOCOL) == pytest.approx(500.0)
    cost = ProtocolCost(valid_us=100.0, content_us=200.0, report_us=1000.0)
    assert day.gateway_us_per_sync(cost) == pytest.approx(500.0 + (200 + 1200 + 2000) / 4)
    assert Day().gateway_us_per_sync(cost) is None


def test_the_fit_recovers_the_costs_that_made_the_real_figures() -> None:
    truth = ProtocolCost(valid_us=300.0, content_us=450.0, report_us=1800.0)
    sim = {
        "full": Day(syncs=10, content=70, reports=10, service_cpu_s=0.004),
        "delta": Day(syncs=10, valid=2, content=8, reports=5, service_cpu_s=0.001),
        "current": Day(syncs=30, valid=30, service_cpu_s=0.0001),
    }
    real_figures = {
        name: Phase(day.syncs, day.requests, day.service_cpu_s + truth.of(day))
        for name, day in sim.items()
    }
    fitted = fit(real_figures, sim)
    assert fitted.valid_us == pytest.approx(300.0, abs=0.1)
    assert fitted.content_us == pytest.approx(450.0, abs=0.1)
    assert fitted.report_us == pytest.approx(1800.0, abs=0.1)


def test_the_summary_reports_the_gateway_work_per_sync() -> None:
    cost = ProtocolCost(300.0, 300.0, 300.0)
    summary = run(Scenario(devices=20, days=2, seed=4, protocol=cost)).summary()
    work = summary["gateway_work"]
    assert isinstance(work, dict)
    assert work["protocol_us"] == {"valid": 300.0, "content": 300.0, "report": 300.0}
    assert work["us_per_sync"] > work["service_us_per_sync"] > 0
    assert work["requests_per_sync"] >= 1


@pytest.mark.slow
def test_the_real_gateway_and_the_simulation_play_the_same_mix() -> None:
    measured = asyncio.run(real(devices=24, edits=4, rounds=1, seed=3))
    simulated = virtual(devices=24, edits=4, rounds=1, seed=3)
    for phase in ("full", "delta", "current"):
        assert measured[phase].syncs == simulated[phase].syncs == 24
    # the same exchanges: block-wise full configs and a report each, then deltas, then
    # 2.03s (the real gateway's cold start makes a few devices ask again: not many)
    assert simulated["full"].requests == 24 * 8
    assert measured["full"].requests == pytest.approx(simulated["full"].requests, rel=0.1)
    assert measured["delta"].requests == pytest.approx(simulated["delta"].requests, rel=0.25)
    assert measured["full"].cpu_s > 0
