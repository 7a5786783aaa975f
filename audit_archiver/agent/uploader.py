"""The uploader: ships sealed segments to S3, in order, until S3 confirms each.

One PutObject per segment with COMPLIANCE retention, a SHA-256 checksum and
``If-None-Match: *``. When S3 says the key exists (a retry after a crash or a
lost answer, or another writer), the *original* (oldest) version at the key is
read and compared, never the latest (ADR 3). A put that succeeded is checked
the same way, from the listing (one ListObjectVersions of the key): S3 accepts
``If-None-Match: *`` over a key whose latest entry is a delete marker, so
another writer's object could be the original under this agent's version:

- identical bytes: the segment is done;
- a segment of this stream signed by this agent's own (or a previous) key that
  names the key, with other bytes: a true fork (two agents share the stream
  id, or an old spool was restored) that stops the agent (exit 1);
- anything else is a foreign object (ADR 7): it is reported (metric, JSON log
  without its content, ``/readyz`` alert) and stepped over: every sealed
  segment waiting in the spool is re-sealed under the next numbers (same
  bodies, the first linking to the last segment this agent wrote), crash-safely
  (:meth:`~audit_archiver.agent.spool.Spool.replace_sealed`), and uploading goes on.

Failures are split by what to do about them. Transient ones (S3 unreachable,
timeouts, resets, 5xx, throttling) are retried with capped exponential backoff
and jitter. Permanent ones (AccessDenied, NoSuchBucket, wrong region, bad
credentials, SSE-KMS key disabled) are retried at the backoff cap, since an
operator may fix them, and reported at once through :attr:`Uploader.permanent_error`
(``/readyz``). Either kind is logged at most once per backoff cap, with the
number of failures since the last line, and counted in
``audit_archiver_storage_errors_total{kind}``.

:meth:`Uploader.wake` makes the next attempt start at once and restarts the
backoff from its base; a wake-up is never lost, whatever the uploader is doing
when it comes (the shutdown path relies on it). Before the first upload the
bucket is checked for Object Lock, unless the agent could check it at start-up.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from audit_archiver.agent import failpoints
from audit_archiver.agent.metrics import AgentMetrics
from audit_archiver.agent.sealer import (
    ForeignObject,
    StreamSealer,
    authenticate_own,
    original_version,
    read_prefix,
)
from audit_archiver.agent.spool import SealedFile, Spool
from audit_archiver.core.layout import parse_segment_key
from audit_archiver.core.signing import TrustedKey
from audit_archiver.errors import (
    ConfigurationError,
    ObjectExistsError,
    StorageError,
    StoragePermanentError,
    StorageUnavailableError,
    StreamForkedError,
)
from audit_archiver.storage.base import ObjectStore

__all__ = ["Backoff", "ErrorReporter", "LockedStore", "Uploader"]

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


def error_kind(error: BaseException) -> str:
    """``permanent`` for a refusal only an operator can fix, else ``transient``."""
    return "permanent" if isinstance(error, StoragePermanentError) else "transient"


class ErrorReporter:
    """Counts storage failures by kind and logs them at most once per ``period``.

    The metric counts every failure; the log line carries how many came since
    the previous line, so a long outage costs one line per backoff cap.
    """

    def __init__(self, metrics: AgentMetrics, period: float, what: str) -> None:
        self._metrics = metrics
        self._period = period
        self._what = what
        self._last_logged: float | None = None
        self._since_logged = 0

    def failed(self, error: StorageError, **fields: object) -> None:
        """Count ``error`` and log it unless a line went out less than ``period`` ago."""
        kind = error_kind(error)
        self._metrics.storage_errors.labels(kind).inc()
        self._since_logged += 1
        now = time.monotonic()
        if self._last_logged is not None and now - self._last_logged < self._period:
            return
        log.log(
            logging.ERROR if kind == "permanent" else logging.WARNING,
            f"{self._what} failed; will retry",
            extra={"kind": kind, "error": str(error), "failures": self._since_logged, **fields},
        )
        self._last_logged = now
        self._since_logged = 0

    def recovered(self) -> None:
        """Forget the failures: the next one is logged at once."""
        if self._last_logged is not None:
            log.info(f"{self._what} works again")
        self._last_logged = None
        self._since_logged = 0


def _next_whole_second(moment: datetime) -> datetime:
    """Round up: S3 keeps retain-until dates to the second, and a truncated date
    would fall short of ``sealed_at + retention``."""
    if moment.microsecond == 0:
        return moment
    return moment.replace(microsecond=0) + timedelta(seconds=1)


class _Foreign(Exception):  # noqa: N818 (a signal inside this module, not an error)
    def __init__(self, found: ForeignObject) -> None:
        super().__init__(found.key)
        self.found = found


class Uploader:
    """Uploads sealed segments on its own thread.

    ``sealer`` (the batcher's) re-seals the waiting segments when a foreign
    object holds the next key; ``trusted_keys`` (own and previous) tell a true
    fork from a foreign object; ``on_foreign`` hears of each foreign object.
    """

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
        sealer: StreamSealer | None = None,
        trusted_keys: Sequence[TrustedKey] = (),
        on_foreign: Callable[[ForeignObject], None] | None = None,
    ) -> None:
        self._store = store
        self._spool = spool
        self._retention = timedelta(days=retention_days)
        self._clock = clock
        self._metrics = metrics
        self._backoff = backoff or Backoff()
        self._sealer = sealer
        self._trusted_keys = tuple(trusted_keys)
        self._on_foreign = on_foreign
        self._queue: deque[SealedFile] = deque()
        self._condition = threading.Condition()
        self._wakes = 0
        self._stopping = False
        self._bucket_checked = bucket_checked
        self._errors = ErrorReporter(metrics, self._backoff.cap, "upload")
        self.permanent_error: str | None = None
        """The last permanent refusal while it lasts (None once an upload succeeds)."""
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
        """Retry now instead of finishing the current backoff, and restart the
        backoff from its base. Never lost: a wake-up during an attempt cuts
        the backoff after it."""
        with self._condition:
            self._wakes += 1
            self._condition.notify_all()

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
                self._condition.wait(min(remaining, 0.5))
            return not self._queue and self.error is None

    def stop(self) -> None:
        """Stop after the current attempt; unconfirmed segments stay in the spool."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
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
                        if self._queue and self._queue[0] is head:
                            self._queue.popleft()
                        self._metrics.segments_pending.set(len(self._queue))
                        self._condition.notify_all()
        except BaseException as e:
            log.exception("upload failed for good; the agent stops")
            self.error = e
            with self._condition:
                self._condition.notify_all()

    def _upload_with_retries(self, sealed: SealedFile) -> bool:
        """Upload ``sealed``; False when stopping, or when it was re-sealed (the
        queue then starts with its replacement)."""
        attempt = 0
        while not self._stopping:
            with self._condition:
                wakes = self._wakes
            try:
                self._ensure_bucket_locked()
                self._upload(sealed)
            except _Foreign as e:
                self._step_over(e.found, sealed)
                return False
            except StorageError as e:
                permanent = isinstance(e, StoragePermanentError)
                self.permanent_error = str(e) if permanent else None
                self._metrics.upload_errors.inc()
                delay = self._backoff.cap if permanent else self._backoff.delay(attempt)
                self._errors.failed(e, key=sealed.key, retry_in_s=round(delay, 2))
                if self._sleep(delay, wakes):
                    attempt = 0
                else:
                    attempt += 1
                self._metrics.upload_retries.inc()
            else:
                self.permanent_error = None
                self._errors.recovered()
                return True
        return False

    def _sleep(self, delay: float, wakes: int) -> bool:
        """Wait ``delay`` seconds unless woken (since ``wakes`` was read) or
        stopping; True when woken."""
        deadline = time.monotonic() + delay
        with self._condition:
            while self._wakes == wakes and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
            return self._wakes != wakes

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
            stored = self._store.put_new(sealed.key, data, retain_until=retain_until)
        except ObjectExistsError:
            self._compare_with_original(sealed, data, None)
            log.info("segment was already in S3 (identical)", extra={"key": sealed.key})
        else:
            self._metrics.upload_latency.observe(time.monotonic() - started)
            if stored.version_id is not None:
                # S3 stores a new version over a key whose latest entry is a delete
                # marker: only the listing tells whether ours is the original.
                self._compare_with_original(sealed, data, stored.version_id)
        failpoints.hit("after-put")
        self._spool.mark_uploaded(sealed)
        self._metrics.segments_uploaded.inc()
        self._metrics.last_upload.set(time.time())
        self._metrics.spool_bytes.set(self._spool.used_bytes())
        log.info(
            "uploaded segment",
            extra={"key": sealed.key, "bytes": len(data), "retain_until": retain_until.isoformat()},
        )

    def _compare_with_original(self, sealed: SealedFile, data: bytes, ours: str | None) -> None:
        """Return if the original version at the key is ``data`` (or is ``ours``,
        the version this upload just created).

        Raises:
            StreamForkedError: it is another segment signed with this stream's key.
            _Foreign: it is anything else.
            StorageUnavailableError: S3 lists no version at the key yet.
        """
        key = sealed.key
        original = original_version(self._store, key)
        if original is None:
            raise StorageUnavailableError(f"S3 lists no version of {key} yet")
        if ours is not None and original.version_id == ours:
            return
        if original.size == len(data):
            stored = self._store.get(key, original.version_id)
            if stored == data:
                return
        else:
            stored = read_prefix(self._store, original)
        location = parse_segment_key(key)
        prefix = location.prefix if location is not None else ""
        checked = authenticate_own(stored, key, prefix, sealed.seal.stream, self._trusted_keys)
        if not isinstance(checked, str):
            raise StreamForkedError(
                f"another writer stored a different segment at {key}, signed with this"
                " stream's key: two agents share this stream id, or the spool was restored"
                " from an old copy",
                key=key,
                expected=sealed.seal_hash,
                found=checked[1],
            )
        raise _Foreign(ForeignObject(key, original.version_id, original.size, checked))

    def _step_over(self, found: ForeignObject, blocked: SealedFile) -> None:
        """Re-seal every waiting segment from the blocked key's number + 1 on (ADR 7).

        Raises:
            StreamForkedError: there is no sealer to re-seal with (a bare uploader).
            StorageError: the spool cannot be written (the agent stops; the old
                set stays in the spool and the next start tries again).
        """
        if self._on_foreign is not None:
            self._on_foreign(found)
        else:
            self._metrics.foreign_objects.inc()
            log.error(
                "foreign object at the stream's next segment key",
                extra={"key": found.key, "version_id": found.version_id, "size": found.size},
            )
        if self._sealer is None:
            raise StreamForkedError(f"an object this agent did not write holds {found.key}")
        with self._sealer.lock:
            with self._condition:
                waiting = list(self._queue)
            if not waiting or waiting[0] is not blocked:
                raise RuntimeError("the upload queue changed under a re-seal")
            datas = [self._spool.read_sealed(item) for item in waiting]
            segments = self._sealer.reseal(datas, segment_seq=blocked.segment_seq + 1)
            files = self._spool.replace_sealed(segments)
            with self._condition:
                self._queue = deque(files)
                self._metrics.segments_pending.set(len(self._queue))
        log.info(
            "re-sealed the waiting segments after a foreign object",
            extra={"skipped": found.key, "segments": len(files), "next_key": files[0].key},
        )
