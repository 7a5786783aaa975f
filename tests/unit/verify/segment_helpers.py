"""Builders for segment-check attacks: real signatures over hostile bytes.

Self-contained (core only), so an attack can sign exactly the bytes it wants:
a seal that is not canonical, a body that lies, a frame no writer makes.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import struct
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from audit_archiver.core.event import seal_event
from audit_archiver.core.seal import GENESIS_HASH, Seal, signing_message
from audit_archiver.core.segment import SealedSegment, build_segment, open_segment
from audit_archiver.core.signing import Ed25519Signer, load_trusted_key
from audit_archiver.core.trust import KeyRule, TrustPolicy
from audit_archiver.verify.segment_check import Limits, SegmentResult, check_segment

FIXED_SEED = bytes(range(32))
OTHER_SEED = bytes(range(32, 64))
PREFIX = "audit"
STREAM = "s1"
KEY = "s1/000000000000.ndjson.zst"
OBJECT_KEY = f"{PREFIX}/{KEY}"
TIME = "2026-01-02T03:04:05.678901Z"
SEALED_AT = "2026-01-02T03:05:00.000000Z"


def signer(seed: bytes = FIXED_SEED) -> Ed25519Signer:
    """A signer with a fixed Ed25519 key."""
    return Ed25519Signer(ed25519.Ed25519PrivateKey.from_private_bytes(seed))


def policy(*signers: Ed25519Signer, streams: tuple[str, ...] | None = None) -> TrustPolicy:
    """A policy trusting ``signers`` (default: the fixed key) for ``streams`` (default: all)."""
    rules = tuple(
        KeyRule(load_trusted_key(s.public_pem()), streams=streams, origin=f"test key #{n}")
        for n, s in enumerate(signers or (signer(),), start=1)
    )
    return TrustPolicy(rules)


def event_lines(count: int, first: int = 0) -> list[bytes]:
    """``count`` valid sealed lines from seq ``first``."""
    return [
        seal_event({"actor": "u", "action": "read", "resource": {"id": f"d/{n}"}}, n, TIME)
        for n in range(first, first + count)
    ]


def segment(
    lines: list[bytes] | None = None, *, compression: str = "zstd", seed: bytes = FIXED_SEED
) -> SealedSegment:
    """Segment 0 of stream s1 under prefix ``audit``, as the agent writes it."""
    return build_segment(
        prefix=PREFIX,
        stream=STREAM,
        segment_seq=0,
        first_seq=0,
        lines=event_lines(4) if lines is None else lines,
        prev_seal_hash=GENESIS_HASH,
        sealed_at=SEALED_AT,
        signer=signer(seed),
        compression=compression,
    )


def signature_line(seal_bytes: bytes, seed: bytes = FIXED_SEED) -> bytes:
    """The canonical signature line over ``seal_bytes``."""
    signature = signer(seed).sign(signing_message(seal_bytes))
    return b'{"signature":"' + base64.b64encode(signature) + b'"}'


def frame(seal_bytes: bytes, sig_line: bytes, body: bytes, container: str = "zstd") -> bytes:
    """An object from exactly these seal, signature line and body bytes."""
    block = seal_bytes + b"\n" + sig_line + b"\n"
    if container == "zstd":
        return b"\x5a\x2a\x4d\x18" + struct.pack("<I", len(block)) + block + body
    extra = b"AS" + struct.pack("<H", len(block)) + block
    header = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff" + struct.pack("<H", len(extra))
    return header + extra + b"\x03\x00" + b"\x00" * 8 + body


def signed(seal_bytes: bytes, body: bytes, seed: bytes = FIXED_SEED) -> bytes:
    """An object whose seal bytes (any form) carry a valid signature."""
    return frame(seal_bytes, signature_line(seal_bytes, seed), body)


def reseal(base: SealedSegment, body: bytes | None = None, **changes: Any) -> bytes:
    """Re-sign ``base`` with a changed seal and/or stored (compressed) body."""
    stored = open_segment(base.data).body if body is None else body
    if body is not None:
        changes.setdefault("body_hash", hashlib.sha256(stored).hexdigest())
        changes.setdefault("body_size", len(stored))
    seal: Seal = dataclasses.replace(base.seal, **changes)
    return signed(seal.to_bytes(), stored)


def check(
    data: bytes,
    trust: TrustPolicy | None = None,
    *,
    deep: bool = False,
    limits: Limits | None = None,
    key: str = KEY,
) -> SegmentResult:
    """Check ``data`` as segment 0 of s1 found at ``key`` under prefix ``audit``."""
    return check_segment(
        key,
        io.BytesIO(data),
        trust or policy(),
        stream_id=STREAM,
        segment_seq=0,
        expected_object_key=f"{PREFIX}/{key}",
        limits=limits,
        deep=deep,
    )


def kinds(result: SegmentResult) -> list[str]:
    """The problem kinds of a result, sorted."""
    return sorted(p.kind for p in result.problems)
