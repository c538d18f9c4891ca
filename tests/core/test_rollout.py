"""The rollout engine: plans, cohorts, gates and operator actions.

The gate scenarios run a small statistical world in virtual time: daily
evidence per stratum and arm, drawn with a seeded generator, read by the
real :func:`decide` once a day as a gateway would.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.core.rollout import (
    Arm,
    Assignment,
    Decision,
    DeviceStatus,
    Due,
    Evidence,
    IllegalAction,
    Phase,
    Plan,
    Progress,
    Snapshot,
    State,
    Stratum,
    act,
    assign,
    checkin_evidence,
    cohort_sizes,
    decide,
    parse_plan,
    parse_stage,
)
from edgecfg.core.sequential import Arms, Moments
from edgecfg.errors import UsageError
from edgecfg.sim.rollout import poisson

PLAN_TABLE: dict[str, object] = {
    "change": {"telemetry.interval_s": 600},
    "target": "region/eu",
    "stages": ["1.5%", "5%", "25%", "100%"],
    "guardrails": ["battery_drain", "reboots", "errors", "checkin"],
}


def _plan(**overrides: object) -> Plan:
    return parse_plan({**PLAN_TABLE, **overrides}, "r1")


# -- the plan -----------------------------------------------------------------------------


def test_a_plan_parses_with_defaults() -> None:
    plan = _plan()
    assert [stage.share for stage in plan.stages] == [0.015, 0.05, 0.25, 1.0]
    assert [g.name for g in plan.guardrails] == ["battery_drain", "reboots", "errors", "checkin"]
    assert plan.alpha == 0.01 and plan.coverage == 0.8
    assert dict(plan.change) == {"telemetry.interval_s": 600}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"surprise": 1}, "unknown keys \\['surprise'\\]"),
        ({"stages": ["5%", "1%", "100%"]}, "rise strictly"),
        ({"stages": ["5%", "50%"]}, "must reach 100%"),
        ({"stages": ["five"]}, "expected a percentage"),
        ({"stages": ["0%", "100%"]}, "above 0%"),
        ({"guardrails": ["vibes"]}, "unknown 'vibes'"),
        ({"margins": {"reboots": -1}}, "margins.reboots"),
        ({"margins": {"errors": 0.1}, "guardrails": ["reboots"]}, "not guardrails"),
        ({"alpha": 2}, "alpha 2.0"),
        ({"alpha": "low"}, "expected a number"),
        ({"min_days": -1}, "min_days"),
        ({"change": {"a.b": {1, 2}}}, "change.a.b: set is not a configuration value"),
        ({"change": {}}, "change"),
        ({"change": 3}, "expected a table"),
        ({"target": ""}, "target"),
        ({"stages": "1%"}, "list of strings"),
        ({"coverage": 0}, "coverage"),
        ({"guardrails": []}, "at least one guardrail"),
        ({"stages": []}, "at least one stage"),
    ],
)
def test_a_bad_plan_is_refused_with_what_was_expected(
    table: dict[str, object], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        _plan(**table)


def test_required_plan_keys_are_named() -> None:
    with pytest.raises(UsageError, match="'target' is required"):
        parse_plan({"change": {"a": 1}, "stages": ["100%"]}, "r")


def test_a_lab_stage_is_manual_and_margins_override() -> None:
    plan = _plan(stages=["lab", "10%", "100%"], margins={"reboots": 0.5})
    assert plan.stages[0].manual and parse_stage("lab").share == 0.0
    assert {g.name: g.margin for g in plan.guardrails}["reboots"] == 0.5


# -- cohorts -----------------------------------------------------------------------------

STRATA = [
    Stratum("nbiot-sensor-r3", "eu", "battery", "daily"),
    Stratum("nbiot-sensor-r3", "eu", "mains", "hourly"),
    Stratum("lte-gw-r1", "eu", "mains", "daily"),
    Stratum("nbiot-sensor-r3", "eu", "battery", "weekly"),
]


def _members(count: int) -> list[tuple[str, Stratum]]:
    return [(f"dev-{n}", STRATA[n % len(STRATA)]) for n in range(count)]


def test_assignment_is_stable_and_independent_of_order() -> None:
    plan = _plan()
    members = _members(400)
    first = assign(plan, members)
    again = assign(plan, list(reversed(members)))
    assert first == again
    other = assign(replace(plan, rollout_id="r2"), members)
    assert first != other  # another rollout, another order


def test_each_stratum_is_treated_in_its_share_and_the_control_matches() -> None:
    plan = _plan(stages=["10%", "40%", "100%"])
    assignments = list(assign(plan, _members(4000)).values())
    for stratum in STRATA[:3]:
        mine = [a for a in assignments if a.stratum == stratum]
        for stage, share in enumerate((0.1, 0.4)):
            arms = Counter(a.arm(plan, 0, stage) for a in mine)
            assert arms[Arm.CANARY] == round(share * len(mine))
            assert arms[Arm.CONTROL] == arms[Arm.CANARY]  # equal size up to 50 %
        final = Counter(a.arm(plan, 0, 2) for a in mine)
        assert final[Arm.CANARY] == len(mine)


def test_weekly_syncers_form_a_later_wave() -> None:
    plan = _plan()
    assignments = list(assign(plan, _members(400)).values())
    weekly = [a for a in assignments if a.stratum.cadence == "weekly"]
    assert weekly and all(a.wave == 1 for a in weekly)
    assert all(a.arm(plan, 0, 3) is None for a in weekly)  # untouched by wave 0
    assert all(a.arm(plan, 1, 3) is Arm.CANARY for a in weekly)
    fast = [a for a in assignments if a.wave == 0]
    assert all(a.arm(plan, 1, 0) is Arm.CANARY for a in fast)  # wave 0 ended treated
    sizes = cohort_sizes(plan, weekly, 1, 2)
    assert sizes[Arm.CANARY] == sizes[Arm.CONTROL] == 25


@given(st.floats(0.0, 1.0, exclude_max=True, exclude_min=True))
def test_a_device_is_never_canary_and_control_at_once(quantile: float) -> None:
    plan = _plan()
    device = Assignment("d", STRATA[0], 0, quantile)
    arms = [device.arm(plan, 0, stage) for stage in range(len(plan.stages))]
    treated = device.treated_at(plan)
    assert treated is not None
    # once canary, canary in every later stage
    assert all(arm is Arm.CANARY for arm in arms[treated:])
    assert all(arm is not Arm.CANARY for arm in arms[:treated])


# -- device progress ---------------------------------------------------------------------


def test_silence_is_not_yet_due_then_overdue_then_deficit() -> None:
    progress = Progress("d", DeviceStatus.APPLIED, cadence_h=24, last_seen_h=0)
    assert progress.due(30, 3.0) is Due.NOT_YET_DUE
    assert progress.due(50, 3.0) is Due.OVERDUE
    assert progress.due(73, 3.0) is Due.DEFICIT


def test_checkin_evidence_counts_deficits_per_arm() -> None:
    stratum = STRATA[0]
    rows = [
        (Assignment("a", stratum, 0, 0.1), Progress("a", DeviceStatus.APPLIED, 24, 0), Arm.CANARY),
        (Assignment("b", stratum, 0, 0.2), Progress("b", DeviceStatus.APPLIED, 24, 90), Arm.CANARY),
        (
            Assignment("c", stratum, 0, 0.9),
            Progress("c", DeviceStatus.OFFERED, 24, 90),
            Arm.CONTROL,
        ),
    ]
    evidence = checkin_evidence(rows, 100.0, 3.0)
    arms = evidence.strata[stratum.key]
    assert (arms.canary.days, arms.canary.total) == (2.0, 1.0)  # a's 100 h of silence
    assert (arms.control.days, arms.control.total) == (1.0, 0.0)
    assert evidence.canary_fresh_h == 90.0
    assert evidence.advance_strata is not None
    late = checkin_evidence([(rows[0][0], Progress("a", DeviceStatus.APPLIED, 24, 50), Arm.CANARY)],
                            100.0, 3.0)  # fmt: skip
    assert late.strata[stratum.key].canary.total == 0.0  # overdue is not harm...
    assert late.advance_strata is not None
    assert late.advance_strata[stratum.key].canary.total == 1.0  # ...but holds an advance


# -- gates on hand-made evidence ---------------------------------------------------------


def _evidence(canary: float, control: float, days: float, *, fresh: float | None = 190.0,
              spread: float = 0.1) -> Evidence:  # fmt: skip
    def arm(mean: float) -> Moments:
        half = days / 2
        low, high = mean - spread, mean + spread
        return Moments.of_days(half, low * half, low * low * half) + Moments.of_days(
            half, high * half, high * high * half
        )

    # fresh: when both arms last reported (hours); the default is recent
    # for every test's clock, so only the staleness test sees stale data
    return Evidence({"s": Arms(arm(canary), arm(control))}, fresh, fresh)


def _snapshot(plan: Plan, now: float, evidence: dict[str, Evidence], *, proven: int = 95,
              state: State | None = None) -> Snapshot:  # fmt: skip
    return Snapshot(now, state or State(), evidence, 100, proven, 0, 24.0)


def _all(plan: Plan, canary: float, control: float, days: float) -> dict[str, Evidence]:
    """Every guardrail at these means; count guardrails at a realistic rate instead."""
    evidence: dict[str, Evidence] = {}
    for guardrail in plan.guardrails:
        if guardrail.counts:
            rate = 0.002 * canary / control
            arms = Arms(Moments.of_days(days, rate * days, rate * days),
                        Moments.of_days(days, 0.002 * days, 0.002 * days))  # fmt: skip
            evidence[guardrail.name] = Evidence({"s": arms}, 190.0, 190.0)
        else:
            evidence[guardrail.name] = _evidence(canary, control, days)
    return evidence


def test_a_stage_holds_for_its_window_then_advances() -> None:
    plan = _plan()
    evidence = _all(plan, 0.5, 0.5, 2000)
    early = decide(plan, _snapshot(plan, 10.0, evidence))
    assert early.decision is Decision.HOLD and "stage window" in early.reason
    assert early.next_decision_h == 48.0
    later = decide(plan, _snapshot(plan, 49.0, evidence))
    assert later.decision is Decision.ADVANCE, later.reason
    assert later.state.stage == 1 and later.state.stage_started_h == 49.0


def test_low_coverage_holds_and_shows_it_then_escalates() -> None:
    plan = _plan()
    evidence = _all(plan, 0.5, 0.5, 2000)
    held = decide(plan, _snapshot(plan, 60.0, evidence, proven=30))
    assert held.decision is Decision.HOLD and "coverage 30.0%" in held.reason
    assert held.evidence_json()["coverage"] == 0.3
    late = decide(plan, _snapshot(plan, 200.0, evidence, proven=30))
    assert late.decision is Decision.ESCALATE


def test_harm_aborts_in_the_first_stage_and_rolls_back_later() -> None:
    plan = _plan()
    harmful = _all(plan, 0.5, 0.5, 2000)
    harmful["reboots"] = _evidence(0.6, 0.1, 2000)  # a reboot loop's size
    first = decide(plan, _snapshot(plan, 20.0, harmful))
    assert first.decision is Decision.ABORT and "reboots" in first.reason
    assert first.state.phase is Phase.ROLLED_BACK and first.state.rolled_back == ((0, 0),)
    later = decide(plan, _snapshot(plan, 20.0, harmful, state=State(stage=2)))
    assert later.decision is Decision.ROLLBACK
    assert later.state.rolled_back == ((0, 0), (0, 1), (0, 2))


def test_harm_in_one_stratum_is_not_hidden_by_the_others() -> None:
    plan = _plan()

    def two(low: float, high: float, days: float) -> Moments:
        return Moments.of_days(days, low * days, low * low * days) + Moments.of_days(
            days, high * days, high * high * days
        )

    calm = Arms(two(0.8, 0.9, 50_000), two(0.8, 0.9, 50_000))
    hurt = Arms(two(1.2, 1.3, 100), two(0.8, 0.9, 100))
    evidence = _all(plan, 0.5, 0.5, 2000)
    evidence["battery_drain"] = Evidence({"big": calm, "small": hurt}, 0.0, 0.0)
    outcome = decide(plan, _snapshot(plan, 20.0, evidence))
    assert outcome.decision is Decision.ABORT
    assert outcome.verdicts[0].harm_stratum == "small"


def test_missing_telemetry_from_both_arms_holds_and_never_aborts() -> None:
    plan = _plan()
    evidence = _all(plan, 0.5, 0.5, 2000)
    evidence["errors"] = _evidence(0.5, 0.5, 2000, fresh=1.0)
    evidence["errors"] = Evidence(evidence["errors"].strata, None, 1.0)
    outcome = decide(plan, _snapshot(plan, 100.0, evidence))
    assert outcome.decision is Decision.HOLD and "data-source problem" in outcome.reason


def test_too_little_information_holds() -> None:
    plan = _plan()
    outcome = decide(plan, _snapshot(plan, 60.0, _all(plan, 0.5, 0.5, 20)))
    assert outcome.decision is Decision.HOLD and "not enough information" in outcome.reason


def test_a_manual_stage_waits_for_an_operator() -> None:
    plan = _plan(stages=["lab", "50%", "100%"])
    outcome = decide(plan, _snapshot(plan, 100.0, _all(plan, 0.5, 0.5, 2000)))
    assert outcome.decision is Decision.HOLD and "manual stage" in outcome.reason
    moved = act(plan, outcome.state, "advance", "lab checks done", 100.0)
    assert moved.stage == 1 and "lab checks done" in moved.reason


def test_the_last_stage_completes_and_late_harm_still_rolls_back() -> None:
    plan = _plan(stages=["50%", "100%"])
    state = State(stage=1)
    done = decide(plan, _snapshot(plan, 100.0, _all(plan, 0.5, 0.5, 2000), state=state))
    assert done.decision is Decision.ADVANCE and done.state.phase is Phase.COMPLETE
    quiet = decide(plan, _snapshot(plan, 120.0, _all(plan, 0.5, 0.5, 2000), state=done.state))
    assert quiet.decision is Decision.HOLD and "late harm" in quiet.reason
    harmful = _all(plan, 0.5, 0.5, 2000)
    harmful["errors"] = _evidence(0.9, 0.1, 2000)
    late = decide(plan, _snapshot(plan, 130.0, harmful, state=done.state))
    assert late.decision is Decision.ROLLBACK
    assert late.state.rolled_back == ((0, 0), (0, 1))


def test_a_decision_replays_from_its_snapshot() -> None:
    plan = _plan()
    snapshot = _snapshot(plan, 60.0, _all(plan, 0.5, 0.52, 500))
    assert decide(plan, snapshot) == decide(plan, snapshot)


# -- operator actions --------------------------------------------------------------------


def test_operator_actions_follow_the_table_and_need_a_reason() -> None:
    plan = _plan()
    paused = act(plan, State(), "pause", "holiday freeze", 5.0)
    assert paused.phase is Phase.PAUSED
    assert decide(plan, _snapshot(plan, 60.0, {}, state=paused)).decision is Decision.HOLD
    with pytest.raises(IllegalAction, match="cannot pause a rollout that is paused"):
        act(plan, paused, "pause", "again", 6.0)
    with pytest.raises(UsageError, match="reason is required"):
        act(plan, paused, "resume", "  ", 6.0)
    resumed = act(plan, paused, "resume", "freeze over", 7.0)
    assert resumed.phase is Phase.RUNNING
    rolled = act(plan, resumed, "rollback", "customer complaint", 8.0)
    assert rolled.phase is Phase.ROLLED_BACK and "customer complaint" in rolled.reason
    with pytest.raises(IllegalAction):
        act(plan, rolled, "resume", "oops", 9.0)


# -- whole rollouts in a small statistical world ------------------------------------------


@dataclass
class _World:
    """Daily evidence per stratum and arm for a plan, with an optional effect."""

    plan: Plan
    rng: random.Random
    devices_per_stratum: int = 6700  # 20,000 devices in three strata
    drain_rel: float = 1.0
    loop_share: float = 0.0
    vanish_share: float = 0.0
    outage: tuple[float, float] | None = None  # (start_h, end_h) with no telemetry at all

    def run(self, days: int) -> list[tuple[float, Decision, str]]:
        plan = self.plan
        strata = STRATA[:3]
        state = State()
        totals: dict[str, dict[str, Arms]] = {g.name: {} for g in plan.guardrails}
        log: list[tuple[float, Decision, str]] = []
        fresh: float | None = None
        for day in range(1, days + 1):
            now = day * 24.0
            share = plan.stages[state.stage].share
            size = self.devices_per_stratum
            canary_n = round(share * size)
            control_n = min(canary_n, size - canary_n)
            in_outage = self.outage is not None and self.outage[0] <= now < self.outage[1]
            if not in_outage and control_n > 0:
                fresh = now
                for stratum in strata:
                    for name, arms in self._day(canary_n, control_n).items():
                        key = stratum.key
                        totals[name][key] = totals[name].get(key, Arms()) + arms
            evidence = {name: Evidence(dict(rows), fresh, fresh) for name, rows in totals.items()}
            vanished = round(self.vanish_share * canary_n)
            proven = round(0.97 * (canary_n - vanished)) * len(strata)
            snapshot = Snapshot(now, state, evidence, canary_n * len(strata), proven, 0, 24.0)
            outcome = decide(plan, snapshot)
            log.append((now, outcome.decision, outcome.reason))
            state = outcome.state
            if state.phase in (Phase.ROLLED_BACK, Phase.COMPLETE):
                break
        return log

    def _day(self, canary_n: int, control_n: int) -> dict[str, Arms]:
        rng = self.rng
        loops = round(self.loop_share * canary_n)
        vanished = round(self.vanish_share * canary_n)
        reporting = canary_n - vanished

        def level(n: int, mean: float) -> Moments:
            sd = 0.15
            total = rng.gauss(n * mean, math.sqrt(n) * sd)
            return Moments.of_days(n, total, n * (sd * sd) + total * total / n)

        def count(n: int, rate: float, extra: float = 0.0, extra_n: int = 0) -> Moments:
            events = poisson(rng, n * rate)
            # rare events: at most one a day per device, so squares equal events
            loop_events = extra * extra_n
            return Moments.of_days(n, events + loop_events, events + extra * extra * extra_n)

        def missed(n: int, gone: int) -> Moments:
            events = poisson(rng, n * 0.02) + gone
            return Moments.of_days(n, events, events)

        return {
            "battery_drain": Arms(level(reporting, 0.8 * self.drain_rel), level(control_n, 0.8)),
            "reboots": Arms(count(reporting, 0.003, 24.0, loops), count(control_n, 0.003)),
            "errors": Arms(count(reporting, 0.001), count(control_n, 0.001)),
            "checkin": Arms(missed(canary_n, vanished), missed(control_n, 0)),
        }


def test_a_to_a_rollouts_rarely_abort() -> None:
    """No effect at all: over 200 seeded rollouts the false-abort rate is at most 2 %."""
    plan = _plan()
    aborts = 0
    completed = 0
    for seed in range(200):
        log = _World(plan, random.Random(seed)).run(days=40)
        decisions = [decision for _t, decision, _r in log]
        aborts += Decision.ABORT in decisions or Decision.ROLLBACK in decisions
        completed += decisions[-1] is Decision.ADVANCE
    assert aborts <= 200 * 0.02, f"{aborts} of 200 A/A rollouts aborted"
    assert completed >= 150, f"only {completed} of 200 A/A rollouts completed"


def test_a_reboot_loop_in_a_small_share_of_the_canary_is_caught_in_stage_one() -> None:
    plan = _plan()
    log = _World(plan, random.Random(3), loop_share=0.05).run(days=40)
    _now, decision, reason = log[-1]
    assert decision is Decision.ABORT and "reboots" in reason, log
    assert all(d is not Decision.ADVANCE for _t, d, _r in log)


def test_more_battery_drain_on_the_canary_is_caught() -> None:
    plan = _plan()
    log = _World(plan, random.Random(4), drain_rel=1.12).run(days=60)
    assert log[-1][1] in (Decision.ABORT, Decision.ROLLBACK) and "battery_drain" in log[-1][2]


def test_canaries_that_vanish_after_applying_block_the_advance() -> None:
    plan = _plan()
    log = _World(plan, random.Random(5), vanish_share=0.3).run(days=30)
    decisions = {d for _t, d, _r in log}
    assert Decision.ADVANCE not in decisions
    assert log[-1][1] in (Decision.ABORT, Decision.HOLD, Decision.ESCALATE)


def test_a_telemetry_outage_holds_instead_of_passing() -> None:
    plan = _plan()
    log = _World(plan, random.Random(6), outage=(24.0, 24.0 * 10)).run(days=9)
    assert all(d in (Decision.HOLD,) for _t, d, _r in log), log
    assert any("data-source problem" in r for _t, _d, r in log)


def test_reverting_canaries_abort_however_often_the_gate_is_read() -> None:
    plan = _plan()
    evidence = _all(plan, 0.5, 0.5, 2000)
    snapshot = replace(_snapshot(plan, 20.0, evidence), canary_devices=300, canary_reverted=15)
    outcome = decide(plan, snapshot)
    assert (
        outcome.decision is Decision.ABORT and "15 of 300 canary devices reverted" in outcome.reason
    )
    few = replace(snapshot, canary_reverted=2)
    assert decide(plan, few).decision is Decision.HOLD


@given(st.integers(1, 5000), st.integers(0, 5000))
def test_revert_evidence_grows_with_reverts(devices: int, reverted: int) -> None:
    from edgecfg.core.rollout import revert_evidence

    reverted = min(reverted, devices)
    more = min(reverted + 1, devices)
    assert revert_evidence(devices, more, 0.01, 0.05) >= revert_evidence(
        devices, reverted, 0.01, 0.05
    )


def test_the_last_stage_needs_no_control_to_complete() -> None:
    """At 100 % no control remains: a guardrail without a comparison does not hold it."""
    plan = _plan(stages=["50%", "100%"])
    evidence = _all(plan, 0.5, 0.5, 2000)
    evidence["checkin"] = Evidence({}, 190.0, 190.0)  # nothing to compare with
    done = decide(plan, _snapshot(plan, 100.0, evidence, state=State(stage=1)))
    assert done.decision is Decision.ADVANCE and done.state.phase is Phase.COMPLETE
    held = decide(plan, _snapshot(plan, 100.0, evidence, state=State(stage=0)))
    assert held.decision is Decision.HOLD and "checkin" in held.reason


def test_a_few_reverts_hold_the_stage_before_they_can_abort_it() -> None:
    plan = _plan()
    snapshot = replace(_snapshot(plan, 60.0, _all(plan, 0.5, 0.5, 2000)), canary_devices=255,
                       canary_proven=250, canary_reverted=2)  # fmt: skip
    outcome = decide(plan, snapshot)
    assert outcome.decision is Decision.HOLD
    assert "2 of 255 canary devices reverted (more than the 0.2% tolerated)" in outcome.reason
    assert decide(plan, replace(snapshot, canary_reverted=0)).decision is Decision.ADVANCE


def test_telemetry_missing_from_one_arm_holds_and_is_never_a_pass() -> None:
    plan = _plan()
    evidence = _all(plan, 0.5, 0.5, 2000)
    quiet = evidence["battery_drain"]
    evidence["battery_drain"] = Evidence(quiet.strata, 1.0, 190.0)  # the canary went quiet
    outcome = decide(plan, _snapshot(plan, 100.0, evidence))
    assert outcome.decision is Decision.HOLD
    assert "telemetry missing from the canary arm for ['battery_drain']" in outcome.reason
    assert outcome.verdicts[0].as_json()["telemetry_missing_from"] == ["canary"]
