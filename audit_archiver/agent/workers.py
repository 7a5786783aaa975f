"""The agent's worker processes: request bodies are parsed, validated and encoded,
and segment bodies prepared (header splice, Merkle root, compression), on every core.

Kept apart from the rest of the agent so that a worker imports only what its
tasks need (the pure core), not the HTTP server or the S3 client.

Memory: the agent and each worker tune glibc's allocator (:func:`tune_malloc`)
before they handle a body. Request bodies and segment bodies are blocks of
megabytes; glibc's default raises its mmap threshold after the first such
block is freed (up to 32 MiB), so later ones come from the heap and stay
resident after they are freed, and every thread may get an arena of its own
(8 per core). With the threshold fixed at 256 KiB and at most two arenas, a
freed body goes back to the system at once: measured with
``tests/integration/test_agent_body.py``, the peak of the agent's process
tree under worst-case bodies fell from 577 to 424 MiB with this alone.
``MALLOC_ARENA_MAX`` / ``MALLOC_MMAP_THRESHOLD_`` in the environment win.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import (
    Executor,
    Future,
    InvalidStateError,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, ParamSpec, TypeVar

__all__ = ["WorkerPool", "start_worker_pool", "tune_malloc"]

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1
_P = ParamSpec("_P")
_T = TypeVar("_T")
_M_MMAP_THRESHOLD = -3  # mallopt parameters (glibc's malloc.h)
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 256 << 10
"""Allocations of this size or more are mmapped, so freeing them returns the memory."""
ARENA_MAX = 2
"""glibc malloc arenas at most (the default is 8 per core, one per thread that needs one)."""


TASK_MODULES = ("audit_archiver.agent.encodings", "audit_archiver.core.segment")
"""The modules whose functions the agent hands to its workers (request bodies,
segment bodies): each worker imports them before the agent takes traffic."""


def tune_malloc() -> bool:
    """Fix glibc's mmap threshold and cap its arenas in this process (see the
    module docstring); False where there is no glibc ``mallopt`` (musl, macOS).

    Settings already given in the environment are left as they are.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    if "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(_M_ARENA_MAX, ARENA_MAX)
    return True


def _init_worker() -> None:
    """Ask Linux to SIGKILL this worker when the agent dies, even by SIGKILL;
    tune the allocator like the agent's; import :data:`TASK_MODULES`."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_malloc()
    for name in TASK_MODULES:  # the agent imported them already: they exist
        importlib.import_module(name)


def _copy_outcome(source: Future[Any], target: Future[Any]) -> None:
    if source.cancelled():
        target.cancel()
        return
    error = source.exception()
    try:
        if error is not None:
            target.set_exception(error)
        else:
            target.set_result(source.result())
    except InvalidStateError:
        pass  # the caller cancelled it meanwhile


class WorkerPool(Executor):
    """Worker processes that, once gone, hand their work to threads of this process.

    A worker killed by the OOM killer breaks a process pool for good; every
    task after it (and those in flight) would fail. Here they run in this
    process instead, more slowly, and the agent carries on.
    """

    def __init__(self, workers: int) -> None:
        self._processes = ProcessPoolExecutor(
            max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker
        )
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="worker")
        self._broken = threading.Event()

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        """Run ``fn`` in a worker process, or in a thread once the processes are gone."""
        if not self._broken.is_set():
            try:
                in_process = self._processes.submit(fn, *args, **kwargs)
            except BrokenProcessPool:
                self._give_up()
            else:
                outcome: Future[_T] = Future()
                in_process.add_done_callback(
                    lambda done: self._relay(done, outcome, lambda: fn(*args, **kwargs))
                )
                return outcome
        return self._threads.submit(fn, *args, **kwargs)

    def _relay(self, done: Future[_T], outcome: Future[_T], task: Callable[[], _T]) -> None:
        if not done.cancelled() and isinstance(done.exception(), BrokenProcessPool):
            self._give_up()
            try:
                done = self._threads.submit(task)
            except RuntimeError as e:  # shut down meanwhile
                outcome.set_exception(e)
                return
            done.add_done_callback(lambda again: _copy_outcome(again, outcome))
            return
        _copy_outcome(done, outcome)

    def _give_up(self) -> None:
        if not self._broken.is_set():
            self._broken.set()
            log.warning("worker processes are gone; encoding and sealing in the main process")

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the processes and the threads."""
        self._processes.shutdown(wait, cancel_futures=cancel_futures)
        self._threads.shutdown(wait, cancel_futures=cancel_futures)


def start_worker_pool(workers: int) -> WorkerPool | None:
    """Tune this process's allocator (:func:`tune_malloc`), then start
    ``workers`` processes (None for none) and wait until each has started and
    imported :data:`TASK_MODULES`.

    All are started and warmed now, not on demand under load: a worker
    starting up, or importing the format parsers, in the middle of a burst
    costs the burst that time.
    """
    tune_malloc()
    if workers <= 0:
        return None
    pool = WorkerPool(workers)
    wait([pool.submit(int) for _ in range(workers)])
    return pool
