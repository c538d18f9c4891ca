"""The energy model: costs grow with every counter, coverage classes are
ordered, LoRa airtime follows Semtech's formula, budgets are what 2xAA give."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.core.energy import (
    LINK_PROFILES,
    PROFILES,
    Counters,
    daily_budget_j,
    edrx_floor_w,
    energy,
    lora_airtime_s,
    profile,
    share_of_budget,
    standing_j,
)
from edgecfg.errors import UsageError

counts = st.integers(min_value=0, max_value=100_000)
counters = st.builds(
    Counters, counts, counts, counts, counts, st.floats(min_value=0, max_value=100)
)
FIELDS = ("wakes", "round_trips", "bytes_up", "bytes_down", "cpu_s")


@given(counters, st.sampled_from(FIELDS), st.integers(min_value=1, max_value=10_000),
       st.sampled_from(sorted(PROFILES)))  # fmt: skip
def test_more_of_any_counter_never_costs_less(
    base: Counters, name: str, more: int, which: str
) -> None:
    grown = base + Counters(**{name: more})
    assert energy(PROFILES[which], grown).total_j >= energy(PROFILES[which], base).total_j


@given(counters, st.sampled_from(("bytes_up", "bytes_down", "round_trips", "wakes")))
def test_cellular_costs_grow_strictly_with_bytes_round_trips_and_wakes(
    base: Counters, name: str
) -> None:
    grown = base + Counters(**{name: 1})
    for which in ("nb-iot/mcl144", "lte-m/mode-a", "lte-cat1"):
        assert energy(PROFILES[which], grown).total_j > energy(PROFILES[which], base).total_j


@given(counters)
def test_worse_coverage_costs_more_for_the_same_counters(counted: Counters) -> None:
    costs = [energy(profile(f"nb-iot/mcl{mcl}"), counted).total_j for mcl in (144, 154, 164)]
    assert costs == sorted(costs)
    lte_m = [energy(profile(f"lte-m/mode-{m}"), counted).total_j for m in "ab"]
    assert lte_m == sorted(lte_m)


def test_every_cost_of_a_coverage_class_is_above_the_better_ones() -> None:
    ce0, ce1, ce2 = (profile(f"nb-iot/mcl{mcl}") for mcl in (144, 154, 164))
    for name in ("wake_j", "round_trip_j", "up_j_per_byte", "down_j_per_byte", "paging_j"):
        assert getattr(ce0, name) < getattr(ce1, name) < getattr(ce2, name), name


def test_nothing_counted_costs_nothing() -> None:
    for each in PROFILES.values():
        assert energy(each, Counters()).total_j == 0.0


def test_an_nbiot_wake_at_good_coverage_costs_what_design_says() -> None:
    # DESIGN §6: ~0.5 J fixed per wake at good coverage, several J at poor coverage
    assert energy(profile("nb-iot/mcl144"), Counters(wakes=1)).total_j == pytest.approx(0.5)
    assert energy(profile("nb-iot/mcl164"), Counters(wakes=1)).total_j >= 3.0


def test_the_parts_add_up_to_the_total() -> None:
    counted = Counters(wakes=2, round_trips=3, bytes_up=100, bytes_down=200, cpu_s=0.5)
    nb = profile("nb-iot/mcl154")
    spent = energy(nb, counted)
    assert spent.wake_j == pytest.approx(2 * nb.wake_j)
    assert spent.round_trip_j == pytest.approx(3 * nb.round_trip_j)
    assert spent.up_j == pytest.approx(100 * nb.up_j_per_byte)
    assert spent.down_j == pytest.approx(200 * nb.down_j_per_byte)
    assert spent.cpu_j == pytest.approx(0.5 * nb.cpu_w)
    assert spent.total_j == pytest.approx(
        spent.wake_j + spent.round_trip_j + spent.up_j + spent.down_j + spent.cpu_j
    )


# Semtech AN1200.13 time on air, EU868 125 kHz, CR 4/5, 8-symbol preamble,
# explicit header, CRC on (LoRaWAN uplinks), DE on for SF11/12, in ms: the
# values the usual airtime calculators (The Things Network's tables) print
# for a 51-byte frame at SF7 and SF12 and an empty LoRaWAN frame (13 bytes).
@pytest.mark.parametrize(
    ("payload", "sf", "ms"),
    [(51, 7, 102.656), (51, 12, 2465.792), (13, 7, 46.336), (13, 12, 1155.072)],
)
def test_lora_airtime_follows_the_semtech_formula(payload: int, sf: int, ms: float) -> None:
    assert lora_airtime_s(payload, sf) * 1000 == pytest.approx(ms, abs=1e-3)


def test_lora_airtime_by_hand_for_sf7_and_sf12() -> None:
    # SF7: T_sym 1.024 ms; ceil((408 - 28 + 28 + 16) / 28) = 16 blocks -> 8 + 80 symbols
    assert lora_airtime_s(51, 7) == pytest.approx((8 + 4.25 + 88) * 0.001024)
    # SF12 with DE: T_sym 32.768 ms; ceil((408 - 48 + 44) / 40) = 11 -> 8 + 55 symbols
    assert lora_airtime_s(51, 12) == pytest.approx((8 + 4.25 + 63) * 0.032768)
    # SF10, no DE (8.192 ms symbols): ceil((408 - 40 + 44) / 40) = 11 -> 8 + 55 symbols
    assert lora_airtime_s(51, 10) == pytest.approx((8 + 4.25 + 63) * 0.008192)
    # a downlink (no CRC) is shorter; implicit header too; DE forced off at SF12 too
    assert lora_airtime_s(51, 12, crc=False) < lora_airtime_s(51, 12)
    assert lora_airtime_s(51, 7, explicit_header=False) < lora_airtime_s(51, 7)
    assert lora_airtime_s(51, 12, low_data_rate=False) < lora_airtime_s(51, 12)


@given(st.integers(min_value=0, max_value=255), st.integers(min_value=7, max_value=12))
def test_lora_airtime_grows_with_payload_and_spreading_factor(payload: int, sf: int) -> None:
    assert lora_airtime_s(payload + 1, sf) >= lora_airtime_s(payload, sf)
    if sf < 12:
        assert lora_airtime_s(payload, sf + 1) > lora_airtime_s(payload, sf)


def test_a_lorawan_round_trip_at_sf12_uses_more_airtime_than_at_sf7() -> None:
    counted = Counters(round_trips=1, bytes_up=60, bytes_down=20)
    sf7, sf12 = energy(profile("lorawan/sf7"), counted), energy(profile("lorawan/sf12"), counted)
    assert 0 < sf7.airtime_s < sf12.airtime_s
    assert sf7.total_j < sf12.total_j
    # 60 B at SF12 do not fit one 51-byte frame: two frames, so more than one frame's airtime
    assert sf12.airtime_s > lora_airtime_s(60 + 13, 12)


def test_two_aa_cells_over_ten_years_give_seven_to_nine_joules_a_day() -> None:
    assert 7.0 <= daily_budget_j(9.0) <= 9.0
    assert daily_budget_j(9.0, years=5) == pytest.approx(2 * daily_budget_j(9.0))
    assert share_of_budget(daily_budget_j(9.0) / 100, daily_budget_j(9.0)) == pytest.approx(1.0)


def test_the_psm_floor_is_microwatts_and_edrx_costs_more_for_shorter_cycles() -> None:
    nb = profile("nb-iot/mcl144")
    assert 1e-6 < nb.floor_w < 1e-4  # nRF9160: 2.7 uA
    assert standing_j(nb, 86_400) < 1.0
    assert edrx_floor_w(nb, 20.48) > edrx_floor_w(nb, 655.36) > nb.floor_w


def test_every_fixture_link_has_a_profile() -> None:
    for name in LINK_PROFILES.values():
        assert profile(name).technology in {"nb-iot", "lte-m", "lte-cat1", "wifi"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: profile("nb-iot/mcl200"), "no energy profile 'nb-iot/mcl200'"),
        (lambda: Counters(bytes_up=-1), "Counters.bytes_up must be finite and >= 0"),
        (lambda: Counters(cpu_s=math.nan), "Counters.cpu_s"),
        (lambda: daily_budget_j(0.0), "battery > 0 Wh"),
        (lambda: lora_airtime_s(10, 13), "SF 6..12"),
        (lambda: edrx_floor_w(profile("wifi"), 0.0), "eDRX cycle"),
        (lambda: share_of_budget(1.0, 0.0), "daily budget"),
    ],
)
def test_bad_input_is_refused_naming_what_is_wrong(call: object, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace(".", r"\.")):
        call()  # type: ignore[operator]


def test_bytes_riding_in_a_lorawan_frame_sent_anyway_cost_their_symbols_only() -> None:
    sf12 = profile("lorawan/sf12")
    riding = energy(sf12, Counters(bytes_up=22))
    own = energy(sf12, Counters(round_trips=1, bytes_up=22))
    assert 0 < riding.airtime_s < lora_airtime_s(22 + 13, 12) < own.airtime_s
