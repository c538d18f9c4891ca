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
    assert wire["unchanged, piggyback"]["bytes"] == 9  # the held ETag as an ETag option
    assert wire["single edit"]["round_trips"] == 2
    assert wire["single edit"]["bytes"] < wire["first sync (full config)"]["bytes"] / 20
    for name in ("unchanged (2.03)", "delta", "full config"):
        row = report["cpu"][name]
        # runs repeat until /proc can resolve the CPU used; a figure that is
        # still below its resolution is null (and its ratio with it), never 0
        assert set(row) == {"gateway_us_per_sync", "bare_us_per_request", "ratio",
                            "gateway_syncs_per_s", "payload_bytes"}  # fmt: skip
        ours, bare = row["gateway_us_per_sync"], row["bare_us_per_request"]
        if ours is None or bare is None:
            assert row["ratio"] is None
        else:
            assert row["ratio"] == pytest.approx(ours / bare)
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
    assert row["gateway_syncs_per_s"] == pytest.approx(100.0)
    assert row["payload_bytes"] == 40.0


def test_a_load_s_figures_are_per_request_and_per_second() -> None:
    load = Load(requests=400, seconds=2.0, cpu_seconds=0.1)
    assert load.cpu_per_request_us == pytest.approx(250.0)
    assert load.per_second == pytest.approx(200.0)
