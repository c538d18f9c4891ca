# aiocoap ships no type information; this module owns it (DESIGN §2), so only
# the "unknown type" family of strict checks is relaxed here.
# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# pyright: reportUnknownParameterType=false, reportAttributeAccessIssue=false
"""Every observation (RFC 7641) of one gateway, capped per peer and in total.

aiocoap keeps a registered observation (its request, pipe and a future) until
the client goes away, which it may never say.  So the gateway holds at most
``Budgets.observations`` in all and ``Budgets.peer_observations`` per peer
(address or OSCORE identity):

- a peer registering one more than its share ends its own oldest one, with a
  4.29 notification carrying Max-Age (an unsuccessful notification ends an
  observation, RFC 7641 §3.2; the client may register again later);
- over the total, the peer holding the most observations ends its oldest
  one, with a 5.03 notification carrying Max-Age: a flood from many hosts
  cannot lock newcomers out, and nobody holds more than a fair share for
  long;
- a peer not heard from for ``Budgets.observation_idle_s`` (no request, no
  registration) has all its observations ended with a 5.03 notification and
  a Max-Age of ``IDLE_RETRY_S`` (:meth:`Observations.end_idle`, from the
  gateway's housekeeping): a client that went away no longer holds a place,
  a live one registers again.

The resources only register observations of things that exist (a known
device, a layer that was written).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Final

import aiocoap.protocol

from edgecfg.core.admission import Budgets, Refusal
from edgecfg.gateway.admission import refusal_response

Observation = aiocoap.protocol.ServerObservation
RETRY_S: Final = 60
IDLE_RETRY_S: Final = 1  # an idle observer may register again at once


class Observations:
    """The registry (see the module docstring)."""

    def __init__(self, budgets: Budgets) -> None:
        self.budgets = budgets
        self._by_peer: dict[Hashable, OrderedDict[int, tuple[Observation, Callable[[], None]]]] = {}
        self._registered: dict[Hashable, float] = {}  # a peer's latest registration
        self.total = 0
        self.ended = 0
        self.ended_idle = 0

    def of(self, peer: Hashable) -> int:
        """How many observations ``peer`` holds."""
        return len(self._by_peer.get(peer, ()))

    def register(
        self, peer: Hashable, observation: Observation, cancel: Callable[[], None],
        *, now: float | None = None,
    ) -> bool:  # fmt: skip
        """Accept ``observation`` for ``peer`` (``cancel`` runs when it ends),
        making room as the module docstring says; ``now`` is monotonic time
        (default: the clock's)."""
        held = self._by_peer.setdefault(peer, OrderedDict())
        while held and len(held) >= self.budgets.peer_observations:
            self._end_oldest(peer, Refusal("4.29", "peer observations", RETRY_S))
        while self.total >= self.budgets.observations:
            # the gateway is full: the peer holding most gives up its oldest
            # (a newcomer holding none is still let in, nobody holds many)
            biggest = max(self._by_peer, key=lambda p: len(self._by_peer[p]), default=None)
            if biggest is None or not self._by_peer[biggest]:
                break
            self._end_oldest(biggest, Refusal("5.03", "observations", RETRY_S))
        held = self._by_peer.setdefault(peer, held)
        if self.total >= self.budgets.observations:  # only with a total of 0
            if not held:
                del self._by_peer[peer]
                self._registered.pop(peer, None)
            cancel()
            decline(observation)
            return False
        self._registered[peer] = time.monotonic() if now is None else now
        key = id(observation)
        done = False

        def cancelled() -> None:
            nonlocal done
            if done:
                return
            done = True
            watched = self._by_peer.get(peer)
            if watched is not None and watched.pop(key, None) is not None:
                self.total -= 1
                if not watched:
                    del self._by_peer[peer]
                    self._registered.pop(peer, None)
            cancel()

        held[key] = (observation, cancelled)
        self.total += 1
        observation.accept(cancelled)
        return True

    def end_idle(self, now: float, heard: Callable[[Hashable], float | None]) -> int:
        """End every observation of the peers not heard from for
        ``Budgets.observation_idle_s`` by ``now``; how many ended.  ``heard``
        says when a peer last sent a request (None: not known), on the same
        monotonic clock; a registration counts as hearing from it."""
        bound = self.budgets.observation_idle_s
        idle: list[Hashable] = []
        for peer, registered in self._registered.items():
            last = heard(peer)
            if now - max(registered, last if last is not None else registered) > bound:
                idle.append(peer)
        count = 0
        refusal = Refusal("5.03", "observer idle time", IDLE_RETRY_S)
        for peer in idle:
            while self._by_peer.get(peer):
                self._end_oldest(peer, refusal)
                count += 1
        self.ended_idle += count
        return count

    def _end_oldest(self, peer: Hashable, refusal: Refusal) -> None:
        """End ``peer``'s oldest observation with an unsuccessful notification."""
        oldest, ended = next(iter(self._by_peer[peer].values()))
        ended()  # out of the registry now; aiocoap calls it again when done
        self.ended += 1
        oldest.trigger(refusal_response(refusal), is_last=True)


def decline(observation: Observation) -> None:
    """Answer the registering GET as a plain GET (no Observe option).

    aiocoap 0.4.17 calls the cancellation callback of every observation it
    offered when the exchange ends, accepted or not (an AttributeError and
    two tracebacks per request otherwise), so a declined one is accepted with
    a callback that does nothing and deregistered before its first response,
    which aiocoap documents as the way to refuse.
    """
    observation.accept(_nothing)
    observation.deregister()


def _nothing() -> None:
    pass
