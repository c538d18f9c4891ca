"""The gateway persistence contract: the :class:`Store` protocol and its records.

The store keeps schemas, content-addressed blobs, layer revision histories and
the device registry.  It never interprets configuration contents: schema
documents and blobs are opaque bytes, and a layer revision points at the blob
that holds its document.

Rules shared by every implementation:

- Lookups (``get_*``) raise :class:`~edgecfg.errors.NotFound`; listings
  (``*_versions``, ``*_history``, ``*_ids``, ``*_names``) return an empty list
  for an unknown key.
- A write that races another, or contradicts what is stored, raises
  :class:`~edgecfg.errors.StoreConflict` and changes nothing.
- Every public method is atomic: it either happens completely or not at all.
- Any other persistence failure raises :class:`~edgecfg.errors.StoreError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from edgecfg.core.ids import DeviceId, ETag, LayerId
from edgecfg.core.telemetry import Aggregate
from edgecfg.errors import StoreConflict, UsageError

__all__ = [
    "ROLES",
    "BadVersion",
    "CredentialRecord",
    "DeviceRecord",
    "Groups",
    "LayerRevision",
    "OscoreState",
    "RolloutDevice",
    "RolloutEntry",
    "RolloutRecord",
    "SchemaRecord",
    "Store",
    "TelemetryBatch",
    "TelemetryRow",
    "already_enrolled",
    "blob_collision",
    "blob_etag",
    "check_group",
    "check_role",
    "check_schema_version",
    "in_group",
    "kid_for",
    "schema_changed",
    "schema_not_newer",
    "stale_parent",
]


def blob_etag(data: bytes) -> ETag:
    """Return the content address of ``data``: the first 8 bytes of its SHA-256.

    This is the same rule as a configuration ETag (DESIGN §3), so a blob holding
    a canonical encoding is keyed by that configuration's ETag.
    """
    return ETag(hashlib.sha256(data).digest()[:8])


def check_group(dimension: str, path: str) -> None:
    """Raise :class:`UsageError` unless ``(dimension, path)`` names a group.

    A dimension is non-empty; a path is one or more non-empty segments joined by
    ``/`` (``eu``, ``eu/eu-west/site-17``), so prefix matching on ``/`` boundaries
    is unambiguous.
    """
    if not dimension:
        raise UsageError("group dimension must not be empty")
    if not path or "" in path.split("/"):
        raise UsageError(
            f"group path {path!r} in dimension {dimension!r} must be non-empty "
            "segments separated by '/'"
        )


def check_schema_version(version: int) -> None:
    """Raise :class:`UsageError` unless ``0 <= version < 2**63`` (an SQLite integer)."""
    if not 0 <= version < 2**63:
        raise UsageError(f"schema version {version} is outside 0 .. 2**63-1")


def check_role(role: str) -> None:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")


def already_enrolled(role: str, name: str, kid: bytes) -> StoreConflict:
    return StoreConflict(
        f"{role} {name!r} is already enrolled (key id {kid.hex() or 'empty'}); "
        "revoke it first to issue new credentials"
    )


def in_group(path: str, group: str) -> bool:
    """Return whether a device at group ``path`` is in ``group`` or below it.

    Matching is on ``/`` boundaries: ``eu`` contains ``eu`` and ``eu/west`` but
    not ``europe``.
    """
    return path == group or path.startswith(group + "/")


# Conflict texts, shared so every implementation reports the same facts.


def stale_parent(layer: LayerId, parent: int | None, head: int | None) -> StoreConflict:
    """The conflict raised when an append names ``parent`` but the head is ``head``."""
    expected = "none (new layer)" if parent is None else f"revision {parent}"
    actual = "none (layer does not exist)" if head is None else f"revision {head}"
    return StoreConflict(f"layer {layer!r}: expected head {expected}, actual head is {actual}")


def schema_changed(name: str, version: int) -> StoreConflict:
    """The conflict raised when a stored schema version is re-put with other bytes."""
    return StoreConflict(
        f"schema {name!r} version {version} is already stored with a different document"
    )


def schema_not_newer(name: str, version: int, latest: int) -> StoreConflict:
    """The conflict raised when a new schema version does not exceed the latest."""
    return StoreConflict(
        f"schema {name!r}: version {version} is not newer than the latest stored version {latest}"
    )


def blob_collision(etag: ETag) -> StoreConflict:
    """The conflict raised when different bytes map to a stored blob's ETag."""
    return StoreConflict(
        f"blob {etag.hex()} is already stored with different bytes (SHA-256 prefix collision)"
    )


class Groups(Mapping[str, str]):
    """An immutable, hashable mapping from dimension to group path.

    Built from a mapping or from ``(dimension, path)`` pairs; every pair is
    checked with :func:`check_group`.  Iteration is in dimension order.
    """

    __slots__ = ("_map", "_pairs")

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        mapping: dict[str, str] = dict(items)
        for dimension, path in mapping.items():
            check_group(dimension, path)
        self._pairs = tuple(sorted(mapping.items()))
        self._map = dict(self._pairs)  # private and never mutated

    def __getitem__(self, dimension: str) -> str:
        return self._map[dimension]

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._pairs)

    def __hash__(self) -> int:
        return hash(self._pairs)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Groups):
            return self._pairs == other._pairs
        if isinstance(other, Mapping):
            return self._map == dict(other.items())  # pyright: ignore[reportUnknownArgumentType]
        return NotImplemented

    def __repr__(self) -> str:
        return f"Groups({self._map!r})"


_NO_GROUPS = Groups()


@dataclass(frozen=True, slots=True)
class SchemaRecord:
    """One stored version of a named schema; ``document`` is opaque bytes."""

    name: str
    version: int
    document: bytes
    created_at: float


@dataclass(frozen=True, slots=True)
class LayerRevision:
    """One revision of a layer.

    ``revision`` counts from 1 per layer; ``parent`` is the revision it replaced
    (``None`` for revision 1); ``content`` is the ETag of the blob holding the
    layer document.
    """

    layer: LayerId
    revision: int
    parent: int | None
    content: ETag
    author: str
    message: str
    created_at: float


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device in the registry.

    ``groups`` maps a dimension to the device's group path in it, e.g.
    ``{"region": "eu/eu-west/site-17"}``; any mapping given is frozen into
    :class:`Groups` (so records are hashable), and invalid paths raise
    :class:`UsageError`.
    """

    id: DeviceId
    groups: Mapping[str, str] = _NO_GROUPS
    hardware: str | None = None
    firmware: str | None = None
    agent_version: str | None = None
    last_seen: float | None = None
    applied_etag: ETag | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.groups, Groups):
            object.__setattr__(self, "groups", Groups(self.groups))


ROLES = ("device", "operator")
"""Who a credential speaks for: a device (its own resources) or an operator."""


def kid_for(number: int) -> bytes:
    """The OSCORE key id for the ``number``-th credential (1, 2, ...): shortest
    big-endian bytes.  Numbers are never reused, so neither are key ids."""
    if number < 1:
        raise UsageError(f"credential number must be at least 1, got {number}")
    return number.to_bytes((number.bit_length() + 7) // 8, "big")


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """An enrolled OSCORE identity (RFC 8613) as the gateway stores it.

    ``kid`` is the peer's Sender ID (the gateway's Recipient ID): unique in
    the database and never reused, even after revocation.  ``sealed`` holds the
    master secret and salt encrypted under the operator master key; the store
    never sees them in clear.
    """

    kid: bytes
    role: str
    name: str
    sealed: bytes
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class OscoreState:
    """A security context's mutable state: what must survive a restart.

    ``next_to_send`` is the gateway's next usable Sender Sequence Number (a
    number at or above every number ever used: RFC 8613 Appendix B.1.1).
    ``window`` is the replay window as the context persisted it, or ``None``
    when it is unknown (the gateway stopped without saving it): the peer then
    has to prove freshness with Echo (Appendix B.1.2).
    """

    next_to_send: int = 0
    window: bytes | None = None


ChangeKind = Literal["layer", "device", "setting", "revocation", "mark"]

FLEET_SETTINGS = "fleet."
"""Settings under this prefix configure the fleet (dimension order, schema):
writing one appends a change; other settings (per-device bookkeeping) do not."""


@dataclass(frozen=True, slots=True)
class MergeRecord:
    """What the gateway remembers of merging one device's offline changes:
    the highest journal sequence it merged (``acknowledged``) and the answer
    it sent, as CBOR (``outcome``: replayed to a report that crossed it, shown
    by ``explain``)."""

    device: DeviceId
    acknowledged: int
    outcome: bytes


@dataclass(frozen=True, slots=True)
class BadVersion:
    """A configuration version a device tried and reverted (issue 15): while
    its effective configuration is ``etag`` the gateway serves it
    ``reverted_to`` (the version it went back to) instead, until the effective
    configuration changes or an operator clears the mark.  ``reason`` and
    ``detail`` are the device's (``probe-failed``, "reachability: ...");
    ``marked_at`` is when the gateway heard of it."""

    device: DeviceId
    etag: ETag
    reverted_to: ETag
    reason: str
    detail: str
    marked_at: float


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    """A staged rollout (issue 15): its plan and its state, as JSON texts the
    fleet's rollout service writes and reads (the store keeps them opaque)."""

    id: str
    plan: str
    state: str
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class RolloutDevice:
    """One device of a rollout's cohorts: its stratum, wave and hash quantile
    (fixed at the start), and what the rollout did to it: the arm it was
    offered in, when, when it moved from the control into the canary (its
    telemetry before that still speaks for the control), and what its own
    layer held at the changed paths before (JSON, so a rollback restores
    exactly that)."""

    device: DeviceId
    stratum: str
    wave: int
    quantile: float
    arm: str | None = None
    offered_at: float | None = None
    previous: str | None = None
    moved_at: float | None = None


@dataclass(frozen=True, slots=True)
class RolloutEntry:
    """One entry of a rollout's history: a decision (with the snapshot it read,
    so it replays) or an operator action; ``entry`` is JSON."""

    seq: int
    at: float
    kind: str
    entry: str


@dataclass(frozen=True, slots=True)
class TelemetryRow:
    """One aggregate bucket of one series: ``scope`` is ``device``, ``group``
    (key ``dimension/path``) or ``cohort`` (key ``path=value``); ``period`` the
    bucket width in seconds, ``start`` its UTC-aligned start."""

    scope: str
    key: str
    name: str
    period: float
    start: float
    aggregate: Aggregate


@dataclass(frozen=True, slots=True)
class TelemetryBatch:
    """What one ingest writes, atomically: raw packs ``(device, time,
    payload)``, aggregate increments (merged into the stored buckets, never
    replacing them), each device's analysis state (opaque bytes, replaced),
    and the retention cut: each device's raw packs before ``keep_after``,
    and its ``hourly`` buckets that end by then, are dropped (for the devices
    in ``trim``; None: every device of the batch).  Cost is proportional to
    the batch, never to the fleet."""

    packs: Sequence[tuple[DeviceId, float, bytes]]
    rows: Sequence[TelemetryRow]
    states: Sequence[tuple[DeviceId, bytes]]
    keep_after: float | None = None
    hourly: float = 3600.0
    trim: Sequence[DeviceId] | None = None

    def trimmed(self) -> list[DeviceId]:
        """The devices the retention cut applies to, in order."""
        if self.trim is not None:
            return sorted(set(self.trim))
        return sorted({device for device, _, _ in self.packs})


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the change log: what a writer changed, in commit order.

    ``kind`` and ``key`` say what to re-read: a layer (its id), a device (its
    id; registered, changed or deleted), a fleet setting (its key), a
    credential revocation (``role/name``) or a device's bad-version marks
    (``mark``, its id: put or cleared).
    """

    seq: int
    kind: ChangeKind
    key: str


def logs_change(key: str) -> bool:
    """Whether writing setting ``key`` appends to the change log."""
    return key.startswith(FLEET_SETTINGS)


class Store(Protocol):
    """Gateway persistence.  All methods are synchronous and atomic."""

    # -- schemas -----------------------------------------------------------

    def put_schema(self, name: str, version: int, document: bytes, *, now: float) -> SchemaRecord:
        """Store ``document`` as ``version`` of schema ``name`` and return the record.

        ``version`` must be greater than every stored version of ``name``
        (else :class:`StoreConflict`).  Re-putting an existing version with the
        identical document is a no-op returning the stored record; with a
        different document it raises :class:`StoreConflict`.  ``version`` must
        be in ``0 <= version < 2**63`` (else :class:`UsageError`).
        """
        ...

    def get_schema(self, name: str, version: int | None = None) -> SchemaRecord:
        """Return ``version`` of schema ``name`` (``None``: the latest); else NotFound."""
        ...

    def schema_versions(self, name: str) -> list[int]:
        """Return the stored versions of ``name``, ascending (empty if unknown)."""
        ...

    def schema_names(self) -> list[str]:
        """Return the names of all stored schemas, sorted."""
        ...

    # -- blobs -------------------------------------------------------------

    def put_blob(self, data: bytes) -> ETag:
        """Store ``data`` under :func:`blob_etag` and return that ETag.

        Identical bytes are stored once.  Different bytes under an ETag already
        taken (a SHA-256 prefix collision) raise :class:`StoreConflict`.
        """
        ...

    def get_blob(self, etag: ETag) -> bytes:
        """Return the bytes stored under ``etag``; else :class:`NotFound`."""
        ...

    def has_blob(self, etag: ETag) -> bool:
        """Return whether a blob is stored under ``etag``."""
        ...

    # -- served configuration versions ---------------------------------------

    def put_versions(self, versions: Iterable[tuple[ETag, bytes]], *, now: float) -> None:
        """Record how served configuration versions are rebuilt: per ETag, a
        small version vector (the revisions of the layers of the stack it was
        resolved from, a few bytes; never the configuration).  Devices of
        different stacks may be served equal configurations: an ETag may have
        several vectors.  A pair already recorded keeps its first time."""
        ...

    def get_versions(self, etag: ETag) -> list[bytes]:
        """The version vectors recorded for ``etag``, oldest first."""
        ...

    def drop_versions(self, *, before: float) -> int:
        """Forget versions recorded before ``before`` (a device holding one
        gets the full configuration); how many were dropped."""
        ...

    # -- telemetry ---------------------------------------------------------

    def append_telemetry(self, device: DeviceId, payload: bytes, *, now: float) -> None:
        """Keep one telemetry pack (SenML-CBOR bytes) a device reported at ``now``."""
        ...

    def telemetry(self, device: DeviceId, *, limit: int = 100) -> list[tuple[float, bytes]]:
        """The device's newest telemetry packs, newest first, at most ``limit``."""
        ...

    def ingest_telemetry(self, batch: TelemetryBatch) -> None:
        """Write one :class:`TelemetryBatch` in one transaction."""
        ...

    def telemetry_states(self, devices: Sequence[DeviceId]) -> dict[DeviceId, bytes]:
        """The telemetry analysis states of those ``devices`` that have one
        (none before a device's first pack); at most 500 devices a call."""
        ...

    def telemetry_rows(
        self, scope: str, *, key: str | None = None, name: str | None = None,
        period: float, since: float = float("-inf"), below: bool = False,
    ) -> list[TelemetryRow]:  # fmt: skip
        """The buckets of ``scope`` and ``period`` starting at or after ``since``,
        of one ``key`` (with ``below``, also of the keys under ``key/``: a
        group and its subgroups) and/or one ``name`` (both None: all of the
        scope), ordered by key, name and start."""
        ...

    def prune_telemetry(self, *, before: float, hourly: float = 3600.0) -> int:
        """Housekeeping: drop raw packs older than ``before``, and ``hourly``
        device buckets that end by then, for every device (ingest prunes only the devices it sees);
        how many raw packs were dropped."""
        ...

    # -- settings ----------------------------------------------------------

    def get_setting(self, key: str) -> bytes | None:
        """The value stored under ``key`` (fleet-wide settings), or None."""
        ...

    def put_setting(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing any earlier value."""
        ...

    # -- merges of offline changes -------------------------------------------

    def get_merge(self, device: DeviceId) -> MergeRecord | None:
        """The last merge of ``device``'s offline changes, or None."""
        ...

    def put_merge(self, record: MergeRecord) -> None:
        """Remember a merge, replacing the device's earlier one (deleting the
        device forgets it)."""
        ...

    # -- versions devices reverted (issue 15) --------------------------------

    def put_bad_version(self, record: BadVersion) -> None:
        """Mark ``record.etag`` bad for ``record.device``, replacing an earlier
        mark of the same pair (deleting the device forgets its marks)."""
        ...

    def get_bad_version(self, device: DeviceId, etag: ETag) -> BadVersion | None:
        """The mark of ``etag`` for ``device``, or None."""
        ...

    def bad_versions(self, device: DeviceId) -> list[BadVersion]:
        """Every mark of ``device``, oldest first."""
        ...

    def clear_bad_versions(self, device: DeviceId, etag: ETag | None = None) -> int:
        """Forget the device's mark of ``etag`` (None: all of them); how many went."""
        ...

    def marked_devices(self) -> list[DeviceId]:
        """Every device holding at least one mark, sorted: a gateway keeps
        them in memory so the hot path asks the store only for these (marks
        are rare; a put or clear appends a ``mark`` change)."""
        ...

    # -- rollouts (issue 15) -------------------------------------------------

    def put_rollout(self, record: RolloutRecord) -> None:
        """Insert or replace a rollout's plan and state."""
        ...

    def get_rollout(self, id: str) -> RolloutRecord | None:
        """The rollout ``id``, or None."""
        ...

    def rollouts(self) -> list[RolloutRecord]:
        """Every rollout, oldest first."""
        ...

    def put_rollout_devices(self, id: str, devices: Sequence[RolloutDevice]) -> None:
        """Insert or replace these cohort devices of rollout ``id``."""
        ...

    def rollout_devices(self, id: str) -> list[RolloutDevice]:
        """The cohort devices of rollout ``id``, by device id."""
        ...

    def append_rollout_entry(self, id: str, *, at: float, kind: str, entry: str) -> int:
        """Append to rollout ``id``'s history; returns the entry's sequence number."""
        ...

    def rollout_history(self, id: str) -> list[RolloutEntry]:
        """Rollout ``id``'s history, oldest first."""
        ...

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
        """Append a revision to ``layer`` (creating it) and return it.

        Optimistic concurrency: ``parent`` must be the layer's current head
        revision, or ``None`` for a layer with no revisions; otherwise
        :class:`StoreConflict` names the layer, the expected and the actual head.
        ``content`` must be a stored blob (else :class:`NotFound`).  The new
        revision number is the head plus one (1 for a new layer).
        """
        ...

    def get_layer(self, layer: LayerId, revision: int | None = None) -> LayerRevision:
        """Return ``revision`` of ``layer`` (``None``: the head); else NotFound."""
        ...

    def layer_history(self, layer: LayerId) -> list[LayerRevision]:
        """Return every revision of ``layer``, oldest first (empty if unknown)."""
        ...

    def layer_ids(self, prefix: str = "") -> list[LayerId]:
        """Return the ids of layers that start with ``prefix`` (plain text), sorted."""
        ...

    # -- devices -----------------------------------------------------------

    def put_device(self, record: DeviceRecord) -> None:
        """Insert ``record``, or replace the device with the same id entirely."""
        ...

    def put_devices(self, records: Iterable[DeviceRecord]) -> None:
        """Insert or replace many devices in one transaction.

        If ``records`` repeats an id, the last record wins.  If anything fails,
        including iterating ``records``, nothing is written.
        """
        ...

    def get_device(self, id: DeviceId) -> DeviceRecord:
        """Return the device ``id``; else :class:`NotFound`."""
        ...

    def has_device(self, id: DeviceId) -> bool:
        """Return whether device ``id`` is registered."""
        ...

    def delete_device(self, id: DeviceId) -> None:
        """Remove device ``id`` and its group memberships; else :class:`NotFound`."""
        ...

    def count_devices(self) -> int:
        """Return the number of registered devices."""
        ...

    def iter_devices(self, *, group: tuple[str, str] | None = None) -> Iterator[DeviceRecord]:
        """Yield devices sorted by id; with ``group=(dimension, path)`` only those
        whose path in that dimension is ``path`` or below it (see :func:`in_group`).

        Iteration is lazy and paged, not a snapshot: a device present for the
        whole iteration is yielded exactly once; one added, changed or removed
        meanwhile may or may not be seen.  An invalid group raises UsageError.
        """
        ...

    def record_seen(self, id: DeviceId, *, now: float, applied_etag: ETag | None) -> None:
        """Set the device's ``last_seen`` to ``now`` and ``applied_etag`` as given.

        Raises :class:`NotFound` for an unknown device.
        """
        ...

    # -- OSCORE credentials -----------------------------------------------

    def enroll(self, role: str, name: str, sealed: bytes, *, now: float) -> CredentialRecord:
        """Record a new credential for ``(role, name)`` under a fresh key id.

        Raises :class:`StoreConflict` when ``(role, name)`` already has an
        active credential (revoke it first) and UsageError for an unknown role.
        """
        ...

    def enroll_many(
        self, entries: Iterable[tuple[str, str, bytes]], *, now: float
    ) -> list[CredentialRecord]:
        """:meth:`enroll` for many ``(role, name, sealed)`` at once, atomically."""
        ...

    def credential(self, kid: bytes) -> CredentialRecord | None:
        """The credential with key id ``kid`` (revoked ones too), or ``None``."""
        ...

    def active_credential(self, role: str, name: str) -> CredentialRecord | None:
        """The active credential of ``(role, name)``, or ``None``."""
        ...

    def revoke(self, role: str, name: str, *, now: float) -> CredentialRecord:
        """Revoke the active credential of ``(role, name)``; raises NotFound without one."""
        ...

    def count_credentials(self, *, active: bool = True) -> int:
        """Enrolled credentials (only active ones unless ``active=False``)."""
        ...

    def revocations(self) -> int:
        """How many credentials were ever revoked: a cheap change counter."""
        ...

    def oscore_state(self, kid: bytes) -> OscoreState | None:
        """The persisted context state for ``kid``, or ``None`` if never saved."""
        ...

    def put_oscore_states(self, states: Iterable[tuple[bytes, OscoreState]]) -> None:
        """Persist context states, atomically and durably (they guard nonce reuse).

        ``next_to_send`` never goes down: a stored value stays when a lower one
        is written (two writers can never hand out the same numbers twice).
        """
        ...

    def reserve_sequence_numbers(self, kid: bytes, count: int) -> int:
        """Reserve ``count`` sender sequence numbers of ``kid``'s context: the
        first of a range ``[first, first + count)`` that no other call, in
        this process or any other on the same database, is ever given.

        One atomic, durable step (RFC 8613 Appendix B.1.1): ``next_to_send``
        goes up by ``count`` and the range below it is the caller's.  The
        stored replay window is left as it is (``None`` for a new row).
        """
        ...

    # -- change log --------------------------------------------------------

    def changes_since(self, seq: int, *, limit: int = 10_000) -> list[Change]:
        """Changes committed after ``seq``, oldest first, at most ``limit``.

        Every write that changes what a device is served appends one, in the
        same transaction: a layer revision, a device put or delete, a
        :data:`FLEET_SETTINGS` setting, a revocation.  ``seq`` increases in
        commit order, so a reader that remembers the last ``seq`` it saw and
        asks again misses nothing (``record_seen``, telemetry and other
        settings append nothing).
        """
        ...

    def last_change(self) -> int:
        """The newest change's ``seq``; 0 when nothing was ever logged."""
        ...

    def check_writable(self) -> None:
        """Raise :class:`StoreError` when the store can be read but not written
        (a read-only file or folder): a gateway refuses to start on it rather
        than fail every write it is sent."""
        ...

    def close(self) -> None:
        """Release resources; later calls raise :class:`StoreError`.  Idempotent."""
        ...
