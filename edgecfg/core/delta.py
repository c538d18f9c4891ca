"""Structural configuration deltas (pure): diff two trees into edit operations
and apply them.

Both sides hold the base, so operations address nodes by their **preorder
index in the base** instead of by key paths: the root is 0, a map's children
follow in canonical key order (RFC 8949 §4.2.1), an array's elements in
order.  An index costs one or two bytes where a path costs the keys' text.
Because every index refers to the *base*, operations compose freely: a
section can be renamed and edited inside, a list can gain elements while its
kept elements change.

Operations (at most one of each kind per node; ``Set`` excludes the others
except ``Rename``):

- :class:`Set` — replace the node's value;
- :class:`Delete` — drop the node from its map or array;
- :class:`Add` — add a key to a map node;
- :class:`Copy` — add a key holding a copy of a similar base map, edited;
- :class:`Rename` — move a map entry to another key of the same map;
- :class:`Splice` — keep a prefix and suffix of a text/bytes leaf and put
  new content between them (long gcode macros, lambdas, templates change by
  a few characters);
- :class:`TextEdit` — several such splices of one long text, found line by
  line, when edits lie far apart;
- :class:`ListEdit` — splice an array: runs of (keep, drop, insert), so an
  insert does not resend the elements it shifts.

The wire format (``edgecfg.wire.delta``) serialises these; this module never
touches bytes.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from functools import lru_cache
from typing import Final, Protocol, TypeAlias, cast

from edgecfg.core.path import Path
from edgecfg.core.schema import Schema
from edgecfg.core.tree import (
    UNSET,
    Tree,
    Value,
    canonical_key_order,
    flatten,
    is_map,
    unflatten,
    values_equal,
)
from edgecfg.errors import DeltaError, ModelError, UsageError

# A splice costs two counts, so it must keep at least this many characters.
SPLICE_MIN_KEPT: Final = 3
# Texts at least this long are also diffed line by line (several hunks).
TEXT_EDIT_MIN_LENGTH: Final = 64
# Changed spans of text up to this long are also diffed word by word (the work
# grows with the words).
TOKEN_EDIT_MAX_LENGTH: Final = 2048
# Copies inside copies are allowed to this depth (bounds a hostile delta's recursion).
MAX_COPY_DEPTH: Final = 4
# A removed and an added map entry count as a rename at this shared-leaf share.
RENAME_SIMILARITY: Final = 0.5


@dataclass(frozen=True, slots=True)
class Set:
    index: int
    value: Value


@dataclass(frozen=True, slots=True)
class Delete:
    index: int


@dataclass(frozen=True, slots=True)
class Add:
    index: int
    key: str
    value: Value


@dataclass(frozen=True, slots=True)
class Copy:
    """Add ``key`` to map node ``index`` with a copy of base node ``source`` changed by ``ops``.

    ``ops`` address the copied subtree in its own preorder (its root is 0).
    New sections often resemble existing ones (``stepper_z1`` beside
    ``stepper_z``); a copy plus a few edits is far smaller than the section.
    """

    index: int
    key: str
    source: int
    ops: tuple[Op, ...]


@dataclass(frozen=True, slots=True)
class Rename:
    index: int
    key: str


@dataclass(frozen=True, slots=True)
class Splice:
    index: int
    prefix: int
    suffix: int
    middle: str | bytes


@dataclass(frozen=True, slots=True)
class TextEdit:
    """Several splices of one text/bytes leaf: runs of (keep, drop, insert), left to right."""

    index: int
    runs: tuple[tuple[int, int, str | bytes], ...]


@dataclass(frozen=True, slots=True)
class ListEdit:
    """``runs`` are (keep, drop, inserted values), applied left to right."""

    index: int
    runs: tuple[tuple[int, int, tuple[Value, ...]], ...]


Op: TypeAlias = "Set | Delete | Add | Copy | Rename | Splice | TextEdit | ListEdit"


def node_count(node: Value) -> int:
    """Number of nodes in ``node``'s subtree (itself included) in preorder numbering."""
    return _Sizes().of(node)


_CONTAINERS: Final = (dict, list)


class _Sizes:
    """Memoised subtree sizes (keyed by object identity, valid for one call).

    With ``table`` (see :func:`size_table`), :meth:`at` reads the size of the
    node with a known preorder index from it instead of counting: node
    ``index`` of the tree is ``table[offset + index]``.
    """

    __slots__ = ("hints", "memo", "offset", "table")

    def __init__(
        self, table: Sequence[int] | None = None, offset: int = 0, *, hints: Hints | None = None
    ) -> None:
        self.memo: dict[int, int] = {}
        self.table = table
        self.offset = offset
        self.hints = hints

    def at(self, node: Value, index: int) -> int:
        """The size of ``node``, which has preorder number ``index``."""
        if self.table is not None:
            return self.table[self.offset + index]
        return self.of(node)

    def of(self, node: Value) -> int:
        kind = type(node)
        if kind is not dict and kind is not list:
            return 1
        key = id(node)
        size = self.memo.get(key)
        if size is None and self.hints is not None:
            size = self.hints.count(node)
        if size is None:
            children: Iterable[Value] = (
                cast(dict[str, Value], node).values() if kind is dict else cast(list[Value], node)
            )
            size = 1 + len(cast(list[Value], children))  # every child counts once
            for child in children:
                if type(child) in _CONTAINERS:
                    size += self.of(child) - 1  # containers add their insides
            self.memo[key] = size
        return size


def size_table(tree: Value) -> list[int]:
    """Every node's subtree size (:func:`node_count`), by preorder number.

    :func:`diff_traced` and :func:`apply_traced` take it to address nodes
    without counting subtrees: a caller that keeps it for a base it meets
    again (the wire layer caches it by content) saves that walk.
    """
    table: list[int] = []
    if type(tree) in _CONTAINERS:
        _SizeWalk(table).visit(tree)
    else:
        table.append(1)
    return table


class _SizeWalk:
    """:func:`size_table`'s recursion.  A method, not a nested function: a
    closure that calls itself holds itself through its cell, a cycle that
    only the collector frees (with the table and everything it holds)."""

    __slots__ = ("table",)

    def __init__(self, table: list[int]) -> None:
        self.table = table

    def visit(self, node: Value) -> None:
        table = self.table
        start = len(table)
        table.append(1)
        children: Iterable[Value]
        if type(node) is dict:
            entries = cast(dict[str, Value], node)
            children = [entries[key] for key in canonical_keys(tuple(entries))]
        else:
            children = cast(list[Value], node)
        for child in children:
            if type(child) in _CONTAINERS:
                self.visit(child)
            else:
                table.append(1)
        table[start] = len(table) - start


@lru_cache(maxsize=4096)
def canonical_keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    """``keys`` sorted as RFC 8949 §4.2.1 sorts map keys (cached: maps share key sets)."""
    return tuple(sorted(keys, key=canonical_key_order))


def key_table(base: Value) -> list[str]:
    """Every distinct map key of ``base``, most frequent first, ties in canonical order.

    The wire format may name a key by its position here instead of its text;
    keys that occur often in the base are likely to occur in new content too,
    so they get the positions that encode in one byte.
    """
    return keys_by_count(key_counts(base))


def key_counts(tree: Value, counts: dict[str, int] | None = None, sign: int = 1) -> dict[str, int]:
    """How often each map key occurs in ``tree``, added (``sign`` -1: taken) to ``counts``."""
    counts = {} if counts is None else counts
    seen = counts.get
    stack: list[Value] = [tree]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            for key, value in cast(dict[str, Value], node).items():
                counts[key] = seen(key, 0) + sign
                if type(value) in _CONTAINERS:
                    stack.append(value)
        elif type(node) is list:
            stack.extend([item for item in cast(list[Value], node) if type(item) in _CONTAINERS])
    return counts


def keys_by_count(counts: Mapping[str, int]) -> list[str]:
    """The :func:`key_table` order of the keys counted in ``counts`` (zero counts left out)."""
    return sorted([key for key, count in counts.items() if count], key=_table_order(counts))


def _table_order(counts: Mapping[str, int]) -> Callable[[str], tuple[int, int, str]]:
    """The sort key of the key table: most frequent first, ties in canonical order."""

    def order(key: str) -> tuple[int, int, str]:
        # canonical_key_order without encoding: UTF-8 sorts as code points do
        return (-counts[key], len(key) if key.isascii() else len(key.encode()), key)

    return order


def keys_by_count_after(
    table: Sequence[str],
    before: Mapping[str, int],
    after: Mapping[str, int],
    changed: Collection[str] | None = None,
) -> list[str]:
    """:func:`keys_by_count` of ``after``, given ``table``, that of ``before``.

    A delta changes the counts of a few keys: the others keep their order,
    and only the changed ones are placed again (a binary search each).
    ``changed``: the keys whose counts may differ (at least those that do),
    when the caller knows them (:func:`key_count_change`); else every count
    is compared.
    """
    if changed is None:
        changed = {key for key, _count in before.items() ^ after.items()}
    if len(changed) * 8 > len(table):  # many changed: sorting is as cheap
        return keys_by_count(after)
    order = _table_order(after)
    kept = [key for key in table if key not in changed]
    for key in changed:
        if after.get(key, 0):
            bisect.insort(kept, key, key=order)
    return kept


def key_counts_after(counts: Mapping[str, int], applied: Applied) -> dict[str, int]:
    """:func:`key_counts` of ``applied.result``, given those of its base."""
    change = key_count_change(applied)
    if change is None:
        return key_counts(applied.result)
    return counts_changed(counts, change)


def counts_changed(counts: Mapping[str, int], change: Mapping[str, int]) -> dict[str, int]:
    """``counts`` with ``change`` (from :func:`key_count_change`) added."""
    after = dict(counts)
    for key, step in change.items():
        if step:
            after[key] = after.get(key, 0) + step
    return after


def key_count_change(applied: Applied) -> dict[str, int] | None:
    """How the :func:`key_counts` of ``applied.result`` differ from its base's:
    per key, the count added (negative: taken), or None when they must be
    counted again (the root replaced, or one object at two places).

    Only the containers the apply rebuilt and the subtrees it dropped or
    brought are counted: each rebuilt container's keys and dropped children
    are taken away, its replacement's keys and new children added.  The
    work is the size of the change, not of the tree.
    """
    if not applied.rebuilt:  # nothing rebuilt: the root was replaced, or nothing changed
        return None
    change: dict[str, int] = {}
    rebuilt = {id(node) for node in applied.rebuilt}
    built = {id(node) for node in applied.built}
    inner = [
        id(child) for node in applied.rebuilt for child in _containers(node) if id(child) in rebuilt
    ]
    if len(inner) != len(set(inner)):  # a rebuilt object also in another place
        return None
    for old, new in zip(applied.rebuilt, applied.built, strict=True):
        if type(old) is dict and type(new) is dict:  # a map stays a map: its keys differ little
            old_keys, new_keys = (
                cast(dict[str, Value], old).keys(),
                cast(dict[str, Value], new).keys(),
            )
            key_counts(dict.fromkeys(old_keys - new_keys), change, -1)
            key_counts(dict.fromkeys(new_keys - old_keys), change)
        elif type(old) is dict:
            key_counts(dict.fromkeys(cast(dict[str, Value], old)), change, -1)
        elif type(new) is dict:
            key_counts(dict.fromkeys(cast(dict[str, Value], new)), change)
        old_children, new_children = _containers(old), _containers(new)
        old_ids = {id(child) for child in old_children}
        new_ids = {id(child) for child in new_children}
        if (
            len(old_ids) < len(old_children)
            or len(new_ids) < len(new_children)
            or not rebuilt.isdisjoint(new_ids)
        ):
            # One object at two places (trees share subtrees; an operation's
            # value may be a base subtree that was also edited in place):
            # count it all again.
            return None
        for child in old_children:
            if id(child) not in new_ids and id(child) not in rebuilt:
                key_counts(child, change, -1)
        for child in new_children:
            if id(child) not in old_ids and id(child) not in built:
                key_counts(child, change)
    return change


def _containers(node: Value) -> list[Value]:
    """The children of ``node`` that are containers (scalars hold no keys)."""
    children: Iterable[Value] = (
        cast(dict[str, Value], node).values() if type(node) is dict else cast(list[Value], node)
    )
    return [child for child in children if type(child) in _CONTAINERS]


# ---------------------------------------------------------------- diff


Weigh: TypeAlias = Callable[[Op], int]


class Hints(Protocol):
    """What a caller may already know about the maps of both trees (an
    encoder that encoded them): it spares the diff walks of equal subtrees."""

    def same(self, a: Value, b: Value) -> bool:
        """Whether two distinct maps are known to be equal (False: not known)."""
        ...

    def count(self, node: Value) -> int | None:
        """The :func:`node_count` of a map, if known."""
        ...


"""The encoded size of an operation; lets :func:`diff` choose between encodings."""

# How many similar base sections a new section is tried against as a copy.
COPY_CANDIDATES: Final = 2


def diff(base: Value, target: Value, *, weigh: Weigh | None = None) -> list[Op]:
    """Operations that turn ``base`` into ``target`` (empty when they are equal).

    With ``weigh``, a new map entry may be written as a :class:`Copy` of a
    similar sibling plus edits when that weighs less than the entry itself.
    """
    return diff_traced(base, target, weigh=weigh).ops


@dataclass(frozen=True, slots=True)
class Diffed:
    """The result of :func:`diff_traced`."""

    ops: list[Op]
    base_visited: tuple[Value, ...]
    """Containers of the base the diff looked into (it differs from the target there)."""
    target_visited: tuple[Value, ...]
    """Their counterparts in the target.  Every other subtree of the target
    equals (in encoding) the base subtree at its place, or is inside an
    operation: a canonical encoder can splice the base's bytes."""


def diff_traced(
    base: Value,
    target: Value,
    *,
    weigh: Weigh | None = None,
    sizes: Sequence[int] | None = None,
    hints: Hints | None = None,
) -> Diffed:
    """:func:`diff`, telling which containers it looked into.

    Subtrees that the two trees share (the same objects, as copy-on-write
    edits leave them) are neither compared nor sized after the last change.
    ``sizes`` is the base's :func:`size_table`, if the caller has it.
    ``hints`` may tell that two maps are equal without a walk (their
    canonical encodings are known and equal): they are passed over like
    shared ones, and sized from the hints too.
    """
    differ = _Differ(weigh, _Sizes(sizes, hints=hints), hints)
    differ.node(base, target, 0)
    ops = sorted(differ.ops, key=lambda op: op.index)
    return Diffed(ops, tuple(differ.base_visited), tuple(differ.target_visited))


_MISSING: Final = object()


class _Differ:
    __slots__ = ("base_visited", "hints", "ops", "sizes", "target_visited", "weigh")

    def __init__(
        self, weigh: Weigh | None, sizes: _Sizes | None = None, hints: Hints | None = None
    ) -> None:
        self.hints = hints
        self.ops: list[Op] = []
        self.sizes = sizes if sizes is not None else _Sizes()
        self.weigh = weigh
        self.base_visited: list[Value] = []
        self.target_visited: list[Value] = []

    def node(self, base: Value, target: Value, index: int) -> None:
        if base is target:
            return
        # Exact types: a dict or list subclass in the target is not a model
        # value; as a leaf it lands in an operation, where encoding refuses it.
        if type(base) is dict and type(target) is dict:
            if self.hints is not None and self.hints.same(base, target):
                return
            self.maps(cast(dict[str, Value], base), cast(dict[str, Value], target), index)
        elif type(base) is list and type(target) is list:
            self.lists(cast(list[Value], base), cast(list[Value], target), index)
        elif not values_equal(base, target):
            self.ops.append(self.leaf(base, target, index))

    def leaf(self, base: Value, target: Value, index: int) -> Op:
        if type(base) is not type(target) or not isinstance(base, str | bytes):
            return Set(index, target)
        new = cast(str | bytes, target)
        prefix = _common_prefix(base, new)
        suffix = _common_suffix(base, new, min(len(base), len(new)) - prefix)
        middle = new[prefix : len(new) - suffix]
        if len(new) >= TEXT_EDIT_MIN_LENGTH and len(middle) > 2 * SPLICE_MIN_KEPT:
            # Only the span between the common prefix and suffix is diffed:
            # the work follows the change, not the length of the text.
            old_middle = base[prefix : len(base) - suffix]
            best: list[tuple[int, int, str | bytes]] | None = None
            best_weight = len(middle)
            splits = (_lines, _tokens) if len(middle) <= TOKEN_EDIT_MAX_LENGTH else (_lines,)
            for split in splits:
                runs = _text_runs(old_middle, middle, split)
                weight = sum(len(run[2]) + 2 for run in runs)
                if len(runs) > 1 and weight < best_weight:
                    best, best_weight = runs, weight
            if best is not None:
                keep, drop, inserted = best[0]
                return TextEdit(index, ((prefix + keep, drop, inserted), *best[1:]))
        if prefix + suffix >= SPLICE_MIN_KEPT:
            return Splice(index, prefix, suffix, middle)
        return Set(index, target)

    def maps(self, base: dict[str, Value], target: dict[str, Value], index: int) -> None:
        if not all(type(key) is str for key in target):  # pyright: ignore[reportUnnecessaryComparison]
            bad = next(key for key in target if type(key) is not str)  # pyright: ignore[reportUnnecessaryComparison]
            raise ModelError(f"map key {bad!r} is not text", path="")
        self.base_visited.append(base)
        self.target_visited.append(target)
        child = index + 1
        removed: dict[str, int] = {}
        shared: list[Value] = []  # passed over, not yet sized: sized only if a change follows
        for key in canonical_keys(tuple(base)):
            value = base[key]
            new = target.get(key, _MISSING)
            if new is value:
                shared.append(value)
                continue
            if shared:
                for passed in shared:
                    child += self.sizes.at(passed, child)
                shared.clear()
            if new is _MISSING:
                removed[key] = child
            else:
                self.node(value, cast(Value, new), child)
            child += self.sizes.at(value, child)
        added = [key for key in target if key not in base]
        for key in sorted(added, key=canonical_key_order):
            old_key = _best_rename(key, target[key], removed, base)
            if old_key is None:
                self.ops.append(self.add(base, index, key, target[key]))
                continue
            old_index = removed.pop(old_key)
            self.ops.append(Rename(old_index, key))
            self.node(base[old_key], target[key], old_index)
        self.ops.extend(Delete(old_index) for old_index in removed.values())

    def add(self, base: dict[str, Value], index: int, key: str, value: Value) -> Op:
        """An :class:`Add`, or a :class:`Copy` of a similar sibling when that weighs less."""
        plain = Add(index, key, value)
        if self.weigh is None or not isinstance(value, dict) or not value:
            return plain
        # Candidates share top-level keys with the new map (cheap to test);
        # only the best few are diffed and weighed.
        wanted = value.keys()
        scored: list[tuple[float, int, dict[str, Value]]] = []
        child = index + 1
        for sibling_key in canonical_keys(tuple(base)):
            sibling = base[sibling_key]
            if isinstance(sibling, dict) and sibling:
                common = wanted & sibling.keys()
                if common:
                    equal = sum(1 for key in common if _same_scalar(value[key], sibling[key]))
                    score = (len(common) + equal) / max(len(wanted), len(sibling))
                    scored.append((-score, child, sibling))
            child += self.sizes.at(sibling, child)
        best: Op = plain
        best_weight = self.weigh(plain)
        for _score, source, sibling in sorted(scored, key=lambda item: item[:2])[:COPY_CANDIDATES]:
            nested = _Differ(self.weigh, _Sizes(self.sizes.table, self.sizes.offset + source))
            nested.node(sibling, value, 0)
            copy = Copy(index, key, source, tuple(sorted(nested.ops, key=lambda op: op.index)))
            weight = self.weigh(copy)
            if weight < best_weight:
                best, best_weight = copy, weight
        return best

    def lists(self, base: list[Value], target: list[Value], index: int) -> None:
        self.base_visited.append(base)
        self.target_visited.append(target)
        positions = [index + 1]
        for element in base:
            positions.append(positions[-1] + self.sizes.at(element, positions[-1]))
        matcher = SequenceMatcher(None, _fingerprints(base), _fingerprints(target), autojunk=False)
        runs: list[tuple[int, int, tuple[Value, ...]]] = []
        keep = 0
        for tag, b0, b1, t0, t1 in matcher.get_opcodes():
            if tag == "equal":
                keep += b1 - b0
                continue
            paired = min(b1 - b0, t1 - t0) if tag == "replace" else 0
            for offset in range(paired):
                old, new = base[b0 + offset], target[t0 + offset]
                if isinstance(old, dict | list) and type(old) is type(new):
                    self.node(old, new, positions[b0 + offset])
                else:
                    self.ops.append(self.leaf(old, new, positions[b0 + offset]))
            keep += paired
            dropped = (b1 - b0) - paired
            inserted = tuple(target[t0 + paired : t1])
            if dropped or inserted:
                runs.append((keep, dropped, inserted))
                keep = 0
        if runs:
            self.ops.append(ListEdit(index, tuple(runs)))


def _lines(text: str | bytes) -> list[str | bytes]:
    return text.splitlines(keepends=True)  # type: ignore[return-value]


_TOKEN_TEXT: Final = re.compile(r"\w+|\s+|[^\w\s]")
_TOKEN_BYTES: Final = re.compile(rb"\w+|\s+|[^\w\s]")


def _tokens(text: str | bytes) -> list[str | bytes]:
    """Words, runs of white space and single other characters: pin lists and
    aliases (``EXP1_3=PB1, EXP1_5=PE10``) change by a word inside a long line."""
    if isinstance(text, str):
        return _TOKEN_TEXT.findall(text)
    return _TOKEN_BYTES.findall(text)


def _text_runs(
    old: str | bytes, new: str | bytes, split: Callable[[str | bytes], list[str | bytes]] = _lines
) -> list[tuple[int, int, str | bytes]]:
    """Hunks of two texts split into lines (or words), trimmed to the characters that differ."""
    old_lines, new_lines = split(old), split(new)
    empty = old[:0]
    matcher = SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    runs: list[tuple[int, int, str | bytes]] = []
    keep = 0
    for tag, o0, o1, n0, n1 in matcher.get_opcodes():
        before = empty.join(old_lines[o0:o1])  # type: ignore[arg-type]
        if tag == "equal":
            keep += len(before)
            continue
        after = empty.join(new_lines[n0:n1])  # type: ignore[arg-type]
        prefix = _common_prefix(before, after)
        suffix = _common_suffix(before, after, min(len(before), len(after)) - prefix)
        runs.append(
            (keep + prefix, len(before) - prefix - suffix, after[prefix : len(after) - suffix])
        )
        keep = suffix
    return runs


def _same_scalar(a: Value, b: Value) -> bool:
    return not isinstance(a, dict | list) and values_equal(a, b)


def _fingerprints(items: Sequence[Value]) -> list[object]:
    # Equality of fingerprints must imply values_equal; repr distinguishes
    # 1/1.0/True and -0.0/0.0, and all NaNs print alike.
    return [repr(item) if isinstance(item, dict | list | float) else (type(item), item)
            for item in items]  # fmt: skip


def _common_prefix(a: str | bytes, b: str | bytes) -> int:
    limit = min(len(a), len(b))
    low, high = 0, limit
    while low < high:  # binary search on slice equality: C-speed compares
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def _common_suffix(a: str | bytes, b: str | bytes, limit: int) -> int:
    low, high = 0, limit
    while low < high:
        mid = (low + high + 1) // 2
        if a[len(a) - mid :] == b[len(b) - mid :]:
            low = mid
        else:
            high = mid - 1
    return low


def _best_rename(
    key: str, value: Value, removed: Mapping[str, int], base: Mapping[str, Value]
) -> str | None:
    """The removed key whose value ``value`` most resembles, if similar enough."""
    best: str | None = None
    best_score = 0.0
    for old_key in removed:
        old = base[old_key]
        if isinstance(old, dict) and isinstance(value, dict):
            score = _similarity(old, value)
        elif isinstance(old, dict | list) or isinstance(value, dict | list):
            continue
        else:
            score = 1.0 if values_equal(old, value) else 0.0
        if score > best_score:
            best, best_score = old_key, score
    return best if best_score >= RENAME_SIMILARITY else None


def _similarity(a: Mapping[str, Value], b: Mapping[str, Value]) -> float:
    flat_a, flat_b = flatten(a), flatten(b)
    if not flat_a or not flat_b:
        return 1.0 if not flat_a and not flat_b else 0.0
    shared = sum(
        1 for path, leaf in flat_b.items() if path in flat_a and values_equal(flat_a[path], leaf)
    )
    return shared / max(len(flat_a), len(flat_b))


# ---------------------------------------------------------------- apply

_DROP: Final = object()


def apply(base: Value, ops: Sequence[Op], *, max_nodes: int | None = None) -> Value:
    """The tree that ``ops`` (from :func:`diff` or a decoded delta) make of ``base``.

    Raises :class:`DeltaError` naming the operation when it does not fit the
    base: an index beyond the base, a splice on a number, a splice longer
    than its string, two operations of one kind on a node, a duplicate key,
    copies adding more than ``max_nodes`` nodes (default: four times the base).
    """
    return apply_traced(base, ops, max_nodes=max_nodes).result


@dataclass(frozen=True, slots=True)
class Applied:
    """The result of :func:`apply_traced` and the containers it rebuilt.

    Everything else in ``result`` is the base's own objects, shared: a
    canonical encoder can reuse their bytes and encode only ``built``.
    """

    result: Value
    rebuilt: tuple[Value, ...]
    """Base containers on the way to an operation (their copies are in ``built``)."""
    built: tuple[Value, ...]
    """Containers of ``result`` made by applying, not taken from the base."""
    kept: Mapping[int, int] = field(default_factory=lambda: {})
    """``id`` of each base node that is a child of a ``built`` container,
    unchanged, mapped to its preorder number in the base.  Filled only when
    the base's size table was given: with it, the result's size table is
    the base's, sliced (see :func:`edgecfg.wire.delta`)."""
    same_keys: bool = False
    """No map key was added, removed or renamed: the result's
    :func:`key_table` is the base's."""


def apply_traced(
    base: Value,
    ops: Sequence[Op],
    *,
    max_nodes: int | None = None,
    sizes: Sequence[int] | None = None,
) -> Applied:
    """:func:`apply`, telling which containers it rebuilt.

    Work is proportional to the part of the base before the last operation,
    in preorder, not to the whole base: nothing after it is visited.  With
    ``sizes``, the base's :func:`size_table`, it is proportional to the
    containers on the way to the operations and their widths.
    """
    table = _Sizes(sizes)
    budget = max_nodes if max_nodes is not None else 4 * table.at(base, 0) + 1024
    applier = _Applier(base, ops, budget=[budget], sizes=table)
    if sizes is not None:
        applier.kept = {}
    result = applier.run()
    same_keys = not applier.reshaped and all(isinstance(op, Set | Splice | TextEdit) for op in ops)
    return Applied(
        result, tuple(applier.rebuilt), tuple(applier.built), applier.kept or {}, same_keys
    )


class _Applier:
    __slots__ = ("adds", "base", "budget", "built", "by_index", "depth", "indexes", "kept",
                 "last", "reached", "rebuilt", "reshaped", "sizes")  # fmt: skip

    def __init__(
        self,
        base: Value,
        ops: Sequence[Op],
        *,
        depth: int = 0,
        budget: list[int] | None = None,
        sizes: _Sizes | None = None,
    ) -> None:
        self.base = base
        self.depth = depth
        self.sizes = sizes if sizes is not None else _Sizes()
        # Nodes that copies may still add, shared by nested copies: a delta of
        # a few bytes must not multiply the base without bound.
        self.budget = budget if budget is not None else [4 * self.sizes.at(base, 0) + 1024]
        self.by_index: dict[int, dict[type, Op]] = {}
        self.adds: dict[int, list[Add | Copy]] = {}
        for op in ops:
            slot = self.by_index.setdefault(op.index, {})
            if isinstance(op, Add | Copy):
                self.adds.setdefault(op.index, []).append(op)
                slot[Add] = op
            elif type(op) in slot:
                raise DeltaError(f"two {type(op).__name__} operations on node {op.index}")
            slot[type(op)] = op
        self.indexes = sorted(self.by_index)
        self.last = self.indexes[-1] if self.indexes else -1
        self.reached: set[int] = set()
        self.rebuilt: list[Value] = []
        self.built: list[Value] = []
        # With a size table: unchanged children of rebuilt containers (see Applied.kept).
        self.kept: dict[int, int] | None = None
        # A Set that replaced a container or put one in place (map keys changed).
        self.reshaped = False

    def run(self) -> Value:
        root_ops = self.by_index.get(0, {})
        if Delete in root_ops or Rename in root_ops:
            raise DeltaError("the root cannot be deleted or renamed")
        result = cast(Value, self.node(self.base, 0))
        if len(self.reached) < len(self.indexes):
            missed = min(set(self.indexes) - self.reached)
            total = self.sizes.at(self.base, 0)
            where = (
                f"but the base has only {total} nodes"
                if missed >= total
                else "inside a node the delta replaces or deletes"
            )
            raise DeltaError(f"operation on node {missed}, {where}")
        return result

    def touched(self, index: int, size: int) -> bool:
        position = bisect.bisect_left(self.indexes, index)
        return position < len(self.indexes) and self.indexes[position] < index + size

    def node(self, node: Value, index: int) -> Value | object:
        if index > self.last:  # nothing at or after this node: no need to size it
            return node
        ops = self.by_index.get(index, {})
        # An operation at this node touches it; else one inside it does, which
        # needs its size.  The root holds every node: its size is never needed.
        if not ops and index and not self.touched(index, self.sizes.at(node, index)):
            return node
        if ops:
            self.reached.add(index)
        if Delete in ops:
            return _DROP
        replaced = ops.get(Set)
        if replaced is not None:
            if len(ops) > 1 + (Rename in ops):
                raise DeltaError(f"node {index} is replaced and edited in one delta")
            value = cast(Set, replaced).value
            if type(node) in _CONTAINERS or type(value) in _CONTAINERS:
                self.reshaped = True
            return value
        splice = ops.get(Splice)
        if splice is not None:
            return _splice(node, cast(Splice, splice))
        text_edit = ops.get(TextEdit)
        if text_edit is not None:
            return _text_edit(node, cast(TextEdit, text_edit))
        if isinstance(node, dict):
            return self.map(node, index, ops)
        if isinstance(node, list):
            if Add in ops:
                raise DeltaError(f"add of a key to node {index}, which is an array")
            edit = cast(ListEdit | None, ops.get(ListEdit))
            return self.list(cast(list[Value], node), index, edit)
        if set(ops) - {Rename}:
            kinds = sorted(kind.__name__ for kind in ops)
            raise DeltaError(f"{kinds} on node {index}, a {type(node).__name__} leaf")
        return node

    def map(self, node: dict[str, Value], index: int, ops: Mapping[type, Op]) -> Tree:
        if ListEdit in ops:
            raise DeltaError(f"list edit on node {index}, which is a map")
        out: Tree = {}
        child = index + 1
        kept = self.kept
        # With a size table, an untouched child (no operation inside it) is
        # passed over here, without a call per child: the next operation's
        # index is followed along the children, which come in index order.
        table, offset = self.sizes.table, self.sizes.offset
        indexes, last = self.indexes, self.last
        upcoming = bisect.bisect_left(indexes, child)
        for key in canonical_keys(tuple(node)):
            value = node[key]
            if table is not None and child <= last:
                while indexes[upcoming] < child:
                    upcoming += 1
                size = table[offset + child]
                if indexes[upcoming] >= child + size:
                    out[key] = value
                    if kept is not None:
                        kept[id(value)] = child
                    child += size
                    continue
            if child > self.last:  # the rest is untouched: no need to size it
                if key in out:
                    raise DeltaError(f"a rename in node {index} to {key!r} collides")
                out[key] = value
                if kept is not None:  # sizes are table look-ups
                    kept[id(value)] = child
                    child += self.sizes.at(value, child)
                continue
            new = self.node(value, child)
            if new is value and kept is not None:
                kept[id(value)] = child
            if new is not _DROP:
                renamed = self.by_index.get(child, {}).get(Rename)
                new_key = cast(Rename, renamed).key if renamed is not None else key
                if new_key in out:
                    raise DeltaError(f"rename of node {child} to {new_key!r} collides")
                out[new_key] = cast(Value, new)
            child += self.sizes.at(value, child)
        for add in self.adds.get(index, []):
            if add.key in out:
                raise DeltaError(f"add of {add.key!r} to node {index}: key already present")
            out[add.key] = add.value if isinstance(add, Add) else self.copy(add)
        self.rebuilt.append(node)
        self.built.append(out)
        return out

    def copy(self, op: Copy) -> Value:
        if self.depth >= MAX_COPY_DEPTH:
            raise DeltaError(f"copies nested deeper than {MAX_COPY_DEPTH} at node {op.index}")
        total = self.sizes.at(self.base, 0)
        if op.source >= total:
            raise DeltaError(f"copy from node {op.source}, but the base has only {total} nodes")
        source = self.node_at(op.source)
        if not isinstance(source, dict):
            raise DeltaError(f"copy into node {op.index} from node {op.source}, which is no map")
        self.budget[0] -= self.sizes.at(source, op.source)
        if self.budget[0] < 0:
            raise DeltaError(
                f"copy of node {op.source} exceeds the node budget of the result "
                "(copies would multiply the base)"
            )
        nested = _Sizes(self.sizes.table, self.sizes.offset + op.source)
        return _Applier(
            source, op.ops, depth=self.depth + 1, budget=self.budget, sizes=nested
        ).run()

    def node_at(self, index: int) -> Value:
        """The base node with preorder number ``index``."""
        node, position = self.base, 0
        while position != index:
            children: list[Value]
            if isinstance(node, dict):
                children = [node[key] for key in canonical_keys(tuple(node))]
            elif isinstance(node, list):
                children = cast(list[Value], node)
            else:  # pragma: no cover - run() checked the index against the size
                raise DeltaError(f"node {index} does not exist")
            position += 1
            for child in children:
                size = self.sizes.at(child, position)
                if index < position + size:
                    node = child
                    break
                position += size
        return node

    def list(self, node: list[Value], index: int, edit: ListEdit | None) -> list[Value]:
        kept: list[Value] = []
        child = index + 1
        unchanged = self.kept
        table, offset = self.sizes.table, self.sizes.offset
        indexes, last = self.indexes, self.last
        upcoming = bisect.bisect_left(indexes, child)
        for value in node:
            if table is not None and child <= last:  # as in map(): pass untouched ones over
                while indexes[upcoming] < child:
                    upcoming += 1
                size = table[offset + child]
                if indexes[upcoming] >= child + size:
                    kept.append(value)
                    if unchanged is not None:
                        unchanged[id(value)] = child
                    child += size
                    continue
            if child > self.last:
                kept.append(value)
                if unchanged is not None:  # sizes are table look-ups
                    unchanged[id(value)] = child
                    child += self.sizes.at(value, child)
                continue
            new = self.node(value, child)
            if new is value and unchanged is not None:
                unchanged[id(value)] = child
            if self.by_index.get(child, {}).get(Rename) is not None:
                raise DeltaError(f"rename of node {child}, an array element")
            kept.append(new)  # type: ignore[arg-type]
            child += self.sizes.at(value, child)
        self.rebuilt.append(node)
        if edit is None:
            out = [v for v in kept if v is not _DROP]
            self.built.append(out)
            return out
        out: list[Value] = []
        position = 0
        for keep, drop, inserted in edit.runs:
            if keep < 0 or drop < 0 or position + keep + drop > len(kept):
                raise DeltaError(
                    f"list edit on node {index} runs past the {len(kept)} base elements"
                )
            out.extend(kept[position : position + keep])
            position += keep + drop
            out.extend(inserted)
        out.extend(kept[position:])
        out = [v for v in out if v is not _DROP]
        self.built.append(out)
        return out


def _splice(node: Value, op: Splice) -> Value:
    if type(node) is not type(op.middle) or not isinstance(node, str | bytes):
        raise DeltaError(
            f"splice on node {op.index}: expected {type(op.middle).__name__}, "
            f"found {type(node).__name__}"
        )
    if op.prefix < 0 or op.suffix < 0 or op.prefix + op.suffix > len(node):
        raise DeltaError(
            f"splice on node {op.index} keeps {op.prefix}+{op.suffix} of {len(node)} characters"
        )
    return node[: op.prefix] + op.middle + node[len(node) - op.suffix :]  # type: ignore[operator]


def _text_edit(node: Value, op: TextEdit) -> Value:
    if not isinstance(node, str | bytes) or any(type(run[2]) is not type(node) for run in op.runs):
        raise DeltaError(f"text edit on node {op.index}: the node and the inserts must be one type")
    parts: list[str | bytes] = []
    position = 0
    for keep, drop, inserted in op.runs:
        if keep < 0 or drop < 0 or position + keep + drop > len(node):
            raise DeltaError(f"text edit on node {op.index} runs past its {len(node)} characters")
        parts += [node[position : position + keep], inserted]
        position += keep + drop
    parts.append(node[position:])
    return node[:0].join(parts)  # type: ignore[arg-type]


# ---------------------------------------------------------------- priority classes


def restrict(base: Tree, target: Tree, *, wanted: Callable[[Path], bool]) -> Tree:
    """``base`` with only those leaf changes of ``target`` whose path is ``wanted``.

    The result is a consistent intermediate configuration: applying the rest
    of the changes to it yields exactly ``target``.
    """
    old, new = flatten(base), flatten(target)
    result = dict(old)
    for path in old.keys() | new.keys():
        if not wanted(path):
            continue
        before, after = old.get(path, UNSET), new.get(path, UNSET)
        if values_equal(before, after):
            continue
        if after is UNSET:
            result.pop(path, None)
        else:
            result[path] = cast(Value, after)
    return _unflatten_lenient(result)


def _unflatten_lenient(flat: dict[Path, Value]) -> Tree:
    # A wanted change may turn a leaf into a map (or back) while an unwanted
    # sibling still needs the old shape; the deeper paths win.
    for path in sorted(flat, key=len):
        for depth in range(1, len(path)):
            prefix = path[:depth]
            if prefix in flat and (not is_map(flat[prefix]) or flat[prefix] == {}):
                del flat[prefix]
    return unflatten(flat)


def restrict_to_classes(
    old: Tree, new: Tree, *, schema: Schema | None, classes: Collection[str]
) -> Tree:
    """``old`` plus only the changes of ``new`` in the given priority classes.

    Keys the schema does not know count as ``normal``.
    """
    if schema is None:
        raise UsageError("priority classes need a schema (make_delta(..., schema=...))")
    unknown = set(classes) - {"critical", "normal", "bulk"}
    if unknown:
        raise UsageError(f"unknown priority classes {sorted(unknown)}; use critical, normal, bulk")

    def wanted(path: tuple[str, ...]) -> bool:
        spec = schema.spec(path)
        return (spec.priority if spec is not None else "normal") in classes

    return restrict(old, new, wanted=wanted)
