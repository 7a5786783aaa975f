"""Filters: each field, globs, subjects as objects, both time modes (expected values by hand)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from audit_archiver.query.filters import EventFilter, row_of, text_of

T0 = "2026-03-01T10:00:00.000000Z"
SINCE = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
UNTIL = datetime(2026, 3, 1, 11, 0, tzinfo=UTC)


def event(**fields: Any) -> dict[str, Any]:
    return {"actor": "alice", "action": "read", "resource": "s3://hr/salaries.csv", **fields}


@pytest.mark.parametrize(
    ("filt", "fields", "expected"),
    [
        (EventFilter(actor="alice"), event(), True),
        (EventFilter(actor="bob"), event(), False),
        (EventFilter(actor="al*"), event(), True),
        (EventFilter(actor="ALICE"), event(), False),  # case-sensitive
        (EventFilter(actor="alice"), event(actor={"id": "alice", "type": "user"}), True),
        (EventFilter(actor="a?ice"), event(actor={"id": "alice"}), True),
        (EventFilter(actor="alice"), event(actor={"name": "alice"}), False),  # no id
        (EventFilter(actor="alice"), event(actor=["alice"]), False),
        (EventFilter(resource="s3://hr/*"), event(), True),
        (EventFilter(resource="s3://hr/*"), event(resource="s3://finance/x"), False),
        (EventFilter(resource="doc[1]"), event(resource="doc[1]"), True),  # literal equal
        (EventFilter(resource="doc[12]"), event(resource="doc1"), True),  # a glob class
        (EventFilter(action="re*"), event(), True),
        (EventFilter(action="read"), event(action="readall"), False),
        (EventFilter(outcome="fail*"), event(outcome="failure"), True),
        (EventFilter(outcome="success"), event(), False),  # absent
        (EventFilter(outcome="1"), event(outcome=1), False),  # not a string
        (EventFilter(actor="alice", action="write"), event(), False),  # all must match
    ],
)
def test_field_filters(filt: EventFilter, fields: dict[str, Any], expected: bool) -> None:
    assert filt.matches(T0, fields) is expected


def test_received_at_window_is_since_inclusive_until_exclusive() -> None:
    filt = EventFilter(since=SINCE, until=UNTIL)
    assert filt.matches("2026-03-01T10:00:00.000000Z", event())
    assert filt.matches("2026-03-01T10:59:59.999999Z", event())
    assert not filt.matches("2026-03-01T11:00:00.000000Z", event())
    assert not filt.matches("2026-03-01T09:59:59.999999Z", event())
    assert filt.selects_by_received_at


def test_since_with_an_offset_is_compared_in_utc() -> None:
    filt = EventFilter(since=datetime.fromisoformat("2026-03-01T12:00:00+02:00"))
    assert filt.since_stamp == "2026-03-01T10:00:00.000000Z"


def test_claimed_time_uses_the_typed_time_field_only() -> None:
    filt = EventFilter(since=SINCE, until=UNTIL, by_claimed_time=True)
    outside = "2020-01-01T00:00:00.000000Z"  # received_at no longer matters
    assert filt.matches(outside, event(time="2026-03-01T12:30:00+02:00"))
    assert not filt.matches(T0, event(time="2026-03-01T11:00:00Z"))
    assert not filt.matches(T0, event())  # no time: never matches a time filter
    assert not filt.matches(T0, event(time="yesterday"))  # untyped
    assert not filt.matches(T0, event(time=1_772_359_200))
    assert not filt.selects_by_received_at


def test_claimed_time_without_a_window_matches_untimed_events() -> None:
    assert EventFilter(by_claimed_time=True, actor="alice").matches(T0, event())


def test_an_empty_or_naive_window_is_refused() -> None:
    with pytest.raises(ValueError, match="before"):
        EventFilter(since=UNTIL, until=SINCE)
    with pytest.raises(ValueError, match="time zone"):
        EventFilter(since=datetime(2026, 1, 1))


def test_cells_show_a_subject_id_and_other_values_as_json() -> None:
    assert text_of({"id": "u1", "type": "user"}, subject=True) == "u1"
    assert text_of({"id": 7}, subject=True) == '{"id":7}'
    assert text_of(None) == ""
    assert text_of([1, "a"]) == '[1,"a"]'
    row = row_of("s", 3, T0, "audit/s/000000000000.ndjson.zst", event(source_ip="10.0.0.1"))
    assert row.cells() == [
        "s",
        "3",
        T0,
        "",
        "alice",
        "read",
        "s3://hr/salaries.csv",
        "",
        "10.0.0.1",
        "audit/s/000000000000.ndjson.zst",
    ]
