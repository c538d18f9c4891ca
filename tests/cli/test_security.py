"""``device enroll|revoke``, ``operator enroll``, the master key, and the
enrolled credentials used by ``aiocoap-client`` and ``edgecfg agent run``
against an OSCORE gateway running as a real process."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecfg.cli.main import main
from edgecfg.store import SQLiteStore
from edgecfg.wire.cbor import decode
from tests.cli.helpers import edgecfg
from tests.gateway.helpers import free_udp_port
from tests.paths import SCHEMA

AIOCOAP_CLIENT = Path(sys.executable).parent / "aiocoap-client"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def fleet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    db = str(tmp_path / "fleet.db")
    assert main(["--db", db, "schema", "load", "--create", str(SCHEMA)]) == 0
    for device in ("dev-1", "dev-2"):
        assert main(["--db", db, "device", "add", device, "--group", "region=eu/west",
                     "--hardware", "nbiot-sensor-r3", "--agent-version", "1.0.0"]) == 0  # fmt: skip
    capsys.readouterr()
    return db


def test_enroll_writes_aiocoap_credentials_and_seals_the_secret(
    fleet: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dev-1"
    code = main(["--db", fleet, "device", "enroll", "dev-1", "--out", str(out),
                 "--gateway", "coap://127.0.0.1:5683"])  # fmt: skip
    assert code == 0
    assert "device dev-1: enrolled with key id 01" in capsys.readouterr().out
    credentials = json.loads((out / "credentials.json").read_text())
    # relative, so the folder can be moved to the device as it is (issue 18)
    assert credentials == {"coap://127.0.0.1:5683/*": {"oscore": {"basedir": "oscore/"}}}
    settings = json.loads((out / "oscore" / "settings.json").read_text())
    assert settings["sender-id_hex"] == "01"
    assert settings["recipient-id_hex"] == ""
    secret = json.loads((out / "oscore" / "secret.json").read_text())
    assert _mode(out / "oscore" / "secret.json") == 0o600
    assert _mode(out / "credentials.json") == 0o600
    assert _mode(Path(f"{fleet}.master-key")) == 0o600
    # The database holds the secret only sealed.
    with SQLiteStore(fleet) as store:
        record = store.active_credential("device", "dev-1")
    assert record is not None
    assert bytes.fromhex(secret["secret_hex"]) not in record.sealed
    assert bytes.fromhex(secret["secret_hex"]) not in Path(fleet).read_bytes()


def test_enrolling_again_needs_replace_and_revoke_ends_it(
    fleet: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    enroll = ["--db", fleet, "device", "enroll", "dev-1", "--out"]
    assert main([*enroll, str(tmp_path / "a")]) == 0
    assert main([*enroll, str(tmp_path / "b")]) == 1
    assert "already enrolled (key id 01); revoke it first" in capsys.readouterr().err
    assert main([*enroll, str(tmp_path / "a"), "--replace"]) == 1  # a directory in use
    assert "already holds an OSCORE context" in capsys.readouterr().err
    with SQLiteStore(fleet) as store:  # refused before anything changed
        active = store.active_credential("device", "dev-1")
        assert active is not None and active.kid == b"\x01"
    assert main([*enroll, str(tmp_path / "b"), "--replace"]) == 0
    assert "key id 02" in capsys.readouterr().out
    assert main(["--db", fleet, "device", "revoke", "dev-1"]) == 0
    assert "credential 02 revoked" in capsys.readouterr().out
    assert main(["--db", fleet, "device", "revoke", "dev-1"]) == 1
    assert "dev-1" in capsys.readouterr().err
    with SQLiteStore(fleet) as store:
        assert store.active_credential("device", "dev-1") is None
        assert store.count_credentials(active=False) == 2


def test_the_master_key_is_never_silently_replaced(
    fleet: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "master.key"
    enroll = ["--db", fleet, "device", "enroll", "--master-key", str(key)]
    assert main([*enroll[:4], "dev-1", *enroll[4:], "--out", str(tmp_path / "a")]) == 0
    key.unlink()  # lost: a new key would make every stored secret unreadable
    assert main([*enroll[:4], "dev-2", *enroll[4:], "--out", str(tmp_path / "b")]) == 1
    assert "no operator master key" in capsys.readouterr().err
    assert not key.exists()
    code = main(["--db", fleet, "gateway", "serve", "--master-key", str(key)])
    assert code == 1
    assert "no operator master key" in capsys.readouterr().err
    key.write_bytes(bytes(32))  # another key: the stored secrets do not open
    key.chmod(0o600)
    code = main(["--db", fleet, "gateway", "serve", "--master-key", str(key)])
    assert code == 1
    assert "does not open" in capsys.readouterr().err
    # ... and nothing is enrolled under it either.
    assert main([*enroll[:4], "dev-2", *enroll[4:], "--out", str(tmp_path / "c")]) == 1
    assert "does not open" in capsys.readouterr().err
    with SQLiteStore(fleet) as store:
        assert store.active_credential("device", "dev-2") is None


class Served:
    def __init__(self, db: str, port: int, process: subprocess.Popen[str]) -> None:
        self.db, self.port, self.process = db, port, process

    @property
    def base(self) -> str:
        return f"coap://127.0.0.1:{self.port}"

    def client(self, path: str, *args: str, credentials: Path | None = None) -> bytes:
        argv = [str(AIOCOAP_CLIENT), "--no-pretty-print"]
        if credentials is not None:
            argv += ["--credentials", str(credentials)]
        result = subprocess.run(  # aiocoap-client resolves basedir against its cwd
            [*argv, *args, f"{self.base}{path}"],
            capture_output=True,
            timeout=30,
            check=False,
            cwd=credentials.parent if credentials is not None else None,
        )
        return result.stdout + result.stderr

    def config(self, device: str) -> bytes:
        """The device's effective config as the operator CLI reads it from the store."""
        result = subprocess.run(
            [sys.executable, "-m", "edgecfg.cli.main", "--db", self.db, "config", device,
             "--format", "cbor"],
            capture_output=True, timeout=60, check=True,
        )  # fmt: skip
        return result.stdout


@pytest.fixture
def served(fleet: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Served]:
    port = free_udp_port()
    gateway_uri = f"coap://127.0.0.1:{port}"
    for device in ("dev-1", "dev-2"):
        assert main(["--db", fleet, "device", "enroll", device, "--out", str(tmp_path / device),
                     "--gateway", gateway_uri]) == 0  # fmt: skip
    assert (
        main(["--db", fleet, "operator", "enroll", "alice", "--out", str(tmp_path / "alice")]) == 0
    )
    capsys.readouterr()
    process = edgecfg("--db", fleet, "gateway", "serve", "--bind", f"127.0.0.1:{port}",
                      "--refresh", "0.2")  # fmt: skip
    assert process.stdout is not None
    banner = process.stdout.readline()
    assert "(OSCORE, 3 enrolled identities)" in banner, process.stderr and process.stderr.read()
    try:
        yield Served(fleet, port, process)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
        assert process.returncode == 0, err


def test_aiocoap_client_reads_its_config_with_the_enrolled_credentials(
    served: Served, tmp_path: Path
) -> None:
    own = served.client("/cfg/dev-1", credentials=tmp_path / "dev-1" / "credentials.json")
    assert decode(own) == decode(served.config("dev-1"))  # the whole config, as CBOR
    assert b"4.01" in served.client("/cfg/dev-1")  # no credentials
    other = served.client("/cfg/dev-2", credentials=tmp_path / "dev-1" / "credentials.json")
    assert b"4.03 Forbidden" in other
    assert b"may not act for device dev-2" in other
    # An operator reads groups; a device may not.
    alice = tmp_path / "alice" / "credentials.json"
    assert b"4." not in served.client("/grp/region/eu", credentials=alice)
    denied = served.client("/grp/region/eu", credentials=tmp_path / "dev-1" / "credentials.json")
    assert b"4.03 Forbidden" in denied


def test_the_agent_syncs_over_oscore_and_a_revoked_device_is_refused(
    served: Served, tmp_path: Path
) -> None:
    agent = [
        sys.executable, "-m", "edgecfg.cli.main", "agent", "run", "--gateway", served.base,
        "--device", "dev-2", "--state-dir", str(tmp_path / "state"), "--once",
        "--ack-timeout", "0.5", "--credentials", str(tmp_path / "dev-2" / "credentials.json"),
    ]  # fmt: skip
    first = subprocess.run(agent, capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("dev-2: updated ")
    sequence = json.loads((tmp_path / "dev-2" / "oscore" / "sequence.json").read_text())
    assert sequence["next-to-send"] > 0  # aiocoap keeps the device's numbers
    assert main(["--db", served.db, "device", "revoke", "dev-2"]) == 0
    deadline = time.monotonic() + 10
    while True:  # the gateway picks the revocation up with its refresh
        again = subprocess.run(agent, capture_output=True, text=True, timeout=60, check=False)
        if again.returncode != 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert again.returncode == 1
    assert "4.01" in again.stderr
    assert "Security context not found" in again.stderr


def test_an_enrolled_folder_still_works_after_it_is_moved(served: Served, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "device-folder"
    moved.parent.mkdir()
    (tmp_path / "dev-1").rename(moved)
    agent = [
        sys.executable, "-m", "edgecfg.cli.main", "agent", "run", "--gateway", served.base,
        "--device", "dev-1", "--state-dir", str(tmp_path / "state"), "--once",
        "--ack-timeout", "0.5", "--credentials", str(moved / "credentials.json"),
    ]  # fmt: skip
    result = subprocess.run(agent, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("dev-1: updated ")
    assert json.loads((moved / "oscore" / "sequence.json").read_text())["next-to-send"] > 0
    own = served.client("/cfg/dev-1", credentials=moved / "credentials.json")
    assert decode(own) == decode(served.config("dev-1"))


def test_aiocoap_client_with_revoked_credentials_gets_an_unprotected_401(
    served: Served, tmp_path: Path
) -> None:
    """What an operator sees (README, Security): the gateway no longer holds the
    context, so its 4.01 is unprotected and aiocoap 0.4.17's client raises
    NotAProtectedMessage instead of printing it."""
    credentials = tmp_path / "dev-1" / "credentials.json"
    own = served.client("/cfg/dev-1", credentials=credentials)
    assert decode(own) == decode(served.config("dev-1"))
    assert main(["--db", served.db, "device", "revoke", "dev-1"]) == 0
    deadline = time.monotonic() + 10
    while True:  # the gateway picks the revocation up with its refresh
        answer = served.client("/cfg/dev-1", credentials=credentials)
        if b"NotAProtectedMessage" in answer or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer.rstrip().endswith(
        b"aiocoap.oscore.NotAProtectedMessage: No Object-Security option present"
    )


def test_gateway_serve_needs_a_refresh_interval(
    fleet: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--db", fleet, "gateway", "serve", "--refresh", "0"]) == 1
    assert "--refresh 0.0: must be above 0" in capsys.readouterr().err


def test_a_second_gateway_on_the_same_database_is_refused(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--db", served.db, "gateway", "serve", "--bind", f"127.0.0.1:{free_udp_port()}"])
    assert code == 1
    assert "another gateway is serving this database" in capsys.readouterr().err


def test_agent_credentials_for_another_gateway_are_refused_before_sending(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["agent", "run", "--gateway", "coap://127.0.0.1:1", "--device", "dev-1",
                 "--state-dir", str(tmp_path / "s"), "--once",
                 "--credentials", str(tmp_path / "dev-1" / "credentials.json")])  # fmt: skip
    assert code == 1
    assert "no credentials for coap://127.0.0.1:1" in capsys.readouterr().err
