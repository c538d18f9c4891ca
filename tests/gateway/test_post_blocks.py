"""Answers to POSTs larger than one block go block-wise (RFC 7959 §2.5).

A state report can be answered with more than a datagram holds (the merge
outcome of a journal chunk names every entry, with a reason for each
refusal).  Sent whole, a datagram over 4 KiB is cut by the receiver and the
device reads a truncated answer; block-wise, block 0 comes with the answer
and the peer fetches the rest with empty POSTs naming the block, which the
gateway serves from the answer it kept, without acting on the report twice.
"""

from __future__ import annotations

from pathlib import Path

import aiocoap
from aiocoap.numbers.codes import Code

from edgecfg.agent.coap import CoapLink
from edgecfg.agent.sealed_store import LocalState
from edgecfg.agent.sync import Agent
from edgecfg.core.ids import DeviceId
from edgecfg.fleet.reconcile import acknowledged_sequence
from edgecfg.gateway.server import Gateway
from edgecfg.wire.cbor import decode
from edgecfg.wire.messages import DeviceReport, StateAnswer
from edgecfg.wire.numbers import ContentFormat
from tests.gateway.helpers import ask

ENTRIES = 80  # each refused with a reason: an answer of several KiB


def _journal(count: int) -> tuple[list[object], ...]:
    """``count`` offline changes of paths the schema does not have (each refused)."""
    return tuple(
        [n, f"no.such.setting_{n:03d}", [1_000 + n, 0, "dev-1"], "field test", n]
        for n in range(1, count + 1)
    )


def _report(gateway: Gateway, count: int = ENTRIES) -> bytes:
    applied = gateway.fleet.encoded(DeviceId("dev-1")).etag
    report = DeviceReport(applied=applied, journal=_journal(count), base=applied)  # type: ignore[arg-type]
    return report.encode()


async def _post_report(gateway: Gateway, client: aiocoap.Context) -> aiocoap.Message:
    """The report, its answer assembled by aiocoap's managed block-wise transfer."""
    return await ask(client, gateway, Code.POST, "/state/dev-1", payload=_report(gateway),
                     content_format=ContentFormat.CBOR, blockwise=True)  # fmt: skip


async def test_a_large_answer_comes_in_blocks_that_a_managed_client_assembles(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    response = await _post_report(gateway, client)
    assert response.code == Code.CHANGED, response.payload
    answer = StateAnswer.decode(response.payload)
    assert len(response.payload) > 2 * 1024  # three blocks or more
    local = answer.local
    assert isinstance(local, dict)
    refused = local["rejected"]
    assert isinstance(refused, list) and len(refused) == ENTRIES
    assert answer.acknowledged == ENTRIES
    # acted on once: the gateway kept one merge, acknowledged up to the last entry
    assert acknowledged_sequence(gateway.fleet, DeviceId("dev-1")) == ENTRIES


async def test_each_block_is_served_from_the_kept_answer_and_only_to_its_peer(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    first = await _post_report(gateway, client)
    whole = first.payload
    # the same peer asks again for block 1, at 256 bytes: the kept answer, cut there
    again = await ask(client, gateway, Code.POST, "/state/dev-1", block2=(1, 4))
    assert again.code == Code.CHANGED
    assert again.payload == whole[256:512]
    assert again.opt.block2 is not None and again.opt.block2.more
    assert again.opt.etag == first.opt.etag
    # another peer (another socket) holds no answer: 4.08, nothing leaks
    other = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        stranger = await ask(other, gateway, Code.POST, "/state/dev-1", block2=(1, 6))
    finally:
        await other.shutdown()
    assert stranger.code == Code.REQUEST_ENTITY_INCOMPLETE
    assert b"send the request again" in stranger.payload
    # a block past the end of the kept answer is refused, naming the block
    past = await ask(client, gateway, Code.POST, "/state/dev-1", block2=(500, 6))
    assert past.code == Code.BAD_REQUEST


async def test_the_agent_reads_a_state_answer_of_several_blocks(
    gateway: Gateway, tmp_path: Path
) -> None:
    async with CoapLink(gateway.uri, ack_timeout=0.5) as link:
        agent = Agent(link, LocalState(tmp_path), device="dev-1")
        await agent.sync()
        reply = await agent._post_whole(("state", "dev-1"), _report(gateway))  # pyright: ignore[reportPrivateUsage]
    assert reply.ok and reply.block2 is not None and not reply.block2[1]
    outcome = decode(reply.payload)
    assert isinstance(outcome, dict) and len(reply.payload) > 2 * 1024
    assert len(outcome["local"]["rejected"]) == ENTRIES  # type: ignore[index,arg-type]
