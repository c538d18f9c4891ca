"""Schema documents and schema evolution.

:func:`schema_from_document` builds a :class:`~edgecfg.core.schema.Schema`
from a plain document (JSON, TOML or YAML parsed by :mod:`edgecfg.wire`),
refusing every mistake with the key and field named; :func:`check_evolution`
refuses a new version that breaks an id promise of an earlier one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Final, TypeVar, cast

from edgecfg.core.path import Path, format_path, parse_path
from edgecfg.core.schema import (
    MERGE_POLICIES,
    PRIORITIES,
    SCALAR_TYPES,
    TYPES,
    KeySpec,
    LocalPolicy,
    Schema,
    TypeName,
    bound_problems,
    type_problems,
)
from edgecfg.core.tree import UNSET, Value, check_model
from edgecfg.core.versions import ANY_VERSION, VersionRange
from edgecfg.errors import ModelError, PathError, SchemaError, UsageError

_T = TypeVar("_T", bound=str)
_KEY_FIELDS: Final = frozenset(
    {
        "id", "type", "default", "min", "max", "enum", "pattern", "items", "unit",
        "description", "priority", "required", "local", "merge", "agent", "firmware",
        "hardware", "renamed_from", "nullable", "tunable", "step",
    }
)  # fmt: skip
_LOCAL_FIELDS: Final = frozenset({"allowed", "min", "max", "enum"})


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
        tunable=_flag(raw.get("tunable"), "tunable", where),
        step=_number(raw.get("step"), "step", where),
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
        problems = type_problems(spec.type, member, spec.items)
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
            if bound is not None and bound_problems(bound, spec.min, spec.max):
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
    _check_tunable(spec)
    if spec.merge == "device-wins-within-bounds" and not local.allowed:
        raise SchemaError(
            "merge policy device-wins-within-bounds needs local.allowed = true", path=where
        )


def _check_tunable(spec: KeySpec) -> None:
    """A tunable key (one the fleet optimizer may change) is a number with
    both bounds; a ``step`` makes it discrete (an int key is always)."""
    where = spec.dotted
    if spec.step is not None:
        if not spec.tunable:
            raise SchemaError("'step' is only for a key declared tunable", path=where)
        if spec.step <= 0:
            raise SchemaError(f"'step' must be > 0, got {spec.step}", path=where)
        if spec.type == "int" and type(spec.step) is not int:
            raise SchemaError(f"'step' of an int key must be an int, got {spec.step}", path=where)
    if not spec.tunable:
        return
    if spec.type not in ("int", "float", "number"):
        raise SchemaError(f"a tunable key must be a number, not {spec.type}", path=where)
    if spec.min is None or spec.max is None:
        raise SchemaError("a tunable key needs both 'min' and 'max'", path=where)


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
