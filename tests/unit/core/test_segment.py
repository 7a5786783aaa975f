from __future__ import annotations

import gzip
import io
import shutil
import subprocess
from pathlib import Path

import pytest
import zstandard

from audit_archiver.core.event import encode_event
from audit_archiver.core.line import EncodedEvents, EventRun
from audit_archiver.core.seal import GENESIS_HASH, parse_seal, signing_message
from audit_archiver.core.segment import (
    build_segment,
    compress_body,
    decompress_body,
    open_segment,
    prepare_body,
    prepare_runs_body,
)
from audit_archiver.errors import MalformedSegmentError
from tests.helpers import build_stream, fixed_signer, sample_event, tick, trusted_keys


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_round_trip(compression: str) -> None:
    segments = build_stream(None, "s", segments=2, per_segment=3, compression=compression)
    second = segments[1]
    opened = open_segment(second.data)
    assert opened.container == compression
    assert parse_seal(opened.seal_bytes) == second.seal
    assert opened.seal_hash == second.seal_hash
    assert second.seal.prev_seal_hash == segments[0].seal_hash
    key = next(iter(trusted_keys(fixed_signer()).values()))
    assert key.verify(opened.signature, signing_message(opened.seal_bytes))
    lines = decompress_body(opened.body, compression).splitlines()
    assert [line[:11] for line in lines] == [b'{"seq":3,"r', b'{"seq":4,"r', b'{"seq":5,"r']
    assert (second.seal.first_seq, second.seal.last_seq, second.seal.event_count) == (3, 5, 3)


def test_standard_decoders_skip_the_seal_frame(tmp_path: Path) -> None:
    zst = build_stream(None, "s", segments=1, per_segment=3)[0]
    gz = build_stream(None, "s", segments=1, per_segment=3, compression="gzip")[0]
    expected = decompress_body(open_segment(zst.data).body, "zstd")
    assert gzip.decompress(gz.data) == expected
    reader = zstandard.ZstdDecompressor().stream_reader(
        io.BytesIO(zst.data), read_across_frames=True
    )
    assert reader.read() == expected
    (tmp_path / "seg.gz").write_bytes(gz.data)
    unzipped = subprocess.run(
        ["gzip", "-dc", str(tmp_path / "seg.gz")], capture_output=True, check=True
    )
    assert unzipped.stdout == expected
    if shutil.which("zstd"):
        (tmp_path / "seg.zst").write_bytes(zst.data)
        out = subprocess.run(
            ["zstd", "-dcq", str(tmp_path / "seg.zst")], capture_output=True, check=True
        )
        assert out.stdout == expected


def test_heartbeat_segment_has_no_events() -> None:
    empty = build_stream(None, "s", segments=1, per_segment=0)[0]
    seal = empty.seal
    assert (seal.event_count, seal.last_seq, seal.first_received_at) == (0, None, None)
    assert seal.merkle_root == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_build_refuses_inconsistent_input() -> None:
    common = {
        "prefix": "p",
        "stream": "s",
        "sealed_at": "2026-01-01T00:00:00.000000Z",
        "signer": fixed_signer(),
        "lines": [],
    }
    with pytest.raises(ValueError, match="genesis"):
        build_segment(segment_seq=1, first_seq=0, prev_seal_hash=GENESIS_HASH, **common)
    with pytest.raises(ValueError, match="genesis"):
        build_segment(segment_seq=0, first_seq=0, prev_seal_hash="a" * 64, **common)
    line = b'{"seq":5,"received_at":"2026-01-01T00:00:00.000000Z","a":1}'
    with pytest.raises(ValueError, match="expected 0"):
        build_segment(
            **{**common, "lines": [line]}, segment_seq=0, first_seq=0, prev_seal_hash=GENESIS_HASH
        )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x5a\x2a\x4d\x18",
        b"\x5a\x2a\x4d\x18\xff\xff\x00\x00",
        b"PK\x03\x04",
        b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x10\x00XY",
    ],
)
def test_open_refuses_garbage(data: bytes) -> None:
    with pytest.raises(MalformedSegmentError):
        open_segment(data)


def test_open_refuses_bad_signature_line() -> None:
    good = build_stream(None, "s", segments=1)[0].data
    bad = good.replace(b'{"signature":"', b'{"signature":"!!', 1)
    with pytest.raises(MalformedSegmentError):
        open_segment(bad)


def test_decompress_refuses_trailing_and_truncated_bodies() -> None:
    body = open_segment(build_stream(None, "s", segments=1)[0].data).body
    for bad in (body + b"x", body[:-4], b"\x00" * 10):
        with pytest.raises(MalformedSegmentError):
            decompress_body(bad, "zstd")
    gz = open_segment(build_stream(None, "s", segments=1, compression="gzip")[0].data).body
    for bad in (gz + b"x", gz[:-4]):
        with pytest.raises(MalformedSegmentError):
            decompress_body(bad, "gzip")


def _run(first: int, count: int) -> EventRun:
    encoded = EncodedEvents.of([encode_event(sample_event(i)) for i in range(first, first + count)])
    return EventRun(first, tick(first), encoded.event_count, encoded.data)


def test_runs_prepare_the_same_body_as_their_sealed_lines() -> None:
    runs = [_run(4, 3), _run(7, 1), _run(8, 5)]
    lines = [line for run in runs for line in run.sealed_lines()]
    from_runs = prepare_runs_body(runs, 4, "zstd")
    assert from_runs == prepare_body(lines, 4, "zstd")
    assert (from_runs.event_count, from_runs.first_received_at) == (9, tick(4))
    assert from_runs.last_received_at == tick(8)
    assert prepare_runs_body([], 13, "gzip").event_count == 0
    with pytest.raises(ValueError, match="run starts at seq 8, expected 7"):
        prepare_runs_body([_run(4, 3), _run(8, 5)], 4, "zstd")


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_decompress_stops_at_the_size_limit(compression: str) -> None:
    raw = b"x" * 10_000
    body = compress_body(raw, compression)
    assert decompress_body(body, compression, max_bytes=len(raw)) == raw
    with pytest.raises(MalformedSegmentError, match=f"inflates past {len(raw) - 1} bytes"):
        decompress_body(body, compression, max_bytes=len(raw) - 1)
    with pytest.raises(MalformedSegmentError, match="unknown compression"):
        decompress_body(body, "lz4")
