"""``edgecfg gateway prune``: forget served versions past a retention."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.core.layers import layer_from_parts
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.sync import Representation, SyncService
from edgecfg.store import DeviceRecord, SQLiteStore
from tests.cli.helpers import run


def served_version(db: Path, *, at: float) -> ETag:
    with SQLiteStore(db) as store:
        fleet = Fleet(store)
        fleet.add_device(DeviceRecord(DeviceId("dev-1"), {"region": "eu"}))
        fleet.write_layer(
            LayerId("global"), layer_from_parts(sets={("a",): 1}), author="t", message="m",
            now=1.0,
        )  # fmt: skip
        service = SyncService(fleet, clock=lambda: at)
        answer = service.config(DeviceId("dev-1"))
        assert isinstance(answer, Representation)
        service.flush()
        assert store.get_versions(answer.etag)
        return answer.etag


def test_prune_forgets_versions_older_than_the_retention(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "fleet.db"
    etag = served_version(db, at=1_000.0)  # long ago
    code, out, _ = run(capsys, "gateway", "prune", "--db", str(db))
    assert code == 0
    assert "forgot 1 served version(s) older than 30 day(s)" in out
    with SQLiteStore(db) as store:
        assert store.get_versions(etag) == []


def test_prune_keeps_versions_within_the_retention(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "fleet.db"
    served_version(db, at=4e9)  # in the future: within any retention
    code, out, _ = run(capsys, "gateway", "prune", "--older-than", "1", "--db", str(db))
    assert code == 0
    assert "forgot 0 served version(s)" in out


def test_a_negative_retention_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "fleet.db"
    served_version(db, at=1.0)
    code, _, err = run(capsys, "gateway", "prune", "--older-than", "-1", "--db", str(db))
    assert code != 0
    assert "--older-than -1.0: days, 0 or more" in err
