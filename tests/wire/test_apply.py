"""The apply outcome in a state report and the device's apply record: round
trips, a fixed wire form, and malformed input refused naming the field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.core.apply import (
    MAX_UNREPORTED,
    PHASES,
    REVERT_REASONS,
    ApplyOutcome,
    ApplyState,
    ProbeResult,
    Trial,
)
from edgecfg.core.ids import ETag
from edgecfg.core.tree import Value
from edgecfg.wire.apply import decode_apply_state, encode_apply_state
from edgecfg.wire.cbor import encode
from edgecfg.wire.messages import DeviceReport, MessageError, outcome_from_value

etags = st.binary(min_size=8, max_size=8).map(ETag)
texts = st.text(max_size=12)
seconds = st.floats(0, 2e9, allow_nan=False)
probes = st.builds(ProbeResult, st.text(min_size=1, max_size=12), st.booleans(), texts)


@st.composite
def outcomes(draw: st.DrawFn) -> ApplyOutcome:
    reason = draw(st.none() | st.sampled_from(REVERT_REASONS))
    return ApplyOutcome(
        draw(etags), draw(etags), "confirmed" if reason is None else "reverted", reason,
        draw(texts), tuple(draw(st.lists(probes, max_size=3))), draw(seconds), draw(seconds),
        draw(st.integers(0, 5)),
    )  # fmt: skip


trials = st.builds(
    Trial,
    candidate=etags,
    previous=etags,
    started_at=seconds,
    deadline=seconds,
    boot_limit=st.integers(0, 3),
    generation=st.none() | st.integers(1, 2**40),
    boots=st.integers(0, 3),
    probes=st.lists(probes, max_size=2).map(tuple),
    reason=st.none() | st.sampled_from(REVERT_REASONS),
    detail=texts,
)


@st.composite
def states(draw: st.DrawFn) -> ApplyState:
    phase = draw(st.sampled_from(PHASES))
    return ApplyState(
        phase,
        None if phase == "idle" else draw(trials),
        tuple(draw(st.lists(outcomes(), max_size=3))),
        draw(st.integers(0, 100)),
    )


@given(state=states())
def test_the_apply_record_round_trips(state: ApplyState) -> None:
    assert decode_apply_state(encode_apply_state(state)) == state


@given(applied=etags, outcome=st.lists(outcomes(), max_size=3), dropped=st.integers(0, 9))
def test_a_report_with_outcomes_round_trips(
    applied: ETag, outcome: list[ApplyOutcome], dropped: int
) -> None:
    report = DeviceReport(applied, apply=tuple(outcome), apply_dropped=dropped)
    assert DeviceReport.decode(report.encode()) == report


def test_the_wire_form_of_a_reported_revert_is_fixed() -> None:
    outcome = ApplyOutcome(
        ETag(b"C" * 8), ETag(b"P" * 8), "reverted", "probe-failed", "cut off",
        (ProbeResult("reachability", False, "refused"),), 10.0, 12.5,
    )  # fmt: skip
    report = DeviceReport(ETag(b"P" * 8), apply=(outcome,))
    # {"apply": [{"etag": h'43..', "prev": h'50..', "boots": 0, "ended": 12.5,
    #   "detail": "cut off", "probes": [{"ok": false, "name": "reachability",
    #   "detail": "refused"}], "reason": "probe-failed", "started": 10.0,
    #   "verdict": "reverted"}], "applied": h'50..'}: deterministic key order (RFC 8949 §4.2.1)
    assert report.encode().hex() == (
        "a2656170706c7981a96465746167484343434343434343647072657648505050505050505065626f"
        "6f74730065656e646564f94a406664657461696c67637574206f66666670726f62657381a3626f6b"
        "f4646e616d656c72656163686162696c6974796664657461696c677265667573656466726561736f"
        "6e6c70726f62652d6661696c65646773746172746564f94900677665726469637468726576657274"
        "6564676170706c696564485050505050505050"
    )


def test_a_report_without_outcomes_is_byte_for_byte_as_before() -> None:
    plain = DeviceReport(applied=ETag(bytes(range(1, 9))))
    assert plain.encode().hex() == "a1676170706c696564480102030405060708"


def good_outcome() -> dict[str, Value]:
    return {
        "etag": b"C" * 8, "prev": b"P" * 8, "verdict": "reverted", "reason": "deadline",
        "detail": "", "probes": [], "started": 1.0, "ended": 2.0, "boots": 0,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"etag": b"short"}, "etag"),
        ({"prev": None}, "prev"),
        ({"verdict": "maybe"}, "verdict"),
        ({"reason": "bored"}, "verdict"),
        ({"verdict": "confirmed"}, "verdict"),
        ({"probes": [{"ok": True}]}, "name"),
        ({"probes": [{"name": "x", "ok": 1}]}, "ok"),
        ({"probes": {}}, "probes"),
        ({"started": "now"}, "started"),
        ({"boots": -1}, "boots"),
        ({"detail": 5}, "detail"),
    ],
)
def test_a_malformed_outcome_is_refused_naming_the_field(
    change: dict[str, Value], field: str
) -> None:
    with pytest.raises(MessageError, match=field):
        outcome_from_value({**good_outcome(), **change})
    with pytest.raises(MessageError):
        DeviceReport.decode(encode({"applied": None, "apply": [{**good_outcome(), **change}]}))


def test_a_report_refuses_a_non_list_or_too_many_outcomes_or_a_bad_count() -> None:
    for body in (
        {"applied": None, "apply": {}},
        {"applied": None, "apply": [good_outcome()] * (MAX_UNREPORTED + 1)},
        {"applied": None, "apply_dropped": -1},
        {"applied": None, "apply": [3]},
    ):
        with pytest.raises(MessageError, match="apply"):
            DeviceReport.decode(encode(body))


@pytest.mark.parametrize(
    "record",
    [
        b"\xff",
        encode([1]),
        encode({"v": 2}),
        encode({"v": 1, "phase": "dancing", "dropped": 0, "trial": None, "unreported": []}),
        encode({"v": 1, "phase": "idle", "dropped": -1, "trial": None, "unreported": []}),
        encode({"v": 1, "phase": "idle", "dropped": 0, "trial": None, "unreported": 1}),
        encode({"v": 1, "phase": "probing", "dropped": 0, "trial": None, "unreported": []}),
        encode({"v": 1, "phase": "probing", "dropped": 0, "trial": 3, "unreported": []}),
        encode({"v": 1, "phase": "probing", "dropped": 0, "trial": {"etag": 1}, "unreported": []}),
    ],
)
def test_a_damaged_apply_record_is_refused(record: bytes) -> None:
    with pytest.raises(MessageError, match="apply record"):
        decode_apply_state(record)


def test_an_unknown_revert_reason_in_the_record_is_refused() -> None:
    trial = Trial(ETag(b"C" * 8), ETag(b"P" * 8), 1.0, 2.0, reason="deadline")
    data = encode_apply_state(ApplyState("reverting", trial))
    broken = data.replace(b"deadline", b"bedtime!", 1)
    assert broken != data
    with pytest.raises(MessageError, match="revert reason"):
        decode_apply_state(broken)
