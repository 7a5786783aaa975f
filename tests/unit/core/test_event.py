from __future__ import annotations

import json

import pytest

from audit_archiver.core.event import (
    encode_event_batch,
    encode_request_body,
    parse_event_line,
    seal_event,
    validate_event,
)
from audit_archiver.core.line import EncodedEvents, parse_line_header
from audit_archiver.errors import EventValidationError

VALID = {"actor": "alice", "action": "read", "resource": "doc/1"}


@pytest.mark.parametrize(
    "event",
    [
        VALID,
        {"actor": {"id": "alice", "type": "user"}, "action": "read", "resource": {"id": "x"}},
        {**VALID, "time": "2026-11-23T10:00:00Z", "outcome": "denied"},
        {**VALID, "time": "2026-11-23T10:00:00.123456789+02:00", "source_ip": "2001:db8::1"},
        {**VALID, "details": {"nested": [1, 2, {"k": None}]}, "extra": True},
    ],
)
def test_valid_events(event: dict[str, object]) -> None:
    assert validate_event(event) == event


@pytest.mark.parametrize(
    ("event", "field", "reason"),
    [
        ([1, 2], None, "must be a JSON object"),
        ({"action": "read", "resource": "r"}, "actor", "is required"),
        ({**VALID, "actor": ""}, "actor", "must not be empty"),
        ({**VALID, "action": "   "}, "action", "must not be empty"),
        ({**VALID, "resource": {"name": "x"}}, "resource", "non-empty string 'id'"),
        ({**VALID, "resource": {"id": ""}}, "resource", "non-empty string 'id'"),
        ({**VALID, "actor": 42}, "actor", "string or an object"),
        ({**VALID, "outcome": 1}, "outcome", "string"),
        ({**VALID, "details": "x"}, "details", "object"),
        ({**VALID, "seq": 5}, "seq", "reserved"),
        ({**VALID, "received_at": "x"}, "received_at", "reserved"),
    ],
)
def test_invalid_events_name_the_field(event: object, field: str | None, reason: str) -> None:
    with pytest.raises(EventValidationError) as info:
        validate_event(event)
    assert info.value.field == field
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "invalid UTF-8"),
        (b"{not json", "not JSON"),
        (b'{"actor":"a","action":"b","resource":"c","n":NaN}', "not JSON"),
        (b'"just a string"', "must be a JSON object"),
    ],
)
def test_parse_event_line_rejects_bad_bytes(raw: bytes, reason: str) -> None:
    with pytest.raises(EventValidationError, match=reason):
        parse_event_line(raw)


def test_line_number_is_reported() -> None:
    error = EventValidationError("is required", field="actor").at_line(7)
    assert str(error) == "line 7: field 'actor': is required"


def test_sealed_line_is_canonical_and_carries_archiver_fields() -> None:
    line = seal_event(
        {"resource": "r", "actor": "é", "action": "a"}, 3, "2026-01-01T00:00:00.000001Z"
    )
    expected = (
        '{"seq":3,"received_at":"2026-01-01T00:00:00.000001Z","action":"a","actor":"é",'
        '"resource":"r"}'
    )
    assert line == expected.encode()
    assert json.loads(line)["seq"] == 3
    assert parse_line_header(line) == (3, "2026-01-01T00:00:00.000001Z")


@pytest.mark.parametrize(
    ("seq", "when"), [(-1, "2026-01-01T00:00:00.000001Z"), (0, "2026-01-01T00:00:00Z")]
)
def test_seal_event_rejects_bad_archiver_fields(seq: int, when: str) -> None:
    with pytest.raises(ValueError, match=r"seq|received_at"):
        seal_event(VALID, seq, when)


@pytest.mark.parametrize(
    "line",
    [
        b'{"seq":01,"received_at":"2026-01-01T00:00:00.000001Z","a":1}',
        b'{"received_at":"2026-01-01T00:00:00.000001Z","seq":1,"a":1}',
        b'{"seq":1,"received_at":"2026-01-01T00:00:00Z","a":1}',
        b'{"seq":1,"received_at":"2026-01-01T00:00:00.000001Z","a":1',
        b'{"seq":-1,"received_at":"2026-01-01T00:00:00.000001Z","a":1}',
    ],
)
def test_line_header_is_strict(line: bytes) -> None:
    assert parse_line_header(line) is None


def test_big_integers_are_refused_not_rounded() -> None:
    body = (
        b'{"actor":"a","action":"b","resource":"c"}\n'
        b'{"actor":"a","action":"b","resource":"c","n":123456789012345678901234}'
    )
    with pytest.raises(EventValidationError, match="line 2: cannot be encoded"):
        encode_event_batch(body)
    assert encode_event_batch(b'[{"actor":"a","action":"b","resource":"c","n":1.5}]') == [
        b'{"action":"b","actor":"a","n":1.5,"resource":"c"}'
    ]


@pytest.mark.parametrize(
    "body",
    [
        b'{"actor":"a","action":"b","resource":"c","n":1e400}\n',
        b'[{"actor":"a","action":"b","resource":"c","n":-1e999}]',
    ],
)
def test_overflowing_floats_are_refused_not_nulled(body: bytes) -> None:
    with pytest.raises(EventValidationError, match="out of range"):
        encode_event_batch(body)


def test_fast_and_exact_parsers_agree() -> None:
    body = (
        b'{"actor":"a","action":"b","resource":"c","f":0.1,"e":"\\u00e9\\n","d":{"x":[1,2]}}\n'
        b'{"actor":"a","action":"b","resource":"c","big":18446744073709551615}\n'
    )
    fast = encode_event_batch(body)
    assert fast[1].endswith(b'"big":18446744073709551615,"resource":"c"}')
    assert (
        fast[0]
        == b'{"action":"b","actor":"a","d":{"x":[1,2]},"e":"\xc3\xa9\\n","f":0.1,"resource":"c"}'
    )


def test_request_body_is_encoded_in_one_piece() -> None:
    encoded = encode_request_body(b'{"actor":"a","action":"b","resource":"c"}\n\n')
    assert encoded == EncodedEvents(1, b'{"action":"b","actor":"a","resource":"c"}\n')
    assert EncodedEvents.of([]) == EncodedEvents(0, b"")


@pytest.mark.parametrize(
    "line",
    [
        b'{"actor":"a","action":"b","resource":"c","id":"1234567890123456789012"}',
        b'{"actor":"a","action":"b","resource":"c","id":"x1234567890123456789012345"}',
        b'{"actor":"a","action":"b","resource":"c","f":0.12345678901234567890123}',
    ],
)
def test_long_digit_runs_outside_integers_stay_exact(line: bytes) -> None:
    assert encode_event_batch(line) == [
        json.dumps(json.loads(line), sort_keys=True, separators=(",", ":")).encode()
    ]


@pytest.mark.parametrize(
    "number", [b"123456789012345678901234", b"-98765432109876543210", b" 99999999999999999999"]
)
def test_big_integers_are_found_wherever_they_sit(number: bytes) -> None:
    body = b'{"actor":"a","action":"b","resource":"c","d":{"x":[1,%s]}}' % number
    with pytest.raises(EventValidationError, match="cannot be encoded"):
        encode_event_batch(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "the body holds no event"),
        (b" \n\n ", "the body holds no event"),
        (b'[{"actor":"a","action":"b","resource":"c"},5]', "line 2: event must be a JSON object"),
        (b'[{"actor":"a","action":"b","resource":"c"}', "line 1: not a JSON array"),
        (b'{"actor":"a","action":"b","resource":"c"}\n\n{"actor":"a"}', "line 3: field 'action'"),
    ],
)
def test_bad_bodies_name_the_first_bad_event(body: bytes, message: str) -> None:
    with pytest.raises(EventValidationError, match=message):
        encode_event_batch(body)


def test_array_and_ndjson_bodies_encode_alike() -> None:
    events = [{"actor": "a", "action": "b", "resource": {"id": str(i)}} for i in range(3)]
    as_array = json.dumps(events).encode()
    as_ndjson = b"\n".join(json.dumps(e).encode() for e in events)
    assert (
        encode_event_batch(as_array)
        == encode_event_batch(as_ndjson)
        == [json.dumps(e, sort_keys=True, separators=(",", ":")).encode() for e in events]
    )
