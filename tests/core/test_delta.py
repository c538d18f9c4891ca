"""The structural delta core: diff/apply laws and refusals of misfit operations."""

from __future__ import annotations

from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.core import delta as structural
from edgecfg.core.delta import (
    Add,
    Copy,
    Delete,
    ListEdit,
    Rename,
    Set,
    Splice,
    TextEdit,
    apply,
    apply_traced,
    counts_changed,
    diff,
    diff_traced,
    key_count_change,
    key_counts,
    key_counts_after,
    key_table,
    keys_by_count,
    keys_by_count_after,
    node_count,
    restrict,
    size_table,
)
from edgecfg.core.tree import Tree, Value, values_equal
from edgecfg.errors import DeltaError
from tests.strategies import tree_pairs, value_pairs


@given(tree_pairs())
@settings(max_examples=300, deadline=None)
def test_apply_of_diff_returns_target(pair: tuple[Tree, Tree]) -> None:
    old, new = pair
    assert values_equal(apply(old, diff(old, new)), new)


@given(tree_pairs())
@settings(max_examples=150, deadline=None)
def test_apply_of_diff_with_copies_returns_target(pair: tuple[Tree, Tree]) -> None:
    old, new = pair
    ops = diff(old, new, weigh=lambda op: len(repr(op)))
    assert values_equal(apply(old, ops), new)


@given(tree_pairs())
@settings(max_examples=100, deadline=None)
def test_diff_and_apply_never_mutate_inputs(pair: tuple[Tree, Tree]) -> None:
    old, new = pair
    before_old, before_new = repr(old), repr(new)
    apply(old, diff(old, new))
    assert (repr(old), repr(new)) == (before_old, before_new)


def test_diff_of_equal_trees_is_empty() -> None:
    tree: Tree = {"a": {"b": [1, 2.5, float("nan")]}, "c": b"x"}
    assert diff(tree, {"a": {"b": [1, 2.5, float("nan")]}, "c": b"x"}) == []


def test_diff_distinguishes_int_float_and_signed_zero() -> None:
    assert diff({"a": 1}, {"a": 1.0}) == [Set(1, 1.0)]
    assert diff({"a": 0.0}, {"a": -0.0}) == [Set(1, -0.0)]
    assert diff({"a": True}, {"a": 1}) == [Set(1, 1)]


def test_nodes_are_numbered_in_canonical_preorder() -> None:
    # canonical order: "b" (len 1) before "aa" (len 2); root is node 0
    old: Tree = {"aa": {"x": 1}, "b": 2}
    assert diff(old, {"aa": {"x": 5}, "b": 2}) == [Set(3, 5)]
    assert diff(old, {"aa": {"x": 1}, "b": 3}) == [Set(1, 3)]
    assert node_count(old) == 4


def test_renamed_section_is_a_rename_not_a_resend() -> None:
    section: dict[str, Value] = {f"k{i}": i for i in range(10)}
    old: Tree = {"stepper_z": section}
    new: Tree = {"stepper_z0": {**section, "k3": 33}}
    ops = diff(old, new)
    assert Rename(1, "stepper_z0") in ops
    assert not any(isinstance(op, Add) for op in ops)
    assert values_equal(apply(old, ops), new)


def test_list_insert_does_not_resend_shifted_elements() -> None:
    old: Tree = {"l": list(range(20))}
    new: Tree = {"l": [0, 1, 99, *range(2, 20)]}
    ops = diff(old, new)
    assert ops == [ListEdit(1, ((2, 0, (99,)),))]
    assert apply(old, ops) == new


def test_long_text_edit_is_a_splice() -> None:
    text = "G28\n" + "G1 X10 Y10\n" * 20
    ops = diff({"m": text}, {"m": text.replace("G28", "G29", 1)})
    assert len(ops) == 1
    assert isinstance(ops[0], Splice)
    assert len(ops[0].middle) <= 3


def test_far_apart_text_edits_are_a_multi_hunk_text_edit() -> None:
    lines = [f"line {i} of the macro\n" for i in range(40)]
    old = "".join(lines)
    new = "".join([lines[0].replace("0", "A"), *lines[1:39], lines[39].replace("39", "ZZ")])
    ops = diff({"m": old}, {"m": new})
    assert len(ops) == 1
    assert isinstance(ops[0], TextEdit)
    assert apply({"m": old}, ops) == {"m": new}


def test_far_apart_word_edits_in_one_long_line_are_a_text_edit() -> None:
    # pin aliases: one line, a word changed near each end
    old = ", ".join(f"EXP1_{i}=P1.{i + 10}" for i in range(20))
    new = old.replace("EXP1_0=P1.10", "EXP1_0=PE8").replace("EXP1_19=P1.29", "EXP1_19=PB9")
    ops = diff({"aliases": old}, {"aliases": new})
    assert len(ops) == 1
    assert isinstance(ops[0], TextEdit)
    assert len(ops[0].runs) == 2
    assert sum(len(run[2]) for run in ops[0].runs) <= 6
    assert apply({"aliases": old}, ops) == {"aliases": new}


@given(
    st.lists(st.sampled_from(["a", "bc", " ", ",", "=", "\n", "é", "42"]), max_size=60),
    st.lists(st.sampled_from(["a", "bc", " ", ",", "=", "\n", "é", "42"]), max_size=60),
)
@settings(max_examples=200, deadline=None)
def test_text_edits_of_any_two_texts_apply(old_parts: list[str], new_parts: list[str]) -> None:
    old, new = "".join(old_parts) * 3, "".join(new_parts) * 3
    for before, after in ((old, new), (old.encode(), new.encode())):
        ops = diff({"t": before}, {"t": after})
        assert apply({"t": before}, ops) == {"t": after}


def test_new_section_like_a_sibling_is_a_copy_when_lighter() -> None:
    section: dict[str, Value] = {f"option_{i}": f"value {i}" for i in range(12)}
    old: Tree = {"stepper_z": section}
    new: Tree = {"stepper_z": section, "stepper_z1": {**section, "option_3": "changed"}}
    ops = diff(old, new, weigh=lambda op: len(repr(op)))
    assert len(ops) == 1
    assert isinstance(ops[0], Copy)
    assert ops[0].source == 1
    assert apply(old, ops) == new


def test_key_table_puts_frequent_keys_first() -> None:
    tree: Tree = {"s1": {"pin": 1, "zz": 2}, "s2": {"pin": 3}, "s3": {"pin": 4}}
    assert key_table(tree)[0] == "pin"
    assert sorted(key_table(tree)) == ["pin", "s1", "s2", "s3", "zz"]


@pytest.mark.parametrize(
    ("base", "ops", "message"),
    [
        ({"a": 1}, [Set(5, 1)], "base has only 2 nodes"),
        ({"a": 1}, [Splice(1, 0, 0, "x")], "expected str, found int"),
        ({"a": "abc"}, [Splice(1, 2, 2, "x")], r"keeps 2\+2 of 3"),
        ({"a": "abc"}, [TextEdit(1, ((2, 5, "x"),))], "runs past"),
        ({"a": "abc"}, [TextEdit(1, ((0, 1, b"x"),))], "one type"),
        ({"a": 1}, [Set(1, 2), Set(1, 3)], "two Set operations"),
        ({"a": 1}, [Add(0, "a", 2)], "already present"),
        ({"a": 1, "b": 2}, [Rename(1, "b")], "collides"),
        ({"a": 1}, [Delete(0)], "root cannot be deleted"),
        ({"a": [1, 2]}, [ListEdit(1, ((1, 5, ()),))], "runs past"),
        ({"a": {"b": 1}}, [ListEdit(1, ((0, 0, (1,)),))], "which is a map"),
        ({"a": [1]}, [Add(1, "k", 1)], "which is an array"),
        ({"a": [1]}, [Rename(2, "k")], "array element"),
        ({"a": 1}, [Add(1, "k", 1)], "int leaf"),
        ({"a": 1}, [Copy(0, "b", 1, ())], "which is no map"),
        ({"a": {"b": 1}}, [Set(1, 2), Splice(1, 0, 0, "x")], "replaced and edited"),
        ({"a": {"b": 1}}, [Delete(1), Set(2, 5)], "inside a node the delta replaces"),
        ({"a": {"b": 1}}, [Copy(0, "c", 9, ())], "copy from node 9, but the base has only 3"),
    ],
)
def test_apply_refuses_operations_that_do_not_fit(
    base: Tree, ops: list[structural.Op], message: str
) -> None:
    with pytest.raises(DeltaError, match=message):
        apply(base, ops)
    with pytest.raises(DeltaError, match=message):  # sizes read from a table instead
        apply_traced(base, ops, sizes=size_table(base))


def test_copies_cannot_multiply_the_base() -> None:
    base: Tree = {"s": {f"k{i}": i for i in range(50)}}
    ops: list[structural.Op] = [Copy(0, f"c{i}", 1, ()) for i in range(3)]
    assert len(apply(base, ops, max_nodes=200)) == 4  # type: ignore[arg-type]
    with pytest.raises(DeltaError, match="node budget"):
        apply(base, ops, max_nodes=150)
    many: list[structural.Op] = [Copy(0, f"c{i}", 1, ()) for i in range(30)]
    with pytest.raises(DeltaError, match="node budget"):
        apply(base, many)


def test_copies_nest_only_to_a_bounded_depth() -> None:
    base: Tree = {"s": {"t": 1}}
    op: structural.Op = Copy(0, "x", 1, ())
    for _ in range(structural.MAX_COPY_DEPTH + 1):
        op = Copy(0, "x", 0, (op,))
    with pytest.raises(DeltaError):
        apply({"s": base}, [op])


def _critical(path: tuple[str, ...]) -> bool:
    return path[:1] == ("crit",)


@given(tree_pairs(), tree_pairs())
@settings(max_examples=150, deadline=None)
def test_restricted_changes_then_the_rest_yield_the_target(
    a: tuple[Tree, Tree], b: tuple[Tree, Tree]
) -> None:
    old: Tree = {"crit": a[0], "rest": b[0]}
    new: Tree = {"crit": a[1], "rest": b[1]}
    middle = restrict(old, new, wanted=_critical)
    assert values_equal(middle.get("rest", {}), old["rest"]) or not old["rest"]
    assert values_equal(apply(middle, diff(middle, new)), new)


def test_restrict_takes_only_wanted_leaves() -> None:
    old: Tree = {"crit": {"x": 1}, "bulk": {"y": 1}}
    new: Tree = {"crit": {"x": 2}, "bulk": {"y": 2, "z": 3}}
    assert restrict(old, new, wanted=_critical) == {"crit": {"x": 2}, "bulk": {"y": 1}}


@given(st.lists(st.integers(0, 5), max_size=12), st.lists(st.integers(0, 5), max_size=12))
def test_list_diffs_round_trip(old: list[Value], new: list[Value]) -> None:
    assert apply({"l": old}, diff({"l": old}, {"l": new})) == {"l": new}


@given(value_pairs())
@settings(max_examples=300, deadline=None)
def test_apply_traced_shares_all_but_what_it_rebuilt(pair: tuple[Value, Value]) -> None:
    old, new = pair
    applied = apply_traced(old, diff(old, new))
    assert values_equal(applied.result, new)
    assert len(applied.rebuilt) == len(applied.built)
    rebuilt = {id(node) for node in applied.rebuilt}
    # every container of the result is either built by apply, taken whole from
    # the base (shared), or new content from an operation
    assert all(id(node) not in rebuilt for node in applied.built)


@given(value_pairs())
@settings(max_examples=300, deadline=None)
def test_apply_with_a_size_table_equals_apply_without(pair: tuple[Value, Value]) -> None:
    # With the table, untouched children are passed over without a visit:
    # the result, what was rebuilt and what was kept must not change.
    old, new = pair
    ops = diff(old, new, weigh=lambda op: len(repr(op)))
    plain = apply_traced(old, ops)
    tabled = apply_traced(old, ops, sizes=size_table(old))
    assert values_equal(tabled.result, new)
    assert values_equal(plain.result, tabled.result)
    assert [id(node) for node in plain.rebuilt] == [id(node) for node in tabled.rebuilt]
    containers = _container_indexes(old)
    for identity, index in tabled.kept.items():  # scalars may be one object at two places
        assert containers.get(identity, index) == index


def _container_indexes(base: Value) -> dict[int, int]:
    """The preorder index of every container of ``base``, by identity."""
    indexes: dict[int, int] = {}
    stack: list[Value] = [base]
    position = 0
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            indexes[id(node)] = position
            stack.extend(reversed([node[key] for key in structural.canonical_keys(tuple(node))]))
        elif isinstance(node, list):
            indexes[id(node)] = position
            stack.extend(reversed(cast(list[Value], node)))
        position += 1
    return indexes


@given(value_pairs())
@settings(max_examples=300, deadline=None)
def test_diff_traced_visits_only_containers_that_differ(pair: tuple[Value, Value]) -> None:
    old, new = pair
    diffed = diff_traced(old, new)
    assert diffed.ops == diff(old, new)
    for base, target in zip(diffed.base_visited, diffed.target_visited, strict=True):
        assert base is not target
        assert type(base) is type(target)


def test_shared_subtrees_after_the_last_change_are_not_sized() -> None:
    # copy-on-write: the new tree shares every section but one with the old
    sections: dict[str, Value] = {f"s{n:03}": {"k": n, "l": [n, {"x": n}]} for n in range(300)}
    old: Tree = dict(sections)
    edited = dict(cast(dict[str, Value], sections["s000"]), k=-1)
    new: Tree = {**sections, "s000": edited}
    diffed = diff_traced(old, new)
    assert diffed.ops == [Set(2, -1)]
    assert diffed.base_visited == (old, sections["s000"])
    applied = apply_traced(old, diffed.ops)
    assert applied.result == new
    assert applied.rebuilt == (sections["s000"], old)


@given(value_pairs())
@settings(max_examples=200, deadline=None)
def test_key_table_orders_by_count_then_canonical_key_order(pair: tuple[Value, Value]) -> None:
    from collections import Counter

    from edgecfg.core.tree import canonical_key_order

    counts: Counter[str] = Counter()
    stack: list[Value] = [pair[0]]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            counts.update(list(node))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    expected = sorted(counts, key=lambda key: (-counts[key], *canonical_key_order(key)))
    assert key_table(pair[0]) == expected


def _preorder(value: Value) -> list[Value]:
    """Every node of ``value`` in the numbering of the delta core (canonical preorder)."""
    nodes = [value]
    if isinstance(value, dict):
        for key in structural.canonical_keys(tuple(value)):
            nodes += _preorder(value[key])
    elif isinstance(value, list):
        for item in value:
            nodes += _preorder(item)
    return nodes


@given(value_pairs())
@settings(max_examples=200, deadline=None)
def test_size_table_holds_every_nodes_subtree_size(pair: tuple[Value, Value]) -> None:
    for value in pair:
        assert size_table(value) == [node_count(node) for node in _preorder(value)]


@given(value_pairs())
@settings(max_examples=300, deadline=None)
def test_diff_and_apply_with_a_size_table_equal_them_without(pair: tuple[Value, Value]) -> None:
    old, new = pair
    weigh = lambda op: len(repr(op))  # noqa: E731 - any weight lets copies compete
    table = size_table(old)
    plain = diff_traced(old, new, weigh=weigh)
    tabled = diff_traced(old, new, weigh=weigh, sizes=table)
    assert tabled.ops == plain.ops
    assert values_equal(apply_traced(old, tabled.ops, sizes=table).result, new)


def test_canonical_keys_sort_by_encoded_length_then_bytes() -> None:
    assert structural.canonical_keys(("bb", "a", "ab", "é", "z")) == ("a", "z", "ab", "bb", "é")


@given(value_pairs())
@settings(max_examples=300, deadline=None)
def test_key_counts_after_an_apply_equal_a_count_of_the_result(pair: tuple[Value, Value]) -> None:
    old, new = pair
    for sizes in (None, size_table(old)):
        applied = apply_traced(old, diff(old, new), sizes=sizes)
        after = key_counts_after(key_counts(old), applied)
        assert {key: n for key, n in after.items() if n} == key_counts(applied.result)
        assert keys_by_count(after) == key_table(applied.result)
        before = key_counts(old)
        assert keys_by_count_after(keys_by_count(before), before, after) == key_table(
            applied.result
        )
        # Placed again from the change alone (what the wire layer does), the same table.
        change = key_count_change(applied)
        if change is not None:
            assert counts_changed(before, change) == after
            moved = [key for key, step in change.items() if step]
            assert keys_by_count_after(keys_by_count(before), before, after, moved) == key_table(
                applied.result
            )


@given(
    st.dictionaries(st.text(max_size=4), st.integers(0, 5), max_size=40),
    st.dictionaries(st.text(max_size=4), st.integers(-1, 3), max_size=6),
)
def test_a_key_table_placed_again_after_a_few_changes_is_the_sorted_one(
    before: dict[str, int], change: dict[str, int]
) -> None:
    after = dict(before)
    for key, step in change.items():
        after[key] = max(0, after.get(key, 0) + step)
    assert keys_by_count_after(keys_by_count(before), before, after) == keys_by_count(after)
    moved = [key for key, step in change.items() if step]
    assert keys_by_count_after(keys_by_count(before), before, after, moved) == keys_by_count(after)


def test_key_counts_after_count_a_shared_subtree_at_each_place() -> None:
    shared: Tree = {"x": 1, "y": {"z": 2}}
    old: Tree = {"a": [shared, shared, {"k": 0}], "b": shared}
    new: Tree = {"a": [shared, {"k": 0}], "b": {"x": 1}}
    applied = apply_traced(old, diff(old, new), sizes=size_table(old))
    after = key_counts_after(key_counts(old), applied)
    assert {key: n for key, n in after.items() if n} == key_counts(new)


def test_key_counts_after_count_a_base_subtree_both_edited_and_inserted() -> None:
    # In process, an operation's value may be a base object: here the list edit
    # inserts the base's first element again, while the diff edits it in place.
    first: Tree = {"a": 1, "k": 2}
    old: list[Value] = [first, {"z": 0}, {"q": 0}]
    new: list[Value] = [{"a": 1, "k": 3, "n": 4}, old[1], old[2], first]
    applied = apply_traced(old, diff(old, new), sizes=size_table(old))
    after = key_counts_after(key_counts(old), applied)
    assert {key: n for key, n in after.items() if n} == key_counts(new)
