"""Problem kinds: the stable codes of the verify report (public interface).

Each kind's meaning is the text of the table in ``docs/FORMAT.md`` section 9,
word for word: a test keeps the two equal, so the report's "meaning" lines and
the specification cannot drift apart.
A problem names the object key it concerns and says what was expected and
found where that is known, so the report is evidence, not a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["KINDS", "NOTICE_KINDS", "Notice", "Problem"]

# fmt: off
KINDS: dict[str, str] = {
    "malformed_segment": (
        "the object is not a well-formed v1 segment (truncated, garbage, bad or self-"
        "contradicting seal, zstd without content size or checksum, anything that could not be "
        "checked)"
    ),
    "unknown_key": "the seal is signed by a key that is not among the trusted public keys",
    "signature_invalid": "the seal's signature does not verify with the trusted key it names",
    "key_not_allowed": (
        "the seal verifies with a trusted key, but the trust policy does not allow that key for "
        "this stream, prefix or time"
    ),
    "key_changed": (
        "(with `--state`) a key signs a stream for the first time since the saved state, and no "
        "trust-file table names the stream for it"
    ),
    "not_canonical": (
        "the seal or signature line is not in canonical form (one segment, one byte form)"
    ),
    "body_hash_mismatch": "the compressed body's SHA-256 differs from the seal's `body_hash`",
    "body_size_mismatch": "the stored body's length differs from the seal's `body_size`",
    "merkle_mismatch": "the RFC 6962 root of the event lines differs from the seal's `merkle_root`",
    "seal_mismatch": (
        "the seal's event count, seq range or `received_at` bounds differ from the body"
    ),
    "event_invalid": (
        "an event line does not start with the `seq`/`received_at` header or does not end with "
        "`}` (with `--deep`: is not one canonical JSON object)"
    ),
    "key_mismatch": "the object's key, stream or segment number differs from what its seal names",
    "prefix_mismatch": (
        "(local folder without `--prefix`) a stream's seals name another prefix than the rest of "
        "the run"
    ),
    "chain_broken": "`prev_seal_hash` differs from the seal hash of the previous segment",
    "sequence_gap": "segments or event seq numbers are missing, repeated or out of order",
    "time_regression": "`received_at` or `sealed_at` goes backwards",
    "unexpected_object": "an object under the prefix is not a segment of the layout",
    "object_too_large": "an object is larger than the verifier reads (`--max-object-bytes`)",
    "duplicate_segment": "two objects claim the same stream and segment number",
    "stream_missing": "a stream that was asked for, or seen before, has no segments",
    "extra_version": (
        "a segment's key holds a later version; the original (oldest) version is what is verified"
    ),
    "delete_marker": "a delete marker hides a segment; the version under it is still verified",
    "checksum_mismatch": (
        "the bytes S3 returned differ from the checksum S3 stored for them (storage-level "
        "tampering or corruption)"
    ),
    "retention_missing": "a segment version has no Object Lock retention",
    "retention_governance": (
        "a segment version is locked in GOVERNANCE mode, which privileged users can bypass"
    ),
    "retention_too_short": (
        "a segment version is retained for less than the required days after `sealed_at`"
    ),
    "bucket_object_lock_disabled": "the bucket does not have Object Lock enabled",
    "bucket_versioning_disabled": "the bucket does not have versioning enabled",
    "bucket_default_retention": "the bucket's default retention is missing or not COMPLIANCE",
    "truncated": (
        "(with `--state`) a stream's newest segment is older than the head a previous run "
        "verified: its tail was removed"
    ),
    "history_rewritten": (
        "(with `--state`) the head a previous run verified, or a segment at or before it, is gone"
        " or no longer the same version"
    ),
    "stale_stream": (
        "(with `--max-age`) a stream's newest segment was sealed longer ago than allowed"
    ),
    "timestamp_invalid": (
        "a segment's RFC 3161 time-stamp token does not parse, is for another seal, or (with "
        "`--tsa-cert`) has a bad signature, a chain that does not reach `--tsa-cert`, or a "
        "`genTime` more than 5 minutes before `sealed_at`"
    ),
    "timestamp_missing": (
        "(with `--require-timestamps`) a segment carries no RFC 3161 time-stamp token"
    ),
}

NOTICE_KINDS: dict[str, str] = {
    "legal_hold": "a segment version is under legal hold (it cannot be deleted until released)",
    "not_timestamped": (
        "segments of a stream carry no time-stamp token (their sealed_at is the agent's claim)"
    ),
    "timestamp_not_checked": "time-stamp tokens were not checked (no --tsa-cert)",
}


@dataclass(frozen=True)
class Notice:
    """Information that is not a problem (for example a legal hold)."""

    kind: str
    key: str
    detail: str
# fmt: on


@dataclass(frozen=True)
class Problem:
    """One integrity problem, with its evidence."""

    kind: str
    key: str
    detail: str
    stream: str | None = None
    expected: str | None = None
    found: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown problem kind {self.kind!r}")

    def to_json(self) -> dict[str, Any]:
        """Return the problem as a JSON-ready dict (kind, key, detail, then evidence)."""
        out: dict[str, Any] = {"kind": self.kind, "key": self.key, "detail": self.detail}
        for name in ("stream", "expected", "found"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out
