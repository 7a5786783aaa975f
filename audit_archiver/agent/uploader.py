"""The uploader: ships sealed segments to S3, in order, until S3 confirms each.

One PutObject per segment with COMPLIANCE retention, a SHA-256 checksum and
``If-None-Match: *``. When S3 says the key exists (a retry after a crash or a
lost answer), the stored object is fetched and compared: identical bytes mean
the segment is done; different bytes mean another writer forked the stream,
which stops the agent. Any other failure is retried forever with capped
exponential backoff and jitter; :meth:`Uploader.wake` cuts a backoff short (at
shutdown, so pending segments get an immediate last try). Before the first
upload the bucket is checked for Object Lock, unless the agent could check it
at start-up.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from audit_archiver.agent import failpoints
from audit_archiver.agent.metrics import AgentMetrics
from audit_archiver.agent.spool import SealedFile, Spool
from audit_archiver.errors import (
    ConfigurationError,
    ObjectExistsError,
    StorageError,
    StreamForkedError,
)
from audit_archiver.storage.base import ObjectStore

__all__ = ["Backoff", "LockedStore", "Uploader"]

log = logging.getLogger(__name__)


class LockedStore(ObjectStore, Protocol):
    """An object store that can tell whether its bucket has Object Lock."""

    def object_lock_enabled(self) -> bool:
        """True when the bucket has Object Lock enabled."""
        ...


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: the n-th retry waits about base * 2**n, capped."""

    base: float = 0.2
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        ceiling: float = min(self.cap, self.base * 2.0 ** min(attempt, 30))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (jitter, not crypto)


def _next_whole_second(moment: datetime) -> datetime:
    """Round up: S3 keeps retain-until dates to the second, and a truncated date
    would fall short of ``sealed_at + retention``."""
    if moment.microsecond == 0:
        return moment
    return moment.replace(microsecond=0) + timedelta(seconds=1)


class Uploader:
    """Uploads sealed segments on its own thread."""

    def __init__(
        self,
        store: LockedStore,
        spool: Spool,
        *,
        retention_days: int,
        clock: Callable[[], datetime],
        metrics: AgentMetrics,
        backoff: Backoff | None = None,
        bucket_checked: bool = False,
    ) -> None:
        self._store = store
        self._spool = spool
        self._retention = timedelta(days=retention_days)
        self._clock = clock
        self._metrics = metrics
        self._backoff = backoff or Backoff()
        self._queue: deque[SealedFile] = deque()
        self._condition = threading.Condition()
        self._wake = threading.Event()
        self._stopping = False
        self._bucket_checked = bucket_checked
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="uploader", daemon=True)

    def start(self, sealed: list[SealedFile]) -> None:
        """Start uploading, beginning with segments recovered from the spool."""
        for item in sealed:
            self.enqueue(item)
        self._thread.start()

    def enqueue(self, sealed: SealedFile) -> None:
        """Queue a freshly sealed segment."""
        with self._condition:
            self._queue.append(sealed)
            self._metrics.segments_pending.set(len(self._queue))
            self._condition.notify_all()

    def wake(self) -> None:
        """Retry now instead of finishing the current backoff."""
        self._wake.set()

    def pending(self) -> int:
        """Segments not yet confirmed by S3."""
        with self._condition:
            return len(self._queue)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued segment is confirmed; False on timeout or failure."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._queue and self.error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._condition.wait(remaining)
            return not self._queue and self.error is None

    def stop(self) -> None:
        """Stop after the current attempt; unconfirmed segments stay in the spool."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while True:
                with self._condition:
                    while not self._queue and not self._stopping:
                        self._condition.wait()
                    if self._stopping:
                        return
                    head = self._queue[0]
                if self._upload_with_retries(head):
                    with self._condition:
                        self._queue.popleft()
                        self._metrics.segments_pending.set(len(self._queue))
                        self._condition.notify_all()
        except BaseException as e:
            log.exception("upload failed for good; the agent stops")
            self.error = e
            with self._condition:
                self._condition.notify_all()

    def _upload_with_retries(self, sealed: SealedFile) -> bool:
        attempt = 0
        while not self._stopping:
            try:
                self._ensure_bucket_locked()
                self._upload(sealed)
                return True
            except StorageError as e:
                self._metrics.upload_errors.inc()
                delay = self._backoff.delay(attempt)
                log.warning(
                    "upload failed; will retry",
                    extra={
                        "key": sealed.key,
                        "error": str(e),
                        "attempt": attempt + 1,
                        "retry_in_s": round(delay, 2),
                    },
                )
                self._wake.clear()
                self._wake.wait(delay)
                attempt += 1
                self._metrics.upload_retries.inc()
        return False

    def _ensure_bucket_locked(self) -> None:
        if self._bucket_checked:
            return
        if not self._store.object_lock_enabled():
            raise ConfigurationError(
                "the bucket does not have Object Lock enabled; refusing to"
                " upload segments that could be deleted or rewritten"
            )
        self._bucket_checked = True

    def _upload(self, sealed: SealedFile) -> None:
        data = self._spool.read_sealed(sealed)
        retain_until = _next_whole_second(self._clock() + self._retention)
        started = time.monotonic()
        try:
            self._store.put_new(sealed.key, data, retain_until=retain_until)
        except ObjectExistsError:
            existing = self._store.get(sealed.key)
            if existing != data:
                raise StreamForkedError(
                    f"another writer stored a different segment at {sealed.key}: two agents"
                    " share this stream id, or the spool was restored from an old copy",
                    key=sealed.key,
                ) from None
            log.info("segment was already in S3 (identical)", extra={"key": sealed.key})
        else:
            self._metrics.upload_latency.observe(time.monotonic() - started)
        failpoints.hit("after-put")
        self._spool.mark_uploaded(sealed)
        self._metrics.segments_uploaded.inc()
        self._metrics.last_upload.set(time.time())
        self._metrics.spool_bytes.set(self._spool.used_bytes())
        log.info(
            "uploaded segment",
            extra={"key": sealed.key, "bytes": len(data), "retain_until": retain_until.isoformat()},
        )
