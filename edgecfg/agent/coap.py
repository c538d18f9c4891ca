# aiocoap ships no type information; this module owns it on the agent side
# (DESIGN §2), so only the "unknown type" family of strict checks is relaxed.
# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# pyright: reportUnknownParameterType=false, reportAttributeAccessIssue=false
"""The agent's CoAP link: one request, one reply, no hidden block-wise logic.

:class:`CoapLink` wraps an aiocoap client context.  Block-wise transfer is
left to the sync logic (so it can persist and resume), and every network
failure becomes :class:`LinkDown`, the one error the sync loop retries.  The
link counts round trips and bytes on the wire (CoAP headers included) for
the energy accounting of DESIGN §6.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import urlsplit

import aiocoap
import aiocoap.error
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.optiontypes import BlockOption

from edgecfg.errors import EdgecfgError, UsageError

Method = Literal["GET", "POST", "FETCH", "PUT", "iPATCH"]
_METHODS = {"GET": Code.GET, "POST": Code.POST, "FETCH": Code.FETCH, "PUT": Code.PUT,
            "iPATCH": Code.iPATCH}  # fmt: skip


class LinkDown(EdgecfgError):
    """The gateway could not be reached (timeouts, no route, ICMP errors)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A response reduced to what the sync logic needs."""

    code: str  # "2.05", "2.03", "4.04", ...
    payload: bytes = b""
    etag: bytes | None = None
    content_format: int | None = None
    block2: tuple[int, bool, int] | None = None  # (number, more, szx)
    size2: int | None = None
    max_age: int | None = None

    @property
    def ok(self) -> bool:
        return self.code.startswith("2.")


@dataclass(slots=True)
class Traffic:
    """Round trips and bytes on the wire (both directions, headers included)."""

    round_trips: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    codes: list[str] = field(default_factory=lambda: [])


class Link(Protocol):
    """What the sync logic needs from a transport (tests may provide their own)."""

    traffic: Traffic

    def observe(self, path: Sequence[str]) -> AsyncIterator[Reply]:
        """The first reply to an observing GET, then each notification."""
        ...

    async def request(
        self,
        method: Method,
        path: Sequence[str],
        *,
        query: Sequence[str] = (),
        payload: bytes = b"",
        content_format: int | None = None,
        etags: Sequence[bytes] = (),
        block2: tuple[int, int] | None = None,
    ) -> Reply: ...


def _wire_size(message: aiocoap.Message, token: int) -> int:
    """Bytes of the UDP datagram (RFC 7252 §3): header, token, options, payload."""
    payload = len(message.payload)
    return 4 + token + len(message.opt.encode()) + (1 + payload if payload else 0)


class _Tuning(TransportTuning):
    """Retransmission timing; the defaults are RFC 7252's."""

    def __init__(self, ack_timeout: float, max_retransmit: int) -> None:
        self.ACK_TIMEOUT = ack_timeout
        self.MAX_RETRANSMIT = max_retransmit


class CoapLink:
    """A :class:`Link` over UDP to one gateway, e.g. ``coap://127.0.0.1:5683``."""

    def __init__(self, gateway: str, *, ack_timeout: float = 2.0, max_retransmit: int = 4) -> None:
        parts = urlsplit(gateway)
        if parts.scheme != "coap" or not parts.hostname:
            raise UsageError(f"gateway {gateway!r} must look like coap://HOST:PORT")
        self.base = f"coap://{parts.netloc}"
        self.tuning = _Tuning(ack_timeout, max_retransmit)
        self.traffic = Traffic()
        self._context: aiocoap.Context | None = None

    async def open(self) -> None:
        if self._context is None:
            self._context = await aiocoap.Context.create_client_context(transports=["udp6"])

    async def close(self) -> None:
        if self._context is not None:
            await self._context.shutdown()
            self._context = None

    async def __aenter__(self) -> CoapLink:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def observe(self, path: Sequence[str]) -> AsyncIterator[Reply]:
        """Observe ``path`` (RFC 7641): the first reply, then every notification.

        Notifications of large representations are block 0 with the ETag
        (the gateway's rule); the caller fetches the rest when it wants it.
        Ends with :class:`LinkDown` when the observation breaks.
        """
        await self.open()
        assert self._context is not None
        message = aiocoap.Message(code=Code.GET, observe=0, transport_tuning=self.tuning)
        message.set_request_uri(self.base)
        message.opt.uri_path = tuple(path)
        request = self._context.request(message, handle_blockwise=False)
        try:
            first = await request.response
            yield self._reply(first)
            observation = request.observation
            if observation is None:  # the server did not accept the observation
                raise LinkDown(f"{self.base}: {'/'.join(path)} is not observable")
            async for notification in observation:
                yield self._reply(notification)
        except (aiocoap.error.NetworkError, aiocoap.error.ObservationCancelled, OSError) as error:
            raise LinkDown(f"{self.base}: observation ended: {type(error).__name__}") from None
        finally:
            if request.observation is not None and not request.observation.cancelled:
                request.observation.cancel()

    def _reply(self, response: aiocoap.Message) -> Reply:
        block = response.opt.block2
        code = response.code
        return Reply(
            code=f"{code.class_}.{code.dotted.split('.')[1]}" if code is not None else "0.00",
            payload=bytes(response.payload),
            etag=response.opt.etag,
            content_format=int(response.opt.content_format)
            if response.opt.content_format is not None
            else None,
            block2=(block.block_number, block.more, block.size_exponent) if block else None,
            size2=response.opt.size2,
            max_age=response.opt.max_age,
        )

    async def request(
        self,
        method: Method,
        path: Sequence[str],
        *,
        query: Sequence[str] = (),
        payload: bytes = b"",
        content_format: int | None = None,
        etags: Sequence[bytes] = (),
        block2: tuple[int, int] | None = None,
    ) -> Reply:
        await self.open()
        assert self._context is not None
        message = aiocoap.Message(
            code=_METHODS[method], payload=payload, transport_tuning=self.tuning
        )
        message.set_request_uri(self.base)
        message.opt.uri_path = tuple(path)
        message.opt.uri_query = tuple(query)
        if content_format is not None:
            message.opt.content_format = content_format
        if etags:
            message.opt.etags = tuple(etags)
        if block2 is not None:
            message.opt.block2 = BlockOption.BlockwiseTuple(block2[0], False, block2[1])
        try:
            response = await self._context.request(message, handle_blockwise=False).response
        except TimeoutError:
            raise LinkDown(f"{self.base}: timed out") from None
        except (aiocoap.error.NetworkError, aiocoap.error.ResolutionError, OSError) as error:
            raise LinkDown(f"{self.base}: {type(error).__name__}: {error}") from None
        token = len(response.token or b"")
        self.traffic.round_trips += 1
        self.traffic.bytes_up += _wire_size(message, token)
        self.traffic.bytes_down += _wire_size(response, token)
        reply = self._reply(response)
        self.traffic.codes.append(reply.code)
        return reply
