"""``edgecfg bench oscore`` on a small fleet: it enrols, starts, measures."""

from __future__ import annotations

import json

import pytest

from edgecfg.cli.main import main


def test_bench_oscore_measures_both_fleets(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "oscore", "--devices", "300", "--sample", "40", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    small, large = report["small"], report["large"]
    assert (small["enrolled"], large["enrolled"]) == (10, 300)
    assert (small["sample"], large["sample"]) == (10, 40)
    for side in (small, large):
        assert set(side) >= {"startup_ms", "warm_p50_us", "cold_p50_us"}
        assert 10 < side["rss_started_mib"] < 4096  # MiB, not pages or bytes
        assert side["warm_p50_us"] <= side["warm_p99_us"]
        assert side["cold_p50_us"] <= side["cold_p99_us"]
    naive = report["naive_lookup_us"]
    assert set(naive) == {"10", "300", "300 (extrapolated)"}
    # 300 peers are measured, not extrapolated (the line starts at 10,000)
    assert naive["300 (extrapolated)"] == naive["300"]


def test_bench_oscore_refuses_a_tiny_fleet(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "oscore", "--devices", "3"]) == 1
    assert "--devices must be at least 10" in capsys.readouterr().err
