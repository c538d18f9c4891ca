"""Keys and record sealing for the device store (edgecfg/crypto.py): HKDF key
derivation (RFC 5869), the dev key file, AES-256-GCM records.  The store that
uses them: tests/agent/test_sealed_store_generations.py."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecfg.crypto import (
    KEY_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    AuthenticationFailed,
    KeyFileError,
    RecordCipher,
    derive_store_key,
    load_or_create_dev_key,
)
from edgecfg.errors import StoreError, UsageError

SECRET = bytes(range(32))
KEY = derive_store_key(SECRET, "dev-0042")
OTHER_KEY = derive_store_key(SECRET, "dev-0043")


def test_store_key_golden_vector() -> None:
    assert KEY.hex() == "451b059ce0f1c33a59ddfbbfb69ba3c8c383d89a15c8cb6413ee4e93fe71d4ea"


def test_store_key_is_rfc5869_hkdf_sha256() -> None:
    prk = hmac.new(b"\x00" * 32, SECRET, hashlib.sha256).digest()  # RFC 5869 §2.2, no salt
    info = b"edgecfg device store v1" + b"dev-0042"
    first = hmac.new(prk, info + b"\x01", hashlib.sha256).digest()  # §2.3, L = 32: T(1)
    assert first == KEY


def test_devices_and_secrets_get_different_keys() -> None:
    keys = {
        derive_store_key(SECRET, "dev-0042"),
        derive_store_key(SECRET, "dev-0043"),
        derive_store_key(SECRET, "dev-00420"),
        derive_store_key(bytes(32), "dev-0042"),
    }
    assert len(keys) == 4 and all(len(key) == KEY_SIZE for key in keys)


@pytest.mark.parametrize(("secret", "device"), [(b"short", "dev-1"), (SECRET, "")])
def test_key_derivation_refuses_weak_input(secret: bytes, device: str) -> None:
    with pytest.raises(UsageError):
        derive_store_key(secret, device)


def test_cipher_refuses_a_key_of_the_wrong_size() -> None:
    with pytest.raises(UsageError, match="32 bytes"):
        RecordCipher(b"\x00" * 16)


@given(st.binary(max_size=300), st.binary(max_size=40))
def test_a_sealed_record_opens_with_its_associated_data_only(
    plaintext: bytes, associated: bytes
) -> None:
    cipher = RecordCipher(KEY)
    nonce, sealed = cipher.seal(plaintext, associated)
    assert len(nonce) == NONCE_SIZE and len(sealed) == len(plaintext) + TAG_SIZE
    assert cipher.open(nonce, sealed, associated) == plaintext
    with pytest.raises(AuthenticationFailed):
        cipher.open(nonce, sealed, associated + b"x")  # relabelled header
    with pytest.raises(AuthenticationFailed):
        RecordCipher(OTHER_KEY).open(nonce, sealed, associated)  # another device's key


@given(st.binary(min_size=1, max_size=64), st.data())
def test_any_altered_or_truncated_record_fails_to_open(
    plaintext: bytes, data: st.DataObject
) -> None:
    cipher = RecordCipher(KEY)
    nonce, sealed = cipher.seal(plaintext, b"hdr")
    at = data.draw(st.integers(0, len(sealed) - 1))
    flipped = sealed[:at] + bytes([sealed[at] ^ data.draw(st.integers(1, 255))]) + sealed[at + 1 :]
    for bad_nonce, bad in ((nonce, flipped), (nonce, sealed[:at]), (nonce[:-1], sealed)):
        with pytest.raises(AuthenticationFailed):
            cipher.open(bad_nonce, bad, b"hdr")


def test_every_seal_uses_a_fresh_nonce() -> None:
    cipher = RecordCipher(KEY)
    nonces = {cipher.seal(b"same", b"same")[0] for _ in range(50)}
    assert len(nonces) == 50


def test_dev_key_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "store.key"
    path.parent.mkdir()
    key = load_or_create_dev_key(path)
    assert len(key) == KEY_SIZE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_dev_key(path) == key
    assert os.listdir(path.parent) == ["store.key"]  # no temporary left behind


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_dev_key_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "store.key"
    load_or_create_dev_key(path)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match=f"mode {mode:04o}.*chmod 600") as raised:
        load_or_create_dev_key(path)
    assert isinstance(raised.value, StoreError) and raised.value.path == str(path)


def test_dev_key_file_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.key"
    path.write_bytes(b"\x01" * 16)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="16 bytes, expected exactly 32"):
        load_or_create_dev_key(path)


def test_dev_key_file_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.key"
    load_or_create_dev_key(real)
    (tmp_path / "link.key").symlink_to(real)
    with pytest.raises(KeyFileError, match="cannot open"):
        load_or_create_dev_key(tmp_path / "link.key")
