"""``edgecfg bench sync`` on a tiny fleet: it runs, measures and judges."""

from __future__ import annotations

import json

import pytest

from edgecfg.bench.load import MIN_CPU_TICKS, TICKS, Load
from edgecfg.bench.sync import _cpu_row  # pyright: ignore[reportPrivateUsage]
from edgecfg.cli.main import main


def test_bench_sync_reports_wire_bytes_cpu_and_verdicts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["bench", "sync", "--devices", "4", "--requests", "48", "--concurrency", "4"]
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out)
    wire = report["wire"]
    assert wire["unchanged, own wake"]["round_trips"] == 1
    assert 0 < wire["unchanged, own wake"]["bytes"] < 80
    assert wire["unchanged, piggyback"]["round_trips"] == 0
    assert wire["single edit"]["round_trips"] == 2
    assert wire["single edit"]["bytes"] < wire["first sync (full config)"]["bytes"] / 20
    for name in ("unchanged (2.03)", "delta", "full config"):
        row = report["cpu"][name]
        # runs repeat until /proc can resolve the CPU used; a figure that is
        # still below its resolution is null (and its ratio with it), never 0
        for figure in ("gateway_us_per_sync", "bare_us_per_request"):
            assert row[figure] is None or row[figure] > 0
        both = row["gateway_us_per_sync"] is not None and row["bare_us_per_request"] is not None
        assert (row["ratio"] is not None) == both
        assert row["gateway_syncs_per_s"] > 0
    assert report["cpu"]["unchanged (2.03)"]["payload_bytes"] == 0
    assert report["cpu"]["full config"]["payload_bytes"] > 1000


def test_a_load_below_the_clock_tick_resolution_is_not_a_figure() -> None:
    tick = 1 / TICKS
    assert not Load(requests=48, seconds=0.01, cpu_seconds=0.0).resolved
    assert not Load(requests=48, seconds=0.01, cpu_seconds=(MIN_CPU_TICKS - 1) * tick).resolved
    assert Load(requests=48, seconds=0.5, cpu_seconds=MIN_CPU_TICKS * tick).resolved
    row = _cpu_row(
        Load(requests=100, seconds=1.0, cpu_seconds=0.5),
        Load(requests=100, seconds=1.0, cpu_seconds=0.0),
        payload=40,
    )
    assert row["bare_us_per_request"] is None
    assert row["ratio"] is None
    assert row["gateway_us_per_sync"] == pytest.approx(5000.0)
    row = _cpu_row(
        Load(requests=100, seconds=1.0, cpu_seconds=0.5),
        Load(requests=100, seconds=1.0, cpu_seconds=0.25),
        payload=40,
    )
    assert row["ratio"] == pytest.approx(2.0)
