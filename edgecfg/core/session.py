"""One sync of a device, as a state machine without I/O (sans-I/O, as h11 is).

The agent's driver (:mod:`edgecfg.agent.sync`) owns the socket, the disk and
the clock; a :class:`SyncSession` owns the decisions.  The driver feeds it
events and carries out the actions it returns, until :class:`Finished` or
:class:`GaveUp`.  Time (``now``) and randomness (``jitter``, in [0, 1)) come
in with the events, so a week of retries runs in microseconds and the
simulator drives the very same object with a virtual clock.

A sync asks ``GET /cfg/{dev}`` with the held version as ETag (2.03 when
current, else a delta from it, block by block), installs the result, reports
``POST /state/{dev}`` when something was applied or offline changes wait, and
fetches once more when the report says the merge changed the served config.
A config that rode on a telemetry answer (``piggyback``) is not reported by
itself: the device's next telemetry ``POST /tel/{dev}?cfg=`` names the ETag
it holds, and the gateway records that as applied, which saves a round trip
per change on the link that costs most; it is reported when something else
waits (``local_pending``: offline changes, a trial's outcome, a first
introduction, or :attr:`Installed.report`).
With ``critical_first`` it first fetches the critical keys alone.  A failed
exchange or a busy gateway (5.03, 4.29) restarts the sync after a delay:
the gateway's Max-Age when it gave one, else exponential backoff with full
jitter; after ``attempts`` failures in a row (an answer in between is
progress and starts the count again) the session gives up.

Transitions (state, event -> what happens; :data:`TRANSITIONS` is the table
itself, any other pair raises :class:`SessionError`)::

    idle       Start      -> fetching (Get block 0) | receiving (a kept
                             transfer: Get its next block) | installing
                             (a piggybacked answer: Install)
    fetching   Got        -> valid: next phase; content: installing (Install)
                             or receiving (Keep, Get next) or done (partial,
                             over budget); busy: sleeping; else: failed
    receiving  Got        -> content: receiving (Keep, Get next) or
                             installing (Install); stale or a new ETag:
                             fetching (Drop, Get block 0); busy: sleeping;
                             else: failed
    installing Installed  -> next phase: fetching | reporting (Report) | done
    installing Unusable   -> fetching the full config once (Drop, Get
                             without ETag), or failed when nothing is held
    reporting  Reported   -> fetching (the merge changed the config) | done
    fetching,
    receiving,
    reporting  Lost       -> sleeping (Sleep) | failed after the last attempt
    sleeping   Woke       -> fetching | receiving (the sync starts again)
    done,
    failed     (anything)  -> SessionError
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final, Literal

from edgecfg.core.ids import ETag
from edgecfg.errors import EdgecfgError

Outcome = Literal["current", "updated", "partial"]
AnswerKind = Literal["valid", "content", "stale", "busy", "refused"]
State = Literal[
    "idle", "fetching", "receiving", "installing", "reporting", "sleeping", "done", "failed"
]
Phase = Literal["critical", "full", "refetch", "piggyback"]
CRITICAL_QUERY: Final = "prio=critical"
DEFAULT_MAX_AGE_S: Final = 60
"""RFC 7252 §5.10.5: the Max-Age of a response that carries none."""
MAX_WAIT_S: Final = 86_400.0
"""A Max-Age beyond a day is a broken gateway's; a refusal waits at most this."""
WAIT_SPREAD: Final = 0.1
"""A retry after a refusal's Max-Age comes up to this share of it later (RFC 8516 §4)."""


class SessionError(EdgecfgError):
    """An event the session's state does not expect (a driver bug, never the network's)."""


# -- what the session remembers across wakes ----------------------------------------


@dataclass(frozen=True, slots=True)
class Transfer:
    """A block-wise download in progress (kept on disk, resumed after a restart)."""

    query: tuple[str, ...]
    etag: ETag
    szx: int
    received: bytes
    size: int | None = None
    content_format: int | None = None
    base: ETag | None = None  # the version the transfer is a delta from

    def next_block(self) -> int:
        """The number of the next block to ask for."""
        return len(self.received) >> (self.szx + 4)


@dataclass(frozen=True, slots=True)
class Policy:
    """How a session behaves; the agent's settings."""

    query: tuple[str, ...] = ()
    """Uri-Query options of every config request (``sv=N``)."""
    szx: int | None = None
    """Block size exponent to ask for (None: the gateway's default)."""
    critical_first: bool = False
    budget: int | None = None
    """Largest transfer (bytes) finished in one wake; a larger one resumes later."""
    attempts: int = 6
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0

    def delay(self, attempt: int, jitter: float) -> float:
        """Full-jitter exponential backoff before attempt ``attempt + 1``."""
        return jitter * min(self.backoff_cap_s, self.backoff_base_s * 2**attempt)


# -- events (driver -> session) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """A response to a config request, reduced to what the session decides on.

    ``kind`` is the driver's reading of the code: ``valid`` (2.03),
    ``content`` (2.05), ``stale`` (4.00 to a block: the representation moved
    on), ``busy`` (5.03 or 4.29), ``refused`` (anything else)."""

    kind: AnswerKind
    code: str = "2.05"
    payload: bytes = b""
    etag: ETag | None = None
    content_format: int | None = None
    block: tuple[int, bool, int] | None = None  # (number, more, szx)
    size: int | None = None
    max_age: int | None = None


@dataclass(frozen=True, slots=True)
class Start:
    """A wake: what the device holds, a transfer in progress, offline changes
    waiting; ``piggyback`` is a config that rode on a telemetry answer."""

    now: float
    held: ETag | None
    transfer: Transfer | None = None
    local_pending: bool = False
    piggyback: Answer | None = None


@dataclass(frozen=True, slots=True)
class Got:
    """The answer to the outstanding :class:`Get`."""

    now: float
    answer: Answer


@dataclass(frozen=True, slots=True)
class Lost:
    """The outstanding exchange failed (timeouts, no route); ``jitter`` in [0, 1).
    ``wait``: the gateway refused it and said when to come back (a Max-Age)."""

    now: float
    reason: str
    jitter: float
    wait: float | None = None


@dataclass(frozen=True, slots=True)
class Installed:
    """The :class:`Install` worked: ``etag`` is held now (``changed``: a new version).
    ``report``: the install has news of its own to report (a trial of an
    earlier config ended)."""

    now: float
    etag: ETag
    changed: bool
    report: bool = False


@dataclass(frozen=True, slots=True)
class Unusable:
    """The :class:`Install` failed: a delta that does not apply, a bad ETag."""

    now: float
    reason: str


@dataclass(frozen=True, slots=True)
class Reported:
    """The state report went through; ``stale``: the gateway serves another version."""

    now: float
    stale: bool


@dataclass(frozen=True, slots=True)
class Woke:
    """A :class:`Sleep` is over."""

    now: float


Event = Start | Got | Lost | Installed | Unusable | Reported | Woke


# -- actions (session -> driver) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Get:
    """Ask ``GET /cfg/{dev}`` with ``query``, block ``block`` of size ``szx``
    (None: the default), the held version ``etag`` in the ETag option."""

    query: tuple[str, ...]
    block: int
    szx: int | None
    etag: ETag | None


@dataclass(frozen=True, slots=True)
class Keep:
    """Persist the transfer before asking for the next block."""

    transfer: Transfer


@dataclass(frozen=True, slots=True)
class Drop:
    """Forget the transfer in progress."""


@dataclass(frozen=True, slots=True)
class Install:
    """Decode ``payload`` (a delta from ``base``, or a full config), check it
    against ``etag``, commit it; answer :class:`Installed` or :class:`Unusable`."""

    payload: bytes
    content_format: int | None
    etag: ETag | None
    base: ETag | None


@dataclass(frozen=True, slots=True)
class Report:
    """Send the state report (with offline changes); answer :class:`Reported`."""


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait until ``until``, then answer :class:`Woke`.  ``attempt`` of
    ``attempts`` failed because of ``reason``."""

    until: float
    attempt: int
    attempts: int
    reason: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The sync is over."""

    outcome: Outcome


@dataclass(frozen=True, slots=True)
class GaveUp:
    """The sync failed: ``link`` after the last attempt, ``protocol`` when the
    gateway answered something the agent cannot use."""

    reason: str
    kind: Literal["link", "protocol"]


Action = Get | Keep | Drop | Install | Report | Sleep | Finished | GaveUp


# -- the session ----------------------------------------------------------------------


class SyncSession:
    """One sync; see the module docstring for its transitions."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy()
        self.state: State = "idle"
        self.held: ETag | None = None
        self.transfer: Transfer | None = None
        self.outcome: Outcome | None = None
        self.attempt = 0
        self._local_pending = False
        self._phases: list[Phase] = []
        self._phase: Phase = "full"
        self._base: ETag | None = None  # what the current fetch is a delta from
        self._fell_back = False
        self._start: Start | None = None

    # -- the one entry point ---------------------------------------------------------

    def receive(self, event: Event) -> list[Action]:
        """The actions ``event`` calls for, in order; :class:`SessionError`
        when the state does not expect it."""
        handler = TRANSITIONS.get((self.state, type(event).__name__))
        if handler is None:
            raise SessionError(f"{type(event).__name__} is not expected in state {self.state}")
        return handler(self, event)

    # -- handlers (named in TRANSITIONS) -----------------------------------------------

    def _on_start(self, event: Event) -> list[Action]:
        assert isinstance(event, Start)
        self._start = event
        self.held, self.transfer = event.held, event.transfer
        self._local_pending = event.local_pending
        if event.piggyback is not None:
            self._phase, self._base = "piggyback", event.held
            return self._content(event.piggyback, self._query())
        return self._begin()

    def _on_got(self, event: Event) -> list[Action]:
        assert isinstance(event, Got)
        answer = event.answer
        if answer.kind in ("valid", "content"):
            self.attempt = 0  # progress: a long transfer on a bad link is not a failure
        if answer.kind == "busy":  # wait what the gateway asked (RFC 7252's default: 60 s)
            wait = answer.max_age if answer.max_age is not None else DEFAULT_MAX_AGE_S
            return self._retry(event.now, f"gateway busy ({answer.code})", 0.0, wait)
        if self.state == "receiving":
            return self._block(event, answer)
        if answer.kind == "valid":
            return self._phase_done("current")
        if answer.kind != "content":
            return self._fail(_refused(answer), "protocol")
        return self._content(answer, self._query())

    def _on_lost(self, event: Event) -> list[Action]:
        assert isinstance(event, Lost)
        wait = None
        if event.wait is not None:  # not earlier; spread so refused devices do not return together
            wait = min(MAX_WAIT_S, max(0.0, event.wait)) * (1 + WAIT_SPREAD * event.jitter)
        return self._retry(event.now, event.reason, event.jitter, wait)

    def _on_installed(self, event: Event) -> list[Action]:
        assert isinstance(event, Installed)
        self.held, self.transfer = event.etag, None
        self._local_pending = self._local_pending or event.report
        return [Drop(), *self._phase_done("updated" if event.changed else "current")]

    def _on_unusable(self, event: Event) -> list[Action]:
        assert isinstance(event, Unusable)
        self.transfer = None
        if self.held is None or self._fell_back:
            return [Drop(), *self._fail(f"the gateway sent an unusable config: {event.reason}")]
        # our copy and the gateway disagree: fetch the full config, once
        self._fell_back, self._base = True, None
        return [Drop(), *self._get_first()]

    def _on_reported(self, event: Event) -> list[Action]:
        assert isinstance(event, Reported)
        if self._phase == "full" and event.stale and self.outcome != "partial":
            self._phases = ["refetch"]
            return self._next_phase()
        return self._finish()

    def _on_woke(self, event: Event) -> list[Action]:
        assert isinstance(event, Woke)
        return self._begin()

    # -- the procedure ---------------------------------------------------------------

    def _begin(self) -> list[Action]:
        self._fell_back = False
        critical = self.policy.critical_first and self.held is not None
        self._phases = ["critical", "full"] if critical else ["full"]
        self.outcome = None
        return self._next_phase()

    def _next_phase(self) -> list[Action]:
        self._phase = self._phases.pop(0)
        self._base = self.held
        query = self._query()
        transfer = self.transfer
        actions: list[Action] = []
        if transfer is not None and (transfer.query != query or transfer.base != self._base):
            self.transfer = None  # the base moved on: that transfer is stale
            actions.append(Drop())
        elif transfer is not None:
            self.state = "receiving"
            return [Get(query, transfer.next_block(), transfer.szx, transfer.base)]
        return [*actions, *self._get_first()]

    def _get_first(self) -> list[Action]:
        self.state = "fetching"
        return [Get(self._query(), 0, self.policy.szx, self._base)]

    def _query(self) -> tuple[str, ...]:
        extra = (CRITICAL_QUERY,) if self._phase == "critical" else ()
        return (*self.policy.query, *extra)

    def _content(self, answer: Answer, query: tuple[str, ...]) -> list[Action]:
        if answer.block is None or not answer.block[1]:
            self.state = "installing"
            return [Install(answer.payload, answer.content_format, answer.etag, self._base)]
        if answer.etag is None:
            return self._fail("a block-wise answer without an ETag cannot be resumed")
        self.transfer = Transfer(
            query, answer.etag, answer.block[2], answer.payload, answer.size,
            answer.content_format, self._base,
        )  # fmt: skip
        budget = self.policy.budget
        if budget is not None and (answer.size or 0) > budget:
            return [Keep(self.transfer), *self._phase_done("partial")]  # resume next wake
        self.state = "receiving"
        return [Keep(self.transfer), self._next_block(self.transfer)]

    def _block(self, event: Got, answer: Answer) -> list[Action]:
        transfer = self.transfer
        assert transfer is not None
        if (
            answer.kind == "stale"
            or (answer.etag is not None and answer.etag != transfer.etag)
            or (
                answer.kind == "content"
                and answer.content_format is not None  # a block may leave it out
                and answer.content_format != transfer.content_format
            )
        ):
            # The representation changed (or shrank): start over.  The same
            # ETag in another format is a gateway that lost the base (a
            # restart): a full config now, where the first blocks were a delta.
            self.transfer = None
            return [Drop(), *self._get_first()]
        if answer.kind != "content":
            return self._fail(_refused(answer), "protocol")
        transfer = replace(transfer, received=transfer.received + answer.payload)
        self.transfer = transfer
        if answer.block is not None and answer.block[1]:
            return [Keep(transfer), self._next_block(transfer)]
        self.state = "installing"
        return [Install(transfer.received, transfer.content_format, transfer.etag, transfer.base)]

    def _next_block(self, transfer: Transfer) -> Get:
        return Get(transfer.query, transfer.next_block(), transfer.szx, transfer.base)

    def _phase_done(self, outcome: Outcome) -> list[Action]:
        phase = self._phase
        if phase == "critical":
            if outcome == "partial":
                self.outcome = outcome
                return self._finish()
            return self._next_phase()
        if phase == "refetch":
            if outcome == "updated":  # confirm what the merge made of the overrides
                self.outcome = "updated"
                self.state = "reporting"
                return [Report()]
            return self._finish()
        self.outcome = outcome
        if phase == "piggyback":  # the next telemetry's ?cfg= tells what was applied
            if outcome == "updated" and self._local_pending:
                self.state = "reporting"
                return [Report()]
            return self._finish()
        if outcome == "updated" or self._local_pending:
            self.state = "reporting"
            return [Report()]
        return self._finish()

    def _finish(self) -> list[Action]:
        self.state = "done"
        return [Finished(self.outcome or "current")]

    def _retry(self, now: float, reason: str, jitter: float, wait: float | None) -> list[Action]:
        attempts = self.policy.attempts
        if self.attempt >= attempts - 1:
            return self._fail(f"{reason} (attempt {self.attempt + 1} of {attempts})", "link")
        delay = wait if wait is not None else self.policy.delay(self.attempt, jitter)
        self.attempt += 1
        self.state = "sleeping"
        return [Sleep(now + delay, self.attempt, attempts, reason)]

    def _fail(self, reason: str, kind: Literal["link", "protocol"] = "protocol") -> list[Action]:
        self.state = "failed"
        return [GaveUp(reason, kind)]


def _refused(answer: Answer) -> str:
    detail = answer.payload.decode("utf-8", "replace")[:120]
    return f"gateway answered {answer.code}: {detail}"


Handler = Callable[[SyncSession, Event], list[Action]]

TRANSITIONS: Final[dict[tuple[State, str], Handler]] = {
    ("idle", "Start"): SyncSession._on_start,  # pyright: ignore[reportPrivateUsage]
    ("fetching", "Got"): SyncSession._on_got,  # pyright: ignore[reportPrivateUsage]
    ("receiving", "Got"): SyncSession._on_got,  # pyright: ignore[reportPrivateUsage]
    ("installing", "Installed"): SyncSession._on_installed,  # pyright: ignore[reportPrivateUsage]
    ("installing", "Unusable"): SyncSession._on_unusable,  # pyright: ignore[reportPrivateUsage]
    ("reporting", "Reported"): SyncSession._on_reported,  # pyright: ignore[reportPrivateUsage]
    ("fetching", "Lost"): SyncSession._on_lost,  # pyright: ignore[reportPrivateUsage]
    ("receiving", "Lost"): SyncSession._on_lost,  # pyright: ignore[reportPrivateUsage]
    ("reporting", "Lost"): SyncSession._on_lost,  # pyright: ignore[reportPrivateUsage]
    ("sleeping", "Woke"): SyncSession._on_woke,  # pyright: ignore[reportPrivateUsage]
}
"""Every (state, event) the session accepts and its handler; the rest raise."""
