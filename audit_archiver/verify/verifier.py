"""Verify an archive held in an object store (a downloaded folder, or a bucket).

Order of work:

1. In a bucket, check its configuration (Object Lock, versioning, default
   COMPLIANCE retention).
2. List every version and delete marker under the prefix (paginated) and sort
   them into streams of segments. A key's *original* version (the oldest) is
   the evidence; later versions and delete markers are reported, never
   verified in its place. Keys outside the layout are reported.
3. Decide where each stream's check starts: at segment 0; after the head a
   previous run recorded (``--state``: a tail older than that head is
   *truncated*, a changed head is *rewritten*); or just before the first
   segment stored since ``--since``.
4. Fetch and check segments in parallel (:mod:`audit_archiver.verify.worker`),
   feeding the results to each stream's chain in segment order.
5. Flag streams whose newest seal is older than ``--max-age``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from audit_archiver.core.encoding import format_timestamp
from audit_archiver.core.layout import SegmentKey, parse_segment_key, segment_key, validate_prefix
from audit_archiver.core.segment import DEFAULT_MAX_BODY_BYTES
from audit_archiver.core.signing import TrustedKey
from audit_archiver.storage.base import ObjectStore, ObjectVersion
from audit_archiver.storage.specs import S3Spec, StoreSpec
from audit_archiver.verify.chain import StreamChain
from audit_archiver.verify.problems import Problem
from audit_archiver.verify.report import Report
from audit_archiver.verify.segment_check import SegmentResult
from audit_archiver.verify.state import StreamHead
from audit_archiver.verify.worker import CheckSettings, SegmentTask, run_tasks, trusted_as_der

__all__ = ["SegmentTask", "Verifier", "VerifyOptions", "default_workers"]

Progress = Callable[[int, int, int], None]


def default_workers() -> int:
    """Default number of downloads in flight."""
    return 16


@dataclass(frozen=True)
class VerifyOptions:
    """What to verify and how.

    ``key_base`` is stripped from listed keys to get ``<stream>/<file>``;
    ``seal_prefix`` is the prefix each seal's object key must carry, or None
    when unknown (a downloaded folder: the seal's key must then end with the
    relative path).
    """

    key_base: str = ""
    seal_prefix: str | None = None
    streams: tuple[str, ...] = ()
    workers: int = 8
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    check_bucket: bool = False
    min_retention_days: int | None = None
    max_age: float | None = None
    since: datetime | None = None
    now: datetime | None = None
    state: Mapping[str, StreamHead] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse a seal prefix no writer could have used.

        Raises:
            ValueError: ``seal_prefix`` is not a valid key prefix.
        """
        if self.seal_prefix is not None:
            validate_prefix(self.seal_prefix)


@dataclass
class _Stream:
    """One stream's original segment versions, and what was found beside them."""

    segments: dict[int, list[tuple[SegmentKey, ObjectVersion]]] = field(
        default_factory=lambda: defaultdict(list)
    )


class Verifier:
    """Checks every segment under a prefix and every stream's chain."""

    def __init__(
        self,
        store: ObjectStore,
        trusted: Mapping[str, TrustedKey],
        options: VerifyOptions,
        source: str,
        *,
        spec: StoreSpec | None = None,
        progress: Progress | None = None,
    ) -> None:
        self._store = store
        self._trusted = dict(trusted)
        self._options = options
        self._source = source
        self._spec = spec
        self._progress = progress
        self.heads: dict[str, StreamHead] = {}

    def run(self) -> Report:
        """Check the bucket, list, check and chain everything; return the report.

        Raises:
            StorageError: the store failed (objects that cannot be read intact
                become problems, not errors).
        """
        report = Report(self._source)
        if self._options.check_bucket:
            report.problems += self._bucket_problems()
        streams = self._plan(self._store.list_versions(self._options.key_base), report)
        wanted = sorted(set(self._options.streams or streams) | self._state_streams())
        chains: dict[str, StreamChain] = {}
        tasks: list[SegmentTask] = []
        for name in wanted:
            stream = streams.get(name)
            if stream is None or not stream.segments:
                report.problems.append(
                    Problem(
                        "stream_missing", name, "no segments found for this stream", stream=name
                    )
                )
                continue
            chain, stream_tasks = self._start(name, stream, report)
            chains[name] = chain
            tasks += stream_tasks
        self._check(tasks, chains, report)
        for name, chain in chains.items():
            report.problems += chain.problems
            report.streams.append(chain.summary())
            self._finish_stream(name, chain, report)
        report.streams.sort(key=lambda s: s.stream)
        return report

    # -- planning -------------------------------------------------------------

    def _bucket_problems(self) -> list[Problem]:
        settings = self._store.bucket_settings()  # type: ignore[attr-defined]
        bucket = self._spec.bucket if isinstance(self._spec, S3Spec) else self._source
        problems = []
        if not settings.object_lock_enabled:
            problems.append(
                Problem(
                    "bucket_object_lock_disabled",
                    bucket,
                    "Object Lock is not enabled: segments can be deleted",
                    expected="Enabled",
                    found="disabled",
                )
            )
        if settings.versioning_status != "Enabled":
            problems.append(
                Problem(
                    "bucket_versioning_disabled",
                    bucket,
                    "versioning is not enabled",
                    expected="Enabled",
                    found=str(settings.versioning_status),
                )
            )
        if settings.default_retention_mode != "COMPLIANCE":
            problems.append(
                Problem(
                    "bucket_default_retention",
                    bucket,
                    "default retention is not COMPLIANCE",
                    expected="COMPLIANCE",
                    found=str(settings.default_retention_mode),
                )
            )
        return problems

    def _state_streams(self) -> set[str]:
        state = self._options.state
        return {
            name for name in state if not self._options.streams or name in self._options.streams
        }

    def _plan(self, listing: Iterable[ObjectVersion], report: Report) -> dict[str, _Stream]:
        by_key: dict[str, list[ObjectVersion]] = defaultdict(list)
        for entry in listing:
            by_key[entry.key].append(entry)
        streams: dict[str, _Stream] = defaultdict(_Stream)
        base = self._options.key_base
        for key in sorted(by_key):
            entries = by_key[key]
            location = parse_segment_key(key[len(base) :])
            if location is None or location.prefix:
                report.problems.append(
                    Problem("unexpected_object", key, "not a segment key of the layout")
                )
                continue
            versions = [e for e in entries if not e.is_delete_marker]
            for marker in (e for e in entries if e.is_delete_marker):
                hides = "hides the segment" if marker.is_latest else "is an older delete marker"
                report.problems.append(
                    Problem(
                        "delete_marker",
                        key,
                        f"delete marker {marker.version_id} {hides}",
                        stream=location.stream,
                        found=marker.version_id,
                    )
                )
            if not versions:
                continue
            original = versions[-1]
            for extra in versions[:-1]:
                report.problems.append(
                    Problem(
                        "extra_version",
                        key,
                        f"version {extra.version_id} was written over the original"
                        f" {original.version_id}; the original is verified",
                        stream=location.stream,
                        expected=original.version_id,
                        found=extra.version_id,
                    )
                )
            streams[location.stream].segments[location.segment_seq].append((location, original))
        return streams

    def _task(self, location: SegmentKey, version: ObjectVersion) -> SegmentTask:
        seal_prefix = self._options.seal_prefix
        expected = None
        if seal_prefix is not None:
            expected = segment_key(
                seal_prefix, location.stream, location.segment_seq, location.compression
            )
        return SegmentTask(
            version.key, version.version_id, location.stream, location.segment_seq, expected
        )

    def _start(
        self, name: str, stream: _Stream, report: Report
    ) -> tuple[StreamChain, list[SegmentTask]]:
        numbers = sorted(stream.segments)
        saved = self._options.state.get(name)
        first = 0
        chain = StreamChain(name)
        if saved is not None:
            if numbers[-1] < saved.segment_seq:
                report.problems.append(
                    Problem(
                        "truncated",
                        saved.key,
                        f"newest segment is {numbers[-1]}, but a previous run verified up to"
                        f" {saved.segment_seq}: the tail was removed",
                        stream=name,
                        expected=f">= {saved.segment_seq}",
                        found=str(numbers[-1]),
                    )
                )
            else:
                first = saved.segment_seq
        elif self._options.since is not None:
            recent = [
                n
                for n in numbers
                if any(
                    v.last_modified is None or v.last_modified >= self._options.since
                    for _, v in stream.segments[n]
                )
            ]
            first = max(0, recent[0] - 1) if recent else numbers[-1]
            chain = StreamChain(name, first_segment=first)
        tasks = [
            self._task(location, version)
            for n in numbers
            if n >= first
            for location, version in stream.segments[n]
        ]
        if saved is not None and first == saved.segment_seq:
            chain = StreamChain(name, anchor=saved.anchor())
        return chain, tasks

    # -- checking -------------------------------------------------------------

    def _check(
        self, tasks: list[SegmentTask], chains: dict[str, StreamChain], report: Report
    ) -> None:
        settings = CheckSettings(
            spec=self._spec_or_default(),
            trusted_der=trusted_as_der(self._trusted),
            check_retention=self._options.check_bucket,
            min_retention_days=self._options.min_retention_days,
            max_body_bytes=self._options.max_body_bytes,
            threads=1,
        )
        done = events = 0
        for result in run_tasks(tasks, settings, self._options.workers):
            done += 1
            events += result.events
            report.notices += result.notices
            if self._progress is not None:
                self._progress(done, len(tasks), events)
            saved = self._options.state.get(result.stream)
            if saved is not None and result.segment_seq == saved.segment_seq:
                self._compare_head(saved, result, report)
                continue
            report.problems += result.problems
            chains[result.stream].add(result)

    def _spec_or_default(self) -> StoreSpec | ObjectStore:
        return self._spec if self._spec is not None else self._store

    def _compare_head(self, saved: StreamHead, result: SegmentResult, report: Report) -> None:
        changed = result.seal_hash != saved.seal_hash or (
            saved.version_id is not None and result.version_id != saved.version_id
        )
        if changed or result.problems:
            report.problems.append(
                Problem(
                    "history_rewritten",
                    result.key,
                    "the segment a previous run verified as head has changed",
                    stream=result.stream,
                    expected=f"{saved.seal_hash} ({saved.version_id})",
                    found=f"{result.seal_hash} ({result.version_id})",
                )
            )

    def _finish_stream(self, name: str, chain: StreamChain, report: Report) -> None:
        anchor = chain.head_anchor
        head = chain.head_result
        saved = self._options.state.get(name)
        if anchor is not None and head is not None and head.seal_hash == anchor.seal_hash:
            self.heads[name] = StreamHead(
                head.key,
                head.version_id,
                anchor.segment_seq,
                anchor.seal_hash,
                anchor.next_seq,
                anchor.last_received_at,
                anchor.sealed_at,
            )
        elif saved is not None:
            self.heads[name] = saved
        newest = self.heads[name].sealed_at if name in self.heads else None
        if self._options.max_age is not None and self._options.now is not None:
            limit = format_timestamp(self._options.now - timedelta(seconds=self._options.max_age))
            if newest is None or newest < limit:
                report.problems.append(
                    Problem(
                        "stale_stream",
                        name,
                        f"newest segment was sealed at {newest}, more than"
                        f" {self._options.max_age:g} s ago",
                        stream=name,
                        expected=f">= {limit}",
                        found=str(newest),
                    )
                )
