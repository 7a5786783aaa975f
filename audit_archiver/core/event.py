"""The audit event model: validation, parsing and canonical encoding of what producers send.

An event is a JSON object. Required: ``actor``, ``action`` and ``resource``,
each a non-empty string or an object with a non-empty string ``id``. Optional
fields with a checked shape: ``time`` (RFC 3339, the producer's claim),
``outcome`` (string), ``source_ip`` (an IPv4 or IPv6 address) and ``details``
(object). Any other field is kept as sent.

When sealed, the archiver adds two fields of its own, ``seq`` and
``received_at`` (see :mod:`audit_archiver.core.line`); producers may not send
these two names.
"""

from __future__ import annotations

import functools
import json
import math
import socket
from collections.abc import Mapping
from typing import Any

import orjson

from audit_archiver.core.encoding import canonical_json, parse_rfc3339
from audit_archiver.core.line import EncodedEvents, seal_line
from audit_archiver.errors import EventValidationError

__all__ = [
    "REQUIRED_FIELDS",
    "RESERVED_FIELDS",
    "encode_event",
    "encode_event_batch",
    "encode_request_body",
    "parse_event_line",
    "seal_event",
    "validate_event",
]

REQUIRED_FIELDS = ("actor", "action", "resource")
RESERVED_FIELDS = ("seq", "received_at")


def _check_subject(name: str, value: object) -> None:
    if isinstance(value, str):
        if not value or value.isspace():
            raise EventValidationError("must not be empty", field=name)
        return
    if isinstance(value, dict):
        ident = value.get("id")
        if isinstance(ident, str) and ident.strip():
            return
        raise EventValidationError("object needs a non-empty string 'id'", field=name)
    if value is None:
        raise EventValidationError("is required", field=name)
    raise EventValidationError("must be a string or an object with an 'id'", field=name)


# Producers repeat their timestamps (to the second or millisecond) and client
# addresses many times a second: the checks below are memoized, for strings no
# longer than a valid value can be (so the cache stays small).
_MAX_IP_ADDRESS = len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255")
_MAX_RFC3339 = len("2026-11-23T10:00:00.123456789+00:00")


def _is_ip_address(text: str) -> bool:
    return len(text) <= _MAX_IP_ADDRESS and _is_short_ip_address(text)


@functools.lru_cache(maxsize=4096)
def _is_short_ip_address(text: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
        except (OSError, ValueError):
            continue
        return True
    return False


def _is_rfc3339(text: str) -> bool:
    return len(text) <= _MAX_RFC3339 and _is_short_rfc3339(text)


@functools.lru_cache(maxsize=4096)
def _is_short_rfc3339(text: str) -> bool:
    try:
        parse_rfc3339(text)
    except ValueError:
        return False
    return True


def _check_optional(event: Mapping[str, Any]) -> None:
    if "time" in event:
        when = event["time"]
        if not isinstance(when, str):
            raise EventValidationError("must be an RFC 3339 string", field="time")
        if not _is_rfc3339(when):
            raise EventValidationError("is not an RFC 3339 date-time with offset", field="time")
    if "outcome" in event and not isinstance(event["outcome"], str):
        raise EventValidationError("must be a string", field="outcome")
    if "source_ip" in event:
        address = event["source_ip"]
        if not isinstance(address, str) or not _is_ip_address(address):
            raise EventValidationError("is not an IP address", field="source_ip")
    if "details" in event and not isinstance(event["details"], dict):
        raise EventValidationError("must be an object", field="details")


def validate_event(event: object) -> dict[str, Any]:
    """Check a producer's event and return it as a plain dict.

    Raises:
        EventValidationError: the event is not an object, a required field is
            missing or empty, an optional field has the wrong shape, or a
            reserved field (``seq``, ``received_at``) is present.
    """
    if not isinstance(event, dict):
        raise EventValidationError("event must be a JSON object")
    for name in REQUIRED_FIELDS:
        value = event.get(name)
        if type(value) is dict:
            value = value.get("id")
        if type(value) is str and value and not value.isspace():
            continue
        _check_subject(name, event.get(name))
    for name in RESERVED_FIELDS:
        if name in event:
            raise EventValidationError("is reserved for the archiver", field=name)
    _check_optional(event)
    return event if type(event) is dict else dict(event)


def parse_event_line(raw: bytes) -> dict[str, Any]:
    """Decode one NDJSON line from a producer and validate it.

    Raises:
        EventValidationError: the line is not UTF-8, not JSON, or not a valid event.
    """
    return validate_event(_loads(raw, may_hold_long_number=_may_hold_long_number(raw)))


def _loads(raw: bytes, *, may_hold_long_number: bool) -> Any:
    """Parse JSON: orjson when it is exact, the standard library otherwise.

    orjson reads integers beyond 64 bits as floats, silently (and exactly all
    others). Such an integer has a run of 19 or more digits and becomes a float
    of magnitude 2**63 or more; so only when the text has such a run
    (``may_hold_long_number``) and orjson's result holds such a float is the
    text parsed again with the standard library, which keeps big integers exact.
    Anything orjson refuses goes there too, for the precise error message
    (NaN, Infinity and floats that overflow are refused).
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    else:
        if not may_hold_long_number or not _holds_huge_float(value):
            return value
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EventValidationError("invalid UTF-8") from e
    try:
        return _DECODER.decode(text)
    except ValueError as e:
        raise EventValidationError(f"not JSON ({e})") from e


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _holds_huge_float(value: object) -> bool:
    """True when ``value`` (parsed JSON) holds a float of magnitude 2**63 or more."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if abs(item) >= _HUGE:
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


_HUGE = 2.0**63
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
# Digits as "0" and what may precede a number token ("," "[" ":") as ":", with
# whitespace and "-" dropped: a number of 19 or more digits becomes ":" and 19 zeros.
_NUMBER_CONTEXT = bytes.maketrans(b"123456789,[", b"000000000::")
_LONG_NUMBER = b":" + b"0" * 19


def _may_hold_long_number(text: bytes) -> bool:
    """True when ``text`` may hold an integer of 19 or more digits.

    The digits of a number token follow "[", "," or ":" (whitespace and a
    minus sign between), or start the text; inside strings the same pattern
    only raises a false alarm, which costs a walk of the parsed value.
    """
    digits = text.translate(_NUMBER_CONTEXT, b" \t\r\n-")
    return _LONG_NUMBER in digits or digits.startswith(_LONG_NUMBER[1:])


def encode_event(event: Mapping[str, Any]) -> bytes:
    """Encode a validated event canonically (the part of the line after the header).

    Raises:
        EventValidationError: the event holds an integer beyond 64 bits or a
            string that is not valid Unicode.
    """
    try:
        return canonical_json(event)
    except TypeError as e:
        raise EventValidationError(f"cannot be encoded as JSON ({e})") from e


def seal_event(event: Mapping[str, Any], seq: int, received_at: str) -> bytes:
    """Return the sealed line for a validated event (no newline).

    Raises:
        ValueError: bad ``seq`` or ``received_at``.
        EventValidationError: the event cannot be encoded.
    """
    return seal_line(encode_event(event), seq, received_at)


def encode_event_batch(body: bytes) -> list[bytes]:
    """Parse, validate and canonically encode every event of a request body.

    The body is NDJSON (one event per line; blank lines are ignored) or one
    JSON array of events. All-or-nothing: the first bad event raises.

    Raises:
        EventValidationError: naming the first bad event: ``line`` is its
            1-based line number (array element index + 1 for arrays); or the
            body holds no event.
    """
    if body.lstrip().startswith(b"["):
        return _encode_array(body)
    return _encode_ndjson(body)


def encode_request_body(body: bytes) -> EncodedEvents:
    """:func:`encode_event_batch`, joined for the agent's spool.

    Raises:
        EventValidationError: naming the first bad line.
    """
    return EncodedEvents.of(encode_event_batch(body))


def _encode_ndjson(body: bytes) -> list[bytes]:
    """:func:`encode_event_batch` for NDJSON, in one loop: this is the agent's hot path.

    Raises:
        EventValidationError: naming the first bad line.
    """
    body_may_hold_long_number = _may_hold_long_number(body)
    dumps = orjson.dumps
    sort_keys = orjson.OPT_SORT_KEYS
    encoded = []
    for number, raw in enumerate(body.split(b"\n"), start=1):
        if not raw or raw.isspace():
            continue
        long_number = body_may_hold_long_number and _may_hold_long_number(raw)
        try:
            event = validate_event(_loads(raw, may_hold_long_number=long_number))
            encoded.append(dumps(event, option=sort_keys))
        except EventValidationError as e:
            raise e.at_line(number) from e
        except orjson.JSONEncodeError as e:
            raise EventValidationError(f"cannot be encoded as JSON ({e})", line=number) from e
    if not encoded:
        raise EventValidationError("the body holds no event")
    return encoded


def _encode_array(body: bytes) -> list[bytes]:
    """:func:`encode_event_batch` for a body that is one JSON array of events.

    Raises:
        EventValidationError: naming the first bad element.
    """
    try:
        items = _loads(body, may_hold_long_number=_may_hold_long_number(body))
    except EventValidationError as e:
        raise EventValidationError(f"not a JSON array ({e.reason})", line=1) from e
    if not isinstance(items, list):
        raise EventValidationError("not a JSON array", line=1)
    encoded = []
    for index, item in enumerate(items, start=1):
        try:
            encoded.append(encode_event(validate_event(item)))
        except EventValidationError as e:
            raise e.at_line(index) from e
    if not encoded:
        raise EventValidationError("the body holds no event")
    return encoded
