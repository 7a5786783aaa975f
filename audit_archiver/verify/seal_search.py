"""Binary search over a stream's listed segment numbers, reading seals only.

A stream's seals are ordered (segment numbers, event seqs and times only go
forward: ``docs/FORMAT.md`` 8.2 and 8.3), so a monotone question about them
("is its last seq at least N?", "was its last event received at or after
T?") is answered for the whole stream with O(log n) seal reads, one ranged
read each, no body. ``query`` finds its time window this way and ``prove``
the segment of an event.

A probe whose seal does not authenticate (a foreign object, damage, a
number with two objects) tells nothing, and its fields are never used: the
search tries the nearest neighbours inside the range instead, at most
:data:`MAX_STEPS` to each side, so damage costs a bounded number of extra
reads, never a scan. When no neighbour authenticates either, the caller
says which way to go (``unknown``): a caller that must not miss anything
picks the side that reads more.

Whatever the search returns is a candidate: the caller checks the segment
it lands on (and its links) before trusting anything in it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from audit_archiver.verify.seal_reader import SealRead

__all__ = ["MAX_STEPS", "CachedReads", "SealLookup", "first_where"]

MAX_STEPS = 4
"""How far a search steps to each side of a probe whose seal does not authenticate."""

SealLookup = Callable[[int], SealRead | None]
"""The authenticated seal of segment number ``n``, or None when it cannot be trusted."""


class CachedReads:
    """A :data:`SealLookup` that reads each number at most once (each read is a GET).

    ``seen`` keeps every answer, so a caller can reuse a seal the search read
    (the link into a window, the one after it) without another GET.
    """

    def __init__(self, read: SealLookup) -> None:
        self._read = read
        self.seen: dict[int, SealRead | None] = {}

    def __call__(self, number: int) -> SealRead | None:
        if number not in self.seen:
            self.seen[number] = self._read(number)
        return self.seen[number]


def _near(
    numbers: Sequence[int], read: SealLookup, mid: int, lo: int, hi: int
) -> tuple[int, SealRead] | None:
    """The authenticated seal nearest position ``mid`` within ``[lo, hi)``, stepping
    at most :data:`MAX_STEPS` to each side."""
    for step in range(MAX_STEPS + 1):
        for position in (mid + step, mid - step) if step else (mid,):
            if lo <= position < hi:
                found = read(numbers[position])
                if found is not None:
                    return position, found
    return None


def first_where(
    numbers: Sequence[int],
    read: SealLookup,
    predicate: Callable[[SealRead], bool],
    *,
    lo: int = 0,
    hi: int | None = None,
    unknown: bool = True,
) -> int:
    """The first position in ``[lo, hi]`` of ``numbers`` (ascending segment numbers)
    whose seal satisfies ``predicate``; ``hi`` (default ``len(numbers)``) when none.

    ``predicate`` must be monotone over the stream (false, then true). A region
    where no seal authenticates within :data:`MAX_STEPS` counts as ``unknown``:
    True moves the answer left (towards ``lo``), False right.
    """
    end = len(numbers) if hi is None else hi
    while lo < end:
        mid = (lo + end) // 2
        found = _near(numbers, read, mid, lo, end)
        if found is None:
            if unknown:
                end = mid
            else:
                lo = mid + 1
            continue
        position, seal = found
        if predicate(seal):
            end = position
        else:
            lo = position + 1
    return lo
