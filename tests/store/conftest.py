"""PostgreSQL for the store tests: the server the machines run, each test in its
own schema, dropped afterwards.  Without a reachable server the PostgreSQL
tests skip with one clear reason (never silently)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgecfg.store import PostgresStore
from tests.store.helpers import postgres_store


@pytest.fixture
def postgres() -> Iterator[PostgresStore]:
    store = postgres_store()
    try:
        yield store
    finally:
        store.drop_schema()
        store.close()
