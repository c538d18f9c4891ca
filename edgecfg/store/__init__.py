"""Gateway persistence: the :class:`Store` protocol and its implementations.

- :class:`SQLiteStore` — the default, one SQLite file (WAL, migrations).
- :class:`PostgresStore` — PostgreSQL (psycopg 3), for fleets served by
  several gateways; chosen by a ``postgresql://`` URL (:func:`open_store`).
- :class:`MemoryStore` — dictionaries, for tests and simulations.

Only this package imports ``sqlite3`` and ``psycopg``.
"""

from edgecfg.store.base import (
    CredentialRecord,
    DeviceRecord,
    Groups,
    LayerRevision,
    MergeRecord,
    OscoreState,
    SchemaRecord,
    Store,
    blob_etag,
    in_group,
)
from edgecfg.store.memory import MemoryStore
from edgecfg.store.postgres import PostgresStore, is_initialised, is_postgres_url, redact
from edgecfg.store.sqlite import SQLiteStore


def open_store(db: str) -> SQLiteStore | PostgresStore:
    """The store ``db`` names: a ``postgresql://`` URL, else a SQLite file path."""
    return PostgresStore(db) if is_postgres_url(db) else SQLiteStore(db)


__all__ = [
    "CredentialRecord",
    "DeviceRecord",
    "Groups",
    "LayerRevision",
    "MemoryStore",
    "MergeRecord",
    "OscoreState",
    "PostgresStore",
    "SQLiteStore",
    "SchemaRecord",
    "Store",
    "blob_etag",
    "in_group",
    "is_initialised",
    "is_postgres_url",
    "open_store",
    "redact",
]
