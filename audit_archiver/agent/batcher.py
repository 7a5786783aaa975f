"""The batcher: decides when to seal, seals, and hands segments to the uploader.

A segment is sealed when the unsealed events reach ``max_events`` or
``max_bytes``, when the oldest of them has waited ``max_age`` seconds, at once
on :meth:`Batcher.flush` (shutdown), or, with a heartbeat, when nothing was
sealed for ``heartbeat`` seconds (an empty segment, so an idle stream still
shows it is alive). ``sealed_at`` never goes below the previous seal's or the
batch's last ``received_at``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat

from audit_archiver.agent.metrics import AgentMetrics
from audit_archiver.agent.sealer import StreamSealer
from audit_archiver.agent.spool import PendingEvent, SealedFile, Spool
from audit_archiver.core.encoding import format_timestamp
from audit_archiver.errors import StorageError

__all__ = ["BatchLimits", "Batcher"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchLimits:
    """When to seal. Defaults are documented in docs/OPERATIONS.md."""

    max_events: int = 10_000
    max_bytes: int = 8 << 20
    max_age: float = 60.0
    heartbeat: float | None = None


class Batcher:
    """Seals pending events into segments on its own thread."""

    def __init__(
        self,
        sealer: StreamSealer,
        spool: Spool,
        limits: BatchLimits,
        *,
        clock: Callable[[], datetime],
        on_sealed: Callable[[SealedFile], None],
        metrics: AgentMetrics,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sealer = sealer
        self._spool = spool
        self._limits = limits
        self._clock = clock
        self._monotonic = monotonic
        self._on_sealed = on_sealed
        self._metrics = metrics
        self._pending: deque[tuple[float, PendingEvent]] = deque()
        self._pending_bytes = 0
        self._condition = threading.Condition()
        self._flush = False
        self._stopping = False
        self._last_seal = monotonic()
        self._last_sealed_at = ""
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)

    def start(self, recovered: list[PendingEvent]) -> None:
        """Start sealing; events recovered from the WAL count as already due."""
        due = self._monotonic() - self._limits.max_age
        self._add(recovered, due)
        self._thread.start()

    def add(self, events: list[PendingEvent]) -> None:
        """Hand over freshly committed events."""
        self._add(events, self._monotonic())

    def _add(self, events: list[PendingEvent], arrived: float) -> None:
        with self._condition:
            self._pending.extend(zip(repeat(arrived), events))
            self._pending_bytes += sum(len(event.line) for event in events) + len(events)
            self._metrics.events_pending.set(len(self._pending))
            self._condition.notify()

    def flush(self) -> None:
        """Seal everything pending now (used at shutdown)."""
        with self._condition:
            self._flush = True
            self._condition.notify()

    def stop(self) -> None:
        """Seal what is pending, then stop the thread."""
        with self._condition:
            self._flush = True
            self._stopping = True
            self._condition.notify()
        self._thread.join()

    @property
    def pending(self) -> int:
        """Number of events not yet sealed."""
        return len(self._pending)

    def _due(self) -> tuple[bool, float | None]:
        """Whether to seal now; otherwise how long until a timer fires."""
        limits = self._limits
        now = self._monotonic()
        if self._pending:
            if (
                self._flush
                or len(self._pending) >= limits.max_events
                or self._pending_bytes >= limits.max_bytes
            ):
                return True, None
            wait = self._pending[0][0] + limits.max_age - now
            return wait <= 0, max(wait, 0.0)
        if limits.heartbeat and not self._stopping:
            wait = self._last_seal + limits.heartbeat - now
            return wait <= 0, max(wait, 0.0)
        return False, None

    def _take_batch(self) -> list[PendingEvent]:
        batch: list[PendingEvent] = []
        size = 0
        while self._pending and len(batch) < self._limits.max_events:
            line_size = len(self._pending[0][1].line) + 1
            if batch and size + line_size > self._limits.max_bytes:
                break
            batch.append(self._pending.popleft()[1])
            size += line_size
        self._pending_bytes -= size
        return batch

    def _put_back(self, batch: list[PendingEvent], error: StorageError, failures: int) -> None:
        """Keep a batch that could not be sealed (signer unreachable) and retry later."""
        delay = min(30.0, 0.2 * 2 ** min(failures, 8))
        log.warning("sealing failed; will retry", extra={"error": str(error), "retry_in_s": delay})
        with self._condition:
            now = self._monotonic()
            self._pending.extendleft((now, event) for event in reversed(batch))
            self._pending_bytes += sum(len(event.line) + 1 for event in batch)
            if not self._stopping:
                self._condition.wait(delay)

    def _run(self) -> None:
        failures = 0
        try:
            while True:
                with self._condition:
                    due, wait = self._due()
                    while not due:
                        if self._stopping:
                            return
                        self._flush = False
                        self._condition.wait(wait)
                        due, wait = self._due()
                    batch = self._take_batch()
                try:
                    self._seal(batch)
                    failures = 0
                except StorageError as e:
                    failures += 1
                    self._put_back(batch, e, failures)
                    if self._stopping:
                        log.warning("stopping with unsealed events; they stay in the spool")
                        return
        except BaseException as e:
            log.exception("sealing failed; the agent stops")
            self.error = e

    def _seal(self, batch: list[PendingEvent]) -> None:
        floor = max(self._last_sealed_at, batch[-1].received_at if batch else "")
        sealed_at = max(format_timestamp(self._clock()), floor)
        segment = self._sealer.seal([event.line for event in batch], sealed_at)
        stored = self._spool.store_sealed(segment)
        self._last_seal = self._monotonic()
        self._last_sealed_at = sealed_at
        self._metrics.segments_sealed.inc()
        self._metrics.events_pending.set(len(self._pending))
        log.info(
            "sealed segment",
            extra={"key": segment.key, "events": len(batch), "bytes": len(segment.data)},
        )
        self._on_sealed(stored)
