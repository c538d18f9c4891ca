"""Issue 15's proof over real CoAP on loopback: a group edit that cuts the
devices off from the gateway makes every affected agent revert by itself and
report it, and the gateway stops offering that version to them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgecfg.agent.apply import (
    SERVER_URI,
    ApplyGuard,
    FileApplier,
    ReachabilityProbe,
    TrialPolicy,
)
from edgecfg.agent.coap import CoapLink
from edgecfg.agent.sealed_store import LocalState
from edgecfg.agent.sync import Agent, Backoff
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import layer_from_parts
from edgecfg.core.path import Path as ConfigPath
from edgecfg.core.tree import Value, get
from edgecfg.gateway.server import Gateway
from tests.gateway.helpers import free_udp_port

FAST = Backoff(base_s=0.05, cap_s=0.5, attempts=8)
INTERVAL = ("net", "uplink", "interval_s")
DEVICES = ("dev-1", "dev-2")
PROBE_TIMEOUT_S = 60.0  # generous: a busy machine is slow, never wrong


@dataclass
class Device:
    agent: Agent
    guard: ApplyGuard
    file: Path


def edit(gateway: Gateway, layer: str, sets: dict[ConfigPath, Value], now: float) -> None:
    gateway.fleet.write_layer(
        LayerId(layer), layer_from_parts(sets=sets), author="ops", message="", now=now
    )
    gateway.layer_changed(LayerId(layer))


@pytest.fixture
async def devices(gateway: Gateway, tmp_path: Path) -> AsyncIterator[dict[str, Device]]:
    """Both fixture devices, each with its own link, state, applier and
    reachability probe, synced once on a config that names the gateway."""
    edit(gateway, "global", {SERVER_URI: gateway.uri}, now=2.0)
    schema = gateway.fleet.schema
    found: dict[str, Device] = {}
    async with AsyncExitStack() as stack:
        for name in DEVICES:
            link = await stack.enter_async_context(CoapLink(gateway.uri, ack_timeout=0.5))
            state = LocalState(tmp_path / name)
            file = tmp_path / name / "app.json"
            policy = TrialPolicy(
                schema, hardware="nbiot-sensor-r3", firmware="2.1.0",
                probe_timeout_s=PROBE_TIMEOUT_S,
            )  # fmt: skip
            guard = ApplyGuard(
                state, appliers=[FileApplier(file)], probes=[ReachabilityProbe(name, link)],
                policy=policy,
            )  # fmt: skip
            await guard.boot()
            agent = Agent(link, state, device=name, backoff=FAST, guard=guard)
            assert (await agent.sync()).outcome == "updated"  # the first config: good at once
            found[name] = Device(agent, guard, file)
        yield found


def running(device: Device, path: ConfigPath) -> object:
    """A value of what the device runs: its store and its process configuration file."""
    config = device.agent.config
    assert config is not None
    on_file = json.loads(device.file.read_text("utf-8"))
    assert on_file == config
    return get(config, path)


async def test_a_healthy_edit_is_applied_probed_confirmed_and_reported(
    gateway: Gateway, devices: dict[str, Device]
) -> None:
    edit(gateway, "region/eu", {INTERVAL: 900}, now=3.0)
    for name, device in devices.items():
        result = await device.agent.sync()
        assert result.outcome == "updated"
        assert gateway.fleet.store.bad_versions(DeviceId(name)) == []
        assert result.etag == gateway.fleet.etag(DeviceId(name))
        assert running(device, INTERVAL) == 900
        assert device.guard.phase == "idle"
        assert device.guard.unreported() == ((), 0)  # the confirmation went up with the report
        assert device.agent.state.held_is_good()
        assert gateway.fleet.store.bad_versions(DeviceId(name)) == []


async def test_an_edit_that_cuts_the_devices_off_is_reverted_by_each_and_reported(
    gateway: Gateway, devices: dict[str, Device]
) -> None:
    edit(gateway, "region/eu", {INTERVAL: 900}, now=3.0)
    for device in devices.values():
        await device.agent.sync()
    good = {name: gateway.fleet.etag(DeviceId(name)) for name in DEVICES}
    nowhere = f"coap://127.0.0.1:{free_udp_port()}"  # nothing listens there
    edit(gateway, "region/eu", {SERVER_URI: nowhere, INTERVAL: 1200}, now=4.0)
    for name, device in devices.items():
        bad = gateway.fleet.etag(DeviceId(name))
        result = await device.agent.sync()
        # reverted by itself: the store, the file and the report say the good version
        assert result.etag == good[name]
        assert running(device, INTERVAL) == 900
        assert running(device, SERVER_URI) == gateway.uri
        assert device.agent.state.held_is_good()
        assert gateway.fleet.store.get_device(DeviceId(name)).applied_etag == good[name]
        # ... and said so: the gateway holds the revert, with why
        (mark,) = gateway.fleet.store.bad_versions(DeviceId(name))
        assert (mark.etag, mark.reverted_to, mark.reason) == (bad, good[name], "probe-failed")
        assert mark.detail.startswith(f"reachability: {nowhere}")
        assert device.guard.unreported() == ((), 0)
        # the gateway does not offer that version again: one round trip, nothing to do
        again = await device.agent.sync()
        assert (again.outcome, again.etag, again.round_trips) == ("current", good[name], 1)
        assert device.guard.unreported() == ((), 0)  # no second trial
    # a newer version (the address fixed) is offered and confirmed
    edit(gateway, "region/eu", {SERVER_URI: gateway.uri, INTERVAL: 1200}, now=5.0)
    for name, device in devices.items():
        result = await device.agent.sync()
        assert result.outcome == "updated"
        assert result.etag == gateway.fleet.etag(DeviceId(name))
        assert running(device, INTERVAL) == 1200
        assert device.agent.state.held_is_good()


async def test_an_operator_clearing_the_mark_offers_the_version_again(
    gateway: Gateway, devices: dict[str, Device]
) -> None:
    nowhere = f"coap://127.0.0.1:{free_udp_port()}"
    edit(gateway, "region/eu", {SERVER_URI: nowhere}, now=4.0)
    device = devices["dev-1"]
    await device.agent.sync()
    assert gateway.fleet.store.clear_bad_versions(DeviceId("dev-1")) == 1
    await device.agent.sync()  # offered again, reverted again, reported again
    assert len(gateway.fleet.store.bad_versions(DeviceId("dev-1"))) == 1
    assert running(device, SERVER_URI) == gateway.uri
