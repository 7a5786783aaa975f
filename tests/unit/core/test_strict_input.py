"""Hostile bytes against the core parsers: only the documented error, bounded output."""

from __future__ import annotations

import pytest
import zstandard

from audit_archiver.core.encoding import is_archiver_timestamp, parse_rfc3339
from audit_archiver.core.line import canonical_line_fault, parse_line_header
from audit_archiver.core.merkle import MerkleFolder, leaf_hash, root_of_lines
from audit_archiver.core.seal import seal_key_id
from audit_archiver.core.segment import INFLATE_PIECE, BodyInflater, parse_signature_line
from audit_archiver.errors import MalformedSegmentError

GOOD = "2026-01-02T03:04:05.678901Z"


@pytest.mark.parametrize(
    "text",
    [
        "2026-99-99T03:04:05.678901Z",
        "2026-02-30T03:04:05.678901Z",
        "2025-02-29T03:04:05.678901Z",
        "2026-01-02T24:04:05.678901Z",
        "2026-01-02T03:04:60.678901Z",
        "0000-01-02T03:04:05.678901Z",
        "٢٠٢٦-01-02T03:04:05.678901Z",
        "2026-01-02T03:04:05.678901Z\n",
    ],
)
def test_impossible_archiver_timestamps(text: str) -> None:
    assert not is_archiver_timestamp(text)
    assert parse_line_header(b'{"seq":0,"received_at":"' + text.encode() + b'","a":1}') is None


def test_leap_day_is_a_date() -> None:
    assert is_archiver_timestamp("2024-02-29T00:00:00.000000Z")
    assert is_archiver_timestamp(GOOD)


@pytest.mark.parametrize(
    "text",
    [
        "2026-99-99T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "٢٠٢٦-01-02T03:04:05Z",
        "2026-01-02T03:04:05+24:00",
        "9999-12-31T23:59:59-00:01",
        "0001-01-01T00:00:00+00:01",
        "2026-01-02T03:04:05.1234567890Z",
        "",
    ],
)
def test_parse_rfc3339_raises_only_value_error(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (any reason will do; nothing else may escape)
        parse_rfc3339(text)


def test_parse_rfc3339_edges() -> None:
    assert parse_rfc3339("9999-12-31T23:59:59.999999999Z").year == 9999
    assert parse_rfc3339("9999-12-31T23:59:59+01:00").year == 9999


def test_seq_is_signed_64_bit() -> None:
    line = b'{"seq":%d,"received_at":"' + GOOD.encode() + b'","a":1}'
    assert parse_line_header(line % (2**63 - 1)) == (2**63 - 1, GOOD)
    assert parse_line_header(line % 2**63) is None


def test_canonical_line_fault() -> None:
    head = b'{"seq":0,"received_at":"' + GOOD.encode() + b'",'
    assert canonical_line_fault(head + b'"a":1,"b":[1,{"c":"\xc3\xa9"}]}') is None
    for tail in (
        b'"b":1,"a":1}',
        b'"a":1,"seq":0}',
        b'"a":"\\u00e9"}',
        b'"a":1 }',
        b'"a":"\xff"}',
        b'"a":' + b"[" * 3000 + b"]" * 3000 + b"}",
        b"}",
    ):
        assert canonical_line_fault(head + tail) is not None, tail


@pytest.mark.parametrize(
    "seal",
    [
        b"[" * 30_000,
        b'{"key_id":"' + b"a" * 64 + b'","x":[' + b"[" * 30_000 + b"}",
        b'{"key_id":"' + b"a" * 64 + b'","key_id":"' + b"b" * 64 + b'"}',
        b'{"x":"\\",\\"key_id\\":\\"' + b"a" * 64 + b'"}',
        '{"key_id":"' + "a" * 63 + '٣"}',
    ],
)
def test_seal_key_id_refuses_what_is_not_a_flat_seal(seal: bytes | str) -> None:
    raw = seal.encode() if isinstance(seal, str) else seal
    with pytest.raises(MalformedSegmentError):
        seal_key_id(raw)


def test_seal_key_id_tolerates_only_whitespace() -> None:
    assert seal_key_id(b'{"a":1, "key_id" : "' + b"c" * 64 + b'"}') == "c" * 64


def test_signature_line_forms() -> None:
    assert parse_signature_line(b'{"signature":"AAEC"}') == (b"\x00\x01\x02", True)
    assert parse_signature_line(b'{"signature":"AAE="}') == (b"\x00\x01", True)
    assert parse_signature_line(b'{"signature":"AAF="}') == (b"\x00\x01", False)  # unused bits
    assert parse_signature_line(b'{"signature": "AAEC"}') == (b"\x00\x01\x02", False)
    for bad in (b'{"signature":"AA"}', b"[" * 30_000, b'{"signature":"","x":1}', b"{}"):
        with pytest.raises(MalformedSegmentError):
            parse_signature_line(bad)


def test_merkle_folder_matches_root_of_lines() -> None:
    for count in range(40):
        lines = [b"%d" % n for n in range(count)]
        folder = MerkleFolder()
        for line in lines:
            folder.add(leaf_hash(line))
        assert folder.root() == root_of_lines(lines)
        assert folder.count == count


def test_inflater_output_is_bounded_whatever_the_ratio() -> None:
    raw = b"\x00" * (64 * 1024 * 1024)
    body = zstandard.ZstdCompressor(level=19, write_checksum=True).compress(raw)
    inflater = BodyInflater("zstd", max_body_bytes=len(raw), max_window=8 << 20)
    biggest = 0
    for piece in inflater.feed(body):
        biggest = max(biggest, len(piece))
    inflater.finish()
    assert inflater.inflated == len(raw)
    assert biggest <= INFLATE_PIECE + 128 * 1024


def test_inflater_refuses_a_large_window() -> None:
    params = zstandard.ZstdCompressionParameters(window_log=24, write_checksum=1)
    body = zstandard.ZstdCompressor(compression_params=params).compress(b"x" * (20 << 20))
    inflater = BodyInflater("zstd", max_body_bytes=64 << 20, max_window=8 << 20)
    with pytest.raises(MalformedSegmentError, match="window"):
        list(inflater.feed(body))
