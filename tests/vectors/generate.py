"""Regenerate the test vectors: ``.venv/bin/python -m tests.vectors.generate``.

Every file under ``tests/vectors/cases`` is a deterministic function of this
script: the signing key is Ed25519 with the 32-byte seed 00 01 02 ... 1f, the
events and archiver timestamps are fixed (see ``tests/helpers.py``). The
committed bytes pin format v1; ``test_vectors.py`` regenerates them and fails
on any difference.

Each case folder holds an archive laid out like a synced prefix (``audit``) and
``expected.json``: the verdict an implementation of ``docs/FORMAT.md`` must
reach, with every problem as ``[kind, key]``.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from audit_archiver.core.merkle import leaf_hash
from tests.helpers import (
    OTHER_SEED,
    body_lines,
    build_stream,
    fixed_signer,
    forge,
    kinds,
    verify_dir,
)

HERE = Path(__file__).parent


def _valid(root: Path) -> None:
    build_stream(root, "app-1", segments=3, per_segment=4)
    build_stream(root, "app-2", segments=2, per_segment=3, compression="gzip", empty_segments=(1,))


def _seg(root: Path, n: int) -> Path:
    return root / "app-1" / f"{n:012d}.ndjson.zst"


def _flip_body_byte(root: Path) -> None:
    data = bytearray(_seg(root, 1).read_bytes())
    data[-3] ^= 0x40
    _seg(root, 1).write_bytes(bytes(data))


def _drop_middle(root: Path) -> None:
    _seg(root, 1).unlink()


def _swap(root: Path) -> None:
    one, two = _seg(root, 1).read_bytes(), _seg(root, 2).read_bytes()
    _seg(root, 1).write_bytes(two)
    _seg(root, 2).write_bytes(one)


def _resign_other_key(root: Path) -> None:
    original = build_stream(None, "app-1")[1]
    _seg(root, 1).write_bytes(forge(original, fixed_signer(OTHER_SEED)))


def _splice(root: Path) -> None:
    foreign = build_stream(None, "app-9")[1]
    _seg(root, 1).write_bytes(foreign.data)


def _truncate(root: Path) -> None:
    _seg(root, 2).write_bytes(_seg(root, 2).read_bytes()[:-40])


def _drop_event(root: Path) -> None:
    last = build_stream(None, "app-1")[2]
    lines = body_lines(last)
    del lines[1]
    _seg(root, 2).write_bytes(
        forge(last, fixed_signer(), raw_body=b"".join(x + b"\n" for x in lines))
    )


CASES: dict[str, Callable[[Path], None]] = {
    "valid": lambda root: None,
    "flipped-body-byte": _flip_body_byte,
    "dropped-segment": _drop_middle,
    "reordered-segments": _swap,
    "resigned-other-key": _resign_other_key,
    "spliced-stream": _splice,
    "truncated-segment": _truncate,
    "event-removed-and-resigned": _drop_event,
}


def generate(out: Path) -> None:
    """Write every case under ``out/cases`` (replacing what is there)."""
    cases = out / "cases"
    shutil.rmtree(cases, ignore_errors=True)
    for name, tamper in CASES.items():
        root = cases / name / "archive"
        _valid(root)
        tamper(root)
        report = verify_dir(root)
        expected = {
            "ok": report.ok,
            "streams": len(report.streams),
            "segments": report.segments,
            "events": report.events,
            "problems": [list(pair) for pair in kinds(report)],
        }
        (cases / name / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    first = build_stream(None, "app-1")[0]
    facts = {
        "signing_key_seed_hex": bytes(range(32)).hex(),
        "key_id": fixed_signer().key_id,
        "segment": first.key,
        "seal_hash": first.seal_hash,
        "body_hash": first.seal.body_hash,
        "merkle_root": first.seal.merkle_root,
        "leaf_hashes": [leaf_hash(line).hex() for line in body_lines(first)],
        "first_line": body_lines(first)[0].decode(),
    }
    (cases / "valid" / "facts.json").write_text(json.dumps(facts, indent=1) + "\n")
    (out / "public.pem").write_bytes(fixed_signer().public_pem())


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
