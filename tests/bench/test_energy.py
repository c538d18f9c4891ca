"""``edgecfg bench energy`` on two simulated days: real agents, a real
gateway, every battery device type, pattern and sync mode, and verdicts."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import pytest

from edgecfg.bench.energy import PATTERNS, device_types, edit_keys, edit_values
from edgecfg.cli.main import main


def _row(report: dict[str, Any], kind: str, pattern: str, mode: str) -> dict[str, Any]:
    return next(
        row for row in report["rows"]
        if (row["device_type"], row["pattern"], row["mode"]) == (kind, pattern, mode)
    )  # fmt: skip


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    out = io.StringIO()  # one run for the module (capsys is per test)
    with contextlib.redirect_stdout(out):
        code = main(["bench", "energy", "--days", "2", "--devices", "1", "--json"])
    assert code == 0
    return json.loads(out.getvalue())


def test_every_battery_type_pattern_and_mode_has_a_row(report: dict[str, Any]) -> None:
    kinds, skipped = device_types()
    assert skipped == {"pi-gateway": "mains powered: no battery budget"}
    assert report["skipped"] == skipped
    assert {(r["device_type"], r["pattern"], r["mode"]) for r in report["rows"]} == {
        (kind.id, pattern, mode) for kind in kinds for pattern in PATTERNS
        for mode in ("own", "ride")
    }  # fmt: skip
    assert "2xAA (9 Wh) over 10 years = 8.9 J/day" in report["budget"]


def test_unchanged_config_riding_on_telemetry_adds_only_the_etag_option(
    report: dict[str, Any],
) -> None:
    for kind in ("nbiot-sensor", "ltem-meter", "lte-camera"):
        wake = _row(report, kind, "none", "ride")["per_telemetry_wake"]
        assert wake["round_trips"] == 0
        assert wake["bytes_down"] == 0  # 2.04, empty, as without the held version
        # the 8-byte ETag in an ETag option (1 header byte)
        assert wake["bytes_up"] == 9


def test_an_own_wake_costs_a_wake_and_a_round_trip_a_day(report: dict[str, Any]) -> None:
    own = _row(report, "nbiot-sensor", "none", "own")["per_day"]
    assert own["wakes"] == 1
    assert own["round_trips"] == 1
    assert 30 < own["bytes_up"] + own["bytes_down"] < 80  # GET with ETag, 2.03


def test_a_daily_change_is_delivered_and_reported(report: dict[str, Any]) -> None:
    ride = _row(report, "nbiot-sensor", "daily", "ride")["per_day"]
    # each day's edit comes before each day's wake: one delivery a day, on the
    # telemetry answer; the next telemetry names the applied version, so no
    # state report costs a round trip
    assert ride["round_trips"] == 0
    assert ride["bytes_down"] > 0
    own = _row(report, "nbiot-sensor", "daily", "own")["per_day"]
    assert own["round_trips"] == 2  # GET (the delta) + POST /state
    assert own["wakes"] == 1


def test_riding_costs_less_than_an_own_wake_and_coverage_orders_the_cost(
    report: dict[str, Any],
) -> None:
    for pattern in PATTERNS:
        own = _row(report, "nbiot-sensor", pattern, "own")["energy"]
        ride = _row(report, "nbiot-sensor", pattern, "ride")["energy"]
        for name in ("nb-iot/mcl144", "nb-iot/mcl154", "nb-iot/mcl164"):
            assert ride[name]["percent_of_budget"] < own[name]["percent_of_budget"]
        shares = [ride[f"nb-iot/mcl{mcl}"]["percent_of_budget"] for mcl in (144, 154, 164)]
        assert shares == sorted(shares)
    budget = report["device_types"]["nbiot-sensor"]["budget_j_per_day"]
    quiet = _row(report, "nbiot-sensor", "none", "own")["energy"]["nb-iot/mcl144"]
    assert quiet["percent_of_budget"] == pytest.approx(100 * quiet["j_per_day"] / budget)


def test_each_target_is_judged_on_its_value(report: dict[str, Any]) -> None:
    targets = report["targets"]
    assert len(targets) == 5
    assert [line["case"] for line in report["comparisons"]] == [
        "one typical change a day, MCL 144 dB, own daily wake",
        "weekly batch, MCL 154 dB, own weekly wake",
    ]
    ride = {t["target"]: t["value"] for t in targets}
    own = [line["value"] for line in report["comparisons"]]
    assert own[0] > ride["one typical change a day, MCL 144 dB, riding on telemetry (%)"]
    for target in targets:
        assert target["pass"] == (target["value"] <= target["limit"])
    named = {target["target"]: target for target in targets}
    assert named["unchanged config riding on telemetry: extra bytes per wake"]["value"] == 9


def test_the_same_counters_are_priced_on_other_links(report: dict[str, Any]) -> None:
    links = report["other_links"]["nbiot-sensor"]
    assert {link["profile"] for link in links} == {
        "lte-m/mode-a", "wifi", "lorawan/sf7", "lorawan/sf12"
    }  # fmt: skip
    for link in links:
        assert (link["duty_cycle_percent"] is None) != link["profile"].startswith("lorawan")
    sf = {(link["pattern"], link["mode"], link["profile"]): link["percent_of_budget"]
          for link in links}  # fmt: skip
    assert sf[("daily", "own", "lorawan/sf7")] < sf[("daily", "own", "lorawan/sf12")]


def test_a_walking_link_prices_each_wake_between_the_best_and_worst_class(
    report: dict[str, Any],
) -> None:
    walked = report["walking_link"]["nbiot-sensor"]
    assert walked["mean_rsrp_dbm"] == -112.0
    assert len(walked["rows"]) == len(PATTERNS) * 2
    for line in walked["rows"]:
        assert sum(line["coverage_share"].values()) == pytest.approx(1.0)
        fixed = _row(report, "nbiot-sensor", line["pattern"], line["mode"])["energy"]
        best, worst = (fixed[f"nb-iot/mcl{mcl}"]["percent_of_budget"] for mcl in (144, 164))
        assert best * (1 - 1e-9) <= line["percent_of_budget"] <= worst * (1 + 1e-9)


def test_the_text_output_states_the_budget_and_the_verdicts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "energy", "--days", "0.5", "--devices", "1"]) == 0
    out = capsys.readouterr().out
    assert "2xAA (9 Wh) over 10 years = 8.9 J/day" in out
    assert "CE2, MCL 164 dB" in out
    assert "unchanged config riding on telemetry" in out
    assert ("PASS" in out) or ("MISS" in out)


def test_every_edit_changes_every_key_it_sets() -> None:
    keys = edit_keys()
    assert len(keys) >= 25
    for number in range(1, 6):
        before, after = edit_values(keys, number, 25), edit_values(keys, number + 1, 25)
        assert all(before[path] != after[path] for path in before)
