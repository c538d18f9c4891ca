"""The sans-I/O sync session: every event in every state advances or raises
SessionError, its actions are well formed, and driven against a model gateway
over a lossy link it ends holding the gateway's version (or gives up after
the last attempt)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.core.ids import ETag
from edgecfg.core.session import (
    DEFAULT_MAX_AGE_S,
    TRANSITIONS,
    Action,
    Answer,
    Drop,
    Event,
    Finished,
    GaveUp,
    Get,
    Got,
    Install,
    Installed,
    Keep,
    Lost,
    Policy,
    Report,
    Reported,
    SessionError,
    Sleep,
    Start,
    SyncSession,
    Transfer,
    Unusable,
    Woke,
)

A, B = ETag(b"A" * 8), ETag(b"B" * 8)
SZX = 2  # 64-byte blocks

WAITS_FOR = {Get: {"fetching", "receiving"}, Install: {"installing"}, Report: {"reporting"},
             Sleep: {"sleeping"}, Finished: {"done"}, GaveUp: {"failed"}}  # fmt: skip


def content(payload: bytes = b"cfg", *, etag: ETag = B, block: tuple[int, bool, int] | None = None,
            size: int | None = None) -> Answer:  # fmt: skip
    return Answer("content", "2.05", payload, etag, 60, block, size)


def check_batch(session: SyncSession, actions: list[Action]) -> None:
    """One batch: bookkeeping (Keep, Drop) first, then exactly one action the
    session waits on, and the state says what it waits for."""
    assert actions, "an accepted event always calls for something"
    *first, last = actions
    assert all(isinstance(action, Keep | Drop) for action in first), actions
    assert type(last) in WAITS_FOR, actions
    assert session.state in WAITS_FOR[type(last)], (session.state, actions)


# -- state x event -------------------------------------------------------------------

answers = st.builds(
    Answer,
    kind=st.sampled_from(["valid", "content", "stale", "busy", "refused"]),
    code=st.sampled_from(["2.03", "2.05", "4.00", "5.03", "4.29", "4.04"]),
    payload=st.binary(max_size=80),
    etag=st.sampled_from([None, A, B]),
    content_format=st.sampled_from([None, 60, 65100]),
    block=st.none() | st.tuples(st.integers(0, 3), st.booleans(), st.integers(0, 6)),
    size=st.none() | st.integers(0, 400),
    max_age=st.none() | st.integers(0, 600),
)
transfers = st.builds(
    Transfer,
    query=st.sampled_from([(), ("prio=critical",), ("sv=2",)]),
    etag=st.sampled_from([A, B]),
    szx=st.integers(0, 6),
    received=st.binary(max_size=200),
    base=st.sampled_from([None, A, B]),
)
times = st.floats(0, 1e6, allow_nan=False)
events: st.SearchStrategy[Event] = st.one_of(
    st.builds(Start, now=times, held=st.sampled_from([None, A, B]), transfer=st.none() | transfers,
              local_pending=st.booleans(), piggyback=st.none() | answers),
    st.builds(Got, now=times, answer=answers),
    st.builds(Lost, now=times, reason=st.just("timeout"), jitter=st.floats(0, 0.999)),
    st.builds(Installed, now=times, etag=st.sampled_from([A, B]), changed=st.booleans()),
    st.builds(Unusable, now=times, reason=st.just("bad delta")),
    st.builds(Reported, now=times, stale=st.booleans()),
    st.builds(Woke, now=times),
)  # fmt: skip
policies = st.builds(
    Policy,
    query=st.sampled_from([(), ("sv=2",)]),
    szx=st.none() | st.integers(0, 6),
    critical_first=st.booleans(),
    budget=st.none() | st.integers(0, 300),
    attempts=st.integers(1, 4),
)


@given(policy=policies, sequence=st.lists(events, max_size=40))
def test_every_event_in_every_state_advances_or_raises_session_error(
    policy: Policy, sequence: list[Event]
) -> None:
    session = SyncSession(policy)
    for event in sequence:
        before = session.state
        accepted = (before, type(event).__name__) in TRANSITIONS
        try:
            actions = session.receive(event)
        except SessionError as refused:
            assert not accepted
            assert session.state == before  # a refused event changes nothing
            assert type(event).__name__ in str(refused) and before in str(refused)
            continue
        assert accepted
        check_batch(session, actions)
        if session.state in ("done", "failed"):
            with pytest.raises(SessionError):
                session.receive(Woke(0.0))


def test_the_table_names_only_real_states_and_events() -> None:
    states = {"idle", "fetching", "receiving", "installing", "reporting", "sleeping"}
    names = {"Start", "Got", "Lost", "Installed", "Unusable", "Reported", "Woke"}
    assert {state for state, _ in TRANSITIONS} == states
    assert {name for _, name in TRANSITIONS} == names


# -- against a model gateway over a lossy link ---------------------------------------


@given(
    representation=st.binary(min_size=1, max_size=600),
    losses=st.lists(st.booleans(), max_size=60),
    attempts=st.integers(1, 8),
    held=st.sampled_from([None, A]),
    jitter=st.floats(0, 0.999),
)
def test_driven_over_a_lossy_link_it_ends_holding_the_gateways_version(
    representation: bytes, losses: list[bool], attempts: int, held: ETag | None, jitter: float
) -> None:
    session = SyncSession(Policy(szx=SZX, attempts=attempts))
    size = 16 << SZX
    lost = iter(losses)
    now, failures, kept = 0.0, 0, None
    actions = session.receive(Start(now, held))
    for _ in range(1000):
        check_batch(session, actions)
        for action in actions:
            if isinstance(action, Keep):
                kept = action.transfer
            elif isinstance(action, Drop):
                kept = None
        last = actions[-1]
        now += 0.5
        if isinstance(last, Get):
            if next(lost, False):
                failures += 1
                actions = session.receive(Lost(now, "timeout", jitter))
                continue
            failures = 0  # an answer is progress: the count of failures in a row restarts
            assert last.etag == held and last.szx == SZX
            chunk = representation[last.block * size : (last.block + 1) * size]
            more = (last.block + 1) * size < len(representation)
            blocked = (last.block, more, SZX) if len(representation) > size else None
            answer = content(chunk, block=blocked, size=len(representation))
            actions = session.receive(Got(now, answer))
        elif isinstance(last, Install):
            assert last.payload == representation  # reassembled in order, nothing twice
            assert kept is None or representation.startswith(kept.received)
            actions = session.receive(Installed(now, B, held != B))
        elif isinstance(last, Report):
            actions = session.receive(Reported(now, stale=False))
        elif isinstance(last, Sleep):
            assert last.until >= now - 0.5 and last.attempt == failures
            now = last.until
            actions = session.receive(Woke(now))
        elif isinstance(last, Finished):
            assert last.outcome == "updated" and session.held == B
            assert failures < attempts
            return
        else:
            assert isinstance(last, GaveUp) and last.kind == "link"
            assert failures == attempts
            return
    raise AssertionError("the session never ended")


# -- the cases one by one ------------------------------------------------------------


def test_a_current_device_needs_one_get_and_nothing_else() -> None:
    session = SyncSession()
    assert session.receive(Start(0.0, A)) == [Get((), 0, None, A)]
    assert session.receive(Got(0.1, Answer("valid", "2.03"))) == [Finished("current")]


def test_an_update_is_installed_then_reported() -> None:
    session = SyncSession()
    session.receive(Start(0.0, A))
    assert session.receive(Got(0.1, content(b"delta"))) == [Install(b"delta", 60, B, A)]
    assert session.receive(Installed(0.2, B, changed=True)) == [Drop(), Report()]
    assert session.receive(Reported(0.3, stale=False)) == [Finished("updated")]


def test_offline_changes_are_reported_even_when_current() -> None:
    session = SyncSession()
    session.receive(Start(0.0, A, local_pending=True))
    assert session.receive(Got(0.1, Answer("valid", "2.03"))) == [Report()]
    assert session.receive(Reported(0.2, stale=False)) == [Finished("current")]


def test_a_stale_report_fetches_once_more_and_confirms_the_merge() -> None:
    session = SyncSession()
    session.receive(Start(0.0, A, local_pending=True))
    session.receive(Got(0.1, Answer("valid", "2.03")))
    assert session.receive(Reported(0.2, stale=True)) == [Get((), 0, None, A)]
    session.receive(Got(0.3, content()))
    assert session.receive(Installed(0.4, B, changed=True)) == [Drop(), Report()]
    assert session.receive(Reported(0.5, stale=True)) == [Finished("updated")]  # once only


def test_a_busy_gateway_is_retried_after_its_max_age_or_the_default() -> None:
    session = SyncSession()
    session.receive(Start(10.0, A))
    sleep = session.receive(Got(11.0, Answer("busy", "5.03", max_age=42)))
    assert sleep == [Sleep(53.0, 1, 6, "gateway busy (5.03)")]
    assert session.receive(Woke(53.0)) == [Get((), 0, None, A)]
    assert session.receive(Got(54.0, Answer("busy", "4.29"))) == [
        Sleep(54.0 + DEFAULT_MAX_AGE_S, 2, 6, "gateway busy (4.29)")
    ]


def test_losses_back_off_with_full_jitter_then_give_up() -> None:
    session = SyncSession(Policy(attempts=3, backoff_base_s=2.0))
    session.receive(Start(0.0, A))
    assert session.receive(Lost(1.0, "timeout", 0.5)) == [Sleep(2.0, 1, 3, "timeout")]
    session.receive(Woke(2.0))
    assert session.receive(Lost(3.0, "timeout", 0.5)) == [Sleep(5.0, 2, 3, "timeout")]
    session.receive(Woke(5.0))
    assert session.receive(Lost(6.0, "timeout", 0.5)) == [
        GaveUp("timeout (attempt 3 of 3)", "link")
    ]


def test_a_block_wise_answer_is_kept_block_by_block_and_resumed_after_a_restart() -> None:
    session = SyncSession(Policy(szx=SZX))
    session.receive(Start(0.0, A))
    first = content(b"x" * 64, block=(0, True, SZX), size=130)
    actions = session.receive(Got(0.1, first))
    transfer = Transfer((), B, SZX, b"x" * 64, 130, 60, A)
    assert actions == [Keep(transfer), Get((), 1, SZX, A)]
    # the device reboots: a new session resumes at block 1
    resumed = SyncSession(Policy(szx=SZX))
    assert resumed.receive(Start(5.0, A, transfer)) == [Get((), 1, SZX, A)]
    more = resumed.receive(Got(5.1, content(b"y" * 64, block=(1, True, SZX))))
    assert more[-1] == Get((), 2, SZX, A)
    last = resumed.receive(Got(5.2, content(b"z" * 2, block=(2, False, SZX))))
    assert last == [Install(b"x" * 64 + b"y" * 64 + b"zz", 60, B, A)]


def test_a_transfer_whose_representation_moved_on_starts_over() -> None:
    session = SyncSession(Policy(szx=SZX))
    session.receive(Start(0.0, A, Transfer((), B, SZX, b"x" * 64, 130, 60, A)))
    assert session.receive(Got(0.1, Answer("stale", "4.00"))) == [Drop(), Get((), 0, SZX, A)]
    session = SyncSession(Policy(szx=SZX))
    session.receive(Start(0.0, A, Transfer((), B, SZX, b"x" * 64, 130, 60, A)))
    newer = content(b"y", etag=ETag(b"C" * 8), block=(1, False, SZX))
    assert session.receive(Got(0.1, newer)) == [Drop(), Get((), 0, SZX, A)]


def test_the_same_etag_in_another_format_starts_over() -> None:
    """A gateway that lost the base (a restart) answers the same version
    whole where the first blocks were a delta: the blocks must not be mixed."""
    session = SyncSession(Policy(szx=SZX))
    session.receive(Start(0.0, A, Transfer((), B, SZX, b"x" * 64, 130, 65100, A)))
    whole = content(b"y" * 64, block=(1, True, SZX))  # format 60, same ETag B
    assert session.receive(Got(0.1, whole)) == [Drop(), Get((), 0, SZX, A)]


def test_a_transfer_from_another_base_is_dropped_at_start() -> None:
    session = SyncSession()
    stale = Transfer((), B, SZX, b"x" * 64, 130, 60, ETag(b"Z" * 8))
    assert session.receive(Start(0.0, A, stale)) == [Drop(), Get((), 0, None, A)]


def test_over_budget_the_transfer_waits_for_the_next_wake() -> None:
    session = SyncSession(Policy(budget=100))
    session.receive(Start(0.0, A))
    first = content(b"x" * 64, block=(0, True, SZX), size=5000)
    actions = session.receive(Got(0.1, first))
    assert isinstance(actions[0], Keep) and actions[-1] == Finished("partial")


def test_an_unusable_delta_falls_back_to_the_full_config_once() -> None:
    session = SyncSession()
    session.receive(Start(0.0, A))
    session.receive(Got(0.1, content(b"delta")))
    assert session.receive(Unusable(0.2, "bad delta")) == [Drop(), Get((), 0, None, None)]
    session.receive(Got(0.3, content(b"full")))
    assert session.receive(Unusable(0.4, "bad again")) == [
        Drop(),
        GaveUp("the gateway sent an unusable config: bad again", "protocol"),
    ]


def test_critical_keys_come_first_and_a_partial_critical_step_ends_the_wake() -> None:
    session = SyncSession(Policy(critical_first=True))
    assert session.receive(Start(0.0, A)) == [Get(("prio=critical",), 0, None, A)]
    session.receive(Got(0.1, content(b"crit", etag=ETag(b"M" * 8))))
    middle = ETag(b"M" * 8)
    assert session.receive(Installed(0.2, middle, changed=True)) == [
        Drop(),
        Get((), 0, None, middle),
    ]
    session = SyncSession(Policy(critical_first=True, budget=10))
    session.receive(Start(0.0, A))
    big = content(b"x" * 64, block=(0, True, SZX), size=500)
    assert session.receive(Got(0.1, big))[-1] == Finished("partial")


def test_a_refused_request_gives_up_naming_the_code() -> None:
    session = SyncSession()
    session.receive(Start(0.0, A))
    assert session.receive(Got(0.1, Answer("refused", "4.04", b"no such device"))) == [
        GaveUp("gateway answered 4.04: no such device", "protocol")
    ]


def test_a_config_riding_on_telemetry_is_installed_and_left_to_the_next_telemetry() -> None:
    # The next POST /tel?cfg= names B: a report alone would cost a round trip.
    session = SyncSession()
    actions = session.receive(Start(0.0, A, piggyback=content(b"delta")))
    assert actions == [Install(b"delta", 60, B, A)]
    assert session.receive(Installed(0.1, B, changed=True)) == [Drop(), Finished("updated")]


def test_a_config_riding_on_telemetry_is_reported_when_something_else_waits() -> None:
    session = SyncSession()
    session.receive(Start(0.0, A, local_pending=True, piggyback=content(b"delta")))
    assert session.receive(Installed(0.1, B, changed=True)) == [Drop(), Report()]
    assert session.receive(Reported(0.2, stale=True)) == [Finished("updated")]
    # an install that ended a trial has news of its own
    session = SyncSession()
    session.receive(Start(0.0, A, piggyback=content(b"delta")))
    assert session.receive(Installed(0.1, B, changed=True, report=True)) == [Drop(), Report()]


def test_a_session_refuses_an_event_it_does_not_expect() -> None:
    session = SyncSession()
    with pytest.raises(SessionError, match="Got is not expected in state idle"):
        session.receive(Got(0.0, Answer("valid", "2.03")))


def test_the_quiet_endings_finish_without_another_report() -> None:
    # a refused block mid-transfer gives up naming the code
    session = SyncSession(Policy(szx=SZX))
    session.receive(Start(0.0, A, Transfer((), B, SZX, b"x" * 64, 130, 60, A)))
    assert session.receive(Got(0.1, Answer("refused", "4.04"))) == [
        GaveUp("gateway answered 4.04: ", "protocol")
    ]
    # a refetch that finds the config current ends the sync
    session = SyncSession()
    session.receive(Start(0.0, A, local_pending=True))
    session.receive(Got(0.1, Answer("valid", "2.03")))
    session.receive(Reported(0.2, stale=True))
    assert session.receive(Got(0.3, Answer("valid", "2.03"))) == [Finished("current")]
    # a piggybacked config that was already held needs no report
    session = SyncSession()
    session.receive(Start(0.0, A, piggyback=content(etag=A)))
    assert session.receive(Installed(0.1, A, changed=False)) == [Drop(), Finished("current")]


def test_a_refused_exchange_waits_its_max_age_spread_and_bounded() -> None:
    session = SyncSession()
    session.receive(Start(0.0, A, local_pending=True))
    session.receive(Got(0.1, Answer("valid", "2.03")))
    # the state report was refused with 4.29, Max-Age 30: not earlier, at most 10% later
    assert session.receive(Lost(1.0, "shed", 0.5, wait=30.0)) == [Sleep(32.5, 1, 6, "shed")]
    session.receive(Woke(32.5))
    # a Max-Age of a year is a broken gateway's: a day at most
    assert session.receive(Lost(40.0, "shed", 0.0, wait=3e7)) == [Sleep(86_440.0, 2, 6, "shed")]
