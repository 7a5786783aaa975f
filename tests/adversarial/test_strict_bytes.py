"""Issue 9, attack 6: signed but malformed content.

Non-canonical seals and signature lines, a wrong ``body_size`` and zstd without
its content checksum are built, signed with the real key, as the test vectors
(``tests/vectors/cases/<form>``): here the real CLI must reach each vector's
hand-stated verdict. Event lines that only ``--deep`` parses (a second
``"seq"``, a non-JSON tail, invalid UTF-8) are signed the same way: plain
verify passes them (it only hashes), ``--deep`` reports ``event_invalid``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit_archiver.core.segment import build_segment
from tests.adversarial import kit
from tests.adversarial.archives import BILLING, billing, rel
from tests.adversarial.kit import KEY_A
from tests.vectors.generate import HERE as VECTORS
from tests.vectors.generate import STRICT_FORMS

PUBLIC = VECTORS / "public.pem"


@pytest.mark.parametrize("form", STRICT_FORMS)
def test_each_non_canonical_form_signed_with_the_real_key(form: str) -> None:
    case = VECTORS / "cases" / form
    expected = json.loads((case / "expected.json").read_text())
    verdict = kit.verify(*kit.local(case / "archive", "--public-key", PUBLIC))
    assert verdict.code == 1
    assert [list(p) for p in verdict.problems] == expected["problems"]
    assert (verdict.report["segments"], verdict.report["events"]) == (
        expected["segments"],
        expected["events"],
    )


def _lines(first: int, count: int) -> list[bytes]:
    """Billing's genuine event lines from seq ``first``."""
    from audit_archiver.core.event import seal_event
    from tests.helpers import sample_event, tick

    return [seal_event(sample_event(first + i), first + i, tick(first + i)) for i in range(count)]


def _tamper_second_line(kind: str, line: bytes) -> bytes:
    header_end = line.index(b'Z",') + 3
    header = line[:header_end]
    if kind == "second-seq":
        return line[:-1] + b',"seq":999}'
    if kind == "non-json-tail":
        return header + b"not json at all}"
    assert kind == "invalid-utf8"
    return header + b'"actor":"\xff\xfe"}'


@pytest.mark.parametrize("kind", ["second-seq", "non-json-tail", "invalid-utf8"])
def test_malformed_event_line_is_caught_with_deep_only(tmp_path: Path, kind: str) -> None:
    first_two = billing()[:2]
    lines = _lines(8, 4)
    lines[1] = _tamper_second_line(kind, lines[1])
    last = build_segment(
        prefix="audit",
        stream="billing",
        segment_seq=2,
        first_seq=8,
        lines=lines,
        prev_seal_hash=first_two[-1].seal_hash,
        sealed_at=billing()[2].seal.sealed_at,
        signer=KEY_A,
    )
    root = tmp_path / "archive"
    kit.write_local(root, [*first_two, last])
    key = kit.write_keys(tmp_path / "keys")["a"]
    plain = kit.verify(*kit.local(root, "--public-key", key))
    assert plain.code == 0, plain.report["problems"]
    assert plain.counts("billing") == BILLING
    deep = kit.verify(*kit.local(root, "--public-key", key, "--deep"))
    assert deep.code == 1
    assert deep.problems == [("event_invalid", rel("billing", 2))]
    assert "line 2" in deep.report["problems"][0]["detail"]
