"""/v1/events: an untyped time or address is kept as sent (the typed checks stay memoized)."""

from __future__ import annotations

import pytest

from audit_archiver.core.event import is_typed_ip, is_typed_time, validate_event

VALID = {"actor": "alice", "action": "read", "resource": "doc/1"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("time", "yesterday"),
        ("time", "2026-11-23T10:00:00"),
        ("time", 1700000000),
        ("source_ip", "10.0.0.300"),
        ("source_ip", "AWS Internal"),
        ("source_ip", None),
    ],
)
def test_untyped_values_are_kept(field: str, value: object) -> None:
    assert validate_event({**VALID, field: value}) == {**VALID, field: value}


def test_typed_checks_answer_the_same_every_time() -> None:
    for _ in range(3):
        assert is_typed_time("2026-11-23T10:00:00.123+01:00")
        assert not is_typed_time("2026-02-30T10:00:00Z")
        assert is_typed_ip("2001:db8::1")
        assert not is_typed_ip("10.0.0.256")
    assert not is_typed_time("2026-11-23T10:00:00Z" + " " * 100)
    assert not is_typed_ip(5)
