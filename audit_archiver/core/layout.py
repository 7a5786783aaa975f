"""Object-key layout, shared by the uploader and the verifier.

A segment lives at ``<prefix>/<stream>/<segment seq, 12 digits>.ndjson.<ext>``
(``zst`` or ``gz``); with an empty prefix the key starts at the stream. Segment
numbers are zero-padded, so lexicographic key order is chain order, and
``aws s3 sync`` of the prefix yields ``<stream>/<seq>.ndjson.<ext>`` files.

Stream ids: 1 to 128 characters of ``A-Z a-z 0-9 . _ -``, starting with a
letter or digit. Prefixes: ``/``-separated parts of the same characters, no
``.`` or ``..`` parts, no leading or trailing ``/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "EXTENSIONS",
    "SEQ_DIGITS",
    "SegmentKey",
    "parse_segment_key",
    "segment_key",
    "stream_prefix",
    "validate_prefix",
    "validate_stream_id",
]

SEQ_DIGITS = 12
MAX_SEGMENT_SEQ = 10**SEQ_DIGITS - 1
EXTENSIONS = {"zstd": "zst", "gzip": "gz"}
_COMPRESSION_OF_EXT = {ext: name for name, ext in EXTENSIONS.items()}
_STREAM = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_PREFIX_PART = re.compile(r"\A[A-Za-z0-9._-]+\Z")
_LEAF = re.compile(rf"\A(\d{{{SEQ_DIGITS}}})\.ndjson\.(zst|gz)\Z")


def validate_stream_id(stream: str) -> str:
    """Return ``stream`` if it is a valid stream id.

    Raises:
        ValueError: the id is empty, too long or has characters outside ``A-Za-z0-9._-``.
    """
    if not _STREAM.match(stream):
        raise ValueError(
            f"invalid stream id {stream!r}: use 1-128 characters of A-Z a-z 0-9 . _ -,"
            " starting with a letter or digit"
        )
    return stream


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a valid key prefix ('' means the bucket root).

    Raises:
        ValueError: the prefix has a leading/trailing slash, an empty, ``.`` or
            ``..`` part, or characters outside ``A-Za-z0-9._-``.
    """
    if prefix == "":
        return prefix
    for part in prefix.split("/"):
        if part in (".", "..") or not _PREFIX_PART.match(part):
            raise ValueError(
                f"invalid prefix {prefix!r}: use '/'-separated parts of A-Z a-z 0-9 . _ -,"
                " with no leading or trailing '/'"
            )
    return prefix


def stream_prefix(prefix: str, stream: str) -> str:
    """Return the key prefix under which a stream's segments live (ends with '/')."""
    base = f"{prefix}/" if prefix else ""
    return f"{base}{stream}/"


def segment_key(prefix: str, stream: str, segment_seq: int, compression: str) -> str:
    """Return the object key of a segment.

    Raises:
        ValueError: invalid prefix, stream id, sequence number or compression.
    """
    validate_prefix(prefix)
    validate_stream_id(stream)
    if not 0 <= segment_seq <= MAX_SEGMENT_SEQ:
        raise ValueError(f"segment seq out of range: {segment_seq}")
    if compression not in EXTENSIONS:
        raise ValueError(f"unknown compression {compression!r}")
    leaf = f"{segment_seq:0{SEQ_DIGITS}d}.ndjson.{EXTENSIONS[compression]}"
    return stream_prefix(prefix, stream) + leaf


@dataclass(frozen=True)
class SegmentKey:
    """The parts of a segment's object key."""

    prefix: str
    stream: str
    segment_seq: int
    compression: str


def parse_segment_key(key: str) -> SegmentKey | None:
    """Split a key into prefix, stream, segment seq and compression.

    Returns None when ``key`` does not follow the layout.
    """
    parts = key.split("/")
    if len(parts) < 2:
        return None
    match = _LEAF.match(parts[-1])
    if match is None:
        return None
    stream = parts[-2]
    prefix = "/".join(parts[:-2])
    try:
        validate_stream_id(stream)
        validate_prefix(prefix)
    except ValueError:
        return None
    return SegmentKey(prefix, stream, int(match.group(1)), _COMPRESSION_OF_EXT[match.group(2)])
