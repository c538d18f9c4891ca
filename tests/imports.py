"""Reading a module's imports with :mod:`ast`, for the layering checks
(``tests/core/test_purity.py``, ``tests/test_layering.py``); and what a fresh
interpreter loads, for the device's import set (``tests/agent/test_imports.py``,
``tests/cli/test_device.py``)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """Every module name ``source`` imports, with relative imports resolved.

    ``from edgecfg import wire`` counts as importing ``edgecfg.wire``; calls of
    ``__import__("x")`` and ``importlib.import_module("x")`` count too.
    """
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module, is_package)
            names.append(target)
            names.extend(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if called in ("__import__", "import_module") and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    names.append(first.value)
    return names


FORBIDDEN = (
    "yaml",  # documents in YAML are an operator's
    "tomllib",
    "cbor_diag",  # diagnostic notation is for showing bytes to people
    "psycopg",
    "sqlite3",  # the gateway's stores
    "matplotlib",
    "aiocoap.oscore",  # only with OSCORE credentials (CoapLink loads it then)
    "filelock",  # aiocoap.oscore's
    "importlib.metadata",  # edgecfg.__version__, asked for by the CLI only
    "edgecfg.gateway",
    "edgecfg.fleet",
    "edgecfg.store",
    "edgecfg.sim",
    "edgecfg.bench",
    "edgecfg.cli",
    "edgecfg.core.schema_document",
)


DEVICE_PROCESS_FORBIDDEN = (
    "ssl",  # asyncio's TLS: libssl + libcrypto, 4.4 MB (refused, see device_process)
    "_ssl",
    "_hashlib",  # OpenSSL digests; the built-in _sha256 gives the same ETags
    "pickle",  # tracemalloc's; the bench's traced run only
    "tracemalloc",
    "argparse",  # the whole CLI's
    "email",  # importlib.metadata's
    "http",
    "multiprocessing",
    "concurrent.futures.process",
    "logging.config",
    "unittest",
)
"""What the device's own process (``bench agent``'s child) must not load beyond
:data:`FORBIDDEN`: each was measured in MBs of RSS (README, "Performance")."""


def loaded_by(*modules: str, refuse_openssl: bool = False) -> set[str]:
    """The modules a fresh interpreter holds after importing ``modules``
    (first refusing OpenSSL's modules as a device's process does, if asked)."""
    refuse = (
        "from edgecfg.agent.device_process import refuse_openssl\nrefuse_openssl()\n"
        if refuse_openssl
        else ""
    )
    code = (
        f"{refuse}import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(n for n, m in sys.modules.items() if m is not None)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(result.stdout))


def offenders(loaded: set[str], forbidden: tuple[str, ...]) -> list[str]:
    """The loaded modules that are, or lie under, a forbidden one."""
    return sorted(
        name for name in loaded if any(name == f or name.startswith(f + ".") for f in forbidden)
    )
