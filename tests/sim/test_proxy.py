"""The lossy UDP proxy over real loopback sockets, in front of a tiny echo server."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest

from edgecfg.errors import UsageError
from edgecfg.sim.link import PERFECT, LinkProfile
from edgecfg.sim.proxy import UdpProxy

Address = tuple[str, int]


class Echo(asyncio.DatagramProtocol):
    """Sends every datagram back to its sender and remembers who sent what."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received: list[bytes] = []
        self.peers: set[Address] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.append(data)
        self.peers.add((str(addr[0]), int(addr[1])))
        assert self.transport is not None
        self.transport.sendto(data, addr)

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)


class Client(asyncio.DatagramProtocol):
    """A client socket that records what comes back."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received: list[bytes] = []
        self.arrival: asyncio.Event = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.append(data)
        self.arrival.set()

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data)


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    yield protocol
    transport.close()


async def open_client(proxy: UdpProxy) -> Client:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_datagram_endpoint(Client, remote_addr=proxy.address)
    return client


async def close_client(client: Client) -> None:
    assert client.transport is not None
    client.transport.close()
    await asyncio.sleep(0)  # let connection_lost run


async def settle(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait until ``condition`` holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "proxy traffic did not settle"
        await asyncio.sleep(0.01)


def quiescent(proxy: UdpProxy, echo: Echo, *clients: Client) -> Callable[[], bool]:
    """True once every copy the link scheduled has been delivered end to end."""

    def check() -> bool:
        stats = proxy.link.stats()
        return (
            proxy.pending == 0
            and len(echo.received) == stats.up.delivered
            and stats.down.sent == len(echo.received)
            and sum(len(c.received) for c in clients) == stats.down.delivered
        )

    return check


PAYLOADS = [f"datagram-{i:03d}".encode() for i in range(100)]


async def test_perfect_link_echoes_every_datagram_unchanged(echo: Echo) -> None:
    async with UdpProxy(echo.address, profile=PERFECT) as proxy:
        client = await open_client(proxy)
        for payload in PAYLOADS:
            client.send(payload)
        await settle(lambda: len(client.received) == len(PAYLOADS))
        assert sorted(client.received) == PAYLOADS
        assert echo.received == client.received  # a perfect link keeps order on loopback
        stats = proxy.link.stats()
        assert (stats.up.sent, stats.down.sent, stats.down.delivered) == (100, 100, 100)
        await close_client(client)


async def test_lossy_link_loses_datagrams_as_its_stats_say(echo: Echo) -> None:
    async with UdpProxy(echo.address, profile=LinkProfile(loss=0.3), seed=11) as proxy:
        client = await open_client(proxy)
        for payload in PAYLOADS:
            client.send(payload)
        await settle(lambda: proxy.link.stats().up.sent == len(PAYLOADS))
        await settle(quiescent(proxy, echo, client))
        stats = proxy.link.stats()
        assert 0 < len(client.received) < 80  # 0.7 x 0.7 of 100 expected; 55 with this seed
        assert len(client.received) == stats.down.delivered
        assert len(echo.received) == stats.up.delivered
        assert stats.up.dropped > 0
        assert stats.down.dropped > 0
        assert set(client.received) <= set(PAYLOADS)
        await close_client(client)


async def test_duplicate_link_delivers_every_datagram_twice_each_way(echo: Echo) -> None:
    async with UdpProxy(echo.address, profile=LinkProfile(duplicate=1.0)) as proxy:
        client = await open_client(proxy)
        for payload in PAYLOADS[:20]:
            client.send(payload)
        await settle(lambda: len(client.received) == 80)
        await asyncio.sleep(0.05)  # nothing beyond the duplicates trickles in
        assert Counter(echo.received) == {payload: 2 for payload in PAYLOADS[:20]}
        assert Counter(client.received) == {payload: 4 for payload in PAYLOADS[:20]}
        assert proxy.link.stats().up.duplicated == 20
        await close_client(client)


async def test_delay_is_observed_on_each_leg(echo: Echo) -> None:
    async with UdpProxy(echo.address, profile=LinkProfile(delay_s=0.05)) as proxy:
        client = await open_client(proxy)
        loop = asyncio.get_running_loop()
        started = loop.time()
        client.send(b"ping")
        await asyncio.wait_for(client.arrival.wait(), timeout=1.0)
        round_trip = loop.time() - started
        assert round_trip >= 2 * 0.05 - 0.002  # timers may fire a clock tick early
        assert round_trip < 1.0
        assert client.received == [b"ping"]
        await close_client(client)


async def test_manual_partition_drops_everything_until_healed(echo: Echo) -> None:
    async with UdpProxy(echo.address, profile=PERFECT) as proxy:
        client = await open_client(proxy)
        proxy.link.partition(True)
        for payload in PAYLOADS[:10]:
            client.send(payload)
        await settle(lambda: proxy.link.stats().up.sent == 10)
        await asyncio.sleep(0.1)
        assert client.received == []
        assert echo.received == []
        assert proxy.link.stats().up.partitioned == 10

        proxy.link.partition(False)
        client.send(b"after")
        await settle(lambda: client.received == [b"after"])
        await close_client(client)


async def test_partition_window_cuts_traffic_in_both_directions(echo: Echo) -> None:
    # The link is cut from the start; replies to datagrams sent just before the
    # window ends may still be cut, so only the first leg is asserted exactly.
    profile = LinkProfile(partitions=((0.0, 0.3),))
    async with UdpProxy(echo.address, profile=profile) as proxy:
        client = await open_client(proxy)
        client.send(b"during")
        await settle(lambda: proxy.link.stats().up.sent == 1)
        assert proxy.link.stats().up.partitioned == 1
        await settle(lambda: proxy.elapsed >= 0.3)
        client.send(b"after")
        await settle(lambda: client.received == [b"after"])
        assert echo.received == [b"after"]
        await close_client(client)


async def test_changing_the_profile_mid_transfer_cuts_the_link(echo: Echo) -> None:
    async with UdpProxy(echo.address, profile=PERFECT) as proxy:
        client = await open_client(proxy)
        client.send(b"one")
        await settle(lambda: client.received == [b"one"])
        proxy.link.set_profile(LinkProfile(loss=1.0))
        client.send(b"two")
        await settle(lambda: proxy.link.stats().up.sent == 2)
        await asyncio.sleep(0.05)
        assert client.received == [b"one"]
        assert proxy.link.stats().up.dropped == 1
        await close_client(client)


async def test_each_client_gets_its_own_upstream_peer(echo: Echo) -> None:
    async with UdpProxy(echo.address, profile=PERFECT) as proxy:
        first, second = await open_client(proxy), await open_client(proxy)
        first.send(b"first")
        second.send(b"second")
        await settle(lambda: first.received == [b"first"] and second.received == [b"second"])
        assert len(echo.peers) == 2
        assert proxy.address not in echo.peers
        assert proxy.peers == 2
        for client in (first, second):
            await close_client(client)


async def test_clients_beyond_max_peers_are_refused(echo: Echo) -> None:
    async with UdpProxy(echo.address, profile=PERFECT, max_peers=1) as proxy:
        first, second = await open_client(proxy), await open_client(proxy)
        first.send(b"first")
        await settle(lambda: first.received == [b"first"])
        second.send(b"second")
        await settle(lambda: proxy.refused == 1)
        first.send(b"again")
        await settle(lambda: first.received == [b"first", b"again"])
        assert second.received == []
        assert proxy.peers == 1
        for client in (first, second):
            await close_client(client)


def can_bind(address: Address) -> bool:
    """True when nobody holds the UDP ``address`` any more."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(address)
        except OSError:
            return False
    return True


async def test_close_cancels_pending_deliveries_and_releases_sockets(
    echo: Echo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        proxy = UdpProxy(echo.address, profile=PERFECT)
        await proxy.start()
        front = proxy.address
        client = await open_client(proxy)
        client.send(b"hello")
        await settle(lambda: client.received == [b"hello"])
        (upstream,) = echo.peers
        assert not can_bind(upstream)

        proxy.link.set_profile(LinkProfile(delay_s=0.2))
        for payload in PAYLOADS[:10]:
            client.send(payload)
        await settle(lambda: proxy.pending == 10)
        await proxy.close()
        assert proxy.pending == 0
        assert not proxy.running
        assert can_bind(front)
        assert can_bind(upstream)
        await proxy.close()  # idempotent
        client.send(b"into the void")
        await asyncio.sleep(0.3)  # past every cancelled delivery time
        assert echo.received == [b"hello"]
        await close_client(client)
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_lifecycle_misuse_is_a_usage_error(echo: Echo) -> None:
    proxy = UdpProxy(echo.address, profile=PERFECT)
    with pytest.raises(UsageError, match="before start"):
        _ = proxy.address
    async with proxy:
        host, port = proxy.address
        assert host == "127.0.0.1"
        assert port > 0
        with pytest.raises(UsageError, match="start"):
            await proxy.start()
    with pytest.raises(UsageError, match="max_peers"):
        UdpProxy(echo.address, profile=PERFECT, max_peers=0)
