"""The storage protocol: only what the agent and the verifier need.

Five operations: a conditional put with retention (never overwrites), get
(optionally of one version), fetch (get's bytes with head's metadata, in one
read where the store allows), head (retention, legal hold, checksum) and a
paginated listing of every version and delete marker under a prefix. Each
driver wraps its own exceptions into :mod:`audit_archiver.errors` at this
boundary.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["ObjectInfo", "ObjectStore", "ObjectVersion"]


@dataclass(frozen=True)
class ObjectVersion:
    """One entry of a version listing: an object version or a delete marker.

    ``version_id`` is None where the store has no versions (a local directory).
    """

    key: str
    version_id: str | None
    is_latest: bool
    is_delete_marker: bool
    last_modified: datetime | None
    size: int


@dataclass(frozen=True)
class ObjectInfo:
    """Metadata of one stored object version."""

    key: str
    version_id: str | None
    size: int
    retention_mode: str | None = None
    retain_until: datetime | None = None
    legal_hold: bool = False
    checksum_sha256: str | None = None


class ObjectStore(Protocol):
    """A place segments are written to and read from."""

    def put_new(self, key: str, data: bytes, *, retain_until: datetime | None) -> ObjectInfo:
        """Store ``data`` at ``key`` only if nothing is there yet.

        Raises:
            ObjectExistsError: an object already exists at ``key``.
            StorageError: the store failed or refused.
        """
        ...

    def get(self, key: str, version_id: str | None = None) -> bytes:
        """Return the bytes of ``key`` (the latest version, or ``version_id``).

        Raises:
            ObjectNotFoundError: no such object or version.
            TransportChecksumError: the bytes do not match the checksum the store holds.
            StorageError: the store failed.
        """
        ...

    def fetch(self, key: str, version_id: str | None = None) -> tuple[bytes, ObjectInfo]:
        """Return the bytes of ``key`` and its metadata (retention, legal hold) together.

        Raises:
            ObjectNotFoundError: no such object or version.
            TransportChecksumError: the bytes do not match the checksum the store holds.
            StorageError: the store failed.
        """
        ...

    def head(self, key: str, version_id: str | None = None) -> ObjectInfo:
        """Return metadata of ``key`` (the latest version, or ``version_id``).

        Raises:
            ObjectNotFoundError: no such object or version.
            StorageError: the store failed.
        """
        ...

    def list_versions(self, prefix: str) -> Iterator[ObjectVersion]:
        """Yield every version and delete marker whose key starts with ``prefix``.

        Keys come in ascending order; a key's versions newest first.

        Raises:
            StorageError: the store failed.
        """
        ...
