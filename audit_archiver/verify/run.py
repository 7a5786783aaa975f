"""Settings of a verify run, building the verifier they describe, and running it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from audit_archiver.core.encoding import parse_rfc3339
from audit_archiver.core.layout import validate_prefix, validate_stream_id
from audit_archiver.core.trust import TrustPolicy
from audit_archiver.errors import ConfigurationError
from audit_archiver.storage.base import BucketSettingsSource
from audit_archiver.storage.specs import LocalSpec, S3Spec, StoreSpec
from audit_archiver.trust_file import load_trust_file, policy_from_public_keys
from audit_archiver.verify.progress import ProgressReporter
from audit_archiver.verify.report import Report
from audit_archiver.verify.segment_check import Limits
from audit_archiver.verify.state import load_state, save_state
from audit_archiver.verify.verifier import Verifier, VerifyOptions, default_workers

__all__ = ["VerifySettings", "build_verifier", "load_policy", "run_verify"]


@dataclass(frozen=True)
class VerifySettings:
    """Everything the ``verify`` command was asked to do."""

    public_keys: tuple[Path, ...] = ()
    trust: Path | None = None
    local_dir: Path | None = None
    bucket: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    prefix: str | None = None
    streams: tuple[str, ...] = ()
    workers: int | None = None
    state: Path | None = None
    min_retention_days: int | None = None
    max_age: float | None = None
    since: str | None = None
    deep: bool = False
    max_object_bytes: int | None = None
    progress: bool = True


def load_policy(public_keys: tuple[Path, ...], trust: Path | None) -> TrustPolicy:
    """The trust policy of a command that checks signatures: ``--trust FILE``, or every
    ``--public-key`` allowed for every stream.

    Raises:
        ConfigurationError: neither or both given, or a key or trust file is bad.
    """
    if (trust is None) == (not public_keys):
        raise ConfigurationError(
            "give either --trust FILE or one or more --public-key PEM (not both)"
        )
    if trust is not None:
        return load_trust_file(trust)
    return policy_from_public_keys(list(public_keys))


def _source(settings: VerifySettings) -> tuple[StoreSpec, str, VerifyOptions]:
    prefix = settings.prefix
    if settings.bucket is not None:
        prefix = prefix or ""
        spec: StoreSpec = S3Spec(settings.bucket, settings.region, settings.endpoint_url)
        source = f"s3://{settings.bucket}/{prefix}"
        return (
            spec,
            source,
            VerifyOptions(
                key_base=f"{prefix}/" if prefix else "", seal_prefix=prefix, check_bucket=True
            ),
        )
    assert settings.local_dir is not None
    if not settings.local_dir.is_dir():
        raise ConfigurationError(f"--local-dir {settings.local_dir} is not a directory")
    return (
        LocalSpec(settings.local_dir, max_depth=2),  # a copy of a prefix: <stream>/<file>
        str(settings.local_dir),
        VerifyOptions(seal_prefix=prefix),
    )


def build_verifier(settings: VerifySettings, now: datetime | None = None) -> Verifier:
    """Load keys and state, open the store and return a ready verifier.

    Raises:
        ConfigurationError: no source or two, bad prefix, stream id, time or
            numbers, unreadable keys or state.
    """
    policy = load_policy(settings.public_keys, settings.trust)
    try:
        if settings.prefix is not None:
            validate_prefix(settings.prefix)
        for stream in settings.streams:
            validate_stream_id(stream)
        since = parse_rfc3339(settings.since) if settings.since else None
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    workers = default_workers() if settings.workers is None else settings.workers
    checks = [
        (workers >= 1, "--workers must be at least 1"),
        (
            settings.min_retention_days is None or settings.min_retention_days >= 1,
            "--min-retention-days must be at least 1",
        ),
        (settings.max_age is None or settings.max_age > 0, "--max-age must be positive"),
        (
            settings.max_object_bytes is None or settings.max_object_bytes >= 1024,
            "--max-object-bytes must be at least 1024",
        ),
        (
            (settings.local_dir is None) != (settings.bucket is None),
            "give either --local-dir DIR or --bucket NAME to verify",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigurationError(message)
    spec, source, base = _source(settings)
    state = load_state(settings.state, source) if settings.state else {}
    limits = Limits()
    if settings.max_object_bytes is not None:
        limits = dataclasses.replace(limits, max_object_bytes=settings.max_object_bytes)
    options = dataclasses.replace(
        base,
        streams=settings.streams,
        workers=workers,
        limits=limits,
        deep=settings.deep,
        min_retention_days=settings.min_retention_days,
        max_age=settings.max_age,
        since=since,
        now=now or datetime.now(UTC),
        state=state,
    )
    progress = ProgressReporter() if settings.progress else None
    store = spec.open()
    bucket = store if isinstance(store, BucketSettingsSource) else None
    return Verifier(
        store, policy, options, source=source, spec=spec, bucket=bucket, progress=progress
    )


def run_verify(settings: VerifySettings) -> Report:
    """Verify, and after a clean run record each stream's head in ``--state``.

    Raises:
        ConfigurationError: bad settings (see :func:`build_verifier`).
        StorageError: the store failed.
    """
    verifier = build_verifier(settings)
    report = verifier.run()
    if settings.state is not None and report.ok:
        save_state(settings.state, report.source, verifier.heads)
    return report
