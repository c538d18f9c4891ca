"""A fleet in virtual time: the real sync session against the real service layer.

Each simulated device runs the agent's own :class:`~edgecfg.core.session.SyncSession`
(the decisions of a real sync); its "network" is an in-memory link to the
gateway's :class:`~edgecfg.fleet.sync.SyncService` (the logic behind the CoAP
resources: resolution, deltas, state reports), cut into blocks the way the
gateway cuts them.  Time is a number: an event heap moves from one wake to
the next, so a week of a fleet runs in seconds.  Deterministic for a seed.

What happens:

- every device wakes on its own schedule (``wake_every_s``, with a random
  phase), syncs, sleeps; a lost exchange (``loss``) makes its session back
  off and retry in virtual time;
- operators write ``writes_per_day`` layer edits a day, group and device
  layers mixed (a group edit reaches all its members);
- at the end of each day the run takes the fleet's footprint (the
  process's RSS, the store's tables, the journals' rows, the devices' held
  state): a longevity run shows none of it grows without bound;
- after the last day every device wakes once more on a clean link, and an
  independent check (each device's held ETag against a fresh resolution of
  its layers) counts the devices that diverge: there must be none.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import random
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import thread_time
from typing import Final

from edgecfg.agent.sync import AGENT_VERSION, decode_config
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import device_layer, layer_from_parts, layer_to_document
from edgecfg.core.session import (
    Answer,
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
    Policy,
    Report,
    Reported,
    Sleep,
    Start,
    SyncSession,
    Transfer,
    Unusable,
    Woke,
)
from edgecfg.core.tree import Value
from edgecfg.errors import DeltaError, PeerError, UsageError
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.sync import NotModified, Representation, SyncService
from edgecfg.sim.loopback_fleet import FUNCTIONS, REGIONS
from edgecfg.store import DeviceRecord, MemoryStore, Store
from edgecfg.wire.blocks import DEFAULT_SZX, block_of, block_size
from edgecfg.wire.cbor import Encoded, encode
from edgecfg.wire.delta import BaseCache, bases_of
from edgecfg.wire.messages import DeviceReport, StateAnswer

DAY_S: Final = 86_400.0
HEADER_BYTES: Final = 24
"""Bytes a CoAP request or response costs beyond its payload (header, token,
Uri-Path, ETag and Block2 options), for the byte counts."""
INTERVAL: Final = ("net", "uplink", "interval_s")


@dataclass(frozen=True, slots=True)
class ProtocolCost:
    """What a real gateway spends per request beyond the sync service
    (aiocoap's parsing and sending, the event loop, the store's I/O), in
    microseconds, by kind of request: a GET answered 2.03 Valid, a GET
    answered with content (a block, a delta), a state report (POST)."""

    valid_us: float
    content_us: float
    report_us: float

    def of(self, day: Day) -> float:
        """The protocol CPU of ``day``'s requests, in seconds."""
        return (
            day.valid * self.valid_us + day.content * self.content_us + day.reports * self.report_us
        ) / 1e6


PROTOCOL: Final = ProtocolCost(valid_us=460.0, content_us=800.0, report_us=1040.0)
"""Fitted by ``edgecfg bench sim-truth`` on this machine (see the README)."""
NO_PROTOCOL: Final = ProtocolCost(0.0, 0.0, 0.0)
FIXTURE_SCHEMA: Final = Path(__file__).resolve().parents[2] / "fixtures" / "schema" / "device.json"


@dataclass(frozen=True, slots=True)
class Scenario:
    """What to simulate."""

    devices: int = 1000
    days: float = 7.0
    seed: int = 1
    wake_every_s: float = DAY_S
    writes_per_day: float = 10.0
    """Layer edits a day, fleet-wide; ``group_share`` of them on group layers."""
    group_share: float = 0.2
    loss: float = 0.0
    """Probability that one exchange is lost (the session backs off and retries)."""
    szx: int = DEFAULT_SZX
    prune_versions_days: float | None = None
    """Run ``edgecfg gateway prune --older-than DAYS`` at the end of each day
    (``None``: never, and the served versions table keeps every version)."""
    protocol: ProtocolCost = PROTOCOL
    """What a real gateway spends per request beyond the service layer."""

    def check(self) -> None:
        if self.devices < 1:
            raise UsageError(f"a simulation needs at least 1 device, got {self.devices}")
        if not self.days > 0 or not self.wake_every_s > 0:
            raise UsageError("days and wake_every_s must be positive")
        if not 0.0 <= self.loss < 1.0 or not 0.0 <= self.group_share <= 1.0:
            raise UsageError("loss must be in [0, 1) and group_share in [0, 1]")
        if self.prune_versions_days is not None and not self.prune_versions_days >= 0:
            raise UsageError(
                f"prune_versions_days must be 0 or more days, got {self.prune_versions_days}"
            )


@dataclass(slots=True)
class _Device:
    id: DeviceId
    held: Encoded | None = None
    transfer: Transfer | None = None
    session: SyncSession | None = None
    pending_since: float | None = None  # the first write not yet applied
    introduced: bool = False  # the agent sends its version in its first report of a run


@dataclass(slots=True)
class Day:
    """What one simulated day cost the fleet."""

    syncs: int = 0
    bytes: int = 0
    round_trips: int = 0
    retries: int = 0
    writes: int = 0
    convergence_s: list[float] = field(default_factory=list[float])
    valid: int = 0
    """GETs that reached the gateway logic and were answered 2.03 Valid."""
    content: int = 0
    """GETs answered with content (a block of a config, a delta)."""
    reports: int = 0
    """State reports (POST /state)."""
    service_cpu_s: float = 0.0
    """Thread CPU time spent in the gateway logic (the sync service) on them."""

    @property
    def requests(self) -> int:
        """Requests that reached the gateway logic."""
        return self.valid + self.content + self.reports

    def gateway_us_per_sync(self, protocol: ProtocolCost) -> float | None:
        """The gateway's work per sync: the service's CPU plus ``protocol``'s
        cost of each request for what the simulation skips (CoAP, the socket,
        the loop, the store's I/O), in microseconds."""
        if not self.syncs:
            return None
        return (self.service_cpu_s + protocol.of(self)) * 1e6 / self.syncs


@dataclass(frozen=True, slots=True)
class Footprint:
    """What the fleet holds at the end of one day (the longevity series)."""

    day: int
    rss_mib: float
    """The simulator process (gateway logic, store and devices' state)."""
    store_bytes_per_device: float
    """Blobs (layer documents) and served versions, over the fleet."""
    layer_revisions: int
    """The layers' history: one row per write (the audit trail)."""
    change_log: int
    """The store's change journal (what the gateways' caches follow)."""
    versions_kept: int
    """Served configuration versions kept as delta bases."""
    agent_state_bytes_max: int
    """The largest state a device holds (its config and any partial transfer)."""
    agent_state_bytes_mean: float


def process_rss_mib(pid: int | None = None) -> float:
    """The resident set size (``VmRSS``) of process ``pid`` (this one by default), in MiB."""
    status = Path(f"/proc/{'self' if pid is None else pid}/status")
    for line in status.read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise OSError(f"{status}: no VmRSS line (not Linux?)")


@dataclass(slots=True)
class RunReport:
    """A run's figures (``summary`` is the JSON form)."""

    scenario: Scenario
    days: list[Day]
    events: int
    wall_s: float
    divergent: int
    failed_syncs: int
    final: Day
    footprints: list[Footprint] = field(default_factory=list[Footprint])

    def summary(self) -> dict[str, object]:
        devices = self.scenario.devices
        waits = sorted(w for day in [*self.days, self.final] for w in day.convergence_s)
        total = Day(
            syncs=sum(day.syncs for day in self.days),
            valid=sum(day.valid for day in self.days),
            content=sum(day.content for day in self.days),
            reports=sum(day.reports for day in self.days),
            service_cpu_s=sum(day.service_cpu_s for day in self.days),
        )
        return {
            "devices": devices,
            "days": self.scenario.days,
            "seed": self.scenario.seed,
            "wall_s": round(self.wall_s, 3),
            "events": self.events,
            "events_per_s": round(self.events / self.wall_s, 1) if self.wall_s else None,
            "divergent_devices": self.divergent,
            "failed_syncs": self.failed_syncs,
            "per_day": [
                {
                    "day": number,
                    "syncs": day.syncs,
                    "writes": day.writes,
                    "bytes_per_device": round(day.bytes / devices, 1),
                    "round_trips_per_device": round(day.round_trips / devices, 3),
                    "retries": day.retries,
                    "gateway_us_per_sync": _round(day.gateway_us_per_sync(self.scenario.protocol)),
                    "service_us_per_sync": _round(day.gateway_us_per_sync(NO_PROTOCOL)),
                }
                for number, day in enumerate(self.days)
            ],
            "longevity": [
                {name: getattr(sample, name) for name in Footprint.__slots__}
                for sample in self.footprints
            ],
            "gateway_work": {
                "protocol_us": {
                    "valid": self.scenario.protocol.valid_us,
                    "content": self.scenario.protocol.content_us,
                    "report": self.scenario.protocol.report_us,
                },
                "us_per_sync": _round(total.gateway_us_per_sync(self.scenario.protocol)),
                "service_us_per_sync": _round(total.gateway_us_per_sync(NO_PROTOCOL)),
                "requests_per_sync": round(total.requests / total.syncs, 3)
                if total.syncs
                else None,
            },
            "closing_round": {
                "syncs": self.final.syncs,
                "bytes_per_device": round(self.final.bytes / devices, 1),
            },
            "convergence_s": {
                "count": len(waits),
                "p50": _rank(waits, 0.5),
                "p90": _rank(waits, 0.9),
                "max": waits[-1] if waits else None,
            },
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _rank(values: list[float], fraction: float) -> float | None:
    return values[round(fraction * (len(values) - 1))] if values else None


class VirtualFleet:
    """A scenario's fleet, gateway logic and clock; :meth:`run` plays it."""

    def __init__(self, scenario: Scenario, *, progress: Callable[[float], None] | None = None):
        scenario.check()
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        self.now = 0.0
        """Virtual time: the gateway logic's clock too (it stamps what it stores)."""
        self.store = MemoryStore()
        self.fleet = Fleet(self.store)
        self.service = SyncService(self.fleet, clock=self._clock)
        self.devices: dict[DeviceId, _Device] = {}
        self.progress = progress
        self._heap: list[tuple[float, int, str, str]] = []
        self._order = 0
        self._events = 0
        self._failed = 0
        self._days = [Day() for _ in range(max(1, int(-(-scenario.days // 1))))]
        self._final = Day()  # the closing clean round, apart from the days
        self._groups: list[LayerId] = []
        self._closing = False
        self._footprints: list[Footprint] = []
        self._device_bases = BaseCache()
        """The devices' delta bases apart from the gateway's, as on two machines."""
        self._build()

    # -- set-up --------------------------------------------------------------------

    def _build(self) -> None:
        """The fleet, written in bulk as an import would (the identity layers
        are valid by construction: checking each against the whole fleet
        would make the set-up quadratic); then the gateway's view of it."""
        self.fleet.load_schema(FIXTURE_SCHEMA.read_bytes(), "json", source="sim", now=0.0)
        names = [DeviceId(f"sim-{number:06d}") for number in range(self.scenario.devices)]
        for device in write_devices(self.store, names):
            self.devices[device] = _Device(device)
            self._push(self.rng.uniform(0, self.scenario.wake_every_s), "wake", device)
        self.fleet = Fleet(self.store)  # lazy: devices' own layers are read when they ask
        self.service = SyncService(self.fleet, clock=self._clock)
        self._groups = [LayerId(f"region/{r}") for r in REGIONS] + [
            LayerId(f"function/{f}") for f in FUNCTIONS
        ]
        writes = self.scenario.writes_per_day * self.scenario.days
        for _ in range(int(writes)):
            self._push(self.rng.uniform(0, self.scenario.days * DAY_S), "write", "")
        for day in range(1, len(self._days)):
            self._push(day * DAY_S, "footprint", "")

    def _clock(self) -> float:
        return self.now

    def _push(self, at: float, kind: str, device: str) -> None:
        self._order += 1
        heapq.heappush(self._heap, (at, self._order, kind, device))

    # -- the run -------------------------------------------------------------------

    def run(self) -> RunReport:
        started = time.perf_counter()
        with _collector_for_a_heap():
            return self._run(started)

    def _run(self, started: float) -> RunReport:
        end = self.scenario.days * DAY_S
        while self._heap and self._heap[0][0] < end:
            at, _, kind, name = heapq.heappop(self._heap)
            self.now = at
            self._events += 1
            if kind == "write":
                self._write(at)
            elif kind == "footprint":
                self._footprint(at)
            elif kind == "wake":
                self._wake(at, self.devices[DeviceId(name)], lossy=True)
                self._push(at + self.scenario.wake_every_s, "wake", name)
            else:  # "woke": a session's backoff is over
                self._resume(at, self.devices[DeviceId(name)])
            if self.progress is not None and self._events % 1000 == 0:
                self.progress(at / end)
        self.now = end
        self._footprint(end)
        self._closing = True
        for device in self.devices.values():  # one last clean wake each
            device.session = None
            self._wake(end, device, lossy=False)
        if self.progress is not None:
            self.progress(1.0)
        return RunReport(
            self.scenario, self._days, self._events, time.perf_counter() - started,
            self.divergent(), self._failed, self._final, self._footprints,
        )  # fmt: skip

    def sync_round(self, at: float) -> Day:
        """Every device wakes once at ``at`` on a clean link; the day it counts
        in (for a scripted mix: ``edgecfg bench sim-truth``)."""
        self.now = at
        for device in self.devices.values():
            device.session = None
            self._wake(at, device, lossy=False)
        return self._day(at)

    def divergent(self) -> int:
        """Devices whose held version is not a fresh resolution of their layers
        (computed here, independently of the sync path)."""
        count = 0
        for device in self.devices.values():
            expected = Encoded.trusted(
                self.fleet.resolver.resolve(self.fleet.device(device.id)).tree
            )
            if device.held is None or device.held.etag != expected.etag:
                count += 1
        return count

    def _footprint(self, at: float) -> None:
        """The end of a day: the gateway's chores (its version vectors
        written, as it does a few times a second; the retention pruned, if
        the scenario runs it), then what the gateway and the devices hold."""
        self.service.flush()
        if self.scenario.prune_versions_days is not None:
            self.store.drop_versions(before=at - self.scenario.prune_versions_days * DAY_S)
        tables = self.store.footprint()
        held = [
            (len(d.held.cbor) if d.held is not None else 0)
            + (len(d.transfer.received) if d.transfer is not None else 0)
            for d in self.devices.values()
        ]
        self._footprints.append(
            Footprint(
                day=len(self._footprints),
                rss_mib=round(process_rss_mib(), 1),
                store_bytes_per_device=round(
                    (tables["blob_bytes"] + tables["version_bytes"]) / len(self.devices), 1
                ),
                layer_revisions=tables["layer_revisions"],
                change_log=tables["change_log"],
                versions_kept=tables["versions"],
                agent_state_bytes_max=max(held),
                agent_state_bytes_mean=round(sum(held) / len(held), 1),
            )
        )

    def _day(self, at: float) -> Day:
        if self._closing:
            return self._final
        return self._days[min(len(self._days) - 1, int(at // DAY_S))]

    def _write(self, at: float) -> None:
        value = self.rng.randrange(60, 7200, 60)
        if self.rng.random() < self.scenario.group_share:
            layer = self.rng.choice(self._groups)
            reached = self.fleet.reached_by(layer)
        else:
            device = self.rng.choice(list(self.devices))
            layer, reached = device_layer(device), [device]
        self.fleet.write_layer(
            layer, layer_from_parts(sets={INTERVAL: value}),
            author="sim", message="interval", now=at,
        )  # fmt: skip
        self._day(at).writes += 1
        for device in reached:
            state = self.devices[device]
            if state.pending_since is None:
                state.pending_since = at

    def _wake(self, at: float, device: _Device, *, lossy: bool) -> None:
        if device.session is not None:
            return  # still backing off from an earlier wake
        device.session = SyncSession(Policy(szx=self.scenario.szx, attempts=8))
        held = device.held.etag if device.held is not None else None
        self._day(at).syncs += 1
        self._play(at, device, Start(at, held, device.transfer), lossy=lossy)

    def _resume(self, at: float, device: _Device) -> None:
        if device.session is not None:
            self._play(at, device, Woke(at), lossy=True)

    def _play(self, at: float, device: _Device, first: Event, *, lossy: bool) -> None:
        session = device.session
        assert session is not None
        day = self._day(at)
        actions = session.receive(first)
        while True:
            event: Event | None = None
            for action in actions:
                if isinstance(action, Keep):
                    device.transfer = action.transfer
                elif isinstance(action, Drop):
                    device.transfer = None
                elif isinstance(action, Get):
                    day.round_trips += 1
                    if lossy and self.rng.random() < self.scenario.loss:
                        day.bytes += HEADER_BYTES  # the request went out
                        event = Lost(at, "lost", self.rng.random())
                    else:
                        started = thread_time()
                        answer = self._get(device, action)
                        day.service_cpu_s += thread_time() - started
                        if answer.kind == "valid":
                            day.valid += 1
                        else:
                            day.content += 1
                        day.bytes += 2 * HEADER_BYTES + len(answer.payload)
                        event = Got(at, answer)
                elif isinstance(action, Install):
                    event = self._install(at, device, action, day)
                elif isinstance(action, Report):
                    day.round_trips += 1
                    body = DeviceReport(
                        applied=device.held.etag if device.held is not None else None,
                        agent=None if device.introduced else AGENT_VERSION,
                    ).encode()
                    device.introduced = True
                    started = thread_time()
                    answer = self.service.report(device.id, body, now=at)
                    day.service_cpu_s += thread_time() - started
                    day.reports += 1
                    day.bytes += (
                        2 * HEADER_BYTES + len(body) + (len(answer.payload) if answer else 0)
                    )
                    event = Reported(at, stale=not _current(answer))
                elif isinstance(action, Sleep):
                    day.retries += 1
                    self._push(action.until, "woke", device.id)
                    return
                else:  # Finished or GaveUp: the sync is over
                    self._failed += isinstance(action, GaveUp)
                    if isinstance(action, Finished) and action.outcome == "current":
                        device.pending_since = None  # the writes did not change this device
                    device.session = None
                    return
            assert event is not None
            actions = session.receive(event)

    def _get(self, device: _Device, action: Get) -> Answer:
        answer = self.service.config(device.id, base=action.etag)
        if isinstance(answer, NotModified):
            return Answer("valid", "2.03", etag=answer.etag)
        payload = answer.payload
        szx = action.szx if action.szx is not None else DEFAULT_SZX
        if action.block == 0 and len(payload) <= block_size(szx):
            return Answer("content", "2.05", payload, answer.etag, answer.content_format)
        block = block_of(payload, action.block, szx)
        return Answer(
            "content", "2.05", block.payload, answer.etag, answer.content_format,
            (block.number, block.more, szx), len(payload),
        )  # fmt: skip

    def _install(self, at: float, device: _Device, action: Install, day: Day) -> Event:
        held = device.held if device.held is not None and action.base == device.held.etag else None
        try:  # exactly what the agent does with the answer, with a device's memory of bases
            with bases_of(self._device_bases):
                config = decode_config(held, action.payload, action.content_format, action.etag)
        except (DeltaError, PeerError) as error:
            return Unusable(at, str(error))
        changed = device.held is None or config.etag != device.held.etag
        device.held = config
        if changed and device.pending_since is not None:
            day.convergence_s.append(at - device.pending_since)
            device.pending_since = None
        return Installed(at, config.etag, changed)


@contextlib.contextmanager
def _collector_for_a_heap() -> Generator[None]:
    """The cyclic collector tuned for a run's heap: what was built before the
    run is frozen (it lives as long as the run), and the youngest generation
    is collected every 50,000 allocations, not 700 (the devices' configs are
    millions of long-lived containers that each pass would look at again);
    as it was after."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, thresholds[1], thresholds[2])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def write_devices(store: Store, names: Sequence[DeviceId]) -> Sequence[DeviceId]:
    """Register ``names`` in bulk, as an import would: the n-th device in the
    n-th region and function group (round robin), each with its identity
    layer (valid by construction); ``names`` back."""
    records = [
        DeviceRecord(
            device,
            {
                "region": REGIONS[number % len(REGIONS)],
                "function": FUNCTIONS[number % len(FUNCTIONS)],
            },
            hardware="nbiot-sensor-r3",
            agent_version=AGENT_VERSION,  # introduced long ago: a fleet in its steady state
        )
        for number, device in enumerate(names)
    ]
    store.put_devices(records)
    for device in names:
        identity: dict[str, Value] = {
            "device": {"id": str(device)},
            "security": {"psk_identity": str(device)},
        }
        blob = store.put_blob(encode(layer_to_document(layer_from_parts(identity))))
        store.append_layer_revision(
            device_layer(device), blob, parent=None, author="sim", message="identity", now=0.0
        )
    return names


def _current(answer: Representation | None) -> bool:
    """Whether the answer to a state report says the device is current."""
    return answer is None or StateAnswer.decode(answer.payload).current


def run(scenario: Scenario, *, progress: Callable[[float], None] | None = None) -> RunReport:
    """Play ``scenario`` and report."""
    return VirtualFleet(scenario, progress=progress).run()
