"""OSCORE with two gateways on one PostgreSQL database (RFC 8613 Appendix
B.1.2): a device that moves to the other gateway is served there after Echo,
and the gateway it left forgets its context, so a request the device sent to
the new gateway cannot be replayed to the old one.  Real CoAP over loopback,
real PostgreSQL, a schema of its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from aiocoap.numbers.codes import Code

from edgecfg.crypto import RecordCipher
from edgecfg.fleet.credentials import Enrolment, enroll
from edgecfg.fleet.fleet import Fleet
from edgecfg.gateway.oscore import StoredCredentials
from edgecfg.gateway.server import Gateway
from edgecfg.store import PostgresStore
from edgecfg.store.postgres import ChangeListener
from tests.gateway.helpers import free_udp_port, sensor
from tests.gateway.test_oscore import KEY, DeviceSide, exchange
from tests.paths import SCHEMA
from tests.store.helpers import POSTGRES_URL, postgres_unreachable


@pytest.fixture
async def pair() -> AsyncIterator[tuple[list[Gateway], Enrolment]]:
    reason = postgres_unreachable()
    if reason is not None:
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with PostgresStore(POSTGRES_URL, schema=schema) as store:
        fleet = Fleet(store)
        fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
        fleet.add_device(sensor("dev-1"))
        enrolment = enroll(store, RecordCipher(KEY), "device", "dev-1", now=1.0)
    gateways: list[Gateway] = []
    try:
        for _ in range(2):
            store = PostgresStore(POSTGRES_URL, schema=schema)
            credentials = StoredCredentials(store, RecordCipher(KEY), shared=True)
            gateway = Gateway(store, credentials=credentials, refresh_s=30.0)
            await gateway.start("127.0.0.1", free_udp_port())
            gateways.append(gateway)
        yield gateways, enrolment
    finally:
        for gateway in gateways:
            await gateway.stop()
            gateway.fleet.store.close()
        with PostgresStore(POSTGRES_URL, schema=schema) as store:
            store.drop_schema()


async def test_a_moved_device_is_served_after_echo_and_cannot_be_replayed_back(
    pair: tuple[list[Gateway], Enrolment],
) -> None:
    (first, second), enrolment = pair
    kid = enrolment.record.kid
    device = DeviceSide(enrolment, sequence=100)
    assert (await device.get(first.uri, "cfg/dev-1", mid=1)).code == Code.CONTENT
    assert first.credentials is not None and kid in first.credentials.loaded

    # moved: the other gateway's window is unknown, so it asks for Echo first
    # (and proves the address, RFC 9175); get() answers the challenges
    challenge = device.open(await exchange(second.uri, device.datagram("cfg/dev-1", mid=5), device))
    assert challenge.code == Code.UNAUTHORIZED and challenge.opt.echo is not None
    assert (await device.get(second.uri, "cfg/dev-1", mid=10)).code == Code.CONTENT
    sent = device.datagram("cfg/dev-1", mid=20)
    assert device.open(await exchange(second.uri, sent, device)).code == Code.CONTENT

    for _ in range(100):  # the first gateway hears of the load and forgets its context
        if kid not in first.credentials.loaded:
            break
        await asyncio.sleep(0.02)
    assert kid not in first.credentials.loaded

    replayed = bytearray(sent)
    replayed[2:4] = (21).to_bytes(2, "big")  # a new message id: not a CoAP duplicate
    answer = device.open(await exchange(first.uri, bytes(replayed), device))
    assert answer.code == Code.UNAUTHORIZED and answer.opt.echo is not None  # not served
    assert (await device.get(first.uri, "cfg/dev-1", mid=30)).code == Code.CONTENT  # moved back


async def test_a_gateway_whose_listener_reconnected_forgets_every_context(
    pair: tuple[list[Gateway], Enrolment],
) -> None:
    """Announcements sent while it was disconnected are lost: it drops all."""
    (first, _), enrolment = pair
    device = DeviceSide(enrolment, sequence=500)
    assert (await device.get(first.uri, "cfg/dev-1", mid=1)).code == Code.CONTENT
    assert first.credentials is not None and enrolment.record.kid in first.credentials.loaded
    listener = first.listener
    assert isinstance(listener, ChangeListener)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (listener.backend_pid,))
    for _ in range(200):
        if not first.credentials.loaded:
            break
        await asyncio.sleep(0.02)
    assert not first.credentials.loaded and listener.connects == 2
    assert (await device.get(first.uri, "cfg/dev-1", mid=10)).code == Code.CONTENT  # after Echo
