from __future__ import annotations

import pytest

from audit_archiver.core.layout import (
    SegmentKey,
    parse_segment_key,
    segment_key,
    validate_prefix,
    validate_stream_id,
)


def test_keys_sort_in_chain_order() -> None:
    keys = [segment_key("audit/prod", "web-1", n, "zstd") for n in (0, 9, 10, 99, 100, 12345)]
    assert keys == sorted(keys)
    assert keys[2] == "audit/prod/web-1/000000000010.ndjson.zst"


def test_key_round_trip() -> None:
    key = segment_key("a/b", "s.1_x-y", 42, "gzip")
    assert parse_segment_key(key) == SegmentKey("a/b", "s.1_x-y", 42, "gzip")
    assert parse_segment_key(segment_key("", "s", 1, "zstd")) == SegmentKey("", "s", 1, "zstd")


@pytest.mark.parametrize(
    "key",
    [
        "s/1.ndjson.zst",
        "s/000000000001.ndjson",
        "000000000001.ndjson.zst",
        "a/../000000000001.ndjson.zst",
        "a/s/000000000001.ndjson.bz2",
        "a//s/000000000001.ndjson.zst",
    ],
)
def test_foreign_keys_do_not_parse(key: str) -> None:
    assert parse_segment_key(key) is None


@pytest.mark.parametrize("stream", ["", "-x", ".", "..", "a/b", "a b", "é", "x" * 129])
def test_bad_stream_ids_are_refused_with_a_clear_error(stream: str) -> None:
    with pytest.raises(ValueError, match="invalid stream id"):
        validate_stream_id(stream)


@pytest.mark.parametrize("prefix", ["/a", "a/", "a//b", "a/../b", ".", "a b"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid prefix"):
        validate_prefix(prefix)


def test_out_of_range_segment_numbers() -> None:
    with pytest.raises(ValueError, match="out of range"):
        segment_key("a", "s", 10**12, "zstd")
    with pytest.raises(ValueError, match="compression"):
        segment_key("a", "s", 1, "lz4")
