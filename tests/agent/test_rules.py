"""Adaptive rules on the device (issue 14): applied offline on a wake, kept
across a restart, reported in the next /state and shown by the gateway's
explain, over real CoAP on loopback."""

from __future__ import annotations

from pathlib import Path

from edgecfg.agent.coap import CoapLink
from edgecfg.agent.overrides import LocalOverrides
from edgecfg.agent.rules import LocalRules
from edgecfg.agent.sealed_store import RULES_FILE, LocalState
from edgecfg.agent.sync import Agent, Backoff
from edgecfg.core.ids import DeviceId
from edgecfg.core.tree import get
from edgecfg.fleet.adaptation import reported_adaptation
from edgecfg.gateway.server import Gateway
from edgecfg.wire.adaptation import read_rules
from tests.paths import FIXTURES

FAST = Backoff(base_s=0.05, cap_s=0.5, attempts=8)
RULES = read_rules((FIXTURES / "rules" / "examples.yaml").read_bytes(), "yaml")
TELEMETRY = ("telemetry", "interval_s")
MODE = ("power", "mode")
RSRP_MIN = ("net", "cell", "rsrp_min_dbm")
DAY = 86_400.0


def _agent(gateway: Gateway, link: CoapLink, folder: Path) -> Agent:
    schema = gateway.fleet.schema
    assert schema is not None
    state = LocalState(folder)
    local = LocalOverrides(folder / "local", node="dev-1", schema=schema)
    rules = LocalRules(state, RULES, schema)
    return Agent(link, state, device="dev-1", backoff=FAST, local=local, rules=rules)


async def test_a_low_battery_wake_adapts_offline_and_survives_a_restart(
    gateway: Gateway, tmp_path: Path
) -> None:
    async with CoapLink(gateway.uri, ack_timeout=0.5) as link:
        await _agent(gateway, link, tmp_path).sync()
    # the gateway is gone: the device wakes with 18% battery
    await gateway.stop()
    async with CoapLink(gateway.uri, ack_timeout=0.2, max_retransmit=0) as link:
        agent = _agent(gateway, link, tmp_path)
        synced = agent.config
        assert synced is not None
        layer = agent.wake({"battery_pct": 18.0}, now=10 * DAY)
        assert layer is not None
        assert agent.config is not None
        assert get(agent.config, TELEMETRY) == 4 * get(synced, TELEMETRY)  # type: ignore[operator]
        assert get(agent.config, MODE) == "saver"
    assert (tmp_path / RULES_FILE).exists()
    # a restart: the layer and the rule's dwell come back from the sealed record
    async with CoapLink(gateway.uri, ack_timeout=0.2, max_retransmit=0) as link:
        again = _agent(gateway, link, tmp_path)
        assert again.config is not None and get(again.config, MODE) == "saver"
        assert get(again.config, TELEMETRY) == 4 * get(synced, TELEMETRY)  # type: ignore[operator]
        assert again.rules is not None and again.rules.unreported() == layer
        # charged an hour later: the 6 h dwell holds the rule
        again.wake({"battery_pct": 90.0}, now=10 * DAY + 3600)
        assert get(again.config, MODE) == "saver"
        again.wake({"battery_pct": 90.0}, now=10 * DAY + 6 * 3600)
        assert get(again.config, MODE) == get(synced, MODE)


async def test_the_adaptation_reaches_the_gateway_explain_with_the_next_sync(
    gateway: Gateway, tmp_path: Path
) -> None:
    device = DeviceId("dev-1")
    async with CoapLink(gateway.uri, ack_timeout=0.5) as link:
        agent = _agent(gateway, link, tmp_path)
        await agent.sync()
        assert reported_adaptation(gateway.fleet.store, device) is None
        for wake in range(3):  # three wakes of poor coverage
            agent.wake({"rsrp_dbm": -121.0, "battery_pct": 60.0}, now=DAY + wake * 600)
        assert agent.config is not None and get(agent.config, RSRP_MIN) == -100
        result = await agent.sync()  # config unchanged: the report goes up for the layer
        assert result.outcome == "current"
        assert agent.rules is not None and agent.rules.unreported() is None
        reported = reported_adaptation(gateway.fleet.store, device)
        assert reported is not None
        [adapted], refused = reported.at([RSRP_MIN])
        assert refused == []
        assert (adapted.value, adapted.rule, adapted.since) == (-100, "poor-coverage", DAY + 1200)
        assert adapted.trigger is not None and adapted.trigger.value == -121.0
        assert adapted.condition == "rsrp_dbm = -121 < -115"
        # the served configuration is the gateway's: the layer stays the device's own
        assert get(gateway.fleet.resolve(device).tree, RSRP_MIN) != -100
        # nothing new to say: the next sync sends no layer again
        before = link.traffic.round_trips
        assert (await agent.sync()).outcome == "current"
        assert link.traffic.round_trips - before == 1
