"""The main job of ``edgecfg demo``: a gateway and a fleet of agents on loopback.

Embedded SQLite in the demo's temp folder, the gateway on a free UDP port,
N simulated agents (real CoAP, one socket each).  A group change rolls to
the fleet with a progress bar, a second one rides on telemetry, and the
summary compares bytes on the wire per sync with full-config syncs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from edgecfg.bench.measure import free_udp_port
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import device_layer, layer_from_parts
from edgecfg.crypto import RecordCipher, load_or_create_dev_key
from edgecfg.errors import CommandError
from edgecfg.fleet.credentials import enroll, write_peer_side
from edgecfg.gateway.oscore import StoredCredentials
from edgecfg.gateway.server import Gateway
from edgecfg.sim.loopback_fleet import FUNCTIONS, REGIONS, FleetTally, SimulatedFleet
from edgecfg.store import DeviceRecord, SQLiteStore


def _bar(label: str) -> Callable[[int, int], None]:
    width = 30

    live = sys.stdout.isatty()

    def show(done: int, total: int) -> None:
        if not live and done != total:
            return  # no terminal: print the finished bar only
        filled = width * done // total
        sys.stdout.write(f"\r  {label:<34} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done == total:
            sys.stdout.write("\n")
        sys.stdout.flush()

    return show


def _line(what: str, tally: FleetTally) -> None:
    outcomes = ", ".join(f"{n} {o}" for o, n in sorted(tally.outcomes.items()))
    print(
        f"  {'':<34} {outcomes}; {tally.per_sync():.0f} B/sync on the wire, "
        f"{tally.round_trips / max(1, tally.syncs):.1f} round trips/sync ({what})"
    )


async def run_fleet(folder: Path, schema_file: Path, *, agents: int) -> None:
    """Gateway plus ``agents`` devices; raises CommandError if the fleet does not converge."""
    started = time.perf_counter()
    print(f"\n7. the fleet over CoAP: a gateway and {agents} agents on loopback UDP, OSCORE")
    with SQLiteStore(folder / "fleet.db") as store:
        cipher = RecordCipher(load_or_create_dev_key(folder / "fleet.db.master-key"))
        gateway = Gateway(store, credentials=StoredCredentials(store, cipher), refresh_s=0)
        gateway.fleet.load_schema(schema_file.read_bytes(), "json", source="demo", now=time.time())
        devices = [f"node-{n:03d}" for n in range(agents)]
        for number, device in enumerate(devices):
            gateway.fleet.add_device(
                DeviceRecord(
                    DeviceId(device),
                    {
                        "region": REGIONS[number % len(REGIONS)],
                        "function": FUNCTIONS[number % len(FUNCTIONS)],
                    },
                    hardware="nbiot-sensor-r3",
                    firmware="2.1.0",
                    agent_version="1.0.0",
                )
            )
            gateway.fleet.write_layer(
                device_layer(device),
                layer_from_parts({"device": {"id": device}, "security": {"psk_identity": device}}),
                author="provisioning", message="identity", now=time.time(),
            )  # fmt: skip
        port = free_udp_port()
        credentials = {
            device: write_peer_side(
                enroll(store, cipher, "device", device, now=time.time()),
                folder / "credentials" / device,
                gateway=f"coap://127.0.0.1:{port}",
            )
            for device in devices
        }
        print(f"  enrolled {agents} devices: OSCORE credentials in {folder / 'credentials'}")
        await gateway.start("127.0.0.1", port)
        fleet = SimulatedFleet(
            gateway, devices, folder / "agents", ack_timeout=0.5, credentials=credentials
        )
        try:
            print(f"  gateway on {gateway.uri}, SQLite at {folder / 'fleet.db'}")
            first = await fleet.sync_all(_bar("first sync (full configs)"))
            _line("full config, block-wise", first)
            quiet = await fleet.sync_all(_bar("nothing changed"))
            _line("2.03 Valid", quiet)
            layer = LayerId("region/eu")
            gateway.fleet.write_layer(
                layer, layer_from_parts(sets={("net", "uplink", "interval_s"): 1800}),
                author="ops", message="eu: uplink every 30 min", now=time.time(),
            )  # fmt: skip
            gateway.layer_changed(layer)
            rollout = await fleet.sync_all(_bar("region/eu: interval_s=1800"))
            _line("delta + state report", rollout)
            fn = LayerId("function/metering")
            gateway.fleet.write_layer(
                fn, layer_from_parts(sets={("log", "level"): "debug"}),
                author="ops", message="metering: debug logs", now=time.time(),
            )  # fmt: skip
            gateway.layer_changed(fn)
            ride = await fleet.telemetry_all(_bar("function/metering via telemetry"))
            _line("riding on telemetry", ride)
            converged = fleet.converged()
        finally:
            await fleet.close()
            await gateway.stop()
    if converged != agents:
        raise CommandError(f"only {converged} of {agents} devices converged")
    saved = 100 * (1 - rollout.per_sync() / first.per_sync()) if first.per_sync() else 0.0
    print(
        f"  converged: {converged}/{agents} devices; a delta sync costs "
        f"{rollout.per_sync():.0f} B vs {first.per_sync():.0f} B for a full-config sync "
        f"({saved:.1f}% less); {time.perf_counter() - started:.1f} s"
    )
