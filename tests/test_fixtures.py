"""The committed fixtures: device types, the device schema (v1, v2) and example configs."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.core.schema import MERGE_POLICIES, PRIORITIES, TYPES, KeySpec, LocalPolicy, Schema
from edgecfg.core.schema_document import check_evolution, schema_from_document
from edgecfg.core.tree import UNSET, check_model, get
from edgecfg.core.versions import ANY_VERSION, parse_version
from edgecfg.errors import SchemaError
from edgecfg.sim.configs import config_for_schema
from edgecfg.wire.documents import read_schema
from tests.paths import FIXTURES, ROOT

V1_PATH = FIXTURES / "schema" / "device.json"
V2_PATH = FIXTURES / "schema" / "device-v2.json"
DEVICE_TYPE_FIELDS = {
    "id": str, "description": str, "hardware": str, "ram_bytes": int, "flash_bytes": int,
    "power": str, "link": str, "link_kbps": int, "coap_block_size": int,
    "typical_wake_interval_s": int, "firmware_versions": list, "agent_version": str,
}  # fmt: skip


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def v1() -> Schema:
    return read_schema(V1_PATH.read_bytes(), "json", source=str(V1_PATH))


@pytest.fixture(scope="module")
def v2() -> Schema:
    return read_schema(V2_PATH.read_bytes(), "json", source=str(V2_PATH))


@pytest.fixture(scope="module")
def device_types() -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in load_json(FIXTURES / "device_types.json")["device_types"]}


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_fixture_schema", ROOT / "tools" / "make_fixture_schema.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- the generator script


def test_committed_fixtures_match_the_generator_script() -> None:
    outputs = load_tool().outputs()
    assert {path.relative_to(FIXTURES).as_posix() for path in outputs} == {
        "schema/device.json",
        "schema/device-v2.json",
        "configs/sensor-default.json",
        "configs/camera.json",
        "configs/invalid.json",
    }
    for path, text in outputs.items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} is stale: run tools/make_fixture_schema.py"
        )


def _source_with(tmp_path: Path, edit: Callable[[str], str]) -> Path:
    source = tmp_path / "device-schema.yaml"
    text = (FIXTURES / "source" / "device-schema.yaml").read_text(encoding="utf-8")
    changed = edit(text)
    assert changed != text
    source.write_text(changed, encoding="utf-8")
    return source


def test_generator_refuses_a_path_written_twice(tmp_path: Path) -> None:
    twice = "  device.name: {id: 2, type: str, description: again}\n"
    source = _source_with(
        tmp_path, lambda text: text.replace("\n  device.site:", f"\n{twice}  device.site:")
    )
    with pytest.raises(ValueError, match=re.escape("duplicate key 'device.name'")):
        load_tool().outputs(source)


def test_generator_refuses_an_id_given_to_two_paths(tmp_path: Path) -> None:
    source = _source_with(
        tmp_path, lambda text: text.replace("device.site: {id: 3,", "device.site: {id: 2,")
    )
    with pytest.raises(
        ValueError, match=re.escape("id 2 of device.site already used by device.name")
    ):
        load_tool().outputs(source)


def test_generator_refuses_a_v2_key_that_reuses_a_retired_id(tmp_path: Path) -> None:
    source = _source_with(
        tmp_path, lambda text: text.replace("net.coap.edhoc: {id: 45,", "net.coap.edhoc: {id: 77,")
    )
    retired_id = load_json(V2_PATH)["retired"]["net.cell.roaming"]
    assert retired_id == 77
    with pytest.raises(
        ValueError, match=re.escape("id 77 of net.coap.edhoc already used by net.cell.roaming")
    ):
        load_tool().outputs(source)


# ---------------------------------------------------------------- device types


def test_device_types_have_the_three_reference_types(
    device_types: dict[str, dict[str, Any]],
) -> None:
    assert {"nbiot-sensor", "pi-gateway", "lte-camera"} <= device_types.keys()
    assert device_types["nbiot-sensor"]["coap_block_size"] == 64
    assert device_types["nbiot-sensor"]["link"] == "nb-iot"
    assert device_types["nbiot-sensor"]["ram_bytes"] == 64 * 2**20
    assert device_types["pi-gateway"]["power"] == "mains"
    assert device_types["pi-gateway"]["coap_block_size"] == 1024
    assert device_types["lte-camera"]["ram_bytes"] == 256 * 2**20
    assert device_types["lte-camera"]["coap_block_size"] == 512


def test_device_types_have_every_field_well_typed(device_types: dict[str, dict[str, Any]]) -> None:
    for name, kind in device_types.items():
        for field, expected in DEVICE_TYPE_FIELDS.items():
            assert isinstance(kind[field], expected), (name, field)
        assert kind["power"] in ("battery", "mains")
        assert kind["link"] in ("nb-iot", "lte-m", "lte", "ethernet", "wifi")
        assert (kind["battery_wh"] is None) == (kind["power"] == "mains"), name
        block = kind["coap_block_size"]
        assert 16 <= block <= 1024 and block & (block - 1) == 0, name
        for version in [*kind["firmware_versions"], kind["agent_version"]]:
            parse_version(version)


def test_device_types_fit_the_schema(v1: Schema, device_types: dict[str, dict[str, Any]]) -> None:
    block = v1.keys[("net", "coap", "block_size")]
    assert block.enum is not None
    models = {kind["hardware"] for kind in device_types.values()}
    for kind in device_types.values():
        assert kind["coap_block_size"] in block.enum
    for spec in v1:
        assert spec.hardware is None or spec.hardware <= models, spec.dotted


# ---------------------------------------------------------------- schema v1

Feature = Callable[[KeySpec], bool]
NUMERIC = ("int", "float", "number")
FEATURES: dict[str, Feature] = {
    **{f"type {t}": (lambda s, t=t: s.type == t) for t in TYPES},
    **{f"priority {p}": (lambda s, p=p: s.priority == p) for p in PRIORITIES},
    **{f"merge {m}": (lambda s, m=m: s.merge == m) for m in MERGE_POLICIES},
    "array with items": lambda s: s.type == "array" and s.items is not None,
    "array without items or with items any": lambda s: s.type == "array" and s.items == "any",
    "min on a number": lambda s: s.type in NUMERIC and s.min is not None,
    "max on a number": lambda s: s.type in NUMERIC and s.max is not None,
    "min length on str": lambda s: s.type == "str" and s.min is not None,
    "max length on str": lambda s: s.type == "str" and s.max is not None,
    "min length on array": lambda s: s.type == "array" and s.min is not None,
    "max length on array": lambda s: s.type == "array" and s.max is not None,
    "bounded bytes length": lambda s: s.type == "bytes" and s.min is not None and s.max is not None,
    "bytes without default": lambda s: s.type == "bytes" and s.default is UNSET,
    "enum of text": lambda s: s.enum is not None and all(isinstance(v, str) for v in s.enum),
    "enum of numbers": lambda s: s.enum is not None and all(isinstance(v, int) for v in s.enum),
    "enum of floats": lambda s: s.enum is not None and all(isinstance(v, float) for v in s.enum),
    "pattern": lambda s: s.pattern is not None,
    "unit": lambda s: s.unit is not None,
    "required": lambda s: s.required,
    "required without default": lambda s: s.required and s.default is UNSET,
    "nullable": lambda s: s.nullable,
    "nullable with null default": lambda s: s.nullable and s.default is None,
    "map with default": lambda s: s.type == "map" and s.default == {},
    "local allowed with min/max": lambda s: (
        s.local.allowed and s.local.min is not None and s.local.max is not None
    ),
    "local allowed with enum": lambda s: s.local.allowed and s.local.enum is not None,
    "local allowed without bounds": lambda s: s.local == LocalPolicy(allowed=True),
    "local not allowed": lambda s: not s.local.allowed,
    "agent version range": lambda s: s.agent != ANY_VERSION,
    "agent range with upper bound": lambda s: any(op.startswith("<") for op, _ in s.agent.clauses),
    "firmware range": lambda s: s.firmware != ANY_VERSION,
    "hardware list": lambda s: s.hardware is not None,
    "bulk long text default": lambda s: (
        s.priority == "bulk" and isinstance(s.default, str) and len(s.default) >= 400
    ),
}  # fmt: skip


def test_schema_loads_with_name_version_and_key_count(v1: Schema) -> None:
    assert (v1.name, v1.version) == ("edgecfg-device", 1)
    assert 250 <= len(v1) <= 400


@pytest.mark.parametrize("feature", list(FEATURES))
def test_schema_uses_feature(v1: Schema, feature: str) -> None:
    assert any(FEATURES[feature](spec) for spec in v1), f"no key uses {feature}"


def test_schema_declares_local_not_allowed_explicitly() -> None:
    raw = load_json(V1_PATH)["keys"]
    assert any(spec.get("local") == {"allowed": False} for spec in raw.values())
    assert any(spec.get("local") is False for spec in raw.values())


def test_every_key_has_a_description_and_a_unique_id(v1: Schema) -> None:
    assert all(spec.description.strip() for spec in v1)
    ids = [spec.id for spec in v1]
    assert len(ids) == len(set(ids))


def test_critical_class_holds_the_uplink_interval_and_security(v1: Schema) -> None:
    critical = {spec.dotted for spec in v1 if spec.priority == "critical"}
    assert "net.uplink.interval_s" in critical
    security = [spec for spec in v1 if spec.path[0] == "security"]
    assert security and all(spec.priority == "critical" for spec in security)


def test_camera_and_gateway_keys_are_hardware_specific(
    v1: Schema, device_types: dict[str, dict[str, Any]]
) -> None:
    for namespace, device_type in (("camera", "lte-camera"), ("gateway", "pi-gateway")):
        hardware = {spec.hardware for spec in v1 if spec.path[0] == namespace}
        assert hardware == {frozenset({device_types[device_type]["hardware"]})}, namespace


def test_schema_defaults_are_a_valid_partial_layer(v1: Schema) -> None:
    assert v1.validate(v1.defaults(), partial=True) == []


# ---------------------------------------------------------------- schema v2


def test_v2_evolves_v1(v1: Schema, v2: Schema) -> None:
    check_evolution([v1], v2)
    assert v2.version == 2
    assert v2.retired and all(path not in v2.keys for path in v2.retired)
    assert all(v1.keys[path].id == key_id for path, key_id in v2.retired.items())
    renamed = [spec for spec in v2 if spec.renamed_from is not None]
    assert renamed
    for spec in renamed:
        assert spec.renamed_from is not None
        assert spec.path not in v1.keys
        assert v1.keys[spec.renamed_from].id == spec.id
    old_ids = {spec.id for spec in v1}
    added = [spec for spec in v2 if spec.path not in v1.keys and spec.renamed_from is None]
    assert added and all(spec.id not in old_ids for spec in added)


def _v2_document() -> dict[str, Any]:
    return copy.deepcopy(load_json(V2_PATH))


def test_v2_that_renumbers_an_id_is_rejected(v1: Schema) -> None:
    doc = _v2_document()
    doc["keys"]["net.uplink.interval_s"]["id"] = 9999
    with pytest.raises(SchemaError, match="renumbers"):
        check_evolution([v1], schema_from_document(doc))


def test_v2_that_gives_an_old_id_to_a_new_path_is_rejected(v1: Schema) -> None:
    doc = _v2_document()
    doc["keys"]["net.uplink.interval_min_s"] = doc["keys"].pop("net.uplink.interval_s")
    with pytest.raises(SchemaError, match="reuses id"):
        check_evolution([v1], schema_from_document(doc))


def test_v2_that_reuses_a_retired_id_is_rejected() -> None:
    doc = _v2_document()
    (retired_id,) = doc["retired"].values()
    doc["keys"]["net.cell.roaming_policy"]["id"] = retired_id
    with pytest.raises(SchemaError, match="retired"):
        schema_from_document(doc)


# ---------------------------------------------------------------- example configs


@pytest.mark.parametrize(
    ("name", "device_type"),
    [("sensor-default.json", "nbiot-sensor"), ("camera.json", "lte-camera")],
)
def test_example_config_is_valid_and_fits_its_hardware(
    v1: Schema, device_types: dict[str, dict[str, Any]], name: str, device_type: str
) -> None:
    tree = check_model(load_json(FIXTURES / "configs" / name))
    assert isinstance(tree, dict)
    assert v1.validate(tree) == []
    hardware = device_types[device_type]["hardware"]
    applicable = [spec for spec in v1 if spec.applies_to(hardware=hardware) is None]
    excluded = {spec.dotted for spec in v1} - {spec.dotted for spec in applicable}
    with_default = {
        spec.dotted for spec in applicable if spec.default is not UNSET and spec.default != {}
    }
    leaves = _dotted_leaves(tree)
    assert excluded, f"every key applies to {hardware}: the example shows no hardware filter"
    assert not leaves & excluded
    assert with_default <= leaves


def _dotted_leaves(tree: dict[str, Any]) -> set[str]:
    from edgecfg.core.path import format_path
    from edgecfg.core.tree import walk_leaves

    return {format_path(path) for path, _ in walk_leaves(tree)}


def test_sensor_config_uses_the_sensor_block_size(device_types: dict[str, dict[str, Any]]) -> None:
    tree = load_json(FIXTURES / "configs" / "sensor-default.json")
    assert tree["net"]["coap"]["block_size"] == device_types["nbiot-sensor"]["coap_block_size"]


def test_invalid_config_has_several_violations_each_naming_its_path(v1: Schema) -> None:
    tree = check_model(load_json(FIXTURES / "configs" / "invalid.json"))
    assert isinstance(tree, dict)
    violations = v1.validate(tree)
    by_path = {v.path: v.expected for v in violations}
    expected = {
        "device.id": "required",
        "net.uplink.interval_s": ">=",
        "net.uplink.interval": "declared",
        "net.coap.block_size": "one of",
        "net.coap.server_uri": "matching",
        "log.level": "one of",
        "sensors.temperature.enabled": "bool",
        "sensors.humidity.calibration.points": "element 1",
        "device.name": "length <=",
        "net.cell.apn": "str",
        "power.battery.low_pct": "<=",
        "device.tags": "length <=",
    }
    assert set(by_path) == set(expected)
    for path, words in expected.items():
        assert words in by_path[path], (path, by_path[path])
        assert str(next(v for v in violations if v.path == path)).startswith(path)


# ---------------------------------------------------------------- config_for_schema on the fixture


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    hardware=st.sampled_from(
        [None, "nbiot-sensor-r3", "pi-gateway-cm4", "lte-camera-c2", "ltem-meter-w1"]
    ),
)
def test_config_for_schema_validates_against_the_fixture_schema(
    seed: int, hardware: str | None
) -> None:
    schema = read_schema(V1_PATH.read_bytes(), "json")
    tree = config_for_schema(schema, seed, hardware=hardware)
    assert schema.validate(tree) == []
    assert isinstance(get(tree, ("device", "id")), str)
    assert isinstance(get(tree, ("security", "psk_identity")), str)


def test_config_for_schema_validates_against_v2() -> None:
    schema = read_schema(V2_PATH.read_bytes(), "json")
    for seed in range(5):
        assert schema.validate(config_for_schema(schema, seed)) == []
