"""Failover (issue 13): three gateway processes on one PostgreSQL database,
300 OSCORE agents spread across them by a UDP balancer (edgecfg/sim/balancer),
group edits in between, one gateway killed with SIGKILL in the middle of a
sync round.  Its devices move to the others (replay-window recovery with
Echo, RFC 8613 Appendix B.1.2) and every device converges to its effective
configuration.  Asserted: nothing lost (every device holds its current
config and the database recorded it as applied), no (kid, Partial IV) pair
generated twice by any gateway (each gateway writes what it generates with
``--debug-piv-log``), no device holds another device's config.  The figures
(times, moves, Partial IVs) are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import aiocoap
import pytest
from aiocoap.numbers.codes import Code

from edgecfg.agent.coap import LinkDown
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import device_layer, layer_from_parts, layer_to_document
from edgecfg.crypto import RecordCipher, load_or_create_dev_key
from edgecfg.fleet.credentials import Enrolment, Secret, seal, write_peer_side
from edgecfg.fleet.fleet import Fleet
from edgecfg.sim.balancer import UdpBalancer
from edgecfg.sim.loopback_fleet import REGIONS, SimulatedDevice, SimulatedFleet
from edgecfg.store import DeviceRecord, PostgresStore
from edgecfg.wire.cbor import encode
from tests.paths import SCHEMA
from tests.store.helpers import POSTGRES_URL, postgres_unreachable

DEVICES = 300
GATEWAYS = 3
INTERVAL = ("net", "uplink", "interval_s")


@pytest.fixture
def schema() -> Iterator[str]:
    reason = postgres_unreachable()
    if reason is not None:
        pytest.skip(reason)
    name = f"t_{uuid.uuid4().hex[:16]}"
    try:
        yield name
    finally:
        with PostgresStore(POSTGRES_URL, schema=name) as store:
            store.drop_schema()


def _populate(url: str, devices: list[str], cipher: RecordCipher) -> dict[str, Enrolment]:
    """The fleet, written in bulk: devices, their identity layers, credentials."""
    now = time.time()
    # test data only: this writer's commits need not wait for the disk (the
    # gateways' reservations and reports stay durable)
    with PostgresStore(f"{url}%20-csynchronous_commit%3Doff") as store:
        fleet = Fleet(store)
        fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=now)
        store.put_devices([
            DeviceRecord(DeviceId(device), {"region": REGIONS[number % len(REGIONS)]},
                         hardware="nbiot-sensor-r3", firmware="2.1.0", agent_version="1.0.0")
            for number, device in enumerate(devices)
        ])  # fmt: skip
        for device in devices:
            own = layer_from_parts({"device": {"id": device}, "security": {"psk_identity": device}})
            blob = store.put_blob(encode(layer_to_document(own)))
            store.append_layer_revision(
                device_layer(device), blob, parent=None, author="provisioning",
                message="identity", now=now,
            )  # fmt: skip
        secrets = {device: Secret.generate() for device in devices}
        records = store.enroll_many(
            [("device", d, seal(cipher, "device", d, secrets[d])) for d in devices], now=now
        )
    return {record.name: Enrolment(record, secrets[record.name]) for record in records}


def _edit(store: PostgresStore, layer: str, value: int) -> None:
    """An operator's edit, as the CLI makes it: another writer on the database."""
    Fleet(store).write_layer(LayerId(layer), layer_from_parts(sets={INTERVAL: value}),
                             author="ops", message="failover test", now=time.time())  # fmt: skip


def _start_gateway(url: str, key: Path, piv_log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edgecfg.cli.main", "gateway", "serve", "--db", url,
         "--bind", "127.0.0.1:0", "--master-key", str(key), "--debug-piv-log", str(piv_log)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # SIGABRT prints every thread's stack
    )  # fmt: skip


def _stopped(process: subprocess.Popen[str]) -> None:
    """Wait for a terminated gateway; one that hangs is aborted, and the test
    fails with the stacks of its threads (faulthandler) rather than a bare timeout."""
    try:
        process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        _, stderr = process.communicate(timeout=30)
        pytest.fail(f"a gateway did not stop within 30 s of SIGTERM:\n{stderr[-6000:]}")


def _port_of(process: subprocess.Popen[str]) -> int:
    assert process.stdout is not None
    banner = process.stdout.readline()
    assert "on coap://127.0.0.1:" in banner, process.stderr.read() if process.stderr else banner
    return int(banner.split("coap://127.0.0.1:")[1].split()[0])


async def _round(
    members: list[SimulatedDevice],
    *,
    concurrency: int = 48,
    after: int = -1,
    then: Callable[[], None] | None = None,
) -> tuple[Counter[str], float]:
    """Every member syncs once; ``then()`` runs once ``after`` syncs finished."""
    gate = asyncio.Semaphore(concurrency)
    outcomes: Counter[str] = Counter()
    started = time.monotonic()

    async def one(member: SimulatedDevice) -> None:
        async with gate:
            try:
                outcomes[(await member.agent.sync()).outcome] += 1
            except LinkDown:
                outcomes["link-down"] += 1
        if sum(outcomes.values()) == after and then is not None:
            then()

    await asyncio.gather(*(one(member) for member in members))
    return outcomes, time.monotonic() - started


async def _caught_up(ports: list[int]) -> None:
    """Until every gateway answers at once: it has read the fleet the test
    wrote from its change log (that read holds its event loop)."""
    client = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        for port in ports:
            quick = 0
            while quick < 2:
                started = time.monotonic()
                request = aiocoap.Message(
                    code=Code.GET, uri=f"coap://127.0.0.1:{port}/.well-known/core"
                )
                await asyncio.wait_for(client.request(request).response, 30)
                quick = quick + 1 if time.monotonic() - started < 0.2 else 0
    finally:
        await client.shutdown()


def _effective(store: PostgresStore, devices: list[str]) -> dict[str, bytes]:
    fleet = Fleet(store)
    return {device: bytes(fleet.etag(DeviceId(device))) for device in devices}


def _behind(simulated: SimulatedFleet, effective: dict[str, bytes]) -> list[SimulatedDevice]:
    behind: list[SimulatedDevice] = []
    for member in simulated.members:
        held = member.agent.state.load_config()
        if held is None or bytes(held.etag) != effective[member.device]:
            behind.append(member)
    return behind


@pytest.fixture
def quick(tmp_path: Path) -> Iterator[Path]:
    """The agents' folders in memory (tmpfs) where there is one: 300 agents'
    fsyncs on a busy disk would stall the one event loop they share, and the
    agents' durability is tested elsewhere (tests/agent)."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="edgecfg-failover-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def test_a_killed_gateway_s_devices_move_and_every_device_converges(
    schema: str, tmp_path: Path, quick: Path
) -> None:
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    key_file = tmp_path / "master-key"
    cipher = RecordCipher(load_or_create_dev_key(key_file))
    devices = [f"node-{n:03d}" for n in range(DEVICES)]
    figures: dict[str, object] = {}
    t0 = time.monotonic()
    logs = [tmp_path / f"piv-{n}.log" for n in range(GATEWAYS)]
    processes: list[subprocess.Popen[str]] = []
    balancer: UdpBalancer | None = None
    simulated: SimulatedFleet | None = None
    try:
        with PostgresStore(POSTGRES_URL, schema=schema):  # the layout, for the gateways
            pass
        # the gateways start on the empty layout while the fleet is written:
        # they pick it all up from the change log
        processes.extend(_start_gateway(url, key_file, log) for log in logs)
        enrolments = _populate(url, devices, cipher)
        figures["setup_s"] = round(time.monotonic() - t0, 1)
        ports = [_port_of(process) for process in processes]
        figures["gateways_up_s"] = round(time.monotonic() - t0, 1)
        await _caught_up(ports)
        # 3 s of silence marks a gateway down: well above a busy gateway's pause
        balancer = UdpBalancer([("127.0.0.1", port) for port in ports], dead_after_s=3.0)
        await balancer.start()
        credentials = {
            device: write_peer_side(enrolments[device], quick / "creds" / device,
                                    gateway=balancer.uri)
            for device in devices
        }  # fmt: skip
        simulated = SimulatedFleet(balancer.uri, devices, quick / "agents",
                                   ack_timeout=0.5, credentials=credentials)  # fmt: skip
        members = simulated.members
        figures["agents_ready_s"] = round(time.monotonic() - t0, 1)

        first, figures["first_round_s"] = await _round(members)
        assert first["link-down"] == 0, first
        spread = [balancer.routing.clients_of(n) for n in range(GATEWAYS)]
        assert min(spread) >= DEVICES // GATEWAYS - 1, spread

        with PostgresStore(POSTGRES_URL, schema=schema) as store:
            _edit(store, "region/eu", 700)
        victim = processes[0]
        killed_at: list[float] = []

        def kill() -> None:
            victim.send_signal(signal.SIGKILL)  # mid-sync: a third of the round is done
            killed_at.append(time.monotonic())

        during, figures["round_with_kill_s"] = await _round(members, after=DEVICES // 3, then=kill)
        assert killed_at, "the victim was never killed"
        with PostgresStore(POSTGRES_URL, schema=schema) as store:
            _edit(store, "region/us", 1300)  # an edit after the failover
            effective = _effective(store, devices)
        rounds = 0
        behind = _behind(simulated, effective)
        while behind and rounds < 4:
            rounds += 1
            await _round(behind)
            behind = _behind(simulated, effective)
        figures["kill_to_converged_s"] = round(time.monotonic() - killed_at[0], 1)
        figures["catch_up_rounds"] = rounds
        figures["outcomes_during_kill"] = dict(during)
        assert not behind, f"{len(behind)} device(s) did not converge, e.g. {behind[0].device}"
        # every device once more: the victim's last ones move too, and all are current
        last, figures["last_round_s"] = await _round(members)
        assert last == Counter({"current": DEVICES}), last
        figures["moved_clients"] = balancer.routing.moved
        # (a live gateway silent for 3 s on a very busy machine may be taken
        # for dead too: its devices move as well, which changes nothing here)
        assert 0 in balancer.routing.down
        assert balancer.routing.moved >= spread[0]
        assert balancer.routing.clients_of(0) == 0

        # no device holds another device's config
        for member in members:
            held = member.agent.state.load_config()
            assert held is not None
            assert held.tree["device"]["id"] == member.device  # type: ignore[index]
        # nothing lost: the database recorded what every device applied
        with PostgresStore(POSTGRES_URL, schema=schema) as store:
            applied = {d: store.get_device(DeviceId(d)).applied_etag for d in devices}
        assert all(bytes(applied[d] or b"") == effective[d] for d in devices), "a report was lost"
    finally:
        if simulated is not None:
            await simulated.close()
        if balancer is not None:
            await balancer.close()
        for process in processes:
            if process.poll() is None:
                process.terminate()
            _stopped(process)

    assert all(process.returncode == 0 for process in processes[1:])

    pairs: Counter[tuple[str, int]] = Counter()
    per_gateway: list[int] = []
    for log in logs:
        lines = log.read_text().split()
        entries = list(zip(lines[::2], map(int, lines[1::2]), strict=True))
        per_gateway.append(len(entries))
        pairs.update(entries)
    reused = [pair for pair, count in pairs.items() if count > 1]
    assert not reused, f"(kid, Partial IV) used twice: {reused[:5]}"
    figures["partial_ivs_per_gateway"] = per_gateway
    figures["total_s"] = round(time.monotonic() - t0, 1)
    assert sum(per_gateway[1:]) >= DEVICES // GATEWAYS  # at least the moved devices' Echo
    print(f"\nfailover figures: {figures}")
