"""Several gateways on one PostgreSQL database (issue 13): a write from any
writer reaches every gateway's serving within 1 s, woken by LISTEN/NOTIFY
(the poll interval is set far above that), and a listener that lost its
connection catches up by sequence.  Real CoAP over loopback, real PostgreSQL;
each test in a schema of its own, dropped afterwards."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import aiocoap
import psycopg
import pytest
from aiocoap.numbers.codes import Code

from edgecfg.core.ids import LayerId
from edgecfg.core.layers import layer_from_parts
from edgecfg.fleet.fleet import Fleet
from edgecfg.fleet.identity import InsecurePolicy
from edgecfg.gateway.server import Gateway
from edgecfg.store import PostgresStore
from edgecfg.store.postgres import ChangeListener
from tests.gateway.helpers import INTERVAL, ask, free_udp_port, sensor
from tests.paths import SCHEMA
from tests.store.helpers import POSTGRES_URL, postgres_unreachable

POLL_S = 30.0  # far above the 1 s bound: only a notification can be in time
BOUND_S = 1.0


@pytest.fixture
def schema() -> Iterator[str]:
    reason = postgres_unreachable()
    if reason is not None:
        pytest.skip(reason)
    name = f"t_{uuid.uuid4().hex[:16]}"
    with PostgresStore(POSTGRES_URL, schema=name) as store:
        fleet = Fleet(store)
        fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
        for device in ("dev-1", "dev-2"):
            fleet.add_device(sensor(device))
    try:
        yield name
    finally:
        with PostgresStore(POSTGRES_URL, schema=name) as store:
            store.drop_schema()


@pytest.fixture
async def gateways(schema: str) -> AsyncIterator[list[Gateway]]:
    """Two gateways in this process, each on its own socket and store."""
    started: list[Gateway] = []
    try:
        for _ in range(2):
            store = PostgresStore(POSTGRES_URL, schema=schema)
            gateway = Gateway(store, policy=InsecurePolicy(), refresh_s=POLL_S)
            gateway.guard.trust("127.0.0.1")
            await gateway.start("127.0.0.1", free_udp_port())
            started.append(gateway)
        yield started
    finally:
        for gateway in started:
            await gateway.stop()
            gateway.fleet.store.close()


def write(fleet: Fleet, layer: str, value: int) -> None:
    fleet.write_layer(LayerId(layer), layer_from_parts(sets={INTERVAL: value}),
                      author="t", message="", now=2.0)  # fmt: skip


async def served_within(
    client: aiocoap.Context, gateway: Gateway, device: str, old: bytes, bound: float
) -> float:
    """Seconds until ``gateway`` serves ``device`` a version other than ``old``."""
    started = time.monotonic()
    while time.monotonic() - started < bound:
        reply = await ask(client, gateway, Code.GET, f"/cfg/{device}", etags=(old,))
        assert reply.code in (Code.VALID, Code.CONTENT), reply
        if reply.code == Code.CONTENT and reply.opt.etag != old:
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"{gateway.uri} still served {old.hex()} after {bound} s")


async def etags(client: aiocoap.Context, gateways: list[Gateway], device: str) -> list[bytes]:
    replies = [await ask(client, g, Code.GET, f"/cfg/{device}") for g in gateways]
    return [bytes(reply.opt.etag) for reply in replies]


async def test_a_write_from_any_writer_reaches_every_gateway_within_a_second(
    schema: str, gateways: list[Gateway], client: aiocoap.Context
) -> None:
    before = await etags(client, gateways, "dev-1")
    assert before[0] == before[1]
    # a CLI-like writer: another process's store on the same schema
    with PostgresStore(POSTGRES_URL, schema=schema) as store:
        write(Fleet(store), "region/eu", 700)
    for gateway in gateways:
        await served_within(client, gateway, "dev-1", before[0], BOUND_S)
    # a write through one gateway reaches the other
    middle = (await etags(client, gateways, "dev-2"))[0]
    write(gateways[0].fleet, "device/dev-2", 800)
    await served_within(client, gateways[1], "dev-2", middle, BOUND_S)
    after = await etags(client, gateways, "dev-1") + await etags(client, gateways, "dev-2")
    assert after[0] == after[1] and after[2] == after[3]


async def test_a_listener_that_lost_its_connection_catches_up_by_sequence(
    schema: str, gateways: list[Gateway], client: aiocoap.Context
) -> None:
    listener = gateways[1].listener
    assert isinstance(listener, ChangeListener)
    pid, connects = listener.backend_pid, listener.connects
    before = (await etags(client, gateways, "dev-1"))[1]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    # written while the listener may be down: its NOTIFY can be lost
    with PostgresStore(POSTGRES_URL, schema=schema) as store:
        write(Fleet(store), "region/eu", 650)
    await served_within(client, gateways[1], "dev-1", before, 3 * BOUND_S)
    assert listener.connects > connects and listener.backend_pid != pid


def test_a_listener_wakes_at_once_and_after_each_connect(schema: str) -> None:
    # other writers on the server (other tests, other schemas) may wake it too:
    # the channel is the database's
    woken: list[float] = []
    listener = ChangeListener(POSTGRES_URL, lambda: woken.append(time.monotonic()))
    try:
        deadline = time.monotonic() + 10
        while not woken and time.monotonic() < deadline:  # the catch-up wake of the connect
            time.sleep(0.01)
        assert woken and listener.connects == 1
        with PostgresStore(POSTGRES_URL, schema=schema) as store:
            fleet = Fleet(store)
            sent = time.monotonic()
            write(fleet, "global", 900)
        while not [t for t in woken if t >= sent] and time.monotonic() < sent + 10:
            time.sleep(0.01)
        after = [t for t in woken if t >= sent]
        assert after and after[0] - sent < BOUND_S
    finally:
        listener.close()


async def test_exactly_one_gateway_leads_and_one_leads_again_after_a_lost_connection(
    gateways: list[Gateway],
) -> None:
    """The leader drives rollouts; when its connection goes, the server frees
    the lock and one gateway (the other, or the same one reconnected) leads."""
    listeners = [gateway.listener for gateway in gateways]
    assert all(isinstance(listener, ChangeListener) for listener in listeners)

    async def leaders() -> list[ChangeListener]:
        for _ in range(100):
            found = [x for x in listeners if isinstance(x, ChangeListener) and x.leader]
            if found:
                return found
            await asyncio.sleep(0.05)
        return []

    (first,) = await leaders()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first.backend_pid,))
    await asyncio.sleep(0.1)
    found = await leaders()
    assert len(found) == 1
    assert sum(1 for x in listeners if isinstance(x, ChangeListener) and x.leader) == 1
