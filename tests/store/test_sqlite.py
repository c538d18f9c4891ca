"""SQLiteStore specifics: layout migrations, WAL, persistence, crash safety, indexes.

These tests open the database file with ``sqlite3`` directly to inspect or
prepare it, as an operator with the ``sqlite3`` shell would.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import cast

import pytest

from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.errors import StoreConflict, StoreError
from edgecfg.store import (
    BadVersion,
    DeviceRecord,
    MergeRecord,
    RolloutDevice,
    RolloutRecord,
    SQLiteStore,
)
from edgecfg.store.sqlite import GROUP_MEMBERS_SQL, LAYOUT_VERSION, MIGRATIONS


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "gateway.db"


def rows(
    path: Path, sql: str, params: tuple[object, ...] | dict[str, object] = ()
) -> list[tuple[object, ...]]:
    """Run one query on a fresh connection (closed afterwards)."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


def test_new_file_db_is_in_wal_mode_and_at_current_layout_version(db_path: Path) -> None:
    with SQLiteStore(db_path) as store:
        assert store.layout_version == LAYOUT_VERSION == len(MIGRATIONS)
        assert db_path.with_name("gateway.db-wal").exists()
    assert rows(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert rows(db_path, "SELECT version FROM schema_version ORDER BY version") == [
        (n,) for n in range(1, LAYOUT_VERSION + 1)
    ]


def test_reopened_file_db_holds_everything_written(db_path: Path) -> None:
    with SQLiteStore(db_path) as store:
        schema = store.put_schema("net", 2, b"schema", now=1.0)
        content = store.put_blob(b"layer document")
        revision = store.append_layer_revision(
            LayerId("global"), content, parent=None, author="ops", message="init", now=2.0
        )
        device = DeviceRecord(
            DeviceId("dev-1"), {"region": "eu/west"}, firmware="1.0", applied_etag=content
        )
        store.put_device(device)
    with SQLiteStore(db_path) as reopened:
        assert reopened.get_schema("net") == schema
        assert reopened.get_blob(content) == b"layer document"
        assert reopened.layer_history(LayerId("global")) == [revision]
        assert reopened.get_device(DeviceId("dev-1")) == device
        assert list(reopened.iter_devices(group=("region", "eu"))) == [device]


def test_empty_file_is_migrated_from_version_zero(db_path: Path) -> None:
    db_path.touch()
    with SQLiteStore(db_path) as store:
        assert store.layout_version == LAYOUT_VERSION
        store.put_device(DeviceRecord(DeviceId("d")))
        assert store.count_devices() == 1


def test_db_at_an_older_layout_is_migrated_and_keeps_its_data(db_path: Path) -> None:
    connection = sqlite3.connect(db_path)
    connection.executescript(
        MIGRATIONS[0]
        + """
        CREATE TABLE schema_version (version INTEGER PRIMARY KEY);
        INSERT INTO schema_version VALUES (1);
        INSERT INTO schemas VALUES ('net', 1, x'a0', 5.0);
        """
    )
    connection.close()
    with SQLiteStore(db_path) as store:
        assert store.layout_version == LAYOUT_VERSION
        assert store.get_schema("net").document == b"\xa0"
        store.put_device(DeviceRecord(DeviceId("d"), {"region": "eu"}))
        assert [r.id for r in store.iter_devices(group=("region", "eu"))] == ["d"]


def laid_out(db_path: Path, steps: int, script: str) -> None:
    """A database at layout version ``steps``, then ``script`` run on it."""
    versions = ", ".join(f"({number})" for number in range(1, steps + 1))
    connection = sqlite3.connect(db_path)
    connection.executescript(
        "".join(MIGRATIONS[:steps])
        + "CREATE TABLE schema_version (version INTEGER PRIMARY KEY);"
        + f"INSERT INTO schema_version VALUES {versions};"
        + script
    )
    connection.close()


def test_merges_kept_in_settings_by_layout_6_move_to_their_own_table(db_path: Path) -> None:
    laid_out(
        db_path,
        6,
        """
        INSERT INTO devices (id) VALUES ('d1'), ('d2');
        INSERT INTO settings VALUES ('local-ack/d1', CAST('12' AS BLOB));
        INSERT INTO settings VALUES ('local-outcome/d1', x'a16361636b0c');
        INSERT INTO settings VALUES ('dimensions', x'80');
        """,
    )
    with SQLiteStore(db_path) as store:
        assert store.layout_version == LAYOUT_VERSION
        assert store.get_merge(DeviceId("d1")) == MergeRecord(
            DeviceId("d1"), 12, bytes.fromhex("a16361636b0c")
        )
        assert store.get_merge(DeviceId("d2")) is None
        assert store.get_setting("local-ack/d1") is None
        assert store.get_setting("local-outcome/d1") is None
        assert store.get_setting("dimensions") == b"\x80"


def test_a_layout_8_db_gains_the_bad_versions_table_and_keeps_its_data(db_path: Path) -> None:
    laid_out(db_path, 8, "INSERT INTO devices (id) VALUES ('d1');")
    with SQLiteStore(db_path) as store:
        assert store.layout_version == LAYOUT_VERSION
        assert store.has_device(DeviceId("d1"))
        mark = BadVersion(DeviceId("d1"), ETag(b"B" * 8), ETag(b"G" * 8), "deadline", "", 1.0)
        store.put_bad_version(mark)
    with SQLiteStore(db_path) as reopened:
        assert reopened.bad_versions(DeviceId("d1")) == [mark]


def test_db_from_a_newer_edgecfg_is_refused_naming_both_versions(db_path: Path) -> None:
    SQLiteStore(db_path).close()
    newer = LAYOUT_VERSION + 5
    connection = sqlite3.connect(db_path)
    with connection:  # commits
        connection.execute("INSERT INTO schema_version VALUES (?)", (newer,))
    connection.close()
    with pytest.raises(StoreError) as refused:
        SQLiteStore(db_path)
    assert f"layout version {newer}" in str(refused.value)
    assert f"version {LAYOUT_VERSION} that this edgecfg supports" in str(refused.value)
    assert rows(db_path, "SELECT MAX(version) FROM schema_version") == [(newer,)]


def test_a_file_that_is_not_a_database_is_refused_with_store_error(db_path: Path) -> None:
    db_path.write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(StoreError, match="open"):
        SQLiteStore(db_path)


def test_sqlite_errors_become_store_errors_naming_the_operation(db_path: Path) -> None:
    with SQLiteStore(db_path) as store:
        unbindable = cast(DeviceId, object())  # sqlite3 cannot bind this
        with pytest.raises(StoreError, match=r"has_device on .*gateway\.db failed") as error:
            store.has_device(unbindable)
        assert isinstance(error.value.__cause__, sqlite3.Error)
        store.put_device(DeviceRecord(DeviceId("after")))  # no transaction left open
        assert store.has_device(DeviceId("after"))


def test_group_query_uses_two_index_range_scans(db_path: Path) -> None:
    with SQLiteStore(db_path) as store:
        store.put_devices(
            DeviceRecord(DeviceId(f"d{n}"), {"region": f"eu/{n % 7}", "function": "meter"})
            for n in range(200)
        )
    plan = rows(
        db_path,
        "EXPLAIN QUERY PLAN " + GROUP_MEMBERS_SQL,
        {"dimension": "region", "path": "eu"},
    )
    searches = [str(step[3]) for step in plan if "device_groups" in str(step[3])]
    assert searches == [
        "SEARCH device_groups USING COVERING INDEX device_groups_by_group (dimension=? AND path=?)",
        "SEARCH device_groups USING COVERING INDEX device_groups_by_group "
        "(dimension=? AND path>? AND path<?)",
    ]


def test_identical_blobs_occupy_one_row(db_path: Path) -> None:
    with SQLiteStore(db_path) as store:
        for _ in range(3):
            store.put_blob(b"same bytes")
        store.put_blob(b"other bytes")
    assert rows(db_path, "SELECT COUNT(*) FROM blobs") == [(2,)]
    assert rows(db_path, "SELECT length(etag) FROM blobs") == [(8,), (8,)]


def test_replacing_and_deleting_devices_leaves_no_stale_group_rows(db_path: Path) -> None:
    with SQLiteStore(db_path) as store:
        store.put_device(DeviceRecord(DeviceId("a"), {"region": "eu", "function": "meter"}))
        store.put_device(DeviceRecord(DeviceId("a"), {"region": "us"}))
        store.put_device(DeviceRecord(DeviceId("b"), {"region": "eu"}))
        store.delete_device(DeviceId("b"))
    assert rows(db_path, "SELECT device_id, dimension, path FROM device_groups") == [
        ("a", "region", "us")
    ]


def test_two_stores_on_one_file_cannot_both_append_to_the_same_head(db_path: Path) -> None:
    with SQLiteStore(db_path) as first, SQLiteStore(db_path) as second:
        content = first.put_blob(b"doc")
        first.append_layer_revision(
            LayerId("g"), content, parent=None, author="a", message="", now=1
        )
        with pytest.raises(StoreConflict, match="actual head is revision 1"):
            second.append_layer_revision(
                LayerId("g"), content, parent=None, author="b", message="", now=2
            )
        assert second.get_layer(LayerId("g")).author == "a"


def test_process_killed_mid_transaction_loses_only_that_transaction(db_path: Path) -> None:
    # The child commits 10 devices, then dies (os._exit, no cleanup) while
    # put_devices is streaming 50,000 more into an open transaction.
    child = textwrap.dedent(
        f"""
        import os
        from edgecfg.core.ids import DeviceId
        from edgecfg.store import DeviceRecord, SQLiteStore

        store = SQLiteStore({str(db_path)!r})
        store.put_devices(DeviceRecord(DeviceId(f"kept-{{n}}"), {{"region": "eu"}})
                          for n in range(10))

        def doomed():
            for n in range(50_000):
                yield DeviceRecord(DeviceId(f"lost-{{n:05d}}"), {{"region": "eu/x"}})
            os._exit(17)

        store.put_devices(doomed())
        """
    )
    result = subprocess.run([sys.executable, "-c", child], check=False, timeout=120)
    assert result.returncode == 17
    with SQLiteStore(db_path) as store:
        assert store.count_devices() == 10
        assert {r.id for r in store.iter_devices(group=("region", "eu"))} == {
            f"kept-{n}" for n in range(10)
        }
    assert rows(db_path, "PRAGMA integrity_check") == [("ok",)]


def test_applied_etag_is_stored_as_an_8_byte_blob(db_path: Path) -> None:
    etag = ETag(bytes.fromhex("0011223344556677"))
    with SQLiteStore(db_path) as store:
        store.put_device(DeviceRecord(DeviceId("d")))
        store.record_seen(DeviceId("d"), now=3.0, applied_etag=etag)
    assert rows(db_path, "SELECT typeof(applied_etag), applied_etag FROM devices") == [
        ("blob", etag)
    ]


def test_a_layout_9_db_gains_the_rollout_tables_and_keeps_its_data(db_path: Path) -> None:
    laid_out(db_path, 9, "INSERT INTO devices (id) VALUES ('d1');")
    with SQLiteStore(db_path) as store:
        assert store.layout_version == LAYOUT_VERSION
        assert store.has_device(DeviceId("d1"))
        store.put_rollout(RolloutRecord("r1", "{}", "{}", 1.0, 1.0))
        store.put_rollout_devices("r1", [RolloutDevice(DeviceId("d1"), "s", 0, 0.5)])
    with SQLiteStore(db_path) as reopened:
        assert [d.device for d in reopened.rollout_devices("r1")] == ["d1"]
