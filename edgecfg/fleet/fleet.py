"""The fleet: groups, layers and devices from the store, resolved and explained.

:class:`Fleet` is the system of record's view of configuration (DESIGN §1,
§4).  It reads layers, memberships and the schema from a
:class:`~edgecfg.store.Store` and resolves effective configurations with a
:class:`~edgecfg.core.resolve.Resolver`.  What it holds is bounded by caches,
not by the fleet:

- the global and group layers are loaded at start; a device's own layer is
  read when first needed (all of them only for a dry run, which must see
  every layer);
- encoded configurations sit in a byte-bounded cache, shared per signature
  (stack and applicability), each with the stamps of the layers it was made
  from, so a layer edit makes stale exactly the entries that used it; a
  compact record per device answers "which ETag is current" without them;
- each served configuration carries its version vector (schema version and
  layer revisions) so it can be rebuilt from history later
  (:meth:`Fleet.rebuild`) instead of being stored;
- after a group or global layer's edit, a cached configuration is carried
  over the layer-level change (:meth:`Resolver.rederive
  <edgecfg.core.resolve.Resolver.rederive>`, when that provably equals
  resolving) rather than resolved again, and the one it replaces stays at
  hand (:meth:`Fleet.replaced`) for the delta its devices ask for next.

Writes are checked before anything is stored: a layer edit is refused
(:class:`~edgecfg.errors.WriteRefused`, with a device count and examples)
when it breaks a lock, makes tied layers disagree or makes any device's
effective config violate the schema; the dry run and the schema checks
behind it live in :mod:`edgecfg.fleet.impact`, which reads the fleet through
:meth:`Fleet.reached_by`, :meth:`Fleet.members` and :meth:`Fleet.known_leaves`.
Other writers' changes arrive through the store's change log
(:meth:`Fleet.refresh`).
"""

from __future__ import annotations

import gc
import json
from collections.abc import Generator, Iterable, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final, TypeVar, cast

from cachetools import LRUCache

from edgecfg.core.ids import DeviceId, ETag, LayerId, check_device_id
from edgecfg.core.layers import (
    EMPTY_LAYER,
    GLOBAL,
    Hierarchy,
    Layer,
    layer_from_document,
    layer_to_document,
)
from edgecfg.core.path import Path, format_path
from edgecfg.core.resolve import (
    DeviceFacts,
    Explanation,
    Resolution,
    Resolver,
    Tiers,
)
from edgecfg.core.schema import Schema
from edgecfg.core.schema_document import check_evolution
from edgecfg.core.tree import Tree, Value
from edgecfg.errors import (
    FleetValidationError,
    NotFound,
    UsageError,
    Violation,
)
from edgecfg.fleet.impact import (
    SAMPLE,
    Impact,
    check_known_paths,
    check_values,
    dry_run,
    refuse,
)
from edgecfg.store import BadVersion, DeviceRecord, LayerRevision, Store
from edgecfg.wire.cbor import Encoded, SubtreeEncoder, decode, encode
from edgecfg.wire.documents import TextFormat, read_schema

HIERARCHY_SETTING: Final = "fleet.hierarchy"
SCHEMA_SETTING: Final = "fleet.schema"
CHANGE_BATCH: Final = 10_000
"""Change-log entries read per query by :meth:`Fleet.refresh`."""

CONFIG_CACHE_BYTES: Final = 128 * 2**20
"""Default memory for resolved, encoded configurations (see :func:`config_weight`)."""
ENCODER_MIN_BYTES: Final = 32 * 2**20
"""The encoder's memo at least (see :class:`Fleet`)."""
FACTS_ENTRIES: Final = 1 << 17
"""Devices whose registration stays at hand without the member index."""
PAST_ENTRIES: Final = 1 << 15
"""Folds and layers the resolver of past versions holds before it starts afresh."""
HEAD_ENTRIES: Final = 1 << 16
"""Newest revisions of layers kept at hand (every group layer's, usually)."""
ETAG_ENTRIES: Final = 1 << 19
"""Devices whose current ETag is known without their configuration (~0.4 KiB each)."""
LAYER_HISTORY: Final = 4
"""Past contents of each group layer kept (by stamp), so a configuration
resolved before an edit can be carried over it (:meth:`Fleet.served`)."""
REPLACED_ENTRIES: Final = 256
"""Configurations a fresher one replaced lately, kept for the delta from them."""
TREE_OVERHEAD: Final = 3
"""Bytes a decoded tree holds per byte of its canonical CBOR, about (CPython
dicts, strings and numbers of configs like the fixture schema's)."""

_K = TypeVar("_K")
_V = TypeVar("_V")

Signature = tuple[Tiers, tuple[str | None, str | None, str | None]]


@dataclass(frozen=True, slots=True)
class FleetChanges:
    """What :meth:`Fleet.refresh` picked up from other writers."""

    layers: frozenset[LayerId] = frozenset()
    """Layers whose content changed."""
    devices: frozenset[DeviceId] = frozenset()
    """Devices registered, changed (groups, hardware, ...) or deleted."""
    everything: bool = False
    """The dimension order or the schema changed: any device may have changed."""

    def __bool__(self) -> bool:
        return bool(self.layers or self.devices or self.everything)


@dataclass(frozen=True, slots=True)
class Served:
    """A device's configuration and how to rebuild it later: ``vector``
    names the schema version and the revision of each layer in the device's
    stack it was resolved from (:meth:`Fleet.rebuild`)."""

    config: Encoded
    vector: bytes


@dataclass(frozen=True, slots=True)
class _Cached:
    stamps: tuple[int, ...]
    served: Served


def config_weight(config: Encoded) -> int:
    """What holding ``config`` costs, roughly: its bytes and its decoded tree
    (subtrees shared with other holders are counted for each, so this errs high)."""
    return len(config.cbor) * (1 + TREE_OVERHEAD) + 200


def keep(cache: LRUCache[_K, _V], key: _K, value: _V) -> None:
    """Put ``value`` in a byte-bounded cache unless it alone exceeds the bound
    (cachetools would raise)."""
    if cache.getsizeof(value) <= cache.maxsize:
        cache[key] = value


def _cached_weight(entry: _Cached) -> int:
    return config_weight(entry.served.config) + 8 * len(entry.stamps) + len(entry.served.vector)


@dataclass(slots=True)
class _Members:
    facts: dict[DeviceId, DeviceFacts] = field(default_factory=lambda: {})
    signatures: dict[Signature, list[DeviceId]] = field(default_factory=lambda: {})
    by_device: dict[DeviceId, Signature] = field(default_factory=lambda: {})


class Fleet:
    """Configuration state of a fleet, backed by a store."""

    def __init__(self, store: Store, *, cache_bytes: int = CONFIG_CACHE_BYTES) -> None:
        self.store = store
        self.cache_bytes = cache_bytes
        # Read before anything is loaded: a write committed meanwhile is then
        # both loaded and logged after this seq, never lost between the two.
        self._seq = store.last_change()
        self._load()

    def _load(self) -> None:
        self.hierarchy = self._load_hierarchy()
        self.schema = self._load_schema()
        # newest revisions: every group layer's, and the own layers' read lately
        self._group_heads: dict[LayerId, LayerRevision] = {}
        self._own_heads: LRUCache[LayerId, LayerRevision] = LRUCache(maxsize=HEAD_ENTRIES)
        self.resolver = Resolver(
            self.hierarchy, self._load_layers(), self.schema, loader=self._read_own
        )
        self._members: _Members | None = None
        # Encoded configs by signature, each with the layer stamps it was built
        # from: a layer edit bumps its stamp, so a stale entry is seen at the
        # next lookup and nothing has to find the users of a layer.
        self._configs: LRUCache[Signature, _Cached] = LRUCache(
            maxsize=self.cache_bytes, getsizeof=_cached_weight
        )
        self._stamps: dict[LayerId, int] = {}
        # group layers as they were at their last few stamps (see _install)
        self._history: dict[LayerId, dict[int, Layer]] = {}
        self._replaced: LRUCache[ETag, Encoded] = LRUCache(maxsize=REPLACED_ENTRIES)
        self.carried = 0  # configurations carried over an edit, not resolved again
        self._facts: LRUCache[DeviceId, DeviceFacts] = LRUCache(maxsize=FACTS_ENTRIES)
        # per device: its stack, the layers' stamps, the ETag, its agent's version
        self._etags: LRUCache[DeviceId, tuple[Tiers, tuple[int, ...], ETag, str | None]] = LRUCache(
            maxsize=ETAG_ENTRIES
        )
        self._leaves: list[Path] | None = None
        # Shared by every encoding.  Its memo covers the maps of the configs
        # the cache above keeps: their encodings take about 2.3x a config's
        # CBOR, which config_weight counts 4x, so 3/4 of the cache's bytes.
        # With 32 MiB, 4,000 devices asking after a fleet-wide edit emptied
        # it twice over, and every device's maps were encoded again (first
        # request after the edit: 300 µs of the service's CPU, 210-265 µs).
        self.encoder = SubtreeEncoder(max_bytes=max(ENCODER_MIN_BYTES, self.cache_bytes * 3 // 4))
        self._past: Resolver | None = None  # see rebuild
        # devices holding a bad-version mark (issue 15): few, so the hot path
        # asks the store about these alone; kept by the change log's marks
        self._marked: set[DeviceId] = set(self.store.marked_devices())

    # -- loading ----------------------------------------------------------------

    def _load_hierarchy(self) -> Hierarchy:
        raw = self.store.get_setting(HIERARCHY_SETTING)
        if raw is None:
            return Hierarchy()
        ranks = json.loads(raw.decode("utf-8"))
        return Hierarchy(tuple(tuple(rank) for rank in ranks))

    def _load_schema(self) -> Schema | None:
        raw = self.store.get_setting(SCHEMA_SETTING)
        if raw is None:
            return None
        record = self.store.get_schema(raw.decode("utf-8"))
        return read_schema(record.document, _format_of(record.document), source=record.name)

    def _load_layers(self) -> dict[LayerId, Layer]:
        """The global and group layers; devices' own layers are read when
        first needed (:meth:`_read_own`), so start-up does not grow with the fleet."""
        layers: dict[LayerId, Layer] = {}
        ids = [i for i in self.store.layer_ids(GLOBAL) if i == GLOBAL]
        for dimension in self.hierarchy.dimensions:
            ids.extend(self.store.layer_ids(f"{dimension}/"))
        for layer_id in ids:
            head = self.store.get_layer(layer_id)
            layers[layer_id] = layer_from_document(decode(self.store.get_blob(head.content)))
            self._group_heads[layer_id] = head
        return layers

    def _read_own(self, layer_id: LayerId) -> Layer:
        """A device's own layer as stored now (empty when it has none); its
        head is noted with it, so a version vector names what was read."""
        try:
            head = self.store.get_layer(layer_id)
        except NotFound:
            self._own_heads.pop(layer_id, None)
            return EMPTY_LAYER
        self._own_heads[layer_id] = head
        return layer_from_document(decode(self.store.get_blob(head.content)))

    def hold_all_layers(self) -> None:
        """Hold every device's own layer from now on: what an edit changes,
        blocks or breaks (:meth:`impact`) is decided over all of them."""
        if self.resolver.complete:
            return
        own: dict[LayerId, Layer] = {}
        with _collector_paused():
            for prefix in ("device/", "local/"):
                for layer_id in self.store.layer_ids(prefix):
                    own[layer_id] = self._read_own(layer_id)
        self.resolver.add_layers(own)

    def refresh(self) -> FleetChanges:
        """Pick up what other writers (the CLI, another gateway) committed.

        Reads the store's change log after the last entry seen, so the cost is
        one indexed read when nothing changed and proportional to the changes
        otherwise, never to the fleet: each changed layer is re-read once,
        each changed device re-admitted.  A changed dimension order or schema
        reloads everything (rare).  The fleet's own writes come back through
        the log too; they change nothing here.
        """
        layers: set[LayerId] = set()
        devices: set[DeviceId] = set()
        marks: set[DeviceId] = set()
        everything = False
        while True:
            batch = self.store.changes_since(self._seq, limit=CHANGE_BATCH)
            for change in batch:
                if change.kind == "layer":
                    layers.add(LayerId(change.key))
                elif change.kind == "device":
                    devices.add(DeviceId(change.key))
                elif change.kind == "mark":  # the device is served another version
                    marks.add(DeviceId(change.key))
                elif change.kind == "setting":
                    everything = True
            if batch:
                self._seq = batch[-1].seq
            if len(batch) < CHANGE_BATCH:
                break
        for device in marks | (devices & self._marked):  # a deleted device lost its marks
            self._note_marks(device)
        if everything:
            self._load()
            return FleetChanges(
                layers=frozenset(self.resolver.layer_ids()), devices=frozenset(devices | marks),
                everything=True,
            )  # fmt: skip
        changed = frozenset(layer for layer in sorted(layers) if self._reload_layer(layer))
        for device in devices:
            self._reload_device(device)
        return FleetChanges(layers=changed, devices=frozenset(devices | marks))

    # -- versions devices reverted (issue 15) ----------------------------------------

    def bad_version(self, device_id: DeviceId, etag: ETag) -> BadVersion | None:
        """The device's mark of ``etag`` (it reverted that version), or None.

        Asked on every delta served, so the store is read only for a device
        known to hold a mark: a mark another process puts or clears arrives
        through the change log with the next :meth:`refresh`.
        """
        if device_id not in self._marked:
            return None
        return self.store.get_bad_version(device_id, etag)

    def mark_bad(self, record: BadVersion) -> None:
        """Mark ``record.etag`` bad for its device, at once for this process."""
        self.store.put_bad_version(record)
        self._marked.add(record.device)

    def clear_marks(self, device_id: DeviceId, etag: ETag | None = None) -> int:
        """Forget the device's mark of ``etag`` (None: all); how many went."""
        gone = self.store.clear_bad_versions(device_id, etag)
        self._note_marks(device_id)
        return gone

    def _note_marks(self, device_id: DeviceId) -> None:
        if self.store.bad_versions(device_id):
            self._marked.add(device_id)
        else:
            self._marked.discard(device_id)

    def _reload_layer(self, layer_id: LayerId) -> bool:
        """Re-read one layer's head; whether its content changed."""
        try:
            head = self.store.get_layer(layer_id)
        except NotFound:
            return False
        known = self._heads(layer_id).get(layer_id)
        if known is not None and known.revision == head.revision:
            return False  # this fleet's own write, already installed
        blob = self.store.get_blob(head.content)
        layer = layer_from_document(decode(blob))
        self._heads(layer_id)[layer_id] = head
        # equal encodings, not ==: a layer whose value went from true to 1 changed
        if self.resolver.holds(layer_id) and blob == encode(
            layer_to_document(self.resolver.layer(layer_id))
        ):
            return False
        self._install(layer_id, layer)
        return True

    def _reload_device(self, device_id: DeviceId) -> None:
        """Re-read one device's registration (or notice it is gone)."""
        self._facts.pop(device_id, None)
        self._etags.pop(device_id, None)
        if self._members is None:
            return  # loaded lazily, from the store as it is now
        try:
            record = self.store.get_device(device_id)
        except NotFound:
            _evict(self._members, device_id)
            return
        self._admit(self._members, _facts(record))

    def members(self) -> _Members:
        """Every registered device, grouped by signature (loaded once, lazily)."""
        if self._members is None:
            members = _Members()
            with _collector_paused():
                for record in self.store.iter_devices():
                    self._admit(members, _facts(record))
            self._members = members
        return self._members

    def warm(self) -> int:
        """Resolve and encode every device's configuration now (a gateway at
        start-up); returns the number of distinct configurations.

        The work allocates millions of small objects that all stay alive; the
        garbage collector is paused meanwhile rather than scanning them again
        and again.
        """
        members = self.members()
        with _collector_paused():
            tags = {self.encoded(devices[0]).etag for devices in members.signatures.values()}
        return len(tags)

    def _admit(self, members: _Members, facts: DeviceFacts) -> None:
        old = members.by_device.get(facts.id)
        if old is not None:
            members.signatures[old].remove(facts.id)
            if not members.signatures[old]:
                del members.signatures[old]
        signature = (self.resolver.tiers(facts), facts.applicability)
        members.facts[facts.id] = facts
        members.by_device[facts.id] = signature
        members.signatures.setdefault(signature, []).append(facts.id)

    # -- settings ---------------------------------------------------------------

    def set_hierarchy(self, hierarchy: Hierarchy) -> None:
        """Change the precedence order; refused if a device uses a dimension it drops."""
        used = {dim for facts in self.members().facts.values() for dim in facts.groups}
        missing = used - set(hierarchy.dimensions)
        if missing:
            raise UsageError(
                f"devices use dimensions {sorted(missing)}, which the new order leaves out"
            )
        allowed = {*hierarchy.dimensions, "global", "device", "local"}
        orphans = [i for i in self.resolver.layer_ids() if _layer_dimension(i) not in allowed]
        if orphans:
            raise UsageError(f"layers {orphans[:SAMPLE]} belong to dimensions the order leaves out")
        ranks = [list(rank) for rank in hierarchy.ranks]
        self.store.put_setting(HIERARCHY_SETTING, json.dumps(ranks).encode())
        self.__init__(self.store, cache_bytes=self.cache_bytes)

    def load_schema(self, data: bytes, fmt: TextFormat, *, source: str, now: float) -> Schema:
        """Store a schema version (checked against the versions before it) and use it."""
        schema = read_schema(data, fmt, source=source)
        history: list[Schema] = []
        for version in self.store.schema_versions(schema.name):
            record = self.store.get_schema(schema.name, version)
            if version == schema.version:
                if record.document != data:
                    raise UsageError(
                        f"{schema.name} v{version} is already stored with other content; "
                        "bump the version"
                    )
                continue
            history.append(read_schema(record.document, _format_of(record.document)))
        check_evolution([h for h in history if h.version < schema.version], schema)
        self.store.put_schema(schema.name, schema.version, data, now=now)
        self.store.put_setting(SCHEMA_SETTING, schema.name.encode())
        self.__init__(self.store, cache_bytes=self.cache_bytes)
        return schema

    # -- reading ----------------------------------------------------------------

    def layer(self, layer_id: LayerId) -> Layer:
        """The current content of a layer (empty when never written)."""
        self.hierarchy.parse(layer_id)
        return self.resolver.layer(layer_id)

    def head(self, layer_id: LayerId) -> LayerRevision | None:
        """The newest revision of a layer, or None."""
        heads = self._heads(layer_id)
        found = heads.get(layer_id)
        if found is None:
            try:
                found = self.store.get_layer(layer_id)
            except NotFound:
                return None
            heads[layer_id] = found
        return found

    def _heads(self, layer_id: LayerId) -> MutableMapping[LayerId, LayerRevision]:
        return self._own_heads if _is_own(layer_id) else self._group_heads

    def history(self, layer_id: LayerId) -> list[LayerRevision]:
        """Every revision of a layer, oldest first."""
        self.hierarchy.parse(layer_id)
        return self.store.layer_history(layer_id)

    def has_device(self, device_id: DeviceId) -> bool:
        """Whether ``device_id`` is registered (one indexed lookup)."""
        return self.store.has_device(device_id)

    def record(self, device_id: DeviceId) -> DeviceRecord:
        """A registered device's stored record (what it last reported, too);
        :class:`NotFound` otherwise."""
        return self.store.get_device(device_id)

    def device(self, device_id: DeviceId) -> DeviceFacts:
        """A registered device; :class:`NotFound` otherwise."""
        if self._members is not None and device_id in self._members.facts:
            return self._members.facts[device_id]
        found = self._facts.get(device_id)
        if found is None:
            found = _facts(self.store.get_device(device_id))
            self._facts[device_id] = found
        return found

    def resolve(self, device_id: DeviceId) -> Resolution:
        """The device's effective configuration (with conflicts, blocks, drops)."""
        return self.resolver.resolve(self.device(device_id))

    def encoded(self, device_id: DeviceId) -> Encoded:
        """The device's effective configuration, encoded (see :meth:`served`)."""
        return self.served(device_id).config

    def served(self, device_id: DeviceId) -> Served:
        """The device's effective configuration, encoded, with its version
        vector; shared per signature (devices without layers of their own
        share one) and kept in a byte-bounded cache (``cache_bytes``): an
        evicted one is resolved again from the cached group fold below it
        (or, after a group layer's edit, carried over it: :meth:`_carried`)."""
        facts = self.device(device_id)
        tiers = self.resolver.tiers(facts)
        return self._served(facts, tiers, self._stamps_of(tiers))

    def _served(self, facts: DeviceFacts, tiers: Tiers, stamps: tuple[int, ...]) -> Served:
        signature = (tiers, facts.applicability)
        found = self._configs.get(signature)
        if found is None or found.stamps != stamps:
            vector = self._vector(tiers)  # before resolving: a layer read now is in both
            tree = None if found is None else self._carried(facts, tiers, found, stamps)
            if tree is None:
                tree = self.resolver.tree(facts, tiers=tiers)
            else:
                self.carried += 1
            if found is not None:  # what devices of this signature hold: deltas start there
                self._replaced[found.served.config.etag] = found.served.config
            found = _Cached(stamps, Served(Encoded.trusted(tree, encoder=self.encoder), vector))
            keep(self._configs, signature, found)
        return found.served

    def _carried(
        self, facts: DeviceFacts, tiers: Tiers, stale: _Cached, stamps: tuple[int, ...]
    ) -> Tree | None:
        """The configuration of ``stale`` carried over the one group layer
        edited since (:meth:`Resolver.rederive`: the layer-level change laid
        on it, when that provably equals resolving); None otherwise."""
        moved = [n for n, (a, b) in enumerate(zip(stale.stamps, stamps, strict=True)) if a != b]
        if len(moved) != 1:
            return None
        layer_id = [layer_id for tier in tiers for layer_id in tier][moved[0]]
        before = self._history.get(layer_id, {}).get(stale.stamps[moved[0]])
        if before is None:
            return None
        return self.resolver.rederive(facts, tiers, stale.served.config.tree, layer_id, before)

    def replaced(self, etag: ETag) -> Encoded | None:
        """A configuration served until a layer edit replaced it lately (the
        version its devices hold), or None."""
        return self._replaced.get(etag)

    def _vector(self, tiers: Tiers) -> bytes:
        """The schema version and each layer's revision in ``tiers`` (0: none)."""
        revisions: list[Value] = [self.schema.version if self.schema is not None else 0]
        for tier in tiers:
            for layer_id in tier:
                if _is_own(layer_id):
                    self.resolver.layer(layer_id)  # read now, it notes its head
                    head = self.head(layer_id)
                else:  # every group layer there is is loaded, with its head
                    head = self._group_heads.get(layer_id)
                revisions.append(head.revision if head is not None else 0)
        return encode(revisions)

    def rebuild(self, device_id: DeviceId, vector: bytes) -> Encoded | None:
        """The configuration ``vector`` names for this device, from the layers'
        history; None when it no longer can be (the device changed groups or
        hardware since, the schema changed, a revision is gone): the caller
        checks the result's ETag against the one it wanted, too."""
        try:
            revisions = decode(vector)
        except ValueError:
            return None
        facts = self.device(device_id)
        tiers = self.resolver.tiers(facts)
        schema_version = self.schema.version if self.schema is not None else 0
        if (
            not isinstance(revisions, list)
            or not revisions
            or revisions[0] != schema_version
            or not all(type(r) is int for r in revisions)
        ):
            return None
        while sum(map(len, tiers)) + 1 > len(revisions) and tiers and _is_own(tiers[-1][0]):
            tiers = tiers[:-1]  # its own layer came after that version
        ids = [layer_id for tier in tiers for layer_id in tier]
        if len(revisions) != len(ids) + 1:
            return None
        past = self._past_resolver()
        names: dict[LayerId, LayerId] = {}
        for layer_id, revision in zip(ids, cast(list[int], revisions[1:]), strict=True):
            # Past layers are named id@revision: devices that held the same
            # past stack share its folds (and their encodings) here.
            name = names[layer_id] = LayerId(f"{layer_id}@{revision}")
            if revision == 0 or past.holds(name):
                continue
            layer = self._past_layer(layer_id, revision)
            if layer is None:
                return None
            past.put_layer(name, layer)
        past_tiers = tuple(tuple(names[layer_id] for layer_id in tier) for tier in tiers)
        tree = past.tree(facts, tiers=past_tiers)
        return Encoded.trusted(tree, encoder=self.encoder)

    def _past_resolver(self) -> Resolver:
        """The resolver of past versions, started afresh when it grew large."""
        past = self._past
        if past is None or past.cached_folds() + past.held() > PAST_ENTRIES:
            past = self._past = Resolver(self.hierarchy, {}, self.schema)
        return past

    def _past_layer(self, layer_id: LayerId, revision: int) -> Layer | None:
        """A layer as it was at ``revision`` (the one in memory if that is its
        newest); None when that revision is not stored."""
        head = self._heads(layer_id).get(layer_id)
        if head is not None and head.revision == revision and self.resolver.holds(layer_id):
            return self.resolver.layer(layer_id)
        try:
            record = self.store.get_layer(layer_id, revision)
        except NotFound:
            return None
        return layer_from_document(decode(self.store.get_blob(record.content)))

    def cached_configs(self) -> int:
        """Encoded configurations held now (bounded by ``cache_bytes``)."""
        return len(self._configs)

    def etag(self, device_id: DeviceId) -> ETag:
        """The ETag of the device's effective configuration.

        A compact record per device (its stack, the stamps of the layers in
        it, the ETag) answers the hot path of every sync (is the device
        current?) without holding the configuration itself or reading the
        device's registration: a layer edit changes its stamp; a device's
        change of groups, or its own layer appearing, drops its record.
        """
        record = self._etags.get(device_id)
        if record is not None:
            tiers, stamps, tag, _ = record
            if stamps == self._stamps_of(tiers):
                return tag
        facts = self.device(device_id)
        tiers = self.resolver.tiers(facts)
        stamps = self._stamps_of(tiers)
        tag = self._served(facts, tiers, stamps).config.etag
        self._etags[device_id] = (tiers, stamps, tag, facts.agent_version)
        return tag

    def agent_version(self, device_id: DeviceId) -> str | None:
        """The version of the agent the device runs, as it reported it (from
        its compact record when it has one: no read of its registration)."""
        record = self._etags.get(device_id)
        if record is not None:
            return record[3]
        return self.device(device_id).agent_version

    def _stamps_of(self, tiers: Tiers) -> tuple[int, ...]:
        stamps = self._stamps
        return tuple([stamps.get(layer_id, 0) for tier in tiers for layer_id in tier])

    def explain(self, device_id: DeviceId, path: Path = ()) -> list[Explanation]:
        """Why the device has each value at or below ``path``."""
        return self.resolver.explain(self.device(device_id), path)

    # -- writing ----------------------------------------------------------------

    def write_layer(
        self,
        layer_id: LayerId,
        edit: Layer,
        *,
        author: str,
        message: str,
        now: float,
        replace: bool = False,
        unlock: Iterable[Path] = (),
    ) -> tuple[LayerRevision, Impact]:
        """Apply ``edit`` to a layer (or replace it), after every check; store a revision."""
        name = self.hierarchy.parse(layer_id)
        if name.kind in ("device", "local"):
            self.device(DeviceId(name.device))  # the device must exist
        current = self.resolver.layer(layer_id)
        new = edit if replace else current.merged(edit)
        if unlock:
            kept = frozenset(p for p in new.locks if p not in set(unlock))
            new = Layer(new.sets, new.unsets, kept)
        if self.schema is not None:
            check_known_paths(self.schema, layer_id, new)
        impact = self.impact(layer_id, new)
        refuse(impact)
        if self.schema is not None:  # values no device inherits yet must be valid too
            check_values(self.schema, layer_id, new)
        blob = self.store.put_blob(encode(layer_to_document(new)))
        head = self.head(layer_id)
        revision = self.store.append_layer_revision(
            layer_id,
            blob,
            parent=head.revision if head else None,
            author=author,
            message=message,
            now=now,
        )
        self._heads(layer_id)[layer_id] = revision
        self._install(layer_id, new)
        return revision, impact

    def _install(self, layer_id: LayerId, layer: Layer) -> None:
        self._leaves = None
        # a layer not held was read from the store, which may hold ``layer`` already
        had = self.resolver.has_layer(layer_id) if self.resolver.holds(layer_id) else None
        stamp = self._stamps.get(layer_id, 0)
        if not _is_own(layer_id):  # every group layer is held: this is its content at ``stamp``
            history = self._history.setdefault(layer_id, {})
            history[stamp] = self.resolver.layer(layer_id)
            for old in [s for s in history if s <= stamp - LAYER_HISTORY]:
                del history[old]
        self.resolver.put_layer(layer_id, layer)
        self._stamps[layer_id] = stamp + 1
        name = self.hierarchy.parse(layer_id)
        if name.kind in ("device", "local"):
            self._etags.pop(DeviceId(name.device), None)  # its stack may have grown
        if name.kind in ("device", "local") and had != self.resolver.has_layer(layer_id):
            members = self.members()  # the device's own layer appeared or vanished
            facts = members.facts.get(DeviceId(name.device))
            if facts is not None:
                self._admit(members, facts)

    def group_known(self, layer_id: LayerId) -> bool:
        """Whether a layer names something in this fleet: ``global``, a group
        with revisions or members (at or below it), or a registered device."""
        name = self.hierarchy.parse(layer_id)
        if name.kind == "global" or self.head(layer_id) is not None:
            return True
        if name.kind in ("device", "local"):
            return self.store.has_device(DeviceId(name.device))
        return bool(self.reached_by(layer_id))

    def known_groups(self, dimension: str) -> list[str]:
        """Group paths in ``dimension`` that have members or revisions, sorted."""
        found: set[str] = set()
        for facts in self.members().facts.values():
            path = facts.groups.get(dimension)
            while path:
                found.add(path)
                path = path.rpartition("/")[0]
        prefix = f"{dimension}/"
        found.update(
            layer.removeprefix(prefix)
            for layer in self.resolver.layer_ids()
            if layer.startswith(prefix)
        )
        return sorted(found)

    def add_device(self, record: DeviceRecord) -> tuple[Resolution, list[Violation]]:
        """Register (or re-register) a device after checking its effective config.

        Conflicts and rule violations refuse the device.  Required keys that no
        layer sets yet do not: they usually come from the device's own layer,
        written next (``device set``); they are returned as pending.
        """
        check_device_id(record.id)
        facts = _facts(record)
        for dimension in facts.groups:
            self.hierarchy.rank_of(dimension)
        resolution = self.resolver.resolve(facts)
        problems: list[str] = []
        if resolution.conflicts:
            conflict = resolution.conflicts[0]
            sources = ", ".join(layer for layer, _ in conflict.sources)
            problems.append(f"layers {sources} disagree on {format_path(conflict.path)}")
        pending: list[Violation] = []
        if self.schema is not None:
            violations = self.schema.validate(
                resolution.tree, hardware=facts.hardware, firmware=facts.firmware
            )
            pending = [v for v in violations if v.missing]
            problems.extend(str(v) for v in violations if not v.missing)
        if problems:
            raise FleetValidationError(
                f"device {facts.id} refused: {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                devices=1,
                examples=[facts.id],
            )
        self.store.put_device(record)
        self._facts[facts.id] = facts
        self._etags.pop(facts.id, None)
        if self._members is not None:
            self._admit(self._members, facts)
        return resolution, pending

    # -- reach: who a layer reaches (what a dry run reads) -----------------------

    def reached_by(self, layer_id: LayerId) -> list[DeviceId]:
        """The devices whose stacks include ``layer_id`` (loads every device)."""
        name = self.hierarchy.parse(layer_id)
        members = self.members()
        if name.kind == "global":
            return list(members.facts)
        if name.kind in ("device", "local"):
            device = DeviceId(name.device)
            return [device] if device in members.facts else []
        return [
            device for device, facts in members.facts.items() if _in_group(facts, name.dimension,
            name.group)
        ]  # fmt: skip

    def reaches(self, layer_id: LayerId, device_id: DeviceId) -> bool:
        """Whether ``layer_id`` is in the stack of ``device_id`` (a registered
        device; one device's facts are read, never the fleet's)."""
        name = self.hierarchy.parse(layer_id)
        if name.kind in ("device", "local"):
            return name.device == device_id and self.has_device(device_id)
        try:
            facts = self.device(device_id)
        except NotFound:
            return False
        return name.kind == "global" or _in_group(facts, name.dimension, name.group)

    def impact(self, layer_id: LayerId, new: Layer) -> Impact:
        """What replacing ``layer_id`` with ``new`` would change, violate or
        break (:func:`edgecfg.fleet.impact.dry_run`)."""
        return dry_run(self, layer_id, new)

    def known_leaves(self) -> list[Path]:
        """Every leaf path some layer or a schema default names, sorted (kept
        until a layer changes)."""
        self.hold_all_layers()
        if self._leaves is None:
            leaves: set[Path] = set(self.schema.default_paths()) if self.schema else set()
            for layer_id in self.resolver.layer_ids():
                leaves.update(self.resolver.layer(layer_id).sets)
            self._leaves = sorted(leaves)
        return self._leaves


@contextmanager
def _collector_paused() -> Generator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _evict(members: _Members, device_id: DeviceId) -> None:
    """Drop a deleted device from the member index."""
    signature = members.by_device.pop(device_id, None)
    members.facts.pop(device_id, None)
    if signature is not None:
        members.signatures[signature].remove(device_id)
        if not members.signatures[signature]:
            del members.signatures[signature]


def _facts(record: DeviceRecord) -> DeviceFacts:
    return DeviceFacts(
        record.id, dict(record.groups), record.hardware, record.firmware, record.agent_version
    )


def _is_own(layer_id: LayerId) -> bool:
    """Whether a layer is one device's own (its device or local layer)."""
    return layer_id.startswith(("device/", "local/"))


def _in_group(facts: DeviceFacts, dimension: str, group: tuple[str, ...]) -> bool:
    """Whether the device is in ``group`` of ``dimension`` or below it."""
    path = facts.groups.get(dimension)
    wanted = "/".join(group)
    return path is not None and (path == wanted or path.startswith(wanted + "/"))


def _layer_dimension(layer_id: LayerId) -> str:
    return layer_id.split("/", 1)[0]


def _format_of(document: bytes) -> TextFormat:
    stripped = document.lstrip()
    if stripped.startswith(b"{"):
        return "json"
    return "toml" if b"=" in stripped.split(b"\n", 1)[0] or stripped.startswith(b"[") else "yaml"
