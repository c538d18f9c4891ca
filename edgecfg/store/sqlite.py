"""The default gateway :class:`~edgecfg.store.base.Store`, on stdlib ``sqlite3``.

- File databases run in WAL mode with ``synchronous=NORMAL``: a crash loses at
  most the last transactions, never consistency.  Foreign keys are enforced.
- The layout (:mod:`edgecfg.store.layout`) is versioned by its migrations, tracked in the
  ``schema_version`` table; opening an older database migrates it step by step,
  each step in its own transaction.  A database written by a newer edgecfg is
  refused with :class:`~edgecfg.errors.StoreError`.
- Every public method is one transaction (``BEGIN IMMEDIATE`` for writes, so
  concurrent writers queue instead of deadlocking).  ``sqlite3`` errors are
  translated once, in :meth:`SQLiteStore._transaction`, into ``StoreError``
  naming the operation.
- Group membership lives in ``device_groups`` with an index on
  ``(dimension, path)``, so a group query is a range scan (``GROUP_MEMBERS_SQL``).

A store may be shared between threads; calls are serialised by a lock.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import cast

from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.errors import NotFound, StoreError
from edgecfg.store.base import (
    Change,
    ChangeKind,
    CredentialRecord,
    DeviceRecord,
    LayerRevision,
    MergeRecord,
    OscoreState,
    SchemaRecord,
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
from edgecfg.store.layout import GROUP_MEMBERS_SQL, LAYOUT_VERSION, MIGRATIONS
from edgecfg.store.rows import (
    CREDENTIAL_SELECT,
    DEVICE_COLUMNS,
    LAYER_COLUMNS,
    credential_record,
    device_record,
    device_row,
    layer_revision,
)

__all__ = ["GROUP_MEMBERS_SQL", "LAYOUT_VERSION", "MIGRATIONS", "SQLiteStore"]

_PAGE = 500  # devices per read transaction in iter_devices; also bounds IN (...) lists

_UPSERT_DEVICE = f"""
    INSERT INTO devices ({DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET
        hardware = excluded.hardware,
        firmware = excluded.firmware,
        agent_version = excluded.agent_version,
        last_seen = excluded.last_seen,
        applied_etag = excluded.applied_etag
"""


class SQLiteStore:
    """A :class:`~edgecfg.store.base.Store` in one SQLite database.

    ``path`` is a file path or ``":memory:"``.  Opening creates or migrates the
    database; failures (unreadable file, not a database, a newer layout) raise
    :class:`StoreError`.  Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.RLock()
        try:
            connection = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except sqlite3.Error as error:
            raise StoreError(f"open {self.path} failed: {error}") from error
        self._connection: sqlite3.Connection | None = connection
        try:
            with self._translated("open"):
                # Pragmas are no-ops inside a transaction, so they come first.
                if self.path != ":memory:":
                    connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = NORMAL")
                connection.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database (checkpointing the WAL); idempotent."""
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()

    def check_writable(self) -> None:
        """See :meth:`edgecfg.store.base.Store.check_writable`: an update that
        matches no row still needs write access, and changes nothing."""
        with self._transaction("check_writable", write=True) as db:
            db.execute("UPDATE schema_version SET version = version WHERE 0")

    @property
    def layout_version(self) -> int:
        """The layout version recorded in the database's ``schema_version`` table."""
        with self._transaction("layout_version", write=False) as db:
            return _layout_version(db)

    # -- transactions and migrations ----------------------------------------

    @contextmanager
    def _translated(self, operation: str) -> Generator[None, None, None]:
        try:
            yield
        except sqlite3.Error as error:
            raise StoreError(f"{operation} on {self.path} failed: {error}") from error

    @contextmanager
    def _transaction(
        self, operation: str, *, write: bool
    ) -> Generator[sqlite3.Connection, None, None]:
        """Run the body as one transaction; the only place sqlite3 errors are caught."""
        with self._lock, self._translated(operation):
            db = self._connection
            if db is None:
                raise _closed(self.path, operation)
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _migrate(self) -> None:
        with self._transaction("read layout version", write=False) as db:
            current = _layout_version(db)
        if current > LAYOUT_VERSION:
            raise StoreError(
                f"database {self.path} has layout version {current}, newer than version "
                f"{LAYOUT_VERSION} that this edgecfg supports; open it with a newer edgecfg"
            )
        for number in range(current + 1, LAYOUT_VERSION + 1):
            with self._transaction(f"migrate to layout version {number}", write=True) as db:
                if _layout_version(db) >= number:
                    continue  # another process migrated since we looked
                db.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)"
                )
                for statement in _statements(MIGRATIONS[number - 1]):
                    db.execute(statement)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))

    # -- schemas -----------------------------------------------------------

    def put_schema(self, name: str, version: int, document: bytes, *, now: float) -> SchemaRecord:
        """See :meth:`edgecfg.store.base.Store.put_schema`."""
        check_schema_version(version)
        document = bytes(document)
        with self._transaction("put_schema", write=True) as db:
            row = db.execute(
                "SELECT document, created_at FROM schemas WHERE name = ? AND version = ?",
                (name, version),
            ).fetchone()
            if row is not None:
                if row[0] != document:
                    raise schema_changed(name, version)
                return SchemaRecord(name, version, row[0], row[1])
            (latest,) = db.execute(
                "SELECT MAX(version) FROM schemas WHERE name = ?", (name,)
            ).fetchone()
            if latest is not None and version <= latest:
                raise schema_not_newer(name, version, latest)
            db.execute(
                "INSERT INTO schemas (name, version, document, created_at) VALUES (?, ?, ?, ?)",
                (name, version, document, now),
            )
        return SchemaRecord(name, version, document, now)

    def get_schema(self, name: str, version: int | None = None) -> SchemaRecord:
        """See :meth:`edgecfg.store.base.Store.get_schema`."""
        query = "SELECT version, document, created_at FROM schemas WHERE name = ?"
        with self._transaction("get_schema", write=False) as db:
            if version is None:
                row = db.execute(query + " ORDER BY version DESC LIMIT 1", (name,)).fetchone()
            else:
                row = db.execute(query + " AND version = ?", (name, version)).fetchone()
        if row is None:
            raise NotFound("schema", name if version is None else f"{name} version {version}")
        return SchemaRecord(name, row[0], row[1], row[2])

    def schema_versions(self, name: str) -> list[int]:
        """See :meth:`edgecfg.store.base.Store.schema_versions`."""
        with self._transaction("schema_versions", write=False) as db:
            rows = db.execute(
                "SELECT version FROM schemas WHERE name = ? ORDER BY version", (name,)
            ).fetchall()
        return [int(version) for (version,) in rows]

    def schema_names(self) -> list[str]:
        """See :meth:`edgecfg.store.base.Store.schema_names`."""
        with self._transaction("schema_names", write=False) as db:
            rows = db.execute("SELECT DISTINCT name FROM schemas ORDER BY name").fetchall()
        return [str(name) for (name,) in rows]

    # -- blobs -------------------------------------------------------------

    def put_blob(self, data: bytes) -> ETag:
        """See :meth:`edgecfg.store.base.Store.put_blob`."""
        data = bytes(data)
        etag = blob_etag(data)
        with self._transaction("put_blob", write=True) as db:
            row = db.execute("SELECT data FROM blobs WHERE etag = ?", (etag,)).fetchone()
            if row is None:
                db.execute("INSERT INTO blobs (etag, data) VALUES (?, ?)", (etag, data))
            elif row[0] != data:
                raise blob_collision(etag)
        return etag

    def get_blob(self, etag: ETag) -> bytes:
        """See :meth:`edgecfg.store.base.Store.get_blob`."""
        with self._transaction("get_blob", write=False) as db:
            row = db.execute("SELECT data FROM blobs WHERE etag = ?", (etag,)).fetchone()
        if row is None:
            raise NotFound("blob", etag.hex())
        return bytes(row[0])

    def has_blob(self, etag: ETag) -> bool:
        """See :meth:`edgecfg.store.base.Store.has_blob`."""
        with self._transaction("has_blob", write=False) as db:
            return db.execute("SELECT 1 FROM blobs WHERE etag = ?", (etag,)).fetchone() is not None

    # -- telemetry ---------------------------------------------------------

    def append_telemetry(self, device: DeviceId, payload: bytes, *, now: float) -> None:
        """See :meth:`edgecfg.store.base.Store.append_telemetry`."""
        with self._transaction("append_telemetry", write=True) as db:
            db.execute(
                "INSERT INTO telemetry (device_id, time, payload) VALUES (?, ?, ?)",
                (device, now, bytes(payload)),
            )

    def telemetry(self, device: DeviceId, *, limit: int = 100) -> list[tuple[float, bytes]]:
        """See :meth:`edgecfg.store.base.Store.telemetry`."""
        with self._transaction("telemetry", write=False) as db:
            rows = db.execute(
                "SELECT time, payload FROM telemetry WHERE device_id = ? "
                "ORDER BY time DESC LIMIT ?",
                (device, limit),
            ).fetchall()
        return [(float(row[0]), bytes(row[1])) for row in rows]

    # -- settings ----------------------------------------------------------

    def get_setting(self, key: str) -> bytes | None:
        """See :meth:`edgecfg.store.base.Store.get_setting`."""
        with self._transaction("get_setting", write=False) as db:
            row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put_setting(self, key: str, value: bytes) -> None:
        """See :meth:`edgecfg.store.base.Store.put_setting`."""
        with self._transaction("put_setting", write=True) as db:
            db.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, bytes(value)),
            )
            if logs_change(key):
                _log(db, "setting", key)

    # -- merges of offline changes -------------------------------------------

    def get_merge(self, device: DeviceId) -> MergeRecord | None:
        """See :meth:`edgecfg.store.base.Store.get_merge`."""
        with self._transaction("get_merge", write=False) as db:
            row = db.execute(
                "SELECT acknowledged, outcome FROM merges WHERE device_id = ?", (device,)
            ).fetchone()
        return None if row is None else MergeRecord(device, int(row[0]), bytes(row[1]))

    def put_merge(self, record: MergeRecord) -> None:
        """See :meth:`edgecfg.store.base.Store.put_merge`."""
        with self._transaction("put_merge", write=True) as db:
            db.execute(
                "INSERT INTO merges (device_id, acknowledged, outcome) VALUES (?, ?, ?) "
                "ON CONFLICT (device_id) DO UPDATE SET "
                "acknowledged = excluded.acknowledged, outcome = excluded.outcome",
                (record.device, record.acknowledged, bytes(record.outcome)),
            )

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
            (head,) = db.execute(
                "SELECT MAX(revision) FROM layer_revisions WHERE layer = ?", (layer,)
            ).fetchone()
            if parent != head:
                raise stale_parent(layer, parent, head)
            if db.execute("SELECT 1 FROM blobs WHERE etag = ?", (content,)).fetchone() is None:
                raise NotFound("blob", content.hex())
            revision = LayerRevision(layer, (head or 0) + 1, head, content, author, message, now)
            db.execute(
                f"INSERT INTO layer_revisions ({LAYER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (layer, revision.revision, head, content, author, message, now),
            )
            _log(db, "layer", layer)
        return revision

    def get_layer(self, layer: LayerId, revision: int | None = None) -> LayerRevision:
        """See :meth:`edgecfg.store.base.Store.get_layer`."""
        query = f"SELECT {LAYER_COLUMNS} FROM layer_revisions WHERE layer = ?"
        with self._transaction("get_layer", write=False) as db:
            if revision is None:
                row = db.execute(query + " ORDER BY revision DESC LIMIT 1", (layer,)).fetchone()
            else:
                row = db.execute(query + " AND revision = ?", (layer, revision)).fetchone()
                if row is None:
                    exists = db.execute(query + " LIMIT 1", (layer,)).fetchone() is not None
                    if exists:
                        raise NotFound("layer revision", f"{layer}@{revision}")
        if row is None:
            raise NotFound("layer", layer)
        return layer_revision(row)

    def layer_history(self, layer: LayerId) -> list[LayerRevision]:
        """See :meth:`edgecfg.store.base.Store.layer_history`."""
        with self._transaction("layer_history", write=False) as db:
            rows = db.execute(
                f"SELECT {LAYER_COLUMNS} FROM layer_revisions WHERE layer = ? ORDER BY revision",
                (layer,),
            ).fetchall()
        return [layer_revision(row) for row in rows]

    def layer_ids(self, prefix: str = "") -> list[LayerId]:
        """See :meth:`edgecfg.store.base.Store.layer_ids`."""
        upper = _prefix_upper_bound(prefix)
        query = "SELECT DISTINCT layer FROM layer_revisions WHERE layer >= ?"
        params: tuple[str, ...] = (prefix,)
        if upper is not None:
            query, params = query + " AND layer < ?", (prefix, upper)
        with self._transaction("layer_ids", write=False) as db:
            rows = db.execute(query + " ORDER BY layer", params).fetchall()
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
            # or the process dies, the rollback (or WAL recovery) drops them all.
            db.executemany(_UPSERT_DEVICE, rows())
            db.executemany(
                "DELETE FROM device_groups WHERE device_id = ?", ((id,) for id in groups)
            )
            db.executemany(
                "INSERT INTO device_groups (device_id, dimension, path) VALUES (?, ?, ?)",
                (
                    (id, dimension, path)
                    for id, memberships in groups.items()
                    for dimension, path in memberships.items()
                ),
            )
            db.executemany(
                "INSERT INTO changes (kind, key) VALUES ('device', ?)", ((id,) for id in groups)
            )

    def get_device(self, id: DeviceId) -> DeviceRecord:
        """See :meth:`edgecfg.store.base.Store.get_device`."""
        with self._transaction("get_device", write=False) as db:
            rows = db.execute(
                """
                SELECT d.id, d.hardware, d.firmware, d.agent_version, d.last_seen,
                       d.applied_etag, g.dimension, g.path
                FROM devices AS d LEFT JOIN device_groups AS g ON g.device_id = d.id
                WHERE d.id = ?
                """,
                (id,),
            ).fetchall()
        if not rows:
            raise NotFound("device", id)
        memberships = [(row[6], row[7]) for row in rows if row[6] is not None]
        return device_record(rows[0], memberships)

    def has_device(self, id: DeviceId) -> bool:
        """See :meth:`edgecfg.store.base.Store.has_device`."""
        with self._transaction("has_device", write=False) as db:
            return db.execute("SELECT 1 FROM devices WHERE id = ?", (id,)).fetchone() is not None

    def delete_device(self, id: DeviceId) -> None:
        """See :meth:`edgecfg.store.base.Store.delete_device`."""
        with self._transaction("delete_device", write=True) as db:
            db.execute("DELETE FROM device_groups WHERE device_id = ?", (id,))
            db.execute("DELETE FROM merges WHERE device_id = ?", (id,))
            if db.execute("DELETE FROM devices WHERE id = ?", (id,)).rowcount == 0:
                raise NotFound("device", id)
            _log(db, "device", id)

    def count_devices(self) -> int:
        """See :meth:`edgecfg.store.base.Store.count_devices`."""
        with self._transaction("count_devices", write=False) as db:
            return int(db.execute("SELECT COUNT(*) FROM devices").fetchone()[0])

    def iter_devices(self, *, group: tuple[str, str] | None = None) -> Iterator[DeviceRecord]:
        """See :meth:`edgecfg.store.base.Store.iter_devices`.

        Reads pages of :data:`_PAGE` devices, one short read transaction each, so
        a long iteration never holds a transaction open between yields.
        """
        if group is None:
            if self._connection is None:
                raise _closed(self.path, "iter_devices")
            return self._iter_all()
        check_group(*group)
        dimension, path = group
        with self._transaction("iter_devices", write=False) as db:
            rows = db.execute(
                GROUP_MEMBERS_SQL + " ORDER BY device_id", {"dimension": dimension, "path": path}
            ).fetchall()
        return self._iter_ids([str(id) for (id,) in rows])

    def _iter_all(self) -> Iterator[DeviceRecord]:
        after: str | None = None
        while True:
            with self._transaction("iter_devices", write=False) as db:
                condition = "id >= ''" if after is None else "id > ?"
                rows = db.execute(
                    f"SELECT id FROM devices WHERE {condition} ORDER BY id LIMIT {_PAGE}",
                    () if after is None else (after,),
                ).fetchall()
                page = _load_devices(db, [str(id) for (id,) in rows])
            yield from page
            if len(rows) < _PAGE:
                return
            after = str(rows[-1][0])

    def _iter_ids(self, ids: Sequence[str]) -> Iterator[DeviceRecord]:
        for start in range(0, len(ids), _PAGE):
            with self._transaction("iter_devices", write=False) as db:
                page = _load_devices(db, ids[start : start + _PAGE])
            yield from page

    def record_seen(self, id: DeviceId, *, now: float, applied_etag: ETag | None) -> None:
        """See :meth:`edgecfg.store.base.Store.record_seen`."""
        with self._transaction("record_seen", write=True) as db:
            cursor = db.execute(
                "UPDATE devices SET last_seen = ?, applied_etag = ? WHERE id = ?",
                (now, applied_etag, id),
            )
            if cursor.rowcount == 0:
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
            row = db.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'credentials'"
            ).fetchone()
            number = 0 if row is None else int(row[0])
            for role, name, sealed in items:
                held = db.execute(
                    "SELECT kid FROM credentials WHERE role = ? AND name = ? "
                    "AND revoked_at IS NULL",
                    (role, name),
                ).fetchone()
                if held is not None:
                    raise already_enrolled(role, name, bytes(held[0]))
                number += 1
                record = CredentialRecord(kid_for(number), role, name, bytes(sealed), now)
                db.execute(
                    "INSERT INTO credentials (number, kid, role, name, sealed, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (number, record.kid, role, name, record.sealed, now),
                )
                records.append(record)
        return records

    def credential(self, kid: bytes) -> CredentialRecord | None:
        """See :meth:`edgecfg.store.base.Store.credential`."""
        with self._transaction("credential", write=False) as db:
            row = db.execute(f"{CREDENTIAL_SELECT} WHERE kid = ?", (bytes(kid),)).fetchone()
        return None if row is None else credential_record(row)

    def active_credential(self, role: str, name: str) -> CredentialRecord | None:
        """See :meth:`edgecfg.store.base.Store.active_credential`."""
        with self._transaction("active_credential", write=False) as db:
            row = db.execute(
                f"{CREDENTIAL_SELECT} WHERE role = ? AND name = ? AND revoked_at IS NULL",
                (role, name),
            ).fetchone()
        return None if row is None else credential_record(row)

    def revoke(self, role: str, name: str, *, now: float) -> CredentialRecord:
        """See :meth:`edgecfg.store.base.Store.revoke`."""
        with self._durable("revoke") as db:
            row = db.execute(
                f"{CREDENTIAL_SELECT} WHERE role = ? AND name = ? AND revoked_at IS NULL",
                (role, name),
            ).fetchone()
            if row is None:
                raise NotFound(f"enrolled {role}", name)
            db.execute("UPDATE credentials SET revoked_at = ? WHERE kid = ?", (now, row[0]))
            # A counter, so that the gateway's once-a-second check is one row read.
            db.execute(
                "INSERT INTO settings (key, value) VALUES (?, '1') ON CONFLICT (key) "
                "DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
                (_REVOCATIONS,),
            )
            _log(db, "revocation", f"{role}/{name}")
        return replace(credential_record(row), revoked_at=now)

    def count_credentials(self, *, active: bool = True) -> int:
        """See :meth:`edgecfg.store.base.Store.count_credentials`."""
        where = " WHERE revoked_at IS NULL" if active else ""
        with self._transaction("count_credentials", write=False) as db:
            return int(db.execute(f"SELECT COUNT(*) FROM credentials{where}").fetchone()[0])

    def revocations(self) -> int:
        """See :meth:`edgecfg.store.base.Store.revocations`."""
        with self._transaction("revocations", write=False) as db:
            row = db.execute("SELECT value FROM settings WHERE key = ?", (_REVOCATIONS,)).fetchone()
        return 0 if row is None else int(row[0])

    # -- change log --------------------------------------------------------

    def changes_since(self, seq: int, *, limit: int = 10_000) -> list[Change]:
        """See :meth:`edgecfg.store.base.Store.changes_since`."""
        with self._transaction("changes_since", write=False) as db:
            rows = db.execute(
                "SELECT seq, kind, key FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [Change(int(row[0]), cast(ChangeKind, row[1]), str(row[2])) for row in rows]

    def last_change(self) -> int:
        """See :meth:`edgecfg.store.base.Store.last_change`."""
        with self._transaction("last_change", write=False) as db:
            return int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0])

    def oscore_state(self, kid: bytes) -> OscoreState | None:
        """See :meth:`edgecfg.store.base.Store.oscore_state`."""
        with self._transaction("oscore_state", write=False) as db:
            row = db.execute(
                "SELECT next_to_send, window FROM oscore_state WHERE kid = ?", (bytes(kid),)
            ).fetchone()
        if row is None:
            return None
        return OscoreState(int(row[0]), None if row[1] is None else bytes(row[1]))

    def put_oscore_states(self, states: Iterable[tuple[bytes, OscoreState]]) -> None:
        """See :meth:`edgecfg.store.base.Store.put_oscore_states`.

        Committed with ``synchronous = FULL`` semantics: a sequence number
        reservation must be on disk before the numbers are used.
        """
        rows = [(bytes(kid), s.next_to_send, s.window) for kid, s in states]
        if not rows:
            return
        with self._durable("put_oscore_states") as db:
            db.executemany(
                "INSERT INTO oscore_state (kid, next_to_send, window) VALUES (?, ?, ?) "
                "ON CONFLICT (kid) DO UPDATE SET "
                "next_to_send = MAX(next_to_send, excluded.next_to_send), "
                "window = excluded.window",
                rows,
            )

    @contextmanager
    def _durable(self, operation: str) -> Generator[sqlite3.Connection, None, None]:
        """A write transaction committed with ``synchronous = FULL``: it survives
        a power cut, not only a crash (credentials and nonce reservations)."""
        with self._lock:
            self._set_synchronous("FULL")
            try:
                with self._transaction(operation, write=True) as db:
                    yield db
            finally:
                self._set_synchronous("NORMAL")

    def _set_synchronous(self, level: str) -> None:
        with self._translated(f"set synchronous = {level}"):
            if self._connection is not None:
                self._connection.execute(f"PRAGMA synchronous = {level}")


_REVOCATIONS = "oscore.revocations"


def _log(db: sqlite3.Connection, kind: ChangeKind, key: str) -> None:
    """Append to the change log inside the caller's write transaction."""
    db.execute("INSERT INTO changes (kind, key) VALUES (?, ?)", (kind, key))


def _closed(path: str, operation: str) -> StoreError:
    return StoreError(f"{operation} on {path} failed: store is closed")


def _layout_version(db: sqlite3.Connection) -> int:
    """The version in ``schema_version``; 0 for a database without that table."""
    exists = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    return int(db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])


def _statements(script: str) -> Iterator[str]:
    """Split a migration script into complete SQL statements."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        raise StoreError(f"migration has an incomplete statement: {pending.strip()!r}")


def _prefix_upper_bound(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix``, if any."""
    stripped = prefix.rstrip(chr(0x10FFFF))
    if not stripped:
        return None
    following = ord(stripped[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates cannot be encoded as UTF-8
        following = 0xE000
    return stripped[:-1] + chr(following)


def _load_devices(db: sqlite3.Connection, ids: Sequence[str]) -> list[DeviceRecord]:
    """Load the devices ``ids`` (at most :data:`_PAGE`) in that order, skipping gone ones."""
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    rows = db.execute(f"SELECT {DEVICE_COLUMNS} FROM devices WHERE id IN ({marks})", ids)
    by_id = {str(row[0]): row for row in rows}
    memberships: dict[str, list[tuple[str, str]]] = {}
    for device_id, dimension, path in db.execute(
        f"SELECT device_id, dimension, path FROM device_groups WHERE device_id IN ({marks})", ids
    ):
        memberships.setdefault(device_id, []).append((dimension, path))
    return [device_record(by_id[id], memberships.get(id, ())) for id in ids if id in by_id]
