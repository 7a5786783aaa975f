"""Fetching and checking segments in parallel: threads for I/O, processes for CPU.

Work is cut into chunks of consecutive segments. A chunk runs in a worker
process (or in-process for small archives); inside, a few threads download
while others hash. Only small :class:`SegmentResult` objects travel back.
Each object is read as a bounded stream (``open_object(max_bytes=...)``) and
checked as it arrives, so memory per download is O(chunk + zstd window + one
line), not O(object). The trust policy pickles (its keys travel as DER) and
each process opens its own store from a
:data:`~audit_archiver.storage.specs.StoreSpec`, once (a lock guards the cache:
the download threads share one client).

Total: whatever happens while one object is fetched or checked becomes a
problem on that object and the run goes on, except a failure of the store
itself (:class:`~audit_archiver.errors.StorageError`: the run cannot be trusted
to have seen everything), which stops the run. An object over the size limit
is ``object_too_large``; bytes that fail the store's checksum are
``checksum_mismatch``; a vanished version and any unexpected exception are
``malformed_segment`` with a short reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

from audit_archiver.core.trust import TrustPolicy
from audit_archiver.errors import (
    IntegrityError,
    ObjectNotFoundError,
    ObjectRefusedError,
    ObjectTooLargeError,
    StorageError,
    TransportChecksumError,
)
from audit_archiver.storage.base import ObjectInfo, ObjectStore, ObjectStream
from audit_archiver.storage.specs import LocalSpec, S3Spec, StoreSpec
from audit_archiver.verify.problems import Notice, Problem
from audit_archiver.verify.retention import check_retention
from audit_archiver.verify.segment_check import Limits, LineSink, SegmentResult, check_segment
from audit_archiver.verify.timestamps import TimestampPolicy

__all__ = [
    "CheckSettings",
    "SegmentTask",
    "check_chunk",
    "check_object",
    "run_tasks",
]

CHUNK = 16
PROCESS_THRESHOLD = 64
"""Segments from which a run uses worker processes whatever their size."""
PROCESS_BYTES = 32 << 20
"""Stored bytes from which a run uses worker processes: below both thresholds,
starting a process (its imports, its own S3 client) costs more than the second
core gains, so a small archive is checked in this process, in threads."""


@dataclass(frozen=True)
class SegmentTask:
    """One object version to fetch and check."""

    key: str
    version_id: str | None
    stream: str
    segment_seq: int
    expected_object_key: str | None
    size: int = 0
    """The stored size the listing gave (0: unknown); it only decides where work runs."""


@dataclass(frozen=True)
class CheckSettings:
    """What every worker needs besides the tasks (pickles for worker processes)."""

    spec: StoreSpec | ObjectStore
    policy: TrustPolicy
    check_retention: bool
    min_retention_days: int | None
    limits: Limits = field(default_factory=Limits)
    deep: bool = False
    threads: int = 1
    timestamps: TimestampPolicy = field(default_factory=TimestampPolicy)


_STORES: dict[StoreSpec, ObjectStore] = {}
_STORES_LOCK = threading.Lock()


def _store(settings: CheckSettings) -> ObjectStore:
    """This process's store for ``settings.spec``: opened once, shared by its threads."""
    spec = settings.spec
    if not isinstance(spec, (LocalSpec, S3Spec)):
        return spec
    with _STORES_LOCK:
        store = _STORES.get(spec)
        if store is None:
            store = _STORES[spec] = spec.open()
    return store


def _problem_result(task: SegmentTask, kind: str, detail: str, error: object) -> SegmentResult:
    problem = Problem(
        kind,
        task.key,
        detail,
        stream=task.stream,
        expected=getattr(error, "expected", None),
        found=getattr(error, "found", None),
    )
    return SegmentResult(
        task.key, task.stream, task.segment_seq, 0, problems=(problem,), version_id=task.version_id
    )


def _short(error: BaseException) -> str:
    """A one-line reason for an unexpected exception (no traceback)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def check_object(
    store: ObjectStore,
    task: SegmentTask,
    settings: CheckSettings,
    *,
    on_line: LineSink | None = None,
) -> SegmentResult:
    """Fetch and check one object version; only a store failure raises.

    The one total check of an object, shared by ``verify``'s workers, ``query``
    and ``prove``: an object over the size limit is ``object_too_large``, bytes
    that fail the store's checksum are ``checksum_mismatch``, a vanished version
    or any other exception is ``malformed_segment`` (a short reason, no
    traceback). ``on_line`` sees every event line while it is checked (see
    :func:`~audit_archiver.verify.segment_check.check_segment`); what it kept
    may be trusted only when the result has no problem. ``settings.spec`` is
    not used (``store`` is the store to read).

    Raises:
        StorageError: the store failed (not a problem of this object).
    """
    try:
        return _fetch_and_check(store, task, settings, on_line)
    except ObjectTooLargeError as e:
        return _problem_result(task, "object_too_large", f"not read: {e}", e)
    except TransportChecksumError as e:
        return _problem_result(task, "checksum_mismatch", f"cannot be read intact: {e}", e)
    except (ObjectNotFoundError, ObjectRefusedError) as e:
        return _problem_result(task, "malformed_segment", f"cannot be read: {e}", None)
    except StorageError:
        raise
    except Exception as e:  # the verifier is total: any failure is a finding on the object
        detail = f"check failed: {_short(e)}"
        if isinstance(e, IntegrityError):
            detail = f"cannot be read intact: {_short(e)}"
        return _problem_result(task, "malformed_segment", detail, None)


def _check_one(task: SegmentTask, settings: CheckSettings) -> SegmentResult:
    return check_object(_store(settings), task, settings)


class _Hashing:
    """Reads through a stream, hashing every byte (the object's content digest)."""

    def __init__(self, stream: ObjectStream) -> None:
        self._stream = stream
        self.digest = hashlib.sha256()

    def read(self, size: int, /) -> bytes:
        data = self._stream.read(size)
        self.digest.update(data)
        return data


def _fetch_and_check(
    store: ObjectStore, task: SegmentTask, settings: CheckSettings, on_line: LineSink | None
) -> SegmentResult:
    limits = settings.limits
    with store.open_object(task.key, task.version_id, max_bytes=limits.max_object_bytes) as stream:
        hashing = _Hashing(stream)
        result = check_segment(
            task.key,
            hashing,
            settings.policy,
            stream_id=task.stream,
            segment_seq=task.segment_seq,
            expected_object_key=task.expected_object_key,
            limits=limits,
            deep=settings.deep,
            timestamps=settings.timestamps,
            on_line=on_line,
        )
        while hashing.read(1 << 16):  # to the end: the store's checksum is checked there
            pass
        info: ObjectInfo = stream.info
    problems: list[Problem] = list(result.problems)
    notices: list[Notice] = []
    if settings.check_retention:
        extra, notices = check_retention(
            task.key, task.stream, result.seal, info, settings.min_retention_days
        )
        problems += extra
    return dataclasses.replace(
        result,
        object_sha256=hashing.digest.hexdigest(),
        problems=tuple(problems),
        notices=tuple(notices),
        version_id=info.version_id or task.version_id,
    )


def check_chunk(tasks: Sequence[SegmentTask], settings: CheckSettings) -> list[SegmentResult]:
    """Fetch and check a chunk of segments with a few threads (runs in a worker).

    Raises:
        StorageError: the store failed (not an integrity problem).
    """
    if settings.threads <= 1 or len(tasks) == 1:
        return [_check_one(task, settings) for task in tasks]
    with ThreadPoolExecutor(max_workers=min(settings.threads, len(tasks))) as pool:
        return list(pool.map(lambda task: _check_one(task, settings), tasks))


def run_tasks(
    tasks: Sequence[SegmentTask],
    settings: CheckSettings,
    workers: int,
    store: ObjectStore | None = None,
) -> Iterator[SegmentResult]:
    """Yield the result of every task, in task order, using up to ``workers`` downloads
    at once spread over the machine's cores.

    ``store`` (the caller's, already open) serves the downloads made in this
    process; worker processes open their own from ``settings.spec``.

    Raises:
        StorageError: the store failed.
    """
    chunks = [tasks[i : i + CHUNK] for i in range(0, len(tasks), CHUNK)]
    processes = min(len(os.sched_getaffinity(0)), workers, len(chunks))
    small = len(tasks) < PROCESS_THRESHOLD and sum(task.size for task in tasks) < PROCESS_BYTES
    picklable = isinstance(settings.spec, (LocalSpec, S3Spec))
    if small or processes <= 1 or not picklable:
        here = dataclasses.replace(settings, threads=1, spec=store or settings.spec)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as threads:
            if small:  # one task a thread: all of a small archive's downloads in flight
                yield from threads.map(lambda task: _check_one(task, here), tasks)
            else:  # bounded: a future per chunk, not per segment
                for results in threads.map(lambda chunk: check_chunk(chunk, here), chunks):
                    yield from results
        return
    per_process = dataclasses.replace(settings, threads=max(1, -(-workers // processes)))
    with ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn")) as executor:
        for results in executor.map(check_chunk, chunks, [per_process] * len(chunks)):
            yield from results
