"""The admission laws (issue 20): bounded state, a duplicate is free, every
refusal says when to retry, and one peer cannot spend another's budget."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.core.admission import (
    EXCHANGE_COST,
    RELEASE_AT,
    RELEASE_PART,
    Admission,
    Budgets,
    Subsiding,
)

SMALL = Budgets(peer_rate=10.0, peer_burst=5.0, exchange_lifetime_s=60.0,
                memory_mib=40 * EXCHANGE_COST / 2**20, peer_share=0.25, in_flight=3,
                peer_in_flight=2)  # fmt: skip


def test_the_memory_budget_is_a_number_of_exchanges() -> None:
    assert SMALL.exchanges == 40
    assert SMALL.peer_exchanges == 10
    assert Budgets().exchanges == 64 * 2**20 // EXCHANGE_COST


def test_a_burst_beyond_the_rate_is_4_29_with_a_retry_time() -> None:
    admission = Admission(SMALL)
    assert [admission.admit("a", ("a", i), 0.0) for i in range(5)] == [None] * 5
    refusal = admission.admit("a", ("a", 5), 0.0)
    assert refusal is not None
    assert (refusal.code, refusal.limit, refusal.retry_after_s) == ("4.29", "peer rate", 1)
    assert admission.admit("b", ("b", 0), 0.0) is None  # another peer is not affected
    assert admission.admit("a", ("a", 6), 0.1) is None  # one token back after 0.1 s


def test_a_peer_holds_at_most_its_share_of_remembered_exchanges() -> None:
    admission = Admission(SMALL)
    now = 0.0
    for i in range(10):
        now += 1.0
        assert admission.admit("a", ("a", i), now) is None
    refusal = admission.admit("a", ("a", 10), now + 1.0)
    assert refusal is not None
    assert (refusal.code, refusal.limit) == ("4.29", "peer exchanges")
    assert refusal.retry_after_s == 50  # when its oldest (admitted at 1.0) is forgotten: 61.0
    assert admission.admit("a", ("a", 11), 61.0) is None  # that one is forgotten now


def test_over_the_global_budget_is_5_03() -> None:
    admission = Admission(SMALL)
    for peer in "abcd":
        for i in range(10):
            assert admission.admit(peer, (peer, i), float(i)) is None
    refusal = admission.admit("e", ("e", 0), 10.0)
    assert refusal is not None
    assert (refusal.code, refusal.limit, refusal.retry_after_s) == ("5.03", "exchanges", 50)


def test_a_duplicate_is_remembered_and_not_charged() -> None:
    admission = Admission(SMALL)
    assert admission.admit("a", ("a", 1), 0.0) is None
    assert admission.is_remembered(("a", 1), 59.0)
    assert not admission.is_remembered(("a", 1), 60.0)
    assert not admission.is_remembered(("a", 2), 0.0)


def test_in_flight_is_bounded_per_peer_and_in_all() -> None:
    admission = Admission(SMALL)
    assert admission.enter("a", 0.0) is None
    assert admission.enter("a", 0.0) is None
    refusal = admission.enter("a", 0.0)
    assert refusal is not None and refusal.code == "4.29"
    assert admission.enter("b", 0.0) is None
    refusal = admission.enter("c", 0.0)
    assert refusal is not None and refusal.code == "5.03"
    admission.leave("a")
    assert admission.enter("c", 0.0) is None


def test_forgotten_peers_are_only_those_holding_nothing() -> None:
    admission = Admission(Budgets(peers=2, peer_burst=1.0, peer_rate=1.0))
    assert admission.admit("a", ("a", 0), 0.0) is None
    assert admission.charge("b", 0.0) is None
    assert admission.charge("c", 0.0) is None  # "b" holds nothing: forgotten
    refusal = admission.admit("a", ("a", 1), 0.0)
    assert refusal is not None  # "a" was kept, with its spent token


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 30), st.floats(0, 2)),
                max_size=300))  # fmt: skip
def test_state_stays_within_the_budgets_whatever_arrives(
    arrivals: list[tuple[str, int, float]],
) -> None:
    admission = Admission(SMALL)
    now = 0.0
    for peer, mid, step in arrivals:
        now += step
        key = (peer, mid)
        if admission.is_remembered(key, now):
            continue
        refusal = admission.admit(peer, key, now)
        if refusal is not None:
            assert refusal.retry_after_s >= 1
        assert admission.remembered <= SMALL.exchanges
        held: dict[str, int] = {}
        for owner, _ in admission._remembered.values():  # pyright: ignore[reportPrivateUsage]
            held[str(owner)] = held.get(str(owner), 0) + 1
        assert all(count <= SMALL.peer_exchanges for count in held.values())


def test_a_long_queue_delay_sheds_new_requests_with_5_03() -> None:
    admission = Admission(SMALL)
    admission.note_delay(SMALL.queue_delay_s + 1.5)
    refusal = admission.enter("a", 0.0)
    assert refusal is not None
    assert (refusal.code, refusal.limit) == ("5.03", "queue delay")
    assert refusal.retry_after_s == math.ceil(SMALL.queue_delay_s + 1.5)  # the delay itself
    admission.note_delay(0.01)
    assert admission.enter("a", 0.0) is None


def test_expiry_without_traffic_frees_the_counts() -> None:
    admission = Admission(SMALL)
    assert admission.admit("a", ("a", 1), 0.0) is None
    admission.expire(59.0)
    assert (admission.remembered, admission.remembered_by("a")) == (1, 1)
    admission.expire(60.0)
    assert (admission.remembered, admission.remembered_by("a")) == (0, 0)


def test_memory_is_released_once_when_a_burst_has_subsided() -> None:
    subsiding = Subsiding()
    answers = [subsiding.note(count) for count in (0, 100, RELEASE_AT * 4, RELEASE_AT * 2)]
    assert answers == [False, False, False, False]  # still well above its part of the peak
    assert subsiding.note(RELEASE_AT * 4 // RELEASE_PART) is True
    assert [subsiding.note(count) for count in (RELEASE_AT // 2, 0, 0)] == [False] * 3
    assert subsiding.releases == 1


def test_a_peak_between_two_reports_counts() -> None:
    subsiding = Subsiding()
    assert subsiding.note(0) is False
    assert subsiding.note(0, highest=RELEASE_AT) is True  # came and went between two reports
    assert subsiding.releases == 1


@given(st.lists(st.integers(0, RELEASE_AT - 1), max_size=200))
def test_a_gateway_that_never_held_much_never_releases(counts: list[int]) -> None:
    subsiding = Subsiding()
    assert not any(subsiding.note(count) for count in counts)
