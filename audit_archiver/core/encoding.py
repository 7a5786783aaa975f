"""The one canonical JSON encoding and the one timestamp format.

Event bodies and seals are produced by :func:`canonical_json` only. Verifiers
never re-encode: they hash the bytes as stored. The encoding is sorted keys,
no insignificant whitespace, UTF-8 (non-ASCII kept as is), integers within
64 bits, so the writer is deterministic. NaN and Infinity never reach it: the
event parser refuses them.

Archiver timestamps are UTC, RFC 3339 with exactly six fractional digits and a
``Z`` suffix (``2026-11-23T15:10:20.123456Z``): fixed width, so string order is
time order.

Timestamps come from untrusted bytes (seals, event lines, producers), so both
parsers accept ASCII digits only (Python's ``\\d`` would also match, say,
Arabic-Indic digits), check the calendar (no month 99, no February 30, no hour
24, no leap second) and raise nothing but :class:`ValueError`: a date-time
whose offset would move it out of datetime's range (year 1..9999) in UTC is
refused too, so comparing or converting a parsed value never overflows.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

__all__ = [
    "canonical_json",
    "format_timestamp",
    "is_archiver_timestamp",
    "parse_rfc3339",
    "refuse_constant",
    "unique_fields",
]

_ARCHIVER_TS = re.compile(
    r"\A([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.[0-9]{6}Z\Z"
)
_RFC3339 = re.compile(
    r"\A([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))\Z"
)


def unique_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for the standard library's JSON parser that refuses
    an object naming a field twice (the parser would keep the last silently).

    Raises:
        ValueError: a field is repeated.
    """
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"duplicate field {name!r}")
        result[name] = value
    return result


def refuse_constant(name: str) -> None:
    """``parse_constant`` for the standard library's JSON parser: NaN and the
    infinities are not JSON.

    Raises:
        ValueError: always.
    """
    raise ValueError(f"{name} is not allowed")


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
    utc = moment.astimezone(UTC)
    # Not strftime: its %Y does not pad years before 1000 on every platform, and
    # the fixed width is what makes string order time order.
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}"
        f":{utc.second:02d}.{utc.microsecond:06d}Z"
    )


def is_archiver_timestamp(text: object) -> bool:
    """Tell whether ``text`` is a well-formed archiver timestamp of a real calendar date."""
    return isinstance(text, str) and len(text) == 27 and _is_archiver_timestamp(text)


@functools.lru_cache(maxsize=4096)
def _is_archiver_timestamp(text: str) -> bool:
    # Memoized: a run of events shares one received_at, so verifiers see each
    # value many times in a row; the argument is 27 characters, the cache small.
    match = _ARCHIVER_TS.match(text)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    return True


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 date-time (offset required) into an aware datetime.

    ASCII digits only, calendar-checked; fractions beyond microseconds are
    truncated. The result keeps its offset and is always representable in UTC.

    Raises:
        ValueError: ``text`` is not an RFC 3339 date-time, names a date or
            time that does not exist, or lies outside datetime's range in UTC.
    """
    match = _RFC3339.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not an RFC 3339 date-time with offset: {text!r}")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        if zulu:
            zone = UTC
        else:
            if int(off_h) > 23 or int(off_m) > 59:
                raise ValueError("offset out of range")
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            zone = timezone(-offset if sign == "-" else offset)
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=zone,
        )
        moment.astimezone(UTC)
    except (ValueError, OverflowError) as e:
        raise ValueError(f"not a valid date-time ({e}): {text!r}") from None
    return moment
