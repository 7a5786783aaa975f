"""Settings of a verify run, and building the verifier they describe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audit_archiver.core.layout import validate_prefix, validate_stream_id
from audit_archiver.errors import ConfigurationError
from audit_archiver.keys import load_public_keys
from audit_archiver.storage.localdir import LocalDirectoryStore
from audit_archiver.verify.verifier import Verifier, VerifyOptions, default_workers

__all__ = ["VerifySettings", "build_verifier"]


@dataclass(frozen=True)
class VerifySettings:
    """Everything the ``verify`` command was asked to do."""

    public_keys: tuple[Path, ...]
    local_dir: Path | None = None
    bucket: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    prefix: str | None = None
    streams: tuple[str, ...] = ()
    workers: int | None = None


def build_verifier(settings: VerifySettings) -> Verifier:
    """Load keys, open the store and return a ready verifier.

    Raises:
        ConfigurationError: no source given, bad prefix or stream id, bad keys.
    """
    trusted = load_public_keys(list(settings.public_keys))
    try:
        if settings.prefix is not None:
            validate_prefix(settings.prefix)
        for stream in settings.streams:
            validate_stream_id(stream)
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    workers = settings.workers or default_workers()
    if workers < 1:
        raise ConfigurationError("--workers must be at least 1")
    if (settings.local_dir is None) == (settings.bucket is None):
        raise ConfigurationError("give either --local-dir DIR or --bucket NAME to verify")
    if settings.bucket is not None:
        from audit_archiver.storage.s3 import S3Store

        prefix = settings.prefix or ""
        options = VerifyOptions(
            key_base=f"{prefix}/" if prefix else "",
            seal_prefix=prefix,
            streams=settings.streams,
            workers=workers,
        )
        store = S3Store.connect(
            settings.bucket, region=settings.region, endpoint_url=settings.endpoint_url
        )
        source = f"s3://{settings.bucket}/{prefix}"
        return Verifier(store, trusted, options, source=source)
    assert settings.local_dir is not None
    if not settings.local_dir.is_dir():
        raise ConfigurationError(f"--local-dir {settings.local_dir} is not a directory")
    options = VerifyOptions(
        key_base="", seal_prefix=settings.prefix, streams=settings.streams, workers=workers
    )
    return Verifier(
        LocalDirectoryStore(settings.local_dir), trusted, options, source=str(settings.local_dir)
    )
