# aiocoap ships no type information; this module owns it (DESIGN §2), so only
# the "unknown type" family of strict checks is relaxed here.
# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# pyright: reportUnknownParameterType=false, reportUntypedBaseClass=false
# pyright: reportUnknownLambdaType=false, reportAttributeAccessIssue=false
"""The gateway process: the CoAP site, its lifecycle, change notifications.

``edgecfg gateway serve --db FILE --bind HOST:PORT [--insecure]`` runs
:func:`serve` until SIGINT or SIGTERM.  Only UDP is opened (aiocoap's
defaults would add TCP and WebSockets), and aiocoap's INFO chatter is kept
out of the log: warnings and errors still pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import errno
import functools
import gc
import logging
import math
import platform
import secrets
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, Protocol, TypeVar, runtime_checkable

import aiocoap
import aiocoap.resource

from edgecfg.core.admission import Admission, Budgets, Subsiding
from edgecfg.core.echo import AMPLIFICATION_FACTOR
from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.core.rollout import Decision
from edgecfg.errors import EdgecfgError
from edgecfg.fleet.fleet import Fleet, FleetChanges
from edgecfg.fleet.identity import AuthenticatedPolicy, IdentityPolicy
from edgecfg.fleet.rollouts import RolloutService
from edgecfg.fleet.sync import VERSION_BATCH, SyncService
from edgecfg.gateway.admission import RememberedAnswers
from edgecfg.gateway.amplification import AddressGuard, Discovery
from edgecfg.gateway.hardening import harden
from edgecfg.gateway.oscore import OscoreSite, StoredCredentials
from edgecfg.gateway.resources import (
    ConfigResource,
    DeviceResource,
    Gate,
    GroupResource,
    StateResource,
    TelemetryResource,
)
from edgecfg.gateway.rollout_resource import RolloutResource
from edgecfg.gateway.telemetry_writer import TelemetryWriter
from edgecfg.store import MemoryStore, Store

log = logging.getLogger("edgecfg.gateway")
REFRESH_S: Final = 0.25
MAX_CONCURRENT: Final = 256
LAG_PROBE_S: Final = 0.25
T = TypeVar("T")
ROLLOUT_TICK_S: Final = 60.0  # how often the rollout loop runs (decisions are daily)


class Listening(Protocol):
    """A running change listener (:class:`~edgecfg.store.postgres.ChangeListener`)."""

    leader: bool
    """Whether this gateway is the one of the database's that drives rollouts."""

    def close(self, timeout: float = 5.0) -> None: ...


@runtime_checkable
class ChangeSource(Protocol):
    """A store that can wake a reader when its change log grows (PostgreSQL:
    LISTEN/NOTIFY), so several gateways see each other's writes at once."""

    def listen_changes(
        self,
        wake: Callable[[], None],
        *,
        on_loaded: Callable[[str], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> Listening: ...

    def announce_loaded(self, payload: str) -> None: ...


def quiet_aiocoap() -> None:
    """aiocoap logs every exchange at INFO; keep warnings and errors only."""
    for name in ("coap", "coap-server", "coap.aiocoap", "coap-server.aiocoap"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Gateway:
    """A running gateway: fleet, sync service, CoAP context.

    ``budgets`` bound what any one peer, and all together, may hold of the
    gateway (:class:`~edgecfg.core.admission.Budgets`; the defaults there).
    With ``credentials`` the site sits behind aiocoap's OSCORE site wrapper
    and every resource authorizes through ``policy`` (default: a peer acts
    only as its enrolled identity).  Without, ``policy`` must be given
    (:class:`~edgecfg.fleet.identity.InsecurePolicy` for ``--insecure``).
    """

    def __init__(
        self,
        store: Store,
        *,
        policy: IdentityPolicy | None = None,
        credentials: StoredCredentials | None = None,
        max_concurrent: int = MAX_CONCURRENT,
        refresh_s: float = REFRESH_S,
        amplification_factor: int | None = AMPLIFICATION_FACTOR,
        budgets: Budgets | None = None,
    ) -> None:
        if policy is None:
            if credentials is None:
                raise ValueError("a gateway without OSCORE credentials needs an explicit policy")
            policy = AuthenticatedPolicy()
        self.credentials = credentials
        budgets = dataclasses.replace(budgets or Budgets(), in_flight=max_concurrent)
        self.fleet = Fleet(store)
        daily = budgets.telemetry_kib_per_day
        self.service = SyncService(
            self.fleet, telemetry_per_day=None if daily is None else int(daily * 1024)
        )
        self.refresh_s = refresh_s
        # Large responses only to proven addresses (edgecfg.gateway.amplification);
        # None or 0 turns that off, for load tests only.
        self.guard = AddressGuard(amplification_factor)
        # Per-peer and global budgets (edgecfg.core.admission); ``max_concurrent``
        # is their in-flight bound.
        self.admission = Admission(budgets)
        gate = Gate(self.admission, self.guard)
        self.gate = gate
        self.config = ConfigResource(self.service, policy, gate)
        self.groups = GroupResource(self.service, policy, gate, self.layer_changed)
        self.site = aiocoap.resource.Site()
        self.site.add_resource(
            (".well-known", "core"),
            Discovery(self.site.get_resources_as_linkheader, self.guard),
        )
        self.site.add_resource(("cfg",), self.config)
        self.site.add_resource(("state",), StateResource(self.service, policy, gate))
        self.telemetry = TelemetryWriter(self.service.telemetry_service)
        self.site.add_resource(
            ("tel",), TelemetryResource(self.service, policy, gate, self.telemetry)
        )
        self.site.add_resource(("grp",), self.groups)
        self.site.add_resource(
            ("dev",), DeviceResource(self.service, policy, gate, self.layer_changed)
        )
        self.rollouts = RolloutService(self.fleet)  # the in-memory store's (tests)
        self._rollout_worker: RolloutService | None = None  # on its own fleet view
        self._rollout_thread = ThreadPoolExecutor(1, thread_name_prefix="edgecfg-rollouts")
        self._rollouts_due = -math.inf
        self.rollout_resource = RolloutResource(self.service, policy, gate,
                                                self.in_rollout_worker,
                                                self.rollouts.exists)  # fmt: skip
        self.site.add_resource(("rollout",), self.rollout_resource)
        self.context: aiocoap.Context | None = None
        self.address: tuple[str, int] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # a change was committed: refresh now
        self.listener: Listening | None = None
        self._lag: asyncio.Task[None] | None = None
        # duplicate detection of the server's UDP interfaces (edgecfg.gateway.admission)
        self.remembered: list[RememberedAnswers] = []
        self.subsiding = Subsiding()
        # the served versions' vectors are written off the event loop
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="edgecfg-store")
        self._versions: asyncio.Task[None] | None = None
        self._versions_failed = -math.inf  # when a write of them last failed (logged)
        if not isinstance(store, MemoryStore):  # safe across threads
            self.service.flush_at = VERSION_BATCH * 8

    def layer_changed(self, layer: LayerId) -> None:
        """Notify observers of the layer and of every observed device that
        inherits it (work in proportion to the observers, never the fleet)."""
        self.groups.changed(layer)
        reached = {d for d in self.config.observed() if self.fleet.reaches(layer, DeviceId(d))}
        if reached:
            self.config.changed(reached)

    def changed(self, changes: FleetChanges) -> None:
        """Notify the observers of what another writer changed."""
        if changes.everything:
            self.groups.changed_all()
            self.config.changed()
            return
        for layer in changes.layers:
            self.layer_changed(layer)
        if changes.devices:
            self.config.changed({str(device) for device in changes.devices})

    async def start(self, host: str, port: int) -> None:
        """Bind UDP on ``host:port`` and start serving."""
        quiet_aiocoap()
        self.fleet.store.check_writable()  # one StoreError now, not one per write later
        self._rollout_thread = ThreadPoolExecutor(1, thread_name_prefix="edgecfg-rollouts")
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="edgecfg-store")
        if port != 0:
            _refuse_a_taken_port(host, port)
        root = self.site if self.credentials is None else OscoreSite(self.site, self.credentials)
        self.context = await aiocoap.Context.create_server_context(
            root, bind=(host, port), transports=["udp6"]
        )
        # datagrams aiocoap cannot decode (issue 7), budgets and RFC 7252 §5.4 (issue 20)
        harden(self.context, self.admission)
        for manager in _message_managers(self.context):
            table = RememberedAnswers(self.admission.budgets.exchange_lifetime_s)
            table.install(manager)
            self.remembered.append(table)
        self.address = (host, _bound_port(self.context) or port)
        if self.refresh_s > 0:
            self._wake = asyncio.Event()
            if isinstance(self.fleet.store, ChangeSource):
                # Several gateways on one database: a commit anywhere wakes the
                # change-log read at once; the poll every refresh_s stays as a
                # safety net.
                on_loaded, on_reconnect = self._share_contexts(self.fleet.store)
                self.listener = self.fleet.store.listen_changes(
                    _waker(self._wake), on_loaded=on_loaded, on_reconnect=on_reconnect
                )
            self._refresher = asyncio.create_task(self._refresh_loop())
        self._lag = asyncio.create_task(self._measure_delay())

    def _share_contexts(
        self, store: ChangeSource
    ) -> tuple[Callable[[str], None] | None, Callable[[], None] | None]:
        """With OSCORE and several gateways: announce every context this one
        loads, and forget a context another one loaded (its replay window
        here would be stale), or every context after the listener reconnected
        (announcements may have been missed); the listener's two callbacks."""
        credentials = self.credentials
        if credentials is None:
            return None, None
        origin = secrets.token_hex(8)
        loop = asyncio.get_running_loop()

        def announce(kid: bytes) -> None:
            try:
                store.announce_loaded(f"{origin}:{kid.hex()}")
            except EdgecfgError:  # the others keep a window Echo would renew; serve on
                log.exception("announcing the OSCORE context of kid %s failed", kid.hex())

        def loaded(payload: str) -> None:  # on the listener's thread
            who, _, kid = payload.partition(":")
            if who == origin:
                return
            try:
                key_id = bytes.fromhex(kid)
            except ValueError:
                log.warning("ignored an OSCORE announcement %r", payload)
                return
            with contextlib.suppress(RuntimeError):  # the loop closed
                loop.call_soon_threadsafe(credentials.forget, key_id)

        def reconnected() -> None:  # on the listener's thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(credentials.forget_all)

        credentials.on_admit = announce
        return loaded, reconnected

    async def _measure_delay(self) -> None:
        """Feed admission the event loop's lag: how late a timer fires is how
        long queued work (datagrams, handlers) waits before it runs; and keep
        house while at it."""
        loop = asyncio.get_running_loop()
        logged = -math.inf
        while True:
            due = loop.time() + LAG_PROBE_S
            await asyncio.sleep(LAG_PROBE_S)
            self.admission.note_delay(loop.time() - due)
            try:
                self.housekeeping(time.monotonic())
            except Exception:  # must not stop the lag probe the admission relies on
                if loop.time() - logged >= 60.0:  # a lasting fault: a traceback a minute
                    logged = loop.time()
                    log.exception("gateway housekeeping failed")

    def housekeeping(self, now: float) -> None:
        """Forget what expired by ``now`` when no request comes to do it
        (remembered exchanges, idle uploads), end the observations of idle
        observers, and hand the memory of a burst back to the system once it
        is over (:func:`release_memory`)."""
        self._write_versions()  # the version vectors served since the last call
        self.admission.expire(now)  # counts stay true when it is quiet
        remembered = sum(table.expire(now) for table in self.remembered)
        highest = sum(table.highest() for table in self.remembered)  # since the last call
        self.gate.spool.expire(now)
        self.gate.observations.end_idle(now, self.admission.last_heard)
        if self.subsiding.note(remembered, highest):
            release_memory()

    def _write_versions(self) -> None:
        """Write the version vectors served since the last call in the store
        thread (on the loop for the in-memory store of tests, or when no loop
        runs); one write at a time."""
        if self._versions is not None and not self._versions.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or isinstance(self.fleet.store, MemoryStore):
            self.service.flush()
            return
        pending = self.service.take_versions()
        if pending:
            self._versions = loop.create_task(self._versions_off_loop(pending))

    async def _versions_off_loop(self, pending: dict[tuple[ETag, bytes], None]) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._store_thread, self.service.write_versions, pending)
        except Exception:
            self.service.versions_written(pending, ok=False)
            if loop.time() - self._versions_failed >= 60.0:  # a lasting fault: once a minute
                self._versions_failed = loop.time()
                log.exception("writing the served versions' vectors failed (kept to retry)")
        else:
            self.service.versions_written(pending, ok=True)

    async def _refresh_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.refresh_s)
            self._wake.clear()  # before reading: a commit from now on wakes again
            try:
                self.changed(self.fleet.refresh())
            except Exception:  # a bad row must not stop the gateway
                log.exception("refreshing the fleet from the store failed")
            try:  # on its own: a rollout's fault must not hold up serving
                await self.drive_rollouts(time.monotonic(), time.time())
            except Exception:
                log.exception("driving the rollouts failed")
            try:  # on its own: a bad fleet row must not hold up revocations
                self.revocations()
            except Exception:
                log.exception("checking for revoked credentials failed")

    async def drive_rollouts(self, monotonic: float, now: float) -> int:
        """Run the rollout loop (offers, the daily decisions) once a minute.

        A stage's offers are thousands of layer writes and a decision reads
        every cohort device's reports, so the loop runs in a worker thread on
        a fleet view of its own over the same store (which serialises its
        connections); its writes reach serving through the next refresh,
        like any other writer's.  Of several gateways on one database only the
        leader (:attr:`Listening.leader`) drives them.  A store that is not safe across threads
        (the in-memory one of tests) is driven on the loop.  How many
        decisions were made.
        """
        if monotonic < self._rollouts_due:
            return 0
        if self.listener is not None and not self.listener.leader:
            return 0  # several gateways: the leader drives them (and this one may take over)
        self._rollouts_due = monotonic + ROLLOUT_TICK_S
        made = await self.in_rollout_worker(lambda service: service.tick(now))
        for rollout, outcome in made:
            self.rollout_resource.changed(rollout)
            quiet = outcome.decision in (Decision.HOLD, Decision.ADVANCE)
            log.log(logging.INFO if quiet else logging.WARNING, "rollout %s: %s: %s", rollout,
                    outcome.decision.value, outcome.reason)  # fmt: skip
        return len(made)

    async def in_rollout_worker(self, work: Callable[[RolloutService], T]) -> T:
        """Run ``work`` on the rollout service of the rollout worker: one
        thread, so the loop's ticks and the operators' actions never overlap,
        with a fleet view of its own, brought up to date first."""
        if isinstance(self.fleet.store, MemoryStore):  # not safe across threads
            return work(self.rollouts)

        def turn() -> T:
            if self._rollout_worker is None:
                self._rollout_worker = RolloutService(Fleet(self.fleet.store))
            worker = self._rollout_worker
            worker.fleet.refresh()
            return work(worker)

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._rollout_thread, turn)

    def revocations(self) -> int:
        """Drop revoked credentials and end their devices' observations (their
        next notification is a 4.01, which ends an observation); how many."""
        if self.credentials is None:
            return 0
        dropped = self.credentials.refresh()
        devices = {identity.name for identity in dropped if identity.role == "device"}
        if devices:
            self.config.changed(devices)
        if any(identity.role == "operator" for identity in dropped):
            # Operators observe groups (and may observe any device's config):
            # every observer is asked again; only the revoked ones get 4.01.
            self.groups.changed_all()
            self.config.changed()
        return len(dropped)

    async def stop(self) -> None:
        """Stop serving and release the socket."""
        if self._versions is not None:
            await self._versions  # its failures are kept for the flush below
        await asyncio.get_running_loop().run_in_executor(None, self._store_thread.shutdown)
        try:
            self.service.flush()
        except Exception:  # a failing store must not stop the stop
            log.exception("writing the served versions' vectors at stop failed")
        if self.listener is not None:
            listener, self.listener = self.listener, None
            await asyncio.get_running_loop().run_in_executor(None, listener.close)
        for task in (self._refresher, self._lag):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.context is not None:
            await self.context.shutdown()
            self.context = None
        await self.telemetry.close()  # packs accepted are stored
        # a rollout step under way finishes (its writes are each complete)
        await asyncio.get_running_loop().run_in_executor(None, self._rollout_thread.shutdown)
        if self.credentials is not None:
            # Exact sequence numbers and replay windows: no Echo round after a clean restart.
            self.credentials.flush()
            self.credentials.close()

    @property
    def uri(self) -> str:
        """``coap://HOST:PORT`` of the running gateway."""
        if self.address is None:
            raise RuntimeError("the gateway is not started")
        host, port = self.address
        return f"coap://[{host}]:{port}" if ":" in host else f"coap://{host}:{port}"


def _waker(event: asyncio.Event) -> Callable[[], None]:
    """A thread-safe ``event.set`` for the running loop (a no-op once it closed)."""
    loop = asyncio.get_running_loop()

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
            loop.call_soon_threadsafe(event.set)

    return wake


def release_memory() -> None:
    """Hand memory freed after a burst back to the system.

    Freed objects stay with the process: CPython's allocator keeps an arena
    while any object lives in it, and glibc's malloc keeps freed chunks for
    reuse.  A full collection frees what only cycles held (emptying arenas,
    which CPython then unmaps); ``malloc_trim(0)`` returns glibc's free pages.
    A no-op where the C library is not glibc.
    """
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


FULL_PASS_EVERY: Final = 100
"""Middle-generation collections between two full ones considered (see
:func:`settle_heap`)."""


def settle_heap() -> None:
    """Move what start-up built (imports, the fleet view: millions of objects
    at 100k devices) out of the collector's generations: it lives as long as
    the process, and every full collection would walk it again.  The
    collector runs a full pass whenever the survivors since the last one reach
    a quarter of the old heap, so under load (a burst of telemetry, a
    fleet-wide edit) it otherwise costs as much as the work itself: telemetry
    ingest at 100k devices went from 2.0k to 3.0k packs/s with this.  Objects
    freed later are still freed by their reference counts.

    What serving builds later (configurations carried over a fleet-wide edit,
    each device's own layer) is long-lived too, but bounded by the caches:
    a full pass is considered after FULL_PASS_EVERY middle-generation passes
    instead of CPython's 10 (the first request of a device after a
    fleet-wide edit spent a fifth of its CPU in full passes); the young
    generations, where a request's cyclic garbage dies, are collected as
    often as before."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_PASS_EVERY)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def _message_managers(context: aiocoap.Context) -> list[object]:
    """The message managers of the context's UDP interfaces."""
    found: list[object] = []
    for interface in context.request_interfaces:
        messages = getattr(getattr(interface, "token_interface", None), "message_interface", None)
        manager = getattr(messages, "_ctx", None)
        if manager is not None and hasattr(manager, "_deduplicate_message"):
            found.append(manager)
    return found


def _refuse_a_taken_port(host: str, port: int) -> None:
    """Raise EADDRINUSE when something already serves ``host:port``.

    aiocoap binds with SO_REUSEPORT, so a second gateway on a taken port would
    bind too and the kernel would split the devices' datagrams between the two.
    A probe bound without that option fails where the port is taken.
    """
    try:
        found = socket.getaddrinfo(
            host, port, socket.AF_INET6, socket.SOCK_DGRAM, 0, socket.AI_V4MAPPED
        )
    except OSError:
        return  # aiocoap reports an unresolvable host in its own words
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            probe.bind(found[0][4])
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise
            # anything else (an address not on this machine): aiocoap's bind says it


def _bound_port(context: aiocoap.Context) -> int | None:
    """The UDP port the server context's socket is bound to (the one the OS
    chose for port 0); None when aiocoap's transport does not say."""
    for interface in context.request_interfaces:
        messages = getattr(getattr(interface, "token_interface", None), "message_interface", None)
        transport = getattr(messages, "transport", None)
        get_extra_info = getattr(transport, "get_extra_info", None)
        if get_extra_info is None:
            continue
        sock = get_extra_info("socket")
        if sock is not None:
            return int(sock.getsockname()[1])
    return None


async def serve(
    gateway: Gateway,
    host: str,
    port: int,
    *,
    ready: Callable[[], Awaitable[None] | None] | None = None,
) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await gateway.start(host, port)
    settle_heap()  # a serving process: what start-up built stays
    try:
        if ready is not None:
            result = ready()
            if result is not None:
                await result
        await stop.wait()
    finally:
        await gateway.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
