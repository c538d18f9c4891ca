# aiocoap ships no type information; this module is one of the gateway's aiocoap
# owners (DESIGN §2), so only the "unknown type" family of strict checks is relaxed.
# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# pyright: reportUnknownParameterType=false, reportUntypedBaseClass=false
# pyright: reportUnknownLambdaType=false, reportAttributeAccessIssue=false
"""The gateway's amplification guard: large responses only to proven addresses.

The rule and its constants are in :mod:`edgecfg.core.echo`.  Here it meets
aiocoap: :meth:`AddressGuard.screen` looks at each rendered response just
before it leaves (``CoapResource.render`` for every edgecfg resource,
:class:`Discovery` for ``/.well-known/core``) and swaps one that is too large
for an unproven peer for a 4.01 challenge with an Echo value.

- **Sizes** are those of the CoAP datagram (RFC 7252 §3): header, token,
  encoded options, payload marker and payload, computed from the messages
  before aiocoap encodes them.  aiocoap may still add an Observe option to a
  notification (1 to 4 bytes); with OSCORE both messages are the inner ones,
  about the same OSCORE overhead smaller on the wire than what is sent.
- **Observations:** a successful answer to an observe registration counts as
  large whatever its size, since the notifications that follow are its
  responses too (RFC 9175 §2.4 item 3 counts "the total size of the
  response(s)").  Notifications are rendered from the registration request,
  so they pass the same check: they go only to a peer proven at registration,
  until that proof expires (the observation then ends with the 4.01 and the
  client registers again).
- **The peer** is the request's UDP address, under OSCORE its
  ``underlying_address``; requests over reliable transports (whose handshake
  proves the address) are not screened.
- **The challenge** is 4.01 with Echo and a short diagnostic, sent as a
  piggybacked ACK or a NON, never as a separate CON response that would be
  retransmitted to the victim (RFC 9175 §2.4 item 3).
"""

from __future__ import annotations

import functools
import ipaddress
import secrets
import time
from collections.abc import Callable
from typing import Final

import aiocoap
import aiocoap.resource
from aiocoap.numbers.codes import Code

from edgecfg.core.echo import (
    AMPLIFICATION_FACTOR,
    FRESHNESS_S,
    VERIFIED_CAPACITY,
    VerifiedPeers,
    allowance,
    make_echo,
    proven_until,
)

KEY_BYTES: Final = 32
PEER_CACHE: Final = 1 << 14
"""Addresses whose packed form is kept (parsing one costs more than the rest
of the screen)."""
CHALLENGE_TEXT: Final = b"repeat with Echo"


def wire_size(message: aiocoap.Message, token: bytes) -> int:
    """Bytes of ``message`` as a UDP datagram with ``token`` (RFC 7252 §3)."""
    payload = len(message.payload)
    return 4 + len(token) + len(message.opt.encode()) + (1 + payload if payload else 0)


def peer_of(remote: object) -> bytes | None:
    """The address a request claims to come from, as bytes: the IP address (an
    IPv4-mapped IPv6 address as IPv4) plus the scope of a scoped IPv6 one;
    None for a remote that is not a UDP socket address."""
    underlying = getattr(remote, "underlying_address", None)  # OSCOREAddress
    if underlying is not None:
        remote = underlying
    sockaddr = getattr(remote, "sockaddr", None)
    if not isinstance(sockaddr, tuple) or not sockaddr:
        return None
    host = sockaddr[0]
    scope = sockaddr[3] if len(sockaddr) >= 4 and isinstance(sockaddr[3], int) else 0
    if not isinstance(host, str):
        return None
    try:
        return _packed(host, scope)
    except ValueError:
        return None


@functools.lru_cache(maxsize=PEER_CACHE)
def _packed(host: str, scope: int) -> bytes:
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped.packed
        if scope:
            return address.packed + scope.to_bytes(4, "big")
    return address.packed


class AddressGuard:
    """Screens responses for amplification (see the module docstring).

    ``factor`` None or 0 disables the guard (load tests that must not pay the
    extra round trip).  The key is random per guard, so every Echo value dies
    with the gateway process (RFC 9175 Appendix A: a server that loses time
    continuity replaces its key); ``clock`` is monotonic for the same reason.
    """

    def __init__(
        self,
        factor: int | None = AMPLIFICATION_FACTOR,
        *,
        key: bytes | None = None,
        capacity: int = VERIFIED_CAPACITY,
        freshness_s: float = FRESHNESS_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.factor = factor or None
        self.key = key if key is not None else secrets.token_bytes(KEY_BYTES)
        self.freshness_s = freshness_s
        self.clock = clock
        self.verified = VerifiedPeers(capacity)
        self.challenges = 0  # 4.01 challenges sent, for operators and tests
        self.renewals = 0  # fresh Echo values attached to successful answers

    def trust(self, host: str) -> None:
        """Treat ``host`` (an IP address) as proven for ``freshness_s``: for
        tests and benchmarks whose CoAP client does not answer Echo."""
        self.verified.admit(_packed(host, 0), self.clock() + self.freshness_s)

    def screen(self, request: aiocoap.Message, response: aiocoap.Message) -> aiocoap.Message:
        """``response``, or the 4.01 challenge to send instead."""
        if self.factor is None:
            return response
        peer = peer_of(request.remote)
        if peer is None:
            return response
        now = self.clock()
        if self.verified.holds(peer, now):
            return self._renewed(peer, response, now)
        echo = request.opt.echo
        if echo is not None:
            until = proven_until(self.key, peer, echo, now, freshness_s=self.freshness_s)
            if until is not None:
                self.verified.admit(peer, until)
                return self._renewed(peer, response, now)
        if not self._amplifies(request, response):
            return response
        self.challenges += 1
        # Piggybacked when the request's ACK is still due, else NON (never a
        # retransmitted CON to a possible victim).
        challenge = aiocoap.Message(
            code=Code.UNAUTHORIZED, transport_tuning=aiocoap.Unreliable, payload=CHALLENGE_TEXT
        )
        challenge.opt.echo = make_echo(self.key, peer, now)
        return challenge

    def _renewed(self, peer: bytes, response: aiocoap.Message, now: float) -> aiocoap.Message:
        """``response``, with a fresh Echo value when the peer's proof is past
        half its life (see :mod:`edgecfg.core.echo`, "Renewal")."""
        until = self.verified.until(peer)
        code = response.code
        if (
            until is not None
            and until - now < self.freshness_s / 2
            and code is not None
            and code.is_successful()
            and response.opt.echo is None
        ):
            response.opt.echo = make_echo(self.key, peer, now)
            self.renewals += 1
        return response

    def _amplifies(self, request: aiocoap.Message, response: aiocoap.Message) -> bool:
        assert self.factor is not None
        code = response.code
        if request.opt.observe == 0 and code is not None and code.is_successful():
            return True  # notifications follow: their total size is unbounded
        token = request.token or b""
        return wire_size(response, token) > allowance(wire_size(request, token), self.factor)


class Discovery(aiocoap.resource.WKCResource):
    """``/.well-known/core`` (RFC 6690) behind the same guard."""

    def __init__(self, listgenerator: Callable[[], object], guard: AddressGuard) -> None:
        super().__init__(listgenerator)
        self.guard = guard

    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        return self.guard.screen(request, await super().render(request))
