"""The gateway :class:`~edgecfg.store.base.Store` on PostgreSQL (psycopg 3).

Selected by a ``postgresql://`` URL wherever a database is named (``--db``).
It keeps the same contract as :class:`~edgecfg.store.SQLiteStore`, checked by
the same contract suite (``tests/store/test_store.py``):

- The layout (:mod:`edgecfg.store.postgres_layout`) is versioned by its
  migrations in a ``schema_version`` table, like SQLite's; migrations run
  under a transaction-scoped advisory lock, so several processes opening one
  database migrate it once.  A database written by a newer edgecfg is refused.
- Every public method is one transaction on a connection from a small pool
  (``psycopg_pool``).  Read-modify-write methods take a transaction-scoped
  advisory lock on what they modify (a layer, a schema name, an identity), so
  concurrent writers from several processes queue instead of failing.
- psycopg errors are translated once, in :meth:`PostgresStore._transaction`,
  into :class:`~edgecfg.errors.StoreError` naming the operation and the
  database *without* its password.
- Commits are durable (PostgreSQL's default ``synchronous_commit = on``), which
  is what credentials and OSCORE sequence-number reservations need.

``schema=`` puts every table in that PostgreSQL schema (created if missing):
the tests give each test its own and drop it afterwards.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

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
from edgecfg.store.postgres_layout import GROUP_MEMBERS_SQL, LAYOUT_VERSION, MIGRATIONS
from edgecfg.store.rows import (
    CREDENTIAL_SELECT,
    DEVICE_COLUMNS,
    LAYER_COLUMNS,
    credential_record,
    device_record,
    device_row,
    layer_revision,
)

__all__ = ["LAYOUT_VERSION", "PostgresStore", "is_initialised", "is_postgres_url", "redact"]

URL_SCHEMES = ("postgresql://", "postgres://")
_PAGE = 500  # devices per read transaction in iter_devices
_POOL_SIZE = 4
_CONNECT_TIMEOUT_S = 10.0
_MIGRATION_LOCK = 0x6564676563666701  # advisory lock keys: "edgecfg" + 1, + 3
_CHANGES_LOCK = 0x6564676563666703
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_UPSERT_DEVICE = f"""
    INSERT INTO devices ({DEVICE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)
    ON CONFLICT (id) DO UPDATE SET
        hardware = excluded.hardware,
        firmware = excluded.firmware,
        agent_version = excluded.agent_version,
        last_seen = excluded.last_seen,
        applied_etag = excluded.applied_etag
"""
_REVOCATIONS = "oscore.revocations"

Connection = psycopg.Connection[tuple[Any, ...]]


def is_postgres_url(text: str) -> bool:
    """Whether ``--db`` names a PostgreSQL database rather than a SQLite file."""
    return text.startswith(URL_SCHEMES)


def is_initialised(url: str) -> bool:
    """Whether the database at ``url`` holds an edgecfg layout (without creating one)."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=int(_CONNECT_TIMEOUT_S)) as db:
            return _scalar(db, "SELECT to_regclass('schema_version')", ()) is not None
    except psycopg.Error as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise StoreError(f"open {redact(url)} failed: {detail}") from error


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" if parts.username else f"***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class PostgresStore:
    """A :class:`~edgecfg.store.base.Store` in one PostgreSQL database.

    ``url`` is a libpq URL (``postgresql://user@host:5432/db``).  Opening
    connects, creates ``schema`` when given, and creates or migrates the layout;
    failures (no server, refused login, a newer layout) raise
    :class:`StoreError`.  Use as a context manager or call :meth:`close`.
    """

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self.url = url
        self.path = redact(url)  # what messages name, like SQLiteStore.path
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise StoreError(f"schema {schema!r}: expected 1-63 of a-z 0-9 _, not a digit first")
        self.schema = schema
        self._closed = threading.Event()
        self._pool: ConnectionPool[Connection] | None = None
        try:
            if schema is not None:
                self._create_schema(schema)
            self._pool = ConnectionPool(
                url,
                min_size=1,
                max_size=_POOL_SIZE,
                open=False,
                timeout=_CONNECT_TIMEOUT_S,
                configure=self._configure,
                kwargs={"autocommit": True, "connect_timeout": int(_CONNECT_TIMEOUT_S)},
                name="edgecfg-store",
            )
            with self._translated("open"):
                self._pool.open(wait=True, timeout=_CONNECT_TIMEOUT_S)
            self._migrate()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled connection; idempotent."""
        self._closed.set()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    @property
    def layout_version(self) -> int:
        """The layout version recorded in the database's ``schema_version`` table."""
        with self._transaction("layout_version") as db:
            return _layout_version(db)

    def drop_schema(self) -> None:
        """Drop this store's PostgreSQL schema and everything in it (tests)."""
        # Only a schema this store was given, never the default one.
        if self.schema is None:
            raise StoreError("drop_schema: this store has no schema of its own")
        with (  # its own connection: it works after close() too
            self._translated("drop_schema"),
            psycopg.connect(
                self.url, autocommit=True, connect_timeout=int(_CONNECT_TIMEOUT_S)
            ) as db,
        ):
            db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(self.schema)))

    @contextmanager
    def serving_lock(self) -> Generator[None]:
        """Held while one gateway serves this database (a session advisory lock
        on a connection of its own), as ``DB.lock`` is for SQLite: until the
        change log and shared OSCORE state of several gateways exist, two
        gateways on one database would keep two replay windows per context."""
        with (
            self._translated("serving lock"),
            psycopg.connect(
                self.url, autocommit=True, connect_timeout=int(_CONNECT_TIMEOUT_S)
            ) as db,
        ):
            # one lock per database and schema (current_schema: set by the URL's options)
            key = _scalar(
                db,
                "SELECT hashtextextended('edgecfg serving ' || COALESCE(%s, current_schema()), 0)",
                (self.schema,),
            )
            if not _scalar(db, "SELECT pg_try_advisory_lock(%s)", (key,)):
                raise StoreError(f"{self.path}: another gateway is serving this database")
            try:
                yield
            finally:
                db.execute("SELECT pg_advisory_unlock(%s)", (key,))

    # -- connections, transactions and migrations ---------------------------

    def _create_schema(self, schema: str) -> None:
        with (
            self._translated("create schema"),
            psycopg.connect(
                self.url, autocommit=True, connect_timeout=int(_CONNECT_TIMEOUT_S)
            ) as db,
        ):
            db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))

    def _configure(self, connection: Connection) -> None:
        if self.schema is not None:
            connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))

    @contextmanager
    def _translated(self, operation: str) -> Generator[None]:
        try:
            yield
        except PoolTimeout as error:
            raise StoreError(
                f"{operation} on {self.path} failed: no connection within "
                f"{_CONNECT_TIMEOUT_S:.0f} s (is the server running and reachable?)"
            ) from error
        except psycopg.Error as error:
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
            raise StoreError(f"{operation} on {self.path} failed: {detail}") from error

    @contextmanager
    def _transaction(self, operation: str) -> Generator[Connection]:
        """Run the body as one transaction; the only place psycopg errors are caught."""
        pool = self._pool
        if pool is None or self._closed.is_set():
            raise StoreError(f"{operation} on {self.path} failed: store is closed")
        with self._translated(operation), pool.connection() as db, db.transaction():
            yield db

    def _migrate(self) -> None:
        with self._transaction("migrate") as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            current = _layout_version(db)
            if current > LAYOUT_VERSION:
                raise StoreError(
                    f"database {self.path} has layout version {current}, newer than version "
                    f"{LAYOUT_VERSION} that this edgecfg supports; open it with a newer edgecfg"
                )
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY)")
            for number in range(current + 1, LAYOUT_VERSION + 1):
                db.execute(cast(Any, MIGRATIONS[number - 1]))
                db.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))

    @staticmethod
    def _lock(db: Connection, *key: str) -> None:
        """A transaction-scoped advisory lock on ``key``: writers of one thing queue."""
        db.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("\x1f".join(key),))

    # -- schemas -----------------------------------------------------------

    def put_schema(self, name: str, version: int, document: bytes, *, now: float) -> SchemaRecord:
        """See :meth:`edgecfg.store.base.Store.put_schema`."""
        check_schema_version(version)
        document = bytes(document)
        with self._transaction("put_schema") as db:
            self._lock(db, "schema", name)
            row = db.execute(
                "SELECT document, created_at FROM schemas WHERE name = %s AND version = %s",
                (name, version),
            ).fetchone()
            if row is not None:
                if bytes(row[0]) != document:
                    raise schema_changed(name, version)
                return SchemaRecord(name, version, bytes(row[0]), float(row[1]))
            latest = _scalar(db, "SELECT MAX(version) FROM schemas WHERE name = %s", (name,))
            if latest is not None and version <= latest:
                raise schema_not_newer(name, version, int(latest))
            db.execute(
                "INSERT INTO schemas (name, version, document, created_at) VALUES (%s, %s, %s, %s)",
                (name, version, document, now),
            )
        return SchemaRecord(name, version, document, now)

    def get_schema(self, name: str, version: int | None = None) -> SchemaRecord:
        """See :meth:`edgecfg.store.base.Store.get_schema`."""
        query = "SELECT version, document, created_at FROM schemas WHERE name = %s"
        with self._transaction("get_schema") as db:
            if version is None:
                row = db.execute(query + " ORDER BY version DESC LIMIT 1", (name,)).fetchone()
            else:
                row = db.execute(query + " AND version = %s", (name, version)).fetchone()
        if row is None:
            raise NotFound("schema", name if version is None else f"{name} version {version}")
        return SchemaRecord(name, int(row[0]), bytes(row[1]), float(row[2]))

    def schema_versions(self, name: str) -> list[int]:
        """See :meth:`edgecfg.store.base.Store.schema_versions`."""
        with self._transaction("schema_versions") as db:
            rows = db.execute(
                "SELECT version FROM schemas WHERE name = %s ORDER BY version", (name,)
            ).fetchall()
        return [int(version) for (version,) in rows]

    def schema_names(self) -> list[str]:
        """See :meth:`edgecfg.store.base.Store.schema_names`."""
        with self._transaction("schema_names") as db:
            rows = db.execute("SELECT DISTINCT name FROM schemas ORDER BY name").fetchall()
        return [str(name) for (name,) in rows]

    # -- blobs -------------------------------------------------------------

    def put_blob(self, data: bytes) -> ETag:
        """See :meth:`edgecfg.store.base.Store.put_blob`."""
        data = bytes(data)
        etag = blob_etag(data)
        with self._transaction("put_blob") as db:
            inserted = db.execute(
                "INSERT INTO blobs (etag, data) VALUES (%s, %s) ON CONFLICT (etag) DO NOTHING",
                (etag, data),
            ).rowcount
            if not inserted:
                row = db.execute("SELECT data FROM blobs WHERE etag = %s", (etag,)).fetchone()
                if row is None or bytes(row[0]) != data:
                    raise blob_collision(etag)
        return etag

    def get_blob(self, etag: ETag) -> bytes:
        """See :meth:`edgecfg.store.base.Store.get_blob`."""
        with self._transaction("get_blob") as db:
            row = db.execute("SELECT data FROM blobs WHERE etag = %s", (bytes(etag),)).fetchone()
        if row is None:
            raise NotFound("blob", etag.hex())
        return bytes(row[0])

    def has_blob(self, etag: ETag) -> bool:
        """See :meth:`edgecfg.store.base.Store.has_blob`."""
        with self._transaction("has_blob") as db:
            return (
                db.execute("SELECT 1 FROM blobs WHERE etag = %s", (bytes(etag),)).fetchone()
                is not None
            )

    # -- telemetry ---------------------------------------------------------

    def append_telemetry(self, device: DeviceId, payload: bytes, *, now: float) -> None:
        """See :meth:`edgecfg.store.base.Store.append_telemetry`."""
        with self._transaction("append_telemetry") as db:
            db.execute(
                "INSERT INTO telemetry (device_id, time, payload) VALUES (%s, %s, %s)",
                (device, now, bytes(payload)),
            )

    def telemetry(self, device: DeviceId, *, limit: int = 100) -> list[tuple[float, bytes]]:
        """See :meth:`edgecfg.store.base.Store.telemetry`."""
        with self._transaction("telemetry") as db:
            rows = db.execute(
                "SELECT time, payload FROM telemetry WHERE device_id = %s "
                "ORDER BY time DESC LIMIT %s",
                (device, limit),
            ).fetchall()
        return [(float(row[0]), bytes(row[1])) for row in rows]

    # -- settings ----------------------------------------------------------

    def get_setting(self, key: str) -> bytes | None:
        """See :meth:`edgecfg.store.base.Store.get_setting`."""
        with self._transaction("get_setting") as db:
            row = db.execute("SELECT value FROM settings WHERE key = %s", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put_setting(self, key: str, value: bytes) -> None:
        """See :meth:`edgecfg.store.base.Store.put_setting`."""
        with self._transaction("put_setting") as db:
            db.execute(
                "INSERT INTO settings (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, bytes(value)),
            )
            if logs_change(key):
                _log(db, "setting", [key])

    # -- merges of offline changes -------------------------------------------

    def get_merge(self, device: DeviceId) -> MergeRecord | None:
        """See :meth:`edgecfg.store.base.Store.get_merge`."""
        with self._transaction("get_merge") as db:
            row = db.execute(
                "SELECT acknowledged, outcome FROM merges WHERE device_id = %s", (device,)
            ).fetchone()
        return None if row is None else MergeRecord(device, int(row[0]), bytes(row[1]))

    def put_merge(self, record: MergeRecord) -> None:
        """See :meth:`edgecfg.store.base.Store.put_merge`."""
        with self._transaction("put_merge") as db:
            db.execute(
                "INSERT INTO merges (device_id, acknowledged, outcome) VALUES (%s, %s, %s) "
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
        with self._transaction("append_layer_revision") as db:
            self._lock(db, "layer", layer)
            head = _scalar(
                db, "SELECT MAX(revision) FROM layer_revisions WHERE layer = %s", (layer,)
            )
            head = None if head is None else int(head)
            if parent != head:
                raise stale_parent(layer, parent, head)
            if (
                db.execute("SELECT 1 FROM blobs WHERE etag = %s", (bytes(content),)).fetchone()
                is None
            ):
                raise NotFound("blob", content.hex())
            revision = LayerRevision(layer, (head or 0) + 1, head, content, author, message, now)
            db.execute(
                f"INSERT INTO layer_revisions ({LAYER_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (layer, revision.revision, head, bytes(content), author, message, now),
            )
            _log(db, "layer", [layer])
        return revision

    def get_layer(self, layer: LayerId, revision: int | None = None) -> LayerRevision:
        """See :meth:`edgecfg.store.base.Store.get_layer`."""
        query = f"SELECT {LAYER_COLUMNS} FROM layer_revisions WHERE layer = %s"
        with self._transaction("get_layer") as db:
            if revision is None:
                row = db.execute(query + " ORDER BY revision DESC LIMIT 1", (layer,)).fetchone()
            else:
                row = db.execute(query + " AND revision = %s", (layer, revision)).fetchone()
                if row is None:
                    exists = db.execute(query + " LIMIT 1", (layer,)).fetchone() is not None
                    if exists:
                        raise NotFound("layer revision", f"{layer}@{revision}")
        if row is None:
            raise NotFound("layer", layer)
        return layer_revision(row)

    def layer_history(self, layer: LayerId) -> list[LayerRevision]:
        """See :meth:`edgecfg.store.base.Store.layer_history`."""
        with self._transaction("layer_history") as db:
            rows = db.execute(
                f"SELECT {LAYER_COLUMNS} FROM layer_revisions WHERE layer = %s ORDER BY revision",
                (layer,),
            ).fetchall()
        return [layer_revision(row) for row in rows]

    def layer_ids(self, prefix: str = "") -> list[LayerId]:
        """See :meth:`edgecfg.store.base.Store.layer_ids`."""
        with self._transaction("layer_ids") as db:
            rows = db.execute(
                "SELECT DISTINCT layer FROM layer_revisions "
                "WHERE left(layer, char_length(%s)) = %s ORDER BY layer",
                (prefix, prefix),
            ).fetchall()
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

        with self._transaction(operation) as db, db.cursor() as cursor:
            # Records stream into the open transaction; if iterating them fails,
            # the rollback drops them all.
            cursor.executemany(_UPSERT_DEVICE, rows())
            cursor.execute("DELETE FROM device_groups WHERE device_id = ANY(%s)", (list(groups),))
            cursor.executemany(
                "INSERT INTO device_groups (device_id, dimension, path) VALUES (%s, %s, %s)",
                [
                    (id, dimension, path)
                    for id, memberships in groups.items()
                    for dimension, path in memberships.items()
                ],
            )
            _log(db, "device", list(groups))

    def get_device(self, id: DeviceId) -> DeviceRecord:
        """See :meth:`edgecfg.store.base.Store.get_device`."""
        with self._transaction("get_device") as db:
            rows = db.execute(
                """
                SELECT d.id, d.hardware, d.firmware, d.agent_version, d.last_seen,
                       d.applied_etag, g.dimension, g.path
                FROM devices AS d LEFT JOIN device_groups AS g ON g.device_id = d.id
                WHERE d.id = %s
                """,
                (id,),
            ).fetchall()
        if not rows:
            raise NotFound("device", id)
        memberships = [(row[6], row[7]) for row in rows if row[6] is not None]
        return device_record(rows[0], memberships)

    def has_device(self, id: DeviceId) -> bool:
        """See :meth:`edgecfg.store.base.Store.has_device`."""
        with self._transaction("has_device") as db:
            return db.execute("SELECT 1 FROM devices WHERE id = %s", (id,)).fetchone() is not None

    def delete_device(self, id: DeviceId) -> None:
        """See :meth:`edgecfg.store.base.Store.delete_device`."""
        with self._transaction("delete_device") as db:
            db.execute("DELETE FROM device_groups WHERE device_id = %s", (id,))
            db.execute("DELETE FROM merges WHERE device_id = %s", (id,))
            if db.execute("DELETE FROM devices WHERE id = %s", (id,)).rowcount == 0:
                raise NotFound("device", id)
            _log(db, "device", [id])

    def count_devices(self) -> int:
        """See :meth:`edgecfg.store.base.Store.count_devices`."""
        with self._transaction("count_devices") as db:
            return int(_scalar(db, "SELECT COUNT(*) FROM devices", ()) or 0)

    def iter_devices(self, *, group: tuple[str, str] | None = None) -> Iterator[DeviceRecord]:
        """See :meth:`edgecfg.store.base.Store.iter_devices`.

        Reads pages of :data:`_PAGE` devices, one short read transaction each, so
        a long iteration never holds a transaction open between yields.
        """
        if self._pool is None:
            raise StoreError(f"iter_devices on {self.path} failed: store is closed")
        if group is None:
            return self._iter_all()
        check_group(*group)
        dimension, path = group
        with self._transaction("iter_devices") as db:
            rows = db.execute(
                GROUP_MEMBERS_SQL + " ORDER BY device_id", {"dimension": dimension, "path": path}
            ).fetchall()
        return self._iter_ids([str(id) for (id,) in rows])

    def _iter_all(self) -> Iterator[DeviceRecord]:
        after: str | None = None
        while True:
            with self._transaction("iter_devices") as db:
                if after is None:
                    rows = db.execute(
                        "SELECT id FROM devices ORDER BY id LIMIT %s", (_PAGE,)
                    ).fetchall()
                else:
                    rows = db.execute(
                        "SELECT id FROM devices WHERE id > %s ORDER BY id LIMIT %s", (after, _PAGE)
                    ).fetchall()
                page = _load_devices(db, [str(id) for (id,) in rows])
            yield from page
            if len(rows) < _PAGE:
                return
            after = str(rows[-1][0])

    def _iter_ids(self, ids: Sequence[str]) -> Iterator[DeviceRecord]:
        for start in range(0, len(ids), _PAGE):
            with self._transaction("iter_devices") as db:
                page = _load_devices(db, ids[start : start + _PAGE])
            yield from page

    def record_seen(self, id: DeviceId, *, now: float, applied_etag: ETag | None) -> None:
        """See :meth:`edgecfg.store.base.Store.record_seen`."""
        etag = None if applied_etag is None else bytes(applied_etag)
        with self._transaction("record_seen") as db:
            cursor = db.execute(
                "UPDATE devices SET last_seen = %s, applied_etag = %s WHERE id = %s",
                (now, etag, id),
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
        with self._transaction("enroll") as db:
            for role, name, sealed in items:
                self._lock(db, "credential", role, name)
                held = db.execute(
                    "SELECT kid FROM credentials WHERE role = %s AND name = %s "
                    "AND revoked_at IS NULL",
                    (role, name),
                ).fetchone()
                if held is not None:
                    raise already_enrolled(role, name, bytes(held[0]))
                number = int(_scalar(db, "SELECT nextval('credential_numbers')", ()) or 0)
                record = CredentialRecord(kid_for(number), role, name, bytes(sealed), now)
                db.execute(
                    "INSERT INTO credentials (number, kid, role, name, sealed, created_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (number, record.kid, role, name, record.sealed, now),
                )
                records.append(record)
        return records

    def credential(self, kid: bytes) -> CredentialRecord | None:
        """See :meth:`edgecfg.store.base.Store.credential`."""
        with self._transaction("credential") as db:
            row = db.execute(f"{CREDENTIAL_SELECT} WHERE kid = %s", (bytes(kid),)).fetchone()
        return None if row is None else credential_record(row)

    def active_credential(self, role: str, name: str) -> CredentialRecord | None:
        """See :meth:`edgecfg.store.base.Store.active_credential`."""
        with self._transaction("active_credential") as db:
            row = db.execute(
                f"{CREDENTIAL_SELECT} WHERE role = %s AND name = %s AND revoked_at IS NULL",
                (role, name),
            ).fetchone()
        return None if row is None else credential_record(row)

    def revoke(self, role: str, name: str, *, now: float) -> CredentialRecord:
        """See :meth:`edgecfg.store.base.Store.revoke`."""
        with self._transaction("revoke") as db:
            self._lock(db, "credential", role, name)
            row = db.execute(
                f"{CREDENTIAL_SELECT} WHERE role = %s AND name = %s AND revoked_at IS NULL",
                (role, name),
            ).fetchone()
            if row is None:
                raise NotFound(f"enrolled {role}", name)
            db.execute("UPDATE credentials SET revoked_at = %s WHERE kid = %s", (now, row[0]))
            # A counter, so that the gateway's once-a-second check is one row read.
            db.execute(
                "INSERT INTO settings (key, value) VALUES (%s, '\\x31') ON CONFLICT (key) "
                "DO UPDATE SET value = convert_to("
                "(convert_from(settings.value, 'UTF8')::bigint + 1)::text, 'UTF8')",
                (_REVOCATIONS,),
            )
            _log(db, "revocation", [f"{role}/{name}"])
        return replace(credential_record(row), revoked_at=now)

    def count_credentials(self, *, active: bool = True) -> int:
        """See :meth:`edgecfg.store.base.Store.count_credentials`."""
        where = " WHERE revoked_at IS NULL" if active else ""
        with self._transaction("count_credentials") as db:
            return int(_scalar(db, f"SELECT COUNT(*) FROM credentials{where}", ()) or 0)

    def revocations(self) -> int:
        """See :meth:`edgecfg.store.base.Store.revocations`."""
        value = self.get_setting(_REVOCATIONS)
        return 0 if value is None else int(value.decode("ascii"))

    # -- change log --------------------------------------------------------

    def changes_since(self, seq: int, *, limit: int = 10_000) -> list[Change]:
        """See :meth:`edgecfg.store.base.Store.changes_since`."""
        with self._transaction("changes_since") as db:
            rows = db.execute(
                "SELECT seq, kind, key FROM changes WHERE seq > %s ORDER BY seq LIMIT %s",
                (seq, limit),
            ).fetchall()
        return [Change(int(row[0]), cast(ChangeKind, row[1]), str(row[2])) for row in rows]

    def last_change(self) -> int:
        """See :meth:`edgecfg.store.base.Store.last_change`."""
        with self._transaction("last_change") as db:
            return int(_scalar(db, "SELECT COALESCE(MAX(seq), 0) FROM changes", ()) or 0)

    def check_writable(self) -> None:
        """See :meth:`edgecfg.store.base.Store.check_writable`: an update that
        matches no row still needs write access (a read-only role or a
        standby server refuses it), and changes nothing."""
        with self._transaction("check_writable") as db:
            db.execute("UPDATE schema_version SET version = version WHERE false")

    def oscore_state(self, kid: bytes) -> OscoreState | None:
        """See :meth:`edgecfg.store.base.Store.oscore_state`."""
        with self._transaction("oscore_state") as db:
            row = db.execute(
                'SELECT next_to_send, "window" FROM oscore_state WHERE kid = %s', (bytes(kid),)
            ).fetchone()
        if row is None:
            return None
        return OscoreState(int(row[0]), None if row[1] is None else bytes(row[1]))

    def put_oscore_states(self, states: Iterable[tuple[bytes, OscoreState]]) -> None:
        """See :meth:`edgecfg.store.base.Store.put_oscore_states`.

        ``next_to_send`` never goes down (``GREATEST``), so a stale writer cannot
        hand out a reserved sequence number again; the commit is durable before
        the numbers are used.
        """
        rows = [(bytes(kid), s.next_to_send, s.window) for kid, s in states]
        if not rows:
            return
        with self._transaction("put_oscore_states") as db, db.cursor() as cursor:
            cursor.executemany(
                'INSERT INTO oscore_state (kid, next_to_send, "window") VALUES (%s, %s, %s) '
                "ON CONFLICT (kid) DO UPDATE SET "
                "next_to_send = GREATEST(oscore_state.next_to_send, excluded.next_to_send), "
                '"window" = excluded."window"',
                rows,
            )


def _log(db: Connection, kind: ChangeKind, keys: Sequence[str]) -> None:
    """Append to the change log inside the caller's transaction.

    The lock serialises appenders until they commit, so ``seq`` order is
    commit order; the NOTIFY reaches listening gateways at commit.
    """
    if not keys:
        return
    db.execute("SELECT pg_advisory_xact_lock(%s)", (_CHANGES_LOCK,))
    with db.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO changes (kind, key) VALUES (%s, %s)", [(kind, key) for key in keys]
        )
    db.execute("NOTIFY edgecfg_changes")


def _scalar(db: Connection, query: str, params: Sequence[object]) -> Any:
    row = db.execute(cast(Any, query), params).fetchone()
    return None if row is None else row[0]


def _layout_version(db: Connection) -> int:
    """The version in ``schema_version``; 0 for a database without that table."""
    exists = _scalar(db, "SELECT to_regclass('schema_version')", ())
    if exists is None:
        return 0
    return int(_scalar(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version", ()) or 0)


def _load_devices(db: Connection, ids: Sequence[str]) -> list[DeviceRecord]:
    """Load the devices ``ids`` (at most :data:`_PAGE`) in that order, skipping gone ones."""
    if not ids:
        return []
    rows = db.execute(
        f"SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ANY(%s)", (list(ids),)
    ).fetchall()
    by_id = {str(row[0]): row for row in rows}
    memberships: dict[str, list[tuple[str, str]]] = {}
    for device_id, dimension, path in db.execute(
        "SELECT device_id, dimension, path FROM device_groups WHERE device_id = ANY(%s)",
        (list(ids),),
    ).fetchall():
        memberships.setdefault(device_id, []).append((dimension, path))
    return [device_record(by_id[id], memberships.get(id, ())) for id in ids if id in by_id]
