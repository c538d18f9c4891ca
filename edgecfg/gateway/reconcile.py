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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, cast

from edgecfg.core.hlc import Timestamp
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.journal import JournalEntry
from edgecfg.core.layers import Layer, layer_from_document, local_layer
from edgecfg.core.merge import Resolution, merge
from edgecfg.core.path import Path, format_path, is_prefix
from edgecfg.core.tree import Tree, UnsetType, Value, is_map
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
            # overrides of keys the server changed too (to another value), whichever won
            "conflicts": [
                [r.sequence, format_path(r.path)] for r in self.resolutions if r.conflict
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
    entries = journal_entries(raw_journal)
    acknowledged = acknowledged_sequence(fleet, device)
    fresh = sorted((e for e in entries if e.sequence > acknowledged), key=lambda e: e.sequence)
    if not fresh:  # a replay, or a report that crossed an answer: nothing new to apply
        stored = fleet.store.get_setting(OUTCOME_SETTING + device)
        if stored is not None:
            return decode(stored)
        return {"ack": acknowledged, "accepted": [], "rejected": [], "conflicts": []}
    ours: dict[Path, JournalEntry] = {}
    for entry in fresh:
        ours[entry.path] = entry  # the latest per path
    layer_id = local_layer(device)
    theirs = _server_config(fleet, device, layer_id)
    result = merge(
        # an unknown base (never synced, or a version the gateway no longer has):
        # every server value counts as changed, so server-wins keeps the server's
        base if base is not None else {},
        theirs,
        ours,
        schema=fleet.schema,
        server_changed_at=_server_times(fleet, device, _needs_time(fleet, ours)),
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
    kept = _accumulate(last_outcome(fleet, device), value)  # a long journal comes in chunks
    fleet.store.put_setting(OUTCOME_SETTING + device, encode(kept))
    return value


def acknowledged_sequence(fleet: Fleet, device: DeviceId) -> int:
    """The highest journal sequence of ``device`` the gateway has merged."""
    raw = fleet.store.get_setting(ACK_SETTING + device)
    return int(raw.decode()) if raw is not None else 0


def last_outcome(fleet: Fleet, device: DeviceId) -> Value | None:
    """The stored answer to the device's last journal (for ``explain``)."""
    raw = fleet.store.get_setting(OUTCOME_SETTING + device)
    return decode(raw) if raw is not None else None


def journal_entries(raw: Value) -> list[JournalEntry]:
    """The entries of a report's ``journal``; :class:`BadJournal` or
    :class:`~edgecfg.wire.journal.BadEntry` when it is not one."""
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


def _needs_time(fleet: Fleet, ours: Mapping[Path, JournalEntry]) -> list[Path]:
    """The paths whose policy compares times (last-writer-wins)."""
    schema = fleet.schema
    if schema is None:
        return []
    return [
        path
        for path in ours
        if (spec := schema.keys.get(path)) is not None and spec.merge == "last-writer-wins"
    ]


def _server_times(fleet: Fleet, device: DeviceId, paths: Sequence[Path]) -> dict[Path, Timestamp]:
    """When the server last changed each of ``paths`` for ``device``.

    The time of the newest revision, among the device's layers (its local
    layer aside), that changed what the layer says about the path: a value,
    a tombstone or a lock at the path, above it or below it.  A rewrite that
    leaves the path as it was does not count.  Paths no layer ever touched
    are left out (the merge then decides by "changed since base").
    """
    if not paths:
        return {}
    facts = fleet.device(device)
    newest: dict[Path, float] = {}
    for tier in fleet.resolver.tiers(facts):
        for layer_id in tier:
            if layer_id.startswith("local/"):
                continue
            before: dict[Path, tuple[bytes, ...]] = {}
            for revision in fleet.history(layer_id):  # oldest first
                layer = layer_from_document(decode(fleet.store.get_blob(revision.content)))
                for path in paths:
                    says = _what_layer_says(layer, path)
                    if says != before.get(path, ()):
                        newest[path] = max(newest.get(path, 0.0), revision.created_at)
                    before[path] = says
    return {path: Timestamp(int(at * 1000), 0, "gateway") for path, at in newest.items()}


def _what_layer_says(layer: Layer, path: Path) -> tuple[bytes, ...]:
    def related(other: Path) -> bool:
        return is_prefix(other, path) or is_prefix(path, other)

    said = [b"s" + encode([list(p), v]) for p, v in layer.sets.items() if related(p)]
    said += [b"u" + encode(list(p)) for p in layer.unsets if related(p)]
    said += [b"l" + encode(list(p)) for p in layer.locks if related(p)]
    return tuple(sorted(said))


def _accumulate(previous: Value | None, latest: Value) -> Value:
    """The stored outcome: the newest decision per path, across reports."""
    if not is_map(previous) or not is_map(latest):
        return latest
    decided: dict[str, tuple[str, list[Value]]] = {}
    conflicts: dict[str, list[Value]] = {}
    for source in (previous, latest):
        for kind in ("accepted", "rejected"):
            for item in cast(list[list[Value]], source.get(kind, [])):
                decided[str(item[1])] = (kind, item)
                conflicts.pop(str(item[1]), None)  # decided again: its old conflict is gone
        for item in cast(list[list[Value]], source.get("conflicts", [])):
            conflicts[str(item[1])] = item
    merged: dict[str, Value] = {"ack": latest.get("ack"), "accepted": [], "rejected": []}
    for _, (kind, item) in sorted(decided.items()):
        cast(list[Value], merged[kind]).append(list[Value](item))
    merged["conflicts"] = [list[Value](item) for _, item in sorted(conflicts.items())]
    return merged


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
    for item in cast(list[list[Value]], outcome.get("conflicts", [])):
        if not wanted or item[1] in wanted:
            lines.append(
                f"local override #{item[0]} of {item[1]}: a conflict "
                f"(the server changed it too, to another value)"
            )
    return lines
