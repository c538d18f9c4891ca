"""The Store's telemetry contract (issue 14) on memory, SQLite and PostgreSQL:
aggregate increments merge into their buckets, analysis states replace,
retention drops old packs and hourly buckets, and layouts 10 gain the tables."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from edgecfg.core.ids import DeviceId
from edgecfg.core.telemetry import DAY, HOUR, Aggregate
from edgecfg.errors import UsageError
from edgecfg.store import PostgresStore, SQLiteStore, Store, TelemetryBatch, TelemetryRow
from edgecfg.store.layout import MIGRATIONS
from tests.store.helpers import POSTGRES_URL, postgres_unreachable
from tests.store.test_postgres import laid_out as pg_laid_out

D1, D2 = DeviceId("d1"), DeviceId("d2")


def row(key: str, name: str, start: float, *values: tuple[float, float],
        scope: str = "device", period: float = HOUR) -> TelemetryRow:  # fmt: skip
    first, *rest = (Aggregate.of(v, t) for v, t in values)
    for one in rest:
        first = first.merge(one)
    return TelemetryRow(scope, key, name, period, start, first)


def test_increments_merge_into_their_bucket_as_aggregate_merge_does(store: Store) -> None:
    store.ingest_telemetry(TelemetryBatch([], [row("d1", "rsrp", 0.0, (-100, 10), (-90, 20))], []))
    store.ingest_telemetry(TelemetryBatch([], [row("d1", "rsrp", 0.0, (-120, 15), (-95, 5))], []))
    store.ingest_telemetry(TelemetryBatch([], [row("d1", "rsrp", HOUR, (-80, HOUR + 1))], []))
    found = store.telemetry_rows("device", key="d1", period=HOUR)
    assert [(r.start, r.aggregate) for r in found] == [
        (0.0, Aggregate(4, -405.0, -120.0, -90.0, -90.0, 20.0)),
        (HOUR, Aggregate(1, -80.0, -80.0, -80.0, -80.0, HOUR + 1)),
    ]
    assert store.telemetry_rows("device", key="d1", period=HOUR, since=HOUR)[0].start == HOUR
    assert store.telemetry_rows("device", key="d2", period=HOUR) == []
    assert store.telemetry_rows("group", period=HOUR) == []


def test_rows_of_one_name_come_from_every_key_of_the_scope(store: Store) -> None:
    store.ingest_telemetry(TelemetryBatch([], [
        row("d2", "rsrp", 0.0, (-100, 1), period=DAY),
        row("d1", "rsrp", 0.0, (-90, 1), period=DAY),
        row("d1", "battery", 0.0, (50, 1), period=DAY),
        row("region/eu", "rsrp", 0.0, (-95, 1), period=DAY, scope="group"),
    ], []))  # fmt: skip
    found = store.telemetry_rows("device", name="rsrp", period=DAY)
    assert [(r.key, r.aggregate.last) for r in found] == [("d1", -90.0), ("d2", -100.0)]
    assert [r.key for r in store.telemetry_rows("group", period=DAY)] == ["region/eu"]
    store.ingest_telemetry(TelemetryBatch([], [
        row("region/eu/west", "rsrp", 0.0, (-90, 1), period=DAY, scope="group"),
        row("region/europe", "rsrp", 0.0, (-80, 1), period=DAY, scope="group"),
    ], []))  # fmt: skip
    below = store.telemetry_rows("group", key="region/eu", period=DAY, below=True)
    assert [r.key for r in below] == ["region/eu", "region/eu/west"]


def test_a_state_is_replaced_and_packs_are_kept_until_retention(store: Store) -> None:
    assert store.telemetry_states([D1, D2]) == {}
    store.ingest_telemetry(TelemetryBatch(
        [(D1, 10.0, b"\x80"), (D2, 10.0, b"\x81")], [row("d1", "x", 0.0, (1, 1))],
        [(D1, b"one")],
    ))  # fmt: skip
    store.ingest_telemetry(TelemetryBatch(
        [(D1, 5000.0, b"\x82")], [row("d1", "x", 3600.0, (1, 3601))], [(D1, b"two")],
        keep_after=4000.0,
    ))  # fmt: skip
    assert store.telemetry_states([D1, D2]) == {D1: b"two"}
    assert store.telemetry(D1) == [(5000.0, b"\x82")]  # its old pack and hour went
    assert [r.start for r in store.telemetry_rows("device", key="d1", period=HOUR)] == [3600.0]
    assert store.telemetry(D2) == [(10.0, b"\x81")]  # not seen: pruned by housekeeping
    assert store.prune_telemetry(before=4000.0) == 1
    assert store.telemetry(D2) == []
    with pytest.raises(UsageError, match="501 devices exceed 500"):
        store.telemetry_states([DeviceId(f"d{n}") for n in range(501)])


def test_a_layout_10_sqlite_db_gains_the_telemetry_tables_and_keeps_its_packs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path)
    connection.executescript(
        "".join(MIGRATIONS[:10])
        + "CREATE TABLE schema_version (version INTEGER PRIMARY KEY);"
        + "INSERT INTO schema_version VALUES " + ", ".join(f"({n})" for n in range(1, 11)) + ";"
        + "INSERT INTO telemetry VALUES ('d1', 7.0, x'80');"
    )  # fmt: skip
    connection.close()
    with SQLiteStore(path) as store:
        assert store.layout_version == len(MIGRATIONS) == 11
        assert store.telemetry(D1) == [(7.0, b"\x80")]
        store.ingest_telemetry(TelemetryBatch([], [row("d1", "x", 0.0, (1, 1))], [(D1, b"s")]))
        assert store.telemetry_states([D1]) == {D1: b"s"}


@pytest.fixture
def schema() -> str:
    reason = postgres_unreachable()
    if reason is not None:
        pytest.skip(reason)
    return f"t_{uuid.uuid4().hex[:16]}"


def test_a_layout_10_postgres_schema_gains_the_telemetry_tables(schema: str) -> None:
    with pg_laid_out(schema, 10) as db:
        db.execute("INSERT INTO telemetry VALUES ('d1', 7.0, '\\x80'::bytea)")
    with PostgresStore(POSTGRES_URL, schema=schema) as store:
        try:
            assert store.layout_version == 11
            assert store.telemetry(D1) == [(7.0, b"\x80")]
            store.ingest_telemetry(TelemetryBatch([], [row("d1", "x", 0.0, (1, 1))], []))
            assert len(store.telemetry_rows("device", period=HOUR)) == 1
        finally:
            store.drop_schema()
