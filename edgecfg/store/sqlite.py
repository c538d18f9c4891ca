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
- The queries and row mappings are :class:`~edgecfg.store.sql.SQLStore`'s,
  shared with PostgreSQL; this module keeps the connection, transactions,
  durability (``synchronous = FULL`` for credentials and nonces) and migrations.

A store may be shared between threads; calls are serialised by a lock.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager

from edgecfg.errors import StoreError
from edgecfg.store.base import ChangeKind
from edgecfg.store.layout import LAYOUT_VERSION, MIGRATIONS
from edgecfg.store.sql import (
    GROUP_MEMBERS_SQL,
    INSERT_CHANGE,
    Params,
    SQLStore,
    Transaction,
    closed,
)

__all__ = ["GROUP_MEMBERS_SQL", "LAYOUT_VERSION", "MIGRATIONS", "SQLiteStore"]

CACHE_KIB = 64 * 1024
"""SQLite's page cache per connection, in KiB (its default is 2 MiB)."""


class SQLiteStore(SQLStore):
    """A :class:`~edgecfg.store.base.Store` in one SQLite database.

    ``path`` is a file path or ``":memory:"``.  Opening creates or migrates the
    database; failures (unreadable file, not a database, a newer layout) raise
    :class:`StoreError`.  Use as a context manager or call :meth:`close`.
    """

    _HAS_LAYOUT = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"

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
                # SQLite's default page cache is 2 MiB; a 100k-device database
                # is hundreds, and every random device touched (a telemetry
                # state, a raw pack's index entry) then costs a read from the
                # OS; pages are allocated only as used
                connection.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            self._migrate()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the database (checkpointing the WAL); idempotent."""
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database file and empty it (what
        the file then holds is what the data takes: benchmarks measure it)."""
        with self._lock, self._translated("checkpoint"):
            connection = self._connection
            if connection is None:
                raise StoreError(f"{self.path}: the store is closed")
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    # -- transactions and migrations ----------------------------------------

    @contextmanager
    def _translated(self, operation: str) -> Generator[None, None, None]:
        try:
            yield
        except sqlite3.Error as error:
            raise StoreError(f"{operation} on {self.path} failed: {error}") from error

    def _is_open(self) -> bool:
        return self._connection is not None

    @contextmanager
    def _transaction(
        self, operation: str, *, write: bool
    ) -> Generator[SQLiteTransaction, None, None]:
        """Run the body as one transaction; the only place sqlite3 errors are caught."""
        with self._lock, self._translated(operation):
            db = self._connection
            if db is None:
                raise closed(self.path, operation)
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield SQLiteTransaction(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _migrate(self) -> None:
        with self._transaction("read layout version", write=False) as transaction:
            current = self._layout_version(transaction)
        self._check_layout(current, LAYOUT_VERSION)
        for number in range(current + 1, LAYOUT_VERSION + 1):
            with self._transaction(
                f"migrate to layout version {number}", write=True
            ) as transaction:
                db = transaction.connection
                if self._layout_version(transaction) >= number:
                    continue  # another process migrated since we looked
                db.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)"
                )
                for statement in _statements(MIGRATIONS[number - 1]):
                    db.execute(statement)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))

    @contextmanager
    def _durable(self, operation: str) -> Generator[Transaction, None, None]:
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


class SQLiteTransaction(Transaction):
    """A :class:`~edgecfg.store.sql.Transaction` on a ``sqlite3`` connection
    inside ``BEGIN`` (reads) or ``BEGIN IMMEDIATE`` (writes)."""

    __slots__ = ("connection",)

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def execute(self, query: str, params: Params = ()) -> sqlite3.Cursor:
        return self.connection.execute(query, params)

    def run_many(self, query: str, rows: Iterable[Sequence[object]]) -> None:
        self.connection.executemany(query, rows)

    def claim(self, *key: str) -> None:
        """Nothing to do: a write transaction (``BEGIN IMMEDIATE``) already
        holds the database's one write lock."""

    def log(self, kind: ChangeKind, keys: Sequence[str]) -> None:
        # Writers hold the write lock until they commit: seq order is commit order.
        self.connection.executemany(INSERT_CHANGE, ((kind, key) for key in keys))

    def count_up(self, key: str) -> None:
        self.connection.execute(
            "INSERT INTO settings (key, value) VALUES (?, '1') ON CONFLICT (key) "
            "DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
            (key,),
        )

    def credential_numbers(self) -> Iterator[int]:
        # AUTOINCREMENT's high-water mark: numbers of deleted rows stay spent.
        row = self.connection.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'credentials'"
        ).fetchone()
        return itertools.count(1 if row is None else int(row[0]) + 1)


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
