"""Always-valid comparisons of a canary arm with its control arm.

A rollout looks at its evidence every day for weeks, so a fixed-sample test
read daily would abort healthy rollouts far more often than its alpha says.
The bounds here are *confidence sequences*: intervals that hold at every
look at once, with probability at least ``1 - alpha`` over the whole run, so
a gate may be evaluated as often as evidence arrives.

The statistic is the difference of two means (canary minus control) of a
per-device-day metric: reboots or errors per device-day, battery drain in
percent per day, missed check-ins per due check-in.  Evidence arrives as
sums (:class:`Moments`) per stratum and arm; the strata are combined with
weights proportional to their exposure (a stratified difference, so a
stratum with more canary devices does not stand in for one with fewer), and
the estimate's variance is the sum of the strata's.

The boundary comes from Robbins' normal mixture (Robbins 1970; the
asymptotic confidence sequences of Waudby-Smith et al., "Time-uniform
central limit theory", 2024): with information ``I = 1 / variance``, the
score ``S = I * estimate`` of a null effect makes ``sqrt(r / (I + r)) *
exp(S**2 / (2 * (I + r)))`` a test martingale, which exceeds ``1 / alpha``
with probability at most ``alpha`` at any look (Ville's inequality).  A
single ``r`` (the mixture's precision) is tight only near one amount of
information, so the e-value here averages one per decade
(:data:`PRECISIONS`): a reboot loop shows on the second day, a margin-sized
drift after weeks.  The bound is two-sided, so using one side of it (harm,
or non-inferiority) is conservative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

# A stratum is compared only where each arm has at least this many
# observations (reports or devices): a variance estimated from fewer says
# too little about the spread to bound a difference at every look.
MIN_OBSERVATIONS: Final = 10


@dataclass(frozen=True, slots=True)
class Moments:
    """Observations of one arm in one stratum, each a per-day value over some
    device-days: a weekly report of battery drain is one observation
    weighing seven device-days, not seven independent ones.

    ``days`` = sum of weights, ``total`` = sum of weight x value, ``squares``
    = sum of weight x value²; ``count`` observations; ``w2``, ``w2x``,
    ``w2x2``: the sums of squared weights (times value, value²), which the
    variance of the weighted mean needs (:meth:`mean_variance`).
    """

    days: float = 0.0
    total: float = 0.0
    squares: float = 0.0
    count: float = 0.0
    w2: float = 0.0
    w2x: float = 0.0
    w2x2: float = 0.0

    def __post_init__(self) -> None:
        if min(self.days, self.squares, self.count, self.w2, self.w2x2) < 0:
            raise ValueError(f"moments must be non-negative: {self}")

    def add(self, value: float, days: float = 1.0) -> Moments:
        """These moments with one more observation: ``value`` per day over ``days``."""
        weight2 = days * days
        return Moments(
            self.days + days, self.total + value * days, self.squares + value * value * days,
            self.count + 1, self.w2 + weight2, self.w2x + weight2 * value,
            self.w2x2 + weight2 * value * value,
        )  # fmt: skip

    @staticmethod
    def of_days(days: float, total: float, squares: float) -> Moments:
        """``days`` independent one-day observations with these sums."""
        return Moments(days, total, squares, days, days, total, squares)

    def __add__(self, other: Moments) -> Moments:
        return Moments(
            self.days + other.days, self.total + other.total, self.squares + other.squares,
            self.count + other.count, self.w2 + other.w2, self.w2x + other.w2x,
            self.w2x2 + other.w2x2,
        )  # fmt: skip

    @property
    def mean(self) -> float:
        return self.total / self.days if self.days > 0 else 0.0

    @property
    def variance(self) -> float:
        """The per-device-day variance (population form; 0 without data)."""
        if self.days <= 0:
            return 0.0
        mean = self.mean
        return max(0.0, self.squares / self.days - mean * mean)

    def mean_variance(self) -> float:
        """The variance of :attr:`mean`, from the spread of the observations
        around it (the robust, or sandwich, estimate, with the small-sample
        factor n / (n - 1)); 0 with fewer than two observations."""
        if self.count < 2 or self.days <= 0:
            return 0.0
        mean = self.mean
        spread = self.w2x2 - 2 * mean * self.w2x + mean * mean * self.w2
        return max(0.0, spread) / (self.days * self.days) * self.count / (self.count - 1)


SUMS: Final = 7  # the fields of Moments, in order


def accumulate(sums: list[float], at: int, value: float, days: float) -> None:
    """Add one observation to the :class:`Moments` fields kept as floats in
    ``sums[at : at + SUMS]`` (a running tally that builds no objects)."""
    weight2 = days * days
    sums[at] += days
    sums[at + 1] += value * days
    sums[at + 2] += value * value * days
    sums[at + 3] += 1
    sums[at + 4] += weight2
    sums[at + 5] += weight2 * value
    sums[at + 6] += weight2 * value * value


def arms_of(sums: list[float]) -> Arms:
    """The canary's and the control's moments from a tally of ``2 * SUMS``
    floats (see :func:`accumulate`), the canary first."""
    return Arms(Moments(*sums[:SUMS]), Moments(*sums[SUMS:]))


@dataclass(frozen=True, slots=True)
class Arms:
    """One stratum's evidence for one metric: the canary's and the control's moments."""

    canary: Moments = Moments()
    control: Moments = Moments()

    def __add__(self, other: Arms) -> Arms:
        return Arms(self.canary + other.canary, self.control + other.control)


@dataclass(frozen=True, slots=True)
class Bound:
    """A confidence-sequence interval on canary minus control.

    ``information`` is the inverse of the estimate's variance (0: nothing
    to go on, and then the interval is unbounded).
    """

    estimate: float
    lower: float
    upper: float
    information: float

    @property
    def informative(self) -> bool:
        return self.information > 0 and math.isfinite(self.lower)


UNINFORMED: Final = Bound(0.0, -math.inf, math.inf, 0.0)


# The mixture's precisions: one per decade of information, so a large harm
# shows while information is low and a margin-sized one once it is high.
PRECISIONS: Final = tuple(10.0**power for power in range(-2, 10))


def evidence_against_zero(score: float, information: float) -> float:
    """The e-value of the normal mixture at ``score`` (``information`` x estimate).

    The average over :data:`PRECISIONS` of Robbins' normal-mixture
    martingales ``sqrt(r / (I + r)) * exp(S**2 / (2 * (I + r)))``: each is a
    test martingale for a null effect, and so is their average.
    """
    total = 0.0
    for precision in PRECISIONS:
        spread = information + precision
        total += math.sqrt(precision / spread) * math.exp(min(700.0, score * score / (2 * spread)))
    return total / len(PRECISIONS)


def radius(information: float, alpha: float) -> float:
    """Half-width of the mixture confidence sequence at ``information``: the
    estimate's distance from a value at which the e-value reaches ``1 / alpha``."""
    if information <= 0:
        return math.inf
    low, high = 0.0, 1.0
    while evidence_against_zero(high, information) < 1 / alpha:
        high *= 2
    for _ in range(40):  # to a relative precision of 1e-12
        middle = (low + high) / 2
        if evidence_against_zero(middle, information) < 1 / alpha:
            low = middle
        else:
            high = middle
    return high / information


def difference(
    strata: Mapping[str, Arms], *, alpha: float, counts: bool, pooled: bool = False
) -> Bound:
    """The stratified canary-minus-control bound over ``strata``.

    Each arm's mean has the robust variance of its observations
    (:meth:`Moments.mean_variance`); ``counts``: the metric counts events
    (reboots, errors, missed check-ins), so that variance is at least the
    add-one Poisson rate's, ``(total + 1) / days**2``: an arm that saw no
    event yet has not shown that events cannot happen.  ``pooled`` (for a
    test of "no difference", as the harm test is): also at least the
    Poisson variance of both arms' pooled rate over the arm's device-days,
    so a control that saw few events by chance does not make the canary
    look harmed.  Strata where either
    arm has fewer than :data:`MIN_OBSERVATIONS` observations are left out;
    with none left, the result is :data:`UNINFORMED`.
    """
    usable = [
        arms
        for arms in strata.values()
        if min(arms.canary.count, arms.control.count) >= MIN_OBSERVATIONS
    ]
    if not usable:
        return UNINFORMED
    weight_total = sum(arms.canary.days + arms.control.days for arms in usable)
    estimate = 0.0
    variance = 0.0
    for arms in usable:
        weight = (arms.canary.days + arms.control.days) / weight_total
        estimate += weight * (arms.canary.mean - arms.control.mean)
        variance += (
            weight
            * weight
            * (
                _mean_variance(arms.canary, arms, counts=counts, pooled=pooled)
                + _mean_variance(arms.control, arms, counts=counts, pooled=pooled)
            )
        )
    if variance <= 0:
        # A level metric with every observation equal in both arms: no
        # spread to measure, so the difference is as certain as the
        # device-days behind it allow.
        days = sum(min(arms.canary.days, arms.control.days) for arms in usable)
        variance = 1.0 / (days * days)
    information = 1.0 / variance
    width = radius(information, alpha)
    return Bound(estimate, estimate - width, estimate + width, information)


def _mean_variance(moments: Moments, arms: Arms, *, counts: bool, pooled: bool) -> float:
    robust = moments.mean_variance()
    if not counts:
        return robust
    # An add-one rate: no events seen yet is not proof of none.
    own = (moments.total + 1) / (moments.days * moments.days)
    if not pooled:
        return max(robust, own)
    # Testing "no difference", both arms share one event rate: an arm that
    # saw fewer events than that rate gives by chance does not shrink the
    # variance (a lucky control would make the canary look harmed).
    both = arms.canary + arms.control
    return max(robust, own, (both.total + 1) / both.days / moments.days)
