"""``edgecfg bench optimize`` on a small fleet: its figures and its refusals."""

from __future__ import annotations

import json

import pytest

from edgecfg.bench.optimize import build_panel, run_optimize_bench
from edgecfg.cli.main import main


def test_the_bench_reports_both_runs_and_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_optimize_bench(devices=2000, days=4, seed=1, as_json=True) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["baseline"]["devices"] == 1000 and figures["fleet"]["devices"] == 2000
    assert figures["fleet"]["rows"] == 8000 and figures["fleet"]["effects"] > 0
    assert isinstance(figures["target_met"], bool) and figures["target_s"] == 30.0
    assert main(["bench", "optimize", "--days", "1"]) == 1
    assert "at least 16 devices and 2 days" in capsys.readouterr().err


def test_the_panel_has_a_tenth_on_trial_values_from_mid_window() -> None:
    panel = build_panel(1000, 4, seed=2)
    last = panel.day == 3
    changed = (panel.settings["net.uplink.interval_s"][last] == 900.0) | (
        panel.settings["net.coap.ack_timeout_s"][last] != 2.0
    )
    assert 50 <= int(changed.sum()) <= 150
