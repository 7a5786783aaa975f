"""An in-memory, versioned object store with Object Lock semantics, for unit tests.

``BytesStream`` is the matching :class:`~audit_archiver.storage.base.ObjectStream`
over bytes held in memory; tests of stream readers can use it directly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from types import TracebackType

from audit_archiver.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    ObjectTooLargeError,
    StorageError,
)
from audit_archiver.storage.base import BucketSettings, ObjectInfo, ObjectVersion


class BytesStream:
    """An ObjectStream over ``data``; ``max_bytes`` bounds what read() may return in total."""

    def __init__(self, data: bytes, info: ObjectInfo, *, max_bytes: int | None = None) -> None:
        self.info = info
        self._data = data
        self._offset = 0
        self._max_bytes = max_bytes
        self.closed = False

    def read(self, size: int) -> bytes:
        if size <= 0:
            raise ValueError("read size must be positive")
        if self.closed:
            raise ValueError("read from a closed object stream")
        chunk = self._data[self._offset : self._offset + size]
        self._offset += len(chunk)
        if self._max_bytes is not None and self._offset > self._max_bytes:
            self.close()
            raise ObjectTooLargeError(self.info.key, limit=self._max_bytes, size=None)
        return chunk

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> BytesStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@dataclass
class _Version:
    version_id: str
    data: bytes
    retain_until: datetime | None
    modified: datetime


@dataclass
class MemoryStore:
    """Keys map to version lists (oldest first). ``down`` makes every call fail.

    ``put_new`` never overwrites, so each list holds one version; the lists keep
    the shape of a versioned bucket for the tests that read ``objects``.
    """

    locked: bool = True
    down: bool = False
    objects: dict[str, list[_Version]] = field(default_factory=dict)
    puts: int = 0
    _ids: Iterator[int] = field(default_factory=count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _check(self) -> None:
        if self.down:
            raise StorageError("simulated outage: endpoint unreachable")

    def object_lock_enabled(self) -> bool:
        self._check()
        return self.locked

    def put_new(self, key: str, data: bytes, *, retain_until: datetime | None) -> ObjectInfo:
        self._check()
        with self._lock:
            versions = self.objects.setdefault(key, [])
            if versions:
                raise ObjectExistsError(key)
            version = _Version(f"v{next(self._ids)}", data, retain_until, datetime.now(UTC))
            versions.append(version)
            self.puts += 1
        return ObjectInfo(key, version.version_id, len(data), "COMPLIANCE", retain_until)

    def _find(self, key: str, version_id: str | None) -> _Version:
        for version in reversed(self.objects.get(key, [])):
            if version_id is None or version.version_id == version_id:
                return version
        raise ObjectNotFoundError(key)

    def get(self, key: str, version_id: str | None = None) -> bytes:
        self._check()
        return self._find(key, version_id).data

    def fetch(self, key: str, version_id: str | None = None) -> tuple[bytes, ObjectInfo]:
        return self.get(key, version_id), self.head(key, version_id)

    def open_object(
        self, key: str, version_id: str | None = None, *, max_bytes: int
    ) -> BytesStream:
        self._check()
        info = self.head(key, version_id)
        if info.size > max_bytes:
            raise ObjectTooLargeError(key, limit=max_bytes, size=info.size)
        return BytesStream(self._find(key, version_id).data, info, max_bytes=max_bytes)

    def bucket_settings(self) -> BucketSettings:
        """A bucket as ``locked`` says: fully Object-Locked, or plain and unversioned."""
        self._check()
        return BucketSettings(
            object_lock_enabled=self.locked,
            default_retention_mode="COMPLIANCE" if self.locked else None,
            default_retention_days=1 if self.locked else None,
            versioning_status="Enabled" if self.locked else None,
            encryption_algorithm="AES256",
            kms_key_id=None,
            bucket_key_enabled=False,
            public_access_block={},
            bucket_policy=None,
            ownership_controls=None,
        )

    def head(self, key: str, version_id: str | None = None) -> ObjectInfo:
        self._check()
        version = self._find(key, version_id)
        return ObjectInfo(
            key, version.version_id, len(version.data), "COMPLIANCE", version.retain_until
        )

    def list_versions(self, prefix: str) -> Iterator[ObjectVersion]:
        self._check()
        for key in sorted(k for k in self.objects if k.startswith(prefix)):
            versions = self.objects[key]
            for index, version in reversed(list(enumerate(versions))):
                yield ObjectVersion(
                    key,
                    version.version_id,
                    index == len(versions) - 1,
                    False,
                    version.modified,
                    len(version.data),
                )
