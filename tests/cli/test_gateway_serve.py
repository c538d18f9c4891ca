"""``edgecfg gateway serve`` as scripts call it: options, bind errors, banners."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edgecfg.cli.main import main
from tests.gateway.helpers import free_udp_port

TIMEOUT = 60


def serve(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edgecfg.cli.main", "gateway", "serve", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgecfg.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.fixture
def db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    name = str(tmp_path / "fleet.db")
    assert main(["--db", name, "init"]) == 0
    capsys.readouterr()
    return name


def stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.terminate()
    out, err = process.communicate(timeout=TIMEOUT)
    return out, err


def test_db_after_the_subcommand_serves_that_database(db: str) -> None:
    gateway = serve("--db", db, "--bind", "127.0.0.1:0", "--insecure")
    try:
        assert gateway.stdout is not None
        banner = gateway.stdout.readline()
        assert f"serving {db} on coap://127.0.0.1:" in banner
    finally:
        out, err = stop(gateway)
    assert gateway.returncode == 0, err
    assert out.strip() == "edgecfg gateway: stopped"


def test_port_zero_announces_the_port_actually_bound(db: str) -> None:
    gateway = serve("--db", db, "--bind", "127.0.0.1:0", "--insecure")
    try:
        assert gateway.stdout is not None
        banner = gateway.stdout.readline()
        port = int(banner.split("coap://127.0.0.1:")[1].split()[0])
        assert port != 0
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe,
            pytest.raises(OSError, match="Address already in use"),
        ):
            probe.bind(("127.0.0.1", port))  # the announced port is the bound one
    finally:
        stop(gateway)


@pytest.mark.parametrize(
    ("bind", "message"),
    [
        ("127.0.0.1:99999", "--bind '127.0.0.1:99999': port 99999 is above 65535"),
        ("127.0.0.1", "--bind '127.0.0.1': expected HOST:PORT, e.g. 127.0.0.1:5683"),
        ("127.0.0.1:http", "expected HOST:PORT"),
    ],
)
def test_bad_bind_values_are_one_line(db: str, bind: str, message: str) -> None:
    result = run("gateway", "serve", "--db", db, "--bind", bind, "--insecure")
    assert result.returncode == 1
    assert result.stderr.startswith("edgecfg gateway: error: --bind ")
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_taken_port_is_one_line_naming_the_cause(db: str) -> None:
    port = free_udp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        result = run("gateway", "serve", "--db", db, "--bind", f"127.0.0.1:{port}", "--insecure")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"edgecfg gateway: error: cannot serve on 127.0.0.1:{port}: Address already in use "
        "(another process (another gateway?) is bound to that port; stop it or choose "
        "another --bind)"
    )


def test_a_second_gateway_on_the_same_port_is_refused(db: str, tmp_path: Path) -> None:
    """aiocoap binds with SO_REUSEPORT: without the probe both would serve."""
    other = str(tmp_path / "other.db")
    assert run("--db", other, "init").returncode == 0
    first = serve("--db", db, "--bind", "127.0.0.1:0", "--insecure")
    try:
        assert first.stdout is not None
        port = first.stdout.readline().split("coap://127.0.0.1:")[1].split()[0]
        second = run("gateway", "serve", "--db", other, "--bind", f"127.0.0.1:{port}", "--insecure")
        assert second.returncode == 1
        assert "Address already in use" in second.stderr
    finally:
        stop(first)


def test_an_address_not_on_this_machine_is_one_line(db: str) -> None:
    result = run("gateway", "serve", "--db", db, "--bind", "192.0.2.1:5683", "--insecure")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "edgecfg gateway: error: cannot serve on 192.0.2.1:5683: Cannot assign requested "
        "address (that address is not on this machine; use one of its addresses, "
        "127.0.0.1 or 0.0.0.0)"
    )


def test_a_missing_database_is_not_served(tmp_path: Path) -> None:
    typo = tmp_path / "typo.db"
    result = run("gateway", "serve", "--db", str(typo), "--bind", "127.0.0.1:0", "--insecure")
    assert result.returncode == 1
    assert "no such database" in result.stderr
    assert not typo.exists()


def test_oscore_with_nobody_enrolled_points_to_enroll_or_insecure(db: str) -> None:
    result = run("gateway", "serve", "--db", db, "--bind", "127.0.0.1:0")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"edgecfg gateway: error: {db}: no device or operator is enrolled yet, so OSCORE has "
        f"nobody to serve; enrol one with 'edgecfg --db {db} device enroll ID --out DIR', "
        "or serve plain CoAP on a test bench with --insecure"
    )


def test_a_bad_mqtt_url_is_one_line(db: str) -> None:
    result = run("gateway", "serve", "--db", db, "--insecure", "--mqtt", "http://broker")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "edgecfg gateway: error: --mqtt 'http://broker': expected mqtt://HOST[:PORT][/prefix], "
        "e.g. mqtt://127.0.0.1:1883/edgecfg"
    )


async def test_gateway_serve_with_mqtt_publishes_a_synced_devices_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import uuid

    import aiomqtt

    from tests.gateway.helpers import BROKER, broker_listening
    from tests.paths import SCHEMA

    if not broker_listening(*BROKER):
        pytest.skip(f"no MQTT broker on {BROKER[0]}:{BROKER[1]} (Mosquitto runs there on CI)")
    db = str(tmp_path / "fleet.db")
    assert main(["--db", db, "schema", "load", "--create", str(SCHEMA)]) == 0
    assert main(["--db", db, "device", "add", "dev-1", "--group", "region=eu/west",
                 "--hardware", "nbiot-sensor-r3"]) == 0  # fmt: skip
    capsys.readouterr()
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    async with aiomqtt.Client(*BROKER, identifier=f"sub-{prefix}") as sub:
        await sub.subscribe(f"{prefix}/#", qos=1)
        gateway = serve("--db", db, "--bind", "127.0.0.1:0", "--insecure",
                        "--mqtt", f"mqtt://{BROKER[0]}:{BROKER[1]}/{prefix}")  # fmt: skip
        try:
            assert gateway.stdout is not None
            banner = gateway.stdout.readline()
            assert f"telemetry and events to mqtt://127.0.0.1:1883/{prefix})" in banner
            port = banner.split("coap://127.0.0.1:")[1].split()[0]
            agent = run("agent", "run", "--gateway", f"coap://127.0.0.1:{port}", "--device",
                        "dev-1", "--state-dir", str(tmp_path / "st"), "--once",
                        "--ack-timeout", "0.5")  # fmt: skip
            assert agent.returncode == 0, agent.stderr
            async with asyncio.timeout(TIMEOUT):
                message = await anext(aiter(sub.messages))
            assert str(message.topic) == f"{prefix}/events/applied/dev-1"
        finally:
            stop(gateway)
    assert (tmp_path / "fleet.db.mqtt-outbox").exists()


def test_budgets_come_from_the_command_line(db: str) -> None:
    result = run("gateway", "serve", "--db", db, "--insecure", "--peer-rate", "0")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "edgecfg gateway: error: --peer-rate and --memory-mib must be above 0"
    )
    gateway = serve("--db", db, "--bind", "127.0.0.1:0", "--insecure", "--peer-rate", "5",
                    "--memory-mib", "8", "--telemetry-kib-per-day", "0")  # fmt: skip
    try:
        assert gateway.stdout is not None
        assert "serving" in gateway.stdout.readline()
    finally:
        stop(gateway)
    assert gateway.returncode == 0
