"""Address proof with the CoAP Echo option, against amplification (RFC 9175).

A CoAP server answering a spoofed request sends its response to the victim
whose address the attacker wrote in the source field; the larger the response
compared to the request, the more it amplifies the attack (RFC 9175 §2.4
item 3, RFC 7252 §11.3).  The gateway's rule:

- **Allowance.** To a peer that has not proven its address, a response may be
  at most ``AMPLIFICATION_FACTOR`` (3) times the request, both counted on the
  wire with the lower-layer headers (Ethernet 14 + IPv6 40 + UDP 8 =
  ``LOWER_LAYER_BYTES``), as RFC 9175 §2.4 item 3 counts them after QUIC
  (RFC 9000 §8): ``response <= 3 * (request + 62) - 62`` in CoAP bytes, so
  even a bare 4-byte request may get a 136-byte answer.  The 4.01 challenge
  (at most 43 bytes: header, token, a 12-byte Echo, a 16-byte diagnostic)
  therefore always fits.
- **Challenge.** A larger response is not sent: the peer gets 4.01 Unauthorized
  with an Echo value instead and repeats the request with it (RFC 9175 §2.3).
- **Echo value** (RFC 9175 Appendix A, "integrity-protected timestamp"): a
  4-byte timestamp in seconds and the first 8 bytes of HMAC-SHA256 under a
  secret key of the gateway over the claimed address and that timestamp
  (§2.3: "SHOULD be a MAC of the claimed address").  Stateless: the gateway
  keeps no per-challenge state, and only the holder of the key can mint one.
- **Address** is the peer's IP address (plus the IPv6 scope of a link-local
  one), not its port: amplification floods a host, a spoofer picks any source
  port, and a device's port changes with every new socket and NAT binding.
- **Freshness** (``FRESHNESS_S``, 36 h): a value proves that whoever sent it
  received a datagram at that address within the window.  A device that
  syncs once a day (DESIGN §6) still holds a fresh value at its next wake,
  with half a day for jitter and backoff; a device that moved to another
  address is challenged again there.
- **Renewal.** A successful answer to a proven peer whose proof has less
  than half its freshness left carries a fresh Echo value (RFC 9175 §2.3
  lets a server send Echo in any response); the agent keeps it and shows it
  on its next wake, so a device that keeps syncing is challenged once, at
  first contact (and after a gateway restart, which changes the key).
- **Verified peers** are remembered in a bounded LRU (``VERIFIED_CAPACITY``)
  until their proof expires; past the bound the least recently seen peer is
  forgotten and shows its Echo value again (the agent sends its last one
  proactively), so the bound costs bytes, not round trips.

Pure: time and the key are arguments (DESIGN §2).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from typing import Final

AMPLIFICATION_FACTOR: Final = 3
LOWER_LAYER_BYTES: Final = 14 + 40 + 8  # Ethernet, IPv6, UDP (RFC 9175 §2.4 item 3)
FRESHNESS_S: Final = 36 * 3600
VERIFIED_CAPACITY: Final = 65_536
TIMESTAMP_BYTES: Final = 4
MAC_BYTES: Final = 8
ECHO_BYTES: Final = TIMESTAMP_BYTES + MAC_BYTES
MAX_ECHO_BYTES: Final = 40  # RFC 9175 §2.2.1: an Echo value is 1 to 40 bytes


def make_echo(key: bytes, peer: bytes, now: float) -> bytes:
    """An Echo value proving, until ``now + FRESHNESS_S``, that ``peer`` got it."""
    stamp = (int(now) & 0xFFFF_FFFF).to_bytes(TIMESTAMP_BYTES, "big")
    return stamp + _mac(key, peer, stamp)


def proven_until(
    key: bytes, peer: bytes, echo: bytes, now: float, *, freshness_s: float = FRESHNESS_S
) -> float | None:
    """When the proof in ``echo`` expires, if :func:`make_echo` made it with
    ``key`` for ``peer`` and it is still fresh at ``now``; else None (forged,
    for another peer, expired, or from the future)."""
    if len(echo) != ECHO_BYTES:
        return None
    stamp, mac = echo[:TIMESTAMP_BYTES], echo[TIMESTAMP_BYTES:]
    if not hmac.compare_digest(mac, _mac(key, peer, stamp)):
        return None
    made = int.from_bytes(stamp, "big")
    if not 0 <= int(now) - made < freshness_s:
        return None
    return made + freshness_s


def _mac(key: bytes, peer: bytes, stamp: bytes) -> bytes:
    # The length prefix keeps (peer, stamp) pairs apart whatever the peer's length.
    message = len(peer).to_bytes(1, "big") + peer + stamp
    return hmac.new(key, message, hashlib.sha256).digest()[:MAC_BYTES]


def allowance(request_bytes: int, factor: int = AMPLIFICATION_FACTOR) -> int:
    """The largest response (CoAP bytes) an unproven peer may get for a request
    of ``request_bytes`` (CoAP bytes): ``factor`` times, lower layers included."""
    return factor * (request_bytes + LOWER_LAYER_BYTES) - LOWER_LAYER_BYTES


class VerifiedPeers:
    """Peers that proved their address, each until its proof expires; at most
    ``capacity``, the least recently seen forgotten first."""

    def __init__(self, capacity: int = VERIFIED_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._until: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def admit(self, peer: bytes, until: float) -> None:
        """Remember ``peer`` as proven until ``until``."""
        self._until[peer] = max(until, self._until.get(peer, until))
        self._until.move_to_end(peer)
        while len(self._until) > self.capacity:
            self._until.popitem(last=False)

    def until(self, peer: bytes) -> float | None:
        """When ``peer``'s proof expires, if it is remembered."""
        return self._until.get(peer)

    def holds(self, peer: bytes, now: float) -> bool:
        """Whether ``peer`` is proven at ``now`` (an expired entry is dropped)."""
        until = self._until.get(peer)
        if until is None:
            return False
        if now >= until:
            del self._until[peer]
            return False
        self._until.move_to_end(peer)
        return True
