"""Device-local adaptive rules (issue 14): declarations, and the laws of
evaluation for any sequence of readings and times."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.core.journal import check_override
from edgecfg.core.rules import (
    IDLE,
    RulesError,
    RuleSet,
    RuleState,
    adapt,
    describe,
    evaluate,
    progress,
    rules_from_document,
    step,
)
from edgecfg.core.schema import Schema
from edgecfg.core.schema_document import schema_from_document
from edgecfg.core.tree import Tree, get

SCHEMA: Schema = schema_from_document(
    {
        "name": "rules-test",
        "version": 1,
        "keys": {
            "telemetry.interval_s": {
                "id": 1, "type": "int", "default": 3600, "min": 60, "max": 86400,
                "local": {"allowed": True, "min": 300, "max": 86400},
            },
            "power.mode": {
                "id": 2, "type": "str", "default": "balanced",
                "enum": ["performance", "balanced", "saver", "survival"],
                "local": {"enum": ["balanced", "saver", "survival"]},
            },
            "net.cell.rsrp_min_dbm": {
                "id": 3, "type": "int", "default": -120, "min": -140, "max": -44,
                "local": {"allowed": True, "min": -130, "max": -100},
            },
            "security.debug_port": {"id": 4, "type": "bool", "default": False},
            "sensors.gain": {
                "id": 5, "type": "float", "default": 1.0, "min": 0.1, "max": 10.0,
                "local": {"allowed": True, "min": 0.5, "max": 4.0},
            },
        },
    }
)  # fmt: skip
BASE: Tree = {
    "telemetry": {"interval_s": 3600},
    "power": {"mode": "balanced"},
    "net": {"cell": {"rsrp_min_dbm": -120}},
    "security": {"debug_port": False},
    "sensors": {"gain": 1.0},
}
EXAMPLES = {
    "rules": [
        {
            "name": "battery-low",
            "when": {"input": "battery_pct", "below": 20, "exit_above": 25},
            "min_dwell_s": 21600,
            "then": [
                {"path": "telemetry.interval_s", "scale": 4},
                {"path": "power.mode", "set": "saver"},
            ],
        },
        {
            "name": "poor-coverage",
            "when": {"input": "rsrp_dbm", "below": -115, "exit_above": -110},
            "wakes": 3,
            "min_dwell_s": 86400,
            "then": [{"path": "net.cell.rsrp_min_dbm", "set": -100}],
        },
    ]
}
RULES = rules_from_document(EXAMPLES)


def test_low_battery_scales_the_interval_and_sets_the_power_mode() -> None:
    state, layer = evaluate(RULES, {}, {"battery_pct": 18.0}, 1000.0, base=BASE, schema=SCHEMA)
    assert state["battery-low"].active and state["battery-low"].since == 1000.0
    tree = layer.lay(BASE)
    assert get(tree, ("telemetry", "interval_s")) == 14400
    assert get(tree, ("power", "mode")) == "saver"
    adapted = layer.at(("telemetry", "interval_s"))
    assert adapted is not None and adapted.rule == "battery-low"
    assert adapted.trigger is not None and adapted.trigger.value == 18.0
    assert adapted.condition == "battery_pct = 18 < 20"


def test_a_scaled_value_is_clamped_to_the_local_policy_and_says_which_bound() -> None:
    base: Tree = {**BASE, "telemetry": {"interval_s": 40000}}
    _, layer = evaluate(RULES, {}, {"battery_pct": 5.0}, 0.0, base=base, schema=SCHEMA)
    adapted = layer.at(("telemetry", "interval_s"))
    assert adapted is not None
    assert adapted.value == 86400 and adapted.requested == 160000
    assert adapted.bound == "<= 86400 (local-override policy)"


def test_poor_coverage_needs_three_wakes_in_a_row() -> None:
    state: dict[str, RuleState] = {}
    for now, rsrp in enumerate([-120.0, -118.0, -100.0, -120.0, -119.0]):
        state = step(RULES, state, {"rsrp_dbm": rsrp}, float(now))
    assert not state["poor-coverage"].active  # the -100 reading broke the run
    state = step(RULES, state, {"rsrp_dbm": -121.0}, 5.0)
    assert state["poor-coverage"].active


def test_hysteresis_keeps_a_rule_active_between_its_thresholds() -> None:
    state = step(RULES, {}, {"battery_pct": 19.0}, 0.0)
    state = step(RULES, state, {"battery_pct": 22.0}, 10**6)  # above 20, below 25
    assert state["battery-low"].active
    state = step(RULES, state, {"battery_pct": 25.0}, 2 * 10**6)
    assert not state["battery-low"].active


def test_dwell_delays_leaving_until_the_first_wake_after_it() -> None:
    state = step(RULES, {}, {"battery_pct": 19.0}, 0.0)
    state = step(RULES, state, {"battery_pct": 90.0}, 3600.0)  # charged, too soon
    assert state["battery-low"].active
    state = step(RULES, state, {"battery_pct": 90.0}, 21600.0)
    assert not state["battery-low"].active and state["battery-low"].since == 21600.0


def test_progress_says_how_far_a_rule_is_from_its_next_change() -> None:
    rule = RULES.rules[1]  # poor-coverage: 3 wakes, one day's dwell
    state = step(RULES, {}, {"rsrp_dbm": -120.0}, 0.0)
    assert progress(rule, state["poor-coverage"]) == (
        "rule poor-coverage: 1 of 3 wake(s) toward entering", None,
    )  # fmt: skip
    assert progress(rule, IDLE) is None
    for now in (1.0, 2.0, 3.0, 4.0):  # entered at 2, then three wakes of good coverage
        state = step(RULES, state, {"rsrp_dbm": -120.0 if now < 3 else -100.0}, now)
    state = step(RULES, state, {"rsrp_dbm": -100.0}, 5.0)
    assert progress(rule, state["poor-coverage"]) == (
        "rule poor-coverage: 3 of 3 wake(s) toward leaving", 2.0 + 86400,
    )  # fmt: skip


def test_a_reading_that_is_no_number_is_refused_naming_it() -> None:
    with pytest.raises(RulesError, match="reading 'battery_pct': expected a number, got \"low\""):
        evaluate(RULES, {}, {"battery_pct": "low"}, 0.0, base=BASE, schema=SCHEMA)  # type: ignore[dict-item]


def test_a_missing_reading_changes_nothing() -> None:
    state = step(RULES, {}, {"rsrp_dbm": -120.0}, 0.0)
    assert step(RULES, state, {"battery_pct": 50.0}, 1.0)["poor-coverage"] == state["poor-coverage"]
    assert step(RULES, state, {"rsrp_dbm": math.nan}, 1.0) == state


def test_an_action_the_local_policy_refuses_is_listed_not_applied() -> None:
    rules = rules_from_document(
        {
            "rules": [
                {
                    "name": "hot",
                    "when": {"input": "temp_c", "above": 60},
                    "then": [
                        {"path": "security.debug_port", "set": True},
                        {"path": "power.mode", "set": "performance"},
                        {"path": "sensors.gain", "scale": 10},
                    ],
                }
            ]
        }
    )
    _, layer = evaluate(rules, {}, {"temp_c": 70.0}, 0.0, base=BASE, schema=SCHEMA)
    assert [a.dotted for a in layer.values] == ["sensors.gain"]
    assert layer.values[0].value == 4.0
    reasons = {r.dotted: r.reason for r in layer.refused}
    assert "no local override" in reasons["security.debug_port"]
    assert "local-override policy" in reasons["power.mode"]


def test_the_earlier_rule_wins_a_path() -> None:
    when = {"input": "x", "above": 0}
    doc = {
        "rules": [
            {"name": "a", "when": when, "then": [{"path": "power.mode", "set": "saver"}]},
            {"name": "b", "when": when, "then": [{"path": "power.mode", "set": "survival"}]},
        ]
    }
    _, layer = evaluate(rules_from_document(doc), {}, {"x": 1.0}, 0.0, base=BASE, schema=SCHEMA)
    assert [(a.rule, a.value) for a in layer.values] == [("a", "saver")]
    assert layer.refused[0].reason == "shadowed by rule a"


def _one(**fields: object) -> dict[str, object]:
    """A rules document of one rule ``r``, with ``fields`` changed."""
    rule: dict[str, object] = {"name": "r", "when": {"input": "b", "below": 1}}
    rule["then"] = [{"path": "a", "set": 1}]
    return {"rules": [rule | fields]}


def test_scaling_what_is_not_a_number_is_refused_with_the_reason() -> None:
    doc = _one(when={"input": "x", "above": 0}, then=[
        {"path": "power.mode", "scale": 2}, {"path": "nothing.here", "scale": 2},
        {"path": "sensors.gain", "scale": 1e308},
    ])  # fmt: skip
    base: Tree = {**BASE, "sensors": {"gain": 1e10}}
    _, layer = evaluate(rules_from_document(doc), {}, {"x": 1}, 0, base=base, schema=SCHEMA)
    assert [r.reason for r in layer.refused] == [
        'cannot scale power.mode: the config below holds "balanced"',
        "cannot scale nothing.here: the config below holds nothing",
        "cannot scale sensors.gain: 10000000000.0 x 1e+308 is not finite",
    ]


def test_explain_says_which_rule_on_which_reading_and_which_bound() -> None:
    base: Tree = {**BASE, "telemetry": {"interval_s": 60}}
    doc = _one(when={"input": "load_pct", "above": 90}, then=[
        {"path": "telemetry.interval_s", "scale": 0.5},
    ])  # fmt: skip
    _, layer = evaluate(rules_from_document(doc), {}, {"load_pct": 95}, 0, base=base, schema=SCHEMA)
    [adapted] = layer.values
    assert (adapted.value, adapted.requested) == (300, 30)
    assert describe(adapted) == (
        "rule r on load_pct = 95 > 90, asked 30, clamped to >= 300 (local-override policy)"
    )


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_one(when={"input": "b", "below": 20, "exit_above": 10}),
         "'exit_above' 10 is below 'below' 20"),
        (_one(when={"input": "b", "below": 1, "above": 2}), "exactly one of 'below' and 'above'"),
        (_one(when={"input": "B!", "below": 1}), "'when.input' must match"),
        (_one(then=[{"path": "a", "scale": 0}]), "'scale' of a must be above 0"),
        (_one(then=[]), "'then' must be a list"),
        (_one(wakes=0), "'wakes' must be"),
        ({"rules": _one()["rules"] * 2}, "rule r: the name is used twice"),  # type: ignore[operator]
        ({"rule": []}, "unknown rules-document fields ['rule']"),
        ({"rules": {}}, "'rules' must be a list"),
        ({"rules": [1]}, "rule #1 must be a map"),
        ({"rules": [{"when": {}}]}, "rule #1 needs a 'name'"),
        (_one(extra=1), "rule r: unknown fields ['extra']"),
        (_one(min_dwell_s=-1), "'min_dwell_s' must be a number of seconds >= 0"),
        (_one(when={"input": "b", "below": "low"}), "'when.below' must be a finite number"),
        (_one(when=[]), "'when' must be a map"),
        (_one(when={"input": "b", "below": 1, "hold": 2}), "unknown 'when' fields ['hold']"),
        (_one(when={"input": "b", "below": 1, "exit_below": 2}),
         "a 'below' rule leaves with 'exit_above'"),
        (_one(when={"input": "b", "above": 1, "exit_above": 2}),
         "an 'above' rule leaves with 'exit_below'"),
        (_one(when={"input": "b", "above": 1, "exit_below": 2}),
         "'exit_below' 2 is above 'above' 1"),
        (_one(then=[1]), "an action must be a map"),
        (_one(then=[{"path": "a", "set": 1, "to": 2}]), "unknown action fields ['to']"),
        (_one(then=[{"set": 1}]), "an action needs a 'path'"),
        (_one(then=[{"path": "a..b", "set": 1}]), "action path 'a..b'"),
        (_one(then=[{"path": "a", "set": 1, "scale": 2}]), "exactly one of 'set' and 'scale'"),
        (_one(then=[{"path": "a", "set": {1: 2}}]), "'set' of a"),
    ],
)  # fmt: skip
def test_a_bad_declaration_is_refused_naming_the_rule_and_field(
    doc: dict[str, object], message: str
) -> None:
    with pytest.raises(RulesError, match=None) as caught:
        rules_from_document(doc)
    assert message in str(caught.value)


# ---------------------------------------------------------------- laws

readings = st.floats(min_value=-200, max_value=200) | st.just(math.nan)
wakes = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=7 * 86400),  # a time step
        st.fixed_dictionaries({}, optional={"battery_pct": readings, "rsrp_dbm": readings}),
    ),
    max_size=60,
)
scales = st.floats(min_value=0.01, max_value=1000)
rule_sets = st.builds(
    lambda scale, dwell, enter, wakes_in, wakes_out: rules_from_document(
        {
            "rules": [
                {
                    "name": "r1",
                    "when": {"input": "battery_pct", "below": enter, "exit_above": enter + 5},
                    "wakes": wakes_in, "exit_wakes": wakes_out, "min_dwell_s": dwell,
                    "then": [
                        {"path": "telemetry.interval_s", "scale": scale},
                        {"path": "sensors.gain", "scale": scale},
                        {"path": "power.mode", "set": "survival"},
                    ],
                },
                {
                    "name": "r2",
                    "when": {"input": "rsrp_dbm", "above": -100, "exit_below": -110},
                    "min_dwell_s": dwell / 2,
                    "then": [
                        {"path": "telemetry.interval_s", "scale": 1 / scale},
                        {"path": "net.cell.rsrp_min_dbm", "set": -150},
                    ],
                },
            ]
        }
    ),
    scales, st.floats(min_value=0, max_value=86400), st.floats(min_value=-50, max_value=100),
    st.integers(1, 4), st.integers(1, 4),
)  # fmt: skip
bases = st.builds(
    lambda interval, gain: {
        **BASE, "telemetry": {"interval_s": interval}, "sensors": {"gain": gain}
    },
    st.integers(60, 86400), st.floats(0.1, 10.0),
)  # fmt: skip


def _run(
    rules: RuleSet, base: Tree, sequence: list[tuple[float, dict[str, float]]]
) -> list[tuple[float, dict[str, RuleState], list[tuple[str, object]]]]:
    state: dict[str, RuleState] = {}
    now = 0.0
    trace: list[tuple[float, dict[str, RuleState], list[tuple[str, object]]]] = []
    for delta, inputs in sequence:
        now += delta
        state, layer = evaluate(rules, state, inputs, now, base=base, schema=SCHEMA)
        trace.append((now, state, [(a.dotted, a.value) for a in layer.values]))
    return trace


@settings(max_examples=300, deadline=None)
@given(rule_sets, bases, wakes)
def test_adapted_values_never_leave_the_local_policy(
    rules: RuleSet, base: Tree, sequence: list[tuple[float, dict[str, float]]]
) -> None:
    state: dict[str, RuleState] = {}
    now = 0.0
    for delta, inputs in sequence:
        now += delta
        state, layer = evaluate(rules, state, inputs, now, base=base, schema=SCHEMA)
        for adapted in layer.values:
            check_override(SCHEMA, adapted.path, adapted.value)  # raises when outside
            assert type(adapted.value) is type(get(base, adapted.path))


@settings(max_examples=300, deadline=None)
@given(rule_sets, wakes, st.lists(st.floats(min_value=-86400, max_value=86400), max_size=60))
def test_no_rule_changes_state_faster_than_its_dwell(
    rules: RuleSet, sequence: list[tuple[float, dict[str, float]]], jumps: list[float]
) -> None:
    """Any readings at any times, the clock jumping backwards too."""
    state: dict[str, RuleState] = {}
    changes: dict[str, list[float]] = {rule.name: [] for rule in rules.rules}
    now = 0.0
    for index, (delta, inputs) in enumerate(sequence):
        now += jumps[index] if index < len(jumps) else delta
        new = step(rules, state, inputs, now)
        for rule in rules.rules:
            if new[rule.name].active != state.get(rule.name, IDLE).active:
                changes[rule.name].append(now)
                assert new[rule.name].since == now
        state = new
    for rule in rules.rules:
        times = changes[rule.name]
        assert all(b - a >= rule.min_dwell_s for a, b in itertools.pairwise(times))


@settings(max_examples=100, deadline=None)
@given(rule_sets, bases, wakes)
def test_evaluation_is_deterministic(
    rules: RuleSet, base: Tree, sequence: list[tuple[float, dict[str, float]]]
) -> None:
    assert _run(rules, base, sequence) == _run(rules, base, sequence)


@settings(max_examples=100, deadline=None)
@given(rule_sets, bases, wakes)
def test_a_layer_from_the_states_alone_is_the_one_evaluation_gave(
    rules: RuleSet, base: Tree, sequence: list[tuple[float, dict[str, float]]]
) -> None:
    """The layer depends on the states, not on how they were reached (so the
    agent may rebuild it after a restart from the persisted states)."""
    state: dict[str, RuleState] = {}
    for now, (_, inputs) in enumerate(sequence):
        state, layer = evaluate(rules, state, inputs, float(now), base=base, schema=SCHEMA)
        assert adapt(rules, state, base, SCHEMA) == layer
