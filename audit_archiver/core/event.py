"""The audit event model: validation, parsing and canonical encoding of what producers send.

An event is a JSON object. Required: ``actor``, ``action`` and ``resource``,
each a non-empty string or an object with a non-empty string ``id``. Optional
fields with a checked shape: ``outcome`` (string) and ``details`` (object).
``time`` (RFC 3339, the producer's claim) and ``source_ip`` (an IPv4 or IPv6
address) are *typed* only when they have that form: any other value is kept as
sent and is "not typed" (stored, never used as a time or an address by query
tools; :func:`is_typed_time` and :func:`is_typed_ip` tell which). An optional
field never costs a batch. Any other field is kept as sent.

When sealed, the archiver adds two fields of its own, ``seq`` and
``received_at`` (see :mod:`audit_archiver.core.line`); producers may not send
these two names.

Limits, checked on the bytes before anything is parsed, so that no input can
make parsing recurse or allocate more than a bounded multiple of one event:
an event is at most :data:`MAX_EVENT_BYTES` long (as sent and as encoded) and
nests objects and arrays at most :data:`MAX_DEPTH` levels deep. A request body
is parsed one event at a time (NDJSON line by line, a JSON array element by
element, its elements located by a scan that keeps no parsed value), so the
memory a body costs is the body, its encoded events and one event's parse. A
body that is one JSON object spread over several lines (``curl -d @event.json``)
is one event: it is tried as such only when its first line is not JSON.
The caller may cap the encoded events of a body (``max_output``): an encoding
can be longer than the text sent (``1e15`` is encoded ``1000000000000000.0``),
so the cap is checked as the output grows, event by event, and a body over it
is refused (``too_large``, with no ``line``: :func:`output_too_large`).
Every bad input ends in :class:`~audit_archiver.errors.EventValidationError`
(its ``kind`` says which limit or rule), never in another exception.
"""

from __future__ import annotations

import functools
import json
import math
import re
import socket
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from audit_archiver.core.encoding import canonical_json, parse_rfc3339, refuse_constant
from audit_archiver.core.line import EncodedEvents, seal_line
from audit_archiver.errors import EventValidationError

__all__ = [
    "MAX_DEPTH",
    "MAX_EVENT_BYTES",
    "REQUIRED_FIELDS",
    "RESERVED_FIELDS",
    "encode_event",
    "encode_event_batch",
    "encode_request_body",
    "is_typed_ip",
    "is_typed_time",
    "output_too_large",
    "parse_event_line",
    "seal_event",
    "validate_event",
]

REQUIRED_FIELDS = ("actor", "action", "resource")
RESERVED_FIELDS = ("seq", "received_at")
MAX_DEPTH = 64
"""The deepest nesting of objects and arrays in one event (the event object is level 1)."""
MAX_EVENT_BYTES = 1 << 20
"""The largest event, in bytes: as sent (one NDJSON line, or one element of a
JSON array body) and as encoded. ``verify --deep`` reads event lines up to this
size plus the line header."""


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


def is_typed_time(value: object) -> bool:
    """True when ``value`` is an RFC 3339 date-time with offset (a typed ``time``)."""
    return isinstance(value, str) and _is_rfc3339(value)


def is_typed_ip(value: object) -> bool:
    """True when ``value`` is an IPv4 or IPv6 address (a typed ``source_ip``)."""
    return isinstance(value, str) and _is_ip_address(value)


def _check_optional(event: Mapping[str, Any]) -> None:
    # ``time`` and ``source_ip`` are not checked: a value of another form is
    # kept as sent ("not typed"), see the module docstring.
    if "outcome" in event and not isinstance(event["outcome"], str):
        raise EventValidationError("must be a string", field="outcome")
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


def parse_event_line(raw: bytes, *, max_bytes: int = MAX_EVENT_BYTES) -> dict[str, Any]:
    """Decode one NDJSON line from a producer and validate it.

    Raises:
        EventValidationError: the line is longer than ``max_bytes`` (kind
            ``too_large``), nests deeper than :data:`MAX_DEPTH` (``too_deep``),
            is not UTF-8 or not JSON (``not_json``), or not a valid event.
    """
    _check_size(len(raw), max_bytes)
    _check_depth(raw)
    return validate_event(_loads(raw, may_hold_long_number=_may_hold_long_number(raw)))


def _check_size(size: int, limit: int = MAX_EVENT_BYTES) -> None:
    if size > limit:
        raise EventValidationError(
            f"event is larger than {limit} bytes ({size} bytes)", kind="too_large"
        )


def _too_deep() -> EventValidationError:
    return EventValidationError(
        f"nested deeper than {MAX_DEPTH} levels of objects and arrays", kind="too_deep"
    )


# From a position outside any string: everything up to the next bracket outside
# strings (whole strings skipped; an unclosed one runs to the end), then that
# bracket in group 1. Possessive throughout: one match never backtracks, so a scan
# made of successive matches is linear in the bytes it crosses.
_TO_BRACKET = re.compile(rb'(?:[^"\[\]{}]++|"(?:[^"\\]++|\\.)*+"?)*+([\[\]{}])', re.DOTALL)
_OPENERS = frozenset(b"[{")
_JSON_SPACE = b" \t\r\n"


def _check_depth(raw: bytes) -> None:
    """Raise ``too_deep`` when ``raw`` nests more than :data:`MAX_DEPTH` levels.

    No recursion and no parsing: a line with at most ``MAX_DEPTH`` opening
    brackets (any event of a usual shape) passes on two counts; others are
    scanned bracket by bracket, outside strings.
    """
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return
    depth = 0
    position = 0
    match = _TO_BRACKET.match
    while found := match(raw, position):
        position = found.end()
        if raw[position - 1] in _OPENERS:
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep()
        else:
            depth -= 1


def _loads(raw: bytes, *, may_hold_long_number: bool) -> Any:
    """Parse JSON: orjson when it is exact, the standard library otherwise.

    orjson reads integers beyond 64 bits as floats, silently (and exactly all
    others). Such an integer has a run of 19 or more digits and becomes a float
    of magnitude 2**63 or more; so only when the text has such a run
    (``may_hold_long_number``) and orjson's result holds such a float is the
    text parsed again with the standard library, which keeps big integers exact.
    Anything orjson refuses goes there too, for the precise error message
    (NaN, Infinity and floats that overflow are refused). The standard library
    recurses per level: callers check the depth first (:func:`_check_depth`).
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
        raise EventValidationError("invalid UTF-8", kind="not_json") from e
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as e:  # callers bound the depth; belt and braces
        raise EventValidationError(f"not JSON ({e})", kind="not_json") from e


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
_DECODER = json.JSONDecoder(parse_constant=refuse_constant, parse_float=_finite_float)
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
            string that is not valid Unicode, or its encoding is longer than
            :data:`MAX_EVENT_BYTES`.
    """
    try:
        encoded = canonical_json(event)
    except TypeError as e:
        raise EventValidationError(f"cannot be encoded as JSON ({e})") from e
    _check_size(len(encoded))
    return encoded


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
    JSON array of events. All-or-nothing: the first bad event raises. Events
    are parsed one at a time, each within :data:`MAX_EVENT_BYTES` and
    :data:`MAX_DEPTH` (see the module docstring).

    Raises:
        EventValidationError: naming the first bad event: ``line`` is its
            1-based line number (array element index + 1 for arrays); or the
            body holds no event.
    """
    return encode_request_body(body).data.split(b"\n")[:-1]


def output_too_large(limit: int) -> EventValidationError:
    """The error for encoded events over ``limit`` bytes (kind ``too_large``, no line)."""
    return EventValidationError(
        f"the encoded events are over the {limit}-byte limit for this request", kind="too_large"
    )


def check_output(size: int, limit: int | None) -> None:
    """Raise :func:`output_too_large` when ``size`` encoded bytes are over ``limit``."""
    if limit is not None and size > limit:
        raise output_too_large(limit)


def encode_request_body(body: bytes, max_output: int | None = None) -> EncodedEvents:
    """:func:`encode_event_batch`, joined for the agent's spool.

    The encoded events are joined as they come: the bytes orjson returns for a
    small event hold a buffer of about 4 KiB, so a list of them would cost
    up to a hundred times the body.

    Raises:
        EventValidationError: naming the first bad line; or (no line) the
            encoded events pass ``max_output`` bytes.
    """
    start = _LEADING_SPACE.match(body).end()  # type: ignore[union-attr]  # always matches
    joined = bytearray()
    if body[start : start + 1] == b"[":
        count = _encode_array(body, start, joined, max_output)
    else:
        try:
            count = _encode_ndjson(body, joined, max_output)
        except EventValidationError as e:
            if not _is_first_line_not_json(body, start, e):
                raise
            joined = bytearray(_encode_one_object(body, e))
            check_output(len(joined), max_output)
            count = 1
    if not count:
        raise EventValidationError("the body holds no event")
    return EncodedEvents(count, bytes(joined))


_LEADING_SPACE = re.compile(rb"[ \t\r\n]*")


def _is_first_line_not_json(body: bytes, start: int, error: EventValidationError) -> bool:
    """True when ``error`` says the first non-blank line (at ``start``) of an
    object body is not JSON: the body may then be one object over many lines."""
    return (
        error.kind == "not_json"
        and body[start : start + 1] == b"{"
        and error.line == body.count(b"\n", 0, start) + 1
    )


def _encode_one_object(body: bytes, ndjson_error: EventValidationError) -> bytes:
    """Encode a body that is one (pretty-printed) JSON object: one event and a newline.

    Raises:
        EventValidationError: ``ndjson_error`` when the body is not one JSON
            value either; else naming line 1 when the object is not a valid event.
    """
    try:
        _check_size(len(body))
        _check_depth(body)
        value = _loads(body, may_hold_long_number=_may_hold_long_number(body))
    except EventValidationError:
        raise ndjson_error from None
    try:
        return encode_event(validate_event(value)) + b"\n"
    except EventValidationError as e:
        raise e.at_line(1) from e


def _lines(body: bytes) -> Iterator[tuple[int, bytes]]:
    """(1-based number, bytes) of each line, one at a time (no list of every line)."""
    start = 0
    number = 0
    size = len(body)
    while start <= size:
        end = body.find(b"\n", start)
        if end < 0:
            end = size
        number += 1
        yield number, body[start:end]
        start = end + 1


def _encode_ndjson(body: bytes, joined: bytearray, max_output: int | None) -> int:
    """Encode NDJSON into ``joined`` (each event and a newline); return the count.

    One loop, the agent's hot path: the usual line costs two bracket counts, one
    orjson parse, :func:`_plainly_valid` and one orjson dump; any line that is
    not usual takes the checks that say why (:func:`_check_size`,
    :func:`_check_depth`, :func:`_loads`, :func:`validate_event`), which are the
    rules; the fast path only decides when they need not run.

    Raises:
        EventValidationError: naming the first bad line.
    """
    body_may_hold_long_number = _may_hold_long_number(body)
    loads, dumps, sort_keys = orjson.loads, orjson.dumps, orjson.OPT_SORT_KEYS
    count = number = start = 0
    size = len(body)
    while start <= size:
        end = body.find(b"\n", start)
        if end < 0:
            end = size
        raw = body[start:end]
        start = end + 1
        number += 1
        if not raw or raw.isspace():
            continue
        try:
            if len(raw) > MAX_EVENT_BYTES:
                _check_size(len(raw))
            if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
                _check_depth(raw)
            long_number = body_may_hold_long_number and _may_hold_long_number(raw)
            try:
                event = loads(raw)
            except orjson.JSONDecodeError:
                event = _loads(raw, may_hold_long_number=long_number)
            if long_number and _holds_huge_float(event):
                event = _loads(raw, may_hold_long_number=True)
            if not _plainly_valid(event):
                event = validate_event(event)
            line = dumps(event, option=sort_keys)
            if len(line) > MAX_EVENT_BYTES:
                _check_size(len(line))
        except EventValidationError as e:
            raise e.at_line(number) from e
        except orjson.JSONEncodeError as e:
            raise EventValidationError(f"cannot be encoded as JSON ({e})", line=number) from e
        joined += line
        joined += b"\n"
        if max_output is not None and len(joined) > max_output:
            raise output_too_large(max_output)
        count += 1
    return count


def _plainly_valid(event: object) -> bool:
    """True when ``event`` passes :func:`validate_event` for the plainest reason:
    a dict whose three subjects are non-blank strings or objects with one as
    ``id``, without ``seq``/``received_at``, with ``outcome`` a string and
    ``details`` an object when present. False only sends the event to
    :func:`validate_event`, which raises or accepts it."""
    if type(event) is not dict or "seq" in event or "received_at" in event:
        return False
    for name in REQUIRED_FIELDS:
        value = event.get(name)
        if type(value) is dict:
            value = value.get("id")
        if type(value) is not str or not value or value.isspace():
            return False
    outcome = event.get("outcome", "")
    details = event.get("details", _NO_DETAILS)
    return type(outcome) is str and type(details) is dict


_NO_DETAILS: dict[str, Any] = {}


def _encode_array(body: bytes, start: int, joined: bytearray, max_output: int | None) -> int:
    """Encode the JSON array opening at ``start`` into ``joined``; return the count.

    Raises:
        EventValidationError: naming the first bad element.
    """
    count = 0
    for number, raw in _array_elements(body, start):
        try:
            event = validate_event(_loads(raw, may_hold_long_number=_may_hold_long_number(raw)))
            joined += encode_event(event)
        except EventValidationError as e:
            raise e.at_line(number) from e
        joined += b"\n"
        check_output(len(joined), max_output)
        count += 1
    return count


def _not_array(number: int, why: str) -> EventValidationError:
    return EventValidationError(f"not a JSON array ({why})", line=max(number, 1), kind="not_json")


def _array_elements(body: bytes, start: int) -> Iterator[tuple[int, bytes]]:
    """(1-based index, bytes) of each element of the array opening at ``start``.

    A scan from bracket to bracket outside strings, keeping only counters:
    each element must be an object (so it starts with ``{``), at most
    :data:`MAX_EVENT_BYTES` long and :data:`MAX_DEPTH` deep; the text between
    elements must be one comma (and whitespace); nothing but whitespace may
    follow the closing ``]``. The first breach raises, before any element
    after it is scanned. Whether an element is JSON is left to its parser.

    Raises:
        EventValidationError: naming the element.
    """
    match = _TO_BRACKET.match
    position = start + 1
    number = 0
    while True:
        found = match(body, position)
        if found is None:
            raise _not_array(number, "no closing ']'")
        bracket = found.start(1)
        gap = body[position:bracket].strip(_JSON_SPACE)
        closing = body[bracket] == ord("]")
        if closing and not gap:
            if body[found.end() :].strip(_JSON_SPACE):
                raise _not_array(number, "text after the closing ']'")
            return
        separator = b"," if number else b""
        if gap != separator:
            value = gap[len(separator) :] if gap.startswith(separator) else b""
            if value.strip(_JSON_SPACE) and not value.startswith(b","):
                raise EventValidationError("event must be a JSON object", line=number + 1)
            raise _not_array(number, "elements must be separated by one ','")
        if closing:
            raise _not_array(number, "a ',' before the closing ']'")
        number += 1
        if body[bracket] != ord("{"):
            raise EventValidationError("event must be a JSON object", line=number)
        end = _element_end(body, bracket, number)
        yield number, body[bracket:end]
        position = end


def _element_end(body: bytes, start: int, number: int) -> int:
    """The end of the object opening at ``start`` (depth and size checked on the way)."""
    match = _TO_BRACKET.match
    depth = 1
    position = start + 1
    while found := match(body, position):
        position = found.end()
        if position - start > MAX_EVENT_BYTES:
            raise _element_too_large(number)
        if body[position - 1] in _OPENERS:
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep().at_line(number)
        else:
            depth -= 1
            if depth == 0:
                return position
    if len(body) - start > MAX_EVENT_BYTES:
        raise _element_too_large(number)
    raise EventValidationError("not JSON (the object is not closed)", line=number, kind="not_json")


def _element_too_large(number: int) -> EventValidationError:
    return EventValidationError(
        f"event is larger than {MAX_EVENT_BYTES} bytes", line=number, kind="too_large"
    )
