"""Admission: who may start a new exchange now, and what to answer otherwise.

Pure logic (time is an argument, no I/O): the gateway's datagram screen asks
:meth:`Admission.admit` before aiocoap keeps any state for a request, its
resources ask :meth:`Admission.enter` / :meth:`Admission.leave` around the
handling of one, and authenticated peers are charged by identity with
:meth:`Admission.charge`.  One mechanism for hostile load (issue 20) and for
shedding legitimate load (issue 12):

- **rate** per peer (a token bucket: ``peer_rate`` per second, bursts of
  ``peer_burst``), over it 4.29 Too Many Requests (RFC 8516);
- **remembered exchanges**: a CoAP server remembers every request it answered
  for ``exchange_lifetime_s`` to answer duplicates (RFC 7252 §4.5), which is
  where an unbounded flood turns into memory.  At most ``exchanges`` are
  remembered in all (the global memory budget, 5.03 beyond) and
  ``peer_exchanges`` per peer (4.29 beyond).  A duplicate of a remembered
  request is always let through, uncharged: its answer is already kept;
- **in flight**: at most ``in_flight`` requests handled at once (5.03), and
  ``peer_in_flight`` per peer (4.29);
- **queue delay**: while the gateway's shell reports (:meth:`Admission.note_delay`)
  that work waits longer than ``queue_delay_s`` before it runs, new requests
  are shed with 5.03 (legitimate overload, issue 12).

Every refusal carries a Max-Age: when the budget it hit has room again.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final, Literal

EXCHANGE_COST: Final = 4096
"""Bytes per remembered exchange, used to turn a memory budget into a number
of exchanges.  Measured with tracemalloc over 3,000 exchanges on loopback
with aiocoap 0.4.17's own table (the answer and request objects, a timer):
3.2 KiB per answered GET with a 2.03, 4.9 KiB with a 1 KiB Block2 answer.
The gateway keeps them in a slimmer table since
(:class:`edgecfg.gateway.admission.RememberedAnswers`: address, message ID
and the answer's bytes, about 0.9 KiB with the flood mix of issue 20), so
the budget converts at the old figure and errs on the safe side."""


@dataclass(frozen=True, slots=True)
class Budgets:
    """The limits of one gateway; the defaults are stated in each field."""

    peer_rate: float = 100.0
    """Sustained requests per second from one peer (address or identity)."""
    peer_burst: float = 1000.0
    """Requests one peer may send at once after being quiet."""
    exchange_lifetime_s: float = 60.0
    """How long an answered request is remembered for duplicates.  RFC 7252's
    EXCHANGE_LIFETIME is 247 s; 60 s covers the retransmission span of the
    default transmission parameters (45 s) and 15 s of latency."""
    memory_mib: float = 64.0
    """Memory for remembered exchanges, in all (about 4 KiB each)."""
    peer_share: float = 1 / 8
    """Part of the remembered exchanges one peer may hold."""
    in_flight: int = 256
    """Requests handled at once, in all."""
    peer_in_flight: int = 32
    """Requests of one peer handled at once."""
    queue_delay_s: float = 5.0
    """Longest wait before queued work runs (the event loop's lag) before new
    requests are shed."""
    observations: int = 8192
    """Observations registered, in all."""
    peer_observations: int = 32
    """Observations one peer holds; a new one beyond ends its oldest."""
    observation_idle_s: float = 600.0
    """An observer not heard from (no request, no new registration) for this
    long has its observations ended with 5.03 + Max-Age: a live one registers
    again (one round trip per idle period), a vanished one frees its place."""
    spool_mib: float = 16.0
    """Bytes of Block1 uploads being reassembled, in all."""
    peer_spool_kib: float = 192.0
    """Of those, one peer's (three 64 KiB uploads)."""
    peers: int = 65536
    """Peers whose rate and counts are tracked (least recently seen forgotten)."""
    telemetry_kib_per_day: float | None = 1024.0
    """Telemetry one device may store per UTC day (4.29 beyond); None: no limit."""

    @property
    def exchanges(self) -> int:
        return max(1, int(self.memory_mib * 2**20) // EXCHANGE_COST)

    @property
    def peer_exchanges(self) -> int:
        return max(1, int(self.exchanges * self.peer_share))


UNLIMITED: Final = Budgets(
    peer_rate=math.inf, peer_burst=math.inf, memory_mib=1e9, peer_share=1.0, in_flight=10**9,
    queue_delay_s=math.inf,
    peer_in_flight=10**9, observations=10**9, peer_observations=10**9, spool_mib=1e9,
    peer_spool_kib=1e12, telemetry_kib_per_day=None, exchange_lifetime_s=247.0,
    observation_idle_s=math.inf,
)  # fmt: skip
"""No budgets, and RFC 7252's exchange lifetime (same-run baselines in benchmarks only)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is not admitted: the code, the budget, when to retry."""

    code: Literal["4.29", "5.03"]
    limit: str
    retry_after_s: int

    @property
    def reason(self) -> str:
        return f"over the {self.limit} budget; retry after {self.retry_after_s} s"


class _Peer:
    __slots__ = ("expiries", "in_flight", "stamp", "tokens")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.stamp = now
        self.expiries: deque[float] = deque()  # of its remembered exchanges, oldest first
        self.in_flight = 0


class Admission:
    """The admission state of one gateway (see the module docstring)."""

    def __init__(self, budgets: Budgets | None = None) -> None:
        self.budgets = budgets if budgets is not None else Budgets()
        self._peers: OrderedDict[Hashable, _Peer] = OrderedDict()
        # exchange key -> (peer, time it is forgotten); in admission order,
        # which is expiry order, as the lifetime is one constant
        self._remembered: OrderedDict[Hashable, tuple[Hashable, float]] = OrderedDict()
        self.in_flight = 0
        self.delay_s = 0.0
        self.refused: dict[str, int] = {}

    # -- remembered exchanges (the datagram screen) ---------------------------------

    @property
    def remembered(self) -> int:
        return len(self._remembered)

    def remembered_by(self, peer: Hashable) -> int:
        """Remembered exchanges of ``peer``."""
        state = self._peers.get(peer)
        return len(state.expiries) if state is not None else 0

    def is_remembered(self, key: Hashable, now: float) -> bool:
        """Whether ``key`` (peer address and message ID) names a request
        admitted within the exchange lifetime: a duplicate, let through."""
        self._expire(now)
        return key in self._remembered

    def admit(self, peer: Hashable, key: Hashable, now: float) -> Refusal | None:
        """Admit a new request from ``peer`` (remembered under ``key``), or say
        why not.  Charges the peer's rate and one remembered exchange."""
        self._expire(now)
        state = self._peer(peer, now)
        budgets = self.budgets
        if len(self._remembered) >= budgets.exchanges:
            _, oldest = next(iter(self._remembered.values()))
            return self._refuse("5.03", "exchanges", oldest - now)
        if len(state.expiries) >= budgets.peer_exchanges:
            return self._refuse("4.29", "peer exchanges", state.expiries[0] - now)
        refusal = self._take_token(state, "peer rate")
        if refusal is not None:
            return refusal
        expiry = now + budgets.exchange_lifetime_s
        state.expiries.append(expiry)
        self._remembered[key] = (peer, expiry)
        return None

    def charge(self, peer: Hashable, now: float) -> Refusal | None:
        """Charge one request to an authenticated ``peer``'s rate (an OSCORE
        identity: its requests may come from any address)."""
        return self._take_token(self._peer(peer, now), "identity rate")

    def _take_token(self, state: _Peer, limit: str) -> Refusal | None:
        budgets = self.budgets
        if state.tokens < 1.0:
            return self._refuse("4.29", limit, (1.0 - state.tokens) / budgets.peer_rate)
        state.tokens -= 1.0
        return None

    def _peer(self, peer: Hashable, now: float) -> _Peer:
        budgets = self.budgets
        state = self._peers.get(peer)
        if state is None:
            state = _Peer(budgets.peer_burst, now)
            self._peers[peer] = state
            self._forget_peers()
        else:
            self._peers.move_to_end(peer)
            elapsed = max(0.0, now - state.stamp)
            state.tokens = min(budgets.peer_burst, state.tokens + elapsed * budgets.peer_rate)
            state.stamp = now
        return state

    def _forget_peers(self) -> None:
        """Forget the least recently seen peer that holds nothing (a peer
        holding exchanges is remembered until they expire)."""
        if len(self._peers) <= self.budgets.peers:
            return
        for peer, state in self._peers.items():
            if not state.expiries and not state.in_flight:
                del self._peers[peer]
                return

    def last_heard(self, peer: Hashable) -> float | None:
        """When ``peer`` last sent a request (None: not tracked, or forgotten)."""
        state = self._peers.get(peer)
        return state.stamp if state is not None else None

    def expire(self, now: float) -> None:
        """Forget the exchanges whose lifetime ended by ``now`` (admission does
        this as it goes; the shell calls it when no request comes)."""
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self._remembered:
            key, (peer, expiry) = next(iter(self._remembered.items()))
            if expiry > now:
                return
            del self._remembered[key]
            state = self._peers.get(peer)
            if state is not None and state.expiries:
                state.expiries.popleft()

    # -- in flight (the resources) ----------------------------------------------------

    def note_delay(self, delay_s: float) -> None:
        """The latest measured queue delay (how late queued work runs)."""
        self.delay_s = max(0.0, delay_s)

    def enter(self, peer: Hashable, now: float) -> Refusal | None:
        """Start handling a request of ``peer``; pair with :meth:`leave`."""
        budgets = self.budgets
        if self.delay_s > budgets.queue_delay_s:
            return self._refuse("5.03", "queue delay", self.delay_s)
        if self.in_flight >= budgets.in_flight:
            return self._refuse("5.03", "in-flight", 1.0)
        state = self._peer(peer, now)
        if state.in_flight >= budgets.peer_in_flight:
            return self._refuse("4.29", "peer in-flight", 1.0)
        state.in_flight += 1
        self.in_flight += 1
        return None

    def leave(self, peer: Hashable) -> None:
        self.in_flight -= 1
        state = self._peers.get(peer)
        if state is not None:
            state.in_flight -= 1

    def _refuse(self, code: Literal["4.29", "5.03"], limit: str, wait_s: float) -> Refusal:
        self.refused[limit] = self.refused.get(limit, 0) + 1
        return Refusal(code, limit, max(1, math.ceil(wait_s)))


RELEASE_AT: Final = 256
"""Remembered exchanges a peak must reach before its end is worth a release."""
RELEASE_PART: Final = 8
"""A peak has ended when the remembered exchanges fell to this part of it."""


@dataclass(slots=True)
class Subsiding:
    """Says when a burst of remembered exchanges is over, so the shell can
    hand the memory they held back to the system (once per burst).

    The shell reports the remembered count as it goes (:meth:`note`, with
    the highest count since its last report when it knows it); the answer is
    True once, when the count has fallen to ``1 / RELEASE_PART`` of a peak
    of at least ``RELEASE_AT`` since the last release.  A quiet gateway
    never releases (nothing to give back), a gateway under steady load
    neither (its memory is in use).
    """

    peak: int = 0
    releases: int = 0

    def note(self, remembered: int, highest: int = 0) -> bool:
        self.peak = max(self.peak, highest)
        if remembered > self.peak:
            self.peak = remembered
            return False
        if self.peak < RELEASE_AT or remembered > self.peak // RELEASE_PART:
            return False
        self.peak = remembered
        self.releases += 1
        return True
