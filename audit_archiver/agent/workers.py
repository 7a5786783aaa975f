"""The agent's worker processes: request bodies are parsed, validated and encoded,
and segment bodies prepared (header splice, Merkle root, compression), on every core.

Kept apart from the rest of the agent so that a worker imports only what its
tasks need (the pure core), not the HTTP server or the S3 client.
"""

from __future__ import annotations

import ctypes
import signal
from concurrent.futures import ProcessPoolExecutor, wait
from multiprocessing import get_context

__all__ = ["start_worker_pool"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the agent dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_worker_pool(workers: int) -> ProcessPoolExecutor | None:
    """Start ``workers`` processes (None for none) and wait until each has started.

    All are started now, not on demand under load: a worker starting up in
    the middle of a burst costs the burst its import time.
    """
    if workers <= 0:
        return None
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=_die_with_parent
    )
    wait([pool.submit(int) for _ in range(workers)])
    return pool
