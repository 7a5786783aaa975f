"""Issue 9, attack 2: one object written without a key must not stop verification.

A bucket writer (PutObject on the prefix, no signing key) puts an object at
billing's next key, locked in COMPLIANCE so it can never be removed. Its seal
names the real key id, but its signature is junk, so no field after the key id
may be trusted: the verdict is one problem on that object, the report is
printed, and web is still verified with its own counts.

Expected kinds, from the contract's authentication order: a seal that is a
flat ASCII object gets ``signature_invalid`` (its dates and numbers are never
parsed); a seal that is not (nested, non-ASCII) and a signature line that
cannot be read get ``malformed_segment``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial import kit
from tests.adversarial.archives import BILLING, WEB, billing, full, rel, services_bucket
from tests.adversarial.kit import KEY_A, RETAIN
from tests.s3server import s3_client

NESTING = 30_000


def _next() -> Any:
    """The genuine billing segment 3 (the attacker cannot sign it, only copy its shape)."""
    return kit.extend("billing", billing(), KEY_A)[0]


def impossible_date() -> bytes:
    return kit.unsigned_next(_next(), sealed_at="2026-99-99T00:00:00.000000Z")


def arabic_indic_digits() -> bytes:
    digits = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
    return kit.unsigned_next(_next(), sealed_at="2026-01-02T03:04:09.000000Z".translate(digits))


def year_9999_with_retention() -> bytes:
    return kit.unsigned_next(_next(), sealed_at="9999-12-31T23:59:59.999999Z", retention_days=36500)


def retention_10_to_the_9() -> bytes:
    return kit.unsigned_next(_next(), retention_days=10**9)


def counts_beyond_64_bits() -> bytes:
    return kit.unsigned_next(_next(), first_seq=2**80, event_count=2**70, body_size=2**65)


def nested_seal() -> bytes:
    return kit.raw_segment(b"[" * NESTING, b"")


def nested_signature_line() -> bytes:
    return kit.raw_segment(_next().seal_bytes, b"", sig_line=b"[" * NESTING)


PAYLOADS = {
    "impossible-date": (impossible_date, "signature_invalid"),
    "arabic-indic-digits": (arabic_indic_digits, "malformed_segment"),
    "year-9999-with-retention": (year_9999_with_retention, "signature_invalid"),
    "retention-10-to-the-9": (retention_10_to_the_9, "signature_invalid"),
    "counts-beyond-64-bits": (counts_beyond_64_bits, "signature_invalid"),
    "nested-seal": (nested_seal, "malformed_segment"),
    "nested-signature-line": (nested_signature_line, "malformed_segment"),
}


def _text_report_names(verdict: kit.Verdict, kind: str, key: str) -> None:
    assert verdict.code == 1
    assert verdict.stdout.splitlines()[0].endswith("FAILED (1 problem(s))")
    assert f"[{kind}] {key}" in verdict.stdout
    assert "stream web: 2 segment(s), 10 event(s)" in verdict.stdout


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_in_a_folder(tmp_path: Path, payload: str) -> None:
    build, kind = PAYLOADS[payload]
    root = tmp_path / "archive"
    kit.write_local(root, billing() + kit.stream("web", KEY_A, 2, per_segment=5))
    (root / rel("billing", 3)).write_bytes(build())
    key = kit.write_keys(tmp_path / "keys")["a"]
    verdict = kit.verify(*kit.local(root, "--public-key", key))
    assert verdict.code == 1
    assert verdict.problems == [(kind, rel("billing", 3))]
    assert verdict.counts("web") == WEB
    assert verdict.summary("billing")["events"] == BILLING[1]
    assert verdict.summary("billing")["head_segment_seq"] == 2
    text = kit.verify("--local-dir", root, "--prefix", "audit", "--public-key", key)
    _text_report_names(text, kind, rel("billing", 3))


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_in_a_bucket_locked_for_years(moto_endpoint: str, tmp_path: Path, payload: str) -> None:
    build, kind = PAYLOADS[payload]
    name = services_bucket(moto_endpoint)
    s3_client(moto_endpoint).put_object(
        Bucket=name,
        Key=full("billing", 3),
        Body=build(),
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=RETAIN,
        ChecksumAlgorithm="SHA256",
    )
    keys = kit.write_keys(tmp_path / "keys")
    verdict = kit.verify(*kit.bucket(moto_endpoint, name, *kit.keys_args(keys["a"], keys["b"])))
    assert verdict.code == 1
    assert verdict.problems == [(kind, full("billing", 3))]
    assert verdict.counts("web") == WEB
    assert verdict.summary("billing")["events"] == BILLING[1]


def _nest(root: Path, depth: int) -> Path:
    """``root/d/d/.../d`` (``depth`` folders), made one by one (no recursion)."""
    path = root
    for _ in range(depth):
        path = path / "d"
        path.mkdir()
    return path


def _unnest(root: Path, depth: int) -> None:
    """Remove what :func:`_nest` made, deepest first (pytest's cleanup recurses)."""
    for level in range(depth, 0, -1):
        deepest = root.joinpath(*["d"] * level)
        for child in deepest.iterdir():
            child.unlink()
        deepest.rmdir()


@pytest.mark.parametrize("with_file", [False, True], ids=["empty", "file-at-the-bottom"])
def test_deeply_nested_folders(tmp_path: Path, with_file: bool) -> None:
    depth = 1_500
    root = tmp_path / "archive"
    kit.write_local(root, billing())
    bottom = _nest(root, depth)
    if with_file:
        (bottom / "x").write_bytes(b"junk")
    key = kit.write_keys(tmp_path / "keys")["a"]
    try:
        verdict = kit.verify(*kit.local(root, "--public-key", key))
    finally:
        _unnest(root, depth)
    # A synced prefix holds <stream>/<file>: a folder inside a stream folder ("d/d/") is
    # reported once and never entered, whatever lies below it (FORMAT.md 8.4).
    assert verdict.problems == [("unexpected_object", "d/d/")]
    assert verdict.code == 1
    assert verdict.counts("billing") == BILLING


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    """A link in the copy, to a segment outside it or to a folder loop, is never read.

    Whether a link is skipped or reported is the storage part's choice; that the
    linked segment is not counted as billing's segment 3 is not.
    """
    root = tmp_path / "archive"
    kit.write_local(root, billing())
    outside = tmp_path / "outside.zst"
    outside.write_bytes(kit.extend("billing", billing(), KEY_A)[0].data)
    os.symlink(outside, root / rel("billing", 3))
    os.symlink(root, root / "loop")
    key = kit.write_keys(tmp_path / "keys")["a"]
    verdict = kit.verify(*kit.local(root, "--public-key", key))
    assert verdict.code in (0, 1)
    assert verdict.counts("billing") == BILLING
    assert {kind for kind, _ in verdict.problems} <= {"unexpected_object"}
