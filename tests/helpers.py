"""Builders shared by the tests: a fixed key, deterministic events and streams."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from audit_archiver.agent.sealer import StreamSealer
from audit_archiver.core.chain import ChainHead
from audit_archiver.core.encoding import format_timestamp
from audit_archiver.core.event import seal_event
from audit_archiver.core.segment import (
    SealedSegment,
    assemble_segment,
    compress_body,
    decompress_body,
    open_segment,
)
from audit_archiver.core.signing import Ed25519Signer, TrustedKey, load_trusted_key
from audit_archiver.core.trust import TrustPolicy
from audit_archiver.storage.localdir import LocalDirectoryStore
from audit_archiver.verify.report import Report
from audit_archiver.verify.verifier import Verifier, VerifyOptions

FIXED_SEED = bytes(range(32))
OTHER_SEED = bytes(range(32, 64))
BASE_TIME = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def fixed_signer(seed: bytes = FIXED_SEED) -> Ed25519Signer:
    """A signer with a fixed Ed25519 key (signatures are deterministic)."""
    return Ed25519Signer(ed25519.Ed25519PrivateKey.from_private_bytes(seed))


def trusted_keys(*signers: Ed25519Signer) -> dict[str, TrustedKey]:
    """Trusted-key map for the given signers."""
    keys = [load_trusted_key(s.public_pem()) for s in signers]
    return {k.key_id: k for k in keys}


def sample_event(n: int) -> dict[str, Any]:
    """A deterministic, valid producer event."""
    return {
        "actor": f"user-{n % 5}",
        "action": ["read", "update", "delete"][n % 3],
        "resource": {"id": f"doc/{n}", "type": "document"},
        "time": "2026-01-02T03:04:05Z",
        "outcome": "success",
        "details": {"n": n, "note": "é ✓"},
    }


def tick(n: int) -> str:
    """The n-th deterministic archiver timestamp (one millisecond apart)."""
    return format_timestamp(BASE_TIME + timedelta(milliseconds=n))


def build_stream(
    root: Path | None,
    stream: str,
    *,
    segments: int = 3,
    per_segment: int = 4,
    prefix: str = "audit",
    signer: Ed25519Signer | None = None,
    compression: str = "zstd",
    empty_segments: tuple[int, ...] = (),
) -> list[SealedSegment]:
    """Seal a deterministic stream; write it under ``root`` as a synced prefix."""
    sealer = StreamSealer(
        prefix=prefix,
        stream=stream,
        signer=signer or fixed_signer(),
        head=ChainHead(),
        compression=compression,
    )
    built = []
    for index in range(segments):
        count = 0 if index in empty_segments else per_segment
        first = sealer.head.next_seq
        lines = [
            seal_event(sample_event(first + i), first + i, tick(first + i)) for i in range(count)
        ]
        built.append(sealer.seal(lines, tick(first + count + 1000 * index)))
    if root is not None:
        store = LocalDirectoryStore(root)
        for segment in built:
            relative = segment.key[len(prefix) + 1 :] if prefix else segment.key
            store.put_new(relative, segment.data, retain_until=None)
    return built


def trust_policy(*signers: Ed25519Signer) -> TrustPolicy:
    """A policy trusting each signer's key for every stream (``--public-key`` mode)."""
    keys = trusted_keys(*signers)
    return TrustPolicy.every_stream((key, f"test key {n}") for n, key in enumerate(keys.values()))


def verify_dir(root: Path, *signers: Ed25519Signer, prefix: str | None = "audit") -> Report:
    """Verify a folder with the given trusted signers (default: the fixed key)."""
    options = VerifyOptions(seal_prefix=prefix, workers=2)
    policy = trust_policy(*(signers or (fixed_signer(),)))
    return Verifier(LocalDirectoryStore(root), policy, options, source=str(root)).run()


def kinds(report: Report) -> list[tuple[str, str]]:
    """Sorted (kind, key) pairs of a report's problems."""
    return sorted((p.kind, p.key) for p in report.problems)


def forge(
    segment: SealedSegment,
    signer: Ed25519Signer,
    *,
    raw_body: bytes | None = None,
    **seal_changes: Any,
) -> bytes:
    """Re-sign a segment after changing its seal and/or its body (an attacker with a key)."""
    seal = segment.seal
    if raw_body is None:
        body = open_segment(segment.data).body
    else:
        body = compress_body(raw_body, seal.compression)
        seal_changes.setdefault("body_hash", hashlib.sha256(body).hexdigest())
        seal_changes.setdefault("body_size", len(body))
    seal_changes.setdefault("key_id", signer.key_id)
    return assemble_segment(dataclasses.replace(seal, **seal_changes), body, signer).data


def body_lines(segment: SealedSegment) -> list[bytes]:
    """The event lines of a segment (no newlines)."""
    opened = open_segment(segment.data)
    return decompress_body(opened.body, opened.container).splitlines()


def wait_for(
    condition: Callable[[], object], timeout: float = 20.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
