"""The agent's local state: the applied configuration and a transfer in progress.

The configuration lives in the encrypted, crash-safe A/B store
(:class:`~edgecfg.agent.store.DeviceStore`): every applied version is
committed as a new generation and marked good once its ETag verified, so
the last-known-good survives a bad write or a power cut.  A transfer in
progress records the request, the representation's ETag, the block size and
the bytes received so far (encrypted with the same key), so a sync
interrupted at block N resumes at block N after a reconnect or a restart.

The key: pass one derived from the device's provisioning secret
(:func:`~edgecfg.crypto.derive_store_key`).  Without one, a development
key file ``device.key`` (mode 0600) is created in the state directory; that
is for development and tests only, since the key then sits beside the data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

from edgecfg.agent.fs import REAL_FS, WriteFailed
from edgecfg.agent.store import DeviceStore
from edgecfg.core.ids import ETag
from edgecfg.core.tree import Tree, Value, is_map
from edgecfg.crypto import RecordCipher, load_or_create_dev_key
from edgecfg.errors import EdgecfgError, PeerError
from edgecfg.wire.cbor import Encoded, decode, encode

TRANSFER_FILE: Final = "transfer.bin"
DEV_KEY_FILE: Final = "device.key"
_TRANSFER_AD: Final = b"edgecfg transfer v1"


class StateError(EdgecfgError):
    """The local state cannot be read or written."""


@dataclass(frozen=True, slots=True)
class Transfer:
    """A block-wise download in progress."""

    query: tuple[str, ...]
    etag: ETag
    szx: int
    received: bytes
    size: int | None = None
    content_format: int | None = None
    base: ETag | None = None  # the version the transfer is a delta from

    def next_block(self) -> int:
        """The number of the next block to ask for."""
        return len(self.received) >> (self.szx + 4)


class LocalState:
    """The applied config and the pending transfer, in one directory."""

    def __init__(self, directory: str | os.PathLike[str], *, key: bytes | None = None) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StateError(f"{self.directory}: cannot create: {error.strerror}") from None
        key = key if key is not None else load_or_create_dev_key(self.directory / DEV_KEY_FILE)
        self.store = DeviceStore(self.directory / "store", key=key)
        self._cipher = RecordCipher(key)
        self._held: Encoded | None = None
        self._loaded = False

    def load_config(self) -> Encoded | None:
        """The applied configuration, or None before the first sync (or when
        both generations are unusable: the next sync fetches the full config)."""
        if not self._loaded:
            self.store.load()
            self._held = self.store.current()
            self._loaded = True
        return self._held

    def save_config(self, config: Encoded) -> None:
        """Commit a verified configuration as a new generation and mark it good."""
        held = self.load_config()
        if held is not None and held.etag == config.etag:
            return
        generation = self.store.commit(config)
        self.store.mark_good(generation.number)
        self._held = config

    def events(self) -> list[str]:
        """Store problems found since the last call (corruption, recovery), to report."""
        self.load_config()
        return [str(event) for event in self.store.take_events()]

    def load_transfer(self) -> Transfer | None:
        """The transfer in progress, or None."""
        data = self._read(TRANSFER_FILE)
        if data is None:
            return None
        try:
            record = decode(self._cipher.open(data[:12], data[12:], _TRANSFER_AD))
            return _transfer_from(record)
        except (PeerError, KeyError, TypeError, ValueError):
            return None  # damaged or foreign: the transfer starts over

    def save_transfer(self, transfer: Transfer) -> None:
        """Record a transfer's progress atomically."""
        record: Tree = {
            "query": list[Value](transfer.query),
            "etag": transfer.etag,
            "szx": transfer.szx,
            "received": transfer.received,
            "size": transfer.size,
            "content_format": transfer.content_format,
            "base": transfer.base,
        }
        nonce, sealed = self._cipher.seal(encode(record), _TRANSFER_AD)
        self._write(TRANSFER_FILE, nonce + sealed)

    def clear_transfer(self) -> None:
        """Forget the transfer in progress (done, or its ETag changed)."""
        try:
            (self.directory / TRANSFER_FILE).unlink(missing_ok=True)
        except OSError as error:
            raise StateError(
                f"{self.directory}: cannot remove transfer: {error.strerror}"
            ) from None

    def _read(self, name: str) -> bytes | None:
        try:
            return (self.directory / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StateError(f"{self.directory / name}: cannot read: {error.strerror}") from None

    def _write(self, name: str, data: bytes) -> None:
        try:
            REAL_FS.write_file_atomic(str(self.directory / name), data)
        except WriteFailed as failure:
            raise StateError(f"cannot write: {failure}") from None


def _transfer_from(record: Value) -> Transfer:
    if not is_map(record):
        raise ValueError("transfer record is not a map")
    query = record["query"]
    etag, szx, received = record["etag"], record["szx"], record["received"]
    size, content_format = record.get("size"), record.get("content_format")
    base = record.get("base")
    if (
        not isinstance(query, list)
        or not all(isinstance(item, str) for item in query)
        or not isinstance(etag, bytes)
        or type(szx) is not int
        or not isinstance(received, bytes)
    ):
        raise ValueError("transfer record has the wrong shape")
    return Transfer(
        tuple(cast(list[str], query)),
        ETag(etag),
        szx,
        received,
        size if type(size) is int else None,
        content_format if type(content_format) is int else None,
        ETag(base) if isinstance(base, bytes) else None,
    )
