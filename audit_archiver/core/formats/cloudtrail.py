"""AWS CloudTrail records as archived events.

Framing: a CloudTrail log file ``{"Records": [...]}``, one EventBridge event
(``detail-type`` ... ``detail``: the record is ``detail``; the envelope is not
archived), or bare records (one object, a JSON array, or NDJSON).

Mapping (the issue's table):

- ``actor``: ``userIdentity.arn``, else ``userIdentity.principalId``, else
  ``userIdentity.invokedBy`` (the first that is a non-empty string).
- ``action``: ``eventSource:eventName``.
- ``resource``: ``resources[0].ARN``, else ``eventSource``.
- ``time``: ``eventTime``; ``source_ip``: ``sourceIPAddress`` when it is an
  address (not ``"AWS Internal"`` or a service name).
- ``outcome``: ``"failure"`` when ``errorCode`` is present, else ``"success"``.
- dedupe key: ``eventID``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from audit_archiver.core.formats._common import (
    EncodedBatch,
    archived_event,
    encode_items,
    member,
    require_object,
    text,
)
from audit_archiver.errors import EventValidationError

__all__ = ["FORMAT_NAME", "encode_body", "map_record"]

FORMAT_NAME = "cloudtrail"


def _expand(value: object) -> Iterable[object]:
    """A log file's records, an EventBridge event's detail, or the value (one record)."""
    if isinstance(value, dict):
        if "Records" in value:
            records = value["Records"]
            if not isinstance(records, list):
                raise EventValidationError("'Records' must be an array")
            return records
        if "detail-type" in value and "detail" in value:
            return [value["detail"]]
    return [value]


def _action(record: dict[str, Any]) -> str | None:
    source = text(record.get("eventSource"))
    name = text(record.get("eventName"))
    return f"{source}:{name}" if source and name else None


def _resource(record: dict[str, Any]) -> object:
    resources = record.get("resources")
    if isinstance(resources, list) and resources:
        arn = text(member(resources[0], "ARN"))
        if arn:
            return arn
    return record.get("eventSource")


def map_record(item: object) -> tuple[dict[str, Any], str | None]:
    """The archived event and dedupe key of one CloudTrail record.

    Raises:
        EventValidationError: not an object, or no actor, action or resource.
    """
    record = require_object(item, "a CloudTrail record")
    identity = record.get("userIdentity")
    actor = None
    for name in ("arn", "principalId", "invokedBy"):
        actor = text(member(identity, name))
        if actor:
            break
    archived = archived_event(
        FORMAT_NAME,
        record,
        actor=actor,
        action=_action(record),
        resource=_resource(record),
        time=record.get("eventTime"),
        source_ip=record.get("sourceIPAddress"),
        outcome="failure" if record.get("errorCode") is not None else "success",
    )
    return archived, text(record.get("eventID"))


def encode_body(body: bytes) -> EncodedBatch:
    """Encode a request body of CloudTrail records.

    Raises:
        EventValidationError: naming the first bad item.
    """
    return encode_items(body, _expand, map_record)
