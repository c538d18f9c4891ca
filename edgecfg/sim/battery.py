"""``edgecfg sim battery``: a battery fleet's life with and without adaptive rules.

Issue 14's proof that device-local rules stretch battery life: every device
of a seeded fleet runs from a full battery until it is empty (or the horizon
ends) twice, on the same seeds, once with the rules document applied on every
wake and once without.  Everything a wake does is the real pure code:

- the rules: :func:`edgecfg.core.rules.step` with the device's readings
  (``battery_pct`` from its charge, ``rsrp_dbm`` from its link) at every wake,
  and :func:`edgecfg.core.rules.adapt` over the schema's defaults, clamped by
  the local-override policy, whenever a rule changes state;
- the cost: :mod:`edgecfg.core.energy` prices each wake's counters (one
  telemetry report: a wake, a round trip, the bytes of a SenML pack up and a
  2.04 down) on the NB-IoT profile of the coverage class the link is in,
  plus the PSM floor between wakes, the sampler's CPU time and the cell's
  self-discharge; a wake during an outage pays a CE2 wake (the modem searches);
- the battery and the link: :mod:`edgecfg.sim.generators` (a chemistry's
  usable capacity, an Ornstein-Uhlenbeck RSRP walk with outages, hourly).

The interval between wakes is the effective ``telemetry.interval_s``: the
schema default, or what the adaptation layer made of it.  The fleet's
devices differ in their mean RSRP (drawn around -108 dBm) and their link's
walk.  Deterministic given the seed.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from edgecfg.core.energy import AA_PAIR_WH, Counters, RadioProfile, energy, profile
from edgecfg.core.path import parse_path
from edgecfg.core.rules import IDLE, RuleSet, RulesState, adapt, step
from edgecfg.core.schema import Schema
from edgecfg.core.tree import Tree, get
from edgecfg.errors import UsageError
from edgecfg.sim.generators import Chemistry, capacity_factor, cell, coverage_class, link_walk

INTERVAL: Final = parse_path("telemetry.interval_s")
SAMPLE_INTERVAL: Final = parse_path("sensors.temperature.sample_interval_s")
PACK_UP_BYTES: Final = 96
"""One telemetry POST on the wire: CoAP header, options and a SenML-CBOR pack of
battery, RSRP, SINR and two readings (the agent's counts put it at 82-100 B)."""
ANSWER_DOWN_BYTES: Final = 20
"""Its 2.04 with an ETag option."""
SAMPLE_CPU_S: Final = 0.005
"""One sensor reading on the application MCU."""
_COVERAGE: Final = {"CE0": "nb-iot/mcl144", "CE1": "nb-iot/mcl154", "CE2": "nb-iot/mcl164"}
_HOUR: Final = 3600.0
_DAY: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class Fleet:
    """What the fleet is: ``devices`` of one chemistry and capacity, on NB-IoT."""

    devices: int = 20
    years: float = 15.0
    """The horizon: a device still running then is counted at it (and said so)."""
    seed: int = 1
    chemistry: Chemistry = "alkaline-2aa"
    battery_wh: float = AA_PAIR_WH
    celsius: float = 15.0
    mean_rsrp: float = -108.0
    rsrp_spread: float = 6.0
    sample_every_days: float = 30.0
    """How often the charge is recorded for the plot."""

    def __post_init__(self) -> None:
        if self.devices < 1 or not self.years > 0 or not self.battery_wh > 0:
            raise UsageError(
                f"a battery fleet needs devices >= 1, years > 0 and a battery > 0 Wh, got "
                f"{self.devices}, {self.years}, {self.battery_wh}"
            )


@dataclass(slots=True)
class Life:
    """One device's run: when it emptied (None: still running at the horizon),
    its charge over time, and the share of wakes with a rule active."""

    days: float | None
    charge: list[tuple[float, float]] = field(default_factory=lambda: [])
    """(day, percent) every ``Fleet.sample_every_days``."""
    wakes: int = 0
    adapted_wakes: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """Both runs of the fleet, device by device (same seeds, same order)."""

    fleet: Fleet
    without: list[Life]
    with_rules: list[Life]

    def summary(self) -> dict[str, object]:
        """The figures: days to empty in both runs and the gain, per device paired."""
        horizon = self.fleet.years * 365.25

        def days(lives: list[Life]) -> list[float]:
            return [life.days if life.days is not None else horizon for life in lives]

        plain, adapted = days(self.without), days(self.with_rules)
        gains = [100.0 * (a / p - 1.0) for a, p in zip(adapted, plain, strict=True)]
        wakes = sum(life.wakes for life in self.with_rules)
        return {
            "devices": self.fleet.devices,
            "seed": self.fleet.seed,
            "chemistry": self.fleet.chemistry,
            "battery_wh": self.fleet.battery_wh,
            "horizon_days": horizon,
            "days_to_empty_without": _spread(plain),
            "days_to_empty_with_rules": _spread(adapted),
            "median_gain_pct": statistics.median(gains),
            "min_gain_pct": min(gains),
            "still_running_at_horizon": sum(life.days is None for life in self.with_rules),
            "adapted_wake_share": sum(life.adapted_wakes for life in self.with_rules)
            / max(wakes, 1),
        }


def _spread(values: list[float]) -> dict[str, float]:
    low, median, high = deciles(values)
    return {"p10": low, "median": median, "p90": high}


def deciles(values: list[float]) -> tuple[float, float, float]:
    """The 10th percentile, the median and the 90th (inclusive interpolation)."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    cuts = statistics.quantiles(values, n=10, method="inclusive")
    return cuts[0], statistics.median(values), cuts[8]


def run(
    fleet: Fleet,
    rules: RuleSet,
    schema: Schema,
    *,
    progress: Callable[[float], None] | None = None,
) -> Outcome:
    """Every device of ``fleet`` without and with ``rules`` (the paired runs)."""
    base = schema.defaults()
    without: list[Life] = []
    with_rules: list[Life] = []
    for index in range(fleet.devices):
        seed = fleet.seed * 1_000_003 + index
        mean = random.Random(seed).gauss(fleet.mean_rsrp, fleet.rsrp_spread)
        mean = min(max(mean, -130.0), -80.0)
        without.append(_life(fleet, None, schema, base, seed=seed, mean=mean))
        with_rules.append(_life(fleet, rules, schema, base, seed=seed, mean=mean))
        if progress is not None:
            progress((index + 1) / fleet.devices)
    return Outcome(fleet, without, with_rules)


def _life(
    fleet: Fleet, rules: RuleSet | None, schema: Schema, base: Tree, *, seed: int, mean: float
) -> Life:
    """One device from full to empty (or to the horizon)."""
    spec = cell(fleet.chemistry)
    capacity = fleet.battery_wh * 3600.0 * capacity_factor(fleet.chemistry, fleet.celsius)
    leak_w = capacity * spec.self_discharge_per_year / (365.25 * _DAY)
    horizon = fleet.years * 365.25 * _DAY
    link = _Link(seed, mean, horizon)
    costs = {name: _wake_j(profile(name)) for name in _COVERAGE.values()}
    searching = profile(_COVERAGE["CE2"]).wake_j
    floor_w = profile(_COVERAGE["CE0"]).floor_w
    cpu_w = profile(_COVERAGE["CE0"]).cpu_w
    interval, sampling = _settings(base)
    state: RulesState = {}
    life = Life(None)
    used, now, next_sample = 0.0, 0.0, 0.0
    while now < horizon:
        if now >= next_sample:
            life.charge.append((now / _DAY, 100.0 * max(0.0, 1.0 - used / capacity)))
            next_sample += fleet.sample_every_days * _DAY
        now += interval
        used += (floor_w + leak_w) * interval + interval / sampling * SAMPLE_CPU_S * cpu_w
        rsrp = link.at(now)
        used += searching if rsrp is None else costs[_COVERAGE[coverage_class(rsrp)]]
        life.wakes += 1
        if used >= capacity:
            life.days = now / _DAY
            life.charge.append((life.days, 0.0))
            break
        if rules is None:
            continue
        readings = {"battery_pct": 100.0 * (1.0 - used / capacity)}
        if rsrp is not None:
            readings["rsrp_dbm"] = rsrp
        new = step(rules, state, readings, now)
        if any(new[name].active != state.get(name, IDLE).active for name in new):
            adaptation = adapt(rules, new, base, schema)
            interval, sampling = _settings(adaptation.lay(base))
        state = new
        life.adapted_wakes += any(rule.active for rule in new.values())
    return life


def _settings(config: Tree) -> tuple[float, float]:
    """The effective telemetry interval and sampling interval (seconds)."""
    interval = get(config, INTERVAL)
    sampling = get(config, SAMPLE_INTERVAL)
    if not isinstance(interval, int | float) or not isinstance(sampling, int | float):
        raise UsageError(
            "sim battery needs numeric telemetry.interval_s and "
            "sensors.temperature.sample_interval_s in the schema's defaults"
        )
    return float(interval), float(sampling)


def _wake_j(radio: RadioProfile) -> float:
    """One telemetry report's joules on ``radio`` (the agent's counters of one wake)."""
    return energy(radio, Counters(1, 1, PACK_UP_BYTES, ANSWER_DOWN_BYTES)).total_j


class _Link:
    """The hourly link walk, read at wake times (which only move forward)."""

    __slots__ = ("_current", "_hour", "_walk")

    def __init__(self, seed: int, mean: float, horizon: float) -> None:
        steps = int(horizon // _HOUR) + 2
        self._walk: Iterator[float | None] = (
            sample.rsrp_dbm for sample in link_walk(steps=steps, step_s=_HOUR, seed=seed,
                                                    mean_rsrp=mean)
        )  # fmt: skip
        self._hour = -1
        self._current: float | None = None

    def at(self, t: float) -> float | None:
        hour = int(t // _HOUR)
        while self._hour < hour:
            self._current = next(self._walk, self._current)
            self._hour += 1
        return self._current
