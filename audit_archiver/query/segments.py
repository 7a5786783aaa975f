"""Download and check one segment, keeping the lines a query matches.

The segment is checked by :func:`~audit_archiver.verify.worker.check_object`,
the one total check ``verify`` and ``prove`` use (whatever goes wrong with
the object becomes a problem on it; only a failure of the store itself
raises). Each event line reaches :class:`_Matcher` as it is checked. Lines
outside a ``received_at`` window are skipped on their fixed header; the others
are parsed and filtered, and a matching line must be one canonical JSON object
(``core.line.canonical_line_fault``, what ``verify --deep`` checks), so that
every reader sees the same fields in it.

Memory: only the matching lines' bytes of this one segment are kept (no
parsed fields, no rows: the caller builds a row when it prints the line), and
the caller prints them only when the result (and the link into the segment)
has no problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from audit_archiver.core.line import canonical_line_fault, parse_line_prefix
from audit_archiver.verify.problems import Problem
from audit_archiver.verify.worker import CheckSettings, SegmentTask, check_object

if TYPE_CHECKING:
    from audit_archiver.query.filters import EventFilter
    from audit_archiver.storage.base import ObjectStore
    from audit_archiver.verify.segment_check import SegmentResult

__all__ = ["CheckedSegment", "check_and_match"]


@dataclass(frozen=True)
class CheckedSegment:
    """A checked segment and its matching lines as stored (trusted only when neither
    ``result.problems`` nor ``problems`` has anything)."""

    task: SegmentTask
    result: SegmentResult
    lines: tuple[bytes, ...] = ()
    problems: tuple[Problem, ...] = ()


class _Matcher:
    """The ``on_line`` sink: filters lines as the check reads them."""

    def __init__(self, task: SegmentTask, event_filter: EventFilter) -> None:
        self.task = task
        self.filter = event_filter
        self.lines: list[bytes] = []
        self.fault: tuple[str, int] | None = None

    def _bad(self, index: int, why: str) -> None:
        if self.fault is None:
            self.fault = (f"line {index + 1} {why}", 1)
        else:
            self.fault = (self.fault[0], self.fault[1] + 1)

    def __call__(self, index: int, line: bytes | None, leaf: bytes) -> None:
        del leaf
        if line is None:
            self._bad(index, "is longer than a query reads")
            return
        header = parse_line_prefix(line)
        if header is None:
            return  # the check reports it (event_invalid)
        _, received_at = header
        if not self.filter.received_in_range(received_at):
            return
        try:
            fields = orjson.loads(line)
        except orjson.JSONDecodeError:
            self._bad(index, "is not JSON")
            return
        if not isinstance(fields, dict) or not self.filter.matches(received_at, fields):
            return
        fault = canonical_line_fault(line)
        if fault is not None:
            self._bad(index, f"cannot be printed: {fault}")
            return
        self.lines.append(line)

    def problems(self) -> tuple[Problem, ...]:
        if self.fault is None:
            return ()
        detail, count = self.fault
        if count > 1:
            detail += f" (first of {count} such findings)"
        return (Problem("event_invalid", self.task.key, detail, stream=self.task.stream),)


def check_and_match(
    store: ObjectStore, task: SegmentTask, settings: CheckSettings, event_filter: EventFilter
) -> CheckedSegment:
    """Download ``task``'s object version, check it and keep its matching lines.

    Raises:
        StorageError: the store failed (not a problem of this object).
    """
    matcher = _Matcher(task, event_filter)
    result = check_object(store, task, settings, on_line=matcher)
    lines = tuple(matcher.lines) if result.seal is not None else ()
    return CheckedSegment(task, result, lines, matcher.problems())
