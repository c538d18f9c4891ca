# pyright: strict
"""Crash safety of the device store: every prefix of its I/O, kill -9, ENOSPC and EIO.

The crash model
---------------
A :class:`RecordingFileSystem` records the store's primitive operations
for a sequence of commits, ``mark_good`` and ``revert``.  For every prefix
of that list, :class:`CrashDisk` computes the disks a power cut right after
the prefix could leave.  It tracks what the kernel promises:

- A file is an inode with a *visible* content (what the process reads) and
  a *durable* one (the visible content as of its last ``fsync``; empty for
  a file never fsynced).  ``open_write`` (O_TRUNC) and ``write`` change only
  the visible content.
- The directory maps names to inodes twice: visibly, and durably (as of
  the last ``fsync_dir``).  Creating, renaming and removing change only the
  visible map.  Inodes are never freed, so a file displaced by a rename can
  come back when the rename is lost.

The crash models, each a function from that state to a disk:

(a) ``APPLIED``: every operation before the crash point took effect
    (visible names, visible contents), as after a kill -9.
(b) ``DATA_LOST``: unsynced data is dropped, names are kept (metadata is
    journaled, data is not: ext4 ``data=writeback``, XFS).  Every file holds
    its durable content, so a file written and renamed without its data
    fsync is empty (a new inode) or holds its old content (truncated in
    place).
(c) ``TORN``: as (a), but the last write not yet fsynced is torn: only a
    prefix of it, of a length drawn from a seeded RNG, reached the disk.
(d) ``METADATA_LOST``: the harshest: the durable names, each with its
    durable content, so a rename or a creation not followed by a directory
    fsync is undone.

A crash inside store operation *i* must leave a disk from which ``load()``
returns exactly the state before or after operation *i* (the current
generation and ETag and the last-known-good generation and ETag, together),
authenticated, with no corruption events, and a store that goes on
working: a new commit is loaded back and keeps the last-known-good.  Two
tests check the harness itself: without the data fsync it finds violations
under (b) and (c); without the directory fsync, under (d).

Not modelled: reordering across an fsync (it is a barrier), damage to
synced data (``test_sealed_store_generations.py`` covers corruption) and the creation of the
store directory itself (the tests create it first).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import random
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from edgecfg.agent.fs_doubles import (
    FaultyFileSystem,
    MemoryFileSystem,
    Operation,
    RecordingFileSystem,
)
from edgecfg.agent.sealed_store import (
    REAL_FS,
    CommitFailed,
    DeviceStore,
    FileHandle,
    Loaded,
    NothingToRevert,
)
from edgecfg.crypto import derive_store_key
from edgecfg.wire.cbor import Encoded

KEY = derive_store_key(bytes(range(32)), "dev-0042")
DIRECTORY = "/dev0042/store"
WORKER = Path(__file__).with_name("crash_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def config(n: int) -> Encoded:
    """Configurations of varied sizes, so torn writes cut at varied places."""
    return Encoded.of({"n": n, "pad": random.Random(n).randbytes(37 * n % 500)})


Snapshot = tuple[tuple[int, bytes] | None, tuple[int, bytes] | None]
"""(current generation and ETag, last-known-good generation and ETag)."""


def snapshot(loaded: Loaded) -> Snapshot:
    current, good = loaded.current, loaded.last_known_good
    return (
        (current.number, current.etag) if current else None,
        (good.number, good.etag) if good else None,
    )


# ------------------------------------------------------------ crash model


class CrashModel(enum.Enum):
    APPLIED = "applied"
    DATA_LOST = "data-lost"
    TORN = "torn"
    METADATA_LOST = "metadata-lost"


@dataclass
class _Inode:
    visible: bytes = b""
    durable: bytes = b""


@dataclass(frozen=True)
class _Write:
    inode: int
    before: bytes
    data: bytes


@dataclass
class CrashDisk:
    """The kernel's promises about one directory tree; see the module docstring."""

    inodes: list[_Inode] = field(default_factory=list[_Inode])
    names: dict[str, int] = field(default_factory=dict[str, int])
    durable_names: dict[str, int] = field(default_factory=dict[str, int])
    handles: dict[FileHandle, int] = field(default_factory=dict[FileHandle, int])
    unsynced: list[_Write] = field(default_factory=list[_Write])

    def apply(self, operation: Operation) -> None:
        kind, path = operation.kind, operation.path
        if kind == "open_write":
            inode = self.names.get(path)
            if inode is None:
                inode = self.names[path] = len(self.inodes)
                self.inodes.append(_Inode())
            self.inodes[inode].visible = b""
            assert operation.handle is not None
            self.handles[operation.handle] = inode
        elif kind in ("write", "fsync", "close"):
            assert operation.handle is not None
            inode = self.handles[operation.handle]
            node = self.inodes[inode]
            if kind == "write":
                self.unsynced.append(_Write(inode, node.visible, operation.data))
                node.visible += operation.data
            elif kind == "fsync":
                node.durable = node.visible
                self.unsynced = [w for w in self.unsynced if w.inode != inode]
            else:
                del self.handles[operation.handle]
        elif kind == "rename":
            self.names[operation.target] = self.names.pop(path)
        elif kind == "remove":
            del self.names[path]
        elif kind == "fsync_dir":
            inside = {name for name in self.names if os.path.dirname(name) == path}
            for name in [n for n in self.durable_names if os.path.dirname(n) == path]:
                del self.durable_names[name]
            self.durable_names.update((name, self.names[name]) for name in inside)

    def crash(self, model: CrashModel, rng: random.Random) -> dict[str, bytes]:
        """The disk a power cut now could leave under ``model``."""
        if model is CrashModel.DATA_LOST:
            return {name: self.inodes[i].durable for name, i in self.names.items()}
        if model is CrashModel.METADATA_LOST:
            return {name: self.inodes[i].durable for name, i in self.durable_names.items()}
        files = {name: self.inodes[i].visible for name, i in self.names.items()}
        if model is CrashModel.TORN and self.unsynced:
            last = self.unsynced[-1]
            torn = last.before + last.data[: rng.randrange(len(last.data) or 1)]
            files.update((n, torn) for n, i in self.names.items() if i == last.inode)
        return files


# --------------------------------------------------------------- scenarios

Action = Literal["commit", "mark_good", "revert"]
Step = tuple[Action, int]


@dataclass
class Recording:
    operations: list[Operation]
    bounds: list[tuple[int, int]]  # mutations [start, end) of each step
    snapshots: list[Snapshot]  # before the first step, then after each


def record(steps: list[Step], recording: RecordingFileSystem) -> Recording:
    store = DeviceStore(DIRECTORY, key=KEY, fs=recording)
    snapshots, bounds = [snapshot(store.load())], list[tuple[int, int]]()
    for action, argument in steps:
        start = len(recording.mutations())
        if action == "commit":
            store.commit(config(argument))
        elif action == "mark_good":
            current = store.load().current
            if current is not None:
                store.mark_good(current.number)
        else:
            with contextlib.suppress(NothingToRevert):
                store.revert()
        bounds.append((start, len(recording.mutations())))
        snapshots.append(snapshot(store.load()))
    return Recording(recording.mutations(), bounds, snapshots)


def check_disk(files: dict[str, bytes], allowed: set[Snapshot]) -> str | None:
    """What is wrong with recovering from ``files``, or None."""
    fs = MemoryFileSystem(files)
    store = DeviceStore(DIRECTORY, key=KEY, fs=fs)
    loaded = store.load()
    if loaded.events:
        return f"events {[str(event) for event in loaded.events]}"
    if snapshot(loaded) not in allowed:
        return f"loaded {snapshot(loaded)}, expected one of {allowed}"
    store.commit(config(999))
    again = DeviceStore(DIRECTORY, key=KEY, fs=fs).load()
    kept = snapshot(loaded)[1]
    if again.events or again.current is None or again.current.config != config(999):
        return f"commit after recovery did not stick: {again}"
    if snapshot(again)[1] != kept:
        return f"commit after recovery changed the last-known-good {kept} to {snapshot(again)[1]}"
    return None


def replay(recording: Recording, models: tuple[CrashModel, ...], seed: int = 0) -> list[str]:
    """Violations over every prefix of the recorded mutations under ``models``."""
    disk, violations = CrashDisk(), list[str]()
    for point in range(len(recording.operations) + 1):
        if point:
            disk.apply(recording.operations[point - 1])
        step = next(i for i, (start, end) in enumerate(recording.bounds) if start <= point <= end)
        allowed = {recording.snapshots[step], recording.snapshots[step + 1]}
        for model in models:
            for variant in range(3 if model is CrashModel.TORN else 1):
                rng = random.Random(f"{seed}/{point}/{variant}")
                problem = check_disk(disk.crash(model, rng), allowed)
                if problem:
                    done = recording.operations[point - 1] if point else None
                    violations.append(f"{model.value} after {point} ops ({done}): {problem}")
    return violations


SCENARIO: list[Step] = [
    ("commit", 1),
    ("commit", 2),
    ("mark_good", 0),
    ("commit", 3),  # a bad config: goes beside the last-known-good
    ("commit", 4),  # and another, overwriting the bad one
    ("revert", 0),
    ("commit", 5),
    ("mark_good", 0),
    ("commit", 6),
]
ALL_MODELS = tuple(CrashModel)


ACTIONS: tuple[Action, ...] = (
    "commit",
    "commit",
    "commit",
    "commit",
    "mark_good",
    "mark_good",
    "revert",
)


def random_steps(seed: int, count: int = 14) -> list[Step]:
    """Seeded sequences: commits 4 in 7, mark_good 2 in 7, revert 1 in 7."""
    rng = random.Random(seed)
    return [(rng.choice(ACTIONS), rng.randrange(1, 60)) for _ in range(count)]


def memory_recording() -> RecordingFileSystem:
    memory = MemoryFileSystem()
    memory.make_dir(DIRECTORY)
    return RecordingFileSystem(memory)


def test_every_prefix_of_the_scenario_recovers_old_or_new() -> None:
    recording = record(SCENARIO, memory_recording())
    # Each step is one atomic write: open_write, write, fsync, close, rename, fsync_dir.
    assert len(recording.operations) == 6 * len(SCENARIO)
    assert replay(recording, ALL_MODELS) == []


@pytest.mark.parametrize("seed", range(24))
def test_every_prefix_of_random_scenarios_recovers_old_or_new(seed: int) -> None:
    recording = record(random_steps(seed), memory_recording())
    assert replay(recording, ALL_MODELS, seed) == []


def test_scenario_on_the_real_file_system_records_the_same_operations(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    directory.mkdir()
    recording = RecordingFileSystem(REAL_FS)
    store = DeviceStore(directory, key=KEY, fs=recording)
    store.commit(config(1))
    kinds = [(op.kind, os.path.basename(op.path)) for op in recording.mutations()]
    assert kinds == [
        ("open_write", "slot-a.bin.tmp"),
        ("write", "slot-a.bin.tmp"),
        ("fsync", "slot-a.bin.tmp"),
        ("close", "slot-a.bin.tmp"),
        ("rename", "slot-a.bin.tmp"),
        ("fsync_dir", "store"),
    ]
    assert recording.mutations()[4].target == store.slot_path("a")
    # Per commit: one write of 61 bytes + the CBOR, and two fsyncs (file, directory).
    assert len(recording.mutations()[1].data) == 61 + len(config(1).cbor)
    assert sorted(os.listdir(directory)) == ["slot-a.bin"]


@pytest.mark.parametrize("kind", ["real", "memory"])
def test_file_systems_agree_on_the_primitives(tmp_path: Path, kind: str) -> None:
    """MemoryFileSystem stands in for the real one in the replays: same observable behaviour."""
    fs = REAL_FS if kind == "real" else MemoryFileSystem()
    root = str(tmp_path / "fs")
    fs.make_dir(root)
    path = os.path.join(root, "file")
    fs.write_file_atomic(path, b"hello")
    fs.write_file_atomic(path, b"world!")
    assert (fs.read(path, 100), fs.read(path, 3)) == (b"world!", b"wor")
    assert fs.listdir(root) == ["file"] and fs.exists(path) and fs.exists(root)
    with pytest.raises(FileNotFoundError):
        fs.rename(path + ".absent", path)
    fs.remove(path)
    assert not fs.exists(path) and fs.listdir(root) == []
    for missing in (lambda: fs.read(path, 1), lambda: fs.remove(path)):
        with pytest.raises(FileNotFoundError):
            missing()


class _NoDataSync(RecordingFileSystem):
    def fsync(self, handle: FileHandle) -> None:
        """Skips the data fsync: the bug the DATA_LOST and TORN models must catch."""


class _NoDirectorySync(RecordingFileSystem):
    def fsync_dir(self, path: str) -> None:
        """Skips the directory fsync: the bug the METADATA_LOST model must catch."""


def test_harness_catches_a_missing_data_fsync() -> None:
    memory = MemoryFileSystem()
    memory.make_dir(DIRECTORY)
    recording = record(SCENARIO, _NoDataSync(memory))
    assert replay(recording, (CrashModel.APPLIED,)) == []
    assert replay(recording, (CrashModel.DATA_LOST,))
    assert replay(recording, (CrashModel.TORN,))


def test_harness_catches_a_missing_directory_fsync() -> None:
    memory = MemoryFileSystem()
    memory.make_dir(DIRECTORY)
    recording = record(SCENARIO, _NoDirectorySync(memory))
    assert replay(recording, (CrashModel.APPLIED, CrashModel.DATA_LOST, CrashModel.TORN)) == []
    assert replay(recording, (CrashModel.METADATA_LOST,))


# ------------------------------------------------------- ENOSPC and EIO


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EIO], ids=["ENOSPC", "EIO"])
@pytest.mark.parametrize("action", ["commit", "mark_good", "revert"])
def test_io_error_at_every_operation_loses_nothing(tmp_path: Path, error: int, action: str) -> None:
    for index in range(100):
        directory = tmp_path / str(index)
        faulty = FaultyFileSystem(REAL_FS, error=error)
        store = DeviceStore(directory, key=KEY, fs=faulty)
        store.commit(config(1))  # slot a
        store.mark_good(1)
        store.commit(config(2))  # slot b: the next write goes there
        before = snapshot(store.load())
        faulty.fail_at = faulty.count + index
        try:
            if action == "commit":
                store.commit(config(3))
            elif action == "mark_good":
                store.mark_good(2)
            else:
                store.revert()
        except CommitFailed as failure:
            assert failure.errno == error and os.strerror(error) in str(failure)
            after = DeviceStore(directory, key=KEY).load()
            assert after.events == ()
            if failure.replaced:  # renamed, not yet durable: old or new, both complete
                assert failure.failure.operation == "fsync_dir"
                attempted = {"commit": 3, "mark_good": 2, "revert": 1}[action]
                assert after.current is not None and after.last_known_good is not None
                assert after.current.config in (config(2), config(attempted))
            else:
                assert snapshot(after) == before, "a failed write changed the store"
                assert not list(directory.glob("*.tmp")), "a temporary file was left behind"
            faulty.fail_at = None
            store.commit(config(4))  # the same store object goes on working
            resumed = DeviceStore(directory, key=KEY).load()
            assert resumed.current is not None and resumed.current.config == config(4)
            marked = action == "mark_good" and failure.replaced
            assert resumed.last_known_good is not None
            assert resumed.last_known_good.config == config(2 if marked else 1)
        else:
            assert faulty.failed is None  # the fault lay beyond the write's last operation
            assert index == 7  # exists, open_write, write, fsync, close, rename, fsync_dir
            return
    pytest.fail("the write never completed")


# ---------------------------------------------------------------- kill -9


class _Lines:
    """Lines from a pipe, with a deadline (a hung worker fails the test, not CI)."""

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor
        self.buffer = b""

    def next(self, timeout: float = 30.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.descriptor], [], [], remaining)[0]:
                raise TimeoutError("crash worker stopped answering")
            chunk = os.read(self.descriptor, 1 << 16)
            if not chunk:
                raise EOFError("crash worker exited")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode().split(" ")


@dataclass
class _Tracker:
    """What must be on disk, from the worker's reports and the loads so far."""

    current: tuple[int, str] | None = None
    good: int | None = None
    etags: dict[int, str] = field(default_factory=dict[int, str])
    commits: int = 0
    kills_mid_commit: int = 0
    landed_mid_commit: int = 0

    def check(self, lines: list[list[str]], loaded: Loaded) -> None:
        in_flight: str | None = None
        marking: int | None = None
        for line in lines:
            kind = line[0]
            assert kind != "E", " ".join(line)
            if kind == "L":
                started = (int(line[1]), line[2]) if line[1] != "-" else None
                assert started == self.current, "the committer loaded something else"
            elif kind == "W":
                in_flight = line[1]
            elif kind == "C":
                self.current, in_flight = (int(line[1]), line[2]), None
                self.etags[int(line[1])] = line[2]
                self.commits += 1
            elif kind == "M":
                marking = int(line[1])
            elif kind == "G":
                self.good, marking = int(line[1]), None
        assert loaded.events == (), [str(event) for event in loaded.events]
        found = (loaded.current.number, loaded.current.etag.hex()) if loaded.current else None
        allowed = {self.current}
        if in_flight is not None:
            self.kills_mid_commit += 1
            allowed.add((self.current[0] + 1 if self.current else 1, in_flight))
        assert found in allowed, f"loaded {found}, expected one of {allowed}"
        if found != self.current:
            self.landed_mid_commit += 1
        good = loaded.last_known_good
        assert (good.number if good else None) in {self.good, marking}
        if good is not None:
            assert good.etag.hex() == self.etags[good.number]
        self.current, self.good = found, good.number if good else None
        if found:
            self.etags[found[0]] = found[1]


@pytest.mark.slow
def test_kill_9_at_random_moments_never_loses_the_configuration(tmp_path: Path) -> None:
    iterations = int(os.environ.get("EDGECFG_KILL_ITERATIONS", "200"))
    seed = int(os.environ.get("EDGECFG_KILL_SEED", "6"))
    rng = random.Random(seed)
    directory = tmp_path / "store"
    with open(tmp_path / "worker.err", "wb") as errors:
        worker = subprocess.Popen(
            [sys.executable, str(WORKER), str(directory), KEY.hex(), str(seed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    assert worker.stdin is not None and worker.stdout is not None
    lines, tracker, committer = _Lines(worker.stdout.fileno()), _Tracker(), 0
    try:
        for iteration in range(iterations):
            worker.stdin.write(f"go {iteration}\n".encode())
            worker.stdin.flush()
            reported: list[list[str]] = []
            while not reported or reported[-1][0] != "P":
                reported.append(lines.next())
            committer = int(reported.pop()[1])
            time.sleep(rng.uniform(0.0, 0.04))  # commits take ~1-20 ms: kills land all over
            os.kill(committer, signal.SIGKILL)
            while (line := lines.next())[0] != "D":
                reported.append(line)
            status = int(line[2])
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, reported
            committer = 0
            tracker.check(reported, DeviceStore(directory, key=KEY).load())
    finally:
        if committer:
            with contextlib.suppress(ProcessLookupError):
                os.kill(committer, signal.SIGKILL)
        worker.stdin.close()
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        worker.stdout.close()
    assert tracker.commits > 0 and tracker.kills_mid_commit > 0
