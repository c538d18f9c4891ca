"""The store-backed fleet: scenarios on the fixture schema (regions x functions x hardware)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import GLOBAL, Hierarchy, Layer, device_layer, layer_from_parts
from edgecfg.core.path import parse_path
from edgecfg.core.tree import UNSET, Value, get
from edgecfg.errors import (
    DirectiveConflict,
    FleetValidationError,
    LockViolation,
    NotFound,
    UsageError,
)
from edgecfg.fleet.fleet import Fleet
from edgecfg.store import DeviceRecord, MemoryStore, SQLiteStore
from edgecfg.wire.cbor import etag

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "fixtures" / "schema" / "device.json"
INTERVAL = parse_path("net.uplink.interval_s")
SENSOR, CAMERA = "nbiot-sensor-r3", "lte-camera-c2"


def path(text: str) -> tuple[str, ...]:
    return parse_path(text)


def record(number: int, region: str, function: str, hardware: str = SENSOR) -> DeviceRecord:
    return DeviceRecord(
        DeviceId(f"dev-{number:04d}"),
        {"region": region, "function": function, "hardware": hardware},
        hardware=hardware,
        firmware="2.1.0",
        agent_version="1.0.0",
    )


@pytest.fixture
def fleet() -> Fleet:
    """12 devices: 2 regions x 2 sites x 3 functions, sensors and cameras."""
    fleet = Fleet(MemoryStore())
    fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    number = 0
    for region in ("eu/eu-west/site-1", "eu/eu-north/site-2"):
        for function in ("metering", "environment", "security"):
            for hardware in (SENSOR, CAMERA):
                fleet.add_device(record(number, region, function, hardware))
                number += 1
    return fleet


def write(fleet: Fleet, layer: str, **kwargs: Value) -> None:
    """Set values in a layer; ``net__uplink__x=1`` sets ``net.uplink.x``."""
    edit = layer_from_parts(sets={path(k.replace("__", ".")): v for k, v in kwargs.items()})
    fleet.write_layer(LayerId(layer), edit, author="test", message="m", now=2.0)


def value(fleet: Fleet, device: str, path: tuple[str, ...]) -> object:
    return get(fleet.resolve(DeviceId(device)).tree, path)


def test_deeper_groups_override_shallower_ones(fleet: Fleet) -> None:
    write(fleet, "region/eu", net__uplink__interval_s=600)
    write(fleet, "region/eu/eu-west", net__uplink__interval_s=900)
    assert value(fleet, "dev-0000", INTERVAL) == 900  # eu-west
    assert value(fleet, "dev-0006", INTERVAL) == 600  # eu-north inherits eu


def test_region_beats_function_beats_hardware_beats_global(fleet: Fleet) -> None:
    write(fleet, "global", net__uplink__interval_s=100)
    assert value(fleet, "dev-0000", INTERVAL) == 100
    write(fleet, "hardware/" + SENSOR, net__uplink__interval_s=200)
    assert value(fleet, "dev-0000", INTERVAL) == 200
    write(fleet, "function/metering", net__uplink__interval_s=300)
    assert value(fleet, "dev-0000", INTERVAL) == 300
    write(fleet, "region/eu", net__uplink__interval_s=400)
    assert value(fleet, "dev-0000", INTERVAL) == 400
    fleet.write_layer(
        device_layer("dev-0000"),
        layer_from_parts(sets={INTERVAL: 500}),
        author="t",
        message="",
        now=3,
    )
    assert value(fleet, "dev-0000", INTERVAL) == 500
    assert value(fleet, "dev-0002", INTERVAL) == 400  # other devices keep the region value


def test_a_tombstone_removes_an_inherited_value_unlike_null(fleet: Fleet) -> None:
    write(fleet, "global", device__site="hq")
    site = path("device.site")
    assert value(fleet, "dev-0000", site) == "hq"
    fleet.write_layer(
        LayerId("region/eu"), Layer(unsets=frozenset({site})), author="t", message="", now=3
    )
    assert value(fleet, "dev-0000", site) is UNSET
    write(fleet, "region/eu/eu-west", device__site=None)
    assert value(fleet, "dev-0000", site) is None
    assert "site" in fleet.resolve(DeviceId("dev-0000")).tree["device"]  # type: ignore[operator]


def test_a_lock_refuses_overrides_below_naming_lock_and_holder(fleet: Fleet) -> None:
    fleet.write_layer(
        GLOBAL, layer_from_parts(locks=[path("net.uplink")]), author="sec", message="", now=2
    )
    with pytest.raises(LockViolation) as caught:
        write(fleet, "region/eu/eu-west", net__uplink__interval_s=900)
    message = str(caught.value)
    assert "net.uplink.interval_s is locked by global (lock on net.uplink)" in message
    assert caught.value.devices == 6
    assert caught.value.examples == ("dev-0000",)
    assert fleet.layer(LayerId("region/eu/eu-west")).empty  # nothing was stored


def test_an_invalid_edit_is_refused_with_count_example_and_source(fleet: Fleet) -> None:
    with pytest.raises(FleetValidationError) as caught:
        write(fleet, "region/eu", net__uplink__interval_s=5)
    assert str(caught.value).startswith(
        "12 device(s) would violate net.uplink.interval_s (expected >= 10, got 5), "
        "e.g. dev-0000 via region/eu"
    )
    assert caught.value.devices == 12


def test_unknown_paths_are_refused_with_a_schema(fleet: Fleet) -> None:
    with pytest.raises(FleetValidationError, match="not declared by schema"):
        write(fleet, "region/eu", net__uplink__interval=5)


def test_tied_dimensions_that_disagree_are_refused(fleet: Fleet) -> None:
    fleet.set_hierarchy(Hierarchy((("hardware",), ("function", "region"))))
    write(fleet, "function/metering", net__uplink__interval_s=700)
    with pytest.raises(DirectiveConflict) as caught:
        write(fleet, "region/eu", net__uplink__interval_s=800)
    assert "function/metering" in str(caught.value)
    assert "region/eu" in str(caught.value)
    write(fleet, "region/eu", net__uplink__interval_s=700)  # agreeing is fine
    assert value(fleet, "dev-0000", INTERVAL) == 700


def test_hardware_applicability_drops_keys_and_explain_says_why(fleet: Fleet) -> None:
    sensor = fleet.resolve(DeviceId("dev-0000"))
    camera = fleet.resolve(DeviceId("dev-0001"))
    assert "camera" not in sensor.tree
    assert "camera" in camera.tree
    assert any(item.path[0] == "camera" for item in sensor.dropped)
    [explanation] = fleet.explain(DeviceId("dev-0000"), path("camera.fps"))
    assert explanation.value is UNSET
    assert explanation.dropped is not None
    assert "nbiot-sensor-r3" in explanation.dropped


def test_explain_names_layer_and_the_chain_it_overrode(fleet: Fleet) -> None:
    write(fleet, "global", net__uplink__interval_s=100)
    write(fleet, "region/eu", net__uplink__interval_s=400)
    [explanation] = fleet.explain(DeviceId("dev-0000"), INTERVAL)
    assert explanation.value == 400
    assert explanation.source == "region/eu"
    statuses = [(step.layer, step.status) for step in explanation.steps]
    assert statuses == [
        ("defaults", "overridden"),
        ("global", "overridden"),
        ("region/eu", "applied"),
    ]
    head = fleet.head(LayerId("region/eu"))
    assert head is not None
    assert head.author == "test"


def test_impact_counts_changed_devices_without_writing(fleet: Fleet) -> None:
    new = layer_from_parts(sets={INTERVAL: 1800})
    impact = fleet.impact(LayerId("function/security"), new)
    assert (impact.reached, impact.changed) == (4, 4)
    assert impact.changes[0].path == INTERVAL
    assert impact.changes[0].after == 1800
    assert fleet.layer(LayerId("function/security")).empty
    write(fleet, "region/eu/eu-west", net__uplink__interval_s=1800)
    impact = fleet.impact(LayerId("function/security"), new)
    assert (impact.reached, impact.changed) == (4, 2)  # eu-west already has 1800


def test_effective_etags_are_cached_and_invalidated(fleet: Fleet) -> None:
    device = DeviceId("dev-0000")
    first = fleet.etag(device)
    assert first == etag(fleet.resolve(device).tree)
    assert fleet.encoded(device) is fleet.encoded(device)
    write(fleet, "region/eu", net__uplink__interval_s=1200)
    assert fleet.etag(device) != first
    assert fleet.etag(device) == etag(fleet.resolve(device).tree)


def test_devices_with_identical_layers_share_one_encoding(fleet: Fleet) -> None:
    fleet.add_device(record(100, "eu/eu-west/site-1", "metering"))
    assert fleet.encoded(DeviceId("dev-0000")) is fleet.encoded(DeviceId("dev-0100"))


def test_a_device_override_gives_the_device_its_own_signature(fleet: Fleet) -> None:
    fleet.add_device(record(100, "eu/eu-west/site-1", "metering"))
    fleet.write_layer(
        device_layer("dev-0100"), layer_from_parts(sets={INTERVAL: 120}), author="t",
        message="", now=3,
    )  # fmt: skip
    assert fleet.etag(DeviceId("dev-0000")) != fleet.etag(DeviceId("dev-0100"))
    assert value(fleet, "dev-0100", INTERVAL) == 120


def test_device_add_refuses_unknown_dimensions_and_invalid_configs(fleet: Fleet) -> None:
    bad = DeviceRecord(DeviceId("x"), {"planet": "mars"})
    with pytest.raises(UsageError, match="unknown dimension 'planet'"):
        fleet.add_device(bad)
    write(fleet, "function/metering", net__uplink__interval_s=30)
    with pytest.raises(NotFound):
        fleet.device(DeviceId("x"))


def test_history_keeps_every_revision(fleet: Fleet) -> None:
    write(fleet, "region/eu", net__uplink__interval_s=600)
    write(fleet, "region/eu", net__uplink__interval_s=900)
    history = fleet.history(LayerId("region/eu"))
    assert [r.revision for r in history] == [1, 2]
    assert history[1].parent == 1


def test_free_form_fleet_without_schema_inherits_locks_and_explains() -> None:
    fleet = Fleet(MemoryStore())
    fleet.add_device(DeviceRecord(DeviceId("a"), {"region": "x/y"}))
    fleet.write_layer(
        GLOBAL, layer_from_parts({"k": {"v": 1}}, locks=[path("k.v")]), author="t", message="",
        now=1,
    )  # fmt: skip
    fleet.write_layer(
        LayerId("region/x"), layer_from_parts({"other": "o"}), author="t", message="", now=2
    )
    assert fleet.resolve(DeviceId("a")).tree == {"k": {"v": 1}, "other": "o"}
    with pytest.raises(LockViolation):
        fleet.write_layer(
            LayerId("region/x/y"), layer_from_parts({"k": {"v": 2}}), author="t", message="", now=3
        )
    [explanation] = fleet.explain(DeviceId("a"), path("k.v"))
    assert explanation.source == "global"


def test_state_survives_reopening_a_sqlite_database(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    with SQLiteStore(db) as store:
        fleet = Fleet(store)
        fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
        fleet.set_hierarchy(Hierarchy((("hardware",), ("region",), ("function",))))
        fleet.add_device(record(1, "eu/eu-west", "metering"))
        write(fleet, "region/eu", net__uplink__interval_s=600)
        write(fleet, "function/metering", net__uplink__interval_s=700)
        before = fleet.etag(DeviceId("dev-0001"))
    with SQLiteStore(db) as store:
        fleet = Fleet(store)
        assert fleet.hierarchy.ranks == (("hardware",), ("region",), ("function",))
        assert fleet.schema is not None
        assert value(fleet, "dev-0001", INTERVAL) == 700  # function now outranks region
        assert fleet.etag(DeviceId("dev-0001")) == before


def test_reordering_dimensions_that_devices_use_is_refused(fleet: Fleet) -> None:
    with pytest.raises(UsageError, match="leaves out"):
        fleet.set_hierarchy(Hierarchy((("region",),)))
