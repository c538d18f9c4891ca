"""The device's crash-safe, sealed store: everything the agent keeps on disk.

One module for one concern (issue 19: the walk of a sync read A and
committed B through four modules, ``local_state`` → ``ab_store`` → ``fs``
→ ``crypto``; now through this one and :mod:`edgecfg.crypto`).  Three
parts, each building on the one before:

1. Files: a narrow file-system interface and its atomic write.
2. Generations: the configuration's encrypted A/B slots (:class:`DeviceStore`).
3. The state directory (:class:`LocalState`): the store key, the device it
   belongs to, the configuration through its generations, and the sealed
   side records (a transfer in progress, the apply record, the rules' record).

Files
-----
The store talks to the disk only through :class:`FileSystem`: a handful of
primitive operations (``open_write``, ``write``, ``fsync``, ``close``,
``rename``, ``fsync_dir``, ``read``, ``exists``, ``remove``, ``listdir``,
``make_dir``) and :meth:`FileSystem.write_file_atomic`, composed from them.
That narrow waist lets tests see every operation in order, replay any
prefix of them under a crash model, keep files in memory and inject errors,
like httpcore's in-memory transports: the doubles are in
:mod:`edgecfg.agent.fs_doubles`.  Primitives raise :class:`OSError` exactly
as the OS does; only :meth:`~FileSystem.write_file_atomic` translates, into
:class:`WriteFailed`.  Paths are plain strings.

Generations
-----------
Two slot files, ``slot-a.bin`` and ``slot-b.bin``, each hold one
*generation*: the canonical CBOR of a configuration, its ETag, a generation
number (strictly increasing over the store's life) and whether it was
marked good.  The newest readable generation is *current*; the newest one
marked good is the *last-known-good*.  A commit always writes the slot that
does not hold the last-known-good (or, with none, the current), so the
last-known-good is never overwritten before a newer one has been committed
and marked good; every write is one :meth:`FileSystem.write_file_atomic`,
so a power cut leaves each slot old or new, never torn.

Slot file format, version 1 (integers big-endian)::

    offset size
         0    4  magic b"ECDS"
         4    1  format version, 1
         5    1  slot letter, b"a" or b"b"
         6    2  reserved, zero
         8    8  generation number, 1 .. 2**63-1
        16   12  AES-GCM nonce, fresh per write
        28    …  AES-256-GCM ciphertext of the body; its last 16 bytes are the tag

The associated data is bytes 0 to 15, binding format version, slot and
generation: a record copied into the other slot or relabelled fails to
authenticate.  The body is ``flags`` (1 byte, bit 0 = marked good),
``other`` (8 bytes: the generation the other slot held when this
generation was committed, 0 for none), the ETag (8 bytes), then the CBOR.
A record is 61 bytes plus the configuration.

``other`` catches rollback: a slot holding an older generation than the
newer record says it held has been swapped for a stale copy.  Rolling back
the *newest* record to its predecessor looks exactly like a crash before
the last commit and cannot be told apart without a monotonic counter
outside the store; only the gateway can notice it (the device reports an
older applied ETag than it did before).

:meth:`DeviceStore.load` never raises on bad data and never returns a
configuration that failed authentication: it reports what it found as
:class:`StoreEvent` values (which slot, which check failed) and falls back
to the other generation, or to nothing (a full resync) when both fail.
One process at a time may use a store directory.

The state directory
-------------------
The configuration lives in the A/B generations (:class:`DeviceStore`):
every applied version is committed as a new generation and marked good once its ETag verified, so
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

import contextlib
import enum
import errno as errnos
import os
import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Literal, NewType, cast

from edgecfg.core.ids import ETag
from edgecfg.core.session import Transfer
from edgecfg.core.tree import Tree, Value, is_map
from edgecfg.crypto import TAG_SIZE, AuthenticationFailed, RecordCipher, load_or_create_dev_key
from edgecfg.errors import EdgecfgError, PeerError, StoreError, UsageError
from edgecfg.wire.cbor import DEFAULT_LIMITS, Encoded, decode, encode, etag_of_bytes

# ---------------------------------------------------------------- files

FileHandle = NewType("FileHandle", int)
"""An open file, as returned by :meth:`FileSystem.open_write`."""

OperationKind = Literal[
    "open_write", "write", "fsync", "close", "rename", "fsync_dir",
    "read", "exists", "remove", "listdir", "make_dir",
]  # fmt: skip
MUTATING: Final[frozenset[OperationKind]] = frozenset(
    ("open_write", "write", "fsync", "close", "rename", "fsync_dir", "remove", "make_dir")
)
"""Operations that change the disk (or its durability); the rest only look."""
TEMP_SUFFIX: Final = ".tmp"
""":meth:`FileSystem.write_file_atomic` writes ``path + TEMP_SUFFIX`` first."""


class WriteFailed(StoreError):
    """An atomic file write failed; ``replaced`` says whether the rename happened.

    With ``replaced`` false the target still holds its previous content and
    the temporary file was removed (best effort).  With ``replaced`` true
    the rename was done but the directory fsync failed: the target holds the
    new content now, and after a power cut may hold either.
    """

    def __init__(self, *, path: str, operation: str, error: OSError, replaced: bool) -> None:
        code = errnos.errorcode.get(error.errno or 0, str(error.errno))
        super().__init__(f"{path}: {operation} failed: {error.strerror or error} ({code})")
        self.path = path
        self.operation = operation
        self.errno = error.errno
        self.replaced = replaced


class FileSystem(ABC):
    """Primitive file operations plus the atomic write built from them."""

    @abstractmethod
    def open_write(self, path: str) -> FileHandle:
        """Create ``path`` (mode 0600) or truncate it; open it for writing."""

    @abstractmethod
    def write(self, handle: FileHandle, data: bytes) -> None:
        """Append all of ``data`` at the file position."""

    @abstractmethod
    def fsync(self, handle: FileHandle) -> None:
        """Make the file's data and size durable."""

    @abstractmethod
    def close(self, handle: FileHandle) -> None:
        """Release the handle (does not imply durability)."""

    @abstractmethod
    def rename(self, source: str, target: str) -> None:
        """Atomically replace ``target`` by ``source`` (rename(2) semantics)."""

    @abstractmethod
    def fsync_dir(self, path: str) -> None:
        """Make the directory's entries (creations, renames, removals) durable."""

    @abstractmethod
    def read(self, path: str, limit: int) -> bytes:
        """At most ``limit`` bytes from the start of ``path``; FileNotFoundError if absent."""

    @abstractmethod
    def exists(self, path: str) -> bool:
        """Whether a file or directory exists at ``path``."""

    @abstractmethod
    def remove(self, path: str) -> None:
        """Unlink the file ``path``."""

    @abstractmethod
    def listdir(self, path: str) -> list[str]:
        """Sorted names of the entries in the directory ``path``."""

    @abstractmethod
    def make_dir(self, path: str) -> None:
        """Create the directory ``path`` and its parents (mode 0700); no error if present."""

    def write_file_atomic(self, path: str, data: bytes) -> None:
        """Replace ``path`` with ``data`` so that a crash leaves the old or the new file.

        Temporary file → write → fsync → close → rename over ``path`` → fsync
        of the directory.  The data fsync comes before the rename because a
        file system may commit the rename before the data (ext4 without
        ``auto_da_alloc``, XFS, btrfs): renaming unsynced data can leave an
        empty or torn file under the final name.  The directory fsync makes
        the rename itself durable (fsync(2): "an fsync() on a file descriptor
        for the directory is also needed").  Raises :class:`WriteFailed`.
        """
        temporary = path + TEMP_SUFFIX
        operation = "open_write"
        try:
            handle = self.open_write(temporary)
            try:
                operation = "write"
                self.write(handle, data)
                operation = "fsync"
                self.fsync(handle)
            except BaseException:
                with contextlib.suppress(OSError):
                    self.close(handle)
                raise
            operation = "close"
            self.close(handle)
            operation = "rename"
            self.rename(temporary, path)
        except OSError as error:
            with contextlib.suppress(OSError):
                self.remove(temporary)
            raise WriteFailed(
                path=temporary, operation=operation, error=error, replaced=False
            ) from error
        directory = os.path.dirname(path) or "."
        try:
            self.fsync_dir(directory)
        except OSError as error:
            raise WriteFailed(
                path=directory, operation="fsync_dir", error=error, replaced=True
            ) from error


class RealFileSystem(FileSystem):
    """The operating system's file system, through :mod:`os`."""

    def open_write(self, path: str) -> FileHandle:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        return FileHandle(os.open(path, flags, 0o600))

    def write(self, handle: FileHandle, data: bytes) -> None:
        view = memoryview(data)
        while view:  # write(2) may write less than asked
            view = view[os.write(handle, view) :]

    def fsync(self, handle: FileHandle) -> None:
        os.fsync(handle)

    def close(self, handle: FileHandle) -> None:
        os.close(handle)

    def rename(self, source: str, target: str) -> None:
        os.replace(source, target)

    def fsync_dir(self, path: str) -> None:
        descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def read(self, path: str, limit: int) -> bytes:
        with open(path, "rb") as handle:
            return handle.read(limit)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def remove(self, path: str) -> None:
        os.remove(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def make_dir(self, path: str) -> None:
        os.makedirs(path, mode=0o700, exist_ok=True)


REAL_FS: Final = RealFileSystem()
"""The shared :class:`RealFileSystem` (it holds no state)."""


# ---------------------------------------------------------------- generations

SlotName = Literal["a", "b"]
SLOTS: Final[tuple[SlotName, SlotName]] = ("a", "b")
FORMAT_VERSION: Final = 1
MAGIC: Final = b"ECDS"
MAX_GENERATION: Final = 2**63 - 1
_HEADER: Final = struct.Struct(">4sBcHQ12s")  # magic, version, slot, reserved, generation, nonce
_AAD_SIZE: Final = 16  # the header without the nonce
_BODY: Final = struct.Struct(">BQ8s")  # flags, other, etag
_FLAG_GOOD: Final = 0x01
RECORD_OVERHEAD: Final = _HEADER.size + _BODY.size + TAG_SIZE
"""Bytes a slot file holds beyond the configuration's CBOR (61)."""
MAX_RECORD: Final = RECORD_OVERHEAD + DEFAULT_LIMITS.max_bytes


class StoreEventKind(enum.Enum):
    """What :meth:`DeviceStore.load` found wrong, or did about it."""

    MISSING = "missing"  # a slot file is absent though the other record says it held one
    UNREADABLE = "unreadable"  # reading the slot file failed (EIO, EACCES, ...)
    BAD_HEADER = "bad-header"  # not a store record: size, magic, version, reserved bits
    WRONG_SLOT = "wrong-slot"  # a record of the other slot was copied here
    AUTHENTICATION_FAILED = "authentication-failed"  # tampered, truncated or another key
    BAD_CONTENT = "bad-content"  # authenticated but malformed (a bug or a leaked key)
    ROLLED_BACK = "rolled-back"  # an older copy of this slot was swapped in
    RECOVERED = "recovered"  # continuing with the generation that survived
    RESYNC_NEEDED = "resync-needed"  # no usable generation: fetch the full config


@dataclass(frozen=True, slots=True)
class StoreEvent:
    """One finding of :meth:`DeviceStore.load`, to be reported at the next sync."""

    kind: StoreEventKind
    slot: SlotName | None
    detail: str
    generation: int | None = None

    def __str__(self) -> str:
        where = f"slot-{self.slot}: " if self.slot else ""
        return f"{self.kind.value}: {where}{self.detail}"


@dataclass(frozen=True, slots=True)
class Generation:
    """One authenticated generation and the slot it lives in."""

    number: int
    slot: SlotName
    config: Encoded
    good: bool

    @property
    def etag(self) -> ETag:
        return self.config.etag


@dataclass(frozen=True, slots=True)
class Loaded:
    """What :meth:`DeviceStore.load` found: the current and last-known-good generations.

    ``current`` is None on a fresh store and when nothing survived; then the
    agent must fetch the full configuration (``resync_needed``).  ``events``
    is empty for a healthy store.
    """

    current: Generation | None
    last_known_good: Generation | None
    events: tuple[StoreEvent, ...] = ()

    @property
    def resync_needed(self) -> bool:
        return self.current is None


class UnknownGeneration(StoreError, LookupError):
    """``mark_good`` named a generation that neither slot holds."""

    def __init__(self, number: int, held: tuple[int, ...]) -> None:
        shown = ", ".join(map(str, held)) or "none"
        super().__init__(f"no generation {number} in the store (held: {shown})")
        self.number = number


class NothingToRevert(StoreError):
    """``revert`` was called but no generation was ever marked good."""


class CommitFailed(StoreError):
    """Writing a generation failed; ``failure`` is the underlying :class:`WriteFailed`.

    When ``replaced`` is false nothing changed on disk: the previous
    configuration is intact.  When true the slot was replaced but its
    durability is unknown: a later load shows the old or the new state.
    """

    def __init__(self, action: str, number: int, failure: WriteFailed) -> None:
        outcome = (
            "the slot was replaced but may not be durable"
            if failure.replaced
            else "nothing changed, the previous configuration is intact"
        )
        super().__init__(f"{action} of generation {number} failed: {failure}; {outcome}")
        self.action = action
        self.number = number
        self.failure = failure
        self.errno = failure.errno
        self.replaced = failure.replaced


@dataclass(frozen=True, slots=True)
class _Record:
    generation: Generation
    other: int  # generation the other slot held when this one was committed


@dataclass(frozen=True, slots=True)
class _SlotRead:
    record: _Record | None = None
    event: StoreEvent | None = None
    absent: bool = False
    claimed: int = 0  # generation in a well-formed header, authenticated or not


@dataclass(frozen=True, slots=True)
class _State:
    records: dict[SlotName, _Record | None]
    next_number: int
    loaded: Loaded


def _other(slot: SlotName) -> SlotName:
    return "b" if slot == "a" else "a"


def _newest(records: dict[SlotName, _Record | None]) -> tuple[Generation | None, Generation | None]:
    """The current (newest) and last-known-good (newest good) of the usable records."""
    usable = [record.generation for record in records.values() if record is not None]
    current = max(usable, key=lambda g: g.number, default=None)
    return current, max((g for g in usable if g.good), key=lambda g: g.number, default=None)


class DeviceStore:
    """The A/B store in ``directory``, sealed under ``key`` (32 bytes, see ``crypto``).

    Nothing is read until the first call; :meth:`load` (re)reads the disk,
    the other methods use what was last loaded or written.  Methods that
    write raise :class:`CommitFailed`; nothing ever raises because of what
    the disk holds.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, key: bytes, fs: FileSystem = REAL_FS
    ) -> None:
        self.directory = os.fspath(directory)
        self._cipher = RecordCipher(key)
        self._fs = fs
        self._state: _State | None = None
        self._pending: list[StoreEvent] = []

    def slot_path(self, slot: SlotName) -> str:
        return os.path.join(self.directory, f"slot-{slot}.bin")

    # ------------------------------------------------------------- reading

    def load(self) -> Loaded:
        """Read and check both slots; recover what can be recovered.

        Checks, in order: the file can be read, its header (size, magic,
        version, slot letter, reserved bits, generation range), the AES-GCM
        tag, the body (flags, ``other`` below the generation, ETag of the
        CBOR, strict CBOR decode), and finally the two records against each
        other (rollback).  Failures become events; the events also
        accumulate for :meth:`take_events`.
        """
        reads = {slot: self._read_slot(slot) for slot in SLOTS}
        events = [read.event for read in reads.values() if read.event is not None]
        records: dict[SlotName, _Record | None] = {s: reads[s].record for s in SLOTS}
        a, b = records["a"], records["b"]
        if a is not None and b is not None:
            new, old = (a, b) if a.generation.number > b.generation.number else (b, a)
            if new.other != old.generation.number:
                detail = (
                    f"holds generation {old.generation.number}, but generation "
                    f"{new.generation.number} was committed when it held {new.other or 'none'}"
                )
                kind, slot = StoreEventKind.ROLLED_BACK, old.generation.slot
                events.append(StoreEvent(kind, slot, detail, old.generation.number))
                records[slot] = None
        for slot in SLOTS:
            survivor = records[_other(slot)]
            if reads[slot].absent and survivor is not None and survivor.other:
                detail = (
                    f"file is missing, but generation {survivor.generation.number} was "
                    f"committed when it held generation {survivor.other}"
                )
                events.append(StoreEvent(StoreEventKind.MISSING, slot, detail, survivor.other))
        current, good = _newest(records)
        if events and current is not None:
            detail = f"continuing with generation {current.number}, last-known-good " + (
                str(good.number) if good else "none"
            )
            events.append(
                StoreEvent(StoreEventKind.RECOVERED, current.slot, detail, current.number)
            )
        elif events:
            events.append(StoreEvent(StoreEventKind.RESYNC_NEEDED, None, "no usable generation"))
        claimed = max(read.claimed for read in reads.values())
        loaded = Loaded(current, good, tuple(events))
        self._state = _State(records, min(claimed + 1, MAX_GENERATION), loaded)
        self._pending.extend(event for event in events if event not in self._pending)
        return loaded

    def current(self) -> Encoded | None:
        """The current configuration, or None when a full sync is needed."""
        generation = self._ensure().loaded.current
        return generation.config if generation else None

    def generation(self) -> Generation | None:
        """The current generation (number, slot, whether marked good), or None."""
        return self._ensure().loaded.current

    def last_known_good(self) -> Encoded | None:
        """The newest configuration marked good, or None."""
        generation = self._ensure().loaded.last_known_good
        return generation.config if generation else None

    def take_events(self) -> tuple[StoreEvent, ...]:
        """Events found since the last call (to report at the next sync); clears them."""
        events, self._pending = tuple(self._pending), []
        return events

    # ------------------------------------------------------------- writing

    def commit(self, config: Encoded) -> Generation:
        """Store ``config`` as a new, not yet good generation, which becomes current.

        It goes to the slot that does not hold the last-known-good (with
        none, the slot that does not hold the current), so that one
        survives whatever this commit does.  Returns the new generation.
        """
        if etag_of_bytes(config.cbor) != config.etag:
            raise UsageError("Encoded value's ETag does not match its CBOR; build it with of()")
        if len(config.cbor) > DEFAULT_LIMITS.max_bytes:
            raise UsageError(
                f"configuration of {len(config.cbor)} bytes exceeds the store limit "
                f"of {DEFAULT_LIMITS.max_bytes}"
            )
        state = self._ensure()
        kept = state.loaded.last_known_good or state.loaded.current
        slot: SlotName = _other(kept.slot) if kept else "a"
        generation = Generation(state.next_number, slot, config, good=False)
        return self._put("commit", _Record(generation, kept.number if kept else 0))

    def mark_good(self, number: int) -> Generation:
        """Mark generation ``number`` good: it becomes the last-known-good if newest.

        Rewrites that generation's slot in place (same number, new nonce);
        a no-op when it is already good.  Raises :class:`UnknownGeneration`.
        """
        state = self._ensure()
        held = [record for record in state.records.values() if record is not None]
        for record in held:
            if record.generation.number == number:
                if record.generation.good:
                    return record.generation
                marked = replace(record.generation, good=True)
                return self._put("mark_good", replace(record, generation=marked))
        raise UnknownGeneration(number, tuple(sorted(r.generation.number for r in held)))

    def revert(self) -> Encoded:
        """Make the last-known-good current again and return it.

        When the current generation is not the last-known-good, the
        last-known-good's configuration is committed as a new generation,
        already good, into the other slot.  Raises :class:`NothingToRevert`.
        """
        state = self._ensure()
        good, current = state.loaded.last_known_good, state.loaded.current
        if good is None:
            raise NothingToRevert("no generation was ever marked good: nothing to revert to")
        if current is not None and current.number == good.number:
            return good.config
        generation = Generation(state.next_number, _other(good.slot), good.config, good=True)
        self._put("revert", _Record(generation, good.number))
        return good.config

    # ------------------------------------------------------------ internals

    def _ensure(self) -> _State:
        if self._state is None:
            self.load()
        assert self._state is not None
        return self._state

    def _put(self, action: str, record: _Record) -> Generation:
        """Seal ``record`` into its slot and update the loaded state."""
        generation = record.generation
        try:
            self._ensure_directory()
            self._fs.write_file_atomic(self.slot_path(generation.slot), self._seal(record))
        except WriteFailed as failure:
            if failure.replaced:
                self._state = None  # the disk may hold either version: read it again
            raise CommitFailed(action, generation.number, failure) from failure
        state = self._ensure()
        records: dict[SlotName, _Record | None] = {**state.records, generation.slot: record}
        loaded = Loaded(*_newest(records), state.loaded.events)
        self._state = _State(records, max(state.next_number, generation.number + 1), loaded)
        return generation

    def _ensure_directory(self) -> None:
        """Create the store directory on the first write, durably (its parent is fsynced)."""
        operation = "exists"
        try:
            if self._fs.exists(self.directory):
                return
            operation = "make_dir"
            self._fs.make_dir(self.directory)
            operation = "fsync_dir"
            self._fs.fsync_dir(os.path.dirname(os.path.abspath(self.directory)))
        except OSError as error:
            raise WriteFailed(
                path=self.directory, operation=operation, error=error, replaced=False
            ) from error

    def _seal(self, record: _Record) -> bytes:
        generation = record.generation
        flags = _FLAG_GOOD if generation.good else 0
        body = _BODY.pack(flags, record.other, generation.etag) + generation.config.cbor
        slot = generation.slot.encode("ascii")
        aad = _HEADER.pack(MAGIC, FORMAT_VERSION, slot, 0, generation.number, b"")[:_AAD_SIZE]
        nonce, sealed = self._cipher.seal(body, aad)
        return aad + nonce + sealed

    def _read_slot(self, slot: SlotName) -> _SlotRead:
        path = self.slot_path(slot)
        try:
            data = self._fs.read(path, MAX_RECORD + 1)
        except FileNotFoundError:
            return _SlotRead(absent=True)
        except OSError as error:
            return _SlotRead(event=StoreEvent(StoreEventKind.UNREADABLE, slot, str(error)))
        return self._parse(slot, data)

    def _parse(self, slot: SlotName, data: bytes) -> _SlotRead:
        def fail(kind: StoreEventKind, detail: str, number: int | None = None) -> _SlotRead:
            return _SlotRead(event=StoreEvent(kind, slot, detail, number), claimed=number or 0)

        if len(data) < RECORD_OVERHEAD:
            what = "file is empty" if not data else f"file of {len(data)} bytes is truncated"
            return fail(StoreEventKind.BAD_HEADER, f"{what} (a record has at least 61)")
        if len(data) > MAX_RECORD:
            return fail(StoreEventKind.BAD_HEADER, f"file exceeds {MAX_RECORD} bytes")
        magic, version, letter, reserved, number, nonce = _HEADER.unpack_from(data)
        if magic != MAGIC:
            return fail(StoreEventKind.BAD_HEADER, f"not a store record (magic {magic.hex()})")
        if version != FORMAT_VERSION:
            return fail(StoreEventKind.BAD_HEADER, f"unsupported format version {version}")
        if reserved != 0 or letter not in (b"a", b"b") or not 1 <= number <= MAX_GENERATION:
            return fail(StoreEventKind.BAD_HEADER, "bad slot letter, reserved bits or generation")
        if letter != slot.encode("ascii"):
            shown = letter.decode("ascii")
            return fail(StoreEventKind.WRONG_SLOT, f"holds a record of slot-{shown}", number)
        try:
            body = self._cipher.open(nonce, data[_HEADER.size :], data[:_AAD_SIZE])
        except AuthenticationFailed as error:
            return fail(StoreEventKind.AUTHENTICATION_FAILED, str(error), number)
        flags, other, etag, cbor = *_BODY.unpack_from(body), body[_BODY.size :]
        if flags & ~_FLAG_GOOD or other >= number:
            return fail(StoreEventKind.BAD_CONTENT, "unknown flags or bad link", number)
        if etag_of_bytes(cbor) != etag:
            return fail(StoreEventKind.BAD_CONTENT, "ETag does not match the CBOR", number)
        try:
            config = Encoded.stored(cbor)
        except (PeerError, ValueError) as error:
            return fail(StoreEventKind.BAD_CONTENT, f"configuration: {error}", number)
        generation = Generation(number, slot, config, good=bool(flags & _FLAG_GOOD))
        return _SlotRead(record=_Record(generation, other), claimed=number)


# ---------------------------------------------------------------- the state directory

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
