"""``check_object`` in a folder: an object the store refuses to read is a finding on it.

A copy's holder can put a symbolic link or a FIFO where a segment was listed
(a race between listing and reading): that object is ``malformed_segment``,
and the run goes on (before, the run stopped with exit 2).
"""

from __future__ import annotations

import os
from pathlib import Path

from audit_archiver.storage.localdir import LocalDirectoryStore
from audit_archiver.verify.worker import CheckSettings, SegmentTask, check_object
from tests.unit.verify.segment_helpers import KEY, OBJECT_KEY, STREAM, event_lines, policy, segment


def _check(root: Path) -> list[str]:
    store = LocalDirectoryStore(root)
    task = SegmentTask(KEY, None, STREAM, 0, OBJECT_KEY)
    settings = CheckSettings(
        spec=store, policy=policy(), check_retention=False, min_retention_days=None
    )
    return [p.kind for p in check_object(store, task, settings).problems]


def test_a_good_segment_has_no_problem(tmp_path: Path) -> None:
    (tmp_path / STREAM).mkdir()
    (tmp_path / KEY).write_bytes(segment(event_lines(2)).data)
    assert _check(tmp_path) == []


def test_a_symbolic_link_at_the_key_is_a_problem_of_that_object(tmp_path: Path) -> None:
    (tmp_path / STREAM).mkdir()
    target = tmp_path / "elsewhere.zst"
    target.write_bytes(segment(event_lines(2)).data)
    (tmp_path / KEY).symlink_to(target)
    assert _check(tmp_path) == ["malformed_segment"]


def test_a_fifo_at_the_key_is_a_problem_of_that_object(tmp_path: Path) -> None:
    (tmp_path / STREAM).mkdir()
    os.mkfifo(tmp_path / KEY)
    assert _check(tmp_path) == ["malformed_segment"]
