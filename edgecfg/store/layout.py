"""The SQLite layout of the gateway store: its migrations.  Only
:mod:`edgecfg.store.sqlite` uses it; the queries, the same for both databases,
are in :mod:`edgecfg.store.sql`."""

from __future__ import annotations


def merges_from_settings(acknowledged: str) -> str:
    """Layout step 7's data move, the same in both layouts: each device's
    ``local-ack/{dev}`` and ``local-outcome/{dev}`` settings become its row of
    ``merges`` and leave ``settings``.  ``acknowledged`` is the expression that
    reads ``ack.value`` (decimal digits) as an integer in the database's SQL.
    ``local-ack/`` is 10 characters."""
    return f"""INSERT INTO merges (device_id, acknowledged, outcome)
        SELECT substr(ack.key, 11), {acknowledged}, outcome.value
        FROM settings AS ack
        JOIN settings AS outcome ON outcome.key = 'local-outcome/' || substr(ack.key, 11)
        WHERE ack.key >= 'local-ack/' AND ack.key < 'local-ack0';
    DELETE FROM settings
        WHERE (key >= 'local-ack/' AND key < 'local-ack0')
           OR (key >= 'local-outcome/' AND key < 'local-outcome0');
    """


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
    # settings keys per device, moved here).
    """
    CREATE TABLE merges (
        device_id TEXT PRIMARY KEY,
        acknowledged INTEGER NOT NULL,
        outcome BLOB NOT NULL
    ) WITHOUT ROWID;
    """
    + merges_from_settings("CAST(CAST(ack.value AS TEXT) AS INTEGER)"),
    # 8: how each served configuration version is rebuilt (a version vector of
    # a few bytes per ETag and stack, never the configuration: a fleet-wide
    # edit adds one row of ~40 bytes per device).  Versions served before stay
    # in blobs.
    """
    CREATE TABLE config_versions (
        etag BLOB NOT NULL,
        vector BLOB NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (etag, vector)
    ) WITHOUT ROWID;
    """,
    # 9: configuration versions a device tried and reverted (issue 15): the
    # gateway does not offer such a version to that device again.
    """
    CREATE TABLE bad_versions (
        device_id TEXT NOT NULL,
        etag BLOB NOT NULL CHECK (length(etag) = 8),
        reverted_to BLOB NOT NULL CHECK (length(reverted_to) = 8),
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        marked_at REAL NOT NULL,
        PRIMARY KEY (device_id, etag)
    ) WITHOUT ROWID;
    """,
    # 10: staged rollouts (issue 15): plan and state, cohort devices, history.
    """
    CREATE TABLE rollouts (
        id TEXT PRIMARY KEY,
        plan TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE rollout_devices (
        rollout_id TEXT NOT NULL REFERENCES rollouts (id),
        device_id TEXT NOT NULL,
        stratum TEXT NOT NULL,
        wave INTEGER NOT NULL,
        quantile REAL NOT NULL,
        arm TEXT,
        offered_at REAL,
        moved_at REAL,
        previous TEXT,
        PRIMARY KEY (rollout_id, device_id)
    ) WITHOUT ROWID;
    CREATE TABLE rollout_history (
        rollout_id TEXT NOT NULL REFERENCES rollouts (id),
        seq INTEGER NOT NULL,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        entry TEXT NOT NULL,
        PRIMARY KEY (rollout_id, seq)
    ) WITHOUT ROWID;
    """,
    # 11: telemetry analysis (issue 14): aggregate buckets (count, sum, min,
    # max, last) per device, group and config-value cohort, upserted by
    # ingest; each device's analysis state (counters' last readings, the link
    # monitors); raw packs indexed by time for the retention sweep.
    """
    CREATE TABLE telemetry_aggregates (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        period REAL NOT NULL,
        start REAL NOT NULL,
        name TEXT NOT NULL,
        count INTEGER NOT NULL,
        total REAL NOT NULL,
        low REAL NOT NULL,
        high REAL NOT NULL,
        last REAL NOT NULL,
        last_time REAL NOT NULL,
        PRIMARY KEY (scope, key, period, start, name)
    ) WITHOUT ROWID;
    CREATE INDEX telemetry_aggregates_by_name
        ON telemetry_aggregates (scope, name, period, start);
    CREATE TABLE telemetry_states (
        device_id TEXT PRIMARY KEY,
        state BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX telemetry_by_time ON telemetry (time);
    """,
)
"""Layout migrations; step ``i`` (0-based) brings a database to version ``i + 1``.
Append new steps; never edit a released one."""

LAYOUT_VERSION = len(MIGRATIONS)
"""The layout version this edgecfg writes."""
