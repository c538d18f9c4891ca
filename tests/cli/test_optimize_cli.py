"""``edgecfg optimize ...`` against a SQLite database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecfg.cli.main import main
from edgecfg.core.ids import DeviceId
from edgecfg.fleet.fleet import Fleet
from edgecfg.store import DeviceRecord
from edgecfg.store.sqlite import SQLiteStore
from tests.cli.helpers import ok
from tests.cli.test_postgres_cli import url  # the fixture: an empty schema of its own
from tests.paths import SCHEMA

ROOT = Path(__file__).resolve().parents[2]
OBJECTIVES = ROOT / "fixtures" / "optimize" / "objectives.toml"


@pytest.fixture
def db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    path = str(tmp_path / "fleet.db")
    ok(capsys, path, "schema", "load", "--create", str(SCHEMA))
    with SQLiteStore(path) as store:
        fleet = Fleet(store)
        for n in range(60):
            fleet.add_device(
                DeviceRecord(DeviceId(f"dev-{n}"), {"region": "eu/west"}, hardware="nbiot-r3")
            )
    return path


def test_objectives_status_and_a_dry_run(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    stored = json.loads(ok(capsys, db, "optimize", "objectives", "set", str(OBJECTIVES),
                            "--json"))  # fmt: skip
    assert [o["name"] for o in stored["objectives"]] == ["battery-life", "mains-errors"]
    status = json.loads(ok(capsys, db, "optimize", "status", "--json"))
    (segment,) = status["segments"]
    assert segment["objective"] == "mains-errors" and segment["devices"] == 60
    assert segment["best"] == {"net.coap.ack_timeout_s": 2.0}
    assert segment["leading"] is None and segment["evidence"] == []  # no settings history
    assert status["in_flight"] == []
    assert "best net.coap.ack_timeout_s=2" in ok(capsys, db, "optimize", "status")
    dry = json.loads(ok(capsys, db, "optimize", "propose", "--dry-run", "--json"))
    assert dry["dry_run"] is True
    trials = dry["proposals"]
    assert trials and sum(p["devices"] for p in trials) <= 6  # 10 % of 60
    for proposal in trials:
        assert proposal["kind"] == "trial" and proposal["setting"] == "net.coap.ack_timeout_s"
        assert 1.0 <= proposal["value"] <= 60.0
        assert list(proposal["plan"]["guardrails"]) == ["errors"]
    assert "dry run:" in ok(capsys, db, "optimize", "propose", "--dry-run")
    assert main(["--db", db, "optimize", "propose"]) == 1
    assert "only --dry-run" in capsys.readouterr().err


def test_bad_objectives_are_refused_naming_the_key(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[objective]]\nminimise = "errors"\nsettings = ["net.coap.ack_timeout_s"]\n'
                   'budget = 3\n')  # fmt: skip
    assert main(["--db", db, "optimize", "objectives", "set", str(bad)]) == 1
    assert "unknown key 'budget'" in capsys.readouterr().err
    assert main(["--db", db, "optimize", "status"]) == 1
    assert "no objectives yet" in capsys.readouterr().err
    bad.write_text("[[objective]\n")
    assert main(["--db", db, "optimize", "objectives", "set", str(bad)]) == 1
    assert "not TOML" in capsys.readouterr().err


__all__ = ["url"]


def test_objectives_live_in_a_postgres_database_too(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, url, "schema", "load", "--create", str(SCHEMA))
    ok(capsys, url, "device", "add", "dev-1", "--hardware", "nbiot-r3")
    ok(capsys, url, "optimize", "objectives", "set", str(OBJECTIVES))
    status = json.loads(ok(capsys, url, "optimize", "status", "--json"))
    assert [o["name"] for o in status["objectives"]] == ["battery-life", "mains-errors"]
    assert [s["stratum"] for s in status["segments"]] == ["nbiot-r3|none|mains|good"]
