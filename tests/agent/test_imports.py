"""What a device's agent loads (issue 16: the agent in 30 MB of RSS).

The agent's modules are imported in a fresh interpreter and the modules it
loaded are read from ``sys.modules``: an operator's, gateway's or tooling
library there is memory a 64 MB device pays for nothing.  A structural check,
not an RSS threshold (``edgecfg bench agent`` measures the RSS).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

AGENT_MODULES = ("edgecfg.agent.sync", "edgecfg.agent.coap", "edgecfg.agent.apply")

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


def test_offenders_finds_a_package_and_its_submodules_but_not_a_prefix_name() -> None:
    loaded = {"yaml", "yaml.loader", "yamlish", "edgecfg.agent.sync", "edgecfg.gateway.server"}
    assert offenders(loaded, ("yaml", "edgecfg.gateway")) == [
        "edgecfg.gateway.server",
        "yaml",
        "yaml.loader",
    ]


def test_the_agent_loads_no_operator_gateway_or_tooling_module() -> None:
    loaded = loaded_by(*AGENT_MODULES)
    assert "edgecfg.agent.sync" in loaded  # the probe really imported the agent
    assert offenders(loaded, FORBIDDEN) == []


def test_the_device_process_loads_neither_openssl_nor_a_heavy_module() -> None:
    loaded = loaded_by(
        *AGENT_MODULES,
        "edgecfg.agent.sealed_store",
        "edgecfg.agent.overrides",
        "edgecfg.bench.agent_child",
        refuse_openssl=True,
    )
    assert "edgecfg.bench.agent_child" in loaded
    allowed_bench = {"edgecfg.bench", "edgecfg.bench.agent_child"}  # the probe itself
    assert offenders(loaded - allowed_bench, FORBIDDEN + DEVICE_PROCESS_FORBIDDEN) == []


@pytest.mark.parametrize("name", ["__version__", "make_delta", "Schema", "schema_from_document"])
def test_the_package_names_stay_importable_though_loaded_on_first_use(name: str) -> None:
    import edgecfg

    assert getattr(edgecfg, name) is not None
    assert name in dir(edgecfg)
