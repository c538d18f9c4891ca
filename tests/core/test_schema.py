"""Schemas: building from documents, validation, local policy, evolution (edgecfg.core.schema)."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.core.path import Path
from edgecfg.core.schema import (
    MERGE_POLICIES,
    PRIORITIES,
    TYPES,
    KeySpec,
    LocalPolicy,
    Schema,
    is_prefix_of,
    of_priority,
    translate,
    undeclared,
    value_problems,
)
from edgecfg.core.schema_document import check_evolution, schema_from_document
from edgecfg.core.tree import UNSET, Tree, Value, values_equal
from edgecfg.core.versions import ANY_VERSION, VersionRange
from edgecfg.errors import SchemaError, UsageError, ValidationError, Violation

SENSOR: dict[str, Any] = {
    "name": "sensor",
    "version": 3,
    "description": "a battery-powered sensor",
    "keys": {
        "net.uplink.interval_s": {
            "id": 12,
            "type": "int",
            "default": 300,
            "min": 10,
            "max": 86400,
            "unit": "s",
            "description": "seconds between uplinks",
            "priority": "critical",
            "local": {"allowed": True, "min": 60, "max": 3600},
            "merge": "device-wins-within-bounds",
        },
        "net.uplink.host": {
            "id": 13,
            "type": "str",
            "required": True,
            "pattern": "[a-z0-9.-]+",
            "min": 1,
            "max": 63,
        },
        "net.apn": {"id": 14, "type": "str", "nullable": True, "default": None},
        "log.level": {
            "id": 20,
            "type": "str",
            "enum": ["debug", "info", "warn", "error"],
            "default": "info",
            "local": {"enum": ["info", "debug"]},
            "priority": "bulk",
        },
        "log.ratio": {"id": 21, "type": "float", "min": 0.0, "max": 1.0, "default": 0.5},
        "radio.power": {
            "id": 30,
            "type": "number",
            "min": -10,
            "max": 20,
            "hardware": ["nrf9160", "bg96"],
            "firmware": ">=2.0",
            "agent": ">=1.4, <3",
            "required": True,
        },
        "radio.channels": {
            "id": 31,
            "type": "array",
            "items": "int",
            "min": 1,
            "max": 4,
            "default": [11],
        },
        "secret.key": {"id": 40, "type": "bytes", "min": 16, "max": 16},
        "feature.enabled": {"id": 41, "type": "bool", "default": False, "merge": "max"},
        "extra": {"id": 50, "type": "map", "default": {}},
        "blob": {"id": 51, "type": "any"},
        "mode": {"id": 52, "type": "number", "enum": [1, 2.5]},
    },
    "retired": {"old.interval": 7},
}


def sensor() -> Schema:
    return schema_from_document(copy.deepcopy(SENSOR))


def valid_config() -> Tree:
    return {
        "net": {"uplink": {"interval_s": 600, "host": "gw.example"}, "apn": None},
        "log": {"level": "warn", "ratio": 0.25},
        "radio": {"power": 3.5, "channels": [11, 15]},
        "secret": {"key": b"k" * 16},
        "feature": {"enabled": True},
        "extra": {"anything": {"deep": [1, {"x": None}]}, "x": b""},
        "blob": [1, "two", 3.0],
        "mode": 2.5,
    }


def doc(keys: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "s", "version": 1, "keys": keys, **extra}


def build(keys: dict[str, Any], **extra: Any) -> Schema:
    return schema_from_document(doc(keys, **extra))


def triples(violations: list[Violation]) -> list[tuple[str, object, str]]:
    return [(v.path, v.value, v.expected) for v in violations]


def one(key_fields: dict[str, Any], path: str = "a") -> KeySpec:
    """The spec of a one-key schema."""
    spec = build({path: key_fields}).spec(tuple(path.split(".")))
    assert spec is not None
    return spec


# ---------------------------------------------------------------- building


def test_schema_from_document_reads_every_field() -> None:
    schema = sensor()
    assert (schema.name, schema.version, len(schema)) == ("sensor", 3, 12)
    spec = schema.spec(("net", "uplink", "interval_s"))
    assert spec is not None
    assert spec.id == 12
    assert spec.type == "int"
    assert spec.default == 300
    assert (spec.min, spec.max) == (10, 86400)
    assert spec.unit == "s"
    assert spec.description == "seconds between uplinks"
    assert spec.priority == "critical"
    assert spec.local == LocalPolicy(allowed=True, min=60, max=3600)
    assert spec.merge == "device-wins-within-bounds"
    assert spec.dotted == "net.uplink.interval_s"
    assert spec.agent is ANY_VERSION
    assert spec.hardware is None
    assert spec.renamed_from is None
    assert schema.retired == {("old", "interval"): 7}


def test_schema_from_document_fills_defaults_for_omitted_fields() -> None:
    spec = one({"id": 0, "type": "any"})
    assert spec.default is UNSET
    assert spec.min is None and spec.max is None
    assert spec.enum is None and spec.pattern is None and spec.items is None
    assert spec.unit is None and spec.description == ""
    assert spec.priority == "normal"
    assert spec.required is False and spec.nullable is False
    assert spec.local == LocalPolicy()
    assert spec.merge == "server-wins"
    assert spec.agent is ANY_VERSION and spec.firmware is ANY_VERSION
    assert spec.hardware is None


def test_schema_from_document_reads_ranges_hardware_items_enum() -> None:
    schema = sensor()
    power = schema.spec(("radio", "power"))
    assert power is not None
    assert power.hardware == frozenset({"nrf9160", "bg96"})
    assert power.firmware == VersionRange.parse(">=2.0")
    assert power.agent.clauses == ((">=", (1, 4)), ("<", (3,)))
    channels = schema.spec(("radio", "channels"))
    assert channels is not None and channels.items == "int"
    level = schema.spec(("log", "level"))
    assert level is not None
    assert level.enum == ("debug", "info", "warn", "error")
    assert level.local == LocalPolicy(allowed=True, enum=("info", "debug"))


def test_schema_from_document_reads_local_true_renamed_from_and_nullable() -> None:
    spec = one({"id": 1, "type": "int", "local": True, "renamed_from": "x.y", "nullable": True})
    assert spec.local == LocalPolicy(allowed=True)
    assert spec.renamed_from == ("x", "y")
    assert spec.nullable is True


def test_schema_from_document_accepts_escaped_key_paths() -> None:
    schema = build({"a\\.b.c": {"id": 1, "type": "int"}})
    assert list(schema.keys) == [("a.b", "c")]


def test_schema_constants_list_every_literal() -> None:
    assert TYPES == ("int", "float", "number", "bool", "str", "bytes", "array", "map", "any")
    assert PRIORITIES == ("critical", "normal", "bulk")
    assert "device-wins-within-bounds" in MERGE_POLICIES


def test_schema_iterates_its_specs_and_finds_them_by_id() -> None:
    schema = sensor()
    assert {spec.id for spec in schema} == {12, 13, 14, 20, 21, 30, 31, 40, 41, 50, 51, 52}
    found = schema.by_id(31)
    assert found is not None and found.path == ("radio", "channels")
    assert schema.by_id(7) is None  # retired ids are not live specs
    assert schema.by_id(999) is None


@pytest.mark.parametrize(
    ("path", "governing"),
    [
        (("net", "uplink", "host"), ("net", "uplink", "host")),
        (("extra",), ("extra",)),
        (("extra", "a"), ("extra",)),
        (("extra", "a", "b", "c"), ("extra",)),
    ],
)
def test_spec_returns_own_spec_or_that_of_an_enclosing_map(path: Path, governing: Path) -> None:
    spec = sensor().spec(path)
    assert spec is not None and spec.path == governing


@pytest.mark.parametrize(
    "path", [(), ("net",), ("net", "uplink"), ("log", "level", "x"), ("nope",)]
)
def test_spec_is_none_for_undeclared_paths(path: Path) -> None:
    assert sensor().spec(path) is None


def test_defaults_builds_a_tree_of_every_declared_default() -> None:
    assert sensor().defaults() == {
        "net": {"uplink": {"interval_s": 300}, "apn": None},
        "log": {"level": "info", "ratio": 0.5},
        "radio": {"channels": [11]},
        "feature": {"enabled": False},
        "extra": {},
    }


def test_defaults_merges_a_map_default_with_defaults_declared_below_it() -> None:
    schema = build(
        {
            "m": {"id": 1, "type": "map", "default": {"x": 1}},
            "m.y": {"id": 2, "type": "int", "default": 2},
        }
    )
    assert schema.defaults() == {"m": {"x": 1, "y": 2}}


def test_defaults_of_the_sensor_schema_validate_partially() -> None:
    schema = sensor()
    assert schema.validate(schema.defaults(), partial=True) == []


# ---------------------------------------------------------------- schema document errors


def _with(**fields: Any) -> dict[str, Any]:
    return {"a": {"id": 1, "type": "int", **fields}}


@pytest.mark.parametrize(
    ("document", "fragment", "path"),
    [
        ({"version": 1, "keys": _with()}, "non-empty text 'name'", ""),
        (doc(_with(), name=""), "non-empty text 'name'", ""),
        (doc(_with(), name=5), "non-empty text 'name'", ""),
        ({"name": "s", "keys": _with()}, "integer 'version' >= 1", ""),
        (doc(_with(), version=0), "integer 'version' >= 1", ""),
        (doc(_with(), version="1"), "integer 'version' >= 1", ""),
        (doc(_with(), version=True), "integer 'version' >= 1", ""),
        (doc(_with(), version=1.0), "integer 'version' >= 1", ""),
        ({"name": "s", "version": 1}, "non-empty 'keys' map", ""),
        (doc({}), "non-empty 'keys' map", ""),
        (doc([{"id": 1}]), "non-empty 'keys' map", ""),  # type: ignore[arg-type]
        (doc({1: {"id": 1, "type": "int"}}), "key path 1 is not text", ""),  # type: ignore[dict-item]
        (doc({"a..b": {"id": 1, "type": "int"}}), "empty key before offset 2", "a..b"),
        (doc({"a": 5}), "key spec must be a map", "a"),
        (doc({"a": [1]}), "key spec must be a map", "a"),
        (doc(_with(), retired=["x"]), "'retired' must map old paths", ""),
        (doc(_with(), retired={"x": "7"}), "must be path -> int id", ""),
        (doc(_with(), retired={"x": True}), "must be path -> int id", ""),
        (doc(_with(), owner="me"), "unknown schema fields ['owner']", ""),
    ],
)
def test_schema_from_document_rejects_a_bad_document(
    document: dict[str, Any], fragment: str, path: str
) -> None:
    with pytest.raises(SchemaError) as caught:
        schema_from_document(document)
    assert fragment in str(caught.value)
    assert caught.value.path == path
    assert isinstance(caught.value, UsageError)


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        # unknown fields
        ({"id": 1, "type": "int", "colour": "red"}, "unknown fields ['colour']"),
        # bad id
        ({"type": "int"}, "'id' must be an integer in [0, 2**32)"),
        ({"id": -1, "type": "int"}, "'id' must be an integer"),
        ({"id": 2**32, "type": "int"}, "'id' must be an integer"),
        ({"id": "1", "type": "int"}, "'id' must be an integer"),
        ({"id": 1.0, "type": "int"}, "'id' must be an integer"),
        ({"id": True, "type": "int"}, "'id' must be an integer"),
        # bad type
        ({"id": 1}, "'type' must be one of"),
        ({"id": 1, "type": "integer"}, "'type' must be one of"),
        ({"id": 1, "type": ["int"]}, "'type' must be one of"),
        # items only for arrays, and scalar
        ({"id": 1, "type": "int", "items": "int"}, "'items' is only for arrays"),
        ({"id": 1, "type": "array", "items": "map"}, "'items' is only for arrays"),
        ({"id": 1, "type": "array", "items": "list"}, "'items' is only for arrays"),
        # default outside the model or breaking its own rule
        ({"id": 1, "type": "any", "default": (1, 2)}, "default is not a configuration value"),
        ({"id": 1, "type": "int", "default": "x"}, "breaks its own rule: expected int"),
        ({"id": 1, "type": "int", "default": None}, "breaks its own rule: expected int"),
        ({"id": 1, "type": "int", "default": 1.0}, "breaks its own rule: expected int"),
        ({"id": 1, "type": "int", "default": True}, "breaks its own rule: expected int"),
        ({"id": 1, "type": "int", "max": 10, "default": 11}, "expected <= 10"),
        ({"id": 1, "type": "int", "min": 10, "default": 9}, "expected >= 10"),
        ({"id": 1, "type": "str", "enum": ["a"], "default": "b"}, 'expected one of ["a"]'),
        ({"id": 1, "type": "str", "pattern": "[a-z]+", "default": "A"}, "text matching"),
        ({"id": 1, "type": "str", "max": 2, "default": "abc"}, "expected length <= 2"),
        ({"id": 1, "type": "array", "items": "int", "default": ["x"]}, "element 0 is str"),
        # min > max, bad numbers
        ({"id": 1, "type": "int", "min": 10, "max": 1}, "min 10 > max 1"),
        ({"id": 1, "type": "int", "min": "0"}, "'min' must be a number"),
        ({"id": 1, "type": "int", "max": True}, "'max' must be a number"),
        ({"id": 1, "type": "float", "max": math.nan}, "'max' must be a number"),
        # enum
        ({"id": 1, "type": "int", "enum": []}, "'enum' must be a non-empty list"),
        ({"id": 1, "type": "int", "enum": "abc"}, "'enum' must be a non-empty list"),
        ({"id": 1, "type": "any", "enum": [(1,)]}, "not a configuration value"),
        # pattern
        ({"id": 1, "type": "str", "pattern": "("}, "'pattern' is not a regular expression"),
        ({"id": 1, "type": "str", "pattern": 5}, "'pattern' must be text"),
        # text fields
        ({"id": 1, "type": "int", "unit": 5}, "'unit' must be text"),
        ({"id": 1, "type": "int", "description": ["x"]}, "'description' must be text"),
        # choices
        ({"id": 1, "type": "int", "priority": "urgent"}, "'priority' must be one of"),
        ({"id": 1, "type": "int", "merge": "newest"}, "'merge' must be one of"),
        # flags
        ({"id": 1, "type": "int", "required": "yes"}, "'required' must be true or false"),
        ({"id": 1, "type": "int", "nullable": 1}, "'nullable' must be true or false"),
        # local policy
        ({"id": 1, "type": "int", "local": "yes"}, "'local' must be true/false or a policy map"),
        ({"id": 1, "type": "int", "local": [True]}, "'local' must be true/false or a policy"),
        ({"id": 1, "type": "int", "local": {"when": "never"}}, "unknown 'local' fields ['when']"),
        ({"id": 1, "type": "int", "local": {"allowed": "y"}}, "'local.allowed' must be true"),
        ({"id": 1, "type": "int", "local": {"min": "1"}}, "'local.min' must be a number"),
        ({"id": 1, "type": "int", "local": {"max": math.nan}}, "'local.max' must be a number"),
        ({"id": 1, "type": "int", "local": {"enum": []}}, "'enum' must be a non-empty list"),
        (
            {"id": 1, "type": "int", "min": 10, "max": 100, "local": {"min": 5}},
            "local.min 5 lies outside the key's bounds [10, 100]",
        ),
        (
            {"id": 1, "type": "int", "min": 10, "max": 100, "local": {"max": 101}},
            "local.max 101 lies outside the key's bounds [10, 100]",
        ),
        (
            {"id": 1, "type": "int", "merge": "device-wins-within-bounds"},
            "device-wins-within-bounds needs local.allowed = true",
        ),
        (
            {
                "id": 1,
                "type": "int",
                "merge": "device-wins-within-bounds",
                "local": {"allowed": False, "min": 1},
            },
            "needs local.allowed = true",
        ),
        # version ranges
        ({"id": 1, "type": "int", "agent": 2}, "'agent' must be a version range"),
        ({"id": 1, "type": "int", "agent": "~1.2"}, "'agent': version range clause"),
        ({"id": 1, "type": "int", "firmware": ">=x"}, "'firmware': version 'x'"),
        ({"id": 1, "type": "int", "firmware": [">=1"]}, "'firmware' must be a version range"),
        # hardware
        ({"id": 1, "type": "int", "hardware": "nrf9160"}, "'hardware' must be a list"),
        ({"id": 1, "type": "int", "hardware": ["a", 1]}, "'hardware' must be a list"),
    ],
)
def test_schema_from_document_rejects_a_bad_key_naming_it(
    fields: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(SchemaError) as caught:
        build({"net.rate": fields})
    assert fragment in str(caught.value)
    assert caught.value.path == "net.rate"
    assert str(caught.value).endswith("(at net.rate)")


def test_local_bounds_inside_the_key_bounds_are_accepted() -> None:
    spec = one({"id": 1, "type": "int", "min": 10, "max": 100, "local": {"min": 10, "max": 100}})
    assert spec.local == LocalPolicy(allowed=True, min=10, max=100)


def test_local_bounds_are_not_checked_when_local_changes_are_not_allowed() -> None:
    spec = one(
        {"id": 1, "type": "int", "min": 10, "max": 100, "local": {"allowed": False, "min": 1}}
    )
    assert spec.local.allowed is False


def test_schema_rejects_duplicate_ids_naming_both_paths() -> None:
    with pytest.raises(SchemaError, match="id 5 is used by both a and b") as caught:
        build({"a": {"id": 5, "type": "int"}, "b": {"id": 5, "type": "str"}})
    assert caught.value.path == "b"


def test_schema_rejects_a_retired_id_reused_by_a_live_key() -> None:
    with pytest.raises(
        SchemaError, match=r"id 7 is retired \(was old\.x\) but reused by a"
    ) as caught:
        build({"a": {"id": 7, "type": "int"}}, retired={"old.x": 7})
    assert caught.value.path == "a"


@pytest.mark.parametrize("parent_type", ["int", "str", "array", "any"])
def test_schema_rejects_a_leaf_key_with_children(parent_type: str) -> None:
    with pytest.raises(
        SchemaError, match=f"a is a {parent_type} leaf but has child keys"
    ) as caught:
        build({"a": {"id": 1, "type": parent_type}, "a.b.c": {"id": 2, "type": "int"}})
    assert caught.value.path == "a.b.c"


def test_schema_accepts_keys_declared_below_a_map_key() -> None:
    schema = build({"m": {"id": 1, "type": "map"}, "m.x": {"id": 2, "type": "int"}})
    assert schema.validate({"m": {"x": 1, "free": "form"}}) == []
    assert [v.path for v in schema.validate({"m": {"x": "no"}})] == ["m.x"]


def test_schema_constructed_directly_checks_its_invariants() -> None:
    a = KeySpec(path=("a",), id=1, type="int")
    b = KeySpec(path=("b",), id=1, type="int")
    with pytest.raises(SchemaError, match="id 1 is used by both"):
        Schema("s", 1, {a.path: a, b.path: b})
    with pytest.raises(SchemaError, match="id 1 is retired"):
        Schema("s", 1, {a.path: a}, {("old",): 1})
    assert len(Schema("s", 1, {a.path: a})) == 1


@pytest.mark.parametrize("items", [["int"], {"type": "int"}])
def test_unhashable_items_is_a_schema_error(items: object) -> None:
    with pytest.raises(SchemaError, match="'items'"):
        build({"a": {"id": 1, "type": "array", "items": items}})


@pytest.mark.parametrize(
    ("document", "fragment", "path"),
    [
        (
            doc({"a": {"id": 1, "type": "int", "renamed_from": 5}}),
            "'renamed_from' must be the old path as text, got 5",
            "a",
        ),
        (
            doc({"a": {"id": 1, "type": "int", "renamed_from": "x..y"}}),
            "'renamed_from': empty key before offset 2",
            "x..y",
        ),
        (
            doc({"a": {"id": 1, "type": "int"}}, retired={"x..y": 3}),
            "retired path: empty key before offset 2",
            "x..y",
        ),
        (
            doc(
                {
                    "a": {
                        "id": 1,
                        "type": "int",
                        "min": 0,
                        "max": 100,
                        "local": {"min": 50, "max": 10},
                    }
                }
            ),
            "local.min 50 > local.max 10",
            "a",
        ),
        (
            doc({"a": {"id": 1, "type": "int", "enum": [1, 2], "local": {"enum": [3]}}}),
            "local.enum value 3 breaks the key's rule: expected one of [1, 2]",
            "a",
        ),
        (
            doc({"a": {"id": 1, "type": "int", "local": {"enum": ["x"]}}}),
            "local.enum value 'x' breaks the key's rule: expected int",
            "a",
        ),
    ],
)
def test_schema_from_document_rejects_bad_renames_retired_paths_and_local_policies(
    document: dict[str, Any], fragment: str, path: str
) -> None:
    with pytest.raises(SchemaError) as caught:
        schema_from_document(document)
    assert fragment in str(caught.value)
    assert caught.value.path == path


def test_enum_member_of_the_wrong_type_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="enum"):
        build({"a": {"id": 1, "type": "int", "enum": ["a", "b"]}})


def test_enum_member_outside_the_model_is_reported_as_enum_not_default() -> None:
    with pytest.raises(SchemaError) as caught:
        build({"a": {"id": 1, "type": "any", "enum": [(1,)]}})
    assert "enum" in str(caught.value)
    assert "default" not in str(caught.value)


# ---------------------------------------------------------------- validate


def test_a_valid_config_has_no_violations() -> None:
    assert sensor().validate(valid_config()) == []


def test_validate_reports_every_violation_with_path_value_and_expectation() -> None:
    config = valid_config()
    config["net"]["uplink"]["interval_s"] = 5  # type: ignore[index]
    config["net"]["uplink"]["host"] = "GW!"  # type: ignore[index]
    config["net"]["apn"] = 7  # type: ignore[index]
    config["log"] = {"level": "trace", "ratio": 1.5}
    config["radio"] = {"channels": [1, "x"]}  # power (required) missing
    config["secret"] = {"key": b"short"}
    config["feature"] = {"enabled": 1}
    config["mode"] = 3
    config["surprise"] = {"a": 1}
    violations = sensor().validate(config)
    assert {(v.path, v.expected) for v in violations} == {
        ("net.uplink.interval_s", ">= 10"),
        ("net.uplink.host", "text matching /[a-z0-9.-]+/"),
        ("net.apn", "str"),
        ("log.level", 'one of ["debug", "info", "warn", "error"]'),
        ("log.ratio", "<= 1.0"),
        ("radio.channels", "array of int (element 1 is str)"),
        ("radio.power", "a value (required key)"),
        ("secret.key", "length >= 16"),
        ("feature.enabled", "bool"),
        ("mode", "one of [1, 2.5]"),
        ("surprise.a", "a key declared by schema sensor v3"),
    }
    by_path = {v.path: v for v in violations}
    assert by_path["net.uplink.interval_s"].value == 5
    assert by_path["secret.key"].value == b"short"
    assert by_path["radio.power"].value is None
    assert by_path["surprise.a"].value == 1
    assert len(violations) == 11


def test_validate_in_partial_mode_skips_missing_required_keys_only() -> None:
    schema = sensor()
    assert schema.validate({}, partial=True) == []
    assert {v.path for v in schema.validate({})} == {"net.uplink.host", "radio.power"}
    assert [v.path for v in schema.validate({"mode": 0}, partial=True)] == ["mode"]


def test_required_key_with_a_default_is_not_reported_missing() -> None:
    schema = build({"a": {"id": 1, "type": "int", "required": True, "default": 1}})
    assert schema.validate({}) == []


def test_required_key_is_missing_when_its_parent_is_a_leaf() -> None:
    schema = build({"a.b": {"id": 1, "type": "int", "required": True}})
    violations = schema.validate({"a": 5})
    assert ("a.b", None, "a value (required key)") in triples(violations)


def test_required_key_holding_null_is_present_but_must_be_nullable() -> None:
    strict = build({"a": {"id": 1, "type": "int", "required": True}})
    assert triples(strict.validate({"a": None})) == [("a", None, "int")]
    lenient = build({"a": {"id": 1, "type": "int", "required": True, "nullable": True}})
    assert lenient.validate({"a": None}) == []


@pytest.mark.parametrize(
    ("fields", "value", "expected"),
    [
        # types
        ({"type": "int"}, 1.0, ["int"]),
        ({"type": "int"}, True, ["int"]),
        ({"type": "float"}, 1, ["float"]),
        ({"type": "number"}, "1", ["number"]),
        ({"type": "number"}, False, ["number"]),
        ({"type": "bool"}, 0, ["bool"]),
        ({"type": "str"}, b"x", ["str"]),
        ({"type": "bytes"}, "x", ["bytes"]),
        ({"type": "array"}, "x", ["array of any"]),
        ({"type": "array", "items": "str"}, "x", ["array of str"]),
        ({"type": "array", "items": "str"}, ["a", 1], ["array of str (element 1 is int)"]),
        ({"type": "array", "items": "int"}, [True], ["array of int (element 0 is bool)"]),
        ({"type": "map"}, 5, ["map"]),
        ({"type": "map"}, [], ["map"]),
        # nullable
        ({"type": "str"}, None, ["str"]),
        # numeric bounds
        ({"type": "number", "min": 0}, -0.5, [">= 0"]),
        ({"type": "number", "max": 1}, 2, ["<= 1"]),
        ({"type": "float", "max": 1}, math.inf, ["<= 1"]),
        ({"type": "float", "min": 0.0}, math.nan, ["a number, not NaN"]),
        # length bounds
        ({"type": "str", "min": 2}, "a", ["length >= 2"]),
        ({"type": "str", "max": 2}, "水水水", ["length <= 2"]),
        ({"type": "bytes", "max": 1}, b"ab", ["length <= 1"]),
        ({"type": "array", "min": 1}, [], ["length >= 1"]),
        ({"type": "array", "max": 1}, [1, 2], ["length <= 1"]),
        # enum
        ({"type": "int", "enum": [1, 2]}, 3, ["one of [1, 2]"]),
        ({"type": "any", "enum": [1]}, True, ["one of [1]"]),
        ({"type": "any", "enum": [True]}, 1, ["one of [true]"]),
        ({"type": "any", "enum": ["1"]}, 1, ['one of ["1"]']),
        # pattern (whole text must match)
        ({"type": "str", "pattern": "[a-z]+"}, "abc1", ["text matching /[a-z]+/"]),
        # several rules at once
        (
            {"type": "str", "pattern": "[a-z]+", "max": 2},
            "ABC",
            ["length <= 2", "text matching /[a-z]+/"],
        ),
    ],
)
def test_keyspec_check_reports_each_broken_rule(
    fields: dict[str, Any], value: Value, expected: list[str]
) -> None:
    spec = one({"id": 1, **fields})
    assert spec.check(value) == expected
    violations = build({"a": {"id": 1, **fields}}).validate({"a": value})
    assert triples(violations) == [("a", value, text) for text in expected]


@pytest.mark.parametrize(
    ("fields", "value"),
    [
        ({"type": "any"}, b"\x00"),
        ({"type": "any"}, None),
        ({"type": "number"}, 1),
        ({"type": "number"}, 1.5),
        ({"type": "float"}, math.nan),  # unbounded: NaN is a float
        ({"type": "float", "max": 1.0}, -math.inf),
        ({"type": "str", "nullable": True}, None),
        ({"type": "int", "nullable": True, "min": 5}, None),
        ({"type": "array"}, [1, "x", None]),
        ({"type": "array", "items": "any"}, [1, "x", None]),
        ({"type": "array", "items": "number"}, [1, 2.5]),
        ({"type": "int", "enum": [1, 2]}, 2),
        ({"type": "float", "enum": [1]}, 1.0),  # JSON's 1 matches 1.0
        ({"type": "number", "enum": [2.0]}, 2),
        ({"type": "any", "enum": [[1, 2], {"a": None}]}, {"a": None}),
        ({"type": "bool", "enum": [False]}, False),
        ({"type": "str", "pattern": "[a-z]+"}, "abc"),
        ({"type": "str", "min": 1, "max": 1}, "水"),  # length counts characters
        ({"type": "map"}, {}),
        ({"type": "bool", "min": 0, "max": 0}, True),  # bounds do not apply to bools
    ],
)
def test_keyspec_check_accepts_values_meeting_every_rule(
    fields: dict[str, Any], value: Value
) -> None:
    assert one({"id": 1, **fields}).check(value) == []


def test_enum_membership_of_arrays_uses_model_equality() -> None:
    assert one({"id": 1, "type": "array", "enum": [[1]]}).check([True]) == ["one of [[1]]"]


def test_free_form_map_accepts_anything_below_it() -> None:
    schema = sensor()
    config = valid_config()
    config["extra"] = {"a": {"b": {"c": [1, 2]}}, "": None, "x.y": b"\x00", "n": math.nan}
    assert schema.validate(config) == []


def test_an_any_key_is_free_form_like_a_map_key() -> None:
    schema = sensor()
    spec = schema.spec(("blob", "x", "y"))
    assert spec is not None and spec.path == ("blob",)
    assert schema.validate({"blob": {"x": {"y": [1]}, "z": b""}}, partial=True) == []


@pytest.mark.parametrize(
    ("device", "missing"),
    [
        ({}, {"net.uplink.host", "radio.power"}),
        ({"hardware": "bg96", "firmware": "2.1"}, {"net.uplink.host", "radio.power"}),
        ({"hardware": "esp32"}, {"net.uplink.host"}),
        ({"firmware": "1.9"}, {"net.uplink.host"}),
        ({"hardware": "nrf9160", "firmware": "1.0"}, {"net.uplink.host"}),
    ],
)
def test_validate_skips_required_keys_that_do_not_apply_to_the_device(
    device: dict[str, str], missing: set[str]
) -> None:
    violations = sensor().validate(
        {}, hardware=device.get("hardware"), firmware=device.get("firmware")
    )
    assert {v.path for v in violations} == missing
    assert all(v.expected == "a value (required key)" for v in violations)


def test_validate_reports_unknown_keys_anywhere() -> None:
    schema = sensor()
    violations = schema.validate(
        {"zzz": 1, "net": {"extra": {"deep": True}}, "log": {"level": {"x": 1}}}, partial=True
    )
    expected = "a key declared by schema sensor v3"
    assert sorted((v.path, v.value, v.expected) for v in violations) == [
        ("log.level.x", 1, expected),
        ("net.extra.deep", True, expected),
        ("zzz", 1, expected),
    ]


def test_validate_skips_empty_maps_on_the_way_to_declared_keys_only() -> None:
    schema = sensor()
    assert schema.validate({"net": {"uplink": {}}, "radio": {}}, partial=True) == []
    assert triples(schema.validate({"nothing": {}}, partial=True)) == [
        ("nothing", {}, "a key declared by schema sensor v3")
    ]


def test_validate_names_a_path_with_an_empty_key_by_its_tuple() -> None:
    violations = sensor().validate({"": {"x": 1}}, partial=True)
    assert [v.path for v in violations] == [repr(("", "x"))]


def test_validate_never_mutates_the_config() -> None:
    config = valid_config()
    config["log"] = {"level": "nope"}
    before = copy.deepcopy(config)
    sensor().validate(config)
    assert values_equal(config, before)


def test_violation_text_and_validation_error_carry_every_violation() -> None:
    violations = sensor().validate({"mode": 3, "zzz": 1}, partial=True)
    assert str(violations[0]) in {
        "mode: expected one of [1, 2.5], got 3",
        "zzz: expected a key declared by schema sensor v3, got 1",
    }
    assert str(Violation("", {}, "a map")) == "<root>: expected a map, got {}"
    error = ValidationError(violations)
    assert error.violations == tuple(violations)
    assert str(error).endswith("(and 1 more)")
    assert isinstance(error, ValueError)
    assert str(ValidationError([])) == "invalid configuration"
    assert str(ValidationError(violations[:1])) == str(violations[0])


def test_is_prefix_of_is_true_for_proper_ancestors_only() -> None:
    assert is_prefix_of(("a",), ("a", "b"))
    assert is_prefix_of((), ("a",))
    assert not is_prefix_of(("a",), ("a",))
    assert not is_prefix_of(("a", "b"), ("a",))
    assert not is_prefix_of(("b",), ("a", "b"))


# ---------------------------------------------------------------- applies_to


@pytest.mark.parametrize(
    ("device", "reason"),
    [
        ({}, None),
        ({"hardware": "bg96", "firmware": "2.0", "agent_version": "1.4"}, None),
        ({"hardware": "esp32"}, "hardware 'esp32' not in ['bg96', 'nrf9160']"),
        ({"firmware": "1.9.9"}, "firmware 1.9.9 outside >=2.0"),
        ({"agent_version": "3.0"}, "agent 3.0 outside >=1.4, <3"),
        ({"agent_version": "1.3"}, "agent 1.3 outside >=1.4, <3"),
        ({"hardware": "esp32", "firmware": "1", "agent_version": "9"}, "hardware 'esp32'"),
    ],
)
def test_applies_to_names_the_first_reason_a_key_does_not_apply(
    device: dict[str, str], reason: str | None
) -> None:
    spec = sensor().spec(("radio", "power"))
    assert spec is not None
    result = spec.applies_to(**device)
    if reason is None:
        assert result is None
    else:
        assert result is not None and result.startswith(reason)


def test_a_key_without_restrictions_applies_to_every_device() -> None:
    spec = one({"id": 1, "type": "int"})
    assert spec.applies_to(hardware="anything", firmware="0.0.1", agent_version="99") is None


# ---------------------------------------------------------------- check_local


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("net", "uplink", "interval_s"), 600, []),
        (("net", "uplink", "interval_s"), 60, []),
        (("net", "uplink", "interval_s"), 30, [">= 60 (local-override policy)"]),
        (("net", "uplink", "interval_s"), 7200, ["<= 3600 (local-override policy)"]),
        # the bound that applies is the tighter one, named with the rule that set it
        (("net", "uplink", "interval_s"), 5, [">= 60 (local-override policy)"]),
        (("net", "uplink", "interval_s"), 20, [">= 60 (local-override policy)"]),
        (("net", "uplink", "interval_s"), "600", ["int"]),
        (("log", "level"), "debug", []),
        (("log", "level"), "warn", ['one of ["info", "debug"] (local-override policy)']),
        (("log", "level"), "trace", ['one of ["info", "debug"] (local-override policy)']),
        (
            ("log", "ratio"),
            0.1,
            ["no local override (policy: local changes not allowed)"],
        ),
    ],
)
def test_check_local_applies_policy_then_key_rules_then_local_bounds(
    path: Path, value: Value, expected: list[str]
) -> None:
    spec = sensor().spec(path)
    assert spec is not None
    assert spec.check_local(value) == expected


def test_check_local_with_local_true_only_applies_the_key_rules() -> None:
    spec = one({"id": 1, "type": "int", "min": 0, "local": True})
    assert spec.check_local(5) == []
    assert spec.check_local(-1) == [">= 0 (schema)"]


LOCAL_MIN = ">= 60 (local-override policy)"


@pytest.mark.parametrize(
    ("rules", "value", "expected"),
    [
        # a schema keeps local bounds within the key's: below both, the local one applies
        ({"min": 10, "max": 100, "local": {"min": 60, "max": 90}}, 5, LOCAL_MIN),
        (
            {"min": 10, "max": 100, "local": {"min": 60, "max": 90}},
            95,
            "<= 90 (local-override policy)",
        ),
        # a side the local policy leaves open is bounded by the key's own rule
        ({"min": 10, "max": 100, "local": {"min": 60}}, 200, "<= 100 (schema)"),
        ({"min": 50, "local": {"max": 300}}, 20, ">= 50 (schema)"),
        ({"local": {"min": 5}}, 1, ">= 5 (local-override policy)"),
    ],
)
def test_check_local_quotes_the_tighter_bound_and_the_rule_that_set_it(
    rules: dict[str, Any], value: int, expected: str
) -> None:
    spec = one({"id": 1, "type": "int", **rules})
    assert spec.check_local(value) == [expected]


@given(st.integers(-100, 2000), st.integers(0, 1000), st.integers(0, 1000))
def test_check_local_refuses_exactly_what_breaks_either_bound(
    value: int, key: int, extra: int
) -> None:
    local = key + extra  # a schema keeps the local bound within the key's
    spec = one({"id": 1, "type": "int", "min": key, "local": {"min": local}})
    problems = spec.check_local(value)
    assert bool(problems) == (value < local)
    if problems:  # the quoted bound is the one that applies, and its rule
        assert problems == [f">= {local} (local-override policy)"]


# ---------------------------------------------------------------- check_evolution


def version_of(version: int, keys: dict[str, Any], **extra: Any) -> Schema:
    return schema_from_document({"name": "s", "version": version, "keys": keys, **extra})


V1 = version_of(1, {"a": {"id": 1, "type": "int"}, "b": {"id": 2, "type": "int"}})


def test_check_evolution_accepts_added_dropped_and_retired_keys() -> None:
    v2 = version_of(2, {"a": {"id": 1, "type": "str"}, "c": {"id": 3, "type": "int"}})
    check_evolution([V1], v2)
    v3 = version_of(3, {"a": {"id": 1, "type": "str"}, "d": {"id": 4, "type": "int"}},
                    retired={"b": 2, "c": 3})  # fmt: skip
    check_evolution([V1, v2], v3)
    check_evolution([v2, V1], v3)


def test_check_evolution_accepts_a_first_version() -> None:
    check_evolution([], V1)


def test_check_evolution_accepts_a_rename_that_keeps_the_id() -> None:
    v2 = version_of(2, {"a": {"id": 1, "type": "int"}, "bee": {"id": 2, "type": "int",
                                                                "renamed_from": "b"}})  # fmt: skip
    check_evolution([V1], v2)


def test_check_evolution_rejects_a_renumbered_id() -> None:
    v2 = version_of(2, {"a": {"id": 9, "type": "int"}, "b": {"id": 2, "type": "int"}})
    with pytest.raises(
        SchemaError, match="renumbers a from id 1 to 9; ids are permanent"
    ) as caught:
        check_evolution([V1], v2)
    assert caught.value.path == "a"


def test_check_evolution_rejects_an_id_reused_by_another_path() -> None:
    v2 = version_of(2, {"a": {"id": 1, "type": "int"}, "c": {"id": 2, "type": "int"}})
    with pytest.raises(SchemaError, match="reuses id 2, which belonged to b") as caught:
        check_evolution([V1], v2)
    assert caught.value.path == "c"


def test_check_evolution_rejects_a_reused_id_whose_renamed_from_names_another_path() -> None:
    # c takes b's id but claims to be the renamed "zzz": the id belonged to b.
    v2 = version_of(2, {"x": {"id": 3, "type": "int"},
                        "c": {"id": 2, "type": "int", "renamed_from": "zzz"}})  # fmt: skip
    with pytest.raises(SchemaError, match="reuses id 2, which belonged to b") as caught:
        check_evolution([V1], v2)
    assert caught.value.path == "c"


def test_check_evolution_rejects_a_renamed_key_that_changes_its_id() -> None:
    v2 = version_of(2, {"c": {"id": 9, "type": "int", "renamed_from": "a"}})
    with pytest.raises(SchemaError, match="renamed from a but changes its id 1 to 9") as caught:
        check_evolution([V1], v2)
    assert caught.value.path == "c"


def test_check_evolution_rejects_reuse_of_a_retired_id() -> None:
    v1 = version_of(1, {"a": {"id": 1, "type": "int"}}, retired={"old": 7})
    v2 = version_of(2, {"a": {"id": 1, "type": "int"}, "new": {"id": 7, "type": "int"}})
    with pytest.raises(SchemaError, match="reuses id 7, which belonged to old"):
        check_evolution([v1], v2)


def test_check_evolution_rejects_a_retired_path_coming_back_with_another_id() -> None:
    v1 = version_of(1, {"a": {"id": 1, "type": "int"}}, retired={"old": 7})
    v2 = version_of(2, {"a": {"id": 1, "type": "int"}, "old": {"id": 8, "type": "int"}})
    with pytest.raises(SchemaError, match="renumbers old from id 7 to 8"):
        check_evolution([v1], v2)


@pytest.mark.parametrize("version", [1, 2])
def test_check_evolution_rejects_a_version_that_does_not_increase(version: int) -> None:
    v2 = version_of(2, {"a": {"id": 1, "type": "int"}})
    again = version_of(version, {"a": {"id": 1, "type": "int"}})
    with pytest.raises(SchemaError, match=f"version {version} of s must be higher than existing"):
        check_evolution([V1, v2], again)


def test_check_evolution_rejects_a_schema_with_another_name() -> None:
    other = schema_from_document(
        {"name": "other", "version": 2, "keys": {"a": {"id": 1, "type": "int"}}}
    )
    with pytest.raises(SchemaError, match="schema 'other' cannot follow schema 's'"):
        check_evolution([V1], other)


RENAMED_V1 = version_of(1, {"a": {"id": 5, "type": "int"}})
RENAMED_V2 = version_of(2, {"b": {"id": 5, "type": "int", "renamed_from": "a"}})


@pytest.mark.parametrize(
    "history",
    [
        pytest.param([RENAMED_V2, RENAMED_V1], id="newest-first"),
        pytest.param([RENAMED_V1, RENAMED_V2], id="oldest-first"),
    ],
)
def test_check_evolution_accepts_a_renamed_key_kept_in_a_later_version(
    history: list[Schema],
) -> None:
    v3 = version_of(3, {"b": {"id": 5, "type": "int"}})
    check_evolution(history, v3)


@pytest.mark.parametrize(
    "history",
    [
        pytest.param([RENAMED_V2, RENAMED_V1], id="newest-first"),
        pytest.param([RENAMED_V1, RENAMED_V2], id="oldest-first"),
    ],
)
def test_check_evolution_accepts_a_second_rename(history: list[Schema]) -> None:
    v3 = version_of(3, {"c": {"id": 5, "type": "int", "renamed_from": "b"}})
    check_evolution(history, v3)


def test_translate_moves_renamed_keys_back_and_drops_keys_the_old_version_lacks() -> None:
    old = build({"log.buffer_kib": {"id": 1, "type": "int"}, "net.port": {"id": 2, "type": "int"}})
    new = build(
        {
            "log.ring_kib": {"id": 1, "type": "int", "renamed_from": "log.buffer_kib"},
            "net.port": {"id": 2, "type": "int"},
            "net.tls": {"id": 3, "type": "bool"},
        },
        version=2,
    )
    tree: Tree = {"log": {"ring_kib": 16}, "net": {"port": 5683, "tls": True}, "extra": {"x": 1}}
    assert translate(tree, new, old) == {
        "log": {"buffer_kib": 16},
        "net": {"port": 5683},
        "extra": {"x": 1},  # declared by no key: kept as it is
    }


def test_of_priority_keeps_only_that_class_and_nothing_without_a_schema() -> None:
    schema = build(
        {
            "net.apn": {"id": 1, "type": "str", "priority": "critical"},
            "net.port": {"id": 2, "type": "int"},
            "log.level": {"id": 3, "type": "str", "priority": "bulk"},
        }
    )
    tree: Tree = {"net": {"apn": "iot", "port": 5683}, "log": {"level": "info"}}
    assert of_priority(tree, schema, "critical") == {"net": {"apn": "iot"}}
    assert of_priority(tree, schema, "bulk") == {"log": {"level": "info"}}
    assert of_priority(tree, None, "critical") == {}


def test_undeclared_names_paths_no_key_declares_and_keeps_maps_of_the_schema() -> None:
    schema = build({"net.uplink.interval_s": {"id": 1, "type": "int"}})
    paths = [("net",), ("net", "uplink"), ("net", "uplink", "interval_s"), ("net", "typo"), ("x",)]
    assert undeclared(schema, paths) == [("net", "typo"), ("x",)]


def test_value_problems_names_each_refused_value_with_what_was_expected() -> None:
    schema = build({"a": {"id": 1, "type": "int", "min": 10}, "m": {"id": 2, "type": "map"}})
    sets: dict[Path, Value] = {("a",): 5, ("m", "free"): "anything"}
    assert value_problems(schema, sets) == [(("a",), ">= 10")]
    assert value_problems(schema, {("a",): 12}) == []
