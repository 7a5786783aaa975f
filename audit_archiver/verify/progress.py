"""Progress of a long verify run on stderr (stdout stays clean for --json).

A tqdm bar when stderr is a terminal; otherwise a plain line every few seconds,
and nothing at all for runs shorter than that. The bar is removed when the last
segment is reported, so it never sits in front of the report.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from tqdm import tqdm


__all__ = ["ProgressReporter"]


class ProgressReporter:
    """Called with (segments done, segments total, events so far)."""

    def __init__(self, stream: TextIO | None = None, interval: float = 5.0) -> None:
        self._stream = stream or sys.stderr
        self._interval = interval
        self._started = time.monotonic()
        self._last = self._started
        self._bar: tqdm[None] | None = None
        self._tty = self._stream.isatty()

    def __call__(self, done: int, total: int, events: int) -> None:
        """Report progress; cheap when nothing is printed."""
        now = time.monotonic()
        if self._tty:
            if self._bar is None:
                if now - self._started < 1.0 or done >= total:
                    return
                from tqdm import tqdm  # only a terminal shows a bar: no import otherwise

                self._bar = tqdm(total=total, unit="seg", file=self._stream, leave=False)
            self._bar.n = done
            self._bar.set_postfix_str(f"{events:,} events", refresh=False)
            self._bar.refresh()
            if done >= total:
                self.close()
            return
        if now - self._last >= self._interval:
            self._last = now
            rate = events / max(now - self._started, 1e-9)
            print(
                f"verify: {done}/{total} segments, {events:,} events ({rate:,.0f} events/s)",
                file=self._stream,
                flush=True,
            )

    def close(self) -> None:
        """Remove the bar, if one was drawn."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
