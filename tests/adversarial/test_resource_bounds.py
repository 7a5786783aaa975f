"""Issue 9, attack 3: memory is bounded whatever the archive holds.

Each run's peak RSS is measured over the verify process tree (the CLI and its
worker processes, via ``RUSAGE_CHILDREN`` of a wrapper). The bound is the
issue's ~100 MB per process plus the interpreter (a clean small run peaks near
40 MB here). The longer variants run with ``AUDIT_ARCHIVER_LONG_TESTS=1``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from pathlib import Path

import pytest
import zstandard

from audit_archiver.core.merkle import root_from_leaf_hashes
from audit_archiver.core.segment import assemble_segment
from tests.adversarial import kit
from tests.adversarial.archives import BILLING, billing, full, rel, services_bucket
from tests.adversarial.kit import KEY_A

MIB = 1024 * 1024
PEAK_BOUND = 160 * MIB  # ~100 MB of work + the interpreter and its imports
LONG = os.environ.get("AUDIT_ARCHIVER_LONG_TESTS") == "1"


def bomb(lines: int, line: bytes = b"{}") -> bytes:
    """One zstd frame (content size declared, checksum) inflating to ``lines`` short lines."""
    out = io.BytesIO()
    size = lines * (len(line) + 1)
    compressor = zstandard.ZstdCompressor(level=3, write_checksum=True)
    with compressor.stream_writer(out, size=size, closefd=False) as writer:
        chunk = (line + b"\n") * (MIB // (len(line) + 1))
        left = lines
        while left:
            n = min(left, MIB // (len(line) + 1))
            writer.write(chunk if n * (len(line) + 1) == len(chunk) else (line + b"\n") * n)
            left -= n
    return out.getvalue()


def signed_with(body: bytes, **changes: object) -> bytes:
    """Billing's segment 3 re-sealed by the key holder around ``body`` (hash and size right)."""
    genuine = kit.extend("billing", billing(), KEY_A)[0]
    seal = dataclasses.replace(
        genuine.seal,
        body_hash=hashlib.sha256(body).hexdigest(),
        body_size=len(body),
        **changes,
    )
    return assemble_segment(seal, body, KEY_A).data


def run_measured(root: Path, tmp: Path, *options: str) -> kit.Verdict:
    key = kit.write_keys(tmp / "keys")["a"]
    verdict = kit.verify(*kit.local(root, "--public-key", key, *options), measure=True)
    assert verdict.peak_rss is not None
    assert verdict.peak_rss < PEAK_BOUND, f"peak RSS {verdict.peak_rss / MIB:.0f} MiB"
    return verdict


def test_unsigned_bomb_is_never_inflated(tmp_path: Path) -> None:
    """A few-KB object of 64 MiB of 3-byte lines, signature junk: rejected before inflating."""
    root = tmp_path / "archive"
    kit.write_local(root, billing())
    body = bomb(64 * MIB // 3 - 1)
    assert len(body) < 64 * 1024
    genuine = kit.extend("billing", billing(), KEY_A)[0]
    forged = kit.unsigned_next(
        genuine, body=body, body_hash=hashlib.sha256(body).hexdigest(), body_size=len(body)
    )
    (root / rel("billing", 3)).write_bytes(forged)
    verdict = run_measured(root, tmp_path)
    assert verdict.code == 1
    assert verdict.problems == [("signature_invalid", rel("billing", 3))]
    assert verdict.summary("billing")["events"] == BILLING[1]


def test_signed_bomb_over_the_body_bound(tmp_path: Path) -> None:
    """A key holder's frame declaring 256 MiB (bound: 64 MiB): refused from its header."""
    root = tmp_path / "archive"
    kit.write_local(root, billing())
    (root / rel("billing", 3)).write_bytes(signed_with(bomb(256 * MIB // 3)))
    verdict = run_measured(root, tmp_path)
    assert verdict.code == 1
    assert verdict.problems == [("malformed_segment", rel("billing", 3))]


@pytest.mark.skipif(not LONG, reason="set AUDIT_ARCHIVER_LONG_TESTS=1 (builds a 22M-leaf root)")
def test_signed_bomb_just_under_the_bound_is_streamed(tmp_path: Path) -> None:
    """64 MiB - 1 of 3-byte lines, correctly rooted and signed: checked line by line in bounded
    memory (the old verifier used ~34x the inflated size). The lines lack the header."""
    lines = (64 * MIB - 1) // 3
    leaf = hashlib.sha256(b"\x00{}").digest()
    root_hash = root_from_leaf_hashes(leaf for _ in range(lines)).hex()
    root = tmp_path / "archive"
    kit.write_local(root, billing())
    (root / rel("billing", 3)).write_bytes(signed_with(bomb(lines), merkle_root=root_hash))
    verdict = run_measured(root, tmp_path)
    assert verdict.problems == [
        ("event_invalid", rel("billing", 3)),
        ("seal_mismatch", rel("billing", 3)),
    ]


def test_two_gib_object_in_a_folder_is_not_read(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    kit.write_local(root, billing())
    with (root / rel("billing", 3)).open("wb") as handle:  # sparse: costs no disk
        handle.write(kit.extend("billing", billing(), KEY_A)[0].data)
        handle.truncate(2 * 1024 * MIB)
    verdict = run_measured(root, tmp_path)
    assert verdict.code == 1
    assert verdict.problems == [("object_too_large", rel("billing", 3))]
    assert verdict.summary("billing")["events"] == BILLING[1]


def test_oversized_object_in_a_bucket_is_not_read(moto_endpoint: str, tmp_path: Path) -> None:
    name = services_bucket(moto_endpoint)
    genuine = kit.extend("billing", billing(), KEY_A)[0]
    padded = dataclasses.replace(genuine, data=genuine.data + b"\0" * (3 * MIB))
    kit.upload(moto_endpoint, name, [padded])
    keys = kit.write_keys(tmp_path / "keys")
    args = kit.keys_args(keys["a"], keys["b"])
    verdict = kit.verify(
        *kit.bucket(moto_endpoint, name, *args, "--max-object-bytes", str(MIB)), measure=True
    )
    assert verdict.code == 1
    assert verdict.problems == [("object_too_large", full("billing", 3))]
    assert verdict.peak_rss is not None
    assert verdict.peak_rss < PEAK_BOUND
