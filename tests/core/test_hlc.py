"""Hybrid logical clocks: monotonicity, causality, total order, drift (edgecfg.core.hlc)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.core.hlc import (
    DEFAULT_MAX_DRIFT_MS,
    MAX_NODE_LENGTH,
    ClockDrift,
    Timestamp,
    TimestampFormatError,
    receive,
    tick,
    timestamp_from_compact,
)
from edgecfg.errors import PeerError, UsageError

walls = st.integers(min_value=0, max_value=10**13)
nodes = st.sampled_from(["dev-1", "dev-2", "gateway", ""]) | st.text(max_size=6)
timestamps = st.builds(Timestamp, walls, st.integers(min_value=0, max_value=50), nodes)

# ---------------------------------------------------------------- laws


@given(st.lists(walls, min_size=1, max_size=60))
def test_tick_strictly_increases_under_any_physical_times(nows: list[int]) -> None:
    last: Timestamp | None = None
    for now in nows:
        stamp = tick(last, now, "dev-1")
        assert last is None or stamp > last
        assert stamp.wall_ms == max(now, last.wall_ms if last else now)
        last = stamp


@given(st.lists(walls, min_size=1, max_size=60))
def test_tick_wall_is_the_largest_physical_time_seen(nows: list[int]) -> None:
    last: Timestamp | None = None
    for index, now in enumerate(nows):
        last = tick(last, now, "dev-1")
        assert last.wall_ms == max(nows[: index + 1])


@given(st.none() | timestamps, timestamps, walls)
def test_receive_is_after_both_the_last_event_and_the_remote_send(
    last: Timestamp | None, remote: Timestamp, now: int
) -> None:
    stamp = receive(last, remote, now, "dev-1", max_drift_ms=10**14)
    assert stamp > remote
    assert stamp.logical() > remote.logical()
    assert last is None or stamp > last
    assert stamp.wall_ms == max(remote.wall_ms, now, last.wall_ms if last else 0)


Event = tuple[str, int, int, int]  # (kind, node, other node, physical time)


@st.composite
def schedules(draw: st.DrawFn) -> list[Event]:
    """Events of three nodes with skewed physical clocks: local ticks, sends, receives."""
    events: list[Event] = []
    for _ in range(draw(st.integers(min_value=1, max_value=80))):
        kind = draw(st.sampled_from(["tick", "send", "receive"]))
        node, other = draw(st.integers(0, 2)), draw(st.integers(0, 2))
        events.append((kind, node, other, draw(st.integers(min_value=0, max_value=5_000))))
    return events


@given(schedules())
@settings(max_examples=300)
def test_clocks_of_a_system_keep_causality_and_per_node_monotonicity(events: list[Event]) -> None:
    names = ["a", "b", "c"]
    last: list[Timestamp | None] = [None, None, None]
    in_flight: list[list[Timestamp]] = [[], [], []]  # messages addressed to each node
    happened: list[tuple[Timestamp, Timestamp]] = []  # (send, receive) pairs
    for kind, node, other, now in events:
        before = last[node]
        if kind == "receive" and in_flight[node]:
            sent = in_flight[node].pop(0)
            stamp = receive(before, sent, now, names[node], max_drift_ms=10_000)
            happened.append((sent, stamp))
        else:
            stamp = tick(before, now, names[node])
            if kind == "send":
                in_flight[other].append(stamp)
        assert before is None or stamp > before
        last[node] = stamp
    assert all(sent < received for sent, received in happened)


@given(st.lists(timestamps, min_size=2, max_size=20))
def test_timestamps_are_totally_ordered(stamps: list[Timestamp]) -> None:
    for a, b in itertools.product(stamps, repeat=2):
        assert [a < b, a == b, a > b].count(True) == 1
        assert (a < b) == ((a.wall_ms, a.counter, a.node) < (b.wall_ms, b.counter, b.node))
    ordered = sorted(stamps)
    assert all(x <= y for x, y in itertools.pairwise(ordered))


def test_equal_logical_times_of_two_nodes_are_still_ordered_by_node() -> None:
    a, b = Timestamp(5, 1, "a"), Timestamp(5, 1, "b")
    assert a < b
    assert a.logical() == b.logical()


# ---------------------------------------------------------------- the rules


def test_tick_counts_while_the_physical_clock_stands_still_or_goes_back() -> None:
    first = tick(None, 1_000, "dev")
    assert first == Timestamp(1_000, 0, "dev")
    assert tick(first, 1_000, "dev") == Timestamp(1_000, 1, "dev")
    assert tick(Timestamp(1_000, 1, "dev"), 400, "dev") == Timestamp(1_000, 2, "dev")
    assert tick(Timestamp(1_000, 2, "dev"), 1_001, "dev") == Timestamp(1_001, 0, "dev")


@pytest.mark.parametrize(
    ("last", "remote", "now", "expected"),
    [
        # the physical clock is ahead of both: counter restarts
        (Timestamp(10, 4, "me"), Timestamp(20, 7, "gw"), 30, Timestamp(30, 0, "me")),
        # the remote is ahead: continue its counter
        (Timestamp(10, 4, "me"), Timestamp(20, 7, "gw"), 15, Timestamp(20, 8, "me")),
        # our last event is ahead: continue ours
        (Timestamp(25, 4, "me"), Timestamp(20, 7, "gw"), 15, Timestamp(25, 5, "me")),
        # both at the same wall: the larger counter plus one
        (Timestamp(20, 4, "me"), Timestamp(20, 7, "gw"), 15, Timestamp(20, 8, "me")),
        (Timestamp(20, 9, "me"), Timestamp(20, 7, "gw"), 20, Timestamp(20, 10, "me")),
        # first event of the node is a receive
        (None, Timestamp(20, 7, "gw"), 20, Timestamp(20, 8, "me")),
        (None, Timestamp(20, 7, "gw"), 21, Timestamp(21, 0, "me")),
    ],
)
def test_receive_follows_kulkarni_et_al(
    last: Timestamp | None, remote: Timestamp, now: int, expected: Timestamp
) -> None:
    assert receive(last, remote, now, "me") == expected


def test_receive_refuses_a_remote_too_far_ahead_naming_both_times() -> None:
    remote = Timestamp(1_000_000, 3, "gateway")
    with pytest.raises(ClockDrift) as caught:
        receive(None, remote, 1_000_000 - 60_001, "dev", max_drift_ms=60_000)
    error = caught.value
    assert isinstance(error, PeerError)
    assert "1000000+3@gateway" in str(error)
    assert "now 939999 ms" in str(error)
    assert "60001 ms ahead" in str(error)
    assert (error.remote, error.now_ms, error.max_drift_ms) == (remote, 939_999, 60_000)


def test_receive_accepts_a_remote_exactly_at_the_drift_bound() -> None:
    stamp = receive(None, Timestamp(1_060_000, 0, "gw"), 1_000_000, "dev", max_drift_ms=60_000)
    assert stamp == Timestamp(1_060_000, 1, "dev")


def test_the_default_drift_bound_is_five_minutes() -> None:
    assert DEFAULT_MAX_DRIFT_MS == 300_000
    receive(None, Timestamp(300_000, 0, "gw"), 0, "dev")
    with pytest.raises(ClockDrift):
        receive(None, Timestamp(300_001, 0, "gw"), 0, "dev")


def test_a_negative_drift_bound_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="max_drift_ms"):
        receive(None, Timestamp(0, 0, "gw"), 0, "dev", max_drift_ms=-1)


# ---------------------------------------------------------------- values and compact form


@pytest.mark.parametrize(
    ("wall", "counter", "node"),
    [
        (-1, 0, "n"),
        (0, -1, "n"),
        (2**64, 0, "n"),
        (True, 0, "n"),
        (0, 1.0, "n"),
        (0, 0, b"n"),
        (0, 0, "\udc80"),
    ],
)
def test_timestamp_rejects_values_outside_its_ranges(
    wall: object, counter: object, node: object
) -> None:
    with pytest.raises(UsageError, match="timestamp"):
        Timestamp(wall, counter, node)  # type: ignore[arg-type]


def test_tick_before_the_epoch_is_refused() -> None:
    with pytest.raises(UsageError, match="wall_ms"):
        tick(None, -5, "dev")


def test_timestamp_text_form() -> None:
    assert str(Timestamp(1_700_000_000_000, 2, "dev-9")) == "1700000000000+2@dev-9"


@given(timestamps)
def test_compact_form_round_trips(stamp: Timestamp) -> None:
    compact = stamp.to_compact()
    assert compact == [stamp.wall_ms, stamp.counter, stamp.node]
    assert timestamp_from_compact(compact) == stamp


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((1, 2, "n"), "is a list"),
        ([1, 2], "3 elements"),
        ([1, 2, "n", 4], "3 elements"),
        ([True, 2, "n"], "wall_ms"),
        ([1, -2, "n"], "counter"),
        ([1, 2**64, "n"], "counter"),
        ([1.5, 2, "n"], "wall_ms"),
        ([1, 2, 3], "node"),
        ([1, 2, "\ud800"], "node"),
        ([1, 2, "x" * (MAX_NODE_LENGTH + 1)], "node"),
        ([1, 2, "é" * (MAX_NODE_LENGTH // 2 + 1)], "node"),
    ],
)
def test_compact_form_is_strict(value: object, message: str) -> None:
    with pytest.raises(TimestampFormatError, match=message):
        timestamp_from_compact(value)


def test_compact_node_names_may_be_as_long_as_the_limit() -> None:
    node = "x" * MAX_NODE_LENGTH
    assert timestamp_from_compact([1, 2, node]).node == node
