"""The storage protocol: only what the agent and the verifier need.

Six operations: a conditional put with retention (never overwrites), get
(optionally of one version), fetch (get's bytes with head's metadata, in one
read where the store allows), open_object (fetch as a bounded stream: the
verifier reads untrusted objects through it and never holds more than it
asks for), head (retention, legal hold, checksum) and a paginated listing of
every version and delete marker under a prefix. Each driver wraps its own
exceptions into :mod:`audit_archiver.errors` at this boundary.

Bucket-level settings (Object Lock, versioning, encryption) are a separate,
smaller seam, :class:`BucketSettingsSource`: only S3 has them.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

__all__ = [
    "BucketSettings",
    "BucketSettingsSource",
    "ClosingStream",
    "ObjectInfo",
    "ObjectStore",
    "ObjectStream",
    "ObjectVersion",
]


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


class ObjectStream(Protocol):
    """The bytes of one object version, read in bounded pieces.

    ``info`` is the version's metadata as the store reported it when the
    stream was opened. Integrity checks of the transport (S3's checksum)
    happen when :meth:`read` reaches the end, so a caller that needs them must
    read until it returns ``b""``. Use as a context manager, or call
    :meth:`close`.
    """

    info: ObjectInfo

    def read(self, size: int) -> bytes:
        """Return up to ``size`` (> 0) more bytes; ``b""`` at the end.

        Raises:
            ObjectTooLargeError: more bytes arrived than the stream's ``max_bytes``.
            TransportChecksumError: at the end, the bytes do not match the store's checksum.
            StorageUnavailableError: the connection broke or timed out (retrying may help).
            StorageError: the read failed otherwise.
        """
        ...

    def close(self) -> None:
        """Release the connection or file; further reads are an error."""
        ...

    def __enter__(self) -> ObjectStream: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


class ClosingStream(abc.ABC):
    """The ``with`` plumbing every store's :class:`ObjectStream` shares: leaving the
    block closes the stream."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection or file."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


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

    def open_object(
        self, key: str, version_id: str | None = None, *, max_bytes: int
    ) -> ObjectStream:
        """Open ``key`` (the latest version, or ``version_id``) for bounded reading.

        Raises:
            ObjectTooLargeError: the stored size is over ``max_bytes`` (nothing is read).
            ObjectNotFoundError: no such object or version.
            StorageUnavailableError: the store could not be reached (retrying may help).
            StorageError: the store failed or refused.
        """
        ...

    def read_head(self, key: str, version_id: str | None = None, *, size: int) -> bytes:
        """Return the first ``size`` bytes of ``key`` (fewer when it is shorter): one
        ranged read, so a seal frame can be read without downloading the body. No
        store checksum covers a part of an object: the caller authenticates what it
        reads (a seal's signature).

        Raises:
            ObjectNotFoundError: no such object or version.
            StorageUnavailableError: the store could not be reached (retrying may help).
            StorageError: the store failed or refused.
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


@dataclass(frozen=True)
class BucketSettings:
    """What a bucket is configured to do, as S3 reports it.

    A configuration the bucket does not have maps to None (or False, or all
    flags False for the public access block), never to an error.

    Attributes:
        object_lock_enabled: Object Lock is enabled on the bucket.
        default_retention_mode: ``"COMPLIANCE"`` or ``"GOVERNANCE"``, if a default rule is set.
        default_retention_days: the default retention period in days; a period
            given in years is converted at 365 days per year.
        versioning_status: ``"Enabled"`` or ``"Suspended"``; None if never enabled.
        encryption_algorithm: default encryption, e.g. ``"aws:kms"`` or ``"AES256"``.
        kms_key_id: the default KMS key, if any.
        bucket_key_enabled: S3 Bucket Keys are enabled for default encryption.
        public_access_block: the four Block Public Access flags by their S3 names.
        bucket_policy: the parsed bucket policy document, if any.
        ownership_controls: the object ownership setting, e.g. ``"BucketOwnerEnforced"``.
    """

    object_lock_enabled: bool
    default_retention_mode: str | None
    default_retention_days: int | None
    versioning_status: str | None
    encryption_algorithm: str | None
    kms_key_id: str | None
    bucket_key_enabled: bool
    public_access_block: dict[str, bool]
    bucket_policy: dict[str, Any] | None
    ownership_controls: str | None


@runtime_checkable
class BucketSettingsSource(Protocol):
    """A store that can say how its bucket is configured (S3; a folder has no settings)."""

    def bucket_settings(self) -> BucketSettings:
        """Read the bucket's Object Lock, versioning, encryption and access settings.

        Raises:
            ConfigurationError: the bucket does not exist.
            StorageUnavailableError: the store could not be reached (retrying may help).
            StorageError: the store refused one of the reads.
        """
        ...
