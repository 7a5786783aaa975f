from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from audit_archiver.core.encoding import (
    canonical_json,
    format_timestamp,
    is_archiver_timestamp,
    parse_rfc3339,
)


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": ["é", None]}) == '{"a":["é",null],"b":1}'.encode()


def test_canonical_json_refuses_what_it_cannot_keep_exact() -> None:
    with pytest.raises(TypeError, match="64-bit"):
        canonical_json({"x": 2**70})
    with pytest.raises(TypeError, match="surrogates"):
        canonical_json({"x": "\ud800"})


def test_timestamps_are_utc_fixed_width() -> None:
    moment = datetime(2026, 11, 23, 17, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    text = format_timestamp(moment)
    assert text == "2026-11-23T15:00:00.000005Z"
    assert is_archiver_timestamp(text)
    assert not is_archiver_timestamp("2026-11-23T15:00:00Z")
    with pytest.raises(ValueError, match="timezone"):
        format_timestamp(datetime(2026, 1, 1))


def test_parse_rfc3339_variants() -> None:
    assert parse_rfc3339("2026-11-23T15:00:00Z") == datetime(2026, 11, 23, 15, tzinfo=UTC)
    nanos = parse_rfc3339("2026-11-23t15:00:00.123456789+01:00")
    assert nanos.microsecond == 123456
    assert nanos.utcoffset() == timedelta(hours=1)
    for bad in ("2026-11-23", "2026-11-23T15:00:00", "2026-13-01T00:00:00Z"):
        with pytest.raises(ValueError, match=r"RFC 3339|month"):
            parse_rfc3339(bad)
