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
- Several gateways serve one database: every change-log append sends
  ``NOTIFY edgecfg_changes`` at commit, and :meth:`PostgresStore.listen_changes`
  wakes a gateway's change-log read at once (:class:`ChangeListener`); the
  listening connection also elects the one gateway that drives rollouts.
- Commits are durable (PostgreSQL's default ``synchronous_commit = on``), which
  is what credentials and OSCORE sequence-number reservations need.
- The queries and row mappings are :class:`~edgecfg.store.sql.SQLStore`'s,
  shared with SQLite (rewritten to psycopg's ``%s`` once per query); this
  module keeps the pool, transactions, advisory locks, the change log's
  ``NOTIFY``, key-id numbering by a sequence, and migrations.

``schema=`` puts every table in that PostgreSQL schema (created if missing):
the tests give each test its own and drop it afterwards.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from edgecfg.errors import StoreError
from edgecfg.store.base import ChangeKind
from edgecfg.store.postgres_layout import LAYOUT_VERSION, MIGRATIONS
from edgecfg.store.sql import (
    INSERT_CHANGE,
    Params,
    SQLStore,
    Transaction,
    closed,
)

__all__ = [
    "CHANGES_CHANNEL",
    "LAYOUT_VERSION",
    "OSCORE_CHANNEL",
    "ChangeListener",
    "PostgresStore",
    "is_initialised",
    "redact",
]  # fmt: skip

log = logging.getLogger("edgecfg.store.postgres")

CHANGES_CHANNEL = "edgecfg_changes"
"""The LISTEN/NOTIFY channel of the change log (one per database)."""
OSCORE_CHANNEL = "edgecfg_oscore"
"""The channel on which a gateway announces an OSCORE context it loaded."""

_POOL_SIZE = 4
_CONNECT_TIMEOUT_S = 10.0
_MIGRATION_LOCK = 0x6564676563666701  # advisory lock keys: "edgecfg" + 1, + 3
_CHANGES_LOCK = 0x6564676563666703
_LISTEN_POLL_S = 0.5  # how soon a listener notices close()
_LISTEN_BACKOFF_S = (0.1, 5.0)  # reconnect delays: first, most
_TRY_LEAD = ("SELECT pg_try_advisory_lock(hashtextextended("
             "'edgecfg leader ' || COALESCE(%s, current_schema()), 0))")  # fmt: skip
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

Connection = psycopg.Connection[tuple[Any, ...]]


def is_initialised(url: str) -> bool:
    """Whether the database at ``url`` holds an edgecfg layout (without creating one)."""
    try:
        with _connect(url) as db:
            return _scalar(db, "SELECT to_regclass('schema_version')", ()) is not None
    except psycopg.Error as error:
        raise StoreError(f"open {redact(url)} failed: {_detail(error)}") from error


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


class PostgresStore(SQLStore):
    """A :class:`~edgecfg.store.base.Store` in one PostgreSQL database.

    ``url`` is a libpq URL (``postgresql://user@host:5432/db``).  Opening
    connects, creates ``schema`` when given, and creates or migrates the layout;
    failures (no server, refused login, a newer layout) raise
    :class:`StoreError`.  Use as a context manager or call :meth:`close`.
    """

    _HAS_LAYOUT = "SELECT 1 WHERE to_regclass('schema_version') IS NOT NULL"

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

    def close(self) -> None:
        """Close every pooled connection; idempotent."""
        self._closed.set()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def drop_schema(self) -> None:
        """Drop this store's PostgreSQL schema and everything in it (tests)."""
        # Only a schema this store was given, never the default one.
        if self.schema is None:
            raise StoreError("drop_schema: this store has no schema of its own")
        with self._unpooled("drop_schema") as db:  # works after close() too
            db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(self.schema)))

    def listen_changes(
        self,
        wake: Callable[[], None],
        *,
        on_loaded: Callable[[str], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> ChangeListener:
        """Call ``wake`` (from a thread of its own) whenever a writer commits to
        the change log, and after every (re)connect of the listening
        connection: see :class:`ChangeListener`.  Its ``leader`` says whether
        this process is the one of the database's (and schema's) gateways that
        drives the rollouts.  ``on_loaded`` gets the payload of every
        :meth:`announce_loaded`; ``on_reconnect`` is called after every
        connect but the first (announcements sent meanwhile were missed).
        Stop it with ``close()``."""
        return ChangeListener(
            self.url, wake, schema=self.schema, on_loaded=on_loaded, on_reconnect=on_reconnect
        )

    def announce_loaded(self, payload: str) -> None:
        """Tell every listening gateway that one loaded an OSCORE context
        (``payload``: the loader and the key id), so the others drop theirs
        and recover its replay window with Echo when the peer comes back."""
        with self._transaction("announce_loaded", write=True) as transaction:
            # scoped by schema: fleets in other schemas of the database ignore it
            transaction.connection.execute(
                "SELECT pg_notify(%s, %s)", (OSCORE_CHANNEL, f"{self.schema or ''}/{payload}")
            )

    # -- connections, transactions and migrations ---------------------------

    def _create_schema(self, schema: str) -> None:
        with self._unpooled("create schema") as db:
            db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))

    @contextmanager
    def _unpooled(self, operation: str) -> Generator[Connection]:
        """A connection of its own, outside the pool."""
        with self._translated(operation), _connect(self.url) as db:
            yield db

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
            raise StoreError(f"{operation} on {self.path} failed: {_detail(error)}") from error

    def _is_open(self) -> bool:
        return self._pool is not None and not self._closed.is_set()

    @contextmanager
    def _transaction(self, operation: str, *, write: bool) -> Generator[PostgresTransaction]:
        """Run the body as one transaction; the only place psycopg errors are caught.

        Reads and writes alike: commits are durable, and writers that modify
        one thing queue on :meth:`PostgresTransaction.claim`."""
        pool = self._pool
        if pool is None or self._closed.is_set():
            raise closed(self.path, operation)
        with self._translated(operation), pool.connection() as db, db.transaction():
            yield PostgresTransaction(db)

    def _migrate(self) -> None:
        with self._transaction("migrate", write=True) as transaction:
            db = transaction.connection
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            current = self._layout_version(transaction)
            self._check_layout(current, LAYOUT_VERSION)
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY)")
            for number in range(current + 1, LAYOUT_VERSION + 1):
                db.execute(cast(Any, MIGRATIONS[number - 1]))
                db.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))


def _connect(url: str) -> Connection:
    """A connection outside the pool, in autocommit mode."""
    return psycopg.connect(url, autocommit=True, connect_timeout=int(_CONNECT_TIMEOUT_S))


def _detail(error: psycopg.Error) -> str:
    """The first line of a psycopg error: without the server's context lines."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _scalar(db: Connection, query: str, params: Sequence[object]) -> Any:
    row = db.execute(cast(Any, query), params).fetchone()
    return None if row is None else row[0]


class PostgresTransaction(Transaction):
    """A :class:`~edgecfg.store.sql.Transaction` on a pooled psycopg connection
    inside ``db.transaction()``."""

    __slots__ = ("connection",)

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def execute(self, query: str, params: Params = ()) -> psycopg.Cursor[tuple[Any, ...]]:
        return self.connection.execute(_psycopg(query), params)

    def among(self, values: Sequence[str]) -> tuple[str, Params]:
        """``= ANY(?)`` with one array: one query text for any number of values,
        so the server plans it once."""
        return "= ANY(?)", (list(values),)

    def run_many(self, query: str, rows: Iterable[Sequence[object]]) -> None:
        with self.connection.cursor() as cursor:
            cursor.executemany(_psycopg(query), rows)

    def claim(self, *key: str) -> None:
        """A transaction-scoped advisory lock on ``key``: writers of one thing
        queue, across processes."""
        self.connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("\x1f".join(key),)
        )

    def log(self, kind: ChangeKind, keys: Sequence[str]) -> None:
        """The lock serialises appenders until they commit, so ``seq`` order is
        commit order; the NOTIFY reaches listening gateways at commit."""
        if not keys:
            return
        self.connection.execute("SELECT pg_advisory_xact_lock(%s)", (_CHANGES_LOCK,))
        self.run_many(INSERT_CHANGE, [(kind, key) for key in keys])
        self.connection.execute(f"NOTIFY {CHANGES_CHANNEL}")

    def count_up(self, key: str) -> None:
        # The value is decimal digits as bytes (bytea), like every setting here.
        self.connection.execute(
            "INSERT INTO settings (key, value) VALUES (%s, '\\x31') ON CONFLICT (key) "
            "DO UPDATE SET value = convert_to("
            "(convert_from(settings.value, 'UTF8')::bigint + 1)::text, 'UTF8')",
            (key,),
        )

    def credential_numbers(self) -> Iterator[int]:
        # A sequence never goes back, even when a transaction rolls back.
        while True:
            yield int(_scalar(self.connection, "SELECT nextval('credential_numbers')", ()))


_MARK = re.compile(r"\?|(?<!:):([a-z_]+)")


@functools.lru_cache(maxsize=1024)
def _psycopg(query: str) -> Any:
    """``query`` in psycopg's parameter style: ``?`` as ``%s``, ``:name`` as
    ``%(name)s`` (see :mod:`edgecfg.store.sql`).  ``Any``: psycopg's stubs
    want a literal string, and the shared queries are trusted text."""
    return _MARK.sub(lambda mark: "%s" if mark[1] is None else f"%({mark[1]})s", query)


class ChangeListener:
    """A thread that listens on :data:`CHANGES_CHANNEL` with a connection of
    its own and calls ``wake`` for each notification (several at once: one
    call).

    ``wake`` is also called after every connect, the first included: a
    notification sent while the listener was not connected is lost, so the
    reader catches up by sequence (``changes_since``), and nothing committed
    meanwhile is missed.  A lost connection is retried with doubling delays
    (0.1 s to 5 s), logged once per outage.  ``wake`` must be quick and
    thread-safe (``loop.call_soon_threadsafe``).

    **Leadership.** The listening connection also tries, every poll, to take
    a session advisory lock named for the database and ``schema`` (default:
    the connection's ``current_schema()``): :attr:`leader` is true while it
    holds it.  Of several gateways exactly one leads; when its process dies or
    its connection breaks the server releases the lock and another takes it
    within a poll (0.5 s).  The gateway drives rollouts only while leading.
    """

    def __init__(
        self,
        url: str,
        wake: Callable[[], None],
        *,
        schema: str | None = None,
        on_loaded: Callable[[str], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self._on_loaded = on_loaded
        self._on_reconnect = on_reconnect
        self.schema = schema
        self.leader = False
        self.connects = 0  # how many times it (re)connected
        self.backend_pid: int | None = None  # of the listening connection, while connected
        self._wake = wake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgecfg-listen", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop listening; returns once the thread ended (or after ``timeout``)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        delay = _LISTEN_BACKOFF_S[0]
        failing = False
        while not self._stop.is_set():
            try:
                self._listen()
            except (psycopg.Error, OSError) as error:
                if not failing:
                    log.warning("listening for changes on %s: %s; reconnecting",
                                redact(self.url), _detail(error) if isinstance(
                                    error, psycopg.Error) else error)  # fmt: skip
                failing = True
            else:
                return  # closed
            finally:
                self.backend_pid = None
                self.leader = False  # the server released the lock with the session
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, _LISTEN_BACKOFF_S[1])

    def _listen(self) -> None:
        # TCP keepalives: a dead server or a cut link shows within ~10 s, not hours
        with psycopg.connect(
            self.url, autocommit=True, connect_timeout=int(_CONNECT_TIMEOUT_S),
            keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
        ) as db:  # fmt: skip
            db.execute(f"LISTEN {CHANGES_CHANNEL}")
            if self._on_loaded is not None:
                db.execute(f"LISTEN {OSCORE_CHANNEL}")
            self.backend_pid = db.info.backend_pid
            self.connects += 1
            if self.connects > 1 and self._on_reconnect is not None:
                self._safely(self._on_reconnect)
            self._call_wake()  # catch up on what was committed while not listening
            while not self._stop.is_set():
                if not self.leader:
                    self.leader = bool(_scalar(db, _TRY_LEAD, (self.schema,)))
                # the rest of a burst of changes is read by the one refresh it wakes
                notes = list(db.notifies(timeout=_LISTEN_POLL_S, stop_after=1))
                for note in notes:
                    if note.channel == OSCORE_CHANNEL and self._on_loaded is not None:
                        scope, _, payload = note.payload.partition("/")
                        if scope == (self.schema or ""):  # this fleet's, not another schema's
                            self._call(self._on_loaded, payload)
                if any(note.channel == CHANGES_CHANNEL for note in notes):
                    self._call_wake()

    def _call(self, callback: Callable[[str], None], payload: str) -> None:
        self._safely(lambda: callback(payload))

    def _call_wake(self) -> None:
        self._safely(self._wake)

    @staticmethod
    def _safely(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:  # the listener outlives a failing callback
            log.exception("change listener callback failed")
