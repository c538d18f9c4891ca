"""OSCORE end to end: real aiocoap clients with enrolled credentials, a real
gateway on loopback UDP, its contexts in a SQLite store.

Covers authorization on every resource (own, another device's, no identity,
operator), revocation, replayed datagrams, sequence numbers that survive a
crash, and the Echo recovery of the replay window after one (RFC 8613
Appendix B.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiocoap
import pytest
from aiocoap import oscore
from aiocoap.message import Direction
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.optiontypes import OpaqueOption

from edgecfg.agent.coap import CoapLink, LinkDown, Reply
from edgecfg.core.admission import Budgets
from edgecfg.core.ids import DeviceId, LayerId
from edgecfg.core.layers import layer_from_document
from edgecfg.crypto import RecordCipher
from edgecfg.errors import StoreConflict, StoreError
from edgecfg.fleet.credentials import (
    CredentialError,
    Enrolment,
    enroll,
    seal,
    unseal,
    write_peer_side,
)
from edgecfg.gateway.oscore import MemoryContext, StoredContext, StoredCredentials
from edgecfg.gateway.server import Gateway
from edgecfg.store import CredentialRecord, MemoryStore, OscoreState, SQLiteStore
from edgecfg.wire.cbor import encode
from edgecfg.wire.numbers import ContentFormat
from edgecfg.wire.senml import Record, encode_senml
from tests.gateway.helpers import free_udp_port, sensor
from tests.paths import SCHEMA

KEY = bytes(range(32))


@dataclass
class Secured:
    gateway: Gateway
    db: Path
    dirs: Path
    enrolments: dict[str, Enrolment] = field(default_factory=dict[str, Enrolment])
    links: list[CoapLink] = field(default_factory=list[CoapLink])

    @property
    def uri(self) -> str:
        return self.gateway.uri

    def link(self, who: str | None) -> CoapLink:
        credentials = None if who is None else self.dirs / who / "credentials.json"
        link = CoapLink(self.uri, ack_timeout=0.5, credentials=credentials)
        self.links.append(link)
        return link


async def _start(db: Path, port: int) -> Gateway:
    store = SQLiteStore(db)
    gateway = Gateway(store, credentials=StoredCredentials(store, RecordCipher(KEY)), refresh_s=0)
    await gateway.start("127.0.0.1", port)
    return gateway


async def _stop(gateway: Gateway, *, crash: bool = False) -> None:
    if crash:
        assert gateway.credentials is not None
        gateway.credentials.flush = lambda: None  # a kill -9 saves nothing
    await gateway.stop()
    gateway.fleet.store.close()


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Secured]:
    db = tmp_path / "gateway.db"
    with SQLiteStore(db) as store:
        gateway = Gateway(store, credentials=StoredCredentials(store, RecordCipher(KEY)))
        gateway.fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
        for device in ("dev-1", "dev-2"):
            gateway.fleet.add_device(sensor(device))
        enrolments: dict[str, Enrolment] = {}
        for role, name in (("device", "dev-1"), ("device", "dev-2"), ("operator", "alice")):
            enrolments[name] = enroll(store, RecordCipher(KEY), role, name, now=1.0)
            write_peer_side(enrolments[name], tmp_path / name, gateway=None)
    secured = Secured(await _start(db, free_udp_port()), db, tmp_path, enrolments)
    try:
        yield secured
    finally:
        for link in secured.links:
            await link.close()
        if secured.gateway.context is not None:
            await _stop(secured.gateway)


async def call(
    link: CoapLink, method: str, path: str, payload: bytes = b"", content_format: int | None = None
) -> Reply:
    return await link.request(
        method,  # pyright: ignore[reportArgumentType]
        tuple(path.strip("/").split("/")),
        payload=payload,
        content_format=content_format,
    )


REPORT = encode({"agent": "1.0.0"})
SENML = encode_senml([Record("battery", 3.1, "V", 0.0)])
LAYER = encode({"set": {"net.uplink.interval_s": 600}})

Case = tuple[str, str, bytes, int | None, str | None]
# (method, path, payload, content-format) for every resource, with the owner
# device the path belongs to (None: an operator resource).
CASES: list[Case] = [
    ("GET", "cfg/dev-1", b"", None, "dev-1"),
    ("FETCH", "cfg/dev-1", encode(["net.uplink"]), 60, "dev-1"),
    ("POST", "state/dev-1", REPORT, 60, "dev-1"),
    ("POST", "tel/dev-1", SENML, ContentFormat.SENML_CBOR, "dev-1"),
    ("GET", "grp/region/eu", b"", None, None),
    ("PUT", "grp/region/eu", LAYER, 60, None),
    ("iPATCH", "grp/region/eu", LAYER, 60, None),
    ("GET", "dev/dev-1", b"", None, None),
    ("PUT", "dev/dev-1", LAYER, 60, None),
    ("iPATCH", "dev/dev-1", LAYER, 60, None),
]
IDS = [f"{method} /{path}" for method, path, *_ in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_without_an_identity_every_resource_is_4_01(secured: Secured, case: Case) -> None:
    method, path, payload, fmt, _ = case
    reply = await call(secured.link(None), method, path, payload, fmt)
    assert reply.code == "4.01"
    assert b"authentication required" in reply.payload


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_another_device_is_4_03(secured: Secured, case: Case) -> None:
    method, path, payload, fmt, owner = case
    store = secured.gateway.fleet.store
    before = [store.layer_history(LayerId(layer)) for layer in ("region/eu", "device/dev-1")]
    reply = await call(secured.link("dev-2"), method, path, payload, fmt)
    assert reply.code == "4.03", reply.payload
    expected = b"may not act for device dev-1" if owner else b"is not an operator"
    assert expected in reply.payload
    after = [store.layer_history(LayerId(layer)) for layer in ("region/eu", "device/dev-1")]
    assert after == before  # nothing written


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_the_owner_or_an_operator_gets_through(secured: Secured, case: Case) -> None:
    method, path, payload, fmt, owner = case
    who = owner or "alice"
    reply = await call(secured.link(who), method, path, payload, fmt)
    assert reply.code.startswith("2."), (reply.code, reply.payload)
    if owner is None:
        # ... and a device never gets an operator resource, even its own layer.
        denied = await call(secured.link("dev-1"), method, path, payload, fmt)
        assert denied.code == "4.03"


async def test_an_operator_may_read_any_device_config(secured: Secured) -> None:
    reply = await call(secured.link("alice"), "GET", "cfg/dev-2")
    assert reply.code == "2.05"
    assert reply.etag == secured.gateway.fleet.etag(DeviceId("dev-2"))


async def test_discovery_needs_no_identity(secured: Secured) -> None:
    reply = await call(secured.link(None), "GET", ".well-known/core")
    assert reply.code == "2.05"
    assert b"</cfg>" in reply.payload


async def test_a_revoked_device_is_refused_at_once(secured: Secured) -> None:
    link = secured.link("dev-2")
    assert (await call(link, "GET", "cfg/dev-2")).code == "2.05"
    secured.gateway.fleet.store.revoke("device", "dev-2", now=2.0)
    assert secured.gateway.credentials is not None
    assert secured.gateway.revocations() == 1
    refused = await call(link, "GET", "cfg/dev-2")
    assert refused.code == "4.01"
    assert b"Security context not found" in refused.payload
    # The other devices carry on.
    assert (await call(secured.link("dev-1"), "GET", "cfg/dev-1")).code == "2.05"


# -- raw datagrams: replays --------------------------------------------------


class DeviceSide(MemoryContext):
    """The device's context built from its enrolment (aiocoap's key schedule)."""

    def __init__(self, enrolment: Enrolment, sequence: int) -> None:
        super().__init__(enrolment.record.kid, b"", enrolment.secret, sequence=sequence)

    def datagram(self, path: str, mid: int, echo: bytes | None = None) -> bytes:
        plain = aiocoap.Message(code=Code.GET)
        plain.mtype, plain.mid, plain.token = Type.CON, mid, b"\x01\x02"
        plain.opt.uri_path = tuple(path.split("/"))
        if echo is not None:
            plain.opt.echo = echo
        plain.direction = Direction.OUTGOING
        protected, self.request_id = self.protect(plain)
        protected.mtype, protected.mid, protected.token = plain.mtype, mid, plain.token
        return protected.encode()

    def open(self, data: bytes) -> aiocoap.Message:
        response = aiocoap.Message.decode(data)
        response.direction = Direction.INCOMING
        plain, _ = self.unprotect(response, self.request_id)
        return plain

    async def get(
        self, uri: str, path: str, mid: int, echo: bytes | None = None
    ) -> aiocoap.Message:
        """GET over this device's own socket, answering Echo challenges
        (the gateway's address check) like any client."""
        for attempt in range(3):
            answer = self.open(await exchange(uri, self.datagram(path, mid + attempt, echo), self))
            if answer.code != Code.UNAUTHORIZED or answer.opt.echo is None:
                return answer
            echo = answer.opt.echo
        raise AssertionError("still challenged after three Echo rounds")


_SOCKETS: dict[int, socket.socket] = {}


async def exchange(uri: str, data: bytes, sender: object | None = None) -> bytes:
    """Send one datagram and return the answer; one socket (address) per ``sender``."""
    host, port = uri.removeprefix("coap://").rsplit(":", 1)
    loop = asyncio.get_running_loop()
    key = id(sender) if sender is not None else -1
    sock = _SOCKETS.get(key)
    if sock is None or sender is None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        if sender is not None:
            _SOCKETS[key] = sock
    try:
        await loop.sock_sendto(sock, data, (host, int(port)))
        answer, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 4096), timeout=5)
        return answer
    finally:
        if sender is None:
            sock.close()


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    for sock in _SOCKETS.values():
        sock.close()
    _SOCKETS.clear()


async def plain(uri: str, data: bytes) -> aiocoap.Message:
    """The answer to ``data``, decoded but not unprotected."""
    return aiocoap.Message.decode(await exchange(uri, data))


async def test_a_replayed_request_is_refused(secured: Secured) -> None:
    device = DeviceSide(secured.enrolments["dev-1"], sequence=1000)
    assert (await device.get(secured.uri, "cfg/dev-1", mid=1)).code == Code.CONTENT
    datagram = device.datagram("cfg/dev-1", mid=5)
    assert device.open(await exchange(secured.uri, datagram, device)).code == Code.CONTENT
    # The same protected request with a new message id (no CoAP deduplication):
    replayed = bytearray(datagram)
    replayed[2:4] = (2).to_bytes(2, "big")
    answer = await plain(secured.uri, bytes(replayed))
    assert answer.code == Code.UNAUTHORIZED
    assert answer.payload == b"Replay detected"
    assert answer.opt.oscore is None  # plain: the replay learns nothing
    # A fresh request from the device still works.
    assert (await device.get(secured.uri, "cfg/dev-1", mid=7)).code == Code.CONTENT


async def test_a_request_under_an_unknown_key_id_is_4_01(secured: Secured) -> None:
    stranger = DeviceSide(secured.enrolments["dev-1"], sequence=5)
    stranger.sender_id = b"\x7f\x7f"
    answer = await plain(secured.uri, stranger.datagram("cfg/dev-1", mid=9))
    assert answer.code == Code.UNAUTHORIZED
    assert answer.payload == b"Security context not found"


async def test_a_forged_request_is_refused(secured: Secured) -> None:
    device = DeviceSide(secured.enrolments["dev-1"], sequence=2000)
    data = bytearray(device.datagram("cfg/dev-1", mid=4))
    data[-1] ^= 0x01  # the last byte of the tag
    answer = await plain(secured.uri, bytes(data))
    assert answer.code == Code.BAD_REQUEST
    assert answer.payload == b"Decryption failed"


def _with_option(value: bytes) -> bytes:
    message = aiocoap.Message(code=Code.POST, payload=b"\x00" * 12)
    message.mtype, message.mid, message.token = Type.CON, 77, b"\x05"
    message.opt.oscore = value
    return message.encode()


@pytest.mark.parametrize(
    "option",
    [b"\x06" + bytes(6) + b"\x01", b"\x10", b"\x03\x00", b"\xe9\x00\x01"],
    ids=["reserved-piv-length", "context-hint-missing", "piv-missing", "reserved-bits"],
)
async def test_a_malformed_oscore_option_is_4_02(secured: Secured, option: bytes) -> None:
    answer = await plain(secured.uri, _with_option(option))
    assert answer.code == Code.BAD_OPTION, answer.payload
    assert b"OSCORE option" in answer.payload
    assert (await call(secured.link("dev-1"), "GET", "cfg/dev-1")).code == "2.05"


async def test_edhoc_is_not_offered(secured: Secured) -> None:
    message = aiocoap.Message(code=Code.POST, payload=b"\xf5\x03")
    message.mtype, message.mid, message.token = Type.CON, 78, b"\x06"
    message.opt.uri_path = (".well-known", "edhoc")
    answer = await plain(secured.uri, message.encode())
    assert answer.code == Code.NOT_FOUND


async def test_a_database_failure_is_5_03_not_5_00(
    secured: Secured, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(kid: bytes) -> None:
        raise StoreError("database is locked (injected)")

    monkeypatch.setattr(secured.gateway.fleet.store, "credential", broken)
    device = DeviceSide(secured.enrolments["dev-2"], sequence=50)
    answer = await plain(secured.uri, device.datagram("cfg/dev-2", mid=30))
    assert answer.code == Code.SERVICE_UNAVAILABLE


async def _observe_then_revoke(
    secured: Secured, role: str, name: str, path: list[str]
) -> AsyncIterator[Reply]:
    """Observe ``path`` as ``name``, revoke ``name``: the observation must end
    (a 4.01 notification, or the link reports it ended)."""
    replies = secured.link(name).observe(path)
    assert (await anext(replies)).code == "2.05"
    secured.gateway.fleet.store.revoke(role, name, now=2.0)
    assert secured.gateway.revocations() == 1
    ended: Reply | None = None
    with contextlib.suppress(LinkDown, StopAsyncIteration):
        ended = await asyncio.wait_for(anext(replies), timeout=10)
    assert ended is None or ended.code == "4.01"
    return replies


async def test_revoking_an_operator_ends_their_group_observation(secured: Secured) -> None:
    replies = await _observe_then_revoke(secured, "operator", "alice", ["grp", "region", "eu"])
    await asyncio.sleep(0.1)
    assert not any(secured.gateway.groups.observers.values())
    await replies.aclose()  # pyright: ignore[reportAttributeAccessIssue]


async def test_refused_observations_leave_nothing_behind(secured: Secured) -> None:
    link = secured.link(None)
    for number in range(5):
        replies = link.observe(["cfg", f"nobody-{number}"])
        assert (await anext(replies)).code == "4.01"
        await replies.aclose()  # pyright: ignore[reportAttributeAccessIssue]
    await asyncio.sleep(0.1)
    assert not [name for name in secured.gateway.config.observers if name.startswith("nobody")]


async def test_revoking_a_device_ends_its_observation(secured: Secured) -> None:
    replies = await _observe_then_revoke(secured, "device", "dev-2", ["cfg", "dev-2"])
    # A later change reaches nothing for the revoked device.
    layer = LayerId("region/eu")
    edit = layer_from_document({"set": {"net.uplink.interval_s": 700}})
    secured.gateway.fleet.write_layer(layer, edit, author="t", message="m", now=6.0)
    assert secured.gateway.config.changed({"dev-2"}) == 0
    await replies.aclose()  # pyright: ignore[reportAttributeAccessIssue]


# -- restarts ------------------------------------------------------------------


async def test_after_a_crash_the_replay_window_is_recovered_with_echo(secured: Secured) -> None:
    device = DeviceSide(secured.enrolments["dev-1"], sequence=100)
    assert (await device.get(secured.uri, "cfg/dev-1", mid=5)).code == Code.CONTENT
    old = device.datagram("cfg/dev-1", mid=10)
    assert device.open(await exchange(secured.uri, old, device)).code == Code.CONTENT
    kid = secured.enrolments["dev-1"].record.kid
    port = int(secured.uri.rsplit(":", 1)[1])
    await _stop(secured.gateway, crash=True)
    with SQLiteStore(secured.db) as store:
        assert store.oscore_state(kid) == OscoreState(0, None)  # window unknown
    secured.gateway = await _start(secured.db, port)

    # An old request replayed to the restarted gateway is not processed: it
    # gets a protected 4.01 asking for an Echo, which the replayer cannot add.
    replayed = bytearray(old)
    replayed[2:4] = (11).to_bytes(2, "big")
    challenge = device.open(await exchange(secured.uri, bytes(replayed), device))
    assert challenge.code == Code.UNAUTHORIZED
    echo = challenge.opt.echo
    assert echo is not None and len(echo) == 8

    # The device repeats a fresh request with the Echo: the window starts there.
    answer = await device.get(secured.uri, "cfg/dev-1", mid=12, echo=echo)
    assert answer.code == Code.CONTENT


async def test_the_agent_link_recovers_by_itself_after_a_gateway_crash(secured: Secured) -> None:
    link = secured.link("dev-1")
    assert (await call(link, "GET", "cfg/dev-1")).code == "2.05"
    port = int(secured.uri.rsplit(":", 1)[1])
    await _stop(secured.gateway, crash=True)
    secured.gateway = await _start(secured.db, port)
    # aiocoap's client answers the 4.01 Echo (Appendix B.1.2) without help.
    reply = await call(link, "GET", "cfg/dev-1")
    assert reply.code == "2.05"
    assert reply.etag == secured.gateway.fleet.etag(DeviceId("dev-1"))


async def test_after_a_clean_stop_no_echo_is_needed(secured: Secured) -> None:
    device = DeviceSide(secured.enrolments["dev-1"], sequence=300)
    assert (await device.get(secured.uri, "cfg/dev-1", 20)).code == Code.CONTENT
    kid = secured.enrolments["dev-1"].record.kid
    port = int(secured.uri.rsplit(":", 1)[1])
    await _stop(secured.gateway)
    with SQLiteStore(secured.db) as store:
        state = store.oscore_state(kid)
    assert state is not None and state.window is not None
    secured.gateway = await _start(secured.db, port)
    answer = await device.get(secured.uri, "cfg/dev-1", 24)
    assert answer.code == Code.CONTENT
    assert answer.opt.echo is None


# -- sequence numbers ------------------------------------------------------------


class FailingStore(MemoryStore):
    """A store whose next ``fail`` calls of ``operation`` raise StoreError."""

    def __init__(self) -> None:
        super().__init__()
        self.failures: dict[str, int] = {}

    def _maybe_fail(self, operation: str) -> None:
        if self.failures.get(operation, 0) > 0:
            self.failures[operation] -= 1
            raise StoreError(f"{operation} failed (injected)")

    def put_oscore_states(self, states: Iterable[tuple[bytes, OscoreState]]) -> None:
        self._maybe_fail("put_oscore_states")
        super().put_oscore_states(states)

    def reserve_sequence_numbers(self, kid: bytes, count: int) -> int:
        self._maybe_fail("reserve_sequence_numbers")
        return super().reserve_sequence_numbers(kid, count)

    def credential(self, kid: bytes) -> CredentialRecord | None:
        self._maybe_fail("credential")
        return super().credential(kid)


def _credentials(store: MemoryStore, cache_size: int = 100) -> StoredCredentials:
    return StoredCredentials(store, RecordCipher(KEY), cache_size=cache_size)


def _enrolled(store: MemoryStore, *names: str) -> list[Enrolment]:
    return [enroll(store, RecordCipher(KEY), "device", n, now=0.0) for n in names]


def _find(credentials: StoredCredentials, kid: bytes) -> StoredContext:
    return credentials.find_oscore({oscore.COSE_KID: kid})


_SEQUENCES: dict[bytes, int] = {}


def _verified(credentials: StoredCredentials, enrolment: Enrolment) -> StoredContext:
    """A request from the device, as the site wrapper handles it: find, unprotect."""
    kid = enrolment.record.kid
    echo: bytes | None = None
    for _ in range(2):  # a second time with Echo when the window is unknown (B.1.2)
        sequence = _SEQUENCES.get(kid, 10_000)  # the device's own numbers only grow
        _SEQUENCES[kid] = sequence + 1
        request = DeviceSide(enrolment, sequence).datagram("cfg/dev-1", mid=1, echo=echo)
        message = aiocoap.Message.decode(request)
        message.direction = Direction.INCOMING
        context = credentials.find_oscore(oscore.verify_start(message))
        try:
            context.unprotect(message)
        except oscore.ReplayErrorWithEcho as challenge:
            echo = challenge.echo
            continue
        return context
    raise AssertionError("challenged twice")


def test_sequence_numbers_survive_a_crash_and_are_never_reused() -> None:
    store = MemoryStore()
    (enrolment,) = _enrolled(store, "dev-1")
    used: list[int] = []
    for _ in range(5):  # five crashes: nothing flushed, objects dropped
        context = _verified(_credentials(store), enrolment)
        used.extend(context.new_sequence_number() for _ in range(37))
    assert len(used) == len(set(used))
    assert used == sorted(used)
    state = store.oscore_state(enrolment.record.kid)
    assert state is not None and state.next_to_send > used[-1]


def test_sequence_numbers_round_trip_through_sqlite(tmp_path: Path) -> None:
    used: list[int] = []
    with SQLiteStore(tmp_path / "g.db") as store:
        (enrolment,) = [enroll(store, RecordCipher(KEY), "device", "dev-1", now=0.0)]
    for _ in range(3):
        with SQLiteStore(tmp_path / "g.db") as store:
            credentials = StoredCredentials(store, RecordCipher(KEY))
            context = _verified(credentials, enrolment)
            used.extend(context.new_sequence_number() for _ in range(20))
    assert used == sorted(set(used))


def test_a_failed_reservation_reserves_nothing() -> None:
    store = FailingStore()
    (enrolment,) = _enrolled(store, "dev-1")
    context = _verified(_credentials(store), enrolment)
    store.failures["reserve_sequence_numbers"] = 1
    with pytest.raises(StoreError):
        context.new_sequence_number()  # the number is never handed out
    used = [context.new_sequence_number() for _ in range(20)]
    after_crash = _verified(_credentials(store), enrolment)
    assert after_crash.new_sequence_number() > max(used)


def test_a_failed_window_write_is_retried_so_a_crash_never_restores_a_stale_window() -> None:
    store = FailingStore()
    (enrolment,) = _enrolled(store, "dev-1")
    kid = enrolment.record.kid
    credentials = _credentials(store)
    _verified(credentials, enrolment)
    credentials.flush()  # a clean stop: the exact window is stored
    assert store.oscore_state(kid) is not None
    restarted = _credentials(store)
    store.failures["put_oscore_states"] = 1
    with pytest.raises(StoreError):  # the request is not processed
        _verified(restarted, enrolment)
    _verified(restarted, enrolment)  # the next one marks the window unknown
    state = store.oscore_state(kid)
    assert state is not None and state.window is None


def test_forged_requests_under_a_real_key_id_never_enter_the_cache() -> None:
    store = MemoryStore()
    real, other = _enrolled(store, "dev-1", "dev-2")
    credentials = _credentials(store, cache_size=1)
    _verified(credentials, other)
    impostor = Enrolment(real.record, other.secret)  # the kid of dev-1, another secret
    for _ in range(3):
        with pytest.raises(oscore.ProtectionInvalid):
            _verified(credentials, impostor)
    assert list(credentials.loaded) == [other.record.kid]  # nothing evicted
    assert store.oscore_state(real.record.kid) is None  # nothing written


def test_an_evicted_context_is_reloaded_without_reusing_numbers() -> None:
    store = MemoryStore()
    first, second = _enrolled(store, "dev-1", "dev-2")
    credentials = _credentials(store, cache_size=1)
    old = _verified(credentials, first)
    numbers = [old.new_sequence_number() for _ in range(3)]
    _verified(credentials, second)  # evicts dev-1's context
    assert list(credentials.loaded) == [second.record.kid]
    # An observation may still hold the old context: it may use its last reservation ...
    numbers.append(old.new_sequence_number())
    again = _verified(credentials, first)
    assert again is not old
    fresh = [again.new_sequence_number() for _ in range(3)]
    assert min(fresh) > max(numbers)
    # ... and go on reserving chunks of its own: the two never collide.
    for _ in range(200):
        numbers.append(old.new_sequence_number())
        fresh.append(again.new_sequence_number())
    assert not set(numbers) & set(fresh)
    assert len(set(numbers)) == len(numbers) and len(set(fresh)) == len(fresh)


def test_a_failed_revocation_check_is_retried() -> None:
    store = FailingStore()
    first, second = _enrolled(store, "dev-1", "dev-2")
    credentials = _credentials(store)
    _verified(credentials, first)
    _verified(credentials, second)
    store.revoke("device", "dev-1", now=1.0)
    store.revoke("device", "dev-2", now=1.0)
    store.failures["credential"] = 1
    with pytest.raises(StoreError):
        credentials.refresh()
    dropped = credentials.refresh()
    assert {identity.name for identity in dropped} == {"dev-1", "dev-2"}
    assert not credentials.loaded
    with pytest.raises(KeyError):
        _find(credentials, first.record.kid)


def test_a_tampered_window_row_means_echo_not_an_error() -> None:
    store = MemoryStore()
    (enrolment,) = _enrolled(store, "dev-1")
    store.put_oscore_states([(enrolment.record.kid, OscoreState(40, b"\x01\x02"))])
    context = _find(_credentials(store), enrolment.record.kid)
    assert not context.recipient_replay_window.is_initialized()  # Echo recovery
    assert context.sender_sequence_number == 40


def test_configuration_edits_never_touch_oscore_state() -> None:
    store = MemoryStore()
    gateway = Gateway(store, credentials=_credentials(store))
    gateway.fleet.load_schema(SCHEMA.read_bytes(), "json", source="device.json", now=1.0)
    gateway.fleet.add_device(sensor("dev-1"))
    (enrolment,) = _enrolled(store, "dev-1")
    kid = enrolment.record.kid
    assert gateway.credentials is not None
    context = _verified(gateway.credentials, enrolment)
    [context.new_sequence_number() for _ in range(40)]
    saved = store.oscore_state(kid)
    layer = LayerId("device/dev-1")

    def write(interval: int, now: float) -> bytes:
        edit = layer_from_document({"set": {"net.uplink.interval_s": interval}})
        gateway.fleet.write_layer(layer, edit, author="t", message="m", now=now)
        return store.layer_history(layer)[-1].content

    first = write(600, 2.0)
    write(900, 3.0)
    assert write(600, 4.0) == first  # rolled back

    assert store.oscore_state(kid) == saved


# -- credentials at rest ------------------------------------------------------------


def test_under_the_wrong_master_key_a_peer_gets_no_context() -> None:
    store = MemoryStore()
    (enrolment,) = _enrolled(store, "dev-1")
    kid = enrolment.record.kid
    credentials = StoredCredentials(store, RecordCipher(os.urandom(32)))
    with pytest.raises(CredentialError, match="master key"):
        credentials.check_key()
    with pytest.raises(KeyError):  # the site wrapper answers 4.01; the log says why
        _find(credentials, kid)
    _credentials(store).check_key()  # the right key opens it


async def test_an_observation_over_oscore_gets_protected_notifications(secured: Secured) -> None:
    """Notifications carry the gateway's own sequence numbers (Appendix B.1.1)."""
    link = secured.link("dev-1")
    replies = link.observe(["cfg", "dev-1"])
    first = await anext(replies)
    assert first.code == "2.05"
    layer = LayerId("region/eu")
    edit = layer_from_document({"set": {"net.uplink.interval_s": 900}})
    secured.gateway.fleet.write_layer(layer, edit, author="t", message="m", now=5.0)
    secured.gateway.layer_changed(layer)
    notification = await asyncio.wait_for(anext(replies), timeout=10)
    assert notification.etag == secured.gateway.fleet.etag(DeviceId("dev-1"))
    assert notification.etag != first.etag
    await replies.aclose()  # pyright: ignore[reportAttributeAccessIssue]
    kid = secured.enrolments["dev-1"].record.kid
    assert secured.gateway.credentials is not None
    context = secured.gateway.credentials.loaded[kid]
    assert context.sender_sequence_number >= 1
    state = secured.gateway.fleet.store.oscore_state(kid)
    assert state is not None and state.next_to_send >= context.sender_sequence_number


def test_secrets_are_sealed_and_bound_to_their_identity() -> None:
    store = MemoryStore()
    cipher = RecordCipher(KEY)
    enrolment = enroll(store, cipher, "device", "dev-1", now=0.0)
    record = enrolment.record
    assert enrolment.secret.master_secret not in record.sealed
    assert unseal(cipher, record) == enrolment.secret
    with pytest.raises(CredentialError, match="master key"):
        unseal(RecordCipher(os.urandom(32)), record)
    # A sealed secret moved to another identity's row does not open.
    from dataclasses import replace

    with pytest.raises(CredentialError):
        unseal(cipher, replace(record, name="dev-2"))
    assert unseal(cipher, replace(record, sealed=seal(cipher, "device", "dev-1", enrolment.secret)))


def test_enrolling_twice_needs_a_revocation_and_key_ids_are_never_reused() -> None:
    store = MemoryStore()
    cipher = RecordCipher(KEY)
    first = enroll(store, cipher, "device", "dev-1", now=0.0).record
    with pytest.raises(StoreConflict, match="already enrolled"):
        enroll(store, cipher, "device", "dev-1", now=1.0)
    store.revoke("device", "dev-1", now=2.0)
    second = enroll(store, cipher, "device", "dev-1", now=3.0).record
    assert second.kid != first.kid
    credentials = _credentials(store)
    with pytest.raises(KeyError):
        _find(credentials, first.kid)
    assert _find(credentials, second.kid) is not None


@pytest.mark.parametrize(
    "option",
    [b"\x29\x01\x01", b"\x31\x01\x01", b"\x31\x01\x03", b"\x51\x01\x01", b"\x91\x01\x01"],
    ids=["group-flag-context", "group-flag-kid", "group-flag-enrolled-kid", "bit-6", "bit-7"],
)
async def test_the_group_flag_and_reserved_bits_are_4_02_without_a_traceback(
    secured: Secured, option: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # RFC 8613 §6.1: bits 0-2 of the flag byte are reserved (Group OSCORE uses
    # bit 2, which this gateway does not speak): a malformed option is 4.02 (§8.2)
    answer = await plain(secured.uri, _with_option(option))
    assert answer.code == Code.BAD_OPTION, answer.payload
    assert b"OSCORE option" in answer.payload
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL") or r.exc_info]
    assert (await call(secured.link("dev-1"), "GET", "cfg/dev-1")).code == "2.05"


@pytest.mark.parametrize("option", [(19, b"\x01"), (65001, b""), (17, b"\x3c")],
                         ids=["unknown-19", "unknown-65001", "accept-twice"])  # fmt: skip
async def test_an_inner_critical_option_is_checked_like_an_outer_one(
    secured: Secured, option: tuple[int, bytes]
) -> None:
    # RFC 7252 §5.4.1/§5.4.5 hold for the request OSCORE protects, too
    device = DeviceSide(secured.enrolments["dev-1"], sequence=3000)
    await device.get(secured.uri, "cfg/dev-1", mid=30)  # any Echo round done
    plain_request = aiocoap.Message(code=Code.GET)
    plain_request.mtype, plain_request.mid, plain_request.token = Type.CON, 40, b"\x01\x02"
    plain_request.opt.uri_path = ("cfg", "dev-1")
    number, value = option
    plain_request.opt.add_option(OpaqueOption(number, value))
    if number == 17:
        plain_request.opt.add_option(OpaqueOption(number, value))
    plain_request.direction = Direction.OUTGOING
    protected, device.request_id = device.protect(plain_request)
    protected.mtype, protected.mid, protected.token = Type.CON, 40, b"\x01\x02"
    answer = device.open(await exchange(secured.uri, protected.encode(), device))
    assert answer.code == Code.BAD_OPTION, answer


async def test_an_identity_is_charged_wherever_it_sends_from(tmp_path: Path) -> None:
    # issue 20: per-identity budgets for authenticated peers; two addresses
    # each within their own budget, one identity over its own: 4.29, protected
    db = tmp_path / "gateway.db"
    with SQLiteStore(db) as store:
        tight = Budgets(peer_rate=0.01, peer_burst=4.0)
        fleet_gateway = Gateway(store, credentials=StoredCredentials(store, RecordCipher(KEY)),
                                refresh_s=0, budgets=tight)  # fmt: skip
        fleet_gateway.fleet.load_schema(SCHEMA.read_bytes(), "json", source="d", now=1.0)
        fleet_gateway.fleet.add_device(sensor("dev-1"))
        enrolment = enroll(store, RecordCipher(KEY), "device", "dev-1", now=1.0)
        for host in ("127.0.0.1", "127.0.0.2"):
            fleet_gateway.guard.trust(host)
        await fleet_gateway.start("127.0.0.1", free_udp_port())
        try:
            device = DeviceSide(enrolment, sequence=0)
            codes: list[Code | None] = []
            for number in range(6):
                host = ("127.0.0.1", "127.0.0.2")[number % 2]
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.bind((host, 0))
                    sock.setblocking(False)
                    loop = asyncio.get_running_loop()
                    assert fleet_gateway.address is not None
                    await loop.sock_sendto(sock, device.datagram("cfg/dev-1", mid=number),
                                           fleet_gateway.address)  # fmt: skip
                    data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 4096), 5)
                answer = device.open(data)
                if answer.code == Code.UNAUTHORIZED and answer.opt.echo is not None:
                    codes.append(None)  # the replay window's Echo round: not a request served
                    continue
                codes.append(answer.code)
            served = [code for code in codes if code is not None]
            assert Code.TOO_MANY_REQUESTS in served, codes
            assert served[:3] == [Code.CONTENT] * 3
        finally:
            await fleet_gateway.stop()


def test_gateways_sharing_a_store_never_store_a_known_window() -> None:
    """Another gateway may have served the peer since: a window stored by one
    would be stale, so a shared store keeps windows unknown (Echo on load)."""
    store = MemoryStore()
    (enrolment,) = _enrolled(store, "dev-1")
    shared = StoredCredentials(store, RecordCipher(KEY), shared=True)
    context = _verified(shared, enrolment)
    context.new_sequence_number()
    shared.flush()
    state = store.oscore_state(enrolment.record.kid)
    assert state is not None and state.window is None and state.next_to_send > 0
    _verified(_credentials(store), enrolment)  # a one-gateway store keeps it exactly


async def test_an_unrecognized_critical_inner_option_is_4_02(secured: Secured) -> None:
    """RFC 7252 §5.4.1 inside OSCORE: the datagram screen sees only the
    outer options, so the resource checks the decrypted request's (a plain
    request is checked once, by the screen)."""
    link = secured.link("dev-1")
    await link.open()
    context = link._context  # pyright: ignore[reportPrivateUsage]  (its OSCORE context, raw)
    assert context is not None
    request = aiocoap.Message(code=Code.GET, uri=f"{secured.uri}/cfg/dev-1")
    request.opt.add_option(OpaqueOption(65001, b"x"))  # critical (odd), unknown: class E
    answer = await context.request(request).response
    assert answer.code == Code.BAD_OPTION, answer
    assert b"65001" in answer.payload
    request = aiocoap.Message(code=Code.GET, uri=f"{secured.uri}/cfg/dev-1")
    assert (await context.request(request).response).code == Code.CONTENT  # the same link
