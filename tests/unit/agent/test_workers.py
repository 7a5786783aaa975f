"""The worker pool: real spawned processes, and what happens when one dies."""

from __future__ import annotations

import os
import signal
import time

import pytest

from audit_archiver.agent.workers import start_worker_pool


def test_tasks_run_in_workers_and_in_this_process_once_they_are_gone() -> None:
    pool = start_worker_pool(1)
    assert pool is not None
    try:
        worker = pool.submit(os.getpid).result(timeout=30)
        assert worker != os.getpid()
        with pytest.raises(ValueError, match="invalid literal"):
            pool.submit(int, "x").result(timeout=30)
        in_flight = pool.submit(time.sleep, 0.5)
        os.kill(worker, signal.SIGKILL)
        assert in_flight.result(timeout=30) is None  # run again, in a thread
        assert pool.submit(os.getpid).result(timeout=30) == os.getpid()
        assert pool.submit(pow, 3, 3).result(timeout=30) == 27
    finally:
        pool.shutdown()


def test_no_workers_means_no_pool() -> None:
    assert start_worker_pool(0) is None
