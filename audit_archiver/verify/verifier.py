"""Verify an archive held in an object store (a downloaded folder, or a bucket).

Order of work: list everything under the prefix, sort it into streams of
segments (and report what does not fit the layout), check segments on their
own in parallel, then feed the results to each stream's chain in segment order.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from audit_archiver.core.layout import SegmentKey, parse_segment_key
from audit_archiver.core.segment import DEFAULT_MAX_BODY_BYTES
from audit_archiver.core.signing import TrustedKey
from audit_archiver.errors import ObjectNotFoundError
from audit_archiver.storage.base import ObjectStore, ObjectVersion
from audit_archiver.verify.chain import StreamChain
from audit_archiver.verify.problems import Problem
from audit_archiver.verify.report import Report
from audit_archiver.verify.segment_check import SegmentResult, check_segment

__all__ = ["SegmentTask", "Verifier", "VerifyOptions"]


def default_workers() -> int:
    """Default parallelism: a few downloads per core."""
    return min(32, 4 * (os.cpu_count() or 1))


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


@dataclass(frozen=True)
class SegmentTask:
    """One object version to fetch and check."""

    key: str
    version_id: str | None
    location: SegmentKey

    def expected_object_key(self, seal_prefix: str | None) -> str | None:
        """The object key the seal must name, if the prefix is known."""
        if seal_prefix is None:
            return None
        base = f"{seal_prefix}/" if seal_prefix else ""
        return f"{base}{self.location.stream}/{self.key.rsplit('/', 1)[-1]}"


class Verifier:
    """Checks every segment under a prefix and every stream's chain."""

    def __init__(
        self,
        store: ObjectStore,
        trusted: Mapping[str, TrustedKey],
        options: VerifyOptions,
        source: str,
    ) -> None:
        self._store = store
        self._trusted = dict(trusted)
        self._options = options
        self._source = source

    def run(self) -> Report:
        """List, check and chain everything; return the report.

        Raises:
            StorageError: the listing failed (individual objects that cannot be
                read become problems, not errors).
        """
        report = Report(self._source)
        streams = self._plan(self._store.list_versions(self._options.key_base), report)
        wanted = self._options.streams or tuple(sorted(streams))
        for stream in wanted:
            tasks = streams.get(stream, [])
            if not tasks:
                report.problems.append(
                    Problem(
                        "stream_missing", stream, "no segments found for this stream", stream=stream
                    )
                )
                continue
            chain = StreamChain(stream)
            for result in self._check_all(tasks):
                report.problems.extend(result.problems)
                chain.add(result)
            report.problems.extend(chain.problems)
            report.streams.append(chain.summary())
        return report

    def _plan(
        self, listing: Iterable[ObjectVersion], report: Report
    ) -> dict[str, list[SegmentTask]]:
        streams: dict[str, list[SegmentTask]] = defaultdict(list)
        base = self._options.key_base
        for version in listing:
            if version.is_delete_marker:
                continue
            location = parse_segment_key(version.key[len(base) :])
            if location is None or location.prefix:
                report.problems.append(
                    Problem("unexpected_object", version.key, "not a segment key of the layout")
                )
                continue
            streams[location.stream].append(SegmentTask(version.key, version.version_id, location))
        for tasks in streams.values():
            tasks.sort(key=lambda t: (t.location.segment_seq, t.key))
        return streams

    def _check_one(self, task: SegmentTask) -> SegmentResult:
        location = task.location
        try:
            data = self._store.get(task.key, task.version_id)
        except ObjectNotFoundError as e:
            problem = Problem(
                "malformed_segment", task.key, f"cannot be read: {e}", stream=location.stream
            )
            return SegmentResult(
                task.key, location.stream, location.segment_seq, 0, problems=(problem,)
            )
        return check_segment(
            task.key,
            data,
            self._trusted,
            stream=location.stream,
            segment_seq=location.segment_seq,
            expected_object_key=task.expected_object_key(self._options.seal_prefix),
            max_body_bytes=self._options.max_body_bytes,
        )

    def _check_all(self, tasks: list[SegmentTask]) -> Iterator[SegmentResult]:
        with ThreadPoolExecutor(max_workers=max(1, self._options.workers)) as pool:
            yield from pool.map(self._check_one, tasks)
