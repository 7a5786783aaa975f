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

from audit_archiver.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    ObjectTooLargeError,
    StorageError,
    StorageUnavailableError,
)
from audit_archiver.storage.base import BucketSettings, ClosingStream, ObjectInfo, ObjectVersion


class BytesStream(ClosingStream):
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


@dataclass
class _Version:
    version_id: str
    data: bytes
    retain_until: datetime | None
    modified: datetime
    is_marker: bool = False


@dataclass
class MemoryStore:
    """Keys map to version lists (oldest first), as in a versioned bucket.

    Fault injection: ``down`` makes every call fail as transient
    (:class:`StorageUnavailableError`, S3 unreachable); ``refusing`` makes every
    call raise that error (a :class:`StoragePermanentError` such as AccessDenied)
    until it is cleared; ``faults`` maps an operation name (``put_new``,
    ``get``, ``list_versions``...) to errors raised by its next calls, one each.
    A hostile bucket writer: :meth:`put_version` (an unconditional put: a newer
    version, or junk at a free key) and :meth:`delete_marker`.
    """

    locked: bool = True
    down: bool = False
    refusing: StorageError | None = None
    faults: dict[str, list[Exception]] = field(default_factory=dict)
    objects: dict[str, list[_Version]] = field(default_factory=dict)
    puts: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _check(self, operation: str = "") -> None:
        with self._lock:
            self.calls[operation] = self.calls.get(operation, 0) + 1
            queued = self.faults.get(operation)
            fault = queued.pop(0) if queued else None
        if fault is not None:
            raise fault
        if self.down:
            raise StorageUnavailableError("simulated outage: endpoint unreachable")
        if self.refusing is not None:
            raise self.refusing

    def put_version(self, key: str, data: bytes) -> str:
        """Store ``data`` as the newest version of ``key`` unconditionally (what any
        writer without Object Lock powers can do); return its version id."""
        with self._lock:
            version = _Version(f"v{next(self._ids)}", data, None, datetime.now(UTC))
            self.objects.setdefault(key, []).append(version)
        return version.version_id

    def delete_marker(self, key: str) -> str:
        """Add a delete marker on ``key`` (a DeleteObject without a version id)."""
        with self._lock:
            version = _Version(f"v{next(self._ids)}", b"", None, datetime.now(UTC), True)
            self.objects.setdefault(key, []).append(version)
        return version.version_id

    def original(self, key: str) -> bytes:
        """The bytes of the oldest object version of ``key`` (the test's own view)."""
        return next(v.data for v in self.objects[key] if not v.is_marker)

    def object_lock_enabled(self) -> bool:
        self._check("object_lock_enabled")
        return self.locked

    def put_new(self, key: str, data: bytes, *, retain_until: datetime | None) -> ObjectInfo:
        self._check("put_new")
        with self._lock:
            versions = self.objects.setdefault(key, [])
            if versions and not versions[-1].is_marker:
                raise ObjectExistsError(key)
            version = _Version(f"v{next(self._ids)}", data, retain_until, datetime.now(UTC))
            versions.append(version)
            self.puts += 1
        return ObjectInfo(key, version.version_id, len(data), "COMPLIANCE", retain_until)

    def _find(self, key: str, version_id: str | None) -> _Version:
        for version in reversed(self.objects.get(key, [])):
            if version_id is None or version.version_id == version_id:
                if version.is_marker:
                    break
                return version
        raise ObjectNotFoundError(key)

    def get(self, key: str, version_id: str | None = None) -> bytes:
        self._check("get")
        return self._find(key, version_id).data

    def fetch(self, key: str, version_id: str | None = None) -> tuple[bytes, ObjectInfo]:
        return self.get(key, version_id), self.head(key, version_id)

    def open_object(
        self, key: str, version_id: str | None = None, *, max_bytes: int
    ) -> BytesStream:
        self._check("open_object")
        info = self.head(key, version_id)
        if info.size > max_bytes:
            raise ObjectTooLargeError(key, limit=max_bytes, size=info.size)
        return BytesStream(self._find(key, version_id).data, info, max_bytes=max_bytes)

    def read_head(self, key: str, version_id: str | None = None, *, size: int) -> bytes:
        self._check("read_head")
        return self._find(key, version_id).data[:size]

    def bucket_settings(self) -> BucketSettings:
        """A bucket as ``locked`` says: fully Object-Locked, or plain and unversioned."""
        self._check("bucket_settings")
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
        self._check("head")
        version = self._find(key, version_id)
        return ObjectInfo(
            key, version.version_id, len(version.data), "COMPLIANCE", version.retain_until
        )

    def list_versions(self, prefix: str) -> Iterator[ObjectVersion]:
        self._check("list_versions")
        with self._lock:
            listing = {k: list(v) for k, v in self.objects.items() if k.startswith(prefix)}
        for key in sorted(listing):
            versions = listing[key]
            for index, version in reversed(list(enumerate(versions))):
                yield ObjectVersion(
                    key,
                    version.version_id,
                    index == len(versions) - 1,
                    version.is_marker,
                    version.modified,
                    0 if version.is_marker else len(version.data),
                )
