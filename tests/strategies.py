"""Hypothesis strategies for configuration values and edits, shared by tests."""

from __future__ import annotations

import math
import struct
from typing import cast

from hypothesis import strategies as st

from edgecfg.core.hlc import Timestamp
from edgecfg.core.ids import DeviceId, ETag
from edgecfg.core.journal import JournalEntry
from edgecfg.core.layers import Layer
from edgecfg.core.path import Path, is_prefix
from edgecfg.core.tree import UNSET, Tree, UnsetType, Value
from edgecfg.store import DeviceRecord

keys = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=12
) | st.sampled_from(["a", "b", "net", "uplink", "interval_s", "a.b", "ключ", "🙂", ""])

scalars: st.SearchStrategy[Value] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64 - 1),
    st.integers(min_value=-30, max_value=300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, float("nan"), 0.0125, 23.52]),
    st.text(max_size=40),
    st.text(alphabet="ab\n", min_size=60, max_size=200),
    st.binary(max_size=24),
)


def values(max_leaves: int = 30) -> st.SearchStrategy[Value]:
    """Any model value: nested maps and lists of scalars, maps and lists."""
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=6),
            st.dictionaries(keys, children, max_size=6),
        ),
        max_leaves=max_leaves,
    )


def trees(max_leaves: int = 30) -> st.SearchStrategy[Tree]:
    """A configuration: a map at the top."""
    return cast(st.SearchStrategy[Tree], st.dictionaries(keys, values(max_leaves), max_size=8))


@st.composite
def edited(draw: st.DrawFn, tree: Tree, depth: int = 0) -> Tree:
    """A version of ``tree`` after random edits: changed leaves, new and removed keys,
    renamed sections, list inserts, deletes and moves."""
    out: Tree = {}
    items = list(tree.items())
    for key, value in items:
        action = draw(st.sampled_from(["keep", "keep", "keep", "change", "drop", "rename"]))
        if action == "drop":
            continue
        new_key = key
        if action == "rename":
            new_key = draw(keys)
            if new_key in out or new_key in tree:
                new_key = key
        if isinstance(value, dict) and depth < 4:
            out[new_key] = draw(edited(value, depth + 1))
        elif isinstance(value, list):
            out[new_key] = draw(_edited_list(cast(list[Value], value)))
        elif action == "change":
            out[new_key] = draw(scalars)
        else:
            out[new_key] = value
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        key = draw(keys)
        if key not in out:
            out[key] = draw(values(6))
    return out


@st.composite
def _edited_list(draw: st.DrawFn, items: list[Value]) -> list[Value]:
    result = list(items)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        move = draw(st.sampled_from(["insert", "delete", "move", "change"]))
        if move == "insert" or not result:
            result.insert(draw(st.integers(0, len(result))), draw(scalars))
        elif move == "delete":
            result.pop(draw(st.integers(0, len(result) - 1)))
        elif move == "move":
            element = result.pop(draw(st.integers(0, len(result) - 1)))
            result.insert(draw(st.integers(0, len(result))), element)
        else:
            result[draw(st.integers(0, len(result) - 1))] = draw(scalars)
    return result


@st.composite
def tree_pairs(draw: st.DrawFn) -> tuple[Tree, Tree]:
    """(old, new): sometimes independent trees, mostly an edited version."""
    old = draw(trees())
    if draw(st.integers(0, 4)) == 0:
        return old, draw(trees())
    return old, draw(edited(old))


def top_values(max_leaves: int = 30) -> st.SearchStrategy[Value]:
    """Any value at the top level: a map, a list (Home Assistant ``automations.yaml``
    is a list of maps), a scalar, or an empty container."""
    return st.one_of(
        trees(max_leaves),
        st.lists(trees(max_leaves // 3), max_size=6).map(lambda items: cast(Value, items)),
        st.lists(values(max_leaves // 2), max_size=6).map(lambda items: cast(Value, items)),
        scalars,
        st.sampled_from([cast(Value, {}), cast(Value, [])]),
    )


@st.composite
def value_pairs(draw: st.DrawFn) -> tuple[Value, Value]:
    """(old, new) with any top-level types: edited versions of one another,
    or unrelated values (a map becoming a list, a scalar becoming a map)."""
    old = draw(top_values())
    if draw(st.integers(0, 3)) == 0:
        return old, draw(top_values())
    if isinstance(old, dict):
        return old, draw(edited(old))
    if isinstance(old, list):
        items: list[Value] = [
            draw(edited(item)) if isinstance(item, dict) and draw(st.booleans()) else item
            for item in cast(list[Value], old)
        ]
        return old, draw(_edited_list(items))
    return old, draw(scalars)


# ---------------------------------------------------------------- the model's edges
# Values of the configuration model (DESIGN §3) at its edges: every float the
# codec must keep bit-exact, integers at the CBOR limits, short keys.

NAN_WITH_PAYLOAD = struct.unpack(">d", bytes.fromhex("7ff8000000000001"))[0]
NEGATIVE_NAN = struct.unpack(">d", bytes.fromhex("fff8000000000000"))[0]

model_ints = st.integers(min_value=-(2**64), max_value=2**64 - 1)
model_floats = st.floats() | st.sampled_from(
    [0.0, -0.0, math.inf, -math.inf, math.nan, NAN_WITH_PAYLOAD, NEGATIVE_NAN]
)
model_scalars = (
    st.none()
    | st.booleans()
    | model_ints
    | model_floats
    | st.text(max_size=12)
    | st.binary(max_size=12)
)
model_keys = st.text(max_size=8)
model_values = st.recursive(
    model_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(model_keys, children, max_size=4)
    ),
    max_leaves=24,
)
model_trees = st.dictionaries(model_keys, model_values, max_size=6)

# Values that Python's == confuses (1 / 1.0 / True, 0.0 / -0.0, NaN), drawn
# from a tiny domain so that pairs of them are often equal.
confusable_scalars = st.sampled_from(
    [
        0, 1, -1, 0.0, -0.0, 1.0, -1.0, math.nan, NEGATIVE_NAN, NAN_WITH_PAYLOAD,
        math.inf, -math.inf, True, False, None, "", "1", b"", b"1", 2**64 - 1, -(2**64),
    ]
)  # fmt: skip
confusable_values = st.recursive(
    confusable_scalars,
    lambda children: (
        st.lists(children, max_size=2)
        | st.dictionaries(st.sampled_from(["a", "b"]), children, max_size=2)
    ),
    max_leaves=4,
)


# ---------------------------------------------------------------- journals

journal_path_keys = st.text(min_size=1, max_size=6) | st.sampled_from(
    ["net", "a.b", "x\\y", "ключ"]
)
journal_paths = st.lists(journal_path_keys, min_size=1, max_size=4).map(tuple)
timestamps = st.builds(
    Timestamp,
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.text(max_size=8),
)


@st.composite
def journal_entry_lists(draw: st.DrawFn) -> list[JournalEntry]:
    """Up to six journal entries in sequence order (gaps allowed), of any model
    value or a removal, on any path, at any hybrid-logical-clock time."""
    entries: list[JournalEntry] = []
    sequence = 0
    for _ in range(draw(st.integers(0, 6))):
        sequence += draw(st.integers(1, 2**20))
        value: Value | UnsetType = draw(st.just(UNSET) | model_values)
        entries.append(
            JournalEntry(
                draw(journal_paths), value, draw(st.text(max_size=20)), draw(timestamps), sequence
            )
        )
    return entries


# ---------------------------------------------------------------- layers and groups

# A small universe of paths so that Hypothesis finds ancestor/descendant
# overlaps (a vs a.x vs a.x.p) and equal paths in different parts of a layer.
UNIVERSE: tuple[Path, ...] = (
    ("a",),
    ("a", "x"),
    ("a", "y"),
    ("a", "x", "p"),
    ("b",),
    ("b", "z"),
    ("c",),
)
universe_paths = st.sampled_from(UNIVERSE)
# Leaf values, including those Python's == confuses (1 / 1.0 / True, 0.0 / -0.0).
leaf_values: st.SearchStrategy[Value] = st.sampled_from(
    [0, 1, 1.0, True, False, None, 0.0, -0.0, "s", b"b", [1], [], {}, math.nan]
)
group_paths = st.lists(st.sampled_from(["g", "h"]), min_size=1, max_size=3).map("/".join)
"""Group nodes of one dimension (``g``, ``g/h``, ...): ancestors and siblings."""


@st.composite
def layers(draw: st.DrawFn, *, locks: bool = True) -> Layer:
    """A well-formed layer over :data:`UNIVERSE` (sometimes empty): no set
    above another set, no path both set and unset."""
    sets: dict[Path, Value] = {}
    for path in draw(st.lists(universe_paths, unique=True, max_size=4)):
        if not any(is_prefix(path, other) or is_prefix(other, path) for other in sets):
            sets[path] = draw(leaf_values)
    unsets = frozenset(draw(st.lists(universe_paths, max_size=3))) - frozenset(sets)
    locked = frozenset(draw(st.lists(universe_paths, max_size=2))) if locks else frozenset[Path]()
    return Layer(sets, unsets, locked)


# ---------------------------------------------------------------- device records

device_ids = st.sampled_from([DeviceId(f"d{n}") for n in range(6)])
device_records = st.builds(
    DeviceRecord,
    id=device_ids,
    groups=st.dictionaries(
        st.sampled_from(["region", "function"]),
        st.sampled_from(["eu", "eu/west", "europe", "us", "eu/west/x"]),
    ),
    hardware=st.none() | st.text(max_size=3),
    firmware=st.none() | st.sampled_from(["2.1.0", "3.0.0-rc1", ""]),
    agent_version=st.none() | st.text(max_size=6),
    last_seen=st.none() | st.floats(0, 2e9),
    applied_etag=st.none() | st.binary(min_size=8, max_size=8).map(ETag),
)
"""Registry records of six device ids, every field drawn."""
