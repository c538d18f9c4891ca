"""PostgreSQL for the tests: the server the machines run, each test in its own
schema.  Without a reachable server the PostgreSQL tests skip with one clear
reason (never silently)."""

from __future__ import annotations

import os
import uuid
from functools import cache

import pytest

from edgecfg.errors import StoreError
from edgecfg.store import PostgresStore

POSTGRES_URL = os.environ.get("EDGECFG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
"""The test server ($EDGECFG_TEST_POSTGRES overrides it)."""


@cache
def postgres_unreachable() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when they can."""
    try:
        with PostgresStore(POSTGRES_URL, schema=f"probe_{uuid.uuid4().hex[:12]}") as probe:
            probe.drop_schema()
    except StoreError as error:
        return f"PostgreSQL at {POSTGRES_URL} is not reachable ({error}); set EDGECFG_TEST_POSTGRES"
    return None


def postgres_store() -> PostgresStore:
    """A store in a new schema of its own; skips the test without a server."""
    reason = postgres_unreachable()
    if reason is not None:
        pytest.skip(reason)
    return PostgresStore(POSTGRES_URL, schema=f"t_{uuid.uuid4().hex[:16]}")
