"""``edgecfg agent run --apply-file``: a real agent process reverts a config
that cuts it off from a real gateway process, and the operator sees it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edgecfg.cli.main import main
from tests.cli.helpers import edgecfg
from tests.gateway.helpers import free_udp_port
from tests.paths import SCHEMA

WAIT_S = 60.0  # generous: a busy machine is slow, never wrong


def test_agent_run_reverts_a_config_that_cuts_it_off_and_the_gateway_holds_it_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "fleet.db")
    port = free_udp_port()
    uri = f"coap://127.0.0.1:{port}"
    for argv in (
        ["schema", "load", "--create", str(SCHEMA)],
        ["device", "add", "dev-1", "--group", "region=eu/west", "--hardware", "nbiot-sensor-r3"],
        ["group", "set", "global", "--set", f"net.coap.server_uri={uri}"],
    ):
        assert main(["--db", db, *argv]) == 0
    capsys.readouterr()
    applied = tmp_path / "app.json"
    agent = [
        sys.executable, "-m", "edgecfg.cli.main", "agent", "run", "--gateway", uri,
        "--device", "dev-1", "--state-dir", str(tmp_path / "state"), "--once",
        "--ack-timeout", "0.5", "--apply-file", str(applied),
    ]  # fmt: skip
    gateway = edgecfg("--db", db, "gateway", "serve", "--bind", f"127.0.0.1:{port}", "--insecure")
    try:
        assert gateway.stdout is not None
        assert "serving" in gateway.stdout.readline()
        first = subprocess.run(agent, capture_output=True, text=True, timeout=60, check=False)
        assert first.returncode == 0, first.stderr
        assert json.loads(applied.read_text("utf-8"))["net"]["coap"]["server_uri"] == uri
        nowhere = f"coap://127.0.0.1:{free_udp_port()}"
        assert main(["--db", db, "group", "set", "region/eu",
                     "--set", f"net.coap.server_uri={nowhere}"]) == 0  # fmt: skip
        capsys.readouterr()
        reverted: list[dict[str, object]] = []
        shown: dict[str, Any] = {}
        deadline = time.monotonic() + WAIT_S  # until the gateway has read the edit
        while not reverted and time.monotonic() < deadline:
            run = subprocess.run(agent, capture_output=True, text=True, timeout=60, check=False)
            assert run.returncode == 0, run.stderr
            assert main(["--db", db, "device", "show", "dev-1", "--json"]) == 0
            shown = json.loads(capsys.readouterr().out)
            reverted = shown["reverted"]
        assert reverted, f"no revert recorded within {WAIT_S} s"
        (mark,) = reverted
        assert mark["reason"] == "probe-failed"
        assert str(mark["detail"]).startswith(f"reachability: {nowhere}")
        assert shown["served_etag"] == shown["applied_etag"] != shown["effective_etag"]
        assert json.loads(applied.read_text("utf-8"))["net"]["coap"]["server_uri"] == uri
        again = subprocess.run(agent, capture_output=True, text=True, timeout=60, check=False)
        assert "dev-1: current " in again.stdout  # not offered again
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.communicate(timeout=60)
