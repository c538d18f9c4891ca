"""Confidence sequences for canary minus control: coverage at every look, and power."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.core.sequential import (
    UNINFORMED,
    Arms,
    Moments,
    difference,
    evidence_against_zero,
    radius,
)


def test_moments_add_values_and_merge() -> None:
    moments = Moments().add(1.0).add(3.0)
    assert (moments.days, moments.total, moments.squares) == (2.0, 4.0, 10.0)
    assert moments.mean == 2.0 and moments.variance == 1.0
    assert (moments + Moments().add(2.0, days=2)).days == 4.0
    assert Moments().mean == 0.0 and Moments().variance == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        Moments(days=-1)


def test_no_comparable_stratum_is_uninformed() -> None:
    one_sided = {"a": Arms(Moments().add(1.0), Moments())}
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
    arms = Arms(Moments().add(0.8, days=100), Moments().add(0.8, days=100))
    bound = difference({"a": arms}, alpha=0.01, counts=False)
    assert bound.estimate == 0.0 and bound.lower < 0 < bound.upper
    assert bound.upper < 0.5


def test_an_arm_without_events_is_not_proof_that_events_cannot_happen() -> None:
    """Counts: zero events in both arms still leaves a Poisson-sized uncertainty."""
    arms = Arms(Moments().add(0.0, days=20), Moments().add(0.0, days=20))
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
    big = Arms(Moments().add(1.0, days=90), Moments().add(1.0, days=90))
    small = Arms(Moments().add(2.0, days=10), Moments().add(1.0, days=10))
    bound = difference({"big": big, "small": small}, alpha=0.01, counts=False)
    assert bound.estimate == pytest.approx(0.1)
