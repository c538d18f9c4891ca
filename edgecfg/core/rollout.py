"""The rollout engine's decisions: plans, cohorts, device progress and gates.

Pure: time (hours since the rollout started) and evidence are arguments,
and every decision is a value made from a :class:`Snapshot` of its inputs,
so a stored snapshot replays to the same decision (:func:`decide`).

A rollout moves a change to a target fleet in stages (``1.5%``, ``5%``,
``25%``, ``100%``, optionally a manual ``lab`` stage first).  Each stage
treats a *canary* cohort and watches a *control* cohort of equal size that
receives a no-op version bump, so "synced a new version" is not itself the
treatment.  Cohorts are stable (a hash of rollout and device) and
stratified (hardware x region x power x sync cadence); weekly syncers form
a later wave of their own, since their evidence arrives a week late.

The gates (see :mod:`edgecfg.core.sequential` for the statistics):

- **abort** when any guardrail shows harm: the always-valid lower bound of
  canary minus control exceeds zero, pooled over strata or in one stratum
  (the strata share the guardrail's alpha, Bonferroni), so a harm confined
  to one stratum is not hidden by the others;
- **advance** only when every guardrail shows non-inferiority (the upper
  bound is below its margin), at least ``coverage`` of the canary has
  confirmed the change and reported, the stage has run its minimum length
  (the longer of 48 h and 1.5 x the slowest sync interval among its
  devices) and each guardrail has its minimum information;
- **hold** otherwise, with the reason and the coverage; **escalate** after
  ``escalate_after`` x the stage's minimum length without a decision;
- missing telemetry from both arms is a data-source problem: hold, never
  pass and never abort on it;
- a device overdue past ``overdue_factor`` x its cadence is check-in
  deficit evidence (:func:`checkin_evidence`), not a failure and not
  silence: vanished canaries block an advance and can abort.
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal, cast

from edgecfg.core.sequential import (
    UNINFORMED,
    Arms,
    Bound,
    Moments,
    difference,
)
from edgecfg.core.tree import check_model
from edgecfg.errors import ModelError, UsageError

Cadence = Literal["hourly", "daily", "weekly"]
CADENCE_HOURS: Final[Mapping[str, float]] = {"hourly": 1.0, "daily": 24.0, "weekly": 168.0}


class Decision(enum.Enum):
    """What a gate evaluation concluded (the values are the scenario contract's)."""

    ADVANCE = "advance"
    HOLD = "hold"
    ABORT = "abort"
    ROLLBACK = "rollback"
    ESCALATE = "escalate"


class Phase(enum.Enum):
    """Where a rollout is."""

    RUNNING = "running"
    PAUSED = "paused"
    COMPLETE = "complete"
    ROLLED_BACK = "rolled_back"


class Arm(enum.Enum):
    CANARY = "canary"
    CONTROL = "control"


class DeviceStatus(enum.Enum):
    """A cohort device's progress, in order; the last two end it badly."""

    ASSIGNED = "assigned"
    OFFERED = "offered"
    FETCHED = "fetched"
    APPLIED = "applied"
    CONFIRMED = "confirmed"
    REPORTING = "reporting"
    WINDOW_COMPLETE = "window_complete"
    FAILED = "failed"
    REVERTED = "reverted"


# A device has proved the change healthy from CONFIRMED on.
_PROVEN: Final = frozenset(
    {DeviceStatus.CONFIRMED, DeviceStatus.REPORTING, DeviceStatus.WINDOW_COMPLETE}
)


class Due(enum.Enum):
    """Whether a device's silence means anything yet."""

    NOT_YET_DUE = "not_yet_due"
    OVERDUE = "overdue"
    DEFICIT = "deficit"  # overdue past overdue_factor x cadence: check-in deficit evidence


# -- the plan ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Guardrail:
    """A metric whose canary mean must not exceed the control's.

    ``margin``: the largest tolerated increase, in the metric's unit per
    device-day; ``counts``: the metric counts events (see
    :func:`~edgecfg.core.sequential.difference`); ``min_days``: the
    device-days each arm needs before the guardrail can pass.
    """

    name: str
    margin: float
    counts: bool
    min_days: float = 50.0


# The margins are absolute, per device-day, and sized so that a 1.5 % canary
# of a 20,000-device fleet can show non-inferiority within a few days: a
# rare event cannot be bounded tighter than its count allows.  A reboot
# loop (tens a day) on 0.2 % of the devices exceeds the reboot margin, and
# a revert is gated on its own (see :func:`revert_evidence`).
DEFAULT_GUARDRAILS: Final[Mapping[str, Guardrail]] = {
    # percent of battery per day; a baseline of 0.8 %/day makes this ~6 %
    "battery_drain": Guardrail("battery_drain", margin=0.05, counts=False),
    # reboots per device-day
    "reboots": Guardrail("reboots", margin=0.05, counts=True),
    # errors per device-day
    "errors": Guardrail("errors", margin=0.05, counts=True),
    # share of devices in check-in deficit (silent past overdue_factor x cadence)
    "checkin": Guardrail("checkin", margin=0.05, counts=True),
}


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage: the share of each stratum treated by its end, or a manual stage."""

    name: str
    share: float
    manual: bool = False


_SHARE: Final = re.compile(r"^(\d+(?:\.\d+)?)%$")


def parse_stage(text: str) -> Stage:
    """``"1.5%"`` → a stage treating 1.5 % of each stratum; ``"lab"`` → a manual stage."""
    if text == "lab":
        return Stage("lab", 0.0, manual=True)
    found = _SHARE.match(text)
    if found is None:
        raise UsageError(f"stage {text!r}: expected a percentage such as '5%', or 'lab'")
    share = float(found.group(1)) / 100
    if not 0 < share <= 1:
        raise UsageError(f"stage {text!r}: the share must be above 0% and at most 100%")
    return Stage(text, share)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to roll out, to whom, in which stages, watched by which guardrails."""

    rollout_id: str
    target: str
    change: Mapping[str, object]
    stages: tuple[Stage, ...]
    guardrails: tuple[Guardrail, ...]
    alpha: float = 0.01
    alpha_advance: float = 0.05
    coverage: float = 0.8
    min_stage_h: float = 48.0
    cadence_factor: float = 1.5
    escalate_after: float = 3.0
    overdue_factor: float = 3.0
    stale_h: float = 48.0

    def __post_init__(self) -> None:
        if not self.stages:
            raise UsageError("a plan needs at least one stage")
        shares = [stage.share for stage in self.stages if not stage.manual]
        if not shares or shares != sorted(shares) or len(set(shares)) != len(shares):
            raise UsageError(f"stage shares must rise strictly: {[s.name for s in self.stages]}")
        if shares[-1] != 1.0:
            raise UsageError(f"the last stage must reach 100%, not {self.stages[-1].name}")
        if not self.guardrails:
            raise UsageError("a plan needs at least one guardrail")
        for name, value in (("alpha", self.alpha), ("alpha_advance", self.alpha_advance)):
            if not 0 < value < 1:
                raise UsageError(f"{name} {value} must be in (0, 1)")
        if not 0 < self.coverage <= 1:
            raise UsageError(f"coverage {self.coverage} must be in (0, 1]")


_PLAN_KEYS: Final = frozenset(
    {"change", "target", "stages", "guardrails", "alpha", "alpha_advance", "coverage",
     "min_stage_h", "cadence_factor", "escalate_after", "overdue_factor", "stale_h",
     "margins", "min_days"}
)  # fmt: skip


def parse_plan(table: Mapping[str, object], rollout_id: str) -> Plan:
    """A :class:`Plan` from a ``[plan]`` table (TOML); unknown keys are an error."""
    unknown = sorted(set(table) - _PLAN_KEYS)
    if unknown:
        raise UsageError(f"[plan]: unknown keys {unknown}; known: {sorted(_PLAN_KEYS)}")
    for needed in ("change", "target", "stages"):
        if needed not in table:
            raise UsageError(f"[plan]: {needed!r} is required")
    change, target = _table(table["change"], "change"), table["target"]
    if not change:
        raise UsageError("[plan] change: expected a table of dotted paths to values")
    for path, value in change.items():
        try:
            check_model(value)
        except ModelError as error:
            raise UsageError(f"[plan] change.{path}: {error}") from None
    if not isinstance(target, str) or not target:
        raise UsageError("[plan] target: expected a group selector such as 'region/eu'")
    stages = _texts(table["stages"], "stages")
    names = _texts(table.get("guardrails", list(DEFAULT_GUARDRAILS)), "guardrails")
    margins = _table(table.get("margins", {}), "margins")
    min_days = table.get("min_days", 50.0)
    if isinstance(min_days, bool) or not isinstance(min_days, int | float) or min_days < 0:
        raise UsageError(f"[plan] min_days: expected a non-negative number, got {min_days!r}")
    min_days = float(min_days)
    guardrails: list[Guardrail] = []
    for name in names:
        known = DEFAULT_GUARDRAILS.get(name)
        if known is None:
            raise UsageError(
                f"[plan] guardrails: unknown {name!r}; known: {sorted(DEFAULT_GUARDRAILS)}"
            )
        margin = margins.get(name, known.margin)
        if not isinstance(margin, int | float) or margin <= 0:
            raise UsageError(f"[plan] margins.{name}: expected a positive number")
        guardrails.append(replace(known, margin=float(margin), min_days=min_days))
    extra = set(margins) - set(names)
    if extra:
        raise UsageError(f"[plan] margins: {sorted(extra)} are not guardrails of this plan")
    numbers: dict[str, float] = {}
    for key in ("alpha", "alpha_advance", "coverage", "min_stage_h", "cadence_factor",
                "escalate_after", "overdue_factor", "stale_h"):  # fmt: skip
        if key in table:
            value = table[key]
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise UsageError(f"[plan] {key}: expected a number, got {value!r}")
            numbers[key] = float(value)
    return Plan(
        rollout_id=rollout_id,
        target=target,
        change=change,
        stages=tuple(parse_stage(text) for text in stages),
        guardrails=tuple(guardrails),
        **numbers,
    )


def _table(value: object, name: str) -> dict[str, object]:
    if not isinstance(value, Mapping):
        raise UsageError(f"[plan] {name}: expected a table, got {value!r}")
    entries = cast(Mapping[object, object], value)
    return {str(key): item for key, item in entries.items()}


def _texts(value: object, name: str) -> list[str]:
    items = cast(list[object], value) if isinstance(value, list) else None
    if items is None or not all(isinstance(item, str) for item in items):
        raise UsageError(f"[plan] {name}: expected a list of strings, got {value!r}")
    return [str(item) for item in items]


# -- cohorts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stratum:
    """The strata the assignment balances and the analysis compares within."""

    hardware: str
    region: str
    power: str
    cadence: Cadence

    @property
    def key(self) -> str:
        return f"{self.hardware}|{self.region}|{self.power}|{self.cadence}"


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where one device stands in a rollout.

    ``wave``: 0 for hourly and daily syncers, 1 for weekly ones; ``quantile``:
    the device's place in its stratum's hash order, in (0, 1).  It is
    treated from the first stage of its wave whose share exceeds the
    quantile, and is a control device in a stage while ``1 - quantile`` is
    below that stage's share and it is not treated yet (the mirror image,
    so canary and control are equal in size up to a share of 50 %).
    """

    device: str
    stratum: Stratum
    wave: int
    quantile: float

    def treated_at(self, plan: Plan) -> int | None:
        """The index of the first stage that treats this device (None: never)."""
        for index, stage in enumerate(plan.stages):
            if not stage.manual and self.quantile < stage.share:
                return index
        return None  # pragma: no cover - the last stage's share is 1

    def arm(self, plan: Plan, wave: int, stage: int) -> Arm | None:
        """This device's arm while ``wave``'s stage ``stage`` runs (None: outside both)."""
        if wave < self.wave:
            return None
        treated = self.treated_at(plan)
        if wave > self.wave or (treated is not None and treated <= stage):
            return Arm.CANARY
        share = _share_through(plan, stage)
        if 1 - self.quantile < share:
            return Arm.CONTROL
        return None


def _share_through(plan: Plan, stage: int) -> float:
    shares = [s.share for s in plan.stages[: stage + 1] if not s.manual]
    return shares[-1] if shares else 0.0


def assign(plan: Plan, members: Iterable[tuple[str, Stratum]]) -> dict[str, Assignment]:
    """Stable, stratified cohorts: within each stratum, devices in the order of a
    hash of (rollout, device), each at quantile ``(rank + 0.5) / size``."""
    strata: dict[str, list[tuple[bytes, str, Stratum]]] = {}
    for device, stratum in members:
        digest = hashlib.sha256(f"{plan.rollout_id}\x00{device}".encode()).digest()
        strata.setdefault(stratum.key, []).append((digest, device, stratum))
    assignments: dict[str, Assignment] = {}
    for rows in strata.values():
        rows.sort()
        for rank, (_digest, device, stratum) in enumerate(rows):
            wave = 1 if stratum.cadence == "weekly" else 0
            assignments[device] = Assignment(device, stratum, wave, (rank + 0.5) / len(rows))
    return assignments


# -- device progress ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    """What the gateway knows of one cohort device (hours since the rollout started)."""

    device: str
    status: DeviceStatus
    cadence_h: float
    last_seen_h: float

    def due(self, now_h: float, overdue_factor: float) -> Due:
        silent = now_h - self.last_seen_h
        if silent <= self.cadence_h * 1.5:  # a check-in is late by jitter, not overdue
            return Due.NOT_YET_DUE
        if silent <= self.cadence_h * overdue_factor:
            return Due.OVERDUE
        return Due.DEFICIT


def checkin_evidence(
    devices: Iterable[tuple[Assignment, Progress, Arm]], now_h: float, overdue_factor: float
) -> Evidence:
    """The check-in guardrail from device silence, per stratum and arm, one
    device-day per device.

    Harm is read from check-in *deficits* (silent past ``overdue_factor`` x
    cadence: 1, else 0), so a device merely late never aborts a rollout;
    an advance is read from *overdue or worse* (silent past 1.5 x cadence),
    so canaries that went quiet after applying hold the stage before their
    silence is long enough to count as harm.  Fresh: the newest check-in.
    """
    deficits: dict[str, dict[Arm, Moments]] = {}
    overdue: dict[str, dict[Arm, Moments]] = {}
    newest: float | None = None
    for assignment, progress, arm in devices:
        due = progress.due(now_h, overdue_factor)
        key = assignment.stratum.key
        for tally, missed in (
            (deficits, due is Due.DEFICIT),
            (overdue, due is not Due.NOT_YET_DUE),
        ):
            arms = tally.setdefault(key, {})
            arms[arm] = arms.get(arm, Moments()).add(1.0 if missed else 0.0)
        newest = progress.last_seen_h if newest is None else max(newest, progress.last_seen_h)

    def strata(tally: dict[str, dict[Arm, Moments]]) -> dict[str, Arms]:
        return {
            key: Arms(arms.get(Arm.CANARY, Moments()), arms.get(Arm.CONTROL, Moments()))
            for key, arms in tally.items()
        }

    return Evidence(strata(deficits), newest, newest, advance_strata=strata(overdue))


# -- the state and its decisions ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class State:
    """A rollout's position: its phase, the wave and stage running, and since when."""

    phase: Phase = Phase.RUNNING
    wave: int = 0
    stage: int = 0
    stage_started_h: float = 0.0
    waves: int = 1
    rolled_back: tuple[tuple[int, int], ...] = ()
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Evidence:
    """One guardrail's evidence: per stratum, both arms' moments over every
    treated stage so far, and when each arm last brought any (hours)."""

    strata: Mapping[str, Arms]
    canary_fresh_h: float | None
    control_fresh_h: float | None
    advance_strata: Mapping[str, Arms] | None = None  # read for an advance, if not strata


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything :func:`decide` reads: stored beside its decision, it replays."""

    now_h: float
    state: State
    evidence: Mapping[str, Evidence]
    canary_devices: int
    canary_proven: int
    canary_reverted: int
    slowest_cadence_h: float


def revert_evidence(devices: int, reverted: int, margin: float, harmful: float) -> float:
    """The e-value that the canary's revert rate exceeds ``margin``.

    A device that reverted proved the change unhealthy on itself (its probe
    failed), so reverts are read directly: Wald's likelihood ratio of a
    ``harmful`` rate against ``margin`` over ``devices`` canary devices, of
    which ``reverted`` reverted.  Under a rate at most ``margin`` it is a
    test supermartingale, so it exceeds ``1 / alpha`` with probability at
    most ``alpha`` however often it is read (Ville's inequality).
    """
    if devices <= 0:
        return 1.0
    reverted = min(reverted, devices)
    log_e = reverted * math.log(harmful / margin) + (devices - reverted) * math.log(
        (1 - harmful) / (1 - margin)
    )
    return math.exp(min(log_e, 700.0))


# The revert gate: a device reverts only when its own probe failed, and a
# no-op (the control) never does, so a canary reverting at 0.2 % (a flaky
# probe) is tolerated and the test is most powerful against 2 %: a reboot
# loop in 2 % of a 250-device canary aborts on the day it is reported.
REVERT_MARGIN: Final = 0.002
REVERT_HARMFUL: Final = 0.02


@dataclass(frozen=True, slots=True)
class Verdict:
    """One guardrail's reading: its bound and what it says."""

    guardrail: str
    bound: Bound
    harm: bool
    harm_stratum: str | None
    non_inferior: bool
    enough: bool
    stale: bool
    missing: tuple[str, ...] = ()  # the arms whose telemetry stopped (both: ``stale``)

    def as_json(self) -> dict[str, object]:
        bound = self.bound
        return {
            "estimate": _finite(bound.estimate),
            "lower": _finite(bound.lower),
            "upper": _finite(bound.upper),
            "information": _finite(bound.information),
            "harm": self.harm,
            "harm_stratum": self.harm_stratum,
            "non_inferior": self.non_inferior,
            "enough_information": self.enough,
            "telemetry_missing": self.stale,
            "telemetry_missing_from": list(self.missing),
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """A decision, its reason, the evidence it read, and the state it leads to."""

    decision: Decision
    reason: str
    state: State
    verdicts: tuple[Verdict, ...] = ()
    coverage: float = 0.0
    next_decision_h: float | None = None

    def evidence_json(self) -> dict[str, object]:
        return {
            "coverage": round(self.coverage, 4),
            "guardrails": {verdict.guardrail: verdict.as_json() for verdict in self.verdicts},
            "next_decision_h": self.next_decision_h,
        }


def _finite(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def read_guardrail(plan: Plan, guardrail: Guardrail, evidence: Evidence, now_h: float) -> Verdict:
    """Harm, non-inferiority and information of one guardrail, from its evidence."""
    missing = tuple(
        arm.value
        for arm, fresh in ((Arm.CANARY, evidence.canary_fresh_h),
                           (Arm.CONTROL, evidence.control_fresh_h))
        if fresh is None or now_h - fresh > plan.stale_h
    )  # fmt: skip
    stale = len(missing) == 2
    strata = evidence.strata
    # Bonferroni over the pooled reading and each stratum's.
    share = plan.alpha / (1 + len(strata)) if len(strata) > 1 else plan.alpha
    pooled = difference(strata, alpha=share, counts=guardrail.counts, pooled=True)
    harm_stratum: str | None = None
    harm = pooled.informative and pooled.lower > 0
    shown = pooled
    if not harm and len(strata) > 1:
        for key in sorted(strata):
            alone = difference(
                {key: strata[key]}, alpha=share, counts=guardrail.counts, pooled=True
            )
            if alone.informative and alone.lower > 0:
                harm, harm_stratum, shown = True, key, alone
                break
    advance_strata = evidence.advance_strata if evidence.advance_strata is not None else strata
    advance = difference(advance_strata, alpha=plan.alpha_advance, counts=guardrail.counts)
    canary_days = sum(arms.canary.days for arms in strata.values())
    control_days = sum(arms.control.days for arms in strata.values())
    enough = min(canary_days, control_days) >= guardrail.min_days
    non_inferior = advance.informative and advance.upper < guardrail.margin
    if shown is UNINFORMED:
        shown = advance
    return Verdict(guardrail.name, shown, harm, harm_stratum, non_inferior, enough, stale, missing)


def stage_length_h(plan: Plan, slowest_cadence_h: float) -> float:
    """A stage's minimum length: the longer of ``min_stage_h`` and the slowest cadence x factor."""
    return max(plan.min_stage_h, plan.cadence_factor * slowest_cadence_h)


def decide(plan: Plan, snapshot: Snapshot) -> Outcome:
    """The gate's decision for ``snapshot`` (pure: the same snapshot, the same outcome)."""
    state, now = snapshot.state, snapshot.now_h
    if state.phase not in (Phase.RUNNING, Phase.COMPLETE):
        return Outcome(Decision.HOLD, f"rollout is {state.phase.value}", state)
    verdicts = tuple(
        read_guardrail(plan, guardrail, snapshot.evidence.get(guardrail.name, _NONE), now)
        for guardrail in plan.guardrails
    )
    coverage = snapshot.canary_proven / snapshot.canary_devices if snapshot.canary_devices else 0.0
    length = stage_length_h(plan, snapshot.slowest_cadence_h)
    elapsed = now - state.stage_started_h
    stage = plan.stages[state.stage]

    def outcome(decision: Decision, reason: str, new_state: State = state) -> Outcome:
        due = state.stage_started_h + length if elapsed < length else None
        return Outcome(decision, reason, new_state, verdicts, coverage, due)

    harmed = [verdict for verdict in verdicts if verdict.harm]
    reverts = revert_evidence(
        snapshot.canary_devices, snapshot.canary_reverted, REVERT_MARGIN, REVERT_HARMFUL
    )
    if harmed or reverts >= 1 / plan.alpha:
        where = "; ".join(
            f"{v.guardrail} canary-control lower bound {v.bound.lower:.4g} > 0"
            + (f" in stratum {v.harm_stratum}" if v.harm_stratum else "")
            for v in harmed
        )
        if reverts >= 1 / plan.alpha:
            where = "; ".join(filter(None, [where, (
                f"{snapshot.canary_reverted} of {snapshot.canary_devices} canary devices "
                f"reverted (e-value {reverts:.3g} >= {1 / plan.alpha:g})"
            )]))  # fmt: skip
        # Harm before any stage passed aborts; harm that shows after a stage
        # passed (late data) or after completion rolls every stage back.
        first = state.wave == 0 and state.stage == 0 and state.phase is Phase.RUNNING
        decision = Decision.ABORT if first else Decision.ROLLBACK
        return outcome(decision, f"harm: {where}", roll_back(plan, state, f"harm: {where}"))
    if state.phase is Phase.COMPLETE:
        return outcome(Decision.HOLD, "complete: watching for late harm")
    stale = [verdict.guardrail for verdict in verdicts if verdict.stale]
    if stale:
        return outcome(
            Decision.HOLD,
            f"telemetry missing from both arms for {stale} (a data-source problem: "
            f"neither a pass nor a harm)",
        )
    late = elapsed >= plan.escalate_after * length
    if stage.manual:
        return outcome(Decision.HOLD, f"manual stage {stage.name!r}: waiting for an operator")
    if elapsed < length:
        return outcome(Decision.HOLD, f"stage window: {elapsed:.1f} h of {length:.1f} h")
    waiting: list[str] = []
    if snapshot.canary_reverted > REVERT_MARGIN * snapshot.canary_devices:
        # too few to abort on yet, too many to pass: the next reports decide
        waiting.append(
            f"{snapshot.canary_reverted} of {snapshot.canary_devices} canary devices reverted "
            f"(more than the {REVERT_MARGIN:.1%} tolerated)"
        )
    if coverage < plan.coverage:
        waiting.append(
            f"coverage {coverage:.1%} of {snapshot.canary_devices} canary devices "
            f"< {plan.coverage:.0%} (not yet due or overdue are not failures)"
        )
    # A stage that treats every device leaves no control to compare with: a
    # guardrail without a comparison there rests on what the stages before
    # it showed (their harm checks go on wherever a control reported).
    verdicts_gating = [
        verdict
        for verdict in verdicts
        if not (stage.share >= 1.0 and not verdict.bound.informative)
    ]
    for arm in (Arm.CANARY, Arm.CONTROL):
        # one arm silent: its old data may not pass a stage (missing metrics
        # are never a pass); the last stage has no control left to hear from
        if arm is Arm.CONTROL and stage.share >= 1.0:
            continue
        quiet = [v.guardrail for v in verdicts_gating if arm.value in v.missing]
        if quiet:
            waiting.append(f"telemetry missing from the {arm.value} arm for {quiet}")
    thin = [verdict.guardrail for verdict in verdicts_gating if not verdict.enough]
    if thin:
        waiting.append(f"not enough information yet for {thin}")
    unproven = [
        verdict.guardrail
        for verdict in verdicts_gating
        if verdict.enough and not verdict.non_inferior
    ]
    if unproven:
        waiting.append(f"non-inferiority not shown for {unproven}")
    if waiting:
        if late:
            return outcome(
                Decision.ESCALATE,
                f"no decision after {elapsed:.1f} h ({plan.escalate_after:g} x {length:.1f} h): "
                + "; ".join(waiting),
            )
        return outcome(Decision.HOLD, "; ".join(waiting))
    return outcome(Decision.ADVANCE, f"stage {stage.name} passed", advance(plan, state, now))


_NONE: Final = Evidence({}, None, None)


def advance(plan: Plan, state: State, now_h: float) -> State:
    """The state after the running stage passed: the next stage, the next wave, or complete."""
    if state.stage + 1 < len(plan.stages):
        return replace(state, stage=state.stage + 1, stage_started_h=now_h, reason="")
    if state.wave + 1 < state.waves:
        return replace(state, wave=state.wave + 1, stage=0, stage_started_h=now_h, reason="")
    return replace(state, phase=Phase.COMPLETE, reason="")


def roll_back(plan: Plan, state: State, reason: str) -> State:
    """Every stage that treated a device is rolled back (devices get their
    previous effective configuration as a new version)."""
    if state.phase is Phase.COMPLETE:
        state = replace(state, wave=state.waves - 1, stage=len(plan.stages) - 1)
    touched = tuple(
        (wave, stage)
        for wave in range(state.wave + 1)
        for stage in range(state.stage + 1 if wave == state.wave else len(plan.stages))
    )
    return replace(state, phase=Phase.ROLLED_BACK, rolled_back=touched, reason=reason)


# -- operator actions --------------------------------------------------------------------

Action = Literal["pause", "resume", "advance", "rollback"]

# The transition table of operator actions: (phase, action) -> phase.  A
# missing entry is an illegal move.
_ACTIONS: Final[Mapping[tuple[Phase, str], Phase]] = {
    (Phase.RUNNING, "pause"): Phase.PAUSED,
    (Phase.PAUSED, "resume"): Phase.RUNNING,
    (Phase.RUNNING, "advance"): Phase.RUNNING,
    (Phase.PAUSED, "advance"): Phase.PAUSED,
    (Phase.RUNNING, "rollback"): Phase.ROLLED_BACK,
    (Phase.PAUSED, "rollback"): Phase.ROLLED_BACK,
    (Phase.COMPLETE, "rollback"): Phase.ROLLED_BACK,
}


class IllegalAction(UsageError):
    """An operator action the rollout's phase does not allow."""


def act(plan: Plan, state: State, action: Action, reason: str, now_h: float) -> State:
    """Apply an operator action; every action needs a reason (it is recorded)."""
    if not reason.strip():
        raise UsageError(f"{action}: a reason is required")
    target = _ACTIONS.get((state.phase, action))
    if target is None:
        raise IllegalAction(f"cannot {action} a rollout that is {state.phase.value}")
    if action == "advance":
        moved = advance(plan, state, now_h)
        return replace(moved, reason=f"advanced by operator: {reason}")
    if action == "rollback":
        return roll_back(plan, state, f"rolled back by operator: {reason}")
    return replace(state, phase=target, reason=f"{action}: {reason}")


def cohort_sizes(
    plan: Plan, assignments: Sequence[Assignment], wave: int, stage: int
) -> dict[Arm, int]:
    """How many devices each arm holds while ``wave``'s stage ``stage`` runs."""
    sizes = {Arm.CANARY: 0, Arm.CONTROL: 0}
    for assignment in assignments:
        arm = assignment.arm(plan, wave, stage)
        if arm is not None:
            sizes[arm] += 1
    return sizes
