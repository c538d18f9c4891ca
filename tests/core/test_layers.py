"""Layers, layer documents, layer ids and the precedence hierarchy (edgecfg.core.layers)."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import (
    DEFAULT_RANKS,
    EMPTY_LAYER,
    GLOBAL,
    Hierarchy,
    Layer,
    LayerError,
    LayerName,
    device_layer,
    group_layer,
    hierarchy_from_text,
    layer_from_document,
    layer_from_parts,
    layer_to_document,
    parse_group,
)
from edgecfg.core.path import Path, is_prefix
from edgecfg.core.resolve import DeviceFacts, Resolver
from edgecfg.core.tree import Tree, Value, is_map, values_equal
from edgecfg.errors import UsageError
from tests.strategies import UNIVERSE, group_paths, layers, leaf_values, universe_paths


def _related(a: Path, b: Path) -> bool:
    return is_prefix(a, b) or is_prefix(b, a)


def same_layer(a: Layer, b: Layer) -> bool:
    """Layer equality with encoding equality of values (``==`` takes 1 for True)."""
    return (
        a.sets.keys() == b.sets.keys()
        and all(values_equal(a.sets[path], b.sets[path]) for path in a.sets)
        and a.unsets == b.unsets
        and a.locks == b.locks
    )


# ---------------------------------------------------------------- Layer


def test_layer_rejects_a_path_both_set_and_unset_naming_it() -> None:
    with pytest.raises(LayerError, match=r"a\.b is both set and unset"):
        Layer({("a", "b"): 1}, frozenset({("a", "b")}))


@pytest.mark.parametrize(
    "sets",
    [
        {("a", "b"): 1, ("a", "b", "c"): 2},
        {("a",): 1, ("a", "b", "c"): 2},
        # an unrelated extension sorts between the leaf and its descendant
        {("a",): 1, ("a", "b"): 2, ("a", "c"): 3},
        {("a", "b", "c"): 2, ("a", "b"): {}},
    ],
)
def test_layer_rejects_a_leaf_set_above_another_set_path(sets: dict[Path, Value]) -> None:
    with pytest.raises(LayerError, match=r"is set as a leaf and .* below it"):
        Layer(sets)


@given(st.dictionaries(universe_paths, leaf_values, max_size=5))
def test_layer_accepts_sets_exactly_when_no_set_path_is_above_another(
    sets: dict[Path, Value],
) -> None:
    overlapping = any(a != b and is_prefix(a, b) for a in sets for b in sets)
    if overlapping:
        with pytest.raises(LayerError):
            Layer(sets)
    else:
        layer = Layer(sets)
        assert layer.sets == sets
        assert layer.set_prefixes == {p[:d] for p in sets for d in range(1, len(p))}


def test_layer_errors_name_a_path_with_an_empty_key_by_its_tuple() -> None:
    with pytest.raises(LayerError, match=re.escape("('a', '') is both set and unset")):
        Layer({("a", ""): 1}, frozenset({("a", "")}))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sets": {(): 1}},
        {"unsets": frozenset({()})},
        {"locks": frozenset({()})},
        {"sets": {("a",): 1}, "locks": frozenset({()})},
    ],
)
def test_layer_rejects_the_root(kwargs: dict[str, object]) -> None:
    with pytest.raises(LayerError, match="root"):
        Layer(**kwargs)  # type: ignore[arg-type]


def test_layer_error_is_a_usage_error_and_a_value_error() -> None:
    with pytest.raises(LayerError) as caught:
        Layer(unsets=frozenset({()}))
    assert isinstance(caught.value, UsageError)
    assert isinstance(caught.value, ValueError)


def test_empty_layer_has_no_opinion() -> None:
    assert EMPTY_LAYER.empty
    assert Layer().empty
    assert EMPTY_LAYER.touched() == frozenset()
    assert not Layer(locks=frozenset({("a",)})).empty
    assert not Layer(unsets=frozenset({("a",)})).empty
    assert not Layer({("a",): None}).empty


def test_touched_names_sets_and_unsets_but_not_locks() -> None:
    layer = Layer({("a", "x"): 1}, frozenset({("b",)}), frozenset({("c",)}))
    assert layer.touched() == {("a", "x"), ("b",)}


def test_set_prefixes_are_the_proper_ancestors_of_set_paths() -> None:
    layer = Layer({("a", "x", "p"): 1, ("b",): 2})
    assert layer.set_prefixes == {("a",), ("a", "x")}


# ---------------------------------------------------------------- merged / without


def test_merged_edit_sets_win_and_other_sets_stay() -> None:
    base = Layer({("a", "x"): 1, ("b",): 2}, frozenset({("c",)}), frozenset({("a",)}))
    edit = Layer({("a", "x"): 3}, locks=frozenset({("b",)}))
    merged = base.merged(edit)
    assert same_layer(
        merged,
        Layer({("a", "x"): 3, ("b",): 2}, frozenset({("c",)}), frozenset({("a",), ("b",)})),
    )


def test_merged_edit_unset_removes_the_sets_at_and_below_it() -> None:
    base = Layer({("a", "x", "p"): 1, ("a", "y"): 2, ("b",): 3})
    merged = base.merged(Layer(unsets=frozenset({("a",)})))
    assert same_layer(merged, Layer({("b",): 3}, frozenset({("a",)})))


def test_merged_edit_set_replaces_a_tombstone_on_the_same_path() -> None:
    base = Layer(unsets=frozenset({("a",), ("b",)}))
    merged = base.merged(Layer({("a",): None}))
    assert same_layer(merged, Layer({("a",): None}, frozenset({("b",)})))


def test_merged_keeps_a_tombstone_above_an_edit_set() -> None:
    """ "Unset a and set a.x" replaces a subtree; an edit can build it in two steps."""
    merged = Layer(unsets=frozenset({("a",)})).merged(Layer({("a", "x"): 1}))
    assert same_layer(merged, Layer({("a", "x"): 1}, frozenset({("a",)})))


def test_merged_with_the_empty_layer_is_the_same_layer() -> None:
    layer = Layer({("a", "x"): 1}, frozenset({("b",)}), frozenset({("c",)}))
    assert same_layer(layer.merged(EMPTY_LAYER), layer)
    assert same_layer(EMPTY_LAYER.merged(layer), layer)


def _fold_one_by_one(base: Tree, *layers: Layer) -> Tree:
    """Resolve a device whose tiers hold ``layers`` in order, above ``base``."""
    dims = ("hardware", "function", "region")
    stored: dict[LayerId, Layer] = {GLOBAL: layer_from_parts(base)}
    for dim, layer in zip(dims, layers, strict=False):
        stored[group_layer(dim, "g")] = layer
    groups = {dim: "g" for dim in dims[: len(layers)]}
    return Resolver(Hierarchy(), stored).resolve(DeviceFacts(DeviceId("d"), groups)).tree


def _unflatten_loosely(flat: Mapping[Path, Value]) -> Tree:
    """A tree with the given leaves; a later (deeper) path replaces a leaf on its way."""
    tree: Tree = {}
    for path in sorted(flat):
        node = tree
        for key in path[:-1]:
            child = node.get(key)
            if not is_map(child):
                child = node[key] = {}
            node = child
        node[path[-1]] = copy.deepcopy(flat[path])
    return tree


# Trees below the layers hold leaves only where the universe has no deeper
# path: a layer's set that turns an inherited leaf into a map has a side
# effect that no single layer can express, so the law below does not cover it.
DEEPEST: list[Path] = [p for p in UNIVERSE if not any(q != p and is_prefix(p, q) for q in UNIVERSE)]
base_trees: st.SearchStrategy[Tree] = st.dictionaries(
    st.sampled_from(DEEPEST),
    leaf_values,
    max_size=4,
).map(_unflatten_loosely)


def _sets_overlap_across(base: Layer, edit: Layer) -> bool:
    return any(
        a != b and _related(a, b)
        for a in base.sets
        if not any(is_prefix(u, a) for u in edit.unsets)
        for b in edit.sets
    )


@settings(max_examples=150, deadline=None)
@given(base_trees, layers(locks=False), layers(locks=False))
def test_merged_folds_like_the_layer_then_the_edit(tree: Tree, base: Layer, edit: Layer) -> None:
    # An edit that sets a path above or below one the layer sets replaces it
    # (tested on its own below); folding the two one by one differs there.
    if _sets_overlap_across(base, edit):
        return
    merged = base.merged(edit)
    # Folding two layers can leave an emptied map behind (set a.x.p, then
    # unset it leaves a.x = {}); the merged layer never names a.x.p at all.
    assert values_equal(
        _prune(_fold_one_by_one(tree, merged)), _prune(_fold_one_by_one(tree, base, edit))
    )


def _prune(tree: Tree) -> Tree:
    """``tree`` without empty maps (recursively)."""
    out: Tree = {}
    for key, value in tree.items():
        kept = _prune(value) if is_map(value) else value
        if is_map(kept) and not kept:
            continue
        out[key] = kept
    return out


def test_merged_lets_an_edit_set_a_leaf_over_a_set_subtree() -> None:
    merged = Layer({("a", "x"): 1, ("b",): 2}).merged(Layer({("a",): 5}))
    assert same_layer(merged, Layer({("a",): 5, ("b",): 2}))
    assert values_equal(_fold_one_by_one({}, merged), {"a": 5, "b": 2})


def test_merged_lets_an_edit_set_below_a_set_leaf() -> None:
    merged = Layer({("a",): 1}).merged(Layer({("a", "x"): 5}))
    assert ("a",) not in merged.sets
    assert values_equal(merged.sets[("a", "x")], 5)
    assert values_equal(_fold_one_by_one({"a": 3}, merged), {"a": {"x": 5}})


def test_without_forgets_sets_unsets_and_locks_at_and_below_the_paths() -> None:
    layer = Layer(
        {("a", "x"): 1, ("a", "y"): 2, ("b",): 3},
        frozenset({("a", "x", "p"), ("c",)}),
        frozenset({("a",), ("a", "x"), ("c",)}),
    )
    shrunk = layer.without([("a", "x"), ("c",)])
    assert same_layer(shrunk, Layer({("a", "y"): 2, ("b",): 3}, locks=frozenset({("a",)})))
    assert same_layer(layer.without([]), layer)
    assert layer.without([("a",), ("b",), ("c",)]).empty


@given(layers(), st.lists(universe_paths, max_size=3))
def test_without_leaves_nothing_at_or_below_the_removed_paths(
    layer: Layer, gone: list[Path]
) -> None:
    shrunk = layer.without(gone)
    for kept in (*shrunk.sets, *shrunk.unsets, *shrunk.locks):
        assert not any(is_prefix(root, kept) for root in gone)
    for path, value in layer.sets.items():
        if not any(is_prefix(root, path) for root in gone):
            assert values_equal(shrunk.sets[path], value)
    assert shrunk.unsets == {p for p in layer.unsets if not any(is_prefix(r, p) for r in gone)}


# ---------------------------------------------------------------- layer_from_parts


def test_layer_from_parts_flattens_a_partial_tree_into_leaves() -> None:
    layer = layer_from_parts({"net": {"apn": "iot", "uplink": {"interval_s": 60}}, "log": {}})
    assert same_layer(
        layer,
        Layer({("net", "apn"): "iot", ("net", "uplink", "interval_s"): 60, ("log",): {}}),
    )


def test_layer_from_parts_setting_a_map_merges_it_leaf_by_leaf() -> None:
    layer = layer_from_parts(
        sets={("net",): {"apn": "iot", "uplink": {"host": "h"}}, ("log",): "info"},
        unsets=[("old",)],
        locks=[("net", "apn")],
    )
    assert same_layer(
        layer,
        Layer(
            {("net", "apn"): "iot", ("net", "uplink", "host"): "h", ("log",): "info"},
            frozenset({("old",)}),
            frozenset({("net", "apn")}),
        ),
    )


def test_layer_from_parts_keeps_an_empty_map_as_a_leaf_and_null_as_a_value() -> None:
    layer = layer_from_parts(sets={("a",): {}, ("b",): None})
    assert layer.sets == {("a",): {}, ("b",): None}
    assert layer.sets[("b",)] is None


def test_layer_from_parts_merges_values_and_sets() -> None:
    layer = layer_from_parts({"a": {"x": 1}}, sets={("b",): 2})
    assert same_layer(layer, Layer({("a", "x"): 1, ("b",): 2}))


def test_layer_from_parts_refuses_a_tuple_value_in_sets_naming_the_path() -> None:
    with pytest.raises(LayerError, match=r"tuple is not a configuration value at net\.apn"):
        layer_from_parts(sets={("net", "apn"): (1, 2)})  # type: ignore[dict-item]


def test_layer_from_parts_refuses_a_bad_value_nested_in_a_set_map_naming_its_path() -> None:
    with pytest.raises(LayerError, match=r"at net\.x\.y"):
        layer_from_parts(sets={("net",): {"x": {"y": {1, 2}}}})  # type: ignore[dict-item]


def test_layer_from_parts_refuses_a_tuple_in_a_partial_tree_naming_the_path() -> None:
    with pytest.raises(UsageError, match=r"tuple is not a configuration value at net\.apn"):
        layer_from_parts({"net": {"apn": (1, 2)}})  # type: ignore[dict-item]


def test_layer_from_parts_refuses_a_tuple_in_a_partial_tree_with_layer_error() -> None:
    with pytest.raises(LayerError, match=r"at net\.apn"):
        layer_from_parts({"net": {"apn": (1, 2)}})  # type: ignore[dict-item]


def test_layer_from_parts_refuses_the_root() -> None:
    with pytest.raises(LayerError, match="root"):
        layer_from_parts(sets={(): 1})
    with pytest.raises(LayerError, match="root"):
        layer_from_parts(unsets=[()])


def test_layer_from_parts_refuses_a_leaf_above_a_set_map() -> None:
    with pytest.raises(LayerError, match="set as a leaf"):
        layer_from_parts({"a": {"x": 1}}, sets={("a",): 5})


# ---------------------------------------------------------------- documents

doc_keys = st.sampled_from(["a", "b", "a.b", ".", "x\\y", "\\", "a\\.b", "ключ", "🙂", "c d"])
doc_paths = st.lists(doc_keys, min_size=1, max_size=3).map(tuple)


@st.composite
def document_layers(draw: st.DrawFn) -> Layer:
    sets: dict[Path, Value] = {}
    for path in draw(st.lists(doc_paths, unique=True, max_size=4)):
        if not any(_related(path, other) for other in sets):
            sets[path] = draw(leaf_values)
    unsets = frozenset(draw(st.lists(doc_paths, max_size=3))) - frozenset(sets)
    return Layer(sets, unsets, frozenset(draw(st.lists(doc_paths, max_size=3))))


@settings(max_examples=200)
@given(document_layers())
@example(Layer({("a.b",): 1, ("a", "b"): True}, frozenset({("\\",)}), frozenset({(".",)})))
def test_layer_from_document_inverts_layer_to_document(layer: Layer) -> None:
    document = layer_to_document(layer)
    assert set(document) <= {"set", "unset", "lock"}
    assert same_layer(layer_from_document(document), layer)


def test_layer_to_document_uses_dotted_escaped_sorted_paths() -> None:
    layer = Layer(
        {("b",): 1, ("a.b", "c"): None},
        frozenset({("z",), ("y", "x")}),
        frozenset({("b",)}),
    )
    assert layer_to_document(layer) == {
        "set": {"a\\.b.c": None, "b": 1},
        "unset": ["y.x", "z"],
        "lock": ["b"],
    }
    assert list(layer_to_document(layer)["set"]) == ["a\\.b.c", "b"]  # type: ignore[arg-type]
    assert layer_to_document(EMPTY_LAYER) == {}
    assert layer_from_document({}) == EMPTY_LAYER


def test_layer_to_document_refuses_a_path_with_an_empty_key() -> None:
    with pytest.raises(LayerError, match="empty key"):
        layer_to_document(Layer({("a", ""): 1}))
    with pytest.raises(LayerError, match="empty key"):
        layer_to_document(Layer(locks=frozenset({("",)})))


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ([], "must be a map"),
        ("set", "must be a map"),
        (None, "must be a map"),
        ({"sets": {}}, "unknown layer document fields ['sets']"),
        ({"set": {}, "extra": 1}, "unknown layer document fields ['extra']"),
        ({"set": ["a"]}, "'set' must map dotted paths"),
        ({"set": 1}, "'set' must map dotted paths"),
        ({"unset": "a"}, "'unset' must be a list"),
        ({"unset": ["a", 1]}, "'unset' must be a list"),
        ({"lock": {"a": 1}}, "'lock' must be a list"),
        ({"lock": [None]}, "'lock' must be a list"),
        ({"set": {"a..b": 1}}, "empty key"),
        ({"set": {"": 1}}, "root"),
        ({"unset": [""]}, "root"),
        ({"lock": ["a\\x"]}, "may be escaped"),
        ({"set": {"a": 1}, "unset": ["a"]}, "both set and unset"),
        ({"set": {"a": 1, "a.b": 2}}, "set as a leaf"),
    ],
)
def test_layer_from_document_rejects_malformed_documents(document: Value, fragment: str) -> None:
    with pytest.raises(LayerError) as caught:
        layer_from_document(document)
    assert fragment in str(caught.value)


def test_layer_from_document_sets_only_leaf_paths() -> None:
    layer = layer_from_document({"set": {"a": {"x": 1}}})
    assert not any(is_map(value) and value for value in layer.sets.values())
    assert same_layer(layer, layer_from_parts(sets={("a",): {"x": 1}}))


# ---------------------------------------------------------------- ids


def test_group_and_device_layer_ids() -> None:
    assert group_layer("region", "eu/eu-west") == "region/eu/eu-west"
    assert device_layer("dev-1") == "device/dev-1"
    assert device_layer(DeviceId("dev-1")) == "device/dev-1"


def test_parse_group_splits_and_checks_segments() -> None:
    assert parse_group("eu/eu-west/site-17") == ("eu", "eu-west", "site-17")
    assert parse_group("a.b:c@d+e_f") == ("a.b:c@d+e_f",)
    for bad in ("", "eu//west", "eu/", "/eu", "eu west", "eu/wëst", "x" * 65):
        with pytest.raises(LayerError, match="segment"):
            parse_group(bad)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("global", LayerName("global")),
        ("device/x", LayerName("device", device="x")),
        ("device/dev-0042", LayerName("device", device="dev-0042")),
        ("region/eu", LayerName("group", dimension="region", group=("eu",))),
        ("region/eu/west", LayerName("group", dimension="region", group=("eu", "west"))),
        ("hardware/nrf9160", LayerName("group", dimension="hardware", group=("nrf9160",))),
    ],
)
def test_hierarchy_parses_layer_ids(text: str, name: LayerName) -> None:
    parsed = Hierarchy().parse(text)
    assert parsed == name
    assert parsed.id == text
    assert parsed.depth == len(name.group)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("site/x", "unknown dimension 'site'; this fleet has ['hardware', 'function', 'region']"),
        ("global/x", "unknown dimension 'global'"),
        ("region", "must be 'global', 'device/ID' or 'DIMENSION/GROUP/PATH'"),
        ("region/", "must be 'global', 'device/ID'"),
        ("device", "must be 'global', 'device/ID'"),
        ("device/", "must be 'global', 'device/ID'"),
        ("", "must be 'global'"),
        ("region/eu//west", "segment ''"),
        ("region/eu/we st", "segment 'we st'"),
        ("region/eu/", "segment ''"),
    ],
)
def test_hierarchy_parse_rejects_bad_layer_ids(text: str, fragment: str) -> None:
    with pytest.raises(LayerError) as caught:
        Hierarchy().parse(text)
    assert fragment in str(caught.value)


segments = st.text(alphabet="ab-._:@+Z9", min_size=1, max_size=5)


@given(
    st.sampled_from(["hardware", "function", "region"]),
    st.lists(segments, min_size=1, max_size=3),
)
def test_parse_of_a_group_layer_id_round_trips(dimension: str, group: list[str]) -> None:
    layer_id = group_layer(dimension, "/".join(group))
    name = Hierarchy().parse(layer_id)
    assert (name.kind, name.dimension, name.group) == ("group", dimension, tuple(group))
    assert name.id == layer_id


# ---------------------------------------------------------------- Hierarchy


def test_default_hierarchy_ranks_hardware_below_function_below_region() -> None:
    hierarchy = Hierarchy()
    assert hierarchy.ranks == DEFAULT_RANKS
    assert hierarchy.dimensions == ("hardware", "function", "region")
    assert [hierarchy.rank_of(d) for d in hierarchy.dimensions] == [0, 1, 2]


def test_rank_of_tied_dimensions_is_shared() -> None:
    hierarchy = Hierarchy((("hardware",), ("function", "site"), ("region",)))
    assert hierarchy.rank_of("function") == hierarchy.rank_of("site") == 1
    assert hierarchy.dimensions == ("hardware", "function", "site", "region")


def test_rank_of_an_unknown_dimension_lists_the_fleets_dimensions() -> None:
    hierarchy = Hierarchy((("model",), ("site", "customer")))
    with pytest.raises(LayerError) as caught:
        hierarchy.rank_of("region")
    assert (
        str(caught.value)
        == "unknown dimension 'region'; this fleet has ['model', 'site', 'customer']"
    )


@pytest.mark.parametrize(
    ("ranks", "fragment"),
    [
        ((("global",),), "'global'"),
        ((("device",),), "'device'"),
        ((("defaults",),), "'defaults'"),
        ((("region",), ()), "at least one dimension"),
        (((),), "at least one dimension"),
        ((("region",), ("region",)), "'region' appears twice"),
        ((("region", "region"),), "'region' appears twice"),
        ((("Region",),), "'Region' must be 1-32"),
        ((("1site",),), "'1site' must be"),
        ((("",),), "'' must be"),
        ((("a" * 33,),), "must be 1-32"),
        ((("re gion",),), "must be"),
        ((("site/x",),), "must be"),
    ],
)
def test_hierarchy_rejects_bad_ranks(ranks: tuple[tuple[str, ...], ...], fragment: str) -> None:
    with pytest.raises(LayerError) as caught:
        Hierarchy(ranks)
    assert fragment in str(caught.value)


def test_hierarchy_accepts_names_at_the_limits() -> None:
    hierarchy = Hierarchy((("a" * 32,), ("x1_-",)))
    assert hierarchy.dimensions == ("a" * 32, "x1_-")


def test_tiers_for_default_ranks_go_global_hardware_function_region_device() -> None:
    tiers = Hierarchy().tiers(
        {"region": "eu/eu-west/site-17", "hardware": "nrf", "function": "meter/water"},
        DeviceId("dev-1"),
    )
    assert tiers == (
        ("global",),
        ("hardware/nrf",),
        ("function/meter",),
        ("function/meter/water",),
        ("region/eu",),
        ("region/eu/eu-west",),
        ("region/eu/eu-west/site-17",),
        ("device/dev-1",),
    )


def test_tiers_without_a_device_or_groups_hold_only_global() -> None:
    assert Hierarchy().tiers({}) == (("global",),)
    assert Hierarchy().tiers({}, "d") == (("global",), ("device/d",))


def test_tiers_of_tied_ranks_share_a_tier_per_depth() -> None:
    hierarchy = Hierarchy((("hardware",), ("function", "site"), ("region",)))
    tiers = hierarchy.tiers(
        {"site": "s1/s2/s3", "function": "f1", "region": "eu", "hardware": "h"}, "d"
    )
    assert tiers == (
        ("global",),
        ("hardware/h",),
        ("function/f1", "site/s1"),
        ("site/s1/s2",),
        ("site/s1/s2/s3",),
        ("region/eu",),
        ("device/d",),
    )


def test_tiers_of_tied_ranks_order_tied_layers_by_declaration_not_by_groups() -> None:
    hierarchy = Hierarchy((("site", "function"),))
    tiers = hierarchy.tiers({"function": "f1/f2", "site": "s1"})
    assert tiers == (("global",), ("site/s1", "function/f1"), ("function/f1/f2",))


def test_tiers_reject_unknown_dimensions_and_bad_groups() -> None:
    with pytest.raises(LayerError, match=r"unknown dimensions \['site'\]; this fleet has"):
        Hierarchy().tiers({"site": "x"})
    with pytest.raises(LayerError, match="segment"):
        Hierarchy().tiers({"region": "eu//x"})


@given(
    st.sampled_from(
        [
            DEFAULT_RANKS,
            (("hardware",), ("function", "site"), ("region",)),
            (("region", "site", "function"),),
        ]
    ),
    st.data(),
)
def test_tiers_list_every_group_node_once_with_ancestors_first(
    ranks: tuple[tuple[str, ...], ...], data: st.DataObject
) -> None:
    hierarchy = Hierarchy(ranks)
    groups = data.draw(st.dictionaries(st.sampled_from(hierarchy.dimensions), group_paths))
    tiers = hierarchy.tiers(groups, "d")
    flat = [layer for tier in tiers for layer in tier]
    expected = {GLOBAL, LayerId("device/d")} | {
        group_layer(dim, "/".join(path.split("/")[:depth]))
        for dim, path in groups.items()
        for depth in range(1, len(path.split("/")) + 1)
    }
    assert sorted(flat) == sorted(expected)
    assert flat[0] == GLOBAL
    assert flat[-1] == "device/d"
    position = {layer: index for index, tier in enumerate(tiers) for layer in tier}
    for layer in flat:
        name = hierarchy.parse(layer)
        if name.kind != "group":
            continue
        if name.depth > 1:  # an ancestor group node comes in an earlier tier
            parent = group_layer(name.dimension, "/".join(name.group[:-1]))
            assert position[parent] < position[layer]
        for other in flat:  # a higher rank never comes before a lower one
            other_name = hierarchy.parse(other)
            if other_name.kind == "group" and hierarchy.rank_of(
                other_name.dimension
            ) < hierarchy.rank_of(name.dimension):
                assert position[other] < position[layer]
        tier = tiers[position[layer]]  # a tier holds one depth of one rank
        assert {hierarchy.parse(t).depth for t in tier} == {name.depth}
        assert {hierarchy.rank_of(hierarchy.parse(t).dimension) for t in tier} == {
            hierarchy.rank_of(name.dimension)
        }


def test_hierarchy_from_text_ties_comma_separated_dimensions() -> None:
    hierarchy = hierarchy_from_text(["hardware", "function,site", "region"])
    assert hierarchy.ranks == (("hardware",), ("function", "site"), ("region",))
    assert hierarchy_from_text([" a , b ", "c,"]).ranks == (("a", "b"), ("c",))


def test_hierarchy_from_text_refuses_nothing_and_bad_words() -> None:
    with pytest.raises(LayerError, match="name at least one dimension"):
        hierarchy_from_text([])
    with pytest.raises(LayerError, match="at least one dimension"):
        hierarchy_from_text(["region", ","])
    with pytest.raises(LayerError, match="appears twice"):
        hierarchy_from_text(["region", "site,region"])
