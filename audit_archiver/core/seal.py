"""The seal: the signed statement that commits a segment to its content and chain.

A seal is one canonical JSON object (see ``docs/FORMAT.md``). Its SHA-256 over
the stored bytes is the *seal hash*; each seal holds the previous segment's
seal hash (``prev_seal_hash``), and segment 0 of a stream holds
:data:`GENESIS_HASH`. The signature covers :data:`SIGNING_CONTEXT` followed by
the seal bytes, so a signature over a seal can never be mistaken for a
signature over anything else. The chain runs over seal hashes, not signatures,
so re-signing a seal (ECDSA is randomized) cannot fork the chain.

Invariants checked by :func:`parse_seal`: exactly the v1 fields, with their
types; ``last_seq = first_seq + event_count - 1`` and both ``*_received_at``
set when ``event_count > 0``; all three null when the segment is empty.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from audit_archiver.core.encoding import canonical_json, is_archiver_timestamp
from audit_archiver.core.layout import EXTENSIONS
from audit_archiver.errors import MalformedSegmentError

__all__ = [
    "FORMAT_V1",
    "GENESIS_HASH",
    "SIGNING_CONTEXT",
    "Seal",
    "parse_seal",
    "seal_hash",
    "signing_message",
]

FORMAT_V1 = "audit-archiver/seal/v1"
GENESIS_HASH = "0" * 64
SIGNING_CONTEXT = b"audit-archiver seal v1\n"
_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class Seal:
    """The fields of a v1 seal. See ``docs/FORMAT.md`` for each one's meaning."""

    stream: str
    segment_seq: int
    first_seq: int
    last_seq: int | None
    event_count: int
    first_received_at: str | None
    last_received_at: str | None
    merkle_root: str
    prev_seal_hash: str
    body_hash: str
    body_size: int
    compression: str
    object_key: str
    key_id: str
    signature_algorithm: str
    sealed_at: str
    retention_days: int | None
    format: str = FORMAT_V1

    def to_bytes(self) -> bytes:
        """Encode the seal canonically: the exact bytes that are signed and stored."""
        return canonical_json(asdict(self))

    @property
    def next_seq(self) -> int:
        """The event seq the next segment of the stream must start at."""
        return self.first_seq + self.event_count


def signing_message(seal_bytes: bytes) -> bytes:
    """Return the bytes a signer signs for a seal: context string + seal bytes."""
    return SIGNING_CONTEXT + seal_bytes


def seal_hash(seal_bytes: bytes) -> str:
    """Return the chain hash of a seal: hex SHA-256 of its stored bytes."""
    return hashlib.sha256(seal_bytes).hexdigest()


_INT_FIELDS = ("segment_seq", "first_seq", "event_count", "body_size")
_HEX_FIELDS = ("merkle_root", "prev_seal_hash", "body_hash", "key_id")
_STR_FIELDS = ("stream", "object_key", "signature_algorithm", "format")
_FIELDS = frozenset(Seal.__dataclass_fields__)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"duplicate field {name!r}")
        result[name] = value
    return result


def _check_fields(fields: dict[str, Any]) -> None:
    names = set(fields)
    if names != _FIELDS:
        missing = sorted(_FIELDS - names)
        extra = sorted(names - _FIELDS)
        raise ValueError(f"seal fields differ from v1 (missing {missing}, unexpected {extra})")
    if fields["format"] != FORMAT_V1:
        raise ValueError(f"unsupported seal format {fields['format']!r}")
    for name in _INT_FIELDS:
        if not _is_count(fields[name]):
            raise ValueError(f"{name} must be a non-negative integer")
    for name in _HEX_FIELDS:
        if not isinstance(fields[name], str) or not _HEX64.match(fields[name]):
            raise ValueError(f"{name} must be 64 lowercase hex digits")
    for name in _STR_FIELDS:
        if not isinstance(fields[name], str) or not fields[name]:
            raise ValueError(f"{name} must be a non-empty string")
    if fields["compression"] not in EXTENSIONS:
        raise ValueError(f"unknown compression {fields['compression']!r}")
    if not is_archiver_timestamp(fields["sealed_at"]):
        raise ValueError("sealed_at must be an archiver timestamp")
    retention = fields["retention_days"]
    if retention is not None and not (_is_count(retention) and retention > 0):
        raise ValueError("retention_days must be a positive integer or null")
    _check_event_range(fields)


def _check_event_range(fields: dict[str, Any]) -> None:
    count, first, last = fields["event_count"], fields["first_seq"], fields["last_seq"]
    times = (fields["first_received_at"], fields["last_received_at"])
    if count == 0:
        if last is not None or times != (None, None):
            raise ValueError("an empty segment has null last_seq and received_at bounds")
        return
    if not _is_count(last) or last != first + count - 1:
        raise ValueError("last_seq must equal first_seq + event_count - 1")
    if not all(is_archiver_timestamp(t) for t in times):
        raise ValueError("first/last_received_at must be archiver timestamps")


def parse_seal(seal_bytes: bytes, *, key: str | None = None) -> Seal:
    """Parse and structurally validate stored seal bytes.

    Raises:
        MalformedSegmentError: not UTF-8 JSON, duplicate or unknown fields,
            missing fields, wrong types or inconsistent event range.
    """
    try:
        fields = json.loads(seal_bytes.decode("utf-8"), object_pairs_hook=_reject_duplicates)
        if not isinstance(fields, dict):
            raise ValueError("seal is not a JSON object")
        _check_fields(fields)
    except (UnicodeDecodeError, ValueError, TypeError) as e:
        raise MalformedSegmentError(f"invalid seal: {e}", key=key) from e
    return Seal(**fields)
