"""``--rules``/``--reading`` of ``agent run``, ``agent adapt``, and the
adaptation in ``agent show --explain`` and the gateway's ``explain`` (issue 14)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgecfg.agent.sealed_store import LocalState
from edgecfg.cli.main import main
from edgecfg.wire.cbor import Encoded
from tests.cli.helpers import serving_one_device
from tests.paths import FIXTURES, SCHEMA

RULES = str(FIXTURES / "rules" / "examples.yaml")


def test_agent_adapt_applies_the_rules_offline_and_show_explains_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    LocalState(state).save_config(Encoded.of({"telemetry": {"interval_s": 3600}}))
    adapt = ["agent", "adapt", "--state-dir", str(state), "--at", "1765123200"]
    assert main([*adapt, "--reading", "battery_pct=18", "--rules", RULES]) == 1
    assert "pass --schema FILE" in capsys.readouterr().err  # rules need their bounds
    assert main([*adapt, "--reading", "battery_pct=18", "--rules", RULES,
                 "--schema", str(SCHEMA)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert (
        "telemetry.interval_s = 14400   (local adaptation since 2025-12-07 16:00:00Z: "
        "rule battery-low on battery_pct = 18 < 20)"
    ) in out
    assert "power.mode: rule battery-low not applied: cannot scale" not in out
    assert main(["agent", "show", "telemetry", "--state-dir", str(state), "--explain"]) == 0
    assert "telemetry.interval_s = 14400   (local adaptation since 2025-12-07" in (
        capsys.readouterr().out
    )
    # the rules and schema were kept: a later wake needs neither; a bad reading is refused
    assert main([*adapt, "--reading", "battery=lots"]) == 1
    assert "--reading battery=lots: expected NAME=NUMBER" in capsys.readouterr().err
    assert main([*adapt, "--reading", "battery_pct=80", "--json"]) == 0  # within the dwell
    assert '"rule": "battery-low"' in capsys.readouterr().out
    assert main([*adapt, "--reading", "battery_pct=80"]) == 0
    assert (
        "rule battery-low: 1 of 1 wake(s) toward leaving, held by its dwell until "
        "2025-12-07 22:00:00Z"
    ) in capsys.readouterr().out


def test_agent_run_reports_the_adaptation_and_explain_shows_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "fleet.db")
    with serving_one_device(db) as port:
        capsys.readouterr()
        agent = [
            sys.executable, "-m", "edgecfg.cli.main", "agent", "run", "--gateway",
            f"coap://127.0.0.1:{port}", "--device", "dev-1", "--state-dir",
            str(tmp_path / "state"), "--once", "--ack-timeout", "0.5",
            "--schema", str(SCHEMA), "--rules", RULES, "--reading", "battery_pct=12",
        ]  # fmt: skip
        first = subprocess.run(agent, capture_output=True, text=True, timeout=30, check=False)
        assert first.returncode == 0, first.stderr
        assert "telemetry.interval_s = 14400   (local adaptation since" in first.stdout
        second = subprocess.run(agent, capture_output=True, text=True, timeout=30, check=False)
        assert second.returncode == 0, second.stderr
        assert "dev-1: current " in second.stdout
    assert main(["--db", db, "explain", "dev-1", "telemetry.interval_s"]) == 0
    out = capsys.readouterr().out
    assert "telemetry.interval_s = 3600" in out  # the served value: the gateway's
    assert ("on the device: telemetry.interval_s = 14400 by local adaptation since ") in out
    assert "rule battery-low on battery_pct = 12 < 20 (reported " in out
    assert main(["--db", db, "explain", "dev-1", "power.mode", "--json"]) == 0
    assert '"rule": "battery-low"' in capsys.readouterr().out
    assert main(["--db", db, "device", "show", "dev-1"]) == 0
    assert (
        "adapted: telemetry.interval_s = 14400 (rule battery-low, on the device; see explain)"
    ) in capsys.readouterr().out
