"""``edgecfg gateway serve`` and ``edgecfg agent run`` as real processes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edgecfg.agent.sealed_store import LocalState, record_device
from edgecfg.cli.main import main
from edgecfg.crypto import derive_store_key
from edgecfg.wire.cbor import Encoded
from tests.cli.helpers import edgecfg
from tests.gateway.helpers import free_udp_port
from tests.paths import SCHEMA


def test_gateway_serves_an_agent_and_stops_cleanly_on_sigterm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "fleet.db")
    assert main(["--db", db, "schema", "load", "--create", str(SCHEMA)]) == 0
    assert main(["--db", db, "device", "add", "dev-1", "--group", "region=eu/west",
                 "--hardware", "nbiot-sensor-r3", "--agent-version", "1.0.0"]) == 0  # fmt: skip
    capsys.readouterr()
    port = free_udp_port()
    gateway = edgecfg("--db", db, "gateway", "serve", "--bind", f"127.0.0.1:{port}", "--insecure")
    try:
        assert gateway.stdout is not None
        banner = gateway.stdout.readline()
        assert f"serving {db} on coap://127.0.0.1:{port} (insecure: no OSCORE" in banner
        secret = tmp_path / "provisioning.secret"
        secret.write_bytes(bytes(range(32)))
        agent = [
            sys.executable, "-m", "edgecfg.cli.main", "agent", "run", "--gateway",
            f"coap://127.0.0.1:{port}", "--device", "dev-1", "--state-dir",
            str(tmp_path / "state"), "--once", "--ack-timeout", "0.5",
            "--secret-file", str(secret),
        ]  # fmt: skip
        first = subprocess.run(agent, capture_output=True, text=True, timeout=30, check=False)
        assert first.returncode == 0, first.stderr
        assert first.stdout.startswith("dev-1: updated ")
        again = subprocess.run(agent, capture_output=True, text=True, timeout=30, check=False)
        assert "dev-1: current " in again.stdout
        assert "in 1 round trip(s)" in again.stdout
        # the store key came from the secret: no development key beside the data
        assert not (tmp_path / "state" / "device.key").exists()
        capsys.readouterr()
        show = ["agent", "show", "--state-dir", str(tmp_path / "state"), "--device", "dev-1",
                "--secret-file", str(secret), "--json"]  # fmt: skip
        assert main(show) == 0
        assert '"telemetry"' in capsys.readouterr().out
        # the state directory records its device: reads need no --device
        assert main([*show[:4], *show[6:]]) == 0
        assert '"telemetry"' in capsys.readouterr().out
        secret.write_bytes(bytes(32))  # another secret: an error that says so, not "{}"
        assert main(show) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert f"the key derived from {secret} for device dev-1 does not open" in captured.err
    finally:
        gateway.send_signal(signal.SIGTERM)
        out, err = gateway.communicate(timeout=15)
    assert gateway.returncode == 0, err
    assert "edgecfg gateway: stopped" in out


def test_agent_run_reports_an_unreachable_gateway(tmp_path: Path) -> None:
    port = free_udp_port()  # nothing listens there: ICMP refuses each request at once
    result = subprocess.run(  # (a long --ack-timeout: no "no answer for" notes under load)
        [sys.executable, "-m", "edgecfg.cli.main", "agent", "run", "--gateway",
         f"coap://127.0.0.1:{port}", "--device", "d", "--state-dir", str(tmp_path),
         "--once", "--ack-timeout", "5", "--attempts", "3", "--backoff", "0.01"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 3, result.stderr  # progress per attempt, then one last word
    for number, line in enumerate(lines[:2], start=1):
        assert line.startswith(f"d: attempt {number} of 3 failed: connection refused")
        assert "; next retry in 0.0" in line and line.endswith(" s")
    assert lines[2] == (
        f"edgecfg agent: error: d: gateway coap://127.0.0.1:{port} unreachable after 3 "
        "attempts (last: connection refused (ICMP port unreachable)); nothing listens on "
        "that port: is the gateway running, is the port right?"
    )
    assert result.stdout == ""


def test_agent_run_says_it_waits_while_a_silent_gateway_does_not_answer(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:  # reads nothing, answers nothing
        hole.bind(("127.0.0.1", 0))
        address = f"coap://127.0.0.1:{hole.getsockname()[1]}"
        result = subprocess.run(
            [sys.executable, "-m", "edgecfg.cli.main", "agent", "run", "--gateway", address,
             "--device", "d", "--state-dir", str(tmp_path), "--once", "--ack-timeout", "0.1",
             "--max-retransmit", "2", "--attempts", "2", "--backoff", "0.01"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    waiting = f"d: no answer from {address} for 0.3 s (attempt {{}} of 2); still trying"
    assert lines[0] == waiting.format(1)
    assert lines[1].startswith("d: attempt 1 of 2 failed: no answer (retransmissions exhausted)")
    assert lines[2] == waiting.format(2)
    assert lines[3] == (
        f"edgecfg agent: error: d: gateway {address} unreachable after 2 attempts (last: no "
        "answer (retransmissions exhausted)); is the gateway host up and the address right, "
        "or does a firewall drop UDP?"
    )
    assert len(lines) == 4


def test_agent_set_checks_policy_and_show_explains_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(tmp_path / "state")
    assert main(["agent", "set", "telemetry.interval_s=900", "--state-dir", state,
                 "--schema", str(SCHEMA), "--reason", "save battery"]) == 0  # fmt: skip
    assert "#1 telemetry.interval_s = 900 (pending sync)" in capsys.readouterr().out
    assert main(["agent", "set", "telemetry.interval_s=5", "--state-dir", state]) == 1
    err = capsys.readouterr().err
    assert "telemetry.interval_s" in err and "min 300" in err and "device-wins-within-bounds" in err
    assert main(["agent", "set", "log.level=trace", "--state-dir", state]) == 1
    assert "local changes allowed" in capsys.readouterr().err
    assert main(["agent", "show", "telemetry", "--state-dir", state, "--explain"]) == 0
    out = capsys.readouterr().out
    assert "telemetry.interval_s = 900   (local override #1 (pending: save battery))" in out


def test_agent_refuses_a_short_provisioning_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "short.secret"
    secret.write_bytes(b"tiny")
    code = main(["agent", "show", "--state-dir", str(tmp_path / "s"), "--secret-file", str(secret)])
    assert code == 1
    assert "at least 16 bytes, got 4" in capsys.readouterr().err


def test_agent_set_quotes_the_bound_that_applies_and_its_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # net.uplink.interval_s: the key allows >= 10, the local-override policy >= 600
    state = str(tmp_path / "state")
    for value in (5, 20):
        assert main(["agent", "set", f"net.uplink.interval_s={value}", "--state-dir", state,
                     "--schema", str(SCHEMA)]) == 1  # fmt: skip
        err = capsys.readouterr().err
        assert f"net.uplink.interval_s = {value} refused: expected >= 600 " in err
        assert "(local-override policy); policy: local changes allowed (min 600" in err
        assert ">= 10" not in err
        assert len(err.splitlines()) == 1


def test_agent_show_on_a_mistyped_state_dir_fails_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "sate"
    assert main(["agent", "show", "--state-dir", str(typo)]) == 1
    assert capsys.readouterr().err == (
        f"edgecfg agent: error: {typo}: no agent state here (no such directory); "
        "check --state-dir\n"
    )
    secret = tmp_path / "provisioning.secret"
    secret.write_bytes(bytes(range(32)))
    assert main(["agent", "show", "--state-dir", str(typo), "--secret-file", str(secret)]) == 1
    assert "pass --device ID" in capsys.readouterr().err
    assert not typo.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["agent", "show", "--state-dir", str(empty)]) == 1
    assert "no agent state here" in capsys.readouterr().err
    assert list(empty.iterdir()) == []


def test_agent_show_reads_without_creating_keys_or_journal_dirs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    assert main(["agent", "set", "telemetry.interval_s=900", "--state-dir", str(state),
                 "--schema", str(SCHEMA)]) == 0  # fmt: skip
    before = sorted(p.relative_to(state) for p in state.rglob("*"))
    capsys.readouterr()
    assert main(["agent", "show", "telemetry.interval_s", "--state-dir", str(state)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "900"
    assert "no configuration applied yet (never synced)" in captured.err
    assert sorted(p.relative_to(state) for p in state.rglob("*")) == before


def test_agent_run_refuses_a_key_or_device_that_does_not_fit_its_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    secret = tmp_path / "provisioning.secret"
    secret.write_bytes(bytes(range(32)))
    LocalState(state, key=derive_store_key(secret.read_bytes(), "dev-1")).save_config(
        Encoded.of({"a": 1})
    )
    record_device(state, "dev-1")
    run = ["agent", "run", "--gateway", f"coap://127.0.0.1:{free_udp_port()}", "--once",
           "--state-dir", str(state), "--secret-file", str(secret)]  # fmt: skip
    assert main([*run, "--device", "dev-2"]) == 1
    assert "belongs to device dev-1, not dev-2" in capsys.readouterr().err
    secret.write_bytes(bytes(32))  # another secret: the store is not silently replaced
    assert main([*run, "--device", "dev-1"]) == 1
    err = capsys.readouterr().err
    assert f"the key derived from {secret} for device dev-1 does not open this store" in err
    assert len(err.splitlines()) == 1


def test_agent_set_on_a_mistyped_state_dir_without_a_schema_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "sate"
    assert main(["agent", "set", "telemetry.interval_s=900", "--state-dir", str(typo)]) == 1
    assert "no schema to check local overrides against" in capsys.readouterr().err
    assert not typo.exists()


def test_agent_show_explain_writes_bytes_as_diagnostic_notation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    LocalState(state).save_config(Encoded.of({"security": {"psk": bytes([0, 255])}}))
    assert main(["agent", "show", "--state-dir", str(state), "--explain"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("security.psk = \"h'00ff'\"   (gateway config ")
    assert "b'" not in out
