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
   *truncated*; a changed head, or a segment behind it gone or replaced in the
   listing, is *rewritten*); or just before the first segment stored since
   ``--since``.
4. Fetch and check segments in parallel (:mod:`audit_archiver.verify.worker`),
   feeding the results to each stream's chain in segment order, noting which
   key signed what (``key_changed`` against the state) and which prefix each
   seal names.
5. Pin the run's prefix (``prefix_mismatch``) and flag streams whose newest
   seal is older than ``--max-age``.

Nothing found in an object stops the run: problems are collected and the
report is always returned (see ADR 6).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from audit_archiver.core.chain import ChainHead
from audit_archiver.core.encoding import format_timestamp
from audit_archiver.core.layout import SegmentKey, parse_segment_key, segment_key, validate_prefix
from audit_archiver.core.trust import TrustPolicy
from audit_archiver.errors import IntegrityError, ObjectNotFoundError
from audit_archiver.storage.base import BucketSettingsSource, ObjectStore, ObjectVersion
from audit_archiver.storage.specs import S3Spec, StoreSpec
from audit_archiver.verify.bucket_check import object_lock_problems
from audit_archiver.verify.chain import StreamChain, combine_summaries, seal_prefix
from audit_archiver.verify.listing import StreamSegments, plan_streams
from audit_archiver.verify.problems import Problem
from audit_archiver.verify.report import Report
from audit_archiver.verify.seal_reader import SealUnreadableError, read_seal
from audit_archiver.verify.segment_check import Limits, SegmentResult
from audit_archiver.verify.shard import Shard, Unit, units_of
from audit_archiver.verify.state import StreamHead, history_digest
from audit_archiver.verify.timestamp_tally import TimestampTally
from audit_archiver.verify.timestamps import TimestampPolicy
from audit_archiver.verify.worker import CheckSettings, SegmentTask, run_tasks

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
    relative path, and every seal of the run must name the same prefix).
    """

    key_base: str = ""
    seal_prefix: str | None = None
    streams: tuple[str, ...] = ()
    workers: int = default_workers()
    limits: Limits = field(default_factory=Limits)
    deep: bool = False
    check_bucket: bool = False
    min_retention_days: int | None = None
    max_age: float | None = None
    since: datetime | None = None
    now: datetime | None = None
    state: Mapping[str, StreamHead] = field(default_factory=dict)
    timestamps: TimestampPolicy = field(default_factory=TimestampPolicy)
    shard: Shard | None = None
    """Check only this shard's work units (:mod:`audit_archiver.verify.shard`)."""

    def __post_init__(self) -> None:
        """Refuse a seal prefix no writer could have used, and a shard of a run whose
        result depends on the whole archive.

        Raises:
            ValueError: ``seal_prefix`` is not a valid key prefix, or a shard with
                ``state``, ``since`` or no ``seal_prefix``.
        """
        if self.seal_prefix is not None:
            validate_prefix(self.seal_prefix)
        if self.shard is not None and (
            self.state or self.since is not None or self.seal_prefix is None
        ):
            raise ValueError("a shard needs a known seal prefix, and no state or since")


class Verifier:
    """Checks every segment under a prefix and every stream's chain."""

    def __init__(
        self,
        store: ObjectStore,
        policy: TrustPolicy,
        options: VerifyOptions,
        source: str,
        *,
        spec: StoreSpec | None = None,
        bucket: BucketSettingsSource | None = None,
        progress: Progress | None = None,
    ) -> None:
        self._store = store
        self._policy = policy
        self._options = options
        self._source = source
        self._spec = spec
        self._bucket = bucket
        self._progress = progress
        self._streams: dict[str, StreamSegments] = {}
        self._keys_seen: dict[str, set[str]] = defaultdict(set)
        self._prefixes: dict[str, Counter[str]] = defaultdict(Counter)
        self._first_key_of: dict[tuple[str, str], str] = {}
        self._content: dict[str, str] = {}
        self._stamps: dict[str, TimestampTally] = {}
        self.heads: dict[str, StreamHead] = {}

    def newest_listed(self) -> dict[str, int]:
        """Each listed stream's newest segment number (after :meth:`run`)."""
        return {name: max(s.segments) for name, s in self._streams.items() if s.segments}

    @property
    def options(self) -> VerifyOptions:
        """What this verifier was asked to check (read-only)."""
        return self._options

    def run(self) -> Report:
        """Check the bucket, list, check and chain everything; return the report.

        Raises:
            StorageError: the store failed (objects that cannot be read intact
                become problems, not errors).
        """
        shard = self._options.shard
        report = Report(self._source, incremental=bool(self._options.state), shard=shard)
        if self._options.check_bucket and self._bucket is not None and self._mine(None):
            report.problems += self._bucket_problems(self._bucket)
        self._streams, listed = plan_streams(
            self._store.list_versions(self._options.key_base), self._options.key_base
        )
        report.problems += [p for p in listed if self._mine(self._unit_of_key(p.key))]
        wanted = sorted(set(self._options.streams or self._streams) | self._state_streams())
        chains: dict[tuple[str, int], StreamChain] = {}
        tasks: list[SegmentTask] = []
        for name in wanted:
            stream = self._streams.get(name)
            if stream is None or not stream.segments:
                if self._mine(shard.unit_of(name, 0) if shard else None):
                    report.problems.append(
                        Problem(
                            "stream_missing",
                            name,
                            "no segments found for this stream",
                            stream=name,
                        )
                    )
                continue
            if shard is None:
                chain, stream_tasks = self._start(name, stream, report)
                chains[name, 0] = chain
                tasks += stream_tasks
                continue
            for unit in units_of(name, stream.segments, shard.unit_segments):
                if shard.owns(unit):
                    report.units.append(unit)
                    chains[name, unit.first] = self._enter(unit, stream)
                    tasks += self._unit_tasks(unit, stream)
        self._check(tasks, chains, report)
        for name in sorted({name for name, _ in chains}):
            parts = [chain for (stream, _), chain in sorted(chains.items()) if stream == name]
            for chain in parts:
                report.problems += chain.problems
            stamps = self._stamps.get(name) or TimestampTally(name)
            report.streams.append(
                stamps.summary(combine_summaries([chain.summary() for chain in parts]))
            )
            report.notices += stamps.notices(self._options.timestamps)
            if shard is None:
                self._finish_stream(name, parts[0], report)
            else:
                self._finish_unit(name, chains, report)
        report.prefix = self._pin_prefix(report)
        report.streams.sort(key=lambda s: s.stream)
        return report

    # -- sharding -------------------------------------------------------------

    def _mine(self, unit: Unit | None) -> bool:
        """True when this run reports what belongs to ``unit`` (None: to no unit, shard 1)."""
        shard = self._options.shard
        if shard is None:
            return True
        return shard.index == 1 if unit is None else shard.owns(unit)

    def _unit_of_key(self, key: str) -> Unit | None:
        shard = self._options.shard
        location = parse_segment_key(key[len(self._options.key_base) :])
        if shard is None or location is None or location.prefix:
            return None
        return shard.unit_of(location.stream, location.segment_seq)

    def _unit_tasks(self, unit: Unit, stream: StreamSegments) -> list[SegmentTask]:
        return [
            self._task(location, version)
            for n in sorted(stream.segments)
            if unit.first <= n <= unit.last
            for location, version in stream.segments[n]
        ]

    def _enter(self, unit: Unit, stream: StreamSegments) -> StreamChain:
        """The chain a unit is checked with, entered as a full run reaches its first segment.

        Segment 0's unit starts at genesis. Otherwise the listing says what precedes
        the range: nothing (the stream then starts with a gap, reported at the first
        segment, as in a full run); a gap (reported at the first segment, no link
        checked); or the segment just before the range, whose seal alone is read and
        authenticated (:func:`read_seal`; the first of its objects that authenticates,
        as the full run's chain takes it) and becomes the head the range's first
        segment must continue. When that seal cannot be trusted, the link into the
        range is not checked: the owner of that segment reports why.
        """
        name = unit.stream
        before = [n for n in stream.segments if n < unit.first]
        if unit.first == 0 or not before:
            return StreamChain(name)
        previous = max(before)
        if previous < unit.first - 1:
            return StreamChain(name, first_segment=previous + 1)
        for location, version in stream.segments[previous]:
            task = self._task(location, version)
            try:
                read = read_seal(
                    self._store,
                    version,
                    self._policy,
                    stream=name,
                    segment_seq=previous,
                    expected_object_key=task.expected_object_key,
                )
            except SealUnreadableError:
                continue
            return StreamChain(name, ChainHead().after(read.seal, read.seal_hash))
        return StreamChain(name, first_segment=unit.first)

    def _finish_unit(
        self, name: str, chains: Mapping[tuple[str, int], StreamChain], report: Report
    ) -> None:
        """``stale_stream``, judged by the shard that owns the stream's newest unit from
        the newest seal its chain authenticated (that unit's, or the one at its edge)."""
        shard = self._options.shard
        assert shard is not None
        newest = max(self._streams[name].segments)
        unit = shard.unit_of(name, newest)
        chain = chains.get((name, unit.first))
        if chain is None or self._options.max_age is None or self._options.now is None:
            return
        head = chain.head
        self._stale(name, head.last_sealed_at if head is not None else None, report)

    # -- planning -------------------------------------------------------------

    def _bucket_problems(self, bucket: BucketSettingsSource) -> list[Problem]:
        name = self._spec.bucket if isinstance(self._spec, S3Spec) else self._source
        return [
            Problem(kind, name, detail, expected=expected, found=found)
            for kind, detail, expected, found in object_lock_problems(bucket.bucket_settings())
        ]

    def _state_streams(self) -> set[str]:
        state = self._options.state
        return {
            name for name in state if not self._options.streams or name in self._options.streams
        }

    def _task(self, location: SegmentKey, version: ObjectVersion) -> SegmentTask:
        seal_prefix = self._options.seal_prefix
        expected = None
        if seal_prefix is not None:
            expected = segment_key(
                seal_prefix, location.stream, location.segment_seq, location.compression
            )
        return SegmentTask(
            version.key,
            version.version_id,
            location.stream,
            location.segment_seq,
            expected,
            size=version.size,
        )

    def _start(
        self, name: str, stream: StreamSegments, report: Report
    ) -> tuple[StreamChain, list[SegmentTask]]:
        numbers = sorted(stream.segments)
        saved = self._options.state.get(name)
        first = 0
        chain = StreamChain(name)
        if saved is not None:
            report.problems += self._behind_head(name, stream, saved)
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
                chain = StreamChain(name, saved.chain_head())
                if saved.seen_through is not None and numbers[-1] < saved.seen_through:
                    report.problems.append(
                        Problem(
                            "truncated",
                            _sibling_key(saved.key, numbers[-1] + 1),
                            f"newest segment is {numbers[-1]}, but a previous run that found"
                            f" problems on this stream listed segments up to"
                            f" {saved.seen_through}: they were removed",
                            stream=name,
                            expected=f">= {saved.seen_through}",
                            found=str(numbers[-1]),
                        )
                    )
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
        return chain, tasks

    def _behind_head(self, name: str, stream: StreamSegments, saved: StreamHead) -> list[Problem]:
        """What the listing shows behind a saved head: every segment still there, as the
        same original version (no download; the head itself is downloaded and compared,
        and a removed tail is ``truncated``).

        A run of missing segments is one problem, at its first key. A replaced segment
        (its original deleted once its retention lapsed, a new object put in its place)
        changes the listing digest; it is named when its original is newer than the
        head, which no honest segment before the head can be.
        """
        problems = []
        newest = max(stream.segments)
        through = saved.segment_seq + 1 if newest > saved.segment_seq else newest
        missing = [n for n in range(through) if n not in stream.segments]
        for first, last in _runs(missing):
            problems.append(
                Problem(
                    "history_rewritten",
                    _sibling_key(saved.key, first),
                    f"segment(s) {first}..{last}, at or before the verified head"
                    f" {saved.segment_seq}, are gone",
                    stream=name,
                    expected=f"segments 0..{saved.segment_seq}",
                    found=f"{last - first + 1} missing",
                )
            )
        if missing or saved.history_digest is None or newest < saved.segment_seq:
            return problems
        found = self._listing_digest(stream, saved.segment_seq - 1)
        if found == saved.history_digest:
            return problems
        head_stored = _parse_moment(saved.last_modified)
        newer = [
            version.key
            for number in sorted(n for n in stream.segments if n < saved.segment_seq)
            for _, version in stream.segments[number]
            if head_stored is not None
            and version.last_modified is not None
            and version.last_modified > head_stored
        ]
        where = newer[0] if newer else saved.key
        named = f"; {len(newer)} written after the head, first {where}" if newer else ""
        problems.append(
            Problem(
                "history_rewritten",
                where,
                f"the original versions of segments 0..{saved.segment_seq - 1} differ from"
                f" those a previous run verified: a segment was replaced{named}",
                stream=name,
                expected=saved.history_digest,
                found=found,
            )
        )
        return problems

    def _listing_digest(self, stream: StreamSegments, last: int) -> str:
        """:func:`~audit_archiver.verify.state.history_digest` of segments 0..``last``:
        each original's version id, or in a folder (no versions) its content's SHA-256,
        from this run's check or, for segments it did not download, read (not parsed)."""
        return history_digest(
            (version.key, version.version_id or self._content_digest(version.key), version.size)
            for version in stream.originals_through(last)
        )

    def _content_digest(self, key: str) -> str:
        known = self._content.get(key)
        if known is not None:
            return known
        digest = hashlib.sha256()
        limit = self._options.limits.max_object_bytes
        try:
            with self._store.open_object(key, None, max_bytes=limit) as stream:
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
        except (IntegrityError, ObjectNotFoundError) as e:
            return f"unreadable: {type(e).__name__}"
        self._content[key] = digest.hexdigest()
        return self._content[key]

    # -- checking -------------------------------------------------------------

    def _check(
        self, tasks: list[SegmentTask], chains: dict[tuple[str, int], StreamChain], report: Report
    ) -> None:
        settings = CheckSettings(
            spec=self._spec_or_default(),
            policy=self._policy,
            check_retention=self._options.check_bucket,
            min_retention_days=self._options.min_retention_days,
            limits=self._options.limits,
            deep=self._options.deep,
            threads=1,
            timestamps=self._options.timestamps,
        )
        done = events = 0
        for result in run_tasks(tasks, settings, self._options.workers, self._store):
            done += 1
            events += result.events
            report.notices += result.notices
            if self._progress is not None:
                self._progress(done, len(tasks), events)
            self._note_seal(result, report)
            if result.object_sha256 is not None:
                self._content[result.key] = result.object_sha256
            saved = self._options.state.get(result.stream)
            if saved is not None and result.segment_seq == saved.segment_seq:
                self._compare_head(saved, result, report)
                continue
            report.problems += result.problems
            chains[result.stream, self._chain_first(result)].add(result)
            if result.timestamp is not None:
                tally = self._stamps.setdefault(result.stream, TimestampTally(result.stream))
                tally.add(result.key, result.timestamp)

    def _chain_first(self, result: SegmentResult) -> int:
        """The first segment of the chain ``result`` belongs to: its unit's, or 0."""
        shard = self._options.shard
        return 0 if shard is None else shard.unit_of(result.stream, result.segment_seq).first

    def _note_seal(self, result: SegmentResult, report: Report) -> None:
        """Record the key and prefix an authenticated seal names; flag a new key."""
        seal = result.seal
        if seal is None:
            return
        prefix = seal_prefix(seal)
        if prefix is not None:
            self._prefixes[result.stream][prefix] += 1
            self._first_key_of.setdefault((result.stream, prefix), result.key)
        seen = self._keys_seen[result.stream]
        if seal.key_id in seen:
            return
        seen.add(seal.key_id)
        saved = self._options.state.get(result.stream)
        if (
            saved is not None
            and saved.key_ids
            and seal.key_id not in saved.key_ids
            and not self._policy.names_stream(seal.key_id, result.stream)
        ):
            report.problems.append(
                Problem(
                    "key_changed",
                    result.key,
                    f"key {seal.key_id} signs stream {result.stream!r} for the first time since"
                    " the saved state; if this is a rotation, allow the key for this stream in"
                    " the trust file (streams = [...])",
                    stream=result.stream,
                    expected=", ".join(sorted(saved.key_ids)),
                    found=seal.key_id,
                )
            )

    def _pin_prefix(self, report: Report) -> str | None:
        """The prefix every seal of the run names: ``--prefix`` (or the bucket's), else the
        most common one, every stream naming another being ``prefix_mismatch``."""
        counts: Counter[str] = Counter()
        for per_stream in self._prefixes.values():
            counts.update(per_stream)
        pinned = self._options.seal_prefix
        if pinned is None:
            if not counts:
                return None
            pinned = min(counts, key=lambda p: (-counts[p], p))
            for (stream, prefix), key in sorted(self._first_key_of.items()):
                if prefix != pinned:
                    report.problems.append(
                        Problem(
                            "prefix_mismatch",
                            key,
                            f"{self._prefixes[stream][prefix]} segment(s) of stream {stream!r}"
                            f" were sealed under prefix {prefix!r}, the rest of the run under"
                            f" {pinned!r}",
                            stream=stream,
                            expected=pinned,
                            found=prefix,
                        )
                    )
        return pinned

    def _spec_or_default(self) -> StoreSpec | ObjectStore:
        return self._spec if self._spec is not None else self._store

    def _compare_head(self, saved: StreamHead, result: SegmentResult, report: Report) -> None:
        changed = result.seal_hash != saved.seal_hash or (
            saved.version_id is not None and result.version_id != saved.version_id
        )
        if not changed:
            report.problems += result.problems  # the same head, with a problem of its own
            return
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
        head = chain.head
        result = chain.head_result
        saved = self._options.state.get(name)
        if head is not None and result is not None and head.prev_seal_hash == result.seal_hash:
            stream = self._streams[name]
            self.heads[name] = StreamHead(
                result.key,
                result.version_id,
                result.segment_seq,
                head.prev_seal_hash,
                head.next_seq,
                head.last_received_at,
                head.last_sealed_at or "",
                tuple(sorted(self._keys_seen[name] | set(saved.key_ids if saved else ()))),
                self._listing_digest(stream, result.segment_seq - 1),
                _modified(stream, result.segment_seq),
            )
        elif saved is not None:
            self.heads[name] = saved
        self._stale(name, self.heads[name].sealed_at if name in self.heads else None, report)

    def _stale(self, name: str, newest: str | None, report: Report) -> None:
        """``stale_stream`` when ``newest`` (the newest verified seal time) is too old."""
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


def _runs(numbers: list[int]) -> Iterator[tuple[int, int]]:
    """Consecutive runs of sorted ``numbers`` as (first, last)."""
    start = previous = None
    for number in numbers:
        if previous is not None and number == previous + 1:
            previous = number
            continue
        if start is not None and previous is not None:
            yield start, previous
        start = previous = number
    if start is not None and previous is not None:
        yield start, previous


def _sibling_key(key: str, segment_seq: int) -> str:
    """The key of segment ``segment_seq`` of the stream whose segment is at ``key``."""
    location = parse_segment_key(key)
    if location is None:
        return key
    return segment_key(location.prefix, location.stream, segment_seq, location.compression)


def _modified(stream: StreamSegments, segment_seq: int) -> str | None:
    """When the original version of a stream's segment was stored (ISO 8601), if known."""
    moments = [v.last_modified for _, v in stream.segments.get(segment_seq, ())]
    known = [m for m in moments if m is not None]
    return max(known).isoformat() if known else None


def _parse_moment(text: str | None) -> datetime | None:
    """An aware datetime from a state file's ISO 8601 text; None if absent or unreadable."""
    try:
        moment = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None
