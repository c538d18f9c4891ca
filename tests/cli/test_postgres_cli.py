"""The CLI and a gateway on a PostgreSQL database, named by a ``postgresql://`` --db."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from edgecfg.cli.main import main
from tests.paths import SCHEMA
from tests.store.helpers import POSTGRES_URL, postgres_unreachable

TIMEOUT = 60


@pytest.fixture
def url() -> Iterator[str]:
    """A URL whose search_path is an empty schema of this test's own."""
    reason = postgres_unreachable()
    if reason is not None:
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
        db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
            db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_operator_commands_work_on_postgres_and_refuse_an_empty_one(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "--db", url, "config", "dev-1")
    assert code == 1
    assert "no edgecfg database there yet" in err
    assert run(capsys, "--db", url, "init")[1].endswith("new database; next: 'edgecfg --db "
                                                        f"{url} schema load FILE' or 'group set' "
                                                        "and 'device add'\n")  # fmt: skip
    assert run(capsys, "--db", url, "schema", "load", str(SCHEMA))[0] == 0
    code, _, err = run(capsys, "device", "add", "dev-1", "--db", url, "--group", "region=eu/west",
                       "--hardware", "nbiot-sensor-r3")  # fmt: skip
    assert code == 0, err
    assert run(capsys, "--db", url, "device", "set", "dev-1", "device.id=dev-1",
               "security.psk_identity=dev-1")[0] == 0  # fmt: skip
    assert run(capsys, "--db", url, "group", "set", "region/eu", "--set",
               "net.uplink.interval_s=600")[0] == 0  # fmt: skip
    code, out, _ = run(capsys, "--db", url, "config", "dev-1")
    assert json.loads(out)["net"]["uplink"]["interval_s"] == 600
    code, out, _ = run(capsys, "--db", url, "explain", "dev-1", "net.uplink.interval_s")
    assert "region/eu r1" in out


def _serve(url: str) -> tuple[subprocess.Popen[str], str]:
    gateway = subprocess.Popen(
        [sys.executable, "-m", "edgecfg.cli.main", "gateway", "serve", "--db", url,
         "--bind", "127.0.0.1:0", "--insecure"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert gateway.stdout is not None
    banner = gateway.stdout.readline()
    assert f"serving {url} on coap://127.0.0.1:" in banner, gateway.stderr
    return gateway, banner.split("coap://127.0.0.1:")[1].split()[0]


def test_two_gateways_serve_one_postgres_fleet(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["--db", url, "schema", "load", "--create", str(SCHEMA)]) == 0
    assert main(["--db", url, "device", "add", "dev-1", "--group", "region=eu/west",
                 "--hardware", "nbiot-sensor-r3"]) == 0  # fmt: skip
    capsys.readouterr()
    first, port = _serve(url)
    second = None
    try:
        second, other = _serve(url)  # no longer refused: several gateways share PostgreSQL
        assert other != port
        for number, serving in enumerate((port, other)):
            agent = subprocess.run(
                [sys.executable, "-m", "edgecfg.cli.main", "agent", "run", "--gateway",
                 f"coap://127.0.0.1:{serving}", "--device", "dev-1", "--state-dir",
                 str(tmp_path / f"state-{number}"), "--once", "--ack-timeout", "0.5"],
                capture_output=True, text=True, timeout=TIMEOUT, check=False,
            )  # fmt: skip
            assert agent.returncode == 0, agent.stderr
            assert agent.stdout.startswith("dev-1: updated ")
    finally:
        for gateway in (first, second):
            if gateway is not None:
                gateway.terminate()
                gateway.communicate(timeout=TIMEOUT)
                assert gateway.returncode == 0


def test_enrolment_on_postgres_needs_an_explicit_master_key(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["--db", url, "init"]) == 0
    code, _, err = run(capsys, "--db", url, "device", "enroll", "d1", "--out", str(tmp_path / "c"))
    assert code == 1
    assert "a PostgreSQL database needs --master-key FILE" in err
    key = tmp_path / "master.key"
    code, out, err = run(capsys, "--db", url, "device", "enroll", "d1", "--out",
                         str(tmp_path / "c"), "--master-key", str(key))  # fmt: skip
    assert code == 0, err
    assert "device d1: enrolled with key id 01" in out
