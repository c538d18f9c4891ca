"""``edgecfg bench sync``: what a sync costs the gateway and the device.

The gateway and a bare aiocoap resource (serving a fixed payload of the same
size: what any CoAP server must at least spend) each run in a child process,
so their CPU time is their own (:mod:`edgecfg.bench.load`).  The parent drives both
with the same concurrent requests and reports:

- gateway CPU per sync against the bare server's, per case (target <= 1.3x);
- bytes on the wire per sync, both directions, CoAP headers included, and
  round trips, measured by a real agent (target: single edit <= 120 B);
- syncs per second with many concurrent devices.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

from edgecfg.agent.coap import CoapLink
from edgecfg.agent.sealed_store import LocalState
from edgecfg.agent.sync import Agent, SyncResult
from edgecfg.bench.load import Load, Target, drive, response_size, run_bare, run_gateway
from edgecfg.bench.measure import free_udp_port
from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.core.layers import device_layer, layer_from_parts
from edgecfg.core.tree import Value
from edgecfg.errors import CommandError
from edgecfg.fleet.fleet import Fleet
from edgecfg.sim.loopback_fleet import REGIONS
from edgecfg.store import DeviceRecord, SQLiteStore
from edgecfg.wire.numbers import ContentFormat
from edgecfg.wire.senml import Record, encode_senml

FIXTURE_SCHEMA: Final = Path(__file__).resolve().parents[2] / "fixtures" / "schema" / "device.json"
INTERVAL: Final = ("net", "uplink", "interval_s")
TICKS: Final = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the fleet


def _prepare(db: Path, devices: int) -> list[str]:
    names = [f"bench-{n:04d}" for n in range(devices)]
    with SQLiteStore(db) as store:
        fleet = Fleet(store)
        fleet.load_schema(FIXTURE_SCHEMA.read_bytes(), "json", source="bench", now=time.time())
        for number, name in enumerate(names):
            fleet.add_device(
                DeviceRecord(
                    DeviceId(name),
                    {"region": REGIONS[number % len(REGIONS)], "function": "metering"},
                    hardware="nbiot-sensor-r3",
                    firmware="2.1.0",
                    agent_version="1.0.0",
                )
            )
            fleet.write_layer(
                device_layer(name),
                layer_from_parts({"device": {"id": name}, "security": {"psk_identity": name}}),
                author="bench",
                message="identity",
                now=time.time(),
            )
    return names


def _edit(db: Path, values: Mapping[tuple[str, ...], Value], message: str) -> None:
    with SQLiteStore(db) as store:
        Fleet(store).write_layer(
            LayerId("function/metering"),
            layer_from_parts(sets=values),
            author="bench",
            message=message,
            now=time.time(),
        )


def _etags(db: Path, names: Sequence[str]) -> dict[str, ETag]:
    with SQLiteStore(db) as store:
        fleet = Fleet(store)
        tags = {name: fleet.etag(DeviceId(name)) for name in names}
        # make every version the gateway will be asked for known to it
        for name in names:
            store.put_blob(fleet.encoded(DeviceId(name)).cbor)
    return tags


async def _wire(uri: str, folder: Path, db: Path, device: str) -> dict[str, dict[str, float]]:
    """Bytes and round trips of one real agent, per case."""
    figures: dict[str, dict[str, float]] = {}
    async with CoapLink(uri, ack_timeout=1.0) as link:
        agent = Agent(link, LocalState(folder / "wire-agent"), device=device)
        full = await agent.sync()
        figures["first sync (full config)"] = _figures(full)
        own = await agent.sync()
        figures["unchanged, own wake"] = _figures(own)
        pack = [Record("battery_v", 3.1, "V", 0.0)]
        ride = await agent.telemetry(pack)
        # the same POST without the held version: what riding adds is the difference
        traffic = link.traffic
        before = traffic.bytes_up + traffic.bytes_down
        await link.request(
            "POST", ("tel", device), payload=encode_senml(pack),
            content_format=ContentFormat.SENML_CBOR,
        )  # fmt: skip
        alone = traffic.bytes_up + traffic.bytes_down - before
        figures["unchanged, piggyback"] = {
            "bytes": float(ride.bytes_up + ride.bytes_down - alone),
            "round_trips": float(ride.round_trips - 1),
            "telemetry_bytes": float(alone),
        }
        _edit(db, {INTERVAL: 1234}, "single edit")
        await asyncio.sleep(0.5)  # the gateway picks the edit up from the database
        figures["single edit"] = _figures(await agent.sync())
        _edit(
            db,
            {
                INTERVAL: 1500,
                ("log", "level"): "debug",
                ("net", "coap", "max_retransmit"): 5,
                ("telemetry", "interval_s"): 900,
                ("power", "sleep", "deep_enabled"): True,
            },
            "typical change",
        )
        await asyncio.sleep(0.5)
        figures["typical change (5 keys)"] = _figures(await agent.sync())
    return figures


def _figures(result: SyncResult) -> dict[str, float]:
    return {
        "bytes": float(result.bytes_up + result.bytes_down),
        "round_trips": float(result.round_trips),
    }


@dataclass(frozen=True, slots=True)
class _Run:
    """Everything one benchmark run works with."""

    uri: str
    pid: int
    db: Path
    folder: Path
    names: list[str]
    old: dict[str, ETag]
    requests: int
    concurrency: int
    bare_port: int


def run_sync_bench(*, devices: int, requests: int, concurrency: int, as_json: bool) -> int:
    """Entry point of ``edgecfg bench sync``."""
    with tempfile.TemporaryDirectory(prefix="edgecfg-bench-") as tmp:
        folder = Path(tmp)
        db = folder / "fleet.db"
        names = _prepare(db, devices)
        old = _etags(db, names)
        spawn = multiprocessing.get_context("spawn")
        port, bare_port = free_udp_port(), free_udp_port()
        ready = spawn.Event()
        gateway = spawn.Process(target=run_gateway, args=(str(db), port, ready), daemon=True)
        gateway.start()
        try:
            if not ready.wait(60):
                raise CommandError("the benchmark gateway did not start")
            run = _Run(
                uri=f"coap://127.0.0.1:{port}",
                pid=gateway.pid or 0,
                db=db,
                folder=folder,
                names=names,
                old=old,
                requests=requests,
                concurrency=concurrency,
                bare_port=bare_port,
            )
            report = asyncio.run(_measure(run))
        finally:
            gateway.terminate()
            gateway.join(10)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print(report, devices=devices, concurrency=concurrency)
    return 0


async def _measure(run: _Run) -> dict[str, object]:
    wire = await _wire(run.uri, run.folder, run.db, run.names[0])
    current = _etags(run.db, run.names)  # after the wire run's edits: what devices hold
    names, uri = run.names, run.uri

    def unchanged(i: int) -> Target:
        name = names[i % len(names)]
        return Target(f"{uri}/cfg/{name}", current[name])

    def delta(i: int) -> Target:
        name = names[i % len(names)]
        return Target(f"{uri}/cfg/{name}", run.old[name])

    def full(i: int) -> Target:
        return Target(f"{uri}/cfg/{names[i % len(names)]}")

    cases: dict[str, Callable[[int], Target]] = {
        "unchanged (2.03)": unchanged,
        "delta": delta,
        "full config": full,
    }
    sizes = {name: await response_size(make(0)) for name, make in cases.items()}
    counts = {name: max(1, run.requests // 8) if name == "full config" else run.requests
              for name in cases}  # fmt: skip
    ours = {
        name: await drive(run.pid, make, requests=counts[name], concurrency=run.concurrency)
        for name, make in cases.items()
    }
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Event()
    resources = {f"c{index}": size for index, size in enumerate(sizes.values())}
    process = spawn.Process(target=run_bare, args=(resources, run.bare_port, ready), daemon=True)
    process.start()
    try:
        if not ready.wait(60):
            raise CommandError("the baseline server did not start")
        base = {
            name: await drive(
                process.pid or 0,
                lambda _, n=index: Target(f"coap://127.0.0.1:{run.bare_port}/c{n}"),
                requests=counts[name],
                concurrency=run.concurrency,
            )
            for index, name in enumerate(cases)
        }
    finally:
        process.terminate()
        process.join(10)
    return {
        "wire": wire,
        "cpu": {name: _cpu_row(ours[name], base[name], sizes[name]) for name in cases},
    }


def _cpu_row(ours: Load, base: Load, payload: int) -> dict[str, float | None]:
    """One CPU row; a figure below /proc's resolution is null, never 0."""
    resolved = ours.resolved and base.resolved
    return {
        "gateway_us_per_sync": ours.cpu_per_request_us if ours.resolved else None,
        "bare_us_per_request": base.cpu_per_request_us if base.resolved else None,
        "ratio": ours.cpu_per_request_us / base.cpu_per_request_us if resolved else None,
        "gateway_syncs_per_s": ours.per_second,
        "payload_bytes": float(payload),
    }


def _print(report: dict[str, object], *, devices: int, concurrency: int) -> None:
    wire = cast(dict[str, dict[str, float]], report["wire"])
    cpu = cast(dict[str, dict[str, float | None]], report["cpu"])
    print("bytes on the wire per sync (both directions, CoAP headers included), one agent")
    print(f"  {'case':<28} {'bytes':>7} {'round trips':>12}")
    for name, figures in wire.items():
        extra = ""
        if "telemetry_bytes" in figures:
            extra = f"   (the telemetry POST itself: {figures['telemetry_bytes']:.0f} B)"
        print(f"  {name:<28} {figures['bytes']:>7.0f} {figures['round_trips']:>12.0f}{extra}")
    print()
    print(
        "gateway CPU per sync vs a bare aiocoap resource with the same payload "
        f"({devices} devices, {concurrency} concurrent requests, child processes)"
    )
    print(
        f"  {'case':<18} {'payload B':>9} {'gateway us':>11} {'bare us':>9} "
        f"{'ratio':>6} {'syncs/s':>8}"
    )
    for name, row in cpu.items():
        print(
            f"  {name:<18} {_shown(row['payload_bytes'], 9, 0)} "
            f"{_shown(row['gateway_us_per_sync'], 11, 0)} "
            f"{_shown(row['bare_us_per_request'], 9, 0)} {_shown(row['ratio'], 6, 2)} "
            f"{_shown(row['gateway_syncs_per_s'], 8, 0)}"
        )
    single = wire.get("single edit", {}).get("bytes", 0.0)
    print()
    print(
        f"{'PASS' if single <= 120 else 'MISS'}  single edit <= 120 B on the wire: {single:.0f} B"
    )
    for name, row in cpu.items():
        ratio = row["ratio"]
        if ratio is None:
            print(f"UNMEASURED  gateway CPU <= 1.3x bare, {name}: below /proc's resolution")
            continue
        verdict = "PASS" if ratio <= 1.3 else "MISS"
        print(f"{verdict}  gateway CPU <= 1.3x bare, {name}: {ratio:.2f}x")


def _shown(figure: float | None, width: int, decimals: int) -> str:
    return f"{'-':>{width}}" if figure is None else f"{figure:>{width}.{decimals}f}"
