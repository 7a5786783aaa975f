"""The agent pipeline: spool, committer, batcher and uploader wired together.

Start-up: lock and recover the spool; check the bucket has Object Lock (refuse
to start when it plainly has not; carry on when S3 cannot be reached and let
the uploader check before the first upload). The chain head comes from the
spool; a fresh spool takes it from the bucket (the newest segment this agent's
key signed, read from the original versions; foreign objects are skipped,
ADR 7). Events are accepted from the start: while a fresh spool does not know
the head yet they are made durable unnumbered (the answer's seqs are null) and
numbered, durably, once it is read (ADR 4). So a fresh pod takes events
through an S3 outage, and every seq it ever reports is final.

Storage faults are split by what to do about them (see the uploader):
transient ones are retried with backoff; permanent ones (AccessDenied,
NoSuchBucket, wrong region, SSE-KMS key disabled) are retried at the backoff
cap and make :meth:`Agent.readiness` report them, while events are still
accepted into the spool up to its cap. Only configuration refusals at start-up,
a true fork (exit 1) and an unusable spool stop the agent.

Key rotation: with ``previous_keys`` (``--previous-public-key``) the agent
continues a chain whose head one of those keys signed, from a spool that an
old key wrote (its sealed segments are uploaded as they are) or from the
bucket. Without them a key change is refused, naming the flag.

Shutdown (:meth:`Agent.shutdown`): stop accepting, commit what is queued, seal
the partial batch, retry pending uploads at once and wait for them up to the
grace period. What S3 did not confirm stays in the spool for the next start,
and the exit code says so: 0 only when the spool holds nothing S3 has not
confirmed, 3 (with the counts in the log and on stderr) otherwise.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from datetime import UTC, datetime

from audit_archiver.agent.batcher import Batcher
from audit_archiver.agent.ingest import Accepted, Committer
from audit_archiver.agent.metrics import AgentMetrics
from audit_archiver.agent.sealer import ForeignObject, StreamSealer, recover_chain_head
from audit_archiver.agent.spool import Spool, SpoolIdentity, SpoolState, describe
from audit_archiver.agent.tsa import Stamper
from audit_archiver.agent.uploader import Backoff, ErrorReporter, LockedStore, Uploader
from audit_archiver.config import AgentSettings, load_tsa_trust
from audit_archiver.core.chain import ChainHead
from audit_archiver.core.line import EncodedEvents, EventRun
from audit_archiver.core.signing import Signer, TrustedKey
from audit_archiver.errors import (
    AuditArchiverError,
    BackpressureError,
    ConfigurationError,
    IntegrityError,
    NotReadyError,
    SpoolFullError,
    StorageError,
    StoragePermanentError,
)

__all__ = ["EXIT_UNCONFIRMED", "Agent"]

EXIT_UNCONFIRMED = 3
"""Exit code of a stop that leaves acknowledged events or segments in the spool."""
START_WAIT_SECONDS = 5.0
"""How long :meth:`Agent.start` waits for S3 (the bucket check, a fresh spool's
head) before it accepts events anyway: an S3 that accepts connections and never
answers must not keep the listener down."""
_MAX_ALERTS = 20

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Agent:
    """One running agent for one stream."""

    def __init__(
        self,
        settings: AgentSettings,
        store: LockedStore,
        signer: Signer,
        own_key: TrustedKey,
        *,
        previous_keys: Sequence[TrustedKey] = (),
        clock: Callable[[], datetime] = _utc_now,
        backoff: Backoff | None = None,
        start_wait: float = START_WAIT_SECONDS,
    ) -> None:
        self.settings = settings
        self._start_wait = start_wait
        self._previous_keys = tuple(previous_keys)
        self._workers: Executor | None = None
        self.metrics = AgentMetrics()
        self._stamper = (
            Stamper.for_url(
                settings.tsa_url,
                settings.tsa_timeout,
                self.metrics,
                trust=load_tsa_trust(settings.tsa_certs) if settings.tsa_certs else None,
                clock=clock,
            )
            if settings.tsa_url
            else None
        )
        self._store = store
        self._signer = signer
        self._own_key = own_key
        self._clock = clock
        self._backoff = backoff or Backoff()
        self._spool = Spool(settings.spool)
        self._committer: Committer | None = None
        self._batcher: Batcher | None = None
        self._uploader: Uploader | None = None
        self._bucket_checked = False
        self._bucket_refusal: ConfigurationError | None = None
        self._state: SpoolState | None = None
        self._ready = threading.Event()
        self._handoff = threading.Lock()  # the head arriving vs. committed runs and shutdown
        self._head_known = False
        self._head_error: str | None = None
        self._head_errors = ErrorReporter(self.metrics, self._backoff.cap, "reading the head")
        self._alerts: deque[str] = deque(maxlen=_MAX_ALERTS)
        self._alert_providers: list[Callable[[], list[str]]] = []
        if self._stamper is not None:
            self._alert_providers.append(self._stamper.alerts)
        self._foreign: set[tuple[str, str | None]] = set()
        self._handoff_alerts = threading.Lock()
        self._draining = False
        self._stop_resolving = threading.Event()
        self._first_head_attempt = threading.Event()
        self._head_closed = False  # shutdown took its decision: no head is taken any more
        self._fatal: BaseException | None = None
        self.stopped = threading.Event()
        self.exit_code = 0

    # -- start ----------------------------------------------------------------

    def start(self, workers: Executor | None = None) -> None:
        """Open the spool, check the bucket and start the pipeline threads.

        ``workers`` (worker processes), when given, prepare segment bodies off
        the main process. Events are accepted as soon as this returns, also
        when a fresh spool cannot read the stream's head yet.

        Raises:
            ConfigurationError: the bucket lacks Object Lock or does not exist,
                or the spool belongs to another stream or agent.
            StorageError: the spool cannot be used.
        """
        settings = self.settings
        self._workers = workers
        state = self._spool.open(
            SpoolIdentity(settings.stream, settings.prefix, self._signer.key_id),
            previous_key_ids=[key.key_id for key in self._previous_keys],
        )
        log.info("spool recovered", extra=describe(state))
        self._state = state
        if self._stamper is not None:
            self._stamper.start()
        self.metrics.spool_max_bytes.set(settings.spool_max_bytes)
        self.metrics.spool_bytes.set(self._spool.used_bytes())
        self.metrics.unconfirmed_segments.set(len(state.sealed))
        self.metrics.events_pending.set(state.unnumbered_events)
        deadline = time.monotonic() + self._start_wait
        checker = threading.Thread(target=self._check_bucket, name="bucket-check", daemon=True)
        checker.start()
        checker.join(self._start_wait)
        if self._bucket_refusal is not None:
            self._spool.close()
            raise self._bucket_refusal
        if checker.is_alive():
            log.warning(
                "S3 does not answer the bucket check; accepting events, and the bucket"
                " is checked before the first upload",
                extra={"waited_s": self._start_wait},
            )
        self._committer = Committer(
            self._spool,
            max_spool_bytes=settings.spool_max_bytes,
            headroom=settings.max_body_bytes,
            clock=self._clock,
            on_committed=self._committed,
            metrics=self.metrics,
        )
        if state.sealing_head is not None:
            self._start_pipeline(state, state.pending)
        self._committer.start(state.pending[-1].received_at if state.pending else None)
        self._ready.set()
        threading.Thread(target=self._watch, name="watchdog", daemon=True).start()
        if state.sealing_head is not None:
            self._log_ready()
            return
        log.info(
            "accepting events; they are numbered once the stream's head is read",
            extra={"stream": settings.stream, "unnumbered_events": state.unnumbered_events},
        )
        threading.Thread(
            target=self._resolve_head, args=(state,), name="head-resolver", daemon=True
        ).start()
        # A healthy S3 answers at once: then the first events get their seqs.
        self._first_head_attempt.wait(max(0.0, deadline - time.monotonic()))

    def _check_bucket(self) -> None:
        """Check Object Lock (on its own thread: :meth:`start` waits a bounded time).

        A refusal found in time makes :meth:`start` raise; S3 failing or not
        answering leaves the check to the uploader, before the first upload.
        """
        try:
            locked = self._store.object_lock_enabled()
        except StorageError as e:
            log.warning(
                "cannot check the bucket now; will check before the first upload",
                extra={"error": str(e)},
            )
            return
        if not locked:
            self._bucket_refusal = ConfigurationError(
                f"bucket {self.settings.bucket!r} does not have Object Lock enabled; segments"
                " there could be deleted or rewritten. Create the bucket with Object Lock"
                " (see terraform/) and try again"
            )
            return
        self._bucket_checked = True

    def _resolve_head(self, state: SpoolState) -> None:
        """Read the stream's head until it is known, with backoff (at its cap while
        S3 refuses permanently); shutdown ends this loop and retries at once itself."""
        attempt = 0
        while True:
            done = self._try_resolve_head(state, attempt)
            self._first_head_attempt.set()
            if done:
                return
            attempt += 1
            delay = self._backoff.cap if self._head_error else self._backoff.delay(attempt)
            if self._stop_resolving.wait(delay):
                return

    def _resolve_head_until(self, state: SpoolState, deadline: float) -> None:
        """Shutdown's own head reads: the first at once, then with backoff from its
        base until ``deadline`` (the end of the grace period)."""
        attempt = 0
        while not self._try_resolve_head(state, attempt):
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(self._backoff.delay(attempt), remaining))

    def _try_resolve_head(self, state: SpoolState, attempt: int) -> bool:
        """Find the stream's head in the bucket and start; False to retry later."""
        settings = self.settings
        try:
            head, key = recover_chain_head(
                self._store,
                settings.prefix,
                settings.stream,
                self._own_key,
                previous_keys=self._previous_keys,
                on_foreign=self._foreign_seen,
            )
        except IntegrityError as e:
            self._fail(e)
            return True
        except StorageError as e:
            self._head_error = str(e) if isinstance(e, StoragePermanentError) else None
            self._head_errors.failed(e, attempt=attempt + 1)
            return False
        self._head_error = None
        self._head_errors.recovered()
        with self._handoff:
            if self._head_closed or self._head_known:
                return True
            try:
                runs = self._spool.initialize_head(head)
            except StorageError as e:
                self._fail(e)
                return True
            log.info(
                "chain head found",
                extra={
                    "continues_after": key,
                    "next_segment": head.next_segment_seq,
                    "next_seq": head.next_seq,
                    "numbered_events": sum(run.event_count for run in runs),
                },
            )
            state.uploaded_head = head
            self._start_pipeline(state, [*state.pending, *runs])
        self._log_ready()
        return True

    def _start_pipeline(self, state: SpoolState, pending: list[EventRun]) -> None:
        settings = self.settings
        head = state.sealing_head or ChainHead()
        sealer = StreamSealer(
            prefix=settings.prefix,
            stream=settings.stream,
            signer=self._signer,
            head=head,
            compression=settings.compression,
            retention_days=settings.retention_days,
            stamper=self._stamper,
        )
        self._uploader = Uploader(
            self._store,
            self._spool,
            retention_days=settings.retention_days,
            clock=self._clock,
            metrics=self.metrics,
            backoff=self._backoff,
            bucket_checked=self._bucket_checked,
            sealer=sealer,
            trusted_keys=(self._own_key, *self._previous_keys),
            on_foreign=self._foreign_seen,
        )
        self._batcher = Batcher(
            sealer,
            self._spool,
            settings.batch,
            clock=self._clock,
            on_sealed=self._uploader.enqueue,
            metrics=self.metrics,
            executor=self._workers,
            backoff=self._backoff,
        )
        self._uploader.start(state.sealed)
        self._batcher.start(pending)
        self._head_known = True

    def _log_ready(self) -> None:
        log.info(
            "agent ready", extra={"stream": self.settings.stream, "next_seq": self._spool.next_seq}
        )

    def _committed(self, runs: list[EventRun]) -> None:
        """Numbered runs from the committer go to the batcher (which exists:
        the spool numbers runs only once the head is known and the pipeline
        is started under the same lock)."""
        with self._handoff:
            if self._batcher is None:
                raise RuntimeError("numbered events before the pipeline started")
            self._batcher.add(runs)

    def _foreign_seen(self, found: ForeignObject) -> None:
        """Count, log (never the content) and list as an alert each foreign
        object once, whoever found it (head recovery or the uploader)."""
        with self._handoff_alerts:
            if (found.key, found.version_id) in self._foreign:
                return
            self._foreign.add((found.key, found.version_id))
            self._alerts.append(
                f"foreign object at {found.key} (version {found.version_id}, {found.size}"
                f" bytes; {found.reason.split(':', 1)[0]}): skipped"
            )
        self.metrics.foreign_objects.inc()
        log.error(
            "foreign object at this stream's segment keys; skipped (ADR 7)",
            extra={
                "key": found.key,
                "version_id": found.version_id,
                "size": found.size,
                "reason": found.reason,
            },
        )

    def _watch(self) -> None:
        while not self.stopped.is_set():
            for part in (self._batcher, self._uploader):
                if part is not None and part.error is not None:
                    self._fail(part.error)
                    return
            self.metrics.spool_bytes.set(self._spool.used_bytes())
            self.metrics.unconfirmed_segments.set(self._spool.unconfirmed()[0])
            self.stopped.wait(0.5)

    def _fail(self, error: BaseException) -> None:
        if self._fatal is None:
            self._fatal = error
            log.error("fatal error; stopping", extra={"error": str(error)})
        self.stopped.set()

    # -- serving --------------------------------------------------------------

    @property
    def fatal_error(self) -> BaseException | None:
        """The error that stopped the agent, if any."""
        return self._fatal

    def readiness(self) -> str | None:
        """None when all is well, else the reason ``/readyz`` answers 503 with:
        events are refused (starting, draining, spool full), or S3 refuses
        permanently (AccessDenied, NoSuchBucket...: events are still accepted
        into the spool, but nothing reaches the bucket until an operator acts)."""
        try:
            self._accepting()
        except BackpressureError as e:
            return str(e)
        uploader = self._uploader
        refused = self._head_error or (uploader.permanent_error if uploader else None)
        if refused is not None:
            return f"storage refuses (events are still accepted into the spool): {refused}"
        return None

    def add_alert_provider(self, provider: Callable[[], list[str]]) -> None:
        """Have ``/readyz`` also list what ``provider`` reports (an event source's trouble
        being retried, say)."""
        self._alert_providers.append(provider)

    def alerts(self) -> list[str]:
        """What ``/readyz`` lists while ready: foreign objects seen at this stream's
        keys, and a head not read yet (events accepted unnumbered)."""
        alerts = list(self._alerts)
        for provider in self._alert_providers:
            alerts += provider()
        if not self._head_known and self._fatal is None:
            alerts.append(
                "chain head not known yet (bucket unreachable): events are accepted"
                " and numbered once it is read"
            )
        return alerts

    def check_ready(self) -> None:
        """Return if events can be accepted now (the server asks before it
        spends a worker on a request body).

        Raises:
            NotReadyError: starting, draining or stopped.
            SpoolFullError: the spool is over its cap.
        """
        self._accepting()

    def submit(self, events: EncodedEvents) -> Future[Accepted]:
        """Queue encoded events for a durable commit.

        Raises:
            NotReadyError: starting, draining or stopped.
            SpoolFullError: the spool is over its cap.
        """
        return self._accepting().submit(events)

    def _accepting(self) -> Committer:
        if self._fatal is not None:
            raise NotReadyError("stopped after a fatal error")
        if self._draining:
            raise NotReadyError("shutting down")
        if not self._ready.is_set() or self._committer is None:
            raise NotReadyError("starting")
        if self._committer.over_cap():
            raise SpoolFullError("spool is full")
        return self._committer

    def request_stop(self) -> None:
        """Ask the agent to shut down (signal handlers, end of stdin)."""
        self.stopped.set()

    # -- shutdown -------------------------------------------------------------

    def shutdown(self) -> int:
        """Drain and stop; return the process exit code: 0 when S3 confirmed
        everything acknowledged, the fatal error's code (1 integrity, 2
        configuration or storage) after a fatal error, else
        :data:`EXIT_UNCONFIRMED` (3)."""
        deadline = time.monotonic() + self.settings.grace_period
        with self._handoff:
            self._draining = True
        self.stopped.set()
        if self._committer is not None:
            self._committer.stop()
        self._read_head_before(deadline)
        if self._batcher is not None:
            self._batcher.stop()
        if self._uploader is not None:
            self._uploader.wake()
            remaining = max(0.0, deadline - time.monotonic())
            if self._fatal is None and not self._uploader.wait_idle(remaining):
                log.warning(
                    "grace period over; unconfirmed segments stay in the spool",
                    extra={"segments": self._uploader.pending()},
                )
            self._uploader.stop()
        segments, events = self._spool.unconfirmed()
        self.metrics.unconfirmed_segments.set(segments)
        self._spool.close()
        log.info("agent stopped", extra={"spool_bytes": self._spool.used_bytes()})
        error = self._fatal
        if error is not None:
            code = error.exit_code if isinstance(error, AuditArchiverError) else 2
        else:
            code = EXIT_UNCONFIRMED if segments or events else 0
        if segments or events:
            self._report_left_behind(segments, events, code)
        return code

    def _read_head_before(self, deadline: float) -> None:
        """A fresh spool still waiting for the stream's head: read it now (not after
        the resolver's backoff), retrying until ``deadline``, so that events
        acknowledged unnumbered are numbered, sealed and uploaded in the grace
        period. Afterwards no head is taken: what is unnumbered stays in the spool."""
        self._stop_resolving.set()
        state = self._state
        if self._fatal is None and not self._head_known and state is not None:
            reader = threading.Thread(
                target=self._resolve_head_until,
                args=(state, deadline),
                name="head-at-shutdown",
                daemon=True,
            )
            reader.start()
            reader.join(max(0.0, deadline - time.monotonic()))
        with self._handoff:
            self._head_closed = True

    def _report_left_behind(self, segments: int, events: int, code: int) -> None:
        message = (
            f"stopped with {segments} sealed segment(s) and {events} unsealed event(s) not"
            f" confirmed by S3 in the spool {self.settings.spool}; keep this volume and start"
            " the agent on it again (it uploads them first); never delete it"
        )
        log.error(
            "acknowledged data left in the spool",
            extra={"segments": segments, "events": events, "exit_code": code},
        )
        print(f"audit-archiver agent: {message}", file=sys.stderr, flush=True)
