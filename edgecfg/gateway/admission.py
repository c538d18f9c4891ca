# aiocoap ships no type information; this module owns it (DESIGN §2), so only
# the "unknown type" family of strict checks is relaxed here.
# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# pyright: reportAttributeAccessIssue=false
"""The gateway's side of :mod:`edgecfg.core.admission`: who a peer is, and the
CoAP answer to a refusal.

- A plain peer is its source address: an IPv4 address, or the /64 prefix of
  an IPv6 one (a host gets a whole /64 and could otherwise take a fresh
  budget per address).  An authenticated peer is its OSCORE identity.
- A refusal is 4.29 Too Many Requests (RFC 8516) when the peer went over its
  own budget, 5.03 Service Unavailable when the gateway is over its global
  one, both with Max-Age saying when to try again (RFC 8516 §4, RFC 7252
  §5.9.3.4).
"""

from __future__ import annotations

import functools
import socket
import time
from collections import OrderedDict
from typing import Final, cast

import aiocoap
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from edgecfg.core.admission import Refusal
from edgecfg.fleet.identity import Identity

CODES: Final = {"4.29": Code.TOO_MANY_REQUESTS, "5.03": Code.SERVICE_UNAVAILABLE}


def address_peer(sockaddr: object) -> bytes | None:
    """The budget key of a socket address (see the module docstring)."""
    if not isinstance(sockaddr, tuple) or not sockaddr or not isinstance(sockaddr[0], str):
        return None
    return _host_peer(sockaddr[0])


_V4_MAPPED: Final = bytes(10) + b"\xff\xff"


@functools.lru_cache(maxsize=4096)
def _host_peer(host: str) -> bytes | None:
    # Runs for every datagram: inet_pton, not the ipaddress module (10x the time).
    address = host.split("%", 1)[0]
    try:
        if ":" not in address:
            return socket.inet_pton(socket.AF_INET, address)
        packed = socket.inet_pton(socket.AF_INET6, address)
    except (OSError, ValueError):
        return None
    if packed[:12] == _V4_MAPPED:
        return packed[12:]
    return packed[:8]


def request_peer(request: aiocoap.Message, claimed: Identity | None) -> object:
    """The budget key of a request: its OSCORE identity, else its address."""
    if claimed is not None:
        return (claimed.role, claimed.name)
    remote = request.remote
    underlying = getattr(remote, "underlying_address", None)  # OSCOREAddress
    if underlying is not None:
        remote = underlying
    return address_peer(getattr(remote, "sockaddr", None))


def refusal_response(refusal: Refusal) -> aiocoap.Message:
    """4.29 or 5.03 with Max-Age and the budget's name."""
    response = aiocoap.Message(code=CODES[refusal.code], payload=refusal.reason.encode())
    response.opt.max_age = refusal.retry_after_s
    return response


Key = tuple[object, int | None]


class RememberedAnswers:
    """aiocoap's duplicate detection (RFC 7252 §4.5) for one message manager,
    holding bytes instead of objects.

    aiocoap 0.4.17 remembers each request it answered as the answer's
    ``Message``, which references the request's ``Message``, both with their
    options and addresses, plus an event-loop timer per request to forget it:
    about 3.6 KiB of small objects that live for the exchange lifetime, spread
    over the interpreter's allocator arenas.  After a flood those arenas
    cannot be handed back while anything else lives in them, so the process
    stayed ~20% above its baseline long after the flood.  This table keeps,
    per request, the peer's address and message ID and the answer's encoded
    bytes (about 0.3 KiB), in arrival order, which with one lifetime for all
    is expiry order: :meth:`expire` drops the old ones without a timer each.

    A duplicate of a request still being handled is ignored (its answer will
    follow); one of an answered request gets the same bytes again.  Only
    piggybacked, NON and empty answers are repeated: a separate Confirmable
    answer is retransmitted by aiocoap's own exchange machinery.
    """

    def __init__(self, lifetime_s: float) -> None:
        self.lifetime_s = lifetime_s
        self._answers: OrderedDict[Key, tuple[float, bytes | None]] = OrderedDict()
        self._highest = 0  # requests held at most since :meth:`highest` was asked

    def highest(self) -> int:
        """The most requests held at once since the last call."""
        highest, self._highest = self._highest, len(self._answers)
        return highest

    def __len__(self) -> int:
        return len(self._answers)

    def install(self, manager: object) -> None:
        """Take over duplicate detection of ``manager`` (an aiocoap
        ``MessageManager``; attributes of that instance only)."""
        manager._deduplicate_message = functools.partial(self._deduplicate, manager)
        manager._store_response_for_duplicates = self._store

    def expire(self, now: float) -> int:
        """Forget requests older than the lifetime; how many are left."""
        answers = self._answers
        while answers:
            key, (expiry, _) = next(iter(answers.items()))
            if expiry > now:
                break
            del answers[key]
        return len(answers)

    @staticmethod
    def _key(message: aiocoap.Message) -> Key:
        sockaddr = getattr(message.remote, "sockaddr", None)
        # aiocoap's UDP addresses compare by all but the scope id
        where = sockaddr[:-1] if isinstance(sockaddr, tuple) else message.remote
        return (where, message.mid)

    def _deduplicate(self, manager: object, message: aiocoap.Message) -> bool:
        now = time.monotonic()
        self.expire(now)
        key = self._key(message)
        remembered = self._answers.get(key)
        if remembered is None:
            self._answers[key] = (now + self.lifetime_s, None)
            self._highest = max(self._highest, len(self._answers))
            return False
        answer = remembered[1]
        if message.mtype == Type.CON and answer is not None:
            _resend(manager, message.remote, answer)
        return True

    def _store(self, message: aiocoap.Message) -> None:
        key = self._key(message)
        remembered = self._answers.get(key)
        if remembered is not None and message.mtype != Type.CON:
            data = cast(bytes, message.encode())
            self._answers[key] = (remembered[0], data)
            # aiocoap sends the message right after asking to store it, and
            # would encode it again: the bytes kept are the bytes sent
            message.encode = lambda: data


def _resend(manager: object, remote: object, answer: bytes) -> None:
    """Send ``answer``'s bytes to ``remote`` again, as aiocoap's UDP
    interface sends a message (with the request's destination as source)."""
    transport = getattr(getattr(manager, "message_interface", None), "transport", None)
    sockaddr = getattr(remote, "sockaddr", None)
    if transport is None or sockaddr is None:
        return
    pktinfo = getattr(remote, "pktinfo", None)
    ancdata = [] if pktinfo is None else [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo)]
    transport.sendmsg(answer, ancdata, 0, sockaddr)
