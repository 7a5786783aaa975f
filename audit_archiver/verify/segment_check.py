"""Checks of one stored segment on its own: framing, seal, signature, body, key.

:func:`check_segment` is pure CPU work on bytes (no I/O), so the verifier can
run it in worker processes. It never raises for bad data: every finding
becomes a :class:`~audit_archiver.verify.problems.Problem` in the result.
Chain checks across segments live in :mod:`audit_archiver.verify.chain`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from audit_archiver.core.line import parse_line_header
from audit_archiver.core.merkle import root_of_lines
from audit_archiver.core.seal import Seal, parse_seal, signing_message
from audit_archiver.core.segment import DEFAULT_MAX_BODY_BYTES, decompress_body, open_segment
from audit_archiver.core.signing import TrustedKey
from audit_archiver.errors import MalformedSegmentError
from audit_archiver.verify.problems import Notice, Problem

__all__ = ["SegmentResult", "check_segment"]


@dataclass(frozen=True)
class SegmentResult:
    """What one segment's own checks found. Holds no event data."""

    key: str
    stream: str
    segment_seq: int
    object_bytes: int
    seal: Seal | None = None
    seal_hash: str | None = None
    events: int = 0
    problems: tuple[Problem, ...] = field(default=())
    version_id: str | None = None
    notices: tuple[Notice, ...] = field(default=())


@dataclass
class _Findings:
    key: str
    stream: str
    problems: list[Problem] = field(default_factory=list)

    def add(self, kind: str, detail: str, expected: object = None, found: object = None) -> None:
        self.problems.append(
            Problem(
                kind,
                self.key,
                detail,
                stream=self.stream,
                expected=None if expected is None else str(expected),
                found=None if found is None else str(found),
            )
        )


def _check_signature(
    seal: Seal,
    seal_bytes: bytes,
    signature: bytes,
    trusted: Mapping[str, TrustedKey],
    out: _Findings,
) -> None:
    key = trusted.get(seal.key_id)
    if key is None:
        out.add("unknown_key", "seal is signed by a key that is not trusted", found=seal.key_id)
        return
    if key.algorithm != seal.signature_algorithm:
        out.add(
            "signature_invalid",
            "seal names another signature algorithm than its key's",
            expected=key.algorithm,
            found=seal.signature_algorithm,
        )
        return
    if not key.verify(signature, signing_message(seal_bytes)):
        out.add("signature_invalid", "signature does not verify", expected=seal.key_id)


def _check_lines(seal: Seal, raw: bytes, out: _Findings) -> int:
    if raw and not raw.endswith(b"\n"):
        out.add("malformed_segment", "body does not end with a newline")
    lines = raw.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    root = root_of_lines(lines).hex()
    if root != seal.merkle_root:
        out.add(
            "merkle_mismatch",
            "Merkle root of the event lines differs from the seal",
            expected=seal.merkle_root,
            found=root,
        )
    first_time = last_time = None
    bad_lines: list[int] = []
    for index, line in enumerate(lines):
        header = parse_line_header(line)
        if header is None:
            bad_lines.append(index + 1)
            continue
        seq, received_at = header
        if seq != seal.first_seq + index:
            out.add(
                "sequence_gap",
                f"line {index + 1} has seq {seq}",
                expected=seal.first_seq + index,
                found=seq,
            )
        if last_time is not None and received_at < last_time:
            out.add(
                "time_regression",
                f"line {index + 1} was received before the line above it",
                expected=f">= {last_time}",
                found=received_at,
            )
        first_time = first_time or received_at
        last_time = received_at
    if bad_lines:
        out.add(
            "event_invalid",
            f"{len(bad_lines)} line(s) lack the seq/received_at header, first at line {bad_lines[0]}",
        )
    _check_bounds(seal, len(lines), first_time, last_time, out)
    return len(lines)


def _check_bounds(
    seal: Seal, count: int, first_time: str | None, last_time: str | None, out: _Findings
) -> None:
    if count != seal.event_count:
        out.add(
            "seal_mismatch",
            "event count differs from the seal",
            expected=seal.event_count,
            found=count,
        )
    if (first_time, last_time) != (seal.first_received_at, seal.last_received_at):
        out.add(
            "seal_mismatch",
            "received_at bounds differ from the seal",
            expected=f"{seal.first_received_at}..{seal.last_received_at}",
            found=f"{first_time}..{last_time}",
        )
    if seal.last_received_at is not None and seal.sealed_at < seal.last_received_at:
        out.add(
            "time_regression",
            "sealed_at is before the last event was received",
            expected=f">= {seal.last_received_at}",
            found=seal.sealed_at,
        )


def _check_key(
    seal: Seal, key: str, expected_object_key: str | None, out: _Findings, segment_seq: int
) -> None:
    if expected_object_key is not None:
        matches = seal.object_key == expected_object_key
    else:
        matches = seal.object_key == key or seal.object_key.endswith("/" + key)
    if not matches:
        out.add(
            "key_mismatch",
            "object is stored under another key than its seal names",
            expected=expected_object_key or key,
            found=seal.object_key,
        )
    if seal.stream != out.stream:
        out.add(
            "key_mismatch", "seal belongs to another stream", expected=out.stream, found=seal.stream
        )
    if seal.segment_seq != segment_seq:
        out.add(
            "key_mismatch",
            "seal names another segment number",
            expected=segment_seq,
            found=seal.segment_seq,
        )


def check_segment(
    key: str,
    data: bytes,
    trusted: Mapping[str, TrustedKey],
    *,
    stream: str,
    segment_seq: int,
    expected_object_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> SegmentResult:
    """Check one segment's bytes and return every problem found.

    ``key`` is where the object was found (bucket key, or path relative to a
    downloaded folder); ``stream`` and ``segment_seq`` are parsed from it.
    With ``expected_object_key`` the seal must name exactly that key; without
    it (a folder whose prefix is unknown) the seal's key must end with ``key``.
    """
    out = _Findings(key, stream)
    try:
        opened = open_segment(data)
        seal = parse_seal(opened.seal_bytes, key=key)
    except MalformedSegmentError as e:
        out.add("malformed_segment", str(e))
        return SegmentResult(key, stream, segment_seq, len(data), problems=tuple(out.problems))
    _check_signature(seal, opened.seal_bytes, opened.signature, trusted, out)
    _check_key(seal, key, expected_object_key, out, segment_seq)
    body_hash = hashlib.sha256(opened.body).hexdigest()
    if body_hash != seal.body_hash:
        out.add(
            "body_hash_mismatch",
            "compressed body differs from the sealed one",
            expected=seal.body_hash,
            found=body_hash,
        )
    if opened.container != seal.compression:
        out.add(
            "malformed_segment",
            "container does not match the seal's compression",
            expected=seal.compression,
            found=opened.container,
        )
    events = 0
    try:
        raw = decompress_body(opened.body, opened.container, max_bytes=max_body_bytes)
    except MalformedSegmentError as e:
        out.add("malformed_segment", str(e))
    else:
        events = _check_lines(seal, raw, out)
    return SegmentResult(
        key, stream, segment_seq, len(data), seal, opened.seal_hash, events, tuple(out.problems)
    )
