"""Effective configurations: folding a device's layers, with locks, conflicts,
hardware applicability and an explanation for every value (DESIGN §4).

Folding goes tier by tier, lowest precedence first, starting from the schema
defaults.  A tier's tombstones apply before its values.  Changes to a path
that a lower tier locked (the path, something below it, or an ancestor whose
change would sweep it away) are *blocked*.  Tied layers (one tier, several
dimensions) that disagree on a path are a *conflict*: neither applies, the
value from below stays, and the conflict is reported.  Finally keys the
schema says this device's hardware, firmware or agent does not support are
*dropped*.

:class:`Resolver` memoises folds by tier prefix, so devices that share
layers share work, and forgets exactly the folds that contain a layer when
that layer changes.  It is pure: layers come in as values, nothing is read.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

from cachetools import LRUCache

from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import EMPTY_LAYER, Hierarchy, Layer
from edgecfg.core.path import Path, is_prefix
from edgecfg.core.schema import Schema
from edgecfg.core.tree import (
    UNSET,
    Tree,
    UnsetType,
    Value,
    flatten,
    get,
    values_equal,
)

DROPPED_ENTRIES: Final = 1 << 15
"""Group folds cleared for one applicability that a :class:`Resolver` keeps."""
OWN_LAYER_ENTRIES: Final = 1 << 16
"""Devices' own layers a :class:`Resolver` with a loader keeps at hand."""
DEFAULTS: Final = LayerId("defaults")
SCHEMA_SOURCE: Final = LayerId("schema")
Tiers: TypeAlias = tuple[tuple[LayerId, ...], ...]
Effect: TypeAlias = "Value | UnsetType"  # UNSET: a tombstone


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What resolution needs to know about a device."""

    id: DeviceId
    groups: Mapping[str, str] = field(default_factory=lambda: {})
    hardware: str | None = None
    firmware: str | None = None
    agent_version: str | None = None

    @property
    def applicability(self) -> tuple[str | None, str | None, str | None]:
        return (self.hardware, self.firmware, self.agent_version)


@dataclass(frozen=True, slots=True)
class Conflict:
    """Tied layers disagree on ``path``; ``sources`` pairs each layer with its effect."""

    path: Path
    sources: tuple[tuple[LayerId, Effect], ...]


@dataclass(frozen=True, slots=True)
class Blocked:
    """``layer`` tried to change ``path``, which ``holder`` locked at ``lock``."""

    path: Path
    layer: LayerId
    lock: Path
    holder: LayerId


@dataclass(frozen=True, slots=True)
class Dropped:
    """A key removed because the device does not support it."""

    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class Resolution:
    """A device's effective configuration and what happened on the way."""

    tree: Tree
    tiers: Tiers
    conflicts: tuple[Conflict, ...] = ()
    blocked: tuple[Blocked, ...] = ()
    dropped: tuple[Dropped, ...] = ()
    locks: Mapping[Path, LayerId] = field(default_factory=lambda: {})


StepStatus = Literal["applied", "overridden", "blocked", "conflict", "dropped"]


@dataclass(frozen=True, slots=True)
class Step:
    """One layer's say on a path, in precedence order."""

    layer: LayerId
    touched: Path  # the path the layer names (the leaf itself or an ancestor)
    effect: Effect
    status: StepStatus
    note: str = ""


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a device has (or lacks) the value at one leaf path."""

    path: Path
    value: Effect
    source: LayerId | None
    steps: tuple[Step, ...]
    locks: tuple[tuple[Path, LayerId], ...] = ()
    dropped: str | None = None


@dataclass(frozen=True, slots=True)
class _PathIndex:
    """Which layers name which paths (values, tombstones, locks), for dry runs."""

    owners: Mapping[Path, set[LayerId]]
    ops: set[Path]
    ordered: list[Path]


@dataclass(frozen=True, slots=True)
class _Fold:
    tree: Tree
    locks: Mapping[Path, LayerId]
    conflicts: tuple[Conflict, ...]
    blocked: tuple[Blocked, ...]


class Resolver:
    """Folds layers into effective configurations, sharing work between devices.

    ``layers`` maps layer ids to layers; an id absent from it is an empty layer.
    Replace a layer with :meth:`put_layer`: only folds containing it are redone.

    With a ``loader``, devices' own layers (``device/...``, ``local/...``)
    absent from ``layers`` are read through it when first needed and kept in
    a cache of ``own_entries`` layers: a fleet where every device has its
    own layer need not hold them all.  What needs every layer at once (the
    path index of :meth:`layers_speaking_on`, :meth:`layer_ids` for own
    layers) needs :meth:`add_layers` with all of them first.
    """

    def __init__(
        self,
        hierarchy: Hierarchy,
        layers: Mapping[LayerId, Layer] | None = None,
        schema: Schema | None = None,
        *,
        loader: Callable[[LayerId], Layer] | None = None,
        own_entries: int = OWN_LAYER_ENTRIES,
    ) -> None:
        self.hierarchy = hierarchy
        self.schema = schema
        self._layers: dict[LayerId, Layer] = dict(layers or {})
        self._loader = loader
        self._own: LRUCache[LayerId, Layer] = LRUCache(maxsize=own_entries)
        self._folds: dict[Tiers, _Fold] = {}
        self._tiers: dict[tuple[tuple[str, str], ...], Tiers] = {}
        self._index: _PathIndex | None = None
        self._users: dict[LayerId, set[Tiers]] = {}
        self._unsupported: dict[tuple[str | None, str | None, str | None], tuple[Dropped, ...]] = {}
        # a group fold cleared of what some hardware does not support, per fold
        self._dropped: LRUCache[object, tuple[_Fold, Tree, tuple[Dropped, ...]]] = LRUCache(
            maxsize=DROPPED_ENTRIES
        )
        self._base = _Fold(schema.defaults() if schema else {}, {}, (), ())
        # the last change of each layer a derivation looked at, and whether
        # it meets a key some applicability drops (see rederive)
        self._changes: dict[LayerId, tuple[Layer, Layer, list[Path] | None]] = {}
        self._meets_dropped: dict[object, bool] = {}

    # -- layers ---------------------------------------------------------------

    def layer(self, layer_id: LayerId) -> Layer:
        """The layer with this id (empty when none was stored)."""
        found = self._layers.get(layer_id)
        if found is not None:
            return found
        if self._loader is None or not _is_own(layer_id):
            return EMPTY_LAYER
        found = self._own.get(layer_id)
        if found is None:
            found = self._loader(layer_id)
            self._own[layer_id] = found
        return found

    def has_layer(self, layer_id: LayerId) -> bool:
        return not self.layer(layer_id).empty

    def held(self) -> int:
        """How many layers are in memory."""
        return len(self._layers) + len(self._own)

    def holds(self, layer_id: LayerId) -> bool:
        """Whether the layer is in memory now (asking never loads it)."""
        return layer_id in self._layers or layer_id in self._own

    @property
    def complete(self) -> bool:
        """Whether every layer is in memory (no loader, or :meth:`add_layers` ran)."""
        return self._loader is None

    def add_layers(self, layers: Mapping[LayerId, Layer]) -> None:
        """Hold every layer from now on (``layers``: all the own layers there
        are); the loader is not asked again."""
        self._layers.update(layers)
        self._own.clear()
        self._loader = None
        self._index = None

    def put_layer(self, layer_id: LayerId, layer: Layer) -> None:
        """Replace a layer and forget every fold that used it."""
        if self._loader is not None and _is_own(layer_id) and layer_id not in self._layers:
            self._own[layer_id] = layer
        else:
            self._layers[layer_id] = layer
        self._index = None
        for tiers in self._users.pop(layer_id, set()):
            self._folds.pop(tiers, None)

    def layer_ids(self) -> list[LayerId]:
        return sorted(self._layers)

    # -- stacks ---------------------------------------------------------------

    def tiers(self, device: DeviceFacts) -> Tiers:
        """The device's precedence tiers; its own layer only when it has one
        (so devices without overrides share their folds)."""
        key = tuple(sorted(device.groups.items()))
        found = self._tiers.get(key)
        if found is None:  # the group part is shared by every device in those groups
            found = self.hierarchy.tiers(device.groups)
            self._tiers[key] = found
        own = _device_layer(device.id)
        if self.has_layer(own):
            found = (*found, (own,))
        local = LayerId(f"local/{device.id}")
        if self.has_layer(local):  # merged local overrides: above the device's own layer
            found = (*found, (local,))
        return found

    # -- resolution -----------------------------------------------------------

    def resolve(self, device: DeviceFacts, *, tiers: Tiers | None = None) -> Resolution:
        """The device's effective configuration.

        The group part of the stack is folded and cleared of the keys the
        device's hardware, firmware or agent does not support once, for all
        devices with that stack and applicability; the device's own tiers
        go on top of that (a lock below still blocks them), then their own
        unsupported keys are dropped.
        """
        tiers = tiers if tiers is not None else self.tiers(device)
        return self._resolve(device, tiers, report=True)

    def tree(self, device: DeviceFacts, *, tiers: Tiers | None = None) -> Tree:
        """The device's effective configuration alone (what serving needs:
        :meth:`resolve` also works out what was dropped, blocked and locked)."""
        tiers = tiers if tiers is not None else self.tiers(device)
        return self._resolve(device, tiers, report=False).tree

    def _resolve(self, device: DeviceFacts, tiers: Tiers, *, report: bool) -> Resolution:
        split = len(tiers)
        while split and _own(tiers[split - 1]):
            split -= 1
        unsupported = self._unsupported_for(device)
        fold, tree, dropped = self._cleared(tiers[:split], device.applicability, unsupported)
        if split < len(tiers) and not report:
            cleared = _Fold(tree, fold.locks, (), ())
            roots: set[str] = set()
            for tier in tiers[split:]:
                layers = [(i, self.layer(i)) for i in tier]
                roots.update(path[0] for _, layer in layers for path in layer.sets)
                cleared = _apply_tier(cleared, layers)
            # only what the device's own tiers set can bring an unsupported key back
            relevant = [item for item in unsupported if item.path[0] in roots]
            tree, _ = _drop(cleared.tree, relevant)
            return Resolution(tree, tiers, (), (), (), {})
        if split < len(tiers):
            cleared = _Fold(tree, fold.locks, fold.conflicts, fold.blocked)
            for tier in tiers[split:]:
                layers = [(i, self.layer(i)) for i in tier]
                fold = _apply_tier(fold, layers)  # what was dropped is read off this one
                cleared = _apply_tier(cleared, layers)
            tree, _ = _drop(cleared.tree, unsupported)
            dropped = _present(fold.tree, unsupported)
        return Resolution(tree, tiers, fold.conflicts, fold.blocked, dropped, dict(fold.locks))

    def _cleared(
        self,
        tiers: Tiers,
        applicability: tuple[str | None, str | None, str | None],
        unsupported: tuple[Dropped, ...],
    ) -> tuple[_Fold, Tree, tuple[Dropped, ...]]:
        """The fold of ``tiers`` and its tree without the ``unsupported``
        keys: each tier applied on the cleared tree below it, so only what
        that tier brings is looked for (applying a tier does not depend on
        values below it, only on their locks)."""
        fold = self._fold(tiers)
        if not unsupported:
            return fold, fold.tree, ()
        key = (tiers, applicability)
        found = self._dropped.get(key)
        if found is not None and found[0] is fold:  # else the fold was redone since
            return found
        if not tiers:
            tree, _ = _drop(fold.tree, unsupported)
        else:
            below, below_tree, _ = self._cleared(tiers[:-1], applicability, unsupported)
            layers = [(i, self.layer(i)) for i in tiers[-1]]
            applied = _apply_tier(_Fold(below_tree, below.locks, (), ()), layers)
            tree, _ = _drop(applied.tree, unsupported)
        found = (fold, tree, _present(fold.tree, unsupported))
        self._dropped[key] = found
        return found

    def _fold(self, tiers: Tiers) -> _Fold:
        if not tiers:
            return self._base
        fold = self._folds.get(tiers)
        if fold is None:
            fold = _apply_tier(self._fold(tiers[:-1]), [(i, self.layer(i)) for i in tiers[-1]])
            if _own(tiers[-1]):
                # One device's own tier: cheap to apply on the shared group fold
                # below it, and keeping it would hold a fold per device.
                return fold
            self._folds[tiers] = fold
            for layer_id in tiers[-1]:
                self._users.setdefault(layer_id, set()).add(tiers)
            for tier in tiers[:-1]:  # a change below must also forget this fold
                for layer_id in tier:
                    self._users.setdefault(layer_id, set()).add(tiers)
        return fold

    def rederive(
        self, device: DeviceFacts, tiers: Tiers, held: Tree, layer_id: LayerId, before: Layer
    ) -> Tree | None:
        """The device's effective configuration now, derived from ``held``
        instead of folded again; None when that is not provably what
        :meth:`tree` gives (the caller then resolves).

        ``held`` must be what :meth:`tree` gave for this device and ``tiers``
        while ``layer_id`` (a group or the global layer in them) was
        ``before`` and every other layer was as it is now.  The layer's
        change (the paths where its values or tombstones differ) is laid on
        ``held``, copy-on-write, with the values the shared fold up to that
        layer now has there.  That is exact only when nothing else decides
        those paths (see :func:`_untouched_above`): the derivation is refused
        when the layer's locks changed, its tier is tied or the change
        touches a lock anywhere in the stack, a path a higher layer (group,
        the device's own) sets or unsets, or a key the device's hardware,
        firmware or agent does not support, or when the fold has a leaf or an
        empty map on the way to a changed path (the held configuration's maps
        there would be removed or kept wrongly).
        """
        after = self.layer(layer_id)
        index = next((n for n, tier in enumerate(tiers) if layer_id in tier), None)
        if index is None or len(tiers[index]) != 1 or _own(tiers[index]):
            return None
        changed = self._change(layer_id, before, after)
        if changed is None:
            return None
        if not changed:
            return held
        above = [self.layer(i) for tier in tiers[index + 1 :] for i in tier]
        below = [self.layer(i) for tier in tiers[:index] for i in tier]
        if not _untouched_above(changed, above, below) or self._meets_unsupported(device, changed):
            return None
        fold = self._fold(tiers[: index + 1]).tree
        writer: _Writer | None = None
        for path in changed:
            for depth in range(1, len(path)):
                now = get(fold, path[:depth])  # what the fold has on the way
                if not (now is UNSET or (type(now) is dict and now)):
                    return None
            if writer is None:
                writer = _Writer(held)
            value = get(fold, path)
            if isinstance(value, UnsetType):
                writer.delete(path)
            else:
                writer.put(path, value)
        return held if writer is None else writer.root

    def _change(self, layer_id: LayerId, before: Layer, after: Layer) -> list[Path] | None:
        """:func:`_layer_change`, worked out once per edit (every device of
        the fleet asks about the same one)."""
        found = self._changes.get(layer_id)
        if found is not None and found[0] is before and found[1] is after:
            return found[2]
        changed = _layer_change(before, after)
        self._changes[layer_id] = (before, after, changed)
        return changed

    def _meets_unsupported(self, device: DeviceFacts, changed: list[Path]) -> bool:
        """Whether a changed path is related to a key this device's hardware,
        firmware or agent does not support (once per applicability and change)."""
        key = (device.applicability, tuple(changed))
        found = self._meets_dropped.get(key)
        if found is None:
            unsupported = self._unsupported_for(device)
            found = any(_related(p, item.path) for p in changed for item in unsupported)
            if len(self._meets_dropped) >= DROPPED_ENTRIES:
                self._meets_dropped.clear()
            self._meets_dropped[key] = found
        return found

    def layers_speaking_on(self, path: Path, *, also: Layer | None = None) -> set[LayerId]:
        """The stored layers that may decide ``path``.

        Those with a value or tombstone on the path, above or below it (the
        set O of such paths, over all layers), and those with any value,
        tombstone or lock on a path related to one in O: a lock there can
        block that change, a tied claim there can cancel it.  ``also`` adds a
        layer about to be written.
        """
        index = self._path_index()
        direct = self._related_paths(index, path, ops_only=True)
        if also is not None:  # a layer about to be written (a dry run) counts too
            direct.update(
                p for p in (*also.sets, *also.unsets) if is_prefix(p, path) or is_prefix(path, p)
            )
        speaking: set[LayerId] = set()
        for related in {path, *direct}:
            for other in self._related_paths(index, related, ops_only=False):
                speaking.update(index.owners[other])
        return speaking

    def _path_index(self) -> _PathIndex:
        if not self.complete:
            raise RuntimeError("the path index needs every layer: call add_layers first")
        if self._index is None:
            owners: dict[Path, set[LayerId]] = {}
            ops: set[Path] = set()
            for layer_id, layer in self._layers.items():
                for path in (*layer.sets, *layer.unsets):
                    owners.setdefault(path, set()).add(layer_id)
                    ops.add(path)
                for path in layer.locks:
                    owners.setdefault(path, set()).add(layer_id)
            self._index = _PathIndex(owners, ops, sorted(owners))
        return self._index

    @staticmethod
    def _related_paths(index: _PathIndex, path: Path, *, ops_only: bool) -> set[Path]:
        found = {path[:d] for d in range(1, len(path) + 1) if path[:d] in index.owners}
        at = bisect.bisect_left(index.ordered, path)
        while at < len(index.ordered) and is_prefix(path, index.ordered[at]):
            found.add(index.ordered[at])
            at += 1
        return {p for p in found if p in index.ops} if ops_only else found

    def drop_reason(
        self, applicability: tuple[str | None, str | None, str | None], path: Path
    ) -> str | None:
        """Why ``path`` is dropped for devices with this (hardware, firmware, agent)."""
        hardware, firmware, agent = applicability
        facts = DeviceFacts(DeviceId(""), {}, hardware, firmware, agent)
        for item in self._unsupported_for(facts):
            if is_prefix(item.path, path):
                return item.reason
        return None

    def cached_folds(self) -> int:
        """How many tier prefixes are memoised (for benchmarks)."""
        return len(self._folds)

    def _unsupported_for(self, device: DeviceFacts) -> tuple[Dropped, ...]:
        if self.schema is None:
            return ()
        key = device.applicability
        found = self._unsupported.get(key)
        if found is None:
            found = tuple(
                Dropped(spec.path, reason)
                for spec in self.schema
                if (
                    reason := spec.applies_to(
                        hardware=device.hardware,
                        firmware=device.firmware,
                        agent_version=device.agent_version,
                    )
                )
                is not None
            )
            self._unsupported[key] = found
        return found

    # -- one path at a time ---------------------------------------------------------

    def explain(self, device: DeviceFacts, path: Path = ()) -> list[Explanation]:
        """Explanations for every leaf at or below ``path`` that any source names."""
        tiers = self.tiers(device)
        resolved = self.resolve(device, tiers=tiers)
        return [
            self.explain_leaf(device, leaf, tiers=tiers, resolved=resolved)
            for leaf in self._leaves_named(tiers, resolved.tree, path)
        ]

    def _leaves_named(self, tiers: Tiers, tree: Tree, path: Path) -> list[Path]:
        named: set[Path] = set(flatten(tree))
        named.update(flatten(self._base.tree))
        for tier in tiers:
            for layer_id in tier:
                layer = self.layer(layer_id)
                named.update(layer.sets)
                named.update(layer.unsets)
        return sorted(p for p in named if is_prefix(path, p))

    def explain_leaf(
        self,
        device: DeviceFacts,
        path: Path,
        *,
        tiers: Tiers | None = None,
        resolved: Resolution | None = None,
        override: tuple[LayerId, Layer] | None = None,
    ) -> Explanation:
        """How the layers decide the value at leaf ``path``.

        With ``override``, one layer is replaced first (a dry run of an edit).
        The value agrees with :meth:`resolve` (a tested law).
        """
        tiers = tiers if tiers is not None else self.tiers(device)
        steps: list[Step] = []
        current: Effect = get(self._base.tree, path)
        source: LayerId | None = None
        if current is not UNSET:
            steps.append(Step(DEFAULTS, path, current, "applied"))
            source = DEFAULTS
        locks: dict[Path, LayerId] = {}  # every lock below, as the fold keeps them
        for tier in tiers:
            layers = [
                (i, override[1] if override and override[0] == i else self.layer(i)) for i in tier
            ]
            present = [(i, layer) for i, layer in layers if not layer.empty]
            if not present:
                continue
            # The same merge the fold does, so ties (also between an ancestor and
            # a descendant elsewhere in the tier) are judged exactly alike; a
            # tier of one layer needs only the paths related to this leaf.
            if len(present) == 1:
                unsets, sets, conflicts = _related_ops(*present[0], path)
            else:
                unsets, sets, conflicts = _merge_tier(present)
            for conflict in conflicts:
                if is_prefix(conflict.path, path) or is_prefix(path, conflict.path):
                    tied = ", ".join(layer for layer, _ in conflict.sources)
                    for layer_id, effect in conflict.sources:
                        note = f"tied layers disagree: {tied}"
                        steps.append(Step(layer_id, conflict.path, effect, "conflict", note))
            ops: list[tuple[LayerId, Path, Effect]] = [
                (layer_id, touched, UNSET)
                for touched, layer_id in sorted(unsets.items())
                if is_prefix(touched, path)
            ]
            for touched, (layer_id, value) in sorted(sets.items(), key=lambda item: item[0]):
                if touched == path:
                    ops.append((layer_id, touched, value))
                elif is_prefix(touched, path) or is_prefix(path, touched):
                    ops.append((layer_id, touched, UNSET))  # a leaf above, or a map here
            for layer_id, touched, effect in ops:
                hit = _lock_on(locks, touched) if locks else None
                if hit is not None:
                    note = f"locked at {_dotted(hit[0])} by {hit[1]}"
                    steps.append(Step(layer_id, touched, effect, "blocked", note))
                    continue
                for index, step in enumerate(steps):
                    if step.status == "applied":
                        steps[index] = Step(
                            step.layer, step.touched, step.effect, "overridden", step.note
                        )
                steps.append(Step(layer_id, touched, effect, "applied"))
                current, source = effect, layer_id
            for layer_id, layer in present:
                for lock in layer.locks:
                    locks.setdefault(lock, layer_id)
        dropped = None
        for item in self._unsupported_for(device):
            if is_prefix(item.path, path) and current is not UNSET:
                dropped = item.reason
                steps.append(Step(SCHEMA_SOURCE, item.path, UNSET, "dropped", item.reason))
                current, source = UNSET, None
        related = sorted(
            (lock, holder)
            for lock, holder in locks.items()
            if is_prefix(lock, path) or is_prefix(path, lock)
        )
        return Explanation(path, current, source, tuple(steps), tuple(related), dropped)

    def value_at(
        self, device: DeviceFacts, path: Path, *, override: tuple[LayerId, Layer] | None = None
    ) -> Explanation:
        """:meth:`explain_leaf` without a full fold: cheap enough for fleet-wide dry runs."""
        tiers = self.tiers(device)
        if (
            override is not None
            and override[0] == _device_layer(device.id)
            and not any(override[0] in tier for tier in tiers)
        ):
            tiers = (*tiers, (override[0],))
        return self.explain_leaf(device, path, tiers=tiers, override=override)


MAX_CHANGE: Final = 64
"""Paths of one layer change :meth:`Resolver.rederive` lays on a held
configuration, at most (a larger change is folded again)."""


def _layer_change(before: Layer, after: Layer) -> list[Path] | None:
    """The outermost paths where ``after`` differs from ``before`` (values or
    tombstones), sorted; None when the change is not one a derivation
    understands: locks changed, or too many paths.  Paths the layer names on
    both sides may be related to changed ones (``unset net`` kept, ``set
    net.apn`` changed): what the fold has at a changed path is taken whole."""
    if before.locks != after.locks:
        return None
    changed: set[Path] = set(before.unsets ^ after.unsets)
    for path, value in before.sets.items():
        other = after.sets.get(path, UNSET)
        if other is UNSET or not values_equal(value, other):
            changed.add(path)
    changed.update(path for path in after.sets if path not in before.sets)
    if len(changed) > MAX_CHANGE:
        return None
    # a path below another changed one is laid on with it
    return [p for p in sorted(changed) if not any(p[:d] in changed for d in range(1, len(p)))]


def _untouched_above(
    changed: Sequence[Path], above: Sequence[Layer], below: Sequence[Layer]
) -> bool:
    """Whether no layer above the changed one sets or unsets a path related
    to a changed one and no lock anywhere in the stack (``below``, ``above``)
    is related to one: then, unless a key the device does not support is,
    those paths hold in the effective configuration exactly what the fold up
    to the changed layer holds, and nothing else depends on them."""
    for path in changed:
        ancestry = [path[:depth] for depth in range(1, len(path) + 1)]
        for layer in above:
            if path in layer.set_prefixes or any(a in layer.sets for a in ancestry):
                return False
            if layer.unsets and any(_related(path, other) for other in layer.unsets):
                return False
        for layer in (*below, *above):
            if layer.locks and any(_related(path, lock) for lock in layer.locks):
                return False
    return True


def _related(one: Path, other: Path) -> bool:
    """Whether one path is the other or an ancestor of it."""
    return is_prefix(one, other) or is_prefix(other, one)


def _present(tree: Tree, unsupported: Sequence[Dropped]) -> tuple[Dropped, ...]:
    """The unsupported keys ``tree`` has (a dropped key is reported when the
    fold itself has it, whatever was cleared on the way)."""
    found: list[Dropped] = []
    paths: set[Path] = set()
    for item in unsupported:
        path = item.path
        if (
            get(tree, path) is not UNSET
            and not any(  # else gone with its ancestor
                path[:depth] in paths for depth in range(1, len(path))
            )
        ):
            found.append(item)
            paths.add(path)
    return tuple(found)


def _drop(tree: Tree, unsupported: Sequence[Dropped]) -> tuple[Tree, tuple[Dropped, ...]]:
    """``tree`` without the unsupported keys it has (maps left empty go too),
    copying each map on the way once; and which ones it had."""
    if not unsupported:
        return tree, ()
    writer: _Writer | None = None
    dropped: list[Dropped] = []
    for item in unsupported:
        if get(tree if writer is None else writer.root, item.path) is UNSET:
            continue
        if writer is None:
            writer = _Writer(tree)
        writer.delete(item.path)
        dropped.append(item)
    return (tree if writer is None else writer.root), tuple(dropped)


def _own(tier: tuple[LayerId, ...]) -> bool:
    """Whether a tier is one device's own (its device or local layer)."""
    return _is_own(tier[0])


def _is_own(layer_id: LayerId) -> bool:
    return layer_id.startswith(("device/", "local/"))


def _device_layer(device: DeviceId) -> LayerId:
    return LayerId(f"device/{device}")


def _dotted(path: Path) -> str:
    return ".".join(path)


def _same_effect(a: Effect, b: Effect) -> bool:
    return values_equal(a, b)


def _apply_tier(below: _Fold, layers: Sequence[tuple[LayerId, Layer]]) -> _Fold:
    """One tier applied on the fold below it (tombstones first, then values)."""
    present = [(layer_id, layer) for layer_id, layer in layers if not layer.empty]
    if not present:
        return below
    writer = _Writer(below.tree)
    locks = dict(below.locks)
    blocked = list(below.blocked)
    conflicts = list(below.conflicts)
    if len(present) == 1:  # the usual tier: the layer's own order, no merging
        only_id, only = present[0]
        unsets: Iterable[tuple[Path, LayerId]] = ((p, only_id) for p in only.ordered_unsets)
        sets: Iterable[tuple[Path, tuple[LayerId, Value]]] = (
            (p, (only_id, v)) for p, v in only.ordered_sets
        )
    else:
        merged_unsets, merged_sets, tier_conflicts = _merge_tier(present)
        conflicts.extend(tier_conflicts)
        unsets = sorted(merged_unsets.items())
        sets = sorted(merged_sets.items(), key=lambda item: item[0])
    for path, layer_id in unsets:
        hit = _lock_on(locks, path) if locks else None
        if hit is not None:
            blocked.append(Blocked(path, layer_id, *hit))
        else:
            writer.delete(path)
    for path, (layer_id, value) in sets:
        hit = _lock_on(locks, path) if locks else None
        if hit is not None:
            blocked.append(Blocked(path, layer_id, *hit))
        else:
            writer.put(path, value)
    for layer_id, layer in present:
        for lock in layer.locks:
            locks.setdefault(lock, layer_id)
    return _Fold(writer.root, locks, tuple(conflicts), tuple(blocked))


class _Writer:
    """Copy-on-write edits of a tree that copy each touched map once per tier.

    The fold below stays untouched (it is shared with other devices); maps
    on the way to an edit are copied the first time, then edited in place.
    """

    __slots__ = ("fresh", "root")

    def __init__(self, tree: Tree) -> None:
        self.root: Tree = dict(tree)
        self.fresh: set[int] = {id(self.root)}

    def _own(self, parent: Tree, key: str, create: bool) -> Tree | None:
        child = parent.get(key)
        if not isinstance(child, dict):
            if not create:
                return None
            child = {}
        elif id(child) not in self.fresh:
            child = dict(child)
        else:
            return child
        parent[key] = child
        self.fresh.add(id(child))
        return child

    def put(self, path: Path, value: Value) -> None:
        node = self.root
        for key in path[:-1]:
            owned = self._own(node, key, create=True)
            assert owned is not None
            node = owned
        node[path[-1]] = value

    def delete(self, path: Path) -> None:
        """Remove ``path``; maps it leaves empty go too (they held only it)."""
        trail: list[Tree] = [self.root]
        for key in path[:-1]:
            node = trail[-1]
            if not isinstance(node.get(key), dict):
                return  # nothing there to remove
            owned = self._own(node, key, create=False)
            assert owned is not None
            trail.append(owned)
        if trail[-1].pop(path[-1], UNSET) is UNSET:
            return
        for depth in range(len(path) - 1, 0, -1):
            if trail[depth]:
                break
            del trail[depth - 1][path[depth - 1]]


def _lock_on(locks: Mapping[Path, LayerId], path: Path) -> tuple[Path, LayerId] | None:
    for lock, holder in locks.items():
        if is_prefix(lock, path) or is_prefix(path, lock):
            return lock, holder
    return None


def _related_ops(
    layer_id: LayerId, layer: Layer, path: Path
) -> tuple[dict[Path, LayerId], dict[Path, tuple[LayerId, Value]], list[Conflict]]:
    """A one-layer tier's tombstones and values on ``path``, above it or below it."""
    unsets = {path[:d]: layer_id for d in range(1, len(path) + 1) if path[:d] in layer.unsets}
    sets = {
        path[:d]: (layer_id, layer.sets[path[:d]])
        for d in range(1, len(path) + 1)
        if path[:d] in layer.sets
    }
    if path in layer.set_prefixes:
        for touched, value in layer.sets.items():
            if len(touched) > len(path) and touched[: len(path)] == path:
                sets[touched] = (layer_id, value)
    return unsets, sets, []


def _merge_tier(
    layers: Sequence[tuple[LayerId, Layer]],
) -> tuple[dict[Path, LayerId], dict[Path, tuple[LayerId, Value]], list[Conflict]]:
    """The tier's tombstones and values; tied layers that disagree cancel out."""
    if len(layers) == 1:
        layer_id, layer = layers[0]
        return (
            dict.fromkeys(layer.unsets, layer_id),
            {path: (layer_id, value) for path, value in layer.sets.items()},
            [],
        )
    claims: dict[Path, list[tuple[LayerId, Effect]]] = {}
    for layer_id, layer in layers:
        for path in layer.unsets:
            claims.setdefault(path, []).append((layer_id, UNSET))
        for path, value in layer.sets.items():
            claims.setdefault(path, []).append((layer_id, value))
    disputed = _disputed(claims)
    unsets: dict[Path, LayerId] = {}
    sets: dict[Path, tuple[LayerId, Value]] = {}
    conflicts: list[Conflict] = []
    for path, said in claims.items():
        if path in disputed:
            conflicts.append(Conflict(path, tuple(said)))
            continue
        layer_id, effect = said[-1]
        if isinstance(effect, UnsetType):
            unsets[path] = layer_id
        else:
            sets[path] = (layer_id, effect)
    return unsets, sets, conflicts


def _disputed(claims: Mapping[Path, list[tuple[LayerId, Effect]]]) -> set[Path]:
    """Paths on which tied layers disagree, also across ancestor and descendant paths."""
    disputed = {
        path
        for path, said in claims.items()
        if len({layer for layer, _ in said}) > 1
        and not all(_same_effect(said[0][1], effect) for _, effect in said[1:])
    }
    owners = {path: {layer for layer, _ in said} for path, said in claims.items()}
    for path in claims:
        for depth in range(1, len(path)):
            prefix = path[:depth]
            if prefix in owners and owners[prefix] != owners[path]:
                disputed.update((prefix, path))
    return disputed
