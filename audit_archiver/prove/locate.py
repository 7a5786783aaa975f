"""Finding the segment that holds event ``seq``: a binary search over seals.

Segments of a stream hold consecutive event seqs in segment order, so
``next_seq`` (``first_seq + event_count``) never decreases along the stream
and the segment of ``seq`` is the first whose ``next_seq`` exceeds it. The
shared search (:func:`~audit_archiver.verify.seal_search.first_where`) finds it
with O(log n) seal reads (one ranged read each, no body), stepping over probes
whose seal does not authenticate (a foreign object, damage) a bounded number
of times, never trusting their fields.

Whatever segment the search lands on is only a candidate: the proof holds
only once that segment is checked in full and its chain to the head
authenticated (a trusted key that signed seals out of order cannot make a
proof pass, only make the search miss).
"""

from __future__ import annotations

from audit_archiver.prove.archive import StreamArchive
from audit_archiver.verify.problems import Problem
from audit_archiver.verify.seal_reader import SealRead
from audit_archiver.verify.seal_search import MAX_STEPS, first_where

__all__ = ["SCAN", "find_segment"]

SCAN = 2 * MAX_STEPS + 1
"""How many objects from where the search lands are read to find an authenticated one:
as many as the search itself tries around a probe."""


def find_segment(archive: StreamArchive) -> SealRead:
    """The authenticated seal of the segment whose events include ``archive.seq``.

    Raises:
        NoProofError: the stream has no segment, no authenticated segment holds
            the seq (the search landed on an object that does not authenticate:
            its problems are the evidence), or two objects of a number both
            authenticate.
        StorageError: the store failed.
    """
    seq = archive.seq
    numbers = archive.segments.numbers()
    where = f"{archive.key_base}{archive.stream}/"
    if not numbers:
        raise archive.fail("stream_missing", where, "the stream has no segments")
    position = first_where(numbers, archive.lookup, lambda read: read.seal.next_seq > seq)
    found = _authenticated_from(archive, numbers, position)
    nowhere = f"no segment of the stream holds event seq {seq}"
    if isinstance(found, tuple):
        problem = Problem("sequence_gap", where, f"{nowhere} that authenticates", archive.stream)
        raise archive.failure(problem, *found)
    if found is None:
        raise archive.fail("sequence_gap", where, nowhere)
    seal = found.seal
    if seal.last_seq is None or not seal.first_seq <= seq <= seal.last_seq:
        raise archive.fail("sequence_gap", where, nowhere)
    return found


def _authenticated_from(
    archive: StreamArchive, numbers: list[int], position: int
) -> SealRead | tuple[Problem, ...] | None:
    """The first authenticated seal at ``position`` or after, within
    :data:`SCAN` objects; the problems of those objects when none authenticates;
    None past the last number.

    The search counts a region it could not read as "left" of the answer, so
    the segment sought is at the position it returns or after it: past a
    foreign object the writer stepped over, for one.
    """
    problems: list[Problem] = []
    for number in numbers[position : position + SCAN]:
        found = archive.attempt(number)
        if isinstance(found, SealRead):
            return found
        problems += found
    return tuple(problems) if problems else None
