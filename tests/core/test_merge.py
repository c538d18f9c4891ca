"""Three-way merge of local overrides on reconnect (edgecfg.core.merge)."""

from __future__ import annotations

import copy
import math
import random
import re
from collections.abc import Mapping
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edgecfg.core.hlc import Timestamp, tick
from edgecfg.core.journal import Journal, JournalEntry, LocalOverrideRefused, check_override
from edgecfg.core.merge import MergeResult, Resolution, ServerChangeTimes, merge
from edgecfg.core.path import Path
from edgecfg.core.schema import MergePolicy, Schema
from edgecfg.core.schema_document import schema_from_document
from edgecfg.core.tree import UNSET, Tree, UnsetType, Value, delete, get, set_value, values_equal
from edgecfg.errors import UsageError

DAY_MS = 24 * 3600 * 1000


def at(day: float, counter: int = 0, node: str = "dev-1") -> Timestamp:
    return Timestamp(int(day * DAY_MS), counter, node)


def entry(
    path: Path, value: Value | UnsetType, when: Timestamp | None = None, seq: int = 1
) -> JournalEntry:
    return JournalEntry(path, value, "test", when or at(5), seq)


def spec_doc(key_id: int, merge_policy: str, **local: Any) -> dict[str, Any]:
    return {
        "id": key_id,
        "type": "int",
        "min": 0,
        "max": 1000,
        "local": local or {"min": 0, "max": 100},
        "merge": merge_policy,
    }


POLICY_KEYS: dict[MergePolicy, Path] = {
    "server-wins": ("k", "server_wins"),
    "device-wins-within-bounds": ("k", "device_wins"),
    "max": ("k", "max"),
    "min": ("k", "min"),
    "last-writer-wins": ("k", "lww"),
}
POLICY_SCHEMA = schema_from_document(
    {
        "name": "edge",
        "version": 2,
        "keys": {
            ".".join(path): spec_doc(index + 1, policy)
            for index, (policy, path) in enumerate(POLICY_KEYS.items())
        }
        | {
            "k.locked": {"id": 10, "type": "int"},
            "k.any_max": {"id": 11, "type": "any", "local": True, "merge": "max"},
            "k.any_lww": {"id": 12, "type": "any", "local": True, "merge": "last-writer-wins"},
            "k.text": {"id": 13, "type": "str", "local": True, "merge": "min"},
        },
    }
)


def tree_with(values: Mapping[Path, Value]) -> Tree:
    tree: Tree = {}
    for path, value in values.items():
        tree = set_value(tree, path, value, replace_leaves=True)
    return tree


def merge_one(
    path: Path,
    *,
    base: Value | UnsetType,
    server: Value | UnsetType,
    local: Value,
    when: Timestamp | None = None,
    schema: Schema | None = POLICY_SCHEMA,
    server_changed_at: ServerChangeTimes = None,
) -> tuple[Resolution, MergeResult]:
    base_tree = tree_with({} if isinstance(base, UnsetType) else {path: base})
    theirs = tree_with({} if isinstance(server, UnsetType) else {path: server})
    result = merge(
        base_tree,
        theirs,
        {path: entry(path, local, when)},
        schema=schema,
        server_changed_at=server_changed_at,
    )
    resolution = result.resolution(path)
    assert resolution is not None
    assert values_equal(get(result.effective, path), resolution.effective)
    return resolution, result


# ---------------------------------------------------------------- the policy table

# (policy, server changed since base, local value within the local bounds)
#   -> (outcome, reason text, conflict)
# base = 50; the server keeps 50 or moves to 70; local is 60 (in) or 150 (out, local max 100).
OUT = "outside the key's current bounds: expected <= 100 (local-override policy)"
TABLE: dict[tuple[str, bool, bool], tuple[str, str, bool]] = {
    ("server-wins", False, True): (
        "accepted",
        "the server has not changed it since the last sync",
        False,
    ),
    ("server-wins", True, True): (
        "rejected",
        "the server changed it since the last sync (50 -> 70)",
        True,
    ),
    ("device-wins-within-bounds", False, True): (
        "accepted",
        "device wins within bounds (local changes allowed (min 0, max 100), "
        "merge device-wins-within-bounds)",
        False,
    ),
    ("device-wins-within-bounds", True, True): ("accepted", "device wins within bounds", True),
    ("max", False, True): ("accepted", "local 60 is larger than the server's 50 (max)", False),
    ("max", True, True): ("rejected", "the server's 70 is larger than local 60 (max)", True),
    ("min", False, True): ("rejected", "the server's 50 is smaller than local 60 (min)", False),
    ("min", True, True): ("accepted", "local 60 is smaller than the server's 70 (min)", True),
    ("last-writer-wins", False, True): (
        "accepted",
        f"the local write at {at(5)} is newer than the server's at {at(0, node='gw')}",
        False,
    ),
    ("last-writer-wins", True, True): (
        "rejected",
        f"the server's write at {at(10, node='gw')} is newer than the local one at {at(5)}",
        True,
    ),
} | {
    (policy, changed, False): ("rejected", OUT, changed)
    for policy in POLICY_KEYS
    for changed in (False, True)
}


@pytest.mark.parametrize(("policy", "changed", "in_bounds"), sorted(TABLE), ids=str)
def test_merge_policy_table(policy: MergePolicy, changed: bool, in_bounds: bool) -> None:
    path = POLICY_KEYS[policy]
    server = 70 if changed else 50
    local = 60 if in_bounds else 150
    # the server wrote the key at day 10 when it changed it, else last at day 0
    server_time = at(10 if changed else 0, node="gw")
    resolution, _ = merge_one(
        path, base=50, server=server, local=local, server_changed_at={path: server_time}
    )
    outcome, reason, conflict = TABLE[policy, changed, in_bounds]
    assert (resolution.outcome, resolution.conflict) == (outcome, conflict)
    assert reason in resolution.reason
    assert resolution.policy == policy
    assert (resolution.local, resolution.server, resolution.base) == (local, server, 50)
    assert resolution.effective == (local if outcome == "accepted" else server)


def test_every_policy_accepts_a_value_the_server_also_has() -> None:
    for policy, path in POLICY_KEYS.items():
        resolution, _ = merge_one(path, base=50, server=60, local=60)
        assert resolution.outcome == "accepted", policy
        assert resolution.reason == "the server has the same value"
        assert not resolution.conflict


def test_bounds_are_rechecked_against_the_current_schema() -> None:
    narrowed = schema_from_document(
        {
            "name": "edge",
            "version": 3,
            "keys": {"k.device_wins": spec_doc(2, "device-wins-within-bounds", min=0, max=40)},
        }
    )
    path = POLICY_KEYS["device-wins-within-bounds"]
    resolution, result = merge_one(path, base=50, server=50, local=60, schema=narrowed)
    assert resolution.outcome == "rejected"
    assert "expected <= 40 (local-override policy)" in resolution.reason
    assert "policy: local changes allowed (min 0, max 40)" in resolution.reason
    assert get(result.effective, path) == 50


def test_keys_the_schema_no_longer_allows_locally_are_rejected_with_the_policy() -> None:
    resolution, _ = merge_one(("k", "locked"), base=1, server=1, local=2)
    assert resolution.outcome == "rejected"
    assert resolution.reason == (
        "the schema does not allow local changes to this key "
        "(policy: local changes not allowed, merge server-wins)"
    )
    undeclared, _ = merge_one(("k", "gone"), base=1, server=1, local=2)
    assert undeclared.outcome == "rejected"
    assert "schema edge v2 does not declare this key" in undeclared.reason
    assert undeclared.policy == "server-wins"


def test_without_a_schema_every_key_is_server_wins() -> None:
    kept, _ = merge_one(("any", "key"), base=1, server=1, local="x", schema=None)
    assert (kept.outcome, kept.policy) == ("accepted", "server-wins")
    lost, _ = merge_one(("any", "key"), base=1, server=2, local="x", schema=None)
    assert (lost.outcome, lost.conflict) == ("rejected", True)
    assert lost.reason == "the server changed it since the last sync (1 -> 2)"
    removed, result = merge_one(("any", "key"), base=1, server=UNSET, local="x", schema=None)
    assert removed.outcome == "rejected"
    assert removed.reason == "the server removed it since the last sync (was 1)"
    assert get(result.effective, ("any", "key")) is UNSET
    added, _ = merge_one(("new",), base=UNSET, server=UNSET, local=[1], schema=None)
    assert added.outcome == "accepted"


FALLBACK = "max compares numbers, but the server value"


@pytest.mark.parametrize(
    ("path", "values", "outcome", "reason"),
    [
        (("k", "max"), (50, 60.0, 60), "rejected", "local 60 ties with the server's 60.0; ties go"),
        (("k", "any_max"), (50, 60, 60.0), "rejected", "ties go to the server"),
        (("k", "max"), (50, 59.5, 60), "accepted", "local 60 is larger than the server's 59.5"),
        (
            ("k", "any_max"),
            (1, "text", 5),
            "rejected",
            f'{FALLBACK} "text" is not one; server-wins: the server changed it since the last '
            'sync (1 -> "text")',
        ),
        (
            ("k", "any_max"),
            ("t", "t", 5),
            "accepted",
            f'{FALLBACK} "t" is not one; server-wins: the server has not changed it',
        ),
        (("k", "any_max"), (1, 1, "big"), "accepted", 'the local value "big" is not one'),
        (("k", "any_max"), (1, 2, math.nan), "rejected", "the local value NaN is not one"),
        (("k", "any_max"), (1, 2, True), "rejected", "the local value true is not one"),
        (
            ("k", "any_max"),
            (1, UNSET, 3),
            "rejected",
            f"{FALLBACK} absent is not one; server-wins: the server removed it",
        ),
        (("k", "text"), ("b", "b", "a"), "accepted", "min compares numbers"),
        (("k", "text"), ("b", "c", "a"), "rejected", 'the local value "a" is not one'),
    ],
)
def test_max_and_min_compare_numbers_and_fall_back_to_server_wins(
    path: Path, values: tuple[Value, Value | UnsetType, Value], outcome: str, reason: str
) -> None:
    base, server, local = values
    resolution, _ = merge_one(path, base=base, server=server, local=local)
    assert resolution.outcome == outcome
    assert reason in resolution.reason


def test_last_writer_wins_ties_go_to_the_server_whoever_made_them() -> None:
    path = POLICY_KEYS["last-writer-wins"]
    server_time = Timestamp(at(5).wall_ms, 0, "a-node-that-sorts-first")
    resolution, _ = merge_one(
        path, base=50, server=70, local=60, when=at(5), server_changed_at={path: server_time}
    )
    assert resolution.outcome == "rejected"
    assert "ties with the server's" in resolution.reason
    newer, _ = merge_one(
        path, base=50, server=70, local=60, when=at(5, 1), server_changed_at={path: server_time}
    )
    assert newer.outcome == "accepted"


def test_last_writer_wins_with_one_time_for_the_whole_server_version() -> None:
    path = POLICY_KEYS["last-writer-wins"]
    version_time = at(10, node="gw")
    # the key did not change in that version: the local write is the last one
    untouched, _ = merge_one(path, base=50, server=50, local=60, server_changed_at=version_time)
    assert untouched.outcome == "accepted"
    assert "has not written it since the last sync" in untouched.reason
    changed, _ = merge_one(path, base=50, server=70, local=60, server_changed_at=version_time)
    assert changed.outcome == "rejected"
    later, _ = merge_one(
        path, base=50, server=70, local=60, when=at(11), server_changed_at=version_time
    )
    assert later.outcome == "accepted"


@pytest.mark.parametrize("times", [None, {}], ids=["no times", "time of another key"])
def test_last_writer_wins_without_a_known_time(times: ServerChangeTimes) -> None:
    path = POLICY_KEYS["last-writer-wins"]
    changed, _ = merge_one(path, base=50, server=70, local=60, server_changed_at=times)
    assert changed.outcome == "rejected"
    assert changed.reason == (
        "the server changed it at an unknown time; unknown times go to the server"
    )
    unchanged, _ = merge_one(path, base=50, server=50, local=60, server_changed_at=times)
    assert unchanged.outcome == "accepted"


def test_overrides_that_cannot_exist_in_the_server_tree_are_rejected() -> None:
    theirs: Tree = {"a": 3, "m": {"x": 1}}
    ours = {
        ("a", "b"): entry(("a", "b"), 1),
        ("m",): entry(("m",), {"y": 2}),
        ("m", "x"): entry(("m", "x"), 5),
    }
    result = merge(theirs, theirs, ours)
    reasons = {item.path: (item.outcome, item.reason) for item in result.resolutions}
    assert reasons[("a", "b")] == ("rejected", "the server holds a leaf at a, so a.b cannot exist")
    assert reasons[("m", "x")] == (
        "rejected",
        "it lies inside the override of m; overrides do not nest",
    )
    assert reasons[("m",)][0] == "accepted"
    assert result.effective == {"a": 3, "m": {"y": 2}}


def test_removals_in_ours_contribute_nothing_and_keys_must_match_entries() -> None:
    result = merge({"a": 1}, {"a": 1}, {("a",): entry(("a",), UNSET)})
    assert result == MergeResult({"a": 1}, (), (), ())
    with pytest.raises(UsageError, match="override keyed b holds an entry for a"):
        merge({}, {}, {("b",): entry(("a",), 1)})
    with pytest.raises(UsageError, match=re.escape("override keyed ('',) holds an entry for a")):
        merge({}, {}, {("",): entry(("a",), 1)})


def test_results_name_everything_explain_shows() -> None:
    path = POLICY_KEYS["server-wins"]
    resolution, result = merge_one(path, base=50, server=70, local=60)
    assert str(resolution) == (
        "k.server_wins: local 60 rejected (server 70, server-wins): "
        "the server changed it since the last sync (50 -> 70)"
    )
    assert resolution.dotted == "k.server_wins"
    assert (resolution.sequence, resolution.at) == (1, at(5))
    assert result.conflicts == (resolution,)
    assert result.resolution(("nothing",)) is None
    assert result != "a result"
    assert resolution != "a resolution"
    assert hash(result) == hash(copy.deepcopy(result))


def test_results_compare_values_by_encoding() -> None:
    one = merge({}, {}, {("a",): entry(("a",), 1)})
    one_float = merge({}, {}, {("a",): entry(("a",), 1.0)})
    assert one != one_float
    nan = merge({}, {}, {("a",): entry(("a",), math.nan)})
    assert nan == merge({}, {}, {("a",): entry(("a",), math.nan)})


# ---------------------------------------------------------------- laws

LAW_PATHS: list[Path] = [
    *POLICY_KEYS.values(),
    ("k", "locked"),
    ("k", "any_max"),
    ("k", "any_lww"),
    ("k", "text"),
    ("zz",),
    ("zz", "deep"),
]
law_values = cast(
    st.SearchStrategy[Value],
    st.integers(-20, 120)
    | st.sampled_from([0, 50, 100, 50.0, math.nan, "a", "b", True, None, {"deep": 1}]),
)


@st.composite
def merge_inputs(
    draw: st.DrawFn,
) -> tuple[Tree, Tree, dict[Path, JournalEntry], Schema | None, ServerChangeTimes]:
    base_values = draw(st.dictionaries(st.sampled_from(LAW_PATHS), law_values, max_size=8))
    their_values = dict(base_values)
    for path in draw(st.lists(st.sampled_from(LAW_PATHS), max_size=6)):
        if draw(st.booleans()):
            their_values[path] = draw(law_values)
        else:
            their_values.pop(path, None)
    ours: dict[Path, JournalEntry] = {}
    for sequence, path in enumerate(draw(st.lists(st.sampled_from(LAW_PATHS), max_size=8)), 1):
        when = Timestamp(draw(st.integers(0, 20)), draw(st.integers(0, 2)), "dev")
        ours[path] = JournalEntry(path, draw(law_values), "law", when, sequence)
    times: ServerChangeTimes = draw(
        st.none()
        | st.builds(Timestamp, st.integers(0, 20), st.integers(0, 2), st.just("gw"))
        | st.dictionaries(
            st.sampled_from(LAW_PATHS),
            st.builds(Timestamp, st.integers(0, 20), st.integers(0, 2), st.just("gw")),
        )
    )
    schema = draw(st.sampled_from([POLICY_SCHEMA, None]))
    return tree_with(base_values), tree_with(their_values), ours, schema, times


Inputs = tuple[Tree, Tree, dict[Path, JournalEntry], Schema | None, ServerChangeTimes]
LAW_SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@given(merge_inputs(), st.randoms(use_true_random=False))
@LAW_SETTINGS
def test_merge_does_not_depend_on_the_order_of_ours(inputs: Inputs, rng: random.Random) -> None:
    base, theirs, ours, schema, times = inputs
    items = list(ours.items())
    rng.shuffle(items)
    first = merge(base, theirs, ours, schema=schema, server_changed_at=times)
    assert merge(base, theirs, dict(items), schema=schema, server_changed_at=times) == first


@given(
    st.lists(st.tuples(st.sampled_from(LAW_PATHS), law_values), max_size=12),
    st.randoms(use_true_random=False),
    merge_inputs(),
)
@LAW_SETTINGS
def test_journals_with_the_same_latest_entries_merge_alike(
    history: list[tuple[Path, Value | UnsetType]], rng: random.Random, inputs: Inputs
) -> None:
    base, theirs, latest, schema, times = inputs
    # the same latest entries after two different orders of older history
    history = [(path, value) for path, value in history if path in latest]
    shuffled = list(history)
    rng.shuffle(shuffled)
    results: list[MergeResult] = []
    for older in (history, shuffled):
        journal = Journal()
        for index, (path, value) in enumerate(older):
            journal = journal.append(JournalEntry(path, value, "old", at(0, index), index + 1))
        for offset, (path, newest) in enumerate(sorted(latest.items())):
            sequence = len(history) + 1 + offset
            journal = journal.append(
                JournalEntry(path, newest.value, newest.reason, newest.at, sequence)
            )
        results.append(
            merge(base, theirs, journal.overrides(), schema=schema, server_changed_at=times)
        )
    assert results[0] == results[1]


@given(merge_inputs())
@LAW_SETTINGS
def test_the_effective_tree_is_a_fixed_point(inputs: Inputs) -> None:
    base, theirs, ours, schema, times = inputs
    first = merge(base, theirs, ours, schema=schema, server_changed_at=times)
    again = merge(base, first.effective, ours, schema=schema, server_changed_at=times)
    assert values_equal(again.effective, first.effective)


@given(merge_inputs())
@LAW_SETTINGS
def test_merging_again_after_accepting_the_outcome_changes_nothing(inputs: Inputs) -> None:
    base, theirs, ours, schema, times = inputs
    first = merge(base, theirs, ours, schema=schema, server_changed_at=times)
    kept = {item.path: ours[item.path] for item in first.accepted}
    again = merge(theirs, theirs, kept, schema=schema, server_changed_at=times)
    assert values_equal(again.effective, first.effective)
    assert [item.path for item in again.accepted] == [item.path for item in first.accepted]
    assert again.rejected == () and again.conflicts == ()
    # and a replayed report gives the very same answer
    assert merge(base, theirs, ours, schema=schema, server_changed_at=times) == first


@given(merge_inputs())
@LAW_SETTINGS
def test_every_override_is_resolved_once_and_applied_exactly_when_accepted(inputs: Inputs) -> None:
    base, theirs, ours, schema, times = inputs
    result = merge(base, theirs, ours, schema=schema, server_changed_at=times)
    assert sorted(item.path for item in result.resolutions) == sorted(ours)
    accepted = {item.path for item in result.accepted}
    for item in result.resolutions:
        enclosed = any(item.path[:depth] in accepted for depth in range(1, len(item.path)))
        if not enclosed:
            assert values_equal(get(result.effective, item.path), item.effective)
        assert item.reason
        assert item.conflict == (
            not values_equal(item.base, item.server) and not values_equal(item.local, item.server)
        )
    assert result.conflicts == tuple(item for item in result.resolutions if item.conflict)
    expected = theirs
    for path in sorted(accepted):
        expected = set_value(expected, path, cast(Value, ours[path].value))
    assert values_equal(result.effective, expected)


# ---------------------------------------------------------------- offline for weeks

# path -> (merge policy, local min, local max) in the schema the device knew
# when it went offline (v1) and in the schema the gateway holds now (v2).
# v2 narrows sense.gain and withdraws local changes of debug.verbosity.
V1: dict[Path, tuple[MergePolicy, int, int] | None] = {
    ("radio", "interval_s"): ("server-wins", 10, 100),
    ("radio", "power"): ("server-wins", 0, 100),
    ("sense", "period_s"): ("device-wins-within-bounds", 5, 120),
    ("sense", "gain"): ("device-wins-within-bounds", 0, 100),
    ("alarm", "threshold"): ("max", 0, 150),
    ("alarm", "level"): ("max", 0, 100),
    ("batt", "reserve"): ("min", 0, 100),
    ("batt", "floor"): ("min", 10, 90),
    ("led", "brightness"): ("last-writer-wins", 0, 100),
    ("led", "mode"): ("last-writer-wins", 0, 150),
    ("debug", "verbosity"): ("server-wins", 0, 100),
    ("net", "mtu"): None,  # never changeable locally
}
V2 = V1 | {("sense", "gain"): ("device-wins-within-bounds", 0, 50), ("debug", "verbosity"): None}


def scenario_schema(
    table: Mapping[Path, tuple[MergePolicy, int, int] | None], version: int
) -> Schema:
    keys: dict[str, Any] = {}
    for key_id, (path, policy) in enumerate(sorted(table.items()), 1):
        doc: dict[str, Any] = {"id": key_id, "type": "int", "min": 0, "max": 1000}
        if policy is not None:
            doc |= {"merge": policy[0], "local": {"min": policy[1], "max": policy[2]}}
        keys[".".join(path)] = doc
    return schema_from_document({"name": "field", "version": version, "keys": keys})


SCHEMA_V1, SCHEMA_V2 = scenario_schema(V1, 1), scenario_schema(V2, 2)


def oracle(
    entry: JournalEntry,
    base: Value | UnsetType,
    server: Value | UnsetType,
    server_time: Timestamp | None,
) -> bool:
    """Should this override be accepted?  Written from the policy table alone."""
    local = cast(int, entry.value)
    rule = V2[entry.path]
    if rule is None or not rule[1] <= local <= rule[2]:
        return False
    policy = rule[0]
    unchanged = base == server and type(base) is type(server)
    if local == server:
        return True
    if policy == "device-wins-within-bounds":
        return True
    if policy in ("max", "min") and isinstance(server, int):
        return local > server if policy == "max" else local < server
    if policy == "last-writer-wins" and server_time is not None:
        return (entry.at.wall_ms, entry.at.counter) > (server_time.wall_ms, server_time.counter)
    return unchanged


@pytest.mark.parametrize("days", [7, 30])
@given(rng=st.randoms(use_true_random=False))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_offline_for_weeks_while_the_server_moves_through_20_revisions(
    days: int, rng: random.Random
) -> None:
    paths = sorted(V1)
    span = days * DAY_MS
    # ---- the server: 20 revisions at increasing times, 1-3 random edits each
    revision: Tree = {}
    for path in paths:
        revision = set_value(revision, path, rng.randint(0, 150))
    base = revision
    changed_at: dict[Path, Timestamp] = {}
    gateway: Timestamp | None = None
    for when in sorted(rng.sample(range(1, span), 20)):
        gateway = tick(gateway, when, "gateway")
        for path in rng.sample(paths, rng.randint(1, 3)):
            before = get(revision, path)
            if rng.random() < 0.1:
                revision = delete(revision, path, missing_ok=True)
            else:
                revision = set_value(
                    revision,
                    path,
                    rng.choice([rng.randint(0, 150), before if isinstance(before, int) else 0]),
                )
            after = get(revision, path)
            if not (type(before) is type(after) and before == after):
                changed_at[path] = gateway
    theirs = revision
    # ---- the device: local changes across the offline days, clock skewed and wobbling
    journal = Journal()
    device: Timestamp | None = None
    for when in sorted(rng.randrange(0, span) for _ in range(rng.randint(5, 40))):
        device = tick(device, max(0, when + rng.randint(-7_200_000, 7_200_000)), "dev-7")
        path = rng.choice(paths)
        value: Value | UnsetType = UNSET if rng.random() < 0.15 else rng.randint(-20, 170)
        rule = V1[path]
        allowed = isinstance(value, UnsetType) or (rule is not None and rule[1] <= value <= rule[2])
        if not allowed:
            with pytest.raises(LocalOverrideRefused):
                check_override(SCHEMA_V1, path, value)
            continue
        check_override(SCHEMA_V1, path, value)
        journal, _ = journal.record(path, value, reason="local adaptation", at=device)
        if rng.random() < 0.2:
            compacted = journal.compact(max_entries=4, max_bytes=4096)
            assert compacted.overrides() == journal.overrides()
            journal = compacted
    ours = journal.overrides()
    # ---- reconnect
    result = merge(base, theirs, ours, schema=SCHEMA_V2, server_changed_at=changed_at)
    expected = copy.deepcopy(theirs)
    for path, local in sorted(ours.items()):
        server = get(theirs, path)
        accept = oracle(local, get(base, path), server, changed_at.get(path))
        resolution = result.resolution(path)
        assert resolution is not None
        assert (resolution.outcome == "accepted") == accept, (resolution, changed_at.get(path))
        event(f"{resolution.policy} {resolution.outcome}")
        if accept:
            expected.setdefault(path[0], {})[path[1]] = local.value  # type: ignore[index]
        if V2[path] is None:
            assert "does not allow local changes" in resolution.reason
    assert values_equal(result.effective, expected)
    assert len(result.resolutions) == len(ours)
