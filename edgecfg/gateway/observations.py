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
  long.

The resources only register observations of things that exist (a known
device, a layer that was written).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Final

import aiocoap.protocol

from edgecfg.core.admission import Budgets, Refusal
from edgecfg.gateway.admission import refusal_response

Observation = aiocoap.protocol.ServerObservation
RETRY_S: Final = 60


class Observations:
    """The registry (see the module docstring)."""

    def __init__(self, budgets: Budgets) -> None:
        self.budgets = budgets
        self._by_peer: dict[Hashable, OrderedDict[int, tuple[Observation, Callable[[], None]]]] = {}
        self.total = 0
        self.ended = 0

    def of(self, peer: Hashable) -> int:
        """How many observations ``peer`` holds."""
        return len(self._by_peer.get(peer, ()))

    def register(
        self, peer: Hashable, observation: Observation, cancel: Callable[[], None]
    ) -> bool:
        """Accept ``observation`` for ``peer`` (``cancel`` runs when it ends),
        making room as the module docstring says."""
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
            cancel()
            decline(observation)
            return False
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
            cancel()

        held[key] = (observation, cancelled)
        self.total += 1
        observation.accept(cancelled)
        return True

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
