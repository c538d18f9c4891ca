"""Per-peer budgets and observation caps over real loopback UDP (issue 20).

A gateway with small budgets; hostile peers send hand-built datagrams from
other loopback addresses (127.0.0.2, ...: other hosts to the gateway), a
well-behaved one asks from 127.0.0.1.  Each test asserts bounded state and
that the well-behaved peer is still served; none measures speed.
"""

from __future__ import annotations

import gc
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from edgecfg.core.admission import EXCHANGE_COST, RELEASE_AT, Budgets, Refusal
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import layer_from_parts
from edgecfg.fleet.identity import InsecurePolicy
from edgecfg.gateway.admission import CODES
from edgecfg.gateway.hardening import RECEIVE_BUFFER, _shed  # pyright: ignore[reportPrivateUsage]
from edgecfg.gateway.server import Gateway
from edgecfg.gateway.spool import SPOOL_TTL_S
from edgecfg.store import MemoryStore
from tests.gateway.helpers import INTERVAL, ask, free_udp_port, remembered_by_aiocoap, sensor
from tests.gateway.raw_peer import CON, URI_PATH, RawPeer, coap
from tests.paths import SCHEMA

ETAG, OBSERVE = 4, 6
BUDGETS = Budgets(memory_mib=200 * EXCHANGE_COST / 2**20, peer_share=0.25, peer_observations=3,
                  observations=5)  # fmt: skip


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gateway = Gateway(MemoryStore(), policy=InsecurePolicy(), refresh_s=0, budgets=BUDGETS)
    for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
        gateway.guard.trust(host)
    gateway.fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    for device in ("dev-1", "dev-2"):
        gateway.fleet.add_device(sensor(device))
    gateway.fleet.write_layer(LayerId("region/eu"), layer_from_parts(sets={INTERVAL: 90}),
                              author="t", message="", now=2.0)  # fmt: skip
    await gateway.start("127.0.0.1", free_udp_port())
    try:
        yield gateway
    finally:
        await gateway.stop()


async def served(gateway: Gateway, client: aiocoap.Context) -> None:
    reply = await ask(client, gateway, Code.GET, "/cfg/dev-2", blockwise=True)
    assert reply.code == Code.CONTENT


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_errors_logged() -> Iterator[None]:
    """Every test here: no error and no traceback in the log, asyncio's "task
    exception was never retrieved" included (logged when the task is collected)."""
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    try:
        yield
        gc.collect()
    finally:
        logging.getLogger().removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records[:3]]


async def test_a_flooding_peer_gets_4_29_and_aiocoap_remembers_its_share_only(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    tag = gateway.fleet.etag(DeviceId("dev-1"))
    flood = RawPeer(gateway, host="127.0.0.2")
    share = BUDGETS.peer_exchanges
    codes: list[Code | None] = []
    try:
        for mid in range(share * 3):
            options = [(ETAG, tag), (URI_PATH, b"cfg"), (URI_PATH, b"dev-1")]
            await flood.send(coap(CON, Code.GET, mid, mid.to_bytes(2, "big"), options))
            reply = await flood.answer()
            assert reply is not None and reply.mid == mid
            codes.append(reply.code)
            if reply.code == Code.TOO_MANY_REQUESTS:
                assert reply.opt.max_age is not None and reply.opt.max_age > 0
        assert codes[:share] == [Code.VALID] * share
        assert codes[share:] == [Code.TOO_MANY_REQUESTS] * (share * 2)
        assert remembered_by_aiocoap(gateway) <= share
        # a duplicate of an admitted request is answered as before, not refused
        await flood.send(coap(CON, Code.GET, 3, b"\x00\x03", [(ETAG, tag), (URI_PATH, b"cfg"),
                                                             (URI_PATH, b"dev-1")]))  # fmt: skip
        again = await flood.answer()
        assert again is not None and again.code == Code.VALID
    finally:
        flood.close()
    await served(gateway, client)  # another host keeps its own budget
    assert remembered_by_aiocoap(gateway) <= BUDGETS.exchanges


def observe(path: tuple[bytes, ...]) -> list[tuple[int, bytes]]:
    return [(OBSERVE, b""), *((URI_PATH, part) for part in path)]


async def test_observations_of_made_up_layers_and_unknown_devices_are_not_kept(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    peer = RawPeer(gateway, host="127.0.0.2")
    try:
        for i in range(20):
            target = (b"grp", b"region", f"made-up-{i}".encode())
            if i % 2:
                target = (b"cfg", f"ghost-{i}".encode())
            await peer.send(coap(CON, Code.GET, i, bytes([i]), observe(target)))
            reply = await peer.answer()
            assert reply is not None
            assert reply.opt.observe is None  # answered, not observed
    finally:
        peer.close()
    assert gateway.gate.observations.total == 0
    assert gateway.groups.observers == {}
    assert gateway.config.observers == {}
    await served(gateway, client)


async def test_a_peer_over_its_observation_share_loses_its_oldest_with_a_notification(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    peer = RawPeer(gateway, host="127.0.0.2")
    try:
        for i in range(BUDGETS.peer_observations):
            await peer.send(coap(CON, Code.GET, i, bytes([i + 1]), observe((b"cfg", b"dev-1"))))
            reply = await peer.answer()
            assert reply is not None and reply.opt.observe is not None
        assert gateway.gate.observations.of(b"\x7f\x00\x00\x02") == BUDGETS.peer_observations
        await peer.send(coap(CON, Code.GET, 99, b"\x63", observe((b"grp", b"region", b"eu"))))
        answers = [await peer.answer(), await peer.answer()]
        assert all(answer is not None for answer in answers)
        by_token = {answer.token: answer for answer in answers if answer is not None}
        ended = by_token[b"\x01"]  # the oldest: a last notification, 4.29 with Max-Age
        assert ended.code == Code.TOO_MANY_REQUESTS
        assert ended.opt.max_age is not None and ended.opt.max_age > 0
        assert by_token[b"\x63"].opt.observe is not None  # the new one is taken
        assert gateway.gate.observations.of(b"\x7f\x00\x00\x02") == BUDGETS.peer_observations
    finally:
        peer.close()
    await served(gateway, client)


async def test_over_the_total_the_biggest_holder_gives_up_its_oldest(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    first, second = RawPeer(gateway, host="127.0.0.2"), RawPeer(gateway, host="127.0.0.3")
    try:
        for i in range(BUDGETS.peer_observations):
            await first.send(coap(CON, Code.GET, i, bytes([i + 1]), observe((b"cfg", b"dev-1"))))
            assert (await first.answer()) is not None
        kept: list[bool] = []
        for i in range(BUDGETS.peer_observations):
            await second.send(coap(CON, Code.GET, i, bytes([i + 1]), observe((b"cfg", b"dev-2"))))
            reply = await second.answer()
            assert reply is not None and reply.code == Code.CONTENT
            kept.append(reply.opt.observe is not None)
        assert kept == [True, True, True]  # a newcomer is let in
        # 3 + 3 is over the total of 5: the first peer (holding most) lost its oldest
        ended = await first.answer()
        assert ended is not None
        assert (ended.token, ended.code) == (b"\x01", Code.SERVICE_UNAVAILABLE)
        assert ended.opt.max_age is not None and ended.opt.max_age > 0
        assert gateway.gate.observations.total == BUDGETS.observations
        assert gateway.gate.observations.of(b"\x7f\x00\x00\x02") == 2
    finally:
        first.close()
        second.close()
    await served(gateway, client)


async def test_a_long_queue_delay_is_shed_with_5_03_and_max_age(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    # the admission input of issue 12 (legitimate overload): the event loop's lag
    gateway.admission.note_delay(BUDGETS.queue_delay_s * 3)
    reply = await ask(client, gateway, Code.GET, "/cfg/dev-2")
    assert reply.code == Code.SERVICE_UNAVAILABLE
    assert reply.opt.max_age is not None and reply.opt.max_age >= BUDGETS.queue_delay_s
    assert b"queue delay" in reply.payload
    gateway.admission.note_delay(0.0)
    await served(gateway, client)


async def test_the_gateway_socket_queues_more_than_the_default(gateway: Gateway) -> None:
    # a flood that outpaces the gateway for a moment must delay, not drop, a device's datagram
    assert gateway.context is not None
    interface = gateway.context.request_interfaces[0].token_interface.message_interface
    sock = interface.transport.get_extra_info("socket")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as fresh:
        default = fresh.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        fresh.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        allowed = fresh.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == allowed
    assert allowed > default


async def test_a_duplicate_gets_the_same_answer_until_the_exchange_lifetime_ends(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    tag = gateway.fleet.etag(DeviceId("dev-1"))
    request = coap(CON, Code.GET, 500, b"dup", [(ETAG, tag), (URI_PATH, b"cfg"),
                                                (URI_PATH, b"dev-1")])  # fmt: skip
    peer = RawPeer(gateway, host="127.0.0.2")
    try:
        await peer.send(request)
        first = await peer.answer()
        await peer.send(request)  # RFC 7252 §4.5: a retransmission, answered the same
        again = await peer.answer()
        assert first is not None and again is not None
        assert first.code == Code.VALID
        same = [(m.mtype, m.mid, m.token, m.code, m.opt.etag, m.payload) for m in (first, again)]
        assert same[0] == same[1]
        assert remembered_by_aiocoap(gateway) == 1
        assert gateway.admission.remembered == 1
        gateway.housekeeping(time.monotonic() + BUDGETS.exchange_lifetime_s + 1)
        assert remembered_by_aiocoap(gateway) == 0
        assert gateway.admission.remembered == 0
    finally:
        peer.close()
    await served(gateway, client)


async def test_an_abandoned_upload_gives_back_its_peers_share_without_more_traffic(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    block0 = [(URI_PATH, b"state"), (URI_PATH, b"dev-1"), (12, b"\x3c"), (27, b"\x0e")]
    peer = RawPeer(gateway, host="127.0.0.2")
    try:
        await peer.send(coap(CON, Code.POST, 600, b"up", block0, payload=b"\xa0" * 1024))
        reply = await peer.answer()
        assert reply is not None and reply.code == Code.CONTINUE
    finally:
        peer.close()
    host = b"\x7f\x00\x00\x02"
    assert gateway.gate.spool.of(host) > 0
    gateway.housekeeping(time.monotonic() + SPOOL_TTL_S + 1)
    assert (gateway.gate.spool.of(host), len(gateway.gate.spool)) == (0, 0)
    await served(gateway, client)


async def test_an_observer_not_heard_from_is_ended_with_5_03_and_max_age(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    peer = RawPeer(gateway, host="127.0.0.2")
    host = b"\x7f\x00\x00\x02"
    observations = gateway.gate.observations
    try:
        await peer.send(coap(CON, Code.GET, 700, b"idle", observe((b"cfg", b"dev-1"))))
        reply = await peer.answer()
        assert reply is not None and reply.opt.observe is not None
        idle = BUDGETS.observation_idle_s
        now = time.monotonic()
        # heard from lately (a request, by the admission's account): kept
        assert observations.end_idle(now + idle + 1, lambda _: now + idle) == 0
        gateway.housekeeping(now + idle / 2)
        assert observations.of(host) == 1
        gateway.housekeeping(now + idle + 1)  # silent for longer than the bound
        ended = await peer.answer()
        assert ended is not None
        assert (ended.token, ended.code, ended.opt.observe) == (b"idle", Code.SERVICE_UNAVAILABLE,
                                                                None)  # fmt: skip
        assert ended.opt.max_age is not None and ended.opt.max_age >= 1
        assert (observations.of(host), observations.total, observations.ended_idle) == (0, 0, 1)
        assert gateway.config.observers == {}
    finally:
        peer.close()
    await served(gateway, client)


async def test_once_a_burst_of_exchanges_has_expired_its_memory_is_handed_back(
    client: aiocoap.Context,
) -> None:
    gateway = Gateway(MemoryStore(), policy=InsecurePolicy(), refresh_s=0)  # default budgets
    for host in ("127.0.0.1", "127.0.0.2"):
        gateway.guard.trust(host)
    gateway.fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    gateway.fleet.add_device(sensor("dev-2"))
    tag = gateway.fleet.etag(DeviceId("dev-2"))
    burst = RELEASE_AT + 44
    await gateway.start("127.0.0.1", free_udp_port())
    peer = RawPeer(gateway, host="127.0.0.2")
    try:
        for mid in range(burst):
            options = [(ETAG, tag), (URI_PATH, b"cfg"), (URI_PATH, b"dev-2")]
            await peer.send(coap(CON, Code.GET, mid, mid.to_bytes(2, "big"), options))
            reply = await peer.answer()
            assert reply is not None and reply.code == Code.VALID
        assert remembered_by_aiocoap(gateway) == burst
        assert gateway.subsiding.releases == 0  # still held: nothing to give back
        gateway.housekeeping(time.monotonic() + gateway.admission.budgets.exchange_lifetime_s + 1)
        assert remembered_by_aiocoap(gateway) == 0
        assert gateway.subsiding.releases == 1  # gc and malloc_trim ran once
        gateway.housekeeping(time.monotonic())
        assert gateway.subsiding.releases == 1
        await served(gateway, client)
    finally:
        peer.close()
        await gateway.stop()


class _Capture:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, list[tuple[int, int, bytes]], tuple[object, ...]]] = []

    def sendmsg(
        self, data: bytes, ancdata: list[tuple[int, int, bytes]], flags: int,
        address: tuple[object, ...],
    ) -> None:  # fmt: skip
        del flags
        self.sent.append((data, ancdata, address))


@pytest.mark.parametrize("token", [b"", b"\x01", b"\x01\x02\x03\x04\x05\x06\x07\x08"])
@pytest.mark.parametrize(
    "refusal", [Refusal("4.29", "peer rate", 3), Refusal("5.03", "memory", 61)]
)
def test_a_shed_request_gets_the_answer_aiocoap_would_encode(
    token: bytes, refusal: Refusal
) -> None:
    request = aiocoap.Message(code=Code.GET, uri_path=("cfg", "d"))
    request.mtype, request.mid, request.token = Type.CON, 0xBEEF, token
    transport = _Capture()
    interface = SimpleNamespace(transport=transport)
    pktinfo = (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, bytes(20))
    address = ("::ffff:127.0.0.1", 5683, 0, 0)
    _shed(interface, request.encode(), [pktinfo, (0, 0, b"x")], address, refusal)  # type: ignore[arg-type]
    ((data, ancdata, to),) = transport.sent
    expected = aiocoap.Message(code=CODES[refusal.code], payload=refusal.reason.encode()[:120])
    expected.mtype, expected.mid, expected.token = Type.ACK, 0xBEEF, token
    expected.opt.max_age = refusal.retry_after_s
    assert data == expected.encode()
    assert ancdata == [pktinfo] and to == address
    decoded = aiocoap.Message.decode(data)
    assert decoded.opt.max_age == refusal.retry_after_s and decoded.token == token


def test_a_shed_datagram_with_a_broken_token_length_is_not_answered() -> None:
    transport = _Capture()
    interface = SimpleNamespace(transport=transport)
    malformed = bytes((0x4F, 0x01, 0x00, 0x01)) + b"\x00" * 3  # token length 15
    _shed(interface, malformed, [], ("::1", 1, 0, 0), Refusal("4.29", "peer rate", 1))  # type: ignore[arg-type]
    assert transport.sent == []
