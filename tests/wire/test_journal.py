"""Journal file framing: round trips, golden bytes, torn and corrupt files (wire.journal)."""

from __future__ import annotations

import math
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecfg.core.hlc import Timestamp
from edgecfg.core.journal import Journal, JournalEntry, entry_size_bound
from edgecfg.core.path import Path
from edgecfg.core.tree import UNSET, UnsetType, Value
from edgecfg.wire.cbor import encode
from edgecfg.wire.journal import (
    CRC_SIZE,
    LENGTH_SIZE,
    MAX_RECORD_BYTES,
    RecordTooLarge,
    frame,
    frames,
    read_frames,
    read_journal,
    scan_frames,
)
from tests.strategies import journal_entry_lists


def sample_entries() -> list[JournalEntry]:
    return [
        JournalEntry(
            ("net", "interval_s"), 900, "battery low", Timestamp(1_700_000_000_000, 0, "dev-7"), 1
        ),
        JournalEntry(("log", "level"), UNSET, "", Timestamp(1_700_000_000_000, 1, "dev-7"), 2),
        JournalEntry(
            ("a.b", "c"),
            {"k": [1, 2.5, None, b"\x00"], "é": True},
            "nested",
            Timestamp(5, 0, "d"),
            4,
        ),
        JournalEntry(("x",), math.nan, "nan", Timestamp(6, 0, "d"), 9),
        JournalEntry(("x",), None, "null is a value", Timestamp(7, 0, "d"), 10),
    ]


def boundaries(entries: list[JournalEntry]) -> list[int]:
    """Byte offsets where each record starts, plus the end of the file."""
    offsets = [0]
    for entry in entries:
        offsets.append(offsets[-1] + len(frame(entry)))
    return offsets


def framed_payload(payload: bytes) -> bytes:
    """A record with a correct length and CRC around arbitrary bytes."""
    head = len(payload).to_bytes(4, "big")
    return head + payload + zlib.crc32(head + payload).to_bytes(4, "big")


# ---------------------------------------------------------------- round trip and golden bytes


@given(journal_entry_lists())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_read_frames_of_frames_returns_the_entries(entries: list[JournalEntry]) -> None:
    data = frames(entries)
    read, length = read_frames(data)
    assert read == entries
    assert length == len(data)
    assert scan_frames(data).damage is None


@given(journal_entry_lists())
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_entry_size_bound_never_underestimates_a_record(entries: list[JournalEntry]) -> None:
    for entry in entries:
        assert len(frame(entry)) <= entry_size_bound(entry)


@pytest.mark.parametrize(
    ("entry", "hex_record"),
    [
        (
            JournalEntry(("net", "x"), 5, "hot", Timestamp(1000, 0, "dev"), 1),
            # length 22 | [1, "net.x", [1000, 0, "dev"], "hot", 5] | CRC-32
            "000000168501656e65742e78831903e8006364657663686f74058290767d",
        ),
        (
            JournalEntry(("net", "x"), UNSET, "undo", Timestamp(1000, 1, "dev"), 2),
            # a removal has no value: [2, "net.x", [1000, 1, "dev"], "undo"]
            "000000168402656e65742e78831903e8016364657664756e646ff7505812",
        ),
        (
            JournalEntry(("a.b",), None, "", Timestamp(0, 0, ""), 3),
            # dotted text escapes the dot; null is a value, not a removal
            "0000000d850364615c2e628300006060f6ef8541f4",
        ),
    ],
)
def test_golden_records(entry: JournalEntry, hex_record: str) -> None:
    assert frame(entry).hex() == hex_record
    assert read_frames(bytes.fromhex(hex_record)) == ([entry], len(hex_record) // 2)


def test_records_hold_the_canonical_encoding_of_the_entry() -> None:
    entry = sample_entries()[2]
    record = frame(entry)
    payload = record[LENGTH_SIZE:-CRC_SIZE]
    value = entry.value
    assert not isinstance(value, UnsetType)
    assert payload == encode([4, "a\\.b.c", [5, 0, "d"], "nested", value])
    assert int.from_bytes(record[:LENGTH_SIZE], "big") == len(payload)


# ---------------------------------------------------------------- torn and corrupt files


def test_every_truncation_point_yields_the_complete_records_before_it() -> None:
    entries = sample_entries()
    data = frames(entries)
    starts = boundaries(entries)
    for cut in range(len(data) + 1):
        scan = scan_frames(data[:cut])
        complete = max(index for index, start in enumerate(starts) if start <= cut)
        assert list(scan.entries) == entries[:complete], cut
        assert scan.valid_length == starts[complete]
        if cut == starts[complete]:
            assert scan.damage is None
        else:
            assert scan.damage is not None
            assert (scan.damage.kind, scan.damage.offset) == ("torn", starts[complete])


def test_every_single_bit_flip_stops_reading_at_the_damaged_record() -> None:
    entries = sample_entries()
    data = frames(entries)
    starts = boundaries(entries)
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        scan = scan_frames(bytes(flipped))
        hit = max(index for index, start in enumerate(starts[:-1]) if start <= bit // 8)
        assert list(scan.entries) == entries[:hit], bit
        assert scan.valid_length == starts[hit]
        assert scan.damage is not None and scan.damage.offset == starts[hit]


def test_a_corrupt_record_in_the_middle_stops_reading_and_is_reported() -> None:
    entries = sample_entries()
    data = bytearray(frames(entries))
    starts = boundaries(entries)
    data[starts[2] + 6] ^= 0xFF  # inside the third record's CBOR
    entries_read, length = read_frames(bytes(data))
    assert entries_read == entries[:2]
    assert length == starts[2]
    damage = scan_frames(bytes(data)).damage
    assert damage is not None
    assert damage.kind == "corrupt"
    assert "CRC-32" in damage.reason
    assert str(damage).startswith(f"corrupt journal record at byte offset {starts[2]}: CRC-32")


@pytest.mark.parametrize(
    ("tail", "kind", "reason"),
    [
        (b"\x00\x00", "torn", "2 bytes where a length prefix belongs"),
        (bytes(40), "torn", "zero-filled tail of 40 bytes"),
        (b"\x00\x00\x00\x00\x01", "corrupt", "declared length 0"),
        ((MAX_RECORD_BYTES + 1).to_bytes(4, "big") + bytes(8), "corrupt", "exceeds the limit"),
        (b"\x00\x00\x00\x10abc", "torn", "record of 24 bytes cut off after 7"),
        (framed_payload(b"\xff"), "corrupt", "not a journal entry"),
        (framed_payload(encode({"seq": 1})), "corrupt", "expected [sequence, path"),
        (framed_payload(encode([9, "a", [1, 0, "d"]])), "corrupt", "expected [sequence"),
        (framed_payload(encode([9, "a", [1, 0, "d"], "", 1, 2])), "corrupt", "expected [sequence"),
        (framed_payload(encode(["9", "a", [1, 0, "d"], ""])), "corrupt", "is not an integer"),
        (framed_payload(encode([True, "a", [1, 0, "d"], ""])), "corrupt", "is not an integer"),
        (
            framed_payload(encode([9, 1, [1, 0, "d"], ""])),
            "corrupt",
            "path and reason must be text",
        ),
        (
            framed_payload(encode([9, "a", [1, 0, "d"], b""])),
            "corrupt",
            "path and reason must be text",
        ),
        (framed_payload(encode([9, "a..b", [1, 0, "d"], ""])), "corrupt", "empty key"),
        (framed_payload(encode([9, "", [1, 0, "d"], ""])), "corrupt", "non-empty path"),
        (framed_payload(encode([9, "a", [1, 0], ""])), "corrupt", "3 elements"),
        (framed_payload(encode([0, "a", [1, 0, "d"], ""])), "corrupt", "sequence must be"),
        (
            framed_payload(encode([3, "a", [1, 0, "d"], ""])),
            "corrupt",
            "sequence 3 does not follow 3",
        ),
        (framed_payload(bytes.fromhex("c1")), "corrupt", "not a journal entry"),  # a tag
    ],
)
def test_bad_tails_are_cut_off_and_described(tail: bytes, kind: str, reason: str) -> None:
    good = frames(sample_entries()[:1])
    head = frames([JournalEntry(("a",), 1, "", Timestamp(0, 0, "d"), 3)])
    data = good + head + tail
    scan = scan_frames(data)
    assert [entry.sequence for entry in scan.entries] == [1, 3]
    assert scan.valid_length == len(good + head)
    assert scan.damage is not None
    assert scan.damage.kind == kind
    assert reason in scan.damage.reason
    assert scan.damage.offset == len(good + head)


def test_the_record_limit_is_a_parameter_for_writing_and_reading() -> None:
    entry = JournalEntry(("blob",), b"x" * 200, "", Timestamp(0, 0, "d"), 1)
    with pytest.raises(
        RecordTooLarge, match="blob encodes to 215 bytes, above the record limit of 100"
    ) as caught:
        frame(entry, max_record_bytes=100)
    assert (caught.value.path, caught.value.limit) == ("blob", 100)
    record = frame(entry)
    assert read_frames(record) == ([entry], len(record))
    assert read_frames(record, max_record_bytes=100) == ([], 0)
    with pytest.raises(RecordTooLarge):
        frame(JournalEntry(("blob",), b"x" * MAX_RECORD_BYTES, "", Timestamp(0, 0, "d"), 1))


@given(st.binary(max_size=200))
def test_reading_arbitrary_bytes_never_raises(data: bytes) -> None:
    scan = scan_frames(data)
    assert 0 <= scan.valid_length <= len(data)
    assert (scan.damage is None) == (scan.valid_length == len(data))


def test_reading_accepts_any_bytes_like_buffer() -> None:
    data = frames(sample_entries())
    assert read_frames(bytearray(data))[0] == sample_entries()
    assert read_frames(memoryview(data))[0] == sample_entries()
    assert read_frames(b"") == ([], 0)


# ---------------------------------------------------------------- journals on disk


def test_a_compacted_journal_rewritten_and_read_back_keeps_overrides_and_sequence() -> None:
    journal = Journal()
    for index in range(30):
        path: Path = ("k", str(index % 4))
        value: Value | UnsetType = UNSET if index % 7 == 0 else index
        journal, _ = journal.record(path, value, reason="r", at=Timestamp(index, 0, "d"))
    journal = journal.acknowledge(25)
    compacted = journal.compact(max_entries=6, max_bytes=4096)
    data = frames(compacted.entries)
    read, scan = read_journal(data, acknowledged=25)
    assert scan.damage is None
    assert read == compacted
    assert read.overrides() == journal.overrides()
    assert read.next_sequence == journal.next_sequence == 31
    assert sum(entry_size_bound(entry) for entry in compacted.entries) <= 4096
    assert len(data) <= 4096


def test_a_torn_append_is_recovered_by_truncating_to_the_valid_prefix() -> None:
    entries = sample_entries()
    data = frames(entries[:3]) + frame(entries[3])[:-2]  # power cut during the 4th append
    journal, scan = read_journal(data)
    assert list(journal.entries) == entries[:3]
    assert scan.damage is not None
    assert (scan.damage.kind, scan.damage.offset) == ("torn", len(frames(entries[:3])))
    repaired = data[: scan.valid_length] + frame(entries[4])
    assert read_frames(repaired)[0] == [*entries[:3], entries[4]]
