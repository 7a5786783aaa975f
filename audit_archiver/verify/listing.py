"""Sorting a listing of object versions into streams of segments.

One rule for every command that reads an archive (``verify``, ``query``,
``prove``): a key's *original* version (the oldest) is the evidence; later
versions and delete markers are reported, never read in its place (ADR 3);
keys outside the layout, or below a stream's folder, are reported. Nothing is
downloaded here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from audit_archiver.core.layout import SegmentKey, parse_segment_key, validate_stream_id
from audit_archiver.storage.base import ObjectVersion
from audit_archiver.verify.problems import Problem

__all__ = ["StreamSegments", "plan_streams"]


@dataclass
class StreamSegments:
    """One stream's original segment versions, by segment number.

    A number normally has one entry; two objects of one number (another
    extension) are both kept, and the chain decides which is the segment.
    """

    segments: dict[int, list[tuple[SegmentKey, ObjectVersion]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def originals_through(self, last: int) -> list[ObjectVersion]:
        """The original version of every segment numbered ``last`` or less, in order."""
        return [
            version
            for number in sorted(n for n in self.segments if n <= last)
            for _, version in self.segments[number]
        ]

    def numbers(self) -> list[int]:
        """The segment numbers present, ascending."""
        return sorted(self.segments)


def plan_streams(
    listing: Iterable[ObjectVersion], key_base: str
) -> tuple[dict[str, StreamSegments], list[Problem]]:
    """Sort every listed version under ``key_base`` into streams of original segments.

    Returns the streams (by stream id) and the problems the listing alone shows:
    ``unexpected_object`` (a key outside the layout), ``delete_marker`` and
    ``extra_version`` (a later version over an original).
    """
    by_key: dict[str, list[ObjectVersion]] = defaultdict(list)
    for entry in listing:
        by_key[entry.key].append(entry)
    streams: dict[str, StreamSegments] = defaultdict(StreamSegments)
    problems: list[Problem] = []
    for key in sorted(by_key):
        entries = by_key[key]
        location = parse_segment_key(key[len(key_base) :])
        if location is None or location.prefix:
            problems.append(
                Problem(
                    "unexpected_object",
                    key,
                    "not a segment key of the layout",
                    stream=_stream_folder(key[len(key_base) :]),
                )
            )
            continue
        versions = [e for e in entries if not e.is_delete_marker]
        for marker in (e for e in entries if e.is_delete_marker):
            hides = "hides the segment" if marker.is_latest else "is an older delete marker"
            problems.append(
                Problem(
                    "delete_marker",
                    key,
                    f"delete marker {marker.version_id} {hides}",
                    stream=location.stream,
                    found=marker.version_id,
                )
            )
        if not versions:
            continue
        original = versions[-1]
        for extra in versions[:-1]:
            problems.append(
                Problem(
                    "extra_version",
                    key,
                    f"version {extra.version_id} was written over the original"
                    f" {original.version_id}; the original is verified",
                    stream=location.stream,
                    expected=original.version_id,
                    found=extra.version_id,
                )
            )
        streams[location.stream].segments[location.segment_seq].append((location, original))
    return dict(streams), problems


def _stream_folder(relative: str) -> str | None:
    """The stream whose folder holds ``relative`` (``<stream>/<file>``), if any: a stray
    object there is that stream's problem (it stops only that stream's saved head)."""
    parts = relative.split("/")
    if len(parts) != 2:
        return None
    try:
        return validate_stream_id(parts[0])
    except ValueError:
        return None
