"""Hostile input over real CoAP on loopback (issue 7, "Hostile input").

Every case sends real datagrams to a running gateway (aiocoap clients, or a
raw UDP socket where aiocoap cannot produce the malformed message) and checks
three things: the exact answer (a 4.xx with a diagnostic, or nothing where
RFC 7252 says to drop), that a well-behaved peer is still served, and that
nothing stored changed (layers, device records, telemetry, config ETags).
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import AsyncIterator

import aiocoap
import cbor2
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.optiontypes import BlockOption

from edgecfg.bench.hostile import datagram
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import layer_from_parts, layer_to_document
from edgecfg.errors import DeltaError
from edgecfg.gateway.resources import MAX_QUERY_OPTIONS
from edgecfg.gateway.server import Gateway
from edgecfg.gateway.spool import MAX_BODY, MAX_SPOOLS
from edgecfg.wire.cbor import Encoded, encode
from edgecfg.wire.delta import apply_delta_encoded
from edgecfg.wire.numbers import ContentFormat
from edgecfg.wire.senml import Record, encode_senml
from tests.gateway.test_coap import INTERVAL, ask
from tests.wire.test_cbor_vectors import BAD_VECTORS

DEVICES = ("dev-1", "dev-2")
CBOR, SENML = 60, 112

# (method, path, content-format, a well-formed body the resource would accept)
BODY_ENDPOINTS = [
    pytest.param(Code.POST, "/state/dev-1", CBOR, encode({"agent": "6.6.6"}), id="state-post"),
    pytest.param(Code.FETCH, "/cfg/dev-1", CBOR, encode(["net.uplink"]), id="cfg-fetch"),
    pytest.param(
        Code.PUT, "/grp/region/eu",
        CBOR, encode(layer_to_document(layer_from_parts(sets={INTERVAL: 600}))), id="grp-put",
    ),
    pytest.param(
        Code.iPATCH, "/grp/region/eu",
        CBOR, encode(layer_to_document(layer_from_parts(sets={INTERVAL: 600}))), id="grp-ipatch",
    ),
    pytest.param(
        Code.PUT, "/dev/dev-1",
        CBOR, encode(layer_to_document(layer_from_parts(sets={INTERVAL: 600}))), id="dev-put",
    ),
    pytest.param(
        Code.iPATCH, "/dev/dev-1",
        CBOR, encode(layer_to_document(layer_from_parts(sets={INTERVAL: 600}))), id="dev-ipatch",
    ),
    pytest.param(
        Code.POST, "/tel/dev-1", SENML, encode_senml([Record("temp", 21.5, "Cel", 0.0)]),
        id="tel-post",
    ),
]  # fmt: skip

# Malformed CBOR made by hand (present even without ../shared), with the
# reason the diagnostic must name.
CBOR_BOMBS = [
    ("depth bomb", b"\x81" * 100 + b"\x00", b"nesting deeper"),
    ("array size bomb", b"\x9b" + b"\xff" * 8, b"declared"),
    ("map size bomb", b"\xba\xff\xff\xff\xff", b"declared"),
    ("byte string size bomb", b"\x5b" + b"\xff" * 8, b"truncated string"),
    ("text size bomb", b"\x7a\x7f\xff\xff\xff", b"truncated string"),
    ("trailing bytes", encode({"agent": "1"}) + b"\x00", b"trailing bytes"),
    ("duplicate keys", b"\xa2\x61a\x01\x61a\x02", b"duplicate map key"),
    ("indefinite length", b"\xbf\x61a\x01\xff", b"indefinite-length"),
    ("invalid UTF-8", b"\xa1\x61a\x62\xc3\x28", b"invalid UTF-8"),
    ("a tag", b"\xc1\x1a\x51\x4b\x67\xb0", b"tag 1"),
    ("undefined", b"\xf7", b"undefined"),
    ("a stray break", b"\xff", b"break"),
    ("empty body", b"", b"empty input"),
]


@pytest.fixture
async def client() -> AsyncIterator[aiocoap.Context]:
    """The hostile peer."""
    context = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        yield context
    finally:
        await context.shutdown()


@pytest.fixture
async def bystander() -> AsyncIterator[aiocoap.Context]:
    """A well-behaved peer that must keep being served."""
    context = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        yield context
    finally:
        await context.shutdown()


def stored(gateway: Gateway) -> object:
    """Everything a hostile request must not change, read from the store."""
    store = gateway.fleet.store
    return (
        [(layer, [(r.revision, r.content) for r in store.layer_history(layer)])
         for layer in sorted(store.layer_ids())],
        store.count_devices(),
        [store.get_device(DeviceId(device)) for device in DEVICES],
        [store.telemetry(DeviceId(device)) for device in DEVICES],
        [gateway.fleet.etag(DeviceId(device)) for device in DEVICES],
    )  # fmt: skip


async def proven(
    client: aiocoap.Context, gateway: Gateway, code: Code, path: str, *, blockwise: bool = False
) -> aiocoap.Message:
    """``ask``, repeating the request with the Echo value when the gateway wants
    the peer's address proven first (RFC 9175 §2.4; the amplification rule)."""
    reply = await ask(client, gateway, code, path, blockwise=blockwise)
    if reply.code == Code.UNAUTHORIZED and reply.opt.echo is not None:
        reply = await ask(client, gateway, code, path, blockwise=blockwise, echo=reply.opt.echo)
    return reply


async def still_serving(gateway: Gateway, bystander: aiocoap.Context) -> None:
    reply = await proven(bystander, gateway, Code.GET, "/cfg/dev-2", blockwise=True)
    assert reply.code == Code.CONTENT
    assert Encoded.from_bytes(reply.payload).etag == gateway.fleet.etag(DeviceId("dev-2"))


def pack(*records: dict[object, object]) -> bytes:
    return cbor2.dumps(list(records))


# -- malformed CBOR -------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "format_", "good"), BODY_ENDPOINTS)
async def test_malformed_cbor_is_4_00_naming_the_fault_on_every_body_resource(
    *,
    gateway: Gateway,
    client: aiocoap.Context,
    bystander: aiocoap.Context,
    method: Code,
    path: str,
    format_: int,
    good: bytes,
) -> None:
    del good
    before = stored(gateway)
    wrong: list[str] = []
    for name, body, reason in CBOR_BOMBS:
        reply = await ask(client, gateway, method, path, payload=body, content_format=format_)
        if reply.code != Code.BAD_REQUEST or reason not in reply.payload:
            wrong.append(f"{name}: {reply.code} {reply.payload[:80]!r}")
    for vector in BAD_VECTORS:  # cbor-wg rfc8949/bad.cbor (skipped without ../shared)
        reply = await ask(
            client, gateway, method, path, payload=vector.encoded, content_format=format_
        )
        if reply.code != Code.BAD_REQUEST or not reply.payload:
            wrong.append(f"bad vector {vector.index} {vector.encoded.hex()}: {reply.code}")
    assert wrong == []
    assert stored(gateway) == before
    await still_serving(gateway, bystander)


# -- a datagram aiocoap cannot decode ---------------------------------------------------


coap = datagram  # the load driver's builder: RFC 7252 §3, options in the given order


URI_HOST, URI_PATH, URI_QUERY = 3, 11, 15
CON, NON = 0, 1


class RawPeer:
    """A UDP socket speaking hand-built CoAP to the gateway."""

    def __init__(self, gateway: Gateway, host: str = "127.0.0.1") -> None:
        assert gateway.address is not None
        self.address = gateway.address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind((host, 0))

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendto(self.sock, data, self.address)

    async def answer(self, timeout: float = 5.0) -> aiocoap.Message | None:
        """The next datagram, decoded; None when nothing came within ``timeout``."""
        loop = asyncio.get_running_loop()
        try:
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 65536), timeout)
        except TimeoutError:
            return None
        return aiocoap.Message.decode(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
async def raw(gateway: Gateway) -> AsyncIterator[RawPeer]:
    peer = RawPeer(gateway)
    try:
        yield peer
    finally:
        peer.close()


ETAG = 4


async def raw_peer_is_served(raw: RawPeer, gateway: Gateway) -> None:
    """The same raw peer, asking properly, still gets its answer (2.03: a
    small one, which needs no proven address)."""
    tag = gateway.fleet.etag(DeviceId("dev-2"))
    await raw.send(coap(CON, Code.GET, 0x7777, b"ok", [(ETAG, tag), (URI_PATH, b"cfg"),
                                                       (URI_PATH, b"dev-2")]))  # fmt: skip
    reply = await raw.answer()
    assert reply is not None
    assert (reply.mtype, reply.code, reply.mid, reply.token) == (
        Type.ACK,
        Code.VALID,
        0x7777,
        b"ok",
    )
    assert reply.opt.etag == tag


@pytest.mark.parametrize(
    "options",
    [
        pytest.param([(URI_PATH, b"cfg"), (URI_PATH, b"dev-\xff\xfe")], id="uri-path"),
        pytest.param([(URI_HOST, b"\xc3\x28"), (URI_PATH, b"cfg")], id="uri-host"),
        pytest.param([(URI_PATH, b"cfg"), (URI_PATH, b"dev-1"), (URI_QUERY, b"from=\x80")],
                     id="uri-query"),
    ],
)  # fmt: skip
async def test_a_con_request_with_an_option_that_is_not_utf8_gets_4_02(
    gateway: Gateway,
    raw: RawPeer,
    bystander: aiocoap.Context,
    options: list[tuple[int, bytes]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # RFC 7252 §5.4.3: an option value outside its format is treated like an
    # unrecognized option; §5.4.1: critical in a CON request -> 4.02 Bad Option.
    before = stored(gateway)
    await raw.send(coap(CON, Code.GET, 0x1234, b"\x01\x02", options))
    reply = await raw.answer()
    assert reply is not None
    assert (reply.mtype, reply.code, reply.mid, reply.token) == (
        Type.ACK, Code.BAD_OPTION, 0x1234, b"\x01\x02",
    )  # fmt: skip
    assert b"UTF-8" in reply.payload
    await raw_peer_is_served(raw, gateway)
    await still_serving(gateway, bystander)
    assert stored(gateway) == before
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_a_non_request_with_a_bad_option_is_dropped(
    gateway: Gateway, raw: RawPeer, bystander: aiocoap.Context, caplog: pytest.LogCaptureFixture
) -> None:
    # RFC 7252 §5.4.1 / §4.3: a NON with a bad critical option is rejected,
    # which may be silent; nothing is answered
    bad = [(URI_PATH, b"cfg"), (URI_PATH, b"\xff")]
    await raw.send(coap(NON, Code.GET, 0x2222, b"\x05", bad))
    await raw_peer_is_served(raw, gateway)  # the first datagram back answers this one
    await still_serving(gateway, bystander)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_a_con_response_with_a_bad_option_gets_a_reset(
    gateway: Gateway, raw: RawPeer
) -> None:
    # RFC 7252 §4.2: rejecting a Confirmable message is a matching Reset
    await raw.send(coap(CON, Code.CONTENT, 0x3333, b"\x09", [(8, b"\xfe")]))
    reply = await raw.answer()
    assert reply is not None
    assert (reply.mtype, reply.code, reply.mid, reply.token) == (Type.RST, Code.EMPTY, 0x3333, b"")
    await raw_peer_is_served(raw, gateway)


@pytest.mark.parametrize(
    "datagram",
    [b"", b"\x40", b"\x40\x01\x00", b"\x80\x01\x00\x01", b"\x41\x01\x00\x01",
     b"\x49\x01\x00\x01" + b"t" * 9, b"\x40\x01\x00\x01\xde"],
    ids=["empty", "one-byte", "short-header", "version-2", "token-missing", "token-9-bytes",
         "option-truncated"],
)  # fmt: skip
async def test_an_unparsable_datagram_is_dropped(
    gateway: Gateway, raw: RawPeer, bystander: aiocoap.Context, datagram: bytes
) -> None:
    # RFC 7252 §4.2/§4.3: a message format error cannot be matched reliably; ignore it
    await raw.send(datagram)
    await raw_peer_is_served(raw, gateway)
    await still_serving(gateway, bystander)


async def test_a_datagram_larger_than_the_receive_buffer_is_4_13(
    gateway: Gateway, raw: RawPeer, bystander: aiocoap.Context
) -> None:
    # aiocoap reads 4096 bytes per datagram and would parse the truncated rest
    before = stored(gateway)
    body = encode({"agent": "x" * 6000})
    options = [(URI_PATH, b"state"), (URI_PATH, b"dev-1")]
    await raw.send(coap(CON, Code.POST, 0x4444, b"\x0a", options, payload=body))
    reply = await raw.answer()
    assert reply is not None
    assert (reply.mtype, reply.code, reply.mid) == (Type.ACK, Code.REQUEST_ENTITY_TOO_LARGE, 0x4444)
    assert reply.opt.size1 == MAX_BODY  # RFC 7959 §2.9.3, and Block1 shows the way
    assert reply.opt.block1 is not None
    assert stored(gateway) == before
    await raw_peer_is_served(raw, gateway)
    await still_serving(gateway, bystander)


# -- Block1 -----------------------------------------------------------------------------


async def block1(
    client: aiocoap.Context, gateway: Gateway, path: str, block: tuple[int, bool], payload: bytes,
    *, szx: int = 2, size1: int | None = None, code: Code = Code.POST, content_format: int = CBOR,
) -> aiocoap.Message:  # fmt: skip
    message = aiocoap.Message(code=code, uri=gateway.uri + path, payload=payload)
    message.opt.block1 = BlockOption.BlockwiseTuple(*block, szx)
    message.opt.content_format = content_format
    if size1 is not None:
        message.opt.size1 = size1
    return await client.request(message, handle_blockwise=False).response


async def test_a_block1_gap_mid_transfer_is_4_08_and_nothing_is_kept(
    gateway: Gateway, client: aiocoap.Context, bystander: aiocoap.Context
) -> None:
    body = encode({"agent": "7.7.7", "applied": b"\0" * 8, "comment": "padding " * 25})
    before = stored(gateway)
    first = await block1(client, gateway, "/state/dev-1", (0, True), body[:64])
    assert first.code == Code.CONTINUE
    gap = await block1(client, gateway, "/state/dev-1", (2, True), body[128:192])
    assert gap.code == Code.REQUEST_ENTITY_INCOMPLETE
    assert b"expected block at byte 64" in gap.payload
    late = await block1(client, gateway, "/state/dev-1", (1, True), body[64:128])
    assert late.code == Code.REQUEST_ENTITY_INCOMPLETE  # the transfer was dropped
    final = await block1(client, gateway, "/state/dev-1", (3, False), body[192:])
    assert final.code == Code.REQUEST_ENTITY_INCOMPLETE  # an incomplete body never runs
    assert stored(gateway) == before
    await still_serving(gateway, bystander)
    # starting again from block 0 completes normally
    reply = gap
    for number in range(0, len(body), 64):
        more = number + 64 < len(body)
        reply = await block1(client, gateway, "/state/dev-1", (number // 64, more),
                             body[number : number + 64])  # fmt: skip
    assert reply.code == Code.CHANGED
    assert gateway.fleet.store.get_device(DeviceId("dev-1")).agent_version == "7.7.7"


async def test_a_block1_size1_beyond_the_bound_is_4_13_at_once(
    gateway: Gateway, client: aiocoap.Context, bystander: aiocoap.Context
) -> None:
    # RFC 7959 §4: Size1 in a request announces the body size; refuse before spooling
    before = stored(gateway)
    reply = await block1(client, gateway, "/state/dev-1", (0, True), b"\xa0" * 64, size1=10**7)
    assert reply.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert reply.opt.size1 == MAX_BODY
    assert stored(gateway) == before
    await still_serving(gateway, bystander)


@pytest.mark.parametrize(("method", "path", "format_", "good"), BODY_ENDPOINTS)
async def test_an_oversize_block1_body_is_4_13_with_size1_on_every_body_resource(
    *,
    gateway: Gateway,
    client: aiocoap.Context,
    bystander: aiocoap.Context,
    method: Code,
    path: str,
    format_: int,
    good: bytes,
) -> None:
    del good
    before = stored(gateway)
    reply: aiocoap.Message | None = None
    for number in range(MAX_BODY // 1024 + 2):
        reply = await block1(client, gateway, path, (number, True), b"\x00" * 1024, szx=6,
                             code=method, content_format=format_)  # fmt: skip
        if reply.code != Code.CONTINUE:
            break
    assert reply is not None
    assert reply.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert reply.opt.size1 == MAX_BODY
    assert stored(gateway) == before
    await still_serving(gateway, bystander)


async def test_a_block1_flood_keeps_a_bounded_spool_and_evicts_nobody(
    gateway: Gateway, client: aiocoap.Context, bystander: aiocoap.Context
) -> None:
    # issue 20: another peer's block-0s used to evict a victim's upload (4.08)
    before = stored(gateway)
    body = encode(layer_to_document(layer_from_parts(sets={INTERVAL: 600})))
    assert len(body) > 16
    first = await block1(client, gateway, "/grp/region/eu", (0, True), body[:16], szx=0,
                         code=Code.PUT)  # fmt: skip
    assert first.code == Code.CONTINUE
    attacker = RawPeer(gateway, host="127.0.0.2")  # another host
    try:
        codes: dict[Code | None, int] = {}
        for i in range(MAX_SPOOLS + 44):  # one at a time: a burst would overflow the socket
            options = [(URI_PATH, b"state"), (URI_PATH, f"ghost-{i}".encode()), (12, b"\x3c"),
                       (27, b"\x0a")]  # fmt: skip
            await attacker.send(coap(CON, Code.POST, i, b"\x07", options, payload=b"\xa0" * 64))
            reply = await attacker.answer()
            assert reply is not None, codes
            codes[reply.code] = codes.get(reply.code, 0) + 1
            if reply.code == Code.TOO_MANY_REQUESTS:
                assert reply.opt.max_age is not None and reply.opt.max_age > 0
    finally:
        attacker.close()
    assert set(codes) <= {Code.CONTINUE, Code.TOO_MANY_REQUESTS}, codes
    budgets = gateway.admission.budgets
    assert codes.get(Code.CONTINUE, 0) * MAX_BODY <= budgets.peer_spool_kib * 1024
    assert gateway.gate.spool.of(b"\x7f\x00\x00\x02") <= budgets.peer_spool_kib * 1024
    assert gateway.gate.spool.reserved <= budgets.spool_mib * 2**20
    assert stored(gateway) == before
    await still_serving(gateway, bystander)
    # the victim's upload goes on where it was
    reply = first
    for start in range(16, len(body), 16):
        more = start + 16 < len(body)
        reply = await block1(client, gateway, "/grp/region/eu", (start // 16, more),
                             body[start : start + 16], szx=0, code=Code.PUT)  # fmt: skip
    assert reply.code == Code.CHANGED
    assert reply.opt.block1 is not None and not reply.opt.block1.more  # RFC 7959 §2.3


# -- content formats and queries --------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "format_", "good"), BODY_ENDPOINTS)
@pytest.mark.parametrize("wrong", [0, 50, ContentFormat.DELTA, 9999])
async def test_an_unknown_content_format_is_4_15_on_every_body_resource(
    *,
    gateway: Gateway,
    client: aiocoap.Context,
    bystander: aiocoap.Context,
    method: Code,
    path: str,
    format_: int,
    good: bytes,
    wrong: int,
) -> None:
    before = stored(gateway)
    reply = await ask(client, gateway, method, path, payload=good, content_format=wrong)
    assert reply.code == Code.UNSUPPORTED_CONTENT_FORMAT
    assert str(format_).encode() in reply.payload  # names what it takes
    assert stored(gateway) == before
    await still_serving(gateway, bystander)
    fine = await ask(client, gateway, method, path, payload=good, content_format=format_)
    assert (
        fine.code is not None and fine.code.is_successful()
    )  # the same body in the right format is taken


@pytest.mark.parametrize(
    ("method", "path", "format_", "good"),
    [*BODY_ENDPOINTS, pytest.param(Code.GET, "/cfg/dev-1", None, b"", id="cfg-get"),
     pytest.param(Code.GET, "/grp/global", None, b"", id="grp-get"),
     pytest.param(Code.GET, "/dev/dev-1", None, b"", id="dev-get")],
)  # fmt: skip
@pytest.mark.parametrize(
    "query",
    [
        pytest.param(tuple(f"k{i}=v" for i in range(MAX_QUERY_OPTIONS + 1)), id="many"),
        pytest.param(tuple(f"{c}=" + "x" * 250 for c in "ab"), id="long"),
        pytest.param(("x" * 250 + "=1",), id="one-long-key"),
    ],
)
async def test_a_huge_query_is_4_00(
    *,
    gateway: Gateway,
    client: aiocoap.Context,
    bystander: aiocoap.Context,
    method: Code,
    path: str,
    format_: int | None,
    good: bytes,
    query: tuple[str, ...],
) -> None:
    before = stored(gateway)
    reply = await ask(
        client, gateway, method, path, payload=good, uri_query=query, content_format=format_
    )
    assert reply.code == Code.BAD_REQUEST
    assert b"query" in reply.payload
    assert stored(gateway) == before
    await still_serving(gateway, bystander)


# -- deltas against a wrong base ----------------------------------------------------------


async def test_a_wrong_base_never_yields_a_delta_that_applies(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    one, two = DeviceId("dev-1"), DeviceId("dev-2")
    gateway.fleet.write_layer(LayerId("device/dev-2"), layer_from_parts(sets={INTERVAL: 77}),
                              author="t", message="", now=2)  # fmt: skip
    held = gateway.fleet.encoded(one)
    other = gateway.fleet.encoded(two)
    await proven(client, gateway, Code.GET, "/cfg/dev-2", blockwise=True)  # the gateway knows it
    gateway.fleet.write_layer(LayerId("device/dev-1"), layer_from_parts(sets={INTERVAL: 901}),
                              author="t", message="", now=3)  # fmt: skip
    current = gateway.fleet.etag(one)
    # an unknown base: the full config, never a delta
    unknown = await proven(client, gateway, Code.GET, "/cfg/dev-1?from=0102030405060708",
                        blockwise=True)  # fmt: skip
    assert (unknown.code, unknown.opt.content_format, unknown.opt.etag) == (
        Code.CONTENT, CBOR, current,
    )  # fmt: skip
    assert Encoded.from_bytes(unknown.payload).etag == current
    # another device's version as the base: a delta bound to that base, which
    # the version the device really holds refuses
    crossed = await proven(client, gateway, Code.GET, f"/cfg/dev-1?from={other.etag.hex()}",
                        blockwise=True)  # fmt: skip
    assert crossed.opt.content_format == ContentFormat.DELTA
    assert apply_delta_encoded(other, crossed.payload).etag == current
    with pytest.raises(DeltaError):
        apply_delta_encoded(held, crossed.payload)
    # a short or malformed base is refused outright
    for text, reason in (("zz", b"not hexadecimal"), ("", b"1 to 8 bytes"), ("00" * 9, b"1 to 8"),
                         ("ab" * 125, b"1 to 8")):  # fmt: skip
        bad = await ask(client, gateway, Code.GET, f"/cfg/dev-1?from={text}")
        assert bad.code == Code.BAD_REQUEST
        assert reason in bad.payload
    stale = await ask(client, gateway, Code.POST, "/tel/dev-1?cfg=zz",
                      payload=encode_senml([Record("t", 1.0)]), content_format=SENML)  # fmt: skip
    assert stale.code == Code.BAD_REQUEST
    assert gateway.fleet.store.telemetry(one) == []


# -- SenML ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(pack({0: "t", 2: math.nan}), b"record 0: value must be a finite", id="nan"),
        pytest.param(pack({0: "t", 2: math.inf}), b"record 0: value must be a finite", id="inf"),
        pytest.param(pack({0: "t", 2: 1.0}, {0: "u", 2: -math.inf}), b"record 1", id="-inf"),
        pytest.param(pack({-5: 1e308, 0: "t", 2: 1e308}), b"record 0: value", id="overflow"),
        pytest.param(pack({-3: 1e308, 0: "t", 2: 1, 6: 1e308}), b"record 0: time", id="time-sum"),
        pytest.param(pack({0: "t", 2: 1, 6: -1e12}), b"record 0: time", id="negative-time"),
        pytest.param(pack({0: "t", 2: 1, 6: 1e300}), b"record 0: time", id="future-time"),
        pytest.param(pack({0: "t", 2: 1, 7: -5}), b"record 0: update time", id="negative-ut"),
        pytest.param(pack({0: "t" * 300, 2: 1}), b"record 0: name", id="huge-name"),
        pytest.param(pack({0: "t", 3: "x" * 2000}), b"record 0: string value", id="huge-string"),
        pytest.param(pack({0: "t", 8: b"x" * 2000}), b"record 0: data value", id="huge-data"),
        pytest.param(pack({0: "t", 2: 1, 1: "u" * 300}), b"record 0: unit", id="huge-unit"),
        pytest.param(pack({0: "t"}), b"record 0 has no value", id="missing-v"),
        pytest.param(pack({0: "t", 2: None}), b"record 0: value", id="null-v"),
        pytest.param(pack({0: "t", 2: True}), b"record 0: value", id="bool-v"),
        pytest.param(pack({0: "t", 2: "12"}), b"record 0: value", id="text-v"),
        pytest.param(pack({2: 1.0}), b"record 0 has no name", id="missing-name"),
        pytest.param(pack({-2: "dev/"}), b"no measurement", id="only-base-fields"),
        pytest.param(pack({-1: 99, 0: "t", 2: 1}), b"record 0: base version", id="bver-99"),
        pytest.param(pack({-1: "10", 0: "t", 2: 1}), b"record 0: base version", id="bver-text"),
        pytest.param(pack({-6: "x", 0: "t", 5: 1}), b"record 0: base sum", id="bs-text"),
        pytest.param(pack({0: "t", 2: 1, 2.5: 1}), b"map key", id="float-label"),
        pytest.param(pack({0: "t", 2: 1, 99: 1}), b"record 0: unknown labels", id="unknown-label"),
        pytest.param(cbor2.dumps([]), b"non-empty", id="empty-pack"),
        pytest.param(cbor2.dumps({0: "t"}), b"array", id="not-an-array"),
        pytest.param(cbor2.dumps([1]), b"record 0 is not a map", id="not-a-map"),
    ],
)
async def test_absurd_or_missing_senml_values_are_4_00_naming_the_record(
    gateway: Gateway,
    client: aiocoap.Context,
    bystander: aiocoap.Context,
    body: bytes,
    reason: bytes,
) -> None:
    before = stored(gateway)
    reply = await ask(client, gateway, Code.POST, "/tel/dev-1", payload=body,
                      content_format=SENML)  # fmt: skip
    assert reply.code == Code.BAD_REQUEST
    assert reason in reply.payload
    assert stored(gateway) == before
    await still_serving(gateway, bystander)


async def test_sensible_senml_edge_values_are_stored(
    gateway: Gateway, client: aiocoap.Context
) -> None:
    # RFC 8428 §4.5.3: a negative time is seconds before now; 1e308 is a double
    body = pack({-2: "dev-1/", -3: 1.7e9, 0: "t", 2: 1e308, 6: -60}, {0: "s", 5: 3, -6: 1})
    reply = await ask(client, gateway, Code.POST, "/tel/dev-1", payload=body, content_format=SENML)
    assert reply.code == Code.CHANGED
    assert [blob for _, blob in gateway.fleet.store.telemetry(DeviceId("dev-1"))] == [body]


# -- unknown devices and reports ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "format_", "body"),
    [
        pytest.param(Code.POST, "/state/ghost", CBOR, encode({"agent": "1"}), id="state"),
        pytest.param(Code.POST, "/tel/ghost", SENML, encode_senml([Record("t", 1.0)]), id="tel"),
        pytest.param(Code.GET, "/cfg/ghost", None, b"", id="cfg-get"),
        pytest.param(Code.FETCH, "/cfg/ghost", CBOR, encode(["net"]), id="cfg-fetch"),
        pytest.param(Code.GET, "/cfg/ghost/net", None, b"", id="cfg-subtree"),
        pytest.param(Code.GET, "/dev/ghost", None, b"", id="dev-get"),
    ],
)
async def test_requests_for_an_unknown_device_are_4_04_naming_it(
    *,
    gateway: Gateway,
    client: aiocoap.Context,
    bystander: aiocoap.Context,
    method: Code,
    path: str,
    format_: int | None,
    body: bytes,
) -> None:
    before = stored(gateway)
    reply = await ask(client, gateway, method, path, payload=body, content_format=format_)
    assert reply.code == Code.NOT_FOUND
    assert b"ghost" in reply.payload
    assert stored(gateway) == before
    assert not gateway.fleet.store.has_device(DeviceId("ghost"))
    await still_serving(gateway, bystander)


@pytest.mark.parametrize(
    ("report", "reason"),
    [
        pytest.param({"agent": "9.9.9", "journal": "nope"}, b"'journal' must be a list",
                     id="journal-not-a-list"),
        pytest.param({"agent": "9.9.9", "journal": [[1, "net", "x"]]}, b"journal",
                     id="journal-bad-entry"),
        pytest.param({"agent": "9.9.9", "schema": 99}, b"no version 99", id="unknown-schema"),
        pytest.param({"agent": "9.9.9", "applied": b"\x00" * 7}, b"8-byte ETag",
                     id="short-applied"),
        pytest.param({"agent": 9, "applied": b"\x00" * 8}, b"'agent' must be text",
                     id="agent-not-text"),
        pytest.param(["agent", "9.9.9"], b"CBOR map", id="not-a-map"),
    ],
)  # fmt: skip
async def test_a_refused_state_report_records_nothing(
    gateway: Gateway,
    client: aiocoap.Context,
    bystander: aiocoap.Context,
    report: object,
    reason: bytes,
) -> None:
    before = stored(gateway)
    body = cbor2.dumps(report)
    reply = await ask(client, gateway, Code.POST, "/state/dev-1", payload=body, content_format=CBOR)
    assert reply.code == Code.BAD_REQUEST
    assert reason in reply.payload
    assert stored(gateway) == before  # not even last_seen, agent or applied
    await still_serving(gateway, bystander)
