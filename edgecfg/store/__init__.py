"""Gateway persistence: the :class:`Store` protocol and its implementations.

- :class:`SQLiteStore` — the default, one SQLite file (WAL, migrations).
- :class:`PostgresStore` — PostgreSQL (psycopg 3), for fleets served by
  several gateways; chosen by a ``postgresql://`` URL (:func:`open_store`).
- :class:`MemoryStore` — dictionaries, for tests and simulations.

Only this package imports ``sqlite3`` and ``psycopg``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from edgecfg.store.base import (
    BadVersion,
    CredentialRecord,
    DeviceRecord,
    Groups,
    LayerRevision,
    MergeRecord,
    OscoreState,
    RolloutDevice,
    RolloutEntry,
    RolloutRecord,
    SchemaRecord,
    Store,
    TelemetryBatch,
    TelemetryRow,
    blob_etag,
    in_group,
)
from edgecfg.store.memory import MemoryStore
from edgecfg.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from edgecfg.store.postgres import PostgresStore, is_initialised, redact

URL_SCHEMES: Final = ("postgresql://", "postgres://")
_POSTGRES: Final = frozenset({"PostgresStore", "is_initialised", "redact"})


def is_postgres_url(text: str) -> bool:
    """Whether ``--db`` names a PostgreSQL database rather than a SQLite file."""
    return text.startswith(URL_SCHEMES)


def __getattr__(name: str) -> object:
    """The PostgreSQL names, imported when first asked for: psycopg costs a
    third of a second to import, which a SQLite user need not pay."""
    if name in _POSTGRES:
        from edgecfg.store import postgres

        return getattr(postgres, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(db: str) -> SQLiteStore | PostgresStore:
    """The store ``db`` names: a ``postgresql://`` URL, else a SQLite file path."""
    if is_postgres_url(db):
        from edgecfg.store.postgres import PostgresStore

        return PostgresStore(db)
    return SQLiteStore(db)


__all__ = [
    "BadVersion",
    "CredentialRecord",
    "DeviceRecord",
    "Groups",
    "LayerRevision",
    "MemoryStore",
    "MergeRecord",
    "OscoreState",
    "PostgresStore",
    "RolloutDevice",
    "RolloutEntry",
    "RolloutRecord",
    "SQLiteStore",
    "SchemaRecord",
    "Store",
    "TelemetryBatch",
    "TelemetryRow",
    "blob_etag",
    "in_group",
    "is_initialised",
    "is_postgres_url",
    "open_store",
    "redact",
]
