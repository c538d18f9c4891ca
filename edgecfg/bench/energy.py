"""``edgecfg bench energy``: what configuration management costs a battery
device, as a share of its daily energy budget (issue 14).

A real gateway runs in a child process on a SQLite fleet of the battery
device types of ``fixtures/device_types.json`` (mains-powered ones have no
budget and are listed as skipped).  Real agents in this process, one CoAP
link each, live through ``--days`` simulated days in virtual time: each
device wakes on its type's ``typical_wake_interval_s`` and sends telemetry,
and operators change the configuration in one of four patterns (each
pattern has its own devices and group layer):

- ``none``: no change;
- ``daily``: one typical change (5 keys) a day;
- ``weekly``: a batch of 12 keys once a week;
- ``rollout``: one fleet-wide release of 25 keys on the first day.

Two ways to sync, side by side, each on its own devices:

- **own wake**: the agent wakes the radio for the config alone, once a day
  (once a week in the ``weekly`` pattern: a weekly-syncing device) —
  ``GET /cfg?from=``, then the delta and ``POST /state`` when it changed;
- **riding on telemetry**: every telemetry wake is ``POST /tel/{dev}`` with
  the held version as an ETag option (the short form of ``?cfg=``, DESIGN
  §6).  What configuration adds is the difference to the same telemetry POST
  without it (measured in the same run, on the same link): the option's 9
  bytes, and the delta when stale (the next telemetry names the applied
  version, so no state report follows).

The counts are the agent's own (``SyncResult``: round trips, bytes on the
wire with headers; wakes counted here; CPU as this process's CPU time
around the agent's call).  :mod:`edgecfg.core.energy` turns them into
joules per device profile and coverage class.  The edits reach the gateway
through its database; the run waits (on a separate, uncounted link) until
the gateway serves them before time moves on.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import math
import random
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, cast, get_args

from edgecfg.agent.coap import CoapLink
from edgecfg.agent.sealed_store import LocalState
from edgecfg.agent.sync import Agent, Backoff, SyncResult
from edgecfg.bench.load import gateway_child
from edgecfg.core.energy import (
    AA_PAIR_WH,
    EU868_DUTY_CYCLE,
    LINK_PROFILES,
    Counters,
    RadioProfile,
    daily_budget_j,
    energy,
    profile,
    share_of_budget,
)
from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.core.layers import device_layer, layer_from_parts
from edgecfg.core.path import parse_path
from edgecfg.core.tree import Value
from edgecfg.errors import CommandError
from edgecfg.fleet.fleet import Fleet
from edgecfg.sim.generators import link_walk
from edgecfg.store import DeviceRecord, SQLiteStore
from edgecfg.wire.numbers import ContentFormat
from edgecfg.wire.senml import Record, encode_senml

FIXTURES: Final = Path(__file__).resolve().parents[2] / "fixtures"
DAY_S: Final = 86_400.0
Pattern = Literal["none", "daily", "weekly", "rollout"]
Mode = Literal["own", "ride"]
PATTERNS: Final[tuple[Pattern, ...]] = get_args(Pattern)
MODES: Final[tuple[Mode, ...]] = get_args(Mode)
PATTERN_TEXT: Final[Mapping[Pattern, str]] = {
    "none": "no change",
    "daily": "one change a day (5 keys)",
    "weekly": "weekly batch (12 keys)",
    "rollout": "fleet-wide rollout (25 keys, day 1)",
}
KEYS: Final[Mapping[Pattern, int]] = {"none": 0, "daily": 5, "weekly": 12, "rollout": 25}
COVERAGE: Final[Mapping[str, tuple[str, ...]]] = {
    "nb-iot": ("nb-iot/mcl144", "nb-iot/mcl154", "nb-iot/mcl164"),
    "lte-m": ("lte-m/mode-a", "lte-m/mode-b"),
}
"""The coverage classes each link is shown at (others: LINK_PROFILES only)."""
TELEMETRY: Final = (Record("battery_v", 3.1, "V", 0.0), Record("temp", 21.5, "Cel", 0.0))
RIDE_BYTES_LIMIT: Final = 10
RIDE_PERCENT_LIMIT: Final = 0.1
CHANGE_PERCENT_LIMIT: Final = 1.0


@dataclass(frozen=True, slots=True)
class DeviceType:
    """The parts of a fixture device type the bench uses."""

    id: str
    hardware: str
    battery_wh: float
    link: str
    wake_every_s: float
    firmware: str

    @property
    def budget_j(self) -> float:
        return daily_budget_j(self.battery_wh)

    @property
    def profiles(self) -> tuple[RadioProfile, ...]:
        names = COVERAGE.get(self.link, (LINK_PROFILES[self.link],))
        return tuple(profile(name) for name in names)


def device_types() -> tuple[list[DeviceType], dict[str, str]]:
    """The battery device types of the fixtures, and why the others are skipped."""
    document = json.loads((FIXTURES / "device_types.json").read_text(encoding="utf-8"))
    kept: list[DeviceType] = []
    skipped: dict[str, str] = {}
    for entry in cast(list[dict[str, object]], document["device_types"]):
        name = str(entry["id"])
        if entry["power"] != "battery" or entry["battery_wh"] is None:
            skipped[name] = f"{entry['power']} powered: no battery budget"
        elif str(entry["link"]) not in LINK_PROFILES:
            skipped[name] = f"no energy profile for link {entry['link']!r}"
        else:
            kept.append(
                DeviceType(
                    name,
                    str(entry["hardware"]),
                    float(cast(float, entry["battery_wh"])),
                    str(entry["link"]),
                    float(cast(float, entry["typical_wake_interval_s"])),
                    str(cast(list[str], entry["firmware_versions"])[-1]),
                )
            )
    return kept, skipped


def edit_keys() -> list[tuple[str, ...]]:
    """Integer keys of the fixture schema an operator may tune on any device
    (bounded with room for 3 values, a default, no hardware/version
    restriction), in id order."""
    document = json.loads((FIXTURES / "schema" / "device.json").read_text(encoding="utf-8"))
    keys = cast(dict[str, dict[str, object]], document["keys"])
    found: list[tuple[int, tuple[str, ...]]] = []
    for dotted, spec in keys.items():
        if spec.get("type") != "int" or not {"min", "max", "default"} <= spec.keys():
            continue
        if {"hardware", "agent", "firmware"} & spec.keys() or dotted.startswith("device."):
            continue
        if cast(int, spec["max"]) - cast(int, spec["min"]) < 2:
            continue
        found.append((cast(int, spec["id"]), parse_path(dotted)))
    return [path for _, path in sorted(found)]


def edit_values(
    keys: Sequence[tuple[str, ...]], number: int, count: int
) -> dict[tuple[str, ...], Value]:
    """Edit ``number`` (from 1) of ``count`` keys: each key steps through its
    bounds from its default, one step an edit, so an edit never undoes the
    one before it (two edits between two wakes still change the config)."""
    document = json.loads((FIXTURES / "schema" / "device.json").read_text(encoding="utf-8"))
    specs = cast(dict[str, dict[str, int]], document["keys"])
    values: dict[tuple[str, ...], Value] = {}
    for path in keys[:count]:
        spec = specs[".".join(path)]
        low, span = spec["min"], spec["max"] - spec["min"] + 1
        values[path] = low + (spec["default"] - low + number) % span
    return values


# ---------------------------------------------------------------- the fleet


@dataclass(slots=True)
class Case:
    """One device of one type, pattern and mode, and what it counted."""

    device: str
    kind: DeviceType
    pattern: Pattern
    mode: Mode
    config: Counters = field(default_factory=Counters)
    telemetry_wakes: int = 0
    wakes: list[tuple[float, Counters]] = field(default_factory=list[tuple[float, Counters]])
    """Each wake's time (virtual) and what configuration added to it."""


def _layer(pattern: Pattern) -> LayerId:
    return LayerId(f"function/energy-{pattern}")


def _prepare(db: Path, kinds: Sequence[DeviceType], devices: int) -> list[Case]:
    cases: list[Case] = []
    with SQLiteStore(db) as store:
        fleet = Fleet(store)
        fleet.load_schema(
            (FIXTURES / "schema" / "device.json").read_bytes(), "json", source="bench", now=0.0
        )
        for kind in kinds:
            for pattern in PATTERNS:
                for mode in MODES:
                    for number in range(devices):
                        name = f"{kind.id}-{pattern}-{mode}-{number}"
                        cases.append(Case(name, kind, pattern, mode))
                        fleet.add_device(
                            DeviceRecord(
                                DeviceId(name),
                                {"function": f"energy-{pattern}"},
                                hardware=kind.hardware,
                                firmware=kind.firmware,
                                agent_version="1.0.0",
                            )
                        )
                        fleet.write_layer(
                            device_layer(name),
                            layer_from_parts({"device": {"id": name},
                                              "security": {"psk_identity": name}}),
                            author="bench", message="identity", now=0.0,
                        )  # fmt: skip
    return cases


def _write(db: Path, layer: LayerId, values: Mapping[tuple[str, ...], Value]) -> None:
    with SQLiteStore(db) as store:
        Fleet(store).write_layer(
            layer, layer_from_parts(sets=values), author="bench", message="energy", now=time.time()
        )


def _expected(db: Path, device: str) -> ETag:
    with SQLiteStore(db) as store:
        return Fleet(store).etag(DeviceId(device))


async def _served(probe: CoapLink, device: str, tag: ETag) -> None:
    """Wait until the gateway serves ``tag`` to ``device`` (it reads edits
    from the database within its refresh period)."""
    for _ in range(600):  # 30 s: generous for a busy machine
        reply = await probe.request("GET", ("cfg", device), etags=(tag,))
        if reply.code == "2.03":
            return
        await asyncio.sleep(0.05)
    raise CommandError(f"the gateway did not serve the edit to {device} within 30 s")


# ---------------------------------------------------------------- the run


@dataclass(slots=True)
class _Device:
    case: Case
    link: CoapLink
    agent: Agent
    base: Counters = field(default_factory=Counters)
    """The same telemetry POST without the held version: one round trip, its bytes, CPU."""


def _schedule(
    cases: Sequence[Case], days: float, rng: random.Random
) -> list[tuple[float, int, str, int]]:
    """(time, order, kind, index) events: wakes of every device, and edits."""
    events: list[tuple[float, int, str, int]] = []
    end = days * DAY_S
    for index, case in enumerate(cases):
        if case.mode == "ride":
            every = case.kind.wake_every_s
        else:  # an own wake for the config: daily, weekly for the weekly pattern
            every = DAY_S * (7 if case.pattern == "weekly" else 1)
        at = rng.uniform(1.0, min(every, case.kind.wake_every_s))
        while at < end:
            events.append((at, len(events), "wake", index))
            at += every
    # Edits land at the same time of day (an operator's daily or weekly
    # change window), the first one before any wake: every sync interval of
    # every device then holds exactly one edit, so "one change a day" is one
    # change delivered a day (random times would merge some and leave the
    # last one undelivered at the end of the run).
    edits: dict[Pattern, list[float]] = {
        "none": [],
        "daily": [day * DAY_S for day in range(math.ceil(days))],
        "weekly": [week * 7 * DAY_S for week in range(math.ceil(days / 7))],
        "rollout": [0.0],
    }
    for number, pattern in enumerate(PATTERNS):
        events.extend((at, len(events), "edit", number) for at in edits[pattern] if at < end)
    heapq.heapify(events)
    return [heapq.heappop(events) for _ in range(len(events))]


def _counted(result: SyncResult, cpu_s: float) -> Counters:
    return Counters(0, result.round_trips, result.bytes_up, result.bytes_down, cpu_s)


async def _baseline(device: _Device, samples: int = 3) -> Counters:
    """The telemetry POST alone (without the held version), as the agent would send it."""
    traffic = device.link.traffic
    before = (traffic.round_trips, traffic.bytes_up, traffic.bytes_down)
    cpu = 0.0
    for _ in range(samples):
        started = time.process_time()
        reply = await device.link.request(
            "POST", ("tel", device.case.device), payload=encode_senml(TELEMETRY),
            content_format=ContentFormat.SENML_CBOR,
        )  # fmt: skip
        cpu += time.process_time() - started
        if not reply.ok:
            raise CommandError(f"telemetry refused: {reply.code} {reply.payload!r}")
    return Counters(
        0,
        (traffic.round_trips - before[0]) / samples,
        (traffic.bytes_up - before[1]) / samples,
        (traffic.bytes_down - before[2]) / samples,
        cpu / samples,
    )


async def _wake(device: _Device, at: float) -> None:
    case = device.case
    started = time.process_time()
    if case.mode == "own":
        result = await device.agent.sync()
        added = Counters(wakes=1) + _counted(result, time.process_time() - started)
    else:
        result = await device.agent.telemetry(TELEMETRY)
        cpu = time.process_time() - started
        base = device.base
        case.telemetry_wakes += 1
        added = Counters(
            0,
            max(0.0, result.round_trips - base.round_trips),
            max(0.0, result.bytes_up - base.bytes_up),
            max(0.0, result.bytes_down - base.bytes_down),
            max(0.0, cpu - base.cpu_s),
        )
    case.config += added
    case.wakes.append((at, added))


async def _play(
    uri: str, folder: Path, db: Path, cases: list[Case], *, days: float, seed: int
) -> None:
    keys = edit_keys()
    if len(keys) < max(KEYS.values()):
        raise CommandError(f"the fixture schema has {len(keys)} tunable int keys, "
                           f"the rollout needs {max(KEYS.values())}")  # fmt: skip
    devices: list[_Device] = []
    try:
        for case in cases:
            link = CoapLink(uri, ack_timeout=1.0)
            agent = Agent(
                link, LocalState(folder / case.device), device=case.device,
                hardware=case.kind.hardware, firmware=case.kind.firmware,
                backoff=Backoff(attempts=3), seed=seed,
            )  # fmt: skip
            devices.append(_Device(case, link, agent))
            await agent.sync()  # provisioning: the full config, not counted
            device = devices[-1]
            device.base = await _baseline(device)
        edits = dict.fromkeys(PATTERNS, 0)
        first = {pattern: next(c.device for c in cases if c.pattern == pattern)
                 for pattern in PATTERNS}  # fmt: skip
        async with CoapLink(uri, ack_timeout=1.0) as probe:
            for at, _, kind, index in _schedule(cases, days, random.Random(seed)):
                if kind == "wake":
                    await _wake(devices[index], at)
                    continue
                pattern = PATTERNS[index]
                edits[pattern] += 1
                _write(db, _layer(pattern), edit_values(keys, edits[pattern], KEYS[pattern]))
                await _served(probe, first[pattern], _expected(db, first[pattern]))
    finally:
        for device in devices:
            await device.link.close()


# ---------------------------------------------------------------- the report


def _row(case_list: Sequence[Case], days: float) -> dict[str, object]:
    """The mean device of a (type, pattern, mode), per day, with its energy."""
    total = Counters()
    for case in case_list:
        total += case.config
    per_day = total.scaled(1 / (days * len(case_list)))
    first = case_list[0]
    kind = first.kind
    wakes = sum(case.telemetry_wakes for case in case_list)
    row: dict[str, object] = {
        "device_type": kind.id,
        "pattern": first.pattern,
        "mode": first.mode,
        "per_day": _counters(per_day),
        "energy": {
            p.name: {
                "coverage": p.coverage,
                "j_per_day": energy(p, per_day).total_j,
                "percent_of_budget": share_of_budget(energy(p, per_day).total_j, kind.budget_j),
            }
            for p in kind.profiles
        },
    }
    if first.mode == "ride" and wakes:
        row["per_telemetry_wake"] = _counters(total.scaled(1 / wakes))
    return row


def _counters(counters: Counters) -> dict[str, float]:
    return {
        "wakes": counters.wakes,
        "round_trips": counters.round_trips,
        "bytes_up": counters.bytes_up,
        "bytes_down": counters.bytes_down,
        "cpu_s": counters.cpu_s,
    }


def _find(
    rows: Sequence[dict[str, object]], kind: str, pattern: str, mode: str
) -> dict[str, object]:
    for row in rows:
        if (row["device_type"], row["pattern"], row["mode"]) == (kind, pattern, mode):
            return row
    raise CommandError(f"no row for {kind} {pattern} {mode}")


def _percent(row: Mapping[str, object], name: str) -> float:
    return cast(dict[str, dict[str, float]], row["energy"])[name]["percent_of_budget"]


def _targets(rows: Sequence[dict[str, object]], kind: str) -> list[dict[str, object]]:
    """The issue's targets, judged on the NB-IoT 2xAA device ``kind``."""
    quiet = _find(rows, kind, "none", "ride")
    per_wake = cast(dict[str, float], quiet.get("per_telemetry_wake", {}))
    extra_bytes = per_wake.get("bytes_up", 0.0) + per_wake.get("bytes_down", 0.0)
    targets: list[dict[str, object]] = [
        _target("unchanged config riding on telemetry, MCL 144 dB (% of daily budget)",
                _percent(quiet, "nb-iot/mcl144"), RIDE_PERCENT_LIMIT),
        _target("unchanged config riding on telemetry: extra bytes per wake",
                extra_bytes, RIDE_BYTES_LIMIT),
        _target("unchanged config riding on telemetry: extra round trips per wake",
                per_wake.get("round_trips", 0.0), 0.0),
    ]  # fmt: skip
    daily = _find(rows, kind, "daily", "ride")
    targets.append(_target("one typical change a day, MCL 144 dB, riding on telemetry (%)",
                           _percent(daily, "nb-iot/mcl144"), CHANGE_PERCENT_LIMIT))  # fmt: skip
    weekly = _find(rows, kind, "weekly", "ride")
    targets.append(_target("weekly batch, MCL 154 dB, riding on the daily telemetry (%)",
                           _percent(weekly, "nb-iot/mcl154"), CHANGE_PERCENT_LIMIT))  # fmt: skip
    return targets


def _comparisons(rows: Sequence[dict[str, object]], kind: str) -> list[dict[str, object]]:
    """The same changes over a radio wake of their own: not targets, since the
    wake alone (0.5 J at 144 dB, 1.5 J at 154 dB) is more than 1 % of the
    budget whatever the sync costs; printed to show what riding saves."""
    return [
        {"case": f"{text}, own {when} wake", "value": _percent(_find(rows, kind, pattern, "own"),
                                                               profile_name)}
        for pattern, text, when, profile_name in (
            ("daily", "one typical change a day, MCL 144 dB", "daily", "nb-iot/mcl144"),
            ("weekly", "weekly batch, MCL 154 dB", "weekly", "nb-iot/mcl154"),
        )
    ]  # fmt: skip


OTHER_LINKS: Final = ("lte-m/mode-a", "wifi", "lorawan/sf7", "lorawan/sf12")
WALK_MEAN_RSRP: Final = -112.0
"""A device near the CE0/CE1 boundary (:func:`edgecfg.sim.generators.coverage_class`)."""
WALK_STEP_S: Final = 3600.0


def _walking_link(
    cases: Sequence[Case], kind: DeviceType, days: float, seed: int
) -> list[dict[str, object]]:
    """``kind``'s NB-IoT cases with each wake priced at the coverage class a
    seeded RSRP walk (:func:`~edgecfg.sim.generators.link_walk`, no outages)
    puts the device in at that moment: the same counters, a moving link."""
    names = {"CE0": "nb-iot/mcl144", "CE1": "nb-iot/mcl154", "CE2": "nb-iot/mcl164"}
    found: list[dict[str, object]] = []
    for pattern in PATTERNS:
        for mode in MODES:
            mine = [
                case
                for case in cases
                if (case.kind, case.pattern, case.mode) == (kind, pattern, mode)
            ]
            joules, classes = 0.0, dict.fromkeys(names, 0)
            for number, case in enumerate(mine):
                steps = math.ceil(days * DAY_S / WALK_STEP_S) + 1
                walk = list(
                    link_walk(steps=steps, step_s=WALK_STEP_S, seed=seed * 1000 + number,
                              mean_rsrp=WALK_MEAN_RSRP, outage_rate_per_day=0.0)
                )  # fmt: skip
                for at, added in case.wakes:
                    coverage = walk[int(at // WALK_STEP_S)].coverage
                    assert coverage != "none"  # no outages in this walk
                    classes[coverage] += 1
                    joules += energy(profile(names[coverage]), added).total_j
            wakes = max(1, sum(classes.values()))
            per_day = joules / (days * max(1, len(mine)))
            found.append({
                "pattern": pattern, "mode": mode,
                "coverage_share": {name: count / wakes for name, count in classes.items()},
                "j_per_day": per_day,
                "percent_of_budget": share_of_budget(per_day, kind.budget_j),
            })  # fmt: skip
    return found


def _other_links(rows: Sequence[dict[str, object]], kind: DeviceType) -> list[dict[str, object]]:
    """What ``kind``'s measured counters would cost on other links (the same
    counts: a what-if of the link, not of the protocol), with LoRaWAN's
    uplink airtime against the EU868 1 % duty cycle."""
    found: list[dict[str, object]] = []
    for row in rows:
        if row["device_type"] != kind.id or row["pattern"] not in ("none", "daily"):
            continue
        day = Counters(**cast(dict[str, float], row["per_day"]))
        for name in OTHER_LINKS:
            spent = energy(profile(name), day)
            found.append({
                "pattern": row["pattern"], "mode": row["mode"], "profile": name,
                "j_per_day": spent.total_j,
                "percent_of_budget": share_of_budget(spent.total_j, kind.budget_j),
                "duty_cycle_percent": (100 * spent.airtime_s / DAY_S / EU868_DUTY_CYCLE
                                       if name.startswith("lorawan") else None),
            })  # fmt: skip
    return found


def _target(name: str, value: float, limit: float) -> dict[str, object]:
    return {"target": name, "value": value, "limit": limit, "pass": value <= limit}


def run_energy_bench(*, days: float, devices: int, seed: int, as_json: bool) -> int:
    """Entry point of ``edgecfg bench energy``."""
    if not days > 0 or devices < 1:
        raise CommandError(f"--days must be > 0 and --devices >= 1, got {days} and {devices}")
    kinds, skipped = device_types()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgecfg-bench-energy-") as tmp:
        folder = Path(tmp)
        db = folder / "fleet.db"
        cases = _prepare(db, kinds, devices)
        with gateway_child(db) as uri:
            asyncio.run(_play(uri, folder / "agents", db, cases, days=days, seed=seed))
    groups: dict[tuple[str, str, str], list[Case]] = {}
    for case in cases:
        groups.setdefault((case.kind.id, case.pattern, case.mode), []).append(case)
    rows = [_row(group, days) for group in groups.values()]
    nbiot = next((kind for kind in kinds if kind.link == "nb-iot"), None)
    report: dict[str, object] = {
        "days": days,
        "devices_per_case": devices,
        "seed": seed,
        "wall_s": time.perf_counter() - started,
        "budget": f"battery energy over 10 years per day; 2xAA ({AA_PAIR_WH:g} Wh) over 10 "
        f"years = {daily_budget_j(AA_PAIR_WH):.1f} J/day (7-9 J/day with derating)",
        "device_types": {
            kind.id: {
                "link": kind.link,
                "battery_wh": kind.battery_wh,
                "budget_j_per_day": kind.budget_j,
                "wake_every_s": kind.wake_every_s,
                "profiles": [p.name for p in kind.profiles],
            }
            for kind in kinds
        },
        "skipped": skipped,
        "rows": rows,
        "targets": _targets(rows, nbiot.id) if nbiot is not None else [],
        "comparisons": _comparisons(rows, nbiot.id) if nbiot is not None else [],
        "other_links": {nbiot.id: _other_links(rows, nbiot)} if nbiot is not None else {},
        "walking_link": {
            nbiot.id: {
                "mean_rsrp_dbm": WALK_MEAN_RSRP,
                "rows": _walking_link(cases, nbiot, days, seed),
            }
        }
        if nbiot is not None
        else {},
    }
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print(report, kinds)
    return 0


def _print(report: Mapping[str, object], kinds: Sequence[DeviceType]) -> None:
    rows = cast(list[dict[str, object]], report["rows"])
    print(f"config-management energy per device per day, {report['days']:g} simulated days, "
          f"{report['devices_per_case']} device(s) per case, real agents and gateway "
          "on loopback")  # fmt: skip
    print(f"budget: {report['budget']}")
    for name, why in cast(dict[str, str], report["skipped"]).items():
        print(f"skipped: {name} ({why})")
    for kind in kinds:
        print()
        print(f"{kind.id}: {kind.link}, {kind.battery_wh:g} Wh -> {kind.budget_j:.1f} J/day, "
              f"wakes every {kind.wake_every_s:g} s")  # fmt: skip
        print(f"  {'pattern':<36} {'mode':<5} {'RT/day':>7} {'B up/day':>9} {'B dn/day':>9}  "
              + "  ".join(f"{p.coverage:>18}" for p in kind.profiles))  # fmt: skip
        for row in rows:
            if row["device_type"] != kind.id:
                continue
            day = cast(dict[str, float], row["per_day"])
            shares = "  ".join(f"{_percent(row, p.name):>17.3f}%" for p in kind.profiles)
            print(f"  {PATTERN_TEXT[cast(Pattern, row['pattern'])]:<36} {row['mode']:<5} "
                  f"{day['round_trips']:>7.2f} {day['bytes_up']:>9.1f} {day['bytes_down']:>9.1f}  "
                  f"{shares}")  # fmt: skip
    for name, links in cast(dict[str, list[dict[str, object]]], report["other_links"]).items():
        print()
        print(f"{name}'s counters on other links (% of its budget; LoRaWAN: share of the "
              "EU868 1 % duty cycle used)")  # fmt: skip
        for link in links:
            duty = link["duty_cycle_percent"]
            extra = "" if duty is None else f"   duty cycle {cast(float, duty):.2f}%"
            share = cast(float, link["percent_of_budget"])
            print(f"  {PATTERN_TEXT[cast(Pattern, link['pattern'])]:<36} {link['mode']:<5} "
                  f"{link['profile']:<14} {share:>9.3f}%{extra}")  # fmt: skip
    for name, walked in cast(dict[str, dict[str, object]], report["walking_link"]).items():
        print()
        print(f"{name} on a walking link (seeded RSRP walk around {walked['mean_rsrp_dbm']:g} "
              "dBm, each wake priced at its coverage class)")  # fmt: skip
        for line in cast(list[dict[str, object]], walked["rows"]):
            share = cast(dict[str, float], line["coverage_share"])
            classes = " ".join(f"{c} {100 * v:.0f}%" for c, v in share.items())
            percent = cast(float, line["percent_of_budget"])
            print(f"  {PATTERN_TEXT[cast(Pattern, line['pattern'])]:<36} {line['mode']:<5} "
                  f"{percent:>9.3f}%   wakes in {classes}")  # fmt: skip
    print()
    print("own = a radio wake for the config; ride = the held ETag on telemetry POSTs "
          "(counted: what it adds to the same POST)")  # fmt: skip
    for line in cast(list[dict[str, object]], report["comparisons"]):
        print(f"for comparison, not a target: {line['case']} (%): "
              f"{cast(float, line['value']):.3f} (the wake alone is over 1 %)")  # fmt: skip
    for target in cast(list[dict[str, object]], report["targets"]):
        verdict = "PASS" if target["pass"] else "MISS"
        print(f"{verdict}  {target['target']}: {cast(float, target['value']):.3f} "
              f"(limit {cast(float, target['limit']):g})")  # fmt: skip
