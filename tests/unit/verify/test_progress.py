from __future__ import annotations

import io

import pytest

from audit_archiver.verify import progress
from audit_archiver.verify.progress import ProgressReporter


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_is_drawn_for_long_runs_and_removed_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    terminal = _Terminal()
    reporter = ProgressReporter(terminal)
    reporter(1, 3, 10)
    assert terminal.getvalue() == ""
    clock[0] += 2
    reporter(2, 3, 20)
    drawn = terminal.getvalue()
    assert "2/3" in drawn
    assert "20 events" in drawn
    reporter(3, 3, 30)
    *_, cleared, after = terminal.getvalue().split("\r")
    assert (cleared.strip(), after) == ("", "")


def test_plain_lines_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    reporter = ProgressReporter(out, interval=5.0)
    reporter(1, 4, 10)
    assert out.getvalue() == ""
    clock[0] += 5
    reporter(2, 4, 20)
    assert out.getvalue() == "verify: 2/4 segments, 20 events (4 events/s)\n"
