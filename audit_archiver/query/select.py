"""Which segments of a stream can hold an event of a ``received_at`` window.

A stream's segments are in time order: ``received_at`` never goes backwards
from one event to the next, a seal is never older than its events, and
``sealed_at`` never goes backwards (``docs/FORMAT.md`` 8.2 step 10, 8.3 step
15; ``verify`` checks all of it over the whole stream). So a window
``[since, until)`` is a run of consecutive segments, found by two binary
searches over seals alone (:func:`~audit_archiver.verify.seal_search.first_where`,
one ranged read per probe):

- **start**: the first segment whose events can reach ``since``: its
  ``last_received_at >= since``; a heartbeat (no event) by its ``sealed_at``.
  Every segment before it holds only earlier events: each was received no
  later than its own seal, and seals never go back in time.
- **end**: the first segment, from the start on, holding events that all
  come at or after ``until``: its ``first_received_at >= until``. A
  heartbeat never ends the window (it names no event time, and an event
  received just before a heartbeat was sealed may be sealed in the segment
  after it), so the end search reads it as "go on": at worst a few more
  segments are downloaded, never one fewer.

A probe whose seal does not authenticate says nothing: the search steps to
its neighbours and, when none is readable, takes the side that downloads
more (``unknown``). Never fewer segments than the window needs.
"""

from __future__ import annotations

from collections.abc import Sequence

from audit_archiver.verify.seal_reader import SealRead
from audit_archiver.verify.seal_search import SealLookup, first_where

__all__ = ["find_window"]


def _reaches(since: str, read: SealRead) -> bool:
    """True when this segment, or a later one, can hold an event received at or after
    ``since`` (a heartbeat: by its seal time)."""
    seal = read.seal
    return (seal.last_received_at or seal.sealed_at) >= since


def _all_after(until: str, read: SealRead) -> bool:
    """True when every event of this segment, and of every later one, comes at or after
    ``until`` (never for a heartbeat)."""
    first = read.seal.first_received_at
    return first is not None and first >= until


def find_window(
    numbers: Sequence[int], read: SealLookup, since: str | None, until: str | None
) -> tuple[int, int]:
    """The positions ``[start, end)`` in ``numbers`` (a stream's listed segment numbers,
    ascending) of the segments that can hold an event received in ``[since, until)``
    (archiver timestamps; None: unbounded)."""
    start = 0
    if since is not None:
        start = first_where(numbers, read, lambda r: _reaches(since, r), unknown=True)
    end = len(numbers)
    if until is not None:
        end = first_where(numbers, read, lambda r: _all_after(until, r), lo=start, unknown=False)
    return start, end
