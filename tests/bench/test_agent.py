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
    assert figures["fsyncs_per_change"] >= 1
    assert 20 < figures["bytes_per_change"] < 400
    assert figures["reconnect_round_trips"] >= 2
    assert figures["reconnect_bytes_up"] > figures["journal_entries"] * 10
    # the RSS is the agent's own process (a bare interpreter is ~8 MB), not the bench's
    assert figures["rss_peak_mb"] > 8
    # each verdict is its figure against the target the text output names
    assert report["pass"] == {
        "heap": figures["heap_peak_mb"] <= 5.0,
        "rss": figures["rss_peak_mb"] <= 30.0,
        "local_resolution": figures["resolve_warm_p99_ms"] <= 0.25,
        "local_resolution_after_change": figures["resolve_cold_p99_ms"] <= 0.25,
    }


def test_bench_agent_text_output_names_the_targets(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "agent", "--leaves", "30", "--journal", "5", "--samples", "20"])
    out = capsys.readouterr().out
    assert code == 0
    assert "heap <= 5.0 MB" in out
    assert "agent process RSS <= 30.0 MB" in out
    assert "local resolution p99 <= 0.25 ms" in out
    assert "journal bytes per local change" in out
    assert "first read after a change" in out
