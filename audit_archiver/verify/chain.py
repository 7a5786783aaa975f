"""Chain checks across one stream's segments, fed in segment order.

Invariants of a whole stream: segment numbers run 0, 1, 2, ... with no gap;
segment 0 links to the genesis hash and starts at event seq 0; every other
segment's ``prev_seal_hash`` is the previous seal's hash, its ``first_seq``
continues the previous segment's event seq, and neither ``received_at`` nor
``sealed_at`` goes backwards across the link.
"""

from __future__ import annotations

from dataclasses import dataclass

from audit_archiver.core.seal import GENESIS_HASH
from audit_archiver.verify.problems import Problem
from audit_archiver.verify.segment_check import SegmentResult

__all__ = ["ChainAnchor", "StreamChain", "StreamSummary"]


@dataclass(frozen=True)
class ChainAnchor:
    """The verified segment just before the first one checked in this run."""

    segment_seq: int
    seal_hash: str
    next_seq: int
    last_received_at: str | None
    sealed_at: str


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


class StreamChain:
    """Accumulates one stream's segment results in order and checks each link."""

    def __init__(
        self, stream: str, anchor: ChainAnchor | None = None, first_segment: int = 0
    ) -> None:
        """Start a chain at segment 0, after a verified ``anchor``, or (``--since``) at
        ``first_segment`` with no link check into it."""
        self.stream = stream
        self.problems: list[Problem] = []
        self._expected_segment = first_segment if anchor is None else anchor.segment_seq + 1
        self._unlinked_start = first_segment if anchor is None and first_segment else None
        self._previous = anchor
        self.head_result: SegmentResult | None = None
        self._segments = 0
        self._events = 0
        self._first_received: str | None = None
        self._last_received: str | None = anchor.last_received_at if anchor else None
        self._newest_sealed: str | None = None
        self._head: tuple[int, str] | None = (
            None if anchor is None else (anchor.segment_seq, anchor.seal_hash)
        )

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
            self._problem(
                "duplicate_segment",
                result.key,
                f"segment {number} of this stream appears more than once",
            )
            return
        if number > self._expected_segment:
            self._problem(
                "sequence_gap",
                result.key,
                f"segments {self._expected_segment}..{number - 1} are missing",
                expected=self._expected_segment,
                found=number,
            )
            self._previous = None
        self._expected_segment = number + 1
        self._segments += 1
        self._events += result.events
        seal = result.seal
        if seal is None or result.seal_hash is None:
            self._previous = None
            return
        self._check_link(result)
        self._previous = ChainAnchor(
            number,
            result.seal_hash,
            seal.next_seq,
            seal.last_received_at or self._last_received,
            seal.sealed_at,
        )
        self._head = (number, result.seal_hash)
        self.head_result = result
        if seal.first_received_at and self._first_received is None:
            self._first_received = seal.first_received_at
        if seal.last_received_at:
            self._last_received = seal.last_received_at
        if self._newest_sealed is None or seal.sealed_at > self._newest_sealed:
            self._newest_sealed = seal.sealed_at

    def _check_link(self, result: SegmentResult) -> None:
        seal = result.seal
        assert seal is not None
        if result.segment_seq == self._unlinked_start:
            return
        if result.segment_seq == 0:
            if seal.prev_seal_hash != GENESIS_HASH:
                self._problem(
                    "chain_broken",
                    result.key,
                    "segment 0 does not link to genesis",
                    expected=GENESIS_HASH,
                    found=seal.prev_seal_hash,
                )
            if seal.first_seq != 0:
                self._problem(
                    "sequence_gap",
                    result.key,
                    "stream does not start at event seq 0",
                    expected=0,
                    found=seal.first_seq,
                )
            return
        previous = self._previous
        if previous is None:
            return
        if seal.prev_seal_hash != previous.seal_hash:
            self._problem(
                "chain_broken",
                result.key,
                f"does not link to segment {previous.segment_seq}",
                expected=previous.seal_hash,
                found=seal.prev_seal_hash,
            )
        if seal.first_seq != previous.next_seq:
            self._problem(
                "sequence_gap",
                result.key,
                "event seq does not continue the previous segment",
                expected=previous.next_seq,
                found=seal.first_seq,
            )
        if (
            seal.first_received_at
            and previous.last_received_at
            and seal.first_received_at < previous.last_received_at
        ):
            self._problem(
                "time_regression",
                result.key,
                "first event was received before the previous segment's last",
                expected=f">= {previous.last_received_at}",
                found=seal.first_received_at,
            )
        if seal.sealed_at < previous.sealed_at:
            self._problem(
                "time_regression",
                result.key,
                "sealed before the previous segment",
                expected=f">= {previous.sealed_at}",
                found=seal.sealed_at,
            )

    @property
    def head_anchor(self) -> ChainAnchor | None:
        """The newest segment that links correctly, as the next run's anchor."""
        return self._previous

    def summary(self) -> StreamSummary:
        """Return the figures for this stream so far."""
        head_seq, head_hash = self._head if self._head else (None, None)
        return StreamSummary(
            self.stream,
            self._segments,
            self._events,
            self._first_received,
            self._last_received,
            self._newest_sealed,
            head_seq,
            head_hash,
        )
