"""A bounded, crash-safe queue of messages on disk (SQLite): the MQTT bridge's
outbox, so a broker outage loses nothing up to the bound.

- :meth:`Outbox.put` appends; beyond ``max_messages`` the *oldest* messages
  are dropped (the newest telemetry and events matter most) and counted in
  :attr:`Outbox.dropped`, which survives restarts.
- :meth:`Outbox.peek` returns the oldest messages without removing them;
  :meth:`Outbox.ack` removes them once the broker confirmed them (MQTT QoS 1
  PUBACK), so a crash between the two publishes them again: at least once.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from edgecfg.errors import StoreError

_LAYOUT = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO outbox_meta (key, value) VALUES ('dropped', 0);
"""


@dataclass(frozen=True, slots=True)
class Queued:
    """One message waiting for the broker."""

    id: int
    topic: str
    payload: bytes


class Outbox:
    """A bounded FIFO of ``(topic, payload)`` in the SQLite file ``path``."""

    def __init__(self, path: str | os.PathLike[str], *, max_messages: int) -> None:
        if max_messages < 1:
            raise StoreError(f"outbox bound {max_messages}: must be at least 1")
        self.path = os.fspath(path)
        self.max_messages = max_messages
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(_LAYOUT)
        except sqlite3.Error as error:
            raise StoreError(f"outbox {self.path}: {error}") from error

    def close(self) -> None:
        """Close the file; idempotent."""
        with self._lock:
            self._db.close()

    def put(self, topic: str, payload: bytes) -> None:
        """Append a message, dropping (and counting) the oldest beyond the bound."""
        with self._lock, self._translated("put"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO outbox (topic, payload) VALUES (?, ?)", (topic, bytes(payload))
                )
                (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
                excess = int(count) - self.max_messages
                if excess > 0:
                    self._db.execute(
                        "DELETE FROM outbox WHERE id IN "
                        "(SELECT id FROM outbox ORDER BY id LIMIT ?)",
                        (excess,),
                    )
                    self._db.execute(
                        "UPDATE outbox_meta SET value = value + ? WHERE key = 'dropped'", (excess,)
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def peek(self, limit: int) -> list[Queued]:
        """The oldest ``limit`` messages, oldest first."""
        with self._lock, self._translated("peek"):
            rows = self._db.execute(
                "SELECT id, topic, payload FROM outbox ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [Queued(int(row[0]), str(row[1]), bytes(row[2])) for row in rows]

    def ack(self, ids: Sequence[int]) -> None:
        """Remove messages the broker confirmed."""
        if not ids:
            return
        with self._lock, self._translated("ack"):
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(id,) for id in ids])

    def __len__(self) -> int:
        with self._lock, self._translated("count"):
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    @property
    def dropped(self) -> int:
        """Messages dropped because the outbox was full, ever."""
        with self._lock, self._translated("dropped"):
            row = self._db.execute("SELECT value FROM outbox_meta WHERE key = 'dropped'").fetchone()
        return int(row[0])

    def _translated(self, operation: str) -> _Translated:
        return _Translated(f"outbox {operation} on {self.path}")


class _Translated:
    """sqlite3 errors become :class:`StoreError` naming the operation."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        if isinstance(error, sqlite3.Error):
            raise StoreError(f"{self.what} failed: {error}") from error
