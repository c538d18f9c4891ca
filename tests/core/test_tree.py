"""The configuration tree and its pure operations (edgecfg.core.tree)."""

from __future__ import annotations

import copy
import math
import pickle
from typing import Any, cast

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from edgecfg import encode
from edgecfg.core.path import Path
from edgecfg.core.tree import (
    INT_MAX,
    INT_MIN,
    UNSET,
    Tree,
    UnsetType,
    Value,
    canonical_key_order,
    check_model,
    delete,
    flatten,
    get,
    is_map,
    set_value,
    unflatten,
    values_equal,
    walk_leaves,
)
from edgecfg.errors import ModelError, PathError, UsageError
from tests.strategies import (
    NAN_WITH_PAYLOAD,
    NEGATIVE_NAN,
    confusable_values,
    model_keys,
    model_trees,
    model_values,
)


def sample_tree() -> Tree:
    return {
        "net": {"uplink": {"interval_s": 300, "host": "gw"}, "apn": None},
        "log": {"level": "info"},
        "empty": {},
        "list": [1, {"x": 2}],
    }


# ---------------------------------------------------------------- UNSET


def test_unset_is_falsy_and_distinct_from_none() -> None:
    assert not UNSET
    assert bool(UNSET) is False
    assert UNSET is not None
    assert not values_equal(UNSET, None)
    assert values_equal(UNSET, UNSET)


def test_unset_is_a_singleton() -> None:
    assert UnsetType() is UNSET
    assert type(UNSET)() is UNSET
    assert repr(UNSET) == "UNSET"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_unset_pickles_to_itself(protocol: int) -> None:
    assert pickle.loads(pickle.dumps(UNSET, protocol=protocol)) is UNSET


def test_unset_survives_copy_and_deepcopy_as_itself() -> None:
    assert copy.copy(UNSET) is UNSET
    assert copy.deepcopy(UNSET) is UNSET
    assert copy.deepcopy({"a": UNSET})["a"] is UNSET


# ---------------------------------------------------------------- get


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("net", "uplink", "interval_s"), 300),
        (("net", "uplink"), {"interval_s": 300, "host": "gw"}),
        (("empty",), {}),
        (("list",), [1, {"x": 2}]),
    ],
)
def test_get_returns_the_node_at_the_path(path: Path, expected: Value) -> None:
    assert values_equal(get(sample_tree(), path), expected)


def test_get_of_the_root_returns_the_tree_itself() -> None:
    tree = sample_tree()
    assert get(tree, ()) is tree


def test_get_of_a_key_holding_null_returns_none_not_unset() -> None:
    assert get(sample_tree(), ("net", "apn")) is None


@pytest.mark.parametrize(
    "path",
    [
        ("missing",),
        ("net", "missing"),
        ("net", "uplink", "interval_s", "deeper"),  # through a leaf
        ("list", "0"),  # paths do not descend into arrays
        ("empty", "x"),
    ],
)
def test_get_returns_unset_when_nothing_is_there(path: Path) -> None:
    assert get(sample_tree(), path) is UNSET


# ---------------------------------------------------------------- set_value


def test_set_value_replaces_a_leaf_and_keeps_siblings() -> None:
    tree = sample_tree()
    new = set_value(tree, ("net", "uplink", "interval_s"), 60)
    assert new["net"]["uplink"] == {"interval_s": 60, "host": "gw"}  # type: ignore[index]
    assert values_equal(new["log"], tree["log"])


def test_set_value_creates_missing_maps_on_the_way() -> None:
    assert set_value({}, ("a", "b", "c"), 1) == {"a": {"b": {"c": 1}}}


def test_set_value_can_store_null_and_it_is_present() -> None:
    new = set_value({}, ("a",), None)
    assert new == {"a": None}
    assert get(new, ("a",)) is None


def test_set_value_shares_unchanged_subtrees() -> None:
    tree = sample_tree()
    new = set_value(tree, ("net", "uplink", "interval_s"), 60)
    assert new is not tree
    assert new["log"] is tree["log"]
    assert new["net"]["apn"] is tree["net"]["apn"]  # type: ignore[index]


def test_set_value_refuses_the_root() -> None:
    with pytest.raises(PathError, match="cannot set the root"):
        set_value(sample_tree(), (), {})


def test_set_value_refuses_to_pass_through_a_leaf_naming_both_paths() -> None:
    with pytest.raises(PathError) as caught:
        set_value(sample_tree(), ("net", "uplink", "interval_s", "x"), 1)
    assert caught.value.path == "net.uplink.interval_s.x"
    assert "net.uplink.interval_s holds a leaf" in str(caught.value)


def test_set_value_refuses_to_pass_through_an_array() -> None:
    with pytest.raises(PathError, match="list holds a leaf"):
        set_value(sample_tree(), ("list", "x"), 1)


def test_set_value_rejects_a_value_outside_the_model_naming_the_path() -> None:
    with pytest.raises(ModelError) as caught:
        set_value({}, ("a", "b"), cast(Any, (1, 2)))
    assert caught.value.path == "a.b"


def test_set_value_names_a_path_with_an_empty_key_by_its_tuple() -> None:
    with pytest.raises(PathError) as caught:
        set_value({"": 1}, ("", "x"), 1)
    assert caught.value.path == repr(("", "x"))


# ---------------------------------------------------------------- delete


def test_delete_removes_the_node_and_keeps_the_emptied_map() -> None:
    tree = {"a": {"b": 1}, "c": 2}
    assert delete(tree, ("a", "b")) == {"a": {}, "c": 2}
    assert delete(tree, ("a",)) == {"c": 2}


def test_delete_of_a_key_holding_null_removes_it() -> None:
    assert delete({"a": None}, ("a",)) == {}


@pytest.mark.parametrize("path", [("missing",), ("a", "x"), ("a", "b", "deeper")])
def test_delete_of_nothing_raises_path_error_naming_the_path(path: Path) -> None:
    with pytest.raises(PathError, match="nothing to delete") as caught:
        delete({"a": {"b": 1}}, path)
    assert caught.value.path == ".".join(path)


def test_delete_of_nothing_with_missing_ok_returns_the_same_tree() -> None:
    tree: Tree = {"a": {"b": 1}}
    assert delete(tree, ("a", "x"), missing_ok=True) is tree


def test_delete_refuses_the_root() -> None:
    with pytest.raises(PathError, match="cannot delete the root"):
        delete({"a": 1}, ())
    with pytest.raises(PathError, match="cannot delete the root"):
        delete({"a": 1}, (), missing_ok=True)


def test_delete_shares_unchanged_subtrees() -> None:
    tree = sample_tree()
    new = delete(tree, ("net", "apn"))
    assert new["log"] is tree["log"]
    assert new["net"]["uplink"] is tree["net"]["uplink"]  # type: ignore[index]


# ---------------------------------------------------------------- no mutation (laws)

tree_paths = st.lists(st.sampled_from(["a", "b", "", "c.d"]), min_size=1, max_size=4).map(tuple)


@given(model_trees, tree_paths)
def test_get_never_mutates_its_input(tree: Tree, path: Path) -> None:
    before = copy.deepcopy(tree)
    get(tree, path)
    assert values_equal(tree, before)


@given(model_trees, tree_paths, model_values)
def test_set_value_never_mutates_its_input_and_get_reads_the_value_back(
    tree: Tree, path: Path, value: Value
) -> None:
    before = copy.deepcopy(tree)
    value_before = copy.deepcopy(value)
    try:
        new = set_value(tree, path, value)
    except PathError:
        pass  # the way is blocked by a leaf
    else:
        assert values_equal(get(new, path), value)
    assert values_equal(tree, before)
    assert values_equal(value, value_before)


@given(model_trees, tree_paths, st.booleans())
def test_delete_never_mutates_its_input_and_leaves_nothing_at_the_path(
    tree: Tree, path: Path, missing_ok: bool
) -> None:
    before = copy.deepcopy(tree)
    try:
        new = delete(tree, path, missing_ok=missing_ok)
    except PathError:
        assert get(tree, path) is UNSET
        assert not missing_ok
    else:
        assert get(new, path) is UNSET
    assert values_equal(tree, before)


@given(model_trees, tree_paths, model_values)
def test_delete_after_set_value_of_a_new_key_restores_the_tree(
    tree: Tree, path: Path, value: Value
) -> None:
    assume(get(tree, path[:1]) is UNSET)
    new = set_value(tree, path, value)
    assert values_equal(delete(new, path[:1]), tree)


# ---------------------------------------------------------------- walk / flatten


def test_walk_leaves_yields_in_canonical_key_order() -> None:
    tree: Tree = {"bb": 1, "é": 2, "a": 3, "z": {"y": 4, "x": 5}, "aa": {}}
    assert [path for path, _ in walk_leaves(tree)] == [
        ("a",),
        ("z", "x"),
        ("z", "y"),
        ("aa",),
        ("bb",),
        ("é",),  # two UTF-8 bytes: sorts with the two-byte keys, after "bb"
    ]


def test_walk_leaves_yields_empty_maps_and_arrays_as_leaves() -> None:
    leaves = dict(walk_leaves({"m": {}, "l": [{"x": 1}]}))
    assert leaves == {("m",): {}, ("l",): [{"x": 1}]}


def test_walk_leaves_prefixes_paths() -> None:
    assert list(walk_leaves({"x": 1}, ("p", "q"))) == [(("p", "q", "x"), 1)]


def test_flatten_of_an_empty_tree_is_empty_and_unflatten_restores_it() -> None:
    assert flatten({}) == {}
    assert unflatten({}) == {}


def test_flatten_maps_every_leaf_path() -> None:
    assert flatten(sample_tree()) == {
        ("log", "level"): "info",
        ("list",): [1, {"x": 2}],
        ("empty",): {},
        ("net", "apn"): None,
        ("net", "uplink", "host"): "gw",
        ("net", "uplink", "interval_s"): 300,
    }


@given(model_trees)
def test_unflatten_inverts_flatten(tree: Tree) -> None:
    assert values_equal(unflatten(flatten(tree)), tree)


@given(model_trees)
def test_flatten_never_mutates_and_unflatten_never_mutates(tree: Tree) -> None:
    before = copy.deepcopy(tree)
    flat = flatten(tree)
    flat_before = copy.deepcopy(flat)
    unflatten(flat)
    assert values_equal(tree, before)
    assert flat.keys() == flat_before.keys()
    assert all(values_equal(flat[p], flat_before[p]) for p in flat)


@pytest.mark.parametrize(
    "flat",
    [
        {("a",): 1, ("a", "b"): 2},
        {("a", "b"): 2, ("a",): 1},
        {("a",): {}, ("a", "b"): 2},
        {("a",): {"x": 1}, ("a", "b"): 2},
        {("a", "b"): 1, ("a", "b", "c", "d"): 2},
    ],
)
def test_unflatten_rejects_a_path_that_is_both_a_leaf_and_a_map(flat: dict[Path, Value]) -> None:
    with pytest.raises(PathError, match="is both a leaf and a map"):
        unflatten(flat)


def test_unflatten_rejects_the_root_as_a_leaf() -> None:
    with pytest.raises(PathError, match="root cannot be a leaf"):
        unflatten({(): 1})


def test_canonical_key_order_sorts_by_utf8_length_then_bytes() -> None:
    keys = ["b", "aa", "a", "é", "z", "", "水"]
    assert sorted(keys, key=canonical_key_order) == ["", "a", "b", "z", "aa", "é", "水"]
    assert canonical_key_order("é") == (2, b"\xc3\xa9")


def test_is_map_is_true_for_dicts_only() -> None:
    assert is_map({})
    assert not is_map([])
    assert not is_map(None)


# ---------------------------------------------------------------- values_equal


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1, True),
        (1, 1.0, False),
        (True, 1, False),
        (False, 0, False),
        (True, True, True),
        (0.0, 0.0, True),
        (-0.0, 0.0, False),
        (-0.0, -0.0, True),
        (math.nan, math.nan, True),
        (math.nan, NAN_WITH_PAYLOAD, True),
        (math.nan, NEGATIVE_NAN, True),
        (math.nan, 0.0, False),
        (0.0, math.nan, False),
        (math.inf, math.inf, True),
        (math.inf, -math.inf, False),
        (None, None, True),
        (None, 0, False),
        ("a", "a", True),
        ("a", b"a", False),
        (b"", b"", True),
        ([], [], True),
        ([], {}, False),
        ([1, 2], [1, 2], True),
        ([1, 2], [2, 1], False),
        ([1], [1, 1], False),
        ([1], [1.0], False),
        ([math.nan], [math.nan], True),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"a": 1}, {"b": 1}, False),
        ({"a": {"b": [0.0]}}, {"a": {"b": [-0.0]}}, False),
        ({"a": {"b": [True]}}, {"a": {"b": [1]}}, False),
        ({"a": {"b": [math.nan]}}, {"a": {"b": [math.nan]}}, True),
    ],
)
def test_values_equal_is_encoding_equality(a: Value, b: Value, equal: bool) -> None:
    assert values_equal(a, b) is equal
    assert values_equal(b, a) is equal
    assert (encode(a) == encode(b)) is equal


@given(model_values)
def test_values_equal_is_reflexive_and_holds_for_a_deep_copy(value: Value) -> None:
    assert values_equal(value, value)
    assert values_equal(value, copy.deepcopy(value))


@given(confusable_values, confusable_values)
def test_values_equal_agrees_with_encoding_equality_on_confusable_values(
    a: Value, b: Value
) -> None:
    assert values_equal(a, b) == (encode(a) == encode(b))


@given(model_values, model_values)
def test_values_equal_agrees_with_encoding_equality(a: Value, b: Value) -> None:
    assert values_equal(a, b) == (encode(a) == encode(b))


# ---------------------------------------------------------------- check_model


class Text(str):
    pass


class Blob(bytes):
    pass


class Number(int):
    pass


class Real(float):
    pass


@pytest.mark.parametrize(
    ("value", "path", "fragment"),
    [
        ((1, 2), "", "tuple is not a configuration value"),
        ({1, 2}, "", "set is not a configuration value"),
        (frozenset(), "", "frozenset is not a configuration value"),
        (bytearray(b"x"), "", "bytearray is not a configuration value"),
        (2**64, "", "outside the CBOR range"),
        (-(2**64) - 1, "", "outside the CBOR range"),
        ({"a": {"b": 2**64}}, "a.b", "integer 18446744073709551616 outside"),
        ({"a": {1: "x"}}, "a", "map key 1 is not text"),
        ({"a": {b"k": "x"}}, "a", "map key b'k' is not text"),
        ({"a": {Text("k"): "x"}}, "a", "is not text"),
        ({"a": Text("v")}, "a", "Text is not a configuration value"),
        ({"a": Blob(b"v")}, "a", "Blob is not a configuration value"),
        ({"a": Number(1)}, "a", "Number is not a configuration value"),
        ({"a": Real(1.0)}, "a", "Real is not a configuration value"),
        ({"a": [1, [2, (3,)]]}, "a", "tuple is not a configuration value"),
        ({"a": {"b.c": object()}}, "a.b\\.c", "object is not a configuration value"),
        ({"": {"x": ()}}, repr(("", "x")), "tuple"),
    ],
)
def test_check_model_rejects_values_outside_the_model_naming_the_path(
    value: object, path: str, fragment: str
) -> None:
    with pytest.raises(ModelError) as caught:
        check_model(value)
    assert caught.value.path == path
    assert fragment in str(caught.value)
    assert str(caught.value).endswith(f" at {path}" if path else " at the root")
    assert isinstance(caught.value, UsageError)
    assert isinstance(caught.value, TypeError)


def test_check_model_starts_paths_at_the_given_prefix() -> None:
    with pytest.raises(ModelError) as caught:
        check_model({"x": ()}, ("p",))
    assert caught.value.path == "p.x"


@pytest.mark.parametrize(
    "value",
    [
        INT_MIN,
        INT_MAX,
        0,
        -0.0,
        math.nan,
        True,
        None,
        "",
        b"",
        [],
        {},
        {"a": [1, 2.5, "x", b"y", None, False, [], {"k": {}}]},
    ],
)
def test_check_model_returns_a_model_value_unchanged(value: Value) -> None:
    assert check_model(value) is value


def test_int_bounds_are_the_cbor_range() -> None:
    assert INT_MIN == -(2**64)
    assert INT_MAX == 2**64 - 1


@given(model_values)
def test_check_model_accepts_every_generated_model_value(value: Value) -> None:
    assert check_model(value) is value


@given(model_keys)
def test_check_model_accepts_any_text_key(key: str) -> None:
    assert check_model({key: 1}) == {key: 1}


@pytest.mark.parametrize("value", ["\ud800", {"k": "a\udfffb"}, {"\ud800": 1}, ["\udc00"]])
def test_check_model_rejects_text_with_lone_surrogates(value: object) -> None:
    with pytest.raises(ModelError):
        check_model(value)


def test_check_model_refuses_a_value_nested_too_deeply_for_the_codec() -> None:
    value: Value = []
    for _ in range(10_000):
        value = [value]
    with pytest.raises(ModelError, match="value nested too deeply at the root") as caught:
        check_model(value)
    assert caught.value.path == ""
