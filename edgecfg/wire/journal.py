"""Byte framing of the append-only local-override journal file (issue 6).

A journal file is a sequence of records, nothing else::

    record := length (4 bytes, big-endian) || entry (CBOR, `length` bytes)
              || CRC-32 (4 bytes, big-endian) of length || entry

    entry  := [sequence, path, [wall_ms, counter, node], reason]           ; removes the override
            / [sequence, path, [wall_ms, counter, node], reason, value]    ; sets it

``path`` is the dotted text form, the timestamp the compact HLC form
(:meth:`~edgecfg.core.hlc.Timestamp.to_compact`) and ``value`` a model value
in canonical CBOR (:func:`~edgecfg.wire.cbor.encode`).  An append writes one
record; a crash may leave a torn record at the end.

Reading (:func:`scan_frames`, :func:`read_frames`) never raises on bad bytes:
it returns the entries of the longest valid prefix and its length, so the
caller can truncate the file there before appending again.  It stops at the
first record that is cut off (*torn*: the normal result of a power cut,
including a zero-filled tail) or wrong (*corrupt*: a CRC mismatch, a declared
length of 0 or above ``max_record_bytes``, a CRC-valid record that is not an
entry, a sequence that does not increase), and says which and where.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, cast

from edgecfg.core.hlc import timestamp_from_compact
from edgecfg.core.journal import Journal, JournalEntry
from edgecfg.core.path import parse_path
from edgecfg.core.tree import UNSET, UnsetType, Value
from edgecfg.errors import EdgecfgError, PeerError, UsageError
from edgecfg.wire.cbor import DecodeLimits, decode, encode

MAX_RECORD_BYTES: Final = 64 * 1024
"""Largest entry (CBOR bytes) a record may declare; a larger length is corruption."""

LENGTH_SIZE: Final = 4
CRC_SIZE: Final = 4


class RecordTooLarge(UsageError):
    """An entry encodes to more bytes than a journal record may hold.

    Refused when writing, because a reader would take such a record, and
    everything after it, for corruption.
    """

    def __init__(self, *, path: str, size: int, limit: int) -> None:
        super().__init__(
            f"journal entry for {path} encodes to {size} bytes, above the record limit of {limit}"
        )
        self.path = path
        self.size = size
        self.limit = limit


@dataclass(frozen=True, slots=True)
class FrameDamage:
    """Where and why reading a journal file stopped before its end."""

    offset: int
    kind: Literal["torn", "corrupt"]
    reason: str

    def __str__(self) -> str:
        return f"{self.kind} journal record at byte offset {self.offset}: {self.reason}"


@dataclass(frozen=True, slots=True)
class FrameScan:
    """The valid prefix of a journal file: its entries, its length, and any damage after it."""

    entries: tuple[JournalEntry, ...]
    valid_length: int
    damage: FrameDamage | None


def frame(entry: JournalEntry, *, max_record_bytes: int = MAX_RECORD_BYTES) -> bytes:
    """The record for ``entry``: length, canonical CBOR, CRC-32 (module docstring).

    Raises :class:`RecordTooLarge` when the CBOR exceeds ``max_record_bytes``.
    """
    payload = encode(entry_to_value(entry))
    if len(payload) > max_record_bytes:
        raise RecordTooLarge(path=entry.dotted, size=len(payload), limit=max_record_bytes)
    head = len(payload).to_bytes(LENGTH_SIZE, "big")
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + payload + crc.to_bytes(CRC_SIZE, "big")


def frames(entries: Iterable[JournalEntry], *, max_record_bytes: int = MAX_RECORD_BYTES) -> bytes:
    """The records of ``entries`` one after another (a whole file, e.g. after compaction)."""
    return b"".join(frame(entry, max_record_bytes=max_record_bytes) for entry in entries)


def entry_to_value(entry: JournalEntry) -> Value:
    """The CBOR form of one entry (a record's payload; also what a state report carries)."""
    fields: list[Value] = [entry.sequence, entry.dotted, [*entry.at.to_compact()], entry.reason]
    if not isinstance(entry.value, UnsetType):
        fields.append(entry.value)
    return fields


def entry_from_value(value: Value) -> JournalEntry:
    """Inverse of :func:`entry_to_value`; raises :class:`BadEntry` naming what is wrong."""
    try:
        return _entry(value)
    except (_BadRecord, EdgecfgError) as error:
        raise BadEntry(f"not a journal entry: {error}") from None


class BadEntry(PeerError, ValueError):
    """A journal entry from a peer (a state report) is malformed."""


class _BadRecord(Exception):
    """A CRC-valid record whose content is not a journal entry."""


def scan_frames(
    data: bytes | bytearray | memoryview, *, max_record_bytes: int = MAX_RECORD_BYTES
) -> FrameScan:
    """The entries of the longest valid prefix of ``data``; never raises on bad bytes."""
    data = bytes(data)  # a copy: the scan must not see a buffer change under it
    limits = DecodeLimits(max_bytes=max_record_bytes)
    entries: list[JournalEntry] = []
    offset = 0
    previous = 0
    damage: FrameDamage | None = None
    while offset < len(data):
        damage = _record_damage(data, offset, max_record_bytes)
        if damage is not None:
            break
        length = int.from_bytes(data[offset : offset + LENGTH_SIZE], "big")
        start = offset + LENGTH_SIZE
        try:
            entry = _entry(decode(data[start : start + length], limits=limits))
        except (EdgecfgError, _BadRecord) as error:
            damage = FrameDamage(offset, "corrupt", f"not a journal entry: {error}")
            break
        if entry.sequence <= previous:
            reason = f"sequence {entry.sequence} does not follow {previous}"
            damage = FrameDamage(offset, "corrupt", reason)
            break
        entries.append(entry)
        previous = entry.sequence
        offset = start + length + CRC_SIZE
    return FrameScan(tuple(entries), offset, damage)


def read_frames(
    data: bytes | bytearray | memoryview, *, max_record_bytes: int = MAX_RECORD_BYTES
) -> tuple[list[JournalEntry], int]:
    """The entries of the longest valid prefix of ``data`` and that prefix's length.

    A torn or corrupt tail is cut off, never raised; see :func:`scan_frames`
    for the reason reading stopped.
    """
    scan = scan_frames(data, max_record_bytes=max_record_bytes)
    return list(scan.entries), scan.valid_length


def read_journal(
    data: bytes | bytearray | memoryview,
    *,
    acknowledged: int = 0,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> tuple[Journal, FrameScan]:
    """A :class:`Journal` from the valid prefix of a journal file, and the scan.

    ``acknowledged`` comes from wherever the agent keeps the gateway's last
    acknowledgement; the file itself holds entries only.
    """
    scan = scan_frames(data, max_record_bytes=max_record_bytes)
    return Journal.of(scan.entries, acknowledged=acknowledged), scan


def _record_damage(data: bytes, offset: int, max_record_bytes: int) -> FrameDamage | None:
    """Why the record at ``offset`` cannot be read (framing and CRC only), or None."""
    remaining = len(data) - offset
    if remaining < LENGTH_SIZE:
        return FrameDamage(offset, "torn", f"{remaining} bytes where a length prefix belongs")
    length = int.from_bytes(data[offset : offset + LENGTH_SIZE], "big")
    if length == 0:
        if not any(data[offset:]):
            return FrameDamage(offset, "torn", f"zero-filled tail of {remaining} bytes")
        return FrameDamage(offset, "corrupt", "declared length 0")
    if length > max_record_bytes:
        return FrameDamage(
            offset, "corrupt", f"declared length {length} exceeds the limit of {max_record_bytes}"
        )
    end = offset + LENGTH_SIZE + length + CRC_SIZE
    if end > len(data):
        return FrameDamage(
            offset, "torn", f"record of {end - offset} bytes cut off after {remaining}"
        )
    stored = int.from_bytes(data[end - CRC_SIZE : end], "big")
    actual = zlib.crc32(data[offset : end - CRC_SIZE])
    if stored != actual:
        return FrameDamage(offset, "corrupt", f"CRC-32 {actual:08x} does not match {stored:08x}")
    return None


def _entry(value: Value) -> JournalEntry:
    if not isinstance(value, list) or len(value) not in (4, 5):
        raise _BadRecord("expected [sequence, path, timestamp, reason, value?]")
    items = cast(list[Value], value)
    sequence, path, at, reason = items[:4]
    if type(sequence) is not int:
        raise _BadRecord(f"sequence {sequence!r} is not an integer")
    if not isinstance(path, str) or not isinstance(reason, str):
        raise _BadRecord("path and reason must be text")
    change: Value | UnsetType = items[4] if len(items) == 5 else UNSET
    return JournalEntry(parse_path(path), change, reason, timestamp_from_compact(at), sequence)
