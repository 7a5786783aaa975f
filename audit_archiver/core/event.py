"""The audit event model: validation of what producers send, and the sealed line.

An event is a JSON object. Required: ``actor``, ``action`` and ``resource``,
each a non-empty string or an object with a non-empty string ``id``. Optional
fields with a checked shape: ``time`` (RFC 3339, the producer's claim),
``outcome`` (string), ``source_ip`` (an IPv4 or IPv6 address) and ``details``
(object). Any other field is kept as sent.

When sealed, the archiver adds two fields of its own: ``seq`` (per stream,
gap-free, from 0) and ``received_at`` (archiver clock, see
:mod:`audit_archiver.core.encoding`). Producers may not send these two names.
The sealed line puts them first, then the producer's event in canonical form::

    {"seq":<seq>,"received_at":"<timestamp>",<canonical event without its "{">

so the expensive part (parsing, validating, encoding the producer's event) is
done before a ``seq`` is known, and anyone can read ``seq`` and ``received_at``
from the fixed header without parsing the whole line.
"""

from __future__ import annotations

import json
import math
import re
import socket
from collections.abc import Mapping
from typing import Any

import orjson

from audit_archiver.core.encoding import canonical_json, is_archiver_timestamp, parse_rfc3339
from audit_archiver.errors import EventValidationError

__all__ = [
    "REQUIRED_FIELDS",
    "RESERVED_FIELDS",
    "encode_event",
    "encode_event_batch",
    "parse_event_batch",
    "parse_event_batch_numbered",
    "parse_event_line",
    "parse_line_header",
    "seal_event",
    "seal_line",
    "seal_lines",
    "validate_event",
]

REQUIRED_FIELDS = ("actor", "action", "resource")
RESERVED_FIELDS = ("seq", "received_at")


def _check_subject(name: str, value: object) -> None:
    if isinstance(value, str):
        if not value.strip():
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


def _is_ip_address(text: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
        except (OSError, ValueError):
            continue
        return True
    return False


def _check_optional(event: Mapping[str, Any]) -> None:
    if "time" in event:
        when = event["time"]
        if not isinstance(when, str):
            raise EventValidationError("must be an RFC 3339 string", field="time")
        try:
            parse_rfc3339(when)
        except ValueError as e:
            raise EventValidationError(
                "is not an RFC 3339 date-time with offset", field="time"
            ) from e
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
        _check_subject(name, event.get(name))
    for name in RESERVED_FIELDS:
        if name in event:
            raise EventValidationError("is reserved for the archiver", field=name)
    _check_optional(event)
    return dict(event)


def parse_event_line(raw: bytes) -> dict[str, Any]:
    """Decode one NDJSON line from a producer and validate it.

    Raises:
        EventValidationError: the line is not UTF-8, not JSON, or not a valid event.
    """
    return validate_event(_loads(raw, exact=_LONG_NUMBER.search(raw) is not None))


def _loads(raw: bytes, *, exact: bool) -> Any:
    """Parse JSON: orjson when it is exact, the standard library otherwise.

    orjson reads integers beyond 64 bits as floats, silently; so a body with a
    run of 19 or more digits, and anything orjson refuses (for the precise
    error message), goes through the standard library, which keeps big integers
    exact and refuses NaN, Infinity and floats that overflow.
    """
    if not exact:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
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


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_LONG_NUMBER = re.compile(rb"[0-9]{19}")


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


def seal_line(encoded_event: bytes, seq: int, received_at: str) -> bytes:
    """Return the sealed line: the archiver header, then the encoded event.

    Raises:
        ValueError: ``seq`` is negative, ``received_at`` is not an archiver
            timestamp, or ``encoded_event`` is not an encoded object.
    """
    if seq < 0:
        raise ValueError("seq must be >= 0")
    if not is_archiver_timestamp(received_at):
        raise ValueError(f"received_at is not an archiver timestamp: {received_at!r}")
    if not encoded_event.startswith(b"{") or encoded_event == b"{}":
        raise ValueError("encoded event must be a non-empty JSON object")
    return b'{"seq":%d,"received_at":"%s",%s' % (seq, received_at.encode(), encoded_event[1:])


def seal_lines(encoded_events: list[bytes], first_seq: int, received_at: str) -> list[bytes]:
    """Seal a run of encoded events with consecutive seq numbers and one ``received_at``.

    Raises:
        ValueError: as :func:`seal_line`.
    """
    if not encoded_events:
        return []
    seal_line(encoded_events[0], first_seq, received_at)
    stamp = received_at.encode()
    sealed = []
    for offset, encoded in enumerate(encoded_events):
        if encoded[:1] != b"{" or len(encoded) < 3:
            raise ValueError("encoded event must be a non-empty JSON object")
        sealed.append(b'{"seq":%d,"received_at":"%s",%s' % (first_seq + offset, stamp, encoded[1:]))
    return sealed


def seal_event(event: Mapping[str, Any], seq: int, received_at: str) -> bytes:
    """Return the sealed line for a validated event (no newline).

    Raises:
        ValueError: bad ``seq`` or ``received_at``.
        EventValidationError: the event cannot be encoded.
    """
    return seal_line(encode_event(event), seq, received_at)


_HEADER = re.compile(
    rb'\A\{"seq":(0|[1-9][0-9]{0,18}),"received_at":"'
    rb'([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z)",'
)


def parse_line_header(line: bytes) -> tuple[int, str] | None:
    """Read ``seq`` and ``received_at`` from a sealed line's fixed header.

    Returns None when the line does not start with the header or does not end
    with ``}``.
    """
    match = _HEADER.match(line)
    if match is None or not line.endswith(b"}"):
        return None
    return int(match.group(1)), match.group(2).decode()


def encode_event_batch(body: bytes) -> list[bytes]:
    """Parse, validate and canonically encode every event of a request body.

    Raises:
        EventValidationError: naming the first bad line (see :func:`parse_event_batch`).
    """
    encoded = []
    for number, event in parse_event_batch_numbered(body):
        try:
            encoded.append(encode_event(event))
        except EventValidationError as e:
            raise e.at_line(number) from e
    return encoded


def parse_event_batch(body: bytes) -> list[dict[str, Any]]:
    """Parse a request body into validated events (see :func:`parse_event_batch_numbered`).

    Raises:
        EventValidationError: a line is invalid, or the body holds no event.
    """
    return [event for _, event in parse_event_batch_numbered(body)]


def parse_event_batch_numbered(body: bytes) -> list[tuple[int, dict[str, Any]]]:
    """Parse a request body: NDJSON (one event per line) or one JSON array of events.

    Blank lines are ignored. All-or-nothing: the first bad event raises.

    Raises:
        EventValidationError: a line (or array element) is invalid; ``line`` is
            its 1-based line number (array element index + 1 for arrays), or
            the body holds no event.
    """
    stripped = body.lstrip()
    exact = _LONG_NUMBER.search(body) is not None
    if stripped.startswith(b"["):
        try:
            items = _loads(body, exact=exact)
        except EventValidationError as e:
            raise EventValidationError(f"not a JSON array ({e.reason})", line=1) from e
        if not isinstance(items, list):
            raise EventValidationError("not a JSON array", line=1)
        events = []
        for index, item in enumerate(items, start=1):
            try:
                events.append((index, validate_event(item)))
            except EventValidationError as e:
                raise e.at_line(index) from e
    else:
        events = []
        for number, raw in enumerate(body.split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                events.append((number, validate_event(_loads(raw, exact=exact))))
            except EventValidationError as e:
                raise e.at_line(number) from e
    if not events:
        raise EventValidationError("the body holds no event")
    return events
