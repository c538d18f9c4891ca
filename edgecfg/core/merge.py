"""Reconciling local overrides with the server on reconnect (issue 6, "Reconnect").

A three-way merge: ``base`` is the server configuration the device last
synced, ``theirs`` the server configuration now, ``ours`` the device's local
overrides (:meth:`edgecfg.core.journal.Journal.overrides`).  Each override is
decided on its own by the key's merge policy from the schema (server-wins
when there is no schema or the key declares none) and becomes a
:class:`Resolution`: accepted (the local value is effective) or rejected
(the server's value stays), with the reason in words.  The effective
configuration is ``theirs`` with the accepted overrides applied.

Checks that come before any policy, when a schema is given:

- a key the schema no longer declares, or no longer lets devices change
  (``local.allowed`` false), is rejected with the policy;
- a value outside the key's rules or its local bounds (they may have changed
  since the override was made) is rejected with the bound;
- a value equal to the server's (encoding equality) is accepted: nothing to
  decide.

Then, with *changed* meaning that the server's value differs from ``base``:

===========================  =====================================================
policy                       outcome
===========================  =====================================================
server-wins                  rejected when changed ("the server changed it"),
                             else accepted
device-wins-within-bounds    accepted (the bounds were checked above)
max / min                    the larger / smaller number wins; ties go to the
                             server; a non-number on either side falls back to
                             server-wins, saying so
last-writer-wins             the override's HLC against the server's change time
                             of the key (``server_changed_at``), comparing
                             ``(wall_ms, counter)``: newer wins, ties go to the
                             server.  Without a known time: rejected when
                             changed, else accepted.  One :class:`Timestamp` for
                             all keys is the change time of the keys that changed
===========================  =====================================================

An override that would otherwise be accepted is rejected when its path
cannot exist in the server's tree (the server holds ``a = 3``, the override
sets ``a.b``) or lies inside another override (``a`` and ``a.b``; a schema
never declares both).

A *conflict* is an override the server changed concurrently: changed, and
the local value differs from the server's.  Conflicts are listed in
:attr:`MergeResult.conflicts` as well as among the accepted or rejected.

Laws (tested): the result depends only on the inputs' contents, not on the
order of ``ours``; the effective tree is a fixed point (merging ``ours`` into
it again gives it back); accepting the outcome and merging again with base =
theirs accepts every kept override and changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from edgecfg.core.hlc import Timestamp
from edgecfg.core.journal import JournalEntry, describe_local_policy
from edgecfg.core.path import Path, format_path
from edgecfg.core.schema import KeySpec, MergePolicy, Schema
from edgecfg.core.tree import (
    UNSET,
    Tree,
    UnsetType,
    Value,
    get,
    is_map,
    put_checked_value,
    values_equal,
)
from edgecfg.errors import PathError, UsageError, show_value

Outcome = Literal["accepted", "rejected"]
ServerChangeTimes = Mapping[Path, Timestamp] | Timestamp | None


@dataclass(frozen=True, slots=True, eq=False)
class Resolution:
    """How one local override was decided.

    ``local`` is the override's value, ``server`` the server's current value
    and ``base`` the value at the last sync (``UNSET`` where absent);
    ``policy`` is the key's declared merge policy, ``reason`` says why in
    words; ``conflict`` is true when the server changed the key since
    ``base`` to something other than ``local``.
    """

    path: Path
    local: Value
    server: Value | UnsetType
    base: Value | UnsetType
    policy: MergePolicy
    outcome: Outcome
    reason: str
    conflict: bool
    sequence: int
    at: Timestamp

    def __hash__(self) -> int:
        return hash((self.path, self.sequence, self.outcome, self.reason))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Resolution):
            return NotImplemented
        return (
            self.path == other.path
            and values_equal(self.local, other.local)
            and values_equal(self.server, other.server)
            and values_equal(self.base, other.base)
            and (self.policy, self.outcome, self.reason, self.conflict)
            == (other.policy, other.outcome, other.reason, other.conflict)
            and (self.sequence, self.at) == (other.sequence, other.at)
        )

    @property
    def dotted(self) -> str:
        """The path in dotted text form."""
        return format_path(self.path)

    @property
    def effective(self) -> Value | UnsetType:
        """The value this resolution leaves at its path (unless an accepted
        override of an enclosing path replaced the whole subtree)."""
        return self.local if self.outcome == "accepted" else self.server

    def __str__(self) -> str:
        return (
            f"{self.dotted}: local {show_value(self.local)} {self.outcome} "
            f"(server {_show(self.server)}, {self.policy}): {self.reason}"
        )


@dataclass(frozen=True, slots=True, eq=False)
class MergeResult:
    """The effective configuration and every override's resolution, sorted by path."""

    effective: Tree
    accepted: tuple[Resolution, ...]
    rejected: tuple[Resolution, ...]
    conflicts: tuple[Resolution, ...]

    def __hash__(self) -> int:
        return hash((self.accepted, self.rejected))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MergeResult):
            return NotImplemented
        return values_equal(self.effective, other.effective) and (
            self.accepted,
            self.rejected,
            self.conflicts,
        ) == (other.accepted, other.rejected, other.conflicts)

    @property
    def resolutions(self) -> tuple[Resolution, ...]:
        """Accepted and rejected together, sorted by path."""
        return tuple(sorted((*self.accepted, *self.rejected), key=lambda item: item.path))

    def resolution(self, path: Path) -> Resolution | None:
        """The resolution of the override at ``path`` (None when there was none)."""
        return next((item for item in self.resolutions if item.path == path), None)


def merge(
    base: Tree,
    theirs: Tree,
    ours: Mapping[Path, JournalEntry],
    *,
    schema: Schema | None = None,
    server_changed_at: ServerChangeTimes = None,
) -> MergeResult:
    """Merge local overrides into the current server configuration (module docstring).

    ``ours`` maps each overridden path to its latest journal entry; entries
    that remove an override (``UNSET``) contribute nothing.  Raises
    :class:`UsageError` when a key of ``ours`` is not its entry's path.
    """
    effective = theirs
    accepted: list[Resolution] = []
    rejected: list[Resolution] = []
    overridden = {path for path, entry in ours.items() if not isinstance(entry.value, UnsetType)}
    for path in sorted(ours):
        entry = ours[path]
        if entry.path != path:
            raise UsageError(f"override keyed {_dotted(path)} holds an entry for {entry.dotted}")
        local = entry.value
        if isinstance(local, UnsetType):
            continue
        spec = schema.keys.get(path) if schema is not None else None
        resolution = _decide(
            entry,
            local,
            base=get(base, path),
            server=get(theirs, path),
            schema=schema,
            spec=spec,
            changed_at=server_changed_at,
        )
        if resolution.outcome == "accepted":
            obstacle = _obstacle(theirs, path, overridden)
            if obstacle is not None:
                resolution = replace(resolution, outcome="rejected", reason=obstacle)
        if resolution.outcome == "accepted":
            effective = put_checked_value(effective, path, local)
            accepted.append(resolution)
        else:
            rejected.append(resolution)
    resolved = sorted((*accepted, *rejected), key=lambda item: item.path)
    conflicts = tuple(item for item in resolved if item.conflict)
    return MergeResult(effective, tuple(accepted), tuple(rejected), conflicts)


def _decide(
    entry: JournalEntry,
    local: Value,
    *,
    base: Value | UnsetType,
    server: Value | UnsetType,
    schema: Schema | None,
    spec: KeySpec | None,
    changed_at: ServerChangeTimes,
) -> Resolution:
    policy: MergePolicy = spec.merge if spec is not None else "server-wins"
    changed = not values_equal(base, server)
    conflict = changed and not values_equal(local, server)

    def resolve(outcome: Outcome, reason: str) -> Resolution:
        return Resolution(
            entry.path, local, server, base, policy, outcome, reason, conflict,
            entry.sequence, entry.at,
        )  # fmt: skip

    if schema is not None:
        if spec is None:
            return resolve(
                "rejected",
                f"schema {schema.name} v{schema.version} does not declare this key; "
                "only declared keys take local overrides",
            )
        if not spec.local.allowed:
            return resolve(
                "rejected",
                "the schema does not allow local changes to this key "
                f"(policy: {describe_local_policy(spec)})",
            )
        problems = spec.check_local(local)
        if problems:
            return resolve(
                "rejected",
                f"outside the key's current bounds: expected {problems[0]} "
                f"(policy: {describe_local_policy(spec)})",
            )
    if values_equal(local, server):
        return resolve("accepted", "the server has the same value")
    if policy == "device-wins-within-bounds":
        assert spec is not None  # only a schema declares this policy
        return resolve("accepted", f"device wins within bounds ({describe_local_policy(spec)})")
    if policy in ("max", "min"):
        return _extreme(policy, local, server, base=base, changed=changed, resolve=resolve)
    if policy == "last-writer-wins":
        return _last_writer(
            entry.at, changed, _change_time(changed_at, entry.path, changed), resolve
        )
    return _server_wins(base, server, changed, resolve)


_Resolve = Callable[[Outcome, str], Resolution]


def _server_wins(
    base: Value | UnsetType, server: Value | UnsetType, changed: bool, resolve: _Resolve
) -> Resolution:
    if not changed:
        return resolve("accepted", "the server has not changed it since the last sync")
    if server is UNSET:
        return resolve("rejected", f"the server removed it since the last sync (was {_show(base)})")
    return resolve(
        "rejected",
        f"the server changed it since the last sync ({_show(base)} -> {_show(server)})",
    )


def _number(value: Value | UnsetType) -> int | float | None:
    """``value`` when it is a comparable number (int or float, not bool, not NaN)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and not math.isnan(value):
        return value
    return None


def _extreme(
    policy: Literal["max", "min"],
    local: Value,
    server: Value | UnsetType,
    *,
    base: Value | UnsetType,
    changed: bool,
    resolve: _Resolve,
) -> Resolution:
    mine, theirs = _number(local), _number(server)
    if mine is None or theirs is None:
        side, value = ("local", local) if mine is None else ("server", server)
        fallback = _server_wins(base, server, changed, resolve)
        return resolve(
            fallback.outcome,
            f"{policy} compares numbers, but the {side} value {_show(value)} is not one; "
            f"server-wins: {fallback.reason}",
        )
    word = "larger" if policy == "max" else "smaller"
    if mine == theirs:
        return resolve(
            "rejected",
            f"local {show_value(local)} ties with the server's {show_value(server)}; "
            "ties go to the server",
        )
    if (mine > theirs) == (policy == "max"):
        return resolve(
            "accepted",
            f"local {show_value(local)} is {word} than the server's {show_value(server)} "
            f"({policy})",
        )
    return resolve(
        "rejected",
        f"the server's {show_value(server)} is {word} than local {show_value(local)} ({policy})",
    )


def _last_writer(
    at: Timestamp, changed: bool, changed_at: Timestamp | None, resolve: _Resolve
) -> Resolution:
    if changed_at is None:
        if changed:
            return resolve(
                "rejected",
                "the server changed it at an unknown time; unknown times go to the server",
            )
        return resolve(
            "accepted",
            "the server has not written it since the last sync; the local write is the last",
        )
    if at.logical() > changed_at.logical():
        return resolve(
            "accepted", f"the local write at {at} is newer than the server's at {changed_at}"
        )
    if at.logical() == changed_at.logical():
        return resolve(
            "rejected",
            f"the local write at {at} ties with the server's at {changed_at}; "
            "ties go to the server",
        )
    return resolve(
        "rejected", f"the server's write at {changed_at} is newer than the local one at {at}"
    )


def _change_time(times: ServerChangeTimes, path: Path, changed: bool) -> Timestamp | None:
    """When the server last wrote ``path``, as far as ``times`` tells (None: unknown)."""
    if isinstance(times, Timestamp):
        # One time for the whole server version dates only the keys it changed.
        return times if changed else None
    if times is None:
        return None
    return times.get(path)


def _obstacle(theirs: Tree, path: Path, overridden: set[Path]) -> str | None:
    """Why an override at ``path`` cannot take effect whatever its policy, or None.

    Depends on ``theirs`` and the set of overridden paths only, never on other
    outcomes, so the merge stays order-independent and idempotent.
    """
    for depth in range(1, len(path)):
        if path[:depth] in overridden:
            return f"it lies inside the override of {_dotted(path[:depth])}; overrides do not nest"
    node: Tree = theirs
    for depth, key in enumerate(path[:-1]):
        child = node.get(key, UNSET)
        if child is UNSET:
            return None
        if not is_map(child):
            prefix = _dotted(path[: depth + 1])
            return f"the server holds a leaf at {prefix}, so {_dotted(path)} cannot exist"
        node = child
    return None


def _show(value: Value | UnsetType) -> str:
    return "absent" if value is UNSET else show_value(value)


def _dotted(path: Path) -> str:
    try:
        return format_path(path)
    except PathError:
        return repr(path)
