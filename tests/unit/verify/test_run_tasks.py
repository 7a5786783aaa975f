"""Where ``run_tasks`` checks segments: in this process for a small archive, in
worker processes from ``PROCESS_THRESHOLD`` segments or ``PROCESS_BYTES`` stored
bytes; and in this process through the caller's open store."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from audit_archiver.storage.localdir import LocalDirectoryStore
from audit_archiver.storage.specs import LocalSpec
from audit_archiver.verify import worker
from audit_archiver.verify.worker import CheckSettings, SegmentTask, run_tasks
from tests.helpers import build_stream
from tests.unit.verify.segment_helpers import policy


class _CountingStore(LocalDirectoryStore):
    """A folder store that counts the objects opened through it."""

    opened = 0

    def open_object(self, key: str, version_id: str | None = None, *, max_bytes: int) -> Any:
        type(self).opened += 1
        return super().open_object(key, version_id, max_bytes=max_bytes)


class _ProcessesInThreads(ThreadPoolExecutor):
    """Stands in for the process pool (records that it was chosen)."""

    started = 0

    def __init__(self, max_workers: int, mp_context: object = None) -> None:
        type(self).started += 1
        super().__init__(max_workers=max_workers)


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    build_stream(tmp_path, "s1", segments=5, per_segment=2, prefix="")
    monkeypatch.setattr(worker, "ProcessPoolExecutor", _ProcessesInThreads)
    monkeypatch.setattr(worker.os, "sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.setattr(worker, "CHUNK", 2)  # 5 segments: 3 chunks for 2 processes
    _ProcessesInThreads.started = 0
    _CountingStore.opened = 0
    return tmp_path


def _tasks(size: int) -> list[SegmentTask]:
    return [
        SegmentTask(f"s1/{n:012d}.ndjson.zst", None, "s1", n, None, size=size) for n in range(5)
    ]


def _settings(root: Path) -> CheckSettings:
    return CheckSettings(
        spec=LocalSpec(root), policy=policy(), check_retention=False, min_retention_days=None
    )


def test_a_small_archive_is_checked_here_through_the_callers_store(archive: Path) -> None:
    results = list(run_tasks(_tasks(1000), _settings(archive), 16, _CountingStore(archive)))
    assert [r.segment_seq for r in results] == [0, 1, 2, 3, 4]
    assert all(r.problems == () and r.events == 2 for r in results)
    assert _ProcessesInThreads.started == 0
    assert _CountingStore.opened == 5


def test_many_stored_bytes_go_to_worker_processes(archive: Path) -> None:
    big = worker.PROCESS_BYTES // 5 + 1
    results = list(run_tasks(_tasks(big), _settings(archive), 16, _CountingStore(archive)))
    assert [r.segment_seq for r in results] == [0, 1, 2, 3, 4]
    assert all(r.problems == () for r in results)
    assert _ProcessesInThreads.started == 1
    assert _CountingStore.opened == 0  # workers open their own store from the spec


def test_one_core_keeps_a_large_archive_here_in_chunks(
    archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker.os, "sched_getaffinity", lambda _pid: {0})
    big = worker.PROCESS_BYTES // 5 + 1
    results = list(run_tasks(_tasks(big), _settings(archive), 16, _CountingStore(archive)))
    assert [r.segment_seq for r in results] == [0, 1, 2, 3, 4]
    assert _ProcessesInThreads.started == 0
    assert _CountingStore.opened == 5
