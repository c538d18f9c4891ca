"""Offline changes and reconnect over real CoAP: journal, merge, idempotent answers."""

from __future__ import annotations

from pathlib import Path

import aiocoap
import pytest
from aiocoap.numbers.codes import Code

from edgecfg.agent.coap import CoapLink
from edgecfg.agent.overrides import LocalOverrides
from edgecfg.agent.sealed_store import LocalState
from edgecfg.agent.sync import Agent, Backoff
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.journal import LocalOverrideRefused
from edgecfg.core.layers import layer_from_parts, local_layer
from edgecfg.core.tree import get
from edgecfg.fleet.reconcile import describe, last_outcome
from edgecfg.gateway.server import Gateway
from edgecfg.wire.cbor import decode, encode
from edgecfg.wire.journal import entry_to_value

FAST = Backoff(base_s=0.05, cap_s=0.5, attempts=8)
DAY_MS = 86_400_000
TELEMETRY = ("telemetry", "interval_s")  # device-wins-within-bounds, local 300..86400
POWER = ("power", "wake", "interval_s")  # min, local 3600..604800
UPLINK = ("net", "uplink", "interval_s")  # device-wins-within-bounds, local 600..86400


def _agent(gateway: Gateway, link: CoapLink, folder: Path) -> Agent:
    schema = gateway.fleet.schema
    assert schema is not None
    local = LocalOverrides(folder / "local", node="dev-1", schema=schema)
    return Agent(link, LocalState(folder), device="dev-1", backoff=FAST, local=local)


def _write(gateway: Gateway, path: tuple[str, ...], value: int, now: float) -> None:
    layer = LayerId("region/eu")
    edit = layer_from_parts(sets={path: value})
    gateway.fleet.write_layer(layer, edit, author="ops", message="", now=now)


async def test_offline_overrides_are_used_locally_then_merged_on_reconnect(
    gateway: Gateway, tmp_path: Path
) -> None:
    async with CoapLink(gateway.uri, ack_timeout=0.5) as link:
        agent = _agent(gateway, link, tmp_path)
        await agent.sync()
        local = agent.local
        assert local is not None
        # offline for a week: two local changes, while the server moves on
        local.set(TELEMETRY, 900, reason="save battery", now_ms=1 * DAY_MS)
        local.set(POWER, 7200, reason="wake less", now_ms=2 * DAY_MS)
        assert get(agent.config or {}, TELEMETRY) == 900  # the device runs on it at once
        _write(gateway, POWER, 3600, now=3 * 86_400.0)
        with pytest.raises(LocalOverrideRefused, match=r"log\.level"):
            local.set(("log", "level"), "trace", reason="debug", now_ms=4 * DAY_MS)
        result = await agent.sync()  # reconnect
    assert result.outcome == "updated"
    served = gateway.fleet.resolve(DeviceId("dev-1")).tree
    assert get(served, TELEMETRY) == 900  # device-wins-within-bounds: kept
    assert get(served, POWER) == 3600  # min(7200, 3600): the server's smaller value
    assert agent.config is not None and get(agent.config, TELEMETRY) == 900
    assert local.pending() == ()  # acknowledged
    outcome = last_outcome(gateway.fleet, DeviceId("dev-1"))
    assert isinstance(outcome, dict)
    assert [item[1] for item in outcome["accepted"]] == ["telemetry.interval_s"]  # type: ignore[index,union-attr]
    [(sequence, path, reason)] = outcome["rejected"]  # type: ignore[misc,index]
    assert (sequence, path) == (2, "power.wake.interval_s")
    assert "min" in reason  # type: ignore[operator]
    # the server moved power.wake.interval_s too: a conflict, reported and explained
    assert outcome["conflicts"] == [[2, "power.wake.interval_s"]]
    assert describe(outcome, [POWER])[-1] == (
        "local override #2 of power.wake.interval_s: a conflict "
        "(the server changed it too, to another value)"
    )
    [why] = gateway.fleet.explain(DeviceId("dev-1"), TELEMETRY)
    assert why.source == local_layer("dev-1")


async def test_replayed_and_stale_reports_never_apply_twice(
    gateway: Gateway, tmp_path: Path
) -> None:
    async with CoapLink(gateway.uri, ack_timeout=0.5) as link:
        agent = _agent(gateway, link, tmp_path)
        await agent.sync()
        local = agent.local
        assert local is not None
        first = local.set(UPLINK, 1200, reason="a", now_ms=DAY_MS)
        second = local.set(UPLINK, 1800, reason="b", now_ms=2 * DAY_MS)
        held = agent.state.load_config()
        assert held is not None
        report = encode({
            "applied": held.etag,
            "base": held.etag,
            "journal": [entry_to_value(first), entry_to_value(second)],
        })  # fmt: skip
        stale = encode({"applied": held.etag, "journal": [entry_to_value(first)]})
    context = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        answers = []
        for body in (report, report, stale):  # duplicated, then an older one arriving late
            message = aiocoap.Message(
                code=Code.POST, uri=f"{gateway.uri}/state/dev-1", payload=body
            )
            answers.append(decode((await context.request(message).response).payload))
    finally:
        await context.shutdown()
    local_answers = [answer["local"] for answer in answers]  # type: ignore[index]
    assert local_answers[0] == local_answers[1] == local_answers[2]
    assert local_answers[0]["ack"] == 2  # type: ignore[index]
    history = gateway.fleet.history(local_layer("dev-1"))
    assert len(history) == 1  # merged once
    assert get(gateway.fleet.resolve(DeviceId("dev-1")).tree, UPLINK) == 1800  # the later one


async def test_the_journal_survives_a_restart_and_a_torn_append(
    gateway: Gateway, tmp_path: Path
) -> None:
    schema = gateway.fleet.schema
    local = LocalOverrides(tmp_path, node="dev-1", schema=schema)
    local.set(TELEMETRY, 600, reason="x", now_ms=DAY_MS)
    local.set(TELEMETRY, 1200, reason="y", now_ms=DAY_MS)  # same millisecond: HLC counter
    journal = tmp_path / "journal.bin"
    journal.write_bytes(journal.read_bytes() + b"\x00\x00\x00\x40torn")  # a power cut mid-append
    again = LocalOverrides(tmp_path, node="dev-1", schema=schema)
    assert [e.value for e in again.pending()] == [600, 1200]
    assert again.pending()[0].at < again.pending()[1].at
    entry = again.set(TELEMETRY, 1800, reason="z", now_ms=DAY_MS - 5000)  # clock went back
    assert entry.at > again.pending()[1].at
    assert again.fsyncs == 1
