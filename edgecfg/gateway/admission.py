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

import ipaddress
from typing import Final

import aiocoap
from aiocoap.numbers.codes import Code

from edgecfg.core.admission import Refusal
from edgecfg.fleet.identity import Identity

CODES: Final = {"4.29": Code.TOO_MANY_REQUESTS, "5.03": Code.SERVICE_UNAVAILABLE}


def address_peer(sockaddr: object) -> bytes | None:
    """The budget key of a socket address (see the module docstring)."""
    if not isinstance(sockaddr, tuple) or not sockaddr or not isinstance(sockaddr[0], str):
        return None
    host: str = sockaddr[0]
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped.packed
        return address.packed[:8]
    return address.packed


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
