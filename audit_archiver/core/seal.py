"""The seal: the signed statement that commits a segment to its content and chain.

A seal is one canonical JSON object (see ``docs/FORMAT.md``). Its SHA-256 over
the stored bytes is the *seal hash*; each seal holds the previous segment's
seal hash (``prev_seal_hash``), and segment 0 of a stream holds
:data:`GENESIS_HASH`. The signature covers :data:`SIGNING_CONTEXT` followed by
the seal bytes, so a signature over a seal can never be mistaken for a
signature over anything else. The chain runs over seal hashes, not signatures,
so re-signing a seal (ECDSA is randomized) cannot fork the chain.

Invariants checked by :func:`parse_seal`: a flat JSON object (no array, no
nested object: so parsing cannot recurse) of exactly the v1 fields, with their
types; integers in ``0 .. 2**63 - 1``; timestamps real calendar dates;
``retention_days`` at most :data:`MAX_RETENTION_DAYS`; ``last_seq = first_seq +
event_count - 1`` and both ``*_received_at`` set when ``event_count > 0``, all
three null when the segment is empty; ``object_key`` follows the layout and
names the seal's own stream, segment number and compression. A seal that
breaks one of them contradicts itself or v1: ``malformed_segment``.

Whether the bytes are *canonical* is a separate question (:func:`is_canonical`):
a parsed seal whose re-encoding differs from the stored bytes is
``not_canonical``, because one seal must have one byte form.

Before any of this a verifier needs the key that signed the seal:
:func:`seal_key_id` takes ``key_id`` from the stored bytes by an exact byte
pattern, without parsing, so nothing of an unauthenticated seal is parsed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from audit_archiver.core.encoding import (
    canonical_json,
    is_archiver_timestamp,
    refuse_constant,
    unique_fields,
)
from audit_archiver.core.layout import EXTENSIONS, parse_segment_key
from audit_archiver.core.signing import TrustedKey
from audit_archiver.errors import MalformedSegmentError

__all__ = [
    "FORMAT_V1",
    "GENESIS_HASH",
    "MAX_INTEGER",
    "MAX_RETENTION_DAYS",
    "SIGNING_CONTEXT",
    "Seal",
    "SealRejectedError",
    "authenticate_seal",
    "is_canonical",
    "parse_seal",
    "seal_hash",
    "seal_key_id",
    "signing_message",
]

FORMAT_V1 = "audit-archiver/seal/v1"
GENESIS_HASH = "0" * 64
SIGNING_CONTEXT = b"audit-archiver seal v1\n"
_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")
MAX_INTEGER = 2**63 - 1
"""The largest integer a seal field may hold (a signed 64-bit integer)."""
MAX_RETENTION_DAYS = 36_500
"""The longest retention a seal may record: S3 Object Lock's maximum, 100 years."""
# key_id as the canonical encoder writes it, JSON whitespace tolerated around
# ":" so that a seal which is merely not canonical is still authenticated and
# reported as such. Anchored on "{" or "," so it cannot start inside a string.
_KEY_ID = re.compile(rb'[{,][ \t\r]*"key_id"[ \t\r]*:[ \t\r]*"([0-9a-f]{64})"(?=[ \t\r]*[,}])')


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


def seal_key_id(seal_bytes: bytes, *, key: str | None = None) -> str:
    """Take ``key_id`` from stored seal bytes without parsing them.

    The bytes must look like a flat v1 seal: ASCII, one JSON object with no
    nested object or array, and exactly one ``"key_id":"<64 hex>"`` member.
    Only the signature check may trust the result.

    Raises:
        MalformedSegmentError: the bytes cannot be a v1 seal.
    """
    _check_flat(seal_bytes, key)
    found = _KEY_ID.findall(seal_bytes)
    if len(found) != 1:
        raise MalformedSegmentError(
            "invalid seal: no single key_id member of 64 lowercase hex digits", key=key
        )
    return bytes(found[0]).decode("ascii")


def _check_flat(seal_bytes: bytes, key: str | None) -> None:
    if not seal_bytes.isascii():
        raise MalformedSegmentError("invalid seal: not ASCII", key=key)
    text = seal_bytes.strip(b" \t\r")
    if not (text.startswith(b"{") and text.endswith(b"}")):
        raise MalformedSegmentError("invalid seal: not a JSON object", key=key)
    if b"[" in seal_bytes or seal_bytes.count(b"{") != 1:
        raise MalformedSegmentError(
            "invalid seal: not a flat object (nested object or array)", key=key
        )


class SealRejectedError(MalformedSegmentError):
    """A seal failed authentication; ``kind`` is the verify problem kind it amounts to
    (``malformed_segment``, ``unknown_key``, ``signature_invalid`` or ``not_canonical``)."""

    def __init__(self, kind: str, message: str, *, key: str | None, found: str | None = None):
        super().__init__(message, key=key, found=found)
        self.kind = kind


def authenticate_seal(
    seal_bytes: bytes,
    signature: bytes,
    key_for: Callable[[str], TrustedKey | None],
    *,
    signature_canonical: bool = True,
    key: str | None = None,
) -> tuple[Seal, TrustedKey]:
    """Authenticate stored seal bytes, then parse them: the one rule the writer's
    read-back and the verifier share.

    The key id is taken from the bytes without parsing (:func:`seal_key_id`) and
    looked up with ``key_for``; the signature is checked before any other field
    is read; only then is the seal parsed, its ``key_id`` and algorithm matched
    against the verifying key, and its canonical form checked.

    Raises:
        SealRejectedError: with the problem kind, in that order: not a flat
            seal (``malformed_segment``), an untrusted key (``unknown_key``), a
            bad signature or algorithm (``signature_invalid``), a malformed or
            self-contradicting seal (``malformed_segment``), a non-canonical seal
            or signature line (``not_canonical``).
    """
    try:
        key_id = seal_key_id(seal_bytes, key=key)
    except MalformedSegmentError as e:
        raise SealRejectedError("malformed_segment", str(e), key=key) from e
    trusted = key_for(key_id)
    if trusted is None:
        raise SealRejectedError(
            "unknown_key", "seal is signed by a key that is not trusted", key=key, found=key_id
        )
    if not trusted.verify(signature, signing_message(seal_bytes)):
        raise SealRejectedError("signature_invalid", "signature does not verify", key=key)
    try:
        seal = parse_seal(seal_bytes, key=key)
    except MalformedSegmentError as e:
        raise SealRejectedError("malformed_segment", str(e), key=key) from e
    if seal.key_id != key_id:
        raise SealRejectedError(
            "malformed_segment", "invalid seal: key_id is not the signing key", key=key
        )
    if seal.signature_algorithm != trusted.algorithm:
        raise SealRejectedError(
            "signature_invalid",
            f"seal names signature algorithm {seal.signature_algorithm!r}, its key is"
            f" {trusted.algorithm!r}",
            key=key,
            found=seal.signature_algorithm,
        )
    if not (signature_canonical and is_canonical(seal, seal_bytes)):
        what = "seal" if signature_canonical else "signature line"
        raise SealRejectedError("not_canonical", f"the {what} is not in canonical form", key=key)
    return seal, trusted


def is_canonical(seal: Seal, seal_bytes: bytes) -> bool:
    """Whether ``seal_bytes`` is the canonical encoding of ``seal`` (its only valid form)."""
    try:
        return seal.to_bytes() == seal_bytes
    except TypeError:
        return False


_INT_FIELDS = ("segment_seq", "first_seq", "event_count", "body_size")
_HEX_FIELDS = ("merkle_root", "prev_seal_hash", "body_hash", "key_id")
_STR_FIELDS = ("stream", "object_key", "signature_algorithm", "format")
_FIELDS = frozenset(Seal.__dataclass_fields__)


def _is_count(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_INTEGER


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
    if retention is not None and retention > MAX_RETENTION_DAYS:
        raise ValueError(f"retention_days is over {MAX_RETENTION_DAYS} (100 years)")
    _check_event_range(fields)
    _check_object_key(fields)


def _check_object_key(fields: dict[str, Any]) -> None:
    parts = parse_segment_key(fields["object_key"])
    if parts is None:
        raise ValueError("object_key does not follow the segment key layout")
    if (parts.stream, parts.segment_seq, parts.compression) != (
        fields["stream"],
        fields["segment_seq"],
        fields["compression"],
    ):
        raise ValueError("object_key names another stream, segment number or compression")


def _check_event_range(fields: dict[str, Any]) -> None:
    count, first, last = fields["event_count"], fields["first_seq"], fields["last_seq"]
    times = (fields["first_received_at"], fields["last_received_at"])
    if count == 0:
        if last is not None or times != (None, None):
            raise ValueError("an empty segment has null last_seq and received_at bounds")
        return
    if type(last) is not int or last != first + count - 1:
        raise ValueError("last_seq must equal first_seq + event_count - 1")
    if not all(is_archiver_timestamp(t) for t in times):
        raise ValueError("first/last_received_at must be archiver timestamps")


def parse_seal(seal_bytes: bytes, *, key: str | None = None) -> Seal:
    """Parse and structurally validate stored seal bytes (not their canonical form).

    Raises:
        MalformedSegmentError: not a flat ASCII JSON object, duplicate or
            unknown fields, missing fields, wrong types or ranges, impossible
            dates, or a seal that contradicts itself (see the module docstring).
    """
    _check_flat(seal_bytes, key)
    try:
        fields = json.loads(
            seal_bytes.decode("ascii"),
            object_pairs_hook=unique_fields,
            parse_constant=refuse_constant,
        )
        if not isinstance(fields, dict):
            raise ValueError("seal is not a JSON object")
        _check_fields(fields)
    except (UnicodeDecodeError, ValueError, TypeError) as e:
        raise MalformedSegmentError(f"invalid seal: {e}", key=key) from e
    return Seal(**fields)
