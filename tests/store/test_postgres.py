"""What is particular to the PostgreSQL store (the contract is test_store.py's)."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import psycopg
import pytest
from psycopg import sql

from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.errors import StoreConflict, StoreError
from edgecfg.store import (
    BadVersion,
    DeviceRecord,
    MergeRecord,
    PostgresStore,
    RolloutDevice,
    RolloutRecord,
    redact,
)
from edgecfg.store.postgres import LAYOUT_VERSION
from edgecfg.store.postgres_layout import MIGRATIONS
from tests.store.helpers import POSTGRES_URL, postgres_unreachable


@pytest.fixture(autouse=True)
def _server() -> None:
    reason = postgres_unreachable()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def schema() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


def test_a_new_schema_is_at_the_current_layout_and_reopens_with_its_data(
    schema: str,
) -> None:
    with PostgresStore(POSTGRES_URL, schema=schema) as store:
        assert store.layout_version == LAYOUT_VERSION
        etag = store.put_blob(b"content")
        store.put_device(DeviceRecord(DeviceId("d1"), {"region": "eu/west"}, hardware="h"))
    with PostgresStore(POSTGRES_URL, schema=schema) as again:
        try:
            assert again.layout_version == LAYOUT_VERSION
            assert again.get_blob(etag) == b"content"
            assert again.get_device(DeviceId("d1")).groups == {"region": "eu/west"}
        finally:
            again.drop_schema()


def test_a_layout_from_a_newer_edgecfg_is_refused_naming_both_versions(schema: str) -> None:
    store = PostgresStore(POSTGRES_URL, schema=schema)
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
            db.execute(
                sql.SQL("INSERT INTO {}.schema_version (version) VALUES (99)").format(
                    sql.Identifier(schema)
                )
            )
        with pytest.raises(
            StoreError, match=rf"layout version 99, newer than version {LAYOUT_VERSION}"
        ):
            PostgresStore(POSTGRES_URL, schema=schema)
    finally:
        store.drop_schema()
        store.close()


def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    url = "postgresql://edgecfg:s3cret@127.0.0.1:1/nowhere"
    with pytest.raises(StoreError) as caught:
        PostgresStore(url)
    message = str(caught.value)
    assert message.startswith("open on postgresql://edgecfg:***@127.0.0.1:1/nowhere failed:")
    assert "s3cret" not in message
    assert len(message.splitlines()) == 1


def test_redact_hides_only_the_password() -> None:
    assert redact("postgresql://u:pw@h:5432/db?sslmode=require") == (
        "postgresql://u:***@h:5432/db?sslmode=require"
    )
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"


def test_concurrent_writers_of_one_layer_queue_and_one_sees_a_stale_parent(schema: str) -> None:
    """Two processes' stores append to the same head: the advisory lock makes
    the second read the first's revision, so it is refused, never a crash."""
    first = PostgresStore(POSTGRES_URL, schema=schema)
    second = PostgresStore(POSTGRES_URL, schema=schema)
    try:
        content = first.put_blob(b"layer")
        layer = LayerId("region/eu")
        outcomes: list[str] = []
        barrier = threading.Barrier(2)

        def write(store: PostgresStore) -> None:
            barrier.wait()
            try:
                store.append_layer_revision(
                    layer, content, parent=None, author="a", message="", now=1.0
                )
                outcomes.append("written")
            except StoreConflict:
                outcomes.append("stale")

        threads = [threading.Thread(target=write, args=(s,)) for s in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(outcomes) == ["stale", "written"]
        assert [r.revision for r in first.layer_history(layer)] == [1]
    finally:
        first.drop_schema()
        first.close()
        second.close()


def test_key_ids_are_never_handed_out_twice_even_after_a_failed_enrolment(schema: str) -> None:
    with PostgresStore(POSTGRES_URL, schema=schema) as store:
        try:
            one = store.enroll("device", "d1", b"s", now=1.0)
            with pytest.raises(StoreConflict):
                store.enroll_many([("device", "d2", b"s"), ("device", "d1", b"s")], now=2.0)
            assert store.active_credential("device", "d2") is None  # rolled back as a whole
            two = store.enroll("device", "d3", b"s", now=3.0)
            assert int(two.kid.hex(), 16) > int(one.kid.hex(), 16) + 1  # d2's number is spent
        finally:
            store.drop_schema()


def test_group_ranges_use_code_point_order_whatever_the_locale(schema: str) -> None:
    with PostgresStore(POSTGRES_URL, schema=schema) as store:
        try:
            for id, path in [("a", "eu"), ("b", "eu/west"), ("c", "europe"), ("d", "eu-x"),
                             ("e", "eu/west/site-1"), ("f", "EU")]:  # fmt: skip
                store.put_device(DeviceRecord(DeviceId(id), {"region": path}))
            members = [d.id for d in store.iter_devices(group=("region", "eu"))]
            assert sorted(members) == ["a", "b", "e"]
            assert [d.id for d in store.iter_devices()] == ["a", "b", "c", "d", "e", "f"]
        finally:
            store.drop_schema()


@contextmanager
def laid_out(schema: str, steps: int) -> Iterator[psycopg.Connection[Any]]:
    """A connection to ``schema``, created at layout version ``steps``."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
        db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        for number, step in enumerate(MIGRATIONS[:steps], start=1):
            db.execute(cast(Any, step))  # a migration is trusted text, not a literal
            if number == 1:
                db.execute("CREATE TABLE schema_version (version BIGINT PRIMARY KEY)")
            db.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
        yield db


def test_merges_kept_in_settings_by_layout_6_move_to_their_own_table(schema: str) -> None:
    with laid_out(schema, 6) as db:
        db.execute("INSERT INTO devices (id) VALUES ('d1'), ('d2')")
        db.execute(
            "INSERT INTO settings VALUES ('local-ack/d1', %s), ('local-outcome/d1', %s), "
            "('dimensions', %s)",
            (b"12", bytes.fromhex("a16361636b0c"), b"\x80"),
        )
    with PostgresStore(POSTGRES_URL, schema=schema) as store:
        try:
            assert store.layout_version == LAYOUT_VERSION
            assert store.get_merge(DeviceId("d1")) == MergeRecord(
                DeviceId("d1"), 12, bytes.fromhex("a16361636b0c")
            )
            assert store.get_merge(DeviceId("d2")) is None
            assert store.get_setting("local-ack/d1") is None
            assert store.get_setting("dimensions") == b"\x80"
        finally:
            store.drop_schema()


def test_a_layout_8_schema_gains_the_bad_versions_table_and_keeps_its_data(schema: str) -> None:
    with laid_out(schema, 8) as db:
        db.execute("INSERT INTO devices (id) VALUES ('d1')")
    with PostgresStore(POSTGRES_URL, schema=schema) as store:
        try:
            assert store.layout_version == LAYOUT_VERSION
            assert store.has_device(DeviceId("d1"))
            mark = BadVersion(DeviceId("d1"), ETag(b"B" * 8), ETag(b"G" * 8), "reboot", "x", 1.0)
            store.put_bad_version(mark)
            assert store.bad_versions(DeviceId("d1")) == [mark]
            with pytest.raises(StoreError, match="put_bad_version"):
                store.put_bad_version(dataclasses.replace(mark, etag=ETag(b"short")))
        finally:
            store.drop_schema()


def test_a_layout_9_schema_gains_the_rollout_tables_and_keeps_its_data(schema: str) -> None:
    with laid_out(schema, 9) as db:
        db.execute("INSERT INTO devices (id) VALUES ('d1')")
    with PostgresStore(POSTGRES_URL, schema=schema) as store:
        try:
            assert store.layout_version == LAYOUT_VERSION
            assert store.has_device(DeviceId("d1"))
            store.put_rollout(RolloutRecord("r1", "{}", "{}", 1.0, 1.0))
            store.put_rollout_devices("r1", [RolloutDevice(DeviceId("d1"), "s", 0, 0.5)])
            assert store.append_rollout_entry("r1", at=1.0, kind="decision", entry="{}") == 1
            assert [d.device for d in store.rollout_devices("r1")] == ["d1"]
        finally:
            store.drop_schema()
