"""A small UDP balancer in front of several gateways, with failover by silence.

Devices send to :attr:`UdpBalancer.address`; each client address is given
one backend (round robin over the backends still up) and keeps it (sticky:
an OSCORE Echo exchange must reach the gateway that asked), through an
upstream socket of its own, so a gateway sees one peer per device as behind a
NAT.  The policy is :class:`Routing`, with no I/O (time is an argument): a
client that has waited more than ``dead_after_s`` for any answer from its
backend marks that backend down, and it and every later datagram for that
backend go to the next one up.  A backend marked down stays down (the test
harness kills gateways; it does not restart them).

Used by the failover test (``tests/multi``) and ``edgecfg bench multi``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Final, cast

__all__ = ["DEAD_AFTER_S", "Routing", "UdpBalancer"]

log = logging.getLogger(__name__)

DEAD_AFTER_S: Final = 1.5
"""Silence after which a client's backend counts as down (above CoAP's first
ACK timeout of 2 s ... 3 s would be slower; agents here use 0.5 s)."""

Address = tuple[str, int]
_PeerAddress = tuple[str | Any, int]


@dataclass(slots=True)
class _Client:
    backend: int
    waiting_since: float | None = None  # first datagram not answered yet


class Routing:
    """Which backend each client's datagrams go to (pure: ``now`` is given)."""

    def __init__(self, backends: int, *, dead_after_s: float = DEAD_AFTER_S) -> None:
        if backends < 1:
            raise ValueError(f"{backends} backends: at least 1")
        self.backends = backends
        self.dead_after_s = dead_after_s
        self.down: set[int] = set()
        self.moved = 0  # clients re-routed away from a backend that went down
        self._clients: dict[_PeerAddress, _Client] = {}
        self._next = 0

    def route(self, client: _PeerAddress, now: float) -> int:
        """The backend for a datagram from ``client`` at ``now``."""
        held = self._clients.get(client)
        if held is None:
            held = self._clients[client] = _Client(self._pick())
        elif held.waiting_since is not None and now - held.waiting_since > self.dead_after_s:
            if len(self.down) + 1 < self.backends:  # never mark the last one down
                self.down.add(held.backend)
            held.waiting_since = None
        if held.backend in self.down:
            held.backend = self._pick()
            held.waiting_since = None
            self.moved += 1
        if held.waiting_since is None:
            held.waiting_since = now
        return held.backend

    def answered(self, client: _PeerAddress) -> None:
        """A datagram came back for ``client``: its backend is alive."""
        held = self._clients.get(client)
        if held is not None:
            held.waiting_since = None

    def clients_of(self, backend: int) -> int:
        """Clients currently routed to ``backend``."""
        return sum(1 for held in self._clients.values() if held.backend == backend)

    def _pick(self) -> int:
        for _ in range(self.backends):
            chosen = self._next % self.backends
            self._next += 1
            if chosen not in self.down:
                return chosen
        return self._next % self.backends  # all down: keep trying them in turn


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, balancer: UdpBalancer, client: _PeerAddress | None) -> None:
        self.balancer = balancer
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: _PeerAddress) -> None:
        try:
            if self.client is None:
                self.balancer.up(data, addr)
            else:
                self.balancer.down(data, self.client)
        except Exception:  # a balancer bug must not kill the loop's reader
            log.exception("balancer: datagram from %s could not be handled", addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a killed gateway: the datagram is lost
        log.debug("balancer: %s", exc)


class UdpBalancer:
    """The asyncio shell of :class:`Routing` on ``host``, a free port."""

    def __init__(
        self,
        backends: list[Address],
        *,
        host: str = "127.0.0.1",
        dead_after_s: float = DEAD_AFTER_S,
    ) -> None:
        self.backends = backends
        self.routing = Routing(len(backends), dead_after_s=dead_after_s)
        self.host = host
        self.forwarded = [0] * len(backends)  # datagrams sent to each backend
        self._front: _Endpoint | None = None
        self._upstream: dict[_PeerAddress, _Endpoint] = {}
        self._opening: dict[_PeerAddress, list[bytes]] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self, None), local_addr=(self.host, 0)
        )
        self._front = protocol

    async def close(self) -> None:
        for endpoint in [self._front, *self._upstream.values()]:
            if endpoint is not None and endpoint.transport is not None:
                endpoint.transport.close()
        self._upstream.clear()
        self._front = None

    @property
    def address(self) -> Address:
        if self._front is None or self._front.transport is None:
            raise RuntimeError("the balancer is not started")
        host, port = self._front.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    @property
    def uri(self) -> str:
        host, port = self.address
        return f"coap://{host}:{port}"

    def up(self, data: bytes, client: _PeerAddress) -> None:
        """A datagram from a device: to its backend."""
        endpoint = self._upstream.get(client)
        if endpoint is None:
            waiting = self._opening.get(client)
            if waiting is None:
                self._opening[client] = [data]
                asyncio.get_running_loop().create_task(self._open(client))
            elif len(waiting) < 64:
                waiting.append(data)
            return
        self._forward(endpoint, data, client)

    def down(self, data: bytes, client: _PeerAddress) -> None:
        """A datagram from a gateway: back to the device it answers."""
        self.routing.answered(client)
        front = self._front
        if front is not None and front.transport is not None:
            front.transport.sendto(data, client)

    def _forward(self, endpoint: _Endpoint, data: bytes, client: _PeerAddress) -> None:
        backend = self.routing.route(client, asyncio.get_running_loop().time())
        self.forwarded[backend] += 1
        if endpoint.transport is not None:
            endpoint.transport.sendto(data, self.backends[backend])

    async def _open(self, client: _PeerAddress) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            _, endpoint = await loop.create_datagram_endpoint(
                lambda: _Endpoint(self, client), local_addr=(self.host, 0)
            )
            self._upstream[client] = endpoint
            for data in self._opening.pop(client, []):
                self._forward(endpoint, data, client)
