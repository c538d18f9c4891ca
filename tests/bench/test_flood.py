"""``edgecfg bench flood``, briefly: it runs, measures and reports every figure."""

from __future__ import annotations

import json

import pytest

from edgecfg.cli.main import main


def test_bench_flood_reports_rss_sync_latency_and_answers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["bench", "flood", "--seconds", "2", "--after", "1", "--baseline", "1", "--rate",
            "400", "--ports", "16"]  # fmt: skip
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "plain CoAP"
    # a Python gateway holds tens of MiB: the probe reads MiB, not pages or bytes
    assert 10 < report["baseline"]["rss_max_mib"] < 4096
    assert report["baseline"]["syncs"] >= 1
    assert report["flood"]["sent"] == 800
    assert report["flood"]["server_errors"] == 0
    assert report["gateway_log"]["tracebacks"] == 0
    for phase in ("baseline", "during", "after"):
        assert set(report[phase]) >= {"syncs", "failures", "sync_median_s", "rss_max_mib"}
    rss = report["rss"]
    assert rss["baseline_mib"] > 0 and rss["peak_mib"] >= rss["baseline_mib"]
    assert rss["after_mib"] > 0  # sampled --after seconds after the flood ended
    assert report["after_s"] == 1
    assert set(report["targets"]) == {"rss_growth", "rss_after", "sync", "errors"}
    assert all(isinstance(target["met"], bool) for target in report["targets"].values())


def test_bench_flood_prints_targets(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "flood", "--seconds", "1", "--after", "0", "--baseline", "0", "--rate",
            "100", "--ports", "4"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "RSS growth during the flood" in out
    assert "RSS 0 s after the flood" in out
    assert "5.00 answers 0 (0)" in out
    verdicts = [line.split()[0] for line in out.splitlines()[-4:]]
    assert len(verdicts) == 4 and set(verdicts) <= {"PASS", "MISS"}
