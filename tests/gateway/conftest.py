"""A real gateway on loopback UDP for the gateway and agent tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiocoap
import pytest

from edgecfg.core.ids import DeviceId
from edgecfg.fleet.identity import InsecurePolicy
from edgecfg.gateway.server import Gateway
from edgecfg.store import DeviceRecord, MemoryStore

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "fixtures" / "schema" / "device.json"
SCHEMA_V2 = ROOT / "fixtures" / "schema" / "device-v2.json"
SENSOR = "nbiot-sensor-r3"


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


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    """A started gateway with the fixture schema and devices dev-1, dev-2."""
    gateway = Gateway(MemoryStore(), policy=InsecurePolicy(), refresh_s=0)
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


@pytest.fixture
async def client() -> AsyncIterator[aiocoap.Context]:
    """A plain-CoAP aiocoap client context."""
    context = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        yield context
    finally:
        await context.shutdown()
