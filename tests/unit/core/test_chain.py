"""The shared chain rule: what a seal must carry to continue a head."""

from __future__ import annotations

import dataclasses

from audit_archiver.core.chain import ChainHead, link_faults
from audit_archiver.core.seal import GENESIS_HASH, Seal

T0, T1, T2 = (f"2026-01-02T03:04:0{n}.000000Z" for n in range(3))


def _seal(**changes: object) -> Seal:
    seal = Seal(
        stream="s",
        segment_seq=0,
        first_seq=0,
        last_seq=1,
        event_count=2,
        first_received_at=T1,
        last_received_at=T1,
        merkle_root="a" * 64,
        prev_seal_hash=GENESIS_HASH,
        body_hash="b" * 64,
        body_size=10,
        compression="zstd",
        object_key="s/000000000000.ndjson.zst",
        key_id="c" * 64,
        signature_algorithm="ed25519",
        sealed_at=T1,
        retention_days=None,
    )
    return dataclasses.replace(seal, **changes)  # type: ignore[arg-type]


def test_genesis_accepts_segment_zero_and_names_what_is_wrong_otherwise() -> None:
    assert link_faults(ChainHead(), _seal()) == []
    faults = link_faults(ChainHead(), _seal(prev_seal_hash="d" * 64, first_seq=5, last_seq=6))
    assert [(f.kind, f.detail) for f in faults] == [
        ("chain_broken", "segment 0 does not link to genesis"),
        ("sequence_gap", "stream does not start at event seq 0"),
    ]
    assert (faults[0].expected, faults[0].found) == (GENESIS_HASH, "d" * 64)


def test_after_a_heartbeat_the_received_at_floor_is_the_last_event() -> None:
    head = ChainHead().after(_seal(), "e" * 64)
    assert head == ChainHead(1, "e" * 64, 2, T1, T1)
    heartbeat = _seal(
        segment_seq=1,
        first_seq=2,
        last_seq=None,
        event_count=0,
        first_received_at=None,
        last_received_at=None,
        prev_seal_hash="e" * 64,
        sealed_at=T2,
    )
    assert link_faults(head, heartbeat) == []
    after_heartbeat = head.after(heartbeat, "f" * 64)
    assert after_heartbeat.last_received_at == T1
    assert after_heartbeat.last_sealed_at == T2
    late = _seal(
        segment_seq=2, first_seq=2, last_seq=3, prev_seal_hash="f" * 64, first_received_at=T0
    )
    assert [(f.kind, f.found) for f in link_faults(after_heartbeat, late)] == [
        ("time_regression", T0),
        ("time_regression", T1),
    ]


def test_a_later_link_names_the_segment_it_should_follow() -> None:
    head = ChainHead(4, "e" * 64, 40, T0, T0)
    faults = link_faults(head, _seal(segment_seq=4, first_seq=41, last_seq=42))
    assert [(f.kind, f.detail, f.expected) for f in faults] == [
        ("chain_broken", "does not link to segment 3", "e" * 64),
        ("sequence_gap", "event seq does not continue the previous segment", "40"),
    ]


def test_a_head_read_back_from_a_heartbeat_floors_received_at_at_its_seal() -> None:
    heartbeat = _seal(
        segment_seq=3,
        first_seq=8,
        last_seq=None,
        event_count=0,
        first_received_at=None,
        last_received_at=None,
        sealed_at=T2,
    )
    recovered = ChainHead().after(heartbeat, "e" * 64)
    assert recovered.last_received_at is None
    assert recovered.received_at_floor == T2
    assert ChainHead(1, "e" * 64, 2, T1, T0).received_at_floor == T1
    assert ChainHead().received_at_floor is None
