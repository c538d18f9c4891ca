"""An in-memory :class:`~edgecfg.store.base.Store` for tests and simulations.

It follows the same contract as :class:`~edgecfg.store.sqlite.SQLiteStore`
(the shared test suite runs against both) and keeps nothing after ``close``.
Not thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.errors import NotFound, StoreError, UsageError
from edgecfg.store.base import (
    BadVersion,
    Change,
    ChangeKind,
    CredentialRecord,
    DeviceRecord,
    LayerRevision,
    MergeRecord,
    OscoreState,
    RolloutDevice,
    RolloutEntry,
    RolloutRecord,
    SchemaRecord,
    TelemetryBatch,
    TelemetryRow,
    already_enrolled,
    blob_collision,
    blob_etag,
    check_group,
    check_role,
    check_schema_version,
    in_group,
    kid_for,
    logs_change,
    schema_changed,
    schema_not_newer,
    stale_parent,
)

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Tables:
    schemas: dict[str, dict[int, SchemaRecord]] = field(
        default_factory=dict[str, dict[int, SchemaRecord]]
    )
    blobs: dict[ETag, bytes] = field(default_factory=dict[ETag, bytes])
    versions: dict[tuple[ETag, bytes], float] = field(
        default_factory=dict[tuple[ETag, bytes], float]
    )
    layers: dict[LayerId, list[LayerRevision]] = field(
        default_factory=dict[LayerId, list[LayerRevision]]
    )
    devices: dict[DeviceId, DeviceRecord] = field(default_factory=dict[DeviceId, DeviceRecord])
    settings: dict[str, bytes] = field(default_factory=dict[str, bytes])
    merges: dict[DeviceId, MergeRecord] = field(default_factory=dict[DeviceId, MergeRecord])
    bad: dict[tuple[DeviceId, ETag], BadVersion] = field(
        default_factory=dict[tuple[DeviceId, ETag], BadVersion]
    )
    rollouts: dict[str, RolloutRecord] = field(default_factory=dict[str, RolloutRecord])
    cohorts: dict[str, dict[DeviceId, RolloutDevice]] = field(
        default_factory=dict[str, dict[DeviceId, RolloutDevice]]
    )
    histories: dict[str, list[RolloutEntry]] = field(default_factory=dict[str, list[RolloutEntry]])
    telemetry: dict[DeviceId, list[tuple[float, bytes]]] = field(
        default_factory=dict[DeviceId, list[tuple[float, bytes]]]
    )
    aggregates: dict[tuple[str, str], dict[tuple[float, float, str], TelemetryRow]] = field(
        default_factory=dict[tuple[str, str], dict[tuple[float, float, str], TelemetryRow]]
    )  # (scope, key) -> (period, start, name) -> bucket
    telemetry_states: dict[DeviceId, bytes] = field(default_factory=dict[DeviceId, bytes])
    credentials: dict[bytes, CredentialRecord] = field(
        default_factory=dict[bytes, CredentialRecord]
    )
    active: dict[tuple[str, str], bytes] = field(default_factory=dict[tuple[str, str], bytes])
    oscore: dict[bytes, OscoreState] = field(default_factory=dict[bytes, OscoreState])
    changes: list[Change] = field(default_factory=list[Change])

    def log(self, kind: ChangeKind, key: str) -> None:
        self.changes.append(Change(len(self.changes) + 1, kind, key))


class MemoryStore:
    """A :class:`~edgecfg.store.base.Store` held in dictionaries."""

    def __init__(self) -> None:
        self._tables: _Tables | None = _Tables()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open(self) -> _Tables:
        if self._tables is None:
            raise StoreError("store is closed")
        return self._tables

    def changes_since(self, seq: int, *, limit: int = 10_000) -> list[Change]:
        """See :meth:`edgecfg.store.base.Store.changes_since`."""
        return self._open().changes[max(seq, 0) : max(seq, 0) + limit]

    def last_change(self) -> int:
        """See :meth:`edgecfg.store.base.Store.last_change`."""
        return len(self._open().changes)

    def footprint(self) -> dict[str, int]:
        """What the store holds, table by table: payload bytes for the byte
        tables, rows for the journals (a longevity run plots these per day)."""
        tables = self._open()
        return {
            "blob_bytes": sum(len(data) for data in tables.blobs.values()),
            "blobs": len(tables.blobs),
            "version_bytes": sum(len(tag) + len(vector) for tag, vector in tables.versions),
            "versions": len(tables.versions),
            "layer_revisions": sum(len(history) for history in tables.layers.values()),
            "change_log": len(tables.changes),
            "merges": len(tables.merges),
            "bad_versions": len(tables.bad),
        }

    def check_writable(self) -> None:
        """See :meth:`edgecfg.store.base.Store.check_writable`: memory always is."""
        self._open()

    def close(self) -> None:
        """Drop every record; later calls raise :class:`StoreError`."""
        self._tables = None

    # -- schemas -----------------------------------------------------------

    def put_schema(self, name: str, version: int, document: bytes, *, now: float) -> SchemaRecord:
        """See :meth:`edgecfg.store.base.Store.put_schema`."""
        check_schema_version(version)
        schemas = self._open().schemas
        versions = schemas.get(name, {})
        existing = versions.get(version)
        if existing is not None:
            if existing.document != document:
                raise schema_changed(name, version)
            return existing
        latest = max(versions, default=None)
        if latest is not None and version <= latest:
            raise schema_not_newer(name, version, latest)
        record = SchemaRecord(name, version, bytes(document), now)
        schemas[name] = {**versions, version: record}
        return record

    def get_schema(self, name: str, version: int | None = None) -> SchemaRecord:
        """See :meth:`edgecfg.store.base.Store.get_schema`."""
        versions = self._open().schemas.get(name, {})
        if version is None:
            if not versions:
                raise NotFound("schema", name)
            return versions[max(versions)]
        record = versions.get(version)
        if record is None:
            raise NotFound("schema", f"{name} version {version}")
        return record

    def schema_versions(self, name: str) -> list[int]:
        """See :meth:`edgecfg.store.base.Store.schema_versions`."""
        return sorted(self._open().schemas.get(name, {}))

    def schema_names(self) -> list[str]:
        """See :meth:`edgecfg.store.base.Store.schema_names`."""
        return sorted(self._open().schemas)

    # -- blobs -------------------------------------------------------------

    def put_blob(self, data: bytes) -> ETag:
        """See :meth:`edgecfg.store.base.Store.put_blob`."""
        blobs = self._open().blobs
        data = bytes(data)
        etag = blob_etag(data)
        existing = blobs.get(etag)
        if existing is None:
            blobs[etag] = data
        elif existing != data:
            raise blob_collision(etag)
        return etag

    def get_blob(self, etag: ETag) -> bytes:
        """See :meth:`edgecfg.store.base.Store.get_blob`."""
        data = self._open().blobs.get(etag)
        if data is None:
            raise NotFound("blob", etag.hex())
        return data

    def has_blob(self, etag: ETag) -> bool:
        """See :meth:`edgecfg.store.base.Store.has_blob`."""
        return etag in self._open().blobs

    # -- served configuration versions ---------------------------------------

    def put_versions(self, versions: Iterable[tuple[ETag, bytes]], *, now: float) -> None:
        """See :meth:`edgecfg.store.base.Store.put_versions`."""
        table = self._open().versions
        for etag, vector in versions:
            table.setdefault((ETag(bytes(etag)), bytes(vector)), now)

    def get_versions(self, etag: ETag) -> list[bytes]:
        """See :meth:`edgecfg.store.base.Store.get_versions`."""
        return [vector for (tag, vector) in self._open().versions if tag == etag]

    def drop_versions(self, *, before: float) -> int:
        """See :meth:`edgecfg.store.base.Store.drop_versions`."""
        table = self._open().versions
        old = [key for key, at in table.items() if at < before]
        for key in old:
            del table[key]
        return len(old)

    # -- telemetry ---------------------------------------------------------

    def append_telemetry(self, device: DeviceId, payload: bytes, *, now: float) -> None:
        """See :meth:`edgecfg.store.base.Store.append_telemetry`."""
        self._open().telemetry.setdefault(device, []).append((now, bytes(payload)))

    def telemetry(self, device: DeviceId, *, limit: int = 100) -> list[tuple[float, bytes]]:
        """See :meth:`edgecfg.store.base.Store.telemetry`."""
        packs = self._open().telemetry.get(device, [])
        return sorted(packs, key=lambda pack: -pack[0])[:limit]

    def ingest_telemetry(self, batch: TelemetryBatch) -> None:
        """See :meth:`edgecfg.store.base.Store.ingest_telemetry`."""
        tables = self._open()
        for device, at, payload in batch.packs:
            tables.telemetry.setdefault(device, []).append((at, bytes(payload)))
        for row in batch.rows:
            buckets = tables.aggregates.setdefault((row.scope, row.key), {})
            held = buckets.get(key := (row.period, row.start, row.name))
            merged = row.aggregate if held is None else held.aggregate.merge(row.aggregate)
            buckets[key] = replace(row, aggregate=merged)
        tables.telemetry_states.update((device, bytes(state)) for device, state in batch.states)
        if batch.keep_after is not None:
            for device in batch.trimmed():
                self._prune(device, batch.keep_after, batch.hourly)

    def _prune(self, device: DeviceId, before: float, hourly: float) -> int:
        tables = self._open()
        packs = tables.telemetry.get(device, [])
        kept = [pack for pack in packs if pack[0] >= before]
        tables.telemetry[device] = kept
        buckets = tables.aggregates.get(("device", device), {})
        for key in [k for k in buckets if k[0] == hourly and k[1] + hourly <= before]:
            del buckets[key]
        return len(packs) - len(kept)

    def telemetry_states(self, devices: Sequence[DeviceId]) -> dict[DeviceId, bytes]:
        """See :meth:`edgecfg.store.base.Store.telemetry_states`."""
        if len(devices) > 500:  # as the SQL stores (their IN lists)
            raise UsageError(f"telemetry_states: {len(devices)} devices exceed 500 a call")
        held = self._open().telemetry_states
        return {device: held[device] for device in devices if device in held}

    def telemetry_rows(
        self, scope: str, *, key: str | None = None, name: str | None = None,
        period: float, since: float = float("-inf"), below: bool = False,
    ) -> list[TelemetryRow]:  # fmt: skip
        """See :meth:`edgecfg.store.base.Store.telemetry_rows`."""
        found = [
            row for (s, k), buckets in self._open().aggregates.items()
            if s == scope and (key is None or k == key or (below and k.startswith(key + "/")))
            for (p, start, n), row in buckets.items()
            if p == period and start >= since and (name is None or n == name)
        ]  # fmt: skip
        return sorted(found, key=lambda row: (row.key, row.name, row.start))

    def prune_telemetry(self, *, before: float, hourly: float = 3600.0) -> int:
        """See :meth:`edgecfg.store.base.Store.prune_telemetry`."""
        devices = set(self._open().telemetry) | {
            DeviceId(key) for scope, key in self._open().aggregates if scope == "device"
        }
        return sum(self._prune(device, before, hourly) for device in devices)

    # -- settings ----------------------------------------------------------

    def get_setting(self, key: str) -> bytes | None:
        """See :meth:`edgecfg.store.base.Store.get_setting`."""
        return self._open().settings.get(key)

    def put_setting(self, key: str, value: bytes) -> None:
        """See :meth:`edgecfg.store.base.Store.put_setting`."""
        tables = self._open()
        tables.settings[key] = bytes(value)
        if logs_change(key):
            tables.log("setting", key)

    # -- merges of offline changes -------------------------------------------

    def get_merge(self, device: DeviceId) -> MergeRecord | None:
        """See :meth:`edgecfg.store.base.Store.get_merge`."""
        return self._open().merges.get(device)

    def put_merge(self, record: MergeRecord) -> None:
        """See :meth:`edgecfg.store.base.Store.put_merge`."""
        self._open().merges[record.device] = record

    # -- versions devices reverted ---------------------------------------------

    def put_bad_version(self, record: BadVersion) -> None:
        """See :meth:`edgecfg.store.base.Store.put_bad_version`."""
        bad = self._open().bad
        bad.pop((record.device, record.etag), None)  # a new mark is the newest
        bad[record.device, record.etag] = record
        self._open().log("mark", record.device)

    def get_bad_version(self, device: DeviceId, etag: ETag) -> BadVersion | None:
        """See :meth:`edgecfg.store.base.Store.get_bad_version`."""
        return self._open().bad.get((device, etag))

    def bad_versions(self, device: DeviceId) -> list[BadVersion]:
        """See :meth:`edgecfg.store.base.Store.bad_versions`."""
        marks = [record for key, record in self._open().bad.items() if key[0] == device]
        return sorted(marks, key=lambda record: record.marked_at)

    def clear_bad_versions(self, device: DeviceId, etag: ETag | None = None) -> int:
        """See :meth:`edgecfg.store.base.Store.clear_bad_versions`."""
        bad = self._open().bad
        gone = [key for key in bad if key[0] == device and etag in (None, key[1])]
        for key in gone:
            del bad[key]
        if gone:
            self._open().log("mark", device)
        return len(gone)

    def marked_devices(self) -> list[DeviceId]:
        """See :meth:`edgecfg.store.base.Store.marked_devices`."""
        return sorted({device for device, _ in self._open().bad})

    # -- rollouts --------------------------------------------------------------

    def put_rollout(self, record: RolloutRecord) -> None:
        """See :meth:`edgecfg.store.base.Store.put_rollout`."""
        tables = self._open()
        known = tables.rollouts.get(record.id)
        if known is not None:  # an update keeps the creation time, as the SQL stores do
            record = replace(record, created_at=known.created_at)
        tables.rollouts[record.id] = record

    def get_rollout(self, id: str) -> RolloutRecord | None:
        """See :meth:`edgecfg.store.base.Store.get_rollout`."""
        return self._open().rollouts.get(id)

    def rollouts(self) -> list[RolloutRecord]:
        """See :meth:`edgecfg.store.base.Store.rollouts`."""
        return sorted(self._open().rollouts.values(), key=lambda r: (r.created_at, r.id))

    def put_rollout_devices(self, id: str, devices: Sequence[RolloutDevice]) -> None:
        """See :meth:`edgecfg.store.base.Store.put_rollout_devices`."""
        tables = self._open()
        if id not in tables.rollouts:
            raise StoreError(f"put_rollout_devices: no rollout {id!r}")
        cohort = tables.cohorts.setdefault(id, {})
        for device in devices:
            cohort[device.device] = device

    def rollout_devices(self, id: str) -> list[RolloutDevice]:
        """See :meth:`edgecfg.store.base.Store.rollout_devices`."""
        cohort = self._open().cohorts.get(id, {})
        return [cohort[device] for device in sorted(cohort)]

    def append_rollout_entry(self, id: str, *, at: float, kind: str, entry: str) -> int:
        """See :meth:`edgecfg.store.base.Store.append_rollout_entry`."""
        tables = self._open()
        if id not in tables.rollouts:
            raise StoreError(f"append_rollout_entry: no rollout {id!r}")
        history = tables.histories.setdefault(id, [])
        history.append(RolloutEntry(len(history) + 1, at, kind, entry))
        return len(history)

    def rollout_history(self, id: str) -> list[RolloutEntry]:
        """See :meth:`edgecfg.store.base.Store.rollout_history`."""
        return list(self._open().histories.get(id, []))

    # -- layers ------------------------------------------------------------

    def append_layer_revision(
        self,
        layer: LayerId,
        content: ETag,
        *,
        parent: int | None,
        author: str,
        message: str,
        now: float,
    ) -> LayerRevision:
        """See :meth:`edgecfg.store.base.Store.append_layer_revision`."""
        tables = self._open()
        history = tables.layers.get(layer, [])
        head = history[-1].revision if history else None
        if parent != head:
            raise stale_parent(layer, parent, head)
        if content not in tables.blobs:
            raise NotFound("blob", content.hex())
        revision = LayerRevision(layer, (head or 0) + 1, head, content, author, message, now)
        tables.layers[layer] = [*history, revision]
        tables.log("layer", layer)
        return revision

    def get_layer(self, layer: LayerId, revision: int | None = None) -> LayerRevision:
        """See :meth:`edgecfg.store.base.Store.get_layer`."""
        history = self._open().layers.get(layer, [])
        if not history:
            raise NotFound("layer", layer)
        if revision is None:
            return history[-1]
        if not 1 <= revision <= len(history):
            raise NotFound("layer revision", f"{layer}@{revision}")
        return history[revision - 1]

    def layer_history(self, layer: LayerId) -> list[LayerRevision]:
        """See :meth:`edgecfg.store.base.Store.layer_history`."""
        return list(self._open().layers.get(layer, []))

    def layer_ids(self, prefix: str = "") -> list[LayerId]:
        """See :meth:`edgecfg.store.base.Store.layer_ids`."""
        return sorted(layer for layer in self._open().layers if layer.startswith(prefix))

    # -- devices -----------------------------------------------------------

    def put_device(self, record: DeviceRecord) -> None:
        """See :meth:`edgecfg.store.base.Store.put_device`."""
        tables = self._open()
        tables.devices[record.id] = record
        tables.log("device", record.id)

    def put_devices(self, records: Iterable[DeviceRecord]) -> None:
        """See :meth:`edgecfg.store.base.Store.put_devices`."""
        tables = self._open()
        batch = {record.id: record for record in records}  # all or nothing
        tables.devices.update(batch)
        for id in batch:
            tables.log("device", id)

    def get_device(self, id: DeviceId) -> DeviceRecord:
        """See :meth:`edgecfg.store.base.Store.get_device`."""
        record = self._open().devices.get(id)
        if record is None:
            raise NotFound("device", id)
        return record

    def has_device(self, id: DeviceId) -> bool:
        """See :meth:`edgecfg.store.base.Store.has_device`."""
        return id in self._open().devices

    def delete_device(self, id: DeviceId) -> None:
        """See :meth:`edgecfg.store.base.Store.delete_device`."""
        tables = self._open()
        if id not in tables.devices:
            raise NotFound("device", id)
        del tables.devices[id]
        tables.merges.pop(id, None)
        for key in [key for key in tables.bad if key[0] == id]:
            del tables.bad[key]
        tables.log("device", id)

    def count_devices(self) -> int:
        """See :meth:`edgecfg.store.base.Store.count_devices`."""
        return len(self._open().devices)

    def iter_devices(self, *, group: tuple[str, str] | None = None) -> Iterator[DeviceRecord]:
        """See :meth:`edgecfg.store.base.Store.iter_devices`."""
        devices = self._open().devices
        if group is not None:
            check_group(*group)
        # Eager part above runs at call time, like SQLiteStore's checks.
        return _iter_sorted(devices, group)

    def record_seen(self, id: DeviceId, *, now: float, applied_etag: ETag | None) -> None:
        """See :meth:`edgecfg.store.base.Store.record_seen`."""
        devices = self._open().devices
        record = devices.get(id)
        if record is None:
            raise NotFound("device", id)
        devices[id] = replace(record, last_seen=now, applied_etag=applied_etag)

    # -- OSCORE credentials -----------------------------------------------

    def enroll(self, role: str, name: str, sealed: bytes, *, now: float) -> CredentialRecord:
        """See :meth:`edgecfg.store.base.Store.enroll`."""
        return self.enroll_many([(role, name, sealed)], now=now)[0]

    def enroll_many(
        self, entries: Iterable[tuple[str, str, bytes]], *, now: float
    ) -> list[CredentialRecord]:
        """See :meth:`edgecfg.store.base.Store.enroll_many`."""
        tables = self._open()
        items = list(entries)
        seen: set[tuple[str, str]] = set()
        for role, name, _ in items:
            check_role(role)
            held = tables.active.get((role, name))
            if held is not None:
                raise already_enrolled(role, name, held)
            if (role, name) in seen:
                raise already_enrolled(role, name, b"")
            seen.add((role, name))
        records: list[CredentialRecord] = []
        for role, name, sealed in items:
            record = CredentialRecord(
                kid_for(len(tables.credentials) + 1), role, name, bytes(sealed), now
            )
            tables.credentials[record.kid] = record
            tables.active[(role, name)] = record.kid
            records.append(record)
        return records

    def credential(self, kid: bytes) -> CredentialRecord | None:
        """See :meth:`edgecfg.store.base.Store.credential`."""
        return self._open().credentials.get(bytes(kid))

    def active_credential(self, role: str, name: str) -> CredentialRecord | None:
        """See :meth:`edgecfg.store.base.Store.active_credential`."""
        tables = self._open()
        kid = tables.active.get((role, name))
        return None if kid is None else tables.credentials[kid]

    def revoke(self, role: str, name: str, *, now: float) -> CredentialRecord:
        """See :meth:`edgecfg.store.base.Store.revoke`."""
        tables = self._open()
        kid = tables.active.pop((role, name), None)
        if kid is None:
            raise NotFound(f"enrolled {role}", name)
        record = replace(tables.credentials[kid], revoked_at=now)
        tables.credentials[kid] = record
        tables.log("revocation", f"{role}/{name}")
        return record

    def count_credentials(self, *, active: bool = True) -> int:
        """See :meth:`edgecfg.store.base.Store.count_credentials`."""
        tables = self._open()
        return len(tables.active) if active else len(tables.credentials)

    def revocations(self) -> int:
        """See :meth:`edgecfg.store.base.Store.revocations`."""
        tables = self._open()
        return len(tables.credentials) - len(tables.active)

    def oscore_state(self, kid: bytes) -> OscoreState | None:
        """See :meth:`edgecfg.store.base.Store.oscore_state`."""
        return self._open().oscore.get(bytes(kid))

    def put_oscore_states(self, states: Iterable[tuple[bytes, OscoreState]]) -> None:
        """See :meth:`edgecfg.store.base.Store.put_oscore_states`."""
        held = self._open().oscore
        for kid, state in states:
            before = held.get(bytes(kid))
            floor = before.next_to_send if before is not None else 0
            held[bytes(kid)] = OscoreState(max(floor, state.next_to_send), state.window)

    def reserve_sequence_numbers(self, kid: bytes, count: int) -> int:
        """See :meth:`edgecfg.store.base.Store.reserve_sequence_numbers`."""
        if count < 1:
            raise ValueError(f"reserve {count} sequence numbers: at least 1")
        held = self._open().oscore
        before = held.get(bytes(kid))
        first = 0 if before is None else before.next_to_send
        held[bytes(kid)] = OscoreState(first + count, None if before is None else before.window)
        return first


def _iter_sorted(
    devices: dict[DeviceId, DeviceRecord], group: tuple[str, str] | None
) -> Iterator[DeviceRecord]:
    for id in sorted(devices):
        record = devices.get(id)
        if record is None:  # deleted during iteration
            continue
        if group is not None:
            dimension, path = group
            member = record.groups.get(dimension)
            if member is None or not in_group(member, path):
                continue
        yield record
