# aiocoap ships no type information; this module owns it (DESIGN §2), so only
# the "unknown type" family of strict checks is relaxed here.
# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# pyright: reportUnknownParameterType=false, reportAttributeAccessIssue=false
"""Datagrams aiocoap 0.4.17 cannot take, answered instead of raised (issue 7).

aiocoap's UDP transport decodes each datagram before anything of ours runs,
and two kinds of datagram go wrong there:

- An option of string format (Uri-Path, Uri-Query, Uri-Host, ...) whose value
  is not UTF-8 raises ``UnicodeDecodeError`` out of the transport callback:
  nothing is answered and asyncio logs an error per datagram.  RFC 7252
  §5.4.3 treats a value outside the option's format like an unrecognized
  option, so (§5.4.1, §4.2) a Confirmable request gets 4.02 Bad Option, any
  other Confirmable message a Reset, and a Non-confirmable one is dropped.
  Elective options are refused the same way (stricter than §5.4.1, which
  would ignore them), since aiocoap cannot drop one option and go on.
- A datagram longer than aiocoap's 4096-byte receive buffer arrives cut off
  (``MSG_TRUNC``) and would be parsed as if whole.  A Confirmable request gets
  4.13 with Size1 and a Block1 option naming the block size to use (RFC 7959
  §2.9.3); anything else is dropped.

Decoded requests with an unrecognized or repeated non-repeatable critical
option (RFC 7252 §5.4.1, §5.4.5) are answered 4.02 before aiocoap keeps any
exchange state for them.

Messages aiocoap itself finds unparsable (a short header, version 2, an
option running past the end) it drops, with a warning per datagram that the
gateway turns into a count logged once a minute; the guard drops the format errors it
lets through too (§3: a token length of 9 to 15, or a token longer than the
datagram), which aiocoap would answer as if they were requests.  §4.2 would
have a Confirmable one rejected with a Reset; like aiocoap, the gateway stays
silent, as it cannot trust the header of a malformed message.

:func:`harden` installs this on the UDP interfaces of one server context, in
the gateway's start-up path; clients (the agent) are untouched.
"""

from __future__ import annotations

import functools
import logging
import socket
import time
from collections.abc import Callable
from typing import Final

import aiocoap
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.types import Type
from aiocoap.optiontypes import BlockOption
from aiocoap.transports.udp6 import MessageInterfaceUDP6, UDP6EndpointAddress

from edgecfg.core.admission import Admission, Budgets, Refusal
from edgecfg.gateway.admission import CODES, address_peer
from edgecfg.gateway.conformance import bad_option
from edgecfg.gateway.spool import MAX_BODY

log = logging.getLogger("edgecfg.gateway")

HEADER_SIZE: Final = 4
MAX_TOKEN: Final = 8  # RFC 7252 §3: token lengths 9-15 are a message format error
PREFERRED_SZX: Final = 6  # 1024-byte blocks fit aiocoap's receive buffer
MAX_REASON: Final = 120

Received = Callable[[bytes, list[tuple[int, int, bytes]], int, tuple[object, ...]], None]


def harden(context: aiocoap.Context, admission: Admission | None = None) -> int:
    """Guard every UDP interface of a server context; returns how many.

    With ``admission``, every new request is admitted (or refused 4.29/5.03
    with Max-Age) from its header alone, before aiocoap decodes it or keeps
    any state for it, and aiocoap remembers an admitted one for the
    budgets' exchange lifetime.
    """
    guarded = 0
    for interface in context.request_interfaces:
        messages = getattr(getattr(interface, "token_interface", None), "message_interface", None)
        if isinstance(messages, MessageInterfaceUDP6):
            # attributes of these protocol instances: the classes stay as they are
            received = messages.datagram_msg_received
            if admission is not None:
                received = _admit(messages, received, admission)
            messages.datagram_msg_received = _guard(messages, received)
            manager = messages._ctx  # pyright: ignore[reportPrivateUsage]  # its message manager
            tuning = None if admission is None else _Remembered(admission.budgets)
            manager.dispatch_message = _screen(messages, manager.dispatch_message, tuning)
            _quiet_unparsable(messages.log)
            _deepen(messages)
            guarded += 1
    return guarded


RECEIVE_BUFFER: Final = 4 * 2**20
"""Bytes the kernel may queue for the gateway's socket (the default is about
200 KiB): a flood that outpaces the gateway for a moment then delays a
device's datagram instead of dropping it, which would cost the device a
retransmission (seconds).  Linux caps it at twice ``net.core.rmem_max``."""


def _deepen(interface: MessageInterfaceUDP6) -> None:
    transport = getattr(interface, "transport", None)
    get_extra_info = getattr(transport, "get_extra_info", None)
    sock = get_extra_info("socket") if get_extra_info is not None else None
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        except OSError:  # not allowed here: the default it is
            log.info("could not enlarge the receive buffer of %s", sock)


class _Remembered(TransportTuning):
    """aiocoap's transmission parameters with the budgets' exchange lifetime:
    how long an answered request is kept to answer its duplicates."""

    def __init__(self, budgets: Budgets) -> None:
        super().__init__()
        self._lifetime = budgets.exchange_lifetime_s

    @property
    def EXCHANGE_LIFETIME(self) -> float:  # noqa: N802  (aiocoap's name)
        return self._lifetime


def _admit(interface: MessageInterfaceUDP6, received: Received, admission: Admission) -> Received:
    """Admission of new requests from the header alone (see :func:`harden`)."""

    def admitted(
        data: bytes, ancdata: list[tuple[int, int, bytes]], flags: int, address: tuple[object, ...]
    ) -> None:
        if len(data) < HEADER_SIZE or data[0] >> 6 != 1:
            received(data, ancdata, flags, address)  # aiocoap drops it (and counts it)
            return
        mtype, code = data[0] >> 4 & 0x03, data[1]
        if mtype not in (Type.CON, Type.NON) or not 1 <= code < 32:
            received(data, ancdata, flags, address)  # not a request: no exchange to remember
            return
        peer = address_peer(address)
        key = (address[:2], data[2:HEADER_SIZE])
        now = time.monotonic()
        if peer is None or admission.is_remembered(key, now):
            received(data, ancdata, flags, address)  # a duplicate: aiocoap answers it again
            return
        refusal = admission.admit(peer, key, now)
        if refusal is None:
            received(data, ancdata, flags, address)
        elif mtype == Type.CON:  # RFC 7252 §4.3: a NON may be dropped silently
            _shed(interface, data, ancdata, address, refusal)

    return admitted


@functools.lru_cache(maxsize=512)
def _shed_tail(code: Code, reason: str, max_age: int) -> bytes:
    """What follows the header and token in a refusal: its options and
    payload, encoded once by aiocoap for each (code, reason, Max-Age)."""
    answer = aiocoap.Message(code=code, payload=reason.encode()[:MAX_REASON])
    answer.mtype, answer.mid, answer.token = Type.ACK, 0, b""
    answer.opt.max_age = max_age
    return answer.encode()[HEADER_SIZE:]


def _shed(
    interface: MessageInterfaceUDP6, data: bytes, ancdata: list[tuple[int, int, bytes]],
    address: tuple[object, ...], refusal: Refusal,
) -> None:  # fmt: skip
    """Refuse an admitted-against request with a piggybacked 4.29/5.03 and
    Max-Age, built from its header and a cached tail: a flood is refused at a
    few microseconds a datagram, not at the cost of building a message."""
    token_length = data[0] & 0x0F
    if token_length > MAX_TOKEN or len(data) < HEADER_SIZE + token_length:
        return  # a message format error: nothing to answer (RFC 7252 §3)
    code = CODES[refusal.code]
    header = bytes((0x40 | Type.ACK << 4 | token_length, code)) + data[2:HEADER_SIZE]
    token = data[HEADER_SIZE : HEADER_SIZE + token_length]
    tail = _shed_tail(code, refusal.reason, refusal.retry_after_s)
    interface.transport.sendmsg(header + token + tail, _reply_ancdata(ancdata), 0, address)


def _reply_ancdata(ancdata: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
    """The answer leaves from the address the request came to (IPV6_PKTINFO)."""
    return [
        (level, kind, value) for level, kind, value in ancdata
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO
    ]  # fmt: skip


Dispatch = Callable[[aiocoap.Message], None]


def _screen(
    interface: MessageInterfaceUDP6, dispatch: Dispatch, tuning: TransportTuning | None
) -> Dispatch:
    """Decoded requests that break RFC 7252 §5.4 never reach aiocoap's
    exchange state: a Confirmable one is answered 4.02 here, a
    Non-confirmable one is dropped (§5.4.1, §4.3).  The others are
    remembered for ``tuning``'s exchange lifetime."""

    def screened(message: aiocoap.Message) -> None:
        if message.code is not None and message.code.is_request():
            fault = bad_option(int(option.number) for option in message.opt.option_list())
            if fault is not None:
                _answer(interface, message, Code.BAD_OPTION, fault)
                return
            if tuning is not None:
                message.transport_tuning = tuning
        dispatch(message)

    return screened


def _answer(
    interface: MessageInterfaceUDP6, request: aiocoap.Message, code: Code, reason: str,
    *, max_age: int | None = None,
) -> None:  # fmt: skip
    """Answer a decoded request here, keeping no state for it (a piggybacked
    ACK for a CON; a NON is not answered)."""
    if request.mtype != Type.CON:
        return  # RFC 7252 §4.3: rejecting a Non-confirmable message may be silent
    answer = aiocoap.Message(code=code, payload=reason.encode()[:MAX_REASON])
    answer.mtype, answer.mid, answer.token = Type.ACK, request.mid, request.token
    if max_age is not None:
        answer.opt.max_age = max_age
    answer.remote = request.remote
    interface.send(answer)


QUIETED: Final = (
    "Ignoring unparsable message from %s",
    "Received a message with code %s and type %s (those don't fit) from %s, ignoring it.",
)
"""aiocoap's warnings about datagrams it drops: one line per datagram, which a
peer sending garbage turns into a flood of log lines."""
SUMMARY_INTERVAL_S: Final = 60.0


class UnparsableCount(logging.Filter):
    """Turns aiocoap's per-datagram warnings about unparsable datagrams into a
    count, logged at most once per ``interval_s`` (with the last sender)."""

    def __init__(self, interval_s: float = SUMMARY_INTERVAL_S) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.total = 0
        self._pending = 0
        self._since = time.monotonic()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg not in QUIETED:
            return True
        self.total += 1
        self._pending += 1
        now = time.monotonic()
        if now - self._since >= self.interval_s:
            sender = record.args[-1] if isinstance(record.args, tuple) and record.args else "?"
            log.warning(
                "dropped %d unparsable datagram(s) in the last %.0f s (the last from %s)",
                self._pending, now - self._since, sender,
            )  # fmt: skip
            self._pending, self._since = 0, now
        return False


def _quiet_unparsable(logger: logging.Logger) -> None:
    if not any(isinstance(f, UnparsableCount) for f in logger.filters):
        logger.addFilter(UnparsableCount())


def _guard(interface: MessageInterfaceUDP6, received: Received) -> Received:
    def guarded(
        data: bytes, ancdata: list[tuple[int, int, bytes]], flags: int, address: tuple[object, ...]
    ) -> None:
        if len(data) >= HEADER_SIZE and (data[0] & 0x0F) > min(MAX_TOKEN, len(data) - HEADER_SIZE):
            return  # RFC 7252 §3: a message format error in the token length
        if flags & socket.MSG_TRUNC:
            reason = f"datagram beyond {len(data)} bytes; send the body with Block1"
            _refuse(interface, data, ancdata, address, code=Code.REQUEST_ENTITY_TOO_LARGE,
                    reason=reason)  # fmt: skip
            return
        try:
            received(data, ancdata, flags, address)
        except UnicodeDecodeError:  # raised by aiocoap's option decoding
            _refuse(interface, data, ancdata, address, code=Code.BAD_OPTION,
                    reason="an option value is not UTF-8")  # fmt: skip

    return guarded


def _refuse(
    interface: MessageInterfaceUDP6,
    data: bytes,
    ancdata: list[tuple[int, int, bytes]],
    address: tuple[object, ...],
    *,
    code: Code,
    reason: str,
    max_age: int | None = None,
) -> None:
    """Answer a message whose header is readable but whose rest is not (or
    need not be read: a request refused by admission, with ``max_age``)."""
    if len(data) < HEADER_SIZE or data[0] >> 6 != 1 or data[0] & 0x0F > MAX_TOKEN:
        return  # not even a header to answer to
    mtype, token_length, request_code = data[0] >> 4 & 0x03, data[0] & 0x0F, data[1]
    if max_age is None:  # admission refusals are counted, not logged one by one
        log.info("refused a datagram from %s: %s", address, reason)
    if mtype != Type.CON:
        return  # RFC 7252 §4.3: rejecting a Non-confirmable message may be silent
    pktinfo = next(
        (value for level, kind, value in ancdata
         if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO),
        None,
    )  # fmt: skip
    if Code(request_code).is_request():
        answer = aiocoap.Message(code=code, payload=reason.encode())
        answer.token = data[HEADER_SIZE : HEADER_SIZE + token_length]
        answer.mtype = Type.ACK  # piggybacked (RFC 7252 §5.2.1)
        if max_age is not None:
            answer.opt.max_age = max_age
        if code == Code.REQUEST_ENTITY_TOO_LARGE:
            answer.opt.size1 = MAX_BODY  # RFC 7959 §2.9.3
            answer.opt.block1 = BlockOption.BlockwiseTuple(0, False, PREFERRED_SZX)
    else:
        answer = aiocoap.Message(code=Code.EMPTY)
        answer.mtype = Type.RST  # RFC 7252 §4.2
    answer.mid = int.from_bytes(data[2:HEADER_SIZE], "big")
    answer.remote = UDP6EndpointAddress(address, interface, pktinfo=pktinfo)
    interface.send(answer)
