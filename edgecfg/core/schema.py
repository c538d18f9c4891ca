"""Configuration schemas: what each path may hold, and how it behaves.

A :class:`Schema` is versioned and maps paths to :class:`KeySpec` entries.
Every entry carries a stable small integer ``id`` (like a YANG SID, RFC 9254):
once a schema version has given an id to a path, no later version may give
that id to another path or give that path another id (:func:`check_evolution`).
A key may be renamed by declaring ``renamed_from``; it keeps its id.

Schemas are built from plain documents (:func:`schema_from_document`), which
the ``wire`` layer reads from JSON, TOML or YAML.  Document layout::

    {"name": "sensor", "version": 3,
     "keys": {"net.uplink.interval_s": {"id": 12, "type": "int", "default": 300,
                                        "min": 10, "max": 86400, "unit": "s", ...}},
     "retired": {"old.path": 7}}

Key fields: ``id``, ``type`` (:data:`TYPES`), ``default``, ``min``/``max``
(numbers; for str, bytes and arrays they bound the length), ``enum``,
``pattern`` (str), ``items`` (element type of an array), ``unit``,
``description``, ``priority`` (:data:`PRIORITIES`), ``required``,
``local`` (``{"allowed": true, "min": .., "max": .., "enum": [..]}``),
``merge`` (:data:`MERGE_POLICIES`), ``agent`` and ``firmware`` (version
ranges, :mod:`edgecfg.core.versions`), ``hardware`` (list of models),
``renamed_from`` (previous path).  A ``map`` key holds a free-form subtree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, cast, get_args

from edgecfg.core.path import Path, format_path, is_prefix
from edgecfg.core.tree import (
    UNSET,
    Tree,
    Value,
    flatten,
    is_map,
    put_checked_value,
    set_value,
    values_equal,
    walk_leaves,
)
from edgecfg.core.versions import ANY_VERSION, VersionRange
from edgecfg.errors import PathError, SchemaError, Violation, show_value

TypeName = Literal["int", "float", "number", "bool", "str", "bytes", "array", "map", "any"]
Priority = Literal["critical", "normal", "bulk"]
MergePolicy = Literal["server-wins", "device-wins-within-bounds", "max", "min", "last-writer-wins"]

TYPES: Final[tuple[TypeName, ...]] = get_args(TypeName)
PRIORITIES: Final[tuple[Priority, ...]] = get_args(Priority)
MERGE_POLICIES: Final[tuple[MergePolicy, ...]] = get_args(MergePolicy)
SCALAR_TYPES: Final = frozenset({"int", "float", "number", "bool", "str", "bytes", "any"})


@dataclass(frozen=True, slots=True)
class LocalPolicy:
    """May a device change this key offline, and within which bounds."""

    allowed: bool = False
    min: int | float | None = None
    max: int | float | None = None
    enum: tuple[Value, ...] | None = None


@dataclass(frozen=True, slots=True)
class KeySpec:
    """Everything the schema says about one path."""

    path: Path
    id: int
    type: TypeName
    default: Value | object = UNSET
    min: int | float | None = None
    max: int | float | None = None
    enum: tuple[Value, ...] | None = None
    pattern: str | None = None
    items: TypeName | None = None
    unit: str | None = None
    description: str = ""
    priority: Priority = "normal"
    required: bool = False
    nullable: bool = False
    local: LocalPolicy = field(default_factory=LocalPolicy)
    merge: MergePolicy = "server-wins"
    agent: VersionRange = ANY_VERSION
    firmware: VersionRange = ANY_VERSION
    hardware: frozenset[str] | None = None
    renamed_from: Path | None = None
    tunable: bool = False
    step: int | float | None = None

    @property
    def dotted(self) -> str:
        """The path in dotted text form."""
        return format_path(self.path)

    def check(self, value: Value) -> list[str]:
        """Every rule ``value`` breaks, as 'expected ...' texts (empty when valid)."""
        if value is None and self.nullable:
            return []
        problems = type_problems(self.type, value, self.items)
        if problems:
            return problems
        if self.enum is not None and not any(_same(value, allowed) for allowed in self.enum):
            return [f"one of {show_value(list(self.enum))}"]
        return bound_problems(value, self.min, self.max) + self._pattern_problems(value)

    def _pattern_problems(self, value: Value) -> list[str]:
        if (
            self.pattern is not None
            and isinstance(value, str)
            and re.fullmatch(self.pattern, value) is None
        ):
            return [f"text matching /{self.pattern}/"]
        return []

    def check_local(self, value: Value) -> list[str]:
        """Rules a *local override* of ``value`` breaks, each naming the rule
        that set it: the policy, then the key's type, then the allowed
        values and bounds that actually apply, i.e. the tighter of the key's
        own (``(schema)``) and the local-override policy's
        (``(local-override policy)``), then the key's pattern."""
        if not self.local.allowed:
            return ["no local override (policy: local changes not allowed)"]
        if value is None and self.nullable:
            return _local_enum_problems(value, None, self.local.enum)
        problems = type_problems(self.type, value, self.items)
        if problems:
            return problems
        problems = _local_enum_problems(value, self.enum, self.local.enum)
        if problems:
            return problems
        (low, low_by), (high, high_by) = self.local_bounds()
        problems = [f"{p} ({low_by})" for p in bound_problems(value, low, None)]
        problems = problems or [f"{p} ({high_by})" for p in bound_problems(value, None, high)]
        return problems or self._pattern_problems(value)

    def local_bounds(self) -> tuple[tuple[int | float | None, str], tuple[int | float | None, str]]:
        """The lower and upper bound a *local* value must keep, each with the
        rule that sets it: the tighter of the key's own (``schema``) and the
        local-override policy's (``local-override policy``); None: unbounded."""
        return (
            _tighter(self.min, self.local.min, max),
            _tighter(self.max, self.local.max, min),
        )

    def applies_to(
        self,
        *,
        hardware: str | None = None,
        firmware: str | None = None,
        agent_version: str | None = None,
    ) -> str | None:
        """None when the key applies to such a device, else the reason it does not."""
        if self.hardware is not None and hardware is not None and hardware not in self.hardware:
            return f"hardware {hardware!r} not in {sorted(self.hardware)}"
        if firmware is not None and not self.firmware.admits(firmware):
            return f"firmware {firmware} outside {self.firmware}"
        if agent_version is not None and not self.agent.admits(agent_version):
            return f"agent {agent_version} outside {self.agent}"
        return None


def _same(a: Value, b: Value) -> bool:
    # enum membership uses model equality but lets JSON's 1 match 1.0 for numbers
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return values_equal(a, b)
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b and type(a) in (type(b), int, float) and type(b) in (type(a), int, float)


_KEY_RULE: Final = "schema"
_LOCAL_RULE: Final = "local-override policy"


def _tighter(
    key: int | float | None,
    local: int | float | None,
    pick: Callable[[int | float, int | float], int | float],
) -> tuple[int | float | None, str]:
    """The bound that applies (``pick`` is max for minimums, min for maximums)
    and the rule that set it; the local policy's on a tie."""
    if local is None:
        return key, _KEY_RULE
    if key is None or pick(key, local) == local:
        return local, _LOCAL_RULE
    return key, _KEY_RULE


def _local_enum_problems(
    value: Value, allowed: tuple[Value, ...] | None, local: tuple[Value, ...] | None
) -> list[str]:
    """The allowed values that apply: the local policy's (those the key allows too)."""
    if local is not None:
        both = [a for a in local if allowed is None or any(_same(a, b) for b in allowed)]
        if not any(_same(value, a) for a in both):
            return [f"one of {show_value(both)} ({_LOCAL_RULE})"]
        return []
    if allowed is not None and not any(_same(value, a) for a in allowed):
        return [f"one of {show_value(list(allowed))} ({_KEY_RULE})"]
    return []


def type_problems(kind: TypeName, value: Value, items: TypeName | None) -> list[str]:
    if kind == "any":
        return []
    if kind == "array":
        if not isinstance(value, list):
            return [f"array of {items or 'any'}"]
        if items is None:
            return []
        for index, element in enumerate(value):
            if type_problems(items, element, None):
                return [f"array of {items} (element {index} is {type(element).__name__})"]
        return []
    ok = {
        "int": type(value) is int,
        "float": type(value) is float,
        "number": type(value) in (int, float),
        "bool": type(value) is bool,
        "str": type(value) is str,
        "bytes": type(value) is bytes,
        "map": is_map(value),
    }[kind]
    return [] if ok else [kind]


def bound_problems(value: Value, low: int | float | None, high: int | float | None) -> list[str]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        measure: int | float = value
        what = ""
        if isinstance(value, float) and math.isnan(value):
            return ["a number, not NaN"] if low is not None or high is not None else []
    elif isinstance(value, str | bytes | list):
        measure = len(value)
        what = "length "
    else:
        return []
    if low is not None and measure < low:
        return [f"{what}>= {low}"]
    if high is not None and measure > high:
        return [f"{what}<= {high}"]
    return []


@dataclass(frozen=True, slots=True)
class Schema:
    """One version of a named schema."""

    name: str
    version: int
    keys: Mapping[Path, KeySpec]
    retired: Mapping[Path, int] = field(default_factory=lambda: {})
    _memo: dict[str, object] = field(
        default_factory=lambda: {}, init=False, repr=False, compare=False, hash=False
    )  # what is derived from the keys once (the schema never changes)

    def __post_init__(self) -> None:
        by_id: dict[int, Path] = {}
        for spec in self.keys.values():
            if spec.id in by_id:
                raise SchemaError(
                    f"id {spec.id} is used by both {format_path(by_id[spec.id])} and {spec.dotted}",
                    path=spec.dotted,
                )
            by_id[spec.id] = spec.path
        for path, key_id in self.retired.items():
            if key_id in by_id:
                raise SchemaError(
                    f"id {key_id} is retired (was {format_path(path)}) but reused by "
                    f"{format_path(by_id[key_id])}",
                    path=format_path(by_id[key_id]),
                )
        for path in self.keys:
            for depth in range(1, len(path)):
                parent = self.keys.get(path[:depth])
                if parent is not None and parent.type != "map":
                    raise SchemaError(
                        f"{parent.dotted} is a {parent.type} leaf but has child keys",
                        path=format_path(path),
                    )

    def __iter__(self) -> Iterator[KeySpec]:
        return iter(self.keys.values())

    def __len__(self) -> int:
        return len(self.keys)

    def spec(self, path: Path) -> KeySpec | None:
        """The spec governing ``path``: its own, or that of an enclosing free-form key.

        A ``map`` or ``any`` key governs everything below it.
        """
        spec = self.keys.get(path)
        if spec is not None:
            return spec
        for depth in range(len(path) - 1, 0, -1):
            parent = self.keys.get(path[:depth])
            if parent is not None and parent.type in ("map", "any"):
                return parent
        return None

    def by_id(self, key_id: int) -> KeySpec | None:
        """The spec with stable id ``key_id`` (None when unknown)."""
        return self._ids().get(key_id)

    def _ids(self) -> dict[int, KeySpec]:
        found = self._memo.get("ids")
        if found is None:
            found = self._memo["ids"] = {spec.id: spec for spec in self.keys.values()}
        return cast(dict[int, KeySpec], found)

    def default_paths(self) -> frozenset[Path]:
        """The leaf paths :meth:`defaults` sets (computed once)."""
        found = self._memo.get("default_paths")
        if found is None:
            found = self._memo["default_paths"] = frozenset(flatten(self.defaults()))
        return cast(frozenset[Path], found)

    def defaults(self) -> Tree:
        """A tree holding every declared default (DESIGN §4: the lowest layer)."""
        tree: Tree = {}
        for spec in sorted(self.keys.values(), key=lambda s: s.path):
            if spec.default is not UNSET:
                tree = set_value(tree, spec.path, cast(Value, spec.default))
        return tree

    def validate(
        self,
        tree: Mapping[str, Value],
        *,
        partial: bool = False,
        hardware: str | None = None,
        firmware: str | None = None,
    ) -> list[Violation]:
        """Every violation of this schema in ``tree``, each with path, value, expectation.

        With ``partial`` (a layer rather than a full config) missing required
        keys are not reported; with ``hardware``/``firmware``, required keys
        that do not apply to such a device are not either.
        """
        violations: list[Violation] = []
        for path, value in walk_leaves(tree):
            spec = self.spec(path)
            dotted = _dotted(path)
            if spec is None:
                if is_map(value) and any(is_prefix_of(path, p) for p in self.keys):
                    continue  # an empty map on the way to declared keys
                expected = f"a key declared by schema {self.name} v{self.version}"
                violations.append(Violation(dotted, value, expected))
                continue
            if spec.path != path:
                continue  # inside a free-form map key
            violations.extend(Violation(dotted, value, text) for text in spec.check(value))
        if not partial:
            for spec in self.keys.values():
                if (
                    spec.required
                    and spec.default is UNSET
                    and spec.applies_to(hardware=hardware, firmware=firmware) is None
                    and _absent(tree, spec.path)
                ):
                    violations.append(
                        Violation(spec.dotted, None, "a value (required key)", missing=True)
                    )
        return violations


def is_prefix_of(prefix: Path, path: Path) -> bool:
    """True when ``prefix`` is a proper ancestor of ``path``."""
    return len(prefix) < len(path) and path[: len(prefix)] == prefix


def _absent(tree: Mapping[str, Value], path: Path) -> bool:
    node: object = tree
    for key in path:
        if not is_map(node) or key not in node:
            return True
        node = node[key]
    return False


def _dotted(path: Path) -> str:
    try:
        return format_path(path)
    except PathError:
        return repr(path)


def translate(tree: Tree, schema: Schema, old: Schema) -> Tree:
    """``tree`` (valid under ``schema``) as an agent that speaks ``old`` sees
    it: keys matched by stable id, so a renamed key moves back to its old
    path and a key ``old`` lacks is left out; paths no key declares stay."""
    out: Tree = {}
    for path, value in flatten(tree).items():
        spec = schema.spec(path)
        if spec is None:
            out = put_checked_value(out, path, value)
            continue
        then = old.by_id(spec.id)
        if then is None:
            continue  # introduced after the agent's schema
        out = put_checked_value(out, then.path + path[len(spec.path) :], value)
    return out


def of_priority(tree: Tree, schema: Schema | None, priority: Priority) -> Tree:
    """The part of ``tree`` whose keys ``schema`` gives ``priority`` (nothing
    without a schema: a free-form fleet has no classes)."""
    subset: Tree = {}
    if schema is None:
        return subset
    for path, value in flatten(tree).items():
        spec = schema.spec(path)
        if spec is not None and spec.priority == priority:
            subset = put_checked_value(subset, path, value)
    return subset


def undeclared(schema: Schema, paths: Iterable[Path]) -> list[Path]:
    """The ``paths`` ``schema`` declares no key at, in or above (a path above
    a declared key names a map of the schema and is declared too)."""
    return [
        path
        for path in paths
        if schema.spec(path) is None and not any(is_prefix(path, spec.path) for spec in schema)
    ]


def value_problems(schema: Schema, sets: Mapping[Path, Value]) -> list[tuple[Path, str]]:
    """``(path, expected)`` for each value of ``sets`` its key's rules refuse
    (values set inside a map-typed key are that key's business)."""
    return [
        (path, text)
        for path, value in sets.items()
        if (spec := schema.spec(path)) is not None and spec.path == path
        for text in spec.check(value)
    ]
