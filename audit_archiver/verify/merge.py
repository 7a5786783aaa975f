"""``report merge``: N shard reports of ``verify --shard K/N --json`` become one verdict.

Pure: the reports arrive as bytes (the command reads the files, bounded), the
merged :class:`~audit_archiver.verify.report.Report` is returned. A shard report
is untrusted input (it may come from a shared bucket or volume), so it is parsed
strictly and totally: at most :data:`MAX_REPORT_BYTES`, exactly the members
``verify --json`` writes with their types, every problem kind and notice kind
known, counts that agree with the summaries, ``ok`` that agrees with the
problems, and every unit one that the shard rule (:mod:`audit_archiver.verify.shard`)
gives to that shard. Anything else is :class:`~audit_archiver.errors.ReportInputError`
(exit 2), never a traceback, never a verdict.

The reports must be shards 1..N of one N, one archive (``source`` and
``prefix``) and one unit size, each exactly once. The merged report sums the
counts, combines each stream's summaries
(:func:`~audit_archiver.verify.chain.combine_summaries`), concatenates the
problems in shard order and keeps each distinct notice once. ``ok`` is
recomputed from the problems.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from audit_archiver.errors import ReportInputError
from audit_archiver.verify.chain import KeyRange, StreamSummary, combine_summaries
from audit_archiver.verify.problems import KINDS, NOTICE_KINDS, Notice, Problem
from audit_archiver.verify.report import Report
from audit_archiver.verify.shard import MAX_SHARDS, Shard, Unit, owner

__all__ = ["MAX_REPORT_BYTES", "ShardReport", "merge_reports", "parse_shard_report"]

MAX_REPORT_BYTES = 256 << 20
"""The largest shard report read (a report of millions of problems fits)."""
_MAX_INT = 2**63 - 1

_TOP = {
    "ok",
    "streams",
    "segments",
    "events",
    "problems",
    "notices",
    "stream_summaries",
    "source",
    "prefix",
    "incremental",
    "shard",
}
_SUMMARY_STR = ("first_received_at", "last_received_at", "newest_sealed_at", "head_seal_hash")
_SUMMARY = {
    "stream",
    "segments",
    "events",
    "head_segment_seq",
    "keys",
    "timestamped_segments",
    "newest_timestamp",
    *_SUMMARY_STR,
}


class ShardReport:
    """One parsed, checked shard report."""

    def __init__(self, name: str, report: Report, shard: Shard) -> None:
        self.name = name
        self.report = report
        self.shard = shard


class _RefusedError(ValueError):
    """Why a report is refused (becomes :class:`ReportInputError` with its name)."""


def _object(
    value: Any, what: str, members: set[str], optional: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _RefusedError(f"{what} is not a JSON object")
    missing = members - optional - set(value)
    unknown = set(value) - members
    if missing or unknown:
        raise _RefusedError(f"{what}: missing {sorted(missing)}, unknown {sorted(unknown)[:5]}")
    return value


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_INT:
        raise _RefusedError(f"{what} is not a count (an integer from 0 to 2^63-1)")
    return value


def _str(value: Any, what: str, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _RefusedError(f"{what} is not a string")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _RefusedError(f"{what} is not a list")
    return value


def _problem(value: Any, where: str) -> Problem:
    fields = _object(
        value,
        where,
        {"kind", "key", "detail", "stream", "expected", "found"},
        {"stream", "expected", "found"},
    )
    kind = _str(fields["kind"], f"{where}.kind")
    if kind not in KINDS:
        raise _RefusedError(f"{where}.kind {kind[:64]!r} is not a problem kind")
    return Problem(
        kind,
        _str(fields["key"], f"{where}.key"),
        _str(fields["detail"], f"{where}.detail"),
        **{
            name: _str(fields.get(name), f"{where}.{name}", optional=True)
            for name in ("stream", "expected", "found")
        },
    )


def _notice(value: Any, where: str) -> Notice:
    fields = _object(value, where, {"kind", "key", "detail"})
    kind = _str(fields["kind"], f"{where}.kind")
    if kind not in NOTICE_KINDS:
        raise _RefusedError(f"{where}.kind {kind[:64]!r} is not a notice kind")
    return Notice(
        kind, _str(fields["key"], f"{where}.key"), _str(fields["detail"], f"{where}.detail")
    )


def _summary(value: Any, where: str) -> StreamSummary:
    fields = _object(value, where, _SUMMARY)
    keys = []
    for n, item in enumerate(_list(fields["keys"], f"{where}.keys")):
        key = _object(item, f"{where}.keys[{n}]", {"key_id", "first_segment", "last_segment"})
        keys.append(
            KeyRange(
                _str(key["key_id"], f"{where}.keys[{n}].key_id"),
                _int(key["first_segment"], f"{where}.keys[{n}].first_segment"),
                _int(key["last_segment"], f"{where}.keys[{n}].last_segment"),
            )
        )
    head = fields["head_segment_seq"]
    first, last, sealed = (
        _str(fields[name], f"{where}.{name}", optional=True) for name in _SUMMARY_STR[:3]
    )
    return StreamSummary(
        _str(fields["stream"], f"{where}.stream"),
        _int(fields["segments"], f"{where}.segments"),
        _int(fields["events"], f"{where}.events"),
        first,
        last,
        sealed,
        None if head is None else _int(head, f"{where}.head_segment_seq"),
        _str(fields["head_seal_hash"], f"{where}.head_seal_hash", optional=True),
        keys,
        _int(fields["timestamped_segments"], f"{where}.timestamped_segments"),
        _str(fields["newest_timestamp"], f"{where}.newest_timestamp", optional=True),
    )


def _shard(value: Any) -> tuple[Shard, list[Unit]]:
    fields = _object(value, "shard", {"index", "count", "unit_segments", "units"})
    count = _int(fields["count"], "shard.count")
    index = _int(fields["index"], "shard.index")
    size = _int(fields["unit_segments"], "shard.unit_segments")
    try:
        shard = Shard(index, count, size)
    except ValueError as e:
        raise _RefusedError(f"shard: {e}") from e
    units = []
    for n, item in enumerate(_list(fields["units"], "shard.units")):
        where = f"shard.units[{n}]"
        unit_fields = _object(item, where, {"stream", "first_segment", "last_segment"})
        unit = Unit(
            _str(unit_fields["stream"], f"{where}.stream"),
            _int(unit_fields["first_segment"], f"{where}.first_segment"),
            _int(unit_fields["last_segment"], f"{where}.last_segment"),
        )
        if unit != shard.unit_of(unit.stream, unit.first) or owner(unit, count) != index:
            raise _RefusedError(f"{where} is not a work unit of shard {index}/{count}")
        units.append(unit)
    return shard, units


def parse_shard_report(name: str, data: bytes) -> ShardReport:
    """Parse and check one shard report (``verify --shard K/N --json`` output).

    Raises:
        ReportInputError: the bytes are not such a report (the message names
            ``name`` and the first thing wrong).
    """
    try:
        if len(data) > MAX_REPORT_BYTES:
            raise _RefusedError(f"larger than {MAX_REPORT_BYTES} bytes")
        try:
            value = json.loads(data)
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            raise _RefusedError(f"not JSON: {str(e)[:200]}") from e
        fields = _object(value, "the report", _TOP, {"shard"})
        if "shard" not in fields:
            raise _RefusedError(
                "not a shard report (no 'shard' member: run verify --shard K/N --json)"
            )
        shard, units = _shard(fields["shard"])
        if fields["incremental"] is not False:
            raise _RefusedError("incremental is not false (a shard run has no --state)")
        if not isinstance(fields["ok"], bool):
            raise _RefusedError("ok is not true or false")
        report = Report(
            _str(fields["source"], "source"),
            [
                _summary(s, f"stream_summaries[{n}]")
                for n, s in enumerate(_list(fields["stream_summaries"], "stream_summaries"))
            ],
            _str(fields["prefix"], "prefix", optional=True),
            problems=[
                _problem(p, f"problems[{n}]")
                for n, p in enumerate(_list(fields["problems"], "problems"))
            ],
            notices=[
                _notice(p, f"notices[{n}]")
                for n, p in enumerate(_list(fields["notices"], "notices"))
            ],
            shard=shard,
            units=units,
        )
        _agree(fields, report)
    except _RefusedError as e:
        raise ReportInputError(f"report {name}: {e}") from None
    return ShardReport(name, report, shard)


def _agree(fields: dict[str, Any], report: Report) -> None:
    """The report's own counts and verdict agree with its contents."""
    streams = [s.stream for s in report.streams]
    checks = [
        (fields["ok"] == report.ok, "ok disagrees with its problems"),
        (
            _int(fields["streams"], "streams") == len(streams),
            "streams disagrees with its summaries",
        ),
        (
            _int(fields["segments"], "segments") == report.segments,
            "segments disagrees with its summaries",
        ),
        (_int(fields["events"], "events") == report.events, "events disagrees with its summaries"),
        (len(set(streams)) == len(streams), "a stream is summarised twice"),
        (
            set(streams) <= {u.stream for u in report.units},
            "a stream is summarised that none of its units holds",
        ),
    ]
    for ok, why in checks:
        if not ok:
            raise _RefusedError(why)


def merge_reports(reports: Sequence[ShardReport]) -> Report:
    """Combine shard reports 1..N of one run into the report of the whole archive.

    Raises:
        ReportInputError: no reports, more than :data:`MAX_SHARDS`, reports of
            different archives, N or unit sizes, a shard given twice or missing.
    """
    if not reports:
        raise ReportInputError("give the N shard reports of one run")
    if len(reports) > MAX_SHARDS:
        raise ReportInputError(f"more than {MAX_SHARDS} reports")
    first = reports[0]
    for other in reports[1:]:
        for what, mine, theirs in (
            ("archive", first.report.source, other.report.source),
            ("prefix", first.report.prefix, other.report.prefix),
            ("shard count N", first.shard.count, other.shard.count),
            ("unit size", first.shard.unit_segments, other.shard.unit_segments),
        ):
            if mine != theirs:
                raise ReportInputError(
                    f"reports {first.name} and {other.name} are of another {what}:"
                    f" {str(mine)[:200]!r} and {str(theirs)[:200]!r}"
                )
    by_index: dict[int, ShardReport] = {}
    for one in reports:
        seen = by_index.setdefault(one.shard.index, one)
        if seen is not one:
            raise ReportInputError(
                f"shard {one.shard.index}/{one.shard.count} is given twice: {seen.name} and"
                f" {one.name}"
            )
    count = first.shard.count
    missing = [k for k in range(1, count + 1) if k not in by_index]
    if missing:
        shown = ", ".join(str(k) for k in missing[:20]) + (" …" if len(missing) > 20 else "")
        raise ReportInputError(
            f"{len(missing)} of {count} shard reports missing (shards {shown}): a merge of"
            " some shards is no verdict on the archive"
        )
    merged = Report(first.report.source, prefix=first.report.prefix, merged=count)
    parts: dict[str, list[StreamSummary]] = defaultdict(list)
    seen_notices: set[Notice] = set()
    for index in range(1, count + 1):
        report = by_index[index].report
        merged.problems += report.problems
        for notice in report.notices:
            if notice not in seen_notices:
                seen_notices.add(notice)
                merged.notices.append(notice)
        for summary in report.streams:
            parts[summary.stream].append(summary)
    merged.streams = [combine_summaries(parts[name], whole=True) for name in sorted(parts)]
    return merged
