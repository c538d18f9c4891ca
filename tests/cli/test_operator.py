"""Operator commands against a real SQLite database file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecfg.cli.main import main
from edgecfg.cli.operator import parse_value

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "fixtures" / "schema" / "device.json"


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "fleet.db")


def run(capsys: pytest.CaptureFixture[str], db: str, *argv: str) -> tuple[int, str, str]:
    code = main(["--db", db, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys: pytest.CaptureFixture[str], db: str, *argv: str) -> str:
    code, out, err = run(capsys, db, *argv)
    assert code == 0, err
    return out


@pytest.fixture
def fleet(capsys: pytest.CaptureFixture[str], db: str) -> str:
    ok(capsys, db, "schema", "load", str(SCHEMA))
    for number, region in enumerate(["eu/eu-west/site-17", "eu/eu-north/site-2", "us/east"]):
        ok(
            capsys, db, "device", "add", f"dev-{number}", "--group", f"region={region}",
            "--group", "function=metering", "--hardware", "nbiot-sensor-r3",
            "--firmware", "2.1.0", "--agent-version", "1.0.0",
        )  # fmt: skip
        ok(capsys, db, "device", "set", f"dev-{number}", f"device.id=dev-{number}",
           f"security.psk_identity=dev-{number}")  # fmt: skip
    return db


@pytest.mark.parametrize(
    ("text", "expected"),
    [("60", 60), ("true", True), ('"x"', "x"), ("[1,2]", [1, 2]), ("plain text", "plain text"),
     ("null", None), ("1.5", 1.5)],
)  # fmt: skip
def test_values_parse_as_json_else_text(text: str, expected: object) -> None:
    assert parse_value(text) == expected


def test_schema_load_reports_name_and_keys(capsys: pytest.CaptureFixture[str], db: str) -> None:
    out = ok(capsys, db, "schema", "load", str(SCHEMA))
    assert "schema edgecfg-device v1 loaded (381 keys)" in out


def test_device_add_reports_pending_required_keys(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    ok(capsys, db, "schema", "load", str(SCHEMA))
    out = ok(capsys, db, "device", "add", "d1", "--group", "region=eu", "--hardware", "x")
    assert "d1: registered; ETag " in out
    assert "pending: device.id" in out


def test_group_set_then_config_and_explain(capsys: pytest.CaptureFixture[str], fleet: str) -> None:
    out = ok(capsys, fleet, "group", "set", "region/eu", "--set", "net.uplink.interval_s=600",
             "-m", "faster uplink", "--author", "alice")  # fmt: skip
    assert out.startswith("region/eu r1: 2 of 2 device(s) change")
    config = json.loads(ok(capsys, fleet, "config", "dev-0"))
    assert config["net"]["uplink"]["interval_s"] == 600
    explained = ok(capsys, fleet, "explain", "dev-0", "net.uplink.interval_s")
    assert explained.splitlines()[0].startswith(
        "net.uplink.interval_s = 600   (from region/eu r1 by alice at "
    )
    assert '"faster uplink"' in explained.splitlines()[0]
    assert "defaults" in explained and "overridden" in explained
    document = json.loads(ok(capsys, fleet, "explain", "dev-0", "net.uplink.interval_s", "--json"))
    assert document[0]["source"] == "region/eu"
    assert document[0]["revision"]["author"] == "alice"


def test_invalid_group_edit_is_refused_with_count_and_example(
    capsys: pytest.CaptureFixture[str], fleet: str
) -> None:
    code, _, err = run(capsys, fleet, "group", "set", "region/eu", "--set",
                       "net.uplink.interval_s=5")  # fmt: skip
    assert code == 1
    assert "2 device(s) would violate net.uplink.interval_s (expected >= 10, got 5), " in err
    assert "e.g. dev-0 via region/eu" in err
    code, out, _ = run(capsys, fleet, "history", "group", "region/eu")
    assert out.strip() == "region/eu: no revisions"


def test_lock_refuses_an_override_and_impact_shows_it(
    capsys: pytest.CaptureFixture[str], fleet: str
) -> None:
    ok(capsys, fleet, "group", "set", "global", "--lock", "net.uplink", "-m", "freeze")
    code, _, err = run(capsys, fleet, "group", "set", "region/us", "--set",
                       "net.uplink.interval_s=900")  # fmt: skip
    assert code == 1
    assert "locked by global (lock on net.uplink)" in err
    out = ok(capsys, fleet, "impact", "region/us", "--set", "net.uplink.interval_s=900")
    assert "REFUSED: net.uplink.interval_s locked by global" in out


def test_impact_is_a_dry_run_with_count_and_sample(
    capsys: pytest.CaptureFixture[str], fleet: str
) -> None:
    document = json.loads(ok(capsys, fleet, "impact", "global", "--set",
                             "net.uplink.interval_s=1200", "--json"))  # fmt: skip
    assert document["reached"] == 3
    assert document["changed"] == 3
    assert document["sample"] == ["dev-0", "dev-1", "dev-2"]
    assert document["changes"][0]["after"] == 1200
    config = json.loads(ok(capsys, fleet, "config", "dev-0"))
    assert config["net"]["uplink"]["interval_s"] != 1200


def test_device_set_and_history(capsys: pytest.CaptureFixture[str], fleet: str) -> None:
    ok(capsys, fleet, "device", "set", "dev-1", "net.uplink.interval_s=120", "-m", "debug")
    config = json.loads(ok(capsys, fleet, "config", "dev-1", "--json"))
    assert config["net"]["uplink"]["interval_s"] == 120
    history = json.loads(ok(capsys, fleet, "history", "device", "dev-1", "--json"))
    assert [entry["revision"] for entry in history] == [1, 2]
    assert history[1]["message"] == "debug"


def test_group_set_from_a_layer_file(
    capsys: pytest.CaptureFixture[str], fleet: str, tmp_path: Path
) -> None:
    layer = tmp_path / "layer.json"
    layer.write_text(json.dumps({"set": {"net.uplink.interval_s": 1800}, "lock": ["log.level"]}))
    ok(capsys, fleet, "group", "set", "region/eu/eu-west", "--file", str(layer))
    shown = json.loads(ok(capsys, fleet, "group", "show", "region/eu/eu-west", "--json"))
    assert shown == {"set": {"net.uplink.interval_s": 1800}, "lock": ["log.level"]}
    tree = tmp_path / "tree.json"
    tree.write_text(json.dumps({"net": {"uplink": {"interval_s": 2400}}}))
    ok(capsys, fleet, "group", "set", "region/eu/eu-west", "--file", str(tree))
    config = json.loads(ok(capsys, fleet, "config", "dev-0"))
    assert config["net"]["uplink"]["interval_s"] == 2400


def test_config_formats_and_summary(capsys: pytest.CaptureFixture[str], fleet: str) -> None:
    assert ok(capsys, fleet, "config", "dev-0", "--format", "diag").startswith("{")
    summary = json.loads(ok(capsys, fleet, "config", "dev-0", "--summary", "--json"))
    assert len(summary["etag"]) == 16
    assert summary["next_sync"].startswith("full config")


def test_dimension_order_is_configurable(capsys: pytest.CaptureFixture[str], fleet: str) -> None:
    ok(capsys, fleet, "group", "set", "region/eu", "--set", "net.uplink.interval_s=600")
    ok(capsys, fleet, "group", "set", "function/metering", "--set", "net.uplink.interval_s=700")
    assert json.loads(ok(capsys, fleet, "config", "dev-0"))["net"]["uplink"]["interval_s"] == 600
    out = ok(capsys, fleet, "fleet", "dimensions", "hardware", "region", "function")
    assert out.strip() == "precedence, lowest first: global < hardware < region < function < device"
    assert json.loads(ok(capsys, fleet, "config", "dev-0"))["net"]["uplink"]["interval_s"] == 700


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["config", "nobody"], "no such device: nobody"),
        (["explain", "dev-0", "no.such.path"], "nothing at no.such.path"),
        (["group", "set", "planet/mars", "--set", "a=1"], "unknown dimension 'planet'"),
        (["group", "set", "region/eu"], "nothing to change"),
        (["group", "set", "region/eu", "--set", "novalue"], "expected PATH=VALUE"),
        (["device", "add", "d9", "--group", "region"], "expected DIMENSION=PATH"),
        (["group", "set", "region/e u", "--set", "a=1"], "segment 'e u'"),
    ],
)
def test_mistakes_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], fleet: str, argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, fleet, *argv)
    assert code == 1
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_read_commands_refuse_a_missing_database(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, str(tmp_path / "none.db"), "config", "x")
    assert code == 1
    assert "no such database" in err
