"""``edgecfg demo``: a local walk-through on an embedded SQLite file.

It loads the fixture schema (and its evolution), builds a valid config for
each device type, stores configs as content-addressed blobs with a layer
revision history, registers a fleet, and shows ETags and delta sizes.  Later
issues grow it into the full gateway-plus-fleet demo.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import cast

from edgecfg.cli.files import CommandError, read_bytes
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.schema import check_evolution
from edgecfg.core.tree import Tree, set_value
from edgecfg.sim.configs import config_for_schema
from edgecfg.store import DeviceRecord, SQLiteStore
from edgecfg.wire.cbor import encode, etag
from edgecfg.wire.delta import apply_delta, delta_kind, make_delta
from edgecfg.wire.documents import read_schema

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
FLEET_SIZE = 10_000


def _say(step: str, detail: str = "") -> None:
    print(f"  {step:<34} {detail}")


def run_demo(*, keep: bool) -> int:
    """Run the walk-through; returns 0 when every step checked out."""
    schema_file = FIXTURES / "schema" / "device.json"
    if not schema_file.is_file():
        raise CommandError(f"{schema_file}: fixture schema missing (run from a source checkout)")
    folder = Path(tempfile.mkdtemp(prefix="edgecfg-demo-"))
    try:
        _walk_through(folder / "edgecfg.db", schema_file)
    finally:
        if keep:
            print(f"\ndatabase kept at {folder / 'edgecfg.db'}")
        else:
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

        print("\n3. layer revisions with history")
        layer = LayerId("hardware/nbiot-sensor-r3")
        first = configs["nbiot-sensor-r3"]
        head = store.append_layer_revision(
            layer, store.put_blob(encode(first)), parent=None, author="ops",
            message="initial", now=now,
        )  # fmt: skip
        second = set_value(first, ("net", "uplink", "interval_s"), 7200)
        if v1.validate(second, hardware="nbiot-sensor-r3"):
            raise CommandError("the edited config breaks the schema")
        head = store.append_layer_revision(
            layer, store.put_blob(encode(second)), parent=head.revision, author="ops",
            message="uplink every 2 h", now=now + 60,
        )  # fmt: skip
        for revision in store.layer_history(layer):
            _say(
                f"{layer} r{revision.revision}",
                f"ETag {revision.content.hex()}  by {revision.author}: {revision.message}",
            )

        print("\n4. the delta a device would fetch between those revisions")
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
        _say("dev-04242", f"groups {dict(one.groups)}")
        in_site = sum(1 for _ in store.iter_devices(group=("region", "eu/eu-2")))
        _say("devices in region eu/eu-2", f"{in_site:,}")
    print("\ndemo finished: schema, blobs, revisions, delta and registry all checked")
