"""A local directory as an object store: what ``aws s3 sync`` of a prefix produces.

Keys are ``/``-separated paths relative to the root. There are no versions,
delete markers or retention: a local copy cannot prove what S3 held, only
what its bytes say. ``put_new`` writes to a temporary file, fsyncs, and links
it into place so a key is never overwritten and never half-written.

The folder is hostile (anyone can hand an auditor a copy), so this driver:

- walks it without recursion (an explicit stack; folders nested thousands
  deep are fine) and with a bounded number of open directories;
- never follows a symbolic link, neither while listing nor while reading: a
  key is opened component by component relative to its parent's descriptor
  (``O_NOFOLLOW``, ``O_DIRECTORY`` for folders), and the final descriptor
  must be a regular file, so a link swapped in after the listing is refused,
  not followed;
- lists any file name the file system allows (newlines, escapes, bytes that
  are not UTF-8: those become ``surrogateescape`` keys, which simply are not
  segment keys) without raising;
- skips names starting with ``.`` (temporary files, ``.git``).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from audit_archiver._files import write_new
from audit_archiver.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    ObjectTooLargeError,
    StorageError,
)
from audit_archiver.storage.base import ObjectInfo, ObjectVersion

__all__ = ["LocalDirectoryStore"]

#: Open directory descriptors a listing may hold before it reopens folders from the root.
MAX_OPEN_DIRECTORIES = 64
_READ_CHUNK = 1 << 20
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO swapped in for a file must not wait for a writer.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
# What opening a link with O_NOFOLLOW (and O_DIRECTORY) reports, by platform.
_LINK_ERRNOS = frozenset({errno.ELOOP, errno.EMLINK, errno.ENOTDIR})


class LocalDirectoryStore:
    """Objects as files below ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put_new(self, key: str, data: bytes, *, retain_until: datetime | None) -> ObjectInfo:
        """Write ``data`` at ``key`` unless it exists (retention is not enforceable here).

        Raises:
            ObjectExistsError: a file exists at ``key``.
            StorageError: the write failed.
        """
        path = self.root.joinpath(*_parts(key))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create the folder of {key!r}: {e.strerror}") from e
        try:
            write_new(path, data)
        except FileExistsError:
            raise ObjectExistsError(key) from None
        except OSError as e:
            raise StorageError(f"cannot write {key!r}: {e.strerror}") from e
        return ObjectInfo(key, None, len(data))

    def get(self, key: str, version_id: str | None = None) -> bytes:
        """Return the bytes of the file at ``key``.

        Raises:
            ObjectNotFoundError: no such file (or a version id was asked for).
            StorageError: the file cannot be read, or is not a regular file.
        """
        return self.fetch(key, version_id)[0]

    def fetch(self, key: str, version_id: str | None = None) -> tuple[bytes, ObjectInfo]:
        """Return the file's bytes and its size (a folder holds no retention).

        Raises:
            ObjectNotFoundError: no such file.
            StorageError: the file cannot be read, or is not a regular file.
        """
        with self._open(key, version_id) as stream:
            chunks = []
            while chunk := stream.read(_READ_CHUNK):
                chunks.append(chunk)
        data = b"".join(chunks)
        return data, ObjectInfo(key, None, len(data))

    def open_object(
        self, key: str, version_id: str | None = None, *, max_bytes: int
    ) -> _LocalObjectStream:
        """Open the file at ``key`` for reading at most ``max_bytes`` bytes.

        Raises:
            ObjectTooLargeError: the file is larger than ``max_bytes`` (nothing is read).
            ObjectNotFoundError: no such file (or a version id was asked for).
            StorageError: the file cannot be opened, or is not a regular file
                (a symbolic link anywhere on its path is refused).
        """
        stream = self._open(key, version_id, max_bytes)
        if stream.info.size > max_bytes:
            stream.close()
            raise ObjectTooLargeError(key, limit=max_bytes, size=stream.info.size)
        return stream

    def head(self, key: str, version_id: str | None = None) -> ObjectInfo:
        """Return the size of the file at ``key``.

        Raises:
            ObjectNotFoundError: no such file.
            StorageError: the file cannot be examined, or is not a regular file.
        """
        with self._open(key, version_id) as stream:
            return stream.info

    def list_versions(self, prefix: str) -> Iterator[ObjectVersion]:
        """Yield every regular file below the root whose key starts with ``prefix``.

        Keys ascending. Hidden files and folders (names starting with '.')
        are skipped; symbolic links are neither listed nor followed.

        Raises:
            StorageError: the root is missing or a folder cannot be read.
        """
        found = _Listing(self.root, prefix).run()
        found.sort(key=lambda item: item[0])
        for key, info in found:
            yield ObjectVersion(key, None, True, False, _modified(info), info.st_size)

    def _open(
        self, key: str, version_id: str | None, max_bytes: int | None = None
    ) -> _LocalObjectStream:
        """Open ``key`` without following links; the descriptor must be a regular file."""
        if version_id is not None:
            raise ObjectNotFoundError(f"{key}?versionId={version_id}")
        parts = _parts(key)
        directory = _open_root(self.root)
        try:
            for part in parts[:-1]:
                following = _step(directory, part, key, _DIRECTORY_FLAGS)
                os.close(directory)
                directory = following
            descriptor = _step(directory, parts[-1], key, _FILE_FLAGS)
        finally:
            os.close(directory)
        try:
            info = os.fstat(descriptor)
        except OSError as e:
            os.close(descriptor)
            raise StorageError(f"cannot examine {key!r}: {e.strerror}") from e
        if not stat.S_ISREG(info.st_mode):
            os.close(descriptor)
            raise StorageError(f"refusing {key!r}: not a regular file")
        return _LocalObjectStream(descriptor, ObjectInfo(key, None, info.st_size), max_bytes)


class _LocalObjectStream:
    """An open regular file, read with a byte limit."""

    def __init__(self, descriptor: int, info: ObjectInfo, max_bytes: int | None) -> None:
        self.info = info
        self._descriptor: int | None = descriptor
        self._max_bytes = max_bytes
        self._received = 0

    def read(self, size: int) -> bytes:
        """Return up to ``size`` more bytes; ``b""`` at the end.

        Raises:
            ObjectTooLargeError: the file grew past ``max_bytes`` while read.
            StorageError: the read failed.
            ValueError: ``size`` is not positive, or the stream is closed.
        """
        if size <= 0:
            raise ValueError("read size must be positive")
        if self._descriptor is None:
            raise ValueError("read from a closed object stream")
        if self._max_bytes is not None:
            size = min(size, self._max_bytes - self._received + 1)
        try:
            chunk = os.read(self._descriptor, size)
        except OSError as e:
            self.close()
            raise StorageError(f"cannot read {self.info.key!r}: {e.strerror}") from e
        self._received += len(chunk)
        if self._max_bytes is not None and self._received > self._max_bytes:
            self.close()
            raise ObjectTooLargeError(self.info.key, limit=self._max_bytes, size=None)
        return chunk

    def close(self) -> None:
        """Close the file."""
        if self._descriptor is not None:
            descriptor, self._descriptor = self._descriptor, None
            os.close(descriptor)

    def __enter__(self) -> _LocalObjectStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@dataclass
class _Folder:
    """A folder met while listing: its path below the root and, while useful, a descriptor."""

    parts: tuple[str, ...]
    descriptor: int | None
    pending: int = 0  # subfolders still to be opened relative to this one


class _Listing:
    """One depth-first walk of the root, without recursion and without following links.

    A folder's descriptor stays open until its last subfolder is opened. When
    more than :data:`MAX_OPEN_DIRECTORIES` are open (a wide and deep tree),
    a folder is closed at once and reopened from the root, component by
    component, when its next subfolder is due.
    """

    def __init__(self, root: Path, prefix: str) -> None:
        self._root = root
        self._prefix = prefix
        self._open: set[int] = set()
        self.found: list[tuple[str, os.stat_result]] = []

    def run(self) -> list[tuple[str, os.stat_result]]:
        try:
            root = _Folder((), self._track(_open_root(self._root)))
            stack: list[tuple[_Folder, str]] = []
            self._scan(root, stack)
            while stack:
                parent, name = stack.pop()
                child = self._enter(parent, name)
                if child is not None:
                    self._scan(child, stack)
        finally:
            for descriptor in self._open:
                os.close(descriptor)
        return self.found

    def _track(self, descriptor: int) -> int:
        self._open.add(descriptor)
        return descriptor

    def _close(self, folder: _Folder) -> None:
        if folder.descriptor is not None:
            self._open.discard(folder.descriptor)
            os.close(folder.descriptor)
            folder.descriptor = None

    def _scan(self, folder: _Folder, stack: list[tuple[_Folder, str]]) -> None:
        """Record the folder's regular files; queue its subfolders that can hold the prefix."""
        descriptor = folder.descriptor
        if descriptor is None:  # pragma: no cover - _enter and run always pass an open folder
            raise StorageError(f"cannot list {self._where(folder.parts)}: folder not open")
        subfolders: list[str] = []
        try:
            with os.scandir(descriptor) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    key = "/".join((*folder.parts, entry.name))
                    if entry.is_dir(follow_symlinks=False):
                        if self._may_hold_prefix(key):
                            subfolders.append(entry.name)
                    elif entry.is_file(follow_symlinks=False) and key.startswith(self._prefix):
                        self._record(key, entry)
        except OSError as e:
            raise StorageError(f"cannot list {self._where(folder.parts)}: {e.strerror}") from e
        folder.pending = len(subfolders)
        if not subfolders or len(self._open) > MAX_OPEN_DIRECTORIES:
            self._close(folder)
        stack.extend((folder, name) for name in sorted(subfolders, reverse=True))

    def _record(self, key: str, entry: os.DirEntry[str]) -> None:
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return  # removed since the folder was read
        if stat.S_ISREG(info.st_mode):
            self.found.append((key, info))

    def _may_hold_prefix(self, key: str) -> bool:
        folder = key + "/"
        return folder.startswith(self._prefix) or self._prefix.startswith(folder)

    def _enter(self, parent: _Folder, name: str) -> _Folder | None:
        """Open subfolder ``name`` of ``parent``; None if it is gone or no longer a folder."""
        parts = (*parent.parts, name)
        try:
            if parent.descriptor is None:
                parent.descriptor = self._track(self._reopen(parent.parts))
            descriptor = os.open(name, _DIRECTORY_FLAGS, dir_fd=parent.descriptor)
        except OSError as e:
            if e.errno == errno.ENOENT or e.errno in _LINK_ERRNOS:
                descriptor = None  # removed or swapped for a link or a file since listed
            else:
                raise StorageError(f"cannot list {self._where(parts)}: {e.strerror}") from e
        finally:
            parent.pending -= 1
            if parent.pending == 0:
                self._close(parent)
        return None if descriptor is None else _Folder(parts, self._track(descriptor))

    def _reopen(self, parts: tuple[str, ...]) -> int:
        descriptor = _open_root(self._root)
        try:
            for part in parts:
                following = os.open(part, _DIRECTORY_FLAGS, dir_fd=descriptor)
                os.close(descriptor)
                descriptor = following
        except BaseException:
            os.close(descriptor)
            raise
        return descriptor

    def _where(self, parts: tuple[str, ...]) -> str:
        return repr(str(self._root.joinpath(*parts)))


def _parts(key: str) -> list[str]:
    """The path components of ``key``; refuses keys that could leave the root."""
    parts = key.split("/")
    if not key or "\0" in key or any(part in ("", ".", "..") for part in parts):
        raise StorageError(f"invalid object key {key!r}")
    try:
        os.fsencode(key)
    except UnicodeEncodeError:
        raise StorageError(f"invalid object key {key!r}") from None
    return parts


def _open_root(root: Path) -> int:
    try:
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise StorageError(f"{str(root)!r} is not a directory ({e.strerror})") from e


def _step(directory: int, part: str, key: str, flags: int) -> int:
    """Open ``part`` relative to ``directory`` without following a link."""
    try:
        descriptor = os.open(part, flags, dir_fd=directory)
    except FileNotFoundError:
        raise ObjectNotFoundError(key) from None
    except OSError as e:
        if e.errno in _LINK_ERRNOS and _is_link(directory, part):
            raise StorageError(f"refusing {key!r}: {part!r} is a symbolic link") from e
        if e.errno == errno.ENOTDIR:
            raise ObjectNotFoundError(key) from None  # a file where a folder should be
        raise StorageError(f"cannot open {key!r}: {e.strerror}") from e
    return descriptor


def _is_link(directory: int, part: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(part, dir_fd=directory, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _modified(info: os.stat_result) -> datetime | None:
    """The file's mtime; None when it is outside what a datetime can hold (a hostile copy)."""
    try:
        return datetime.fromtimestamp(info.st_mtime, UTC)
    except (OverflowError, ValueError, OSError):
        return None
