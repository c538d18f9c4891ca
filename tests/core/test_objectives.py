"""The optimizer's objectives: parsing, errors that name what was wrong, constraint laws."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.core.objectives import Constraint, Segment, parse_objectives
from edgecfg.errors import UsageError

TUNABLE = ("net.uplink.interval_s", "net.coap.ack_timeout_s")


def _doc(**overrides: object) -> dict[str, object]:
    table: dict[str, object] = {
        "name": "life", "segment": "power/battery", "minimise": "battery_drain",
        "settings": ["net.uplink.interval_s"],
        "constraints": ["net.uplink.interval_s <= 900", "errors not worse than +10%",
                        "battery_life_years >= 5"],
    }  # fmt: skip
    table.update(overrides)
    return {"objective": [table]}


def test_parses_the_three_constraint_forms_and_the_segment() -> None:
    (objective,) = parse_objectives(_doc(), TUNABLE)
    kinds = [(c.kind, c.name, c.op, c.value) for c in objective.constraints]
    assert kinds == [
        ("setting", "net.uplink.interval_s", "<=", 900.0),
        ("relative", "errors", "<=", pytest.approx(0.10)),
        ("level", "battery_life_years", ">=", 5.0),
    ]
    assert objective.segment == Segment((("power", "battery"),))
    assert objective.lower_is_better and objective.guardrails == (
        "battery_drain", "errors", "reboots",
    )  # fmt: skip
    assert objective.setting_allowed("net.uplink.interval_s", 900)
    assert not objective.setting_allowed("net.uplink.interval_s", 1200)


def test_several_objectives_per_segment_keep_their_order() -> None:
    doc = _doc()
    tables = doc["objective"]
    assert isinstance(tables, list)
    tables.append({"name": "fresh", "segment": "power/battery", "minimise": "freshness_s",
                   "settings": ["net.uplink.interval_s"]})  # fmt: skip
    assert [o.name for o in parse_objectives(doc, TUNABLE)] == ["life", "fresh"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"minimize": "errors"}, "unknown key 'minimize'"),
        ({"minimise": "joy"}, "unknown metric 'joy'"),
        ({"maximise": "delivered"}, "exactly one of 'minimise' or 'maximise'"),
        ({"settings": ["net.ntp.interval_s"]}, "'net.ntp.interval_s' is not declared tunable"),
        ({"settings": []}, "name at least one tunable setting"),
        ({"constraints": ["latency <= 3"]}, "'latency' is neither a setting"),
        ({"constraints": ["errors about +10%"]}, "expected 'NAME <= NUMBER'"),
        ({"constraints": ["joy not worse than +5%"]}, "unknown metric 'joy'"),
        ({"guardrails": ["mood"]}, "guardrails: unknown 'mood'"),
        ({"segment": "colour/red"}, "unknown dimension 'colour'"),
        ({"segment": "battery"}, "expected '*' or 'dimension/value'"),
    ],
)
def test_mistakes_are_errors_naming_what_was_wrong(
    override: dict[str, object], message: str
) -> None:
    with pytest.raises(UsageError, match=message.replace("+", r"\+").replace("*", r"\*")):
        parse_objectives(_doc(**override), TUNABLE)


def test_document_level_mistakes() -> None:
    with pytest.raises(UsageError, match="unknown top-level keys \\['objectives'\\]"):
        parse_objectives({"objectives": []}, TUNABLE)
    with pytest.raises(UsageError, match="at least one"):
        parse_objectives({"objective": []}, TUNABLE)
    doc = _doc()
    tables = doc["objective"]
    assert isinstance(tables, list)
    tables.append(tables[0])
    with pytest.raises(UsageError, match="names used twice: \\['life'\\]"):
        parse_objectives(doc, TUNABLE)


@given(
    st.sampled_from(["<=", ">=", "<", ">"]),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(-1e6, 1e6, allow_nan=False),
)
def test_a_constraint_holds_exactly_as_its_operator_says(op: str, bound: float, x: float) -> None:
    constraint = Constraint("level", "errors", op, bound, "t")  # type: ignore[arg-type]
    expected = {"<=": x <= bound, ">=": x >= bound, "<": x < bound, ">": x > bound}[op]
    assert constraint.holds(x) is expected


@given(st.sampled_from(["eu", "us"]), st.sampled_from(["battery", "mains"]))
def test_a_segment_matches_exactly_its_strata(region: str, power: str) -> None:
    segment = Segment((("region", "eu"), ("power", "battery")))
    key = f"nbiot|{region}|{power}|good"
    assert segment.matches(key) is (region == "eu" and power == "battery")
    assert Segment().matches(key)
