"""Synthetic configs: shaped like the corpus, deterministic, valid model trees, real edits."""

from __future__ import annotations

import copy
import itertools
import random
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgecfg
from edgecfg.core.schema_document import schema_from_document
from edgecfg.core.tree import Tree, Value, check_model, flatten, is_map, values_equal
from edgecfg.errors import UsageError
from edgecfg.sim.configs import (
    Shape,
    config_for_schema,
    generate_config,
    generate_history,
    leaf_count,
    mutate_config,
)

SHAPES: tuple[Shape, ...] = get_args(Shape)
seeds = st.integers(min_value=0, max_value=2**64)


def map_depth(value: Value) -> int:
    """Longest chain of maps (a leaf directly in the root has depth 1)."""
    if not is_map(value) or not value:
        return 0
    return 1 + max(map_depth(child) for child in value.values())


def strings(value: Value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for child in value.values() for s in strings(child)]
    if isinstance(value, list):
        return [s for child in value for s in strings(child)]
    return []


# ---------------------------------------------------------------- generate_config


@pytest.mark.parametrize("shape", SHAPES)
def test_same_seed_gives_the_same_tree(shape: Shape) -> None:
    a = generate_config(42, leaves=300, shape=shape)
    b = generate_config(42, leaves=300, shape=shape)
    assert values_equal(a, b)
    assert edgecfg.encode(a) == edgecfg.encode(b)


def test_different_seeds_give_different_trees() -> None:
    assert not values_equal(generate_config(1, leaves=200), generate_config(2, leaves=200))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("leaves", [20, 200, 1000, 2000])
def test_leaf_count_is_exact(shape: Shape, leaves: int) -> None:
    for seed in range(3):
        tree = generate_config(seed, leaves=leaves, shape=shape)
        assert leaf_count(tree) == leaves
        assert len(flatten(tree)) == leaves


@settings(max_examples=60, deadline=None)
@given(seed=seeds, leaves=st.integers(min_value=1, max_value=150), shape=st.sampled_from(SHAPES))
def test_generated_tree_is_a_model_value_that_round_trips(
    seed: int, leaves: int, shape: Shape
) -> None:
    tree = generate_config(seed, leaves=leaves, shape=shape)
    check_model(tree)
    assert leaf_count(tree) == leaves
    blob = edgecfg.encode(tree)
    assert values_equal(edgecfg.decode(blob), tree)
    assert edgecfg.encode(edgecfg.decode(blob)) == blob


@pytest.mark.parametrize("leaves", [20, 1000, 2000])
def test_large_trees_round_trip_through_the_codec(leaves: int) -> None:
    tree = generate_config(7, leaves=leaves)
    assert values_equal(edgecfg.decode(edgecfg.encode(tree)), tree)


def test_flat_shape_is_ini_like_sections_of_options() -> None:
    tree = generate_config(3, leaves=500, shape="flat")
    assert all(is_map(section) for section in tree.values())
    assert map_depth(tree) == 2
    assert any(".type" in section for section in tree.values() if is_map(section))  # UCI
    assert any(name.startswith("gcode_macro ") for name in tree)  # Klipper macros


def test_nested_shape_is_yaml_like_with_arrays_of_maps() -> None:
    depths = [map_depth(generate_config(seed, leaves=300, shape="nested")) for seed in range(10)]
    assert all(3 <= depth <= 6 for depth in depths), depths
    tree = generate_config(5, leaves=500, shape="nested")
    arrays = [v for v in flatten(tree).values() if isinstance(v, list) and v]
    assert any(all(is_map(item) for item in array) for array in arrays)


def test_leaves_look_like_the_corpus() -> None:
    tree = generate_config(11, leaves=2000)
    leaves = list(flatten(tree).values())
    kinds = {type(v) for v in leaves}
    assert {int, float, bool, str, list} <= kinds
    texts = strings(tree)
    long = [s for s in texts if 200 <= len(s) <= 2100 and "\n" in s]
    assert len(long) >= 5
    assert any(
        s.startswith(("!", "^")) and len(s) <= 12 for s in texts
    )  # inverted / pulled-up pins
    assert any(s.startswith("P") and s[1:2] in "ABCDE" and s[2:].isdigit() for s in texts)


def test_generate_config_leaves_the_global_random_alone() -> None:
    random.seed(99)
    state = random.getstate()
    generate_config(1, leaves=300)
    mutate_config(generate_config(2, leaves=50), 3, edits=5)
    generate_history(4, leaves=50, versions=5)
    assert random.getstate() == state


def test_bad_arguments_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        generate_config(1, leaves=0)
    with pytest.raises(UsageError):
        mutate_config({}, 1, edits=-1)
    with pytest.raises(UsageError):
        generate_history(1, leaves=10, versions=0)


# ---------------------------------------------------------------- mutate_config


@settings(max_examples=100, deadline=None)
@given(seed=seeds, edit_seed=seeds, edits=st.integers(min_value=1, max_value=8),
       shape=st.sampled_from(SHAPES))  # fmt: skip
def test_mutate_never_touches_its_input_and_always_changes_something(
    seed: int, edit_seed: int, edits: int, shape: Shape
) -> None:
    tree = generate_config(seed, leaves=60, shape=shape)
    before = copy.deepcopy(tree)
    out = mutate_config(tree, edit_seed, edits=edits)
    assert values_equal(tree, before)
    assert edgecfg.encode(tree) == edgecfg.encode(before)
    assert not values_equal(out, tree)
    check_model(out)
    assert values_equal(edgecfg.decode(edgecfg.encode(out)), out)


@given(seed=seeds)
@settings(max_examples=30, deadline=None)
def test_mutate_is_deterministic(seed: int) -> None:
    tree = generate_config(seed, leaves=80)
    assert values_equal(mutate_config(tree, seed, edits=3), mutate_config(tree, seed, edits=3))


def test_zero_edits_return_an_equal_tree() -> None:
    tree = generate_config(1, leaves=40)
    assert values_equal(mutate_config(tree, 5, edits=0), tree)


def test_mutate_works_on_an_empty_tree() -> None:
    out = mutate_config({}, 1)
    assert out != {}
    check_model(out)


def _edit_kinds(old: Tree, new: Tree) -> set[str]:
    a, b = flatten(old), flatten(new)
    kinds: set[str] = set()
    for path in a.keys() & b.keys():
        x, y = a[path], b[path]
        if values_equal(x, y):
            continue
        if isinstance(x, bool) and isinstance(y, bool):
            kinds.add("bool")
        elif isinstance(x, int | float) and isinstance(y, int | float):
            kinds.add("number")
        elif isinstance(x, str) and isinstance(y, str) and len(x) >= 40:
            kinds.add("long-string")
        elif isinstance(x, list) and isinstance(y, list):
            kinds.add(
                "list-insert" if len(y) > len(x) else "list-delete" if len(y) < len(x) else "list"
            )
    gone = {k: v for k, v in old.items() if k not in new}
    added = {k: v for k, v in new.items() if k not in old}
    if any(values_equal(v, w) for v in gone.values() for w in added.values()):
        kinds.add("rename-section")
    elif added:
        kinds.add("add-section")
    if b.keys() - a.keys() and not added:
        kinds.add("add-key")
    if a.keys() - b.keys() and not gone:
        kinds.add("remove-key")
    return kinds


def test_single_edits_cover_the_corpus_edit_kinds() -> None:
    seen: set[str] = set()
    for seed in range(400):
        tree = generate_config(seed % 20, leaves=120)
        seen |= _edit_kinds(tree, mutate_config(tree, seed, edits=1))
    assert seen >= {"bool", "number", "long-string", "list-insert", "list-delete",
                    "rename-section", "add-section", "add-key", "remove-key"}  # fmt: skip


def test_long_string_edits_change_few_characters() -> None:
    small = 0
    total = 0
    for seed in range(300):
        tree = generate_config(seed % 10, leaves=200)
        new = mutate_config(tree, seed)
        a, b = flatten(tree), flatten(new)
        for path in a.keys() & b.keys():
            x, y = a[path], b[path]
            if isinstance(x, str) and isinstance(y, str) and len(x) >= 200 and x != y:
                total += 1
                small += abs(len(x) - len(y)) <= 80
    assert total >= 10
    assert small == total


# ---------------------------------------------------------------- generate_history


def test_history_has_unchanged_and_changed_steps() -> None:
    history = generate_history(5, leaves=300, versions=40)
    assert len(history) == 40
    same = [values_equal(a, b) for a, b in itertools.pairwise(history)]
    assert 2 <= sum(same) <= 20
    for a, b, equal in zip(history, history[1:], same, strict=False):
        if equal:
            assert a is not b  # an equal re-parse, not an alias
    assert all(abs(leaf_count(tree) - 300) < 60 for tree in history)


def test_history_is_deterministic() -> None:
    a = generate_history(9, leaves=100, versions=10, shape="flat")
    b = generate_history(9, leaves=100, versions=10, shape="flat")
    assert all(values_equal(x, y) for x, y in zip(a, b, strict=True))


def test_history_of_one_version_is_just_the_config() -> None:
    assert len(generate_history(1, leaves=10, versions=1)) == 1


# ---------------------------------------------------------------- config_for_schema


SMALL_SCHEMA = schema_from_document(
    {
        "name": "tiny",
        "version": 1,
        "keys": {
            "a.n": {"id": 1, "type": "int", "min": 5, "max": 9},
            "a.f": {"id": 2, "type": "float", "min": -1.5, "max": 1.5},
            "a.s": {"id": 3, "type": "str", "min": 2, "max": 4},
            "a.b": {"id": 4, "type": "bytes", "min": 3, "max": 3},
            "a.l": {"id": 5, "type": "array", "items": "int", "min": 1, "max": 2},
            "a.e": {"id": 6, "type": "str", "enum": ["x", "y"]},
            "a.m": {"id": 7, "type": "map"},
            "a.any": {"id": 8, "type": "any"},
            "a.num": {"id": 9, "type": "number", "max": -3},
            "a.id": {"id": 10, "type": "str", "pattern": "^dev-[0-9a-f]{8}$", "required": True},
            "only.cam": {"id": 11, "type": "bool", "hardware": ["cam"]},
        },
    }
)


@settings(max_examples=60, deadline=None)
@given(seed=seeds)
def test_config_for_schema_is_valid_for_any_seed(seed: int) -> None:
    tree = config_for_schema(SMALL_SCHEMA, seed)
    assert SMALL_SCHEMA.validate(tree) == []
    check_model(tree)


def test_config_for_schema_skips_keys_for_other_hardware() -> None:
    assert "only" not in config_for_schema(SMALL_SCHEMA, 1, hardware="sensor")
    assert "only" in config_for_schema(SMALL_SCHEMA, 1, hardware="cam")


def test_config_for_schema_refuses_a_required_key_it_cannot_invent() -> None:
    schema = schema_from_document(
        {"name": "t", "version": 1,
         "keys": {"k": {"id": 1, "type": "str", "pattern": "^zz[0-9]{3}$", "required": True}}}
    )  # fmt: skip
    with pytest.raises(UsageError, match="k"):
        config_for_schema(schema, 1)
