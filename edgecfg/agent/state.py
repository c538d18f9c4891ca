"""The agent's small local state: the applied configuration and a transfer in
progress, written atomically (the offline issue hardens this into the
crash-safe encrypted store).

Every write goes to a temporary file, is fsynced, renamed over the old file,
and the directory is fsynced, so a power cut leaves the old or the new file,
never a torn one.  A transfer records the request, the representation's ETag,
the block size and the bytes received so far, so a sync interrupted at block
N resumes at block N after a reconnect or a restart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

from edgecfg.core.ids import ETag
from edgecfg.core.tree import Tree, Value, is_map
from edgecfg.errors import EdgecfgError, PeerError
from edgecfg.wire.cbor import Encoded, decode, encode

CONFIG_FILE: Final = "config.cbor"
TRANSFER_FILE: Final = "transfer.cbor"


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

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StateError(f"{self.directory}: cannot create: {error.strerror}") from None

    def load_config(self) -> Encoded | None:
        """The applied configuration, or None before the first sync.

        A file that does not decode is treated as absent (the next sync fetches
        the full config) rather than crashing the agent.
        """
        data = self._read(CONFIG_FILE)
        if data is None:
            return None
        try:
            return Encoded.from_bytes(data)
        except PeerError:
            return None

    def save_config(self, config: Encoded) -> None:
        """Replace the applied configuration atomically."""
        self._write(CONFIG_FILE, config.cbor)

    def load_transfer(self) -> Transfer | None:
        """The transfer in progress, or None."""
        data = self._read(TRANSFER_FILE)
        if data is None:
            return None
        try:
            record = decode(data)
            return _transfer_from(record)
        except (PeerError, KeyError, TypeError, ValueError):
            return None

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
        self._write(TRANSFER_FILE, encode(record))

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
        target = self.directory / name
        temporary = target.with_suffix(target.suffix + ".tmp")
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as error:
            raise StateError(f"{target}: cannot write: {error.strerror}") from None


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
