"""A local directory as an object store: what ``aws s3 sync`` of a prefix produces.

Keys are ``/``-separated paths relative to the root. There are no versions,
delete markers or retention: a local copy cannot prove what S3 held, only
what its bytes say. ``put_new`` writes to a temporary file, fsyncs, and links
it into place so a key is never overwritten and never half-written.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from audit_archiver.errors import ObjectExistsError, ObjectNotFoundError, StorageError
from audit_archiver.storage.base import ObjectInfo, ObjectVersion

__all__ = ["LocalDirectoryStore"]


class LocalDirectoryStore:
    """Objects as files below ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(part in ("", ".", "..") for part in parts):
            raise StorageError(f"invalid object key {key!r}")
        return self.root.joinpath(*parts)

    def put_new(self, key: str, data: bytes, *, retain_until: datetime | None) -> ObjectInfo:
        """Write ``data`` at ``key`` unless it exists (retention is not enforceable here).

        Raises:
            ObjectExistsError: a file exists at ``key``.
            StorageError: the write failed.
        """
        path = self._path(key)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                raise ObjectExistsError(key) from None
            finally:
                temporary.unlink(missing_ok=True)
        except OSError as e:
            raise StorageError(f"cannot write {path}: {e.strerror}") from e
        return ObjectInfo(key, None, len(data))

    def get(self, key: str, version_id: str | None = None) -> bytes:
        """Return the bytes of the file at ``key``.

        Raises:
            ObjectNotFoundError: no such file (or a version id was asked for).
            StorageError: the file cannot be read.
        """
        if version_id is not None:
            raise ObjectNotFoundError(f"{key}?versionId={version_id}")
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(key) from None
        except OSError as e:
            raise StorageError(f"cannot read {path}: {e.strerror}") from e

    def fetch(self, key: str, version_id: str | None = None) -> tuple[bytes, ObjectInfo]:
        """Return the file's bytes and its size (a folder holds no retention).

        Raises:
            ObjectNotFoundError: no such file.
            StorageError: the file cannot be read.
        """
        data = self.get(key, version_id)
        return data, ObjectInfo(key, None, len(data))

    def head(self, key: str, version_id: str | None = None) -> ObjectInfo:
        """Return the size of the file at ``key``.

        Raises:
            ObjectNotFoundError: no such file.
            StorageError: the file cannot be examined.
        """
        if version_id is not None:
            raise ObjectNotFoundError(f"{key}?versionId={version_id}")
        try:
            return ObjectInfo(key, None, self._path(key).stat().st_size)
        except FileNotFoundError:
            raise ObjectNotFoundError(key) from None
        except OSError as e:
            raise StorageError(f"cannot examine {key}: {e.strerror}") from e

    def list_versions(self, prefix: str) -> Iterator[ObjectVersion]:
        """Yield every regular file below the root whose key starts with ``prefix``.

        Hidden files (names starting with '.') are skipped; symbolic links are
        not followed.

        Raises:
            StorageError: the root is missing or cannot be read.
        """
        if not self.root.is_dir():
            raise StorageError(f"{self.root} is not a directory")
        found: list[tuple[str, os.stat_result]] = []
        try:
            for directory, subdirs, files in os.walk(self.root, onerror=_raise):
                subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
                base = Path(directory).relative_to(self.root)
                for name in files:
                    if name.startswith("."):
                        continue
                    key = (base / name).as_posix()
                    if not key.startswith(prefix):
                        continue
                    info = Path(directory, name).lstat()  # one call; links are not followed
                    if stat.S_ISREG(info.st_mode):
                        found.append((key, info))
        except OSError as e:
            raise StorageError(f"cannot list {self.root}: {e.strerror}") from e
        for key, info in sorted(found, key=lambda item: item[0]):
            modified = datetime.fromtimestamp(info.st_mtime, UTC)
            yield ObjectVersion(key, None, True, False, modified, info.st_size)


def _raise(error: OSError) -> None:
    raise error
