"""RFC 8613 Appendix C test vectors against the OSCORE implementation we use.

The gateway's contexts are :class:`edgecfg.gateway.oscore.StoredContext`
(aiocoap's OSCORE code with the store behind it); the device side is
aiocoap's filesystem context.  Key derivation is checked for every vector
(C.1 to C.3) on aiocoap's key schedule, and through ``StoredContext`` for the one
that has the gateway's shape (empty Sender ID, no ID Context: C.1.1).
Messages C.4 to C.8 are protected at the given sequence numbers and compared
byte for byte, then unprotected again by the peer's context.

The vectors live in ``../shared/vectors/oscore``; the tests skip without them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiocoap import Message, oscore
from aiocoap.message import Direction
from aiocoap.numbers.codes import Code

from edgecfg.fleet.credentials import Secret
from edgecfg.gateway.oscore import MemoryContext, StoredContext
from edgecfg.store import CredentialRecord, OscoreState

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "oscore"
FILE = VECTORS / "rfc8613_appendix_c.json"

pytestmark = pytest.mark.skipif(not FILE.exists(), reason=f"{FILE} is not available")


def _load() -> dict[str, Any]:
    return json.loads(FILE.read_text()) if FILE.exists() else {"key_derivation": [], "messages": []}


DATA = _load()
DERIVATIONS = {item["id"]: item for item in DATA["key_derivation"]}


def _hex(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)


def vector_context(item: dict[str, Any]) -> MemoryContext:
    """A bare aiocoap context with the vector's parameters and no persistence."""
    secret = Secret(
        bytes.fromhex(DATA["common"]["master_secret"]), _hex(item["master_salt"]) or b""
    )
    return MemoryContext(
        bytes.fromhex(item["sender_id"]),
        bytes.fromhex(item["recipient_id"]),
        secret,
        id_context=_hex(item["id_context"]),
    )


def _outgoing(hex_bytes: str) -> Message:
    message = Message.decode(bytes.fromhex(hex_bytes))
    message.direction = Direction.OUTGOING
    return message


def _incoming(data: bytes) -> Message:
    message = Message.decode(data)
    message.direction = Direction.INCOMING
    return message


def _wire(protected: Message, plain: Message) -> bytes:
    """The datagram: protect() leaves the outer header (type, id, token) to the sender."""
    protected.mtype, protected.mid, protected.token = plain.mtype, plain.mid, plain.token
    return protected.encode()


def _nonce(context: oscore.BaseSecurityContext, kid: bytes) -> bytes:
    assert context.alg_aead is not None
    return context._construct_nonce(b"\0", kid, context.alg_aead)  # pyright: ignore[reportPrivateUsage]


@pytest.mark.parametrize("vector", sorted(DERIVATIONS), ids=str)
def test_key_derivation(vector: str) -> None:
    item = DERIVATIONS[vector]
    context = vector_context(item)
    assert context.sender_key.hex() == item["sender_key"]
    assert context.recipient_key.hex() == item["recipient_key"]
    assert context.common_iv.hex() == item["common_iv"]
    assert _nonce(context, context.sender_id).hex() == item["sender_nonce_piv0"]
    assert _nonce(context, context.recipient_id).hex() == item["recipient_nonce_piv0"]


def test_the_gateway_context_derives_the_c_1_1_keys() -> None:
    """C.1.1 has the gateway's shape: empty Sender ID, peer's kid 01, no ID Context."""
    item = DERIVATIONS["C.1.1"]
    record = CredentialRecord(bytes.fromhex(item["recipient_id"]), "device", "d", b"", 0.0)
    secret = Secret(
        bytes.fromhex(DATA["common"]["master_secret"]), bytes.fromhex(item["master_salt"])
    )
    context = StoredContext(
        record, secret, None, lambda kid, state: None, reserve=lambda kid, count: 0
    )
    assert context.sender_id == b""
    assert context.sender_key.hex() == item["sender_key"]
    assert context.recipient_key.hex() == item["recipient_key"]
    assert context.common_iv.hex() == item["common_iv"]


REQUESTS = [m for m in DATA["messages"] if m["kind"] == "request"]
RESPONSES = [m for m in DATA["messages"] if m["kind"] == "response"]


def _peer_of(item: dict[str, Any]) -> dict[str, Any]:
    """The other side of a derivation: C.1.1 <-> C.1.2."""
    number, side = item["id"].rsplit(".", 1)
    return DERIVATIONS[f"{number}.{'2' if side == '1' else '1'}"]


@pytest.mark.parametrize("message", REQUESTS, ids=lambda m: m["id"])
def test_protected_request(message: dict[str, Any]) -> None:
    client = vector_context(DERIVATIONS[message["context"]])
    client.sender_sequence_number = message["sender_sequence_number"]
    plain = _outgoing(message["unprotected"])
    protected, _ = client.protect(plain, kid_context=message["kid_context_in_option"])
    expected = Message.decode(bytes.fromhex(message["protected"]))
    # C.6: the RFC's printed bytes and its ciphertext disagree (see the note in
    # the vector file), so compare what both agree on: options and ciphertext.
    assert protected.opt.oscore == expected.opt.oscore
    assert protected.payload == expected.payload
    if message["id"] != "C.6":
        assert _wire(protected, plain) == bytes.fromhex(message["protected"])
    # ... and the server side gets the original request back.
    server = vector_context(_peer_of(DERIVATIONS[message["context"]]))
    received = _incoming(
        bytes.fromhex(message["protected"]) if message["id"] != "C.6" else _wire(protected, plain)
    )
    unprotected, _ = server.unprotect(received)
    assert unprotected.code == plain.code
    assert unprotected.opt.uri_path == plain.opt.uri_path


@pytest.mark.parametrize("message", RESPONSES, ids=lambda m: m["id"])
def test_protected_response(message: dict[str, Any]) -> None:
    server = vector_context(DERIVATIONS[message["context"]])
    if message["new_partial_iv"]:
        server.sender_sequence_number = message["sender_sequence_number"]
    request_id = oscore.RequestIdentifiers(
        bytes.fromhex(message["request_kid"]),
        bytes.fromhex(message["request_piv"]),
        can_reuse_nonce=not message["new_partial_iv"],
        request_code=Code.POST,  # the outer code of the (non-observe) request
    )
    plain = _outgoing(message["unprotected"])
    protected, _ = server.protect(plain, request_id)
    assert _wire(protected, plain) == bytes.fromhex(message["protected"])
    client = vector_context(_peer_of(DERIVATIONS[message["context"]]))
    request_id = oscore.RequestIdentifiers(
        bytes.fromhex(message["request_kid"]),
        bytes.fromhex(message["request_piv"]),
        can_reuse_nonce=not message["new_partial_iv"],
        request_code=Code.POST,  # the outer code of the (non-observe) request
    )
    unprotected, _ = client.unprotect(_incoming(bytes.fromhex(message["protected"])), request_id)
    assert unprotected.code == plain.code
    assert unprotected.payload == b"Hello World!"


def test_a_tampered_request_does_not_verify() -> None:
    message = REQUESTS[0]
    data = bytearray(bytes.fromhex(message["protected"]))
    data[-1] ^= 1
    server = vector_context(_peer_of(DERIVATIONS[message["context"]]))
    with pytest.raises(oscore.ProtectionInvalid):
        server.unprotect(_incoming(bytes(data)))


def test_state_round_trip_of_the_window() -> None:
    """A persisted window comes back exactly, so a restart after a clean stop needs no Echo."""
    item = DERIVATIONS["C.1.1"]
    record = CredentialRecord(bytes.fromhex(item["recipient_id"]), "device", "d", b"", 0.0)
    secret = Secret(
        bytes.fromhex(DATA["common"]["master_secret"]), bytes.fromhex(item["master_salt"])
    )
    saved: list[OscoreState] = []
    context = StoredContext(
        record, secret, None, lambda kid, state: saved.append(state), reserve=lambda kid, count: 0
    )
    for number in (3, 5, 40):
        context.recipient_replay_window.strike_out(number)
    assert saved == [OscoreState(0, None)]  # marked unknown once, not per request
    state = context.state(exact=True)
    again = StoredContext(
        record, secret, state, lambda kid, state: None, reserve=lambda kid, count: 0
    )
    assert not again.recipient_replay_window.is_valid(40)
    assert again.recipient_replay_window.is_valid(41)
    assert again.recipient_replay_window.persist() == context.recipient_replay_window.persist()
