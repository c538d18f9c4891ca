"""The agent's local state: the applied configuration and a transfer in progress.

The configuration lives in the encrypted, crash-safe A/B store
(:class:`~edgecfg.agent.ab_store.DeviceStore`): every applied version is
committed as a new generation and marked good once its ETag verified, so
the last-known-good survives a bad write or a power cut.  A transfer in
progress records the request, the representation's ETag, the block size and
the bytes received so far (encrypted with the same key), so a sync
interrupted at block N resumes at block N after a reconnect or a restart.

The key: pass one derived from the device's provisioning secret
(:func:`~edgecfg.crypto.derive_store_key`).  Without one, a development
key file ``device.key`` (mode 0600) is created in the state directory; that
is for development and tests only, since the key then sits beside the data.

``key.check`` holds an empty record sealed with the store key, so a wrong
key (another secret, another device id) is told apart from a damaged
store: the first is an error (:class:`KeyMismatch`), the second is
recovered from by a resync.  ``device.id`` records the device the
directory belongs to (:func:`record_device`), so reading commands need not
be told, and one directory is never used for two devices.

:meth:`LocalState.open_existing` opens a directory for reading: it creates
nothing, and raises :class:`NoState` or :class:`KeyMismatch` instead of
starting afresh.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, cast

from edgecfg.agent.ab_store import SLOTS, DeviceStore, Generation, StoreEventKind
from edgecfg.agent.fs import REAL_FS, WriteFailed
from edgecfg.core.ids import ETag
from edgecfg.core.session import Transfer
from edgecfg.core.tree import Tree, Value, is_map
from edgecfg.crypto import AuthenticationFailed, RecordCipher, load_or_create_dev_key
from edgecfg.errors import EdgecfgError, PeerError
from edgecfg.wire.cbor import Encoded, decode, encode

TRANSFER_FILE: Final = "transfer.bin"
APPLY_FILE: Final = "apply.bin"
RULES_FILE: Final = "rules.bin"
DEV_KEY_FILE: Final = "device.key"
KEY_CHECK_FILE: Final = "key.check"
DEVICE_FILE: Final = "device.id"
STORE_DIR: Final = "store"
_TRANSFER_AD: Final = b"edgecfg transfer v1"
_APPLY_AD: Final = b"edgecfg apply v1"
_RULES_AD: Final = b"edgecfg rules v1"
_KEY_CHECK_AD: Final = b"edgecfg store key check v1"
_STATE_NAMES: Final = (DEVICE_FILE, DEV_KEY_FILE, KEY_CHECK_FILE, STORE_DIR, "local", "schema.json")


class StateError(EdgecfgError):
    """The local state cannot be read or written."""


class NoState(StateError):
    """A directory holds no agent state (a mistyped path, or nothing synced yet)."""

    def __init__(self, directory: Path, reason: str) -> None:
        super().__init__(f"{directory}: no agent state here ({reason})")
        self.directory = directory
        self.reason = reason


class KeyMismatch(StateError):
    """The store key does not open this directory's store (another secret or
    device id, or a missing development key); nothing was read."""

    def __init__(self, directory: Path, detail: str) -> None:
        super().__init__(f"{directory}: {detail}")
        self.directory = directory
        self.detail = detail


class DeviceMismatch(StateError):
    """A state directory recorded for one device was used for another."""

    def __init__(self, directory: Path, *, recorded: str, given: str) -> None:
        super().__init__(
            f"{directory}: this state belongs to device {recorded}, not {given} "
            "(one state directory per device)"
        )
        self.directory = directory
        self.recorded = recorded
        self.given = given


def recorded_device(directory: str | os.PathLike[str]) -> str | None:
    """The device id recorded in a state directory, or None."""
    path = Path(directory) / DEVICE_FILE
    try:
        text = path.read_text("utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise StateError(f"{path}: cannot read: {error}") from None
    return text or None


def record_device(directory: str | os.PathLike[str], device: str) -> None:
    """Record ``device`` as the owner of the directory (created if need be);
    raises :class:`DeviceMismatch` when another device is recorded."""
    folder = Path(directory)
    recorded = recorded_device(folder)
    if recorded == device:
        return
    if recorded is not None:
        raise DeviceMismatch(folder, recorded=recorded, given=device)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        REAL_FS.write_file_atomic(str(folder / DEVICE_FILE), f"{device}\n".encode())
    except OSError as error:
        raise StateError(f"{folder}: cannot create: {error.strerror}") from None
    except WriteFailed as failure:
        raise StateError(f"cannot write: {failure}") from None


class LocalState:
    """The applied config and the pending transfer, in one directory."""

    def __init__(
        self, directory: str | os.PathLike[str], *, key: bytes | None = None, _create: bool = True
    ) -> None:
        self.directory = Path(directory)
        if _create:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StateError(f"{self.directory}: cannot create: {error.strerror}") from None
            key = key if key is not None else load_or_create_dev_key(self.directory / DEV_KEY_FILE)
        assert key is not None
        self.store = DeviceStore(self.directory / STORE_DIR, key=key)
        self._cipher = RecordCipher(key)
        self._held: Encoded | None = None
        self._loaded = False
        self._key_checked = False  # key.check exists and opens with this key
        if _create:
            self._check_key(writable=True)

    @classmethod
    def open_existing(
        cls, directory: str | os.PathLike[str], *, key: bytes | None = None
    ) -> LocalState:
        """Open a state directory for reading: nothing is created.

        Raises :class:`NoState` when the directory is absent or holds no
        agent state, :class:`KeyMismatch` when the key (``key``, else the
        development key file) does not open the store.
        """
        folder = Path(directory)
        if not folder.is_dir():
            reason = "not a directory" if folder.exists() else "no such directory"
            raise NoState(folder, reason)
        if not any((folder / name).exists() for name in _STATE_NAMES):
            raise NoState(folder, "the directory holds none of the files an agent writes")
        sealed = any((folder / STORE_DIR / f"slot-{slot}.bin").exists() for slot in SLOTS)
        if key is None:
            if (folder / DEV_KEY_FILE).exists():
                key = load_or_create_dev_key(folder / DEV_KEY_FILE)
            elif sealed or (folder / KEY_CHECK_FILE).exists():
                raise KeyMismatch(
                    folder,
                    f"no {DEV_KEY_FILE} here: the store is sealed with a key derived "
                    "from a provisioning secret",
                )
            else:
                key = bytes(32)  # nothing sealed to open: any key reads "nothing applied"
        state = cls(folder, key=key, _create=False)
        state._check_key(writable=False)
        return state

    def _check_key(self, *, writable: bool) -> None:
        """Refuse a key that does not open ``key.check``; reading a directory
        from before that file, refuse a key that opens no slot of the store
        (nothing tells a wrong key from damage there, so no guessing)."""
        data = self._read(KEY_CHECK_FILE)
        if data is not None:
            self._key_checked = True
            try:
                self._cipher.open(data[:12], data[12:], _KEY_CHECK_AD)
            except AuthenticationFailed:
                detail = "the store key does not open this store"
                raise KeyMismatch(self.directory, detail) from None
            return
        if writable:
            return  # written with the first configuration (save_config)
        loaded = self.store.load()
        kinds = {event.kind for event in loaded.events}
        if loaded.current is None and StoreEventKind.AUTHENTICATION_FAILED in kinds:
            raise KeyMismatch(self.directory, "the store key does not open any slot")

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
        self._check_key_written()
        generation = self.store.commit(config)
        self.store.mark_good(generation.number)
        self._held = config

    def stage_config(self, config: Encoded) -> int:
        """Commit ``config`` as a new generation that is not good yet (a
        candidate on trial, issue 15) and return its number; the one that
        is current already when it holds ``config``."""
        loaded = self._current_generation()
        if loaded is not None and loaded.etag == config.etag:
            return loaded.number
        self._check_key_written()
        generation = self.store.commit(config)
        self._held = config
        return generation.number

    def confirm(self, generation: int) -> None:
        """Mark a staged generation good: it is the last-known-good now."""
        self.load_config()
        self.store.mark_good(generation)

    def good_config(self) -> Encoded | None:
        """The last-known-good configuration, or None."""
        self.load_config()
        return self.store.last_known_good()

    def held_is_good(self) -> bool:
        """Whether the current configuration is marked good (not on trial)."""
        generation = self._current_generation()
        return generation is not None and generation.good

    def revert_config(self) -> Encoded:
        """Make the last-known-good current again (see :meth:`DeviceStore.revert`)."""
        self.load_config()
        config = self.store.revert()
        self._held = config
        return config

    def _current_generation(self) -> Generation | None:
        self.load_config()
        return self.store.generation()

    def _check_key_written(self) -> None:
        if not self._key_checked:  # before the first record sealed with this key
            nonce, sealed = self._cipher.seal(b"", _KEY_CHECK_AD)
            self._write(KEY_CHECK_FILE, nonce + sealed)
            self._key_checked = True

    def load_apply(self) -> bytes | None:
        """The apply record's bytes (:mod:`edgecfg.wire.apply`), or None when
        there is none or it does not open (damaged, another key)."""
        return self._open_sealed(APPLY_FILE, _APPLY_AD)

    def save_apply(self, record: bytes) -> None:
        """Replace the apply record atomically (sealed like the transfer)."""
        self._seal(APPLY_FILE, record, _APPLY_AD)

    def load_rules(self) -> bytes | None:
        """The adaptive rules' record (:mod:`edgecfg.wire.adaptation`: rule
        states and the layer they made), or None when there is none or it
        does not open."""
        return self._open_sealed(RULES_FILE, _RULES_AD)

    def save_rules(self, record: bytes) -> None:
        """Replace the rules' record atomically (sealed like the apply record)."""
        self._seal(RULES_FILE, record, _RULES_AD)

    def _open_sealed(self, name: str, associated: bytes) -> bytes | None:
        data = self._read(name)
        if data is None:
            return None
        try:
            return self._cipher.open(data[:12], data[12:], associated)
        except AuthenticationFailed:
            return None

    def _seal(self, name: str, record: bytes, associated: bytes) -> None:
        nonce, sealed = self._cipher.seal(record, associated)
        self._write(name, nonce + sealed)

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
