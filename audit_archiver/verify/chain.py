"""Chain checks across one stream's segments, fed in segment order.

The link rule itself lives in :mod:`audit_archiver.core.chain`, shared with the
writer; this module applies it to results as they arrive and keeps the
per-stream figures of the report.

- Segment numbers come from object keys: a number seen again is
  ``duplicate_segment``, a jump is ``sequence_gap``.
- A segment whose seal could not be authenticated (malformed, unknown key, bad
  signature, key not allowed) is a hole: it is counted as a segment, its events
  are not. The next authenticated segment is checked against the last
  authenticated one when it links to it: that is how the writer steps over an
  object it did not write at its next key (ADR 7), so the chain stays fully
  checked around a foreign object, which is still reported. A segment after a
  hole that links elsewhere (to the hole's own seal, say) is not checked:
  nothing trusted is left to check it against. After a gap in the numbers the
  link is not checked either. The time floors (newest ``received_at`` and
  ``sealed_at`` seen) are kept across holes and gaps, so time still never goes
  backwards.
- Which key signed which range of segments is recorded for the report and the
  state file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from audit_archiver.core.chain import ChainHead, link_faults
from audit_archiver.core.layout import parse_segment_key
from audit_archiver.core.seal import Seal
from audit_archiver.verify.problems import Problem
from audit_archiver.verify.segment_check import SegmentResult

__all__ = ["KeyRange", "StreamChain", "StreamSummary", "combine_summaries", "seal_prefix"]


@dataclass(frozen=True)
class KeyRange:
    """Consecutive authenticated segments of a stream signed by one key."""

    key_id: str
    first_segment: int
    last_segment: int


@dataclass(frozen=True)
class StreamSummary:
    """Per-stream figures for the report, and the head a state file records."""

    stream: str
    segments: int
    events: int
    first_received_at: str | None
    last_received_at: str | None
    newest_sealed_at: str | None
    head_segment_seq: int | None
    head_seal_hash: str | None
    keys: list[KeyRange] = field(default_factory=list)
    timestamped_segments: int = 0
    """Segments whose RFC 3161 token passed every check made (section 13)."""
    newest_timestamp: str | None = None
    """The TSA's ``genTime`` of the newest token verified with ``--tsa-cert``."""


def combine_summaries(parts: list[StreamSummary], *, whole: bool = False) -> StreamSummary:
    """One stream's summary from the summaries of disjoint ranges of its segments (the
    work units of ``verify --shard``, within a shard or across shards in ``report merge``).

    Segments, events and time-stamped segments are summed; first and last
    ``received_at``, newest ``sealed_at`` and newest time-stamp are the min and
    max; the head is the part with the highest head segment; key ranges are
    concatenated in segment order. With ``whole`` (the parts are every range of
    the stream: ``report merge``), a range under the same key as the one before
    it joins it, as one run's chain records them; without, ranges are kept as
    they are, since a range of another key may lie between two of a shard's.

    Raises:
        ValueError: no parts, or parts of different streams.
    """
    if not parts or len({p.stream for p in parts}) != 1:
        raise ValueError("combine the summaries of one stream")
    if len(parts) == 1 and not whole:
        return parts[0]
    heads = [p for p in parts if p.head_segment_seq is not None]
    head = max(heads, key=lambda p: p.head_segment_seq or 0) if heads else None
    keys: list[KeyRange] = []
    for r in sorted((r for p in parts for r in p.keys), key=lambda r: r.first_segment):
        if whole and keys and keys[-1].key_id == r.key_id:
            keys[-1] = KeyRange(r.key_id, keys[-1].first_segment, r.last_segment)
        else:
            keys.append(r)
    return StreamSummary(
        parts[0].stream,
        sum(p.segments for p in parts),
        sum(p.events for p in parts),
        _extreme(min, (p.first_received_at for p in parts)),
        _extreme(max, (p.last_received_at for p in parts)),
        _extreme(max, (p.newest_sealed_at for p in parts)),
        head.head_segment_seq if head else None,
        head.head_seal_hash if head else None,
        keys,
        sum(p.timestamped_segments for p in parts),
        _extreme(max, (p.newest_timestamp for p in parts)),
    )


def _extreme(pick: Callable[[list[str]], str], values: Iterable[str | None]) -> str | None:
    """``pick`` (min or max) of the values that are set; None when none is."""
    known = [v for v in values if v is not None]
    return pick(known) if known else None


def seal_prefix(seal: Seal) -> str | None:
    """Return the prefix a seal's ``object_key`` names, or None if it follows no layout."""
    location = parse_segment_key(seal.object_key)
    return None if location is None else location.prefix


class StreamChain:
    """Accumulates one stream's segment results in order and checks each link."""

    def __init__(
        self, stream: str, head: ChainHead | None = None, *, first_segment: int = 0
    ) -> None:
        """Start a chain at genesis (no ``head``, ``first_segment`` 0), after a verified
        ``head`` (``--state``), or (``--since``) at ``first_segment`` > 0 with no link
        check into it."""
        self.stream = stream
        self.problems: list[Problem] = []
        if head is None and first_segment == 0:
            head = ChainHead()
        self._head = head
        self._expected_segment = head.next_segment_seq if head is not None else first_segment
        self._floor = head or ChainHead()
        self._after_hole = False
        self._hole_at: tuple[int, str] | None = None
        self.head_result: SegmentResult | None = None
        self.key_ranges: list[KeyRange] = []
        self._segments = 0
        self._events = 0
        self._first_received: str | None = None

    def _problem(
        self, kind: str, key: str, detail: str, expected: object = None, found: object = None
    ) -> None:
        self.problems.append(
            Problem(
                kind,
                key,
                detail,
                stream=self.stream,
                expected=None if expected is None else str(expected),
                found=None if found is None else str(found),
            )
        )

    def add(self, result: SegmentResult) -> None:
        """Check ``result`` against the segment before it and record it."""
        number = result.segment_seq
        if number < self._expected_segment:
            hole = self._hole_at
            if hole is None or hole[0] != number or result.seal is None:
                self._problem(
                    "duplicate_segment",
                    result.key,
                    f"segment {number} of this stream appears more than once",
                )
                return
            # An authenticated segment beside an unauthenticated object of the same number
            # (another extension): this one is the segment, the other the duplicate.
            self._problem(
                "duplicate_segment",
                hole[1],
                f"segment {number} of this stream appears more than once; {result.key} is"
                " the authenticated one",
            )
            self._expected_segment = number
            self._segments -= 1
        if number > self._expected_segment:
            self._problem(
                "sequence_gap",
                result.key,
                f"segments {self._expected_segment}..{number - 1} are missing",
                expected=self._expected_segment,
                found=number,
            )
            self._head = None
        self._expected_segment = number + 1
        self._segments += 1
        seal = result.seal
        if seal is None or result.seal_hash is None:
            self._after_hole = True
            self._hole_at = (number, result.key)
            return
        self._hole_at = None
        self._events += result.events
        head = self._head
        if head is not None and (
            not self._after_hole or seal.prev_seal_hash == head.prev_seal_hash
        ):
            for fault in link_faults(head, seal):
                self._problem(fault.kind, result.key, fault.detail, fault.expected, fault.found)
        self._after_hole = False
        self._head = self._floor.after(seal, result.seal_hash)
        self._floor = ChainHead(
            last_received_at=_newest(self._head.last_received_at, self._floor.last_received_at),
            last_sealed_at=_newest(seal.sealed_at, self._floor.last_sealed_at),
        )
        self.head_result = result
        self._record_key(seal.key_id, number)
        if seal.first_received_at and self._first_received is None:
            self._first_received = seal.first_received_at

    def _record_key(self, key_id: str, number: int) -> None:
        last = self.key_ranges[-1] if self.key_ranges else None
        if last is not None and last.key_id == key_id:
            self.key_ranges[-1] = KeyRange(key_id, last.first_segment, number)
        else:
            self.key_ranges.append(KeyRange(key_id, number, number))

    @property
    def head(self) -> ChainHead | None:
        """The head after the newest segment if it linked correctly, else None."""
        return self._head

    def summary(self) -> StreamSummary:
        """Return the figures for this stream so far."""
        head = self.head_result
        return StreamSummary(
            self.stream,
            self._segments,
            self._events,
            self._first_received,
            self._floor.last_received_at,
            self._floor.last_sealed_at,
            head.segment_seq if head else None,
            head.seal_hash if head else None,
            list(self.key_ranges),
        )


def _newest(one: str | None, other: str | None) -> str | None:
    """The later of two archiver timestamps (fixed width: string order is time order)."""
    if one is None or other is None:
        return one or other
    return max(one, other)
