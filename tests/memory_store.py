"""An in-memory, versioned object store with Object Lock semantics, for unit tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count

from audit_archiver.errors import ObjectExistsError, ObjectNotFoundError, StorageError
from audit_archiver.storage.base import ObjectInfo, ObjectVersion


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
