"""The longevity series of a virtual-time run (issue 16): a short run in CI
(the 90-day run at 10,000 devices is ``edgecfg sim --days 90``, see README).

Laws on the series' shape, not on timings: what the gateway's store and
journals hold grows no faster in the second half of a run than in the first
(one row per write, not per device or per day squared); what a device holds
stays the size of its config; with the retention pruned daily, the served
versions stop growing.
"""

from __future__ import annotations

import pytest

from edgecfg.errors import UsageError
from edgecfg.sim.virtual import Footprint, RunReport, Scenario, run

DAYS = 10
LONG = Scenario(devices=200, days=DAYS, seed=11, writes_per_day=10, group_share=0.3, loss=0.05)


@pytest.fixture(scope="module")
def kept() -> RunReport:
    return run(LONG)


@pytest.fixture(scope="module")
def pruned() -> RunReport:
    return run(Scenario(**{**_fields(LONG), "prune_versions_days": 2.0}))


def _fields(scenario: Scenario) -> dict[str, object]:
    return {name: getattr(scenario, name) for name in Scenario.__slots__}


def growth_per_day(series: list[float], first: int, last: int) -> float:
    """The mean growth per day of ``series`` from day ``first`` to ``last``."""
    return (series[last] - series[first]) / (last - first)


def series(report: RunReport, name: str) -> list[float]:
    return [float(getattr(sample, name)) for sample in report.footprints]


def test_growth_per_day_is_the_mean_slope() -> None:
    assert growth_per_day([0, 1, 2, 4, 8], 0, 4) == 2.0
    assert growth_per_day([0, 1, 2, 4, 8], 2, 4) == 3.0


def test_one_footprint_per_day_all_of_them_taken(kept: RunReport) -> None:
    assert [sample.day for sample in kept.footprints] == list(range(DAYS))
    assert all(isinstance(sample, Footprint) for sample in kept.footprints)
    assert kept.divergent == 0


@pytest.mark.parametrize(
    "name", ["layer_revisions", "change_log", "store_bytes_per_device", "versions_kept"]
)
def test_the_gateway_grows_no_faster_in_the_second_half_than_in_the_first(
    kept: RunReport, name: str
) -> None:
    values = series(kept, name)
    half = DAYS // 2
    first, second = growth_per_day(values, 1, half), growth_per_day(values, half, DAYS - 1)
    # a rate, not an acceleration: the writes land at random times, so one
    # half may see more of them; twice the first half's rate is the bound
    assert 0 < second <= 2 * first


def test_the_journals_grow_by_the_writes_not_by_the_fleet(kept: RunReport) -> None:
    revisions = series(kept, "layer_revisions")
    writes = sum(day.writes for day in kept.days[1:])
    assert revisions[-1] - revisions[0] == writes  # one history row per write, days 1..


def test_a_device_holds_its_config_and_nothing_that_accumulates(kept: RunReport) -> None:
    largest = series(kept, "agent_state_bytes_max")
    assert max(largest[DAYS // 2 :]) <= 1.1 * max(largest[: DAYS // 2])
    assert all(0 < size < 64 * 1024 for size in largest)


def test_pruning_daily_bounds_the_served_versions(kept: RunReport, pruned: RunReport) -> None:
    unpruned, bounded = series(kept, "versions_kept"), series(pruned, "versions_kept")
    assert unpruned[-1] > unpruned[DAYS // 2] > 0  # without the chore, the table grows
    assert max(bounded[DAYS // 2 :]) <= max(bounded[: DAYS // 2])
    assert pruned.divergent == 0  # a device whose base was forgotten gets its full config


def test_a_negative_retention_is_refused() -> None:
    with pytest.raises(UsageError, match="prune_versions_days"):
        run(Scenario(devices=2, days=1, prune_versions_days=-1.0))
