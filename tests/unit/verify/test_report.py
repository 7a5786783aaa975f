"""The text report cannot be made to lie on a terminal; the JSON report stays JSON."""

from __future__ import annotations

import json

from audit_archiver.verify.chain import KeyRange, StreamSummary
from audit_archiver.verify.problems import Problem
from audit_archiver.verify.report import Report, render_text, safe_text

FAKE = "x\n\x1b[2J\x1b[Haudit-archiver verification of s3://b/audit: PASSED\r\u202egnp.exe"


def test_safe_text_escapes_every_character_a_terminal_acts_on() -> None:
    assert safe_text("audit/app-1/000000000001.ndjson.zst") == "audit/app-1/000000000001.ndjson.zst"
    assert safe_text("a\nb\x1bc\x7f\u0085\u202e\u2028\udcff") == (
        "a\\x0ab\\x1bc\\x7f\\x85\\u202e\\u2028\\udcff"
    )
    # a backslash is doubled, so an attacker cannot write a fake escape that reads as ours
    assert safe_text("\\x0a") == "\\\\x0a"
    assert safe_text("naïve café ✓") == "naïve café ✓"


def test_a_hostile_key_cannot_draw_a_fake_verdict() -> None:
    report = Report("s3://b/audit", prefix="audit")
    report.problems.append(Problem("unexpected_object", FAKE, FAKE, stream=None, found=FAKE))
    text = render_text(report)
    assert text.startswith("audit-archiver verification of s3://b/audit: FAILED (1 problem(s))\n")
    assert not any(ch in text for ch in "\x1b\r\u202e")
    assert text.count("\n") == len(text.splitlines())
    assert (
        sum("PASSED" in line and line.startswith("audit-archiver") for line in text.splitlines())
        == 0
    )
    decoded = json.loads(json.dumps(report.to_json()))
    assert decoded["problems"][0]["key"] == FAKE


def test_the_text_report_names_the_prefix_and_the_keys_of_each_stream() -> None:
    report = Report("copy", prefix="audit/prod")
    report.streams.append(
        StreamSummary(
            "web-1",
            3,
            9,
            None,
            None,
            None,
            2,
            "ab" * 32,
            [KeyRange("k" * 64, 0, 1), KeyRange("n" * 64, 2, 2)],
        )
    )
    text = render_text(report)
    assert "prefix named by the seals: audit/prod" in text
    assert f"signed by key {'k' * 64}: segments 0..1" in text
    assert f"signed by key {'n' * 64}: segments 2..2" in text
    summary = report.to_json()["stream_summaries"][0]
    assert summary["keys"] == [
        {"key_id": "k" * 64, "first_segment": 0, "last_segment": 1},
        {"key_id": "n" * 64, "first_segment": 2, "last_segment": 2},
    ]
    assert report.to_json()["prefix"] == "audit/prod"
