"""``edgecfg bench telemetry``: a tiny run end to end, in text and JSON."""

from __future__ import annotations

import json

import pytest

from edgecfg.cli.main import main

TINY = ("--devices", "60", "--packs", "5", "--burst", "30")


def test_bench_telemetry_prints_both_fleets_the_ratio_and_the_burst_verdict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "telemetry", *TINY]) == 0
    out = capsys.readouterr().out
    assert "1,000 dev" in out and "60 dev" in out
    assert "ingest per pack, alone, p50" in out
    assert "burst target 2,000 packs/s at 60 devices:" in out


def test_bench_telemetry_json_has_both_fleets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "telemetry", *TINY, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert (figures["baseline"]["devices"], figures["fleet"]["devices"]) == (1000, 60)
    assert figures["ratio"] > 0
    assert figures["fleet"]["burst_packs_per_s"] > 0
    assert figures["fleet"]["burst_cpu_packs_per_s"] > 0


def test_bench_telemetry_refuses_an_empty_fleet(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "telemetry", "--devices", "0"]) != 0
    assert "--devices, --packs and --burst must be at least 1" in capsys.readouterr().err
