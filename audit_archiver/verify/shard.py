"""The shard rule of ``verify --shard K/N``: which work units exist and which shard owns each.

Pure (no IO, no clock, no environment): every shard of a run, and ``report
merge`` after them, apply the same functions, so they agree without talking
to each other.

- A **work unit** is a stream and a fixed range of segment numbers: segments
  ``r * size`` .. ``(r + 1) * size - 1`` of one stream (``size`` is
  :data:`UNIT_SEGMENTS`, 4,096, unless a test picks a smaller one). A stream
  of a million segments is 245 units, so one huge stream is spread over the
  shards too; a small stream is one unit.
- A unit exists when the listing holds a segment in its range. Its owner is
  ``SHA-256("<stream>/<first>-<last>")``, read as a big-endian integer, modulo
  ``N``, plus one: stable across runs, machines and Python versions, and
  independent of how many units or streams there are.
- A problem of the listing is owned by the unit of its key (stream and
  segment number, whether or not that unit holds a segment); a stream asked
  for and not found (``stream_missing``) by the unit of its segment 0; a key
  outside the layout and the bucket's settings by shard 1.

Invariant: for fixed ``N`` and ``size``, every unit has exactly one owner in
``1..N``, so N shards check every listed segment exactly once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["UNIT_SEGMENTS", "Shard", "Unit", "owner", "unit_of", "units_of"]

UNIT_SEGMENTS = 4096
"""Segments per work unit (at the agent's default 10,000-event batches, 41 million events)."""

_SHARD = re.compile(r"\A([1-9][0-9]{0,5})/([1-9][0-9]{0,5})\Z")
MAX_SHARDS = 100_000
"""The most shards a run may have (a bound for ``report merge``, which holds one report each)."""


@dataclass(frozen=True, order=True)
class Unit:
    """Segments ``first`` .. ``last`` of ``stream``: what one shard checks as a chain."""

    stream: str
    first: int
    last: int

    @property
    def label(self) -> str:
        """``<stream>/<first>-<last>``: the text hashed to pick the unit's shard."""
        return f"{self.stream}/{self.first}-{self.last}"


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based), over units of ``unit_segments`` segments."""

    index: int
    count: int
    unit_segments: int = UNIT_SEGMENTS

    def __post_init__(self) -> None:
        """Refuse a shard that is not one of ``count``.

        Raises:
            ValueError: not 1 <= index <= count <= MAX_SHARDS, or a unit size below 1.
        """
        if not 1 <= self.index <= self.count <= MAX_SHARDS:
            raise ValueError(f"shard must be K/N with 1 <= K <= N <= {MAX_SHARDS}")
        if self.unit_segments < 1:
            raise ValueError("a work unit holds at least one segment")

    @classmethod
    def parse(cls, text: str, unit_segments: int = UNIT_SEGMENTS) -> Shard:
        """``K/N`` as given to ``--shard``.

        Raises:
            ValueError: not ``K/N`` with 1 <= K <= N.
        """
        match = _SHARD.match(text)
        if match is None:
            raise ValueError(f"--shard must be K/N with 1 <= K <= N, not {text!r}")
        return cls(int(match[1]), int(match[2]), unit_segments)

    def unit_of(self, stream: str, segment_seq: int) -> Unit:
        """The unit holding segment ``segment_seq`` of ``stream``."""
        return unit_of(stream, segment_seq, self.unit_segments)

    def owns(self, unit: Unit) -> bool:
        """True when this shard checks ``unit``."""
        return owner(unit, self.count) == self.index


def unit_of(stream: str, segment_seq: int, size: int = UNIT_SEGMENTS) -> Unit:
    """The unit of ``size`` segments that holds segment ``segment_seq`` of ``stream``."""
    first = segment_seq - segment_seq % size
    return Unit(stream, first, first + size - 1)


def units_of(stream: str, numbers: Iterable[int], size: int = UNIT_SEGMENTS) -> list[Unit]:
    """The units holding the listed segment ``numbers`` of ``stream``, in segment order."""
    return sorted({unit_of(stream, n, size) for n in numbers})


def owner(unit: Unit, count: int) -> int:
    """The shard (1..``count``) that checks ``unit``."""
    digest = hashlib.sha256(unit.label.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest, "big") % count + 1
