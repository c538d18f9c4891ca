"""``edgecfg sim rollout``: scenarios the rollout engine must get right.

Each scenario runs the real engine over a modelled fleet in virtual time
(small fleets, so the suite stays quick; the README's figures use the
20,000-device scenarios in ``fixtures/scenarios``).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from edgecfg.cli.main import main
from edgecfg.core.rollout import Decision, Phase
from edgecfg.errors import UsageError
from edgecfg.sim.rollout import Line, RolloutRun, load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "fixtures" / "scenarios"

FLEET = """
seed = {seed}
days = {days}
[fleet]
devices = {devices}
[[fleet.strata]]
hardware = "nbiot-sensor-r3"
region = "eu"
power = "battery"
sync = "daily"
share = 0.5
[[fleet.strata]]
hardware = "lte-gw-r1"
region = "eu"
power = "mains"
sync = "daily"
share = 0.5
[baseline]
checkin_reliability = {reliability}
"""

PLAN = """
[plan]
change = { "telemetry.interval_s" = 600 }
target = "region/eu"
stages = ["5%", "25%", "100%"]
guardrails = ["battery_drain", "reboots", "errors", "checkin"]
"""


def _scenario(effect: str = "", *, seed: int = 1, days: int = 14, devices: int = 6000,
              reliability: float = 0.98, extra: str = "") -> str:  # fmt: skip
    fleet = FLEET.format(seed=seed, days=days, devices=devices, reliability=reliability)
    return fleet + effect + extra + PLAN


def _play(text: str) -> tuple[list[Line], RolloutRun]:
    run = RolloutRun(load_scenario(text))
    return list(run.lines()), run


def test_an_a_to_a_rollout_advances_through_every_stage() -> None:
    lines, run = _play(_scenario())
    decisions = [line.decision for line in lines]
    assert decisions.count(Decision.ADVANCE) == 3
    assert Decision.ABORT not in decisions and Decision.ROLLBACK not in decisions
    assert run.summary.completed and run.summary.applied >= 0.95 * 6000
    # every stage held at least its minimum length (48 h) before it advanced
    advanced = [line.t_h for line in lines if line.decision is Decision.ADVANCE]
    assert all(later - earlier >= 48 for earlier, later in itertools.pairwise([0.0, *advanced]))


def test_a_reboot_loop_in_a_small_share_of_the_canary_is_caught_before_stage_two() -> None:
    effect = "[effect]\nreboot_loop_fraction = 0.05\n"
    lines, run = _play(_scenario(effect))
    assert lines[-1].decision is Decision.ABORT
    assert lines[-1].stage == "5%" and "reverted" in lines[-1].reason
    assert all(line.decision is not Decision.ADVANCE for line in lines)
    assert run.summary.rolled_back_h is not None  # every device is back on its old config


def test_a_config_that_breaks_connectivity_is_reverted_by_the_devices_and_aborts() -> None:
    effect = "[effect]\nbreaks_connectivity_fraction = 1.0\n"
    lines, run = _play(_scenario(effect))
    assert lines[-1].decision is Decision.ABORT
    assert run.summary.reverted_by_device > 0
    assert run.summary.reverted_by_device == run.summary.applied - run.summary.rolled_back_devices


def test_more_battery_drain_where_the_effect_applies_is_caught_in_its_stratum() -> None:
    effect = '[effect]\nwhere = { power = "battery" }\nbattery_drain_rel = 1.15\n'
    lines, _run = _play(_scenario(effect))
    assert lines[-1].decision is Decision.ABORT
    assert "battery_drain" in lines[-1].reason


def test_a_canary_mostly_not_yet_due_holds_and_shows_its_coverage() -> None:
    lines, _run = _play(_scenario(reliability=0.4, days=4))
    assert all(line.decision is Decision.HOLD for line in lines)
    coverage = [line.evidence["coverage"] for line in lines]
    assert any("coverage" in line.reason for line in lines)
    assert all(isinstance(value, float) and value < 0.8 for value in coverage)


def test_devices_that_vanish_after_applying_block_the_advance() -> None:
    effect = "[effect]\nnever_syncs_again_fraction = 0.5\n"
    lines, _run = _play(_scenario(effect, days=10))
    assert Decision.ADVANCE not in {line.decision for line in lines}
    assert lines[-1].decision in (Decision.ABORT, Decision.ESCALATE, Decision.HOLD)


def test_a_telemetry_outage_holds_instead_of_passing() -> None:
    outage = '[[outage]]\nstart_h = 20\nhours = 120\narm = "both"\n'
    lines, _run = _play(_scenario(extra=outage, days=6))
    during = [line for line in lines if 20 + 48 < line.t_h <= 140]
    assert during and all(line.decision is Decision.HOLD for line in during)
    assert all("data-source problem" in line.reason for line in during)
    # never passed on missing data, never aborted on it; once the data is
    # back but thin, a stage this late is escalated to an operator
    assert {line.decision for line in lines} <= {Decision.HOLD, Decision.ESCALATE}


def test_the_run_is_deterministic_for_a_seed() -> None:
    first, _ = _play(_scenario(seed=3, days=5))
    again, _ = _play(_scenario(seed=3, days=5))
    assert [line.as_json() for line in first] == [line.as_json() for line in again]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_scenario().split("[plan]")[0], "\\[plan\\] is required"),
        ("seed = 1\n[fleet]\ndevices = 10\n", "needs at least one stratum"),
        (_scenario() + "\nsurprise = 1\n", "unknown keys"),
        (_scenario().replace("share = 0.5", "share = 0.4", 1), "add up to 0.9"),
        (_scenario().replace('sync = "daily"', 'sync = "monthly"', 1), "expected one of"),
        (_scenario().replace('power = "battery"', 'power = "solar"', 1), "'battery' or 'mains'"),
        (_scenario("[effect]\nreboot_loop_fraction = 2\n"), "share in \\[0, 1\\]"),
        (_scenario('[effect]\nwhere = { colour = "red" }\n'), "unknown keys \\['colour'\\]"),
        (_scenario(extra='[[outage]]\nstart_h = 1\nhours = 2\narm = "some"\n'), "both, canary"),
        (_scenario().replace("devices = 6000", "devices = -5"), "non-negative"),
        ("not toml [", "not TOML"),
    ],
)
def test_a_bad_scenario_names_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_scenario(text)


def test_the_cli_prints_one_json_object_per_decision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(_scenario(days=4, devices=2000))
    assert main(["sim", "rollout", str(path), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 4
    for row in rows:
        assert {"t_h", "stage", "decision", "reason", "evidence"} <= set(row)
        assert row["decision"] in {"advance", "hold", "abort", "rollback", "escalate"}


def test_the_cli_counts_aborts_over_several_seeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(_scenario(days=3, devices=1000))
    assert main(["sim", "rollout", str(path), "--runs", "3", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["seed"] for row in rows[:3]] == [1, 2, 3]
    assert rows[-1]["runs"] == 3 and 0 <= rows[-1]["abort_rate"] <= 1


def test_the_cli_explains_a_bad_scenario_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sim", "rollout", str(tmp_path / "missing.toml")]) == 1
    assert "missing.toml" in capsys.readouterr().err


@pytest.mark.skipif(not SCENARIOS.is_dir(), reason="fixtures/scenarios not present")
@pytest.mark.parametrize("name", ["a-a.toml", "battery-drain.toml"])
def test_the_shipped_scenarios_parse(name: str) -> None:
    scenario = load_scenario((SCENARIOS / name).read_text(), source=name)
    assert scenario.devices == 20000 and scenario.plan.stages[0].name == "1.5%"
    assert (scenario.effect is None) == (name == "a-a.toml")


def test_sim_without_a_scenario_still_needs_out(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--devices", "10"]) == 1
    assert "--out DIR is required" in capsys.readouterr().err


def test_phase_after_abort_is_rolled_back() -> None:
    _lines, run = _play(_scenario("[effect]\nbreaks_connectivity_fraction = 1.0\n", days=4))
    assert run.summary.phase is Phase.ROLLED_BACK


def test_a_device_trial_runs_the_agents_apply_machine() -> None:
    from edgecfg.sim.rollout import trial

    assert trial(10.0, breaks=False, loops=False).verdict == "confirmed"
    cut_off = trial(10.0, breaks=True, loops=False)
    assert (cut_off.verdict, cut_off.reason) == ("reverted", "probe-failed")
    looping = trial(10.0, breaks=False, loops=True)
    assert (looping.verdict, looping.reason, looping.boots) == ("reverted", "reboot", 1)


def test_a_canary_only_telemetry_outage_holds_instead_of_passing() -> None:
    outage = '[[outage]]\nstart_h = 20\nhours = 120\narm = "canary"\n'
    lines, _run = _play(_scenario(extra=outage, days=6))
    assert Decision.ADVANCE not in {line.decision for line in lines}
    assert any("telemetry missing from the canary arm" in line.reason for line in lines)


def test_devices_outside_the_target_take_no_part() -> None:
    text = _scenario(days=3).replace('region = "eu"\npower = "mains"', 'region = "us/east"\n'
                                     'power = "mains"')  # fmt: skip
    run = RolloutRun(load_scenario(text))
    for _line in run.lines():
        pass
    assert run.summary.outside == 3000  # the us/east stratum
    assert all(device.stratum.region == "eu" for device in run.devices)
    assert run.summary.as_json()["outside_target"] == 3000


@pytest.mark.parametrize(
    ("target", "message"),
    [("region/mars", "reaches no stratum"), ("function/metering", "global, region/PATH")],
)
def test_a_target_the_strata_cannot_meet_is_refused(target: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_scenario(_scenario().replace('target = "region/eu"', f'target = "{target}"'))
