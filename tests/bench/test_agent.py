"""``edgecfg bench agent`` on a small config: it runs, converges and measures."""

from __future__ import annotations

import json

import pytest

from edgecfg.cli.main import main


def test_bench_agent_reconnects_with_its_journal_and_reports_costs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["bench", "agent", "--leaves", "60", "--journal", "40", "--samples", "50"]
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out)
    figures = report["figures"]
    assert 0 < figures["journal_entries"] <= 40 + 50
    assert figures["leaves"] >= 40
    assert figures["heap_peak_mb"] > 0
    assert figures["fsyncs_per_change"] >= 1
    assert 20 < figures["bytes_per_change"] < 400
    assert figures["reconnect_round_trips"] >= 2
    assert figures["reconnect_bytes_up"] > figures["journal_entries"] * 10
    assert set(report["pass"]) == {"heap", "local_resolution", "local_resolution_after_change"}


def test_bench_agent_text_output_names_the_targets(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "agent", "--leaves", "30", "--journal", "5", "--samples", "20"])
    out = capsys.readouterr().out
    assert code == 0
    assert "heap <= 5.0 MB" in out
    assert "local resolution p99 <= 0.25 ms" in out
    assert "journal bytes per local change" in out
    assert "first read after a change" in out
