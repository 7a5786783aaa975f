"""Google Cloud Audit Logs ``LogEntry`` objects as archived events.

Framing: one LogEntry, a JSON array or NDJSON of them (a Pub/Sub pull consumer,
a log sink export), or one Pub/Sub push envelope whose ``message.data`` is the
base64 of a LogEntry (the LogEntry is archived; the envelope is not). The
decoded message is bounded like one event.

Mapping (the issue's table):

- ``actor``: ``protoPayload.authenticationInfo.principalEmail``.
- ``action``: ``protoPayload.methodName``.
- ``resource``: ``protoPayload.resourceName``.
- ``time``: ``timestamp``; ``source_ip``: ``protoPayload.requestMetadata.callerIp``
  when it is an address (not ``"private"`` or ``"gce-internal-ip"``).
- ``outcome``: ``"success"`` when ``protoPayload.status.code`` is 0 or absent,
  else ``"failure <code>"`` (a ``google.rpc.Code``, 7 is PERMISSION_DENIED).
- dedupe key: ``logName|insertId`` (``insertId`` is unique within a log).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

from audit_archiver.core.event import MAX_EVENT_BYTES
from audit_archiver.core.formats._common import (
    EncodedBatch,
    archived_event,
    encode_items,
    member,
    parse_json_item,
    require_object,
    text,
)
from audit_archiver.errors import EventValidationError

__all__ = ["FORMAT_NAME", "encode_body", "map_entry"]

FORMAT_NAME = "gcp-audit"


def _expand(value: object) -> Iterable[object]:
    """A Pub/Sub push envelope's LogEntry, or the value itself (one LogEntry)."""
    if isinstance(value, dict) and isinstance(value.get("message"), dict):
        return [_push_message(value["message"])]
    return [value]


def _push_message(message: dict[str, Any]) -> object:
    data = message.get("data")
    if not isinstance(data, str):
        raise EventValidationError("a Pub/Sub message needs a base64 'data' string")
    if len(data) > (MAX_EVENT_BYTES // 3 + 1) * 4:
        raise EventValidationError(
            f"a Pub/Sub message is larger than {MAX_EVENT_BYTES} bytes", kind="too_large"
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise EventValidationError(f"a Pub/Sub message's 'data' is not base64 ({e})") from e
    return parse_json_item(raw)


def _outcome(payload: dict[str, Any]) -> str:
    code = member(payload.get("status"), "code")
    if code is None or code == 0:
        return "success"
    if isinstance(code, int) and not isinstance(code, bool):
        return f"failure {code}"
    return "failure"


def map_entry(item: object) -> tuple[dict[str, Any], str | None]:
    """The archived event and dedupe key of one audit LogEntry.

    Raises:
        EventValidationError: not an object, or no actor, method or resource name.
    """
    entry = require_object(item, "a LogEntry")
    payload = entry.get("protoPayload")
    if not isinstance(payload, dict):
        payload = {}
    archived = archived_event(
        FORMAT_NAME,
        entry,
        actor=member(payload.get("authenticationInfo"), "principalEmail"),
        action=payload.get("methodName"),
        resource=payload.get("resourceName"),
        time=entry.get("timestamp"),
        source_ip=member(payload.get("requestMetadata"), "callerIp"),
        outcome=_outcome(payload),
    )
    insert_id = text(entry.get("insertId"))
    key = f"{text(entry.get('logName')) or ''}|{insert_id}" if insert_id else None
    return archived, key


def encode_body(body: bytes) -> EncodedBatch:
    """Encode a request body of Cloud Audit Logs entries.

    Raises:
        EventValidationError: naming the first bad item.
    """
    return encode_items(body, _expand, map_entry)
