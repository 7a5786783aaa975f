"""One stream's time-stamp figures for the verify report (see :mod:`.timestamps`).

The stream summary's ``timestamped_segments`` and ``newest_timestamp`` come from here;
the notices ``not_timestamped`` and ``timestamp_not_checked`` come once per
stream, with counts, never once per segment.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from audit_archiver.verify.chain import StreamSummary
from audit_archiver.verify.problems import Notice
from audit_archiver.verify.timestamps import TimestampCheck, TimestampPolicy, TimestampStatus

__all__ = ["TimestampTally"]


@dataclass
class TimestampTally:
    """One stream's token figures, fed one segment at a time (authenticated ones only)."""

    stream: str
    stamped: int = 0
    unchecked: int = 0
    missing: int = 0
    first_missing: str | None = None
    first_unchecked: str | None = None
    newest: str | None = None

    def add(self, key: str, check: TimestampCheck) -> None:
        """Count one authenticated segment's verdict."""
        if check.status is TimestampStatus.NONE:
            self.missing += 1
            self.first_missing = self.first_missing or key
        elif check.status is TimestampStatus.UNCHECKED:
            self.stamped += 1
            self.unchecked += 1
            self.first_unchecked = self.first_unchecked or key
        elif check.status is TimestampStatus.VERIFIED:
            self.stamped += 1
            if check.gen_time is not None and (self.newest is None or check.gen_time > self.newest):
                self.newest = check.gen_time

    def summary(self, base: StreamSummary) -> StreamSummary:
        """``base`` with this stream's figures."""
        return dataclasses.replace(
            base, timestamped_segments=self.stamped, newest_timestamp=self.newest
        )

    def notices(self, policy: TimestampPolicy) -> list[Notice]:
        """``not_timestamped`` and ``timestamp_not_checked`` for this stream, if due."""
        out = []
        quiet = policy.trust is None and self.stamped == 0
        if self.missing and not policy.required and not quiet:
            out.append(
                Notice(
                    "not_timestamped",
                    self.first_missing or self.stream,
                    f"{self.missing} segment(s) of stream {self.stream!r} carry no time-stamp"
                    " token (sealed while the TSA was unreachable, or without --tsa-url);"
                    " their sealed_at is the agent's own claim",
                )
            )
        if self.unchecked:
            out.append(
                Notice(
                    "timestamp_not_checked",
                    self.first_unchecked or self.stream,
                    f"{self.unchecked} time-stamp token(s) of stream {self.stream!r} were not"
                    " checked: give --tsa-cert to verify the TSA's signature and chain",
                )
            )
        return out
