"""Reconnect: merging a device's offline changes into its configuration (issue 6).

A device's state report carries its unacknowledged journal entries and the
ETag of the configuration it made them on (``base``).  The gateway merges
them three ways (:func:`edgecfg.core.merge.merge`: base, the device's local
overrides, the current server configuration) under each key's policy, keeps
the accepted ones as the device's ``local/{id}`` layer (so they appear in the
served configuration, and in ``explain``), and answers with the outcome.

The answer is authoritative and idempotent: the highest merged sequence is
stored per device, entries at or below it are never applied again, and a
replayed or late report is answered with the stored outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final, cast

from edgecfg.core.hlc import Timestamp
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.journal import JournalEntry
from edgecfg.core.layers import Layer, local_layer
from edgecfg.core.merge import Resolution, merge
from edgecfg.core.path import Path, format_path
from edgecfg.core.tree import Tree, UnsetType, Value
from edgecfg.errors import PeerError, WriteRefused
from edgecfg.gateway.fleet import Fleet
from edgecfg.wire.cbor import decode, encode
from edgecfg.wire.journal import entry_from_value

MAX_ENTRIES: Final = 4096
ACK_SETTING: Final = "local-ack/"
OUTCOME_SETTING: Final = "local-outcome/"


class BadJournal(PeerError, ValueError):
    """The journal in a state report is malformed (4.00)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the gateway decided about a device's local overrides."""

    acknowledged: int
    resolutions: tuple[Resolution, ...]

    def to_value(self) -> Value:
        """The CBOR form sent to the device and kept for ``explain``."""
        return {
            "ack": self.acknowledged,
            "accepted": [
                [r.sequence, format_path(r.path)]
                for r in self.resolutions
                if r.outcome == "accepted"
            ],
            "rejected": [
                [r.sequence, format_path(r.path), r.reason]
                for r in self.resolutions
                if r.outcome != "accepted"
            ],
        }


def reconcile(
    fleet: Fleet,
    device: DeviceId,
    raw_journal: Value,
    *,
    base: Tree | None,
    now: float,
) -> Value:
    """Merge a report's journal; returns the outcome's CBOR form (see module docstring)."""
    entries = _entries(raw_journal)
    acknowledged = acknowledged_sequence(fleet, device)
    fresh = sorted((e for e in entries if e.sequence > acknowledged), key=lambda e: e.sequence)
    if not fresh:  # a replay, or a report that crossed an answer: nothing new to apply
        stored = fleet.store.get_setting(OUTCOME_SETTING + device)
        if stored is not None:
            return decode(stored)
        return {"ack": acknowledged, "accepted": [], "rejected": []}
    ours: dict[Path, JournalEntry] = {}
    for entry in fresh:
        ours[entry.path] = entry  # the latest per path
    layer_id = local_layer(device)
    theirs = _server_config(fleet, device, layer_id)
    result = merge(
        base if base is not None else theirs,
        theirs,
        ours,
        schema=fleet.schema,
        server_changed_at=_server_time(fleet, device),
    )
    current = fleet.resolver.layer(layer_id)
    sets = dict(current.sets)
    for path, entry in ours.items():  # a removal, or a newer decision, replaces the old value
        sets = {p: v for p, v in sets.items() if p != path and p[: len(path)] != path}
        if isinstance(entry.value, UnsetType):
            continue
        decided = result.resolution(path)
        if decided is not None and decided.outcome == "accepted":
            sets[path] = entry.value
    resolutions = list(result.resolutions)
    try:
        fleet.write_layer(
            layer_id,
            Layer(sets),
            author=f"device {device}",
            message=f"local overrides up to #{fresh[-1].sequence}",
            now=now,
            replace=True,
        )
    except WriteRefused as refused:  # e.g. a lock above: the server's value stands
        resolutions = [_refused(r, str(refused)) for r in resolutions]
    outcome = Outcome(fresh[-1].sequence, tuple(resolutions))
    value = outcome.to_value()
    fleet.store.put_setting(ACK_SETTING + device, str(outcome.acknowledged).encode())
    fleet.store.put_setting(OUTCOME_SETTING + device, encode(value))
    return value


def acknowledged_sequence(fleet: Fleet, device: DeviceId) -> int:
    """The highest journal sequence of ``device`` the gateway has merged."""
    raw = fleet.store.get_setting(ACK_SETTING + device)
    return int(raw.decode()) if raw is not None else 0


def last_outcome(fleet: Fleet, device: DeviceId) -> Value | None:
    """The stored answer to the device's last journal (for ``explain``)."""
    raw = fleet.store.get_setting(OUTCOME_SETTING + device)
    return decode(raw) if raw is not None else None


def _entries(raw: Value) -> list[JournalEntry]:
    if not isinstance(raw, list):
        raise BadJournal("'journal' must be a list of entries")
    items = cast(list[Value], raw)
    if len(items) > MAX_ENTRIES:
        raise BadJournal(f"journal of {len(items)} entries exceeds {MAX_ENTRIES}")
    return [entry_from_value(item) for item in items]


def _server_config(fleet: Fleet, device: DeviceId, layer_id: LayerId) -> Tree:
    facts = fleet.device(device)
    tiers = tuple(t for t in fleet.resolver.tiers(facts) if layer_id not in t)
    return fleet.resolver.resolve(facts, tiers=tiers).tree


def _server_time(fleet: Fleet, device: DeviceId) -> Timestamp:
    """When the server side of the device's configuration last changed."""
    facts = fleet.device(device)
    newest = 0.0
    for tier in fleet.resolver.tiers(facts):
        for layer_id in tier:
            if layer_id.startswith("local/"):
                continue
            head = fleet.head(layer_id)
            if head is not None:
                newest = max(newest, head.created_at)
    return Timestamp(int(newest * 1000), 0, "gateway")


def _refused(resolution: Resolution, reason: str) -> Resolution:
    if resolution.outcome != "accepted":
        return resolution
    return replace(resolution, outcome="rejected", reason=reason)


def describe(outcome: Value, paths: Sequence[Path] = ()) -> list[str]:
    """Lines for ``explain``: the device's merged and refused local overrides."""
    if not isinstance(outcome, dict):
        return []
    lines: list[str] = []
    wanted = {format_path(p) for p in paths}
    for item in cast(list[list[Value]], outcome.get("accepted", [])):
        if not wanted or item[1] in wanted:
            lines.append(f"local override #{item[0]} of {item[1]}: accepted")
    for item in cast(list[list[Value]], outcome.get("rejected", [])):
        if not wanted or item[1] in wanted:
            lines.append(f"local override #{item[0]} of {item[1]}: rejected: {item[2]}")
    return lines
