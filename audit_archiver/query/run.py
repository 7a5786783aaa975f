"""Settings of a query, and the driver: list, select, download, check, link, print.

For each stream (in name order):

1. the listing (:func:`~audit_archiver.verify.listing.plan_streams`; with
   ``--stream`` only that stream's folder) gives the segment numbers and each
   one's original version; every number missing from it is reported
   (:func:`~audit_archiver.query.chain.listing_gaps`, no download);
2. with a ``received_at`` window, :func:`~audit_archiver.query.select.find_window`
   finds the segments that can hold its events by reading seals only
   (:func:`~audit_archiver.verify.seal_reader.read_seal`); otherwise (no time
   filter, or ``--by-claimed-time``: producers' claimed times are in no
   order) every segment is read;
3. the seal just before the window is read (the link into it; objects
   whose seal does not authenticate are stepped over, at most
   :data:`~audit_archiver.verify.seal_search.MAX_STEPS`);
4. the window's segments are downloaded and checked in parallel
   (:func:`~audit_archiver.verify.worker.check_object`), a bounded number in
   flight, and consumed in order: a segment's matching events are printed as
   soon as it and its link verified
   (:class:`~audit_archiver.query.chain.WindowChain`);
5. the seal just after the window is read and must link to it (the link out:
   a replaced last segment is caught); nothing of it is printed. An empty
   window checks the link between the seals around it. Deleting a stream's
   newest segments cannot be seen without a saved head (``verify --state``).

Every problem goes to the error stream as one escaped line; the exit status
is 1 when there was any, else 0 (even with no match). ``--limit N`` stops
after N printed events and stops downloading; the verdict then covers the
segments read.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, TextIO

import orjson

from audit_archiver.core.chain import ChainHead
from audit_archiver.core.encoding import parse_rfc3339
from audit_archiver.core.layout import SegmentKey, segment_key, validate_stream_id
from audit_archiver.core.line import parse_line_prefix
from audit_archiver.core.trust import TrustPolicy
from audit_archiver.errors import ConfigurationError
from audit_archiver.query.chain import WindowChain, listing_gaps
from audit_archiver.query.filters import EventFilter, Row, row_of
from audit_archiver.query.output import FORMATS, EventWriter, make_writer
from audit_archiver.query.segments import CheckedSegment, check_and_match
from audit_archiver.query.select import find_window
from audit_archiver.storage.base import ObjectStore, ObjectVersion
from audit_archiver.verify.listing import StreamSegments, plan_streams
from audit_archiver.verify.problems import Problem
from audit_archiver.verify.report import render_problem
from audit_archiver.verify.run import ArchiveSettings, ArchiveSource
from audit_archiver.verify.seal_reader import SealRead, read_listed_seals
from audit_archiver.verify.seal_search import MAX_STEPS, CachedReads
from audit_archiver.verify.worker import CheckSettings, SegmentTask

__all__ = ["DEFAULT_WORKERS", "QuerySettings", "run_query"]

DEFAULT_WORKERS = 8


@dataclass(frozen=True, kw_only=True)
class QuerySettings(ArchiveSettings):
    """Everything the ``query`` command was asked to do."""

    streams: tuple[str, ...] = ()
    actor: str | None = None
    action: str | None = None
    resource: str | None = None
    outcome: str | None = None
    since: str | None = None
    until: str | None = None
    by_claimed_time: bool = False
    format: str = "table"
    limit: int | None = None
    workers: int = DEFAULT_WORKERS


def _filter(settings: QuerySettings) -> EventFilter:
    try:
        return EventFilter(
            actor=settings.actor,
            action=settings.action,
            resource=settings.resource,
            outcome=settings.outcome,
            since=parse_rfc3339(settings.since) if settings.since else None,
            until=parse_rfc3339(settings.until) if settings.until else None,
            by_claimed_time=settings.by_claimed_time,
        )
    except ValueError as e:
        raise ConfigurationError(str(e)) from e


def _source(settings: QuerySettings) -> ArchiveSource:
    """The archive queried (the shared rule of ``verify``, ``query`` and ``prove``).

    Raises:
        ConfigurationError: no source or two, a bad prefix or stream id.
    """
    source = settings.source("query")
    try:
        for stream in settings.streams:
            validate_stream_id(stream)
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    return source


def _listing(
    store: ObjectStore, source: ArchiveSource, streams: tuple[str, ...]
) -> tuple[dict[str, StreamSegments], list[Problem]]:
    """The streams' segments and the listing's problems: with ``--stream``, only those
    streams' folders are listed (``<key_base><stream>/``), else the whole prefix."""
    if not streams:
        return plan_streams(store.list_versions(source.key_base), source.key_base)
    found: dict[str, StreamSegments] = {}
    problems: list[Problem] = []
    for name in sorted(set(streams)):
        planned, listed = plan_streams(
            store.list_versions(source.stream_base(name)), source.key_base
        )
        found.update(planned)
        problems += listed
    return found, problems


def run_query(settings: QuerySettings, out: BinaryIO, err: TextIO) -> int:
    """Run a query: print matching verified events on ``out``, problems on ``err``.

    Returns the exit status: 0 when every segment read verified, 1 otherwise.
    When ``out`` is closed by its reader (``query | head``), the query stops
    quietly with the status of what it had read so far.

    Raises:
        ConfigurationError: bad settings, keys or trust file.
        StorageError: the store failed.
    """
    if settings.format not in FORMATS:
        raise ConfigurationError(f"--format must be one of {', '.join(FORMATS)}")
    if settings.limit is not None and settings.limit < 1:
        raise ConfigurationError("--limit must be at least 1")
    if settings.workers < 1:
        raise ConfigurationError("--workers must be at least 1")
    policy = settings.policy()
    event_filter = _filter(settings)
    source = _source(settings)
    store = source.spec.open()
    streams, listing_problems = _listing(store, source, settings.streams)
    query = _Query(store, policy, event_filter, source.seal_prefix, settings, err)
    for problem in listing_problems:
        query.listing_problems.setdefault(problem.key, []).append(problem)
    output = _Output(make_writer, settings.format, out)
    try:
        for name in sorted(set(settings.streams) or streams):
            stream = streams.get(name)
            if stream is None or not stream.segments:
                query.report(
                    Problem(
                        "stream_missing", name, "no segments found for this stream", stream=name
                    )
                )
                continue
            if not query.run_stream(name, stream, output):
                break
    finally:
        query.close()
    output.finish()
    return 1 if query.problems else 0


class _Output:
    """The event writer, and the end of output when its reader goes away (a broken
    pipe ends the query quietly, not with a traceback)."""

    def __init__(self, make: Callable[[str, BinaryIO], EventWriter], name: str, out: BinaryIO):
        self.closed = False
        self._writer: EventWriter | None = None
        try:
            self._writer = make(name, out)
        except BrokenPipeError:
            self.closed = True

    def write(self, line: bytes, row: Row) -> bool:
        """Print one event; False once the reader has gone."""
        if self.closed or self._writer is None:
            return False
        try:
            self._writer.write(line, row)
        except BrokenPipeError:
            self.closed = True
        return not self.closed

    def finish(self) -> None:
        if self.closed or self._writer is None:
            return
        try:
            self._writer.finish()
        except BrokenPipeError:
            self.closed = True


class _Query:
    """The state of one query run (see the module docstring)."""

    def __init__(  # noqa: PLR0917 (private; one call site)
        self,
        store: ObjectStore,
        policy: TrustPolicy,
        event_filter: EventFilter,
        seal_prefix: str | None,
        settings: QuerySettings,
        err: TextIO,
    ) -> None:
        self.store = store
        self.policy = policy
        self.filter = event_filter
        self.seal_prefix = seal_prefix
        self.check = CheckSettings(
            spec=store, policy=policy, check_retention=False, min_retention_days=None
        )
        self.remaining = settings.limit
        self.workers = settings.workers
        self.err = err
        self.problems = 0
        self.listing_problems: dict[str, list[Problem]] = {}
        self.seal_problems: dict[str, list[Problem]] = {}
        self.pool = ThreadPoolExecutor(max_workers=settings.workers)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def report(self, problem: Problem) -> None:
        self.problems += 1
        try:
            self.err.write(render_problem(problem, command="query") + "\n")
            self.err.flush()
        except BrokenPipeError:  # the status still says there was a problem
            pass

    def _expected_key(self, location: SegmentKey) -> str | None:
        if self.seal_prefix is None:
            return None
        return segment_key(
            self.seal_prefix, location.stream, location.segment_seq, location.compression
        )

    def _task(self, location: SegmentKey, version: ObjectVersion) -> SegmentTask:
        return SegmentTask(
            version.key,
            version.version_id,
            location.stream,
            location.segment_seq,
            self._expected_key(location),
        )

    def _read_number(self, stream: StreamSegments, number: int) -> SealRead | None:
        """The seal of segment ``number`` when exactly one of its objects authenticates;
        why not is kept in :attr:`seal_problems` (reported if the seal is needed)."""
        found, problems = read_listed_seals(
            self.store,
            stream.segments[number],
            self.policy,
            lambda location, _: self._expected_key(location),
        )
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            problems += [
                Problem(
                    "duplicate_segment",
                    read.key,
                    f"segment {number} of this stream appears more than once",
                    stream=read.seal.stream,
                )
                for read in found
            ]
        self.seal_problems[_first_key(stream, number)] = problems
        return None

    def _report_unread(self, stream: StreamSegments, number: int) -> None:
        """Report, once, why segment ``number``'s seal could not be used."""
        for problem in self.seal_problems.pop(_first_key(stream, number), ()):
            self.report(problem)

    def run_stream(self, name: str, stream: StreamSegments, output: _Output) -> bool:
        """Query one stream; False once ``--limit`` is reached or the output closed.

        Every number missing from the listing is reported (no download). The
        window's segments are downloaded and printed when verified; the seals
        around it are checked without printing: the one before (the link in)
        and the one after (the link out), so a window whose edge segments were
        deleted or replaced is not answered silently. An empty window still
        checks the link between the two seals around it.
        """
        for problem in listing_gaps(name, stream):
            self.report(problem)
        numbers = stream.numbers()
        reads = CachedReads(lambda number: self._read_number(stream, number))
        start, end = 0, len(numbers)
        if self.filter.selects_by_received_at:
            start, end = find_window(
                numbers, reads, self.filter.since_stamp, self.filter.until_stamp
            )
        chain = self._chain_into(name, stream, numbers, start, reads)
        if start < end and not self._download(stream, numbers[start:end], chain, output):
            return False
        self._link_out(stream, numbers, end, chain, reads)
        return True

    def _chain_into(
        self,
        name: str,
        stream: StreamSegments,
        numbers: list[int],
        start: int,
        reads: CachedReads,
    ) -> WindowChain:
        """The chain at the window's start: after the newest authenticated seal before
        it (stepping back over at most :data:`MAX_STEPS` objects whose seal does not
        authenticate, as the writer steps over a foreign object), or genesis."""
        for position in range(start - 1, max(-2, start - 2 - MAX_STEPS), -1):  # -1: genesis
            link = reads(numbers[position]) if position >= 0 else None
            if position >= 0 and link is None:
                continue
            if link is None:
                chain = WindowChain(name, ChainHead(), 0)
            else:
                after = ChainHead().after(link.seal, link.seal_hash)
                chain = WindowChain(name, after, numbers[position] + 1)
            for hole in numbers[position + 1 : start]:
                self._report_unread(stream, hole)
                chain.add(hole, _first_key(stream, hole), None, None)
            return chain
        for hole in numbers[max(0, start - 1 - MAX_STEPS) : start]:
            self._report_unread(stream, hole)
        return WindowChain(name, None, numbers[start - 1] + 1)

    def _link_out(
        self,
        stream: StreamSegments,
        numbers: list[int],
        end: int,
        chain: WindowChain,
        reads: CachedReads,
    ) -> None:
        """Check that the first authenticated seal after the window links to it (at
        most :data:`MAX_STEPS` objects stepped over); nothing of it is printed."""
        for number in numbers[end : end + MAX_STEPS + 1]:
            key = _first_key(stream, number)
            found = reads(number)
            if found is None:
                self._report_unread(stream, number)
                chain.add(number, key, None, None)
                continue
            for problem in chain.add(number, key, found.seal, found.seal_hash):
                self.report(problem)
            return

    def _tasks(self, stream: StreamSegments, numbers: list[int]) -> Iterator[SegmentTask]:
        for number in numbers:
            for location, version in stream.segments[number]:
                yield self._task(location, version)

    def _download(
        self, stream: StreamSegments, numbers: list[int], chain: WindowChain, output: _Output
    ) -> bool:
        """Check the window's segments (``workers`` in flight), consume them in order."""
        tasks = self._tasks(stream, numbers)
        pending: deque[Future[CheckedSegment]] = deque()

        def submit(count: int) -> None:
            for task in itertools.islice(tasks, count):
                pending.append(
                    self.pool.submit(check_and_match, self.store, task, self.check, self.filter)
                )

        submit(self.workers)
        group: list[CheckedSegment] = []
        try:
            while pending:
                checked = pending.popleft().result()
                submit(1)
                if group and group[0].task.segment_seq != checked.task.segment_seq:
                    if not self._consume(group, chain, output):
                        return False
                    group = []
                group.append(checked)
            return not group or self._consume(group, chain, output)
        finally:
            for future in pending:
                future.cancel()

    def _consume(self, group: list[CheckedSegment], chain: WindowChain, output: _Output) -> bool:
        """One segment number's objects: pick the segment, link it, print it if verified."""
        chosen = _choose(group)
        for checked in group:
            for problem in (
                *self.listing_problems.get(checked.task.key, ()),
                *checked.problems,
                *checked.result.problems,
            ):
                self.report(problem)
            if len(group) > 1 and checked is not chosen:
                self.report(
                    Problem(
                        "duplicate_segment",
                        checked.task.key,
                        f"segment {checked.task.segment_seq} of this stream appears more than once",
                        stream=checked.task.stream,
                    )
                )
        number = group[0].task.segment_seq
        seal = chosen.result.seal if chosen is not None else None
        seal_hash = chosen.result.seal_hash if chosen is not None else None
        key = chosen.task.key if chosen is not None else group[0].task.key
        for problem in chain.add(number, key, seal, seal_hash):
            self.report(problem)
        if chosen is None or seal is None or not chain.linked:
            return True
        if chosen.result.problems or chosen.problems:
            return True
        for line in chosen.lines:
            if not output.write(line, _row(chosen.task.stream, seal.object_key, line)):
                return False
            if self.remaining is not None:
                self.remaining -= 1
                if self.remaining == 0:
                    return False
        return True


def _first_key(stream: StreamSegments, number: int) -> str:
    return stream.segments[number][0][1].key


def _row(stream: str, object_key: str, line: bytes) -> Row:
    """The printed columns of a verified line (built only when it is printed). The
    line passed the matcher: a canonical JSON object with a fixed header."""
    header = parse_line_prefix(line)
    assert header is not None
    seq, received_at = header
    return row_of(stream, seq, received_at, object_key, orjson.loads(line))


def _choose(group: list[CheckedSegment]) -> CheckedSegment | None:
    """The segment among one number's objects: the only one, or the only authenticated one."""
    if len(group) == 1:
        return group[0]
    authenticated = [c for c in group if c.result.seal is not None]
    return authenticated[0] if len(authenticated) == 1 else None
