"""Operator commands against a real SQLite database file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecfg.cli.main import main
from edgecfg.cli.operator import parse_value
from tests.paths import SCHEMA


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
    ok(capsys, db, "schema", "load", "--create", str(SCHEMA))
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
    out = ok(capsys, db, "schema", "load", "--create", str(SCHEMA))
    assert "schema edgecfg-device v1 loaded (381 keys)" in out


def test_device_add_reports_pending_required_keys(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    ok(capsys, db, "schema", "load", "--create", str(SCHEMA))
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
    code, out, _ = run(capsys, fleet, "impact", "region/us", "--set", "net.uplink.interval_s=900")
    assert code == 1  # a dry run that would be refused says so in its exit code
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


# -- the first hour (issue 18) -------------------------------------------------


def test_db_is_accepted_before_and_after_the_command(
    capsys: pytest.CaptureFixture[str], fleet: str, tmp_path: Path
) -> None:
    after = main(["config", "dev-0", "--db", fleet])
    assert after == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["device"]["id"] == "dev-0"
    # after the command wins over before it, as the later, closer spelling
    assert main(["--db", str(tmp_path / "other.db"), "config", "dev-0", "--db", fleet]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    "argv",
    [
        ["group", "set", "region/eu", "--set", "a.b=1"],
        ["group", "show", "region/eu"],
        ["device", "add", "dev-1", "--group", "region=eu"],
        ["device", "set", "dev-1", "a=1"],
        ["schema", "load", str(SCHEMA)],
        ["fleet", "dimensions"],
        ["config", "dev-1"],
        ["explain", "dev-1"],
        ["impact", "region/eu", "--set", "a=1"],
        ["history", "group", "region/eu"],
        ["device", "revoke", "dev-1"],
        ["operator", "revoke", "alice"],
    ],
)
def test_a_missing_database_is_refused_and_never_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    typo = tmp_path / "typo.db"
    code, out, err = run(capsys, str(typo), *argv)
    assert code == 1
    assert err.strip() == (
        f"edgecfg {argv[0]}: error: {typo}: no such database; create it with "
        f"'edgecfg --db {typo} init' (or pass --create to this command)"
    )
    assert out == ""
    assert not typo.exists()


def test_enroll_refuses_a_missing_database(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    typo = tmp_path / "typo.db"
    code, _, err = run(capsys, str(typo), "device", "enroll", "dev-1", "--out", str(tmp_path / "c"))
    assert code == 1
    assert "no such database" in err
    assert not typo.exists()
    assert not (tmp_path / "c").exists()


def test_init_and_create_make_a_database_explicitly(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "new.db"
    assert "new database" in ok(capsys, str(db), "init")
    assert db.is_file()
    assert "exists; nothing to do" in ok(capsys, str(db), "init")
    other = tmp_path / "free-form.db"
    out = ok(capsys, str(other), "group", "set", "global", "--set", "a.b=1", "--create")
    assert "global r1" in out
    assert json.loads(ok(capsys, str(other), "group", "show", "global"))["set"]["a.b"] == 1


def test_device_add_refuses_an_existing_device_and_shows_its_memberships(
    capsys: pytest.CaptureFixture[str], fleet: str
) -> None:
    before = ok(capsys, fleet, "config", "dev-1")
    code, _, err = run(capsys, fleet, "device", "add", "dev-1", "--group", "region=eu")
    assert code == 1
    assert err.strip() == (
        "edgecfg device: error: dev-1: already registered (groups function=metering, "
        "region=eu/eu-north/site-2; hardware nbiot-sensor-r3; firmware 2.1.0; agent version "
        "1.0.0); change it with 'edgecfg device set dev-1 --group DIMENSION=PATH --hardware H ...'"
    )
    assert ok(capsys, fleet, "config", "dev-1") == before


def test_device_set_changes_memberships_and_keeps_the_rest(
    capsys: pytest.CaptureFixture[str], fleet: str
) -> None:
    ok(capsys, fleet, "group", "set", "region/us", "--set", "net.uplink.interval_s=900")
    out = ok(capsys, fleet, "device", "set", "dev-1", "--group", "region=us/east")
    assert "dev-1: now groups function=metering, region=us/east; hardware nbiot-sensor-r3" in out
    config = json.loads(ok(capsys, fleet, "config", "dev-1"))
    assert config["net"]["uplink"]["interval_s"] == 900
    assert config["device"]["id"] == "dev-1"  # its own layer is untouched
    assert "memberships unchanged" in ok(
        capsys, fleet, "device", "set", "dev-1", "--firmware", "2.1.0"
    )
    code, _, err = run(capsys, fleet, "device", "set", "dev-1", "--group", "planet=mars")
    assert code == 1
    assert "unknown dimension 'planet'" in err


@pytest.mark.parametrize("device", ["dev 13/x", "dev/x", "..", "_dev", "d" * 65, "dév", ""])
def test_device_ids_outside_the_alphabet_are_refused(
    capsys: pytest.CaptureFixture[str], fleet: str, device: str
) -> None:
    code, _, err = run(capsys, fleet, "device", "add", device, "--group", "region=eu")
    assert code == 1
    assert f"device id {device!r}: must be 1-64 characters of A-Z a-z 0-9" in err
    assert len(err.strip().splitlines()) == 1


def test_impact_refuses_what_group_set_refuses(
    capsys: pytest.CaptureFixture[str], fleet: str
) -> None:
    argv = ["region/us", "--set", "net.uplink.interval_s=abc"]
    code, _, err = run(capsys, fleet, "group", "set", *argv)
    assert code == 1
    assert "net.uplink.interval_s" in err
    code, out, _ = run(capsys, fleet, "impact", *argv)
    assert code == 1
    assert "REFUSED: region/us: net.uplink.interval_s: expected" in out
    code, out, _ = run(capsys, fleet, "impact", "region/us", "--set", "no.such.key=1", "--json")
    assert code == 1
    document = json.loads(out)
    assert document["refused"] is True
    assert "not declared by schema" in document["schema"][0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["history", "group", "region/eux"], "region/eux: no such group (no revisions, no member"),
        (["group", "show", "region/nope"], "known region groups: region/eu, region/eu/eu-north,"),
        (["history", "device", "ghost"], "device/ghost: no such device"),
        (["group", "show", "function/x"], "known function groups: function/metering"),
    ],
)
def test_groups_that_do_not_exist_are_errors(
    capsys: pytest.CaptureFixture[str], fleet: str, argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, fleet, *argv)
    assert code == 1
    assert message in err
    assert out == ""


def test_groups_with_members_but_no_revisions_exist(
    capsys: pytest.CaptureFixture[str], fleet: str
) -> None:
    assert "region/eu: no revisions" in ok(capsys, fleet, "history", "group", "region/eu")
    assert json.loads(ok(capsys, fleet, "group", "show", "region/eu", "--json")) == {}
