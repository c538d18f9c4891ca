"""Generate the fixture schema (v1 and v2) and the example configurations.

    uv run python tools/make_fixture_schema.py          # (re)write the files
    uv run python tools/make_fixture_schema.py --check  # exit 1 if a file is stale

The data lives in ``fixtures/source/device-schema.yaml`` (key specs, the v2
evolution, the example configs); this script only lays it out.  It writes
``fixtures/schema/device.json`` (v1), ``fixtures/schema/device-v2.json`` and
``fixtures/configs/{sensor-default,camera,invalid}.json``.  The output is
deterministic: one key spec per line, keys in the order of the source file.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any, cast

import yaml

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "fixtures" / "source" / "device-schema.yaml"
SCHEMA_DIR = ROOT / "fixtures" / "schema"
CONFIG_DIR = ROOT / "fixtures" / "configs"

Spec = dict[str, Any]
Keys = dict[str, Spec]


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (plain
    YAML keeps the last one silently, which would hide a duplicated path)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # pyright: ignore[reportUnknownMemberType]
            if key in seen:
                raise ValueError(f"{key_node.start_mark}: duplicate key {key!r}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_source(path: Path = SOURCE) -> dict[str, Any]:
    with path.open(encoding="utf-8") as stream:
        return cast(dict[str, Any], yaml.load(stream, Loader=_Loader))


def checked(keys: Keys, retired: dict[str, int] | None = None) -> Keys:
    """``keys`` unchanged; raises on a reused id, also one of a retired key
    (DESIGN §3: ids are never reused)."""
    owners = {key_id: path for path, key_id in (retired or {}).items()}
    for path, spec in keys.items():
        key_id = spec["id"]
        if key_id in owners:
            raise ValueError(f"id {key_id} of {path} already used by {owners[key_id]}")
        owners[key_id] = path
    return keys


def v1_keys(source: dict[str, Any]) -> Keys:
    return checked(source["v1"])


def v2_keys(source: dict[str, Any]) -> tuple[Keys, dict[str, int]]:
    """v1 with the evolution of ``source["v2"]``: keys retired (their ids stay
    taken), keys renamed keeping their id, new keys appended."""
    old, evolution = v1_keys(source), source["v2"]
    retired = {path: old[path]["id"] for path in evolution["retire"]}
    renames: dict[str, str] = evolution["rename"]
    keys: Keys = {}
    for path, spec in old.items():
        if path in retired:
            continue
        if path in renames:
            # renamed_from goes after id and type; the other fields keep their order
            keys[renames[path]] = {"id": spec["id"], "type": spec["type"], "renamed_from": path}
            keys[renames[path]].update(spec)
            continue
        keys[path] = spec
    for path, spec in evolution["add"].items():
        if path in keys:
            raise ValueError(f"duplicate path {path}")
        keys[path] = spec
    return checked(keys, retired), retired


def schema_text(
    source: dict[str, Any], version: int, keys: Keys, retired: dict[str, int] | None = None
) -> str:
    head = {"name": source["name"], "version": version, "description": source["description"]}
    lines = ["{"]
    lines += [f"  {json.dumps(f)}: {json.dumps(v, ensure_ascii=False)}," for f, v in head.items()]
    lines.append('  "keys": {')
    entries = [f"    {json.dumps(p)}: {json.dumps(s, ensure_ascii=False)}" for p, s in keys.items()]
    lines.append(",\n".join(entries))
    lines.append("  }" + ("," if retired else ""))
    if retired:
        lines.append(f'  "retired": {json.dumps(retired)}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def full_config(keys: Keys, hardware: str, values: dict[str, Any]) -> dict[str, Any]:
    """Every default that applies to ``hardware`` (JSON can't hold bytes: those stay unset)."""
    tree: dict[str, Any] = {}
    for path, spec in sorted(keys.items()):
        if "hardware" in spec and hardware not in spec["hardware"]:
            continue
        if path in values:
            value = values[path]
        elif "default" in spec:
            value = spec["default"]
        else:
            continue
        _set(tree, path, value)
    return tree


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def _remove(tree: dict[str, Any], path: str) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        tree = tree[part]
    del tree[leaf]


def configs(source: dict[str, Any], keys: Keys) -> dict[str, Any]:
    """The example configs: full ones for a hardware model, or one ``from``
    another with paths removed and values set."""
    trees: dict[str, Any] = {}
    for name, recipe in source["configs"].items():
        if "from" in recipe:
            tree = copy.deepcopy(trees[recipe["from"]])
            for path in recipe.get("remove", []):
                _remove(tree, path)
            for path, value in recipe.get("values", {}).items():
                _set(tree, path, value)
        else:
            tree = full_config(keys, recipe["hardware"], recipe["values"])
        trees[name] = tree
    return trees


def outputs(source_path: Path = SOURCE) -> dict[Path, str]:
    source = load_source(source_path)
    v1 = v1_keys(source)
    v2, retired = v2_keys(source)
    files = {
        SCHEMA_DIR / "device.json": schema_text(source, 1, v1),
        SCHEMA_DIR / "device-v2.json": schema_text(source, 2, v2, retired),
    }
    for name, tree in configs(source, v1).items():
        files[CONFIG_DIR / name] = json.dumps(tree, indent=2, ensure_ascii=False) + "\n"
    return files


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = 0
    for path, text in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale += 1
        if check:
            print(f"stale: {path.relative_to(ROOT)}")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
