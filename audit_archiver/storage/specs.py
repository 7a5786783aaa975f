"""Picklable descriptions of object stores, so worker processes can open their own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audit_archiver.storage.base import ObjectStore
from audit_archiver.storage.localdir import LocalDirectoryStore

__all__ = ["LocalSpec", "S3Spec", "StoreSpec"]


@dataclass(frozen=True)
class LocalSpec:
    """A local directory (a downloaded copy of a prefix).

    ``max_depth`` bounds how deep keys go (see :class:`LocalDirectoryStore`):
    a copy of a prefix holds ``<stream>/<file>``, so a verifier passes 2.
    """

    root: Path
    max_depth: int | None = None

    def open(self) -> ObjectStore:
        """Open the directory store."""
        return LocalDirectoryStore(self.root, self.max_depth)


@dataclass(frozen=True)
class S3Spec:
    """An S3 bucket (or S3-compatible endpoint)."""

    bucket: str
    region: str | None = None
    endpoint_url: str | None = None

    def open(self) -> ObjectStore:
        """Connect a new client to the bucket.

        Raises:
            ConfigurationError: bad region or endpoint.
        """
        from audit_archiver.storage.s3 import S3Store

        return S3Store.connect(self.bucket, region=self.region, endpoint_url=self.endpoint_url)


StoreSpec = LocalSpec | S3Spec
