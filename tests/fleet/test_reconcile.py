"""Reconnect: a device's offline changes merged into its configuration
(edgecfg/fleet/reconcile.py).  End to end, over CoAP and the simulated link:
tests/agent/test_offline.py and test_offline_sim.py; here the laws of the
module docstring: the answer is authoritative and idempotent."""

from __future__ import annotations

from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.core.hlc import Timestamp
from edgecfg.core.ids import DeviceId
from edgecfg.core.journal import JournalEntry
from edgecfg.core.layers import local_layer
from edgecfg.core.path import parse_path
from edgecfg.core.tree import UNSET, UnsetType, Value
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.reconcile import (
    MAX_ENTRIES,
    BadJournal,
    acknowledged_sequence,
    journal_entries,
    last_outcome,
    reconcile,
)
from edgecfg.store import DeviceRecord, MemoryStore
from edgecfg.wire.journal import entry_to_value
from tests.paths import SCHEMA

DEVICE = DeviceId("dev-1")
NOW = 1_000.0  # seconds; entries are stamped around it
# keys the device may override (various policies) and one it may not
LOCAL: dict[str, st.SearchStrategy[Value]] = {
    "net.uplink.interval_s": st.sampled_from([5, 600, 900, 86400]),  # within bounds, or not
    "log.level": st.sampled_from(["error", "info", "trace"]),  # trace: outside the policy
    "device.location.source": st.sampled_from(["gnss", "cell"]),  # last writer wins
    "net.coap.max_retransmit": st.integers(0, 10),  # local changes not allowed
}


@st.composite
def journals(draw: st.DrawFn) -> list[JournalEntry]:
    """Entries in sequence order, set or removal, most stamped near NOW, some
    from a clock running far ahead."""
    entries: list[JournalEntry] = []
    for sequence in range(1, draw(st.integers(1, 10)) + 1):
        dotted = draw(st.sampled_from(sorted(LOCAL)))
        value = draw(st.just(UNSET) | LOCAL[dotted])
        wall = int(NOW * 1000) + draw(st.sampled_from([-5_000, 0, sequence, 10**9]))
        stamp = Timestamp(wall, sequence, "dev-1")
        entries.append(JournalEntry(parse_path(dotted), value, "r", stamp, sequence))
    return entries


def fresh_fleet() -> Fleet:
    fleet = Fleet(MemoryStore())
    fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    fleet.add_device(
        DeviceRecord(DEVICE, {"region": "eu"}, hardware="nbiot-sensor-r3", firmware="2.1.0",
                     agent_version="1.0.0")
    )  # fmt: skip
    return fleet


def raw(entries: list[JournalEntry]) -> Value:
    return [entry_to_value(entry) for entry in entries]


def decided(outcome: Value) -> dict[int, str]:
    """Sequence -> "accepted" or "rejected", from an outcome's CBOR form."""
    answer = cast(dict[str, list[list[Value]]], outcome)
    verdicts = {cast(int, item[0]): "accepted" for item in answer["accepted"]}
    verdicts.update({cast(int, item[0]): "rejected" for item in answer["rejected"]})
    return verdicts


@settings(max_examples=60, deadline=None)
@given(journals(), st.data())
def test_chunks_and_replays_are_merged_once_and_answered_the_same(
    entries: list[JournalEntry], data: st.DataObject
) -> None:
    fleet = fresh_fleet()
    base = fleet.encoded(DEVICE).tree
    cut = data.draw(st.integers(0, len(entries)))
    chunks = [chunk for chunk in (entries[:cut], entries[cut:]) if chunk]
    for chunk in chunks:
        outcome = reconcile(fleet, DEVICE, raw(chunk), base=base, now=NOW)
        # the latest entry per path of the chunk is decided, once; a removal
        # needs no decision (the device's own override goes)
        latest = {entry.path: entry for entry in chunk}
        sets = [e.sequence for e in latest.values() if not isinstance(e.value, UnsetType)]
        assert sorted(decided(outcome)) == sorted(sets)
        assert cast(dict[str, Value], outcome)["ack"] == chunk[-1].sequence
        assert acknowledged_sequence(fleet, DEVICE) == chunk[-1].sequence
    served = fleet.encoded(DEVICE)
    layer = fleet.resolver.layer(local_layer(DEVICE))
    stored = last_outcome(fleet, DEVICE)
    # a replay (a report that crossed the answer) changes nothing and gets the stored answer
    for chunk in [*chunks, entries]:
        assert reconcile(fleet, DEVICE, raw(chunk), base=base, now=NOW + 5) == stored
    assert fleet.encoded(DEVICE) == served
    assert fleet.resolver.layer(local_layer(DEVICE)) == layer
    assert acknowledged_sequence(fleet, DEVICE) == entries[-1].sequence


@settings(max_examples=60, deadline=None)
@given(journals())
def test_the_local_layer_holds_exactly_the_accepted_latest_values(
    entries: list[JournalEntry],
) -> None:
    fleet = fresh_fleet()
    outcome = reconcile(fleet, DEVICE, raw(entries), base=fleet.encoded(DEVICE).tree, now=NOW)
    verdicts = decided(outcome)
    latest: dict[tuple[str, ...], JournalEntry] = {}
    for entry in entries:
        latest[entry.path] = entry
    expected = {
        path: entry.value
        for path, entry in latest.items()
        if not isinstance(entry.value, UnsetType) and verdicts[entry.sequence] == "accepted"
    }
    assert dict(fleet.resolver.layer(local_layer(DEVICE)).sets) == expected
    # never a key the device may not change, nor a value from a clock far ahead
    forbidden = [
        entry.sequence
        for path, entry in latest.items()
        if not isinstance(entry.value, UnsetType)
        and (path == ("net", "coap", "max_retransmit") or entry.at.wall_ms > NOW * 1000 + 10**6)
    ]
    assert [verdicts[sequence] for sequence in forbidden] == ["rejected"] * len(forbidden)


@pytest.mark.parametrize(
    ("journal", "reason"),
    [
        ({"not": "a list"}, "must be a list"),
        ([[1, "a.b"]] * (MAX_ENTRIES + 1), f"exceeds {MAX_ENTRIES}"),
    ],
)
def test_a_malformed_journal_is_refused(journal: Value, reason: str) -> None:
    with pytest.raises(BadJournal, match=reason):
        journal_entries(journal)
