# aiocoap ships no type information; this module owns it for the load driver.
# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# pyright: reportAttributeAccessIssue=false
"""``edgecfg bench fleet``: the gateway on a fleet shaped like a real one (issue 12).

Every device has its own layer (its identity, name and position) and one
group in each of three dimensions: 60 sites in 4 regions, 12 hardware
revisions of the fixture schema's 4 models, 25 functions (15,000 distinct
group stacks, so about 15k at 100k devices).  The global layer and every
group layer set schema-valid values; the fleet is written to a fresh SQLite
database in bulk, as an import would.

The gateway runs in a child process with its default settings (refresh,
caches); the load comes from this process as raw CoAP datagrams (messages
encoded with aiocoap's codec, nothing else of it: no exchange layer, no
retransmission logic of aiocoap; our own CON timer of 2 s counts
retransmissions).  A bare aiocoap resource returning 40 B, driven the same
way in the same run, is the baseline: its server runs beside the gateway,
and each steady phase of the gateway is ROUNDS rounds, each between two of
the bare server's, the ratio the median over the rounds (a change of the
machine's load during the run falls on both sides of it).  Per fleet size
it reports:

- ``startup_s``: from starting the process to the first answer to a device;
- ``idle_cpu_pct``: the gateway's CPU while nobody asks (percent of a core);
- ``rss_mib`` after the load, ``db_bytes`` (database + WAL + index files);
- CPU per request, each ÷ bare: ``cpu_ratio_valid`` (2.03 for the current
  ETag), ``cpu_ratio_delta`` (a delta the gateway already made);
  ``cpu_ratio_first_after_edit``: a device's first request after a
  fleet-wide (global layer) edit ÷ its second one (the delta made, cached),
  over EDITS edits, each phase charged its deferred work (the versions'
  vectors written after it);
- ``p50_ms``/``p99_ms`` over the steady requests, ``retransmissions``;
- ``visible_delay_s``: from a write committed by another process to the
  gateway answering with the new version;
- ``db_growth_per_device``: bytes the database file (checkpointed) grew by
  per fleet-wide edit and sampled device (each edit followed by a sync of
  every sampled device).

The load driver plays ``--sample`` devices: every device of randomly chosen
group stacks (after an edit every device of a stack asks, and what they
share is worked out once for all of them).  Each target of issue 12 gets a
verdict, PASS or MISS, per fleet size; the ratios to the smallest size are
judged when it is 1,000 devices or fewer.

    uv run edgecfg bench fleet --devices 1000,10000,100000 [--sample 4000] [--json]
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any, Final, cast

import aiocoap
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from edgecfg.bench.load import LOAD_BUDGETS, run_bare
from edgecfg.bench.measure import TICKS, cpu_seconds, free_udp_port, median, percentile, rss_mib
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import Layer, layer_from_document, layer_from_parts, layer_to_document
from edgecfg.core.path import Path as KeyPath
from edgecfg.core.schema import Schema
from edgecfg.core.tree import Value, walk_leaves
from edgecfg.errors import CommandError
from edgecfg.fleet.fleet import Fleet
from edgecfg.sim.configs import config_for_schema
from edgecfg.store import DeviceRecord, SQLiteStore
from edgecfg.wire.cbor import decode, encode

FIXTURE_SCHEMA: Final = Path(__file__).resolve().parents[2] / "fixtures" / "schema" / "device.json"
MODELS: Final = ("nbiot-sensor-r3", "lte-camera-c2", "ltem-meter-w1", "pi-gateway-cm4")
REGIONS: Final = ("eu", "us", "apac", "latam")
SITES_PER_REGION: Final = 15  # 60 sites
REVISIONS_PER_MODEL: Final = 3  # 12 hardware groups
FUNCTIONS: Final = 25  # 60 * 12 * 25 = 18,000 possible stacks
GLOBAL_LEAVES: Final = 120
GROUP_LEAVES: Final = 6
CONCURRENCY: Final = 32
ACK_TIMEOUT_S: Final = 2.0
MIDS_PER_SOCKET: Final = 30_000  # of 65,536 message IDs (see RawClient)
MAX_RETRANSMIT: Final = 4
MIN_CPU_TICKS: Final = 30
ROUNDS: Final = 5  # of each steady phase, alternating with the bare server
EDITS: Final = 3  # fleet-wide edits, each followed by every device's first request
SETTLE_S: Final = 0.5
SETTLE_LIMIT_S: Final = 30.0
BARE_PAYLOAD: Final = 40
STARTUP_LIMIT_S: Final = 600.0
IDLE_S: Final = 10.0
VISIBLE_LIMIT_S: Final = 60.0
EDITED: Final = ("telemetry", "interval_s")


# ---------------------------------------------------------------- the fleet


@dataclass(frozen=True, slots=True)
class Built:
    devices: list[DeviceId]
    stacks: list[list[DeviceId]]
    """The devices by group stack (their three memberships)."""
    seconds: float


def _pool(schema: Schema, seed: int) -> list[tuple[KeyPath, Value]]:
    """Schema-valid (path, value) pairs for keys every model has."""
    tree = config_for_schema(schema, seed)
    found: list[tuple[KeyPath, Value]] = []
    for path, value in walk_leaves(tree):
        spec = schema.spec(path)
        if spec is None or spec.hardware is not None or spec.required or path == EDITED:
            continue  # EDITED: only the global layer sets it, so its edit reaches everyone
        found.append((path, value))
    return found


def _group_layer(schema: Schema, rng: random.Random, leaves: int) -> Layer:
    pool = _pool(schema, rng.getrandbits(32))
    chosen = rng.sample(pool, min(leaves, len(pool)))
    return layer_from_parts(sets=dict(chosen))


def build(db: Path, devices: int, *, seed: int = 1) -> Built:
    """Write a realistic fleet of ``devices`` to a fresh database at ``db``."""
    started = time.perf_counter()
    rng = random.Random(seed)
    with SQLiteStore(db) as store:
        fleet = Fleet(store)
        schema = fleet.load_schema(
            FIXTURE_SCHEMA.read_bytes(), "json", source="bench", now=time.time()
        )
        sites = [f"{r}/{r}-{s}" for r in REGIONS for s in range(SITES_PER_REGION)]
        hardware = [f"{m}/rev-{k}" for m in MODELS for k in range(REVISIONS_PER_MODEL)]
        functions = [f"fn-{k}" for k in range(FUNCTIONS)]
        root = _group_layer(schema, rng, GLOBAL_LEAVES).merged(layer_from_parts(sets={EDITED: 600}))
        layers: dict[str, Layer] = {"global": root}
        layers.update({f"region/{s}": _group_layer(schema, rng, GROUP_LEAVES) for s in sites})
        layers.update({f"hardware/{h}": _group_layer(schema, rng, GROUP_LEAVES) for h in hardware})
        layers.update({f"function/{f}": _group_layer(schema, rng, GROUP_LEAVES) for f in functions})
        for name, layer in layers.items():  # before any device: the checks walk no one
            fleet.write_layer(LayerId(name), layer, author="bench", message="seed", now=0.0)
        ids = [DeviceId(f"dev-{n:07d}") for n in range(devices)]
        records: list[DeviceRecord] = []
        stacks: dict[tuple[str, str, str], list[DeviceId]] = {}
        for device in ids:
            model = rng.randrange(len(hardware))
            stack = (rng.choice(sites), hardware[model], rng.choice(functions))
            stacks.setdefault(stack, []).append(device)
            records.append(
                DeviceRecord(
                    device,
                    {"region": stack[0], "hardware": stack[1], "function": stack[2]},
                    hardware=MODELS[model // REVISIONS_PER_MODEL],
                    firmware="3.2.0",
                    agent_version="1.0.0",
                )
            )
        store.put_devices(records)
        for device in ids:
            own = layer_from_parts(
                sets={
                    ("device", "id"): device,
                    ("security", "psk_identity"): device,
                    ("device", "name"): f"meter {device[4:]}",
                    ("device", "location", "lat"): round(rng.uniform(-60, 60), 5),
                    ("device", "location", "lon"): round(rng.uniform(-170, 170), 5),
                }
            )
            blob = store.put_blob(encode(layer_to_document(own)))
            store.append_layer_revision(
                LayerId(f"device/{device}"), blob, parent=None, author="bench",
                message="identity", now=0.0,
            )  # fmt: skip
    return Built(ids, list(stacks.values()), time.perf_counter() - started)


def edit_global(db: Path, value: int) -> float:
    """Change one global value from another process than the gateway's, as
    another writer (the CLI, another gateway) would; when it committed."""
    with SQLiteStore(db) as store:
        head = store.get_layer(LayerId("global"))
        layer = layer_from_document(decode(store.get_blob(head.content)))
        edited = layer.merged(layer_from_parts(sets={EDITED: value}))
        blob = store.put_blob(encode(layer_to_document(edited)))
        store.append_layer_revision(
            LayerId("global"), blob, parent=head.revision, author="bench",
            message="fleet-wide edit", now=time.time(),
        )  # fmt: skip
    return time.perf_counter()


def db_bytes(db: Path) -> int:
    """The database with its write-ahead log and index (what the disk holds)."""
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def data_bytes(db: Path) -> int:
    """The database file after a checkpoint: what the data takes."""
    with SQLiteStore(db) as store:
        store.checkpoint()
    return db.stat().st_size


def sample_of(built: Built, size: int, rng: random.Random) -> list[DeviceId]:
    """About ``size`` devices: every device of randomly chosen group stacks.
    After an edit every device of a stack asks (daily or weekly), and what
    they share (the stack's fold, the version before) is worked out once for
    all of them: a sample of scattered devices would charge it to each."""
    stacks = list(built.stacks)
    rng.shuffle(stacks)
    chosen: list[DeviceId] = []
    for members in stacks:
        if len(chosen) >= size:
            break
        chosen.extend(members)
    return sorted(chosen)


# ---------------------------------------------------------------- the gateway


def run_gateway(db: str, port: int, ready: Event) -> None:
    """Child process: a gateway with default settings (budgets lifted: the
    driver's one address stands for the fleet)."""
    from edgecfg.fleet.identity import InsecurePolicy
    from edgecfg.gateway.server import Gateway, settle_heap

    async def main() -> None:
        with SQLiteStore(db) as store:
            gateway = Gateway(store, policy=InsecurePolicy(), budgets=LOAD_BUDGETS)
            await gateway.start("127.0.0.1", port)
            settle_heap()  # as `gateway serve` does
            ready.set()
            await asyncio.Event().wait()

    asyncio.run(main())


# ---------------------------------------------------------------- the driver


@dataclass(frozen=True, slots=True)
class Request:
    path: tuple[str, ...]
    etag: bytes | None = None


@dataclass(slots=True)
class Answer:
    request: Request
    code: Any
    etag: bytes | None
    content_format: int | None
    size: int
    seconds: float


class RawClient(asyncio.DatagramProtocol):
    """CON GETs over a plain UDP socket with its own retransmission timer.

    It stands for many devices, so it sends far more requests than one
    device would: every MIDS_PER_SOCKET requests it moves to a new source
    port, so no (address, message ID) pair comes again within the exchange
    lifetime (RFC 7252 §4.5: the gateway would take it for a duplicate and
    answer with the earlier request's answer, another token)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.transport: asyncio.DatagramTransport | None = None
        self.transports: list[asyncio.DatagramTransport] = []
        self.waiting: dict[bytes, asyncio.Future[aiocoap.Message]] = {}
        self.mid = random.randrange(0x10000)
        self.tokens = 0
        self.retransmissions = 0
        self._on_socket = 0  # requests sent from the current source port
        self._moving = asyncio.Lock()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.transports.append(self.transport)
        self._on_socket = 0

    async def _fresh_port(self) -> None:
        async with self._moving:
            if self._on_socket < MIDS_PER_SOCKET:
                return  # another worker moved already
            await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: self, local_addr=("127.0.0.1", 0)
            )  # answers to the old port still arrive: it stays open until close()

    def close(self) -> None:
        for transport in self.transports:
            transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            message = aiocoap.Message.decode(data)
        except Exception:  # a datagram we cannot read is not an answer
            return
        future = self.waiting.get(message.token)
        if future is not None and not future.done():
            future.set_result(message)

    async def get(self, request: Request) -> Answer:
        if self._on_socket >= MIDS_PER_SOCKET:
            await self._fresh_port()
        started = time.perf_counter()
        response = await self._exchange(request)
        if response.code == Code.UNAUTHORIZED and response.opt.echo is not None:
            # the amplification guard's challenge (RFC 9175): shown once, as a
            # device does, and the address is proven for a day and a half
            response = await self._exchange(request, response.opt.echo)
        return Answer(
            request,
            response.code,
            response.opt.etag,
            response.opt.content_format,
            len(response.payload),
            time.perf_counter() - started,
        )

    async def _exchange(self, request: Request, echo: bytes | None = None) -> aiocoap.Message:
        assert self.transport is not None
        message = aiocoap.Message(code=Code.GET, uri_path=request.path)
        message.mtype = Type.CON
        self.mid = (self.mid + 1) & 0xFFFF
        self._on_socket += 1
        message.mid = self.mid
        self.tokens += 1
        message.token = self.tokens.to_bytes(4, "big")
        if request.etag is not None:
            message.opt.etags = (request.etag,)
        if echo is not None:
            message.opt.echo = echo
        raw = message.encode()
        future: asyncio.Future[aiocoap.Message] = asyncio.get_running_loop().create_future()
        self.waiting[message.token] = future
        try:
            for attempt in range(MAX_RETRANSMIT + 1):
                self.transport.sendto(raw, self.address)
                try:
                    return await asyncio.wait_for(
                        asyncio.shield(future), ACK_TIMEOUT_S * 2**attempt
                    )
                except TimeoutError:
                    self.retransmissions += 1
            raise CommandError(f"no answer to GET /{'/'.join(request.path)} after retransmissions")
        finally:
            del self.waiting[message.token]


@dataclass(frozen=True, slots=True)
class Phase:
    answers: list[Answer]
    cpu_s: float

    @property
    def cpu_per_request_us(self) -> float:
        return 1e6 * self.cpu_s / len(self.answers)


async def drive(
    client: RawClient, pid: int, requests: Sequence[Request], *, repeat: bool = True
) -> Phase:
    """Send ``requests`` CONCURRENCY at a time; with ``repeat``, again until
    the server used MIN_CPU_TICKS clock ticks (a shorter run reads as noise)."""
    answers: list[Answer] = []
    cpu = cpu_seconds(pid)
    while True:
        queue = iter(requests)

        async def worker(queue: Iterator[Request]) -> None:
            for request in queue:
                answers.append(await client.get(request))

        await asyncio.gather(*(worker(queue) for _ in range(CONCURRENCY)))
        used = cpu_seconds(pid) - cpu
        if not repeat or used * TICKS >= MIN_CPU_TICKS or len(answers) > 50 * len(requests):
            return Phase(answers, used)


async def settle(pid: int) -> float:
    """Wait until the gateway's deferred work (versions it served written in
    batches, layers read ahead) is done: CPU that rises by at most one clock
    tick over SETTLE_S.  Its CPU time then, so a phase is charged its own
    deferred work and the next one starts clean."""
    deadline = time.perf_counter() + SETTLE_LIMIT_S
    cpu = cpu_seconds(pid)
    while True:
        await asyncio.sleep(SETTLE_S)
        now = cpu_seconds(pid)
        if (now - cpu) * TICKS <= 1 or time.perf_counter() > deadline:
            return now
        cpu = now


async def drive_settled(client: RawClient, pid: int, requests: Sequence[Request]) -> Phase:
    """``requests`` once, charged with the deferred work they left."""
    cpu = await settle(pid)
    phase = await drive(client, pid, requests, repeat=False)
    return Phase(phase.answers, await settle(pid) - cpu)


def _codes(phase: Phase) -> dict[str, int]:
    found: dict[str, int] = {}
    for answer in phase.answers:
        found[str(answer.code)] = found.get(str(answer.code), 0) + 1
    return found


def _expect(phase: Phase, code: Any, what: str) -> None:
    wrong = [a for a in phase.answers if a.code != code]
    if wrong:
        raise CommandError(f"{what}: {len(wrong)} of {len(phase.answers)} answers were not "
                           f"{code}: {_codes(phase)}")  # fmt: skip


# ---------------------------------------------------------------- one size


@dataclass(frozen=True, slots=True)
class Figures:
    devices: int
    sample: int
    build_s: float
    startup_s: float
    idle_cpu_pct: float
    rss_mib: float
    db_bytes: int
    bare_us: float
    valid_us: float
    delta_us: float
    first_after_edit_us: float
    cpu_ratio_valid: float
    cpu_ratio_delta: float
    cpu_ratio_first_after_edit: float
    p50_ms: float
    p99_ms: float
    retransmissions: int
    visible_delay_s: float
    db_growth_per_device: float
    delta_bytes: float


def _spawn(target: Callable[..., None], *args: object) -> tuple[SpawnProcess, Event]:
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(target=target, args=(*args, ready), daemon=True)
    process.start()
    return process, ready


@dataclass(slots=True)
class Bare:
    """The bare aiocoap server, alive for the whole measurement of one size:
    each steady phase of the gateway is measured in rounds alternating with
    one of it, so a change of the machine's load during the run (another
    job starting) falls on both sides of the ratio."""

    client: RawClient
    pid: int
    requests: list[Request]
    cpu_s: float = 0.0
    count: int = 0

    async def round(self) -> float:
        """One round; its CPU per request (µs)."""
        phase = await drive(self.client, self.pid, self.requests)
        _expect(phase, Code.CONTENT, "bare")
        self.cpu_s += phase.cpu_s
        self.count += len(phase.answers)
        return phase.cpu_per_request_us

    @property
    def us(self) -> float:
        return 1e6 * self.cpu_s / self.count


@dataclass(frozen=True, slots=True)
class Paired:
    phase: Phase
    ratio: float
    """The median over the rounds of the gateway's CPU per request ÷ the
    mean of the bare rounds just before and just after it."""


async def paired(client: RawClient, pid: int, requests: Sequence[Request], bare: Bare) -> Paired:
    """``requests`` to the gateway ROUNDS times, each round between two of
    the bare server's."""
    answers: list[Answer] = []
    cpu = 0.0
    ratios: list[float] = []
    await settle(pid)
    before = await bare.round()
    for _ in range(ROUNDS):
        phase = await drive(client, pid, requests)
        answers.extend(phase.answers)
        cpu += phase.cpu_s
        after = await bare.round()
        ratios.append(phase.cpu_per_request_us / ((before + after) / 2))
        before = after
    return Paired(Phase(answers, cpu), median(ratios))


async def measure(
    devices: int, sample: int, *, seed: int, progress: Callable[[str], None], idle_s: float = IDLE_S
) -> Figures:
    with tempfile.TemporaryDirectory(prefix="edgecfg-bench-fleet-") as folder:
        db = Path(folder) / "fleet.db"
        progress(f"building a fleet of {devices:,} devices")
        built = build(db, devices, seed=seed)
        rng = random.Random(seed)
        chosen = sample_of(built, sample, rng)
        port = free_udp_port()
        loop = asyncio.get_running_loop()
        _, client = await loop.create_datagram_endpoint(
            lambda: RawClient(("127.0.0.1", port)), local_addr=("127.0.0.1", 0)
        )
        progress(f"built in {built.seconds:.0f} s; starting the bare aiocoap server")
        bare_port = free_udp_port()
        bare_process, bare_ready = _spawn(run_bare, {"bare": BARE_PAYLOAD}, bare_port)
        _, bare_client = await loop.create_datagram_endpoint(
            lambda: RawClient(("127.0.0.1", bare_port)), local_addr=("127.0.0.1", 0)
        )
        if not await loop.run_in_executor(None, bare_ready.wait, 60):
            raise CommandError("the bare aiocoap server did not start within 60 s")
        assert bare_process.pid is not None
        bare = Bare(bare_client, bare_process.pid, [Request(("bare",))] * len(chosen))
        await drive(bare_client, bare.pid, bare.requests[:CONCURRENCY], repeat=False)  # warm
        progress("starting the gateway")
        started = time.perf_counter()
        process, ready = _spawn(run_gateway, str(db), port)
        try:
            assert process.pid is not None
            pid = process.pid
            if not await loop.run_in_executor(None, ready.wait, STARTUP_LIMIT_S):
                raise CommandError(f"the gateway did not start within {STARTUP_LIMIT_S:.0f} s")
            first = await client.get(Request(("cfg", chosen[0])))
            startup = time.perf_counter() - started
            if first.code != Code.CONTENT:
                raise CommandError(f"the gateway answered {first.code} to its first device")
            await asyncio.sleep(2.0)  # let start-up work settle
            cpu = cpu_seconds(pid)
            await asyncio.sleep(idle_s)
            idle = 100 * (cpu_seconds(pid) - cpu) / idle_s
            progress("full configs for the sample")
            full = await drive(client, pid, [Request(("cfg", d)) for d in chosen], repeat=False)
            _expect(full, Code.CONTENT, "first fetch")
            held = {DeviceId(a.request.path[1]): a.etag or b"" for a in full.answers}
            valid_requests = [Request(("cfg", d), held[d]) for d in chosen]
            progress("2.03 for the current version (rounds alternating with the bare server)")
            valid_paired = await paired(client, pid, valid_requests, bare)
            valid = valid_paired.phase
            _expect(valid, Code.VALID, "current ETag")
            await asyncio.sleep(1.0)  # the gateway writes what it served a few times a second
            before = data_bytes(db)
            firsts: list[Phase] = []
            cached: list[Phase] = []
            visible = 0.0
            stale: list[Request] = []
            for number in range(EDITS):
                progress(f"fleet-wide edit {number + 1} of {EDITS}, from another process")
                committed = edit_global(db, 900 + 1000 * number + rng.randrange(1000))
                probe = Request(("cfg", chosen[0]), held[chosen[0]])
                seen = await client.get(probe)
                while seen.code == Code.VALID:
                    if time.perf_counter() - committed > VISIBLE_LIMIT_S:
                        raise CommandError(
                            f"the gateway still served {chosen[0]}'s old version "
                            f"{VISIBLE_LIMIT_S:.0f} s after the edit was committed"
                        )
                    await asyncio.sleep(0.01)
                    seen = await client.get(probe)
                visible = max(visible, time.perf_counter() - committed)
                # every other device asks once with the version it holds, then
                # again (a delta made already): each charged its deferred work
                stale = [Request(("cfg", d), held[d]) for d in chosen[1:]]
                firsts.append(await drive_settled(client, pid, stale))
                _expect(firsts[-1], Code.CONTENT, "first after the edit")
                cached.append(await drive_settled(client, pid, stale))
                _expect(cached[-1], Code.CONTENT, "the same delta again")
                held = {DeviceId(a.request.path[1]): a.etag or b"" for a in firsts[-1].answers}
                held[chosen[0]] = seen.etag or b""
            growth = (data_bytes(db) - before) / (len(chosen) * EDITS)
            first_after = Phase(
                [a for p in firsts for a in p.answers], sum(p.cpu_s for p in firsts)
            )
            first_ratio = first_after.cpu_s / sum(p.cpu_s for p in cached)
            progress("cached deltas (rounds alternating with the bare server)")
            delta_paired = await paired(client, pid, stale, bare)
            delta = delta_paired.phase
            _expect(delta, Code.CONTENT, "cached delta")
            rss = rss_mib(pid)
        finally:
            for child in (process, bare_process):
                child.kill()
                child.join()
            client.close()
            bare_client.close()
        footprint = db_bytes(db)
    steady = [a.seconds for a in (*valid.answers, *delta.answers)]
    return Figures(
        devices=devices,
        sample=len(chosen),
        build_s=built.seconds,
        startup_s=startup,
        idle_cpu_pct=idle,
        rss_mib=rss,
        db_bytes=footprint,
        bare_us=bare.us,
        valid_us=valid.cpu_per_request_us,
        delta_us=delta.cpu_per_request_us,
        first_after_edit_us=first_after.cpu_per_request_us,
        cpu_ratio_valid=valid_paired.ratio,
        cpu_ratio_delta=delta_paired.ratio,
        cpu_ratio_first_after_edit=first_ratio,
        p50_ms=1000 * median(steady),
        p99_ms=1000 * percentile(steady, 0.99),
        retransmissions=client.retransmissions,
        visible_delay_s=visible,
        db_growth_per_device=growth,
        delta_bytes=median([float(a.size) for a in delta.answers]),
    )


# ---------------------------------------------------------------- the command


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--devices {text}: expected sizes like 10000,100000") from None
    if not sizes or any(n < 1 for n in sizes):
        raise CommandError(f"--devices {text}: every size must be at least 1")
    return sizes


def run_fleet_bench(
    *, devices: str, sample: int, seed: int, as_json: bool, idle: float = IDLE_S
) -> int:
    """``edgecfg bench fleet``: measure each fleet size in turn, print the figures."""
    sizes = _sizes(devices)
    if sample < CONCURRENCY:
        raise CommandError(f"--sample {sample}: at least {CONCURRENCY}")
    if not idle > 0:
        raise CommandError(f"--idle {idle}: the idle CPU is read over a positive number of seconds")

    def progress(text: str) -> None:
        print(f"... {text}", file=sys.stderr, flush=True)

    rows: list[Figures] = []
    for size in sizes:
        figures = asyncio.run(measure(size, sample, seed=seed, progress=progress, idle_s=idle))
        rows.append(figures)
        if as_json:
            document: dict[str, object] = dict(asdict(figures))
            document["targets"] = verdicts(figures, rows[0])
            print(json.dumps(document), flush=True)
    if not as_json:
        print(render(rows))
    return 0


def verdicts(row: Figures, smallest: Figures) -> dict[str, bool]:
    """Issue 12's targets for one fleet size: met or not."""
    found = {
        "2.03 CPU <= 1.3x bare": row.cpu_ratio_valid <= 1.3,
        "cached delta CPU <= 1.3x bare": row.cpu_ratio_delta <= 1.3,
        "first after a fleet-wide edit <= 2x cached delta": row.cpu_ratio_first_after_edit <= 2.0,
        "no retransmissions": row.retransmissions == 0,
        "start-up <= 2 s": row.startup_s <= 2.0,
        "idle CPU <= 2% of a core": row.idle_cpu_pct <= 2.0,
        "RSS <= 1 GiB": row.rss_mib <= 1024.0,
        "DB growth <= 64 B per device per edit": row.db_growth_per_device <= 64.0,
        "a write visible within 1 s": row.visible_delay_s <= 1.0,
    }
    if smallest.devices <= 1000 and row is not smallest:
        found["p99 <= 2x the smallest fleet's"] = row.p99_ms <= 2 * smallest.p99_ms
        found["2.03 CPU within 1.15x the smallest fleet's"] = (
            row.cpu_ratio_valid <= 1.15 * smallest.cpu_ratio_valid
        )
        found["cached delta CPU within 1.15x the smallest fleet's"] = (
            row.cpu_ratio_delta <= 1.15 * smallest.cpu_ratio_delta
        )
    return found


def render(rows: Sequence[Figures]) -> str:
    """The figures as a table, one column per fleet size."""
    samples = "/".join(f"{r.sample:,}" for r in rows)
    lines = [f"edgecfg bench fleet (devices played: {samples}; {CONCURRENCY} at a time)"]
    header = f"{'':34}" + "".join(f"{r.devices:>14,}" for r in rows)
    lines.append(header)
    fields: list[tuple[str, Callable[[Figures], str]]] = [
        ("build (s)", lambda r: f"{r.build_s:.1f}"),
        ("start-up to first answer (s)", lambda r: f"{r.startup_s:.2f}"),
        ("idle CPU (% of a core)", lambda r: f"{r.idle_cpu_pct:.1f}"),
        ("RSS after load (MiB)", lambda r: f"{r.rss_mib:.0f}"),
        ("database (MB)", lambda r: f"{r.db_bytes / 1e6:.1f}"),
        ("bare aiocoap (µs/request)", lambda r: f"{r.bare_us:.0f}"),
        ("2.03 (µs/request, ÷ bare)", lambda r: f"{r.valid_us:.0f} {r.cpu_ratio_valid:.2f}x"),
        ("cached delta (µs, ÷ bare)", lambda r: f"{r.delta_us:.0f} {r.cpu_ratio_delta:.2f}x"),
        ("first after edit (µs, ÷ delta)",
         lambda r: f"{r.first_after_edit_us:.0f} {r.cpu_ratio_first_after_edit:.2f}x"),
        ("p50 / p99 latency (ms)", lambda r: f"{r.p50_ms:.1f}/{r.p99_ms:.1f}"),
        ("retransmissions", lambda r: f"{r.retransmissions}"),
        ("write visible after (s)", lambda r: f"{r.visible_delay_s:.2f}"),
        ("DB growth per device, edit (B)", lambda r: f"{r.db_growth_per_device:.0f}"),
        ("delta size (B)", lambda r: f"{r.delta_bytes:.0f}"),
    ]  # fmt: skip
    for label, shown in fields:
        lines.append(f"{label:34}" + "".join(f"{shown(r):>14}" for r in rows))
    lines.append("targets (issue 12):")
    judged = [verdicts(row, rows[0]) for row in rows]
    for name in dict.fromkeys(name for found in judged for name in found):
        marks = "".join(
            f"{('PASS' if found[name] else 'MISS') if name in found else '-':>14}"
            for found in judged
        )
        if len(name) <= 32:
            lines.append(f"  {name:32}{marks}")
        else:  # the name on its own line
            lines.extend((f"  {name}", f"{'':34}{marks}"))
    return "\n".join(lines)
