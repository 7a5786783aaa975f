"""``report merge`` of hostile or mismatched shard reports: exit 2 with one reason, never a
traceback, never a verdict; good reports merge into one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from audit_archiver.errors import ReportInputError
from audit_archiver.verify.chain import KeyRange, StreamSummary
from audit_archiver.verify.merge import (
    MAX_REPORT_BYTES,
    merge_reports,
    parse_shard_report,
)
from audit_archiver.verify.problems import Problem
from audit_archiver.verify.report import Report
from audit_archiver.verify.shard import Shard, unit_of

N = 2
KEY_ID = "ab" * 32


def summary(stream: str, first: int, last: int) -> StreamSummary:
    return StreamSummary(
        stream,
        last - first + 1,
        2 * (last - first + 1),
        f"2026-01-02T03:04:05.{first:06d}Z",
        f"2026-01-02T03:04:05.{last:06d}Z",
        f"2026-01-02T03:04:06.{last:06d}Z",
        last,
        "cd" * 32,
        [KeyRange(KEY_ID, first, last)],
    )


def shard_reports() -> list[dict[str, Any]]:
    """Two shard reports of one archive of stream v (units of 3 segments, 0..8)."""
    reports = []
    for k in (1, 2):
        shard = Shard(k, N, 3)
        units = [u for u in (unit_of("v", n, 3) for n in (0, 3, 6)) if shard.owns(u)]
        report = Report("s3://b/audit", prefix="audit", shard=shard, units=units)
        if units:
            parts = [summary("v", u.first, u.last) for u in units]
            report.streams = [
                StreamSummary(
                    "v",
                    sum(p.segments for p in parts),
                    sum(p.events for p in parts),
                    parts[0].first_received_at,
                    parts[-1].last_received_at,
                    parts[-1].newest_sealed_at,
                    parts[-1].head_segment_seq,
                    parts[-1].head_seal_hash,
                    [r for p in parts for r in p.keys],
                )
            ]
        if k == 2:
            report.problems = [Problem("merkle_mismatch", "audit/v/000000000004.ndjson.zst", "x")]
        reports.append(report.to_json())
    return reports


def parse(value: Any, name: str = "r.json") -> Any:
    data = value if isinstance(value, bytes) else json.dumps(value).encode()
    return parse_shard_report(name, data)


def test_good_shards_merge_into_one_report() -> None:
    one, two = shard_reports()
    merged = merge_reports([parse(two), parse(one)])
    assert merged.merged == N
    assert not merged.ok
    assert (len(merged.streams), merged.segments, merged.events) == (1, 9, 18)
    (stream,) = merged.streams
    assert stream.keys == [KeyRange(KEY_ID, 0, 8)]
    assert stream.head_segment_seq == 8
    assert stream.first_received_at == "2026-01-02T03:04:05.000000Z"
    assert merged.to_json()["merged_shards"] == N


def mutated(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    report = shard_reports()[1]
    target: Any = report
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return report


HOSTILE: list[tuple[Any, str]] = [
    (b"", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    (b"[]", "not a JSON object"),
    (b"null", "not a JSON object"),
    (b'{"ok": true}', "missing"),
    (b" " * (MAX_REPORT_BYTES + 1), "larger than"),
    (mutated(("shard",), KeyError), "not a shard report"),
    (mutated(("shard", "index"), 3), "shard must be K/N"),
    (mutated(("shard", "index"), 0), "shard must be K/N"),
    (mutated(("shard", "index"), True), "not a count"),
    (mutated(("shard", "count"), -1), "not a count"),
    (mutated(("shard", "count"), 2**64), "not a count"),
    (mutated(("shard", "unit_segments"), 0), "at least one segment"),
    (mutated(("shard", "units"), {"a": 1}), "not a list"),
    (mutated(("shard", "units", 0, "first_segment"), 1), "not a work unit"),
    (mutated(("shard", "units", 0, "stream"), 7), "not a string"),
    (mutated(("shard", "units", 0, "extra"), 1), "unknown"),
    (mutated(("ok",), True), "ok disagrees"),
    (mutated(("ok",), "false"), "ok is not true or false"),
    (mutated(("segments",), 1000), "segments disagrees"),
    (mutated(("events",), 0), "events disagrees"),
    (mutated(("streams",), 5), "streams disagrees"),
    (mutated(("incremental",), True), "incremental"),
    (mutated(("problems", 0, "kind"), "all_fine"), "not a problem kind"),
    (mutated(("problems", 0, "kind"), None), "not a string"),
    (mutated(("problems", 0, "detail"), ["x"]), "not a string"),
    (mutated(("problems", 0, "extra"), "x"), "unknown"),
    (mutated(("problems",), "none"), "not a list"),
    (mutated(("notices",), [{"kind": "x", "key": "k", "detail": "d"}]), "not a notice kind"),
    (mutated(("stream_summaries", 0, "keys", 0, "last_segment"), 1.5), "not a count"),
    (mutated(("stream_summaries", 0, "head_segment_seq"), "8"), "not a count"),
    (mutated(("stream_summaries", 0, "stream"), "other"), "none of its units"),
    (mutated(("stream_summaries", 0, "first_received_at"), 5), "not a string"),
    (mutated(("source",), None), "not a string"),
    (mutated(("extra_member",), 1), "unknown"),
]


@pytest.mark.parametrize(("value", "message"), HOSTILE)
def test_hostile_report_is_refused_with_a_reason(value: Any, message: str) -> None:
    with pytest.raises(ReportInputError, match=message) as caught:
        parse(value, "evil.json")
    assert str(caught.value).startswith("report evil.json: ")
    assert caught.value.exit_code == 2


def test_a_set_that_is_not_one_run_is_refused() -> None:
    one, two = shard_reports()
    other = dict(two, source="s3://other/audit")
    three = json.loads(json.dumps(two))
    three["shard"]["count"] = 3
    three["shard"]["units"] = []
    three["stream_summaries"], three["streams"], three["segments"], three["events"] = [], 0, 0, 0
    bigger = json.loads(json.dumps(three))
    bigger["shard"]["unit_segments"] = 4
    bigger["shard"]["count"] = 2
    cases = [
        ([], "give the N shard reports"),
        ([parse(one)], "1 of 2 shard reports missing"),
        ([parse(one), parse(two), parse(two, "again.json")], "given twice"),
        ([parse(one), parse(other)], "another archive"),
        ([parse(one), parse(three)], "another shard count"),
        ([parse(one), parse(bigger)], "another unit size"),
    ]
    for given, message in cases:
        with pytest.raises(ReportInputError, match=message):
            merge_reports(given)
