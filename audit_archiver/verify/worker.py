"""Fetching and checking segments in parallel: threads for I/O, processes for CPU.

Work is cut into chunks of consecutive segments. A chunk runs in a worker
process (or in-process for small archives); inside, a few threads download
while others hash. Only small :class:`SegmentResult` objects travel back, so
memory stays bounded by the number of segments in flight times their size.
Trusted keys travel as DER bytes (key objects do not pickle) and each process
opens its own store from a :data:`~audit_archiver.storage.specs.StoreSpec`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

from cryptography.hazmat.primitives import serialization

from audit_archiver.core.signing import TrustedKey, load_trusted_key
from audit_archiver.errors import ObjectNotFoundError, TransportChecksumError
from audit_archiver.storage.base import ObjectStore
from audit_archiver.storage.specs import LocalSpec, S3Spec, StoreSpec
from audit_archiver.verify.problems import Notice, Problem
from audit_archiver.verify.retention import check_retention
from audit_archiver.verify.segment_check import SegmentResult, check_segment

__all__ = ["CheckSettings", "SegmentTask", "check_chunk", "run_tasks"]

CHUNK = 16
PROCESS_THRESHOLD = 64


@dataclass(frozen=True)
class SegmentTask:
    """One object version to fetch and check."""

    key: str
    version_id: str | None
    stream: str
    segment_seq: int
    expected_object_key: str | None


@dataclass(frozen=True)
class CheckSettings:
    """What every worker needs besides the tasks."""

    spec: StoreSpec | ObjectStore
    trusted_der: tuple[bytes, ...]
    check_retention: bool
    min_retention_days: int | None
    max_body_bytes: int
    threads: int


def trusted_as_der(trusted: dict[str, TrustedKey]) -> tuple[bytes, ...]:
    """Serialise trusted keys for worker processes."""
    return tuple(
        key.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for key in trusted.values()
    )


_STORES: dict[StoreSpec, ObjectStore] = {}
_KEYS: dict[tuple[bytes, ...], dict[str, TrustedKey]] = {}


def _context(settings: CheckSettings) -> tuple[ObjectStore, dict[str, TrustedKey]]:
    spec = settings.spec
    if isinstance(spec, (LocalSpec, S3Spec)):
        store = _STORES.get(spec)
        if store is None:
            store = _STORES[spec] = spec.open()
    else:
        store = spec
    keys = _KEYS.get(settings.trusted_der)
    if keys is None:
        loaded = [load_trusted_key(der) for der in settings.trusted_der]
        keys = _KEYS[settings.trusted_der] = {k.key_id: k for k in loaded}
    return store, keys


def _check_one(task: SegmentTask, settings: CheckSettings) -> SegmentResult:
    store, keys = _context(settings)
    try:
        data, info = store.fetch(task.key, task.version_id)
    except (ObjectNotFoundError, TransportChecksumError) as e:
        kind = "checksum_mismatch" if isinstance(e, TransportChecksumError) else "malformed_segment"
        problem = Problem(
            kind,
            task.key,
            f"cannot be read intact: {e}",
            stream=task.stream,
            expected=getattr(e, "expected", None),
            found=getattr(e, "found", None),
        )
        return SegmentResult(
            task.key,
            task.stream,
            task.segment_seq,
            0,
            problems=(problem,),
            version_id=task.version_id,
        )
    result = check_segment(
        task.key,
        data,
        keys,
        stream=task.stream,
        segment_seq=task.segment_seq,
        expected_object_key=task.expected_object_key,
        max_body_bytes=settings.max_body_bytes,
    )
    problems: list[Problem] = list(result.problems)
    notices: list[Notice] = []
    if settings.check_retention:
        extra, notices = check_retention(
            task.key, task.stream, result.seal, info, settings.min_retention_days
        )
        problems += extra
    return dataclasses.replace(
        result,
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
    tasks: Sequence[SegmentTask], settings: CheckSettings, workers: int
) -> Iterator[SegmentResult]:
    """Yield the result of every task, in task order, using up to ``workers`` downloads
    at once spread over the machine's cores.

    Raises:
        StorageError: the store failed.
    """
    chunks = [tasks[i : i + CHUNK] for i in range(0, len(tasks), CHUNK)]
    processes = min(len(os.sched_getaffinity(0)), workers, len(chunks))
    executor: Executor
    picklable = isinstance(settings.spec, (LocalSpec, S3Spec))
    if len(tasks) < PROCESS_THRESHOLD or processes <= 1 or not picklable:
        threads = dataclasses.replace(settings, threads=1)
        executor = ThreadPoolExecutor(max_workers=max(1, workers))
        with executor:
            for results in executor.map(lambda c: check_chunk(c, threads), chunks):
                yield from results
        return
    per_process = dataclasses.replace(settings, threads=max(1, -(-workers // processes)))
    executor = ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn"))
    with executor:
        for results in executor.map(check_chunk, chunks, [per_process] * len(chunks)):
            yield from results
