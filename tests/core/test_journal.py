"""The local-override journal: overrides, compaction, acknowledgement, checks (core.journal)."""

from __future__ import annotations

import math
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecfg.core.hlc import Timestamp
from edgecfg.core.journal import (
    FRAME_OVERHEAD,
    Journal,
    JournalEntry,
    JournalError,
    LocalOverrideRefused,
    UnknownSequence,
    check_override,
    describe_local_policy,
    entry_size_bound,
)
from edgecfg.core.path import Path
from edgecfg.core.schema import Schema
from edgecfg.core.schema_document import schema_from_document
from edgecfg.core.tree import UNSET, UnsetType, Value
from edgecfg.errors import ModelError, PathError, PeerError, UsageError, show_value
from tests.strategies import model_values

PATHS: list[Path] = [("net", "interval_s"), ("log", "level"), ("a",), ("a", "b"), ("x.y", "z")]


def stamp(wall: int, counter: int = 0) -> Timestamp:
    return Timestamp(wall, counter, "dev-1")


small_values = cast(
    st.SearchStrategy[Value],
    st.integers(0, 9) | st.sampled_from([None, "x", 1.5, math.nan, [1, 2], {"k": "v"}, b""]),
)


@st.composite
def journals(
    draw: st.DrawFn, max_size: int = 30, values: st.SearchStrategy[Value] = small_values
) -> Journal:
    """A journal of sets and removals on a few paths, with some entries acknowledged."""
    journal = Journal()
    for index in range(draw(st.integers(min_value=0, max_value=max_size))):
        path = draw(st.sampled_from(PATHS))
        value: Value | UnsetType = draw(st.just(UNSET) | values)
        reason = draw(st.sampled_from(["", "battery low", "operator on site"]))
        gap = draw(st.integers(min_value=1, max_value=3))  # sequences need not be contiguous
        entry = JournalEntry(path, value, reason, stamp(index), journal.last_sequence + gap)
        journal = journal.append(entry)
    if journal.last_sequence:
        journal = journal.acknowledge(draw(st.integers(0, journal.last_sequence)))
    return journal


def latest_per_path(entries: tuple[JournalEntry, ...]) -> dict[Path, JournalEntry]:
    latest: dict[Path, JournalEntry] = {}
    for entry in entries:
        latest[entry.path] = entry
    return latest


# ---------------------------------------------------------------- overrides


def test_the_latest_entry_per_path_wins_and_unset_removes() -> None:
    journal = Journal()
    journal, first = journal.record(("a",), 1, reason="one", at=stamp(1))
    journal, _ = journal.record(("b",), 2, reason="two", at=stamp(2))
    journal, third = journal.record(("b",), UNSET, reason="undo", at=stamp(3))
    journal, fourth = journal.record(("c",), None, reason="null is a value", at=stamp(4))
    assert journal.overrides() == {("a",): first, ("c",): fourth}
    assert third.removes and not fourth.removes
    assert [entry.sequence for entry in journal.entries] == [1, 2, 3, 4]


@given(journals(values=model_values))
# Drawing journals of arbitrary model values takes seconds on a busy machine:
# Hypothesis's wall-clock checks would fail the test for the load, not the code.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_overrides_match_a_replay_of_the_entries(journal: Journal) -> None:
    expected = {
        path: entry
        for path, entry in latest_per_path(journal.entries).items()
        if not isinstance(entry.value, UnsetType)
    }
    assert journal.overrides() == expected


def test_a_removal_after_a_removal_keeps_the_path_without_override() -> None:
    journal = Journal()
    for index, value in enumerate([UNSET, 3, UNSET, UNSET]):
        journal, _ = journal.record(("a",), value, reason="", at=stamp(index))
    assert journal.overrides() == {}


# ---------------------------------------------------------------- compaction


bounds = st.tuples(st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=3000))


@given(journals(), bounds)
@settings(max_examples=300)
def test_compaction_never_changes_the_overrides(journal: Journal, limits: tuple[int, int]) -> None:
    max_entries, max_bytes = limits
    compacted = journal.compact(max_entries=max_entries, max_bytes=max_bytes)
    assert compacted.overrides() == journal.overrides()


@given(journals(), bounds)
@settings(max_examples=300)
def test_compaction_keeps_what_the_gateway_still_has_to_learn(
    journal: Journal, limits: tuple[int, int]
) -> None:
    compacted = journal.compact(max_entries=limits[0], max_bytes=limits[1])
    assert latest_per_path(compacted.pending()) == latest_per_path(journal.pending())
    assert (compacted.last_sequence, compacted.acknowledged) == (
        journal.last_sequence,
        journal.acknowledged,
    )
    assert compacted.entries[-1:] == journal.entries[-1:]  # the sequence survives a reload


@given(journals(), bounds)
@settings(max_examples=300)
def test_compaction_keeps_the_essentials_and_the_newest_history_within_bounds(
    journal: Journal, limits: tuple[int, int]
) -> None:
    max_entries, max_bytes = limits
    compacted = journal.compact(max_entries=max_entries, max_bytes=max_bytes)
    kept = compacted.entries
    assert set(kept) <= set(journal.entries)
    assert list(kept) == sorted(kept, key=lambda entry: entry.sequence)
    latest = latest_per_path(journal.entries)
    essential = {
        entry
        for entry in latest.values()
        if not entry.removes or entry.sequence > journal.acknowledged
    } | set(journal.entries[-1:])
    assert essential <= set(kept)
    history = [entry for entry in kept if entry not in essential]
    dropped = [entry for entry in journal.entries if entry not in set(kept)]
    # history is the newest of the non-essential entries
    if history and dropped:
        assert min(entry.sequence for entry in history) > max(entry.sequence for entry in dropped)
    if history:
        assert len(kept) <= max_entries
        assert sum(entry_size_bound(entry) for entry in kept) <= max_bytes
    if dropped and not history:
        # the newest droppable entry did not fit
        newest = max(dropped, key=lambda entry: entry.sequence)
        size = sum(entry_size_bound(entry) for entry in kept) + entry_size_bound(newest)
        assert len(kept) + 1 > max_entries or size > max_bytes


@given(journals(), bounds)
def test_compaction_is_idempotent(journal: Journal, limits: tuple[int, int]) -> None:
    once = journal.compact(max_entries=limits[0], max_bytes=limits[1])
    assert once.compact(max_entries=limits[0], max_bytes=limits[1]) == once


@given(journals())
def test_generous_bounds_keep_everything(journal: Journal) -> None:
    assert journal.compact(max_entries=10**6, max_bytes=10**9) == journal


def test_compaction_drops_superseded_and_acknowledged_removals() -> None:
    journal = Journal()
    for index, (path, value) in enumerate(
        [(("a",), 1), (("a",), 2), (("b",), 5), (("b",), UNSET), (("c",), UNSET), (("d",), 7)]
    ):
        journal, _ = journal.record(path, value, reason="", at=stamp(index))
    journal = journal.acknowledge(4)
    compacted = journal.compact(max_entries=0, max_bytes=0)
    # a=2 (value), c removal (not acknowledged yet), d=7 (value and newest)
    assert [entry.sequence for entry in compacted.entries] == [2, 5, 6]
    assert compacted.overrides() == journal.overrides()


def test_compaction_bounds_count_and_bytes_of_the_history() -> None:
    journal = Journal()
    for index in range(10):
        journal, _ = journal.record(("a",), index, reason="r", at=stamp(index))
    by_count = journal.compact(max_entries=4, max_bytes=10**6)
    assert [entry.value for entry in by_count.entries] == [6, 7, 8, 9]
    one = entry_size_bound(journal.entries[-1])
    by_bytes = journal.compact(max_entries=100, max_bytes=3 * one)
    assert [entry.value for entry in by_bytes.entries] == [7, 8, 9]
    by_measure = journal.compact(max_entries=100, max_bytes=5, size_of=lambda entry: 1)
    assert len(by_measure) == 5


def test_compaction_refuses_negative_bounds() -> None:
    with pytest.raises(JournalError, match="must not be negative"):
        Journal().compact(max_entries=-1, max_bytes=0)


def test_entry_size_bound_counts_framing_and_every_part() -> None:
    small = JournalEntry(("a",), UNSET, "", Timestamp(0, 0, ""), 1)
    assert entry_size_bound(small) > FRAME_OVERHEAD
    big = JournalEntry(("a",), {"k": ["é" * 10, b"xyz", 1.5]}, "", Timestamp(0, 0, ""), 1)
    # map head + key + array head + text + bytes + float
    assert entry_size_bound(big) - entry_size_bound(small) == 9 + 10 + 9 + 29 + 12 + 9


# ---------------------------------------------------------------- acknowledgement


def test_since_and_pending_return_what_the_gateway_has_not_confirmed() -> None:
    journal = Journal()
    for index in range(5):
        journal, _ = journal.record(("a",), index, reason="", at=stamp(index))
    assert [entry.sequence for entry in journal.since(2)] == [3, 4, 5]
    assert journal.pending() == journal.entries
    journal = journal.acknowledge(3)
    assert [entry.sequence for entry in journal.pending()] == [4, 5]
    assert journal.acknowledge(5).pending() == ()


def test_acknowledgement_is_idempotent_and_ignores_reordered_replies() -> None:
    journal = Journal()
    for index in range(4):
        journal, _ = journal.record(("a",), index, reason="", at=stamp(index))
    acked = journal.acknowledge(3)
    assert acked.acknowledge(3) is acked
    assert acked.acknowledge(1) is acked
    assert acked.acknowledged == 3


def test_acknowledging_an_unknown_sequence_is_a_peer_error() -> None:
    journal, _ = Journal().record(("a",), 1, reason="", at=stamp(1))
    with pytest.raises(UnknownSequence, match="sequence 7, but the journal only reaches 1") as err:
        journal.acknowledge(7)
    assert isinstance(err.value, PeerError)
    assert (err.value.sequence, err.value.last_sequence) == (7, 1)


def test_sequence_numbers_are_never_reused() -> None:
    journal, _ = Journal().record(("a",), 1, reason="", at=stamp(1))
    with pytest.raises(JournalError, match="never reused"):
        journal.append(JournalEntry(("b",), 2, "", stamp(2), 1))
    compacted = journal.compact(max_entries=0, max_bytes=0)
    assert compacted.next_sequence == 2


@pytest.mark.parametrize(
    ("entries", "last", "acknowledged", "message"),
    [
        ((2, 1), 2, 0, "does not follow"),
        ((1, 1), 1, 0, "does not follow"),
        ((1, 3), 2, 0, "below the newest"),
        ((1,), 1, 2, "acknowledged 2 outside"),
        ((1,), 1, -1, "acknowledged -1 outside"),
    ],
)
def test_a_journal_value_keeps_its_invariants(
    entries: tuple[int, ...], last: int, acknowledged: int, message: str
) -> None:
    items = tuple(JournalEntry(("a",), 1, "", stamp(s), s) for s in entries)
    with pytest.raises(JournalError, match=message):
        Journal(items, last, acknowledged)


def test_a_journal_read_back_continues_after_lost_acknowledged_entries() -> None:
    items = [JournalEntry(("a",), 1, "", stamp(1), 1)]
    assert Journal.of(items).next_sequence == 2
    assert Journal.of(items, acknowledged=5).next_sequence == 6
    assert Journal.of([]).last_sequence == 0
    assert len(Journal.of(items)) == 1


# ---------------------------------------------------------------- entries


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"path": ()}, PathError, "non-empty path"),
        ({"path": ("a", "")}, PathError, "no text form"),
        ({"value": (1, 2)}, ModelError, "tuple is not a configuration value"),
        ({"value": 2**70}, ModelError, "outside the CBOR range"),
        ({"reason": None}, JournalError, "reason must be text"),
        ({"reason": "\udc80"}, ModelError, "lone surrogate"),
        ({"sequence": 0}, JournalError, "sequence must be an integer >= 1"),
        ({"sequence": True}, JournalError, "sequence must be an integer >= 1"),
    ],
)
def test_journal_entries_refuse_malformed_fields(
    fields: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments: dict[str, Any] = {
        "path": ("a",),
        "value": 1,
        "reason": "",
        "at": stamp(1),
        "sequence": 1,
    }
    with pytest.raises(error, match=message):
        JournalEntry(**(arguments | fields))


def test_journal_entries_compare_values_by_encoding() -> None:
    def entry(value: Value) -> JournalEntry:
        return JournalEntry(("a",), value, "", stamp(1), 1)

    assert entry(1) != entry(1.0)
    assert entry(True) != entry(1)
    assert entry(math.nan) == entry(math.nan)
    assert entry(0.0) != entry(-0.0)
    assert entry([1, {"k": b"v"}]) == entry([1, {"k": b"v"}])
    assert hash(entry(1)) == hash(entry(1.0))  # equal hashes are allowed for unequal entries
    assert entry(1) != "not an entry"
    assert entry(1).dotted == "a"


# ---------------------------------------------------------------- check_override

SCHEMA_DOC: dict[str, Any] = {
    "name": "sensor",
    "version": 4,
    "keys": {
        "net.interval_s": {
            "id": 1,
            "type": "int",
            "min": 10,
            "max": 86400,
            "local": {"min": 60, "max": 3600},
            "merge": "device-wins-within-bounds",
        },
        "log.level": {
            "id": 2,
            "type": "str",
            "enum": ["debug", "info", "warn"],
            "local": {"enum": ["info", "debug"]},
        },
        "net.host": {"id": 3, "type": "str"},
        "extra": {"id": 4, "type": "map", "local": True},
        "led": {"id": 5, "type": "bool", "local": True, "merge": "last-writer-wins"},
    },
}


@pytest.fixture
def schema() -> Schema:
    return schema_from_document(SCHEMA_DOC)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("net", "interval_s"), 60),
        (("net", "interval_s"), 3600),
        (("log", "level"), "debug"),
        (("extra",), {"anything": [1, 2]}),
        (("led",), False),
        (("net", "host"), UNSET),  # removing is always allowed
        (("nowhere",), UNSET),
    ],
)
def test_check_override_allows_what_the_policy_allows(
    schema: Schema, path: Path, value: Value | UnsetType
) -> None:
    assert check_override(schema, path, value) is None


@pytest.mark.parametrize(
    ("path", "value", "bound", "policy"),
    [
        (
            ("net", "interval_s"),
            59,
            ">= 60 (local-override policy)",
            "local changes allowed (min 60, max 3600), merge device-wins-within-bounds",
        ),
        (("net", "interval_s"), 3601, "<= 3600 (local-override policy)", "max 3600"),
        # below both bounds: the tighter one applies, and it is the local policy's
        (("net", "interval_s"), 5, ">= 60 (local-override policy)", "min 60"),
        (("net", "interval_s"), "60", "int", "device-wins-within-bounds"),
        (("log", "level"), "warn", 'one of ["info", "debug"] (local-override policy)', "one of"),
        (("net", "host"), "h", "no local override", "local changes not allowed, merge server-wins"),
        (("led",), 1, "bool", "local changes allowed, merge last-writer-wins"),
        (("nowhere",), 1, "a key declared by schema sensor v4", "undeclared"),
        (("extra", "inner"), 1, "extra is a free-form key: override it whole", "undeclared"),
    ],
)
def test_check_override_refuses_naming_path_policy_and_bound(
    schema: Schema, path: Path, value: Value, bound: str, policy: str
) -> None:
    with pytest.raises(LocalOverrideRefused) as caught:
        check_override(schema, path, value)
    error = caught.value
    assert isinstance(error, UsageError)
    assert bound in error.bound
    assert policy in error.policy
    assert error.path == ".".join(path)
    assert error.value == value
    assert str(error).startswith(
        f"local override of {'.'.join(path)} = {show_value(value)} refused"
    )
    assert bound in str(error)
    assert policy in str(error)


def test_check_override_refuses_values_outside_the_model(schema: Schema) -> None:
    with pytest.raises(ModelError):
        check_override(schema, ("extra",), {"k": {1, 2}})  # type: ignore[dict-item]


def test_refusals_name_paths_without_a_text_form_readably(schema: Schema) -> None:
    with pytest.raises(LocalOverrideRefused) as caught:
        check_override(schema, ("",), 1)
    assert caught.value.path == "('',)"


def test_describe_local_policy(schema: Schema) -> None:
    assert describe_local_policy(schema.keys[("net", "host")]) == (
        "local changes not allowed, merge server-wins"
    )
    assert describe_local_policy(schema.keys[("log", "level")]) == (
        'local changes allowed (one of ["info", "debug"]), merge server-wins'
    )
