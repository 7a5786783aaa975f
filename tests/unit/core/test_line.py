from __future__ import annotations

import pytest

from audit_archiver.core.event import encode_event, seal_event
from audit_archiver.core.line import EncodedEvents, EventRun, parse_line_header

VALID = {"actor": "alice", "action": "read", "resource": "doc/1"}


def _run(first: int, count: int, width: int = 1) -> EventRun:
    encoded = EncodedEvents.of(
        [encode_event({**VALID, "n": i, "pad": "x" * (width * i)}) for i in range(count)]
    )
    return EventRun(first, "2026-11-23T10:00:00.000000Z", encoded.event_count, encoded.data)


@pytest.mark.parametrize("first", [0, 7, 95, 999_999_990])
def test_event_run_sealed_lines_and_sizes(first: int) -> None:
    run = _run(first, 12)
    lines = run.sealed_lines()
    assert [parse_line_header(line) for line in lines] == [
        (first + i, run.received_at) for i in range(12)
    ]
    assert lines == [
        seal_event({**VALID, "n": i, "pad": "x" * i}, first + i, run.received_at) for i in range(12)
    ]
    assert run.sealed_size() == sum(len(line) + 1 for line in lines)
    assert run.line_sizes() == [len(line) + 1 for line in lines]
    assert run.next_seq == first + 12


def test_event_run_split_keeps_every_line() -> None:
    run = _run(5, 6)
    head, tail = run.split(2)
    assert (head.first_seq, head.event_count, tail.first_seq, tail.event_count) == (5, 2, 7, 4)
    assert head.sealed_lines() + tail.sealed_lines() == run.sealed_lines()
    for bad in (0, 6, 9):
        with pytest.raises(ValueError, match="cannot split"):
            run.split(bad)
    with pytest.raises(ValueError, match="count"):
        EventRun(0, run.received_at, 5, run.data).sealed_lines()
