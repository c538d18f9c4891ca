"""A staged rollout in virtual time: the real rollout engine over a modelled fleet.

``edgecfg sim rollout SCENARIO.toml`` reads a scenario (the format is a
contract: see :func:`load_scenario` and the README), creates its fleet in
strata, and plays days of check-ins.  Each device syncs on its cadence (a
due sync happens with probability ``checkin_reliability``), reports the
telemetry of the time since its last sync, and is offered what the engine
says its arm should run: the change (canary), a no-op version bump
(control), or, after a rollback, its previous configuration.  A device that
receives a version applies it, probes its health and confirms or reverts
by itself, as the agent does: a change that breaks connectivity fails the
"can I still reach the gateway" probe and is reverted; a reboot loop trips
the boot counter before the change is confirmed and is reverted; either
outcome is reported at the next sync.  Once a day the gateway's loop hands
the engine (:func:`edgecfg.core.rollout.decide`) a snapshot of the cohort,
and every decision is printed.

Time is hours since the rollout started; deterministic for a seed.
"""

from __future__ import annotations

import heapq
import math
import random
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Literal, cast

from edgecfg.core.apply import (
    Applied,
    ApplyConfig,
    ApplyEvent,
    ApplyOutcome,
    ApplyState,
    Begin,
    Booted,
    Confirm,
    Confirmed,
    Probed,
    ProbeResult,
    Revert,
    RevertDone,
    RunProbes,
    WriteCandidate,
    Written,
    step,
)
from edgecfg.core.ids import ETag
from edgecfg.core.rollout import (
    CADENCE_HOURS,
    Arm,
    Assignment,
    Cadence,
    Decision,
    DeviceStatus,
    Evidence,
    Outcome,
    Phase,
    Plan,
    Progress,
    Snapshot,
    State,
    Stratum,
    assign,
    checkin_evidence,
    decide,
    parse_plan,
)
from edgecfg.core.sequential import SUMS, accumulate, arms_of
from edgecfg.errors import UsageError

OutageArm = Literal["both", "canary", "control"]


@dataclass(frozen=True, slots=True)
class StratumShare:
    stratum: Stratum
    share: float


@dataclass(frozen=True, slots=True)
class Baseline:
    """Every device, before and without the change (per device-day unless named)."""

    battery_drain_pct_per_day: float = 0.8
    reboots_per_device_week: float = 0.02
    error_rate: float = 0.001  # errors per device-day
    checkin_reliability: float = 0.98  # probability a due sync happens


@dataclass(frozen=True, slots=True)
class Effect:
    """What the change does to the devices that apply it (absent: an A/A rollout)."""

    where: Mapping[str, str] = field(default_factory=lambda: {})
    battery_drain_rel: float = 1.0
    error_rate_rel: float = 1.0
    reboot_loop_fraction: float = 0.0
    never_syncs_again_fraction: float = 0.0
    breaks_connectivity_fraction: float = 0.0

    def reaches(self, stratum: Stratum) -> bool:
        fields = {"hardware": stratum.hardware, "region": stratum.region,
                  "power": stratum.power, "sync": stratum.cadence}  # fmt: skip
        return all(fields.get(key) == value for key, value in self.where.items())


@dataclass(frozen=True, slots=True)
class Outage:
    """Telemetry from ``arm`` is lost from ``start_h`` for ``hours`` (syncs still happen)."""

    start_h: float
    hours: float
    arm: OutageArm

    def covers(self, t_h: float, arm: Arm) -> bool:
        inside = self.start_h <= t_h < self.start_h + self.hours
        return inside and self.arm in ("both", arm.value)


@dataclass(frozen=True, slots=True)
class RolloutScenario:
    seed: int
    days: float
    devices: int
    strata: tuple[StratumShare, ...]
    baseline: Baseline
    effect: Effect | None
    outages: tuple[Outage, ...]
    plan: Plan


_TOP: Final = frozenset({"seed", "days", "fleet", "baseline", "effect", "outage", "plan"})
_FLEET: Final = frozenset({"devices", "strata"})
_STRATUM: Final = frozenset({"hardware", "region", "power", "sync", "share"})
_OUTAGE: Final = frozenset({"start_h", "hours", "arm"})
_WHERE: Final = frozenset({"hardware", "region", "power", "sync"})


def load_scenario(text: str, *, source: str = "scenario") -> RolloutScenario:
    """Parse a scenario file; every unknown key, missing key or bad value is an
    error naming where it is and what was expected."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{source}: not TOML: {error}") from None
    _known(table, _TOP, source)
    fleet = _section(table, "fleet", source, required=True)
    _known(fleet, _FLEET, f"{source} [fleet]")
    devices = _number(fleet, "devices", f"{source} [fleet]", integer=True, required=True)
    if devices < 1:
        raise UsageError(f"{source} [fleet] devices: expected at least 1, got {devices}")
    rows = _rows(fleet, "strata", f"{source} [fleet]")
    strata = tuple(_stratum(row, f"{source} [[fleet.strata]] #{n + 1}")
                   for n, row in enumerate(rows))  # fmt: skip
    if not strata:
        raise UsageError(f"{source}: [[fleet.strata]] needs at least one stratum")
    total = sum(row.share for row in strata)
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise UsageError(f"{source}: stratum shares add up to {total:g}, expected 1")
    baseline_table = _section(table, "baseline", source)
    baseline_keys = frozenset(Baseline.__dataclass_fields__)
    _known(baseline_table, baseline_keys, f"{source} [baseline]")
    baseline = Baseline(**{key: _number(baseline_table, key, f"{source} [baseline]")
                           for key in baseline_table})  # fmt: skip
    if not 0 < baseline.checkin_reliability <= 1:
        raise UsageError(f"{source} [baseline] checkin_reliability: expected (0, 1]")
    effect: Effect | None = None
    if "effect" in table:
        effect = _effect(_section(table, "effect", source), f"{source} [effect]")
    outages = tuple(_outage(row, f"{source} [[outage]] #{n + 1}")
                    for n, row in enumerate(_rows(table, "outage", source)))  # fmt: skip
    plan = parse_plan(_section(table, "plan", source, required=True), "sim")
    if not any(reaches(plan.target, row.stratum) for row in strata):
        raise UsageError(f"{source} [plan] target {plan.target!r} reaches no stratum of the fleet")
    return RolloutScenario(
        seed=int(_number(table, "seed", source, integer=True)) if "seed" in table else 1,
        days=_number(table, "days", source) if "days" in table else 28.0,
        devices=int(devices),
        strata=strata,
        baseline=baseline,
        effect=effect,
        outages=outages,
        plan=plan,
    )


def _known(table: Mapping[str, object], keys: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        raise UsageError(f"{where}: unknown keys {unknown}; known: {sorted(keys)}")


def _section(
    table: Mapping[str, object], name: str, where: str, *, required: bool = False
) -> dict[str, object]:
    value = table.get(name)
    if value is None:
        if required:
            raise UsageError(f"{where}: [{name}] is required")
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{where}: {name} must be a table")
    return cast(dict[str, object], value)


def _rows(table: Mapping[str, object], name: str, where: str) -> list[dict[str, object]]:
    value = table.get(name, [])
    rows = cast(list[object], value) if isinstance(value, list) else None
    if rows is None or not all(isinstance(row, dict) for row in rows):
        raise UsageError(f"{where}: {name} must be an array of tables ([[{name}]])")
    return [cast(dict[str, object], row) for row in rows]


def _number(
    table: Mapping[str, object],
    key: str,
    where: str,
    *,
    integer: bool = False,
    required: bool = False,
) -> float:
    if key not in table:
        if required:
            raise UsageError(f"{where}: {key!r} is required")
        return 0.0
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{where} {key}: expected a number, got {value!r}")
    if integer and not isinstance(value, int):
        raise UsageError(f"{where} {key}: expected an integer, got {value!r}")
    if value < 0:
        raise UsageError(f"{where} {key}: expected a non-negative number, got {value!r}")
    return value


def _text(table: Mapping[str, object], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise UsageError(f"{where} {key}: expected a non-empty string, got {value!r}")
    return value


def _stratum(row: Mapping[str, object], where: str) -> StratumShare:
    _known(row, _STRATUM, where)
    sync = _text(row, "sync", where)
    if sync not in CADENCE_HOURS:
        raise UsageError(f"{where} sync: expected one of {sorted(CADENCE_HOURS)}, got {sync!r}")
    power = _text(row, "power", where)
    if power not in ("battery", "mains"):
        raise UsageError(f"{where} power: expected 'battery' or 'mains', got {power!r}")
    share = _number(row, "share", where, required=True)
    stratum = Stratum(_text(row, "hardware", where), _text(row, "region", where), power,
                      cast(Cadence, sync))  # fmt: skip
    return StratumShare(stratum, share)


def _effect(table: Mapping[str, object], where: str) -> Effect:
    keys = frozenset(Effect.__dataclass_fields__)
    _known(table, keys, where)
    filter_table = _section(table, "where", where)
    _known(filter_table, _WHERE, f"{where} where")
    numbers = {key: _number(table, key, where) for key in table if key != "where"}
    for key, value in numbers.items():
        if key.endswith("_fraction") and value > 1:
            raise UsageError(f"{where} {key}: expected a share in [0, 1], got {value}")
    filters = {key: _text(filter_table, key, f"{where} where") for key in filter_table}
    return Effect(where=filters, **numbers)


def _outage(row: Mapping[str, object], where: str) -> Outage:
    _known(row, _OUTAGE, where)
    arm = row.get("arm", "both")
    if arm not in ("both", "canary", "control"):
        raise UsageError(f"{where} arm: expected both, canary or control, got {arm!r}")
    return Outage(
        _number(row, "start_h", where, required=True),
        _number(row, "hours", where, required=True),
        arm,
    )


# -- the run -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One decision as the scenario contract prints it."""

    t_h: float
    stage: str
    wave: int
    decision: Decision
    reason: str
    evidence: Mapping[str, object]

    def as_json(self) -> dict[str, object]:
        return {"t_h": self.t_h, "stage": self.stage, "wave": self.wave,
                "decision": self.decision.value, "reason": self.reason,
                "evidence": dict(self.evidence)}  # fmt: skip


@dataclass(slots=True)
class RunSummary:
    """What one run ended with."""

    final: Decision | None = None
    phase: Phase = Phase.RUNNING
    decisions: int = 0
    aborted: bool = False
    completed: bool = False
    applied: int = 0
    reverted_by_device: int = 0
    rolled_back_devices: int = 0
    rolled_back_h: float | None = None  # when the last device was back on its previous version
    end_h: float = 0.0
    outside: int = 0  # devices outside the plan's target

    def as_json(self) -> dict[str, object]:
        return {"final": self.final.value if self.final else None, "phase": self.phase.value,
                "decisions": self.decisions, "aborted": self.aborted,
                "completed": self.completed, "applied": self.applied,
                "reverted_by_device": self.reverted_by_device,
                "rolled_back_devices": self.rolled_back_devices,
                "rolled_back_h": self.rolled_back_h, "end_h": self.end_h,
                "outside_target": self.outside}  # fmt: skip


# What a device runs.
_BASE, _CHANGE, _BUMP = 0, 1, 2


@dataclass(slots=True)
class _Device:
    name: str
    stratum: Stratum
    key: str
    cadence_h: float
    assignment: Assignment
    running: int = _BASE
    arm: Arm | None = None  # the arm it was offered in
    status: DeviceStatus = DeviceStatus.ASSIGNED
    last_seen_h: float = 0.0
    applied_h: float = 0.0
    loops: bool = False
    vanishes: bool = False
    pending: str = ""  # an outcome to report at the next sync: "confirmed" or "reverted"
    boots: int = 0
    gone: bool = False


class RolloutRun:
    """One scenario run; :meth:`lines` yields the decisions as they are made."""

    def __init__(self, scenario: RolloutScenario, seed: int | None = None) -> None:
        self.scenario = scenario
        seed = scenario.seed if seed is None else seed
        self.rng = random.Random(seed)
        # cohorts hash the rollout id: one per seed, whatever the file is called
        self.plan = replace(scenario.plan, rollout_id=f"sim-{seed}")
        fleet = self._fleet()
        # devices outside the plan's target take no part: never offered, no evidence
        self.devices = [d for d in fleet if reaches(scenario.plan.target, d.stratum)]
        self.outside = len(fleet) - len(self.devices)
        assignments = assign(self.plan, ((d.name, d.stratum) for d in self.devices))
        for device in self.devices:
            device.assignment = assignments[device.name]
        waves = 2 if any(d.assignment.wave == 1 for d in self.devices) else 1
        self.state = State(waves=waves)
        # per guardrail and stratum: the canary's and the control's sums
        self.sums: dict[str, dict[str, list[float]]] = {g.name: {} for g in self.plan.guardrails}
        self.fresh: dict[Arm, float | None] = {Arm.CANARY: None, Arm.CONTROL: None}
        self.summary = RunSummary(outside=self.outside)

    def _fleet(self) -> list[_Device]:
        rng = self.rng
        scenario = self.scenario
        devices: list[_Device] = []
        counts = _apportion(scenario.devices, [row.share for row in scenario.strata])
        for row, count in zip(scenario.strata, counts, strict=True):
            stratum = row.stratum
            for _ in range(count):
                name = f"dev-{len(devices):06d}"
                cadence = CADENCE_HOURS[stratum.cadence]
                device = _Device(name, stratum, stratum.key, cadence,
                                 Assignment(name, stratum, 0, 0.5))  # fmt: skip
                device.last_seen_h = -rng.random() * cadence  # its phase
                devices.append(device)
        return devices

    def lines(self) -> Iterator[Line]:
        """Play the scenario; yield each daily decision."""
        horizon = self.scenario.days * 24.0
        queue: list[tuple[float, int]] = [
            (d.last_seen_h + d.cadence_h, n) for n, d in enumerate(self.devices)
        ]
        heapq.heapify(queue)
        look = 24.0
        while look <= horizon:
            while queue and queue[0][0] <= look:
                t_h, index = heapq.heappop(queue)
                device = self.devices[index]
                self._wake(device, t_h)
                if not device.gone:
                    heapq.heappush(queue, (t_h + device.cadence_h, index))
            if self.state.phase is Phase.ROLLED_BACK:
                # nothing left to decide: play on until every device is back
                if self._rolled_back_everywhere():
                    self.summary.rolled_back_h = look
                    break
            else:
                line = self._look(look)
                yield line
            look += 24.0
        self.summary.end_h = min(look, horizon)
        self.summary.applied = sum(1 for d in self.devices if d.applied_h > 0)

    # -- a device's check-in ---------------------------------------------------------

    def _wake(self, device: _Device, t_h: float) -> None:
        if device.vanishes and device.running == _CHANGE:
            device.gone = True  # applied, then never heard from again
            return
        if self.rng.random() > self.scenario.baseline.checkin_reliability:
            return  # a due sync that did not happen: silence, not data
        self._report(device, t_h)
        device.last_seen_h = t_h
        self._offer(device, t_h)

    def _report(self, device: _Device, t_h: float) -> None:
        if device.pending == "reverted":
            device.status = DeviceStatus.REVERTED
            self.summary.reverted_by_device += 1
        elif device.pending == "confirmed":
            device.status = DeviceStatus.CONFIRMED
        elif device.status is DeviceStatus.CONFIRMED:
            device.status = DeviceStatus.REPORTING
        device.pending = ""
        arm = device.arm
        days = (t_h - max(device.last_seen_h, device.applied_h)) / 24.0
        if arm is None or days <= 0 or (device.running == _BASE and device.boots == 0):
            return
        if self.scenario.outages and any(o.covers(t_h, arm) for o in self.scenario.outages):
            return  # the telemetry of this sync is lost
        drain, reboots, errors = self._telemetry(device, days)
        device.boots = 0
        self.fresh[arm] = t_h
        slot = 0 if arm is Arm.CANARY else SUMS
        for name, value in (("battery_drain", drain), ("reboots", reboots), ("errors", errors)):
            rows = self.sums.get(name)
            if rows is None:
                continue
            sums = rows.get(device.key)
            if sums is None:
                sums = rows[device.key] = [0.0] * (2 * SUMS)  # the canary, then the control
            accumulate(sums, slot, value, days)

    def _telemetry(self, device: _Device, days: float) -> tuple[float, float, float]:
        """Per-day battery drain (%), reboots and errors over ``days``."""
        baseline, rng = self.scenario.baseline, self.rng
        effect = self.scenario.effect
        treated = (
            device.running == _CHANGE and effect is not None and effect.reaches(device.stratum)
        )
        drain_rel = effect.battery_drain_rel if treated and effect is not None else 1.0
        error_rel = effect.error_rate_rel if treated and effect is not None else 1.0
        drain = 0.0
        if device.stratum.power == "battery":
            drain = max(0.0, rng.gauss(baseline.battery_drain_pct_per_day * drain_rel, 0.1))
        reboots = poisson(rng, baseline.reboots_per_device_week / 7 * days) + device.boots
        errors = poisson(rng, baseline.error_rate * error_rel * days)
        return drain, reboots / days, errors / days

    def _offer(self, device: _Device, t_h: float) -> None:
        state = self.state
        if state.phase is Phase.ROLLED_BACK:
            if device.running != _BASE:
                device.running = _BASE  # its previous configuration, as a new version
                self.summary.rolled_back_devices += 1
            return
        if device.status is DeviceStatus.REVERTED or device.running != _BASE:
            return  # the gateway does not offer a version the device reverted
        arm = device.assignment.arm(self.plan, state.wave, state.stage)
        if state.phase is Phase.COMPLETE:
            arm = Arm.CANARY  # every device of the target runs the change
        if arm is None:
            return
        device.arm = arm
        device.status = DeviceStatus.FETCHED
        device.applied_h = t_h
        if arm is Arm.CONTROL:
            device.running, device.pending = _BUMP, "confirmed"
            return
        self._apply_change(device, t_h)

    def _apply_change(self, device: _Device, t_h: float) -> None:
        """Apply, probe, confirm or revert through the agent's own apply machine."""
        effect, rng = self.scenario.effect, self.rng
        device.running = _CHANGE
        reaches = effect is not None and effect.reaches(device.stratum)
        breaks = (
            reaches and effect is not None and rng.random() < effect.breaks_connectivity_fraction
        )
        loops = reaches and effect is not None and rng.random() < effect.reboot_loop_fraction
        outcome = trial(t_h * HOUR_S, breaks=breaks, loops=loops)
        if outcome.verdict == "reverted":
            device.running, device.pending = _BASE, "reverted"
            device.boots = outcome.boots
            return
        device.vanishes = (
            reaches and effect is not None and (rng.random() < effect.never_syncs_again_fraction)
        )
        device.pending = "confirmed"

    # -- the gateway's daily look ----------------------------------------------------

    def _look(self, now_h: float) -> Line:
        plan, state = self.plan, self.state
        wave, stage = state.wave, state.stage
        rows: list[tuple[Assignment, Progress, Arm]] = []
        canary = proven = reverted = 0
        slowest = 0.0
        for device in self.devices:
            arm = device.arm
            if arm is None or device.status is DeviceStatus.ASSIGNED:
                continue
            progress = Progress(device.name, device.status, device.cadence_h, device.last_seen_h)
            rows.append((device.assignment, progress, arm))
            if arm is Arm.CANARY:
                canary += 1
                proven += device.status in (DeviceStatus.CONFIRMED, DeviceStatus.REPORTING)
                reverted += device.status is DeviceStatus.REVERTED
                slowest = max(slowest, device.cadence_h)
        evidence = {
            name: Evidence(
                {key: arms_of(sums) for key, sums in strata.items()},
                self.fresh[Arm.CANARY],
                self.fresh[Arm.CONTROL],
            )
            for name, strata in self.sums.items()
        }
        if any(g.name == "checkin" for g in plan.guardrails):
            evidence["checkin"] = checkin_evidence(rows, now_h, plan.overdue_factor)
        snapshot = Snapshot(now_h, state, evidence, canary, proven, reverted, slowest or 24.0)
        outcome = decide(plan, snapshot)
        self._follow(outcome)
        shown = plan.stages[stage]
        return Line(now_h, shown.name, wave, outcome.decision, outcome.reason,
                    {**outcome.evidence_json(), "canary_devices": canary,
                     "reverted": reverted})  # fmt: skip

    def _follow(self, outcome: Outcome) -> None:
        summary = self.summary
        summary.decisions += 1
        summary.final = outcome.decision
        summary.aborted = summary.aborted or outcome.decision in (Decision.ABORT, Decision.ROLLBACK)
        self.state = outcome.state
        summary.phase = outcome.state.phase
        summary.completed = summary.completed or outcome.state.phase is Phase.COMPLETE

    def _rolled_back_everywhere(self) -> bool:
        return all(d.running == _BASE or d.gone for d in self.devices)


HOUR_S: Final = 3600.0
_CANDIDATE, _PREVIOUS = ETag(b"candidat"), ETag(b"previous")


def trial(now: float, *, breaks: bool, loops: bool) -> ApplyOutcome:
    """One device's trial of a change, run through :func:`edgecfg.core.apply.step`
    as the agent runs it: ``breaks`` fails the reachability probe, ``loops``
    reboots the device while the change is applied (each reboot a
    :class:`Booted`), until the machine is idle again."""
    state, actions = step(ApplyState(), Begin(now, _CANDIDATE, _PREVIOUS))
    while actions:
        action, *rest = actions
        event: ApplyEvent
        match action:
            case WriteCandidate():
                event = Written(now, 1)
            case ApplyConfig() if loops:
                event = Booted(now)  # the change crashes the device before it is confirmed
            case ApplyConfig():
                event = Applied(now)
            case RunProbes():
                event = Probed(now, (ProbeResult("reachability", not breaks),))
            case Confirm():
                event = Confirmed(now)
            case Revert():
                event = RevertDone(now)
        state, more = step(state, event)
        actions = [*rest, *more]
    return state.unreported[-1]


def reaches(target: str, stratum: Stratum) -> bool:
    """Whether a plan's ``target`` (``global``, ``region/...`` or
    ``hardware/...``: the group dimensions a scenario's strata name) takes
    in the devices of ``stratum``; a deeper group reaches its subgroups."""
    if target == "global":
        return True
    dimension, _, path = target.partition("/")
    value = {"region": stratum.region, "hardware": stratum.hardware}.get(dimension)
    if value is None or not path:
        raise UsageError(
            f"[plan] target {target!r}: a scenario's strata name hardware and region, so the "
            f"target is global, region/PATH or hardware/NAME"
        )
    return value == path or value.startswith(path + "/")


def _apportion(total: int, shares: list[float]) -> list[int]:
    """Whole device counts per share that add up to ``total`` (largest remainders)."""
    raw = [total * share for share in shares]
    counts = [int(value) for value in raw]
    order = sorted(range(len(raw)), key=lambda n: raw[n] - counts[n], reverse=True)
    for n in order[: total - sum(counts)]:
        counts[n] += 1
    return counts


def poisson(rng: random.Random, mean: float) -> float:
    """A Poisson draw (a normal one for large means), from ``rng``."""
    if mean <= 0:
        return 0.0
    if mean > 30:
        return max(0.0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, product, count = math.exp(-mean), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return float(count)
