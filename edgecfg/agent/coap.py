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

A gateway that has not seen this device's address proven answers a large
request with 4.01 and an Echo value (RFC 9175 §2.4 item 3;
:mod:`edgecfg.core.echo`).  The link repeats the request once with that
value, counting the extra round trip, and keeps the value: the first request
after a pause (``ECHO_AFTER_IDLE_S``) carries it while it is fresh, so a
gateway that has forgotten the address (its list of proven peers is bounded)
accepts it at once and a wake costs 14 bytes instead of a round trip.  The
value is kept in memory only: after a restart the device is usually at a new
address, where the value would not count anyway.
"""

from __future__ import annotations

import errno
import functools
import gc
import json
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, Protocol, cast
from urllib.parse import urlsplit

import aiocoap
import aiocoap.credentials
import aiocoap.error
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.optiontypes import BlockOption

from edgecfg.core.echo import FRESHNESS_S
from edgecfg.errors import EdgecfgError, UsageError

Method = Literal["GET", "POST", "FETCH", "PUT", "iPATCH"]
_METHODS = {"GET": Code.GET, "POST": Code.POST, "FETCH": Code.FETCH, "PUT": Code.PUT,
            "iPATCH": Code.iPATCH}  # fmt: skip


ECHO_AFTER_IDLE_S: Final = 60.0  # a pause after which the kept Echo value rides along


def _is_challenge(reply: Reply) -> bool:
    """4.01 with an Echo value: prove the address by repeating (RFC 9175 §2.4 item 3)."""
    return reply.code == "4.01" and reply.echo is not None


LinkFailure = Literal[
    "refused", "timeout", "unresolved", "unreachable", "overloaded", "observation", "oscore",
    "network",
]  # fmt: skip
"""Why a link went down, coarsely: it decides what to tell the person at the console."""

_LIKELY: Final[dict[LinkFailure, str]] = {
    "refused": "nothing listens on that port: is the gateway running, is the port right?",
    "timeout": "is the gateway host up and the address right, or does a firewall drop UDP?",
    "unresolved": "the host name does not resolve: a typo, or no DNS?",
    "unreachable": "no route to that address: is the network up, is the address right?",
    "overloaded": "the gateway is shedding load (4.29 or 5.03); it asks to retry later",
    "observation": "the gateway ended the observation (restarted, or dropped this device)",
    "oscore": "the gateway's answers do not verify: are the credentials for this gateway?",
    "network": "is the network up and the address right?",
}


class LinkDown(EdgecfgError):
    """The gateway could not be reached (timeouts, no route, ICMP errors).

    ``address`` is the gateway (``coap://HOST:PORT``) when known, ``cause``
    the failure without the address, ``kind`` the coarse cause and
    :attr:`likely` what usually causes it, for the message a person reads
    after the last retry.  ``retry_after_s`` is the wait the gateway asked
    for (the Max-Age of a 4.29 or 5.03, RFC 8516 §4), None when it did not.
    """

    def __init__(
        self,
        message: str,
        *,
        address: str | None = None,
        kind: LinkFailure = "network",
        cause: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.address = address
        self.kind: LinkFailure = kind
        self.cause = cause if cause is not None else message
        self.retry_after_s = retry_after_s

    @property
    def likely(self) -> str:
        """The likely causes of this kind of failure, in words."""
        return _LIKELY[self.kind]


_UNREACHABLE: Final = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN})


def link_down(address: str, error: BaseException, doing: str = "") -> LinkDown:
    """Translate a transport failure into :class:`LinkDown`: the one place that
    reads aiocoap's and the OS's network errors (STYLE habit 6)."""
    cause = error.__cause__ if error.__cause__ is not None else error.__context__
    os_error = error if isinstance(error, OSError) else cause
    kind: LinkFailure
    if isinstance(error, TimeoutError | aiocoap.error.TimeoutError):
        kind, detail = "timeout", "no answer (retransmissions exhausted)"
    elif isinstance(error, aiocoap.error.ResolutionError):
        kind, detail = "unresolved", "cannot resolve the host name"
    elif isinstance(os_error, ConnectionRefusedError):
        kind, detail = "refused", "connection refused (ICMP port unreachable)"
    elif isinstance(os_error, OSError) and os_error.errno in _UNREACHABLE:
        kind, detail = "unreachable", (os_error.strerror or "unreachable").lower()
    elif isinstance(os_error, OSError) and os_error.strerror:
        kind, detail = "network", os_error.strerror.lower()
    elif isinstance(error, aiocoap.error.ObservationCancelled):
        kind, detail = "observation", "the observation was cancelled"
    else:
        kind, detail = "network", f"network error ({type(error).__name__})"
    cause_text = f"{doing}{detail}"
    return LinkDown(f"{address}: {cause_text}", address=address, kind=kind, cause=cause_text)


SHEDDING: Final = frozenset({"4.29", "5.03"})
"""Codes that ask a client to come back after Max-Age (RFC 8516, RFC 7252 §5.9.3.4)."""
DEFAULT_MAX_AGE_S: Final = 60  # RFC 7252 §5.10.5: Max-Age when the option is absent


def shed(address: str, reply: Reply, doing: str = "") -> LinkDown | None:
    """The :class:`LinkDown` for a 4.29 or 5.03 answer (the gateway sheds
    load and says when to come back), else None."""
    if reply.code not in SHEDDING:
        return None
    wait = reply.max_age if reply.max_age is not None else DEFAULT_MAX_AGE_S
    cause = f"{doing}{reply.code}, retry after {wait} s"
    return LinkDown(
        f"{address}: {cause}", address=address, kind="overloaded", cause=cause,
        retry_after_s=float(wait),
    )  # fmt: skip


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
    echo: bytes | None = None  # RFC 9175 Echo option, e.g. on a 4.01 challenge

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
    echo_challenges: int = 0  # 4.01 + Echo answers repeated (included above)


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


OSCORE_REQUEST_OVERHEAD: Final = 12
"""OSCORE option header and flags, inner code, AEAD tag (8) and payload marker."""
OSCORE_RESPONSE_OVERHEAD: Final = 11
"""The same for a response (empty OSCORE option, no key id or partial IV)."""


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

    def __init__(
        self,
        gateway: str,
        *,
        ack_timeout: float = 2.0,
        max_retransmit: int = 4,
        credentials: str | os.PathLike[str] | None = None,
    ) -> None:
        parts = urlsplit(gateway)
        if parts.scheme != "coap" or not parts.hostname:
            raise UsageError(f"gateway {gateway!r} must look like coap://HOST:PORT")
        self.base = f"coap://{parts.netloc}"
        self.tuning = _Tuning(ack_timeout, max_retransmit)
        self.traffic = Traffic()
        self.credentials = None if credentials is None else Path(credentials)
        self._context: aiocoap.Context | None = None
        self._echo: tuple[bytes, float] | None = None  # last Echo value, when received
        self._last_reply: float | None = None  # monotonic time of the last reply

    async def open(self) -> None:
        if self._context is None:
            transports = ["udp6"] if self.credentials is None else ["oscore", "udp6"]
            context = await aiocoap.Context.create_client_context(transports=transports)
            if self.credentials is not None:
                try:
                    self._load_credentials(context, self.credentials)
                except BaseException:
                    await context.shutdown()
                    raise
            self._context = context

    def _load_credentials(self, context: aiocoap.Context, path: Path) -> None:
        """Load an aiocoap credentials file (``edgecfg device enroll`` writes one)
        and check that it covers this gateway, so nothing goes out unprotected."""
        try:
            document = _anchored(json.loads(path.read_bytes()), path.parent)
            context.client_credentials.load_from_dict(document)
        except TimeoutError:
            raise UsageError(f"{path}: its OSCORE context is in use by another process") from None
        except OSError as error:
            raise UsageError(f"{path}: cannot read credentials: {error.strerror}") from None
        except (ValueError, TypeError, KeyError, aiocoap.credentials.CredentialsLoadError) as error:
            raise UsageError(f"{path}: not usable aiocoap credentials: {error}") from None
        probe = aiocoap.Message(code=Code.GET, uri=f"{self.base}/cfg")
        try:
            context.client_credentials.credentials_from_request(probe)
        except aiocoap.credentials.CredentialsMissingError:
            raise UsageError(
                f"{path}: no credentials for {self.base} (the file names "
                f"{', '.join(map(str, document))}); enrol with --gateway {self.base}"
            ) from None

    async def close(self, *, collect: bool = True) -> None:
        """Shut the CoAP context down.  ``collect=False`` leaves the garbage
        collection that saves the OSCORE sequence number to the caller (one
        for many links: a full collection per link costs ~0.2 s in a large
        process)."""
        if self._context is not None:
            await self._context.shutdown()
            # aiocoap saves an OSCORE context's sequence number when the context
            # is dropped: drop it now, while its directory certainly exists.
            self._context.client_credentials.clear()
            self._context = None
            if self.credentials is not None and collect:
                gc.collect()

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
        request, reply = await self._register(path, self._echo_to_offer())
        if _is_challenge(reply):  # a registration is challenged whatever its size
            self.traffic.echo_challenges += 1
            request, reply = await self._register(path, reply.echo)
        try:
            refused = shed(self.base, reply, "observation refused: ")
            if refused is not None:
                raise refused
            yield reply
            observation = request.observation
            if observation is None:  # the server did not accept the observation
                cause = f"{'/'.join(path)} is not observable"
                raise LinkDown(
                    f"{self.base}: {cause}", address=self.base, kind="observation", cause=cause
                )
            async for notification in observation:
                note = self._reply(notification)
                if not note.ok:  # RFC 7641 §3.2: an error notification ends it
                    raise _ended(self.base, note)
                yield note
            # aiocoap 0.4.17 queues one notification: a final one that came
            # while the caller was busy is only in the observation's record
            final = getattr(observation, "_latest_response", None)
            if isinstance(final, aiocoap.Message) and not (note := self._reply(final)).ok:
                raise _ended(self.base, note)
        except (aiocoap.error.NetworkError, aiocoap.error.ObservationCancelled, OSError) as error:
            raise link_down(self.base, error, "observation ended: ") from None
        finally:
            if request.observation is not None and not request.observation.cancelled:
                request.observation.cancel()

    async def _register(
        self, path: Sequence[str], echo: bytes | None
    ) -> tuple[aiocoap.protocol.Request | aiocoap.protocol.BlockwiseRequest, Reply]:
        """Send an observe registration; the request and its first reply."""
        assert self._context is not None
        message = aiocoap.Message(code=Code.GET, observe=0, transport_tuning=self.tuning)
        message.set_request_uri(self.base)
        message.opt.uri_path = tuple(path)
        message.opt.echo = echo
        request = self._context.request(message, handle_blockwise=False)
        try:
            reply = self._reply(await self._response(request))
        except (aiocoap.error.NetworkError, OSError) as error:
            raise link_down(self.base, error, "observation failed: ") from None
        self._heard(reply)
        return request, reply

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
            echo=response.opt.echo,
        )

    def _heard(self, reply: Reply) -> None:
        now = time.monotonic()
        self._last_reply = now
        if reply.echo is not None:  # RFC 9175 §2.3: echo it in a later request
            self._echo = (reply.echo, now)

    def _echo_to_offer(self) -> bytes | None:
        """The kept Echo value, on the first request after a pause while it is fresh."""
        if self._echo is None:
            return None
        now = time.monotonic()
        if self._last_reply is not None and now - self._last_reply < ECHO_AFTER_IDLE_S:
            return None  # mid-exchange: the gateway knows this address already
        value, received = self._echo
        return value if now - received < FRESHNESS_S else None

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
        """One request and its reply; a 4.01 challenge with an Echo value is
        answered once by repeating the request with that value (RFC 9175 §2.3)."""
        once = functools.partial(
            self._request_once,
            method,
            path,
            query=query,
            payload=payload,
            content_format=content_format,
            etags=etags,
            block2=block2,
        )
        reply = await once(echo=self._echo_to_offer())
        self._heard(reply)
        if _is_challenge(reply):
            self.traffic.echo_challenges += 1
            reply = await once(echo=reply.echo)
            self._heard(reply)
        return reply

    async def _response(
        self, request: aiocoap.protocol.Request | aiocoap.protocol.BlockwiseRequest
    ) -> aiocoap.Message:
        """The answer to ``request``, with OSCORE's failures translated: a gateway
        that cannot use our context (revoked, unknown) answers in plain CoAP,
        typically 4.01, which is returned as it is (unauthenticated, so only
        ever a failure); an answer that does not verify is :class:`LinkDown`."""
        if self.credentials is None:  # plain CoAP: none of OSCORE's failures can arise
            return await request.response
        # Imported here: aiocoap.oscore (and what it pulls: filelock, cbor_diag,
        # more of cryptography) is ~5 MB of RSS that a device without OSCORE
        # credentials never needs (issue 16: the agent in 30 MB).
        import aiocoap.oscore

        try:
            return await request.response
        except aiocoap.oscore.NotAProtectedMessage as error:
            plain = error.plain_message
            if plain.code is None or plain.code.is_successful():
                cause = "unprotected success answer refused"
                raise LinkDown(
                    f"{self.base}: {cause}", address=self.base, kind="oscore", cause=cause
                ) from None
            return plain
        except aiocoap.oscore.ProtectionInvalid as error:
            cause = f"answer failed OSCORE verification: {error}"
            raise LinkDown(
                f"{self.base}: {cause}", address=self.base, kind="oscore", cause=cause
            ) from None

    @staticmethod
    def _oscore_overhead(response: aiocoap.Message) -> tuple[int, int]:
        """Bytes OSCORE added to both datagrams (aiocoap hands us the inner messages).

        Measured against aiocoap's protect(): a request grows by 12 bytes plus
        the key id plus the partial IV (the sequence number's bytes), a
        response by 11 bytes, 13 with a payload.
        """
        # An OSCORE answer comes from an address that carries its security context.
        context = getattr(response.remote, "security_context", None)
        if context is None:
            return 0, 0
        kid = getattr(context, "sender_id", b"")
        sequence = max(0, int(getattr(context, "sender_sequence_number", 1)) - 1)
        partial_iv = max(1, (sequence.bit_length() + 7) // 8)
        return (
            OSCORE_REQUEST_OVERHEAD + len(kid) + partial_iv,
            OSCORE_RESPONSE_OVERHEAD + (2 if response.payload else 0),
        )

    async def _request_once(
        self,
        method: Method,
        path: Sequence[str],
        *,
        query: Sequence[str],
        payload: bytes,
        content_format: int | None,
        etags: Sequence[bytes],
        block2: tuple[int, int] | None,
        echo: bytes | None,
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
        message.opt.echo = echo
        try:
            response = await self._response(self._context.request(message, handle_blockwise=False))
        except (TimeoutError, aiocoap.error.NetworkError, OSError) as error:
            raise link_down(self.base, error) from None
        token = len(response.token or b"")
        self.traffic.round_trips += 1
        up, down = self._oscore_overhead(response)
        self.traffic.bytes_up += _wire_size(message, token) + up
        self.traffic.bytes_down += _wire_size(response, token) + down
        reply = self._reply(response)
        self.traffic.codes.append(reply.code)
        return reply


def _ended(address: str, note: Reply) -> LinkDown:
    """The gateway ended an observation with ``note`` (a 4.xx or 5.xx)."""
    refused = shed(address, note, "observation ended: ")
    if refused is not None:
        return refused
    cause = f"observation ended: {note.code}"
    return LinkDown(f"{address}: {cause}", address=address, kind="observation", cause=cause)


def _anchored(document: object, folder: Path) -> dict[str, object]:
    """``document`` with each relative OSCORE ``basedir`` made relative to
    ``folder`` (the credentials file's), not to the working directory: an
    enrolled folder works wherever it is moved."""
    if not isinstance(document, dict):
        raise ValueError("expected a JSON object mapping URI patterns to credentials")
    anchored: dict[str, object] = {}
    for pattern, given in cast(dict[str, object], document).items():
        entry = given
        if isinstance(entry, dict):
            fields = cast(dict[str, object], entry)
            oscore = fields.get("oscore")
            if isinstance(oscore, dict):
                settings = cast(dict[str, object], oscore)
                basedir = settings.get("basedir")
                if isinstance(basedir, str):
                    entry = {**fields, "oscore": {**settings, "basedir": f"{folder / basedir}/"}}
        anchored[pattern] = entry
    return anchored
