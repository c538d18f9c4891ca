"""The fleet optimizer's maths: effects of settings from telemetry, and proposals.

Pure: the telemetry is a :class:`Panel` of daily aggregates (one row per
device-day, numpy arrays), randomness is a ``numpy.random.Generator``
argument, and the result is values.  Three steps:

- :func:`analyse` estimates, for each tunable setting, metric and stratum
  (hardware x region x power x link quality), the effect of each value
  against the stratum's *baseline* value (the one most of its devices run),
  from devices that changed that setting within the window: each device is
  compared with *itself* before and after (so a value that is merely
  popular on good-coverage devices does not look good), after the days'
  common trend (a factor: the mean of the stratum's devices that stayed on
  the baseline that day over their window mean) is divided out.  Each
  :class:`Effect` has an interval and the number of devices behind it.
- :func:`propose` searches: **adopt** a value for a stratum when an
  always-valid bound (the confidence sequence of
  :mod:`edgecfg.core.sequential`, Bonferroni over every stratum x setting x
  value the objectives could test) shows it better and its constraints
  hold; else **trial** values on at most :data:`TRIAL_SHARE` of the stratum,
  chosen by batched Thompson sampling: a normal posterior per value of a
  discrete setting, a Gaussian process (scikit-learn) over a continuous one
  (constrained: a draw is feasible only where each constraint's own draw
  holds).  A draw that keeps the baseline leaves its slot empty.
- every proposal carries a canary rollout :class:`~edgecfg.core.rollout.Plan`
  with its objective's guardrails; only a rollout that passes its gates
  changes a stratum.  A trial's plan stops at its share (its devices go
  back to the baseline after the trial), an adoption's ends at 100 %.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtri, stdtrit  # pyright: ignore[reportMissingTypeStubs]

from edgecfg.core.objectives import (
    DERIVED,
    METRICS,
    Constraint,
    Objective,
    battery_life_years,
)
from edgecfg.core.rollout import Guardrail, Plan, Stage
from edgecfg.core.schema import Schema
from edgecfg.core.sequential import radius
from edgecfg.errors import UsageError

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]

TRIAL_SHARE: Final = 0.10
"""At most this share of a stratum runs a non-baseline value at a time."""
MIN_DEVICES: Final = 20
"""An effect from fewer devices is reported but never adopted."""
PRIOR_SD: Final = 0.25
"""Prior spread of a value's relative effect (25 %) before any evidence."""
GRID: Final = 20
"""A continuous setting is searched (and trialled) on ``GRID + 1`` points of its range."""
_Z95: Final = 1.959963984540054
_COUNTS: Final = frozenset({"errors", "reboots", "checkin"})


@dataclass(frozen=True, slots=True)
class Tunable:
    """A setting the optimizer may change: bounds, and a step if it is discrete."""

    path: str
    low: float
    high: float
    step: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low <= self.high):
            raise UsageError(
                f"tunable {self.path}: bounds [{self.low}, {self.high}] are not a range"
            )
        if self.step is not None and not self.step > 0:
            raise UsageError(f"tunable {self.path}: step {self.step} must be > 0")

    @property
    def discrete(self) -> bool:
        return self.step is not None

    def candidates(self) -> tuple[float, ...]:
        """Every value a proposal may use: the step's multiples, or the search grid."""
        if self.step is not None:
            # the multiples of the step inside the bounds (300 s steps of
            # [10, 86400] are 300, 600, ...), or the low bound alone
            first = math.ceil(self.low / self.step - 1e-9)
            last = math.floor(self.high / self.step + 1e-9)
            found = tuple(index * self.step for index in range(first, last + 1))
            return found or (self.low,)
        return tuple(float(v) for v in np.linspace(self.low, self.high, GRID + 1))


def tunables_of(schema: Schema) -> dict[str, Tunable]:
    """The schema's keys declared ``tunable`` (an int key without a step steps by 1)."""
    found: dict[str, Tunable] = {}
    for spec in schema:
        if not spec.tunable or spec.min is None or spec.max is None:
            continue
        step = spec.step if spec.step is not None else (1 if spec.type == "int" else None)
        found[spec.dotted] = Tunable(spec.dotted, float(spec.min), float(spec.max),
                                     None if step is None else float(step))  # fmt: skip
    return found


# -- the data ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Panel:
    """Daily aggregates: row ``i`` is device ``device[i]`` on day ``day[i]``,
    with the value of each setting in force that day and each metric's value
    per day.  ``strata[d]``: device ``d``'s stratum, an index of ``stratum_keys``
    (``hardware|region|power|link``)."""

    device: Ints
    day: Ints
    settings: Mapping[str, Floats]
    metrics: Mapping[str, Floats]
    strata: Ints
    stratum_keys: tuple[str, ...]
    current: Mapping[str, Floats] | None = None
    """Each device's value of each setting now (indexed by device); without
    it a stratum's baseline is read from the panel's last day."""

    def __post_init__(self) -> None:
        rows = len(self.device)
        for name, column in (*self.settings.items(), *self.metrics.items()):
            if len(column) != rows:
                raise UsageError(f"panel column {name}: {len(column)} rows, expected {rows}")
        if len(self.day) != rows:
            raise UsageError(f"panel column day: {len(self.day)} rows, expected {rows}")
        if rows and (self.device.min() < 0 or self.device.max() >= len(self.strata)):
            raise UsageError("panel: a row names a device outside strata")
        if len(self.strata) and self.strata.max() >= len(self.stratum_keys):
            raise UsageError("panel: a device's stratum is outside stratum_keys")
        for name in self.metrics:
            if name not in METRICS:
                raise UsageError(f"panel metric {name!r}: unknown; known: {sorted(METRICS)}")

    @property
    def devices(self) -> int:
        return len(self.strata)


@dataclass(frozen=True, slots=True)
class Effect:
    """The effect of ``value`` against ``baseline`` (the stratum's usual value)
    of ``setting`` on ``metric`` in ``stratum``: per device-day (``estimate``,
    95 % interval ``low``..``high``, standard error ``se``), relative to the
    baseline's level (``relative``), from ``devices`` devices."""

    setting: str
    metric: str
    stratum: str
    baseline: float
    value: float
    estimate: float
    se: float
    low: float
    high: float
    level: float
    devices: int

    @property
    def relative(self) -> float:
        return self.estimate / self.level if self.level > 0 else 0.0

    @property
    def relative_se(self) -> float:
        return self.se / self.level if self.level > 0 else math.inf

    def as_json(self) -> dict[str, object]:
        return {
            "setting": self.setting, "metric": self.metric, "stratum": self.stratum,
            "baseline": self.baseline, "value": self.value, "estimate": round(self.estimate, 6),
            "low": round(self.low, 6), "high": round(self.high, 6), "se": round(self.se, 6),
            "relative": round(self.relative, 4), "level": round(self.level, 6),
            "devices": self.devices,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Analysis:
    """Every effect found, each stratum's baseline per setting, its metric
    levels on the baseline, and its device count."""

    effects: tuple[Effect, ...]
    baselines: Mapping[tuple[str, str], float]
    levels: Mapping[tuple[str, str], float]
    sizes: Mapping[str, int]
    _index: dict[tuple[str, str, str], dict[float, Effect]] = field(
        default_factory=dict[tuple[str, str, str], dict[float, Effect]],
        init=False,
        repr=False,
        compare=False,
    )

    def __post_init__(self) -> None:
        index: dict[tuple[str, str, str], dict[float, Effect]] = {}
        for e in self.effects:
            index.setdefault((e.stratum, e.setting, e.metric), {})[e.value] = e
        object.__setattr__(self, "_index", index)

    def effects_of(self, stratum: str, setting: str, metric: str) -> tuple[Effect, ...]:
        """The effects of every tried value of ``setting`` on ``metric`` in ``stratum``."""
        return tuple(self._index.get((stratum, setting, metric), {}).values())

    def effect(self, stratum: str, setting: str, metric: str, value: float) -> Effect | None:
        return self._index.get((stratum, setting, metric), {}).get(value)


def analyse(panel: Panel, settings: Sequence[str]) -> Analysis:
    """Effects of each of ``settings`` on each metric of ``panel`` (see the module docstring)."""
    for setting in settings:
        if setting not in panel.settings:
            raise UsageError(f"analysis: no column for setting {setting!r} in the telemetry")
    strata_n = len(panel.stratum_keys)
    row_stratum = panel.strata[panel.device]
    sizes = np.bincount(panel.strata, minlength=strata_n)
    day0 = int(panel.day.min()) if len(panel.day) else 0
    days = int(panel.day.max()) - day0 + 1 if len(panel.day) else 1
    cell = row_stratum * days + (panel.day - day0)
    baselines: dict[tuple[str, str], float] = {}
    on_baseline_all = np.ones(len(panel.device), dtype=bool)
    varied: dict[str, NDArray[np.bool_]] = {}
    row_base: dict[str, Floats] = {}
    for setting in settings:
        values = panel.settings[setting]
        if panel.current is not None and setting in panel.current:
            everyone = np.arange(panel.devices, dtype=np.int64)
            base = _stratum_modes(panel.current[setting], everyone,
                                  np.zeros(panel.devices, dtype=np.int64), panel.strata,
                                  strata_n)  # fmt: skip
        else:
            base = _stratum_modes(values, panel.device, panel.day, row_stratum, strata_n)
        for index, key in enumerate(panel.stratum_keys):
            if not math.isnan(base[index]):
                baselines[(key, setting)] = float(base[index])
        row_base[setting] = base[row_stratum]
        on_base = values == row_base[setting]
        on_baseline_all &= on_base
        low = np.full(panel.devices, np.inf)
        high = np.full(panel.devices, -np.inf)
        np.minimum.at(low, panel.device, values)
        np.maximum.at(high, panel.device, values)
        varied[setting] = high > low
    # A device "stayed" for a setting when it never left its stratum's baseline.
    left = np.zeros(panel.devices, dtype=bool)
    np.logical_or.at(left, panel.device, ~on_baseline_all)
    stayed_row = ~left[panel.device]
    levels: dict[tuple[str, str], float] = {}
    effects: list[Effect] = []
    for metric, values in panel.metrics.items():
        level_sum = _sums(row_stratum, weights=np.where(stayed_row, values, 0.0),
                                minlength=strata_n)  # fmt: skip
        level_n = _sums(row_stratum, weights=stayed_row.astype(np.float64),
                              minlength=strata_n)  # fmt: skip
        level = np.divide(level_sum, level_n, out=np.full(strata_n, np.nan), where=level_n > 0)
        for index, key in enumerate(panel.stratum_keys):
            if level_n[index] > 0:
                levels[(key, metric)] = float(level[index])
        # the common trend of each stratum-day among devices that stayed, as
        # a factor (weather or load scales every device's drain and errors:
        # subtracting it would over-correct devices below the mean)
        cell_sum = _sums(cell, weights=np.where(stayed_row, values, 0.0),
                         minlength=strata_n * days)  # fmt: skip
        cell_n = _sums(cell, weights=stayed_row.astype(np.float64), minlength=strata_n * days)
        cell_mean = np.divide(cell_sum, cell_n, out=np.zeros_like(cell_sum), where=cell_n > 0)
        overall = np.repeat(np.nan_to_num(level), days)
        usable_trend = (cell_n >= 3) & (cell_mean > 0) & (overall > 0)
        factor = np.divide(cell_mean, overall, out=np.ones_like(cell_mean), where=usable_trend)
        residual = values / factor[cell]
        for setting in settings:
            others = [varied[o] for o in settings if o != setting]
            clean = ~np.logical_or.reduce(others) if others else np.ones(panel.devices, bool)
            effects.extend(_effects_of(
                panel, setting=setting, metric=metric, residual=residual,
                base_row=row_base[setting], clean=clean, level=level, baselines=baselines,
            ))  # fmt: skip
    return Analysis(tuple(effects), baselines, levels,
                    {key: int(sizes[i]) for i, key in enumerate(panel.stratum_keys)})  # fmt: skip


def _sums(index: Ints, *, weights: Floats, minlength: int) -> Floats:
    """``np.bincount`` with weights, always float (an empty panel gives ints)."""
    return np.bincount(index, weights=weights, minlength=minlength).astype(np.float64)


def _stratum_modes(
    values: Floats, device: Ints, day: Ints, row_stratum: Ints, strata_n: int
) -> Floats:
    """Each stratum's most common value of a setting on the panel's last day
    (ties: the smaller value); NaN for a stratum with no known value that day."""
    last = day == day.max() if len(day) else np.zeros(0, dtype=bool)
    modes = np.full(strata_n, np.nan)
    last &= ~np.isnan(values)
    if not last.any():
        return modes
    pairs = np.stack([row_stratum[last].astype(np.float64), values[last]], axis=1)
    unique, counts = np.unique(pairs, axis=0, return_counts=True)
    best = np.zeros(strata_n)
    for (stratum, value), count in zip(unique, counts, strict=True):
        at = int(stratum)
        if count > best[at]:
            best[at], modes[at] = count, value
    return modes


def _effects_of(
    panel: Panel, *, setting: str, metric: str, residual: Floats, base_row: Floats,
    clean: NDArray[np.bool_], level: Floats, baselines: Mapping[tuple[str, str], float],
) -> list[Effect]:  # fmt: skip
    """Within-device before/after effects of one setting on one metric."""
    values = panel.settings[setting]
    on_base = values == base_row
    n = panel.devices
    base_sum = _sums(panel.device, weights=np.where(on_base, residual, 0.0), minlength=n)
    base_n = _sums(panel.device, weights=on_base.astype(np.float64), minlength=n)
    alt_sum = _sums(panel.device, weights=np.where(on_base, 0.0, residual), minlength=n)
    alt_n = _sums(panel.device, weights=(~on_base).astype(np.float64), minlength=n)
    alt_low = np.full(n, np.inf)
    alt_high = np.full(n, -np.inf)
    off = ~on_base
    np.minimum.at(alt_low, panel.device[off], values[off])
    np.maximum.at(alt_high, panel.device[off], values[off])
    usable = clean & (base_n > 0) & (alt_n > 0) & (alt_low == alt_high)
    if not usable.any():
        return []
    delta = alt_sum[usable] / alt_n[usable] - base_sum[usable] / base_n[usable]
    stratum = panel.strata[usable]
    value = alt_low[usable]
    pairs = np.stack([stratum.astype(np.float64), value], axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    count = np.bincount(inverse, minlength=len(unique)).astype(np.float64)
    total = _sums(inverse, weights=delta, minlength=len(unique))
    squares = _sums(inverse, weights=delta * delta, minlength=len(unique))
    mean = total / count
    variance = np.maximum(0.0, squares / count - mean * mean) * count / np.maximum(count - 1, 1)
    found: list[Effect] = []
    for index, (code, candidate) in enumerate(unique):
        key = panel.stratum_keys[int(code)]
        devices = int(count[index])
        # two devices give a spread of one degree of freedom: floor it at the
        # level's 1 % so that a lucky agreement is not certainty
        floor = 0.01 * abs(float(level[int(code)])) if math.isfinite(level[int(code)]) else 0.0
        se = max(math.sqrt(variance[index] / devices), floor / math.sqrt(devices))
        if devices < 2:
            se = math.inf
        estimate = float(mean[index])
        found.append(Effect(
            setting, metric, key, baselines[(key, setting)], float(candidate), estimate, se,
            estimate - _Z95 * se, estimate + _Z95 * se,
            float(level[int(code)]) if math.isfinite(level[int(code)]) else 0.0, devices,
        ))  # fmt: skip
    return found


# -- the search -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proposal:
    """One change the optimizer asks the rollout engine to test.

    ``kind``: ``adopt`` (the stratum's baseline becomes ``value``; a canary
    then the whole stratum) or ``trial`` (``devices`` of the stratum run
    ``value`` for one trial period, then go back)."""

    kind: Literal["adopt", "trial"]
    objective: str
    stratum: str
    setting: str
    baseline: float
    value: float
    devices: int
    plan: Plan
    evidence: Effect | None = None

    def as_json(self) -> dict[str, object]:
        plan = self.plan
        return {
            "kind": self.kind, "objective": self.objective, "stratum": self.stratum,
            "setting": self.setting, "baseline": self.baseline, "value": self.value,
            "devices": self.devices,
            "evidence": None if self.evidence is None else self.evidence.as_json(),
            "plan": {
                "rollout_id": plan.rollout_id, "target": plan.target,
                "change": dict(plan.change), "stages": [s.name for s in plan.stages],
                "guardrails": {g.name: {"margin": g.margin, "min_days": g.min_days}
                               for g in plan.guardrails},
            },
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Search:
    """The search's knobs: ``alpha`` is the family-wise error of adopting a
    value that is not better, over every look of a run."""

    alpha: float = 0.05
    trial_share: float = TRIAL_SHARE
    slots: int = 4
    min_slot: int = 5
    prior_sd: float = PRIOR_SD
    guardrail_tolerance: float = 0.10
    min_days: float = 30.0
    escalate_after: float = 6.0


@dataclass(frozen=True, slots=True)
class Round:
    """What :func:`propose` decided, and how many hypotheses it corrected for."""

    proposals: tuple[Proposal, ...]
    hypotheses: int
    best: Mapping[tuple[str, str], Mapping[str, float]]


def hypotheses(objectives: Sequence[Objective], tunables: Mapping[str, Tunable],
               strata: Sequence[str]) -> int:  # fmt: skip
    """How many (objective, stratum, setting, value) comparisons a run may test."""
    total = 0
    for objective in objectives:
        inside = sum(1 for key in strata if objective.segment.matches(key))
        for setting in objective.settings:
            total += inside * len(tunables[setting].candidates())
    return max(1, total)


def propose(
    objectives: Sequence[Objective],
    tunables: Mapping[str, Tunable],
    analysis: Analysis,
    rng: np.random.Generator,
    *,
    busy: Mapping[str, int] | None = None,
    in_flight: frozenset[tuple[str, str]] = frozenset(),
    search: Search = Search(),
    round_id: str = "r0",
) -> Round:
    """This round's proposals (see the module docstring).

    ``busy[stratum]``: its devices already on a non-baseline value (trials
    or canaries in flight); ``in_flight``: (stratum, setting) pairs that
    have an adoption in flight, so no other proposal touches them.
    """
    for objective in objectives:
        for setting in objective.settings:
            if setting not in tunables:
                raise UsageError(f"objective {objective.name!r}: {setting!r} is not tunable")
    busy = dict(busy or {})
    strata = sorted(analysis.sizes)
    tests = hypotheses(objectives, tunables, strata)
    alpha_each = search.alpha / tests
    proposals: list[Proposal] = []
    claimed: set[tuple[str, str]] = set(in_flight)
    best: dict[tuple[str, str], dict[str, float]] = {}
    for objective in objectives:
        for stratum in strata:
            if not objective.segment.matches(stratum) or analysis.sizes[stratum] == 0:
                continue
            settings = [s for s in objective.settings if (stratum, s) not in claimed
                        and (stratum, s) in analysis.baselines]  # fmt: skip
            best[(objective.name, stratum)] = {
                s: analysis.baselines[(stratum, s)] for s in objective.settings
                if (stratum, s) in analysis.baselines
            }  # fmt: skip
            adoption = _adoption(
                objective, stratum, settings=settings, tunables=tunables, analysis=analysis,
                alpha_each=alpha_each, search=search, round_id=round_id,
            )  # fmt: skip
            if adoption is not None:
                proposals.append(adoption)
                claimed.add((stratum, adoption.setting))
                continue
            budget = math.floor(search.trial_share * analysis.sizes[stratum]) - busy.get(stratum, 0)
            trials = _trials(
                objective, stratum, settings=settings, tunables=tunables, analysis=analysis,
                rng=rng, budget=budget, search=search, round_id=round_id,
            )  # fmt: skip
            for trial in trials:
                busy[stratum] = busy.get(stratum, 0) + trial.devices
            proposals.extend(trials)
            claimed.update((stratum, trial.setting) for trial in trials)
    return Round(tuple(proposals), tests, best)


def _adoption(
    objective: Objective, stratum: str, *, settings: Sequence[str], tunables: Mapping[str, Tunable],
    analysis: Analysis, alpha_each: float, search: Search, round_id: str,
) -> Proposal | None:  # fmt: skip
    """The best value shown better (always-valid, Bonferroni) with its constraints holding."""
    sign = 1.0 if objective.lower_is_better else -1.0
    chosen: Effect | None = None
    for setting in settings:
        for effect in analysis.effects_of(stratum, setting, objective.metric):
            if effect.devices < MIN_DEVICES or not math.isfinite(effect.se) or effect.se <= 0:
                continue
            if effect.value == effect.baseline:
                continue
            if not objective.setting_allowed(setting, effect.value):
                continue
            width = radius(1.0 / (effect.se * effect.se), alpha_each) * _small_sample(
                effect.devices, alpha_each
            )
            if sign * effect.estimate + width >= 0:
                continue  # not shown better
            if not _constraints_hold(objective, analysis, effect):
                continue
            if chosen is None or sign * effect.relative < sign * chosen.relative:
                chosen = effect
    if chosen is None:
        return None
    plan = canary_plan(
        objective, analysis, stratum=stratum, setting=chosen.setting, value=chosen.value,
        search=search, rollout_id=_rollout_id(round_id, objective, stratum, "adopt"), adopt=True,
    )  # fmt: skip
    return Proposal("adopt", objective.name, stratum, chosen.setting, chosen.baseline,
                    chosen.value, analysis.sizes[stratum], plan, chosen)  # fmt: skip


def _small_sample(devices: int, alpha: float) -> float:
    """How much wider Student's t makes a bound whose spread is estimated
    from ``devices`` devices, at this tail (the confidence sequence assumes
    a known variance: with 10 devices and a 1e-4 tail the normal bound is
    too narrow by half)."""
    tail = 1 - alpha / 2
    return float(stdtrit(devices - 1, tail) / ndtri(tail))


def _constraints_hold(objective: Objective, analysis: Analysis, effect: Effect) -> bool:
    """Point estimates of the constraint metrics at the candidate (the canary's
    guardrails then test them)."""
    for constraint in objective.constraints:
        if constraint.kind == "setting":
            continue
        metric = DERIVED.get(constraint.name, constraint.name)
        other = analysis.effect(effect.stratum, effect.setting, metric, effect.value)
        relative = other.relative if other is not None else 0.0
        if not _constraint_ok(analysis, effect.stratum, constraint, relative):
            return False
    return True


def _constraint_ok(
    analysis: Analysis, stratum: str, constraint: Constraint, relative: float
) -> bool:
    """Whether a metric constraint holds at a relative change of its metric."""
    metric = DERIVED.get(constraint.name, constraint.name)
    if constraint.kind == "relative":
        return constraint.holds(relative if METRICS[metric] else -relative)
    level = analysis.levels.get((stratum, metric))
    if level is None:
        return True  # no level to check against: the canary's guardrails decide
    predicted = level * (1 + relative)
    if constraint.name == "battery_life_years":
        predicted = battery_life_years(predicted)
    return constraint.holds(predicted)


def _posterior(analysis: Analysis, stratum: str, setting: str, metric: str, *,
               candidates: Sequence[float], prior_sd: float) -> tuple[Floats, Floats]:  # fmt: skip
    """Per candidate, a normal posterior (mean, sd) of the relative effect."""
    means = np.zeros(len(candidates))
    sds = np.full(len(candidates), prior_sd)
    for index, value in enumerate(candidates):
        effect = analysis.effect(stratum, setting, metric, value)
        if effect is None or not math.isfinite(effect.relative_se) or effect.relative_se <= 0:
            continue
        precision = 1 / prior_sd**2 + 1 / effect.relative_se**2
        sds[index] = math.sqrt(1 / precision)
        means[index] = effect.relative / effect.relative_se**2 / precision
    return means, sds


def _draw(analysis: Analysis, stratum: str, tunable: Tunable, metric: str, *,
          rng: np.random.Generator, prior_sd: float, draws: int) -> Floats:  # fmt: skip
    """``draws`` Thompson draws (rows) of the relative effect of every
    candidate (columns) on ``metric``; the baseline's is 0."""
    candidates = tunable.candidates()
    baseline = analysis.baselines[(stratum, tunable.path)]
    if tunable.discrete:
        means, sds = _posterior(analysis, stratum, tunable.path, metric,
                                candidates=candidates, prior_sd=prior_sd)  # fmt: skip
        draw = rng.normal(means, sds, size=(draws, len(candidates)))
    else:
        draw = _gp_draw(analysis, stratum, tunable, metric, rng=rng, prior_sd=prior_sd,
                        draws=draws)  # fmt: skip
    return np.where(np.isclose(candidates, baseline), 0.0, draw)


def _gp_draw(analysis: Analysis, stratum: str, tunable: Tunable, metric: str, *,
             rng: np.random.Generator, prior_sd: float, draws: int) -> Floats:  # fmt: skip
    """Draws from a Gaussian process over the continuous range: the
    observed relative effects with their own noise (``alpha`` = se²), the
    baseline at 0, fixed kernel hyperparameters (a quarter of the range
    as the length scale: a few points are too few to fit them)."""
    # scikit-learn takes seconds to import without cached bytecode: only
    # a continuous setting's search needs it
    from sklearn.gaussian_process import (  # pyright: ignore[reportMissingTypeStubs]
        GaussianProcessRegressor,
    )
    from sklearn.gaussian_process.kernels import (  # pyright: ignore[reportMissingTypeStubs]
        RBF,
        ConstantKernel,
    )

    grid = np.asarray(tunable.candidates())
    baseline = analysis.baselines[(stratum, tunable.path)]
    xs: list[float] = [baseline]
    ys: list[float] = [0.0]
    noise: list[float] = [1e-6]
    for effect in analysis.effects_of(stratum, tunable.path, metric):
        if math.isfinite(effect.relative_se) and effect.value != baseline:
            xs.append(effect.value)
            ys.append(effect.relative)
            noise.append(max(effect.relative_se**2, 1e-6))
    scale = max(tunable.high - tunable.low, 1e-9)
    kernel = ConstantKernel(prior_sd**2, "fixed") * RBF(scale / 4, "fixed")
    model = GaussianProcessRegressor(
        kernel=kernel,
        alpha=np.asarray(noise),  # pyright: ignore[reportArgumentType]
        optimizer=None,  # pyright: ignore[reportArgumentType]
    )
    model.fit(np.asarray(xs).reshape(-1, 1), np.asarray(ys))  # pyright: ignore[reportUnknownMemberType]
    seed = int(rng.integers(0, 2**31 - 1))
    sample = model.sample_y(  # pyright: ignore[reportUnknownMemberType]
        grid.reshape(-1, 1), n_samples=draws, random_state=seed
    )
    return np.asarray(sample, dtype=np.float64).reshape(len(grid), draws).T


def _trials(
    objective: Objective, stratum: str, *, settings: Sequence[str], tunables: Mapping[str, Tunable],
    analysis: Analysis, rng: np.random.Generator, budget: int, search: Search, round_id: str,
) -> list[Proposal]:  # fmt: skip
    """Batched Thompson sampling: up to ``search.slots`` draws, each choosing
    the (setting, value) with the best drawn objective among the values
    feasible in that draw; a draw whose best is the baseline leaves its slot empty."""
    if budget < search.min_slot or not settings:
        return []
    slots = max(1, min(search.slots, budget // search.min_slot))
    per_slot = budget // slots
    sign = 1.0 if objective.lower_is_better else -1.0
    best_score = np.zeros(slots)
    best_pick: list[tuple[str, float] | None] = [None] * slots
    for setting in settings:
        tunable = tunables[setting]
        candidates = tunable.candidates()
        score = sign * _draw(analysis, stratum, tunable, objective.metric, rng=rng,
                             prior_sd=search.prior_sd, draws=slots)  # fmt: skip
        allowed = np.array([objective.setting_allowed(setting, v) for v in candidates])
        feasible = np.broadcast_to(allowed, score.shape).copy()
        for constraint in objective.constraints:
            if constraint.kind == "setting":
                continue
            metric = DERIVED.get(constraint.name, constraint.name)
            drawn = _draw(analysis, stratum, tunable, metric, rng=rng,
                          prior_sd=search.prior_sd, draws=slots)  # fmt: skip
            feasible &= np.array(
                [[_constraint_ok(analysis, stratum, constraint, float(r)) for r in row]
                 for row in drawn], dtype=bool,
            )  # fmt: skip
        score = np.where(feasible, score, np.inf)
        at = np.argmin(score, axis=1)
        for slot in range(slots):
            if score[slot, at[slot]] < best_score[slot]:
                best_score[slot] = score[slot, at[slot]]
                best_pick[slot] = (setting, candidates[int(at[slot])])
    chosen: dict[tuple[str, float], int] = {}
    for pick in best_pick:
        if pick is not None:
            chosen[pick] = chosen.get(pick, 0) + per_slot
    proposals: list[Proposal] = []
    for (setting, value), devices in sorted(chosen.items()):
        plan = canary_plan(
            objective, analysis, stratum=stratum, setting=setting, value=value, search=search,
            rollout_id=_rollout_id(round_id, objective, stratum, f"{setting}-{value:g}"),
            adopt=False, share=devices / max(1, analysis.sizes[stratum]),
        )  # fmt: skip
        proposals.append(Proposal(
            "trial", objective.name, stratum, setting, analysis.baselines[(stratum, setting)],
            value, devices, plan, analysis.effect(stratum, setting, objective.metric, value),
        ))  # fmt: skip
    return proposals


def _rollout_id(round_id: str, objective: Objective, stratum: str, what: str) -> str:
    """``opt-ROUND-OBJECTIVE-STRATUM-WHAT`` with only letters, digits, ``.`` and ``-``."""
    text = f"opt-{round_id}-{objective.name}-{stratum}-{what}"
    return "".join(c if c.isalnum() or c in ".-" else "." for c in text)


def canary_plan(
    objective: Objective, analysis: Analysis, *, stratum: str, setting: str, value: float,
    search: Search, rollout_id: str, adopt: bool, share: float = TRIAL_SHARE,
) -> Plan:  # fmt: skip
    """The canary rollout plan of a proposal, with the objective's guardrails:
    each margin is ``guardrail_tolerance`` of the stratum's level (or the
    objective's own "not worse than" tolerance for that metric).

    An adoption canaries 5 % then 10 % of the stratum before 100 %; a trial
    is one stage at its share (the plan's last stage must reach 100 % of its
    *target*, so a trial's target is its trial devices)."""
    tolerances = {c.name: c.value for c in objective.constraints if c.kind == "relative"}
    guardrails: list[Guardrail] = []
    for name in objective.guardrails:
        level = analysis.levels.get((stratum, name), 0.0)
        tolerance = tolerances.get(name, search.guardrail_tolerance)
        floor = 0.02 if name in _COUNTS else 1e-3
        margin = max(abs(level) * tolerance, floor)
        guardrails.append(Guardrail(name, margin, name in _COUNTS, search.min_days))
    stages = (
        (Stage("5%", 0.05), Stage("10%", 0.10), Stage("100%", 1.0))
        if adopt
        else (Stage("100%", 1.0),)
    )
    target = f"{objective.segment.text} stratum {stratum}"
    if not adopt:
        target += f" trial {share:.1%}"
    # an optimizer's canary is expected to be better, and a count guardrail
    # of a quiet stratum needs days to show non-inferiority: escalate after
    # 6 stage lengths, not 3 (the bounds stay valid however long it looks)
    return Plan(rollout_id, target, {setting: value}, stages, tuple(guardrails),
                escalate_after=search.escalate_after)  # fmt: skip
