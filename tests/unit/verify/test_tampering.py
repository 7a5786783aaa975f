"""Every problem kind, produced by a real tampered archive, with the exact verdict."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from audit_archiver.agent.sealer import StreamSealer
from audit_archiver.core.chain import ChainHead
from audit_archiver.core.event import seal_event
from audit_archiver.core.seal import GENESIS_HASH
from audit_archiver.storage.localdir import LocalDirectoryStore
from audit_archiver.verify.problems import KINDS
from audit_archiver.verify.segment_check import Limits
from audit_archiver.verify.verifier import Verifier, VerifyOptions
from tests.helpers import (
    OTHER_SEED,
    body_lines,
    build_stream,
    fixed_signer,
    forge,
    kinds,
    sample_event,
    tick,
    trust_policy,
    verify_dir,
)

S0, S1, S2 = (f"s1/00000000000{i}.ndjson.zst" for i in range(3))


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    build_stream(tmp_path, "s1")
    return tmp_path


def segment_path(root: Path, n: int, stream: str = "s1") -> Path:
    return root / stream / f"{n:012d}.ndjson.zst"


def test_clean_archive_passes_with_exact_counts(archive: Path) -> None:
    build_stream(archive, "s2", segments=2, per_segment=5, compression="gzip")
    report = verify_dir(archive)
    assert report.ok, report.problems
    assert (len(report.streams), report.segments, report.events) == (2, 5, 22)
    heads = {s.stream: s.head_segment_seq for s in report.streams}
    assert heads == {"s1": 2, "s2": 1}


def test_flipped_body_byte(archive: Path) -> None:
    path = segment_path(archive, 1)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40
    path.write_bytes(bytes(data))
    assert kinds(verify_dir(archive)) == [("body_hash_mismatch", S1), ("malformed_segment", S1)]


def test_flipped_seal_byte_breaks_signature_and_nothing_else_is_trusted(archive: Path) -> None:
    # The forged sealed_at (year 2025) is never parsed: the signature fails first, and
    # the unauthenticated segment is a hole, so no link into S2 is checked against it.
    path = segment_path(archive, 1)
    data = path.read_bytes()
    marker = b'"sealed_at":"2026'
    at = data.index(marker) + len(marker) - 1
    path.write_bytes(data[:at] + b"5" + data[at + 1 :])
    report = verify_dir(archive)
    assert kinds(report) == [("signature_invalid", S1)]
    assert report.events == 8


def test_dropped_segment_is_a_gap(archive: Path) -> None:
    segment_path(archive, 1).unlink()
    report = verify_dir(archive)
    assert kinds(report) == [("sequence_gap", S2)]
    assert report.problems[0].expected == "1"
    assert report.problems[0].found == "2"


def test_dropped_first_segment_is_a_gap(archive: Path) -> None:
    segment_path(archive, 0).unlink()
    assert kinds(verify_dir(archive)) == [("sequence_gap", S1)]


def test_reordered_segments(archive: Path) -> None:
    one, two = segment_path(archive, 1), segment_path(archive, 2)
    a, b = one.read_bytes(), two.read_bytes()
    one.write_bytes(b)
    two.write_bytes(a)
    # One key_mismatch per object (its key and its number both differ); the links:
    # S1 (seal 2) follows seal 0, S2 (seal 1) follows seal 2 and goes back in time twice.
    assert kinds(verify_dir(archive)) == [
        ("chain_broken", S1),
        ("chain_broken", S2),
        ("key_mismatch", S1),
        ("key_mismatch", S2),
        ("sequence_gap", S1),
        ("sequence_gap", S2),
        ("time_regression", S2),
        ("time_regression", S2),
    ]


def test_resigned_with_another_key(archive: Path) -> None:
    original = build_stream(None, "s1")[1]
    segment_path(archive, 1).write_bytes(forge(original, fixed_signer(OTHER_SEED)))
    assert kinds(verify_dir(archive)) == [("unknown_key", S1)]


def test_second_trusted_key_is_accepted(tmp_path: Path) -> None:
    other = fixed_signer(OTHER_SEED)
    build_stream(tmp_path, "s1", signer=other)
    assert kinds(verify_dir(tmp_path)) == [("unknown_key", k) for k in (S0, S1, S2)]
    assert verify_dir(tmp_path, fixed_signer(), other).ok


def test_spliced_streams(archive: Path) -> None:
    build_stream(archive, "s2")
    shutil.copyfile(segment_path(archive, 1, "s2"), segment_path(archive, 1))
    assert kinds(verify_dir(archive)) == [
        ("chain_broken", S1),
        ("chain_broken", S2),
        ("key_mismatch", S1),
    ]


@pytest.mark.parametrize(
    ("keep", "expected"),
    [
        (5, [("malformed_segment", S2)]),
        (
            -40,
            [("body_hash_mismatch", S2), ("body_size_mismatch", S2), ("malformed_segment", S2)],
        ),
    ],
)
def test_truncated_segment(archive: Path, keep: int, expected: list[tuple[str, str]]) -> None:
    path = segment_path(archive, 2)
    path.write_bytes(path.read_bytes()[:keep])
    assert kinds(verify_dir(archive)) == expected


def test_garbage_and_empty_objects(archive: Path) -> None:
    segment_path(archive, 3).write_bytes(b"\x00garbage" * 100)
    segment_path(archive, 4).write_bytes(b"")
    s3, s4 = "s1/000000000003.ndjson.zst", "s1/000000000004.ndjson.zst"
    assert kinds(verify_dir(archive)) == [("malformed_segment", s3), ("malformed_segment", s4)]


def test_merkle_root_not_matching_lines(archive: Path) -> None:
    last = build_stream(None, "s1")[2]
    segment_path(archive, 2).write_bytes(forge(last, fixed_signer(), merkle_root="ab" * 32))
    assert kinds(verify_dir(archive)) == [("merkle_mismatch", S2)]


def test_event_removed_and_resigned(archive: Path) -> None:
    last = build_stream(None, "s1")[2]
    lines = body_lines(last)
    del lines[1]
    raw = b"".join(line + b"\n" for line in lines)
    segment_path(archive, 2).write_bytes(forge(last, fixed_signer(), raw_body=raw))
    # Lines 1 and 2 carry seqs 9 and 10 where 8 and 9 belong: one problem, naming line 2.
    report = verify_dir(archive)
    assert kinds(report) == [
        ("merkle_mismatch", S2),
        ("seal_mismatch", S2),
        ("sequence_gap", S2),
    ]
    gap = next(p for p in report.problems if p.kind == "sequence_gap")
    assert "line 2" in gap.detail
    assert "first of 2" in gap.detail


def test_seal_bounds_not_matching_body(archive: Path) -> None:
    last = build_stream(None, "s1")[2]
    forged = forge(last, fixed_signer(), first_received_at=tick(0))
    segment_path(archive, 2).write_bytes(forged)
    assert kinds(verify_dir(archive)) == [("seal_mismatch", S2), ("time_regression", S2)]


def test_invalid_event_lines(archive: Path) -> None:
    last = build_stream(None, "s1")[2]
    lines = body_lines(last)
    lines[2] = b'{"actor":"x","seq":"ten"}'
    lines[3] = b"not json"
    segment = forge(last, fixed_signer(), raw_body=b"".join(x + b"\n" for x in lines))
    segment_path(archive, 2).write_bytes(segment)
    report = verify_dir(archive)
    assert kinds(report) == [("event_invalid", S2), ("merkle_mismatch", S2), ("seal_mismatch", S2)]
    detail = next(p.detail for p in report.problems if p.kind == "event_invalid")
    assert "line 3" in detail
    assert "first of 2" in detail


def test_event_seq_and_time_regress_inside_segment(archive: Path) -> None:
    last = build_stream(None, "s1")[2]
    lines = body_lines(last)
    lines[1], lines[2] = lines[2], lines[1]
    lines[3] = lines[3].replace(tick(11).encode(), tick(0).encode())
    raw = b"".join(line + b"\n" for line in lines)
    segment_path(archive, 2).write_bytes(forge(last, fixed_signer(), raw_body=raw))
    assert kinds(verify_dir(archive)) == [
        ("merkle_mismatch", S2),
        ("seal_mismatch", S2),
        ("sequence_gap", S2),
        ("time_regression", S2),
    ]


def test_sealed_before_last_event(archive: Path) -> None:
    last = build_stream(None, "s1")[2]
    segment_path(archive, 2).write_bytes(forge(last, fixed_signer(), sealed_at=tick(9)))
    assert kinds(verify_dir(archive)) == [("time_regression", S2), ("time_regression", S2)]


def test_link_to_wrong_previous_seal(archive: Path) -> None:
    last = build_stream(None, "s1")[2]
    segment_path(archive, 2).write_bytes(forge(last, fixed_signer(), prev_seal_hash="cd" * 32))
    report = verify_dir(archive)
    assert kinds(report) == [("chain_broken", S2)]
    assert report.problems[0].found == "cd" * 32


def test_first_segment_must_link_to_genesis(archive: Path) -> None:
    first = build_stream(None, "s1")[0]
    forged = forge(first, fixed_signer(), prev_seal_hash="ef" * 32)
    segment_path(archive, 0).write_bytes(forged)
    report = verify_dir(archive)
    assert kinds(report) == [("chain_broken", S0), ("chain_broken", S1)]
    assert report.problems[0].expected == GENESIS_HASH


def test_event_seq_gap_between_segments(archive: Path) -> None:
    last = build_stream(None, "s1")[2]
    forged = forge(last, fixed_signer(), first_seq=9, last_seq=12)
    segment_path(archive, 2).write_bytes(forged)
    report = verify_dir(archive)
    assert kinds(report) == [("sequence_gap", S2)] * 2
    link = [p for p in report.problems if "previous segment" in p.detail]
    assert [(p.expected, p.found) for p in link] == [("8", "9")]


def test_wrong_prefix_is_a_key_mismatch(archive: Path) -> None:
    report = verify_dir(archive, prefix="elsewhere")
    assert kinds(report) == [("key_mismatch", S0), ("key_mismatch", S1), ("key_mismatch", S2)]
    assert report.problems[0].expected == "elsewhere/" + S0
    assert verify_dir(archive, prefix=None).ok
    with pytest.raises(ValueError, match="invalid prefix"):
        VerifyOptions(seal_prefix="elsewhere/")


def test_unexpected_objects(archive: Path) -> None:
    (archive / "README").write_text("hello")
    (archive / "s1" / "notes.txt").write_text("hello")
    (archive / "s1" / "1.ndjson.zst").write_bytes(segment_path(archive, 1).read_bytes())
    assert kinds(verify_dir(archive)) == [
        ("unexpected_object", "README"),
        ("unexpected_object", "s1/1.ndjson.zst"),
        ("unexpected_object", "s1/notes.txt"),
    ]


def test_duplicate_segment_number(archive: Path) -> None:
    gz = "s1/000000000001.ndjson.gz"
    shutil.copyfile(segment_path(archive, 1), archive / gz)
    assert kinds(verify_dir(archive)) == [("duplicate_segment", S1), ("key_mismatch", gz)]


def test_requested_stream_missing(archive: Path) -> None:
    options = VerifyOptions(seal_prefix="audit", streams=("s1", "nope"))
    store = LocalDirectoryStore(archive)
    report = Verifier(store, trust_policy(fixed_signer()), options, "x").run()
    assert kinds(report) == [("stream_missing", "nope")]
    assert report.segments == 3


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    build_stream(tmp_path, "s1", segments=1, per_segment=400)
    options = VerifyOptions(seal_prefix="audit", limits=Limits(max_body_bytes=4096))
    store = LocalDirectoryStore(tmp_path)
    report = Verifier(store, trust_policy(fixed_signer()), options, "x").run()
    assert kinds(report) == [("malformed_segment", S0)]
    assert "4096" in report.problems[0].detail


def test_heartbeat_segments_verify(tmp_path: Path) -> None:
    build_stream(tmp_path, "s1", segments=4, empty_segments=(1, 2))
    report = verify_dir(tmp_path)
    assert report.ok, report.problems
    assert (report.segments, report.events) == (4, 8)


def test_every_kind_is_documented_with_the_same_meaning() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "FORMAT.md").read_text()
    table = doc[doc.index("## 9. Problem kinds") : doc.index("## 10. The verify report")]
    rows = {}
    for line in table.splitlines():
        if line.startswith("| `"):
            kind, meaning = (cell.strip() for cell in line.strip().strip("|").split("|"))
            rows[kind.strip("`")] = meaning
    assert rows == KINDS


def _continue_over(archive: Path, hole: int, *, first_seq_shift: int = 0) -> str:
    """Write segment ``hole + 1`` as the writer does when it finds a foreign object at
    its next key ``hole``: linked to segment ``hole - 1``, the events continuing."""
    last = build_stream(None, "s1", segments=hole)[-1]
    head = ChainHead().after(last.seal, last.seal_hash)
    head = dataclasses.replace(
        head, next_segment_seq=hole + 1, next_seq=head.next_seq + first_seq_shift
    )
    sealer = StreamSealer(prefix="audit", stream="s1", signer=fixed_signer(), head=head)
    first = head.next_seq
    lines = [
        seal_event(sample_event(first + i), first + i, tick(first + i + 500)) for i in range(2)
    ]
    segment = sealer.seal(lines, tick(first + 5000))
    relative = segment.key.removeprefix("audit/")
    (archive / relative).write_bytes(segment.data)
    return relative


def test_a_foreign_object_stepped_over_by_the_writer_is_the_only_problem(tmp_path: Path) -> None:
    build_stream(tmp_path, "s1", segments=2)
    segment_path(tmp_path, 2).write_bytes(b"\x00junk written by someone without the key")
    after = _continue_over(tmp_path, 2)
    report = verify_dir(tmp_path)
    assert kinds(report) == [("malformed_segment", S2)]
    assert after == "s1/000000000003.ndjson.zst"
    assert (report.segments, report.events) == (4, 10)


def test_the_segment_after_a_foreign_object_is_still_checked(tmp_path: Path) -> None:
    build_stream(tmp_path, "s1", segments=2)
    segment_path(tmp_path, 2).write_bytes(b"\x00junk written by someone without the key")
    after = _continue_over(tmp_path, 2, first_seq_shift=3)  # three events skipped
    assert kinds(verify_dir(tmp_path)) == [("malformed_segment", S2), ("sequence_gap", after)]


def test_junk_beside_a_segment_under_another_extension_does_not_displace_it(
    tmp_path: Path,
) -> None:
    build_stream(tmp_path, "s1")
    junk = "s1/000000000001.ndjson.gz"  # sorts before the genuine .zst of the same number
    (tmp_path / junk).write_bytes(b"\x1f\x8b junk from a writer without the key")
    report = verify_dir(tmp_path)
    assert kinds(report) == [("duplicate_segment", junk), ("malformed_segment", junk)]
    assert (report.segments, report.events) == (3, 12)
