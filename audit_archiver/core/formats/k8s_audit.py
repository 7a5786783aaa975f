"""Kubernetes audit events (``audit.k8s.io/v1`` ``Event``) as archived events.

Framing: an ``EventList`` (what the API server's webhook backend POSTs), a
single ``Event``, a JSON array of either, or NDJSON of Events (the log
backend's ``--audit-log-path`` file).

Mapping (the issue's table):

- ``actor``: ``impersonatedUser.username`` when the request was impersonated
  (the identity the request acted as, and was authorized as), else
  ``user.username``. The authenticated user is always kept in
  ``record.user.username``.
- ``action``: ``verb``.
- ``resource``: ``objectRef`` as ``[apiGroup/]resource[/namespace]/name[/subresource]``
  (parts that are absent are left out), else ``requestURI``.
- ``time``: ``stageTimestamp``; ``source_ip``: ``sourceIPs[0]``.
- ``outcome``: the ``authorization.k8s.io/decision`` annotation and
  ``responseStatus.code``, joined by a space (``"allow 201"``, ``"forbid 403"``);
  either alone when the other is absent.
- dedupe key: ``auditID|stage`` (an event is sent once per stage).
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

__all__ = ["FORMAT_NAME", "encode_body", "map_event"]

FORMAT_NAME = "k8s-audit"
_DECISION = "authorization.k8s.io/decision"


def _expand(value: object) -> Iterable[object]:
    """An EventList's items, or the value itself (one Event)."""
    if isinstance(value, dict) and value.get("kind") == "EventList":
        items = value.get("items")
        if items is None:
            return []
        if not isinstance(items, list):
            raise EventValidationError("an EventList's 'items' must be an array")
        return items
    return [value]


def _resource(event: dict[str, Any]) -> object:
    ref = event.get("objectRef")
    if isinstance(ref, dict) and text(ref.get("resource")):
        parts = [
            ref.get("apiGroup"),
            ref.get("resource"),
            ref.get("namespace"),
            ref.get("name"),
            ref.get("subresource"),
        ]
        return "/".join(part for part in parts if isinstance(part, str) and part)
    return event.get("requestURI")


def _outcome(event: dict[str, Any]) -> str | None:
    decision = text(member(event, "annotations", _DECISION))
    code = member(event, "responseStatus", "code")
    shown_code = str(code) if isinstance(code, int) and not isinstance(code, bool) else None
    parts = [part for part in (decision, shown_code) if part]
    return " ".join(parts) or None


def map_event(item: object) -> tuple[dict[str, Any], str | None]:
    """The archived event and dedupe key of one audit ``Event``.

    Raises:
        EventValidationError: not an object, or no actor, verb or resource.
    """
    event = require_object(item, "a Kubernetes audit Event")
    actor = member(event, "impersonatedUser", "username") or member(event, "user", "username")
    source_ips = event.get("sourceIPs")
    archived = archived_event(
        FORMAT_NAME,
        event,
        actor=actor,
        action=event.get("verb"),
        resource=_resource(event),
        time=event.get("stageTimestamp"),
        source_ip=source_ips[0] if isinstance(source_ips, list) and source_ips else None,
        outcome=_outcome(event),
    )
    audit_id = text(event.get("auditID"))
    stage = text(event.get("stage"))
    key = f"{audit_id}|{stage or ''}" if audit_id else None
    return archived, key


def encode_body(body: bytes) -> EncodedBatch:
    """Encode a request body of Kubernetes audit events.

    Raises:
        EventValidationError: naming the first bad item.
    """
    return encode_items(body, _expand, map_event)
