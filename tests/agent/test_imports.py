"""What a device's agent loads (issue 16: the agent in 30 MB of RSS).

The agent's modules are imported in a fresh interpreter and the modules it
loaded are read from ``sys.modules``: an operator's, gateway's or tooling
library there is memory a 64 MB device pays for nothing.  A structural check,
not an RSS threshold (``edgecfg bench agent`` measures the RSS).
"""

from __future__ import annotations

import pytest

from tests.imports import DEVICE_PROCESS_FORBIDDEN, FORBIDDEN, loaded_by, offenders

AGENT_MODULES = ("edgecfg.agent.sync", "edgecfg.agent.coap", "edgecfg.agent.apply")


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
