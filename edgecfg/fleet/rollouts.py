"""Staged rollouts on a real fleet: the loop around :mod:`edgecfg.core.rollout`.

A rollout writes its change into the own layer of each canary device as its
stage reaches it, and a no-op label (``bump``, ``device.labels.rollout`` by
default) into the own layer of each control device, so both arms sync a new
version and only the canary gets the change.  What each device's layer held
at those paths is recorded *before* the layer is written, so a rollback (of
every stage, automatic or by an operator) restores exactly that, as a new
version the device reverts to through its normal sync; an interrupted offer
is finished, never repeated, when the loop runs again (a gateway restart
loses no device and counts none twice).

Evidence, once a day (hours since the rollout started):

- progress from what devices report: confirmed when a device's applied ETag
  is its current one after the offer, reverted when it marked the offered
  version bad (its probe failed), reporting once telemetry follows;
- guardrails from the SenML telemetry devices send after the offer:
  ``battery`` (percent; drain per day from its decline), ``reboots`` and
  ``errors`` (counts per pack, per day);
- check-in deficits from device silence.

Every decision is stored with the snapshot it read (so it replays), and so
is every operator action with its reason.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Final, cast

from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import Layer, device_layer
from edgecfg.core.path import Path, format_path, parse_path
from edgecfg.core.rollout import (
    CADENCE_HOURS,
    Action,
    Arm,
    Assignment,
    Cadence,
    DeviceStatus,
    Evidence,
    Outcome,
    Phase,
    Plan,
    Progress,
    Snapshot,
    State,
    Stratum,
    act,
    assign,
    checkin_evidence,
    decide,
    parse_plan,
)
from edgecfg.core.schema import undeclared
from edgecfg.core.sequential import SUMS, Arms, Moments, accumulate, arms_of
from edgecfg.core.tree import Value
from edgecfg.errors import EdgecfgError, NotFound, PeerError, UsageError
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.impact import refuse
from edgecfg.store import RolloutDevice, RolloutRecord
from edgecfg.wire.cbor import decode, encode
from edgecfg.wire.senml import decode_senml

log = logging.getLogger(__name__)

HOUR: Final = 3600.0
DAY_H: Final = 24.0

# Plan keys the fleet reads (the engine's are in edgecfg.core.rollout).
_FLEET_KEYS: Final = {
    "bump": "device.labels.rollout",
    "cadence_path": "power.wake.interval_s",
    "battery_path": "power.battery",
}

# The telemetry names the guardrails read, until telemetry analysis
# (issue 14) maps a fleet's own names.
BATTERY, REBOOTS, ERRORS = "battery", "reboots", "errors"
_TELEMETRY_PACKS: Final = 1000


@dataclass(frozen=True, slots=True)
class Settings:
    """How a rollout meets the fleet: the label path of the no-op bump, the
    path of a device's wake interval (its cadence) and of its battery
    settings (present: battery powered)."""

    bump: Path
    cadence_path: Path
    battery_path: Path


class RolloutService:
    """Start, drive, act on and report rollouts of ``fleet``."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.store = fleet.store
        self._resumed: set[str] = set()  # rollouts whose offers this process has checked

    # -- start ---------------------------------------------------------------------

    def start(
        self,
        table: Mapping[str, object],
        *,
        now: float,
        author: str,
        rollout_id: str | None = None,
    ) -> str:
        """Start the rollout ``table`` describes (a ``[plan]`` table); returns its id.

        The target's devices are assigned to cohorts now, once; the first
        stage's devices are offered the change at once.
        """
        rollout_id = rollout_id or f"r-{secrets.token_hex(4)}"
        if self.store.get_rollout(rollout_id) is not None:
            raise UsageError(f"rollout {rollout_id!r} exists already")
        engine_table = {k: v for k, v in table.items() if k not in _FLEET_KEYS}
        plan = parse_plan(engine_table, rollout_id)
        settings = _settings(table)
        targets = self._targets(plan.target)
        if not targets:
            raise UsageError(f"rollout target {plan.target!r} reaches no device")
        self._check_paths(plan, settings)
        for device in targets:  # the change must be valid on every device it may reach
            self._dry_run(device, plan, settings)
        members = [(device, self._stratum(device, settings)) for device in targets]
        assignments = assign(plan, members)
        waves = 2 if any(a.wave == 1 for a in assignments.values()) else 1
        record = RolloutRecord(
            rollout_id,
            json.dumps({"plan": dict(table), "author": author}, sort_keys=True),
            _state_json(State(waves=waves)),
            now,
            now,
        )
        self.store.put_rollout(record)
        cohort = [
            RolloutDevice(DeviceId(a.device), a.stratum.key, a.wave, a.quantile)
            for a in assignments.values()
        ]
        self.store.put_rollout_devices(rollout_id, cohort)
        self._log(rollout_id, now, "action", {"action": "start", "author": author,
                                              "devices": len(assignments)})  # fmt: skip
        self._offer(rollout_id, now)
        return rollout_id

    def _dry_run(self, device: DeviceId, plan: Plan, settings: Settings) -> None:
        """Refuse (naming the device) a change its own layer could not take."""
        layer_id = device_layer(device)
        wanted = {parse_path(p): cast(Value, v) for p, v in plan.change.items()}
        wanted[settings.bump] = f"{plan.rollout_id}:canary"
        new = self.fleet.layer(layer_id).merged(Layer(wanted))
        try:
            refuse(self.fleet.impact(layer_id, new))
        except EdgecfgError as error:
            raise UsageError(f"rollout change refused on {device}: {error}") from None

    def _targets(self, target: str) -> list[DeviceId]:
        try:
            return sorted(self.fleet.reached_by(LayerId(target)))
        except (UsageError, NotFound) as error:
            raise UsageError(f"rollout target {target!r}: {error}") from None

    def _stratum(self, device: DeviceId, settings: Settings) -> Stratum:
        record = self.fleet.record(device)
        tree = self.fleet.resolve(device).tree
        region = record.groups.get("region", "")
        interval = _at(tree, settings.cadence_path)
        seconds = float(interval) if isinstance(interval, int | float) else DAY_H * HOUR
        cadence: Cadence = (
            "hourly" if seconds <= 1.5 * HOUR else "daily" if seconds <= 36 * HOUR else "weekly"
        )
        power = "battery" if _at(tree, settings.battery_path) is not None else "mains"
        # "|" separates the parts of a stratum's key (see _assignment)
        hardware = (record.hardware or "unknown").replace("|", "/")
        return Stratum(hardware, region.split("/")[0].replace("|", "/") or "none", power, cadence)

    def _check_paths(self, plan: Plan, settings: Settings) -> None:
        schema = self.fleet.schema
        if schema is None:
            return
        paths = [*map(parse_path, plan.change), settings.bump]
        unknown = undeclared(schema, paths)
        if unknown:
            shown = ", ".join(format_path(p) for p in sorted(unknown))
            raise UsageError(f"rollout paths not declared by schema {schema.name}: {shown}")

    # -- the loop ------------------------------------------------------------------

    def tick(self, now: float) -> list[tuple[str, Outcome]]:
        """Drive every running rollout: finish offers, and make the day's decision
        when one is due (once per 24 h since the start).  Returns the decisions."""
        made: list[tuple[str, Outcome]] = []
        for record in self.store.rollouts():
            state = _state(record.state)
            if state.phase not in (Phase.RUNNING, Phase.COMPLETE):
                continue
            if record.id not in self._resumed:
                # once per process: finish what a crash interrupted (an offer
                # stored but its layer not written)
                self._offer(record.id, now, recover=True)
                self._resumed.add(record.id)
            decided = sum(1 for e in self.store.rollout_history(record.id) if e.kind == "decision")
            due = int((now - record.created_at) / HOUR // DAY_H)
            if due > decided:
                made.append((record.id, self.decide(record.id, now)))
        return made

    def decide(self, rollout_id: str, now: float) -> Outcome:
        """Make (and store, with its snapshot) one decision for ``rollout_id`` now."""
        record, plan, settings = self._load(rollout_id)
        state = _state(record.state)
        snapshot = self.snapshot(rollout_id, now)
        outcome = decide(plan, snapshot)
        self._log(rollout_id, now, "decision", {
            "t_h": snapshot.now_h, "stage": plan.stages[state.stage].name, "wave": state.wave,
            "decision": outcome.decision.value, "reason": outcome.reason,
            "evidence": outcome.evidence_json(), "snapshot": _snapshot_json(snapshot),
        })  # fmt: skip
        self._save_state(record, outcome.state, now)
        self._follow(rollout_id, outcome.state, settings, now, outcome.reason)
        return outcome

    def _follow(
        self, rollout_id: str, state: State, settings: Settings, now: float, reason: str
    ) -> None:
        """Carry out what a new state asks: roll back, promote, or offer."""
        if state.phase is Phase.ROLLED_BACK:
            self._roll_back(rollout_id, settings, now, reason)
        elif state.phase is Phase.COMPLETE:
            self._promote(rollout_id, settings, now)
        else:
            self._offer(rollout_id, now)

    def snapshot(self, rollout_id: str, now: float) -> Snapshot:
        """What the engine reads: cohort progress, guardrail evidence, check-ins."""
        record, plan, _settings = self._load(rollout_id)
        state = _state(record.state)
        start = record.created_at
        rows: list[tuple[Assignment, Progress, Arm]] = []
        sums: dict[str, dict[str, list[float]]] = {BATTERY: {}, REBOOTS: {}, ERRORS: {}}
        fresh: dict[Arm, float | None] = {Arm.CANARY: None, Arm.CONTROL: None}
        canary = proven = reverted = 0
        slowest = 0.0
        for cohort in self.store.rollout_devices(rollout_id):
            if cohort.arm is None or cohort.offered_at is None:
                continue
            arm = Arm(cohort.arm)
            assignment, cadence_h = _assignment(cohort)
            status, seen = self._status(cohort)
            last_seen_h = ((seen or cohort.offered_at) - start) / HOUR
            rows.append((assignment, Progress(cohort.device, status, cadence_h, last_seen_h), arm))
            if arm is Arm.CANARY:
                canary += 1
                proven += status in (DeviceStatus.CONFIRMED, DeviceStatus.REPORTING)
                reverted += status is DeviceStatus.REVERTED
                slowest = max(slowest, cadence_h)
            for which, newest in self._telemetry(cohort, arm, sums).items():
                newest_h = (newest - start) / HOUR
                fresh[which] = max(fresh[which] or newest_h, newest_h)
        evidence: dict[str, Evidence] = {}
        names = {"battery_drain": BATTERY, "reboots": REBOOTS, "errors": ERRORS}
        for guardrail in plan.guardrails:
            if guardrail.name == "checkin":
                evidence["checkin"] = checkin_evidence(rows, (now - start) / HOUR,
                                                       plan.overdue_factor)  # fmt: skip
                continue
            strata = sums[names[guardrail.name]]
            evidence[guardrail.name] = Evidence(
                {key: arms_of(s) for key, s in strata.items()},
                fresh[Arm.CANARY],
                fresh[Arm.CONTROL],
            )
        return Snapshot((now - start) / HOUR, state, evidence, canary, proven, reverted,
                        slowest or DAY_H)  # fmt: skip

    def _status(self, cohort: RolloutDevice) -> tuple[DeviceStatus, float | None]:
        """A cohort device's progress since its (latest) offer, and when it was last seen."""
        offered = cast(float, cohort.moved_at or cohort.offered_at)
        try:
            record = self.fleet.record(cohort.device)
        except NotFound:
            return DeviceStatus.FAILED, None
        if any(mark.marked_at >= offered for mark in self.store.bad_versions(cohort.device)):
            return DeviceStatus.REVERTED, record.last_seen
        seen = record.last_seen
        if seen is None or seen < offered:
            return DeviceStatus.OFFERED, seen
        if record.applied_etag == self.fleet.etag(cohort.device):
            packs = self.store.telemetry(cohort.device, limit=1)
            reporting = bool(packs) and packs[0][0] > offered
            return (DeviceStatus.REPORTING if reporting else DeviceStatus.CONFIRMED), seen
        return DeviceStatus.FETCHED, seen

    def _telemetry(
        self, cohort: RolloutDevice, arm: Arm, sums: dict[str, dict[str, list[float]]]
    ) -> dict[Arm, float]:
        """Add the device's telemetry since its offer to ``sums``, to the control
        until it moved into the canary; the newest pack time per arm."""
        offered = cast(float, cohort.offered_at)
        packs = [p for p in self.store.telemetry(cohort.device, limit=_TELEMETRY_PACKS)
                 if p[0] > offered]  # fmt: skip
        moved = cohort.moved_at
        if moved is None:
            return self._add_packs(cohort, arm, offered, packs, sums)
        newest = self._add_packs(cohort, Arm.CONTROL, offered,
                                 [p for p in packs if p[0] <= moved], sums)  # fmt: skip
        newest.update(self._add_packs(cohort, Arm.CANARY, moved,
                                      [p for p in packs if p[0] > moved], sums))  # fmt: skip
        return newest

    def _add_packs(
        self,
        cohort: RolloutDevice,
        arm: Arm,
        offered: float,
        packs: list[tuple[float, bytes]],
        sums: dict[str, dict[str, list[float]]],
    ) -> dict[Arm, float]:
        if not packs:
            return {}
        levels: list[tuple[float, float]] = []
        counts = {REBOOTS: 0.0, ERRORS: 0.0}
        for at, payload in packs:
            try:
                records = decode_senml(payload)
            except PeerError:
                continue  # a pack the gateway stored but cannot read says nothing
            for measurement in records:
                value = measurement.value
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                if measurement.name == BATTERY:
                    levels.append((at, float(value)))
                elif measurement.name in counts:
                    counts[measurement.name] += float(value)
        days = max((max(p[0] for p in packs) - offered) / (DAY_H * HOUR), 1 / DAY_H)
        slot = 0 if arm is Arm.CANARY else SUMS
        values = {name: total / days for name, total in counts.items()}
        if len(levels) >= 2:
            levels.sort()
            span = max((levels[-1][0] - levels[0][0]) / (DAY_H * HOUR), 1 / DAY_H)
            values[BATTERY] = max(0.0, levels[0][1] - levels[-1][1]) / span
        for name, value in values.items():
            accumulate(sums[name].setdefault(cohort.stratum, [0.0] * (2 * SUMS)), slot, value, days)
        return {arm: max(p[0] for p in packs)}

    # -- offers and rollback ---------------------------------------------------------

    def _offer(self, rollout_id: str, now: float, *, recover: bool = False) -> int:
        """Offer every device its arm's version under the current stage (the
        intent first, then the layer); with ``recover``, also finish every
        offer a crash interrupted.  Returns how many layers were written."""
        record, plan, settings = self._load(rollout_id)
        state = _state(record.state)
        if state.phase is Phase.ROLLED_BACK:
            return 0
        if state.phase is Phase.COMPLETE:
            if recover:  # a promotion a crash interrupted is finished
                self._promote(rollout_id, settings, now)
            return 0
        written = 0
        recorded: list[RolloutDevice] = []
        for cohort in self.store.rollout_devices(rollout_id):
            assignment, _cadence = _assignment(cohort)
            arm = assignment.arm(plan, state.wave, state.stage)
            if arm is None:
                continue
            if cohort.offered_at is not None and cohort.arm == arm.value:
                continue
            if cohort.offered_at is not None:
                # a control device moves into the canary as the stages grow:
                # what it reported before still speaks for the control
                recorded.append(replace(cohort, arm=arm.value, moved_at=now))
                continue
            # a new offer: the intent, with what the layer held, is stored
            # before the layer is written
            previous = self._previous(cohort.device, plan, settings)
            recorded.append(replace(cohort, arm=arm.value, offered_at=now, previous=previous))
        if recorded:
            self.store.put_rollout_devices(rollout_id, recorded)
        pending = self.store.rollout_devices(rollout_id) if recover else recorded
        for cohort in pending:
            if cohort.arm is not None:
                written += self._ensure(rollout_id, cohort, plan, settings, now)
        return written

    def _previous(self, device: DeviceId, plan: Plan, settings: Settings) -> str:
        layer = self.fleet.layer(device_layer(device))
        held: dict[str, str | None] = {}
        for path in [*map(parse_path, plan.change), settings.bump]:
            value = layer.sets.get(path)
            held[format_path(path)] = None if value is None else encode(value).hex()
        return json.dumps(held, sort_keys=True)

    def _ensure(
        self, rollout_id: str, cohort: RolloutDevice, plan: Plan, settings: Settings, now: float
    ) -> int:
        """Write the device's arm's values into its layer unless it holds them."""
        wanted: dict[Path, Value] = {settings.bump: f"{rollout_id}:{cohort.arm}"}
        if cohort.arm == Arm.CANARY.value:
            wanted.update({parse_path(p): cast(Value, v) for p, v in plan.change.items()})
        layer_id = device_layer(cohort.device)
        held = self.fleet.layer(layer_id)
        if all(held.sets.get(path) == value for path, value in wanted.items()):
            return 0
        try:
            self.fleet.write_layer(layer_id, Layer(wanted), author=f"rollout:{rollout_id}",
                                   message=f"rollout {rollout_id}: {cohort.arm}",
                                   now=now)  # fmt: skip
        except EdgecfgError as error:
            # e.g. a lock set since the start: the device stays offered but
            # unwritten (it never proves the change, so the stage holds) and
            # the next recovery tries again
            log.warning("rollout %s: %s not offered: %s", rollout_id, cohort.device, error)
            return 0
        return 1

    def _promote(self, rollout_id: str, settings: Settings, now: float) -> None:
        """A complete rollout's change becomes its target group's: the group
        layer takes it (what the group held is stored first, for a rollback
        on late harm), and each device's own layer goes back to what it
        held, so a device joining the group later gets the change too."""
        record, plan, _settings = self._load(rollout_id)
        body = cast(dict[str, object], json.loads(record.plan))
        group = LayerId(plan.target)
        if "promoted" not in body:
            held = self.fleet.layer(group).sets
            body["promoted"] = {
                format_path(path): None if path not in held else encode(held[path]).hex()
                for path in map(parse_path, plan.change)
            }
            fresh = self.store.get_rollout(rollout_id) or record
            self.store.put_rollout(replace(fresh, plan=json.dumps(body, sort_keys=True)))
        wanted = {parse_path(p): cast(Value, v) for p, v in plan.change.items()}
        if any(self.fleet.layer(group).sets.get(p) != v for p, v in wanted.items()):
            self.fleet.write_layer(group, Layer(wanted), author=f"rollout:{rollout_id}",
                                   message=f"rollout {rollout_id} complete", now=now)  # fmt: skip
        self._restore_devices(rollout_id, plan, settings, now, f"promoted to {plan.target}")

    def _roll_back(self, rollout_id: str, settings: Settings, now: float, reason: str) -> int:
        """Restore every offered device's layer (and, after a promotion, the
        target group's) to what it held before; how many layers changed."""
        record, plan, _settings = self._load(rollout_id)
        restored = 0
        promoted = cast(dict[str, object], json.loads(record.plan)).get("promoted")
        if isinstance(promoted, dict):
            group = LayerId(plan.target)
            previous = cast(dict[str, str | None], promoted)
            back = {parse_path(p): decode(bytes.fromhex(h)) for p, h in previous.items() if h}
            current = self.fleet.layer(group)
            new = current.without(map(parse_path, previous)).merged(Layer(back))
            if new != current:
                self.fleet.write_layer(group, new, replace=True, author=f"rollout:{rollout_id}",
                                       message=f"rollback: {reason}", now=now)  # fmt: skip
                restored += 1
        return restored + self._restore_devices(rollout_id, plan, settings, now,
                                                f"rollback: {reason}")  # fmt: skip

    def _restore_devices(
        self, rollout_id: str, plan: Plan, settings: Settings, now: float, message: str
    ) -> int:
        """Every offered device's own layer as it was before the rollout; how many changed."""
        restored = 0
        paths = [*map(parse_path, plan.change), settings.bump]
        for cohort in self.store.rollout_devices(rollout_id):
            if cohort.offered_at is None or cohort.previous is None:
                continue
            layer_id = device_layer(cohort.device)
            previous = cast(dict[str, str | None], json.loads(cohort.previous))
            back = {parse_path(p): decode(bytes.fromhex(h)) for p, h in previous.items() if h}
            current = self.fleet.layer(layer_id)
            new = current.without(paths).merged(Layer(back))
            if new == current:
                continue
            self.fleet.write_layer(layer_id, new, replace=True, author=f"rollout:{rollout_id}",
                                   message=message, now=now)  # fmt: skip
            restored += 1
        return restored

    # -- operators -------------------------------------------------------------------

    def act(
        self, rollout_id: str, action: Action, reason: str, *, now: float, author: str
    ) -> State:
        """Pause, resume, advance or roll back (a reason is required and recorded)."""
        record, plan, settings = self._load(rollout_id)
        state = act(plan, _state(record.state), action, reason,
                    (now - record.created_at) / HOUR)  # fmt: skip
        self._log(rollout_id, now, "action", {"action": action, "reason": reason,
                                              "author": author})  # fmt: skip
        self._save_state(record, state, now)
        self._follow(rollout_id, state, settings, now, reason)
        return state

    def exists(self, rollout_id: str) -> bool:
        """Whether a rollout of that id was ever started."""
        return self.store.get_rollout(rollout_id) is not None

    def status(self, rollout_id: str, now: float) -> dict[str, object]:
        """The rollout at a glance: phase, stage, cohorts, the last decision."""
        record, plan, _settings = self._load(rollout_id)
        state = _state(record.state)
        cohorts = self.store.rollout_devices(rollout_id)
        arms = {arm.value: sum(1 for c in cohorts if c.arm == arm.value) for arm in Arm}
        decisions = [json.loads(e.entry) for e in self.store.rollout_history(rollout_id)
                     if e.kind == "decision"]  # fmt: skip
        last = cast(dict[str, object], decisions[-1]) if decisions else None
        by_status: dict[str, int] = {}
        stages: dict[str, list[int]] = {}  # per stage: canary devices, proven
        for cohort in cohorts:
            if cohort.offered_at is None:
                by_status["assigned"] = by_status.get("assigned", 0) + 1
                continue
            status, _seen = self._status(cohort)
            by_status[status.value] = by_status.get(status.value, 0) + 1
            if cohort.arm == Arm.CANARY.value:
                assignment, _cadence = _assignment(cohort)
                treated = assignment.treated_at(plan)
                name = plan.stages[treated if treated is not None else -1].name
                row = stages.setdefault(f"{assignment.wave}:{name}", [0, 0])
                row[0] += 1
                row[1] += status in (DeviceStatus.CONFIRMED, DeviceStatus.REPORTING)
        return {
            "id": rollout_id,
            "target": plan.target,
            "change": dict(plan.change),
            "phase": state.phase.value,
            "wave": state.wave,
            "stage": plan.stages[state.stage].name,
            "stages": [stage.name for stage in plan.stages],
            "reason": state.reason,
            "devices": len(cohorts),
            "offered": arms,
            "devices_by_status": by_status,
            "coverage_by_stage": {
                key: {"canary": row[0], "proven": row[1], "coverage": round(row[1] / row[0], 4)}
                for key, row in stages.items()
            },
            "age_h": round((now - record.created_at) / HOUR, 2),
            "last_decision": None if last is None else {
                key: last[key] for key in ("t_h", "decision", "reason", "evidence") if key in last
            },
            "next_decision_h": (len(decisions) + 1) * DAY_H,
        }  # fmt: skip

    def history(self, rollout_id: str) -> list[dict[str, object]]:
        """Every decision and action, oldest first (decisions without their snapshot)."""
        self._load(rollout_id)
        rows: list[dict[str, object]] = []
        for entry in self.store.rollout_history(rollout_id):
            body = cast(dict[str, object], json.loads(entry.entry))
            body.pop("snapshot", None)
            rows.append({"seq": entry.seq, "at": entry.at, "kind": entry.kind, **body})
        return rows

    def replay(self, rollout_id: str, seq: int) -> bool:
        """Whether stored decision ``seq`` replays from its snapshot to the same decision."""
        record, plan, _settings = self._load(rollout_id)
        del record
        for entry in self.store.rollout_history(rollout_id):
            if entry.seq == seq and entry.kind == "decision":
                body = cast(dict[str, object], json.loads(entry.entry))
                snapshot = _snapshot_from(cast(dict[str, object], body["snapshot"]))
                again = decide(plan, snapshot)
                return again.decision.value == body["decision"] and again.reason == body["reason"]
        raise NotFound("rollout decision", f"{rollout_id}#{seq}")

    # -- records -------------------------------------------------------------------

    def _load(self, rollout_id: str) -> tuple[RolloutRecord, Plan, Settings]:
        record = self.store.get_rollout(rollout_id)
        if record is None:
            raise NotFound("rollout", rollout_id)
        table = cast(dict[str, object], json.loads(record.plan)["plan"])
        engine_table = {k: v for k, v in table.items() if k not in _FLEET_KEYS}
        return record, parse_plan(engine_table, rollout_id), _settings(table)

    def _save_state(self, record: RolloutRecord, state: State, now: float) -> None:
        fresh = self.store.get_rollout(record.id) or record
        self.store.put_rollout(replace(fresh, state=_state_json(state), updated_at=now))

    def _log(self, rollout_id: str, now: float, kind: str, body: Mapping[str, object]) -> None:
        self.store.append_rollout_entry(rollout_id, at=now, kind=kind,
                                        entry=json.dumps(body, sort_keys=True))  # fmt: skip


def _settings(table: Mapping[str, object]) -> Settings:
    paths: dict[str, Path] = {}
    for key, default in _FLEET_KEYS.items():
        text = table.get(key, default)
        if not isinstance(text, str) or not text:
            raise UsageError(f"[plan] {key}: expected a dotted path, got {text!r}")
        paths[key] = parse_path(text)
    return Settings(paths["bump"], paths["cadence_path"], paths["battery_path"])


def _at(tree: Value, path: Path) -> Value | None:
    node = tree
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _assignment(cohort: RolloutDevice) -> tuple[Assignment, float]:
    hardware, region, power, cadence = cohort.stratum.split("|")
    stratum = Stratum(hardware, region, power, cast(Cadence, cadence))
    return Assignment(cohort.device, stratum, cohort.wave, cohort.quantile), CADENCE_HOURS[cadence]


def _state_json(state: State) -> str:
    body = asdict(state)
    body["phase"] = state.phase.value
    return json.dumps(body, sort_keys=True)


def _state(text: str) -> State:
    body = cast(dict[str, object], json.loads(text))
    rolled = cast(list[list[int]], body.get("rolled_back", []))
    return State(
        phase=Phase(cast(str, body["phase"])),
        wave=cast(int, body["wave"]),
        stage=cast(int, body["stage"]),
        stage_started_h=cast(float, body["stage_started_h"]),
        waves=cast(int, body["waves"]),
        rolled_back=tuple((int(w), int(s)) for w, s in rolled),
        reason=cast(str, body["reason"]),
    )


def _moments(moments: Moments) -> list[float]:
    return [moments.days, moments.total, moments.squares, moments.count, moments.w2,
            moments.w2x, moments.w2x2]  # fmt: skip


def _snapshot_json(snapshot: Snapshot) -> dict[str, object]:
    def strata(rows: Mapping[str, Arms] | None) -> dict[str, list[list[float]]] | None:
        if rows is None:
            return None
        return {k: [_moments(a.canary), _moments(a.control)] for k, a in rows.items()}

    return {
        "now_h": snapshot.now_h,
        "state": json.loads(_state_json(snapshot.state)),
        "evidence": {
            name: {"strata": strata(e.strata), "canary_fresh_h": e.canary_fresh_h,
                   "control_fresh_h": e.control_fresh_h, "advance": strata(e.advance_strata)}
            for name, e in snapshot.evidence.items()
        },
        "canary_devices": snapshot.canary_devices,
        "canary_proven": snapshot.canary_proven,
        "canary_reverted": snapshot.canary_reverted,
        "slowest_cadence_h": snapshot.slowest_cadence_h,
    }  # fmt: skip


def _snapshot_from(body: Mapping[str, object]) -> Snapshot:
    def strata(rows: object) -> dict[str, Arms] | None:
        if rows is None:
            return None
        table = cast(dict[str, list[list[float]]], rows)
        return {k: Arms(Moments(*v[0]), Moments(*v[1])) for k, v in table.items()}

    evidence: dict[str, Evidence] = {}
    for name, raw in cast(dict[str, dict[str, object]], body["evidence"]).items():
        evidence[name] = Evidence(
            strata(raw["strata"]) or {},
            cast(float | None, raw["canary_fresh_h"]),
            cast(float | None, raw["control_fresh_h"]),
            strata(raw["advance"]),
        )
    return Snapshot(
        cast(float, body["now_h"]),
        _state(json.dumps(body["state"])),
        evidence,
        cast(int, body["canary_devices"]),
        cast(int, body["canary_proven"]),
        cast(int, body["canary_reverted"]),
        cast(float, body["slowest_cadence_h"]),
    )
