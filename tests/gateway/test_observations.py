"""The observation registry (edgecfg/gateway/observations.py, RFC 7641, issue 20):
capped per peer and in all, whatever peers register and cancel.  Over real CoAP
the same caps are checked by test_budgets.py."""

from __future__ import annotations

from typing import cast

import aiocoap
from aiocoap.numbers.codes import Code
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.core.admission import Budgets
from edgecfg.gateway.observations import RETRY_S, Observation, Observations

BUDGETS = Budgets(observations=6, peer_observations=3)
PEERS = ("a", "b", "c", "d")


class FakeObservation:
    """What the registry uses of aiocoap's ServerObservation."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.on_cancel: object = None
        self.notifications: list[tuple[aiocoap.Message, bool]] = []
        self.deregistered = False
        self.cancels = 0  # how often the resource's own cancel ran

    def accept(self, on_cancel: object) -> None:
        self.on_cancel = on_cancel

    def trigger(self, response: aiocoap.Message, is_last: bool = False) -> None:
        self.notifications.append((response, is_last))

    def deregister(self) -> None:
        self.deregistered = True

    def client_goes_away(self) -> None:
        """aiocoap runs the cancellation callback when the exchange ends (maybe twice)."""
        assert callable(self.on_cancel)
        self.on_cancel()


def register(registry: Observations, observation: FakeObservation) -> bool:
    def cancel() -> None:
        observation.cancels += 1

    return registry.register(observation.peer, cast(Observation, observation), cancel)


steps = st.lists(
    st.tuples(st.sampled_from(["register", "register", "go away"]), st.sampled_from(PEERS),
              st.integers(0, 10)),
    max_size=80,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(steps)
def test_caps_hold_and_every_ended_observation_is_told_once(
    script: list[tuple[str, str, int]],
) -> None:
    registry = Observations(BUDGETS)
    live: dict[str, list[FakeObservation]] = {peer: [] for peer in PEERS}  # oldest first
    everyone: list[FakeObservation] = []
    for action, peer, pick in script:
        if action == "register":
            counts = {p: len(held) for p, held in live.items()}
            new = FakeObservation(peer)
            assert register(registry, new)
            everyone.append(new)
            ended = [o for held in live.values() for o in held if o.notifications]
            for observation in ended:
                (response, last), *_ = observation.notifications
                assert last and response.opt.max_age == RETRY_S
                if observation.peer == peer and counts[peer] >= BUDGETS.peer_observations:
                    # its own share: the peer's oldest goes
                    assert response.code == Code.TOO_MANY_REQUESTS
                    assert observation is live[peer][0]
                else:
                    # the gateway was full: a peer holding the most gave up its oldest
                    assert response.code == Code.SERVICE_UNAVAILABLE
                    assert counts[observation.peer] == max(counts.values())
                    assert observation is live[observation.peer][0]
                live[observation.peer].remove(observation)
            live[peer].append(new)
        elif live[peer]:
            gone = live[peer][pick % len(live[peer])]
            gone.client_goes_away()
            gone.client_goes_away()  # a second call changes nothing
            live[peer].remove(gone)
        assert registry.total == sum(len(held) for held in live.values()) <= BUDGETS.observations
        for name, held in live.items():
            assert registry.of(name) == len(held) <= BUDGETS.peer_observations
    for observation in everyone:
        if observation in live[observation.peer]:
            assert (observation.notifications, observation.cancels) == ([], 0)
        else:  # ended by the registry (one last notification) or by its client (none)
            assert observation.cancels == 1  # the resource's cancel runs once
            assert len(observation.notifications) <= 1


def test_with_room_for_none_a_registration_is_declined_as_a_plain_get() -> None:
    registry = Observations(Budgets(observations=0, peer_observations=3))
    observation = FakeObservation("a")
    assert not register(registry, observation)
    assert observation.deregistered and observation.cancels == 1
    assert (registry.total, registry.of("a")) == (0, 0)
