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

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, cast

from edgecfg.core.hlc import DEFAULT_MAX_DRIFT_MS, Timestamp
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.journal import JournalEntry
from edgecfg.core.layers import Layer, layer_from_document, local_layer
from edgecfg.core.merge import Resolution, merge
from edgecfg.core.path import Path, format_path, is_prefix
from edgecfg.core.tree import UNSET, Tree, UnsetType, Value, get, is_map
from edgecfg.errors import PeerError, WriteRefused
from edgecfg.fleet.fleet import Fleet
from edgecfg.store import MergeRecord
from edgecfg.wire.cbor import decode, encode
from edgecfg.wire.journal import entry_from_value

MAX_ENTRIES: Final = 4096


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
    max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
    change_times: ChangeTimes | None = None,
) -> Value:
    """Merge a report's journal; returns the outcome's CBOR form (see module docstring).

    An entry stamped more than ``max_drift_ms`` ahead of ``now`` is refused
    with the reason in the outcome (an HLC bounds the drift it accepts, as
    :func:`edgecfg.core.hlc.receive` does): a device whose clock runs years
    ahead must not win every last-writer-wins merge.  ``change_times`` (the
    gateway keeps one) answers when the server last changed a key without
    reading layer histories again.
    """
    entries = journal_entries(raw_journal)
    acknowledged = acknowledged_sequence(fleet, device)
    fresh = sorted((e for e in entries if e.sequence > acknowledged), key=lambda e: e.sequence)
    if not fresh:  # a replay, or a report that crossed an answer: nothing new to apply
        stored = fleet.store.get_merge(device)
        if stored is not None:
            return decode(stored.outcome)
        return {"ack": acknowledged, "accepted": [], "rejected": [], "conflicts": []}
    ours: dict[Path, JournalEntry] = {}
    for entry in fresh:
        ours[entry.path] = entry  # the latest per path
    layer_id = local_layer(device)
    theirs = _server_config(fleet, device, layer_id)
    now_ms = int(now * 1000)
    ahead = {
        path: entry for path, entry in ours.items()
        if not isinstance(entry.value, UnsetType) and entry.at.wall_ms - now_ms > max_drift_ms
    }  # fmt: skip
    ours = {path: entry for path, entry in ours.items() if path not in ahead}
    times = change_times if change_times is not None else ChangeTimes(fleet)
    result = merge(
        # an unknown base (never synced, or a version the gateway no longer has):
        # every server value counts as changed, so server-wins keeps the server's
        base if base is not None else {},
        theirs,
        ours,
        schema=fleet.schema,
        server_changed_at=times.for_device(device, _needs_time(fleet, ours)),
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
    resolutions += [
        _too_far_ahead(fleet, entry, theirs, base, now_ms=now_ms, max_drift_ms=max_drift_ms)
        for entry in ahead.values()
    ]
    resolutions.sort(key=lambda r: r.sequence)
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
    kept = _accumulate(last_outcome(fleet, device), value)  # a long journal comes in chunks
    fleet.store.put_merge(MergeRecord(device, outcome.acknowledged, encode(kept)))
    return value


def acknowledged_sequence(fleet: Fleet, device: DeviceId) -> int:
    """The highest journal sequence of ``device`` the gateway has merged."""
    merge = fleet.store.get_merge(device)
    return merge.acknowledged if merge is not None else 0


def last_outcome(fleet: Fleet, device: DeviceId) -> Value | None:
    """The stored answer to the device's last journal (for ``explain``)."""
    merge = fleet.store.get_merge(device)
    return decode(merge.outcome) if merge is not None else None


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


def _too_far_ahead(
    fleet: Fleet, entry: JournalEntry, theirs: Tree, base: Tree | None, *, now_ms: int,
    max_drift_ms: int,
) -> Resolution:  # fmt: skip
    """The refusal of an entry stamped beyond the drift bound."""
    spec = fleet.schema.keys.get(entry.path) if fleet.schema is not None else None
    reason = (
        f"timestamp {entry.at.wall_ms} ms is {(entry.at.wall_ms - now_ms) / 1000:.0f} s ahead "
        f"of the gateway's clock; at most {max_drift_ms / 1000:.0f} s is accepted"
    )
    return Resolution(
        path=entry.path,
        local=cast(Value, entry.value),
        server=get(theirs, entry.path),
        base=get(base, entry.path) if base is not None else UNSET,
        policy=spec.merge if spec is not None else "server-wins",
        outcome="rejected",
        reason=reason,
        conflict=False,
        sequence=entry.sequence,
        at=entry.at,
    )


class ChangeTimes:
    """When the server last changed each path, per layer: an index kept up to
    date from each layer's new revisions only (the last-writer-wins merge
    asked the whole history of every layer, on every report).

    Per layer it holds, for every path the layer ever said something at (a
    value, a tombstone, a lock), the time of the newest revision that changed
    it; what a layer says about a path changed when any of those at, above
    or below the path did.  At most ``layers`` layers are indexed (least
    recently used dropped; rebuilt from their history when asked again).
    """

    def __init__(self, fleet: Fleet, *, layers: int = 4096) -> None:
        self.fleet = fleet
        self.layers = layers
        self._index: OrderedDict[LayerId, _LayerTimes] = OrderedDict()
        self.decoded = 0  # revisions read so far (the cost this index saves)

    def for_device(self, device: DeviceId, paths: Sequence[Path]) -> dict[Path, Timestamp]:
        """When the server last changed each of ``paths`` for ``device``.

        The time of the newest revision, among the device's layers (its local
        layer aside), that changed what the layer says about the path.  A
        rewrite that leaves the path as it was does not count.  Paths no layer
        ever touched are left out (the merge then decides by "changed since
        base").
        """
        if not paths:
            return {}
        facts = self.fleet.device(device)
        newest: dict[Path, float] = {}
        for tier in self.fleet.resolver.tiers(facts):
            for layer_id in tier:
                if layer_id.startswith("local/"):
                    continue
                index = self._layer(layer_id)
                for path in paths:
                    at = index.changed_at(path)
                    if at is not None:
                        newest[path] = max(newest.get(path, 0.0), at)
        return {path: Timestamp(int(at * 1000), 0, "gateway") for path, at in newest.items()}

    def _layer(self, layer_id: LayerId) -> _LayerTimes:
        index = self._index.get(layer_id)
        if index is None:
            index = _LayerTimes()
            self._index[layer_id] = index
            while len(self._index) > self.layers:
                self._index.popitem(last=False)
        else:
            self._index.move_to_end(layer_id)
        head = self.fleet.head(layer_id)
        if head is None or head.revision <= index.revision:
            return index
        for revision in self.fleet.history(layer_id):  # oldest first; only new ones read
            if revision.revision <= index.revision:
                continue
            blob = self.fleet.store.get_blob(revision.content)
            index.add(layer_from_document(decode(blob)), revision.revision, revision.created_at)
            self.decoded += 1
        return index


class _LayerTimes:
    __slots__ = ("revision", "said", "times")

    def __init__(self) -> None:
        self.revision = 0
        self.said: dict[Path, bytes] = {}
        self.times: dict[Path, float] = {}

    def add(self, layer: Layer, revision: int, at: float) -> None:
        said = _entries(layer)
        for path in said.keys() | self.said.keys():
            if said.get(path) != self.said.get(path):
                self.times[path] = at
        self.said, self.revision = said, revision

    def changed_at(self, path: Path) -> float | None:
        related = [at for p, at in self.times.items() if is_prefix(p, path) or is_prefix(path, p)]
        return max(related, default=None)


def _entries(layer: Layer) -> dict[Path, bytes]:
    """What a layer says, per path (a value, a tombstone, a lock; a path may
    carry a value and a lock at once)."""
    said: dict[Path, bytes] = {}
    for path, value in layer.sets.items():
        said[path] = b"s" + encode(value)
    for path in layer.unsets:
        said[path] = said.get(path, b"") + b"u"
    for path in layer.locks:
        said[path] = said.get(path, b"") + b"l"
    return said


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
