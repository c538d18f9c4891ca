"""Real-network mode: real agent processes against a real gateway process over shaped links.

``edgecfg sim network`` (:func:`run`) builds a fleet in a fresh SQLite
database, starts ``edgecfg gateway serve`` as a child process, and the lossy
UDP proxy (:mod:`edgecfg.sim.proxy`) in front of it.  Each device is a real
``edgecfg agent run`` process in its own network namespace
(:mod:`edgecfg.sim.netns`): its own address, its own veth pair with a
``tbf`` token bucket each way (the kernel's rates), and its traffic through
the proxy, which adds the profile's round trips, loss, loss bursts,
duplicates, reordering and outages (this kernel has no ``netem``).

The run has two phases: for ``seconds`` the operator edits layers (device
and group layers mixed) at seeded times while the link has its trouble;
then the link keeps only its base loss and delays and the run waits (at
most ``settle_s``) until each agent holds its device's effective
configuration, computed from the database independently of the sync code.
What each agent printed per sync (outcome, ETag, round trips, bytes) gives
the figures; the gateway's CPU time comes from ``/proc``.

Wall-clock time is real here, so the figures vary with the machine's load;
the outcome (every agent converged, ``divergent_devices == 0``) does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import device_layer, layer_from_parts
from edgecfg.errors import CommandError, UsageError
from edgecfg.fleet.fleet import Fleet
from edgecfg.sim.link import LinkProfile
from edgecfg.sim.loopback_fleet import FUNCTIONS, REGIONS
from edgecfg.sim.netns import Cell, Cells
from edgecfg.sim.proxy import UdpProxy
from edgecfg.sim.shaping import NetworkProfile, link_profile, network_profile, rates
from edgecfg.sim.virtual import FIXTURE_SCHEMA, INTERVAL, process_rss_mib, write_devices
from edgecfg.store import SQLiteStore

RESULT: Final = re.compile(
    r"^(?P<device>\S+): (?P<outcome>current|updated|partial) (?P<etag>[0-9a-f]+|-) in "
    r"(?P<trips>\d+) round trip\(s\), (?P<up>\d+) B up, (?P<down>\d+) B down$"
)
"""A line ``edgecfg agent run`` prints after each sync."""
SERVING: Final = re.compile(r"serving .* on coap://(?P<host>[^ ]+):(?P<port>\d+) ")
START_LIMIT_S: Final = 120.0
STOP_LIMIT_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class NetworkScenario:
    """What to run."""

    agents: int = 3
    profile: str = "nbiot"
    seconds: float = 300.0
    """The phase with edits and link trouble (outages and loss bursts lie in it)."""
    edits: int = 5
    """Operator layer edits in that phase, at seeded times."""
    group_share: float = 0.5
    interval_s: float = 30.0
    """Each agent syncs this often (``agent run --interval``), from a seeded phase."""
    settle_s: float = 600.0
    """After the phase, wait at most this long for every agent to converge."""
    seed: int = 1

    def check(self) -> None:
        network_profile(self.profile)
        if self.agents < 1 or self.edits < 0:
            raise UsageError("a run needs at least 1 agent and 0 or more edits")
        if not (self.seconds > 0 and self.interval_s > 0 and self.settle_s > 0):
            raise UsageError("seconds, interval_s and settle_s must be above 0")
        if not 0.0 <= self.group_share <= 1.0:
            raise UsageError(f"group_share must be in [0, 1], got {self.group_share}")


@dataclass(slots=True)
class Sync:
    """One sync an agent reported, seconds since the run started."""

    at: float
    outcome: str
    round_trips: int
    bytes_up: int
    bytes_down: int


@dataclass(slots=True)
class Agent:
    device: DeviceId
    cell: Cell
    syncs: list[Sync] = field(default_factory=list[Sync])
    held: str | None = None
    """The ETag (hex) of the config it last said it holds."""
    failed: int = 0
    """Syncs that gave up (the gateway unreachable after every attempt)."""
    pending: float | None = None
    """Since when an edit has been waiting for this device to apply it."""
    convergence_s: list[float] = field(default_factory=list[float])


@dataclass(frozen=True, slots=True)
class Edit:
    """One operator edit: when (seconds since the run started), which layer, devices reached."""

    at: float
    layer: str
    reached: int


@dataclass(slots=True)
class NetworkReport:
    scenario: NetworkScenario
    profile: NetworkProfile
    link: LinkProfile
    agents: list[Agent]
    wall_s: float
    settle_wall_s: float
    divergent: int
    gateway_cpu_s: float
    gateway_rss_mib: float
    link_stats: dict[str, dict[str, int]]
    edits: list[Edit] = field(default_factory=list[Edit])

    def summary(self) -> dict[str, object]:
        syncs = [sync for agent in self.agents for sync in agent.syncs]
        waits = sorted(w for agent in self.agents for w in agent.convergence_s)
        count = len(self.agents)
        return {
            "mode": "network",
            "agents": count,
            "profile": self.profile.name,
            "seed": self.scenario.seed,
            "seconds": self.scenario.seconds,
            "edits": [
                {"at": round(e.at, 1), "layer": e.layer, "reached": e.reached} for e in self.edits
            ],
            "interval_s": self.scenario.interval_s,
            "wall_s": round(self.wall_s, 1),
            "settle_wall_s": round(self.settle_wall_s, 1),
            "divergent_devices": self.divergent,
            "syncs": len(syncs),
            "failed_syncs": sum(agent.failed for agent in self.agents),
            "outcomes": {
                outcome: sum(1 for sync in syncs if sync.outcome == outcome)
                for outcome in ("current", "updated", "partial")
            },
            "bytes_per_device": round(sum(s.bytes_up + s.bytes_down for s in syncs) / count, 1),
            "round_trips_per_sync": round(sum(s.round_trips for s in syncs) / len(syncs), 2)
            if syncs
            else None,
            "convergence_s": {
                "count": len(waits),
                "p50": _rank(waits, 0.5),
                "p90": _rank(waits, 0.9),
                "max": waits[-1] if waits else None,
            },
            "gateway_cpu_s": round(self.gateway_cpu_s, 2),
            "gateway_cpu_per_sync_ms": round(1000 * self.gateway_cpu_s / len(syncs), 2)
            if syncs
            else None,
            "gateway_rss_mib": round(self.gateway_rss_mib, 1),
            "link": {
                "rtt_s": list(self.profile.rtt_s),
                "base_loss": self.link.loss,
                "bursts": [list(w) for w in self.link.bursts],
                "burst_loss": self.link.burst_loss,
                "outages": [list(w) for w in self.link.partitions],
                "stats": self.link_stats,
            },
            "devices": [
                {
                    "device": agent.device,
                    "address": agent.cell.device_address,
                    "up_kbit": agent.cell.rates.up_kbit,
                    "down_kbit": agent.cell.rates.down_kbit,
                    "syncs": len(agent.syncs),
                    "failed_syncs": agent.failed,
                    "bytes": sum(s.bytes_up + s.bytes_down for s in agent.syncs),
                    "round_trips": sum(s.round_trips for s in agent.syncs),
                    "held": agent.held,
                }
                for agent in self.agents
            ],
        }


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (``/proc``, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rank(values: list[float], fraction: float) -> float | None:
    return round(values[round(fraction * (len(values) - 1))], 2) if values else None


def build_fleet(db: Path, names: list[DeviceId]) -> list[DeviceId]:
    """A fresh fleet of the devices ``names`` at ``db`` (the virtual sim's
    schema, groups and identity layers); ``names`` back."""
    with SQLiteStore(db) as store:
        Fleet(store).load_schema(FIXTURE_SCHEMA.read_bytes(), "json", source="sim", now=0.0)
        write_devices(store, names)
    return names


def _expected(db: Path, devices: list[DeviceId]) -> dict[DeviceId, str]:
    """Each device's effective configuration's ETag, resolved from the database."""
    with SQLiteStore(db) as store:
        fleet = Fleet(store)
        return {device: fleet.etag(device).hex() for device in devices}


async def start_gateway(
    db: Path, started: list[asyncio.subprocess.Process], *options: str
) -> tuple[asyncio.subprocess.Process, int]:
    """``edgecfg gateway serve`` on ``db`` (plain CoAP, a free loopback port,
    edits picked up each second) as a child process, appended to ``started``
    at once (for the caller to stop); it and its port once it serves."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgecfg.cli.main", "gateway", "serve", "--db", str(db),
        "--insecure", "--bind", "127.0.0.1:0", "--refresh", "1", *options,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    started.append(process)
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), START_LIMIT_S)
    except TimeoutError:
        raise CommandError(f"the gateway did not start within {START_LIMIT_S:.0f} s") from None
    match = SERVING.search(line.decode())
    if match is None:
        raise CommandError(f"the gateway did not start: {line.decode().strip()!r}")
    return process, int(match.group("port"))


async def stop_processes(processes: list[asyncio.subprocess.Process]) -> None:
    """SIGTERM to each, then SIGKILL to any still running after a grace period."""
    for process in processes:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            await asyncio.wait_for(process.wait(), STOP_LIMIT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


class _Run:
    def __init__(
        self, scenario: NetworkScenario, folder: Path, progress: Callable[[str], None]
    ) -> None:
        self.scenario = scenario
        self.folder = folder
        self.progress = progress
        self.profile = network_profile(scenario.profile)
        self.link = link_profile(self.profile, scenario.seed, scenario.seconds)
        self.rng = random.Random(scenario.seed)
        self.db = folder / "fleet.db"
        self.started = 0.0
        self.agents: dict[DeviceId, Agent] = {}
        self.processes: list[asyncio.subprocess.Process] = []
        self.readers: list[asyncio.Task[None]] = []
        self.edit_log: list[Edit] = []

    def now(self) -> float:
        return time.monotonic() - self.started

    async def gateway(self) -> tuple[asyncio.subprocess.Process, int]:
        return await start_gateway(self.db, self.processes)

    async def agent(self, agent: Agent, port: int) -> None:
        await asyncio.sleep(self.rng.uniform(0, self.scenario.interval_s))
        argv = agent.cell.command([
            sys.executable, "-m", "edgecfg.cli.main", "agent", "run",
            "--gateway", f"coap://{agent.cell.host_address}:{port}",
            "--device", agent.device,
            "--state-dir", str(self.folder / "agents" / agent.device),
            "--interval", str(self.scenario.interval_s),
            "--ack-timeout", str(self.profile.ack_timeout_s),
            "--backoff", str(self.profile.rtt_s[1]),
        ])  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        self.processes.append(process)
        assert process.stdout is not None and process.stderr is not None
        self.readers.append(asyncio.create_task(self._failures(agent, process.stderr)))
        async for raw in process.stdout:
            match = RESULT.match(raw.decode(errors="replace").strip())
            if match is None:
                continue
            sync = Sync(self.now(), match.group("outcome"), int(match.group("trips")),
                        int(match.group("up")), int(match.group("down")))  # fmt: skip
            agent.syncs.append(sync)
            if match.group("etag") != "-":
                agent.held = match.group("etag")
            if agent.pending is not None and agent.held == _expected(self.db, [agent.device]).get(
                agent.device
            ):  # a fresh resolution: the device's own reports (its versions) count too
                agent.convergence_s.append(sync.at - agent.pending)
                agent.pending = None

    async def _failures(self, agent: Agent, stderr: asyncio.StreamReader) -> None:
        async for raw in stderr:
            if b"unreachable after" in raw:
                agent.failed += 1

    async def edits(self) -> None:
        times = sorted(
            self.rng.uniform(0, self.scenario.seconds) for _ in range(self.scenario.edits)
        )
        groups = [LayerId(f"region/{r}") for r in REGIONS] + [
            LayerId(f"function/{f}") for f in FUNCTIONS
        ]
        for number, at in enumerate(times):
            await asyncio.sleep(max(0.0, at - self.now()))
            if self.rng.random() < self.scenario.group_share:
                layer = self.rng.choice(groups)
            else:
                layer = device_layer(self.rng.choice(list(self.agents)))
            value = self.rng.randrange(60, 7200, 60)
            written = self.now()
            with SQLiteStore(self.db) as store:
                fleet = Fleet(store)
                fleet.write_layer(
                    layer, layer_from_parts(sets={INTERVAL: value}), author="sim",
                    message=f"edit {number}", now=time.time(),
                )  # fmt: skip
                reached = [device for device in fleet.reached_by(layer) if device in self.agents]
            self.edit_log.append(Edit(written, str(layer), len(reached)))
            for device in reached:
                agent = self.agents[device]
                if agent.pending is None:
                    agent.pending = written
            self.progress(f"{self.now():6.0f} s  edit {number + 1}/{len(times)}: {layer} "
                          f"({len(reached)} device(s))")  # fmt: skip

    async def settle(self) -> int:
        """Wait until every agent holds its expected config (or the limit); the divergent."""
        devices = list(self.agents)
        deadline = self.now() + self.scenario.settle_s
        while True:
            expected = _expected(self.db, devices)
            divergent = sum(1 for d in devices if self.agents[d].held != expected[d])
            if divergent == 0 or self.now() > deadline:
                return divergent
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        await stop_processes(self.processes)
        for reader in self.readers:
            reader.cancel()

    async def play(self, cells: Cells, devices: list[DeviceId]) -> NetworkReport:
        self.agents = {
            device: Agent(device, cell) for device, cell in zip(devices, cells.cells, strict=True)
        }
        gateway, port = await self.gateway()
        async with UdpProxy(
            ("127.0.0.1", port), profile=self.link, seed=self.scenario.seed, bind=("0.0.0.0", 0)
        ) as proxy:
            self.started = time.monotonic() - proxy.elapsed
            cpu_before = cpu_seconds(gateway.pid)
            tasks = [
                asyncio.create_task(self.agent(a, proxy.address[1])) for a in self.agents.values()
            ]
            try:
                self.progress(f"{len(tasks)} agent(s) in their namespaces; the gateway on :{port}; "
                              f"edits for {self.scenario.seconds:g} s")  # fmt: skip
                await self.edits()
                await asyncio.sleep(max(0.0, self.scenario.seconds - self.now()))
                self.progress(
                    f"{self.now():6.0f} s  settling (at most {self.scenario.settle_s:g} s)"
                )
                settle_from = self.now()
                divergent = await self.settle()
                settled = self.now() - settle_from
                cpu = cpu_seconds(gateway.pid) - cpu_before
                rss = process_rss_mib(gateway.pid)
                stats = proxy.link.stats()
            finally:
                await self.stop()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        link_stats = {
            name: {k: getattr(getattr(stats, name), k) for k in
                   ("sent", "dropped", "partitioned", "duplicated", "reordered")}
            for name in ("up", "down")
        }  # fmt: skip
        return NetworkReport(
            self.scenario, self.profile, self.link, list(self.agents.values()), self.now(),
            settled, divergent, cpu, rss, link_stats, self.edit_log,
        )  # fmt: skip


def run(
    scenario: NetworkScenario,
    *,
    progress: Callable[[str], None] = lambda _line: None,
    keep: Path | None = None,
) -> NetworkReport:
    """Play ``scenario``; the namespaces and processes are gone when it returns
    or raises (Ctrl-C included).  ``keep``: the folder for the database and the
    agents' state (default: a temporary folder, removed)."""
    scenario.check()
    profile = network_profile(scenario.profile)
    with contextlib.ExitStack() as stack:
        if keep is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgecfg-net-")))
        else:
            folder = keep
            folder.mkdir(parents=True, exist_ok=True)
        devices = build_fleet(
            folder / "fleet.db", [DeviceId(f"net-{n:04d}") for n in range(scenario.agents)]
        )
        cells = stack.enter_context(Cells.open(rates(profile, scenario.seed, scenario.agents)))
        return asyncio.run(_Run(scenario, folder, progress).play(cells, devices))
    raise AssertionError("unreachable")  # pragma: no cover
