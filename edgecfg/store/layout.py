"""The SQLite layout of the gateway store: migrations and the queries that
depend on its indexes.  Only :mod:`edgecfg.store.sqlite` uses it."""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: schemas, content-addressed blobs, layer revision histories.
    """
    CREATE TABLE schemas (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        document BLOB NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE blobs (
        etag BLOB PRIMARY KEY CHECK (length(etag) = 8),
        data BLOB NOT NULL
    );
    CREATE TABLE layer_revisions (
        layer TEXT NOT NULL,
        revision INTEGER NOT NULL CHECK (revision >= 1),
        parent INTEGER,
        content BLOB NOT NULL REFERENCES blobs (etag),
        author TEXT NOT NULL,
        message TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (layer, revision)
    ) WITHOUT ROWID;
    """,
    # 2: the device registry, with group membership indexed for range scans.
    """
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        hardware TEXT, firmware TEXT, agent_version TEXT,
        last_seen REAL, applied_etag BLOB
    ) WITHOUT ROWID;
    CREATE TABLE device_groups (
        device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        dimension TEXT NOT NULL,
        path TEXT NOT NULL,
        PRIMARY KEY (device_id, dimension)
    ) WITHOUT ROWID;
    CREATE INDEX device_groups_by_group ON device_groups (dimension, path);
    """,
    # 3: fleet-wide settings (dimension order, the fleet's schema).
    """
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) WITHOUT ROWID;
    """,
    # 4: telemetry packs as devices reported them (analysis reads them later).
    """
    CREATE TABLE telemetry (
        device_id TEXT NOT NULL,
        time REAL NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE INDEX telemetry_by_device ON telemetry (device_id, time);
    """,
    # 5: OSCORE credentials (secrets sealed under the operator master key) and
    # each security context's sequence number and replay window.  ``number`` is
    # AUTOINCREMENT so a key id is never handed out twice, even after deletes.
    """
    CREATE TABLE credentials (
        number INTEGER PRIMARY KEY AUTOINCREMENT,
        kid BLOB NOT NULL UNIQUE,
        role TEXT NOT NULL,
        name TEXT NOT NULL,
        sealed BLOB NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE UNIQUE INDEX credentials_active ON credentials (role, name)
        WHERE revoked_at IS NULL;
    CREATE TABLE oscore_state (
        kid BLOB PRIMARY KEY,
        next_to_send INTEGER NOT NULL,
        window BLOB
    ) WITHOUT ROWID;
    """,
    # 6: the change log: one row per write that changes what devices are
    # served, in commit order (writers hold the write lock), so a gateway reads
    # only what changed since the last seq it saw.
    """
    CREATE TABLE changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        key TEXT NOT NULL
    );
    """,
    # 7: the last merge of each device's offline changes, typed (they were two
    # settings keys per device, moved here).  ``local-ack/`` is 10 characters.
    """
    CREATE TABLE merges (
        device_id TEXT PRIMARY KEY,
        acknowledged INTEGER NOT NULL,
        outcome BLOB NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO merges (device_id, acknowledged, outcome)
        SELECT substr(ack.key, 11), CAST(CAST(ack.value AS TEXT) AS INTEGER), outcome.value
        FROM settings AS ack
        JOIN settings AS outcome ON outcome.key = 'local-outcome/' || substr(ack.key, 11)
        WHERE ack.key >= 'local-ack/' AND ack.key < 'local-ack0';
    DELETE FROM settings
        WHERE (key >= 'local-ack/' AND key < 'local-ack0')
           OR (key >= 'local-outcome/' AND key < 'local-outcome0');
    """,
)
"""Layout migrations; step ``i`` (0-based) brings a database to version ``i + 1``.
Append new steps; never edit a released one."""

LAYOUT_VERSION = len(MIGRATIONS)
"""The layout version this edgecfg writes."""

GROUP_MEMBERS_SQL = """
    SELECT device_id FROM device_groups
    WHERE dimension = :dimension AND path = :path
    UNION ALL
    SELECT device_id FROM device_groups
    WHERE dimension = :dimension AND path >= :path || '/' AND path < :path || '0'
"""
"""Ids of devices in group ``:path`` or below it.  ``'0'`` is the character after
``'/'``, so ``[path/, path0)`` holds exactly the paths below ``path`` and never
``europe`` for ``eu``.  Written as two index range scans joined by UNION ALL
rather than ``path = ? OR (...)``: without ANALYZE statistics SQLite plans that
OR as a scan of the whole dimension."""
