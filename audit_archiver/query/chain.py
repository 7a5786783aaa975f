"""The links between the segments of a query's window, checked in segment order.

The rule is :func:`audit_archiver.core.chain.link_faults`, shared with the
writer and ``verify``. A segment's events are printed only when the segment
checked clean *and* its link was checked and holds: its seal continues the
head after the segment before it (the seal read just before the window, or
the previous segment of the window). So:

- a segment after a gap in the numbers, or after a link seal that could not
  be read, is not printed (its link cannot be checked; the gap, reported
  from the listing by :func:`listing_gaps`, or the unreadable seal is the
  problem);
- after a hole (an object whose seal does not authenticate), the next
  segment is checked against the last authenticated one when it links to it
  (how the writer steps over a foreign object, ADR 7), and not printed when
  it links elsewhere;
- a segment whose seal authenticates but whose body fails still moves the
  head: the segment after it links to its seal and is printed, while its own
  events are not.

Time floors (newest ``received_at`` and ``sealed_at`` seen) are kept across
holes, as ``verify`` does.
"""

from __future__ import annotations

from audit_archiver.core.chain import ChainHead, link_faults
from audit_archiver.core.seal import Seal
from audit_archiver.verify.listing import StreamSegments
from audit_archiver.verify.problems import Problem

__all__ = ["WindowChain", "listing_gaps"]


def listing_gaps(stream: str, segments: StreamSegments) -> list[Problem]:
    """A ``sequence_gap`` for every run of segment numbers missing from the listing
    (from 0 on), on the key after the gap: no download needed, so a deleted
    segment anywhere in the stream is reported, in a query's window or not.
    Segments missing after the newest one listed (tail truncation) cannot be
    seen without a saved head."""
    problems = []
    expected = 0
    for number in segments.numbers():
        if number != expected:
            key = segments.segments[number][0][1].key
            problems.append(
                Problem(
                    "sequence_gap",
                    key,
                    f"segments {expected}..{number - 1} are missing",
                    stream=stream,
                    expected=str(expected),
                    found=str(number),
                )
            )
        expected = number + 1
    return problems


def _newest(one: str | None, other: str | None) -> str | None:
    if one is None or other is None:
        return one or other
    return max(one, other)


class WindowChain:
    """One stream's chain over a window of segments, fed in number order."""

    def __init__(self, stream: str, head: ChainHead | None, next_number: int) -> None:
        """Start after ``head`` (None: unknown, the first segment is not checkable),
        expecting segment ``next_number`` next."""
        self.stream = stream
        self._head = head
        self._floor = head or ChainHead()
        self._expected = next_number
        self._after_hole = False
        self._linked = False

    def add(self, number: int, key: str, seal: Seal | None, seal_hash: str | None) -> list[Problem]:
        """Record segment ``number`` (``seal`` None: a hole); return the link problems.
        Call :meth:`linked` right after to know whether its link held. A number after
        a gap is not linked (the gap itself is reported by :func:`listing_gaps`)."""
        problems: list[Problem] = []
        self._linked = False
        if number != self._expected:
            self._head = None
        self._expected = number + 1
        if seal is None or seal_hash is None:
            self._after_hole = True
            return problems
        head = self._head
        if head is not None and (
            not self._after_hole or seal.prev_seal_hash == head.prev_seal_hash
        ):
            faults = link_faults(head, seal)
            problems += [
                Problem(
                    f.kind, key, f.detail, stream=self.stream, expected=f.expected, found=f.found
                )
                for f in faults
            ]
            self._linked = not faults
        self._after_hole = False
        self._head = self._floor.after(seal, seal_hash)
        self._floor = ChainHead(
            last_received_at=_newest(self._head.last_received_at, self._floor.last_received_at),
            last_sealed_at=_newest(seal.sealed_at, self._floor.last_sealed_at),
        )
        return problems

    @property
    def linked(self) -> bool:
        """True when the segment last added was checked against its predecessor and links."""
        return self._linked
