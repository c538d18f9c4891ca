"""A staged rollout over real CoAP on loopback (issue 15): the change cuts the
canary off from the gateway; every canary agent reverts by itself and says
so, the rollout aborts on those reports, and the rollback brings every
device back to its old configuration through its normal sync."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from edgecfg.agent.apply import SERVER_URI, ApplyGuard, FileApplier, ReachabilityProbe, TrialPolicy
from edgecfg.agent.coap import CoapLink
from edgecfg.agent.sealed_store import LocalState
from edgecfg.agent.sync import Agent, Backoff
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import layer_from_parts
from edgecfg.core.path import format_path
from edgecfg.core.rollout import Decision, Phase
from edgecfg.gateway.server import Gateway
from tests.gateway.helpers import free_udp_port, sensor

FAST = Backoff(base_s=0.05, cap_s=0.5, attempts=8)
NAMES = tuple(f"dev-{n}" for n in range(1, 21))
DAY = 86400.0


@pytest.fixture
async def agents(gateway: Gateway, tmp_path: Path) -> AsyncIterator[dict[str, Agent]]:
    """Twenty real agents with the reachability probe, synced once."""
    fleet = gateway.fleet
    for name in NAMES[2:]:  # dev-1 and dev-2 are the fixture's
        fleet.add_device(sensor(name))
    fleet.write_layer(LayerId("global"), layer_from_parts(sets={SERVER_URI: gateway.uri}),
                      author="ops", message="", now=2.0)  # fmt: skip
    gateway.layer_changed(LayerId("global"))
    found: dict[str, Agent] = {}
    async with AsyncExitStack() as stack:
        for name in NAMES:
            link = await stack.enter_async_context(CoapLink(gateway.uri, ack_timeout=0.5))
            state = LocalState(tmp_path / name)
            policy = TrialPolicy(fleet.schema, hardware="nbiot-sensor-r3", firmware="2.1.0",
                                 probe_timeout_s=60.0)  # fmt: skip
            guard = ApplyGuard(state, appliers=[FileApplier(tmp_path / name / "app.json")],
                               probes=[ReachabilityProbe(name, link)], policy=policy)  # fmt: skip
            await guard.boot()
            agent = Agent(link, state, device=name, backoff=FAST, guard=guard)
            assert (await agent.sync()).outcome == "updated"
            found[name] = agent
        yield found


async def test_a_rollout_that_cuts_the_canary_off_aborts_on_their_reverts(
    gateway: Gateway, agents: dict[str, Agent]
) -> None:
    before = {name: gateway.fleet.etag(DeviceId(name)) for name in NAMES}
    nowhere = f"coap://127.0.0.1:{free_udp_port()}"  # nothing listens there
    plan: dict[str, object] = {
        "change": {format_path(SERVER_URI): nowhere},
        "target": "region/eu",
        "stages": ["50%", "100%"],
    }
    start = 1_000_000.0
    rollout = gateway.rollouts.start(plan, now=start, author="ops", rollout_id="r1")
    cohort = gateway.fleet.store.rollout_devices(rollout)
    canary = {c.device for c in cohort if c.arm == "canary"}
    assert len(canary) == 10
    for name, agent in agents.items():
        result = await agent.sync()
        # every device synced a new version; a canary reverted it by itself
        assert agent.state.held_is_good()
        assert (result.etag == before[name]) == (name in canary)
    marks = {name: gateway.fleet.store.bad_versions(DeviceId(name)) for name in NAMES}
    assert {name for name, found in marks.items() if found} == canary
    assert all(found[0].reason == "probe-failed" for found in marks.values() if found)

    outcome = gateway.rollouts.decide(rollout, start + DAY)
    assert outcome.decision is Decision.ABORT
    assert "10 of 10 canary devices reverted" in outcome.reason
    assert outcome.state.phase is Phase.ROLLED_BACK
    for name, agent in agents.items():
        assert gateway.fleet.etag(DeviceId(name)) == before[name]  # the rollback's version
        result = await agent.sync()
        assert result.etag == before[name] and agent.state.held_is_good()
    status = gateway.rollouts.status(rollout, start + DAY)
    assert status["phase"] == "rolled_back"
