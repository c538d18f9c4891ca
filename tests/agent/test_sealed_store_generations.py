# pyright: strict
"""The device store: generations, last-known-good, corruption recovery (its keys
and record sealing: ``tests/test_crypto.py``).

Crash safety (prefix replay, kill -9, ENOSPC/EIO) is in ``test_sealed_store_crash.py``.
"""

from __future__ import annotations

import errno
import os
import random
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecfg.agent.fs_doubles import FaultyFileSystem, MemoryFileSystem
from edgecfg.agent.sealed_store import (
    REAL_FS,
    RECORD_OVERHEAD,
    DeviceStore,
    NothingToRevert,
    SlotName,
    StoreEventKind,
    UnknownGeneration,
)
from edgecfg.crypto import (
    RecordCipher,
    derive_store_key,
)
from edgecfg.errors import UsageError
from edgecfg.wire.cbor import Encoded, etag_of_bytes

SECRET = bytes(range(32))
KEY = derive_store_key(SECRET, "dev-0042")
OTHER_KEY = derive_store_key(SECRET, "dev-0043")

Kind = StoreEventKind


def config(n: int) -> Encoded:
    return Encoded.of({"name": f"config-{n}", "net": {"interval_s": 60 + n, "secret": "s3cr3t"}})


def kinds(store: DeviceStore) -> list[tuple[Kind, SlotName | None]]:
    return [(event.kind, event.slot) for event in store.load().events]


@pytest.fixture
def store(tmp_path: Path) -> DeviceStore:
    return DeviceStore(tmp_path / "store", key=KEY)


def three_commits(store: DeviceStore) -> None:
    """c1 -> slot a, c2 -> slot b, c3 -> slot a; nothing marked good."""
    for n in (1, 2, 3):
        store.commit(config(n))


# ----------------------------------------------------------------- basics


def test_fresh_store_has_nothing_and_needs_a_full_sync(store: DeviceStore) -> None:
    loaded = store.load()
    assert (loaded.current, loaded.last_known_good, loaded.events) == (None, None, ())
    assert loaded.resync_needed
    assert store.current() is None


def test_commit_round_trips_through_a_new_store_instance(store: DeviceStore) -> None:
    generation = store.commit(config(1))
    loaded = DeviceStore(store.directory, key=KEY).load()
    assert loaded.current is not None and loaded.current == generation
    assert loaded.current.config == config(1)
    assert loaded.events == ()


def test_generation_numbers_strictly_increase_across_reopen(store: DeviceStore) -> None:
    numbers = [store.commit(config(n)).number for n in range(3)]
    reopened = DeviceStore(store.directory, key=KEY)
    numbers.append(reopened.commit(config(9)).number)
    assert numbers == [1, 2, 3, 4]


def test_commits_alternate_slots_when_nothing_is_good(store: DeviceStore) -> None:
    assert [store.commit(config(n)).slot for n in range(4)] == ["a", "b", "a", "b"]


def test_slot_file_layout_and_size(store: DeviceStore) -> None:
    store.commit(config(1))
    data = Path(store.slot_path("a")).read_bytes()
    assert data[:8] == b"ECDS\x01a\x00\x00"
    assert int.from_bytes(data[8:16], "big") == 1
    assert len(data) == RECORD_OVERHEAD + len(config(1).cbor) == 61 + len(config(1).cbor)
    assert b"s3cr3t" not in data  # encrypted at rest
    assert stat.S_IMODE(os.stat(store.slot_path("a")).st_mode) == 0o600


def test_every_write_uses_a_fresh_nonce(store: DeviceStore) -> None:
    store.commit(config(1))
    store.commit(config(1))
    store.commit(config(1))
    first = Path(store.slot_path("a")).read_bytes()
    store.mark_good(3)
    second = Path(store.slot_path("a")).read_bytes()
    nonce_b = Path(store.slot_path("b")).read_bytes()[16:28]
    assert len({first[16:28], second[16:28], nonce_b}) == 3


def test_commit_refuses_an_encoded_whose_etag_does_not_match(store: DeviceStore) -> None:
    good = config(1)
    forged = Encoded(good.tree, good.cbor, config(2).etag)
    with pytest.raises(UsageError, match="ETag"):
        store.commit(forged)


# ------------------------------------------------------ last-known-good


def test_last_known_good_survives_commits_of_bad_configs(store: DeviceStore) -> None:
    store.commit(config(1))
    store.mark_good(1)
    bad = [store.commit(config(n)) for n in (2, 3, 4)]
    assert {generation.slot for generation in bad} == {"b"}  # never slot a, the good one
    loaded = DeviceStore(store.directory, key=KEY).load()
    assert loaded.current is not None and loaded.current.config == config(4)
    assert loaded.last_known_good is not None
    assert (loaded.last_known_good.number, loaded.last_known_good.config) == (1, config(1))


def test_revert_returns_last_known_good_and_persists(store: DeviceStore) -> None:
    store.commit(config(1))
    store.mark_good(1)
    store.commit(config(2))
    assert store.revert() == config(1)
    assert store.current() == config(1)
    loaded = DeviceStore(store.directory, key=KEY).load()
    assert loaded.current is not None and loaded.current.config == config(1)
    assert loaded.current.number == 3  # a new generation, not a step back in numbers
    assert loaded.current.good and loaded.last_known_good == loaded.current


def test_revert_when_current_is_good_writes_nothing(store: DeviceStore) -> None:
    store.commit(config(1))
    store.mark_good(1)
    before = Path(store.slot_path("a")).read_bytes()
    assert store.revert() == config(1)
    assert Path(store.slot_path("a")).read_bytes() == before
    assert not Path(store.slot_path("b")).exists()


def test_revert_without_last_known_good_raises(store: DeviceStore) -> None:
    store.commit(config(1))
    with pytest.raises(NothingToRevert):
        store.revert()


def test_mark_good_persists_and_moves_the_next_commit(store: DeviceStore) -> None:
    store.commit(config(1))
    store.commit(config(2))
    marked = store.mark_good(2)
    assert (marked.number, marked.slot, marked.good) == (2, "b", True)
    reopened = DeviceStore(store.directory, key=KEY)
    assert reopened.last_known_good() == config(2)
    assert reopened.commit(config(3)).slot == "a"
    assert reopened.mark_good(2) == marked  # already good: a no-op


def test_mark_good_of_an_unknown_generation_raises(store: DeviceStore) -> None:
    store.commit(config(1))
    with pytest.raises(UnknownGeneration, match="no generation 7"):
        store.mark_good(7)


# ---------------------------------------------------------- corruption


def flip(offset: int) -> Callable[[bytes], bytes]:
    def corrupt(data: bytes) -> bytes:
        position = offset % len(data)
        return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]

    return corrupt


def truncate(length: int) -> Callable[[bytes], bytes]:
    return lambda data: data[:length]


def relabel(data: bytes) -> bytes:
    return data[:5] + (b"b" if data[5:6] == b"a" else b"a") + data[6:]


CORRUPTIONS: dict[str, tuple[Callable[[bytes], bytes], Kind]] = {
    "flip-magic": (flip(0), Kind.BAD_HEADER),
    "flip-version": (flip(4), Kind.BAD_HEADER),
    "flip-slot-letter": (flip(5), Kind.BAD_HEADER),
    "flip-reserved": (flip(7), Kind.BAD_HEADER),
    "flip-generation": (flip(15), Kind.AUTHENTICATION_FAILED),
    "flip-nonce": (flip(20), Kind.AUTHENTICATION_FAILED),
    "flip-ciphertext": (flip(40), Kind.AUTHENTICATION_FAILED),
    "flip-tag": (flip(-1), Kind.AUTHENTICATION_FAILED),
    "truncate-empty": (truncate(0), Kind.BAD_HEADER),
    "truncate-header": (truncate(20), Kind.BAD_HEADER),
    "truncate-body": (truncate(61), Kind.AUTHENTICATION_FAILED),
    "truncate-last-byte": (lambda data: data[:-1], Kind.AUTHENTICATION_FAILED),
    "append-byte": (lambda data: data + b"\x00", Kind.AUTHENTICATION_FAILED),
    "foreign-text": (lambda _: b"hello, I am not a store record\n" * 4, Kind.BAD_HEADER),
    "foreign-random": (lambda _: random.Random(6).randbytes(200), Kind.BAD_HEADER),
    "future-version": (lambda data: data[:4] + b"\x02" + data[5:], Kind.BAD_HEADER),
    "relabelled-slot": (relabel, Kind.WRONG_SLOT),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
@pytest.mark.parametrize(("slot", "survivor"), [("a", 2), ("b", 3)])
def test_corrupt_slot_is_detected_and_the_other_generation_used(
    store: DeviceStore, name: str, slot: SlotName, survivor: int
) -> None:
    three_commits(store)
    corrupt, kind = CORRUPTIONS[name]
    path = Path(store.slot_path(slot))
    path.write_bytes(corrupt(path.read_bytes()))
    loaded = DeviceStore(store.directory, key=KEY).load()
    other: SlotName = "b" if slot == "a" else "a"
    assert [(e.kind, e.slot) for e in loaded.events] == [(kind, slot), (Kind.RECOVERED, other)]
    assert loaded.current is not None
    assert (loaded.current.number, loaded.current.config) == (survivor, config(survivor))


@pytest.mark.parametrize(("slot", "survivor", "held"), [("a", 2, 1), ("b", 3, 2)])
def test_missing_slot_file_is_reported(
    store: DeviceStore, slot: SlotName, survivor: int, held: int
) -> None:
    three_commits(store)
    os.remove(store.slot_path(slot))
    loaded = DeviceStore(store.directory, key=KEY).load()
    assert loaded.events[0].kind is Kind.MISSING and loaded.events[0].slot == slot
    assert loaded.events[0].generation == held
    assert loaded.current is not None and loaded.current.number == survivor


def test_record_copied_into_the_other_slot_is_detected(store: DeviceStore) -> None:
    three_commits(store)
    Path(store.slot_path("b")).write_bytes(Path(store.slot_path("a")).read_bytes())
    assert kinds(store) == [(Kind.WRONG_SLOT, "b"), (Kind.RECOVERED, "a")]


def test_copied_record_with_relabelled_header_fails_authentication(store: DeviceStore) -> None:
    three_commits(store)
    data = Path(store.slot_path("a")).read_bytes()
    Path(store.slot_path("b")).write_bytes(data[:5] + b"b" + data[6:])
    assert kinds(store) == [(Kind.AUTHENTICATION_FAILED, "b"), (Kind.RECOVERED, "a")]


def test_record_of_another_device_fails_authentication(tmp_path: Path) -> None:
    mine, theirs = (
        DeviceStore(tmp_path / name, key=k) for name, k in (("m", KEY), ("t", OTHER_KEY))
    )
    three_commits(mine)
    three_commits(theirs)
    Path(mine.slot_path("a")).write_bytes(Path(theirs.slot_path("a")).read_bytes())
    assert kinds(mine) == [(Kind.AUTHENTICATION_FAILED, "a"), (Kind.RECOVERED, "b")]


def test_stale_copy_of_the_older_slot_is_detected_as_rollback(store: DeviceStore) -> None:
    store.commit(config(1))  # slot a, generation 1
    stale = Path(store.slot_path("a")).read_bytes()
    for n in (2, 3, 4):  # b, a, b
        store.commit(config(n))
    Path(store.slot_path("a")).write_bytes(stale)  # generation 1 where 3 was
    loaded = DeviceStore(store.directory, key=KEY).load()
    assert [(e.kind, e.slot, e.generation) for e in loaded.events] == [
        (Kind.ROLLED_BACK, "a", 1),
        (Kind.RECOVERED, "b", 4),
    ]
    assert loaded.current is not None and loaded.current.config == config(4)


def test_stale_copy_of_the_newest_slot_looks_like_a_crash(store: DeviceStore) -> None:
    """A known limit: only a counter outside the store could tell these apart."""
    for n in (1, 2, 3):
        store.commit(config(n))
    stale = Path(store.slot_path("a")).read_bytes()  # generation 3
    store.commit(config(4))  # slot b
    store.commit(config(5))  # slot a
    Path(store.slot_path("a")).write_bytes(stale)
    loaded = DeviceStore(store.directory, key=KEY).load()
    # Generation 5 is lost silently, exactly as if power failed before its
    # rename; generation 4 (whose record says slot a held 3) is current.
    assert loaded.events == ()
    assert loaded.current is not None and loaded.current.number == 4


def test_lost_good_mark_is_safe(store: DeviceStore) -> None:
    store.commit(config(1))
    unmarked = Path(store.slot_path("a")).read_bytes()
    store.mark_good(1)
    Path(store.slot_path("a")).write_bytes(unmarked)
    loaded = DeviceStore(store.directory, key=KEY).load()
    assert loaded.current is not None and loaded.last_known_good is None


def test_wrong_key_fails_both_slots_and_needs_a_resync(store: DeviceStore) -> None:
    three_commits(store)
    stranger = DeviceStore(store.directory, key=OTHER_KEY)
    loaded = stranger.load()
    assert loaded.resync_needed and loaded.current is None and loaded.last_known_good is None
    assert [(e.kind, e.slot) for e in loaded.events] == [
        (Kind.AUTHENTICATION_FAILED, "a"),
        (Kind.AUTHENTICATION_FAILED, "b"),
        (Kind.RESYNC_NEEDED, None),
    ]
    # The full resync's config is committed under the new key, numbered
    # above anything the old headers claimed, and replaces the damage.
    assert stranger.commit(config(7)).number == 4
    assert kinds(stranger) == [(Kind.AUTHENTICATION_FAILED, "b"), (Kind.RECOVERED, "a")]
    stranger.commit(config(8))
    assert kinds(stranger) == []
    assert stranger.current() == config(8)


def test_both_slots_corrupt_needs_a_resync(store: DeviceStore) -> None:
    three_commits(store)
    for slot in ("a", "b"):
        Path(store.slot_path(slot)).write_bytes(b"\x00" * 100)
    loaded = DeviceStore(store.directory, key=KEY).load()
    assert loaded.current is None and loaded.events[-1].kind is Kind.RESYNC_NEEDED


def test_commit_after_corruption_overwrites_the_damaged_slot(store: DeviceStore) -> None:
    store.commit(config(1))
    store.mark_good(1)
    store.commit(config(2))  # slot b
    Path(store.slot_path("a")).write_bytes(b"junk")  # the last-known-good is lost
    reopened = DeviceStore(store.directory, key=KEY)
    assert reopened.load().last_known_good is None
    assert reopened.commit(config(3)).slot == "a"  # keeps generation 2, the only survivor
    loaded = reopened.load()
    assert loaded.events == () and loaded.current is not None and loaded.current.number == 3


def test_oversized_slot_file_is_refused_without_reading_it_all(store: DeviceStore) -> None:
    three_commits(store)
    with open(store.slot_path("a"), "ab") as handle:
        handle.truncate(5 * 1024 * 1024)
    assert kinds(store) == [(Kind.BAD_HEADER, "a"), (Kind.RECOVERED, "b")]


def test_unreadable_slot_is_reported(store: DeviceStore) -> None:
    three_commits(store)
    faulty = FaultyFileSystem(REAL_FS, fail_at=0, error=errno.EIO)  # the first read: slot a
    loaded = DeviceStore(store.directory, key=KEY, fs=faulty).load()
    assert [(e.kind, e.slot) for e in loaded.events] == [
        (Kind.UNREADABLE, "a"),
        (Kind.RECOVERED, "b"),
    ]
    assert "Input/output error" in loaded.events[0].detail


def test_events_accumulate_until_taken(store: DeviceStore) -> None:
    three_commits(store)
    Path(store.slot_path("b")).write_bytes(b"junk")
    reopened = DeviceStore(store.directory, key=KEY)
    reopened.load()
    reopened.load()  # the same findings are not reported twice
    taken = reopened.take_events()
    assert [event.kind for event in taken] == [Kind.BAD_HEADER, Kind.RECOVERED]
    assert str(taken[0]).startswith("bad-header: slot-b: file of 4 bytes is truncated")
    assert reopened.take_events() == ()


def sealed_by_hand(slot: str, number: int, body: bytes) -> bytes:
    """A slot file built from the layout documented in ``edgecfg.agent.sealed_store``."""
    aad = b"ECDS\x01" + slot.encode() + b"\x00\x00" + number.to_bytes(8, "big")
    nonce, sealed = RecordCipher(KEY).seal(body, aad)
    return aad + nonce + sealed


def body(cbor: bytes, *, flags: int = 0, other: int = 0, etag: bytes | None = None) -> bytes:
    return bytes([flags]) + other.to_bytes(8, "big") + (etag or etag_of_bytes(cbor)) + cbor


def test_record_built_from_the_documented_layout_loads(store: DeviceStore) -> None:
    Path(store.directory).mkdir()
    Path(store.slot_path("b")).write_bytes(sealed_by_hand("b", 5, body(config(1).cbor, flags=1)))
    loaded = store.load()
    assert loaded.events == () and loaded.current is not None
    assert (loaded.current.number, loaded.current.slot, loaded.current.good) == (5, "b", True)
    assert loaded.current.config == config(1)
    assert store.commit(config(2)).number == 6


BAD_BODIES: dict[str, bytes] = {
    "etag-mismatch": body(config(1).cbor, etag=b"\x00" * 8),
    "unknown-flag": body(config(1).cbor, flags=0x02),
    "link-not-older": body(config(1).cbor, other=5),
    "not-a-map": body(b"\x01"),
    "trailing-bytes": body(config(1).cbor + b"\x00"),
    "indefinite-length": body(b"\xbf\xff"),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_authenticated_but_malformed_record_is_bad_content(store: DeviceStore, name: str) -> None:
    three_commits(store)  # slot b holds generation 2
    Path(store.slot_path("b")).write_bytes(sealed_by_hand("b", 5, BAD_BODIES[name]))
    assert kinds(store) == [(Kind.BAD_CONTENT, "b"), (Kind.RECOVERED, "a")]


def test_a_store_refuses_a_key_of_the_wrong_size(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="32 bytes"):
        DeviceStore(tmp_path, key=b"short")


# ---------------------------------------------------------------- generations against a model

store_actions = st.lists(
    st.one_of(
        st.tuples(st.just("commit"), st.integers(0, 5)),
        st.tuples(st.just("mark_good"), st.integers(0, 12)),
        st.tuples(st.just("mark_current_good"), st.just(0)),
        st.tuples(st.just("revert"), st.just(0)),
        st.tuples(st.just("reopen"), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(store_actions)
def test_generations_follow_a_model_of_two_slots(actions: list[tuple[str, int]]) -> None:
    """After any sequence of commits, marks and reverts, current and
    last-known-good are what a plain model of two slots says, in memory and
    after reopening the store: a commit keeps the last-known-good (or, with
    none, the current) and replaces the other slot; a revert commits the
    last-known-good again, as good."""
    fs = MemoryFileSystem()
    fs.make_dir("/data")
    store = DeviceStore("/data/store", key=KEY, fs=fs)
    held: dict[int, tuple[Encoded, bool]] = {}  # generation -> (config, good): the two slots
    next_number = 1

    def model_current() -> int | None:
        return max(held, default=None)

    def model_good() -> int | None:
        return max((n for n, (_, good) in held.items() if good), default=None)

    for action, argument in actions:
        if action == "commit":
            kept = model_good() or model_current()
            generation = store.commit(config(argument))
            assert generation.number == next_number
            held = {**({kept: held[kept]} if kept else {}), next_number: (config(argument), False)}
            next_number += 1
        elif action in ("mark_good", "mark_current_good"):
            number = (model_current() or 0) if action == "mark_current_good" else argument
            if number in held:
                assert store.mark_good(number).number == number
                held[number] = (held[number][0], True)
            else:
                with pytest.raises(UnknownGeneration):
                    store.mark_good(number)
        elif action == "revert":
            good, current = model_good(), model_current()
            if good is None:
                with pytest.raises(NothingToRevert):
                    store.revert()
            else:
                assert store.revert() == held[good][0]
                if current != good:
                    held = {good: held[good], next_number: (held[good][0], True)}
                    next_number += 1
        else:
            store = DeviceStore("/data/store", key=KEY, fs=fs)
        for view in (store, DeviceStore("/data/store", key=KEY, fs=fs)):
            current, good = model_current(), model_good()
            assert view.current() == (held[current][0] if current else None)
            assert view.last_known_good() == (held[good][0] if good else None)
        loaded = DeviceStore("/data/store", key=KEY, fs=fs).load()
        assert loaded.events == ()
        assert {g.number for g in (loaded.current, loaded.last_known_good) if g} <= set(held)
