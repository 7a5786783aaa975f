"""Event limits: nesting depth and size, checked without recursion; and totality:
no bytes make the body encoder raise anything but EventValidationError."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_archiver.core.event import (
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    encode_request_body,
    parse_event_line,
)
from audit_archiver.errors import EventValidationError

VALID = b'{"actor":"a","action":"b","resource":"c"}'


def nested(levels: int) -> bytes:
    """A valid event whose ``d`` field makes the event ``levels`` deep (the event is 1)."""
    inner = levels - 1
    return b'{"actor":"a","action":"b","resource":"c","d":' + b"[" * inner + b"]" * inner + b"}"


def refusal(body: bytes) -> EventValidationError:
    with pytest.raises(EventValidationError) as info:
        encode_request_body(body)
    return info.value


@pytest.mark.parametrize(
    ("body", "line", "kind"),
    [
        (b"[" * 100_000, 1, "invalid"),  # an array whose first element is not an object
        (b'{"actor":' * 5_000, 1, "too_deep"),
        (VALID + b"\n" + b'{"actor":' * 5_000, 2, "too_deep"),
        (b"[" + VALID + b"," + b'{"actor":' * 5_000 + b"]", 2, "too_deep"),
        (b'[{"a":' + b"[" * 100_000 + b"]", 1, "too_deep"),
        (VALID + b"\n" + nested(MAX_DEPTH + 1), 2, "too_deep"),
        (b"[" + VALID + b"," + nested(MAX_DEPTH + 1) + b"]", 2, "too_deep"),
        # the standard library's recursive parser (19+ digit numbers) is never reached
        (b'{"n":12345678901234567890,"d":' + b"[" * 50_000 + b"]" * 50_000 + b"}", 1, "too_deep"),
        (b'{"actor":"' + b"x" * MAX_EVENT_BYTES + b'"}', 1, "too_large"),
        (b'[{"actor":"' + b"x" * MAX_EVENT_BYTES + b'"}]', 1, "too_large"),
        (b"[[]," * 1000 + b"[]]", 1, "invalid"),
        (b"[{}," * 1000 + b"{}]", 1, "invalid"),
        (b"[" + VALID + b", 5]", 2, "invalid"),
        (b"[" + VALID + b",]", 1, "not_json"),
        (b"[" + VALID + b"] x", 1, "not_json"),
        (b"[" + VALID + VALID + b"]", 1, "not_json"),
        (b'[{"actor":"a}"', 1, "not_json"),
        (b"\xff" + VALID, 1, "not_json"),
    ],
)
def test_hostile_bodies_are_refused_naming_the_line(body: bytes, line: int, kind: str) -> None:
    error = refusal(body)
    assert (error.line, error.kind) == (line, kind), str(error)


def test_nesting_up_to_the_limit_is_accepted_as_ndjson_and_as_array() -> None:
    deepest = nested(MAX_DEPTH)
    expected = json.dumps(json.loads(deepest), sort_keys=True, separators=(",", ":")).encode()
    assert encode_request_body(deepest).data == expected + b"\n"
    assert encode_request_body(b"[" + deepest + b"]").data == expected + b"\n"
    with pytest.raises(EventValidationError, match=f"deeper than {MAX_DEPTH} levels"):
        parse_event_line(nested(MAX_DEPTH + 1))


def test_brackets_inside_strings_do_not_count() -> None:
    tricky = {"actor": "a", "action": "b", "resource": "c", "s": "[{" * 500 + '"\\' + "}]"}
    raw = json.dumps(tricky).encode()
    expected = json.dumps(tricky, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert encode_request_body(raw).data == expected.encode() + b"\n"
    assert encode_request_body(b"[" + raw + b" , " + raw + b"]").event_count == 2


def test_an_event_of_exactly_the_size_limit_is_accepted() -> None:
    head = b'{"action":"b","actor":"a","resource":"c","s":"'
    event = head + b"x" * (MAX_EVENT_BYTES - len(head) - 2) + b'"}'
    assert len(event) == MAX_EVENT_BYTES
    assert encode_request_body(event).data == event + b"\n"
    assert refusal(event[:-2] + b'x"}').kind == "too_large"


def _mutations() -> st.SearchStrategy[bytes]:
    valid_bodies = st.sampled_from(
        [
            VALID,
            b"[" + VALID + b"," + VALID + b"]",
            VALID + b"\n" + nested(MAX_DEPTH) + b"\n",
            b'[{"actor":{"id":"x"},"action":"b","resource":"c","n":123456789012345678901}]',
            b'{"actor":"a","action":"b","resource":"c","f":1e308,"s":"\\ud800"}',
        ]
    )
    junk = st.sampled_from(
        [b"[", b"]", b"{", b"}", b'"', b"\\", b",", b":", b"\n", b"\xff", b"9" * 25]
    )

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        body = bytearray(draw(valid_bodies))
        for _ in range(draw(st.integers(0, 4))):
            at = draw(st.integers(0, len(body)))
            choice = draw(st.integers(0, 2))
            if choice == 0:
                body[at:at] = draw(junk) * draw(st.integers(1, 300))
            elif choice == 1:
                del body[at : at + draw(st.integers(1, 8))]
            else:
                body[at:at] = draw(st.binary(max_size=8))
        return bytes(body)

    return mutate()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), _mutations()))
def test_any_bytes_give_events_or_a_validation_error(body: bytes) -> None:
    try:
        encoded = encode_request_body(body)
    except EventValidationError as e:
        number = e.line
        assert number is None or number >= 1
        return
    lines = encoded.data.split(b"\n")
    assert lines[-1] == b"" and len(lines) - 1 == encoded.event_count >= 1
    for line in lines[:-1]:
        assert isinstance(json.loads(line), dict)
