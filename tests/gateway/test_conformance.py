"""RFC 7252 §5.4 and RFC 7959 §2.3 conformance over real loopback UDP (issue 20).

Hand-built datagrams (aiocoap's client would not send most of these) to a
running gateway: unknown and repeated non-repeatable critical options are
4.02 (a Non-confirmable one is dropped), elective ones are ignored, Block1
blocks have the size their SZX says and the final answer names the block,
and garbage datagrams become a count in the log, not a line each.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.optiontypes import BlockOption
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.core.ids import DeviceId
from edgecfg.gateway.conformance import (
    RECOGNIZED_CRITICAL,
    REPEATABLE_CRITICAL,
    bad_option,
    block_size_fault,
)
from edgecfg.gateway.hardening import UnparsableCount
from edgecfg.gateway.server import Gateway
from edgecfg.wire.cbor import encode
from tests.gateway.raw_peer import CON, NON, URI_PATH, RawPeer, coap

CFG = [(URI_PATH, b"cfg"), (URI_PATH, b"dev-1")]
UNKNOWN_CRITICAL = [19, 25, 29, 31, 33, 37, 41, 61, 253, 1023, 2049, 64999, 65001]
NON_REPEATABLE = {"uri-host": (3, b"gw"), "if-none-match": (5, b""), "uri-port": (7, b"\x16\x33"),
                  "oscore": (9, b""), "accept": (17, b"\x3c"), "block2": (23, b"\x02"),
                  "block1": (27, b"\x0a"), "proxy-scheme": (39, b"coap")}  # fmt: skip


@pytest.fixture
async def raw(gateway: Gateway) -> AsyncIterator[RawPeer]:
    peer = RawPeer(gateway)
    try:
        yield peer
    finally:
        peer.close()


def with_option(
    options: list[tuple[int, bytes]], number: int, value: bytes
) -> list[tuple[int, bytes]]:
    return sorted([*options, (number, value)], key=lambda option: option[0])


async def served(raw: RawPeer, mid: int) -> None:
    await raw.send(coap(CON, Code.GET, mid, b"ok", CFG))
    reply = await raw.answer()
    assert reply is not None
    assert (reply.mid, reply.code) == (mid, Code.CONTENT)


@pytest.mark.parametrize("number", UNKNOWN_CRITICAL)
async def test_an_unknown_critical_option_is_4_02(
    gateway: Gateway, raw: RawPeer, number: int
) -> None:
    # RFC 7252 §5.4.1
    await raw.send(coap(CON, Code.GET, 0x100, b"\x01", with_option(CFG, number, b"\x01")))
    reply = await raw.answer()
    assert reply is not None
    assert (reply.mtype, reply.code, reply.mid, reply.token) == (
        Type.ACK, Code.BAD_OPTION, 0x100, b"\x01",
    )  # fmt: skip
    assert str(number).encode() in reply.payload
    await served(raw, 0x101)


@pytest.mark.parametrize("number", [2, 20, 258, 2050, 64998, 65000])
async def test_an_unknown_elective_option_is_ignored(
    gateway: Gateway, raw: RawPeer, number: int
) -> None:
    await raw.send(coap(CON, Code.GET, 0x200, b"\x02", with_option(CFG, number, b"\x01")))
    reply = await raw.answer()
    assert reply is not None
    assert (reply.mid, reply.code) == (0x200, Code.CONTENT)


@pytest.mark.parametrize("option", NON_REPEATABLE.values(), ids=list(NON_REPEATABLE))
async def test_a_repeated_non_repeatable_critical_option_is_4_02(
    gateway: Gateway, raw: RawPeer, option: tuple[int, bytes]
) -> None:
    # RFC 7252 §5.4.5: the supernumerary occurrence is an unrecognized critical option
    options = with_option(with_option(CFG, *option), *option)
    await raw.send(coap(CON, Code.GET, 0x300, b"\x03", options))
    reply = await raw.answer()
    assert reply is not None
    assert (reply.mtype, reply.code, reply.mid) == (Type.ACK, Code.BAD_OPTION, 0x300)
    assert b"not repeatable" in reply.payload
    await served(raw, 0x301)


async def test_a_non_confirmable_request_with_a_bad_critical_option_is_dropped(
    gateway: Gateway, raw: RawPeer
) -> None:
    await raw.send(coap(NON, Code.GET, 0x400, b"\x04", with_option(CFG, 19, b"")))
    await served(raw, 0x401)  # the first answer back is to this one


async def test_repeatable_critical_options_may_repeat(gateway: Gateway, raw: RawPeer) -> None:
    tag = gateway.fleet.etag(DeviceId("dev-1"))
    options = [(1, b"\x00" * 8), (1, b"\x01" * 8), *CFG, (15, b"prio=critical")]
    ordered = sorted([(4, tag), *options], key=lambda option: option[0])
    await raw.send(coap(CON, Code.GET, 0x500, b"\x05", ordered))
    reply = await raw.answer()
    assert reply is not None
    assert reply.code != Code.BAD_OPTION


def test_the_option_rules_as_a_table() -> None:
    assert bad_option([11, 11, 15, 15, 1, 1, 4, 4, 2, 2]) is None  # repeatable and elective
    assert bad_option([19]) == "unrecognized critical option 19"
    assert bad_option([3, 3]) == "critical option 3 is not repeatable"
    assert bad_option([20, 20]) is None  # elective supernumerary occurrences are ignored
    assert block_size_fault(szx=2, more=True, payload=64) is None
    assert block_size_fault(szx=2, more=False, payload=10) is None
    assert block_size_fault(szx=2, more=True, payload=63) is not None
    assert block_size_fault(szx=2, more=False, payload=65) is not None
    assert block_size_fault(szx=7, more=False, payload=1) is not None


# -- Block1 (RFC 7959 §2.3) -------------------------------------------------------------


async def send_block(
    client: aiocoap.Context, gateway: Gateway, number: int, more: bool, payload: bytes,
    *, szx: int = 2,
) -> aiocoap.Message:  # fmt: skip
    message = aiocoap.Message(code=Code.POST, uri=gateway.uri + "/state/dev-1", payload=payload)
    message.opt.block1 = BlockOption.BlockwiseTuple(number, more, szx)
    message.opt.content_format = 60
    return await client.request(message, handle_blockwise=False).response


async def test_the_answer_to_the_final_block1_block_carries_block1(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    body = encode({"agent": "7.7.7", "comment": "padding " * 20})
    number, reply = 0, None
    for number, start in enumerate(range(0, len(body), 64)):
        more = start + 64 < len(body)
        reply = await send_block(client, gateway, number, more, body[start : start + 64])
        assert reply.opt.block1 is not None
        assert (reply.opt.block1.block_number, reply.opt.block1.more) == (
            number,
            more,
        )
    assert reply is not None
    assert reply.code == Code.CHANGED
    assert reply.opt.block1 is not None and reply.opt.block1.size_exponent == 2
    assert number > 0


@pytest.mark.parametrize(
    ("szx", "more", "size"),
    [(2, True, 10), (2, True, 65), (2, False, 65), (7, False, 4)],
    ids=["short-non-final", "long-non-final", "long-final", "szx-7"],
)
async def test_a_block1_block_of_the_wrong_size_is_4_00(
    gateway: Gateway, client: aiocoap.Context, szx: int, more: bool, size: int
) -> None:
    before = gateway.fleet.store.get_device(DeviceId("dev-1"))
    reply = await send_block(client, gateway, 0, more, b"\xa0" * size, szx=szx)
    assert reply.code == Code.BAD_REQUEST, reply
    assert b"Block1" in reply.payload
    assert gateway.fleet.store.get_device(DeviceId("dev-1")) == before


# -- unparsable datagrams --------------------------------------------------------------


async def test_unparsable_datagrams_become_a_count_not_a_line_each(
    gateway: Gateway, raw: RawPeer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    counters = [
        f for f in logging.getLogger("coap-server").filters if isinstance(f, UnparsableCount)
    ]
    assert counters  # installed by the gateway's start
    before = counters[0].total
    rng = random.Random(20)
    garbage = [bytes([0x40]) + rng.randbytes(rng.randrange(0, 3)) for _ in range(100)]
    garbage += [bytes([0x40 | 1 << 4, 0x45]) + rng.randbytes(6) for _ in range(100)]  # NON 2.05
    for datagram in garbage:
        await raw.send(datagram)
    await served(raw, 0x600)  # every datagram before it was read
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 1, [r.getMessage() for r in warnings[:5]]
    assert counters[0].total - before >= 100


def test_the_unparsable_count_is_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    counter = UnparsableCount(interval_s=0.0)
    record = logging.LogRecord("coap-server", logging.WARNING, __file__, 1,
                               "Ignoring unparsable message from %s", ("peer",), None)  # fmt: skip
    assert counter.filter(record) is False
    assert "dropped 1 unparsable datagram(s)" in caplog.text
    other = logging.LogRecord("coap-server", logging.WARNING, __file__, 1, "other", (), None)
    assert counter.filter(other) is True


@given(st.lists(st.sampled_from([1, 3, 4, 5, 7, 9, 11, 12, 15, 17, 19, 23, 27, 35, 60, 65001])))
def test_bad_option_refuses_exactly_the_rule(numbers: list[int]) -> None:
    """The quick path for valid requests answers as the rule: refuse an
    unrecognized critical option, or a non-repeatable critical one given twice."""
    unknown = [n for n in numbers if n & 1 and n not in RECOGNIZED_CRITICAL]
    twice = [
        n for n in set(numbers)
        if numbers.count(n) > 1 and n & 1 and n not in REPEATABLE_CRITICAL
    ]  # fmt: skip
    found = bad_option(numbers)
    assert (found is None) == (not unknown and not twice)
    assert bad_option(iter(numbers)) == found  # any iterable
    if unknown:
        assert found is not None and found.startswith("unrecognized critical option")
