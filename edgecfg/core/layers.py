"""Layers, group hierarchies and the precedence stack of a device (DESIGN §4).

A **layer** is a partial configuration owned by the global scope, a group
node or a device: values it sets (leaf paths), tombstones (paths whose
inherited value it removes, distinct from setting ``null``) and locks (paths
nothing of higher precedence may change).  Within one layer tombstones apply
before values, so "unset ``net`` and set ``net.apn``" replaces a subtree.

Layer ids are text: ``global``, ``DIMENSION/GROUP/PATH`` (``region/eu/eu-west``)
and ``device/ID``.  A group node inherits from its ancestors: ``region/eu``
comes before ``region/eu/eu-west`` in every stack.

**Precedence** is fixed per fleet by a :class:`Hierarchy`: ranks of dimensions,
lowest first (``hardware < function < region`` by default).  Dimensions of
one rank are *tied*: their layers at equal depth form one tier, and two of
them setting one path differently is a conflict, never silently resolved.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.path import Path, format_path, is_prefix, parse_path
from edgecfg.core.tree import Tree, Value, check_model, flatten, is_map
from edgecfg.errors import ModelError, PathError, UsageError

GLOBAL: Final = LayerId("global")
DEVICE_SCOPE: Final = "device"
LOCAL_SCOPE: Final = "local"
RESERVED_SCOPES: Final = frozenset({"global", DEVICE_SCOPE, LOCAL_SCOPE, "defaults"})
DEFAULT_RANKS: Final[tuple[tuple[str, ...], ...]] = (("hardware",), ("function",), ("region",))

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.:@+-]{1,64}$")

LayerKind = Literal["global", "group", "device", "local"]


class LayerError(UsageError):
    """A layer id, layer document or hierarchy setting is malformed."""


@dataclass(frozen=True, slots=True)
class Layer:
    """A partial configuration: leaf values, tombstones and locks.

    ``sets`` maps leaf paths to values (maps given to :func:`layer_from_parts`
    are flattened: setting a map merges it, leaf by leaf).
    """

    sets: Mapping[Path, Value] = field(default_factory=lambda: {})
    unsets: frozenset[Path] = frozenset()
    locks: frozenset[Path] = frozenset()
    set_prefixes: frozenset[Path] = field(default=frozenset(), init=False, compare=False)
    ordered_sets: tuple[tuple[Path, Value], ...] = field(default=(), init=False, compare=False)
    ordered_unsets: tuple[Path, ...] = field(default=(), init=False, compare=False)

    def __post_init__(self) -> None:
        both = self.unsets & self.sets.keys()
        if both:
            raise LayerError(f"{_show(min(both))} is both set and unset in one layer")
        ordered = sorted(self.sets)
        for shorter, longer in itertools.pairwise(ordered):
            if is_prefix(shorter, longer):  # extensions sort right after their prefix
                raise LayerError(
                    f"{_show(shorter)} is set as a leaf and {_show(longer)} below it; "
                    "set one or the other"
                )
        if any(not path for path in (*self.sets, *self.unsets, *self.locks)):
            raise LayerError("a layer cannot set, unset or lock the root")
        prefixes = {path[:depth] for path in self.sets for depth in range(1, len(path))}
        object.__setattr__(self, "set_prefixes", frozenset(prefixes))
        # the fold applies these in path order, for every device: sort once
        object.__setattr__(self, "ordered_sets", tuple((p, self.sets[p]) for p in ordered))
        object.__setattr__(self, "ordered_unsets", tuple(sorted(self.unsets)))

    @property
    def empty(self) -> bool:
        """True when the layer neither sets, unsets nor locks anything."""
        return not (self.sets or self.unsets or self.locks)

    def touched(self) -> frozenset[Path]:
        """Every path this layer sets or unsets."""
        return frozenset(self.sets) | self.unsets

    def merged(self, other: Layer) -> Layer:
        """This layer edited by ``other``: its sets, unsets and locks win.

        A value the edit sets replaces what this layer set at that path, above
        it (a leaf where the edit puts a map) or below it (a map where the
        edit puts a leaf).
        """
        replaced = other.sets.keys()
        sets = {
            p: v
            for p, v in self.sets.items()
            if not _under_any(p, other.unsets)
            and not any(is_prefix(p, q) or is_prefix(q, p) for q in replaced)
        }
        sets.update(other.sets)
        unsets = (self.unsets - other.sets.keys()) | other.unsets
        return Layer(sets, frozenset(unsets), self.locks | other.locks)

    def without(self, paths: Iterable[Path]) -> Layer:
        """This layer with ``paths`` (and everything below them) no longer set,
        unset or locked: the layer stops having an opinion there."""
        gone = frozenset(paths)
        return Layer(
            {p: v for p, v in self.sets.items() if not _under_any(p, gone)},
            frozenset(p for p in self.unsets if not _under_any(p, gone)),
            frozenset(p for p in self.locks if not _under_any(p, gone)),
        )


EMPTY_LAYER: Final = Layer()


def _under_any(path: Path, roots: Iterable[Path]) -> bool:
    return any(is_prefix(root, path) for root in roots)


def _show(path: Path) -> str:
    try:
        return format_path(path)
    except PathError:
        return repr(path)


def layer_from_parts(
    values: Mapping[str, Value] | None = None,
    *,
    sets: Mapping[Path, Value] | None = None,
    unsets: Iterable[Path] = (),
    locks: Iterable[Path] = (),
) -> Layer:
    """Build a layer from a partial tree and/or path -> value pairs.

    Maps are flattened into leaves (setting a map merges it); values are
    checked against the model.
    """
    flat: dict[Path, Value] = {}
    if values:
        try:
            check_model(dict(values))
        except ModelError as error:
            raise LayerError(str(error)) from None
        flat.update(flatten(values))
    for path, value in (sets or {}).items():
        if not path:
            raise LayerError("a layer cannot set the root; set paths below it")
        try:
            check_model(value, path)
        except ModelError as error:
            raise LayerError(str(error)) from None
        if is_map(value) and value:
            flat.update({(*path, *sub): leaf for sub, leaf in flatten(value).items()})
        else:
            flat[path] = value
    return Layer(flat, frozenset(unsets), frozenset(locks))


# ---------------------------------------------------------------- documents


def layer_to_document(layer: Layer) -> Tree:
    """The stored form: ``{"set": {dotted: value}, "unset": [dotted], "lock": [dotted]}``."""
    document: Tree = {}
    if layer.sets:
        document["set"] = {_text(p): v for p, v in sorted(layer.sets.items())}
    if layer.unsets:
        document["unset"] = list[Value](sorted(_text(p) for p in layer.unsets))
    if layer.locks:
        document["lock"] = list[Value](sorted(_text(p) for p in layer.locks))
    return document


def _text(path: Path) -> str:
    try:
        return format_path(path)
    except PathError:
        raise LayerError(f"path {path!r} has an empty key; layers cannot store it") from None


def layer_from_document(document: Value) -> Layer:
    """Inverse of :func:`layer_to_document`; raises :class:`LayerError` when malformed."""
    if not is_map(document):
        raise LayerError("a layer document must be a map with 'set', 'unset' and 'lock'")
    unknown = set(document) - {"set", "unset", "lock"}
    if unknown:
        raise LayerError(f"unknown layer document fields {sorted(unknown)}")
    raw_sets = document.get("set", {})
    if not is_map(raw_sets):
        raise LayerError("layer 'set' must map dotted paths to values")
    sets: dict[Path, Value] = {}
    for text, value in raw_sets.items():
        path = _parse(text)
        if is_map(value) and value:  # a map merges leaf by leaf, as in layer_from_parts
            sets.update({(*path, *sub): leaf for sub, leaf in flatten(value).items()})
        else:
            sets[path] = value
    return Layer(
        sets, _paths(document.get("unset", []), "unset"), _paths(document.get("lock", []), "lock")
    )


def _parse(text: str) -> Path:
    try:
        path = parse_path(text)
    except PathError as error:
        raise LayerError(str(error)) from None
    if not path:
        raise LayerError("a layer path cannot be empty (the root)")
    return path


def _paths(raw: Value, what: str) -> frozenset[Path]:
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise LayerError(f"layer '{what}' must be a list of dotted paths")
    return frozenset(_parse(item) for item in raw if isinstance(item, str))


# ---------------------------------------------------------------- ids and hierarchy


@dataclass(frozen=True, slots=True)
class LayerName:
    """A parsed layer id."""

    kind: LayerKind
    dimension: str = ""
    group: tuple[str, ...] = ()
    device: str = ""

    @property
    def id(self) -> LayerId:
        if self.kind == "global":
            return GLOBAL
        if self.kind == "device":
            return LayerId(f"{DEVICE_SCOPE}/{self.device}")
        if self.kind == "local":
            return LayerId(f"{LOCAL_SCOPE}/{self.device}")
        return LayerId("/".join((self.dimension, *self.group)))

    @property
    def depth(self) -> int:
        return len(self.group)


def group_layer(dimension: str, group: str) -> LayerId:
    """The layer id of group ``group`` (``eu/eu-west``) in ``dimension``."""
    return LayerId(f"{dimension}/{group}")


def local_layer(device: DeviceId | str) -> LayerId:
    """The layer of a device's merged local overrides (DESIGN §4: above its own layer)."""
    return LayerId(f"{LOCAL_SCOPE}/{device}")


def device_layer(device: DeviceId | str) -> LayerId:
    """The layer id of a device's own overrides."""
    return LayerId(f"{DEVICE_SCOPE}/{device}")


def parse_group(text: str) -> tuple[str, ...]:
    """Split a group path ``eu/eu-west/site-17``, checking each segment."""
    segments = tuple(text.split("/"))
    for segment in segments:
        if not _SEGMENT.match(segment):
            raise LayerError(
                f"group path {text!r}: segment {segment!r} must be 1-64 of A-Z a-z 0-9 _ . : @ + -"
            )
    return segments


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """A fleet's dimensions in precedence order: ranks, lowest first.

    ``ranks`` is a sequence of tuples; dimensions in one tuple are tied.
    """

    ranks: tuple[tuple[str, ...], ...] = DEFAULT_RANKS

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for rank in self.ranks:
            if not rank:
                raise LayerError("a precedence rank must name at least one dimension")
            for name in rank:
                if not _NAME.match(name) or name in RESERVED_SCOPES:
                    raise LayerError(
                        f"dimension name {name!r} must be 1-32 of a-z 0-9 _ - starting with a "
                        f"letter, and not one of {sorted(RESERVED_SCOPES)}"
                    )
                if name in seen:
                    raise LayerError(f"dimension {name!r} appears twice in the precedence order")
                seen.add(name)

    @property
    def dimensions(self) -> tuple[str, ...]:
        """Every dimension, lowest precedence first."""
        return tuple(name for rank in self.ranks for name in rank)

    def rank_of(self, dimension: str) -> int:
        """The rank (0 = lowest) of a dimension; :class:`LayerError` when unknown."""
        for index, rank in enumerate(self.ranks):
            if dimension in rank:
                return index
        raise LayerError(f"unknown dimension {dimension!r}; this fleet has {list(self.dimensions)}")

    def parse(self, layer: str) -> LayerName:
        """Parse and check a layer id against this hierarchy."""
        if layer == GLOBAL:
            return LayerName("global")
        scope, _, rest = layer.partition("/")
        if not rest:
            raise LayerError(
                f"layer {layer!r} must be 'global', 'device/ID' or 'DIMENSION/GROUP/PATH'"
            )
        if scope == DEVICE_SCOPE:
            return LayerName("device", device=rest)
        if scope == LOCAL_SCOPE:
            return LayerName("local", device=rest)
        self.rank_of(scope)
        return LayerName("group", dimension=scope, group=parse_group(rest))

    def tiers(
        self, groups: Mapping[str, str], device: DeviceId | str | None = None
    ) -> tuple[tuple[LayerId, ...], ...]:
        """The precedence tiers of a device with these group memberships.

        Lowest first: ``global``; then, rank by rank, each group node from the
        dimension root down (tied dimensions share a tier per depth); then the
        device's own layer.  Every tier holds one layer unless dimensions tie.
        """
        tiers: list[tuple[LayerId, ...]] = [(GLOBAL,)]
        unknown = set(groups) - set(self.dimensions)
        if unknown:
            raise LayerError(
                f"unknown dimensions {sorted(unknown)}; this fleet has {list(self.dimensions)}"
            )
        for rank in self.ranks:
            chains = [(name, parse_group(groups[name])) for name in rank if name in groups]
            deepest = max((len(chain) for _, chain in chains), default=0)
            for depth in range(1, deepest + 1):
                tier = tuple(
                    group_layer(name, "/".join(chain[:depth]))
                    for name, chain in chains
                    if len(chain) >= depth
                )
                tiers.append(tier)
        if device is not None:
            tiers.append((device_layer(device),))
        return tuple(tiers)


def hierarchy_from_text(spec: Iterable[str]) -> Hierarchy:
    """Ranks from command-line words, lowest first; a comma ties dimensions:
    ``["hardware", "function,site", "region"]``."""
    ranks = tuple(tuple(part.strip() for part in word.split(",") if part.strip()) for word in spec)
    if not ranks:
        raise LayerError("name at least one dimension")
    return Hierarchy(ranks)
