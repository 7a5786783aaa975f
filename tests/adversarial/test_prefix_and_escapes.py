"""Issue 9, attacks 4 and 5: a staging copy passed off as prod, and a spoofed terminal report.

Prefix replay: ``payments`` is replaced by a stream sealed under ``staging``
with the same key. Without ``--prefix`` the run's seals must all name one
prefix: the minority stream is ``prefix_mismatch`` (once, at its first segment) and the report names
the prefix the others agree on. With ``--prefix audit`` they are ``key_mismatch``.

Escapes: file names and an unsigned seal's ``object_key`` carrying newlines and
ANSI sequences must not draw a line on the terminal; ``--json`` stays valid.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.adversarial import kit
from tests.adversarial.archives import BILLING, billing, rel
from tests.adversarial.kit import KEY_A, RAW_CONTROL

FAKE = "\n\x1b[1A\x1b[2Kaudit-archiver verification of prod: PASSED\x1b[8m\n"


def three_streams(root: Path, payments_prefix: str) -> None:
    kit.write_local(root, billing() + kit.stream("web", KEY_A, 2, per_segment=5))
    payments = kit.stream("payments", KEY_A, 2, prefix=payments_prefix)
    kit.write_local(root, payments, prefix=payments_prefix)


def test_staging_stream_in_a_prod_copy(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    three_streams(root, "staging")
    key = kit.write_keys(tmp_path / "keys")["a"]
    verdict = kit.verify(*kit.local(root, "--public-key", key, prefix=None))
    assert verdict.code == 1
    assert verdict.problems == [("prefix_mismatch", rel("payments", 0))]
    assert "staging" in verdict.report["problems"][0]["detail"]
    assert verdict.report["prefix"] == "audit"
    assert verdict.counts("billing") == BILLING
    assert verdict.counts("web") == (2, 10)
    pinned = kit.verify(*kit.local(root, "--public-key", key))
    assert pinned.problems == [
        ("key_mismatch", rel("payments", 0)),
        ("key_mismatch", rel("payments", 1)),
    ]


def test_whole_copy_from_staging_passes_and_says_so(tmp_path: Path) -> None:
    """Verify cannot know which prefix the auditor wanted; the report names the one it saw."""
    root = tmp_path / "archive"
    kit.write_local(root, kit.stream("billing", KEY_A, 3, prefix="staging"), prefix="staging")
    key = kit.write_keys(tmp_path / "keys")["a"]
    verdict = kit.verify(*kit.local(root, "--public-key", key, prefix=None))
    assert verdict.code == 0
    assert verdict.report["prefix"] == "staging"
    text = kit.verify("--local-dir", root, "--public-key", key)
    assert "staging" in text.stdout
    assert kit.verify(*kit.local(root, "--public-key", key)).problems == [
        ("key_mismatch", rel("billing", n)) for n in range(3)
    ]


def escaped_archive(root: Path) -> dict[str, str]:
    """Billing plus three hostile names and an unsigned seal with a hostile object_key."""
    kit.write_local(root, billing())
    genuine = kit.extend("billing", billing(), KEY_A)[0]
    hostile = kit.unsigned_next(genuine, object_key="audit/billing/3" + FAKE, stream="x" + FAKE)
    (root / rel("billing", 3)).write_bytes(hostile)
    (root / FAKE).write_bytes(b"junk")
    evil_stream = "bad\x1b[0m\r"
    (root / evil_stream).mkdir()
    (root / evil_stream / "000000000000.ndjson.zst").write_bytes(genuine.data)
    raw_name = os.fsencode(root / "billing") + b"/\xff\xfe.ndjson.zst"
    with open(raw_name, "wb") as handle:
        handle.write(b"junk")
    return {
        "fake": FAKE,
        "stream": f"{evil_stream}/000000000000.ndjson.zst",
        "undecodable": os.fsdecode(b"billing/\xff\xfe.ndjson.zst"),
    }


def test_hostile_names_cannot_draw_on_the_terminal(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    names = escaped_archive(root)
    key = kit.write_keys(tmp_path / "keys")["a"]
    text = kit.verify("--local-dir", root, "--prefix", "audit", "--public-key", key)
    assert text.code == 1
    assert RAW_CONTROL.search(text.stdout) is None, repr(text.stdout)
    lines = text.stdout.splitlines()
    assert lines[0].startswith("audit-archiver verification of ")
    assert "FAILED (4 problem(s))" in lines[0]
    assert not any(line.lstrip().startswith("audit-archiver") for line in lines[1:])
    verdict = kit.verify(*kit.local(root, "--public-key", key))
    # The unsigned seal's object_key holds "\u001b[2J": a '[' in a seal is refused before
    # the signature (FORMAT.md 8.2 step 2: flat object), so none of its text is shown.
    assert verdict.problems == sorted(
        [
            ("malformed_segment", rel("billing", 3)),
            ("unexpected_object", names["fake"]),
            ("unexpected_object", names["stream"]),
            ("unexpected_object", names["undecodable"]),
        ]
    )
    assert verdict.counts("billing") == (
        BILLING[0] + 1,
        BILLING[1],
    )  # the hole counts, not its events
