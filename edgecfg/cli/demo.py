"""``edgecfg demo``: a local walk-through on an embedded SQLite file.

It loads the fixture schema (and its evolution), builds a valid config for
each device type, stores configs as content-addressed blobs with a layer
revision history, registers a fleet, shows ETags and delta sizes, then runs a
gateway and a fleet of agents over OSCORE on loopback (:mod:`demo_loopback`).
Ctrl-C stops it cleanly (exit 130).
"""

from __future__ import annotations

import gc
import json
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import cast

from edgecfg.cli.demo_loopback import run_fleet
from edgecfg.cli.files import read_bytes
from edgecfg.cli.interrupt import run_interruptibly
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import GLOBAL, device_layer, layer_from_parts, layer_to_document
from edgecfg.core.schema_document import check_evolution
from edgecfg.core.tree import Tree, set_value
from edgecfg.errors import CommandError, WriteRefused
from edgecfg.fleet.fleet import SCHEMA_SETTING, Fleet
from edgecfg.sim.configs import config_for_schema
from edgecfg.store import DeviceRecord, SQLiteStore
from edgecfg.wire.cbor import encode, etag
from edgecfg.wire.delta import apply_delta, delta_kind, make_delta
from edgecfg.wire.documents import read_schema

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
FLEET_SIZE = 10_000


def _say(step: str, detail: str = "") -> None:
    print(f"  {step:<34} {detail}")


def run_demo(*, keep: bool, agents: int = 50) -> int:
    """Run the walk-through; returns 0 when every step checked out."""
    schema_file = FIXTURES / "schema" / "device.json"
    if not schema_file.is_file():
        raise CommandError(f"{schema_file}: fixture schema missing (run from a source checkout)")
    folder = Path(tempfile.mkdtemp(prefix="edgecfg-demo-"))
    try:
        _walk_through(folder / "edgecfg.db", schema_file)
        if agents > 0:
            run_interruptibly(run_fleet(folder, schema_file, agents=agents))
    finally:
        if keep:
            print(f"\ndemo folder kept at {folder} (edgecfg.db, fleet.db, agents/, credentials/)")
        else:
            gc.collect()  # aiocoap saves OSCORE sequence numbers when a context is collected
            shutil.rmtree(folder, ignore_errors=True)
    return 0


def _walk_through(db: Path, schema_file: Path) -> None:
    now = time.time()
    print(f"edgecfg demo: embedded SQLite at {db}\n")
    with SQLiteStore(db) as store:
        print("1. schema")
        v1_bytes = read_bytes(str(schema_file))
        v1 = read_schema(v1_bytes, "json", source=schema_file.name)
        store.put_schema(v1.name, v1.version, v1_bytes, now=now)
        _say(f"{v1.name} v{v1.version}", f"{len(v1)} keys, ids stable across versions")
        v2_file = schema_file.with_name("device-v2.json")
        v2_bytes = read_bytes(str(v2_file))
        v2 = read_schema(v2_bytes, "json", source=v2_file.name)
        check_evolution([v1], v2)
        store.put_schema(v2.name, v2.version, v2_bytes, now=now)
        _say(f"{v2.name} v{v2.version}", f"{len(v2)} keys; evolution from v1 checked")

        print("\n2. one config per device type, validated and stored by ETag")
        types = json.loads(read_bytes(str(FIXTURES / "device_types.json")))["device_types"]
        configs: dict[str, Tree] = {}
        for device_type in cast(list[dict[str, object]], types):
            hardware = str(device_type["hardware"])
            config = config_for_schema(v1, seed=len(configs), hardware=hardware)
            violations = v1.validate(config, hardware=hardware)
            if violations:
                raise CommandError(f"generated config for {hardware} is invalid: {violations[0]}")
            tag = store.put_blob(encode(config))
            configs[hardware] = config
            _say(str(device_type["id"]), f"ETag {tag.hex()}  {len(encode(config))} bytes CBOR")
        again = store.put_blob(encode(next(iter(configs.values()))))
        _say("same config stored again", f"ETag {again.hex()} (content-addressed: one copy)")

        print("\n3. layer revisions with history (each revision a content-addressed blob)")
        layer = LayerId("hardware/nbiot-sensor-r3")
        interval = ("net", "uplink", "interval_s")
        head = None
        for seconds, message in ((3600, "hourly uplink"), (7200, "uplink every 2 h")):
            document = layer_to_document(layer_from_parts(sets={interval: seconds}))
            head = store.append_layer_revision(
                layer, store.put_blob(encode(document)), author="ops", message=message,
                parent=head.revision if head else None, now=now + seconds / 60,
            )  # fmt: skip
        for revision in store.layer_history(layer):
            _say(
                f"{layer} r{revision.revision}",
                f"ETag {revision.content.hex()}  by {revision.author}: {revision.message}",
            )
        first = configs["nbiot-sensor-r3"]
        second = set_value(first, interval, 7200)
        if v1.validate(second, hardware="nbiot-sensor-r3"):
            raise CommandError("the edited config breaks the schema")

        print("\n4. the delta a sensor fetches for that change of its config")
        delta = make_delta(first, second, schema=v1)
        applied = apply_delta(first, delta)
        if etag(applied) != etag(second):
            raise CommandError("delta did not reproduce the new revision")
        full = len(encode(second))
        _say(
            "r1 -> r2",
            f"{len(delta)} bytes ({delta_kind(delta)}) instead of {full} bytes: "
            f"{100 * len(delta) / full:.2f}%",
        )

        print(f"\n5. a fleet of {FLEET_SIZE:,} devices")
        rng = random.Random(7)
        hardware_names = sorted(configs)
        records: list[DeviceRecord] = []
        for number in range(FLEET_SIZE):
            hardware = rng.choice(hardware_names)
            groups = {
                "region": f"eu/eu-{rng.randint(1, 4)}/site-{rng.randint(1, 40)}",
                "function": rng.choice(["metering", "environment", "security"]),
                "hardware": hardware,
            }
            records.append(
                DeviceRecord(
                    id=DeviceId(f"dev-{number:05d}"),
                    groups=groups,
                    hardware=hardware,
                    firmware="2.1.0",
                    agent_version="1.0.0",
                )
            )
        started = time.perf_counter()
        store.put_devices(records)
        elapsed = time.perf_counter() - started
        _say("registered", f"{store.count_devices():,} devices in {elapsed * 1000:.0f} ms")
        one = store.get_device(DeviceId("dev-04242"))
        _say("dev-04242", "groups " + ", ".join(f"{d}={p}" for d, p in sorted(one.groups.items())))
        in_site = sum(1 for _ in store.iter_devices(group=("region", "eu/eu-2")))
        _say("devices in region eu/eu-2", f"{in_site:,}")
        _groups(store, now)
    print("\ndemo finished: schema, blobs, revisions, delta, registry and groups all checked")


def _groups(store: SQLiteStore, now: float) -> None:
    print("\n6. groups: inheritance, a lock, a refused edit, explain and a dry run")
    store.put_setting(SCHEMA_SETTING, b"edgecfg-device")
    fleet = Fleet(store)
    interval = ("net", "uplink", "interval_s")
    for device in ("dev-00000", "dev-00001"):  # the required per-device keys
        fleet.write_layer(
            device_layer(device),
            layer_from_parts({"device": {"id": device}, "security": {"psk_identity": device}}),
            author="provisioning", message="identity", now=now,
        )  # fmt: skip
    started = time.perf_counter()
    _revision, impact = fleet.write_layer(
        LayerId("region/eu"), layer_from_parts(sets={interval: 1800}),
        author="ops", message="eu uplink every 30 min", now=now + 1,
    )  # fmt: skip
    elapsed = (time.perf_counter() - started) * 1000
    _say(
        "region/eu sets interval_s=1800",
        f"{impact.changed:,} of {impact.reached:,} devices change ({elapsed:.0f} ms)",
    )
    fleet.write_layer(
        GLOBAL, layer_from_parts(locks=[("net", "coap")]), author="netops",
        message="CoAP transport settings are global", now=now + 2,
    )  # fmt: skip
    _say("global locks net.coap", "nothing below may override it")
    try:
        fleet.write_layer(
            LayerId("region/eu/eu-1"), layer_from_parts(sets={interval: 5}),
            author="ops", message="too fast", now=now + 3,
        )  # fmt: skip
    except WriteRefused as refused:
        _say("region/eu/eu-1 sets interval_s=5", f"refused: {refused}")
    else:  # pragma: no cover - the schema forbids it
        raise CommandError("an invalid edit was accepted")
    device = DeviceId("dev-00001")
    [why] = fleet.explain(device, interval)
    chain = " < ".join(f"{step.layer} {step.status}" for step in why.steps)
    _say(f"explain {device} interval_s", f"{why.value} from {why.source}: {chain}")
    edit = layer_from_parts(sets={("log", "level"): "debug"})
    dry = fleet.impact(LayerId("function/metering"), edit)
    _say(
        "dry run: function/metering log=debug",
        f"would change {dry.changed:,} of {dry.reached:,} devices, "
        f"e.g. {', '.join(dry.sample[:3])}",
    )
