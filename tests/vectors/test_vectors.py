"""The committed vectors pin format v1 and the verdict for each tampered archive.

Each verdict is stated by hand in ``generate.py``; here the real CLI must reach it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path

import pytest
import zstandard
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.adversarial import kit
from tests.vectors.generate import CASES, HERE, generate


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_regenerating_gives_the_committed_bytes(tmp_path: Path) -> None:
    generate(tmp_path)
    assert _files(tmp_path / "cases") == _files(HERE / "cases")
    assert (tmp_path / "public.pem").read_bytes() == (HERE / "public.pem").read_bytes()


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_case_gets_its_expected_verdict(case: str) -> None:
    """The real CLI, run with the case's own arguments, reaches the verdict stated by hand."""
    folder = HERE / "cases" / case
    expected = json.loads((folder / "expected.json").read_text())
    assert expected == CASES[case].expected()
    verdict = kit.verify(*expected["verify"], "--json", cwd=folder)
    report = verdict.report
    found = {
        "ok": report["ok"],
        "streams": report["streams"],
        "segments": report["segments"],
        "events": report["events"],
        "problems": [list(p) for p in verdict.problems],
        "verify": expected["verify"],
    }
    assert found == expected
    assert verdict.code == (0 if expected["ok"] else 1)
    assert expected["ok"] == (case == "valid")


def test_valid_segment_checks_out_by_hand() -> None:
    """Recompute the first segment's facts with nothing but hashlib, zstandard and Ed25519."""
    facts = json.loads((HERE / "cases" / "valid" / "facts.json").read_text())
    data = (HERE / "cases" / "valid" / "archive" / "app-1" / "000000000000.ndjson.zst").read_bytes()
    assert data[:4] == bytes.fromhex("5a2a4d18")
    size = int.from_bytes(data[4:8], "little")
    seal_bytes, signature_line, tail = data[8 : 8 + size].split(b"\n")
    assert tail == b""
    body = data[8 + size :]
    assert hashlib.sha256(body).hexdigest() == facts["body_hash"]
    assert hashlib.sha256(seal_bytes).hexdigest() == facts["seal_hash"]
    seal = json.loads(seal_bytes)
    assert seal["body_hash"] == facts["body_hash"]
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body)).read()
    lines = raw.split(b"\n")[:-1]
    assert [hashlib.sha256(b"\x00" + x).hexdigest() for x in lines] == facts["leaf_hashes"]
    leaves = [bytes.fromhex(h) for h in facts["leaf_hashes"]]
    node = lambda a, b: hashlib.sha256(b"\x01" + a + b).digest()  # noqa: E731
    root = node(node(leaves[0], leaves[1]), node(leaves[2], leaves[3]))
    assert root.hex() == seal["merkle_root"] == facts["merkle_root"]
    private = ed25519.Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex(facts["signing_key_seed_hex"])
    )
    signature = base64.b64decode(json.loads(signature_line)["signature"])
    private.public_key().verify(signature, b"audit-archiver seal v1\n" + seal_bytes)
    assert lines[0].decode() == facts["first_line"]
