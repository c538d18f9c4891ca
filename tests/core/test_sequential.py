"""Confidence sequences for canary minus control: coverage at every look, and power."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.core.sequential import (
    SUMS,
    UNINFORMED,
    Arms,
    Moments,
    accumulate,
    arms_of,
    difference,
    evidence_against_zero,
    radius,
)


def test_moments_add_values_and_merge() -> None:
    moments = Moments().add(1.0).add(3.0)
    assert (moments.days, moments.total, moments.squares, moments.count) == (2.0, 4.0, 10.0, 2)
    assert moments.mean == 2.0 and moments.variance == 1.0
    assert moments.mean_variance() == pytest.approx(1.0)  # (1 + 1) / 4 x 2 / 1
    merged = moments + Moments().add(2.0, days=2)
    assert (merged.days, merged.count) == (4.0, 3)
    assert Moments().mean == 0.0 and Moments().variance == 0.0
    assert Moments().add(5.0, days=7).mean_variance() == 0.0  # one observation: no spread
    with pytest.raises(ValueError, match="non-negative"):
        Moments(days=-1)


def test_a_weekly_report_is_one_observation_not_seven() -> None:
    """Seven device-days in one report vary as one value, not as seven."""
    rng = random.Random(1)
    values = [rng.gauss(0.8, 0.1) for _ in range(20)]
    weekly = Moments()
    for value in values:
        weekly = weekly.add(value, days=7)
    daily = Moments.of_days(weekly.days, weekly.total, weekly.squares)
    assert weekly.mean == pytest.approx(daily.mean)
    # the same sums read as independent days would claim 7 x the precision
    assert weekly.mean_variance() == pytest.approx(7 * daily.mean_variance(), rel=0.1)


def test_accumulate_builds_the_same_moments_as_add() -> None:
    sums = [0.0] * (2 * SUMS)
    expected = Moments()
    for value, days in ((0.5, 1.0), (0.7, 7.0), (0.2, 3.0)):
        accumulate(sums, SUMS, value, days)
        expected = expected.add(value, days)
    assert arms_of(sums) == Arms(Moments(), expected)


def test_a_stratum_with_too_few_observations_is_not_compared() -> None:
    few = Arms(Moments.of_days(9, 9, 9), Moments.of_days(100, 50, 30))
    assert difference({"a": few}, alpha=0.01, counts=False) is UNINFORMED


def test_no_comparable_stratum_is_uninformed() -> None:
    one_sided = {"a": Arms(Moments.of_days(20, 20, 20), Moments())}
    assert difference(one_sided, alpha=0.01, counts=False) is UNINFORMED
    assert not UNINFORMED.informative
    assert radius(0.0, 0.01) == math.inf


@given(st.floats(1e-3, 1e9), st.sampled_from([0.001, 0.01, 0.05]))
def test_the_radius_shrinks_as_information_grows(information: float, alpha: float) -> None:
    assert radius(information * 4, alpha) < radius(information, alpha)


@given(st.floats(1e-3, 1e9), st.sampled_from([0.001, 0.01, 0.05]))
def test_the_radius_is_where_the_evidence_reaches_one_over_alpha(
    information: float, alpha: float
) -> None:
    score = radius(information, alpha) * information
    assert evidence_against_zero(score * 1.001, information) >= 1 / alpha
    assert evidence_against_zero(score * 0.999, information) < 1 / alpha


def test_identical_values_give_a_tight_bound_on_zero() -> None:
    arms = Arms(Moments.of_days(100, 80, 64), Moments.of_days(100, 80, 64))
    bound = difference({"a": arms}, alpha=0.01, counts=False)
    assert bound.estimate == 0.0 and bound.lower < 0 < bound.upper
    assert bound.upper < 0.5


def test_an_arm_without_events_is_not_proof_that_events_cannot_happen() -> None:
    """Counts: zero events in both arms still leaves a Poisson-sized uncertainty."""
    arms = Arms(Moments.of_days(20, 0, 0), Moments.of_days(20, 0, 0))
    bound = difference({"a": arms}, alpha=0.05, counts=True)
    assert bound.upper > 0.01  # 20 quiet device-days cannot show a 0.01/day margin


def _daily(rng: random.Random, mean: float, sd: float, days: int) -> Moments:
    moments = Moments()
    for _ in range(days):
        moments = moments.add(rng.gauss(mean, sd))
    return moments


def test_with_no_effect_the_bound_holds_at_every_daily_look() -> None:
    """Coverage over 200 seeded runs of 30 daily looks: false harms stay under alpha."""
    alpha = 0.05
    false_harms = 0
    for seed in range(200):
        rng = random.Random(seed)
        canary, control = Moments(), Moments()
        for _day in range(30):
            canary = canary + _daily(rng, 0.8, 0.2, 20)
            control = control + _daily(rng, 0.8, 0.2, 20)
            bound = difference({"s": Arms(canary, control)}, alpha=alpha, counts=False)
            if bound.lower > 0:
                false_harms += 1
                break
    assert false_harms <= 200 * alpha


def test_a_real_harm_is_found_and_the_estimate_is_near_it() -> None:
    rng = random.Random(7)
    canary = _daily(rng, 0.9, 0.2, 400)
    control = _daily(rng, 0.8, 0.2, 400)
    bound = difference({"s": Arms(canary, control)}, alpha=0.01, counts=False)
    assert bound.lower > 0
    assert abs(bound.estimate - 0.1) < 0.05
    assert bound.lower < 0.1 < bound.upper


def test_strata_are_weighted_by_exposure() -> None:
    """A big stratum with no change and a small one with a big change: the
    stratified estimate is their exposure-weighted mean."""
    big = Arms(Moments.of_days(90, 90, 90), Moments.of_days(90, 90, 90))
    small = Arms(Moments.of_days(10, 20, 40), Moments.of_days(10, 10, 10))
    bound = difference({"big": big, "small": small}, alpha=0.01, counts=False)
    assert bound.estimate == pytest.approx(0.1)


def test_a_control_lucky_with_rare_events_does_not_make_a_harm() -> None:
    """2 events in 13,900 control device-days against 43 in 37,800 canary ones
    (both at about one per thousand device-days): the pooled rate sets the
    variance, so this is no harm at alpha 0.01 (found in an A/A run)."""

    def hourly(reports: int, events: int) -> Moments:
        """Hourly reports (1/24 device-day each), ``events`` of them with one event."""
        w = 1 / 24
        return Moments(reports * w, events, events * 24, reports, reports * w * w,
                       events * w, events)  # fmt: skip

    canary, control = hourly(889_909, 43), hourly(327_004, 2)
    bound = difference({"hourly": Arms(canary, control)}, alpha=0.01 / 5, counts=True,
                       pooled=True)  # fmt: skip
    assert bound.lower < 0 < bound.upper
