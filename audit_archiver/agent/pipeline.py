"""The agent pipeline: spool, committer, batcher and uploader wired together.

Start-up: lock and recover the spool; check the bucket has Object Lock (refuse
to start when it plainly has not; carry on when S3 cannot be reached and let
the uploader check before the first upload). The chain head comes from the
spool; a fresh spool takes it from the bucket (the stream's newest segment,
checked with this agent's own key) and accepts events only once it is known,
so every acknowledged ``seq`` is final.

Key rotation: with ``previous_keys`` (``--previous-public-key``) the agent
continues a chain whose head one of those keys signed, from a spool that an
old key wrote (its sealed segments are uploaded as they are) or from the
bucket. Without them a key change is refused, naming the flag.

Shutdown (:meth:`Agent.shutdown`): stop accepting, commit what is queued, seal
the partial batch, retry pending uploads at once and wait for them up to the
grace period. What S3 did not confirm stays in the spool for the next start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from datetime import UTC, datetime

from audit_archiver.agent.batcher import Batcher
from audit_archiver.agent.ingest import Accepted, Committer
from audit_archiver.agent.metrics import AgentMetrics
from audit_archiver.agent.sealer import StreamSealer, recover_chain_head
from audit_archiver.agent.spool import Spool, SpoolIdentity, SpoolState, describe
from audit_archiver.agent.uploader import Backoff, LockedStore, Uploader
from audit_archiver.config import AgentSettings
from audit_archiver.core.chain import ChainHead
from audit_archiver.core.line import EncodedEvents
from audit_archiver.core.signing import Signer, TrustedKey
from audit_archiver.errors import (
    AuditArchiverError,
    ConfigurationError,
    IntegrityError,
    NotReadyError,
    SpoolFullError,
    StorageError,
)

__all__ = ["Agent"]

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
    ) -> None:
        self.settings = settings
        self._previous_keys = tuple(previous_keys)
        self._workers: Executor | None = None
        self.metrics = AgentMetrics()
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
        self._ready = threading.Event()
        self._draining = False
        self._stop_resolving = threading.Event()
        self._fatal: BaseException | None = None
        self.stopped = threading.Event()
        self.exit_code = 0

    # -- start ----------------------------------------------------------------

    def start(self, workers: Executor | None = None) -> None:
        """Open the spool, check the bucket and start the pipeline threads.

        ``workers`` (worker processes), when given, prepare segment bodies off
        the main process.

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
        self.metrics.spool_max_bytes.set(settings.spool_max_bytes)
        self.metrics.spool_bytes.set(self._spool.used_bytes())
        try:
            self._check_bucket()
        except BaseException:
            self._spool.close()
            raise
        if state.sealing_head is not None:
            self._start_pipeline(state)
            return
        if not self._try_resolve_head(state, attempt=0):
            threading.Thread(
                target=self._resolve_head, args=(state,), name="head-resolver", daemon=True
            ).start()

    def _check_bucket(self) -> None:
        try:
            locked = self._store.object_lock_enabled()
        except StorageError as e:
            log.warning(
                "cannot check the bucket now; will check before the first upload",
                extra={"error": str(e)},
            )
            return
        if not locked:
            raise ConfigurationError(
                f"bucket {self.settings.bucket!r} does not have Object Lock enabled; segments"
                " there could be deleted or rewritten. Create the bucket with Object Lock"
                " (see terraform/) and try again"
            )
        self._bucket_checked = True

    def _resolve_head(self, state: SpoolState) -> None:
        attempt = 1
        while not self._stop_resolving.wait(self._backoff.delay(attempt)):
            if self._try_resolve_head(state, attempt):
                return
            attempt += 1

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
            )
        except IntegrityError as e:
            self._fail(e)
            return True
        except StorageError as e:
            log.warning(
                "cannot read the stream's head from the bucket; not accepting events yet",
                extra={"error": str(e), "attempt": attempt + 1},
            )
            return False
        log.info(
            "chain head found",
            extra={
                "continues_after": key,
                "next_segment": head.next_segment_seq,
                "next_seq": head.next_seq,
            },
        )
        try:
            self._spool.initialize_head(head)
        except StorageError as e:
            self._fail(e)
            return True
        state.uploaded_head = head
        self._start_pipeline(state)
        return True

    def _start_pipeline(self, state: SpoolState) -> None:
        settings = self.settings
        head = state.sealing_head or ChainHead()
        sealer = StreamSealer(
            prefix=settings.prefix,
            stream=settings.stream,
            signer=self._signer,
            head=head,
            compression=settings.compression,
            retention_days=settings.retention_days,
        )
        self._uploader = Uploader(
            self._store,
            self._spool,
            retention_days=settings.retention_days,
            clock=self._clock,
            metrics=self.metrics,
            backoff=self._backoff,
            bucket_checked=self._bucket_checked,
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
        self._committer = Committer(
            self._spool,
            max_spool_bytes=settings.spool_max_bytes,
            headroom=settings.max_body_bytes,
            clock=self._clock,
            on_committed=self._batcher.add,
            metrics=self.metrics,
        )
        last_received = state.pending[-1].received_at if state.pending else head.received_at_floor
        self._uploader.start(state.sealed)
        self._batcher.start(state.pending)
        self._committer.start(last_received)
        self._ready.set()
        threading.Thread(target=self._watch, name="watchdog", daemon=True).start()
        log.info("agent ready", extra={"stream": settings.stream, "next_seq": self._spool.next_seq})

    def _watch(self) -> None:
        while not self.stopped.is_set():
            for part in (self._batcher, self._uploader):
                if part is not None and part.error is not None:
                    self._fail(part.error)
                    return
            self.metrics.spool_bytes.set(self._spool.used_bytes())
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
        """None when events can be accepted, else why not."""
        try:
            self._accepting()
        except (NotReadyError, SpoolFullError) as e:
            return str(e)
        return None

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
            raise NotReadyError("chain head not known yet (bucket unreachable)")
        if self._committer.over_cap():
            raise SpoolFullError("spool is full")
        return self._committer

    def request_stop(self) -> None:
        """Ask the agent to shut down (signal handlers, end of stdin)."""
        self.stopped.set()

    # -- shutdown -------------------------------------------------------------

    def shutdown(self) -> int:
        """Drain and stop; return the process exit code (0 clean, 1 or 2 after a fatal error)."""
        self._draining = True
        self.stopped.set()
        self._stop_resolving.set()
        grace = self.settings.grace_period
        if self._committer is not None and self._batcher is not None:
            self._committer.stop()
            self._batcher.stop()
        if self._uploader is not None:
            self._uploader.wake()
            if self._fatal is None and not self._uploader.wait_idle(grace):
                log.warning(
                    "grace period over; unconfirmed segments stay in the spool",
                    extra={"segments": self._uploader.pending()},
                )
            self._uploader.stop()
        self._spool.close()
        log.info("agent stopped", extra={"spool_bytes": self._spool.used_bytes()})
        error = self._fatal
        if error is None:
            return 0
        return error.exit_code if isinstance(error, AuditArchiverError) else 2
