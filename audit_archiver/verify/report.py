"""The verify report: one result object, rendered as JSON or as text for an auditor.

The JSON shape is public interface: ``ok``, ``streams``, ``segments``,
``events`` and ``problems`` (each with ``kind``, ``key``, ``detail``) always
appear; ``stream_summaries`` (with the key ranges of each stream), ``notices``
and ``prefix`` (the prefix the seals name) add detail.

Keys, stream ids and details can carry text an attacker chose (a file name, an
unsigned seal's ``object_key``). The text report escapes every control,
format and separator character, so nothing in it can move the cursor, clear
the screen or draw a fake verdict; the JSON report is escaped by the encoder.
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

from audit_archiver.verify.chain import StreamSummary
from audit_archiver.verify.problems import KINDS, Notice, Problem
from audit_archiver.verify.shard import Shard, Unit

__all__ = ["Notice", "Report", "render_problem", "render_text", "safe_text"]

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def safe_text(text: str) -> str:
    """Escape every character a terminal could act on (controls, bidi and other
    format characters, separators, surrogates) as ``\\xNN``, ``\\uNNNN`` or
    ``\\UNNNNNNNN``; a backslash is doubled so escapes cannot be forged."""
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif unicodedata.category(char) in _UNSAFE_CATEGORIES:
            code = ord(char)
            out.append(
                f"\\x{code:02x}"
                if code < 0x100
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
        else:
            out.append(char)
    return "".join(out)


def render_problem(problem: Problem, *, command: str) -> str:
    """One problem as one line for the error stream of ``command`` (``query``,
    ``prove``): ``<command>: problem [kind] key: detail (expected .., found ..)``,
    every part an attacker can choose escaped (:func:`safe_text`), no newline."""
    key, detail = safe_text(problem.key), safe_text(problem.detail)
    text = f"{command}: problem [{problem.kind}] {key}: {detail}"
    if problem.expected is not None or problem.found is not None:
        expected, found = safe_text(problem.expected or "-"), safe_text(problem.found or "-")
        text += f" (expected {expected}, found {found})"
    return text


@dataclass
class Report:
    """Everything one verify run found."""

    source: str
    streams: list[StreamSummary] = field(default_factory=list)
    prefix: str | None = None
    incremental: bool = False
    problems: list[Problem] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    shard: Shard | None = None
    """``verify --shard``: the shard this report covers, and its work units."""
    units: list[Unit] = field(default_factory=list)
    merged: int | None = None
    """``report merge``: how many shard reports this one combines."""

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    @property
    def segments(self) -> int:
        """Number of segments checked."""
        return sum(s.segments for s in self.streams)

    @property
    def events(self) -> int:
        """Number of events found in the checked segments."""
        return sum(s.events for s in self.streams)

    def to_json(self) -> dict[str, Any]:
        """Return the public JSON report."""
        out: dict[str, Any] = {
            "ok": self.ok,
            "streams": len(self.streams),
            "segments": self.segments,
            "events": self.events,
            "problems": [p.to_json() for p in self.problems],
            "notices": [asdict(n) for n in self.notices],
            "stream_summaries": [asdict(s) for s in self.streams],
            "source": self.source,
            "prefix": self.prefix,
            "incremental": self.incremental,
        }
        if self.shard is not None:
            out["shard"] = {
                "index": self.shard.index,
                "count": self.shard.count,
                "unit_segments": self.shard.unit_segments,
                "units": [
                    {"stream": u.stream, "first_segment": u.first, "last_segment": u.last}
                    for u in self.units
                ],
            }
        if self.merged is not None:
            out["merged_shards"] = self.merged
        return out


def render_text(report: Report) -> str:
    """Render the report for a human reader: summary, streams, then each problem."""
    verdict = "PASSED" if report.ok else f"FAILED ({len(report.problems)} problem(s))"
    lines = [
        f"audit-archiver verification of {safe_text(report.source)}: {verdict}",
        f"  {len(report.streams)} stream(s), {report.segments} segment(s),"
        f" {report.events} event(s)",
    ]
    if report.incremental:
        lines.append(
            "  incremental (--state): segments after the saved heads were checked; those"
            " before them, from the listing"
        )
    if report.shard is not None:
        lines.append(
            f"  shard {report.shard.index}/{report.shard.count}: {len(report.units)} work"
            f" unit(s) of up to {report.shard.unit_segments} segments"
        )
    if report.merged is not None:
        lines.append(f"  merged from {report.merged} shard report(s)")
    if report.prefix is not None:
        lines.append(f"  prefix named by the seals: {safe_text(report.prefix) or '(none)'}")
    lines.append("")
    for s in report.streams:
        span = (
            safe_text(f"{s.first_received_at} .. {s.last_received_at}")
            if s.first_received_at
            else "no events"
        )
        lines.append(f"stream {safe_text(s.stream)}: {s.segments} segment(s), {s.events} event(s)")
        lines.append(f"  events received: {span}")
        lines.append(
            f"  newest seal:     {safe_text(s.newest_sealed_at or '-')}"
            f" (segment {s.head_segment_seq if s.head_segment_seq is not None else '-'})"
        )
        for r in s.keys:
            lines.append(
                f"  signed by key {r.key_id}: segments {r.first_segment}..{r.last_segment}"
            )
        if s.timestamped_segments:
            lines.append(
                f"  time-stamped:    {s.timestamped_segments} segment(s), newest TSA time"
                f" {safe_text(s.newest_timestamp or '- (not checked: no --tsa-cert)')}"
            )
    if report.notices:
        lines += ["", "Notices:"]
        lines += [f"  [{n.kind}] {safe_text(n.key)}: {safe_text(n.detail)}" for n in report.notices]
    if report.problems:
        lines += ["", "Problems:"]
        for p in report.problems:
            lines.append(f"  [{p.kind}] {safe_text(p.key)}: {safe_text(p.detail)}")
            if p.expected is not None or p.found is not None:
                expected, found = safe_text(p.expected or "-"), safe_text(p.found or "-")
                lines.append(f"      expected {expected}, found {found}")
            lines.append(f"      meaning: {KINDS[p.kind]}")
    return "\n".join(lines) + "\n"
