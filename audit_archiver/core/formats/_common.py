"""What every native format shares: options, the result, body framing and the archived event.

Invariants (every format):

- Bytes in, :class:`EncodedBatch` out; nothing but
  :class:`~audit_archiver.errors.EventValidationError` ever leaves (foreign
  exceptions are wrapped here or in the format's module).
- Bounded like :mod:`audit_archiver.core.event`, with its own checks (never a
  copy of them): an NDJSON line or an array element is checked for
  :data:`~audit_archiver.core.event.MAX_EVENT_BYTES` and
  :data:`~audit_archiver.core.event.MAX_DEPTH` before it is parsed; a body
  that is one JSON object (a list wrapper such as ``EventList`` or
  ``{"Records": [...]}``) is parsed whole by orjson, whose own nesting limit
  bounds the parse, so it costs a bounded multiple of the body (which the
  agent caps with ``--max-body-bytes``); every archived event is checked for
  size and depth as encoded.
- All-or-nothing: the first bad item raises, naming it in ``line``: the NDJSON
  line it came from, or its 1-based position in the array or list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from audit_archiver.core.event import (
    _array_elements,
    _check_depth,
    _check_size,
    _holds_huge_float,
    _lines,
    _loads,
    _may_hold_long_number,
    check_output,
    encode_event,
    is_typed_ip,
    is_typed_time,
)
from audit_archiver.core.line import EncodedEvents
from audit_archiver.errors import EventValidationError

__all__ = [
    "EncodedBatch",
    "FormatOptions",
    "archived_event",
    "encode_items",
    "parse_json_item",
]


@dataclass(frozen=True)
class FormatOptions:
    """How the formats with configurable fields map them (today: OTLP only).

    Attributes:
        otlp_actor_attributes: log record attributes tried in order for ``actor``.
        otlp_resource_attribute: a log record attribute (then a resource
            attribute) of that name gives ``resource``; when None or absent,
            the resource attribute ``otlp_resource_fallback`` does.
        otlp_resource_fallback: the resource attribute used for ``resource``
            when ``otlp_resource_attribute`` gives nothing.
    """

    otlp_actor_attributes: tuple[str, ...] = ("user.id", "enduser.id")
    otlp_resource_attribute: str | None = None
    otlp_resource_fallback: str = "service.name"


class EncodedBatch(NamedTuple):
    """One request body's archived events, ready for the spool.

    Attributes:
        events: the archived events in canonical form (as the ``events`` format).
        dedupe_keys: one per event, in order: the producer's own id for that
            item (k8s ``auditID|stage``, CloudTrail ``eventID``, GCP
            ``logName|insertId``) or None when it has none (OTLP, ``events``).
        response: the body to answer with on success (OTLP's
            ``ExportLogsServiceResponse``), or None for the agent's usual answer.
        response_content_type: the ``Content-Type`` of ``response``.
    """

    events: EncodedEvents
    dedupe_keys: tuple[str | None, ...]
    response: bytes | None = None
    response_content_type: str | None = None


OUTPUT_LIMIT: ContextVar[int | None] = ContextVar("output_limit", default=None)
"""The cap on one body's encoded events, set by
:func:`~audit_archiver.core.formats.encode_format_body` around a format's encoder."""


def check_joined(joined: bytearray) -> None:
    """Refuse the body once its encoded events pass :data:`OUTPUT_LIMIT`."""
    check_output(len(joined), OUTPUT_LIMIT.get())


Expand = Callable[[object], Iterable[object]]
"""A format's framing: one parsed JSON value of the body into its items."""
MapItem = Callable[[object], tuple[dict[str, Any], str | None]]
"""A format's mapping: one item into its archived event and its dedupe key."""


def archived_event(
    format_name: str,
    record: dict[str, Any],
    *,
    actor: object,
    action: object,
    resource: object,
    time: object = None,
    source_ip: object = None,
    outcome: str | None = None,
) -> dict[str, Any]:
    """The archived event for one producer record (the contract's shape).

    ``time`` and ``source_ip`` are set only when typed (RFC 3339, an IP
    address); ``outcome`` only when known. The record is kept whole.

    Raises:
        EventValidationError: ``actor``, ``action`` or ``resource`` is missing,
            not a string or blank after mapping (``field`` names which).
    """
    event: dict[str, Any] = {
        "actor": _required("actor", actor),
        "action": _required("action", action),
        "resource": _required("resource", resource),
        "format": format_name,
        "record": record,
    }
    if is_typed_time(time):
        event["time"] = time
    if is_typed_ip(source_ip):
        event["source_ip"] = source_ip
    if outcome:
        event["outcome"] = outcome
    return event


def _required(name: str, value: object) -> str:
    if isinstance(value, str) and value and not value.isspace():
        return value
    raise EventValidationError("is missing from the producer's record after mapping", field=name)


def parse_json_item(raw: bytes) -> Any:
    """Parse one item's JSON (an NDJSON line, a decoded Pub/Sub message), bounded.

    Raises:
        EventValidationError: too large, too deep, not UTF-8 or not JSON.
    """
    _check_size(len(raw))
    _check_depth(raw)
    return _loads(raw, may_hold_long_number=_may_hold_long_number(raw))


_LEADING_SPACE = re.compile(rb"[ \t\r\n]*")


def whole_value(body: bytes) -> Any:
    """The body parsed as one JSON value, or None when it is not one (NDJSON)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if _may_hold_long_number(body) and _holds_huge_float(value):
        # orjson read an integer beyond 64 bits as a float: parse exactly
        # (orjson accepted the nesting, so the standard parser's is bounded too).
        return _loads(body, may_hold_long_number=True)
    return value


def _items(body: bytes, expand: Expand) -> Iterator[tuple[int, object]]:
    """(line or position, item) of every item of a JSON, array or NDJSON body."""
    start = _LEADING_SPACE.match(body).end()  # type: ignore[union-attr]  # always matches
    first = body[start : start + 1]
    if first == b"[":
        number = 0
        for _, raw in _array_elements(body, start):
            try:
                value = _loads(raw, may_hold_long_number=_may_hold_long_number(raw))
                items = list(expand(value))
            except EventValidationError as e:
                raise e.at_line(number + 1) from e
            for item in items:
                number += 1
                yield number, item
        return
    if first == b"{":
        value = whole_value(body)
        if value is not None:
            for number, item in enumerate(_expanded(expand, value, 1), 1):
                yield number, item
            return
    body_may_hold_long_number = _may_hold_long_number(body)  # one scan, not one per line
    for number, raw in _lines(body):
        if not raw or raw.isspace():
            continue
        try:
            _check_size(len(raw))
            _check_depth(raw)
            long_number = body_may_hold_long_number and _may_hold_long_number(raw)
            expanded = expand(_loads(raw, may_hold_long_number=long_number))
        except EventValidationError as e:
            raise e.at_line(number) from e
        for item in expanded:
            yield number, item


def _expanded(expand: Expand, value: object, number: int) -> Iterator[object]:
    try:
        items = iter(expand(value))
        while True:
            try:
                item = next(items)
            except StopIteration:
                return
            yield item
    except EventValidationError as e:
        raise e.at_line(number) from e


def encode_items(body: bytes, expand: Expand, map_item: MapItem) -> EncodedBatch:
    """Frame, map and encode every item of a JSON body (all-or-nothing).

    Raises:
        EventValidationError: naming the first bad item, or the body holds none.
    """
    joined = bytearray()
    keys: list[str | None] = []
    for number, item in _items(body, expand):
        try:
            event, key = map_item(item)
            encoded = encode_event(event)
            _check_depth(encoded)
        except EventValidationError as e:
            raise e.at_line(number) from e
        joined += encoded
        joined += b"\n"
        check_joined(joined)
        keys.append(key)
    return finish(joined, keys)


def finish(joined: bytearray, keys: list[str | None]) -> EncodedBatch:
    """The batch of ``joined`` events, or an error when there is none.

    Raises:
        EventValidationError: the body holds no item.
    """
    if not keys:
        raise EventValidationError("the body holds no event")
    return EncodedBatch(EncodedEvents(len(keys), bytes(joined)), tuple(keys))


def text(value: object) -> str | None:
    """``value`` when it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def member(value: object, *path: str) -> object:
    """``value[path[0]][path[1]]...``, or None when a step is missing or not an object."""
    for name in path:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def require_object(item: object, what: str) -> dict[str, Any]:
    """``item`` when it is a JSON object.

    Raises:
        EventValidationError: it is not one.
    """
    if isinstance(item, dict):
        return item
    raise EventValidationError(f"{what} must be a JSON object")
