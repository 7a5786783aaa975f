"""The verify report: one result object, rendered as JSON or as text for an auditor.

The JSON shape is public interface: ``ok``, ``streams``, ``segments``,
``events`` and ``problems`` (each with ``kind``, ``key``, ``detail``) always
appear; ``stream_summaries`` and ``notices`` add detail.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from audit_archiver.verify.chain import StreamSummary
from audit_archiver.verify.problems import KINDS, Notice, Problem

__all__ = ["Notice", "Report", "render_text"]


@dataclass
class Report:
    """Everything one verify run found."""

    source: str
    streams: list[StreamSummary] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)

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
        return {
            "ok": self.ok,
            "streams": len(self.streams),
            "segments": self.segments,
            "events": self.events,
            "problems": [p.to_json() for p in self.problems],
            "notices": [asdict(n) for n in self.notices],
            "stream_summaries": [asdict(s) for s in self.streams],
            "source": self.source,
        }


def render_text(report: Report) -> str:
    """Render the report for a human reader: summary, streams, then each problem."""
    verdict = "PASSED" if report.ok else f"FAILED ({len(report.problems)} problem(s))"
    lines = [
        f"audit-archiver verification of {report.source}: {verdict}",
        f"  {len(report.streams)} stream(s), {report.segments} segment(s),"
        f" {report.events} event(s)",
        "",
    ]
    for s in report.streams:
        span = (
            f"{s.first_received_at} .. {s.last_received_at}" if s.first_received_at else "no events"
        )
        lines.append(f"stream {s.stream}: {s.segments} segment(s), {s.events} event(s)")
        lines.append(f"  events received: {span}")
        lines.append(
            f"  newest seal:     {s.newest_sealed_at or '-'}"
            f" (segment {s.head_segment_seq if s.head_segment_seq is not None else '-'})"
        )
    if report.notices:
        lines += ["", "Notices:"]
        lines += [f"  [{n.kind}] {n.key}: {n.detail}" for n in report.notices]
    if report.problems:
        lines += ["", "Problems:"]
        for p in report.problems:
            lines.append(f"  [{p.kind}] {p.key}: {p.detail}")
            if p.expected is not None or p.found is not None:
                lines.append(f"      expected {p.expected or '-'}, found {p.found or '-'}")
            lines.append(f"      meaning: {KINDS[p.kind]}")
    return "\n".join(lines) + "\n"
