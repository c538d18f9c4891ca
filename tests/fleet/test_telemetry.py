"""The telemetry service (edgecfg.fleet.telemetry): what ingest writes per
device, group and cohort, counters across reboots, the degradation flag in
the views, ``top``, retention, and cohorts from the effective config."""

from __future__ import annotations

import random

import pytest

from edgecfg.core.ids import DeviceId
from edgecfg.core.telemetry import DAY, HOUR
from edgecfg.core.tree import get
from edgecfg.errors import UsageError
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.sync import SyncService
from edgecfg.fleet.telemetry import Pack, TelemetryService, group_keys
from edgecfg.store import DeviceRecord, MemoryStore
from edgecfg.wire.numbers import ContentFormat
from edgecfg.wire.senml import Record, encode_senml, encode_senml_json
from tests.paths import SCHEMA

T0 = 1_800_000_000.0  # absolute times (above 2**28)


def pack(device: str, at: float, *records: Record, region: str = "eu/west",
         cohorts: dict[str, str] | None = None) -> Pack:  # fmt: skip
    return Pack(DeviceId(device), at, encode_senml(records), records, {"region": region},
                cohorts or {})  # fmt: skip


def service(*devices: tuple[str, str], hourly: bool = True) -> TelemetryService:
    store = MemoryStore()
    for device, region in devices:
        store.put_device(DeviceRecord(DeviceId(device), {"region": region}))
    return TelemetryService(store, retention_s=2 * DAY, hourly=hourly)


def test_group_keys_name_each_membership_and_views_merge_subgroups() -> None:
    assert group_keys({"region": "eu/west/site-17", "function": "meter"}) == [
        "function/meter", "region/eu/west/site-17"]  # fmt: skip
    telemetry = service(("d1", "eu/west"), ("d2", "eu/east"), ("d3", "europe"))
    for device, region in (("d1", "eu/west"), ("d2", "eu/east"), ("d3", "europe")):
        telemetry.ingest([pack(device, T0, Record("battery", 50.0, "%EL", T0), region=region)])
    assert telemetry.view("region/eu", since=T0).series["battery"].count == 2  # not europe
    assert telemetry.view("region/eu/west", since=T0).series["battery"].count == 1


def test_a_reading_lands_in_the_device_hour_and_day_its_groups_and_its_cohorts() -> None:
    telemetry = service(("d1", "eu/west"))
    at = T0 + 5 * HOUR + 10
    telemetry.ingest([pack("d1", at, Record("rsrp", -99.0, "dBm", at),
                           cohorts={"net.uplink.interval_s": "600"})])  # fmt: skip
    store = telemetry.store
    hours = store.telemetry_rows("device", key="d1", period=HOUR)
    assert [(r.name, r.start) for r in hours] == [("rsrp", at // HOUR * HOUR)]
    days = store.telemetry_rows("device", key="d1", period=DAY)
    assert [r.name for r in days] == ["rsrp", "rsrp@-100"]  # and its band, by day
    without = service(("d1", "eu/west"), hourly=False)
    without.ingest([pack("d1", at, Record("rsrp", -99.0, "dBm", at))])
    assert without.store.telemetry_rows("device", key="d1", period=HOUR) == []
    assert {r.key for r in store.telemetry_rows("group", period=DAY)} == {"region/eu/west"}
    cohort = store.telemetry_rows("cohort", name="rsrp", period=DAY)
    assert [(r.key, r.aggregate.last) for r in cohort] == [("net.uplink.interval_s=600", -99.0)]


def test_counters_are_stored_as_increases_and_a_reboot_restarts_them() -> None:
    telemetry = service(("d1", "eu"))
    for n, uptime in enumerate([100.0, 400.0, 50.0, 80.0]):  # rebooted before the third
        at = T0 + n * HOUR
        telemetry.ingest([pack("d1", at, Record("uptime", uptime, "s", at))])
    view = telemetry.view("d1", since=T0)
    assert view.series["uptime"].total == 300 + 50 + 30
    assert view.series["uptime"].count == 3  # the first reading only sets the base


def test_relative_times_are_taken_from_arrival() -> None:
    telemetry = service(("d1", "eu"))
    telemetry.ingest([pack("d1", T0, Record("battery", 70.0, "%EL", -3 * DAY))])
    assert telemetry.view("d1", since=T0).series == {}
    assert telemetry.view("d1", since=T0 - 4 * DAY).series["battery"].last_time == T0 - 3 * DAY


def test_a_degraded_link_is_flagged_on_the_device_its_group_and_in_top() -> None:
    telemetry = service(("good", "eu/west"), ("bad", "eu/west"), ("far", "us"))
    rng = random.Random(5)
    for n in range(80):
        at = T0 + n * HOUR
        for device in ("good", "bad", "far"):
            drop = 12.0 if device == "bad" and n >= 50 else 0.0
            value = float(round(-95 + rng.gauss(0, 2) - drop))
            telemetry.ingest([pack(device, at, Record("rsrp", value, "dBm", at),
                                   region="us" if device == "far" else "eu/west")])  # fmt: skip
    bad = telemetry.view("bad", since=T0).summary()
    verdict = bad["degraded"]["rsrp"]  # type: ignore[index]
    assert verdict["degraded"] and T0 + 45 * HOUR <= verdict["changed_at"] <= T0 + 50 * HOUR
    assert not telemetry.view("good", since=T0).summary()["degraded"]["rsrp"]["degraded"]  # type: ignore[index]
    group = telemetry.view("region/eu", since=T0).summary()["degraded"]
    assert group == {"count": 1, "devices": ["bad"], "found": 1.0}
    assert telemetry.top("link_degraded", since=T0, limit=5) == [("bad", 1.0)]
    worst = telemetry.top("rsrp", since=T0, limit=2)
    assert worst[0][0] == "bad" and worst[0][1] < worst[1][1]  # low RSRP is worse: first


def test_raw_packs_past_retention_go_when_the_device_reports_again() -> None:
    telemetry = service(("d1", "eu"))
    telemetry.ingest([pack("d1", T0, Record("battery", 70.0, "%EL", T0))])
    telemetry.ingest([pack("d1", T0 + 3 * DAY, Record("battery", 69.0, "%EL", T0 + 3 * DAY))])
    assert [at for at, _ in telemetry.store.telemetry(DeviceId("d1"))] == [T0 + 3 * DAY]
    # the days stay (downsampled); the hours of the old day went
    assert len(telemetry.store.telemetry_rows("device", key="d1", period=DAY)) == 2
    assert len(telemetry.store.telemetry_rows("device", key="d1", period=HOUR)) == 1


def test_an_unknown_target_is_a_clear_error() -> None:
    with pytest.raises(UsageError, match="dev-9: no such device; a group is dimension/path"):
        service().view("dev-9", since=T0)
    with pytest.raises(UsageError, match="region/xx: no such device, and no telemetry"):
        service().view("region/xx", since=T0)


def test_the_sync_service_files_packs_under_the_cohorts_of_the_listed_paths() -> None:
    fleet = Fleet(MemoryStore())
    fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    fleet.add_device(DeviceRecord(DeviceId("d1"), {"region": "eu"}, hardware="nbiot-sensor-r3",
                                  firmware="2.1.0", agent_version="1.0.0"))  # fmt: skip
    TelemetryService(fleet.store).set_cohort_paths(["net.uplink.interval_s", "no.such.path"])
    sync = SyncService(fleet)
    body = encode_senml_json([Record("rsrp", -100.0, "dBm", 0.0)])
    assert sync.telemetry(DeviceId("d1"), body, now=T0, held=None,
                          content_format=ContentFormat.SENML_JSON) is None  # fmt: skip
    interval = get(fleet.encoded(DeviceId("d1")).tree, ("net", "uplink", "interval_s"))
    cohorts = fleet.store.telemetry_rows("cohort", period=DAY)
    assert [(r.key, r.name) for r in cohorts] == [
        (f"net.uplink.interval_s={interval}", "rsrp"),
        (f"net.uplink.interval_s={interval}", "rsrp@-100"),
    ]
    assert fleet.store.telemetry(DeviceId("d1"))[0][1] == encode_senml(
        [Record("rsrp", -100.0, "dBm", 0.0)]
    )  # stored as SenML-CBOR
