"""edgecfg.core stays pure: no I/O, clock, randomness or outer layers (DESIGN §2).

Every ``.py`` file under ``edgecfg/core`` is parsed with :mod:`ast`, so a module
added later is checked too, and imports hidden inside functions, ``if``
blocks or ``try`` blocks are found as well as top-level ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import edgecfg.core
from tests.imports import imported_modules

CORE_DIR = Path(edgecfg.core.__file__).resolve().parent

FORBIDDEN = (
    "asyncio", "aiocoap", "sqlite3", "socket", "time", "random", "os", "pathlib", "io",
    "subprocess", "threading", "datetime", "secrets", "uuid", "cbor2", "lz4", "zstandard",
    "cryptography", "yaml", "tomllib", "json",
    "edgecfg.wire", "edgecfg.store", "edgecfg.gateway", "edgecfg.agent", "edgecfg.cli",
    "edgecfg.sim",
)  # fmt: skip


def _module_name(file: Path, root: Path) -> str:
    parts = list(file.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["edgecfg", "core", *parts])


def forbidden_imports(names: list[str]) -> list[str]:
    return sorted(
        {name for name in names for bad in FORBIDDEN if name == bad or name.startswith(bad + ".")}
    )


CORE_FILES = sorted(CORE_DIR.rglob("*.py"))


def test_core_has_modules_to_check() -> None:
    names = {file.name for file in CORE_FILES}
    assert {"__init__.py", "path.py", "tree.py", "schema.py", "versions.py"} <= names


@pytest.mark.parametrize("file", CORE_FILES, ids=[f.name for f in CORE_FILES])
def test_core_module_imports_nothing_with_io_or_from_outer_layers(file: Path) -> None:
    module = _module_name(file, CORE_DIR)
    names = imported_modules(
        file.read_text(encoding="utf-8"), module, is_package=file.name == "__init__.py"
    )
    assert forbidden_imports(names) == [], f"{module} imports forbidden modules"


# The checker itself must be able to fail: feed it sources that break the rule.


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import os", ["os"]),
        ("import os.path as p", ["os.path"]),
        ("from time import monotonic", ["time", "time.monotonic"]),
        ("def f():\n    import random\n    return random.random()", ["random"]),
        ("try:\n    import json\nexcept ImportError:\n    pass", ["json"]),
        ("if True:\n    from datetime import datetime", ["datetime", "datetime.datetime"]),
        ("import cbor2, math", ["cbor2"]),
        ("from edgecfg.wire.cbor import encode", ["edgecfg.wire.cbor", "edgecfg.wire.cbor.encode"]),
        ("from edgecfg import store", ["edgecfg.store"]),
        ("from ..wire import cbor", ["edgecfg.wire", "edgecfg.wire.cbor"]),
        ("from .. import agent", ["edgecfg.agent"]),
        ("__import__('socket')", ["socket"]),
        ("import importlib\nimportlib.import_module('sqlite3')", ["sqlite3"]),
    ],
)
def test_purity_checker_catches_forbidden_imports(source: str, found: list[str]) -> None:
    names = imported_modules(source, "edgecfg.core.example")
    assert forbidden_imports(names) == sorted(found)


@pytest.mark.parametrize(
    "source",
    [
        "import math",
        "from collections.abc import Mapping",
        "from edgecfg.errors import PathError",
        "from edgecfg.core.path import parse_path",
        "from .tree import UNSET",
        "from . import versions",
        "import ossify",  # a prefix of a forbidden name is not that name
        "import timeit_like",
    ],
)
def test_purity_checker_allows_pure_imports(source: str) -> None:
    assert forbidden_imports(imported_modules(source, "edgecfg.core.example")) == []


def test_relative_imports_resolve_against_the_package() -> None:
    assert imported_modules("from .tree import x", "edgecfg.core.schema")[0] == "edgecfg.core.tree"
    assert imported_modules("from . import x", "edgecfg.core", is_package=True)[0] == "edgecfg.core"
    assert imported_modules("from ..wire import x", "edgecfg.core.sub", is_package=True)[0] == (
        "edgecfg.core.wire"
    )
