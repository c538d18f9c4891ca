"""``edgecfg sim optimize`` on small fleets: the optimizer finds the hidden
truth through canaries, and on an A/A fleet proposes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecfg.cli.main import main
from edgecfg.sim.optimize import (
    FRESHNESS_LIMIT_S,
    INTERVAL,
    TIMEOUT,
    Setup,
    make_fleet,
    run,
    spurious,
    truth,
)


def test_a_small_fleet_gains_battery_life_without_a_breach() -> None:
    # 4,000 devices: a 5 % canary of a stratum needs the 10 devices per arm the gates read
    outcome = run(Setup(devices=4000, weeks=6, seed=5))
    assert outcome.battery_life_gain >= 0.20
    assert outcome.freshness_ok and outcome.max_interval_s <= FRESHNESS_LIMIT_S
    assert outcome.guardrail_breaches == 0
    assert outcome.rollouts_passed >= 1
    # it found the truth: poor-coverage battery devices moved to the longest
    # interval the freshness limit allows
    poor = [c for c in outcome.changes if c["setting"] == INTERVAL and "battery|poor" in
            str(c["stratum"])]  # fmt: skip
    assert poor and all(float(str(c["to"])) > float(str(c["from"])) for c in poor)


def test_an_a_a_fleet_gets_no_change() -> None:
    outcome = run(Setup(devices=1200, weeks=4, seed=9, aa=True))
    assert outcome.adoptions_proposed == 0 and outcome.changes == []
    assert outcome.battery_life_gain == 0.0
    assert outcome.trials > 0  # it did explore, on at most a tenth of each stratum


def test_the_ground_truth_prefers_longer_intervals_and_a_timeout_near_the_round_trip() -> None:
    fleet = make_fleet(200, np.random.default_rng(0))
    short = truth(fleet, np.full(200, 300.0), fleet.timeout)
    long = truth(fleet, np.full(200, 900.0), fleet.timeout)
    assert np.all(long["joules"] < short["joules"])
    assert np.all(long["freshness_s"] > short["freshness_s"])
    assert spurious(np.array([10.0]), np.array([2.0]))[0] > spurious(
        np.array([10.0]), np.array([12.0])
    )[0]  # fmt: skip
    assert TIMEOUT in (INTERVAL, TIMEOUT)


def test_the_command_prints_the_summary_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sim", "optimize", "--devices", "800", "--weeks", "2", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert isinstance(summary["battery_life_gain"], float)
    assert isinstance(summary["freshness_ok"], bool)
    assert isinstance(summary["guardrail_breaches"], int)


def test_the_a_a_runs_report_a_change_rate(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sim", "optimize", "--aa", "--runs", "2", "--devices", "400", "--weeks", "2",
                 "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["runs"] == 2 and summary["change_rate"] == 0.0
    assert main(["sim", "optimize", "--runs", "0"]) == 1
    assert "--runs" in capsys.readouterr().err
