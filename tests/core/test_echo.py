"""Echo values and the amplification allowance (RFC 9175 §2.4 item 3, Appendix A)."""

from __future__ import annotations

import pytest

from edgecfg.core.echo import (
    ECHO_BYTES,
    FRESHNESS_S,
    LOWER_LAYER_BYTES,
    MAX_ECHO_BYTES,
    VerifiedPeers,
    allowance,
    make_echo,
    proven_until,
)

KEY = bytes(range(32))
PEER = bytes([192, 0, 2, 7])
OTHER = bytes([192, 0, 2, 8])
NOW = 1_000_000.0


def test_an_echo_made_for_a_peer_proves_it_until_the_window_ends() -> None:
    echo = make_echo(KEY, PEER, NOW)

    assert len(echo) == ECHO_BYTES <= MAX_ECHO_BYTES
    assert proven_until(KEY, PEER, echo, NOW) == NOW + FRESHNESS_S
    assert proven_until(KEY, PEER, echo, NOW + FRESHNESS_S - 1) == NOW + FRESHNESS_S


def test_an_echo_expires_after_the_freshness_window() -> None:
    echo = make_echo(KEY, PEER, NOW)

    assert proven_until(KEY, PEER, echo, NOW + FRESHNESS_S) is None
    assert proven_until(KEY, PEER, echo, NOW + 10 * FRESHNESS_S) is None


def test_an_echo_from_the_future_is_refused() -> None:
    assert proven_until(KEY, PEER, make_echo(KEY, PEER, NOW + 5), NOW) is None


def test_an_echo_made_for_another_address_is_refused() -> None:
    assert proven_until(KEY, OTHER, make_echo(KEY, PEER, NOW), NOW) is None


def test_an_echo_made_under_another_key_is_refused() -> None:
    assert proven_until(bytes(32), PEER, make_echo(KEY, PEER, NOW), NOW) is None


@pytest.mark.parametrize("position", range(ECHO_BYTES))
def test_changing_any_byte_of_an_echo_makes_it_invalid(position: int) -> None:
    forged = bytearray(make_echo(KEY, PEER, NOW))
    forged[position] ^= 0x01

    assert proven_until(KEY, PEER, bytes(forged), NOW) is None


@pytest.mark.parametrize("echo", [b"", b"\x00", bytes(ECHO_BYTES - 1), bytes(ECHO_BYTES + 1)])
def test_an_echo_of_the_wrong_length_is_refused(echo: bytes) -> None:
    assert proven_until(KEY, PEER, echo, NOW) is None


def test_the_peer_and_the_timestamp_cannot_trade_bytes() -> None:
    # 4-byte and 16-byte peers whose bytes run into the timestamp differently
    echo = make_echo(KEY, PEER, NOW)

    assert proven_until(KEY, PEER + echo[:4], echo, NOW) is None


def test_the_allowance_is_three_times_the_request_counting_lower_layers() -> None:
    assert allowance(4) == 136  # RFC 9175 §2.4 item 3: a bare 4-byte request
    for request in (4, 20, 100, 1000):
        assert allowance(request) + LOWER_LAYER_BYTES == 3 * (request + LOWER_LAYER_BYTES)
    assert allowance(20, factor=1) == 20


def test_verified_peers_hold_until_their_proof_expires() -> None:
    peers = VerifiedPeers()
    peers.admit(PEER, until=NOW + 10)

    assert peers.holds(PEER, NOW)
    assert not peers.holds(OTHER, NOW)
    assert not peers.holds(PEER, NOW + 10)
    assert len(peers) == 0  # the expired entry is gone


def test_a_later_proof_extends_and_an_older_one_does_not_shorten() -> None:
    peers = VerifiedPeers()
    peers.admit(PEER, until=NOW + 10)
    peers.admit(PEER, until=NOW + 5)

    assert peers.holds(PEER, NOW + 9)


def test_verified_peers_stay_bounded_and_forget_the_least_recently_seen() -> None:
    peers = VerifiedPeers(capacity=3)
    addresses = [bytes([10, 0, 0, n]) for n in range(6)]
    for address in addresses[:3]:
        peers.admit(address, until=NOW + 100)
    assert peers.holds(addresses[0], NOW)  # seen: now the most recent

    for address in addresses[3:5]:
        peers.admit(address, until=NOW + 100)

    assert len(peers) == 3
    assert [peers.holds(a, NOW) for a in addresses] == [True, False, False, True, True, False]


def test_verified_peers_need_room_for_one() -> None:
    with pytest.raises(ValueError, match="capacity"):
        VerifiedPeers(capacity=0)
