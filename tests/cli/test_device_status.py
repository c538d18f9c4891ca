"""``edgecfg device show`` and ``device retry``: the versions a device reverted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecfg.core.ids import DeviceId, ETag
from edgecfg.store import BadVersion, SQLiteStore
from tests.cli.test_operator import ok, run
from tests.paths import SCHEMA

DEVICE = DeviceId("dev-0")


@pytest.fixture
def db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    path = str(tmp_path / "fleet.db")
    ok(capsys, path, "schema", "load", "--create", str(SCHEMA))
    ok(capsys, path, "device", "add", "dev-0", "--group", "region=eu", "--hardware", "h")
    return path


def test_show_without_reverts_prints_the_versions(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    shown = json.loads(ok(capsys, db, "device", "show", "dev-0", "--json"))
    assert shown["device"] == "dev-0" and shown["groups"] == {"region": "eu"}
    assert shown["applied_etag"] is None
    assert shown["served_etag"] == shown["effective_etag"]
    assert shown["reverted"] == []
    text = ok(capsys, db, "device", "show", "dev-0")
    assert "applied_etag: (not reported yet)" in text and "held back" not in text


def test_a_reverted_version_is_shown_held_back_and_retry_clears_it(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    effective = json.loads(ok(capsys, db, "device", "show", "dev-0", "--json"))["effective_etag"]
    good = ETag(b"G" * 8)
    with SQLiteStore(db) as store:
        store.put_bad_version(
            BadVersion(DEVICE, ETag(bytes.fromhex(effective)), good, "probe-failed",
                       "reachability: coap://10.0.0.9:5683: no answer", 7.0)
        )  # fmt: skip
        store.record_seen(DEVICE, now=8.0, applied_etag=good)
    shown = json.loads(ok(capsys, db, "device", "show", "dev-0", "--json"))
    assert shown["served_etag"] == good.hex() != shown["effective_etag"]
    (mark,) = shown["reverted"]
    assert mark["etag"] == effective and mark["reason"] == "probe-failed"
    text = ok(capsys, db, "device", "show", "dev-0")
    assert f"held back: the device reverted {effective}" in text
    assert "(probe-failed: reachability: coap://10.0.0.9:5683: no answer)" in text
    assert "1 reverted version(s) will be offered again" in ok(
        capsys, db, "device", "retry", "dev-0", "--etag", effective
    )
    again = json.loads(ok(capsys, db, "device", "show", "dev-0", "--json"))
    assert again["reverted"] == [] and again["served_etag"] == effective


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["device", "retry", "dev-0"], "no revert of any version is recorded"),
        (["device", "retry", "dev-0", "--etag", "xyz"], "16 hex digits"),
        (["device", "retry", "dev-0", "--etag", "00"], "16 hex digits"),
        (["device", "retry", "nobody"], "nobody"),
        (["device", "show", "nobody"], "nobody"),
    ],
)
def test_bad_input_is_refused_clearly(
    capsys: pytest.CaptureFixture[str], db: str, argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, db, *argv)
    assert code != 0
    assert message in err
