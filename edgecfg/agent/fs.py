"""A small file-system interface for the device store.

The store talks to the disk only through :class:`FileSystem`: a handful of
primitive operations (``open_write``, ``write``, ``fsync``, ``close``,
``rename``, ``fsync_dir``, ``read``, ``exists``, ``remove``, ``listdir``,
``make_dir``) and :meth:`FileSystem.write_file_atomic`, composed from them.
That narrow waist lets tests see every operation in order
(:class:`RecordingFileSystem`), replay any prefix of them under a crash
model, keep files in memory (:class:`MemoryFileSystem`) and inject errors
(:class:`FaultyFileSystem`) like httpcore's in-memory transports.

Primitives raise :class:`OSError` exactly as the OS does; only
:meth:`~FileSystem.write_file_atomic` translates, into :class:`WriteFailed`.
Paths are plain strings.
"""

from __future__ import annotations

import contextlib
import errno as errnos
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, NewType, TypeVar

from edgecfg.errors import StoreError

_T = TypeVar("_T")

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
