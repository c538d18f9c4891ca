"""A bounded flood in the suite (issue 20): the mix of ``edgecfg bench flood``
from another loopback host for a few seconds, while a well-behaved peer
syncs.  Asserts invariants only (bounded state, the peer served, no 5.00, no
error logged), never speed: the figures are ``edgecfg bench flood``'s."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator

import aiocoap
import pytest
from aiocoap.numbers.codes import Code

from edgecfg.bench.hostile import flood
from edgecfg.core.admission import EXCHANGE_COST, Budgets
from edgecfg.core.ids import DeviceId
from edgecfg.fleet.identity import InsecurePolicy
from edgecfg.gateway.server import Gateway
from edgecfg.store import MemoryStore
from edgecfg.wire.cbor import encode
from tests.gateway.conftest import SCHEMA, free_udp_port, sensor
from tests.gateway.test_budgets import remembered_by_aiocoap
from tests.gateway.test_coap import ask

BUDGETS = Budgets(memory_mib=800 * EXCHANGE_COST / 2**20, peer_share=0.25, peer_observations=8,
                  observations=64, peer_spool_kib=128)  # fmt: skip
FLOODER = b"\x7f\x00\x00\x02"
DEVICES = [f"dev-{n}" for n in range(4)]


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gateway = Gateway(MemoryStore(), policy=InsecurePolicy(), refresh_s=0, budgets=BUDGETS)
    gateway.guard.trust("127.0.0.1")
    gateway.fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    for device in ["legit", *DEVICES]:
        gateway.fleet.add_device(sensor(device))
    await gateway.start("127.0.0.1", free_udp_port())
    try:
        yield gateway
    finally:
        await gateway.stop()


async def test_a_single_host_flood_keeps_state_bounded_and_a_device_served(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    assert gateway.address is not None
    address = gateway.address
    running = asyncio.create_task(asyncio.to_thread(
        flood, address, devices=DEVICES, rate=2000.0, seconds=30.0, ports=64,
        stop_after=4000,
    ))  # fmt: skip
    context = await aiocoap.Context.create_client_context(transports=["udp6"])
    synced = 0
    try:
        while not running.done() and synced < 5:  # a device syncing during the flood
            reply = await ask(context, gateway, Code.GET, "/cfg/legit", blockwise=True)
            assert reply.code == Code.CONTENT
            body = encode({"applied": reply.opt.etag or b"", "agent": "1"})
            report = await ask(context, gateway, Code.POST, "/state/legit", content_format=60,
                               payload=body)  # fmt: skip
            assert report.code == Code.CHANGED, report.payload
            synced += 1
            # the flood's state stays within its budgets all along
            assert gateway.admission.remembered <= BUDGETS.exchanges
            assert gateway.admission.remembered_by(FLOODER) <= BUDGETS.peer_exchanges
            assert remembered_by_aiocoap(gateway) <= gateway.admission.remembered
            assert gateway.gate.observations.of(FLOODER) <= BUDGETS.peer_observations
            assert gateway.gate.spool.of(FLOODER) <= BUDGETS.peer_spool_kib * 1024
        result = await running
        reply = await ask(context, gateway, Code.GET, "/cfg/legit", blockwise=True)
        assert reply.code == Code.CONTENT  # and after it
    finally:
        await context.shutdown()
    assert synced >= 1
    assert result.sent == 4000
    assert result.server_errors == 0
    assert sum(result.answers.values()) > 0
    assert result.answers.get("4.29", 0) > 0  # the flood was refused, not served
    assert gateway.gate.observations.total <= BUDGETS.peer_observations + 1
    assert gateway.fleet.store.get_device(DeviceId("legit")).applied_etag is not None
    gc.collect()
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad[:3]]
