"""Rollouts on a real fleet: offers into own layers, evidence from reports and
telemetry, daily decisions stored with their snapshots, restarts, rollback."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.core.layers import device_layer
from edgecfg.core.path import parse_path
from edgecfg.core.rollout import Arm, Decision, Phase
from edgecfg.errors import NotFound, UsageError
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.rollouts import HOUR, RolloutService
from edgecfg.store import BadVersion, DeviceRecord, SQLiteStore, Store
from edgecfg.wire.senml import Record, encode_senml

SCHEMA = Path(__file__).resolve().parents[2] / "fixtures" / "schema" / "device.json"
START = 1_000_000.0
DAY = 24 * HOUR
PLAN: dict[str, object] = {
    "change": {"net.uplink.interval_s": 900},
    "target": "region/eu",
    "stages": ["10%", "50%", "100%"],
    "guardrails": ["battery_drain", "reboots", "errors", "checkin"],
    # a small fleet (24 canary devices) can only show wide margins
    "min_days": 10,
    "margins": {"reboots": 1.0, "errors": 1.0, "checkin": 0.6},
}


def _fleet(store: Store, devices: int = 240) -> Fleet:
    fleet = Fleet(store)
    fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    for n in range(devices):
        hardware = "nbiot-sensor-r3" if n % 2 else "pi|gateway"  # "|" must not split a stratum
        fleet.add_device(DeviceRecord(DeviceId(f"dev-{n:03d}"), {"region": "eu/west"},
                                      hardware=hardware, firmware="2.1.0",
                                      agent_version="1.0.0"))  # fmt: skip
    fleet.add_device(DeviceRecord(DeviceId("us-1"), {"region": "us"}, hardware="pi-gateway-cm4",
                                  firmware="2.1.0", agent_version="1.0.0"))  # fmt: skip
    return fleet


def _live(service: RolloutService, now: float, *, reboots: float = 0.0,
          revert: bool = False) -> None:  # fmt: skip
    """Every offered device syncs: reports its applied version (or a revert)
    and a telemetry pack with its battery level and counters."""
    fleet, store = service.fleet, service.store
    for rollout in store.rollouts():
        for cohort in store.rollout_devices(rollout.id):
            if cohort.offered_at is None:
                continue
            device = cohort.device
            canary = cohort.arm == Arm.CANARY.value
            etag = fleet.etag(device)
            if revert and canary:
                store.put_bad_version(BadVersion(device, etag, ETag(b"\x00" * 8), "probe-failed",
                                                 "reachability", now))  # fmt: skip
                store.record_seen(device, now=now, applied_etag=None)
                continue
            store.record_seen(device, now=now, applied_etag=etag)
            days = (now - cohort.offered_at) / DAY
            level = 100.0 - 0.8 * days
            pack = [Record("battery", level, "%", now), Record("errors", 0.0, None, now),
                    Record("reboots", reboots if canary else 0.0, None, now)]  # fmt: skip
            store.append_telemetry(device, encode_senml(pack), now=now)


def _run(service: RolloutService, days: int, **live: object) -> list[Decision]:
    decisions: list[Decision] = []
    for hour in range(6, days * 24 + 1, 6):
        now = START + hour * HOUR
        _live(service, now, **live)  # type: ignore[arg-type]
        decisions += [outcome.decision for _id, outcome in service.tick(now)]
    return decisions


def test_a_rollout_offers_its_first_stage_into_own_layers_and_labels_the_control() -> None:
    from edgecfg.store import MemoryStore

    fleet = _fleet(MemoryStore())
    service = RolloutService(fleet)
    rollout = service.start(PLAN, now=START, author="alice", rollout_id="r1")
    cohort = service.store.rollout_devices(rollout)
    assert len(cohort) == 240  # us-1 is outside the target
    canary = [c for c in cohort if c.arm == "canary"]
    control = [c for c in cohort if c.arm == "control"]
    assert len(canary) == len(control) == 24  # 10 % of each stratum, and its mirror
    one = canary[0].device
    held = fleet.layer(device_layer(one)).sets
    assert held[parse_path("net.uplink.interval_s")] == 900
    assert held[parse_path("device.labels.rollout")] == "r1:canary"
    assert fleet.resolve(one).tree["net"]["uplink"]["interval_s"] == 900  # type: ignore[index]
    quiet = control[0].device
    assert fleet.resolve(quiet).tree["net"]["uplink"]["interval_s"] != 900  # type: ignore[index]
    assert fleet.layer(device_layer(quiet)).sets[parse_path("device.labels.rollout")] == (
        "r1:control"
    )
    status = service.status(rollout, START)
    assert status["phase"] == "running" and status["stage"] == "10%"
    assert status["offered"] == {"canary": 24, "control": 24}
    assert status["devices_by_status"] == {"assigned": 192, "offered": 48}
    assert status["coverage_by_stage"] == {"0:10%": {"canary": 24, "proven": 0, "coverage": 0.0}}
    _live(service, START + HOUR)
    later = service.status(rollout, START + HOUR)
    assert later["devices_by_status"] == {"assigned": 192, "reporting": 48}
    assert later["coverage_by_stage"]["0:10%"]["coverage"] == 1.0  # type: ignore[index]


def test_a_healthy_rollout_advances_daily_and_completes(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "fleet.db") as store:
        service = RolloutService(_fleet(store))
        rollout = service.start(PLAN, now=START, author="alice", rollout_id="r1")
        decisions = _run(service, days=12)
        assert decisions.count(Decision.ADVANCE) == 3, decisions
        assert service.status(rollout, START + 12 * DAY)["phase"] == "complete"
        treated = sum(
            1 for n in range(240)
            if service.fleet.resolve(DeviceId(f"dev-{n:03d}")).tree["net"]["uplink"]  # type: ignore[index]
            ["interval_s"] == 900
        )  # fmt: skip
        assert treated == 240
        history = service.history(rollout)
        assert history[0]["action"] == "start"
        decided = [h for h in history if h["kind"] == "decision"]
        assert all(service.replay(rollout, int(h["seq"])) for h in decided)  # type: ignore[call-overload]
        # complete: the change is the group's now, and the own layers are as before
        fleet = service.fleet
        assert fleet.layer(LayerId("region/eu")).sets[parse_path("net.uplink.interval_s")] == 900
        assert all(fleet.layer(device_layer(DeviceId(f"dev-{n:03d}"))).sets == {}
                   for n in range(240))  # fmt: skip
        late = DeviceId("late-1")  # a device that joins after the rollout gets the change
        fleet.add_device(DeviceRecord(late, {"region": "eu/west"}, hardware="nbiot-sensor-r3",
                                      firmware="2.1.0", agent_version="1.0.0"))  # fmt: skip
        assert fleet.resolve(late).tree["net"]["uplink"]["interval_s"] == 900  # type: ignore[index]
        # and an operator who rolls a complete rollout back gets the group back
        service.act(rollout, "rollback", "late complaint", now=START + 13 * DAY, author="bob")
        assert parse_path("net.uplink.interval_s") not in fleet.layer(LayerId("region/eu")).sets
        assert fleet.resolve(late).tree["net"]["uplink"]["interval_s"] != 900  # type: ignore[index]


def test_reverting_canaries_abort_and_every_layer_is_restored(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "fleet.db") as store:
        fleet = _fleet(store)
        device = DeviceId("dev-001")
        fleet.write_layer(device_layer(device), _layer({"net.uplink.interval_s": 1200}),
                          author="t", message="own value", now=2.0)  # fmt: skip
        before = {DeviceId(f"dev-{n:03d}"): fleet.layer(device_layer(DeviceId(f"dev-{n:03d}")))
                  for n in range(240)}  # fmt: skip
        service = RolloutService(fleet)
        rollout = service.start(PLAN, now=START, author="alice", rollout_id="r1")
        decisions = _run(service, days=2, revert=True)
        assert decisions[0] is Decision.ABORT
        assert service.status(rollout, START + 2 * DAY)["phase"] == "rolled_back"
        for name, layer in before.items():
            assert fleet.layer(device_layer(name)) == layer  # exactly what it held


def test_a_restarted_gateway_resumes_without_offering_twice(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    with SQLiteStore(path) as store:
        service = RolloutService(_fleet(store))
        service.start(PLAN, now=START, author="alice", rollout_id="r1")
        _run(service, days=1)
        offered = {c.device: c.offered_at for c in store.rollout_devices("r1")}
        revisions = len(service.fleet.history(device_layer(DeviceId("dev-000"))))
    with SQLiteStore(path) as store:  # a new process: a fresh fleet view, the same store
        fleet = Fleet(store)
        service = RolloutService(fleet)
        assert service.tick(START + 1 * DAY + HOUR) == []  # nothing due, nothing re-offered
        assert {c.device: c.offered_at for c in store.rollout_devices("r1")} == offered
        assert len(fleet.history(device_layer(DeviceId("dev-000")))) == revisions
        decisions = _run(service, days=8)
        assert Decision.ADVANCE in decisions


def test_an_interrupted_offer_is_finished_not_repeated(tmp_path: Path) -> None:
    from edgecfg.store import MemoryStore

    fleet = _fleet(MemoryStore())
    service = RolloutService(fleet)
    service.start(PLAN, now=START, author="alice", rollout_id="r1")
    canary = next(c for c in service.store.rollout_devices("r1") if c.arm == "canary")
    layer_id = device_layer(canary.device)
    # a crash after the intent was stored, before the layer was written
    fleet.write_layer(layer_id, fleet.layer(layer_id).without([parse_path("net.uplink.interval_s"),
                                                              parse_path("device.labels.rollout")]),
                      replace=True, author="t", message="lost write", now=START + 1)  # fmt: skip
    service.tick(START + 2 * HOUR)
    assert fleet.layer(layer_id).sets[parse_path("net.uplink.interval_s")] == 900
    again = next(c for c in service.store.rollout_devices("r1") if c.device == canary.device)
    assert again.offered_at == canary.offered_at and again.previous == canary.previous


def test_operators_pause_resume_and_roll_back_with_reasons() -> None:
    from edgecfg.store import MemoryStore

    service = RolloutService(_fleet(MemoryStore()))
    rollout = service.start(PLAN, now=START, author="alice", rollout_id="r1")
    with pytest.raises(UsageError, match="reason is required"):
        service.act(rollout, "pause", "", now=START + 1, author="bob")
    assert service.act(rollout, "pause", "freeze", now=START + 1, author="bob").phase is (
        Phase.PAUSED
    )
    assert service.tick(START + 2 * DAY) == []  # a paused rollout makes no decisions
    service.act(rollout, "resume", "freeze over", now=START + 2 * DAY, author="bob")
    state = service.act(rollout, "rollback", "complaints", now=START + 3 * DAY, author="bob")
    assert state.phase is Phase.ROLLED_BACK
    actions = [h["action"] for h in service.history(rollout) if h["kind"] == "action"]
    assert actions == ["start", "pause", "resume", "rollback"]
    tree = service.fleet.resolve(DeviceId("dev-001")).tree
    assert tree["net"]["uplink"]["interval_s"] != 900  # type: ignore[index]


def test_bad_starts_are_refused_with_the_reason() -> None:
    from edgecfg.store import MemoryStore

    service = RolloutService(_fleet(MemoryStore(), devices=4))
    with pytest.raises(UsageError, match="not declared by schema"):
        service.start({**PLAN, "change": {"net.nonsense": 1}}, now=START, author="a")
    with pytest.raises(UsageError, match="reaches no device"):
        service.start({**PLAN, "target": "region/mars"}, now=START, author="a")
    with pytest.raises(UsageError, match=r"refused on dev-000: .*expected >= 10, got 5"):
        service.start({**PLAN, "change": {"net.uplink.interval_s": 5}}, now=START, author="a",
                      rollout_id="r0")  # fmt: skip
    assert service.store.get_rollout("r0") is None  # nothing stored of a refused start
    service.start(PLAN, now=START, author="a", rollout_id="r1")
    with pytest.raises(UsageError, match="exists already"):
        service.start(PLAN, now=START, author="a", rollout_id="r1")
    with pytest.raises(NotFound):
        service.status("r9", START)


def _layer(values: dict[str, object]):  # type: ignore[no-untyped-def]
    from edgecfg.core.layers import Layer

    return Layer({parse_path(k): v for k, v in values.items()})  # type: ignore[misc]
