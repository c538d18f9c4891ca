"""A UDP socket speaking hand-built CoAP to a gateway: the datagrams aiocoap
cannot produce (malformed options, floods from several loopback addresses)."""

from __future__ import annotations

import asyncio
import socket

import aiocoap

from edgecfg.bench.hostile import datagram
from edgecfg.gateway.server import Gateway

coap = datagram  # the load driver's builder: RFC 7252 §3, options in the given order


URI_HOST, URI_PATH, URI_QUERY = 3, 11, 15
CON, NON = 0, 1


class RawPeer:
    """A UDP socket speaking hand-built CoAP to the gateway."""

    def __init__(self, gateway: Gateway, host: str = "127.0.0.1") -> None:
        assert gateway.address is not None
        self.address = gateway.address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind((host, 0))

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendto(self.sock, data, self.address)

    async def answer(self, timeout: float = 5.0) -> aiocoap.Message | None:
        """The next datagram, decoded; None when nothing came within ``timeout``."""
        loop = asyncio.get_running_loop()
        try:
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 65536), timeout)
        except TimeoutError:
            return None
        return aiocoap.Message.decode(data)

    def close(self) -> None:
        self.sock.close()
