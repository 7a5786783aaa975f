"""Group commit: numbering accepted events and making them durable together.

Requests hand validated events to :class:`Committer`; one thread takes every
request waiting, gives the group one ``received_at`` (never earlier than the
previous group's, so a clock step back cannot make time regress) and has the
spool number them (gap-free ``seq``; the spool is the only place that counts
seqs) and append them to its WAL with one fsync for the whole group, then
answers every request of the group. Concurrent requests share
an fsync; a request over the spool cap is refused on its own with
:class:`~audit_archiver.errors.SpoolFullError`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime

from audit_archiver.agent import failpoints
from audit_archiver.agent.metrics import AgentMetrics
from audit_archiver.agent.spool import Spool
from audit_archiver.core.encoding import format_timestamp
from audit_archiver.core.line import EncodedEvents, EventRun
from audit_archiver.errors import SpoolFullError

__all__ = ["Accepted", "Committer"]

log = logging.getLogger(__name__)
_RECORD_OVERHEAD = 96  # a WAL record's header line, at most


@dataclass(frozen=True)
class Accepted:
    """The answer to one acknowledged request.

    ``first_seq``/``last_seq`` are None when the events were made durable
    before the stream's chain head was known (a fresh spool while S3 is
    unreachable): the spool numbers them once the head is read (ADR 4).
    """

    accepted: int
    first_seq: int | None
    last_seq: int | None


@dataclass
class _Request:
    events: EncodedEvents
    future: Future[Accepted]


class Committer:
    """The single writer of the WAL."""

    def __init__(
        self,
        spool: Spool,
        *,
        max_spool_bytes: int,
        headroom: int,
        clock: Callable[[], datetime],
        on_committed: Callable[[list[EventRun]], None],
        metrics: AgentMetrics,
    ) -> None:
        self._spool = spool
        self._max_spool_bytes = max_spool_bytes
        self._headroom = headroom
        self._clock = clock
        self._on_committed = on_committed
        self._metrics = metrics
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._last_received = ""
        self._thread = threading.Thread(target=self._run, name="committer", daemon=True)

    def start(self, last_received_at: str | None) -> None:
        """Start the writer thread; ``received_at`` never goes below ``last_received_at``."""
        self._last_received = last_received_at or ""
        self._thread.start()

    def submit(self, events: EncodedEvents) -> Future[Accepted]:
        """Queue encoded events; the future resolves once they are fsync'd."""
        future: Future[Accepted] = Future()
        self._queue.put(_Request(events, future))
        return future

    def stop(self) -> None:
        """Commit what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def over_cap(self) -> bool:
        """True while a request of ``headroom`` bytes might not fit under the cap."""
        return self._spool.used_bytes() + self._headroom > self._max_spool_bytes

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            group = [first]
            while not self._queue.empty():
                group.append(self._queue.get_nowait())
            stop = None in group
            self._commit([r for r in group if r is not None])
            if stop:
                return

    def _commit(self, group: list[_Request]) -> None:
        if not group:
            return
        now = format_timestamp(self._clock())
        received_at = max(now, self._last_received)
        taken: list[_Request] = []
        budget = self._max_spool_bytes - self._spool.used_bytes()
        for request in group:
            events = request.events
            size = len(events.data) + _RECORD_OVERHEAD
            if size > budget:
                self._metrics.events_rejected.labels("spool_full").inc(events.event_count)
                request.future.set_exception(SpoolFullError("the spool is full"))
                continue
            if events.event_count == 0:
                request.future.set_exception(ValueError("no events to commit"))
                continue
            taken.append(request)
            budget -= size
        if not taken:
            return
        try:
            runs = self._spool.append([request.events for request in taken], received_at)
        except Exception as e:
            log.exception("WAL append failed; refusing the group")
            for request in taken:
                request.future.set_exception(e)
            return
        self._last_received = received_at
        failpoints.hit("before-ack")
        self._metrics.events_accepted.inc(sum(r.events.event_count for r in taken))
        if runs is None:  # durable, numbered once the chain head is known
            self._metrics.bytes_accepted.inc(sum(len(r.events.data) for r in taken))
            self._metrics.events_pending.inc(sum(r.events.event_count for r in taken))
            for request in taken:
                request.future.set_result(Accepted(request.events.event_count, None, None))
            return
        self._metrics.bytes_accepted.inc(sum(run.sealed_size() for run in runs))
        self._on_committed(runs)
        for request, run in zip(taken, runs, strict=True):
            request.future.set_result(Accepted(run.event_count, run.first_seq, run.next_seq - 1))
