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


# Evaluated in a worker (a builtin and a string pickle under spawn): after an
# 8 MiB block is freed, is a new 1 MiB block mmapped? Only when the mmap
# threshold is fixed (glibc's dynamic threshold would have risen to 8 MiB).
_MMAPPED_AFTER_A_BIG_FREE = """(lambda ctypes: (lambda info: (
    info.restype.__name__,
    len(bytearray(8 << 20)), (before := info().hblks),
    (held := bytearray(1 << 20)), info().hblks - before, len(held)
)[4])(
    (lambda f: (setattr(f, 'restype', type('MallInfo2', (ctypes.Structure,), {'_fields_': [
        (n, ctypes.c_size_t) for n in 'arena ordblks smblks hblks hblkhd usmblks fsmblks'
        ' uordblks fordblks keepcost'.split()]})), f)[1])(ctypes.CDLL(None).mallinfo2)
))(__import__('ctypes'))"""


def test_the_allocator_is_tuned_in_the_agent_and_in_each_worker() -> None:
    from audit_archiver.agent.workers import tune_malloc

    if not tune_malloc():
        pytest.skip("no glibc mallopt here")
    pool = start_worker_pool(1)
    assert pool is not None
    try:
        # the worker's initializer must have tuned it: nothing here calls tune_malloc there
        assert pool.submit(eval, _MMAPPED_AFTER_A_BIG_FREE).result(timeout=30) == 1
    finally:
        pool.shutdown()
