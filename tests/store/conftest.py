"""The stores the contract tests run on (``store``: memory, SQLite in memory
and in a file, PostgreSQL), and PostgreSQL for the store tests: the server
the machines run, each test in its own schema, dropped afterwards.  Without
a reachable server the PostgreSQL tests skip with one clear reason (never
silently)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgecfg.store import MemoryStore, PostgresStore, SQLiteStore, Store
from tests.store.helpers import postgres_store


@pytest.fixture
def postgres() -> Iterator[PostgresStore]:
    store = postgres_store()
    try:
        yield store
    finally:
        store.drop_schema()
        store.close()


StoreFactory = Callable[[Path], Store]

FACTORIES: dict[str, StoreFactory] = {
    "memory": lambda _: MemoryStore(),
    "sqlite-memory": lambda _: SQLiteStore(":memory:"),
    "sqlite-file": lambda tmp: SQLiteStore(tmp / "store.db"),
    "postgres": lambda _: postgres_store(),
}


@pytest.fixture(params=sorted(FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = FACTORIES[request.param](tmp_path)
    try:
        yield opened
    finally:
        if isinstance(opened, PostgresStore):
            opened.drop_schema()
        opened.close()
