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


def test_early_years_keep_the_fixed_width() -> None:
    """Review finding L4: strftime's %Y gave "999-..." (not string-ordered)."""
    text = format_timestamp(datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
    assert text == "0999-01-02T03:04:05.000006Z"
    assert is_archiver_timestamp(text)
    assert format_timestamp(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00.000000Z"
    assert text < format_timestamp(datetime(2026, 1, 1, tzinfo=UTC))
    assert format_timestamp(parse_rfc3339("0999-12-31T23:00:00-02:00")) == (
        "1000-01-01T01:00:00.000000Z"
    )
    for refused in ("0000-01-01T00:00:00Z", "0001-01-01T00:30:00+01:00"):
        with pytest.raises(ValueError, match="not a valid date-time"):
            parse_rfc3339(refused)


def test_parse_rfc3339_variants() -> None:
    assert parse_rfc3339("2026-11-23T15:00:00Z") == datetime(2026, 11, 23, 15, tzinfo=UTC)
    nanos = parse_rfc3339("2026-11-23t15:00:00.123456789+01:00")
    assert nanos.microsecond == 123456
    assert nanos.utcoffset() == timedelta(hours=1)
    for bad in ("2026-11-23", "2026-11-23T15:00:00", "2026-13-01T00:00:00Z"):
        with pytest.raises(ValueError, match=r"RFC 3339|month"):
            parse_rfc3339(bad)
