"""The gateway's side of admission (edgecfg/gateway/admission.py): who a peer
is for its budgets, and the CoAP answer to a refusal.  The budgets themselves:
tests/core/test_admission.py."""

from __future__ import annotations

import ipaddress

import pytest
from aiocoap.numbers.codes import Code
from hypothesis import assume, given
from hypothesis import strategies as st

from edgecfg.core.admission import Refusal
from edgecfg.gateway.admission import address_peer, refusal_response


@pytest.mark.parametrize(
    ("sockaddr", "peer"),
    [
        (("192.0.2.7", 5683), bytes([192, 0, 2, 7])),
        (("::ffff:192.0.2.7", 5683, 0, 0), bytes([192, 0, 2, 7])),  # v4-mapped is the v4 peer
        (("2001:db8:1:2:aaaa::1", 5683, 0, 0), bytes.fromhex("20010db800010002")),  # its /64
        (("fe80::1%eth0", 5683, 0, 2), bytes.fromhex("fe80000000000000")),  # zone dropped
        (("not an address", 5683), None),
        ((), None),
        (None, None),
        ((5683, "192.0.2.7"), None),
    ],
)
def test_the_budget_key_of_an_address(sockaddr: object, peer: bytes | None) -> None:
    assert address_peer(sockaddr) == peer


@given(st.integers(0, 2**128 - 1), st.integers(0, 2**64 - 1))
def test_every_address_of_one_ipv6_64_is_one_peer(address: int, host: int) -> None:
    # a host gets a whole /64: it must not get a fresh budget per address
    first = ipaddress.IPv6Address(address)
    other = ipaddress.IPv6Address((address >> 64 << 64) | host)
    assume(first.ipv4_mapped is None and other.ipv4_mapped is None)  # those are v4 peers
    assert address_peer((str(first), 1)) == address_peer((str(other), 2)) == first.packed[:8]


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_ipv4_peers_are_whole_addresses(a: int, b: int) -> None:
    first, second = ipaddress.IPv4Address(a), ipaddress.IPv4Address(b)
    assert (address_peer((str(first), 1)) == address_peer((str(second), 1))) == (a == b)


@pytest.mark.parametrize(
    ("refusal", "code"),
    [
        (Refusal("4.29", "peer rate", 3), Code.TOO_MANY_REQUESTS),
        (Refusal("5.03", "exchanges", 41), Code.SERVICE_UNAVAILABLE),
    ],
)
def test_a_refusal_is_its_code_with_max_age_and_the_budget_s_name(
    refusal: Refusal, code: Code
) -> None:
    # RFC 8516 §4 / RFC 7252 §5.9.3.4: Max-Age says when to try again
    response = refusal_response(refusal)
    assert (response.code, response.opt.max_age) == (code, refusal.retry_after_s)
    assert response.payload == (
        f"over the {refusal.limit} budget; retry after {refusal.retry_after_s} s".encode()
    )
