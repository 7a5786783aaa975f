"""Content-Encoding decoding: every producer's coding, bounded after decoding."""

from __future__ import annotations

import gzip
import zlib

import cramjam
import pytest
import zstandard

from audit_archiver.agent.encodings import (
    BodyDecodingError,
    BodyTask,
    DecodedBodyTooLargeError,
    UnsupportedEncodingError,
    decode_and_encode,
    decode_body,
    parse_content_encoding,
)
from audit_archiver.errors import EventValidationError

DATA = b'{"actor":"a","action":"b","resource":"c"}\n' * 500


def deflate_raw(data: bytes) -> bytes:
    encoder = zlib.compressobj(wbits=-15)
    return encoder.compress(data) + encoder.flush()


CODED = {
    "gzip": gzip.compress(DATA),
    "gzip-members": gzip.compress(DATA[:100]) + gzip.compress(DATA[100:]),
    "deflate": zlib.compress(DATA),
    "deflate-raw": deflate_raw(DATA),
    "zstd": zstandard.ZstdCompressor().compress(DATA),
    "zstd-frames": zstandard.ZstdCompressor().compress(DATA[:7])
    + zstandard.ZstdCompressor().compress(DATA[7:]),
    "snappy": bytes(cramjam.snappy.compress_raw(DATA)),
    "snappy-framed": bytes(cramjam.snappy.compress(DATA)),
}


@pytest.mark.parametrize("name", sorted(CODED))
def test_each_coding_decodes(name: str) -> None:
    assert decode_body(name.split("-", maxsplit=1)[0], CODED[name], len(DATA)) == DATA


@pytest.mark.parametrize("name", sorted(CODED))
def test_over_the_limit_after_decoding_is_refused(name: str) -> None:
    with pytest.raises(DecodedBodyTooLargeError):
        decode_body(name.split("-", maxsplit=1)[0], CODED[name], len(DATA) - 1)


@pytest.mark.parametrize("name", sorted(CODED))
def test_truncated_or_corrupt_bodies_are_refused(name: str) -> None:
    coding = name.split("-", maxsplit=1)[0]
    with pytest.raises(BodyDecodingError):
        decode_body(coding, CODED[name][: len(CODED[name]) // 2], 1 << 20)
    with pytest.raises(BodyDecodingError):
        decode_body(coding, b"\x01\x02garbage" * 9, 1 << 20)


@pytest.mark.parametrize(
    ("coding", "bomb"),
    [
        ("gzip", gzip.compress(b"\0" * (64 << 20))),
        ("zstd", zstandard.ZstdCompressor().compress(b"\0" * (64 << 20))),
        ("snappy", bytes(cramjam.snappy.compress_raw(b"\0" * (8 << 20)))),
        ("snappy", bytes(cramjam.snappy.compress(b"\0" * (8 << 20)))),
    ],
)
def test_a_bomb_is_refused_without_decoding_it_whole(coding: str, bomb: bytes) -> None:
    with pytest.raises(DecodedBodyTooLargeError):
        decode_body(coding, bomb, 1 << 20)


@pytest.mark.parametrize(
    ("header", "coding"),
    [(None, None), ("identity", None), ("GZIP", "gzip"), (" zstd ", "zstd"), ("snappy", "snappy")],
)
def test_supported_codings(header: str | None, coding: str | None) -> None:
    assert parse_content_encoding(header) == coding


@pytest.mark.parametrize("header", ["br", "lz4", "x-snappy-framed", "gzip, zstd", "compress"])
def test_other_codings_are_refused(header: str) -> None:
    with pytest.raises(UnsupportedEncodingError):
        parse_content_encoding(header)


def test_the_worker_task_decodes_then_encodes() -> None:
    task = BodyTask("events", CODED["zstd"], "zstd", None, 1 << 20)
    assert decode_and_encode(task).events.event_count == 500
    with pytest.raises(EventValidationError):
        decode_and_encode(task._replace(format_name="k8s-audit"))
