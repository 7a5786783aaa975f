"""A local directory as an object store: what ``aws s3 sync`` of a prefix produces.

Keys are ``/``-separated paths relative to the root. There are no versions,
delete markers or retention: a local copy cannot prove what S3 held, only
what its bytes say. ``put_new`` writes to a temporary file, fsyncs, and links
it into place so a key is never overwritten and never half-written.

The folder is hostile (anyone can hand an auditor a copy), so this driver:

- walks it without recursion (an explicit stack; folders nested thousands
  deep are fine), in time linear in the tree's size and with a bounded number
  of open directories whatever its shape; with ``max_depth`` it does not
  descend below that depth at all (a folder there is one ``<path>/`` entry);
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

from audit_archiver._files import write_new
from audit_archiver.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    ObjectRefusedError,
    ObjectTooLargeError,
    StorageError,
)
from audit_archiver.storage.base import ClosingStream, ObjectInfo, ObjectVersion

__all__ = ["LocalDirectoryStore"]

#: Open directory descriptors a listing keeps (plus two for a moment) before closing one.
MAX_OPEN_DIRECTORIES = 64
_READ_CHUNK = 1 << 20
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO swapped in for a file must not wait for a writer.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
# What opening a link with O_NOFOLLOW (and O_DIRECTORY) reports, by platform.
_LINK_ERRNOS = frozenset({errno.ELOOP, errno.EMLINK, errno.ENOTDIR})


class LocalDirectoryStore:
    """Objects as files below ``root``.

    With ``max_depth``, keys have at most that many components: a folder at
    that depth is listed as one entry (its key ending in ``/``, size 0) and
    nothing below it is visited. A verifier's copy of a prefix holds
    ``<stream>/<file>``, so 2 is all it needs; None walks any depth.
    """

    def __init__(self, root: Path, max_depth: int | None = None) -> None:
        if max_depth is not None and max_depth < 1:
            raise ValueError("max_depth must be at least 1")
        self.root = root
        self.max_depth = max_depth

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

    def read_head(self, key: str, version_id: str | None = None, *, size: int) -> bytes:
        """Return the first ``size`` bytes of the file at ``key`` (fewer if it is shorter).

        Raises:
            ValueError: ``size`` is not positive.
            ObjectNotFoundError: no such file (or a version id was asked for).
            StorageError: the file cannot be opened or read, or is not a regular file.
        """
        if size <= 0:
            raise ValueError("read_head size must be positive")
        parts: list[bytes] = []
        received = 0
        with self._open(key, version_id) as stream:
            while received < size and (chunk := stream.read(size - received)):
                parts.append(chunk)
                received += len(chunk)
        return b"".join(parts)

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
        are skipped; symbolic links are neither listed nor followed. Under
        ``max_depth``, each folder at that depth is one entry, ``<path>/``.

        Raises:
            StorageError: the root is missing or a folder cannot be read.
        """
        found = _Listing(self.root, prefix, self.max_depth).run()
        found.sort(key=lambda version: version.key)
        yield from found

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
            raise ObjectRefusedError(f"refusing {key!r}: not a regular file")
        return _LocalObjectStream(descriptor, ObjectInfo(key, None, info.st_size), max_bytes)


class _LocalObjectStream(ClosingStream):
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


@dataclass
class _Folder:
    """A folder on the walk's current path: where it is, what it is, what is left in it."""

    parts: tuple[str, ...]
    descriptor: int | None
    identity: tuple[int, int]  # (st_dev, st_ino): ".." must lead back to this very folder
    subfolders: list[str]  # still to enter, the next one last


class _Listing:
    """One depth-first walk of the root, without recursion and without following links.

    The walk keeps the folders of its current path, deepest last. The deepest
    is always open; when more than :data:`MAX_OPEN_DIRECTORIES` are, the
    shallowest open one is closed (the open ones are always the deepest on the
    path). Going back up to a closed folder that still has subfolders to enter
    opens ``..`` of the shallowest open folder left, as many times as needed,
    and accepts it only if its device and inode are the folder's; if not
    (something was moved meanwhile), the folder is reopened from the root,
    component by component. Each ``..`` passes a folder that is then left for
    good, or reopens one that has a subfolder left to enter: the walk is
    linear in the size of the tree, whatever its shape.

    With ``max_depth``, a folder whose key has ``max_depth`` components is not
    entered: it is recorded as one entry, its key with a trailing ``/``.
    """

    def __init__(self, root: Path, prefix: str, max_depth: int | None) -> None:
        self._root = root
        self._prefix = prefix
        self._max_depth = max_depth
        self._open: set[int] = set()
        self.found: list[ObjectVersion] = []

    def run(self) -> list[ObjectVersion]:
        try:
            path = [self._scan((), self._track(_open_root(self._root)))]
            while path:
                folder = path[-1]
                if folder.descriptor is not None and folder.subfolders:
                    child = self._enter(folder.parts, folder.descriptor, folder.subfolders.pop())
                    if child is not None:
                        path.append(child)
                        if len(self._open) > MAX_OPEN_DIRECTORIES:
                            self._close(path[len(path) - len(self._open)])
                else:
                    self._leave(path)
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

    def _scan(self, parts: tuple[str, ...], descriptor: int) -> _Folder:
        """Record the folder's regular files; note its subfolders that can hold the prefix."""
        at_bound = self._max_depth is not None and len(parts) + 1 >= self._max_depth
        subfolders: list[str] = []
        try:
            info = os.fstat(descriptor)
            with os.scandir(descriptor) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    key = "/".join((*parts, entry.name))
                    if not entry.is_dir(follow_symlinks=False):
                        if entry.is_file(follow_symlinks=False) and key.startswith(self._prefix):
                            self._record(key, entry)
                    elif at_bound:
                        if f"{key}/".startswith(self._prefix):
                            self.found.append(ObjectVersion(f"{key}/", None, True, False, None, 0))
                    elif self._may_hold_prefix(key):
                        subfolders.append(entry.name)
        except OSError as e:
            raise StorageError(f"cannot list {self._where(parts)}: {e.strerror}") from e
        subfolders.sort(reverse=True)
        return _Folder(parts, descriptor, (info.st_dev, info.st_ino), subfolders)

    def _record(self, key: str, entry: os.DirEntry[str]) -> None:
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return  # removed since the folder was read
        if stat.S_ISREG(info.st_mode):
            self.found.append(ObjectVersion(key, None, True, False, _modified(info), info.st_size))

    def _may_hold_prefix(self, key: str) -> bool:
        folder = key + "/"
        return folder.startswith(self._prefix) or self._prefix.startswith(folder)

    def _enter(self, parent: tuple[str, ...], directory: int, name: str) -> _Folder | None:
        """Open and scan subfolder ``name``; None if it is gone or no longer a folder."""
        parts = (*parent, name)
        try:
            descriptor = os.open(name, _DIRECTORY_FLAGS, dir_fd=directory)
        except OSError as e:
            if e.errno == errno.ENOENT or e.errno in _LINK_ERRNOS:
                return None  # removed or swapped for a link or a file since listed
            raise StorageError(f"cannot list {self._where(parts)}: {e.strerror}") from e
        return self._scan(parts, self._track(descriptor))

    def _leave(self, path: list[_Folder]) -> None:
        """Leave the deepest folder, and each above it with nothing left to enter;
        the folder the walk returns to is reopened if it was closed."""
        left = path.pop()
        while path and not path[-1].subfolders:
            above = path.pop()
            if above.descriptor is not None:  # the open folders are the deepest ones
                self._close(left)
                left = above
        try:
            if path and path[-1].descriptor is None:
                path[-1].descriptor = self._up(left, path[-1])
        finally:
            self._close(left)

    def _up(self, below: _Folder, folder: _Folder) -> int | None:
        """Reopen ``folder``, an ancestor of ``below``; None if it is gone.

        ``..`` (as often as needed) of ``below`` is taken only if it is still
        the very folder listed (same device and inode), as if it had stayed
        open; otherwise ``folder`` is reopened by name from the root, as a
        key is.
        """
        if below.descriptor is not None:
            levels = len(below.parts) - len(folder.parts)
            descriptor = _ancestor(below.descriptor, levels, folder.identity)
            if descriptor is not None:
                return self._track(descriptor)
        try:
            descriptor = self._reopen(folder.parts)
        except OSError as e:
            if e.errno == errno.ENOENT or e.errno in _LINK_ERRNOS:
                return None  # removed, or a part swapped for a link or a file
            raise StorageError(f"cannot list {self._where(folder.parts)}: {e.strerror}") from e
        return self._track(descriptor)

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


def _ancestor(directory: int, levels: int, identity: tuple[int, int]) -> int | None:
    """The folder ``levels`` up from ``directory`` through ``..``, opened, if it is
    the folder ``identity`` (device, inode) names; else None."""
    current = directory
    try:
        for _ in range(levels):
            parent = os.open("..", _DIRECTORY_FLAGS, dir_fd=current)
            if current != directory:
                os.close(current)
            current = parent
        info: os.stat_result | None = os.fstat(current)
    except OSError:
        info = None  # e.g. no search permission on a folder on the way
    if info is not None and (info.st_dev, info.st_ino) == identity:
        return current
    if current != directory:
        os.close(current)
    return None


def _step(directory: int, part: str, key: str, flags: int) -> int:
    """Open ``part`` relative to ``directory`` without following a link."""
    try:
        descriptor = os.open(part, flags, dir_fd=directory)
    except FileNotFoundError:
        raise ObjectNotFoundError(key) from None
    except OSError as e:
        if e.errno in _LINK_ERRNOS and _is_link(directory, part):
            raise ObjectRefusedError(f"refusing {key!r}: {part!r} is a symbolic link") from e
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
