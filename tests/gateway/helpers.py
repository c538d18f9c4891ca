"""Helpers of the gateway and agent tests that run a real gateway on loopback UDP."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiocoap
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption

from edgecfg.core.ids import DeviceId
from edgecfg.fleet.identity import InsecurePolicy
from edgecfg.gateway.server import Gateway
from edgecfg.store import DeviceRecord, MemoryStore, Store
from tests.paths import SCHEMA

SENSOR = "nbiot-sensor-r3"
INTERVAL = ("net", "uplink", "interval_s")

BROKER = ("127.0.0.1", 1883)
"""The MQTT broker (Mosquitto) the machines run."""


def broker_listening(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) == 0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sensor(device: str, region: str = "eu/west", agent: str = "1.0.0") -> DeviceRecord:
    return DeviceRecord(
        DeviceId(device), {"region": region}, hardware=SENSOR, firmware="2.1.0", agent_version=agent
    )


@asynccontextmanager
async def started_gateway(store: Store | None = None) -> AsyncIterator[Gateway]:
    """A started gateway with the fixture schema and devices dev-1, dev-2, on
    ``store`` (default: a new in-memory one)."""
    gateway = Gateway(store or MemoryStore(), policy=InsecurePolicy(), refresh_s=0)
    # aiocoap's plain-CoAP client does not answer Echo challenges: loopback counts
    # as proven here, and test_amplification.py tests the guard on fresh gateways.
    gateway.guard.trust("127.0.0.1")
    gateway.fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    for device in ("dev-1", "dev-2"):
        gateway.fleet.add_device(sensor(device))
    port = free_udp_port()
    await gateway.start("127.0.0.1", port)
    try:
        yield gateway
    finally:
        await gateway.stop()


async def ask(
    client: aiocoap.Context,
    gateway: Gateway,
    code: Code,
    path: str,
    *,
    payload: bytes = b"",
    block2: tuple[int, int] | None = None,
    etags: tuple[bytes, ...] = (),
    blockwise: bool = False,
    **options: object,
) -> aiocoap.Message:
    message = aiocoap.Message(code=code, uri=gateway.uri + path, payload=payload)
    if block2 is not None:
        message.opt.block2 = BlockOption.BlockwiseTuple(block2[0], False, block2[1])
    if etags:
        message.opt.etags = etags
    for name, value in options.items():
        setattr(message.opt, name, value)
    return await client.request(message, handle_blockwise=blockwise).response


def remembered_by_aiocoap(gateway: Gateway) -> int:
    """Requests kept for duplicate detection: the gateway's slim tables, and
    aiocoap's own private one (which they replace: it must stay empty)."""
    assert gateway.context is not None
    total = sum(len(table) for table in gateway.remembered)
    for interface in gateway.context.request_interfaces:
        messages = interface.token_interface.message_interface
        total += len(messages._ctx._recent_messages)  # pyright: ignore
    return total
