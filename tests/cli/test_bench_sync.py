"""``edgecfg bench sync`` on a tiny fleet: it runs, measures and judges."""

from __future__ import annotations

import json

import pytest

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
        assert row["gateway_us_per_sync"] > 0
        assert row["bare_us_per_request"] > 0
        assert row["gateway_syncs_per_s"] > 0
    assert report["cpu"]["unchanged (2.03)"]["payload_bytes"] == 0
    assert report["cpu"]["full config"]["payload_bytes"] > 1000
