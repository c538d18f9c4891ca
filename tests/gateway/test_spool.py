"""Block1 reassembly, bounded per peer and in all (edgecfg/gateway/spool.py,
RFC 7959 §2.3, issue 20).  Over real CoAP: test_coap.py and test_hostile.py."""

from __future__ import annotations

import aiocoap
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.core.admission import Budgets
from edgecfg.gateway.spool import MAX_BODY, Spool

PATH = ("state", "dev-1")


def block(
    body: bytes, number: int, szx: int, *, peer: str = "a", size1: int | None = None
) -> aiocoap.Message:
    """Block ``number`` of ``body`` at size exponent ``szx``, as ``peer`` sends it."""
    size = 1 << (szx + 4)
    chunk = body[number * size : (number + 1) * size]
    message = aiocoap.Message(code=Code.POST, payload=chunk, uri_path=PATH)
    # a stand-in for the peer's address: the spool only uses it as part of a key
    message.remote = (peer, 5683)  # pyright: ignore[reportAttributeAccessIssue]
    more = (number + 1) * size < len(body)
    message.opt.block1 = BlockOption.BlockwiseTuple(number, more, szx)
    message.opt.size1 = size1
    return message


def upload(spool: Spool, body: bytes, szx: int, peer: str = "a") -> bytes | aiocoap.Message:
    """Send every block of ``body``; the spool's last answer."""
    count = max(1, -(-len(body) // (1 << (szx + 4))))
    answer: bytes | aiocoap.Message = b""
    for number in range(count):
        answer = spool.feed(block(body, number, szx, peer=peer), peer, "state")
        if number < count - 1:
            assert isinstance(answer, aiocoap.Message)
            assert answer.code == Code.CONTINUE  # 2.31, echoing the block (§2.3)
            assert answer.opt.block1 is not None and answer.opt.block1.block_number == number
    return answer


@given(body=st.binary(max_size=3000), szx=st.integers(0, 6))
def test_the_blocks_of_a_body_reassemble_to_it_and_free_their_reservation(
    body: bytes, szx: int
) -> None:
    spool = Spool(Budgets())
    assert upload(spool, body, szx) == body
    assert (len(spool), spool.reserved, spool.of("a")) == (0, 0, 0)


def test_a_body_without_block1_passes_through_up_to_the_limit() -> None:
    spool = Spool(Budgets())
    small = aiocoap.Message(code=Code.POST, payload=b"x" * MAX_BODY, uri_path=PATH)
    assert spool.feed(small, "a", "state") == b"x" * MAX_BODY
    big = aiocoap.Message(code=Code.POST, payload=b"x" * (MAX_BODY + 1), uri_path=PATH)
    answer = spool.feed(big, "a", "state")
    assert isinstance(answer, aiocoap.Message)
    assert (answer.code, answer.opt.size1) == (Code.REQUEST_ENTITY_TOO_LARGE, MAX_BODY)


def test_a_block_out_of_order_is_4_08_and_the_transfer_is_dropped() -> None:
    spool = Spool(Budgets())
    body = bytes(100)
    spool.feed(block(body, 0, 0), "a", "state")
    answer = spool.feed(block(body, 2, 0), "a", "state")
    assert isinstance(answer, aiocoap.Message)
    assert (answer.code, answer.payload) == (
        Code.REQUEST_ENTITY_INCOMPLETE,
        b"expected block at byte 16",
    )
    assert (len(spool), spool.reserved) == (0, 0)


def test_an_announced_size_over_the_limit_is_4_13_at_once() -> None:
    # RFC 7959 §4: Size1 tells the server the size before it all arrives
    spool = Spool(Budgets())
    answer = spool.feed(block(bytes(64), 0, 0, size1=MAX_BODY + 1), "a", "state")
    assert isinstance(answer, aiocoap.Message)
    assert (answer.code, answer.opt.size1) == (Code.REQUEST_ENTITY_TOO_LARGE, MAX_BODY)
    assert len(spool) == 0


def test_a_body_longer_than_its_announced_size_is_4_13() -> None:
    spool = Spool(Budgets())
    body = bytes(48)
    assert spool.feed(block(body, 0, 0, size1=20), "a", "state") != body
    assert spool.reserved == 20  # the announced size is reserved, not MAX_BODY
    answer = spool.feed(block(body, 1, 0), "a", "state")
    assert isinstance(answer, aiocoap.Message)
    assert answer.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert spool.reserved == 0


def test_a_block_that_does_not_fit_its_size_is_4_00() -> None:
    spool = Spool(Budgets())
    message = block(bytes(40), 0, 0)
    message.payload = bytes(10)  # a non-final block must be exactly 16 bytes
    answer = spool.feed(message, "a", "state")
    assert isinstance(answer, aiocoap.Message)
    assert answer.code == Code.BAD_REQUEST
    assert b"exactly 16 bytes" in answer.payload


def test_a_peer_over_its_share_gets_4_29_and_others_still_upload() -> None:
    spool = Spool(Budgets(peer_spool_kib=2 * MAX_BODY / 1024))
    body = bytes(5000)
    for n in range(2):  # two transfers of MAX_BODY reserved each: the share
        first = block(body, 0, 6, peer="a")
        first.opt.uri_path = ("state", f"dev-{n}")
        assert isinstance(spool.feed(first, "a", "state"), aiocoap.Message)
    third = block(body, 0, 6, peer="a")
    third.opt.uri_path = ("state", "dev-9")
    refused = spool.feed(third, "a", "state")
    assert isinstance(refused, aiocoap.Message)
    assert refused.code == Code.TOO_MANY_REQUESTS
    assert refused.opt.max_age is not None and refused.opt.max_age >= 1
    assert b"peer upload spool" in refused.payload
    assert spool.of("a") == 2 * MAX_BODY
    assert upload(spool, body, 6, peer="b") == body  # no peer can spend another's share


def test_over_the_total_is_5_03() -> None:
    spool = Spool(Budgets(spool_mib=MAX_BODY / 2**20))
    body = bytes(5000)
    assert isinstance(spool.feed(block(body, 0, 6, peer="a"), "a", "state"), aiocoap.Message)
    refused = spool.feed(block(body, 0, 6, peer="b"), "b", "state")
    assert isinstance(refused, aiocoap.Message)
    assert refused.code == Code.SERVICE_UNAVAILABLE
    assert b"upload spool" in refused.payload
    assert spool.reserved == MAX_BODY and spool.of("b") == 0
