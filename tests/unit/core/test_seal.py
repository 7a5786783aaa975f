from __future__ import annotations

import json

import pytest

from audit_archiver.core.seal import parse_seal
from audit_archiver.errors import MalformedSegmentError
from tests.helpers import build_stream


def _fields() -> dict[str, object]:
    return json.loads(build_stream(None, "s", segments=1)[0].seal_bytes)


def test_seal_bytes_are_canonical_and_parse_back() -> None:
    segment = build_stream(None, "s", segments=1)[0]
    assert parse_seal(segment.seal_bytes) == segment.seal
    assert segment.seal_bytes == segment.seal.to_bytes()
    assert list(json.loads(segment.seal_bytes)) == sorted(json.loads(segment.seal_bytes))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "audit-archiver/seal/v9"}, "unsupported seal format"),
        ({"extra": 1}, "unexpected"),
        ({"segment_seq": -1}, "segment_seq"),
        ({"segment_seq": True}, "segment_seq"),
        ({"merkle_root": "AB" * 32}, "merkle_root"),
        ({"compression": "lz4"}, "compression"),
        ({"sealed_at": "2026-01-01T00:00:00Z"}, "sealed_at"),
        ({"retention_days": 0}, "retention_days"),
        ({"last_seq": 99}, "last_seq"),
        ({"first_received_at": None}, "received_at"),
        ({"event_count": 0}, "empty segment"),
    ],
)
def test_parse_rejects_invalid_seals(change: dict[str, object], message: str) -> None:
    fields = {**_fields(), **change}
    with pytest.raises(MalformedSegmentError, match=message):
        parse_seal(json.dumps(fields).encode(), key="k")


def test_parse_rejects_missing_and_duplicate_fields() -> None:
    fields = _fields()
    del fields["body_hash"]
    with pytest.raises(MalformedSegmentError, match="missing"):
        parse_seal(json.dumps(fields).encode())
    doubled = build_stream(None, "s", segments=1)[0].seal_bytes.replace(
        b'{"body_hash"', b'{"body_hash":"x","body_hash"', 1
    )
    with pytest.raises(MalformedSegmentError, match="duplicate"):
        parse_seal(doubled)
    for raw in (b"\xff", b"[]", b"{"):
        with pytest.raises(MalformedSegmentError):
            parse_seal(raw)
