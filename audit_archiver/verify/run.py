"""Settings of a verify run, building the verifier they describe, and running it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
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
from audit_archiver.verify.shard import UNIT_SEGMENTS, Shard
from audit_archiver.verify.state import (
    StreamHead,
    TimestampRecord,
    load_state,
    save_state,
)
from audit_archiver.verify.timestamps import TimestampPolicy
from audit_archiver.verify.verifier import Verifier, VerifyOptions, default_workers

__all__ = [
    "ArchiveSettings",
    "ArchiveSource",
    "VerifySettings",
    "archive_source",
    "build_verifier",
    "heads_to_save",
    "load_policy",
    "load_timestamp_policy",
    "run_verifier",
    "run_verify",
]


@dataclass(frozen=True, kw_only=True)
class ArchiveSettings:
    """Which archive a reading command reads and which keys it trusts: the shared
    options of ``verify``, ``query`` and ``prove`` (``audit_archiver._cli.options``)."""

    public_keys: tuple[Path, ...] = ()
    trust: Path | None = None
    local_dir: Path | None = None
    bucket: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    prefix: str | None = None

    def source(self, command: str) -> ArchiveSource:
        """The archive these options name (:func:`archive_source`).

        Raises:
            ConfigurationError: see :func:`archive_source`.
        """
        return archive_source(
            local_dir=self.local_dir,
            bucket=self.bucket,
            endpoint_url=self.endpoint_url,
            region=self.region,
            prefix=self.prefix,
            command=command,
        )

    def policy(self) -> TrustPolicy:
        """The trust policy these options give (:func:`load_policy`).

        Raises:
            ConfigurationError: see :func:`load_policy`.
        """
        return load_policy(self.public_keys, self.trust)


@dataclass(frozen=True, kw_only=True)
class VerifySettings(ArchiveSettings):
    """Everything the ``verify`` command was asked to do."""

    streams: tuple[str, ...] = ()
    workers: int | None = None
    state: Path | None = None
    min_retention_days: int | None = None
    max_age: float | None = None
    since: str | None = None
    deep: bool = False
    max_object_bytes: int | None = None
    progress: bool = True
    tsa_certs: tuple[Path, ...] = ()
    require_timestamps: bool = False
    shard: str | None = None
    """``K/N``: check only shard K of N (:mod:`audit_archiver.verify.shard`)."""
    shard_unit_segments: int | None = None
    """Segments per work unit (tests only; default :data:`UNIT_SEGMENTS`)."""


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


def load_timestamp_policy(tsa_certs: tuple[Path, ...], required: bool) -> TimestampPolicy:
    """How tokens are checked: ``--tsa-cert`` PEM files (each may hold several
    certificates) as trust anchors, and ``--require-timestamps``.

    Raises:
        ConfigurationError: ``--require-timestamps`` without ``--tsa-cert``, or
            a file that cannot be read or holds no certificate.
    """
    if required and not tsa_certs:
        raise ConfigurationError("--require-timestamps needs --tsa-cert PEM (the TSA's CA)")
    if not tsa_certs:
        return TimestampPolicy(None, required)
    from audit_archiver.config import load_tsa_trust  # the agent's config parser: only here

    return TimestampPolicy(load_tsa_trust(tsa_certs), required)


@dataclass(frozen=True)
class ArchiveSource:
    """Where an archive is read from, as every reading command needs it.

    ``label`` names the source in reports and state files (``s3://bucket/prefix``
    or the folder); ``key_base`` is what precedes ``<stream>/`` in a listed key
    (``prefix/`` in a bucket, empty in a folder, which holds a copy of one
    prefix); ``seal_prefix`` is the prefix every seal must name (None in a
    folder without ``--prefix``: unknown); ``in_bucket`` says whether bucket
    settings, versions and retention can be checked.
    """

    spec: StoreSpec
    label: str
    key_base: str
    seal_prefix: str | None
    in_bucket: bool

    def stream_base(self, stream: str) -> str:
        """The listing prefix of one stream's segments (``key_base + stream + "/"``)."""
        return f"{self.key_base}{stream}/"


def archive_source(
    *,
    local_dir: Path | None,
    bucket: str | None,
    endpoint_url: str | None = None,
    region: str | None = None,
    prefix: str | None = None,
    command: str = "read",
) -> ArchiveSource:
    """The archive named by the shared source options (``audit_archiver._cli.options``),
    the one rule for ``verify``, ``query`` and ``prove``.

    Raises:
        ConfigurationError: neither or both of ``--local-dir`` and ``--bucket``,
            a prefix no writer could use, or a ``--local-dir`` that is not a folder.
    """
    if (local_dir is None) == (bucket is None):
        raise ConfigurationError(f"give either --local-dir DIR or --bucket NAME to {command}")
    if prefix is not None:
        try:
            validate_prefix(prefix)
        except ValueError as e:
            raise ConfigurationError(str(e)) from e
    if bucket is not None:
        base = prefix or ""
        return ArchiveSource(
            S3Spec(bucket, region, endpoint_url),
            f"s3://{bucket}/{base}",
            f"{base}/" if base else "",
            base,
            in_bucket=True,
        )
    assert local_dir is not None
    if not local_dir.is_dir():
        raise ConfigurationError(f"--local-dir {local_dir} is not a directory")
    # A copy of a prefix: <stream>/<file>, two levels.
    return ArchiveSource(
        LocalSpec(local_dir, max_depth=2), str(local_dir), "", prefix, in_bucket=False
    )


def _source(settings: VerifySettings) -> tuple[StoreSpec, str, VerifyOptions]:
    source = settings.source("verify")
    options = VerifyOptions(
        key_base=source.key_base, seal_prefix=source.seal_prefix, check_bucket=source.in_bucket
    )
    return source.spec, source.label, options


def build_verifier(settings: VerifySettings, now: datetime | None = None) -> Verifier:
    """Load keys and state, open the store and return a ready verifier.

    Raises:
        ConfigurationError: no source or two, bad prefix, stream id, time or
            numbers, unreadable keys or state.
    """
    policy = settings.policy()
    timestamps = load_timestamp_policy(settings.tsa_certs, settings.require_timestamps)
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
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigurationError(message)
    spec, source, base = _source(settings)
    shard = _shard(settings, base)
    stamps = _record(timestamps)
    state = load_state(settings.state, source, timestamps=stamps) if settings.state else {}
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
        timestamps=timestamps,
        shard=shard,
    )
    progress = ProgressReporter() if settings.progress else None
    store = spec.open()
    bucket = store if isinstance(store, BucketSettingsSource) else None
    return Verifier(
        store, policy, options, source=source, spec=spec, bucket=bucket, progress=progress
    )


def _shard(settings: VerifySettings, options: VerifyOptions) -> Shard | None:
    """The shard ``--shard K/N`` names, refused where a shard's report could not be
    merged into the report of a full run.

    Raises:
        ConfigurationError: not K/N, or with ``--state`` (a state file holds every
            stream's head, a shard knows parts of streams: N shards would race to
            write N partial files), ``--since`` (its start depends on each whole
            stream) or a folder without ``--prefix`` (the prefix would be pinned by
            each shard's own majority, not the archive's).
    """
    if settings.shard is None:
        if settings.shard_unit_segments is not None:
            raise ConfigurationError("--shard-unit-segments needs --shard K/N")
        return None
    refusals = [
        (settings.state is not None, "--state: a state file holds every stream's head"),
        (settings.since is not None, "--since: where it starts depends on each whole stream"),
        (
            options.seal_prefix is None,
            "--local-dir without --prefix: each shard would pin its own prefix",
        ),
    ]
    for refused, why in refusals:
        if refused:
            raise ConfigurationError(f"--shard cannot be used with {why}")
    try:
        return Shard.parse(settings.shard, settings.shard_unit_segments or UNIT_SEGMENTS)
    except ValueError as e:
        raise ConfigurationError(str(e)) from e


def _record(timestamps: TimestampPolicy) -> TimestampRecord:
    """What a state file records of the time-stamp policy its heads were verified under."""
    anchors = timestamps.trust.certificates if timestamps.trust else ()
    return TimestampRecord.of(anchors, required=timestamps.required)


def run_verify(settings: VerifySettings) -> Report:
    """Verify, and record in ``--state`` the heads :func:`heads_to_save` picks.

    Raises:
        ConfigurationError: bad settings (see :func:`build_verifier`).
        StorageError: the store failed.
    """
    return run_verifier(build_verifier(settings), settings.state)


def run_verifier(verifier: Verifier, state: Path | None) -> Report:
    """Run a built verifier and record in ``state`` the heads it verified (the one rule
    for saving state, shared by ``verify --state`` and ``verify --watch``; see
    :func:`heads_to_save`).

    Raises:
        ConfigurationError: the state file cannot be read again or written.
        StorageError: the store failed.
    """
    report = verifier.run()
    if state is not None:
        heads = heads_to_save(
            report, verifier.heads, load_state(state, report.source), verifier.newest_listed()
        )
        save_state(state, report.source, heads, timestamps=_record(verifier.options.timestamps))
    return report


_RELISTED = frozenset(
    {
        "extra_version",
        "delete_marker",
        "unexpected_object",
        "bucket_object_lock_disabled",
        "bucket_versioning_disabled",
        "bucket_default_retention",
    }
)
"""Problems every run finds again from the listing or the bucket's settings, whatever
the saved heads: they hold no head back."""


def heads_to_save(
    report: Report,
    verified: Mapping[str, StreamHead],
    saved: Mapping[str, StreamHead],
    newest: Mapping[str, int] | None = None,
) -> dict[str, StreamHead]:
    """The state to write after ``report``.

    Streams are independent chains, so each is judged on its own: a stream with
    no problem in the run, or only problems every run finds again from the
    listing (:data:`_RELISTED`: later versions, delete markers, stray objects,
    the bucket's settings), gets its newly ``verified`` head. A stream with
    another problem keeps the head ``saved`` before (none if it had none), so
    every later run re-checks it from there and reports the problem again; the
    kept head also records the ``newest`` segment number listed
    (``seen_through``), so deleting the bad tail afterwards is ``truncated``,
    not a clean run. Streams the run did not look at (``--stream``) keep their
    saved heads.
    """
    newest = newest or {}
    troubled = {problem.stream for problem in report.problems if problem.kind not in _RELISTED}
    heads = dict(saved)
    for name, head in verified.items():
        if name not in troubled:
            heads[name] = head
    for stream in troubled - {None}:
        assert stream is not None
        kept, seen = heads.get(stream), newest.get(stream)
        if kept is not None and seen is not None and seen >= kept.segment_seq:
            heads[stream] = dataclasses.replace(
                kept, seen_through=max(seen, kept.seen_through or seen)
            )
    return heads
