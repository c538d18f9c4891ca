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
        assert side["startup_ms"] > 0
        assert side["rss_started_mib"] > 10
        assert 0 < side["warm_p50_us"] <= side["warm_p99_us"]
        assert 0 < side["cold_p50_us"] <= side["cold_p99_us"]
    naive = report["naive_lookup_us"]
    assert set(naive) == {"10", "300", "300 (extrapolated)"}


def test_bench_oscore_refuses_a_tiny_fleet(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "oscore", "--devices", "3"]) == 1
    assert "--devices must be at least 10" in capsys.readouterr().err
