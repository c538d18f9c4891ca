"""Local overrides on the device: an append-only, crash-safe journal (issue 6).

A local change (``edgecfg agent set``, or the API) is checked against the
schema's local-override policy, stamped with a hybrid logical clock and
appended to ``journal.bin`` as one framed record, fsynced before the call
returns.  A torn record at the end (a power cut mid-append) is cut off at the
next start.  The gateway's acknowledgement (a sequence number) is kept in
``journal.ack`` (written atomically); acknowledged history is compacted away
when the file grows past its bounds.

While offline the device runs on its applied configuration with the pending
overrides on top (:meth:`LocalOverrides.effective`).  After the gateway
merges them, accepted overrides come back inside the served configuration
(the device's ``local/{id}`` layer), so only unacknowledged entries are laid
on top locally.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from edgecfg.agent.sealed_store import REAL_FS, WriteFailed
from edgecfg.core.hlc import Timestamp, tick
from edgecfg.core.ids import ETag
from edgecfg.core.journal import Journal, JournalEntry, check_override
from edgecfg.core.path import Path as ConfigPath
from edgecfg.core.schema import Schema
from edgecfg.core.tree import Tree, UnsetType, Value, delete, get, is_map, put_checked_value
from edgecfg.errors import EdgecfgError, PeerError
from edgecfg.wire.cbor import decode, encode
from edgecfg.wire.journal import frame, frames, scan_frames

JOURNAL_FILE: Final = "journal.bin"
ACK_FILE: Final = "journal.ack"
MERGED_FILE: Final = "merged.cbor"
BASE_FILE: Final = "journal.base"
MAX_ENTRIES: Final = 1024
MAX_BYTES: Final = 256 * 1024


class JournalIOError(EdgecfgError):
    """The journal could not be written (names the file and the OS error)."""


class LocalOverrides:
    """The device's journal of local changes, in its state directory."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        node: str,
        schema: Schema | None = None,
        read_only: bool = False,
    ) -> None:
        """``read_only``: create nothing and repair nothing (a torn tail is
        ignored, not cut off); for commands that only show the state."""
        self.directory = Path(directory)
        self.read_only = read_only
        if not read_only:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise JournalIOError(f"{self.directory}: cannot create: {error.strerror}") from None
        self.node = node
        self.schema = schema
        self.journal = self._load()
        self.fsyncs = 0
        self.bytes_written = 0
        self._view: _View | None = None  # the effective config, cached

    @property
    def base(self) -> ETag | None:
        """The server configuration the pending entries were made on (see :meth:`note_base`)."""
        path = self.directory / BASE_FILE
        if not self.pending() or not path.exists():
            return None
        raw = path.read_bytes()
        return ETag(raw) if raw else None

    def note_base(self, etag: ETag | None) -> None:
        """Remember ``etag`` as the base of the pending entries, unless one is kept.

        The agent calls this before it fetches a newer configuration, so the
        gateway's three-way merge compares against the version the device
        made its changes on, not the one it has just received.
        """
        if not self.pending() or etag is None or self.base is not None:
            return
        _write_atomic(self.directory / BASE_FILE, etag)

    # -- reading ----------------------------------------------------------------------

    def _load(self) -> Journal:
        path = self.directory / JOURNAL_FILE
        data = path.read_bytes() if path.exists() else b""
        scan = scan_frames(data)
        if scan.valid_length != len(data) and not self.read_only:  # a torn tail: cut it off
            with open(path, "r+b") as handle:
                handle.truncate(scan.valid_length)
                handle.flush()
                os.fsync(handle.fileno())
        ack_path = self.directory / ACK_FILE
        acknowledged = int(ack_path.read_text()) if ack_path.exists() else 0
        last = scan.entries[-1].sequence if scan.entries else 0
        return Journal.of(scan.entries, acknowledged=min(acknowledged, last))

    def pending(self) -> tuple[JournalEntry, ...]:
        """Entries the gateway has not acknowledged yet (they go in the next report)."""
        return self.journal.pending()

    def overrides(self) -> dict[ConfigPath, JournalEntry]:
        """The latest pending change per path."""
        latest: dict[ConfigPath, JournalEntry] = {}
        for entry in self.pending():
            latest[entry.path] = entry
        return latest

    def effective(self, applied: Tree) -> Tree:
        """The configuration the device runs on: ``applied`` plus pending overrides.

        Cached until the applied configuration or the journal changes, so the
        device's many reads cost a lookup.  A local change made since the
        last read is laid on the cached view (copying only the maps along its
        path) unless its path nests with another override's, where the order
        of application matters: then the view is rebuilt.
        """
        view = self._view
        last, acknowledged = self.journal.last_sequence, self.journal.acknowledged
        if view is not None and view.applied is applied and view.acknowledged == acknowledged:
            if view.last == last:
                return view.tree
            if view.last < last and self._step(view):
                return view.tree
        self._view = view = _View.build(applied, self.overrides(), last, acknowledged)
        return view.tree

    def _step(self, view: _View) -> bool:
        """Lay the entries after ``view.last`` on the view; False when it must be rebuilt."""
        fresh: list[JournalEntry] = []
        for entry in reversed(self.journal.entries):
            if entry.sequence <= view.last:
                break
            fresh.append(entry)
        for entry in reversed(fresh):
            if not view.add(entry):
                return False
        view.last = self.journal.last_sequence
        return True

    # -- writing ----------------------------------------------------------------------

    def set(
        self, path: ConfigPath, value: Value | UnsetType, *, reason: str, now_ms: int
    ) -> JournalEntry:
        """Record a local change (``UNSET`` removes the override), checked against
        the schema's local-override policy; durable when this returns."""
        if self.schema is not None:
            check_override(self.schema, path, value)
        last: Timestamp | None = self.journal.entries[-1].at if self.journal.entries else None
        journal, entry = self.journal.record(
            path, value, reason=reason, at=tick(last, now_ms, self.node)
        )
        self._append(frame(entry))
        self.journal = journal
        return entry

    def merged(self) -> dict[str, str]:
        """The gateway's last verdicts by dotted path: "accepted" or "rejected: why"."""
        path = self.directory / MERGED_FILE
        if not path.exists():
            return {}
        try:
            verdicts = decode(path.read_bytes())
        except PeerError:
            return {}
        return {str(k): str(v) for k, v in verdicts.items()} if is_map(verdicts) else {}

    def remember(self, outcome: Mapping[str, Value]) -> None:
        """Keep the gateway's answer about our overrides (for ``agent show``)."""
        verdicts: dict[str, Value] = dict(self.merged())
        for item in outcome.get("accepted", []) or []:  # type: ignore[union-attr]
            verdicts[str(item[1])] = "accepted"  # type: ignore[index]
        for item in outcome.get("rejected", []) or []:  # type: ignore[union-attr]
            verdicts[str(item[1])] = f"rejected: {item[2]}"  # type: ignore[index]
        _write_atomic(self.directory / MERGED_FILE, encode(verdicts))

    def acknowledge(self, sequence: int) -> None:
        """The gateway merged everything up to ``sequence``; compact when large."""
        if sequence <= self.journal.acknowledged:
            return  # a replayed or reordered answer: nothing new
        self.journal = self.journal.acknowledge(min(sequence, self.journal.last_sequence))
        _write_atomic(self.directory / ACK_FILE, str(self.journal.acknowledged).encode())
        if not self.pending():
            (self.directory / BASE_FILE).unlink(missing_ok=True)  # a fresh base next time
        compacted = self.journal.compact(max_entries=MAX_ENTRIES, max_bytes=MAX_BYTES)
        if len(compacted.entries) < len(self.journal.entries):
            _write_atomic(self.directory / JOURNAL_FILE, frames(compacted.entries))
            self.journal = compacted

    def _append(self, record: bytes) -> None:
        path = self.directory / JOURNAL_FILE
        try:
            with open(path, "ab") as handle:
                handle.write(record)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            raise JournalIOError(f"{path}: cannot append: {error.strerror}") from None
        self.fsyncs += 1
        self.bytes_written += len(record)


class _View:
    """The effective configuration for one applied tree and journal position."""

    __slots__ = ("acknowledged", "applied", "last", "paths", "prefixes", "tree")

    def __init__(self, applied: Tree, last: int, acknowledged: int) -> None:
        self.applied = applied
        self.tree = applied
        self.last = last
        self.acknowledged = acknowledged
        self.paths: set[ConfigPath] = set()  # overridden paths
        self.prefixes: set[ConfigPath] = set()  # their proper prefixes

    @classmethod
    def build(
        cls,
        applied: Tree,
        overrides: Mapping[ConfigPath, JournalEntry],
        last: int,
        acknowledged: int,
    ) -> _View:
        view = cls(applied, last, acknowledged)
        for _, entry in sorted(overrides.items()):  # parents before children
            view.lay(entry)
        return view

    def add(self, entry: JournalEntry) -> bool:
        """Lay a newer entry on the view; False when its path nests with another's."""
        path = entry.path
        nested = path in self.prefixes or any(
            path[:depth] in self.paths for depth in range(len(path))
        )
        if nested:
            return False
        self.lay(entry)
        return True

    def lay(self, entry: JournalEntry) -> None:
        path = entry.path
        if isinstance(entry.value, UnsetType):  # the override is dropped: the applied value
            synced = get(self.applied, path)
            if not isinstance(synced, UnsetType):
                self.tree = put_checked_value(self.tree, path, synced)
            elif _present(self.tree, path):
                self.tree = delete(self.tree, path)
        else:
            self.tree = put_checked_value(self.tree, path, entry.value)
        self.paths.add(path)
        self.prefixes.update(path[:depth] for depth in range(len(path)))


def _present(tree: Mapping[str, Value], path: ConfigPath) -> bool:
    node: object = tree
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        REAL_FS.write_file_atomic(str(path), data)
    except WriteFailed as failure:
        raise JournalIOError(f"cannot write: {failure}") from None
