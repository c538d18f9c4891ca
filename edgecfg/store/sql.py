"""The SQL stores' common half: every query and row mapping of the
:class:`~edgecfg.store.base.Store` contract, written once for SQLite and
PostgreSQL.

:class:`SQLStore` implements the contract on a :class:`Transaction`, a narrow
interface over one open transaction.  :mod:`edgecfg.store.sqlite` and
:mod:`edgecfg.store.postgres` supply transactions and keep only what differs
between the two databases: opening, connections (one, or a pool), durability,
locking (SQLite's ``BEGIN IMMEDIATE`` serialises writers; PostgreSQL takes
advisory locks), the change log's notification, key-id numbering, a counter
kept as text or bytes, and each layout's DDL and migrations.

Queries are written in SQLite's parameter style (``?`` and ``:name``); the
PostgreSQL transaction rewrites them to psycopg's (``%s`` and ``%(name)s``).
Everything else in them both databases accept as written: ``ON CONFLICT ...
DO UPDATE`` with ``excluded``, the quoted name ``"window"``, ``LIMIT ?``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any, ClassVar, Protocol, Self, cast

from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.core.telemetry import Aggregate
from edgecfg.errors import NotFound, StoreError, UsageError
from edgecfg.store.base import (
    BadVersion,
    Change,
    ChangeKind,
    CredentialRecord,
    DeviceRecord,
    LayerRevision,
    MergeRecord,
    OscoreState,
    RolloutDevice,
    RolloutEntry,
    RolloutRecord,
    SchemaRecord,
    TelemetryBatch,
    TelemetryRow,
    already_enrolled,
    blob_collision,
    blob_etag,
    check_group,
    check_role,
    check_schema_version,
    kid_for,
    logs_change,
    schema_changed,
    schema_not_newer,
    stale_parent,
)
from edgecfg.store.rows import (
    CREDENTIAL_SELECT,
    DEVICE_COLUMNS,
    LAYER_COLUMNS,
    credential_record,
    device_record,
    device_row,
    layer_revision,
)

__all__ = [
    "GROUP_MEMBERS_SQL",
    "INSERT_CHANGE",
    "PAGE",
    "REVOCATIONS",
    "Cursor",
    "Params",
    "Row",
    "SQLStore",
    "Transaction",
    "closed",
    "prefix_upper_bound",
]

Row = Sequence[Any]
Params = Sequence[object] | Mapping[str, object]

PAGE = 500  # devices per read transaction in iter_devices; also bounds IN (...) lists

REVOCATIONS = "oscore.revocations"
"""The setting that counts revocations (decimal text), so that the gateway's
once-a-second check is one row read."""

INSERT_CHANGE = "INSERT INTO changes (kind, key) VALUES (?, ?)"

GROUP_MEMBERS_SQL = """
    SELECT device_id FROM device_groups
    WHERE dimension = :dimension AND path = :path
    UNION ALL
    SELECT device_id FROM device_groups
    WHERE dimension = :dimension AND path >= :path || '/' AND path < :path || '0'
"""
"""Ids of devices in group ``:path`` or below it.  ``'0'`` is the character after
``'/'``, so ``[path/, path0)`` holds exactly the paths below ``path`` and never
``europe`` for ``eu`` (PostgreSQL compares these columns in the ``"C"``
collation, code-point order, as SQLite does).  Written as two index range
scans joined by UNION ALL rather than ``path = ? OR (...)``: without ANALYZE
statistics SQLite plans that OR as a scan of the whole dimension."""

_UPSERT_DEVICE = f"""
    INSERT INTO devices ({DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET
        hardware = excluded.hardware,
        firmware = excluded.firmware,
        agent_version = excluded.agent_version,
        last_seen = excluded.last_seen,
        applied_etag = excluded.applied_etag
"""

_LATER = (
    "(excluded.last_time > telemetry_aggregates.last_time OR (excluded.last_time = "
    "telemetry_aggregates.last_time AND excluded.last > telemetry_aggregates.last))"
)

_AGGREGATE_COLUMNS = "scope, key, period, start, name, count, total, low, high, last, last_time"

_MERGE_AGGREGATE = f"""
    INSERT INTO telemetry_aggregates ({_AGGREGATE_COLUMNS})
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (scope, key, period, start, name) DO UPDATE SET
        count = telemetry_aggregates.count + excluded.count,
        total = telemetry_aggregates.total + excluded.total,
        low = CASE WHEN excluded.low < telemetry_aggregates.low
                   THEN excluded.low ELSE telemetry_aggregates.low END,
        high = CASE WHEN excluded.high > telemetry_aggregates.high
                    THEN excluded.high ELSE telemetry_aggregates.high END,
        last = CASE WHEN {_LATER} THEN excluded.last ELSE telemetry_aggregates.last END,
        last_time = CASE WHEN {_LATER}
                         THEN excluded.last_time ELSE telemetry_aggregates.last_time END
"""
"""Merge an aggregate increment into its bucket (Aggregate.merge, in SQL:
the SET expressions all read the row as it was)."""


def _aggregate_row(row: TelemetryRow) -> tuple[object, ...]:
    a = row.aggregate
    return (row.scope, row.key, row.period, row.start, row.name,
            a.count, a.total, a.low, a.high, a.last, a.last_time)  # fmt: skip


_ACTIVE_CREDENTIAL = f"{CREDENTIAL_SELECT} WHERE role = ? AND name = ? AND revoked_at IS NULL"


class Cursor(Protocol):
    """What both drivers' ``execute`` returns, as far as :class:`Transaction` reads it."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Sequence[Any]: ...


class Transaction(ABC):
    """One open transaction of a SQL store, as :class:`SQLStore` uses it."""

    __slots__ = ()

    @abstractmethod
    def execute(self, query: str, params: Params = ()) -> Cursor:
        """Run ``query`` (in the shared parameter style) with ``params``."""

    def one(self, query: str, params: Params = ()) -> Row | None:
        """The first row of ``query``, or None."""
        return self.execute(query, params).fetchone()

    def all(self, query: str, params: Params = ()) -> Sequence[Row]:
        """Every row of ``query``."""
        return self.execute(query, params).fetchall()

    def run(self, query: str, params: Params = ()) -> int:
        """Run a statement; return how many rows it changed."""
        return self.execute(query, params).rowcount

    def among(self, values: Sequence[str]) -> tuple[str, Params]:
        """A condition on a column being one of ``values`` (at most :data:`PAGE`)
        and its parameters: ``IN (?, ?, ...)`` here."""
        return f"IN ({', '.join('?' * len(values))})", values

    @abstractmethod
    def run_many(self, query: str, rows: Iterable[Sequence[object]]) -> None:
        """Run a statement once per row of parameters (``rows`` may be lazy)."""

    @abstractmethod
    def claim(self, *key: str) -> None:
        """Hold a lock on ``key`` until the transaction ends, so that writers
        of one thing (a layer, a schema name, an identity) queue."""

    @abstractmethod
    def log(self, kind: ChangeKind, keys: Sequence[str]) -> None:
        """Append one change per key to the change log, in commit order."""

    @abstractmethod
    def count_up(self, key: str) -> None:
        """Add one to the counter kept in setting ``key`` (missing: 0)."""

    @abstractmethod
    def credential_numbers(self) -> Iterator[int]:
        """Credential numbers never handed out before, ascending."""


def closed(path: str, operation: str) -> StoreError:
    """The error of any call on a closed store."""
    return StoreError(f"{operation} on {path} failed: store is closed")


class SQLStore(ABC):
    """The :class:`~edgecfg.store.base.Store` contract on SQL tables
    (:mod:`edgecfg.store.layout`, :mod:`edgecfg.store.postgres_layout`).

    A subclass opens the database and provides :meth:`_transaction` (and
    :meth:`_durable` where commits are not durable by default).  Every public
    method is one transaction.
    """

    path: str
    """What messages name: a file path, or a URL without its password."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Release the database; later calls raise :class:`StoreError`.  Idempotent."""

    _HAS_LAYOUT: ClassVar[str]
    """A query that returns a row when the database has a ``schema_version`` table."""

    @property
    def layout_version(self) -> int:
        """The layout version recorded in the database's ``schema_version`` table."""
        with self._transaction("layout_version", write=False) as db:
            return self._layout_version(db)

    def _check_layout(self, current: int, supported: int) -> None:
        """Refuse a database that a newer edgecfg laid out."""
        if current > supported:
            raise StoreError(
                f"database {self.path} has layout version {current}, newer than version "
                f"{supported} that this edgecfg supports; open it with a newer edgecfg"
            )

    def _layout_version(self, db: Transaction) -> int:
        """The version in ``schema_version``; 0 for a database without that table."""
        if db.one(self._HAS_LAYOUT) is None:
            return 0
        return int(_scalar(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version") or 0)

    @abstractmethod
    def _transaction(self, operation: str, *, write: bool) -> AbstractContextManager[Transaction]:
        """Run the body as one transaction, translating the driver's errors into
        :class:`StoreError` naming ``operation``."""

    def _durable(self, operation: str) -> AbstractContextManager[Transaction]:
        """A write transaction whose commit survives a power cut, not only a
        crash (credentials and nonce reservations)."""
        return self._transaction(operation, write=True)

    @abstractmethod
    def _is_open(self) -> bool:
        """Whether :meth:`close` has not been called yet."""

    def check_writable(self) -> None:
        """See :meth:`edgecfg.store.base.Store.check_writable`: an update that
        matches no row still needs write access (a read-only file, role or
        standby server refuses it), and changes nothing."""
        with self._transaction("check_writable", write=True) as db:
            db.run("UPDATE schema_version SET version = version WHERE 1 = 0")

    # -- schemas -----------------------------------------------------------

    def put_schema(self, name: str, version: int, document: bytes, *, now: float) -> SchemaRecord:
        """See :meth:`edgecfg.store.base.Store.put_schema`."""
        check_schema_version(version)
        document = bytes(document)
        with self._transaction("put_schema", write=True) as db:
            db.claim("schema", name)
            row = db.one(
                "SELECT document, created_at FROM schemas WHERE name = ? AND version = ?",
                (name, version),
            )
            if row is not None:
                if bytes(row[0]) != document:
                    raise schema_changed(name, version)
                return SchemaRecord(name, version, bytes(row[0]), float(row[1]))
            latest = _scalar(db, "SELECT MAX(version) FROM schemas WHERE name = ?", (name,))
            if latest is not None and version <= latest:
                raise schema_not_newer(name, version, int(latest))
            db.run(
                "INSERT INTO schemas (name, version, document, created_at) VALUES (?, ?, ?, ?)",
                (name, version, document, now),
            )
        return SchemaRecord(name, version, document, now)

    def get_schema(self, name: str, version: int | None = None) -> SchemaRecord:
        """See :meth:`edgecfg.store.base.Store.get_schema`."""
        query = "SELECT version, document, created_at FROM schemas WHERE name = ?"
        with self._transaction("get_schema", write=False) as db:
            if version is None:
                row = db.one(query + " ORDER BY version DESC LIMIT 1", (name,))
            else:
                row = db.one(query + " AND version = ?", (name, version))
        if row is None:
            raise NotFound("schema", name if version is None else f"{name} version {version}")
        return SchemaRecord(name, int(row[0]), bytes(row[1]), float(row[2]))

    def schema_versions(self, name: str) -> list[int]:
        """See :meth:`edgecfg.store.base.Store.schema_versions`."""
        with self._transaction("schema_versions", write=False) as db:
            rows = db.all("SELECT version FROM schemas WHERE name = ? ORDER BY version", (name,))
        return [int(version) for (version,) in rows]

    def schema_names(self) -> list[str]:
        """See :meth:`edgecfg.store.base.Store.schema_names`."""
        with self._transaction("schema_names", write=False) as db:
            rows = db.all("SELECT DISTINCT name FROM schemas ORDER BY name")
        return [str(name) for (name,) in rows]

    # -- blobs -------------------------------------------------------------

    def put_blob(self, data: bytes) -> ETag:
        """See :meth:`edgecfg.store.base.Store.put_blob`."""
        data = bytes(data)
        etag = blob_etag(data)
        with self._transaction("put_blob", write=True) as db:
            inserted = db.run(
                "INSERT INTO blobs (etag, data) VALUES (?, ?) ON CONFLICT (etag) DO NOTHING",
                (bytes(etag), data),
            )
            if not inserted:
                row = db.one("SELECT data FROM blobs WHERE etag = ?", (bytes(etag),))
                if row is None or bytes(row[0]) != data:
                    raise blob_collision(etag)
        return etag

    def get_blob(self, etag: ETag) -> bytes:
        """See :meth:`edgecfg.store.base.Store.get_blob`."""
        with self._transaction("get_blob", write=False) as db:
            row = db.one("SELECT data FROM blobs WHERE etag = ?", (bytes(etag),))
        if row is None:
            raise NotFound("blob", etag.hex())
        return bytes(row[0])

    def has_blob(self, etag: ETag) -> bool:
        """See :meth:`edgecfg.store.base.Store.has_blob`."""
        with self._transaction("has_blob", write=False) as db:
            return db.one("SELECT 1 FROM blobs WHERE etag = ?", (bytes(etag),)) is not None

    # -- served configuration versions ---------------------------------------

    def put_versions(self, versions: Iterable[tuple[ETag, bytes]], *, now: float) -> None:
        """See :meth:`edgecfg.store.base.Store.put_versions`."""
        rows = [(bytes(etag), bytes(vector), now) for etag, vector in versions]
        if not rows:
            return
        with self._transaction("put_versions", write=True) as db:
            db.run_many(
                "INSERT INTO config_versions (etag, vector, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (etag, vector) DO NOTHING",
                rows,
            )

    def get_versions(self, etag: ETag) -> list[bytes]:
        """See :meth:`edgecfg.store.base.Store.get_versions`."""
        with self._transaction("get_versions", write=False) as db:
            rows = db.all(
                "SELECT vector FROM config_versions WHERE etag = ? ORDER BY created_at",
                (bytes(etag),),
            )
        return [bytes(row[0]) for row in rows]

    def drop_versions(self, *, before: float) -> int:
        """See :meth:`edgecfg.store.base.Store.drop_versions`."""
        with self._transaction("drop_versions", write=True) as db:
            return db.run("DELETE FROM config_versions WHERE created_at < ?", (before,))

    # -- telemetry ---------------------------------------------------------

    def append_telemetry(self, device: DeviceId, payload: bytes, *, now: float) -> None:
        """See :meth:`edgecfg.store.base.Store.append_telemetry`."""
        with self._transaction("append_telemetry", write=True) as db:
            db.run(
                "INSERT INTO telemetry (device_id, time, payload) VALUES (?, ?, ?)",
                (device, now, bytes(payload)),
            )

    def telemetry(self, device: DeviceId, *, limit: int = 100) -> list[tuple[float, bytes]]:
        """See :meth:`edgecfg.store.base.Store.telemetry`."""
        with self._transaction("telemetry", write=False) as db:
            rows = db.all(
                "SELECT time, payload FROM telemetry WHERE device_id = ? "
                "ORDER BY time DESC LIMIT ?",
                (device, limit),
            )
        return [(float(row[0]), bytes(row[1])) for row in rows]

    def ingest_telemetry(self, batch: TelemetryBatch) -> None:
        """See :meth:`edgecfg.store.base.Store.ingest_telemetry`."""
        with self._transaction("ingest_telemetry", write=True) as db:
            db.run_many(
                "INSERT INTO telemetry (device_id, time, payload) VALUES (?, ?, ?)",
                [(device, at, bytes(payload)) for device, at, payload in batch.packs],
            )
            db.run_many(_MERGE_AGGREGATE, [_aggregate_row(row) for row in batch.rows])
            db.run_many(
                "INSERT INTO telemetry_states (device_id, state) VALUES (?, ?) "
                "ON CONFLICT (device_id) DO UPDATE SET state = excluded.state",
                [(device, bytes(state)) for device, state in batch.states],
            )
            if batch.keep_after is not None:
                devices = batch.trimmed()
                db.run_many(
                    "DELETE FROM telemetry WHERE device_id = ? AND time < ?",
                    [(device, batch.keep_after) for device in devices],
                )
                db.run_many(
                    "DELETE FROM telemetry_aggregates WHERE scope = 'device' AND key = ? "
                    "AND period = ? AND start < ?",
                    [(device, batch.hourly, batch.keep_after - batch.hourly) for device in devices],
                )

    def telemetry_states(self, devices: Sequence[DeviceId]) -> dict[DeviceId, bytes]:
        """See :meth:`edgecfg.store.base.Store.telemetry_states`."""
        if len(devices) > PAGE:
            raise UsageError(f"telemetry_states: {len(devices)} devices exceed {PAGE} a call")
        if not devices:
            return {}
        marks = ", ".join("?" * len(devices))
        with self._transaction("telemetry_states", write=False) as db:
            rows = db.all(
                f"SELECT device_id, state FROM telemetry_states WHERE device_id IN ({marks})",
                list(devices),
            )
        return {DeviceId(str(row[0])): bytes(row[1]) for row in rows}

    def telemetry_rows(
        self, scope: str, *, key: str | None = None, name: str | None = None,
        period: float, since: float = float("-inf"), below: bool = False,
    ) -> list[TelemetryRow]:  # fmt: skip
        """See :meth:`edgecfg.store.base.Store.telemetry_rows`."""
        where = ["scope = ?", "period = ?", "start >= ?"]
        params: list[object] = [scope, period, max(since, -1e300)]
        if key is not None and below:  # '0' is the character after '/'
            where.append("(key = ? OR (key >= ? AND key < ?))")
            params.extend([key, key + "/", key + "0"])
        elif key is not None:
            where.append("key = ?")
            params.append(key)
        if name is not None:
            where.append("name = ?")
            params.append(name)
        with self._transaction("telemetry_rows", write=False) as db:
            rows = db.all(
                f"SELECT {_AGGREGATE_COLUMNS} FROM telemetry_aggregates "
                f"WHERE {' AND '.join(where)} ORDER BY key, name, start",
                params,
            )
        return [
            TelemetryRow(str(r[0]), str(r[1]), str(r[4]), float(r[2]), float(r[3]),
                         Aggregate(int(r[5]), float(r[6]), float(r[7]), float(r[8]),
                                   float(r[9]), float(r[10])))
            for r in rows
        ]  # fmt: skip

    def prune_telemetry(self, *, before: float, hourly: float = 3600.0) -> int:
        """See :meth:`edgecfg.store.base.Store.prune_telemetry`."""
        with self._transaction("prune_telemetry", write=True) as db:
            dropped = db.run("DELETE FROM telemetry WHERE time < ?", (before,))
            db.run(
                "DELETE FROM telemetry_aggregates WHERE scope = 'device' AND period = ? "
                "AND start < ?",
                (hourly, before - hourly),
            )
        return dropped

    # -- settings ----------------------------------------------------------

    def get_setting(self, key: str) -> bytes | None:
        """See :meth:`edgecfg.store.base.Store.get_setting`."""
        with self._transaction("get_setting", write=False) as db:
            row = db.one("SELECT value FROM settings WHERE key = ?", (key,))
        return None if row is None else bytes(row[0])

    def put_setting(self, key: str, value: bytes) -> None:
        """See :meth:`edgecfg.store.base.Store.put_setting`."""
        with self._transaction("put_setting", write=True) as db:
            db.run(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, bytes(value)),
            )
            if logs_change(key):
                db.log("setting", [key])

    # -- merges of offline changes -------------------------------------------

    def get_merge(self, device: DeviceId) -> MergeRecord | None:
        """See :meth:`edgecfg.store.base.Store.get_merge`."""
        with self._transaction("get_merge", write=False) as db:
            row = db.one("SELECT acknowledged, outcome FROM merges WHERE device_id = ?", (device,))
        return None if row is None else MergeRecord(device, int(row[0]), bytes(row[1]))

    def put_merge(self, record: MergeRecord) -> None:
        """See :meth:`edgecfg.store.base.Store.put_merge`."""
        with self._transaction("put_merge", write=True) as db:
            db.run(
                "INSERT INTO merges (device_id, acknowledged, outcome) VALUES (?, ?, ?) "
                "ON CONFLICT (device_id) DO UPDATE SET "
                "acknowledged = excluded.acknowledged, outcome = excluded.outcome",
                (record.device, record.acknowledged, bytes(record.outcome)),
            )

    # -- versions devices reverted -------------------------------------------

    def put_bad_version(self, record: BadVersion) -> None:
        """See :meth:`edgecfg.store.base.Store.put_bad_version`."""
        with self._transaction("put_bad_version", write=True) as db:
            db.run(
                f"INSERT INTO bad_versions ({_BAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (device_id, etag) DO UPDATE SET "
                "reverted_to = excluded.reverted_to, reason = excluded.reason, "
                "detail = excluded.detail, marked_at = excluded.marked_at",
                (
                    record.device, bytes(record.etag), bytes(record.reverted_to),
                    record.reason, record.detail, record.marked_at,
                ),
            )  # fmt: skip
            db.log("mark", [record.device])

    def get_bad_version(self, device: DeviceId, etag: ETag) -> BadVersion | None:
        """See :meth:`edgecfg.store.base.Store.get_bad_version`."""
        with self._transaction("get_bad_version", write=False) as db:
            row = db.one(
                f"SELECT {_BAD_COLUMNS} FROM bad_versions WHERE device_id = ? AND etag = ?",
                (device, bytes(etag)),
            )
        return None if row is None else _bad_version(row)

    def bad_versions(self, device: DeviceId) -> list[BadVersion]:
        """See :meth:`edgecfg.store.base.Store.bad_versions`."""
        with self._transaction("bad_versions", write=False) as db:
            rows = db.all(
                f"SELECT {_BAD_COLUMNS} FROM bad_versions WHERE device_id = ? "
                "ORDER BY marked_at, etag",
                (device,),
            )
        return [_bad_version(row) for row in rows]

    def clear_bad_versions(self, device: DeviceId, etag: ETag | None = None) -> int:
        """See :meth:`edgecfg.store.base.Store.clear_bad_versions`."""
        with self._transaction("clear_bad_versions", write=True) as db:
            if etag is None:
                gone = db.run("DELETE FROM bad_versions WHERE device_id = ?", (device,))
            else:
                gone = db.run(
                    "DELETE FROM bad_versions WHERE device_id = ? AND etag = ?",
                    (device, bytes(etag)),
                )
            if gone:
                db.log("mark", [device])
            return gone

    def marked_devices(self) -> list[DeviceId]:
        """See :meth:`edgecfg.store.base.Store.marked_devices`."""
        with self._transaction("marked_devices", write=False) as db:
            rows = db.all("SELECT DISTINCT device_id FROM bad_versions ORDER BY device_id", ())
        return [DeviceId(row[0]) for row in rows]

    # -- rollouts --------------------------------------------------------------

    def put_rollout(self, record: RolloutRecord) -> None:
        """See :meth:`edgecfg.store.base.Store.put_rollout`."""
        with self._transaction("put_rollout", write=True) as db:
            db.run(
                "INSERT INTO rollouts (id, plan, state, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET plan = excluded.plan, "
                "state = excluded.state, updated_at = excluded.updated_at",
                (record.id, record.plan, record.state, record.created_at, record.updated_at),
            )

    def get_rollout(self, id: str) -> RolloutRecord | None:
        """See :meth:`edgecfg.store.base.Store.get_rollout`."""
        with self._transaction("get_rollout", write=False) as db:
            row = db.one(f"SELECT {_ROLLOUT_COLUMNS} FROM rollouts WHERE id = ?", (id,))
        return None if row is None else _rollout(row)

    def rollouts(self) -> list[RolloutRecord]:
        """See :meth:`edgecfg.store.base.Store.rollouts`."""
        with self._transaction("rollouts", write=False) as db:
            rows = db.all(f"SELECT {_ROLLOUT_COLUMNS} FROM rollouts ORDER BY created_at, id")
        return [_rollout(row) for row in rows]

    def put_rollout_devices(self, id: str, devices: Sequence[RolloutDevice]) -> None:
        """See :meth:`edgecfg.store.base.Store.put_rollout_devices`."""
        with self._transaction("put_rollout_devices", write=True) as db:
            db.run_many(
                f"INSERT INTO rollout_devices (rollout_id, {_COHORT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rollout_id, device_id) DO UPDATE "
                "SET stratum = excluded.stratum, wave = excluded.wave, "
                "quantile = excluded.quantile, arm = excluded.arm, "
                "offered_at = excluded.offered_at, previous = excluded.previous, "
                "moved_at = excluded.moved_at",
                [(id, d.device, d.stratum, d.wave, d.quantile, d.arm, d.offered_at, d.previous,
                  d.moved_at) for d in devices],
            )  # fmt: skip

    def rollout_devices(self, id: str) -> list[RolloutDevice]:
        """See :meth:`edgecfg.store.base.Store.rollout_devices`."""
        with self._transaction("rollout_devices", write=False) as db:
            rows = db.all(
                f"SELECT {_COHORT_COLUMNS} FROM rollout_devices WHERE rollout_id = ? "
                "ORDER BY device_id",
                (id,),
            )
        return [_cohort_device(row) for row in rows]

    def append_rollout_entry(self, id: str, *, at: float, kind: str, entry: str) -> int:
        """See :meth:`edgecfg.store.base.Store.append_rollout_entry`."""
        with self._transaction("append_rollout_entry", write=True) as db:
            last = _scalar(db, "SELECT MAX(seq) FROM rollout_history WHERE rollout_id = ?", (id,))
            seq = 1 if last is None else int(last) + 1
            db.run(
                "INSERT INTO rollout_history (rollout_id, seq, at, kind, entry) "
                "VALUES (?, ?, ?, ?, ?)",
                (id, seq, at, kind, entry),
            )
        return seq

    def rollout_history(self, id: str) -> list[RolloutEntry]:
        """See :meth:`edgecfg.store.base.Store.rollout_history`."""
        with self._transaction("rollout_history", write=False) as db:
            rows = db.all(
                "SELECT seq, at, kind, entry FROM rollout_history WHERE rollout_id = ? "
                "ORDER BY seq",
                (id,),
            )
        return [RolloutEntry(int(r[0]), float(r[1]), str(r[2]), str(r[3])) for r in rows]

    # -- layers ------------------------------------------------------------

    def append_layer_revision(
        self,
        layer: LayerId,
        content: ETag,
        *,
        parent: int | None,
        author: str,
        message: str,
        now: float,
    ) -> LayerRevision:
        """See :meth:`edgecfg.store.base.Store.append_layer_revision`."""
        with self._transaction("append_layer_revision", write=True) as db:
            db.claim("layer", layer)
            head = _scalar(
                db, "SELECT MAX(revision) FROM layer_revisions WHERE layer = ?", (layer,)
            )
            head = None if head is None else int(head)
            if parent != head:
                raise stale_parent(layer, parent, head)
            if db.one("SELECT 1 FROM blobs WHERE etag = ?", (bytes(content),)) is None:
                raise NotFound("blob", content.hex())
            revision = LayerRevision(layer, (head or 0) + 1, head, content, author, message, now)
            db.run(
                f"INSERT INTO layer_revisions ({LAYER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (layer, revision.revision, head, bytes(content), author, message, now),
            )
            db.log("layer", [layer])
        return revision

    def get_layer(self, layer: LayerId, revision: int | None = None) -> LayerRevision:
        """See :meth:`edgecfg.store.base.Store.get_layer`."""
        query = f"SELECT {LAYER_COLUMNS} FROM layer_revisions WHERE layer = ?"
        with self._transaction("get_layer", write=False) as db:
            if revision is None:
                row = db.one(query + " ORDER BY revision DESC LIMIT 1", (layer,))
            else:
                row = db.one(query + " AND revision = ?", (layer, revision))
                if row is None and db.one(query + " LIMIT 1", (layer,)) is not None:
                    raise NotFound("layer revision", f"{layer}@{revision}")
        if row is None:
            raise NotFound("layer", layer)
        return layer_revision(row)

    def layer_history(self, layer: LayerId) -> list[LayerRevision]:
        """See :meth:`edgecfg.store.base.Store.layer_history`."""
        with self._transaction("layer_history", write=False) as db:
            rows = db.all(
                f"SELECT {LAYER_COLUMNS} FROM layer_revisions WHERE layer = ? ORDER BY revision",
                (layer,),
            )
        return [layer_revision(row) for row in rows]

    def layer_ids(self, prefix: str = "") -> list[LayerId]:
        """See :meth:`edgecfg.store.base.Store.layer_ids`: a range scan of the
        primary key (layer ids compare in code-point order in both layouts)."""
        upper = prefix_upper_bound(prefix)
        query = "SELECT DISTINCT layer FROM layer_revisions WHERE layer >= ?"
        params: tuple[str, ...] = (prefix,)
        if upper is not None:
            query, params = query + " AND layer < ?", (prefix, upper)
        with self._transaction("layer_ids", write=False) as db:
            rows = db.all(query + " ORDER BY layer", params)
        return [LayerId(layer) for (layer,) in rows]

    # -- devices -----------------------------------------------------------

    def put_device(self, record: DeviceRecord) -> None:
        """See :meth:`edgecfg.store.base.Store.put_device`."""
        self._put_devices("put_device", (record,))

    def put_devices(self, records: Iterable[DeviceRecord]) -> None:
        """See :meth:`edgecfg.store.base.Store.put_devices`."""
        self._put_devices("put_devices", records)

    def _put_devices(self, operation: str, records: Iterable[DeviceRecord]) -> None:
        groups: dict[DeviceId, Mapping[str, str]] = {}  # last record per id wins

        def rows() -> Iterator[tuple[object, ...]]:
            for record in records:
                groups[record.id] = record.groups
                yield device_row(record)

        with self._transaction(operation, write=True) as db:
            # Records stream into the open transaction; if iterating them fails,
            # or the process dies, the rollback (or crash recovery) drops them all.
            db.run_many(_UPSERT_DEVICE, rows())
            db.run_many("DELETE FROM device_groups WHERE device_id = ?", [(id,) for id in groups])
            db.run_many(
                "INSERT INTO device_groups (device_id, dimension, path) VALUES (?, ?, ?)",
                [
                    (id, dimension, path)
                    for id, memberships in groups.items()
                    for dimension, path in memberships.items()
                ],
            )
            db.log("device", list(groups))

    def get_device(self, id: DeviceId) -> DeviceRecord:
        """See :meth:`edgecfg.store.base.Store.get_device`."""
        with self._transaction("get_device", write=False) as db:
            rows = db.all(
                """
                SELECT d.id, d.hardware, d.firmware, d.agent_version, d.last_seen,
                       d.applied_etag, g.dimension, g.path
                FROM devices AS d LEFT JOIN device_groups AS g ON g.device_id = d.id
                WHERE d.id = ?
                """,
                (id,),
            )
        if not rows:
            raise NotFound("device", id)
        memberships = [(row[6], row[7]) for row in rows if row[6] is not None]
        return device_record(rows[0], memberships)

    def has_device(self, id: DeviceId) -> bool:
        """See :meth:`edgecfg.store.base.Store.has_device`."""
        with self._transaction("has_device", write=False) as db:
            return db.one("SELECT 1 FROM devices WHERE id = ?", (id,)) is not None

    def delete_device(self, id: DeviceId) -> None:
        """See :meth:`edgecfg.store.base.Store.delete_device`."""
        with self._transaction("delete_device", write=True) as db:
            db.run("DELETE FROM device_groups WHERE device_id = ?", (id,))
            db.run("DELETE FROM merges WHERE device_id = ?", (id,))
            db.run("DELETE FROM bad_versions WHERE device_id = ?", (id,))
            if db.run("DELETE FROM devices WHERE id = ?", (id,)) == 0:
                raise NotFound("device", id)
            db.log("device", [id])

    def count_devices(self) -> int:
        """See :meth:`edgecfg.store.base.Store.count_devices`."""
        with self._transaction("count_devices", write=False) as db:
            return int(_scalar(db, "SELECT COUNT(*) FROM devices") or 0)

    def iter_devices(self, *, group: tuple[str, str] | None = None) -> Iterator[DeviceRecord]:
        """See :meth:`edgecfg.store.base.Store.iter_devices`.

        Reads pages of :data:`PAGE` devices, one short read transaction each, so
        a long iteration never holds a transaction open between yields.
        """
        if not self._is_open():
            raise closed(self.path, "iter_devices")
        if group is None:
            return self._iter_all()
        check_group(*group)
        dimension, path = group
        with self._transaction("iter_devices", write=False) as db:
            rows = db.all(
                GROUP_MEMBERS_SQL + " ORDER BY device_id", {"dimension": dimension, "path": path}
            )
        return self._iter_ids([str(id) for (id,) in rows])

    def _iter_all(self) -> Iterator[DeviceRecord]:
        after: str | None = None
        while True:
            with self._transaction("iter_devices", write=False) as db:
                condition = "id >= ''" if after is None else "id > ?"
                rows = db.all(
                    f"SELECT id FROM devices WHERE {condition} ORDER BY id LIMIT {PAGE}",
                    () if after is None else (after,),
                )
                page = _load_devices(db, [str(id) for (id,) in rows])
            yield from page
            if len(rows) < PAGE:
                return
            after = str(rows[-1][0])

    def _iter_ids(self, ids: Sequence[str]) -> Iterator[DeviceRecord]:
        for start in range(0, len(ids), PAGE):
            with self._transaction("iter_devices", write=False) as db:
                page = _load_devices(db, ids[start : start + PAGE])
            yield from page

    def record_seen(self, id: DeviceId, *, now: float, applied_etag: ETag | None) -> None:
        """See :meth:`edgecfg.store.base.Store.record_seen`."""
        etag = None if applied_etag is None else bytes(applied_etag)
        with self._transaction("record_seen", write=True) as db:
            changed = db.run(
                "UPDATE devices SET last_seen = ?, applied_etag = ? WHERE id = ?", (now, etag, id)
            )
            if changed == 0:
                raise NotFound("device", id)

    # -- OSCORE credentials -----------------------------------------------

    def enroll(self, role: str, name: str, sealed: bytes, *, now: float) -> CredentialRecord:
        """See :meth:`edgecfg.store.base.Store.enroll`."""
        return self.enroll_many([(role, name, sealed)], now=now)[0]

    def enroll_many(
        self, entries: Iterable[tuple[str, str, bytes]], *, now: float
    ) -> list[CredentialRecord]:
        """See :meth:`edgecfg.store.base.Store.enroll_many`."""
        items = list(entries)
        for role, _, _ in items:
            check_role(role)
        records: list[CredentialRecord] = []
        with self._durable("enroll") as db:
            numbers = db.credential_numbers()
            for role, name, sealed in items:
                db.claim("credential", role, name)
                held = db.one(
                    "SELECT kid FROM credentials WHERE role = ? AND name = ? "
                    "AND revoked_at IS NULL",
                    (role, name),
                )
                if held is not None:
                    raise already_enrolled(role, name, bytes(held[0]))
                number = next(numbers)
                record = CredentialRecord(kid_for(number), role, name, bytes(sealed), now)
                db.run(
                    "INSERT INTO credentials (number, kid, role, name, sealed, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (number, record.kid, role, name, record.sealed, now),
                )
                records.append(record)
        return records

    def credential(self, kid: bytes) -> CredentialRecord | None:
        """See :meth:`edgecfg.store.base.Store.credential`."""
        with self._transaction("credential", write=False) as db:
            row = db.one(f"{CREDENTIAL_SELECT} WHERE kid = ?", (bytes(kid),))
        return None if row is None else credential_record(row)

    def active_credential(self, role: str, name: str) -> CredentialRecord | None:
        """See :meth:`edgecfg.store.base.Store.active_credential`."""
        with self._transaction("active_credential", write=False) as db:
            row = db.one(_ACTIVE_CREDENTIAL, (role, name))
        return None if row is None else credential_record(row)

    def revoke(self, role: str, name: str, *, now: float) -> CredentialRecord:
        """See :meth:`edgecfg.store.base.Store.revoke`."""
        with self._durable("revoke") as db:
            db.claim("credential", role, name)
            row = db.one(_ACTIVE_CREDENTIAL, (role, name))
            if row is None:
                raise NotFound(f"enrolled {role}", name)
            db.run("UPDATE credentials SET revoked_at = ? WHERE kid = ?", (now, bytes(row[0])))
            db.count_up(REVOCATIONS)
            db.log("revocation", [f"{role}/{name}"])
        return replace(credential_record(row), revoked_at=now)

    def count_credentials(self, *, active: bool = True) -> int:
        """See :meth:`edgecfg.store.base.Store.count_credentials`."""
        where = " WHERE revoked_at IS NULL" if active else ""
        with self._transaction("count_credentials", write=False) as db:
            return int(_scalar(db, f"SELECT COUNT(*) FROM credentials{where}") or 0)

    def revocations(self) -> int:
        """See :meth:`edgecfg.store.base.Store.revocations`."""
        with self._transaction("revocations", write=False) as db:
            value = _scalar(db, "SELECT value FROM settings WHERE key = ?", (REVOCATIONS,))
        # decimal digits: text in SQLite, bytes in PostgreSQL; int() reads both
        return 0 if value is None else int(value)

    def oscore_state(self, kid: bytes) -> OscoreState | None:
        """See :meth:`edgecfg.store.base.Store.oscore_state`."""
        with self._transaction("oscore_state", write=False) as db:
            row = db.one(
                'SELECT next_to_send, "window" FROM oscore_state WHERE kid = ?', (bytes(kid),)
            )
        if row is None:
            return None
        return OscoreState(int(row[0]), None if row[1] is None else bytes(row[1]))

    def put_oscore_states(self, states: Iterable[tuple[bytes, OscoreState]]) -> None:
        """See :meth:`edgecfg.store.base.Store.put_oscore_states`.

        ``next_to_send`` never goes down, so a stale writer cannot hand out a
        reserved sequence number again; the commit is durable (:meth:`_durable`)
        before the numbers are used.
        """
        rows = [(bytes(kid), s.next_to_send, s.window) for kid, s in states]
        if not rows:
            return
        with self._durable("put_oscore_states") as db:
            db.run_many(
                'INSERT INTO oscore_state (kid, next_to_send, "window") VALUES (?, ?, ?) '
                "ON CONFLICT (kid) DO UPDATE SET next_to_send = CASE "
                "WHEN excluded.next_to_send > oscore_state.next_to_send "
                "THEN excluded.next_to_send ELSE oscore_state.next_to_send END, "
                '"window" = excluded."window"',
                rows,
            )

    def reserve_sequence_numbers(self, kid: bytes, count: int) -> int:
        """See :meth:`edgecfg.store.base.Store.reserve_sequence_numbers`: one
        upsert with RETURNING, so concurrent reservations (row-locked on
        PostgreSQL, serialised writers on SQLite) never overlap."""
        if count < 1:
            raise ValueError(f"reserve {count} sequence numbers: at least 1")
        with self._durable("reserve_sequence_numbers") as db:
            end = _scalar(
                db,
                'INSERT INTO oscore_state (kid, next_to_send, "window") VALUES (?, ?, NULL) '
                "ON CONFLICT (kid) DO UPDATE SET next_to_send = oscore_state.next_to_send + ? "
                "RETURNING next_to_send",
                (bytes(kid), count, count),
            )
        return int(end) - count

    # -- change log --------------------------------------------------------

    def changes_since(self, seq: int, *, limit: int = 10_000) -> list[Change]:
        """See :meth:`edgecfg.store.base.Store.changes_since`."""
        with self._transaction("changes_since", write=False) as db:
            rows = db.all(
                "SELECT seq, kind, key FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            )
        return [Change(int(row[0]), cast(ChangeKind, row[1]), str(row[2])) for row in rows]

    def last_change(self) -> int:
        """See :meth:`edgecfg.store.base.Store.last_change`."""
        with self._transaction("last_change", write=False) as db:
            return int(_scalar(db, "SELECT COALESCE(MAX(seq), 0) FROM changes") or 0)


def prefix_upper_bound(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix``, if any."""
    stripped = prefix.rstrip(chr(0x10FFFF))
    if not stripped:
        return None
    following = ord(stripped[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates cannot be encoded as UTF-8
        following = 0xE000
    return stripped[:-1] + chr(following)


_BAD_COLUMNS = "device_id, etag, reverted_to, reason, detail, marked_at"
_ROLLOUT_COLUMNS = "id, plan, state, created_at, updated_at"
_COHORT_COLUMNS = "device_id, stratum, wave, quantile, arm, offered_at, previous, moved_at"


def _rollout(row: Row) -> RolloutRecord:
    return RolloutRecord(str(row[0]), str(row[1]), str(row[2]), float(row[3]), float(row[4]))


def _cohort_device(row: Row) -> RolloutDevice:
    return RolloutDevice(
        DeviceId(str(row[0])), str(row[1]), int(row[2]), float(row[3]),
        None if row[4] is None else str(row[4]), None if row[5] is None else float(row[5]),
        None if row[6] is None else str(row[6]), None if row[7] is None else float(row[7]),
    )  # fmt: skip


def _bad_version(row: Row) -> BadVersion:
    return BadVersion(
        DeviceId(str(row[0])), ETag(bytes(row[1])), ETag(bytes(row[2])), str(row[3]),
        str(row[4]), float(row[5]),
    )  # fmt: skip


def _scalar(db: Transaction, query: str, params: Params = ()) -> Any:
    row = db.one(query, params)
    return None if row is None else row[0]


def _load_devices(db: Transaction, ids: Sequence[str]) -> list[DeviceRecord]:
    """Load the devices ``ids`` (at most :data:`PAGE`) in that order, skipping gone ones."""
    if not ids:
        return []
    among, params = db.among(ids)
    rows = db.all(f"SELECT {DEVICE_COLUMNS} FROM devices WHERE id {among}", params)
    by_id = {str(row[0]): row for row in rows}
    memberships: dict[str, list[tuple[str, str]]] = {}
    for device_id, dimension, path in db.all(
        f"SELECT device_id, dimension, path FROM device_groups WHERE device_id {among}", params
    ):
        memberships.setdefault(device_id, []).append((dimension, path))
    return [device_record(by_id[id], memberships.get(id, ())) for id in ids if id in by_id]
