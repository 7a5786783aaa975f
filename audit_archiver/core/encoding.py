"""The one canonical JSON encoding and the one timestamp format.

Event bodies and seals are produced by :func:`canonical_json` only. Verifiers
never re-encode: they hash the bytes as stored. The encoding is sorted keys,
no insignificant whitespace, UTF-8 (non-ASCII kept as is), integers within
64 bits, so the writer is deterministic. NaN and Infinity never reach it: the
event parser refuses them.

Archiver timestamps are UTC, RFC 3339 with exactly six fractional digits and a
``Z`` suffix (``2026-11-23T15:10:20.123456Z``): fixed width, so string order is
time order.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "canonical_json",
    "format_timestamp",
    "is_archiver_timestamp",
    "parse_rfc3339",
]

_ARCHIVER_TS = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z\Z")
_RFC3339 = re.compile(
    r"\A\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z"
)


def canonical_json(value: Any) -> bytes:
    """Encode ``value`` in the project's canonical JSON form.

    Raises:
        TypeError: ``value`` holds something JSON cannot represent here (an
            integer beyond 64 bits, a string with lone surrogates, a non-string key).
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as e:
        raise TypeError(str(e)) from e


def format_timestamp(moment: datetime) -> str:
    """Format an aware datetime as an archiver timestamp (UTC, microseconds, ``Z``).

    Raises:
        ValueError: ``moment`` is naive (has no time zone).
    """
    if moment.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_archiver_timestamp(text: object) -> bool:
    """Tell whether ``text`` is a well-formed archiver timestamp."""
    return isinstance(text, str) and _ARCHIVER_TS.match(text) is not None


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 date-time (offset required) into an aware datetime.

    Fractions beyond microseconds are truncated.

    Raises:
        ValueError: ``text`` is not an RFC 3339 date-time.
    """
    if not _RFC3339.match(text):
        raise ValueError(f"not an RFC 3339 date-time with offset: {text!r}")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass  # lower-case separators or a form Python does not take as is: normalize
    normalized = text.replace("t", "T").replace(" ", "T").replace("z", "Z")
    head, sep, tail = normalized.partition(".")
    if sep:
        digits = re.match(r"\d+", tail)
        assert digits is not None
        fraction = digits.group(0)
        normalized = f"{head}.{fraction[:6].ljust(6, '0')}{tail[len(fraction) :]}"
    return datetime.fromisoformat(normalized.replace("Z", "+00:00"))
