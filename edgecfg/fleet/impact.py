"""Dry runs of layer edits: what an edit changes, and why it would be refused.

:meth:`edgecfg.fleet.fleet.Fleet.impact` computes an :class:`Impact`;
:func:`refuse` turns its findings into the errors a write raises (lock,
conflict, schema violation), each with a device count and an example.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import GLOBAL, Layer
from edgecfg.core.path import Path, format_path, is_prefix
from edgecfg.core.resolve import Explanation
from edgecfg.core.tree import UNSET, UnsetType, Value, values_equal
from edgecfg.errors import DirectiveConflict, FleetValidationError, LockViolation, Violation

SAMPLE: Final = 5
Effects = tuple["Value | UnsetType", "Value | UnsetType"]


@dataclass(frozen=True, slots=True)
class PathChange:
    """How one path changes on the devices an edit reaches."""

    path: Path
    devices: int
    example: DeviceId
    before: Value | UnsetType
    after: Value | UnsetType


@dataclass(frozen=True, slots=True)
class Impact:
    """What an edit of one layer would do (a dry run)."""

    layer: LayerId
    reached: int  # devices that inherit from the layer
    changed: int  # devices whose effective config would change
    sample: tuple[DeviceId, ...]
    changes: tuple[PathChange, ...]
    violations: tuple[tuple[Violation, int, DeviceId, LayerId | None], ...] = ()
    blocked: tuple[tuple[Path, Path, LayerId, int, DeviceId], ...] = ()
    conflicts: tuple[tuple[Path, tuple[LayerId, ...], int, DeviceId], ...] = ()
    locks_shadowing: int = 0  # overrides above that a new lock would now block


@dataclass(slots=True)
class Tally:
    """Devices counted for one finding, with the smallest id as the example."""

    count: int
    example: DeviceId
    detail: tuple[object, ...]

    def add(self, group: Sequence[DeviceId]) -> None:
        self.count += len(group)
        self.example = min(self.example, *group)


def tally(
    table: dict[object, Tally], key: object, group: Sequence[DeviceId], *detail: object
) -> None:
    entry = table.get(key)
    if entry is None:
        table[key] = Tally(len(group), min(group), detail)
    else:
        entry.add(group)


def lock_of(explanation: Explanation, touched: Path) -> tuple[Path, LayerId]:
    for lock, holder in explanation.locks:
        if is_prefix(lock, touched) or is_prefix(touched, lock):
            return lock, holder
    return touched, GLOBAL  # pragma: no cover - a blocked step always has its lock


def refuse(impact: Impact) -> None:
    if impact.blocked:
        touched, lock, holder, count, example = impact.blocked[0]
        raise LockViolation(
            f"{impact.layer}: {format_path(touched)} is locked by {holder} (lock on "
            f"{format_path(lock)}); refused for {count:,} device(s), e.g. {example}",
            devices=count,
            examples=[example],
        )
    if impact.conflicts:
        path, tied, count, example = impact.conflicts[0]
        raise DirectiveConflict(
            f"{impact.layer}: layers {', '.join(tied)} have equal precedence and would set "
            f"{format_path(path)} differently on {count:,} device(s), e.g. {example}; "
            "make them agree or change the dimension order",
            devices=count,
            examples=[example],
        )
    if impact.violations:
        violation, count, example, via = impact.violations[0]
        more = len(impact.violations) - 1
        raise FleetValidationError(
            f"{count:,} device(s) would violate {violation.path} (expected {violation.expected}"
            f", {'it would be missing' if violation.missing else f'got {violation.value!r}'}), "
            f"e.g. {example} via {via or 'defaults'}"
            + (f"; and {more} more rule(s)" if more else ""),
            devices=count,
            examples=[example],
        )


def changed_paths(old: Layer, new: Layer) -> frozenset[Path]:
    paths = set(old.unsets ^ new.unsets)
    for path in old.sets.keys() | new.sets.keys():
        if not values_equal(old.sets.get(path, UNSET), new.sets.get(path, UNSET)):
            paths.add(path)
    return frozenset(paths)
