"""``edgecfg rollout ...``: start, status, history, tick and the operator actions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecfg.cli.main import main
from tests.cli.helpers import ok
from tests.paths import SCHEMA

PLAN = """
[plan]
change = { "net.uplink.interval_s" = 900 }
target = "region/eu"
stages = ["50%", "100%"]
guardrails = ["reboots", "checkin"]
"""


@pytest.fixture
def db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    path = str(tmp_path / "fleet.db")
    ok(capsys, path, "schema", "load", "--create", str(SCHEMA))
    for n in range(8):
        ok(capsys, path, "device", "add", f"dev-{n}", "--group", "region=eu/west",
            "--hardware", "nbiot-sensor-r3", "--firmware", "2.1.0")  # fmt: skip
    return path


def test_start_status_act_and_history(
    tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    started = json.loads(ok(capsys, db, "rollout", "start", str(plan), "--id", "r1",
                             "--author", "alice", "--json"))  # fmt: skip
    assert started["id"] == "r1" and started["phase"] == "running" and started["stage"] == "50%"
    assert started["offered"] == {"canary": 4, "control": 4}
    text = ok(capsys, db, "rollout", "status", "r1")
    assert "rollout r1: running, wave 0 stage 50%" in text and "4 canary, 4 control" in text
    assert ok(capsys, db, "rollout", "tick", "--json") == ""  # nothing due on day 0
    paused = json.loads(ok(capsys, db, "rollout", "pause", "r1", "--reason", "freeze",
                            "--author", "bob", "--json"))  # fmt: skip
    assert paused["phase"] == "paused" and "freeze" in paused["reason"]
    assert main(["--db", db, "rollout", "pause", "r1", "--reason", "again"]) == 1
    assert "cannot pause a rollout that is paused" in capsys.readouterr().err
    ok(capsys, db, "rollout", "resume", "r1", "--reason", "thaw")
    rolled = json.loads(ok(capsys, db, "rollout", "rollback", "r1", "--reason", "tickets",
                            "--json"))  # fmt: skip
    assert rolled["phase"] == "rolled_back"
    history = json.loads(ok(capsys, db, "rollout", "history", "r1", "--json"))
    assert [row["action"] for row in history] == ["start", "pause", "resume", "rollback"]
    assert history[1]["author"] == "bob"
    text = ok(capsys, db, "rollout", "history", "r1")
    assert "pause    by bob: freeze" in text


def test_errors_name_what_is_wrong(
    tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--db", db, "rollout", "status", "r9"]) == 1
    assert "r9" in capsys.readouterr().err
    assert main(["--db", db, "rollout", "start", str(tmp_path / "missing.toml")]) == 1
    assert "missing.toml" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text(PLAN.replace('stages = ["50%", "100%"]', 'stages = ["50%"]'))
    assert main(["--db", db, "rollout", "start", str(bad)]) == 1
    assert "must reach 100%" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--db", db, "rollout", "pause", "r1"])  # --reason is required


def test_a_gateway_killed_mid_rollout_resumes_without_offering_twice(
    tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Start a rollout, let a gateway process run its loop, kill it (SIGKILL:
    no clean stop), start another: the cohorts, offers and layers are as they
    were, and the new gateway serves the rollout."""
    import signal
    import time

    from edgecfg.core.ids import DeviceId
    from edgecfg.core.layers import device_layer
    from edgecfg.store import SQLiteStore
    from tests.cli.helpers import edgecfg
    from tests.gateway.helpers import free_udp_port

    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    ok(capsys, db, "rollout", "start", str(plan), "--id", "r1")
    with SQLiteStore(db) as store:
        offers = {c.device: (c.arm, c.offered_at) for c in store.rollout_devices("r1")}
        revisions = {n: len(store.layer_history(device_layer(DeviceId(f"dev-{n}"))))
                     for n in range(8)}  # fmt: skip
    for _ in range(2):
        gateway = edgecfg("--db", db, "gateway", "serve", "--bind",
                          f"127.0.0.1:{free_udp_port()}", "--insecure")  # fmt: skip
        try:
            assert gateway.stdout is not None
            assert "serving" in gateway.stdout.readline()
            time.sleep(3)  # its rollout loop runs a quarter second after it serves
        finally:
            gateway.send_signal(signal.SIGKILL)
            gateway.communicate(timeout=60)
    with SQLiteStore(db) as store:
        assert {c.device: (c.arm, c.offered_at) for c in store.rollout_devices("r1")} == offers
        assert {n: len(store.layer_history(device_layer(DeviceId(f"dev-{n}"))))
                for n in range(8)} == revisions  # fmt: skip
    status = json.loads(ok(capsys, db, "rollout", "status", "r1", "--json"))
    assert status["phase"] == "running" and status["offered"] == {"canary": 4, "control": 4}
