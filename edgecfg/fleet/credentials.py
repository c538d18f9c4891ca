"""OSCORE enrolment: issue, seal, open and revoke per-identity credentials.

Every device and every operator gets its own OSCORE security context
(RFC 8613 §3): a random 16-byte master secret and 8-byte master salt, the
gateway's Sender ID empty and the peer's Sender ID a key id the store hands
out once and never again (:func:`edgecfg.store.base.kid_for`).  One master
secret per peer means no two contexts share keys, so the gateway can use the
same (empty) Sender ID in all of them without nonce collisions (§3.3).

The gateway database keeps the secret and salt **sealed** under the operator
master key (AES-256-GCM, :class:`edgecfg.crypto.RecordCipher`), with the
role and name as associated data: a sealed secret copied to another
identity's row does not open.  The master key never enters the database;
``gateway serve`` and ``device enroll`` read it from ``--master-key FILE``
(or ``$EDGECFG_MASTER_KEY``), and for development from ``DB.master-key``
created ``0600`` beside the database.

The device side of a credential is what :mod:`aiocoap` reads: a
``credentials.json`` pointing at an OSCORE context directory
(``settings.json`` and a ``0600`` ``secret.json``), so ``aiocoap-client
--credentials DIR/credentials.json`` and ``edgecfg agent run --credentials``
both use it, and aiocoap persists that side's sequence numbers.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edgecfg.crypto import NONCE_SIZE, RecordCipher
from edgecfg.errors import PeerError, StoreError, UsageError
from edgecfg.store.base import CredentialRecord, Store, kid_for

SECRET_SIZE: Final = 16
"""Bytes of a master secret (RFC 8613 §3.2: at least the key length, 128 bits)."""
SALT_SIZE: Final = 8
"""Bytes of a master salt (the size RFC 8613 Appendix C uses)."""
ALGORITHM: Final = "AES-CCM-16-64-128"
"""AEAD algorithm (RFC 8613 §3.2.1's mandatory default, COSE algorithm 10)."""
HKDF: Final = "sha256"
"""KDF hash function (HKDF-SHA-256, the default)."""
GATEWAY_SENDER_ID: Final = b""
"""The gateway's Sender ID in every context (unique keys make a shared id safe)."""
_SEAL_LABEL: Final = b"edgecfg oscore secret v1\0"


class CredentialError(StoreError):
    """A stored credential cannot be opened (wrong master key, tampered row)."""


@dataclass(frozen=True, slots=True)
class Secret:
    """The shared secret input of one OSCORE context (RFC 8613 §3.2)."""

    master_secret: bytes
    master_salt: bytes

    @classmethod
    def generate(cls) -> Secret:
        return cls(secrets.token_bytes(SECRET_SIZE), secrets.token_bytes(SALT_SIZE))


def _associated_data(role: str, name: str) -> bytes:
    return _SEAL_LABEL + role.encode("utf-8") + b"\0" + name.encode("utf-8")


def seal(cipher: RecordCipher, role: str, name: str, secret: Secret) -> bytes:
    """``secret`` sealed for the database row of ``(role, name)``."""
    plaintext = bytes([len(secret.master_secret)]) + secret.master_secret + secret.master_salt
    nonce, ciphertext = cipher.seal(plaintext, _associated_data(role, name))
    return nonce + ciphertext


def unseal(cipher: RecordCipher, record: CredentialRecord) -> Secret:
    """The secret in ``record``; raises :class:`CredentialError` if it does not open."""
    try:
        plaintext = cipher.open(
            record.sealed[:NONCE_SIZE],
            record.sealed[NONCE_SIZE:],
            _associated_data(record.role, record.name),
        )
    except PeerError as error:
        raise CredentialError(
            f"credential of {record.role} {record.name!r} (key id {record.kid.hex()}) "
            f"does not open: {error} (is this the master key the database was enrolled with?)"
        ) from None
    length = plaintext[0] if plaintext else 0
    if length == 0 or len(plaintext) < 1 + length:
        raise CredentialError(f"credential of {record.role} {record.name!r} is malformed")
    return Secret(plaintext[1 : 1 + length], plaintext[1 + length :])


def check_master_key(store: Store, cipher: RecordCipher) -> None:
    """Raise :class:`CredentialError` unless ``cipher`` opens the first credential
    ever enrolled (all are sealed under one key), if there is one."""
    record = store.credential(kid_for(1))
    if record is not None:
        unseal(cipher, record)


@dataclass(frozen=True, slots=True)
class Enrolment:
    """A freshly issued credential: the stored record and the peer's secret."""

    record: CredentialRecord
    secret: Secret


def enroll(store: Store, cipher: RecordCipher, role: str, name: str, *, now: float) -> Enrolment:
    """Issue a credential for ``(role, name)``; StoreConflict if one is active."""
    if not name:
        raise UsageError(f"a {role} name must not be empty")
    secret = Secret.generate()
    record = store.enroll(role, name, seal(cipher, role, name, secret), now=now)
    return Enrolment(record, secret)


def credentials_pattern(gateway: str | None) -> str:
    """The aiocoap credentials key for requests to ``gateway`` (all coap:// without)."""
    if gateway is None:
        return "coap://*"
    if not gateway.startswith("coap://") or len(gateway) <= len("coap://"):
        raise UsageError(f"--gateway {gateway!r} must look like coap://HOST:PORT")
    return gateway.rstrip("/") + "/*"


def write_peer_side(enrolment: Enrolment, out: Path, *, gateway: str | None) -> Path:
    """Write the peer's half of ``enrolment`` to ``out``; returns ``credentials.json``.

    ``out/oscore/`` is an aiocoap OSCORE context directory; ``secret.json`` is
    ``0600``.  An ``out`` that already holds a context is refused: its
    sequence numbers belong to another credential.
    """
    record, secret = enrolment.record, enrolment.secret
    pattern = credentials_pattern(gateway)
    check_out(out)
    context = (out / "oscore").resolve()
    context.mkdir(parents=True, exist_ok=True)
    settings = {
        "sender-id_hex": record.kid.hex(),
        "recipient-id_hex": GATEWAY_SENDER_ID.hex(),
        "algorithm": ALGORITHM,
        "kdf-hashfun": HKDF,
    }
    _write(context / "settings.json", settings, mode=0o644)
    _write(
        context / "secret.json",
        {"secret_hex": secret.master_secret.hex(), "salt_hex": secret.master_salt.hex()},
        mode=0o600,
    )
    credentials = out.resolve() / "credentials.json"
    # Relative to the folder, so the folder can move to the device as it is
    # (the agent resolves it against the file; aiocoap-client against its cwd).
    _write(credentials, {pattern: {"oscore": {"basedir": "oscore/"}}}, mode=0o600)
    identity = {"role": record.role, "name": record.name, "kid": record.kid.hex()}
    if gateway is not None:
        identity["gateway"] = gateway
    _write(out.resolve() / "identity.json", identity, mode=0o644)
    return credentials


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that holds an OSCORE context already (its sequence
    numbers belong to another credential) or cannot be a directory."""
    context = (out / "oscore").resolve()
    if context.exists() and (not context.is_dir() or any(context.iterdir())):
        raise UsageError(
            f"{context}: already holds an OSCORE context; choose an empty --out directory"
        )
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: not a directory")


def _write(path: Path, document: object, *, mode: int) -> None:
    """Write JSON to a new file with ``mode`` from the start (never world-readable first)."""
    data = (json.dumps(document, indent=2) + "\n").encode("utf-8")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(descriptor, mode)
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
