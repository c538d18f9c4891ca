"""Apply → probe → commit or revert on the device (issue 15): the I/O shell
around :mod:`edgecfg.core.apply`.

:class:`ApplyGuard` takes a verified configuration through a trial:

1. validate it against the schema and the device's hardware and firmware;
2. write it to the A/B store as a new generation, **not** marked good;
3. hand it to every :class:`Applier` (:class:`FileApplier`: a process
   configuration file, replaced atomically);
4. run every :class:`Probe` (:class:`ReachabilityProbe`: can the gateway
   still be reached with the new settings);
5. mark the generation good (it is the last-known-good now), or go back to
   the last-known-good in the store and the appliers.

The apply record (:mod:`edgecfg.wire.apply`, sealed in ``apply.bin``
beside the store) is saved before each machine.step, so a power cut mid-trial is
resumed by :meth:`ApplyGuard.boot`: an unconfirmed candidate is reverted on
the next boot (within ``boot_limit`` reboots it is applied and probed
again), a confirmation or a revert under way is finished.  The deadline
holds across reboots (it is wall-clock time).  How each trial ended waits
in the record until a state report carried it (:meth:`ApplyGuard.delivered`).

A revert touches only the configuration: the A/B store and what the
appliers write.  The OSCORE sequence numbers (the credentials folder) and
the local-override journal are separate files that no machine.step here writes.

A device's first configuration has nothing to go back to: it is stored as
good at once (the agent's own start-up settings are its fallback).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from edgecfg.agent.coap import SHEDDING, CoapLink, Link, LinkDown
from edgecfg.agent.sealed_store import REAL_FS, FileSystem, LocalState, NothingToRevert, WriteFailed
from edgecfg.core import apply as machine
from edgecfg.core.apply import ApplyOutcome, ApplyState, ProbeResult, Trial
from edgecfg.core.path import Path as ConfigPath
from edgecfg.core.schema import Schema
from edgecfg.core.tree import Tree, get
from edgecfg.errors import EdgecfgError, UsageError
from edgecfg.wire.apply import decode_apply_state, encode_apply_state
from edgecfg.wire.cbor import Encoded
from edgecfg.wire.documents import write_config
from edgecfg.wire.messages import MessageError

PROBE_TIMEOUT_S: Final = 120.0
"""A probe that has not answered by then failed."""
SERVER_URI: Final[ConfigPath] = ("net", "coap", "server_uri")
ACK_TIMEOUT: Final[ConfigPath] = ("net", "coap", "ack_timeout_s")
MAX_RETRANSMIT: Final[ConfigPath] = ("net", "coap", "max_retransmit")


class ApplyRefused(EdgecfgError):
    """An applier cannot use a configuration (the text says which and why)."""


class Applier(Protocol):
    """Puts a configuration into effect (a file, a service reload, a radio
    setting).  ``apply`` is called with the candidate and, on a revert,
    with the last-known-good: it must be idempotent.  It raises
    :class:`EdgecfgError` or :class:`OSError` when it cannot."""

    name: str

    def apply(self, config: Encoded) -> None: ...


class Probe(Protocol):
    """Tells whether the device is healthy on an applied configuration."""

    name: str

    def check(self, config: Encoded) -> Awaitable[ProbeResult]: ...


class FileApplier:
    """The reference applier: writes the configuration as the process
    configuration file ``path`` (JSON, or canonical CBOR with
    ``fmt="cbor"``), replaced atomically so a reader (or a power cut) sees
    the old file or the new one, never a torn one."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fmt: str = "json",
        fs: FileSystem = REAL_FS,
        name: str = "file",
    ) -> None:
        if fmt not in ("json", "cbor"):
            raise UsageError(f"file applier format {fmt!r}: json or cbor")
        self.path = os.fspath(path)
        self.fmt = fmt
        self.fs = fs
        self.name = name

    def apply(self, config: Encoded) -> None:
        data = config.cbor if self.fmt == "cbor" else write_config(config.tree, "json")
        try:
            self.fs.write_file_atomic(self.path, data)
        except WriteFailed as failure:
            raise ApplyRefused(f"{self.path}: {failure}") from None


Connect = Callable[[str, float | None, int | None], Link]


def _plain_link(address: str, ack_timeout: float | None, max_retransmit: int | None) -> Link:
    return CoapLink(
        address,
        ack_timeout=ack_timeout if ack_timeout is not None else 2.0,
        max_retransmit=max_retransmit if max_retransmit is not None else 4,
    )


class ReachabilityProbe:
    """The default probe: can the gateway still be reached with the new settings?

    It sends ``GET /cfg/{dev}`` with the candidate's ETag to the gateway the
    candidate names (``net.coap.server_uri`` when it is a ``coap://`` URI,
    the agent's own link otherwise) with the candidate's CoAP timeouts
    (``net.coap.ack_timeout_s``, ``net.coap.max_retransmit``) when it sets
    them.  Any answer passes but one that refuses this device (4.01, 4.03,
    4.04); no answer (a timeout, a refused port, no route) fails.  The
    classic brick is exactly that: a network setting that cuts the device
    off.  When the address and timeouts are the agent's own, the agent's
    link (and its OSCORE context) is used; otherwise a new plain link.  With
    OSCORE, new timeouts to the same address are probed on the agent's link
    (its security context cannot be shared with a second one), and a new
    address that answers 4.01 to the plain request counts as reachable.
    """

    name = "reachability"

    def __init__(self, device: str, link: Link, *, connect: Connect = _plain_link) -> None:
        self.device = device
        self.link = link
        self.connect = connect

    def settings(self, tree: Tree) -> tuple[str | None, float | None, int | None]:
        """The gateway address and timeouts ``tree`` sets (None: not set)."""
        uri = get(tree, SERVER_URI)
        ack = get(tree, ACK_TIMEOUT)
        retransmit = get(tree, MAX_RETRANSMIT)
        return (
            uri if isinstance(uri, str) and uri.startswith("coap://") else None,
            float(ack) if isinstance(ack, int | float) and 0 < ack <= 60 else None,
            retransmit if type(retransmit) is int and 0 <= retransmit <= 10 else None,
        )

    async def check(self, config: Encoded) -> ProbeResult:
        address, ack_timeout, max_retransmit = self.settings(config.tree)
        own = str(getattr(self.link, "base", ""))
        tuning = getattr(self.link, "tuning", None)
        secured = getattr(self.link, "credentials", None) is not None
        same = address in (None, own) and (
            # an OSCORE context belongs to the agent's link: a second link
            # would have to share its sequence numbers, so new timeouts to
            # the same address are probed on the agent's own link
            secured
            or (
                ack_timeout in (None, getattr(tuning, "ACK_TIMEOUT", None))
                and max_retransmit in (None, getattr(tuning, "MAX_RETRANSMIT", None))
            )
        )
        target = own if address is None else address
        try:
            link = self.link if same else self.connect(target, ack_timeout, max_retransmit)
        except UsageError as error:
            return ProbeResult(self.name, False, f"{target}: {error}")
        try:
            reply = await link.request("GET", ("cfg", self.device), etags=(config.etag,))
        except LinkDown as error:
            return ProbeResult(self.name, False, f"{target}: {error.cause}")
        finally:
            if link is not self.link and isinstance(link, CoapLink):
                await link.close()
        if reply.ok or reply.code in SHEDDING:
            return ProbeResult(self.name, True, f"{target} answered {reply.code}")
        if secured and link is not self.link and reply.code == "4.01":
            # A new address, asked without the OSCORE context (which stays
            # bound to the agent's link): it answered, so it is reachable;
            # that it wants authentication is what an OSCORE gateway says.
            return ProbeResult(self.name, True, f"{target} answered 4.01: reachable, wants OSCORE")
        return ProbeResult(self.name, False, f"{target} answered {reply.code}: refused")


@dataclass(frozen=True, slots=True)
class TrialPolicy:
    """How a trial runs: the device facts the schema check uses, how long a
    candidate may stay unconfirmed (``deadline_s``, wall clock), how many
    reboots it may survive unconfirmed (``boot_limit``), and how long one
    probe may take (``probe_timeout_s``)."""

    schema: Schema | None = None
    hardware: str | None = None
    firmware: str | None = None
    deadline_s: float = machine.DEFAULT_DEADLINE_S
    boot_limit: int = 0
    probe_timeout_s: float = PROBE_TIMEOUT_S


class ApplyGuard:
    """Takes configurations through apply → probe → commit or revert for
    one device's :class:`LocalState` (see the module docstring).

    ``clock`` is wall-clock seconds (the deadline must hold across reboots).
    """

    def __init__(
        self,
        state: LocalState,
        *,
        appliers: Sequence[Applier] = (),
        probes: Sequence[Probe] = (),
        policy: TrialPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.appliers = tuple(appliers)
        self.probes = tuple(probes)
        self.policy = policy or TrialPolicy()
        self.clock = clock
        self._apply: ApplyState | None = None
        self._candidate: Encoded | None = None  # in memory until written

    # -- public -----------------------------------------------------------------------

    @property
    def phase(self) -> str:
        return self._load().phase

    def unreported(self) -> tuple[tuple[ApplyOutcome, ...], int]:
        """Outcomes to report and how many had to be dropped since the last report."""
        record = self._load()
        return record.unreported, record.dropped

    async def boot(self) -> None:
        """Call once at every start: finish or undo what a reboot interrupted."""
        record = self._load()
        if record.phase == "idle" and not self.state.held_is_good():
            record = self._adopt_unconfirmed(record)
        await self._run(machine.Booted(self.clock()), record)

    async def settle(self) -> None:
        """Settle a trial an earlier call left midway (stopped, not rebooted:
        :meth:`boot` handles reboots): reverted, as ``interrupted`` or, past its
        deadline, ``deadline``.  The agent calls it before each sync."""
        if self._load().phase == "idle":
            return
        await self._run(machine.Interrupted(self.clock()))

    def delivered(self, count: int) -> None:
        """The gateway took the first ``count`` unreported outcomes."""
        self._save(machine.step(self._load(), machine.Delivered(count))[0])

    async def install(self, config: Encoded) -> ApplyOutcome | None:
        """Take ``config`` through a whole trial; its outcome (None when the
        device held nothing before: stored as good at once, or already held)."""
        held = self.state.load_config()
        if held is not None and held.etag == config.etag:
            return None
        previous = self.state.good_config()
        if held is None or previous is None:
            self.state.save_config(config)  # the first config: nothing to go back to
            for applier in self.appliers:
                try:
                    applier.apply(config)
                except (EdgecfgError, OSError) as error:
                    raise ApplyRefused(
                        f"the first configuration {config.etag.hex()} is stored, but "
                        f"{applier.name} failed on it: {error}"
                    ) from None
            return None
        await self.settle()  # a trial stopped midway goes first
        self._candidate = config
        policy = self.policy
        now = self.clock()
        begin = machine.Begin(now, config.etag, previous.etag, policy.deadline_s, policy.boot_limit)
        await self._run(begin)
        self._candidate = None
        unreported = self._load().unreported
        return unreported[-1] if unreported else None

    # -- the loop -----------------------------------------------------------------------

    async def _run(self, event: machine.ApplyEvent, record: ApplyState | None = None) -> None:
        """Step, save, act; until an action answers nothing more."""
        current = record if record is not None else self._load()
        pending: machine.ApplyEvent | None = event
        while pending is not None:
            current, actions = machine.step(current, pending)
            self._save(current)
            pending = None
            for action in actions:
                pending = await self._carry_out(action)

    async def _carry_out(self, action: machine.ApplyAction) -> machine.ApplyEvent:
        match action:
            case machine.WriteCandidate():
                return self._write()
            case machine.ApplyConfig():
                return self._apply_all()
            case machine.RunProbes():
                return await self._probe()
            case machine.Confirm(generation=generation):
                self.state.confirm(generation)
                return machine.Confirmed(self.clock())
            case machine.Revert():
                return self._revert()

    def _write(self) -> machine.ApplyEvent:
        config = self._candidate
        if config is None:
            lost = "the candidate was lost in a reboot before it was stored"
            return machine.ApplyFailed(self.clock(), lost)
        schema = self.policy.schema
        if schema is not None:
            # partial: a required key the fleet has not set yet is the
            # gateway's "pending" list, not a reason to refuse what is set
            violations = schema.validate(
                config.tree, partial=True, hardware=self.policy.hardware,
                firmware=self.policy.firmware,
            )  # fmt: skip
            if violations:
                shown = "; ".join(str(violation) for violation in violations[:3])
                return machine.ApplyFailed(
                    self.clock(), f"refused by schema {schema.name}: {shown}"
                )
        return machine.Written(self.clock(), self.state.stage_config(config))

    def _apply_all(self) -> machine.ApplyEvent:
        config = self.state.load_config()
        if config is None:
            return machine.ApplyFailed(self.clock(), "no configuration in the store to apply")
        for applier in self.appliers:
            try:
                applier.apply(config)
            except (EdgecfgError, OSError) as error:
                return machine.ApplyFailed(self.clock(), f"{applier.name}: {error}")
        return machine.Applied(self.clock())

    async def _probe(self) -> machine.ApplyEvent:
        config = self.state.load_config()
        results: list[ProbeResult] = []
        for probe in self.probes:
            if config is None:
                break
            try:
                result = await asyncio.wait_for(probe.check(config), self.policy.probe_timeout_s)
            except TimeoutError:
                waited = self.policy.probe_timeout_s
                result = ProbeResult(probe.name, False, f"no verdict in {waited} s")
            except (EdgecfgError, OSError) as error:
                result = ProbeResult(probe.name, False, str(error))
            results.append(result)
        return machine.Probed(self.clock(), tuple(results))

    def _revert(self) -> machine.ApplyEvent:
        try:
            config = self.state.revert_config()
        except NothingToRevert:  # the last-known-good became unreadable: keep what runs
            config = self.state.load_config()
        troubles: list[str] = []
        for applier in self.appliers:
            if config is None:
                break
            try:
                applier.apply(config)
            except (EdgecfgError, OSError) as error:  # the store is reverted all the same
                troubles.append(f"{applier.name} failed on the last-known-good: {error}")
        return machine.RevertDone(self.clock(), "; ".join(troubles))

    # -- the record ---------------------------------------------------------------------

    def _load(self) -> ApplyState:
        if self._apply is None:
            data = self.state.load_apply()
            try:
                self._apply = decode_apply_state(data) if data is not None else ApplyState()
            except MessageError:
                self._apply = ApplyState()  # damaged: the store's good flag still tells
        return self._apply

    def _save(self, record: ApplyState) -> None:
        self.state.save_apply(encode_apply_state(record))
        self._apply = record

    def _adopt_unconfirmed(self, record: ApplyState) -> ApplyState:
        """No trial on record, yet the store's current generation is not good
        (the record was lost): it is a candidate that was never confirmed."""
        held = self.state.load_config()
        good = self.state.good_config()
        if held is None or good is None or held.etag == good.etag:
            return record
        now = self.clock()
        trial = Trial(held.etag, good.etag, now, now + self.policy.deadline_s, generation=None)
        return ApplyState("applying", trial, record.unreported, record.dropped)
