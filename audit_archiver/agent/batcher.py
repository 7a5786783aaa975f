"""The batcher: decides when to seal, seals, and hands segments to the uploader.

A segment is sealed when the unsealed events reach ``max_events`` or
``max_bytes``, when the oldest of them has waited ``max_age`` seconds, at once
on :meth:`Batcher.stop` (shutdown), or, with a heartbeat, when nothing was
sealed for ``heartbeat`` seconds (an empty segment, so an idle stream still
shows it is alive). ``sealed_at`` never goes below the previous seal's (the
chain head's ``last_sealed_at``, so also not across a restart) or the batch's
last ``received_at``.

The batcher keeps no seq of its own: a batch's first seq is its first run's
(the spool numbered it), and a heartbeat continues the sealer's head.

Events arrive as runs (one per committed request); a run is split only where a
segment boundary falls inside it. The key-free half of sealing (header splice,
Merkle root, compression) runs on ``executor`` when one is given (the agent's
worker processes), so the agent's main process only signs and stores.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from datetime import datetime

from audit_archiver.agent.metrics import AgentMetrics
from audit_archiver.agent.sealer import StreamSealer
from audit_archiver.agent.spool import SealedFile, Spool
from audit_archiver.agent.uploader import Backoff
from audit_archiver.config import BatchLimits
from audit_archiver.core.encoding import format_timestamp
from audit_archiver.core.line import EventRun
from audit_archiver.core.segment import SegmentBody, prepare_runs_body
from audit_archiver.errors import (
    SignerError,
    SignerPermanentError,
    StorageError,
    StoragePermanentError,
)

__all__ = ["Batcher"]

log = logging.getLogger(__name__)
_MAX_IN_FLIGHT = 2  # segment bodies prepared at once (each up to max_bytes of lines)


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
        executor: Executor | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._sealer = sealer
        self._spool = spool
        self._limits = limits
        self._clock = clock
        self._monotonic = monotonic
        self._on_sealed = on_sealed
        self._metrics = metrics
        self._executor = executor
        self._backoff = backoff or Backoff()
        self._pending: deque[tuple[float, EventRun]] = deque()
        self._pending_events = 0
        self._pending_bytes = 0
        self._in_flight_events = 0
        self._condition = threading.Condition()
        self._stopping = False
        self._last_seal = monotonic()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)

    def start(self, recovered: list[EventRun]) -> None:
        """Start sealing; events recovered from the WAL count as already due."""
        due = self._monotonic() - self._limits.max_age
        self._add(recovered, due)
        self._thread.start()

    def add(self, runs: list[EventRun]) -> None:
        """Hand over freshly committed runs of events."""
        self._add(runs, self._monotonic())

    def _add(self, runs: list[EventRun], arrived: float) -> None:
        with self._condition:
            for run in runs:
                self._pending.append((arrived, run))
                self._pending_events += run.event_count
                self._pending_bytes += run.sealed_size()
            self._metrics.events_pending.set(self._pending_events + self._in_flight_events)
            self._condition.notify()

    def stop(self) -> None:
        """Seal what is pending, then stop the thread."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
        self._thread.join()

    def _due(self, *, idle: bool) -> tuple[bool, float | None]:
        """Whether to take a batch now; otherwise how long until a timer fires.

        A heartbeat is due only when ``idle`` (no batch being sealed).
        """
        limits = self._limits
        now = self._monotonic()
        if self._pending:
            if (
                self._stopping
                or self._pending_events >= limits.max_events
                or self._pending_bytes >= limits.max_bytes
            ):
                return True, None
            wait = self._pending[0][0] + limits.max_age - now
            return wait <= 0, max(wait, 0.0)
        if limits.heartbeat and idle and not self._stopping:
            wait = self._last_seal + limits.heartbeat - now
            return wait <= 0, max(wait, 0.0)
        return False, None

    def _take_batch(self) -> list[EventRun]:
        """Take the oldest runs up to the limits, splitting the last one if need be."""
        limits = self._limits
        batch: list[EventRun] = []
        events = size = 0
        while self._pending and events < limits.max_events:
            arrived, run = self._pending[0]
            run_size = run.sealed_size()
            if (
                run.event_count <= limits.max_events - events
                and size + run_size <= limits.max_bytes
            ):
                self._pending.popleft()
                batch.append(run)
                events += run.event_count
                size += run_size
                continue
            fit = 0
            for line_size in run.line_sizes()[: limits.max_events - events]:
                if (batch or fit) and size + line_size > limits.max_bytes:
                    break
                fit += 1
                size += line_size
            if fit == run.event_count:  # one line over max_bytes: it goes alone
                self._pending.popleft()
                batch.append(run)
                events += fit
            elif fit:
                head, tail = run.split(fit)
                self._pending[0] = (arrived, tail)
                batch.append(head)
                events += fit
            break
        self._pending_events -= events
        self._pending_bytes -= size
        return batch

    def _put_back(
        self, batch: list[EventRun], error: StorageError | SignerError, failures: int
    ) -> None:
        """Keep the batches that could not be sealed (signer unreachable or
        refusing, spool unwritable), every one in flight included, still due,
        and retry them after a backoff (at its cap for a permanent refusal:
        an operator may fix the key)."""
        permanent = isinstance(error, (SignerPermanentError, StoragePermanentError))
        delay = self._backoff.cap if permanent else self._backoff.delay(failures)
        log.log(
            logging.ERROR if permanent else logging.WARNING,
            "sealing failed; will retry",
            extra={
                "kind": "permanent" if permanent else "transient",
                "error": str(error),
                "retry_in_s": round(delay, 2),
            },
        )
        with self._condition:
            now = self._monotonic()
            due = now - self._limits.max_age
            self._in_flight_events = 0
            self._pending.extendleft((due, run) for run in reversed(batch))
            self._pending_events += sum(run.event_count for run in batch)
            self._pending_bytes += sum(run.sealed_size() for run in batch)
            deadline = now + delay
            while not self._stopping and (remaining := deadline - self._monotonic()) > 0:
                self._condition.wait(remaining)  # new events notify too: keep waiting

    def _run(self) -> None:
        """Take batches when due and seal them in order, preparing up to
        ``_MAX_IN_FLIGHT`` bodies at once while the oldest is signed and stored."""
        failures = 0
        in_flight: deque[tuple[list[EventRun], Future[SegmentBody] | None]] = deque()
        try:
            while True:
                with self._condition:
                    due, wait = self._due(idle=not in_flight)
                    while not due and not in_flight:
                        if self._stopping:
                            return
                        self._condition.wait(wait)
                        due, wait = self._due(idle=True)
                    if due and len(in_flight) < _MAX_IN_FLIGHT:
                        batch = self._take_batch()
                        self._in_flight_events += sum(run.event_count for run in batch)
                        in_flight.append((batch, self._start_prepare(batch)))
                        continue
                batch, prepared = in_flight.popleft()
                try:
                    self._seal(batch, prepared)
                    failures = 0
                except (StorageError, SignerError) as e:
                    failures += 1
                    unsealed = batch + [run for waiting, _ in in_flight for run in waiting]
                    in_flight.clear()
                    # A stop during the backoff cuts it: one more try at once. A
                    # failure while stopping already was that try.
                    retried_at_stop = self._stopping
                    self._put_back(unsealed, e, failures)
                    if retried_at_stop:
                        log.warning("stopping with unsealed events; they stay in the spool")
                        return
        except BaseException as e:
            log.exception("sealing failed; the agent stops")
            self.error = e

    def _start_prepare(self, batch: list[EventRun]) -> Future[SegmentBody] | None:
        """Start preparing the body of ``batch`` on the executor; None: prepare
        it in :meth:`_seal` (no executor, or a heartbeat)."""
        if self._executor is None or not batch:
            return None
        return self._executor.submit(
            prepare_runs_body, batch, batch[0].first_seq, self._sealer.compression
        )

    def _seal(self, batch: list[EventRun], prepared: Future[SegmentBody] | None) -> None:
        if prepared is not None:
            body = prepared.result()
        else:
            first_seq = batch[0].first_seq if batch else self._sealer.head.next_seq
            body = prepare_runs_body(batch, first_seq, self._sealer.compression)
        # Sign, store and hand over under the sealer's lock: a re-seal (ADR 7)
        # moves the head and swaps the spool's sealed set only between segments.
        with self._sealer.lock:
            self._sign_and_store(batch, body)

    def _sign_and_store(self, batch: list[EventRun], body: SegmentBody) -> None:
        head = self._sealer.head
        floor = max(head.last_sealed_at or "", batch[-1].received_at if batch else "")
        sealed_at = max(format_timestamp(self._clock()), floor)
        segment = self._sealer.seal_body(body, sealed_at)
        stored = self._spool.store_sealed(segment)
        with self._condition:
            self._in_flight_events -= segment.seal.event_count
            self._metrics.events_pending.set(self._pending_events + self._in_flight_events)
        self._last_seal = self._monotonic()
        self._metrics.segments_sealed.inc()
        log.info(
            "sealed segment",
            extra={
                "key": segment.key,
                "events": segment.seal.event_count,
                "bytes": len(segment.data),
            },
        )
        self._on_sealed(stored)
