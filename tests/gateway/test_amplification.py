"""The amplification guard (RFC 9175 §2.4 item 3) on a real gateway over loopback.

Every test starts a fresh gateway, so loopback is an address it has never
seen proven (the shared ``gateway`` fixture trusts loopback from the start).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from edgecfg.agent import coap as agent_coap
from edgecfg.agent.coap import CoapLink
from edgecfg.agent.sealed_store import LocalState
from edgecfg.agent.sync import Agent, Backoff
from edgecfg.core.echo import FRESHNESS_S, VerifiedPeers, allowance, make_echo
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import layer_from_parts
from edgecfg.fleet.identity import InsecurePolicy
from edgecfg.gateway.amplification import AddressGuard, peer_of, wire_size
from edgecfg.gateway.server import Gateway
from edgecfg.store import MemoryStore
from edgecfg.wire.senml import Record, encode_senml
from tests.gateway.coap_client import CLIENT, Running, coap
from tests.gateway.helpers import free_udp_port, sensor
from tests.paths import SCHEMA

LOOPBACK = bytes([127, 0, 0, 1])
FAST = Backoff(base_s=0.05, cap_s=0.5, attempts=8)
INTERVAL = ("net", "uplink", "interval_s")


class Clock:
    """The guard's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 50_000.0

    def __call__(self) -> float:
        return self.now


def fresh_gateway(factor: int | None = 3) -> Gateway:
    gateway = Gateway(
        MemoryStore(), policy=InsecurePolicy(), refresh_s=0, amplification_factor=factor
    )
    gateway.fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    for device in ("dev-1", "dev-2"):
        gateway.fleet.add_device(sensor(device))
    return gateway


@pytest.fixture
async def fresh() -> AsyncIterator[Gateway]:
    """A started gateway that has seen no address proven, on a hand-moved clock."""
    gateway = fresh_gateway()
    gateway.guard.clock = Clock()
    await gateway.start("127.0.0.1", free_udp_port())
    try:
        yield gateway
    finally:
        await gateway.stop()


def clock_of(gateway: Gateway) -> Clock:
    clock = gateway.guard.clock
    assert isinstance(clock, Clock)
    return clock


async def get(
    client: aiocoap.Context,
    gateway: Gateway,
    path: str,
    *,
    echo: bytes | None = None,
    etag: bytes | None = None,
) -> tuple[aiocoap.Message, aiocoap.Message]:
    """A CON GET and its response (not block-wise completed)."""
    message = aiocoap.Message(code=Code.GET, uri=gateway.uri + path)
    message.opt.echo = echo
    if etag is not None:
        message.opt.etags = (etag,)
    response = await client.request(message, handle_blockwise=False).response
    return message, response


# ---------------------------------------------------------------- the challenge


async def test_a_large_answer_to_an_unproven_address_becomes_a_small_challenge(
    fresh: Gateway, client: aiocoap.Context
) -> None:
    request, response = await get(client, fresh, "/cfg/dev-1")

    assert response.code == Code.UNAUTHORIZED
    assert response.opt.echo is not None
    assert response.opt.content_format is None
    assert response.mtype == Type.ACK  # piggybacked, never a retransmitted CON
    sent, answered = wire_size(request, response.token), wire_size(response, response.token)
    assert answered <= allowance(sent)
    assert answered <= 3 * sent  # even without counting lower-layer headers
    assert fresh.guard.challenges == 1
    # and what it would have been: a full block, well past the allowance
    assert len(fresh.fleet.encoded(DeviceId("dev-1")).cbor) > allowance(sent)


async def test_repeating_with_the_echo_gets_the_content_and_the_address_is_remembered(
    fresh: Gateway, client: aiocoap.Context
) -> None:
    _, challenge = await get(client, fresh, "/cfg/dev-1")

    _, proven = await get(client, fresh, "/cfg/dev-1", echo=challenge.opt.echo)
    _, later = await get(client, fresh, "/cfg/dev-2")

    expected = fresh.fleet.encoded(DeviceId("dev-1"))
    assert proven.code == Code.CONTENT
    assert proven.opt.etag == expected.etag
    assert proven.payload == expected.cbor[: len(proven.payload)]
    assert later.code == Code.CONTENT  # no Echo needed any more
    assert fresh.guard.challenges == 1
    assert len(fresh.guard.verified) == 1


async def test_a_forged_echo_is_challenged_again(fresh: Gateway, client: aiocoap.Context) -> None:
    _, challenge = await get(client, fresh, "/cfg/dev-1")
    assert challenge.opt.echo is not None
    forged = bytes([challenge.opt.echo[0] ^ 1]) + challenge.opt.echo[1:]

    _, response = await get(client, fresh, "/cfg/dev-1", echo=forged)

    assert response.code == Code.UNAUTHORIZED
    assert response.opt.echo not in (None, forged)
    assert len(fresh.guard.verified) == 0


async def test_an_echo_for_another_address_is_challenged_again(
    fresh: Gateway, client: aiocoap.Context
) -> None:
    elsewhere = make_echo(fresh.guard.key, bytes([192, 0, 2, 1]), clock_of(fresh).now)

    _, response = await get(client, fresh, "/cfg/dev-1", echo=elsewhere)

    assert response.code == Code.UNAUTHORIZED
    assert len(fresh.guard.verified) == 0


async def prove(
    client: aiocoap.Context, gateway: Gateway
) -> tuple[aiocoap.Message, aiocoap.Message]:
    """The challenge for /cfg/dev-1 and the answer to the repeat with its Echo."""
    _, challenge = await get(client, gateway, "/cfg/dev-1")
    _, proven = await get(client, gateway, "/cfg/dev-1", echo=challenge.opt.echo)
    return challenge, proven


async def test_an_expired_echo_and_an_expired_proof_are_challenged_again(
    fresh: Gateway, client: aiocoap.Context
) -> None:
    clock = clock_of(fresh)
    challenge, proven = await prove(client, fresh)
    assert proven.code == Code.CONTENT

    clock.now += FRESHNESS_S
    _, without = await get(client, fresh, "/cfg/dev-1")
    _, stale = await get(client, fresh, "/cfg/dev-1", echo=challenge.opt.echo)

    assert (without.code, stale.code) == (Code.UNAUTHORIZED, Code.UNAUTHORIZED)
    assert fresh.guard.challenges == 3


async def test_a_proof_past_half_its_life_is_renewed_in_a_successful_answer(
    fresh: Gateway, client: aiocoap.Context
) -> None:
    clock = clock_of(fresh)
    _, proven = await prove(client, fresh)
    assert proven.code == Code.CONTENT
    assert proven.opt.echo is None  # a fresh proof needs no renewal

    clock.now += FRESHNESS_S * 0.6  # a day later: still proven, but past half its life
    _, renewed = await get(client, fresh, "/cfg/dev-1")
    assert renewed.code == Code.CONTENT
    assert renewed.opt.echo is not None
    assert fresh.guard.renewals == 1

    clock.now += FRESHNESS_S * 0.6  # the first proof has expired; the renewal has not
    _, shown = await get(client, fresh, "/cfg/dev-1", echo=renewed.opt.echo)
    assert shown.code == Code.CONTENT
    assert fresh.guard.challenges == 1  # only at first contact


async def test_small_answers_are_never_challenged(fresh: Gateway, client: aiocoap.Context) -> None:
    tag = fresh.fleet.encoded(DeviceId("dev-1")).etag
    _, valid = await get(client, fresh, "/cfg/dev-1", etag=tag)
    _, missing = await get(client, fresh, "/cfg/no-such-device")
    telemetry = aiocoap.Message(
        code=Code.POST,
        uri=f"{fresh.uri}/tel/dev-1?cfg={tag.hex()}",
        payload=encode_senml([Record("battery_v", 3.1, "V", 0.0)]),
    )
    changed = await client.request(telemetry).response

    assert (valid.code, missing.code, changed.code) == (Code.VALID, Code.NOT_FOUND, Code.CHANGED)
    assert fresh.guard.challenges == 0
    assert len(fresh.guard.verified) == 0  # nothing proven either


async def test_discovery_is_behind_the_same_guard(fresh: Gateway, client: aiocoap.Context) -> None:
    _, challenge = await get(client, fresh, "/.well-known/core")
    _, links = await get(client, fresh, "/.well-known/core", echo=challenge.opt.echo)

    assert challenge.code == Code.UNAUTHORIZED
    assert links.code == Code.CONTENT
    assert b'rt="edgecfg.cfg"' in links.payload


async def test_a_disabled_guard_answers_everyone(client: aiocoap.Context) -> None:
    gateway = fresh_gateway(factor=None)
    await gateway.start("127.0.0.1", free_udp_port())
    try:
        _, response = await get(client, gateway, "/cfg/dev-1")
    finally:
        await gateway.stop()

    assert response.code == Code.CONTENT
    assert gateway.guard.challenges == 0


# ---------------------------------------------------------------- the guard itself


class _Udp:
    def __init__(self, host: str, port: int = 5683, scope: int = 0) -> None:
        self.sockaddr = (host, port, 0, scope)


class _Oscore:
    def __init__(self, underlying: _Udp) -> None:
        self.underlying_address = underlying


def test_the_peer_is_the_ip_address_whatever_the_port_or_oscore() -> None:
    assert peer_of(_Udp("127.0.0.1", 1)) == peer_of(_Udp("127.0.0.1", 2)) == LOOPBACK
    assert peer_of(_Udp("::ffff:127.0.0.1")) == LOOPBACK
    assert peer_of(_Oscore(_Udp("127.0.0.1"))) == LOOPBACK
    assert peer_of(_Udp("fe80::1", scope=2)) != peer_of(_Udp("fe80::1", scope=3))
    assert peer_of(object()) is None  # not UDP: not screened


def _large(remote: object, echo: bytes | None = None) -> tuple[aiocoap.Message, aiocoap.Message]:
    request = aiocoap.Message(code=Code.GET, uri="coap://gateway/cfg/dev-1")
    request.remote = remote  # pyright: ignore[reportAttributeAccessIssue]
    request.token = b"\x01\x02"
    request.opt.echo = echo
    return request, aiocoap.Message(code=Code.CONTENT, payload=bytes(1024))


def test_the_list_of_proven_addresses_stays_bounded() -> None:
    clock = Clock()
    guard = AddressGuard(capacity=4, clock=clock)
    hosts = [f"10.0.0.{n}" for n in range(10)]
    for host in hosts:
        challenge = guard.screen(*_large(_Udp(host)))
        assert challenge.code == Code.UNAUTHORIZED
        assert guard.screen(*_large(_Udp(host), challenge.opt.echo)).code == Code.CONTENT

    assert len(guard.verified) == 4
    assert guard.screen(*_large(_Udp(hosts[-1]))).code == Code.CONTENT
    assert guard.screen(*_large(_Udp(hosts[0]))).code == Code.UNAUTHORIZED  # forgotten


def test_a_forgotten_peer_is_proven_again_by_its_kept_echo_without_a_round_trip() -> None:
    guard = AddressGuard(clock=Clock())
    challenge = guard.screen(*_large(_Udp("10.0.0.1")))
    guard.verified = VerifiedPeers()  # evicted, e.g. by 65,536 other devices

    assert guard.screen(*_large(_Udp("10.0.0.1", 40000), challenge.opt.echo)).code == Code.CONTENT


def test_an_observe_registration_is_challenged_however_small_its_first_answer() -> None:
    guard = AddressGuard(clock=Clock())
    request, _ = _large(_Udp("10.0.0.1"))
    request.opt.observe = 0

    small = aiocoap.Message(code=Code.VALID)
    assert guard.screen(request, small).code == Code.UNAUTHORIZED
    request.opt.observe = None
    assert guard.screen(request, aiocoap.Message(code=Code.VALID)).code == Code.VALID


# ---------------------------------------------------------------- the agent


async def test_the_agent_answers_the_challenge_once_then_syncs_without_it(
    fresh: Gateway, tmp_path: Path
) -> None:
    async with CoapLink(fresh.uri, ack_timeout=0.5) as link:
        agent = Agent(link, LocalState(tmp_path), device="dev-1", backoff=FAST)
        first = await agent.sync()
        assert link.traffic.echo_challenges == 1
        again = await agent.sync()

    assert agent.config is not None
    assert agent.state.load_config() is not None
    assert link.traffic.echo_challenges == 1
    assert first.round_trips >= again.round_trips + 1
    assert "4.01" in link.traffic.codes
    assert fresh.guard.challenges == 1


async def test_a_kept_echo_spares_the_round_trip_when_the_gateway_forgot_the_address(
    fresh: Gateway, tmp_path: Path
) -> None:
    async with CoapLink(fresh.uri, ack_timeout=0.5) as link:
        agent = Agent(link, LocalState(tmp_path), device="dev-1", backoff=FAST)
        await agent.sync()
        fresh.guard.verified = VerifiedPeers()  # evicted by other peers
        fresh.fleet.write_layer(
            LayerId("region/eu"),
            layer_from_parts(sets={INTERVAL: 4321}),
            author="t",
            message="",
            now=2,
        )
        link._last_reply = time.monotonic() - agent_coap.ECHO_AFTER_IDLE_S  # pyright: ignore[reportPrivateUsage]
        # a device with nothing stored yet: its first answer is the whole config
        other = Agent(link, LocalState(tmp_path / "other"), device="dev-2", backoff=FAST)
        await other.sync()

    assert link.traffic.echo_challenges == 1  # only the first sync's
    assert fresh.guard.challenges == 1
    config = other.config
    assert config is not None
    assert config["net"]["uplink"]["interval_s"] == 4321  # type: ignore[index]


async def test_an_observation_registers_through_the_challenge(fresh: Gateway) -> None:
    async with CoapLink(fresh.uri, ack_timeout=0.5) as link:
        replies = link.observe(["cfg", "dev-1"])
        first = await anext(replies)
        await replies.aclose()  # pyright: ignore[reportAttributeAccessIssue]

    assert first.code == "2.05"
    assert link.traffic.echo_challenges == 1


# ---------------------------------------------------------------- libcoap


@pytest.fixture
def running_fresh() -> Iterator[Running]:
    server = Running(fresh_gateway(), free_udp_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.skipif(shutil.which(CLIENT) is None, reason=f"{CLIENT} is not installed")
def test_coap_client_answers_the_challenge_and_gets_the_whole_config(
    running_fresh: Running, tmp_path: Path
) -> None:
    expected = running_fresh.call(lambda: running_fresh.gateway.fleet.encoded(DeviceId("dev-1")))

    exchange = coap(running_fresh, tmp_path, "/cfg/dev-1", "-b", "1024")

    codes = [r.code for r in exchange.responses]
    assert codes[0] == "4.01", exchange.log
    assert set(codes[1:]) == {"2.05"}, exchange.log
    challenge = exchange.responses[0].option("Echo")
    assert challenge is not None, exchange.log
    gets = exchange.requests("GET")
    assert gets[0].option("Echo") is None
    assert gets[1].option("Echo") == challenge  # libcoap repeated it with the value
    assert exchange.body == expected.cbor
    assert running_fresh.call(lambda: running_fresh.gateway.guard.challenges) == 1
