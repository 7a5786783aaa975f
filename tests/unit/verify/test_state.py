from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit_archiver.errors import ConfigurationError
from audit_archiver.verify.state import StreamHead, load_state, save_state

HEAD = StreamHead(
    "audit/s/000000000002.ndjson.zst",
    "v3",
    2,
    "ab" * 32,
    12,
    None,
    "2026-01-02T03:04:05.000006Z",
    ("a1" * 32, "b2" * 32),
    "cd" * 32,
)


V1_FIELDS = {
    "key": "audit/s/000000000002.ndjson.zst",
    "version_id": "v3",
    "segment_seq": 2,
    "seal_hash": "ab" * 32,
    "next_seq": 12,
    "last_received_at": None,
    "sealed_at": "2026-01-02T03:04:05.000006Z",
}


def test_a_version_1_file_is_read_without_key_ids_or_digest(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "source": "x", "streams": {"s": V1_FIELDS}}))
    head = load_state(path, "x")["s"]
    assert (head.key_ids, head.history_digest) == ((), None)
    assert head.chain_head().next_segment_seq == 3


def test_state_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert load_state(path, "s3://b/audit") == {}
    save_state(path, "s3://b/audit", {"s": HEAD})
    assert load_state(path, "s3://b/audit") == {"s": HEAD}
    with pytest.raises(ConfigurationError, match="records 's3://b/audit'"):
        load_state(path, "s3://other/audit")


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '"text"',
        json.dumps({"version": 3, "source": "x", "streams": {}}),
        json.dumps({"version": 2, "source": "x", "streams": {"s": {**V1_FIELDS, "key_ids": "k"}}}),
        json.dumps({"version": 2, "source": "x", "streams": {"s": {**V1_FIELDS, "extra": 1}}}),
        json.dumps({"version": 2, "source": "x", "streams": {"s": {**V1_FIELDS, "next_seq": "1"}}}),
        "[" * 100_000,
        json.dumps(
            {"version": 2, "source": "x", "streams": {"s": {**V1_FIELDS, "sealed_at": "\n"}}}
        ),
        json.dumps(
            {"version": 2, "source": "x", "streams": {"s": {**V1_FIELDS, "seal_hash": "x"}}}
        ),
        json.dumps(
            {"version": 2, "source": "x", "streams": {"s": {**V1_FIELDS, "key_ids": ["k"]}}}
        ),
        json.dumps({"version": 1, "source": "x", "streams": []}),
        json.dumps({"version": 1, "source": "x", "streams": {"s": {"key": "k"}}}),
    ],
)
def test_malformed_state_is_a_configuration_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match="cannot read state file"):
        load_state(path, "x")
