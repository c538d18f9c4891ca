"""The device's crash-safe, encrypted A/B configuration store (issue 6).

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
"""

from __future__ import annotations

import enum
import os
import struct
from dataclasses import dataclass, replace
from typing import Final, Literal

from edgecfg.agent.fs import REAL_FS, FileSystem, WriteFailed
from edgecfg.core.ids import ETag
from edgecfg.crypto import TAG_SIZE, AuthenticationFailed, RecordCipher
from edgecfg.errors import PeerError, StoreError, UsageError
from edgecfg.wire.cbor import DEFAULT_LIMITS, Encoded, etag_of_bytes

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
