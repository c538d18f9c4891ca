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


# ---------------------------------------------------------------- every event, against a model

MODEL_BUDGETS = Budgets(peer_rate=2.0, peer_burst=4.0, exchange_lifetime_s=30.0,
                        memory_mib=12 * EXCHANGE_COST / 2**20, peer_share=0.5, in_flight=4,
                        peer_in_flight=2, queue_delay_s=5.0)  # fmt: skip
PEERS = ("a", "b", "c")

actions = st.one_of(
    st.tuples(st.just("admit"), st.sampled_from(PEERS), st.integers(0, 20)),
    st.tuples(st.just("charge"), st.sampled_from(PEERS), st.just(0)),
    st.tuples(st.just("enter"), st.sampled_from(PEERS), st.just(0)),
    st.tuples(st.just("leave"), st.sampled_from(PEERS), st.just(0)),
    st.tuples(st.just("delay"), st.just(""), st.integers(0, 8)),
    st.tuples(st.just("wait"), st.just(""), st.sampled_from([0, 1, 3, 10, 29, 31, 120])),
    st.tuples(st.just("expire"), st.just(""), st.just(0)),
)


@st.composite
def bursts(draw: st.DrawFn) -> list[tuple[str, str, int]]:
    """An action repeated 1-10 times at one instant (admits with consecutive
    message IDs): floods are bursts, and a budget is only hit by one."""
    kind, peer, number = draw(actions)
    return [(kind, peer, number + step) for step in range(draw(st.integers(1, 10)))]


events = st.lists(bursts(), max_size=60).map(lambda groups: [e for group in groups for e in group])


@settings(max_examples=300, deadline=None)
@given(events)
def test_every_decision_matches_a_model_of_the_budgets(
    script: list[tuple[str, str, int]],
) -> None:
    """Exchanges and in-flight counts follow a plain model exactly (a refusal
    names a budget the model says is full, and a full budget always refuses);
    the rate never lets a peer take more than burst + rate x elapsed."""
    budgets = MODEL_BUDGETS
    admission = Admission(budgets)
    now = 0.0
    remembered: dict[tuple[str, int], tuple[str, float]] = {}  # key -> (peer, expiry)
    in_flight: dict[str, int] = dict.fromkeys(PEERS, 0)
    taken: dict[str, list[float]] = {peer: [] for peer in PEERS}  # times a token was taken
    delay = 0.0

    def forget_expired() -> None:
        for key in [key for key, (_, expiry) in remembered.items() if expiry <= now]:
            del remembered[key]

    def held(peer: str) -> int:
        return sum(1 for owner, _ in remembered.values() if owner == peer)

    for kind, peer, number in script:
        if kind == "wait":
            now += number
        elif kind == "delay":
            delay = float(number)
            admission.note_delay(delay)
        elif kind == "expire":
            admission.expire(now)
            forget_expired()
        elif kind == "admit":
            key = (peer, number)
            forget_expired()
            assert admission.is_remembered(key, now) == (key in remembered)
            if key in remembered:
                continue  # a duplicate: the shell lets it through uncharged
            refusal = admission.admit(peer, key, now)
            if len(remembered) >= budgets.exchanges:
                oldest = min(expiry for _, expiry in remembered.values())
                assert refusal is not None
                assert (refusal.code, refusal.limit) == ("5.03", "exchanges")
                assert refusal.retry_after_s == max(1, math.ceil(oldest - now))
            elif held(peer) >= budgets.peer_exchanges:
                assert refusal is not None
                assert (refusal.code, refusal.limit) == ("4.29", "peer exchanges")
            elif refusal is None:
                remembered[key] = (peer, now + budgets.exchange_lifetime_s)
                taken[peer].append(now)
            else:
                assert (refusal.code, refusal.limit) == ("4.29", "peer rate")
        elif kind == "charge":
            refusal = admission.charge(peer, now)
            if refusal is None:
                taken[peer].append(now)
            else:
                assert (refusal.code, refusal.limit) == ("4.29", "identity rate")
        elif kind == "enter":
            refusal = admission.enter(peer, now)
            if delay > budgets.queue_delay_s:
                assert refusal is not None and refusal.limit == "queue delay"
            elif sum(in_flight.values()) >= budgets.in_flight:
                assert refusal is not None and refusal.limit == "in-flight"
            elif in_flight[peer] >= budgets.peer_in_flight:
                assert refusal is not None and refusal.limit == "peer in-flight"
            else:
                assert refusal is None
                in_flight[peer] += 1
        elif in_flight[peer]:  # leave, only after an admitted enter
            admission.leave(peer)
            in_flight[peer] -= 1

        assert admission.remembered == len(remembered) <= budgets.exchanges
        assert admission.in_flight == sum(in_flight.values()) <= budgets.in_flight
        for name in PEERS:
            assert admission.remembered_by(name) == held(name) <= budgets.peer_exchanges
            assert in_flight[name] <= budgets.peer_in_flight
            # token bucket: in any window [start, now], at most burst + rate x length
            times = taken[name]
            for index, start in enumerate(times):
                allowed = budgets.peer_burst + budgets.peer_rate * (now - start)
                assert len(times) - index <= allowed + 1e-9, (name, start, now)


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
