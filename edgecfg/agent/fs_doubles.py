"""Test doubles of :class:`~edgecfg.agent.sealed_store.FileSystem`: files in
memory (:class:`MemoryFileSystem`), every operation recorded in order
(:class:`RecordingFileSystem`, so a crash harness can replay any prefix of
them) and injected errors (:class:`FaultyFileSystem`), like httpcore's
in-memory transports.  Shipped with the package for the crash tests and the
simulator; a device never loads it.
"""

from __future__ import annotations

import errno as errnos
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from edgecfg.agent.sealed_store import MUTATING, FileHandle, FileSystem, OperationKind

_T = TypeVar("_T")


def _missing(path: str) -> FileNotFoundError:
    return FileNotFoundError(errnos.ENOENT, os.strerror(errnos.ENOENT), path)


class MemoryFileSystem(FileSystem):
    """Files in a dict, for tests and for materialised crash states.

    Everything is immediately "durable" (fsyncs are no-ops); directories
    exist implicitly wherever a file is, or explicitly after ``make_dir``.
    """

    def __init__(self, files: Mapping[str, bytes] | None = None) -> None:
        self.files: dict[str, bytes] = dict(files or {})
        self.directories: set[str] = set()
        self._open: dict[FileHandle, str] = {}
        self._next_handle = 3

    def open_write(self, path: str) -> FileHandle:
        handle = FileHandle(self._next_handle)
        self._next_handle += 1
        self.files[path] = b""
        self._open[handle] = path
        return handle

    def write(self, handle: FileHandle, data: bytes) -> None:
        path = self._open[handle]
        self.files[path] = self.files.get(path, b"") + data

    def fsync(self, handle: FileHandle) -> None:
        self._open[handle]

    def close(self, handle: FileHandle) -> None:
        del self._open[handle]

    def rename(self, source: str, target: str) -> None:
        if source not in self.files:
            raise _missing(source)
        self.files[target] = self.files.pop(source)

    def fsync_dir(self, path: str) -> None:
        if not self.exists(path):
            raise _missing(path)

    def read(self, path: str, limit: int) -> bytes:
        if path not in self.files:
            raise _missing(path)
        return self.files[path][:limit]

    def exists(self, path: str) -> bool:
        prefix = path.rstrip("/") + "/"
        return (
            path in self.files
            or path in self.directories
            or any(name.startswith(prefix) for name in self.files)
        )

    def remove(self, path: str) -> None:
        if self.files.pop(path, None) is None:
            raise _missing(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(
            name for name in {os.path.basename(p) for p in self.files if os.path.dirname(p) == path}
        )

    def make_dir(self, path: str) -> None:
        while path and path not in ("/", "."):
            self.directories.add(path)
            path = os.path.dirname(path)


@dataclass(frozen=True, slots=True)
class Operation:
    """One primitive operation as :class:`RecordingFileSystem` saw it succeed.

    ``path`` is the file (for handle operations, the path it was opened
    under), ``handle`` the handle involved, ``data`` what was written and
    ``target`` a rename's destination.
    """

    kind: OperationKind
    path: str
    handle: FileHandle | None = None
    data: bytes = b""
    target: str = ""


class RecordingFileSystem(FileSystem):
    """Performs operations on ``inner`` and records each one that succeeded, in order."""

    def __init__(self, inner: FileSystem) -> None:
        self.inner = inner
        self.operations: list[Operation] = []
        self._paths: dict[FileHandle, str] = {}

    def mutations(self) -> list[Operation]:
        """The recorded operations that change the disk."""
        return [operation for operation in self.operations if operation.kind in MUTATING]

    def open_write(self, path: str) -> FileHandle:
        handle = self.inner.open_write(path)
        self._paths[handle] = path
        self.operations.append(Operation("open_write", path, handle))
        return handle

    def write(self, handle: FileHandle, data: bytes) -> None:
        self.inner.write(handle, data)
        self.operations.append(Operation("write", self._paths[handle], handle, bytes(data)))

    def fsync(self, handle: FileHandle) -> None:
        self.inner.fsync(handle)
        self.operations.append(Operation("fsync", self._paths[handle], handle))

    def close(self, handle: FileHandle) -> None:
        self.inner.close(handle)
        self.operations.append(Operation("close", self._paths.pop(handle), handle))

    def rename(self, source: str, target: str) -> None:
        self.inner.rename(source, target)
        self.operations.append(Operation("rename", source, target=target))

    def fsync_dir(self, path: str) -> None:
        self.inner.fsync_dir(path)
        self.operations.append(Operation("fsync_dir", path))

    def read(self, path: str, limit: int) -> bytes:
        data = self.inner.read(path, limit)
        self.operations.append(Operation("read", path))
        return data

    def exists(self, path: str) -> bool:
        found = self.inner.exists(path)
        self.operations.append(Operation("exists", path))
        return found

    def remove(self, path: str) -> None:
        self.inner.remove(path)
        self.operations.append(Operation("remove", path))

    def listdir(self, path: str) -> list[str]:
        names = self.inner.listdir(path)
        self.operations.append(Operation("listdir", path))
        return names

    def make_dir(self, path: str) -> None:
        self.inner.make_dir(path)
        self.operations.append(Operation("make_dir", path))


class FaultyFileSystem(FileSystem):
    """Passes operations to ``inner`` until operation number ``fail_at`` fails.

    Every primitive call counts (``count`` is the number made so far, from
    0); the one with index ``fail_at`` raises ``OSError(error)`` instead of
    running, except that a failing ``write`` first writes half its data
    (ENOSPC typically strikes mid-write) and a failing ``close`` still
    releases the handle, as close(2) does.  Set ``fail_at`` to None to disarm,
    or to ``count + n`` to fail the n-th operation from now.
    """

    def __init__(
        self, inner: FileSystem, *, fail_at: int | None = None, error: int = errnos.EIO
    ) -> None:
        self.inner = inner
        self.fail_at = fail_at
        self.error = error
        self.count = 0
        self.failed: OperationKind | None = None

    def _tick(self, kind: OperationKind) -> bool:
        """Count one operation; True if this one must fail."""
        index = self.count
        self.count += 1
        if index == self.fail_at:
            self.failed = kind
            return True
        return False

    def _run(self, kind: OperationKind, where: object, action: Callable[[], _T]) -> _T:
        if self._tick(kind):
            raise OSError(self.error, os.strerror(self.error), str(where))
        return action()

    def open_write(self, path: str) -> FileHandle:
        return self._run("open_write", path, lambda: self.inner.open_write(path))

    def write(self, handle: FileHandle, data: bytes) -> None:
        if self._tick("write"):
            self.inner.write(handle, data[: len(data) // 2])
            raise OSError(self.error, os.strerror(self.error), str(handle))
        self.inner.write(handle, data)

    def fsync(self, handle: FileHandle) -> None:
        self._run("fsync", handle, lambda: self.inner.fsync(handle))

    def close(self, handle: FileHandle) -> None:
        failing = self._tick("close")  # close(2) frees the descriptor even when it fails
        self.inner.close(handle)
        if failing:
            raise OSError(self.error, os.strerror(self.error), str(handle))

    def rename(self, source: str, target: str) -> None:
        self._run("rename", source, lambda: self.inner.rename(source, target))

    def fsync_dir(self, path: str) -> None:
        self._run("fsync_dir", path, lambda: self.inner.fsync_dir(path))

    def read(self, path: str, limit: int) -> bytes:
        return self._run("read", path, lambda: self.inner.read(path, limit))

    def exists(self, path: str) -> bool:
        return self._run("exists", path, lambda: self.inner.exists(path))

    def remove(self, path: str) -> None:
        self._run("remove", path, lambda: self.inner.remove(path))

    def listdir(self, path: str) -> list[str]:
        return self._run("listdir", path, lambda: self.inner.listdir(path))

    def make_dir(self, path: str) -> None:
        self._run("make_dir", path, lambda: self.inner.make_dir(path))
