"""Keys and authenticated encryption for the device store.

The one module that imports ``cryptography`` (DESIGN §2: one owner per
third-party library); everything else asks it for a key or a sealed record.

- :func:`derive_store_key` turns the device's provisioning secret into the
  store key with HKDF-SHA256 (RFC 5869).  The key lives only in memory: it is
  never written beside the data it protects.
- :func:`load_or_create_dev_key` is for **development only**: a random key in
  a ``0600`` file, which must live outside the store directory.  A device in
  the field derives its key from the provisioning secret (kept in a secure
  element or a protected partition) instead.
- :class:`RecordCipher` seals and opens records with AES-256-GCM, a fresh
  random 96-bit nonce per seal (NIST SP 800-38D §8.2.2: at most 2**32 seals
  per key, i.e. a commit a minute for 8,000 years).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edgecfg.errors import PeerError, StoreError, UsageError

KEY_SIZE: Final = 32
"""Bytes in a store key (AES-256)."""
NONCE_SIZE: Final = 12
"""Bytes in an AES-GCM nonce (the 96-bit size GCM is designed for)."""
TAG_SIZE: Final = 16
"""Bytes in an AES-GCM authentication tag, appended to every ciphertext."""
STORE_KEY_INFO: Final = b"edgecfg device store v1"
"""HKDF ``info`` prefix; the device id follows it, so each device gets its own key."""
MIN_SECRET_SIZE: Final = 16
"""A provisioning secret shorter than 128 bits is refused."""


class KeyFileError(StoreError):
    """The development key file cannot be used (permissions, size, I/O)."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class AuthenticationFailed(PeerError):
    """A sealed record does not authenticate: tampered, truncated or another key."""


def derive_store_key(secret: bytes, device_id: str) -> bytes:
    """The device-store key for ``device_id``: HKDF-SHA256 of the provisioning secret.

    ``info`` is ``b"edgecfg device store v1"`` followed by the UTF-8 device
    id, so two devices sharing a secret still get unrelated keys, and the
    version in ``info`` lets a later format derive a fresh key.  No salt: the
    secret is already uniformly random (RFC 5869 §3.1).  Raises
    :class:`~edgecfg.errors.UsageError` for a secret under 16 bytes or an
    empty device id.
    """
    if len(secret) < MIN_SECRET_SIZE:
        raise UsageError(
            f"provisioning secret of {len(secret)} bytes is too short "
            f"(at least {MIN_SECRET_SIZE} required)"
        )
    if not device_id:
        raise UsageError("device id must not be empty")
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_SIZE,
        salt=None,
        info=STORE_KEY_INFO + device_id.encode("utf-8"),
    )
    return hkdf.derive(secret)


def load_or_create_dev_key(path: str | os.PathLike[str]) -> bytes:
    """DEVELOPMENT ONLY: the store key kept in the file at ``path``, created if absent.

    A new file gets 32 random bytes and mode ``0600``; it is written to a
    temporary file, fsynced and linked into place, so a crash never leaves a
    short key and two processes racing to create it agree on one key.  An
    existing file is refused with :class:`KeyFileError` when any group or
    other permission bit is set (the key would be readable, or replaceable,
    by other users), when it is not a regular file, or when it is not exactly
    32 bytes.  Keep the file outside the store directory: a copy of that
    directory must not carry its own key.
    """
    target = Path(path)
    try:
        return _read_key_file(target)
    except FileNotFoundError:
        pass
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(descriptor, os.urandom(KEY_SIZE))
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            # link(2) never replaces: a racing creator's key wins and both read it.
            os.link(temporary, target)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
        directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as error:
        raise KeyFileError(f"cannot create key file: {error.strerror}", path=str(target)) from None
    return _read_key_file(target)


def _read_key_file(path: Path) -> bytes:
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise KeyFileError(f"cannot open key file: {error.strerror}", path=str(path)) from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError("key file is not a regular file", path=str(path))
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"key file has mode {mode:04o}: group or others may access it; "
                "run `chmod 600` on it (or delete it to create a new key)",
                path=str(path),
            )
        key = os.read(descriptor, KEY_SIZE + 1)
    finally:
        os.close(descriptor)
    if len(key) != KEY_SIZE:
        raise KeyFileError(
            f"key file holds {len(key)} bytes, expected exactly {KEY_SIZE}", path=str(path)
        )
    return key


class RecordCipher:
    """AES-256-GCM under one store key: seal with a fresh nonce, open or refuse.

    The associated data is authenticated but not encrypted; the store puts
    the record header there (format version, slot, generation), so a record
    moved to another slot or relabelled fails to open.
    """

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise UsageError(f"store key must be {KEY_SIZE} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, associated_data: bytes) -> tuple[bytes, bytes]:
        """Encrypt ``plaintext``: returns ``(nonce, ciphertext)``, the tag at its end."""
        nonce = os.urandom(NONCE_SIZE)
        return nonce, self._aead.encrypt(nonce, plaintext, associated_data)

    def open(self, nonce: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
        """Decrypt and authenticate; raises :class:`AuthenticationFailed` on any mismatch."""
        if len(nonce) != NONCE_SIZE or len(ciphertext) < TAG_SIZE:
            raise AuthenticationFailed("sealed record is too short to authenticate")
        try:
            return self._aead.decrypt(nonce, ciphertext, associated_data)
        except InvalidTag:
            raise AuthenticationFailed(
                "authentication failed: the record was altered, truncated or sealed "
                "under another key"
            ) from None
