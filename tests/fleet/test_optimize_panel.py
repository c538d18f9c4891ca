"""The optimizer driver reads a fleet's day buckets into a panel and keeps
its objectives as a store setting."""

from __future__ import annotations

from typing import Any, cast

import pytest

from edgecfg.core.ids import DeviceId, ETag
from edgecfg.core.layers import device_layer, layer_from_parts
from edgecfg.core.telemetry import DAY
from edgecfg.errors import UsageError
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.optimize import OBJECTIVES_KEY, OptimizerService
from edgecfg.fleet.sync import SyncService
from edgecfg.fleet.telemetry import Pack, TelemetryService
from edgecfg.store import DeviceRecord, MemoryStore
from edgecfg.wire.senml import Record, encode_senml
from tests.paths import SCHEMA

T0 = 1_800_000_000.0 // DAY * DAY
TIMEOUT = "net.coap.ack_timeout_s"
DOC: dict[str, object] = {"objective": [
    {"name": "errors", "minimise": "errors", "settings": [TIMEOUT]},
]}  # fmt: skip


def _fleet() -> tuple[Fleet, TelemetryService]:
    store = MemoryStore()
    fleet = Fleet(store)
    fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    for name, hardware in (("near", "nb"), ("far", "nb")):
        fleet.add_device(DeviceRecord(DeviceId(name), {"region": "eu/west"}, hardware=hardware))
    return fleet, TelemetryService(store, retention_s=40 * DAY)


def _pack(device: str, at: float, *records: Record) -> Pack:
    return Pack(DeviceId(device), at, encode_senml(records), records, {"region": "eu/west"})


def test_the_panel_holds_drain_errors_and_link_quality_per_device_day() -> None:
    fleet, telemetry = _fleet()
    for day in range(3):  # a day becomes a bucket once a later day begins
        for hour, battery in ((1, 90.0 - day), (20, 89.5 - day)):
            at = T0 + day * DAY + hour * 3600
            telemetry.ingest([
                _pack("near", at, Record("battery", battery, "%EL", at),
                      Record("errors", 2.0, "1", at), Record("rsrp", -95.0, "dBm", at)),
                _pack("far", at, Record("battery", battery - 10, "%EL", at),
                      Record("errors", 5.0, "1", at), Record("rsrp", -118.0, "dBm", at)),
            ])  # fmt: skip
    service = OptimizerService(fleet)
    panel = service.panel(T0 + 3 * DAY, (TIMEOUT,))
    assert sorted(set(panel.day.tolist())) == [int(T0 // DAY), int(T0 // DAY) + 1]
    assert panel.metrics["battery_drain"].tolist() == pytest.approx([0.5] * 4)
    assert sorted(panel.metrics["errors"].tolist()) == [4.0, 4.0, 10.0, 10.0]
    assert set(panel.settings[TIMEOUT].tolist()) == {2.0}  # the schema default
    assert sorted(panel.stratum_keys) == ["nb|eu|mains|good", "nb|eu|mains|poor"]
    far = panel.stratum_keys[int(panel.strata[[r.id for r in fleet.store.iter_devices()]
                                              .index(DeviceId("far"))])]  # fmt: skip
    assert far.endswith("|poor")


def test_objectives_are_stored_checked_against_the_schema_and_read_back() -> None:
    fleet, _telemetry = _fleet()
    service = OptimizerService(fleet)
    with pytest.raises(UsageError, match="no objectives yet"):
        service.objectives()
    (objective,) = service.set_objectives(DOC)
    assert fleet.store.get_setting(OBJECTIVES_KEY) is not None
    assert service.objectives() == (objective,)
    bad = {"objective": [{"minimise": "errors", "settings": ["net.ntp.interval_s"]}]}
    with pytest.raises(UsageError, match="not declared tunable"):
        service.set_objectives(bad)
    status = service.status(T0)
    assert status["in_flight"] == [] and len(status["segments"]) == 1  # type: ignore[arg-type]


def _forty() -> tuple[Fleet, list[str]]:
    """A fleet of 40 devices of one stratum, d0 to d39."""
    fleet = Fleet(MemoryStore())
    fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    names = [f"d{n}" for n in range(40)]
    for name in names:
        fleet.add_device(DeviceRecord(DeviceId(name), {"region": "eu/west"}, hardware="nb"))
    return fleet, names


def test_settings_devices_report_give_within_device_evidence_from_a_database() -> None:
    fleet, names = _forty()
    store = fleet.store
    telemetry = TelemetryService(store, retention_s=40 * DAY)
    for day in range(7):
        at = T0 + day * DAY + 3600
        packs: list[Pack] = []
        for n, name in enumerate(names):
            moved = n < 20 and day >= 3  # half of them run 10 s from day 3 on
            errors = (5.0 if moved else 10.0) + n % 3
            timeout = 10.0 if moved else 2.0
            packs.append(_pack(name, at, Record("errors", errors, "1", at),
                               Record(f"cfg/{TIMEOUT}", timeout, "s", at)))  # fmt: skip
        telemetry.ingest(packs)
    segment = _week_segment(fleet)
    assert_moved_half(segment)
    assert segment["leading"] == segment["evidence"][0]


def test_the_gateway_records_the_settings_devices_run_so_a_database_has_evidence() -> None:
    """Devices send no ``cfg/`` records: the gateway adds the tunables' values
    of the version a device says it runs (its telemetry's ETag) at ingest."""
    fleet, names = _forty()
    store = fleet.store
    sync = SyncService(fleet)
    for day in range(7):
        at = T0 + day * DAY + 3600
        for n, name in enumerate(names):
            moved = n < 20 and day >= 3  # half of them run 10 s from day 3 on
            if moved and day == 3:
                edit = layer_from_parts(sets={("net", "coap", "ack_timeout_s"): 10.0})
                fleet.write_layer(device_layer(name), edit, author="ops", message="", now=at)
            runs = fleet.etag(DeviceId(name))  # the device applied what it is served
            pack = encode_senml([Record("errors", (5.0 if moved else 10.0) + n % 3, "1", at)])
            sync.telemetry(DeviceId(name), pack, now=at, held=runs)
    raw = store.telemetry(DeviceId("d0"))
    assert all(b"cfg/" not in blob for _, blob in raw)  # the raw packs are as sent
    assert_moved_half(_week_segment(fleet))


def test_the_settings_a_device_runs_are_read_once_a_device_day_and_version() -> None:
    fleet, _ = _forty()
    sync = SyncService(fleet)
    device = DeviceId("d0")
    pack = encode_senml([Record("errors", 1.0, "1", T0)])

    def added(at: float, held: ETag | None) -> list[str]:
        accepted = sync.accept_telemetry(device, pack, now=at, held=held)
        return [r.name for r in accepted.records if r.name.startswith("cfg/")]

    runs = fleet.etag(device)
    assert sorted(added(T0 + 60, runs)) == [f"cfg/{TIMEOUT}", "cfg/net.uplink.interval_s"]
    assert added(T0 + 120, runs) == []  # the same day and version: nothing read again
    assert added(T0 + 120, None) == []  # no version named: nothing to say
    edit = layer_from_parts(sets={("net", "coap", "ack_timeout_s"): 10.0})
    fleet.write_layer(device_layer("d0"), edit, author="ops", message="", now=T0 + 130)
    assert added(T0 + 140, runs) == []  # still on the old version: about to be updated
    assert len(added(T0 + 150, fleet.etag(device))) == 2  # the new version, the same day
    assert added(T0 + DAY + 10, fleet.etag(device)) != []  # and again the next day


def _week_segment(fleet: Fleet) -> dict[str, Any]:
    """The optimizer's one segment after the panel's week, with DOC's objectives."""
    service = OptimizerService(fleet)
    service.set_objectives(DOC)
    (segment,) = service.status(T0 + 7 * DAY)["segments"]  # type: ignore[misc]
    return cast(dict[str, Any], segment)


def assert_moved_half(segment: dict[str, Any]) -> None:
    """The evidence: the 20 devices moved from 2 s to 10 s made ~45% fewer errors."""
    (effect,) = segment["evidence"]
    assert (effect["baseline"], effect["value"], effect["devices"]) == (2.0, 10.0, 20)
    assert effect["relative"] == pytest.approx(-0.45, abs=0.05)
