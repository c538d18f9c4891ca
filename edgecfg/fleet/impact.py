"""Dry runs of layer edits: what an edit changes, and why it would be refused.

:func:`dry_run` (and :meth:`edgecfg.fleet.fleet.Fleet.impact`) computes an
:class:`Impact`;
:func:`refuse` turns its findings into the errors a write raises (lock,
conflict, schema violation), each with a device count and an example.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, cast

from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import GLOBAL, Layer
from edgecfg.core.path import Path, format_path, is_prefix
from edgecfg.core.resolve import DeviceFacts, Explanation, Tiers
from edgecfg.core.schema import Schema, undeclared, value_problems
from edgecfg.core.tree import UNSET, UnsetType, Value, values_equal
from edgecfg.errors import (
    DirectiveConflict,
    FleetValidationError,
    LockViolation,
    Violation,
    show_value,
)

if TYPE_CHECKING:
    from edgecfg.fleet.fleet import Fleet, Signature

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


def schema_refusals(schema: Schema | None, layer_id: LayerId, layer: Layer) -> list[str]:
    """Why the schema refuses ``layer`` whatever devices it reaches: paths it
    does not declare, values outside its rules (a write raises the first; a
    dry run prints them all)."""
    if schema is None:
        return []
    refusals: list[str] = []
    for check in (check_known_paths, check_values):
        try:
            check(schema, layer_id, layer)
        except FleetValidationError as error:
            refusals.append(str(error))
    return refusals


def check_known_paths(schema: Schema, layer_id: LayerId, layer: Layer) -> None:
    unknown = undeclared(schema, (*layer.sets, *layer.unsets, *layer.locks))
    if unknown:
        shown = ", ".join(format_path(p) for p in sorted(unknown)[:SAMPLE])
        raise FleetValidationError(
            f"{layer_id}: {len(unknown)} path(s) not declared by schema {schema.name} "
            f"v{schema.version}: {shown}"
        )


def check_values(schema: Schema, layer_id: LayerId, layer: Layer) -> None:
    problems = value_problems(schema, layer.sets)
    if problems:
        path, text = problems[0]
        got = show_value(layer.sets[path])
        raise FleetValidationError(
            f"{layer_id}: {format_path(path)}: expected {text}, got {got}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        )


def changed_paths(old: Layer, new: Layer) -> frozenset[Path]:
    paths = set(old.unsets ^ new.unsets)
    for path in old.sets.keys() | new.sets.keys():
        if not values_equal(old.sets.get(path, UNSET), new.sets.get(path, UNSET)):
            paths.add(path)
    return frozenset(paths)


def dry_run(fleet: Fleet, layer_id: LayerId, new: Layer) -> Impact:
    """What replacing ``layer_id`` with ``new`` would change, violate or break.

    Per touched leaf path, signatures are grouped by the layers in their
    stacks that have any say on that path (and by whether the path is
    dropped for their hardware): members of a group get the same answer,
    so one walk per group decides for all of them.
    """
    fleet.hold_all_layers()
    old = fleet.resolver.layer(layer_id)
    changed_ops = changed_paths(old, new)
    lock_changes = old.locks ^ new.locks
    candidates = _candidates(fleet.known_leaves(), changed_ops | lock_changes)
    devices = fleet.reached_by(layer_id)
    members = fleet.members()
    by_signature: dict[Signature, list[DeviceId]] = {}
    for device in devices:
        by_signature.setdefault(members.by_device[device], []).append(device)
    changed_signatures: set[Signature] = set()
    changes: dict[object, Tally] = {}
    violations: dict[object, Tally] = {}
    blocked: dict[object, Tally] = {}
    conflicts: dict[object, Tally] = {}
    shadowed = 0
    override = (layer_id, new)
    for path in candidates:
        speaking = fleet.resolver.layers_speaking_on(path, also=new) | {layer_id}
        classes: dict[object, list[Signature]] = {}
        for signature in by_signature:
            tiers, applicability = signature
            say = tuple(t for t in (tuple(i for i in tier if i in speaking) for tier in tiers) if t)
            key = (say, fleet.resolver.drop_reason(applicability, path))
            classes.setdefault(key, []).append(signature)
        for signatures in classes.values():
            group = [device for signature in signatures for device in by_signature[signature]]
            facts = members.facts[by_signature[signatures[0]][0]]
            tiers = _with_layer(signatures[0][0], layer_id)
            before = fleet.resolver.explain_leaf(facts, path, tiers=signatures[0][0])
            after = fleet.resolver.explain_leaf(facts, path, tiers=tiers, override=override)
            if not values_equal(before.value, after.value):
                changed_signatures.update(signatures)
                tally(changes, path, group, before.value, after.value)
                _validate_change(
                        fleet.schema, path, after=after, facts=facts, group=group,
                        violations=violations,
                    )  # fmt: skip
            for step in after.steps:
                if step.layer != layer_id or step.touched not in changed_ops:
                    continue
                if step.status == "blocked":
                    lock, holder = lock_of(after, step.touched)
                    tally(blocked, (step.touched, lock, holder), group)
                elif step.status == "conflict":
                    tied = tuple(s.layer for s in after.steps if s.status == "conflict")
                    tally(conflicts, (path, tied), group)
            if path in new.locks or any(is_prefix(lock, path) for lock in lock_changes):
                shadowed += len(group) * sum(
                    1 for s in after.steps if s.status == "blocked" and s.layer != layer_id
                )
    changed = [device for signature in changed_signatures for device in by_signature[signature]]
    return Impact(
        layer=layer_id,
        reached=len(devices),
        changed=len(changed),
        sample=tuple(sorted(changed)[:SAMPLE]),
        changes=tuple(
            PathChange(cast(Path, path), t.count, t.example, *cast(Effects, t.detail))
            for path, t in sorted(changes.items(), key=lambda item: cast(Path, item[0]))
        ),
        violations=tuple(
            (
                cast(Violation, t.detail[0]),
                t.count,
                t.example,
                cast(LayerId | None, t.detail[1]),
            )
            for t in violations.values()
        ),
        blocked=tuple(
            (*cast(tuple[Path, Path, LayerId], key), t.count, t.example)
            for key, t in blocked.items()
        ),
        conflicts=tuple(
            (*cast(tuple[Path, tuple[LayerId, ...]], key), t.count, t.example)
            for key, t in conflicts.items()
        ),
        locks_shadowing=shadowed,
    )


def _candidates(known: Sequence[Path], touched: Iterable[Path]) -> list[Path]:
    """Leaf paths an edit at ``touched`` can change: the paths themselves and
    every known leaf below them (schema defaults and all layers' values)."""
    found: set[Path] = set()
    for path in touched:
        found.add(path)
        at = bisect.bisect_left(known, path)
        while at < len(known) and is_prefix(path, known[at]):
            found.add(known[at])
            at += 1
    # a leaf that has leaves below it is a map somewhere: its leaves speak for it
    return sorted(p for p in found if not any(q != p and is_prefix(p, q) for q in found))


def _validate_change(
    schema: Schema | None,
    path: Path,
    *,
    after: Explanation,
    facts: DeviceFacts,
    group: list[DeviceId],
    violations: dict[object, Tally],
) -> None:
    if schema is None:
        return
    spec = schema.spec(path)
    if spec is None or spec.path != path:
        return
    if after.value is UNSET:
        applies = spec.applies_to(hardware=facts.hardware, firmware=facts.firmware) is None
        if spec.required and applies:
            violation = Violation(spec.dotted, None, "a value (required key)", missing=True)
            tally(violations, (spec.dotted, violation.expected), group, violation, after.source)
        return
    assert not isinstance(after.value, UnsetType)
    for text in spec.check(after.value):
        violation = Violation(spec.dotted, after.value, text)
        tally(violations, (spec.dotted, text), group, violation, after.source)


def _with_layer(tiers: Tiers, layer_id: LayerId) -> Tiers:
    """The tiers with ``layer_id`` present (a device's own layer, written first now)."""
    if any(layer_id in tier for tier in tiers):
        return tiers
    if layer_id.startswith("local/"):
        return (*tiers, (layer_id,))
    if not layer_id.startswith("device/"):
        return tiers
    local = [tier for tier in tiers if tier[0].startswith("local/")]
    rest = tuple(tier for tier in tiers if not tier[0].startswith("local/"))
    return (*rest, (layer_id,), *local)
