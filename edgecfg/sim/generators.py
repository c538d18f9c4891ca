"""Seeded generators of what a device lives through, for tests and demos:
battery discharge, link quality with outages, workload bursts and faults.

Each generator takes an explicit ``seed`` (``random.Random(seed)``) and is
deterministic: one seed, one sequence, on every machine.  Nothing reads a
clock; time is the sample index times the step the caller chose.

Battery curves are shapes, not a cell's data sheet: open-circuit voltage
against depth of discharge per chemistry, and the usable capacity falling
in the cold (the published discharge curves of Saft LS14500 Li-SOCl2,
Energizer E91 alkaline AA, and 18650 Li-ion cells show these shapes).
Link quality is a mean-reverting random walk of RSRP (3GPP TS 36.133
reporting range -140..-44 dBm) and SINR (-20..30 dB) with outages.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from edgecfg.errors import UsageError

Chemistry = Literal["li-socl2", "alkaline-2aa", "li-ion"]


@dataclass(frozen=True, slots=True)
class Cell:
    """A chemistry's discharge shape: (depth of discharge, volts) points, the
    cut-off, and the capacity left at a temperature (fraction of 20 °C)."""

    curve: tuple[tuple[float, float], ...]
    cutoff_v: float
    cold: tuple[tuple[float, float], ...]
    """(°C, fraction of the rated capacity) points, ascending in °C."""
    self_discharge_per_year: float


CELLS: Final[Mapping[Chemistry, Cell]] = MappingProxyType({
    # Li-SOCl2 bobbin cell: a flat 3.6 V plateau, a knee near the end; keeps
    # most of its capacity in the cold; ~1 %/year self-discharge.
    "li-socl2": Cell(
        ((0.0, 3.67), (0.05, 3.6), (0.8, 3.5), (0.9, 3.4), (0.97, 3.1), (1.0, 2.0)),
        2.0, ((-40.0, 0.5), (-20.0, 0.75), (0.0, 0.9), (20.0, 1.0), (60.0, 1.0)), 0.01,
    ),
    # Two alkaline AA in series: a sloping curve from 3.2 V to a 1.8 V cut-off
    # (0.9 V a cell); loses most of its capacity below freezing; ~3 %/year.
    "alkaline-2aa": Cell(
        ((0.0, 3.2), (0.1, 2.9), (0.5, 2.5), (0.8, 2.25), (0.95, 2.0), (1.0, 1.8)),
        1.8, ((-20.0, 0.15), (0.0, 0.55), (20.0, 1.0), (60.0, 1.0)), 0.03,
    ),
    # Li-ion: 4.2 V full, a long 3.7 V middle, 3.0 V cut-off; ~3 %/month.
    "li-ion": Cell(
        ((0.0, 4.2), (0.1, 4.0), (0.5, 3.75), (0.85, 3.6), (0.95, 3.4), (1.0, 3.0)),
        3.0, ((-20.0, 0.6), (0.0, 0.85), (20.0, 1.0), (60.0, 1.0)), 0.36,
    ),
})  # fmt: skip


def _interpolate(points: tuple[tuple[float, float], ...], x: float) -> float:
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


def cell(chemistry: str) -> Cell:
    """The cell of ``chemistry``; UsageError naming the known ones."""
    for name, spec in CELLS.items():
        if name == chemistry:
            return spec
    raise UsageError(f"no battery chemistry {chemistry!r}; known: {', '.join(CELLS)}")


def voltage(chemistry: str, depth: float) -> float:
    """Open-circuit voltage at depth of discharge ``depth`` (0 full, 1 empty)."""
    if not 0.0 <= depth <= 1.0:
        raise UsageError(f"depth of discharge is within 0..1, got {depth}")
    return _interpolate(cell(chemistry).curve, depth)


def capacity_factor(chemistry: str, celsius: float) -> float:
    """Fraction of the rated capacity usable at ``celsius``."""
    return _interpolate(cell(chemistry).cold, celsius)


@dataclass(frozen=True, slots=True)
class BatterySample:
    """One step of a discharge: what a device would report."""

    t_s: float
    percent: float
    """State of charge, 0..100 (the `%EL` SenML unit)."""
    volts: float
    celsius: float


def discharge(
    chemistry: str, *, capacity_j: float, load_w: float, step_s: float, steps: int, seed: int,
    mean_celsius: float = 15.0, swing_celsius: float = 10.0,
) -> Iterator[BatterySample]:  # fmt: skip
    """A battery under ``load_w`` (plus self-discharge) sampled every ``step_s``,
    with a seasonal and daily temperature swing and a little noise; the cold
    lowers the usable capacity (and so the reported charge) while it lasts."""
    if capacity_j <= 0 or load_w < 0 or step_s <= 0 or steps < 0:
        raise UsageError("discharge needs capacity_j > 0, load_w >= 0, step_s > 0, steps >= 0")
    rng = random.Random(seed)
    spec = cell(chemistry)
    leak_w = capacity_j * spec.self_discharge_per_year / (365.25 * 86_400)
    used = 0.0
    for index in range(steps):
        t = index * step_s
        season = math.sin(2 * math.pi * t / (365.25 * 86_400))
        daily = math.sin(2 * math.pi * t / 86_400)
        celsius = mean_celsius + swing_celsius * season + 3.0 * daily + rng.gauss(0, 0.5)
        usable = capacity_j * capacity_factor(chemistry, celsius)
        depth = min(1.0, used / usable)
        yield BatterySample(
            t, round(100.0 * (1.0 - depth), 3),
            round(voltage(chemistry, depth) + rng.gauss(0, 0.005), 4), round(celsius, 2),
        )  # fmt: skip
        used += (load_w + leak_w) * step_s


@dataclass(frozen=True, slots=True)
class LinkSample:
    """Link quality at one wake; ``rsrp_dbm`` None during an outage."""

    t_s: float
    rsrp_dbm: float | None
    sinr_db: float | None
    coverage: Literal["CE0", "CE1", "CE2", "none"]


RSRP_RANGE: Final = (-140.0, -44.0)
SINR_RANGE: Final = (-20.0, 30.0)


def coverage_class(rsrp_dbm: float) -> Literal["CE0", "CE1", "CE2"]:
    """NB-IoT coverage class from RSRP with typical network thresholds
    (SIB2-NB rsrp-ThresholdsPrachInfoList; networks choose them): -110 and -120 dBm."""
    return "CE0" if rsrp_dbm >= -110.0 else "CE1" if rsrp_dbm >= -120.0 else "CE2"


def link_walk(
    *, steps: int, step_s: float, seed: int, mean_rsrp: float = -105.0, volatility: float = 2.0,
    reversion: float = 0.1, outage_rate_per_day: float = 0.2, outage_mean_s: float = 3600.0,
) -> Iterator[LinkSample]:  # fmt: skip
    """An Ornstein-Uhlenbeck walk of RSRP around ``mean_rsrp`` (SINR follows
    it, with its own noise), clipped to the reporting ranges, broken by
    outages that start as a Poisson process and last exponentially long."""
    if steps < 0 or step_s <= 0 or not RSRP_RANGE[0] <= mean_rsrp <= RSRP_RANGE[1]:
        raise UsageError(f"link_walk needs steps >= 0, step_s > 0 and a mean RSRP in "
                         f"{RSRP_RANGE} dBm, got {steps}, {step_s}, {mean_rsrp}")  # fmt: skip
    rng = random.Random(seed)
    rsrp = mean_rsrp
    down_until = -1.0
    for index in range(steps):
        t = index * step_s
        # the same draws every step, so one seed's walk does not depend on outages
        shock, noise, start, length = rng.gauss(0, 1), rng.gauss(0, 1.5), rng.random(), rng.random()
        rsrp += reversion * (mean_rsrp - rsrp) + volatility * shock
        rsrp = min(max(rsrp, RSRP_RANGE[0]), RSRP_RANGE[1])
        if t >= down_until and start < 1 - math.exp(-outage_rate_per_day * step_s / 86_400):
            down_until = t - outage_mean_s * math.log(1 - length)
        if t < down_until:
            yield LinkSample(t, None, None, "none")
            continue
        sinr = min(max((rsrp + 120.0) * 0.8 + noise, SINR_RANGE[0]), SINR_RANGE[1])
        shown = round(rsrp, 2)  # the class of the value reported, not of its hidden digits
        yield LinkSample(t, shown, round(sinr, 2), coverage_class(shown))


def workload(
    *, steps: int, step_s: float, seed: int, base_per_hour: float = 2.0,
    burst_per_hour: float = 60.0, burst_rate_per_day: float = 1.0, burst_mean_s: float = 1800.0,
) -> Iterator[int]:  # fmt: skip
    """Events (sensor readings to send, motion triggers) per step: a Poisson
    count at ``base_per_hour``, at ``burst_per_hour`` during bursts (a
    two-state Markov-modulated Poisson process)."""
    if steps < 0 or step_s <= 0 or min(base_per_hour, burst_per_hour) < 0:
        raise UsageError("workload needs steps >= 0, step_s > 0 and rates >= 0")
    rng = random.Random(seed)
    burst_until = -1.0
    for index in range(steps):
        t = index * step_s
        start, length = rng.random(), rng.random()
        if t >= burst_until and start < 1 - math.exp(-burst_rate_per_day * step_s / 86_400):
            burst_until = t - burst_mean_s * math.log(1 - length)
        rate = burst_per_hour if t < burst_until else base_per_hour
        yield _poisson(rng, rate * step_s / 3600.0)


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method for small means, a rounded normal beyond 30."""
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


@dataclass(frozen=True, slots=True)
class Fault:
    """Something going wrong on a device at ``t_s``."""

    t_s: float
    kind: Literal["reboot", "sensor-error"]


def faults(
    *, days: float, seed: int, reboots_per_day: float = 0.05, sensor_errors_per_day: float = 0.2,
    error_burst: int = 5,
) -> list[Fault]:  # fmt: skip
    """Reboots (a Poisson process) and sensor errors (Poisson bursts of up
    to ``error_burst`` readings a minute apart), in time order."""
    if days < 0 or min(reboots_per_day, sensor_errors_per_day) < 0 or error_burst < 1:
        raise UsageError("faults needs days >= 0, rates >= 0 and error_burst >= 1")
    rng = random.Random(seed)
    end = days * 86_400
    found: list[Fault] = []
    for kind, rate in (("reboot", reboots_per_day), ("sensor-error", sensor_errors_per_day)):
        t = 0.0
        while rate > 0:
            t += rng.expovariate(rate / 86_400)
            if t >= end:
                break
            if kind == "reboot":
                found.append(Fault(t, "reboot"))
            else:
                burst = rng.randint(1, error_burst)
                found.extend(Fault(t + 60.0 * n, "sensor-error") for n in range(burst)
                             if t + 60.0 * n < end)  # fmt: skip
    return sorted(found, key=lambda fault: (fault.t_s, fault.kind))
