"""Quotas and fairness for devices (issue 20): telemetry bytes per day, a
bound on how far ahead a device's clock may be, and last-writer-wins merges
that do not read layer histories again.  Over real CoAP where the behaviour
is an answer; on the service where it is a count."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiocoap
import pytest
from aiocoap.numbers.codes import Code

from edgecfg.core.admission import Budgets
from edgecfg.core.hlc import Timestamp
from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.core.journal import JournalEntry
from edgecfg.core.layers import layer_from_document, layer_from_parts
from edgecfg.core.path import Path, is_prefix
from edgecfg.errors import OverBudget
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.identity import InsecurePolicy
from edgecfg.fleet.reconcile import ChangeTimes
from edgecfg.fleet.sync import DAY_S, SyncService
from edgecfg.gateway.server import Gateway
from edgecfg.store import MemoryStore
from edgecfg.wire.cbor import decode, encode
from edgecfg.wire.journal import entry_to_value
from edgecfg.wire.senml import Record, encode_senml
from tests.gateway.conftest import SCHEMA, free_udp_port, sensor
from tests.gateway.test_coap import ask

SENML = 112
SOURCE = ("device", "location", "source")  # last-writer-wins in the fixture schema
YEAR_MS = 365 * 86_400_000


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gateway = Gateway(MemoryStore(), policy=InsecurePolicy(), refresh_s=0,
                      budgets=Budgets(telemetry_kib_per_day=2.0))  # fmt: skip
    gateway.guard.trust("127.0.0.1")
    gateway.fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    for device in ("dev-1", "dev-2"):
        gateway.fleet.add_device(sensor(device))
    await gateway.start("127.0.0.1", free_udp_port())
    try:
        yield gateway
    finally:
        await gateway.stop()


PACK = encode_senml([Record(f"r{i}", "x" * 40) for i in range(10)])  # about 500 bytes


async def test_telemetry_beyond_the_day_s_bytes_is_4_29_and_counted(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    one = DeviceId("dev-1")
    codes: list[Code | None] = []
    for _ in range(6):
        reply = await ask(client, gateway, Code.POST, "/tel/dev-1", payload=PACK,
                          content_format=SENML)  # fmt: skip
        codes.append(reply.code)
        if reply.code == Code.TOO_MANY_REQUESTS:
            assert reply.opt.max_age is not None and 0 < reply.opt.max_age <= DAY_S
            assert b"telemetry quota" in reply.payload
    fits = 2048 // len(PACK)
    assert codes == [Code.CHANGED] * fits + [Code.TOO_MANY_REQUESTS] * (6 - fits)
    assert len(gateway.fleet.store.telemetry(one)) == fits  # refused packs are not stored
    assert gateway.service.quota.refused[one] == 6 - fits
    other = await ask(client, gateway, Code.POST, "/tel/dev-2", payload=PACK,
                      content_format=SENML)  # fmt: skip
    assert other.code == Code.CHANGED  # another device has its own day


def test_a_new_day_opens_the_quota_and_a_restart_does_not() -> None:
    fleet = Fleet(MemoryStore())
    fleet.add_device(sensor("dev-1"))
    service = SyncService(fleet, telemetry_per_day=2 * len(PACK))
    day = 20_000 * DAY_S
    service.telemetry(DeviceId("dev-1"), PACK, now=day + 10, held=None)
    service.telemetry(DeviceId("dev-1"), PACK, now=day + 20, held=None)
    with pytest.raises(OverBudget) as refused:
        service.telemetry(DeviceId("dev-1"), PACK, now=day + 30, held=None)
    assert refused.value.retry_after_s == DAY_S - 30
    restarted = SyncService(fleet, telemetry_per_day=2 * len(PACK))  # counts from the store
    with pytest.raises(OverBudget):
        restarted.telemetry(DeviceId("dev-1"), PACK, now=day + 40, held=None)
    restarted.telemetry(DeviceId("dev-1"), PACK, now=day + DAY_S + 1, held=None)


# -- clock drift ----------------------------------------------------------------------


def report(*entries: JournalEntry) -> bytes:
    return encode({"agent": "1.0.0", "journal": [entry_to_value(e) for e in entries]})


def entry(sequence: int, value: str | int, wall_ms: int, path: Path = SOURCE) -> JournalEntry:
    return JournalEntry(path, value, "test", Timestamp(wall_ms, 0, "dev-1"), sequence)


async def test_an_entry_stamped_too_far_ahead_is_refused_with_a_reason(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    now_ms = int(time.time() * 1000)
    within = entry(2, 900, now_ms + 60_000, path=("telemetry", "interval_s"))  # a minute fast
    body = report(entry(1, "gnss", now_ms + 10 * YEAR_MS), within)
    reply = await ask(client, gateway, Code.POST, "/state/dev-1", payload=body, content_format=60)
    assert reply.code == Code.CHANGED
    outcome = decode(reply.payload)["local"]  # type: ignore[index]
    [[sequence, path, reason]] = outcome["rejected"]  # type: ignore[index,misc]
    assert (sequence, path) == (1, "device.location.source")
    assert "ahead of the gateway's clock" in reason  # type: ignore[operator]
    assert outcome["accepted"] == [[2, "telemetry.interval_s"]]  # type: ignore[index]
    assert outcome["ack"] == 2  # type: ignore[index]


def test_a_device_ten_years_ahead_does_not_win_against_a_later_operator_write() -> None:
    fleet = Fleet(MemoryStore())
    fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    fleet.add_device(sensor("dev-1"))
    service = SyncService(fleet)
    now = 1_700_000_000.0
    fleet.write_layer(LayerId("region/eu"), layer_from_parts(sets={SOURCE: "cell"}),
                      author="ops", message="", now=now)  # fmt: skip
    future = entry(1, "gnss", int(now * 1000) + 10 * YEAR_MS)
    answer = service.report(DeviceId("dev-1"), report(future), now=now + 1)
    assert answer is not None
    assert decode(answer.payload)["local"]["rejected"][0][1] == "device.location.source"  # type: ignore[index]
    assert fleet.resolve(DeviceId("dev-1")).tree["device"]["location"]["source"] == "cell"  # type: ignore[index]


# -- last-writer-wins without history scans ------------------------------------------------


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.blob_reads = 0

    def get_blob(self, etag: ETag) -> bytes:
        self.blob_reads += 1
        return super().get_blob(etag)


def scanned_times(fleet: Fleet, device: DeviceId, paths: list[Path]) -> dict[Path, int]:
    """The reference: every revision of every layer, read again."""
    newest: dict[Path, float] = {}
    for tier in fleet.resolver.tiers(fleet.device(device)):
        for layer_id in tier:
            if layer_id.startswith("local/"):
                continue
            before: dict[Path, object] = {}
            for revision in fleet.history(layer_id):
                layer = layer_from_document(decode(fleet.store.get_blob(revision.content)))
                for path in paths:

                    def related(p: Path, path: Path = path) -> bool:
                        return is_prefix(p, path) or is_prefix(path, p)

                    says = sorted(
                        [repr((p, encode(v))) for p, v in layer.sets.items() if related(p)]
                        + [repr(("u", p)) for p in layer.unsets if related(p)]
                        + [repr(("l", p)) for p in layer.locks if related(p)]
                    )
                    if says != before.get(path, []):
                        newest[path] = max(newest.get(path, 0.0), revision.created_at)
                    before[path] = says
    return {path: int(at * 1000) for path, at in newest.items()}


def test_change_times_match_a_full_history_scan_and_read_only_new_revisions() -> None:
    store = CountingStore()
    fleet = Fleet(store)
    fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    fleet.add_device(sensor("dev-1"))
    region, paths = LayerId("region/eu"), [SOURCE, ("device",), ("log", "remote", "level")]
    for i in range(200):  # churn elsewhere, and a few changes of the keys
        sets: dict[Path, object] = {("telemetry", "interval_s"): 300 + i}
        if i in (3, 150):
            sets[SOURCE] = "cell" if i == 3 else "gnss"
        fleet.write_layer(region, layer_from_parts(sets=sets), author="ops", message="",  # type: ignore[arg-type]
                          now=10.0 + i, replace=True)  # fmt: skip
    fleet.write_layer(LayerId("device/dev-1"), layer_from_parts(locks=[("log",)]), author="ops",
                      message="", now=500.0)  # fmt: skip
    times = ChangeTimes(fleet)
    found = times.for_device(DeviceId("dev-1"), paths)
    assert {p: t.wall_ms for p, t in found.items()} == scanned_times(
        fleet, DeviceId("dev-1"), paths
    )
    assert found[SOURCE].wall_ms == 161_000  # revision 152 (at 161.0) dropped it: replace=True
    reads = store.blob_reads
    fleet.write_layer(region, layer_from_parts(sets={SOURCE: "manual"}), author="ops", message="",
                      now=900.0)  # fmt: skip
    again = times.for_device(DeviceId("dev-1"), paths)
    assert store.blob_reads - reads == 1  # the new revision only
    assert again[SOURCE].wall_ms == 900_000
    assert {p: t.wall_ms for p, t in again.items()} == scanned_times(
        fleet, DeviceId("dev-1"), paths
    )
