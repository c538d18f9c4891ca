"""The local adaptation layer in CBOR (issue 14): in state reports and in
the agent's rule record; strict decoding of what a peer sends."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.core.ids import ETag
from edgecfg.core.rules import Adaptation, Adapted, Reading, Refused, RuleState
from edgecfg.core.tree import Value
from edgecfg.wire.adaptation import (
    AdaptationError,
    adaptation_from_value,
    adaptation_to_value,
    read_rules,
    state_from_bytes,
    state_to_bytes,
)
from edgecfg.wire.cbor import decode, encode
from edgecfg.wire.documents import DocumentError
from edgecfg.wire.messages import DeviceReport, MessageError
from tests.strategies import model_values

names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
paths = st.lists(names, min_size=1, max_size=3).map(tuple)
times = st.floats(min_value=0, max_value=2e9)
values = st.one_of(st.integers(-(2**31), 2**31), st.text(max_size=8), st.booleans())
readings = st.builds(Reading, names, st.floats(-200, 200), times)
adapted = st.builds(
    lambda path, value, rule, since, reading, clamped: Adapted(
        path, value, rule, since,
        None if reading is None else Reading(reading.input, reading.value, since),
        "< 2", value if not clamped else 0, "<= 9 (schema)" if clamped else None,
    ),
    paths, values, names | st.just("r"), times | st.just(5.0), st.none() | readings,
    st.booleans(),
)  # fmt: skip
layers = st.builds(
    lambda values, refused: Adaptation(tuple(values), tuple(refused)),
    st.lists(adapted, max_size=4),
    st.lists(st.builds(Refused, paths, names, st.text(max_size=20)), max_size=2),
)
states = st.dictionaries(
    names,
    st.builds(RuleState, st.booleans(), st.none() | times, st.integers(0, 5), st.none() | readings),
    max_size=3,
)
ETAG = ETag(bytes(range(8)))


@settings(max_examples=200, deadline=None)
@given(layers)
def test_a_layer_round_trips_through_its_wire_form(layer: Adaptation) -> None:
    assert adaptation_from_value(decode(encode(adaptation_to_value(layer)))) == layer


@settings(max_examples=200, deadline=None)
@given(states, layers, st.booleans())
def test_the_rule_record_round_trips(
    rules: dict[str, RuleState], layer: Adaptation, reported: bool
) -> None:
    assert state_from_bytes(state_to_bytes(rules, layer, reported=reported)) == (
        rules, layer, reported,
    )  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(layers)
def test_a_report_carries_the_layer_and_one_without_is_as_before(layer: Adaptation) -> None:
    plain = DeviceReport(applied=ETAG)
    assert plain.encode() == encode({"applied": ETAG})  # byte for byte what it was
    report = DeviceReport(applied=ETAG, adapt=layer)
    assert DeviceReport.decode(report.encode()) == report


@pytest.mark.parametrize(
    ("adapt", "message"),
    [
        ([], "'adapt' must be a map"),
        ({"rules": 1}, "'rules' and 'refused' must be lists"),
        ({"rules": [["r", 1, None, None, "< 2"]]}, "an adapting rule is [rule, since,"),
        ({"rules": [["r", "x", None, None, "< 2", []]]}, "'since' must be a finite number"),
        ({"rules": [["r", 1, "b", None, "< 2", []]]}, "'reading' must be a finite number"),
        ({"rules": [["r", 1, None, None, "< 2", [["a"]]]]}, "a value is [path, value"),
        ({"rules": [["r", 1, None, None, "< 2", [["a..b", 1]]]]}, "'path'"),
        ({"rules": [["r", 1, None, None, "< 2", [["a", 1, 2, 3]]]]}, "'bound' must be text"),
        ({"refused": [["a", 3, ""]]}, "'rule' must be text"),
        ({"refused": [1]}, "a refused action is [path, rule, reason]"),
        ({"rules": [1] * 65}, "at most 64 rules"),
        ({"rules": [["r", 1, None, None, "<", [["a", 1]] * 1025]]}, "at most 1024 values"),
    ],
)  # fmt: skip
def test_a_malformed_layer_in_a_report_is_refused_naming_the_field(
    adapt: object, message: str
) -> None:
    body = encode({"applied": ETAG, "adapt": adapt})  # type: ignore[dict-item]
    with pytest.raises(MessageError) as caught:
        DeviceReport.decode(body)
    assert "state report 'adapt'" in str(caught.value) and message in str(caught.value)


@pytest.mark.parametrize(
    "record",
    [
        b"\xff",
        encode([]),
        encode({"rules": {"r": [True, None, 0]}, "reported": True}),
        encode({"rules": {"r": [1, None, 0, None]}, "reported": True}),
        encode({"rules": {"r": [True, "x", 0, None]}, "reported": True}),
        encode({"rules": {"r": [True, 1.0, 0, ["b", "x", 1]]}, "reported": True}),
        encode({"rules": {}, "reported": 1}),
    ],
)
def test_a_damaged_rule_record_is_an_adaptation_error(record: bytes) -> None:
    with pytest.raises(AdaptationError):
        state_from_bytes(record)


def test_a_rules_document_must_be_a_map() -> None:
    with pytest.raises(DocumentError, match="a rules document must be a map"):
        read_rules(b"[1]", "json", source="r.json")
    assert read_rules(b"rules: []", "yaml").rules == ()


hostile_values = st.lists(
    st.lists(model_values, min_size=2, max_size=2) | st.lists(model_values, max_size=5),
    max_size=3,
)
hostile_groups = st.tuples(
    model_values,
    model_values,
    model_values,
    model_values,
    model_values,
    hostile_values | model_values,
).map(list)
hostile = st.one_of(
    model_values,
    st.fixed_dictionaries(
        {}, optional={"rules": st.lists(hostile_groups | model_values, max_size=3),
                      "refused": st.lists(st.lists(model_values, max_size=4), max_size=3)},
    ),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(hostile)
def test_any_adapt_a_peer_sends_is_a_layer_or_a_message_error(adapt: Value) -> None:
    body = encode({"applied": ETAG, "adapt": adapt})
    try:
        report = DeviceReport.decode(body)
    except MessageError:
        return
    assert adapt is None or report.adapt is not None
