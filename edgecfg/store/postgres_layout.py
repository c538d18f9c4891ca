"""The PostgreSQL layout of the gateway store: its migrations.  Only
:mod:`edgecfg.store.postgres` uses it; the queries, the same for both databases,
are in :mod:`edgecfg.store.sql`.

It mirrors :mod:`edgecfg.store.layout` step for step (the same version numbers
mean the same tables), in PostgreSQL's types.  Text that is ordered or
range-scanned (device ids, layer ids, group paths) uses the ``"C"`` collation:
code-point order, as SQLite and :class:`~edgecfg.store.MemoryStore` compare,
so ``[path/, path0)`` holds exactly the paths below ``path`` whatever the
database's locale.
"""

from __future__ import annotations

from edgecfg.store.layout import merges_from_settings

MIGRATIONS: tuple[str, ...] = (
    # 1: schemas, content-addressed blobs, layer revision histories.
    """
    CREATE TABLE schemas (
        name TEXT COLLATE "C" NOT NULL,
        version BIGINT NOT NULL,
        document BYTEA NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE blobs (
        etag BYTEA PRIMARY KEY CHECK (octet_length(etag) = 8),
        data BYTEA NOT NULL
    );
    CREATE TABLE layer_revisions (
        layer TEXT COLLATE "C" NOT NULL,
        revision BIGINT NOT NULL CHECK (revision >= 1),
        parent BIGINT,
        content BYTEA NOT NULL REFERENCES blobs (etag),
        author TEXT NOT NULL,
        message TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (layer, revision)
    );
    """,
    # 2: the device registry, with group membership indexed for range scans.
    """
    CREATE TABLE devices (
        id TEXT COLLATE "C" PRIMARY KEY,
        hardware TEXT, firmware TEXT, agent_version TEXT,
        last_seen DOUBLE PRECISION, applied_etag BYTEA
    );
    CREATE TABLE device_groups (
        device_id TEXT COLLATE "C" NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        dimension TEXT COLLATE "C" NOT NULL,
        path TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (device_id, dimension)
    );
    CREATE INDEX device_groups_by_group ON device_groups (dimension, path);
    """,
    # 3: fleet-wide settings (dimension order, the fleet's schema).
    """
    CREATE TABLE settings (
        key TEXT COLLATE "C" PRIMARY KEY,
        value BYTEA NOT NULL
    );
    """,
    # 4: telemetry packs as devices reported them (analysis reads them later).
    """
    CREATE TABLE telemetry (
        device_id TEXT COLLATE "C" NOT NULL,
        time DOUBLE PRECISION NOT NULL,
        payload BYTEA NOT NULL
    );
    CREATE INDEX telemetry_by_device ON telemetry (device_id, time);
    """,
    # 5: OSCORE credentials and each context's sequence number and replay
    # window.  Key-id numbers come from a sequence, so none is handed out twice
    # (a sequence never goes back, even when a transaction rolls back).
    """
    CREATE SEQUENCE credential_numbers;
    CREATE TABLE credentials (
        number BIGINT PRIMARY KEY,
        kid BYTEA NOT NULL UNIQUE,
        role TEXT NOT NULL,
        name TEXT NOT NULL,
        sealed BYTEA NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    );
    CREATE UNIQUE INDEX credentials_active ON credentials (role, name)
        WHERE revoked_at IS NULL;
    CREATE TABLE oscore_state (
        kid BYTEA PRIMARY KEY,
        next_to_send BIGINT NOT NULL,
        "window" BYTEA
    );
    """,
    # 6: the change log (see edgecfg.store.layout).  Writers append under one
    # transaction-scoped advisory lock, so seq order is commit order: a
    # sequence alone hands out numbers before commit, and a reader could see
    # seq 11 before seq 10 commits.
    """
    CREATE TABLE changes (
        seq BIGSERIAL PRIMARY KEY,
        kind TEXT NOT NULL,
        key TEXT NOT NULL
    );
    """,
    # 7: the last merge of each device's offline changes (see edgecfg.store.layout).
    """
    CREATE TABLE merges (
        device_id TEXT COLLATE "C" PRIMARY KEY,
        acknowledged BIGINT NOT NULL,
        outcome BYTEA NOT NULL
    );
    """
    + merges_from_settings("convert_from(ack.value, 'UTF8')::BIGINT"),
    # 8: how each served configuration version is rebuilt (see edgecfg.store.layout).
    """
    CREATE TABLE config_versions (
        etag BYTEA NOT NULL,
        vector BYTEA NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (etag, vector)
    );
    """,
    # 9: configuration versions a device tried and reverted (see edgecfg.store.layout).
    """
    CREATE TABLE bad_versions (
        device_id TEXT COLLATE "C" NOT NULL,
        etag BYTEA NOT NULL CHECK (octet_length(etag) = 8),
        reverted_to BYTEA NOT NULL CHECK (octet_length(reverted_to) = 8),
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        marked_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (device_id, etag)
    );
    """,
    # 10: staged rollouts (see edgecfg.store.layout).
    """
    CREATE TABLE rollouts (
        id TEXT COLLATE "C" PRIMARY KEY,
        plan TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE rollout_devices (
        rollout_id TEXT COLLATE "C" NOT NULL REFERENCES rollouts (id),
        device_id TEXT COLLATE "C" NOT NULL,
        stratum TEXT NOT NULL,
        wave INTEGER NOT NULL,
        quantile DOUBLE PRECISION NOT NULL,
        arm TEXT,
        offered_at DOUBLE PRECISION,
        moved_at DOUBLE PRECISION,
        previous TEXT,
        PRIMARY KEY (rollout_id, device_id)
    );
    CREATE TABLE rollout_history (
        rollout_id TEXT COLLATE "C" NOT NULL REFERENCES rollouts (id),
        seq INTEGER NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        kind TEXT NOT NULL,
        entry TEXT NOT NULL,
        PRIMARY KEY (rollout_id, seq)
    );
    """,
    # 11: telemetry analysis (see edgecfg.store.layout).
    """
    CREATE TABLE telemetry_aggregates (
        scope TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        period DOUBLE PRECISION NOT NULL,
        start DOUBLE PRECISION NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        count BIGINT NOT NULL,
        total DOUBLE PRECISION NOT NULL,
        low DOUBLE PRECISION NOT NULL,
        high DOUBLE PRECISION NOT NULL,
        last DOUBLE PRECISION NOT NULL,
        last_time DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (scope, key, period, start, name)
    );
    CREATE INDEX telemetry_aggregates_by_name
        ON telemetry_aggregates (scope, name, period, start);
    CREATE TABLE telemetry_states (
        device_id TEXT COLLATE "C" PRIMARY KEY,
        state BYTEA NOT NULL
    );
    CREATE INDEX telemetry_by_time ON telemetry (time);
    """,
)
"""Layout migrations; step ``i`` (0-based) brings a database to version ``i + 1``.
Append new steps; never edit a released one."""

LAYOUT_VERSION = len(MIGRATIONS)
"""The layout version this edgecfg writes."""
