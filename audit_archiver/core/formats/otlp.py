"""OTLP/HTTP logs (``ExportLogsServiceRequest``) as archived events.

The request is decoded with the official ``opentelemetry-proto`` classes:
``application/x-protobuf`` (the default, and any content type that is not
JSON) by the protobuf runtime, ``application/json`` by
``google.protobuf.json_format`` (unknown fields ignored, as OTLP asks). Every
``LogRecord`` becomes one archived event; the answer is an empty
``ExportLogsServiceResponse`` (full success) in the request's content type.

Speed without a second decoder: protobuf is decoded by the runtime and each
message turned into its proto3 JSON form by :mod:`._protojson` (exactly what
``json_format.MessageToDict`` gives, which it falls back to); OTLP/JSON in the
canonical form is normalized record by record by the same module (exactly
``MessageToDict(ParseDict(...))``), while ``json_format.ParseDict`` reads the
rest of the request, and any record or request in another form whole.
An attribute used for a mapped field is read as text: a string, an integer's
digits, bytes as base64 (booleans, doubles, arrays and maps are not text).

Mapping (the issue's table; the attribute names are :class:`FormatOptions`):

- ``actor``: the first of the log record attributes ``user.id``,
  ``enduser.id`` that is present (scalars as text).
- ``action``: the record's ``eventName``, else its attribute ``event.name``.
- ``resource``: a configured attribute (of the record, then of the resource),
  else the resource attribute ``service.name``.
- ``time``: ``timeUnixNano`` (else ``observedTimeUnixNano``) as RFC 3339 UTC
  with all nine fraction digits kept (``2018-12-13T14:51:00.300000000Z``).
- ``source_ip``: the attribute ``client.address`` when it is an address.
- ``outcome``: the attribute ``http.response.status_code``, else ``severityText``.
- ``record``: ``{"resource": ..., "scope": ..., "logRecord": ...}`` in the
  OTLP/JSON form (proto3 JSON mapping; ``traceId`` and ``spanId`` as hex, as
  OTLP/JSON writes them).
- dedupe key: none (a log record has no stable id).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from audit_archiver.core.event import _check_depth, encode_event
from audit_archiver.core.formats._common import (
    EncodedBatch,
    FormatOptions,
    archived_event,
    check_joined,
    finish,
    whole_value,
)
from audit_archiver.core.formats._protojson import message_dict, normalized_dict
from audit_archiver.errors import EventValidationError

__all__ = ["FORMAT_NAME", "JSON_CONTENT_TYPE", "PROTOBUF_CONTENT_TYPE", "encode_body"]

FORMAT_NAME = "otlp"
JSON_CONTENT_TYPE = "application/json"
PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
MAX_JSON_LOG_RECORDS = 65_536
"""The most log records one OTLP/JSON request may hold (``json_format`` decodes
in Python, about 10 us a record; the collector's default batch is 8192)."""


def is_json(content_type: str | None) -> bool:
    """True when ``content_type`` names JSON (parameters such as charset ignored)."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == JSON_CONTENT_TYPE


_T = TypeVar("_T")
_M = TypeVar("_M", bound=Message)
_PROTO_JSON_DEPTH = 100
"""``json_format``'s nesting limit for a whole request (its default, made explicit)."""
_RECORD_LEVEL = 3
"""Messages above a log record (request, ResourceLogs, ScopeLogs); and the
nesting level of ``record.logRecord`` in the archived event."""


class _Item(NamedTuple):
    """One log record and its context, in the OTLP/JSON form."""

    resource: dict[str, Any]
    resource_values: dict[str, Any]
    scope: dict[str, Any]
    log: dict[str, Any]


def _official(parse: Callable[[], _T], as_json: bool) -> _T:
    """``parse()`` (a call into the protobuf runtime), its errors as ours."""
    try:
        return parse()
    except (
        DecodeError,
        json_format.ParseError,
        UnicodeDecodeError,
        ValueError,
        TypeError,
        OverflowError,
    ) as e:
        kind = "not_json" if as_json else "invalid"
        raise EventValidationError(
            f"not an OTLP ExportLogsServiceRequest ({str(e)[:200]})", kind=kind
        ) from e
    except RecursionError as e:  # the runtime bounds nesting; belt and braces
        raise EventValidationError("nested too deeply", kind="too_deep") from e


def _parse_dict(value: Any, message: _M, depth: int = _PROTO_JSON_DEPTH) -> _M:
    return _official(
        lambda: json_format.ParseDict(
            value, message, ignore_unknown_fields=True, max_recursion_depth=depth
        ),
        as_json=True,
    )


def _protobuf_items(body: bytes) -> Iterator[_Item]:
    """The log records of a protobuf request, one at a time."""
    request = _official(lambda: ExportLogsServiceRequest.FromString(body), as_json=False)
    return _message_items(request)


def _message_items(request: ExportLogsServiceRequest) -> Iterator[_Item]:
    for resource_logs in request.resource_logs:
        resource = message_dict(resource_logs.resource, _RECORD_LEVEL)
        values = _attribute_values(resource)
        for scope_logs in resource_logs.scope_logs:
            scope = message_dict(scope_logs.scope, _RECORD_LEVEL)
            for log in scope_logs.log_records:
                yield _Item(resource, values, scope, message_dict(log, _RECORD_LEVEL))


def _json_items(body: bytes) -> list[_Item]:
    """The log records of an OTLP/JSON request, all read before any is mapped
    (a request ``json_format`` refuses is refused whole, as before any mapping).

    A request in the canonical form is read by :func:`normalized_dict` record
    by record, and ``json_format`` reads the rest of it (resources, scopes);
    a record or a request in another form is read by ``json_format`` whole.
    """
    value = whole_value(body)
    if not isinstance(value, dict):
        raise EventValidationError(
            "an ExportLogsServiceRequest must be a JSON object", kind="not_json"
        )
    _ids_as_base64(value)
    split = _split_records(value)
    if split is None:
        return list(_message_items(_parse_dict(value, ExportLogsServiceRequest())))
    skeleton, record_lists = split
    request = _parse_dict(skeleton, ExportLogsServiceRequest())
    items = []
    for resource_logs, scope_lists in zip(request.resource_logs, record_lists, strict=True):
        resource = message_dict(resource_logs.resource, _RECORD_LEVEL)
        values = _attribute_values(resource)
        for scope_logs, records in zip(resource_logs.scope_logs, scope_lists, strict=True):
            scope = message_dict(scope_logs.scope, _RECORD_LEVEL)
            for record in records:
                log = normalized_dict(record, LogRecord.DESCRIPTOR, _RECORD_LEVEL)
                if log is None:
                    parsed = _parse_dict(record, LogRecord(), _PROTO_JSON_DEPTH - _RECORD_LEVEL)
                    log = message_dict(parsed, _RECORD_LEVEL)
                items.append(_Item(resource, values, scope, log))
    return items


def _split_records(request: dict[str, Any]) -> tuple[dict[str, Any], list[Any]] | None:
    """(the request without its log records, the records per resource and scope),
    or None when its structure is not the canonical one (then ``json_format``
    reads it whole)."""
    all_resources = request.get("resourceLogs")
    if "resource_logs" in request or type(all_resources) is not list:
        return None
    skeleton_resources = []
    record_lists: list[list[list[Any]]] = []
    for resource_logs in all_resources:
        split = _split_scopes(resource_logs)
        if split is None:
            return None
        skeleton_resources.append(split[0])
        record_lists.append(split[1])
    return {**request, "resourceLogs": skeleton_resources}, record_lists


def _split_scopes(resource_logs: object) -> tuple[dict[str, Any], list[list[Any]]] | None:
    """:func:`_split_records` for one ``ResourceLogs``."""
    if type(resource_logs) is not dict or "scope_logs" in resource_logs:
        return None
    scopes = resource_logs.get("scopeLogs", [])
    if type(scopes) is not list:
        return None
    skeleton_scopes = []
    scope_lists: list[list[Any]] = []
    for scope_logs in scopes:
        if type(scope_logs) is not dict or "log_records" in scope_logs:
            return None
        records = scope_logs.get("logRecords", [])
        if type(records) is not list or any(type(r) is not dict for r in records):
            return None
        skeleton_scopes.append({**scope_logs, "logRecords": []})
        scope_lists.append(records)
    return {**resource_logs, "scopeLogs": skeleton_scopes}, scope_lists


def _ids_as_base64(request: Any) -> Any:
    """OTLP/JSON writes ``traceId`` and ``spanId`` as hex, where the proto3 JSON
    mapping (``json_format``) reads bytes as base64: convert them in place."""
    count = 0
    for resource_logs in _list(request, "resourceLogs"):
        for scope_logs in _list(resource_logs, "scopeLogs"):
            logs = _list(scope_logs, "logRecords")
            count += len(logs)
            if count > MAX_JSON_LOG_RECORDS:
                raise EventValidationError(
                    f"more than {MAX_JSON_LOG_RECORDS} log records in one request",
                    kind="too_large",
                )
            for log in logs:
                for name in ("traceId", "spanId"):
                    ident = log.get(name) if isinstance(log, dict) else None
                    if isinstance(ident, str):
                        try:
                            log[name] = base64.b64encode(bytes.fromhex(ident)).decode("ascii")
                        except ValueError as e:
                            raise EventValidationError(f"{name} is not hex", field=name) from e
    return request


def _list(value: object, name: str) -> list[Any]:
    items = value.get(name) if isinstance(value, dict) else None
    return items if isinstance(items, list) else []


def _attribute_values(message: dict[str, Any]) -> dict[str, Any]:
    """A message's ``attributes`` (OTLP/JSON) by key: each its ``AnyValue``
    (None when unset); a repeated key keeps its last value."""
    return {pair.get("key", ""): pair.get("value") for pair in message.get("attributes", ())}


def _scalar_text(value: Any) -> str | None:
    """An ``AnyValue`` (OTLP/JSON) as text: a non-empty string, an integer's
    digits, bytes as base64; None for other kinds, empty values and no value."""
    if not value:
        return None
    text = value.get("stringValue") or value.get("intValue") or value.get("bytesValue")
    if text:
        return str(text)
    index = value.get("stringValueStrindex")
    return None if index is None else str(index)


def _rfc3339_nanos(nanos: int) -> str | None:
    if nanos <= 0:
        return None
    seconds, fraction = divmod(nanos, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


def _ids_as_hex(log: dict[str, Any]) -> dict[str, Any]:
    """``traceId`` and ``spanId`` as OTLP/JSON writes them: hex, not the proto3 JSON base64."""
    for name in ("traceId", "spanId"):
        ident = log.get(name)
        if ident is not None:
            log[name] = base64.b64decode(ident).hex()
    return log


def _event(item: _Item, options: FormatOptions) -> dict[str, Any]:
    log = item.log
    attrs = _attribute_values(log)
    actor = None
    for name in options.otlp_actor_attributes:
        actor = _scalar_text(attrs.get(name))
        if actor:
            break
    action = log.get("eventName") or _scalar_text(attrs.get("event.name"))
    resource = None
    resource_values = item.resource_values
    if options.otlp_resource_attribute:
        wanted = options.otlp_resource_attribute
        resource = _scalar_text(attrs.get(wanted)) or _scalar_text(resource_values.get(wanted))
    resource = resource or _scalar_text(resource_values.get(options.otlp_resource_fallback))
    outcome = _scalar_text(attrs.get("http.response.status_code")) or log.get("severityText")
    address = attrs.get("client.address")
    record = {"resource": item.resource, "scope": item.scope, "logRecord": _ids_as_hex(log)}
    return archived_event(
        FORMAT_NAME,
        record,
        actor=actor,
        action=action,
        resource=resource,
        time=_rfc3339_nanos(int(log.get("timeUnixNano", 0)))
        or _rfc3339_nanos(int(log.get("observedTimeUnixNano", 0))),
        source_ip=address.get("stringValue") if address else None,
        outcome=outcome,
    )


def encode_body(
    body: bytes, content_type: str | None, options: FormatOptions | None = None
) -> EncodedBatch:
    """Encode an OTLP/HTTP logs request body.

    ``line`` in an error is the log record's 1-based position in the request.

    Raises:
        EventValidationError: the body is not an ``ExportLogsServiceRequest``
            in its content type, or a log record lacks actor, action or resource.
    """
    options = options or FormatOptions()
    as_json = is_json(content_type)
    items = _json_items(body) if as_json else _protobuf_items(body)
    joined = bytearray()
    keys: list[str | None] = []
    for item in items:
        number = len(keys) + 1
        try:
            encoded = encode_event(_event(item, options))
            _check_depth(encoded)
        except EventValidationError as e:
            raise e.at_line(number) from e
        joined += encoded
        joined += b"\n"
        check_joined(joined)
        keys.append(None)
    batch = finish(joined, keys)
    if as_json:
        answer = json_format.MessageToJson(ExportLogsServiceResponse(), indent=None).encode()
        return batch._replace(response=answer, response_content_type=JSON_CONTENT_TYPE)
    answer = ExportLogsServiceResponse().SerializeToString()
    return batch._replace(response=answer, response_content_type=PROTOBUF_CONTENT_TYPE)
