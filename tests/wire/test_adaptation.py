"""The local adaptation layer in CBOR (issue 14): in state reports and in
the agent's rule record; strict decoding of what a peer sends."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.core.ids import ETag
from edgecfg.core.rules import Adaptation, Adapted, Reading, Refused, RuleState
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

names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
paths = st.lists(names, min_size=1, max_size=3).map(tuple)
times = st.floats(min_value=0, max_value=2e9)
values = st.one_of(st.integers(-(2**31), 2**31), st.text(max_size=8), st.booleans())
readings = st.builds(Reading, names, st.floats(-200, 200), times)
adapted = st.builds(
    lambda path, value, rule, since, trigger, clamped: Adapted(
        path, value, rule, since, trigger, "x = 1 < 2", value if not clamped else 0,
        "<= 9 (schema)" if clamped else None,
    ),
    paths, values, names, times, st.none() | readings, st.booleans(),
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
        ({"values": 1}, "'values' and 'refused' must be lists"),
        ({"values": [{"path": "a"}]}, "an adapted value is a map with a 'value'"),
        ({"values": [{"path": "a", "value": 1, "rule": "r", "since": "x", "when": ""}]},
         "'since' must be a finite number"),
        ({"values": [{"path": "a..b", "value": 1, "rule": "r", "since": 1, "when": ""}]},
         "'path'"),
        ({"refused": [{"path": "a", "rule": 3, "reason": ""}]}, "'rule' must be text"),
        ({"values": [1] * 1025}, "at most 1024"),
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
