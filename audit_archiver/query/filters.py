"""Which events a query prints, and the columns shown of each (pure: no IO).

An event matches when every filter given matches:

- ``--actor`` / ``--resource``: the field is a string equal to the pattern or
  matching it as a glob, or an object whose ``id`` is (``*``, ``?``,
  ``[...]``, :func:`fnmatch.fnmatchcase`: case-sensitive, ``*`` crosses
  ``/``). A value equal to the pattern always matches, so a literal ``[`` in
  a resource name needs no escaping.
- ``--action`` / ``--outcome``: the field is a string, equal or matching the glob.
- ``--since`` (inclusive) / ``--until`` (exclusive): on ``received_at``, the
  archiver's time from the line's fixed header (no parse needed, so lines out
  of range are skipped cheaply); with ``--by-claimed-time`` on the producer's
  typed ``time`` instead, and an event without a typed ``time`` never matches
  a time filter then. Times are compared to the microsecond.

Event lines come from authenticated segments, but their content is still a
producer's: nothing here trusts a field's type.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from audit_archiver.core.encoding import format_timestamp, parse_rfc3339
from audit_archiver.core.event import is_typed_time

__all__ = ["COLUMNS", "EventFilter", "Row", "row_of", "text_of"]


def _text_matches(value: object, pattern: str) -> bool:
    return isinstance(value, str) and (value == pattern or fnmatch.fnmatchcase(value, pattern))


def _subject_matches(value: object, pattern: str) -> bool:
    """A subject (``actor``, ``resource``) is a string or an object with an ``id``."""
    if isinstance(value, dict):
        value = value.get("id")
    return _text_matches(value, pattern)


@dataclass(frozen=True)
class EventFilter:
    """The filters of one query. ``since``/``until`` are aware datetimes."""

    actor: str | None = None
    action: str | None = None
    resource: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    by_claimed_time: bool = False

    def __post_init__(self) -> None:
        """Refuse an empty time window.

        Raises:
            ValueError: ``since`` is not before ``until``, or a time is naive.
        """
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("query times must carry a time zone")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("--since must be before --until")

    @property
    def since_stamp(self) -> str | None:
        """``since`` as an archiver timestamp (comparable with ``received_at`` as text)."""
        return None if self.since is None else format_timestamp(self.since)

    @property
    def until_stamp(self) -> str | None:
        """``until`` as an archiver timestamp."""
        return None if self.until is None else format_timestamp(self.until)

    @property
    def has_time(self) -> bool:
        """True when a time filter is given."""
        return self.since is not None or self.until is not None

    @property
    def selects_by_received_at(self) -> bool:
        """True when the time filter is on ``received_at``, so segments can be skipped."""
        return self.has_time and not self.by_claimed_time

    def received_in_range(self, received_at: str) -> bool:
        """True unless a ``received_at`` filter excludes this (archiver) timestamp."""
        if self.by_claimed_time:
            return True
        since, until = self.since_stamp, self.until_stamp
        return (since is None or received_at >= since) and (until is None or received_at < until)

    def _claimed_in_range(self, fields: dict[str, Any]) -> bool:
        if not self.by_claimed_time or not self.has_time:
            return True
        claimed = fields.get("time")
        if not isinstance(claimed, str) or not is_typed_time(claimed):
            return False
        moment = parse_rfc3339(claimed)
        return (self.since is None or moment >= self.since) and (
            self.until is None or moment < self.until
        )

    def matches(self, received_at: str, fields: dict[str, Any]) -> bool:
        """True when the event (its header's ``received_at`` and its parsed fields) matches."""
        checks = (
            (self.actor, "actor", _subject_matches),
            (self.resource, "resource", _subject_matches),
            (self.action, "action", _text_matches),
            (self.outcome, "outcome", _text_matches),
        )
        for pattern, name, check in checks:
            if pattern is not None and not check(fields.get(name), pattern):
                return False
        return self.received_in_range(received_at) and self._claimed_in_range(fields)


COLUMNS = (
    "stream",
    "seq",
    "received_at",
    "time",
    "actor",
    "action",
    "resource",
    "outcome",
    "source_ip",
    "object_key",
)
"""The CSV columns, in order (the table shows a subset)."""


@dataclass(frozen=True)
class Row:
    """The printable columns of one event (all text; see :func:`text_of`)."""

    stream: str
    seq: int
    received_at: str
    time: str
    actor: str
    action: str
    resource: str
    outcome: str
    source_ip: str
    object_key: str

    def cells(self) -> list[str]:
        """The values in :data:`COLUMNS` order."""
        return [str(getattr(self, name)) for name in COLUMNS]


def text_of(value: object, *, subject: bool = False) -> str:
    """A field as one cell: a string as is; a subject object as its ``id`` when that is a
    string; absent as ``""``; anything else as compact JSON."""
    if value is None:
        return ""
    if subject and isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):  # pragma: no cover - parsed JSON encodes
        return repr(value)


def row_of(stream: str, seq: int, received_at: str, object_key: str, fields: dict[str, Any]) -> Row:
    """The row printed for one event."""
    return Row(
        stream,
        seq,
        received_at,
        text_of(fields.get("time")),
        text_of(fields.get("actor"), subject=True),
        text_of(fields.get("action")),
        text_of(fields.get("resource"), subject=True),
        text_of(fields.get("outcome")),
        text_of(fields.get("source_ip")),
        object_key,
    )
