"""The device side of sync (DESIGN §6): one round trip when nothing changed,
a tiny delta when something did, resume where a transfer broke off.

A sync (own wake) is::

    GET /cfg/{dev}?from=<etag>     -> 2.03: done (one round trip)
                                   -> delta or full config, block by block,
                                      each block persisted before the next
    verify the full target ETag, apply, store atomically
    POST /state/{dev}              -> the gateway records what was applied

Riding on telemetry instead (``POST /tel/{dev}?cfg=<etag>``) costs no extra
round trip: an empty 2.04 means current; a payload is the delta.

A transfer interrupted at block N resumes at block N while the ETag holds
(also after a restart: the received bytes are on disk), else starts over.
Failures back off exponentially with full jitter, except when the gateway
said when to come back: a 4.29 or 5.03 (RFC 8516) is retried after its
Max-Age, and an observation the gateway ended that way is registered again
after it.  Each failed attempt is reported (:class:`Retry`) so a person
watching sees progress, not silence.

Stopping: :meth:`Agent.watch` and :func:`until` end as soon as their stop
event is set, whatever they are waiting for (a notification, a retry
delay, a reply).  Cancelling mid-sync is safe: every block and every
applied configuration is on disk before the next await.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, TypeVar

from edgecfg.agent.coap import Link as CoapLinkProtocol
from edgecfg.agent.coap import LinkDown, Reply, shed
from edgecfg.agent.overrides import LocalOverrides
from edgecfg.agent.sealed_store import LocalState
from edgecfg.core.ids import ETag
from edgecfg.core.session import (
    MAX_WAIT_S,
    WAIT_SPREAD,
    Answer,
    AnswerKind,
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
    Outcome,
    Policy,
    Report,
    Reported,
    Sleep,
    Start,
    SyncSession,
    Unusable,
    Woke,
)
from edgecfg.core.tree import Tree, Value, is_map
from edgecfg.errors import DeltaError, EdgecfgError, PeerError
from edgecfg.wire.blocks import DEFAULT_SZX
from edgecfg.wire.cbor import Encoded, encode
from edgecfg.wire.delta import apply_delta_encoded
from edgecfg.wire.journal import entry_to_value
from edgecfg.wire.messages import DeviceReport, MessageError, StateAnswer
from edgecfg.wire.numbers import CoapCode, ContentFormat
from edgecfg.wire.senml import Record, encode_senml

if TYPE_CHECKING:
    # Given by the caller when it has them: a device without a probe or
    # rules never loads their modules (issue 16).
    from edgecfg.agent.apply import ApplyGuard
    from edgecfg.agent.rules import LocalRules
    from edgecfg.core.rules import Adaptation

AGENT_VERSION: Final = "1.0.1"
JOURNAL_CHUNK_BYTES: Final = 900  # journal entries per state report: one CoAP block
MAX_ANSWER_BYTES: Final = 64 * 1024  # a state answer the agent takes, block-wise
T = TypeVar("T")


class SyncFailed(EdgecfgError):
    """The gateway answered something the agent cannot use (after fallbacks)."""


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one sync achieved."""

    outcome: Outcome
    etag: ETag | None
    round_trips: int
    bytes_up: int
    bytes_down: int


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog's "full jitter")."""

    base_s: float = 1.0
    cap_s: float = 300.0
    attempts: int = 6

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.cap_s, self.base_s * 2**attempt))

    def after(self, error: LinkDown, attempt: int, rng: random.Random) -> float:
        """The wait before retrying after ``error``: the gateway's Max-Age when
        it gave one (RFC 8516 §4: not earlier; up to the session's
        ``WAIT_SPREAD`` of it later, so devices refused together do not return
        together; at most ``MAX_WAIT_S``), else :meth:`delay`."""
        if error.retry_after_s is None:
            return self.delay(attempt, rng)
        wait = min(MAX_WAIT_S, max(0.0, error.retry_after_s))
        return wait * (1 + rng.uniform(0, WAIT_SPREAD))


@dataclass(frozen=True, slots=True)
class Retry:
    """An attempt failed and another follows after ``delay_s`` seconds.

    ``attempt`` counts from 1; ``attempts`` is the limit, or None when the
    agent keeps trying (an online agent re-establishing its observation).
    """

    attempt: int
    attempts: int | None
    delay_s: float
    error: LinkDown


async def until(stop: asyncio.Event, work: Coroutine[Any, Any, T]) -> T | None:
    """Run ``work`` until it finishes (its result, or its exception) or ``stop``
    is set (``work`` is cancelled and awaited, then None)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return None if task.cancelled() else task.result()


class Agent:
    """Keeps one device's configuration in sync with the gateway.

    ``on_retry`` is told about each failed attempt before the agent waits
    to retry (the CLI prints it).  ``clock`` (monotonic seconds) and
    ``sleep`` are the only time the driver knows: a test or a simulator
    passes a virtual clock and a sleep that advances it, and a backoff or a
    gateway's Max-Age then costs no real time.
    """

    def __init__(
        self,
        link: CoapLinkProtocol,
        state: LocalState,
        *,
        device: str,
        agent_version: str = AGENT_VERSION,
        schema_version: int | None = None,
        hardware: str | None = None,
        firmware: str | None = None,
        szx: int = DEFAULT_SZX,
        critical_first: bool = False,
        budget: int | None = None,
        backoff: Backoff | None = None,
        seed: int | None = None,
        local: LocalOverrides | None = None,
        on_retry: Callable[[Retry], None] | None = None,
        guard: ApplyGuard | None = None,
        rules: LocalRules | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.link = link
        self.state = state
        self.device = device
        self.agent_version = agent_version
        self.schema_version = schema_version
        self.hardware = hardware
        self.firmware = firmware
        self.szx = szx
        self.critical_first = critical_first
        self.budget = budget
        self.backoff = backoff or Backoff()
        self.rng = random.Random(seed)
        self.local = local
        self.on_retry = on_retry
        self.guard = guard  # apply -> probe -> commit or revert (issue 15); None: store at once
        self.rules = rules  # the local adaptation layer (issue 14); None: no rules
        self.last_merge: Value | None = None  # the gateway's last answer about local overrides
        self._introduced = False
        self.clock = clock  # the session's time (monotonic seconds)
        self.sleep = sleep  # waits out a backoff or Max-Age; tests pass a virtual one

    # -- public -------------------------------------------------------------------

    @property
    def config(self) -> Tree | None:
        """What the device runs on: the applied configuration, plus local overrides
        the gateway has not merged yet (offline changes), plus the local
        adaptation layer of the device's rules."""
        base = self._below_adaptation()
        if base is None or self.rules is None:
            return base
        return self.rules.lay(base)

    def _below_adaptation(self) -> Tree | None:
        held = self.state.load_config()
        if held is None:
            return None
        return self.local.effective(held.tree) if self.local is not None else held.tree

    def wake(self, readings: Mapping[str, float], *, now: float | None = None) -> Adaptation | None:
        """Feed this wake's measurements to the device's rules (no gateway
        needed): returns the adaptation layer now in force, or None without
        rules or before the first configuration.  ``now`` defaults to the
        wall clock (dwell times span reboots)."""
        base = self._below_adaptation()
        if self.rules is None or base is None:
            return None
        return self.rules.wake(readings, now=time.time() if now is None else now, base=base)

    async def sync(self) -> SyncResult:
        """One sync with retries; raises :class:`LinkDown` when every attempt failed."""
        if self.guard is not None:  # a trial a stopped sync left unconfirmed reverts first
            await self.guard.settle()
        result = await self._measured(self._drive(self._start()))
        self.wake({})  # scaled values follow a new config; no reading, no rule changes
        return result

    async def watch(self, stop: asyncio.Event, on_sync: Callable[[SyncResult], None]) -> None:
        """Stay online: observe the config and sync whenever its ETag moves;
        return as soon as ``stop`` is set.

        Online devices observe instead of polling (DESIGN §5): the gateway
        notifies with block 0 and the ETag, and the agent syncs (a delta) only
        when that ETag differs from the one it holds.  A broken observation is
        re-established after a jittered backoff.  ``stop`` is raced against
        whatever the agent waits for, so a quiet observation (no notification
        for hours) still ends at once.
        """
        if not stop.is_set():
            await until(stop, self._watch(on_sync))

    async def _watch(self, on_sync: Callable[[SyncResult], None]) -> None:
        failures = 0
        while True:
            try:
                on_sync(await self.sync())
                notes = self.link.observe(("cfg", self.device))
                try:
                    async for note in notes:
                        failures = 0
                        held = self.state.load_config()
                        if (
                            note.ok
                            and note.etag is not None
                            and (held is None or note.etag != held.etag)
                        ):
                            on_sync(await self.sync())
                finally:  # also when stopped mid-sync: deregister now, not at gc
                    if isinstance(notes, AsyncGenerator):
                        await notes.aclose()
                error = LinkDown("the observation ended", kind="observation")
            except LinkDown as down:
                error = down
            failures += 1
            delay = self.backoff.after(error, min(failures, 10), self.rng) + 0.01
            self._retrying(Retry(failures, None, delay, error))
            await self.sleep(delay)

    @property
    def link_address(self) -> str:
        """The gateway's address, for messages (``coap://HOST:PORT`` on a CoAP link)."""
        return str(getattr(self.link, "base", "the gateway"))

    def _retrying(self, retry: Retry) -> None:
        if self.on_retry is not None:
            self.on_retry(retry)

    async def telemetry(self, records: Sequence[Record]) -> SyncResult:
        """Report telemetry; the config rides on the reply when it changed."""
        return await self._measured(self._telemetry(records))

    # -- the procedure --------------------------------------------------------------

    async def _measured(self, work: Awaitable[Outcome]) -> SyncResult:
        traffic = self.link.traffic
        before = (traffic.round_trips, traffic.bytes_up, traffic.bytes_down)
        outcome = await work
        held = self.state.load_config()
        return SyncResult(
            outcome,
            held.etag if held else None,
            traffic.round_trips - before[0],
            traffic.bytes_up - before[1],
            traffic.bytes_down - before[2],
        )

    def _start(self, piggyback: Answer | None = None) -> Start:
        held = self.state.load_config()
        if self.local is not None:  # pending changes were made on this version
            self.local.note_base(held.etag if held is not None else None)
        return Start(
            self.clock(),
            held.etag if held is not None else None,
            self.state.load_transfer(),
            local_pending=(self.local is not None and bool(self.local.pending()))
            or (self.guard is not None and bool(self.guard.unreported()[0]))
            or (self.rules is not None and self.rules.unreported() is not None)
            # a config riding on telemetry is reported only with news; the first
            # report of a run introduces the device (hardware, versions)
            or (piggyback is not None and not self._introduced),
            piggyback=piggyback,
        )

    def _policy(self) -> Policy:
        return Policy(
            query=(f"sv={self.schema_version}",) if self.schema_version is not None else (),
            szx=self.szx,
            critical_first=self.critical_first,
            budget=self.budget,
            attempts=self.backoff.attempts,
            backoff_base_s=self.backoff.base_s,
            backoff_cap_s=self.backoff.cap_s,
        )

    async def _drive(self, start: Start) -> Outcome:
        """Carry out what a :class:`SyncSession` decides, one event at a time
        (the session decides; this does the I/O and keeps the time)."""
        session = SyncSession(self._policy())
        actions = session.receive(start)
        down: LinkDown | None = None
        while True:
            event: Event | None = None
            for action in actions:
                match action:
                    case Keep(transfer=transfer):
                        self.state.save_transfer(transfer)
                    case Drop():
                        self.state.clear_transfer()
                    case Get():
                        event, down = await self._get(action, down)
                    case Install():
                        event = await self._install(action)
                    case Report():
                        try:
                            event = Reported(self.clock(), await self._report())
                        except LinkDown as error:
                            event, down = self._lost(error), error
                    case Sleep(until=until, attempt=attempt, attempts=attempts):
                        delay = max(0.0, until - self.clock())
                        assert down is not None
                        self._retrying(Retry(attempt, attempts, delay, down))
                        await self.sleep(delay)
                        event = Woke(self.clock())
                    case Finished(outcome=outcome):
                        return outcome
                    case GaveUp(reason=reason, kind=kind):
                        if kind == "link" and down is not None:
                            raise down
                        raise SyncFailed(f"{self.device}: {reason}")
            assert event is not None, f"no event after {actions}"
            actions = session.receive(event)

    def _lost(self, error: LinkDown) -> Lost:
        return Lost(self.clock(), str(error), self.rng.random(), error.retry_after_s)

    async def _get(self, action: Get, down: LinkDown | None) -> tuple[Event, LinkDown | None]:
        size = action.szx if action.szx is not None else DEFAULT_SZX
        # The held version goes in the ETag option (2.03 when current, else the
        # delta from it); Block2 only when it says more than the default would.
        block2 = None if action.block == 0 and size == DEFAULT_SZX else (action.block, size)
        try:
            reply = await self.link.request(
                "GET", ("cfg", self.device), query=action.query, block2=block2,
                etags=(action.etag,) if action.etag is not None else (),
            )  # fmt: skip
        except LinkDown as error:
            return self._lost(error), error
        answer = _answer(reply)
        if answer.kind == "busy":  # the session waits its Max-Age; this says why
            down = shed(self.link_address, reply) or down
        return Got(self.clock(), answer), down

    async def _install(self, action: Install) -> Installed | Unusable:
        held = self.state.load_config()
        base = held if held is not None and action.base == held.etag else None
        try:
            config = decode_config(base, action.payload, action.content_format, action.etag)
        except (DeltaError, PeerError) as error:
            return Unusable(self.clock(), str(error))
        if self.guard is None:
            self.state.save_config(config)
        elif await self.guard.install(config) is not None:  # a trial ended: report it
            now = self.state.load_config()
            assert now is not None
            return Installed(self.clock(), now.etag, changed=True, report=True)
        changed = held is None or config.etag != held.etag
        return Installed(self.clock(), config.etag, changed)

    async def _report(self) -> bool:
        """POST /state (several when the journal is long); True when the gateway
        says the device is not current.

        Offline changes go up as the latest entry per path, oldest first, in
        chunks that fit one CoAP block; the gateway acknowledges each chunk by
        sequence, so a broken reconnect resumes where it stopped.
        """
        stale = False
        while True:
            before = self.local.journal.acknowledged if self.local is not None else 0
            chunk = self._journal_chunk()
            stale = await self._post_state(chunk) or stale
            if not chunk or self.local is None or not self.local.pending():
                return stale
            if self.local.journal.acknowledged <= before:
                raise SyncFailed(f"{self.device}: the gateway did not acknowledge the journal")

    def _journal_chunk(self) -> list[Value]:
        if self.local is None:
            return []
        chunk: list[Value] = []
        size = 0
        latest = sorted(self.local.overrides().values(), key=lambda entry: entry.sequence)
        for entry in latest:
            value = entry_to_value(entry)
            cost = len(encode(value))
            if chunk and size + cost > JOURNAL_CHUNK_BYTES:
                break
            chunk.append(value)
            size += cost
        return chunk

    async def _post_state(self, chunk: list[Value]) -> bool:
        held = self.state.load_config()
        base: ETag | None = None
        if chunk:  # offline changes, for the gateway's three-way merge
            base = self.local.base if self.local is not None else None
            base = base if base is not None else (held.etag if held else None)
        outcomes, dropped = self.guard.unreported() if self.guard is not None else ((), 0)
        introducing = not self._introduced  # versions once per run: they rarely change
        adapt = self.rules.unreported() if self.rules is not None else None
        report = DeviceReport(
            applied=held.etag if held else None,
            journal=tuple(chunk) if chunk else None,
            base=base,
            store_events=tuple(self.state.events()),  # corruption found (and recovered from)
            agent=self.agent_version if introducing else None,
            schema=self.schema_version if introducing else None,
            firmware=self.firmware if introducing else None,
            apply=outcomes,  # how trials of new configs ended: a revert is never silent
            apply_dropped=dropped,
            adapt=adapt,  # the local adaptation layer, once after each change (issue 14)
        )
        reply = await self._post_whole(("state", self.device), report.encode())
        refused = shed(self.link_address, reply, "state report: ")
        if refused is not None:
            raise refused
        if not reply.ok:
            raise SyncFailed(f"{self.device}: state report refused: {reply.code} {reply.payload!r}")
        self._introduced = True
        if self.guard is not None and outcomes:
            self.guard.delivered(len(outcomes))
        if self.rules is not None and adapt is not None:
            self.rules.delivered(adapt)
        if not reply.payload:
            return False  # current, nothing merged
        try:
            answer = StateAnswer.decode(reply.payload)
        except MessageError as error:
            raise SyncFailed(f"{self.device}: {error}") from None
        merged, ack = answer.local, answer.acknowledged
        if is_map(merged) and self.local is not None and ack is not None:
            self.local.acknowledge(ack)
            self.local.remember(merged)
            self.last_merge = merged
        return not answer.current

    async def _post_whole(self, path: tuple[str, str], payload: bytes) -> Reply:
        """POST ``payload`` (CBOR) to ``path``; an answer too large for one block
        comes block-wise (RFC 7959 §2.5): the rest is asked for by empty POSTs
        naming the block, and the reply returned carries the whole answer."""
        reply = await self.link.request(
            "POST", path, payload=payload, content_format=ContentFormat.CBOR
        )
        body = bytearray(reply.payload)
        while reply.ok and reply.block2 is not None and reply.block2[1]:
            number, _, szx = reply.block2
            if len(body) != (number + 1) << (szx + 4) or len(body) >= MAX_ANSWER_BYTES:
                raise SyncFailed(
                    f"{self.device}: the answer to POST /{'/'.join(path)} came in blocks out "
                    f"of order or beyond {MAX_ANSWER_BYTES} bytes (block {number}, "
                    f"{len(body)} bytes so far)"
                )
            etag = reply.etag
            reply = await self.link.request("POST", path, block2=(number + 1, szx))
            if reply.ok and reply.etag != etag:
                raise SyncFailed(
                    f"{self.device}: the answer to POST /{'/'.join(path)} changed between "
                    "its blocks; it is sent again on the next sync"
                )
            body += reply.payload
        return replace(reply, payload=bytes(body)) if reply.ok else reply

    async def _telemetry(self, records: Sequence[Record]) -> Outcome:
        held = self.state.load_config()
        # the held version as an ETag option: 9 bytes where ?cfg=<hex> takes 22
        reply = await self.link.request(
            "POST", ("tel", self.device), payload=encode_senml(records),
            content_format=ContentFormat.SENML_CBOR,
            etags=(held.etag,) if held is not None else (),
        )  # fmt: skip
        if not reply.ok:
            raise SyncFailed(f"{self.device}: telemetry refused: {reply.code} {reply.payload!r}")
        if held is None or (not reply.payload and reply.etag in (None, held.etag)):
            return "current"
        if not reply.payload:
            return await self._drive(self._start())  # stale, too big to ride along
        return await self._drive(self._start(piggyback=_answer(reply)))


_KINDS: Final[dict[str, AnswerKind]] = {
    CoapCode.VALID.dotted: "valid",
    CoapCode.CONTENT.dotted: "content",
    CoapCode.CHANGED.dotted: "content",  # a config riding on a telemetry answer
    CoapCode.BAD_REQUEST.dotted: "stale",
    CoapCode.SERVICE_UNAVAILABLE.dotted: "busy",
    CoapCode.TOO_MANY_REQUESTS.dotted: "busy",
}


def _answer(reply: Reply) -> Answer:
    """What the sync session decides on, from a CoAP reply (codes read here, once)."""
    return Answer(
        _KINDS.get(reply.code, "refused"),
        reply.code,
        reply.payload,
        ETag(reply.etag) if reply.etag is not None else None,
        reply.content_format,
        reply.block2,
        reply.size2,
        reply.max_age,
    )


def decode_config(
    held: Encoded | None, payload: bytes, content_format: int | None, etag: ETag | None
) -> Encoded:
    """The configuration a config answer carries: a delta applied to ``held``
    or a full config, checked against the announced ETag; DeltaError or
    DecodeError when it is not usable."""
    if content_format == ContentFormat.DELTA:
        if held is None:
            raise DeltaError("a delta arrived but the agent holds no config")
        config = apply_delta_encoded(held, payload)
    elif content_format in (ContentFormat.CBOR, None):
        config = Encoded.from_bytes(payload)
    else:
        raise DeltaError(f"unexpected content-format {content_format}")
    if etag is not None and config.etag != etag:
        raise DeltaError(
            f"result checks as {config.etag.hex()}, the gateway announced {etag.hex()}"
        )
    return config
