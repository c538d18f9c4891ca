"""The MQTT bridge against the machine's real Mosquitto (127.0.0.1:1883); an
outage is a port where nothing listens until a forwarder to the broker opens
there.  Without a broker the tests skip, saying so."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiocoap
import aiomqtt
import pytest
from aiocoap.numbers.codes import Code

from edgecfg.core.ids import DeviceId
from edgecfg.errors import UsageError
from edgecfg.fleet.identity import InsecurePolicy
from edgecfg.gateway.mqtt import BrokerAddress, MqttBridge, parse_mqtt_url
from edgecfg.gateway.server import Gateway
from edgecfg.store import MemoryStore
from edgecfg.wire.cbor import encode
from edgecfg.wire.senml import Record, encode_senml
from tests.gateway.conftest import BROKER, SCHEMA, broker_listening, sensor

TIMEOUT = 60.0
PACK = encode_senml([Record("battery", 87.0, "%EL", 1.7e9), Record("rsrp", -101.0, "dBm", 1.7e9)])


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def prefix() -> str:
    if not broker_listening(*BROKER):
        pytest.skip(f"no MQTT broker on {BROKER[0]}:{BROKER[1]} (Mosquitto runs there on CI)")
    return f"test-{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def subscribed(port: int, topic: str) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(BROKER[0], port, identifier=f"sub-{uuid.uuid4().hex[:8]}") as sub:
        await sub.subscribe(topic, qos=1)
        yield sub


async def receive(sub: aiomqtt.Client, count: int) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    async with asyncio.timeout(TIMEOUT):
        async for message in sub.messages:
            payload = message.payload
            assert isinstance(payload, bytes)
            got.append((str(message.topic), payload))
            if len(got) == count:
                return got
    raise AssertionError("unreachable")


@asynccontextmanager
async def gateway_with(bridge: MqttBridge) -> AsyncIterator[Gateway]:
    gateway = Gateway(MemoryStore(), policy=InsecurePolicy(), refresh_s=0)
    gateway.guard.trust("127.0.0.1")
    gateway.fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    gateway.fleet.add_device(sensor("dev-1"))
    gateway.service.events = bridge
    await gateway.start("127.0.0.1", 0)
    bridge.start()
    try:
        yield gateway
    finally:
        await bridge.stop()
        await gateway.stop()


async def post(gateway: Gateway, path: str, payload: bytes, content_format: int) -> Code:
    client = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        message = aiocoap.Message(code=Code.POST, uri=gateway.uri + path, payload=payload)
        message.opt.content_format = content_format
        response = await asyncio.wait_for(client.request(message).response, TIMEOUT)
        return response.code
    finally:
        await client.shutdown()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mqtt://broker", BrokerAddress("broker", 1883, "edgecfg")),
        ("mqtt://10.0.0.1:2883/site/a", BrokerAddress("10.0.0.1", 2883, "site/a")),
    ],
)
def test_broker_urls_parse(text: str, expected: BrokerAddress) -> None:
    assert parse_mqtt_url(text) == expected


@pytest.mark.parametrize(
    "text", ["http://broker", "mqtt://", "mqtt://h:0", "mqtt://h:99999", "mqtt://h/a/#"]
)
def test_bad_broker_urls_are_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(UsageError, match=r"--mqtt"):
        parse_mqtt_url(text)


async def test_a_subscriber_sees_telemetry_and_sync_events(prefix: str, tmp_path: Path) -> None:
    bridge = MqttBridge(BrokerAddress(*BROKER, prefix), tmp_path / "outbox")
    async with subscribed(BROKER[1], f"{prefix}/#") as sub, gateway_with(bridge) as gateway:
        assert await post(gateway, "/tel/dev-1", PACK, 112) == Code.CHANGED
        etag = gateway.fleet.etag(DeviceId("dev-1"))
        report = encode({"applied": etag})
        assert (await post(gateway, "/state/dev-1", report, 60)).is_successful()
        got = await receive(sub, 3)
    topics = [topic for topic, _ in got]
    assert topics == [f"{prefix}/tel/dev-1", f"{prefix}/tel/dev-1/json",
                      f"{prefix}/events/applied/dev-1"]  # fmt: skip
    assert got[0][1] == PACK  # as received
    senml = json.loads(got[1][1])
    assert senml[0] == {"n": "battery", "t": 1.7e9, "u": "%EL", "v": 87.0}
    applied = json.loads(got[2][1])
    assert applied["device"] == "dev-1"
    assert applied["etag"] == etag.hex()


@asynccontextmanager
async def reachable_broker(port: int) -> AsyncIterator[None]:
    """From now on, ``port`` leads to the broker: a TCP forwarder to it (before,
    nothing listened there: the bridge saw an outage)."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*BROKER)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(forward, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.02)
    del what


async def test_an_outage_is_queued_bounded_and_drained_on_reconnect(
    prefix: str, tmp_path: Path
) -> None:
    port = free_tcp_port()  # nothing listens there yet
    bridge = MqttBridge(
        BrokerAddress("127.0.0.1", port, prefix), tmp_path / "outbox",
        max_messages=4, backoff_first_s=0.05, backoff_max_s=0.2,
    )  # fmt: skip
    async with gateway_with(bridge) as gateway:
        for _ in range(3):  # 3 packs = 6 messages; the outbox keeps the newest 4
            assert await post(gateway, "/tel/dev-1", PACK, 112) == Code.CHANGED
        assert not bridge.connected
        assert len(bridge.outbox) == 4
        assert bridge.outbox.dropped == 2
        async with subscribed(BROKER[1], f"{prefix}/#") as sub, reachable_broker(port):
            got = await receive(sub, 4)
            await wait_for(lambda: len(bridge.outbox) == 0, "outbox drained")
            assert bridge.connected
    assert [topic.removeprefix(prefix) for topic, _ in got] == [
        "/tel/dev-1", "/tel/dev-1/json", "/tel/dev-1", "/tel/dev-1/json",
    ]  # fmt: skip
    assert bridge.published == 4
