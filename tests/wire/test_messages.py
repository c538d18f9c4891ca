"""The typed sync messages: every field survives a round trip, the wire form
is fixed, and a malformed message is refused naming its field."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.core.ids import ETag
from edgecfg.wire.cbor import decode, encode
from edgecfg.wire.messages import MAX_SCHEMA_VERSION, DeviceReport, MessageError, StateAnswer

etags = st.binary(min_size=8, max_size=8).map(ETag)
texts = st.text(max_size=12)


reports = st.builds(
    DeviceReport,
    applied=st.none() | etags,
    journal=st.none() | st.lists(st.integers(-(2**63), 2**63) | texts, max_size=3).map(tuple),
    store_events=st.lists(texts, max_size=2).map(tuple),
    agent=st.none() | texts,
    firmware=st.none() | texts,
    hardware=st.none() | texts,
    schema=st.none() | st.integers(0, MAX_SCHEMA_VERSION),
)


@given(report=reports, base=st.none() | etags)
def test_a_device_report_round_trips(report: DeviceReport, base: ETag | None) -> None:
    if report.journal is not None:  # a base goes with offline changes only
        report = dataclasses.replace(report, base=base)
    assert DeviceReport.decode(report.encode()) == report


@given(etag=etags, current=st.booleans(), ack=st.none() | st.integers(0, 2**32))
def test_a_state_answer_round_trips(etag: ETag, current: bool, ack: int | None) -> None:
    answer = StateAnswer(etag, current, None if ack is None else {"ack": ack})
    decoded = StateAnswer.decode(answer.encode())
    assert decoded == answer
    assert decoded.acknowledged == ack


def test_the_wire_form_of_a_plain_report_is_fixed() -> None:
    # {"applied": h'0102030405060708'}: what every current device sends
    report = DeviceReport(applied=ETag(bytes(range(1, 9))))
    assert report.encode().hex() == "a1676170706c696564480102030405060708"


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"applied": b"short"}, "applied"),
        ({"applied": None, "journal": {"a": 1}}, "journal"),
        ({"applied": None, "schema": 2**63}, "schema"),
        ({"applied": None, "schema": -1}, "schema"),
        ({"applied": None, "agent": 7}, "agent"),
        ({"applied": None, "store_events": [1]}, "store_events"),
    ],
)
def test_a_malformed_report_is_refused_naming_the_field(
    message: dict[str, object], field: str
) -> None:
    with pytest.raises(MessageError, match=field):
        DeviceReport.decode(encode(message))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        encode([1, 2]),
        b"\xff",
        encode({"etag": b"12345678"}),
        encode({"etag": b"1", "current": True}),
        encode({"etag": b"12345678", "current": True, "local": 3}),
    ],
)  # fmt: skip
def test_a_malformed_answer_is_refused(body: bytes) -> None:
    with pytest.raises(MessageError):
        StateAnswer.decode(body)


def test_a_base_that_is_no_etag_is_an_unknown_base() -> None:
    report = DeviceReport.decode(encode({"applied": None, "journal": [], "base": b"x"}))
    assert report.base is None and report.journal == ()
    assert decode(report.encode()) == {"applied": None, "journal": [], "base": None}
