"""The house of DESIGN §2: which package may import which, and which package
owns each third-party library.  Imports are read with :mod:`ast` (the same
reader as the purity check of ``edgecfg.core``), so imports inside functions
count as well as top-level ones."""

from __future__ import annotations

from pathlib import Path

import pytest

import edgecfg
from tests.imports import imported_modules

ROOT = Path(edgecfg.__file__).resolve().parent

BELOW: dict[str, set[str]] = {
    "errors": set(),
    "crypto": {"errors"},
    "core": {"errors"},
    "wire": {"core", "errors"},
    "store": {"wire", "core", "errors"},
    "fleet": {"store", "wire", "core", "crypto", "errors"},
    "agent": {"wire", "core", "crypto", "errors"},
    "gateway": {"fleet", "store", "wire", "core", "crypto", "errors"},
    "sim": {"gateway", "agent", "fleet", "store", "wire", "core", "crypto", "errors"},
    "bench": {"sim", "gateway", "agent", "fleet", "store", "wire", "core", "crypto", "errors"},
    "cli": {"bench", "sim", "gateway", "agent", "fleet", "store", "wire", "core", "crypto",
            "errors"},
    "__init__": {"core", "wire", "errors"},
}  # fmt: skip
"""Packages (and top-level modules) each one may import besides itself."""

OWNERS: dict[str, set[str]] = {
    "aiocoap": {"gateway", "agent", "bench"},
    "cbor2": {"wire"},
    "zstandard": {"wire", "bench"},  # bench: the zstd-with-dictionary baseline
    "sqlite3": {"store"},
    "psycopg": {"store"},
    "psycopg_pool": {"store"},
    "cryptography": {"crypto"},
    "aiomqtt": {"gateway"},
    "jsonpatch": {"bench"},
    "lz4": {"bench"},
    "matplotlib": {"sim", "bench"},
    # byte-bounded caches of the fleet and resolver, and of POST answers served block-wise
    "cachetools": {"fleet", "core", "gateway"},
    # the optimizer's numerics (the optimize extra): its maths in core, the
    # panels it reads in fleet, sim and bench; never the agent
    "numpy": {"core", "fleet", "sim", "bench"},
    "scipy": {"core"},
    "sklearn": {"core"},
}
"""Third-party libraries and the packages that may import them (DESIGN §2)."""


def _module(file: Path) -> str:
    parts = list(file.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["edgecfg", *parts])


FILES = sorted(ROOT.rglob("*.py"))


def breaches(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """The modules ``source`` (module ``module``) imports against the rules."""
    package = module.split(".")[1] if "." in module else "__init__"
    names = imported_modules(source, module, is_package=is_package)
    found: set[str] = set()
    for name in names:
        top, _, rest = name.partition(".")
        if top == "edgecfg":
            target = rest.split(".")[0] if rest else ""
            if target and target != package and target not in BELOW[package]:
                found.add(f"edgecfg.{target}")
        elif top in OWNERS and package not in OWNERS[top]:
            found.add(top)
    return sorted(found)


@pytest.mark.parametrize("file", FILES, ids=[str(f.relative_to(ROOT)) for f in FILES])
def test_every_module_imports_only_what_its_layer_may(file: Path) -> None:
    source = file.read_text(encoding="utf-8")
    module = _module(file)
    package = file.name == "__init__.py"
    assert breaches(source, module, is_package=package) == [], f"{module} reaches outside its layer"


def test_every_package_has_a_rule() -> None:
    assert {file.relative_to(ROOT).with_suffix("").parts[0] for file in FILES} <= set(BELOW)


@pytest.mark.parametrize(
    ("source", "module", "found"),
    [
        ("import aiocoap", "edgecfg.fleet.sync", ["aiocoap"]),
        ("from edgecfg.gateway.server import Gateway", "edgecfg.fleet.fleet", ["edgecfg.gateway"]),
        ("def f():\n    from edgecfg.cli import main", "edgecfg.bench.sync", ["edgecfg.cli"]),
        ("from ..fleet import fleet", "edgecfg.agent.sync", ["edgecfg.fleet"]),
        ("import sqlite3", "edgecfg.gateway.server", ["sqlite3"]),
        ("import cryptography.hazmat", "edgecfg.agent.sync", ["cryptography"]),
        ("from edgecfg.fleet import fleet", "edgecfg.gateway.server", []),
        ("import aiocoap", "edgecfg.agent.coap", []),
        ("from edgecfg.sim import link", "edgecfg.bench.sync", []),
    ],
)
def test_the_checker_finds_what_breaks_the_rules(
    source: str, module: str, found: list[str]
) -> None:
    assert breaches(source, module) == found
