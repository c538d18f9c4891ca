"""What the gateway answers, independent of CoAP: representations, deltas,
reports and telemetry (DESIGN §5, §6).

:class:`SyncService` turns a device's request into bytes: the effective
configuration, a delta from the version the device holds, the critical class
only, a subtree, or a FETCH of paths.  Every representation is deterministic
for its (device config, base) pair and cached, so Block2 can serve any block
at any time while the ETag is current.  The CoAP resources in
:mod:`edgecfg.gateway.resources` only translate options and codes.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Final, Literal, cast

from cachetools import LRUCache

from edgecfg.core.delta import restrict_to_classes
from edgecfg.core.hlc import DEFAULT_MAX_DRIFT_MS
from edgecfg.core.ids import DeviceId, ETag
from edgecfg.core.path import Path, format_path, parse_path
from edgecfg.core.schema import Schema, of_priority, translate
from edgecfg.core.tree import (
    UNSET,
    Tree,
    UnsetType,
    Value,
    get,
)
from edgecfg.errors import NotFound, OverBudget, PathError, PeerError
from edgecfg.fleet.adaptation import record_adaptation
from edgecfg.fleet.events import NO_EVENTS, EventSink
from edgecfg.fleet.fleet import Fleet, config_weight, keep
from edgecfg.fleet.reconcile import ChangeTimes, journal_entries, reconcile
from edgecfg.fleet.telemetry import SETTING_SERIES, Pack, TelemetryService, cohort_value
from edgecfg.store import BadVersion, DeviceRecord, Store
from edgecfg.wire.cbor import Encoded, decode, encode, etag_of_bytes
from edgecfg.wire.delta import LEGACY_KINDS, make_delta
from edgecfg.wire.documents import read_schema
from edgecfg.wire.messages import DeviceReport, StateAnswer
from edgecfg.wire.numbers import ContentFormat
from edgecfg.wire.senml import Record

Priority = Literal["critical"]
CACHE_BYTES: Final = 96 * 2**20
"""Default memory for configuration versions and deltas (see :func:`config_weight`)."""
VERSION_BATCH: Final = 512
"""Version vectors written in one transaction, at most (see :meth:`SyncService.flush`)."""
VECTOR_ENTRIES: Final = 1 << 18
"""Version vectors of versions served lately, kept (~0.2 KiB each) so that a
device's next sync rebuilds its base without reading the store."""
PERSISTED_ENTRIES: Final = 1 << 18
"""Versions remembered as already in the store (a miss costs one idempotent write)."""
MAX_FETCH_PATHS: Final = 256
MAX_PIGGYBACK: Final = 1024  # a delta riding on a telemetry reply must fit one block
APPLIED_ENTRIES: Final = 1 << 16
"""Devices whose applied version, named in their telemetry, is remembered (a
device not among them costs one read of its record at its next telemetry)."""
MAX_DETAIL: Final = 500
"""Characters of a device's revert detail the gateway keeps."""


class UnknownPath(NotFound):
    """A configuration path the device's config does not have (4.04)."""

    def __init__(self, device: DeviceId, path: str) -> None:
        super().__init__("path", f"{path} in the config of {device}")


class BadRequest(PeerError, ValueError):
    """A request the gateway cannot make sense of (4.00)."""


@dataclass(frozen=True, slots=True)
class Representation:
    """Bytes to send, their content-format, and the ETag that names them."""

    payload: bytes
    content_format: int
    etag: ETag


@dataclass(frozen=True, slots=True)
class NotModified:
    """The device already holds the current version (2.03 Valid)."""

    etag: ETag


class SyncService:
    """Configuration sync on top of a :class:`~edgecfg.fleet.fleet.Fleet`."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        cache_bytes: int = CACHE_BYTES,
        telemetry_per_day: int | None = None,
        max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fleet = fleet
        self.clock = clock
        self.quota = TelemetryQuota(fleet.store, telemetry_per_day)
        self.max_drift_ms = max_drift_ms
        self.change_times = ChangeTimes(fleet)
        # Byte-bounded, least recently used first out: versions devices may
        # hold (3/4) and the deltas made between them (1/4).
        self._known: LRUCache[ETag, Encoded] = LRUCache(
            maxsize=cache_bytes * 3 // 4, getsizeof=config_weight
        )
        # by base, target and whether the device's agent predates a delta kind
        self._deltas: LRUCache[tuple[ETag, ETag, bool], bytes] = LRUCache(
            maxsize=cache_bytes // 4, getsizeof=_delta_weight
        )
        self._schemas: dict[int, Schema] = {}
        self._persisted: LRUCache[object, bool] = LRUCache(maxsize=PERSISTED_ENTRIES)
        self._pending: dict[tuple[ETag, bytes], None] = {}  # vectors not yet written
        # vectors held before they are written at once; a gateway that writes
        # them off its event loop a few times a second raises it
        self.flush_at = VERSION_BATCH
        # the vectors of versions served lately (equal configs of devices of
        # different stacks share an ETag, each with its own vector)
        self._vectors: LRUCache[ETag, tuple[bytes, ...]] = LRUCache(maxsize=VECTOR_ENTRIES)
        self.events: EventSink = NO_EVENTS  # telemetry and sync events (the MQTT bridge)
        self.telemetry_service = TelemetryService(fleet.store)
        self._cohort_paths: list[str] | None = None
        self._tunables: tuple[Schema, list[str]] | None = None  # the schema's, per schema
        # the day and version whose settings each device's telemetry last recorded
        self._settings_noted: LRUCache[DeviceId, tuple[int, ETag]] = LRUCache(APPLIED_ENTRIES)
        # the applied version each device last named in its telemetry, recorded
        self._applied: LRUCache[DeviceId, ETag] = LRUCache(maxsize=APPLIED_ENTRIES)

    # -- configurations -------------------------------------------------------------

    def current(self, device: DeviceId, *, schema_version: int | None = None) -> Encoded:
        """The device's effective config, in the schema version its agent speaks."""
        served = self.fleet.served(device)
        schema = self.fleet.schema
        if schema is not None and schema_version is not None and schema_version != schema.version:
            config = Encoded.trusted(
                translate(served.config.tree, schema, self._schema_version(schema, schema_version))
            )
            self._remember(config)
            return config
        self._remember(served.config, served.vector)
        return served.config

    def _schema_version(self, schema: Schema, version: int) -> Schema:
        found = self._schemas.get(version)
        if found is None:
            try:
                record = self.fleet.store.get_schema(schema.name, version)
            except NotFound:
                raise BadRequest(
                    f"schema {schema.name} has no version {version}; the gateway knows "
                    f"{self.fleet.store.schema_versions(schema.name)}"
                ) from None
            found = read_schema(record.document, "json", source=f"{schema.name} v{version}")
            self._schemas[version] = found
        return found

    def _remember(self, config: Encoded, vector: bytes | None = None) -> None:
        """Keep a served version at hand, and make sure it can be found again
        after it left memory (or the gateway restarted): by its version
        vector (a few bytes, written in batches), or, for the rare versions
        that have none (the critical part, another schema version), whole."""
        if config.etag not in self._known:
            keep(self._known, config.etag, config)
        if vector is None:
            if config.etag not in self._persisted:
                self.fleet.store.put_blob(config.cbor)
                self._persisted[config.etag] = True
            return
        vectors = self._vectors.get(config.etag, ())
        if vector not in vectors:
            self._vectors[config.etag] = (*vectors, vector)
        key = (config.etag, vector)
        if key in self._persisted or key in self._pending:
            return
        self._pending[key] = None
        if len(self._pending) >= self.flush_at:
            self.flush()

    def flush(self) -> int:
        """Write the version vectors served since the last flush (the gateway
        calls this a few times a second); how many."""
        pending = self.take_versions()
        if not pending:
            return 0
        try:
            self.write_versions(pending)
        except Exception:
            self.versions_written(pending, ok=False)
            raise
        self.versions_written(pending, ok=True)
        return len(pending)

    def take_versions(self) -> dict[tuple[ETag, bytes], None]:
        """The version vectors served since the last call, for
        :meth:`write_versions` (which a gateway runs in a worker thread) and
        then :meth:`versions_written`; :meth:`flush` is the three in one."""
        pending, self._pending = self._pending, {}
        return pending

    def write_versions(self, pending: Mapping[tuple[ETag, bytes], None]) -> None:
        """Write ``pending`` to the store; touches nothing else, so it may run
        in another thread than the one serving."""
        self.fleet.store.put_versions(pending, now=self.clock())

    def versions_written(self, pending: Mapping[tuple[ETag, bytes], None], *, ok: bool) -> None:
        """Note how the write of ``pending`` went: written, or kept for the
        next flush (a bounded number: past it, their devices get the full
        config, which loses nothing but bytes)."""
        if not ok:
            if len(pending) + len(self._pending) <= VERSION_BATCH * 16:
                self._pending = {**pending, **self._pending}
            return
        for key in pending:
            self._persisted[key] = True

    def known(self, etag: ETag, device: DeviceId | None = None) -> Encoded | None:
        """A configuration version the gateway served before: from memory,
        rebuilt for ``device`` from its version vector, or stored whole
        (versions without a vector, and those older gateways stored)."""
        found = self._known.get(etag)
        if found is None:  # a version a layer edit replaced just now: its devices ask next
            found = self.fleet.replaced(etag)
        if found is not None:
            return found
        if device is not None:
            vectors = self._vectors.get(etag) or tuple(self.fleet.store.get_versions(etag))
            for vector in vectors:
                found = self.fleet.rebuild(device, vector)
                if found is not None and found.etag == etag:
                    keep(self._known, etag, found)
                    return found
        try:
            data = self.fleet.store.get_blob(etag)
        except NotFound:
            return None
        found = Encoded.stored(data)
        if found.etag != etag:  # not a config this gateway stored
            return None
        keep(self._known, etag, found)
        return found

    def config(
        self,
        device: DeviceId,
        *,
        base: ETag | None = None,
        prio: Priority | None = None,
        schema_version: int | None = None,
    ) -> Representation | NotModified:
        """GET /cfg/{dev}[?from=..][&prio=critical]: a delta when ``base`` is known.

        The usual answers (2.03 for the current version, a delta made before)
        need only the device's ETag, never its configuration.
        """
        schema = self.fleet.schema
        plain = schema is None or schema_version in (None, schema.version)
        if base is not None and prio is None and plain:
            current = self.fleet.etag(device)
            if base == current:
                return NotModified(current)
            made = self._deltas.get((base, current, self._legacy(device)))
            if made is not None and self.fleet.bad_version(device, current) is None:
                return Representation(made, ContentFormat.DELTA, current)
        target = self.current(device, schema_version=schema_version)
        mark = self.fleet.bad_version(device, target.etag)
        if mark is not None:  # the device reverted this version: not again (issue 15)
            kept = self.known(mark.reverted_to, device)
            if kept is None:  # keep it on what it holds (a device with nothing gets it)
                if base is not None:
                    return NotModified(base)
            else:
                target = kept
        if prio == "critical":
            held = self.known(base, device) if base is not None else None
            target = self._critical(target, held)
        if base is None:
            return Representation(target.cbor, ContentFormat.CBOR, target.etag)
        if base == target.etag:
            return NotModified(target.etag)
        legacy = self._legacy(device)
        made = self._deltas.get((base, target.etag, legacy))  # the base need not be at hand
        if made is not None:
            return Representation(made, ContentFormat.DELTA, target.etag)
        held = self.known(base, device)
        if held is None:
            return Representation(target.cbor, ContentFormat.CBOR, target.etag)
        delta = self._delta(held, target, legacy=legacy)
        return Representation(delta, ContentFormat.DELTA, target.etag)

    def _legacy(self, device: DeviceId) -> bool:
        """Whether the device's agent predates the ops+deflate delta kind
        (it reported agent 1.0.0, or no version yet): it is never sent one,
        which it could not decode (it would fetch the full config instead)."""
        return _is_legacy_agent(self.fleet.agent_version(device))

    def _critical(self, current: Encoded, held: Encoded | None) -> Encoded:
        schema = self.fleet.schema
        if held is not None:
            if schema is None:
                return held  # a free-form fleet has no critical keys
            middle = restrict_to_classes(
                held.tree, current.tree, schema=schema, classes={"critical"}
            )
            config = Encoded.trusted(middle)
        else:
            config = Encoded.trusted(of_priority(current.tree, schema, "critical"))
        self._remember(config)
        return config

    def _delta(self, base: Encoded, target: Encoded, *, legacy: bool) -> bytes:
        key = (base.etag, target.etag, legacy)
        found = self._deltas.get(key)
        if found is None:
            kinds = LEGACY_KINDS if legacy else None
            found = make_delta(base, target, hints=self.fleet.encoder, kinds=kinds)
            keep(self._deltas, key, found)
        return found

    def subtree(self, device: DeviceId, path: Path) -> Representation:
        """GET /cfg/{dev}/{path...}: one subtree (its own ETag)."""
        config = self.current(device)
        node = get(config.tree, path)
        if node is UNSET:
            raise UnknownPath(device, format_path(path))
        blob = encode(cast(Value, node))
        return Representation(blob, ContentFormat.CBOR, etag_of_bytes(blob))

    def fetch(self, device: DeviceId, body: bytes) -> Representation:
        """FETCH /cfg/{dev} with a CBOR array of dotted paths (RFC 8132)."""
        try:
            request = decode(body)
        except PeerError as error:
            raise BadRequest(f"FETCH body: {error}") from None
        if not isinstance(request, list) or not all(isinstance(p, str) for p in request):
            raise BadRequest('FETCH body must be a CBOR array of dotted paths, e.g. ["net.uplink"]')
        paths = cast(list[str], request)
        if len(paths) > MAX_FETCH_PATHS:
            raise BadRequest(f"FETCH of {len(paths)} paths exceeds {MAX_FETCH_PATHS}")
        config = self.current(device)
        answer: Tree = {}
        for text in paths:
            try:
                path = parse_path(text)
            except PathError as error:
                raise BadRequest(str(error)) from None
            node = get(config.tree, path)
            if isinstance(node, UnsetType):
                raise UnknownPath(device, text)
            answer[text] = node
        blob = encode(answer)
        return Representation(blob, ContentFormat.CBOR, etag_of_bytes(blob))

    # -- uplink ---------------------------------------------------------------------

    def report(self, device: DeviceId, body: bytes, *, now: float) -> Representation | None:
        """POST /state/{dev}: record what the device applied; answer where it stands.

        None when the device applied the current version (an empty 2.04: every
        byte counts on the device's link); else ``{"etag": current}``.
        """
        report = DeviceReport.decode(body)
        record = self.fleet.record(device)
        # a trial the agent merely stopped says nothing against the version
        reverted = [
            trial
            for trial in report.apply
            if trial.verdict == "reverted" and trial.reason != "interrupted"
        ]
        updated = _updated_record(record, report)
        # everything a report can be refused for is checked before anything is recorded
        schema_version = report.schema
        schema = self.fleet.schema
        if schema is not None and schema_version not in (None, schema.version):
            self._schema_version(schema, schema_version)
        if report.journal is not None:
            journal_entries(list(report.journal))
        if updated != record:
            self.fleet.add_device(updated)
        self.fleet.store.record_seen(device, now=now, applied_etag=report.applied)
        self._applied.pop(device, None)
        self.events.applied(device, report.applied, now=now)
        if report.adapt is not None:  # the device's local adaptation layer (issue 14)
            record_adaptation(self.fleet.store, device, report.adapt, now=now)
        for trial in reverted:  # not offered to this device again (issue 15)
            self.fleet.mark_bad(
                BadVersion(
                    device, trial.candidate, trial.previous, trial.reason or "",
                    trial.detail[:MAX_DETAIL], now,
                )
            )  # fmt: skip
        outcome: Value | None = None
        if report.journal is not None:  # offline changes to merge (issue 6)
            held = self.known(report.base, device) if report.base is not None else None
            outcome = reconcile(
                self.fleet, device, list(report.journal),
                base=held.tree if held is not None else None, now=now,
                max_drift_ms=self.max_drift_ms, change_times=self.change_times,
            )  # fmt: skip
            self.events.local_changes(device, outcome, now=now)
        served = self.served_etag(device, held=report.applied, schema_version=schema_version)
        if report.applied == served and outcome is None:
            return None
        answer = StateAnswer(served, report.applied == served, outcome)
        return Representation(answer.encode(), ContentFormat.CBOR, served)

    def served_etag(
        self, device: DeviceId, *, held: ETag | None = None, schema_version: int | None = None
    ) -> ETag:
        """The ETag the device is served: its effective configuration's, or,
        while the device has that version marked bad (it reverted it), the
        version it went back to (``held`` when the gateway no longer has that
        one: the device keeps what it has)."""
        current = self.current(device, schema_version=schema_version).etag
        mark = self.fleet.bad_version(device, current)
        if mark is None:
            return current
        if self.known(mark.reverted_to, device) is None and held is not None:
            return held
        return mark.reverted_to

    def telemetry(
        self,
        device: DeviceId,
        body: bytes,
        *,
        now: float,
        held: ETag | None,
        content_format: int | None = None,
    ) -> Representation | NotModified | None:
        """POST /tel/{dev}[?cfg=..]: store the pack; piggyback the config delta.

        Returns None without ``held``; NotModified when the device is current;
        a delta (or full config) when it fits one block; otherwise NotModified
        with the new ETag, telling the device to GET the delta itself.  The
        gateway does the same in three steps (:meth:`accept_telemetry`, the
        ingest off its event loop, :meth:`piggyback`).
        """
        pack = self.accept_telemetry(device, body, now=now, content_format=content_format,
                                     held=held)  # fmt: skip
        self.telemetry_service.ingest([pack])
        self.events.telemetry(device, pack.payload, now=now)
        return self.piggyback(device, held, now=now)

    def accept_telemetry(
        self,
        device: DeviceId,
        body: bytes,
        *,
        now: float,
        content_format: int | None = None,
        held: ETag | None = None,
    ) -> Pack:
        """Check a telemetry pack (known device, well-formed SenML-CBOR or
        SenML-JSON, within the day's quota) and make it ready to ingest.

        With ``held``, the version the device says it runs: when that is the
        version it is served, the values it runs of the schema's tunable
        settings are added to the pack's readings as ``cfg/<dotted path>``
        (not to the raw pack), so the device's day buckets record the settings
        it ran each day: the optimizer's within-device evidence, at no cost on
        the device's link.  A device on another version (it is about to be
        brought up to date) adds none that time."""
        facts = self.fleet.device(device)
        # refuse malformed packs before storing anything
        pack = Pack.of(device, body, content_format, received=now, groups=facts.groups,
                       cohorts=self._cohorts(device))  # fmt: skip
        self.quota.charge(device, len(body), now=now)  # 4.29 beyond the day's bytes
        settings = self._settings_run(device, held, now=now)
        return replace(pack, records=pack.records + settings) if settings else pack

    def _settings_run(
        self, device: DeviceId, held: ETag | None, *, now: float
    ) -> tuple[Record, ...]:
        """``cfg/<path>`` readings of the tunable settings of the version
        ``device`` runs, when it runs the one it is served (else none)."""
        schema = self.fleet.schema
        if held is None or schema is None:
            return ()
        if self._tunables is None or self._tunables[0] is not schema:
            self._tunables = (schema, [spec.dotted for spec in schema if spec.tunable])
        paths = self._tunables[1]
        day = int(now // DAY_S)
        if not paths or self._settings_noted.get(device) == (day, held):
            return ()  # once a device-day and version: the day's last value is what counts
        if self.fleet.etag(device) != held:
            return ()
        self._settings_noted[device] = (day, held)
        tree = self.fleet.encoded(device).tree  # a resolve when not cached: once a day
        readings: list[Record] = []
        for dotted in paths:
            value = get(tree, parse_path(dotted))
            if isinstance(value, int | float) and not isinstance(value, bool):
                readings.append(Record(f"{SETTING_SERIES}{dotted}", float(value), None, now))
        return tuple(readings)

    def piggyback(
        self, device: DeviceId, held: ETag | None, *, now: float
    ) -> Representation | NotModified | None:
        """The config answer riding on a telemetry POST (see :meth:`telemetry`);
        the version the device names is recorded as applied."""
        if held is None:
            return None
        self._note_applied(device, held, now=now)
        answer = self.config(device, base=held)
        if isinstance(answer, Representation) and len(answer.payload) > MAX_PIGGYBACK:
            return NotModified(answer.etag)  # too big to ride along: fetch with GET
        return answer

    def _cohorts(self, device: DeviceId) -> dict[str, str]:
        """The device's values of the cohort paths (read once per service)."""
        if self._cohort_paths is None:
            self._cohort_paths = self.telemetry_service.cohort_paths()
        if not self._cohort_paths:
            return {}
        tree = self.fleet.encoded(device).tree
        found: dict[str, str] = {}
        for path in self._cohort_paths:
            value = cohort_value(get(tree, parse_path(path)))
            if value is not None:
                found[path] = value
        return found

    def _note_applied(self, device: DeviceId, held: ETag, *, now: float) -> None:
        """The version a device names in its telemetry (``?cfg=`` or the ETag
        option) is the one it runs: record it as applied, once per change.  A
        config that rode on a telemetry answer is not reported by itself (it
        would cost the device a round trip); its next telemetry says it here."""
        if self._applied.get(device) == held:
            return
        if self.fleet.record(device).applied_etag != held:
            self.fleet.store.record_seen(device, now=now, applied_etag=held)
            self.events.applied(device, held, now=now)
        self._applied[device] = held


DAY_S: Final = 86400
RECOUNT_PACKS: Final = 10_000
FIRST_DEFLATE_AGENT: Final = (1, 0, 1)
"""The first agent version that decodes ops+deflate deltas (kind 7)."""


@functools.lru_cache(maxsize=64)  # asked on every delta served; a fleet runs a few versions
def _is_legacy_agent(version: str | None) -> bool:
    """Whether an agent of ``version`` (as it reported it: major.minor.patch,
    missing parts 0) predates :data:`FIRST_DEFLATE_AGENT`; an unknown or
    unreadable version does."""
    if version is None:
        return True
    parts = version.split(".")[:3]
    if not all(part.isascii() and part.isdigit() for part in parts):
        return True
    numbers = tuple(int(part) for part in parts)
    return numbers + (0,) * (3 - len(numbers)) < FIRST_DEFLATE_AGENT


class TelemetryQuota:
    """Telemetry bytes per device per UTC day (None: no limit).

    One device must not fill the gateway's disk: beyond its bytes for the day
    a pack is refused with :class:`~edgecfg.errors.OverBudget` (4.29 with
    Max-Age until the next day) and counted in ``refused``.  The count of a
    day starts from the store (the day's newest packs, at most
    ``RECOUNT_PACKS``), so a restart does not hand out a fresh day.
    """

    def __init__(self, store: Store, per_day: int | None) -> None:
        self.store = store
        self.per_day = per_day
        self.refused: dict[DeviceId, int] = {}
        self._used: dict[DeviceId, tuple[int, int]] = {}  # device -> (day, bytes)

    def used(self, device: DeviceId, *, now: float) -> int:
        """Bytes ``device`` stored on the day of ``now``."""
        day = int(now // DAY_S)
        found = self._used.get(device)
        if found is not None and found[0] == day:
            return found[1]
        start = day * DAY_S
        packs = self.store.telemetry(device, limit=RECOUNT_PACKS)
        used = sum(len(blob) for at, blob in packs if at >= start)
        self._used[device] = (day, used)
        return used

    def charge(self, device: DeviceId, size: int, *, now: float) -> None:
        """Count ``size`` bytes for ``device``, or raise OverBudget."""
        if self.per_day is None:
            return
        used = self.used(device, now=now)
        if used + size > self.per_day:
            self.refused[device] = self.refused.get(device, 0) + 1
            next_day = (int(now // DAY_S) + 1) * DAY_S
            raise OverBudget(
                f"telemetry quota: {device} stored {used} of {self.per_day} bytes today; "
                f"this pack of {size} bytes is refused",
                limit="telemetry bytes per day",
                retry_after_s=max(1, math.ceil(next_day - now)),
            )
        self._used[device] = (int(now // DAY_S), used + size)


def _delta_weight(delta: bytes) -> int:
    return len(delta) + 150  # the key's two ETags and the entry


def _updated_record(record: DeviceRecord, report: DeviceReport) -> DeviceRecord:
    return DeviceRecord(
        record.id,
        record.groups,
        hardware=report.hardware if report.hardware is not None else record.hardware,
        firmware=report.firmware if report.firmware is not None else record.firmware,
        agent_version=report.agent if report.agent is not None else record.agent_version,
        last_seen=record.last_seen,
        applied_etag=record.applied_etag,
    )
