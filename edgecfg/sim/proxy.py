"""A real lossy link: an asyncio UDP proxy that drops, delays, duplicates and partitions.

Clients (devices, agents) send to :attr:`UdpProxy.address` instead of the
target (the gateway).  For each distinct client address the proxy opens its own
upstream socket towards the target, so the target sees one peer per client,
as behind a NAT.  Every datagram, in both directions, goes through
:meth:`edgecfg.sim.link.LinkModel.decide`; delayed copies are scheduled with
``loop.call_later`` and cancelled on :meth:`UdpProxy.close`.

The proxy never raises out of a datagram callback: errors of closed transports
and unreachable peers are logged at debug level and the datagram is lost, as it
would be on a real network.  Resources are bounded: at most ``max_peers``
client peers (never evicted; datagrams from further clients are refused) and
datagrams larger than :data:`MAX_DATAGRAM` are refused.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Literal, Self

from edgecfg.errors import UsageError
from edgecfg.sim.link import LinkModel, LinkProfile

__all__ = ["DEFAULT_MAX_PEERS", "MAX_DATAGRAM", "UdpProxy"]

log = logging.getLogger(__name__)

MAX_DATAGRAM: Final = 65507
"""Largest payload forwarded: the largest UDP payload over IPv4."""

DEFAULT_MAX_PEERS: Final = 1024
"""Default bound on distinct client addresses, each of which costs one socket."""

_MAX_BACKLOG: Final = 256
"""Datagrams kept for a peer whose upstream socket is still being opened."""

Address = tuple[str, int]
_PeerAddress = tuple[str | Any, int]  # what asyncio hands to datagram_received
_OnDatagram = Callable[[bytes, _PeerAddress], None]


class _Endpoint(asyncio.DatagramProtocol):
    """Hands datagrams to a callback and never lets an error escape into the loop."""

    def __init__(self, on_datagram: _OnDatagram, name: str) -> None:
        self._on_datagram = on_datagram
        self._name = name
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: _PeerAddress) -> None:
        try:
            self._on_datagram(data, addr)
        except Exception:  # a proxy bug must not kill the loop's reader
            log.exception("%s: datagram from %s could not be handled", self._name, addr)

    def error_received(self, exc: Exception) -> None:
        # E.g. ICMP port unreachable while the target is down: the datagram is lost.
        log.debug("%s: %s", self._name, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Peer:
    """One client address and its own upstream socket towards the target."""

    __slots__ = ("backlog", "client", "endpoint", "opening", "transport")

    def __init__(self, client: _PeerAddress) -> None:
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None
        self.endpoint: _Endpoint | None = None
        self.opening: asyncio.Task[None] | None = None
        self.backlog: list[bytes] = []


def _send(transport: asyncio.DatagramTransport | None, data: bytes, addr: Address | None) -> None:
    """Send if the transport is open; a failure loses the datagram, like the network."""
    if transport is None or transport.is_closing():
        return
    try:
        transport.sendto(data, addr)
    except (OSError, RuntimeError, ValueError) as exc:
        log.debug("send to %s failed: %s", addr, exc)


class UdpProxy:
    """A UDP proxy between clients and ``target`` that behaves like a lossy link.

    Usage::

        async with UdpProxy(gateway_addr, profile=NB_IOT_POOR, seed=7) as proxy:
            ...  # clients send to proxy.address
            proxy.link.partition(True)  # cut the link; partition(False) heals it

    ``profile`` and ``seed`` build the :class:`LinkModel` (see :attr:`link`);
    its ``now`` is seconds since :meth:`start`.  ``bind`` is the client-facing
    address (port 0: an ephemeral port, read it from :attr:`address`).
    ``max_peers`` bounds the number of distinct client addresses served.

    Lifecycle: :meth:`start` once, :meth:`close` any number of times; a closed
    proxy cannot be restarted.
    """

    def __init__(
        self,
        target: Address,
        *,
        profile: LinkProfile,
        seed: int = 0,
        bind: Address = ("127.0.0.1", 0),
        max_peers: int = DEFAULT_MAX_PEERS,
    ) -> None:
        if max_peers < 1:
            raise UsageError(f"max_peers must be >= 1, got {max_peers}")
        self._target = target
        self._bind = bind
        self._max_peers = max_peers
        self._link = LinkModel(profile, seed)
        self._state: Literal["new", "running", "closed"] = "new"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start_time = 0.0
        self._remote: Address = target  # the resolved target, set by start()
        self._front: asyncio.DatagramTransport | None = None
        self._front_endpoint: _Endpoint | None = None
        self._peers: dict[_PeerAddress, _Peer] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._next_timer = 0
        self._refused = 0

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Resolve the target and bind the client-facing socket.

        Raises :class:`UsageError` when called twice, and ``OSError`` when the
        target does not resolve or ``bind`` cannot be bound.
        """
        if self._state != "new":
            raise UsageError(f"UdpProxy.start() on a {self._state} proxy")
        loop = asyncio.get_running_loop()
        # Resolve once, so opening a socket per peer never waits for DNS.
        infos = await loop.getaddrinfo(*self._target, type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"target {self._target!r} does not resolve")
        sockaddr = infos[0][4]
        self._remote = (str(sockaddr[0]), int(sockaddr[1]))
        transport, endpoint = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._on_up, "proxy front"), local_addr=self._bind
        )
        self._loop = loop
        self._front = transport
        self._front_endpoint = endpoint
        self._start_time = loop.time()
        self._state = "running"

    async def close(self) -> None:
        """Cancel every pending delivery and close every socket; idempotent.

        Returns once the sockets are closed.  Datagrams still in the link are lost.
        """
        if self._state == "closed":
            return
        self._state = "closed"
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        waits: list[asyncio.Future[Any]] = []
        for peer in self._peers.values():
            peer.backlog.clear()
            if peer.opening is not None and not peer.opening.done():
                peer.opening.cancel()
                waits.append(peer.opening)
            if peer.transport is not None and peer.endpoint is not None:
                peer.transport.close()
                waits.append(peer.endpoint.closed)
        if self._front is not None and self._front_endpoint is not None:
            self._front.close()
            waits.append(self._front_endpoint.closed)
        if waits:
            await asyncio.wait(waits, timeout=1.0)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------ observation

    @property
    def address(self) -> Address:
        """The ``(host, port)`` clients send to; :class:`UsageError` before :meth:`start`."""
        if self._front is None:
            raise UsageError("UdpProxy.address before start()")
        sockname = self._front.get_extra_info("sockname")
        return (str(sockname[0]), int(sockname[1]))

    @property
    def target(self) -> Address:
        """Where client datagrams go: the resolved target once started."""
        return self._remote

    @property
    def link(self) -> LinkModel:
        """The link model: ``stats()``, ``set_profile()``, ``partition()``."""
        return self._link

    @property
    def peers(self) -> int:
        """Distinct client addresses served so far (each has its own upstream socket)."""
        return len(self._peers)

    @property
    def pending(self) -> int:
        """Deliveries scheduled and not yet made."""
        return len(self._timers)

    @property
    def refused(self) -> int:
        """Datagrams refused before the link: too large, or from a client beyond ``max_peers``."""
        return self._refused

    @property
    def elapsed(self) -> float:
        """Seconds since :meth:`start`: the ``now`` the link model sees; 0 before start."""
        if self._loop is None:
            return 0.0
        return self._now(self._loop)

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`close`."""
        return self._state == "running"

    # ------------------------------------------------------------ forwarding

    def _now(self, loop: asyncio.AbstractEventLoop) -> float:
        return loop.time() - self._start_time

    def _schedule(self, delay: float, deliver: Callable[[], None]) -> None:
        """Run ``deliver`` after ``delay`` seconds; at once (keeping order) when 0."""
        loop = self._loop
        if loop is None or self._state != "running":
            return
        if delay <= 0.0:
            deliver()
            return
        token = self._next_timer
        self._next_timer += 1
        self._timers[token] = loop.call_later(delay, self._fire, token, deliver)

    def _fire(self, token: int, deliver: Callable[[], None]) -> None:
        self._timers.pop(token, None)
        try:
            deliver()
        except Exception:  # never raise into the loop
            log.exception("proxy delivery failed")

    def _admitted(self, data: bytes) -> asyncio.AbstractEventLoop | None:
        """The loop to relay ``data`` on, or None to drop it: the proxy is not
        running, or the datagram is too large (counted as refused)."""
        loop = self._loop
        if loop is None or self._state != "running":
            return None
        if len(data) > MAX_DATAGRAM:
            self._refused += 1
            return None
        return loop

    def _on_up(self, data: bytes, client: _PeerAddress) -> None:
        """A datagram from a client: through the link, then to the target."""
        loop = self._admitted(data)
        if loop is None:
            return
        peer = self._peers.get(client)
        if peer is None:
            if len(self._peers) >= self._max_peers:
                self._refused += 1
                log.debug("refusing client %s: %d peers already", client, self._max_peers)
                return
            peer = self._open_peer(loop, client)
        for delay in self._link.decide(self._now(loop), "up"):
            self._schedule(delay, lambda: self._deliver_up(peer, data))

    def _on_down(self, peer: _Peer, data: bytes) -> None:
        """A datagram from the target to ``peer``'s client: through the link, then out."""
        loop = self._admitted(data)
        if loop is None:
            return
        for delay in self._link.decide(self._now(loop), "down"):
            self._schedule(delay, lambda: _send(self._front, data, peer.client))

    def _deliver_up(self, peer: _Peer, data: bytes) -> None:
        if peer.transport is not None:
            _send(peer.transport, data, None)
        elif peer.opening is not None and len(peer.backlog) < _MAX_BACKLOG:
            peer.backlog.append(data)  # the upstream socket is still being opened

    def _open_peer(self, loop: asyncio.AbstractEventLoop, client: _PeerAddress) -> _Peer:
        peer = _Peer(client)
        self._peers[client] = peer
        peer.opening = loop.create_task(self._connect(loop, peer))
        return peer

    async def _connect(self, loop: asyncio.AbstractEventLoop, peer: _Peer) -> None:
        """Open ``peer``'s upstream socket, then flush what arrived meanwhile."""
        try:
            transport, endpoint = await loop.create_datagram_endpoint(
                lambda: _Endpoint(
                    lambda data, _addr: self._on_down(peer, data), f"proxy peer {peer.client}"
                ),
                remote_addr=self._remote,
            )
        except OSError as exc:
            # Forget the peer so that its next datagram tries again.
            log.debug("cannot open upstream socket for %s: %s", peer.client, exc)
            peer.backlog.clear()
            if self._peers.get(peer.client) is peer:
                del self._peers[peer.client]
            return
        finally:
            peer.opening = None
        peer.transport, peer.endpoint = transport, endpoint
        if self._state != "running":
            transport.close()
            return
        backlog, peer.backlog = peer.backlog, []
        for data in backlog:
            _send(transport, data, None)
