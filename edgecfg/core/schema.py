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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar, cast, get_args

from edgecfg.core.path import Path, format_path, parse_path
from edgecfg.core.tree import (
    UNSET,
    Tree,
    Value,
    check_model,
    is_map,
    set_value,
    values_equal,
    walk_leaves,
)
from edgecfg.core.versions import ANY_VERSION, VersionRange
from edgecfg.errors import ModelError, PathError, SchemaError, UsageError, Violation

TypeName = Literal["int", "float", "number", "bool", "str", "bytes", "array", "map", "any"]
Priority = Literal["critical", "normal", "bulk"]
MergePolicy = Literal["server-wins", "device-wins-within-bounds", "max", "min", "last-writer-wins"]

TYPES: Final[tuple[TypeName, ...]] = get_args(TypeName)
PRIORITIES: Final[tuple[Priority, ...]] = get_args(Priority)
MERGE_POLICIES: Final[tuple[MergePolicy, ...]] = get_args(MergePolicy)
_T = TypeVar("_T", bound=str)
SCALAR_TYPES: Final = frozenset({"int", "float", "number", "bool", "str", "bytes", "any"})

_KEY_FIELDS: Final = frozenset(
    {
        "id", "type", "default", "min", "max", "enum", "pattern", "items", "unit",
        "description", "priority", "required", "local", "merge", "agent", "firmware",
        "hardware", "renamed_from", "nullable",
    }
)  # fmt: skip
_LOCAL_FIELDS: Final = frozenset({"allowed", "min", "max", "enum"})


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

    @property
    def dotted(self) -> str:
        """The path in dotted text form."""
        return format_path(self.path)

    def check(self, value: Value) -> list[str]:
        """Every rule ``value`` breaks, as 'expected ...' texts (empty when valid)."""
        if value is None and self.nullable:
            return []
        problems = _type_problems(self.type, value, self.items)
        if problems:
            return problems
        if self.enum is not None and not any(_same(value, allowed) for allowed in self.enum):
            return [f"one of {list(self.enum)!r}"]
        return _bound_problems(value, self.min, self.max) + self._pattern_problems(value)

    def _pattern_problems(self, value: Value) -> list[str]:
        if (
            self.pattern is not None
            and isinstance(value, str)
            and re.fullmatch(self.pattern, value) is None
        ):
            return [f"text matching /{self.pattern}/"]
        return []

    def check_local(self, value: Value) -> list[str]:
        """Rules a *local override* of ``value`` breaks (policy first, then bounds)."""
        if not self.local.allowed:
            return ["no local override (policy: local changes not allowed)"]
        problems = self.check(value)
        if problems:
            return problems
        if self.local.enum is not None and not any(_same(value, a) for a in self.local.enum):
            return [f"one of {list(self.local.enum)!r} (local-override policy)"]
        return [f"{p} (local-override policy)" for p in
                _bound_problems(value, self.local.min, self.local.max)]  # fmt: skip

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


def _type_problems(kind: TypeName, value: Value, items: TypeName | None) -> list[str]:
    if kind == "any":
        return []
    if kind == "array":
        if not isinstance(value, list):
            return [f"array of {items or 'any'}"]
        if items is None:
            return []
        for index, element in enumerate(value):
            if _type_problems(items, element, None):
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


def _bound_problems(value: Value, low: int | float | None, high: int | float | None) -> list[str]:
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
        return {spec.id: spec for spec in self.keys.values()}

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


# ---------------------------------------------------------------- documents


def schema_from_document(doc: Mapping[str, object]) -> Schema:
    """Build a :class:`Schema` from a plain document (see the module docstring).

    Raises :class:`SchemaError` naming the key and field for every mistake found
    first: unknown fields, wrong types, a default that breaks its own rules,
    bounds that contradict each other, duplicate ids.
    """
    name = doc.get("name")
    version = doc.get("version")
    if not isinstance(name, str) or not name:
        raise SchemaError("schema needs a non-empty text 'name'")
    if type(version) is not int or version < 1:
        raise SchemaError("schema needs an integer 'version' >= 1")
    raw_keys = doc.get("keys")
    if not isinstance(raw_keys, Mapping) or not raw_keys:
        raise SchemaError("schema needs a non-empty 'keys' map of path -> spec")
    keys: dict[Path, KeySpec] = {}
    for dotted, raw in cast(Mapping[object, object], raw_keys).items():
        if not isinstance(dotted, str):
            raise SchemaError(f"key path {dotted!r} is not text")
        try:
            path = parse_path(dotted)
        except PathError as error:
            raise SchemaError(str(error), path=dotted) from None
        if not isinstance(raw, Mapping):
            raise SchemaError("key spec must be a map", path=dotted)
        keys[path] = _key_from_document(path, cast(Mapping[str, object], raw))
    retired: dict[Path, int] = {}
    raw_retired = doc.get("retired", {})
    if not isinstance(raw_retired, Mapping):
        raise SchemaError("'retired' must map old paths to their ids")
    for dotted, key_id in cast(Mapping[object, object], raw_retired).items():
        if not isinstance(dotted, str) or type(key_id) is not int:
            raise SchemaError(f"retired entry {dotted!r}: {key_id!r} must be path -> int id")
        retired[_parse(dotted, "retired path")] = key_id
    unknown = set(doc) - {"name", "version", "keys", "retired", "description"}
    if unknown:
        raise SchemaError(f"unknown schema fields {sorted(unknown)}")
    return Schema(name, version, keys, retired)


def _key_from_document(path: Path, raw: Mapping[str, object]) -> KeySpec:
    where = format_path(path)
    unknown = set(raw) - _KEY_FIELDS
    if unknown:
        raise SchemaError(f"unknown fields {sorted(unknown)}", path=where)
    key_id = raw.get("id")
    if type(key_id) is not int or not 0 <= key_id < 2**32:
        raise SchemaError("'id' must be an integer in [0, 2**32)", path=where)
    kind: TypeName = _choice(raw, "type", TYPES, None, where)
    items = raw.get("items")
    if items is not None and (
        kind != "array" or not isinstance(items, str) or items not in SCALAR_TYPES
    ):
        raise SchemaError("'items' is only for arrays and must be a scalar type", path=where)
    spec = KeySpec(
        path=path,
        id=key_id,
        type=kind,
        default=_model(raw["default"], where) if "default" in raw else UNSET,
        min=_number(raw.get("min"), "min", where),
        max=_number(raw.get("max"), "max", where),
        enum=_enum(raw.get("enum"), where),
        pattern=_pattern(raw.get("pattern"), where),
        items=cast(TypeName | None, items),
        unit=_text(raw.get("unit"), "unit", where),
        description=_text(raw.get("description"), "description", where) or "",
        priority=_choice(raw, "priority", PRIORITIES, "normal", where),
        required=_flag(raw.get("required"), "required", where),
        nullable=_flag(raw.get("nullable"), "nullable", where),
        local=_local(raw.get("local"), where),
        merge=_choice(raw, "merge", MERGE_POLICIES, "server-wins", where),
        agent=_range(raw.get("agent"), "agent", where),
        firmware=_range(raw.get("firmware"), "firmware", where),
        hardware=_hardware(raw.get("hardware"), where),
        renamed_from=_renamed_from(raw.get("renamed_from"), where),
    )
    _check_consistency(spec)
    return spec


def _parse(dotted: str, what: str) -> Path:
    try:
        return parse_path(dotted)
    except PathError as error:
        raise SchemaError(f"{what}: {error}", path=dotted) from None


def _renamed_from(value: object, where: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SchemaError(f"'renamed_from' must be the old path as text, got {value!r}", path=where)
    return _parse(value, "'renamed_from'")


def _check_consistency(spec: KeySpec) -> None:
    where = spec.dotted
    if spec.min is not None and spec.max is not None and spec.min > spec.max:
        raise SchemaError(f"min {spec.min} > max {spec.max}", path=where)
    for member in spec.enum or ():
        problems = _type_problems(spec.type, member, spec.items)
        numeric = spec.type in ("int", "float") and type(member) in (int, float)
        if problems and not numeric and not (member is None and spec.nullable):
            raise SchemaError(
                f"enum member {member!r} is not a {problems[0]}: no value could match it",
                path=where,
            )
    if spec.default is not UNSET:
        problems = spec.check(cast(Value, spec.default))
        if problems:
            raise SchemaError(
                f"default {spec.default!r} breaks its own rule: expected {problems[0]}",
                path=where,
            )
    local = spec.local
    if local.allowed:
        for bound, name in ((local.min, "local.min"), (local.max, "local.max")):
            if bound is not None and _bound_problems(bound, spec.min, spec.max):
                raise SchemaError(
                    f"{name} {bound} lies outside the key's bounds [{spec.min}, {spec.max}]",
                    path=where,
                )
        if local.min is not None and local.max is not None and local.min > local.max:
            raise SchemaError(f"local.min {local.min} > local.max {local.max}", path=where)
        for allowed in local.enum or ():
            problems = spec.check(allowed)
            if problems:
                raise SchemaError(
                    f"local.enum value {allowed!r} breaks the key's rule: expected {problems[0]}",
                    path=where,
                )
    if spec.merge == "device-wins-within-bounds" and not local.allowed:
        raise SchemaError(
            "merge policy device-wins-within-bounds needs local.allowed = true", path=where
        )


def _choice(
    raw: Mapping[str, object], name: str, allowed: tuple[_T, ...], default: _T | None, where: str
) -> _T:
    value = raw.get(name, default)
    if value not in allowed:
        raise SchemaError(f"'{name}' must be one of {list(allowed)}, got {value!r}", path=where)
    return cast(_T, value)


def _model(value: object, where: str, field: str = "default") -> Value:
    try:
        return check_model(value)
    except ModelError as error:
        message = f"{field} is not a configuration value: {error.reason}"
        raise SchemaError(message, path=where) from None


def _number(value: object, name: str, where: str) -> int | float | None:
    if value is None:
        return None
    if type(value) not in (int, float) or (isinstance(value, float) and math.isnan(value)):
        raise SchemaError(f"'{name}' must be a number, got {value!r}", path=where)
    return cast(int | float, value)


def _text(value: object, name: str, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise SchemaError(f"'{name}' must be text, got {value!r}", path=where)
    return value


def _flag(value: object, name: str, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise SchemaError(f"'{name}' must be true or false, got {value!r}", path=where)
    return value


def _enum(value: object, where: str) -> tuple[Value, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise SchemaError("'enum' must be a non-empty list", path=where)
    return tuple(_model(item, where, "enum member") for item in cast(list[object], value))


def _pattern(value: object, where: str) -> str | None:
    text = _text(value, "pattern", where)
    if text is not None:
        try:
            re.compile(text)
        except re.error as error:
            message = f"'pattern' is not a regular expression: {error}"
            raise SchemaError(message, path=where) from None
    return text


def _range(value: object, name: str, where: str) -> VersionRange:
    if value is None:
        return ANY_VERSION
    if not isinstance(value, str):
        raise SchemaError(f"'{name}' must be a version range like '>=1.2, <3'", path=where)
    try:
        return VersionRange.parse(value)
    except UsageError as error:
        raise SchemaError(f"'{name}': {error}", path=where) from None


def _hardware(value: object, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    names = cast(list[object], value) if isinstance(value, list) else None
    if names is None or not all(isinstance(name, str) for name in names):
        raise SchemaError("'hardware' must be a list of hardware model names", path=where)
    return frozenset(cast(list[str], names))


def _local(value: object, where: str) -> LocalPolicy:
    if value is None:
        return LocalPolicy()
    if isinstance(value, bool):
        return LocalPolicy(allowed=value)
    if not isinstance(value, Mapping):
        raise SchemaError("'local' must be true/false or a policy map", path=where)
    raw = cast(Mapping[str, object], value)
    unknown = set(raw) - _LOCAL_FIELDS
    if unknown:
        raise SchemaError(f"unknown 'local' fields {sorted(unknown)}", path=where)
    allowed = raw.get("allowed", True)
    if not isinstance(allowed, bool):
        raise SchemaError("'local.allowed' must be true or false", path=where)
    return LocalPolicy(
        allowed=allowed,
        min=_number(raw.get("min"), "local.min", where),
        max=_number(raw.get("max"), "local.max", where),
        enum=_enum(raw.get("enum"), where),
    )


# ---------------------------------------------------------------- evolution


def check_evolution(history: Sequence[Schema], new: Schema) -> None:
    """Refuse ``new`` unless it keeps every id promise made by ``history``.

    ``history`` holds the earlier versions of the same schema (any order).
    Rules: the version must be higher than every earlier one; a path keeps
    its id in every version; an id once given to a path is never given to
    another path, unless the new key declares ``renamed_from`` that path.
    """
    ids: dict[int, Path] = {}  # each id's latest owner (renames move it)
    paths: dict[Path, int] = {}  # every path ever declared, with its id
    for old in sorted(history, key=lambda schema: schema.version):
        if old.name != new.name:
            raise SchemaError(f"schema {new.name!r} cannot follow schema {old.name!r}")
        if new.version <= old.version:
            raise SchemaError(
                f"version {new.version} of {new.name} must be higher than existing "
                f"version {old.version}"
            )
        for path, key_id in old.retired.items():
            ids.setdefault(key_id, path)
            paths.setdefault(path, key_id)
        for spec in old.keys.values():
            ids[spec.id] = spec.path
            paths.setdefault(spec.path, spec.id)
    for spec in new.keys.values():
        if spec.renamed_from is not None:
            previous_id = paths.get(spec.renamed_from)
            if previous_id is not None and previous_id != spec.id:
                raise SchemaError(
                    f"renamed from {format_path(spec.renamed_from)} but changes its id "
                    f"{previous_id} to {spec.id}; a renamed key keeps its id",
                    path=spec.dotted,
                )
        old_id = paths.get(spec.path)
        if old_id is not None and old_id != spec.id:
            raise SchemaError(
                f"renumbers {spec.dotted} from id {old_id} to {spec.id}; ids are permanent",
                path=spec.dotted,
            )
        owner = ids.get(spec.id)
        if owner is not None and owner not in (spec.path, spec.renamed_from):
            raise SchemaError(
                f"reuses id {spec.id}, which belonged to {format_path(owner)}; "
                "declare renamed_from or pick a new id",
                path=spec.dotted,
            )
