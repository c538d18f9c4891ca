"""Gateway persistence: the :class:`Store` protocol and its implementations.

- :class:`SQLiteStore` — the default, one SQLite file (WAL, migrations).
- :class:`MemoryStore` — dictionaries, for tests and simulations.

Only this package imports ``sqlite3``.
"""

from edgecfg.store.base import (
    CredentialRecord,
    DeviceRecord,
    Groups,
    LayerRevision,
    OscoreState,
    SchemaRecord,
    Store,
    blob_etag,
    in_group,
)
from edgecfg.store.memory import MemoryStore
from edgecfg.store.sqlite import SQLiteStore

__all__ = [
    "CredentialRecord",
    "DeviceRecord",
    "Groups",
    "LayerRevision",
    "MemoryStore",
    "OscoreState",
    "SQLiteStore",
    "SchemaRecord",
    "Store",
    "blob_etag",
    "in_group",
]
