"""A battery fleet with and without adaptive rules (edgecfg.sim.battery, issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecfg.cli.files import load_rules, load_schema
from edgecfg.core.rules import RuleSet, rules_from_document
from edgecfg.core.schema import Schema
from edgecfg.errors import UsageError
from edgecfg.sim.battery import Fleet, deciles, run
from tests.cli.helpers import run as run_cli

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SMALL = Fleet(devices=3, years=1.0, battery_wh=0.25, sample_every_days=1.0)
"""A quarter of a watt-hour empties in weeks: the whole life in a second."""


@pytest.fixture(scope="module")
def schema() -> Schema:
    return load_schema(str(FIXTURES / "schema" / "device.json"))


@pytest.fixture(scope="module")
def examples() -> RuleSet:
    return load_rules(str(FIXTURES / "rules" / "examples.yaml"))


def test_the_example_rules_make_every_device_live_longer(schema: Schema, examples: RuleSet) -> None:
    outcome = run(SMALL, examples, schema)
    assert all(life.days is not None for life in outcome.without + outcome.with_rules)
    for plain, adapted in zip(outcome.without, outcome.with_rules, strict=True):
        assert plain.days is not None and adapted.days is not None
        assert adapted.days > plain.days * 1.2  # the last 20% at a quarter of the wakes
        assert adapted.wakes < plain.wakes  # fewer reports: what the battery paid for
        assert adapted.adapted_wakes > 0
        assert plain.adapted_wakes == 0
    summary = outcome.summary()
    assert isinstance(summary["min_gain_pct"], float) and summary["min_gain_pct"] > 20
    assert summary["still_running_at_horizon"] == 0


def test_without_rules_both_runs_are_the_same_device_for_device(schema: Schema) -> None:
    outcome = run(SMALL, rules_from_document({"rules": []}), schema)
    assert [life.days for life in outcome.without] == [life.days for life in outcome.with_rules]
    assert outcome.summary()["median_gain_pct"] == 0


def test_a_seed_names_one_run_and_devices_differ_within_it(
    schema: Schema, examples: RuleSet
) -> None:
    first, again = run(SMALL, examples, schema), run(SMALL, examples, schema)
    assert first.summary() == again.summary()
    assert len({life.days for life in first.without}) > 1  # own links, own coverage


def test_a_device_still_running_at_the_horizon_is_counted_there(
    schema: Schema, examples: RuleSet
) -> None:
    outcome = run(Fleet(devices=1, years=0.02, battery_wh=9.0), examples, schema)
    assert outcome.without[0].days is None
    summary = outcome.summary()
    assert summary["still_running_at_horizon"] == 1
    assert summary["days_to_empty_without"] == {"p10": 7.305, "median": 7.305, "p90": 7.305}


def test_deciles_interpolate_and_a_bad_fleet_is_refused() -> None:
    assert deciles([5.0]) == (5.0, 5.0, 5.0)
    assert deciles([0.0, 10.0]) == (1.0, 5.0, 9.0)
    with pytest.raises(UsageError, match="devices >= 1"):
        Fleet(devices=0)


def test_sim_battery_writes_the_summary_and_the_plot(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    code, text, _ = run_cli(
        capsys, "sim", "battery", "--devices", "2", "--years", "1", "--battery-wh", "0.25",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0
    assert "life gained, paired by device: median +" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["devices"] == 2 and summary["min_gain_pct"] > 20
    assert (out / "battery.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run_cli(capsys, "sim", "battery", "--devices", "0")
    assert code != 0 and "devices >= 1" in err
