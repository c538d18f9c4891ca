"""``edgecfg-agent``, the device's entry point (issue 16): ``run`` as in
``edgecfg agent run``, in a process without the operator CLI or OpenSSL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edgecfg.bench.measure import free_udp_port
from tests.imports import DEVICE_PROCESS_FORBIDDEN, FORBIDDEN, loaded_by, offenders

DEVICE_CLI_ALLOWED = {
    "edgecfg.cli",
    "edgecfg.cli.device",
    "edgecfg.cli.agent_run",
    "edgecfg.cli.arguments",
    "edgecfg.cli.adapt",
    "edgecfg.cli.files",
}


def test_the_device_entry_point_loads_run_and_no_other_command() -> None:
    loaded = loaded_by(
        "argparse", "edgecfg.cli.device", "edgecfg.cli.agent_run", refuse_openssl=True
    )
    cli = {name for name in loaded if name == "edgecfg.cli" or name.startswith("edgecfg.cli.")}
    assert cli == DEVICE_CLI_ALLOWED
    device_forbidden = tuple(name for name in DEVICE_PROCESS_FORBIDDEN if name != "argparse")
    assert offenders(loaded - DEVICE_CLI_ALLOWED, FORBIDDEN + device_forbidden) == []


def test_the_device_entry_point_runs_agent_run_and_says_what_failed(tmp_path: Path) -> None:
    port = free_udp_port()  # nothing listens there: ICMP refuses each request at once
    result = subprocess.run(
        [sys.executable, "-m", "edgecfg.cli.device", "run", "--gateway",
         f"coap://127.0.0.1:{port}", "--device", "d", "--state-dir", str(tmp_path),
         "--once", "--ack-timeout", "5", "--attempts", "1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"edgecfg-agent run: error: d: gateway coap://127.0.0.1:{port} unreachable after 1 "
        "attempt (last: connection refused (ICMP port unreachable)); nothing listens on "
        "that port: is the gateway running, is the port right?"
    ]
    assert (tmp_path / "device.id").read_text().strip() == "d"  # its state, as agent run's


def test_the_device_entry_point_offers_only_run() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgecfg.cli.device", "--help"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "usage: edgecfg-agent" in result.stdout
    assert "run" in result.stdout and "gateway" not in result.stdout
