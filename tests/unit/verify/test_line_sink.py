"""``check_segment(on_line=...)``: every line of an authenticated segment, with its leaf.

The expected leaves come from the RFC 6962 definition (SHA-256 of 0x00 and the
line), computed here, not from the checker.
"""

from __future__ import annotations

import hashlib
import io

from audit_archiver.core.merkle import root_from_leaf_hashes
from audit_archiver.verify.segment_check import Limits, check_segment
from tests.unit.verify.segment_helpers import KEY, OBJECT_KEY, STREAM, event_lines, policy, segment


def _collect(data: bytes, limits: Limits | None = None) -> tuple[list, object]:
    seen: list[tuple[int, bytes | None, bytes]] = []
    result = check_segment(
        KEY,
        io.BytesIO(data),
        policy(),
        stream_id=STREAM,
        segment_seq=0,
        expected_object_key=OBJECT_KEY,
        limits=limits,
        on_line=lambda index, line, leaf: seen.append((index, line, leaf)),
    )
    return seen, result


def test_every_line_reaches_the_sink_with_its_leaf_hash() -> None:
    lines = event_lines(5)
    seen, result = _collect(segment(lines).data)
    assert result.problems == ()  # type: ignore[attr-defined]
    assert [index for index, _, _ in seen] == [0, 1, 2, 3, 4]
    assert [line for _, line, _ in seen] == lines
    leaves = [hashlib.sha256(b"\x00" + line).digest() for line in lines]
    assert [leaf for _, _, leaf in seen] == leaves
    assert root_from_leaf_hashes(leaves).hex() == result.seal.merkle_root  # type: ignore[attr-defined]


def test_a_line_longer_than_the_limit_reaches_the_sink_as_none() -> None:
    lines = event_lines(3)
    limit = max(len(line) for line in lines) - 1
    seen, result = _collect(segment(lines).data, Limits(max_line_bytes=limit))
    assert result.problems == ()  # type: ignore[attr-defined]  (not deep: no finding)
    assert all(line is None for _, line, _ in seen)
    assert len(seen) == 3


def test_an_unauthenticated_segment_reaches_no_sink() -> None:
    data = bytearray(segment(event_lines(2)).data)
    data[20] ^= 1  # inside the seal bytes
    seen, result = _collect(bytes(data))
    assert seen == []
    assert result.problems  # type: ignore[attr-defined]
