"""Time-stamping seals with an RFC 3161 TSA (``agent --tsa-url``), never blocking ingest.

:class:`TsaClient` posts one TimeStampReq over HTTP(S) and reads a bounded
answer within ``--tsa-timeout`` seconds of wall-clock time for the whole
exchange (no retry, no redirect). :class:`Stamper` wraps it for the sealer: it
builds the request over the seal bytes, checks the answer with the same core
code the verifier uses (:func:`~audit_archiver.core.timestamp.token_from_response`:
status granted, imprint, nonce; with ``--tsa-cert`` also
:func:`~audit_archiver.core.timestamp.verify_token`) and adds the token to the segment's seal frame
(:func:`~audit_archiver.core.segment.with_timestamp`) before the segment is
stored in the spool, so the spool holds exactly the bytes that are uploaded.

A TSA that is down, slow or answers something invalid never stops sealing:
the segment is sealed without a token, ``audit_archiver_tsa_failures_total
{reason}`` counts it, and one warning is logged per failure streak (never
event content; the TSA is named by scheme, host and port only). After a
failure a circuit breaker skips the TSA (``reason="circuit_open"``) for a
backoff that doubles from :data:`FIRST_BACKOFF` to :data:`MAX_BACKOFF`
seconds, so a dead TSA costs at most one timeout per backoff. A batch of
re-seals (:meth:`Stamper.batch`) spends at most :data:`RESEAL_BUDGET_TIMEOUTS`
timeouts on the TSA in all.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from audit_archiver.agent.metrics import AgentMetrics
from audit_archiver.core.encoding import parse_rfc3339
from audit_archiver.core.segment import SealedSegment, with_timestamp
from audit_archiver.core.timestamp import (
    MAX_TSA_RESPONSE_BYTES,
    TsaTrust,
    build_request,
    token_from_response,
    verify_token,
)
from audit_archiver.errors import TimestampError

__all__ = [
    "FIRST_BACKOFF",
    "MAX_BACKOFF",
    "RESEAL_BUDGET_TIMEOUTS",
    "Stamper",
    "TsaClient",
    "TsaUnavailableError",
]

log = logging.getLogger(__name__)
FIRST_BACKOFF = 2.0
"""Seconds the TSA is skipped after a first failure."""
MAX_BACKOFF = 60.0
"""The longest the TSA is skipped between two tries."""
RESEAL_BUDGET_TIMEOUTS = 2
"""A batch of re-seals (ADR 7) may spend this many --tsa-timeout on the TSA in all."""
_CHUNK = 8192


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TsaUnavailableError(Exception):
    """The TSA could not be asked: ``reason`` is ``unreachable``, ``timeout``,
    ``http_error`` or ``too_large``."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def tsa_location(url: str) -> str:
    """``scheme://host:port`` of a TSA URL: what logs may name (no user info, no path)."""
    parts = urlsplit(url)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


class TsaClient:
    """Posts time-stamp queries to one TSA URL (``http`` or ``https``).

    The whole exchange (name lookup, connect, TLS, request, status line,
    headers and body) must end within ``timeout`` seconds of wall-clock time:
    it runs in its own thread and :meth:`post` waits for it at most that long.
    A per-read timeout alone is not enough: a TSA sending one byte per half
    second never lets a read time out. An exchange that is abandoned has its
    socket shut down, which ends the thread at once; only a name lookup that
    hangs cannot be interrupted, so at most one exchange is in flight: a
    query while the abandoned one still runs fails at once (``timeout``).
    """

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("a TSA URL is http:// or https:// with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("a TSA URL must not hold user info (user:password@)")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = timeout
        self._context = ssl.create_default_context() if self._https else None
        self._lock = threading.Lock()
        self._running: _Exchange | None = None

    def post(self, query: bytes, timeout: float | None = None) -> bytes:
        """Send ``query``; return the answer's body (at most
        :data:`~audit_archiver.core.timestamp.MAX_TSA_RESPONSE_BYTES`) within
        ``timeout`` seconds (default and at most: the client's timeout).

        Raises:
            TsaUnavailableError: no complete answer in time, a non-200 status,
                an oversized body, or the TSA cannot be reached.
        """
        with self._lock:
            running = self._running
            if running is not None and not running.future.done():
                raise TsaUnavailableError(
                    "the previous exchange with the TSA has not ended yet", reason="timeout"
                )
            exchange = _Exchange(self._connection(), self._target, query)
            self._running = exchange
        bound = self._timeout if timeout is None else min(timeout, self._timeout)
        exchange.start()
        try:
            return exchange.future.result(timeout=bound)
        except concurrent.futures.TimeoutError:
            exchange.abandon()
            raise TsaUnavailableError(
                f"no complete answer within {bound:g} s", reason="timeout"
            ) from None

    def _connection(self) -> http.client.HTTPConnection:
        if self._context is not None:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._context
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)


class _Exchange:
    """One request and its answer, run in a daemon thread so the caller can give up."""

    def __init__(self, connection: http.client.HTTPConnection, target: str, query: bytes):
        self.future: concurrent.futures.Future[bytes] = concurrent.futures.Future()
        self._connection = connection
        self._target = target
        self._query = query
        self._abandoned = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="tsa-exchange", daemon=True).start()

    def abandon(self) -> None:
        """Stop waiting: shut the socket down so a blocked read returns now."""
        self._abandoned.set()
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._connection.close()

    def _run(self) -> None:
        try:
            body = self._exchange()
        except TsaUnavailableError as e:  # the caller gets it (or has given up)
            self.future.set_exception(e)
        except Exception as e:  # a socket closed under http.client by abandon(), say
            self.future.set_exception(
                TsaUnavailableError(
                    f"the exchange failed: {type(e).__name__}", reason="unreachable"
                )
            )
        else:
            self.future.set_result(body)
        finally:
            with contextlib.suppress(OSError):
                self._connection.close()

    def _exchange(self) -> bytes:
        connection = self._connection
        try:
            connection.connect()
            if self._abandoned.is_set():
                raise TsaUnavailableError("abandoned", reason="timeout")
            connection.request(
                "POST",
                self._target,
                body=self._query,
                headers={
                    "Content-Type": "application/timestamp-query",
                    "Accept": "application/timestamp-reply",
                },
            )
            response = connection.getresponse()
            try:
                if response.status != 200:
                    raise TsaUnavailableError(f"HTTP status {response.status}", reason="http_error")
                return _read_body(response)
            finally:
                response.close()
        except TimeoutError as e:
            raise TsaUnavailableError("a read or connect timed out", reason="timeout") from e
        except (http.client.HTTPException, OSError) as e:
            raise TsaUnavailableError(
                f"cannot reach the TSA: {type(e).__name__}", reason="unreachable"
            ) from e


def _read_body(response: http.client.HTTPResponse) -> bytes:
    parts: list[bytes] = []
    size = 0
    while chunk := response.read(_CHUNK):
        size += len(chunk)
        if size > MAX_TSA_RESPONSE_BYTES:
            raise TsaUnavailableError(
                f"answer over {MAX_TSA_RESPONSE_BYTES} bytes", reason="too_large"
            )
        parts.append(chunk)
    return b"".join(parts)


class Stamper:
    """Adds a checked TSA token to each segment it is given, or leaves it unstamped.

    Thread-safe; it never raises for the TSA's sake: a segment it cannot stamp is
    returned as it came. With ``trust`` (``--tsa-cert``) every token is verified
    completely (:func:`~audit_archiver.core.timestamp.verify_token`) before it is
    stored; one that fails is dropped (``reason="invalid"``) and named in
    :meth:`alerts` until a token verifies again.
    """

    def __init__(
        self,
        post: Callable[[bytes, float], bytes],
        metrics: AgentMetrics,
        *,
        where: str,
        timeout: float,
        trust: TsaTrust | None = None,
        clock: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._post = post
        self._metrics = metrics
        self._where = where
        self._timeout = timeout
        self._trust = trust
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._backoff = 0.0
        self._closed_until = 0.0
        self._unstamped = 0  # segments of the current failure streak
        self._alert: str | None = None

    @classmethod
    def for_url(
        cls,
        url: str,
        timeout: float,
        metrics: AgentMetrics,
        *,
        trust: TsaTrust | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> Stamper:
        """A stamper asking the TSA at ``url`` over HTTP(S)."""
        client = TsaClient(url, timeout)
        return cls(
            client.post, metrics, where=tsa_location(url), timeout=timeout, trust=trust, clock=clock
        )

    def start(self) -> None:
        """Say at start how tokens are checked; with ``--tsa-cert``, ask the TSA once
        in the background so a misconfiguration (a TSA whose tokens do not verify,
        a wrong URL) shows in the log and in ``/readyz`` alerts (start is not held up)."""
        if self._trust is None:
            log.warning(
                "time-stamp tokens are checked for imprint and nonce only: give --tsa-cert"
                " (the TSA's CA) so each token is verified before it is stored",
                extra={"tsa": self._where},
            )
            return
        threading.Thread(target=self.probe, name="tsa-probe", daemon=True).start()

    def probe(self) -> bool:
        """Ask the TSA to stamp a probe value and verify the token; True if it does."""
        now = self._clock()
        data = b"audit-archiver TSA probe " + now.isoformat().encode()
        with self._lock:
            try:
                self._token(data, now, self._timeout)
            except (TsaUnavailableError, TimestampError) as e:
                self._alert = (
                    f"the TSA at {self._where} failed the start-up probe ({e.reason}):"
                    f" {str(e)[:200]}"
                )
                log.warning(
                    "the TSA failed the start-up probe: check --tsa-url and --tsa-cert",
                    extra={"tsa": self._where, "reason": e.reason, "detail": str(e)[:200]},
                )
                return False
            self._alert = None
            log.info("the TSA answers and its tokens verify", extra={"tsa": self._where})
            return True

    def alerts(self) -> list[str]:
        """What ``/readyz`` lists: a failed probe, or tokens refused by ``--tsa-cert``."""
        alert = self._alert
        return [] if alert is None else [alert]

    def __call__(self, segment: SealedSegment) -> SealedSegment:
        """``segment`` with a time-stamp token, or unchanged when the TSA fails."""
        return self._stamp(segment, None)

    def batch(self) -> Callable[[SealedSegment], SealedSegment]:
        """A stamper for one batch of re-seals (ADR 7) under a total budget of
        :data:`RESEAL_BUDGET_TIMEOUTS` times the timeout: once it is spent, the
        rest of the batch is sealed without a token (``reason="reseal_budget"``),
        so a slow TSA cannot hold the writer for a timeout per re-sealed segment."""
        deadline = self._monotonic() + RESEAL_BUDGET_TIMEOUTS * self._timeout
        return lambda segment: self._stamp(segment, deadline)

    def _stamp(self, segment: SealedSegment, deadline: float | None) -> SealedSegment:
        with self._lock:
            now = self._monotonic()
            if now < self._closed_until:
                self._failed("circuit_open", "skipped while the TSA recovers")
                return segment
            timeout = self._timeout if deadline is None else min(self._timeout, deadline - now)
            if timeout <= 0:
                self._metrics.tsa_failures.labels("reseal_budget").inc()
                return segment
            try:
                sealed_at = parse_rfc3339(segment.seal.sealed_at)
                token = self._token(segment.seal_bytes, sealed_at, timeout)
                stamped = with_timestamp(segment, token)
            except (TsaUnavailableError, TimestampError) as e:
                self._failed(e.reason, str(e))
                return segment
            except ValueError as e:  # the token does not fit the seal block
                self._failed("too_large", str(e))
                return segment
            self._succeeded()
            return stamped

    def _token(self, data: bytes, sealed_at: datetime, timeout: float) -> bytes:
        """A token over ``data`` checked as the agent stores it (and, with ``--tsa-cert``,
        verified completely).

        Raises:
            TsaUnavailableError: no answer.
            TimestampError: an answer refused; ``reason="invalid"`` when the token
                does not verify with ``--tsa-cert``.
        """
        request = build_request(data)
        token = token_from_response(self._post(request.der, timeout), request)
        if self._trust is not None:
            try:
                verify_token(token, request.digest.hex(), self._trust, sealed_at=sealed_at)
            except TimestampError as e:
                self._alert = (
                    f"the TSA at {self._where} sends tokens that do not verify with"
                    f" --tsa-cert ({e.reason}); segments are sealed without them"
                )
                raise TimestampError(str(e), reason="invalid") from e
        return token

    def _failed(self, reason: str, detail: str) -> None:
        self._metrics.tsa_failures.labels(reason).inc()
        self._unstamped += 1
        if reason == "circuit_open":
            return
        first = self._backoff == 0.0
        self._backoff = FIRST_BACKOFF if first else min(self._backoff * 2, MAX_BACKOFF)
        self._closed_until = self._monotonic() + self._backoff
        if first:
            log.warning(
                "the TSA failed; segments are sealed without a time-stamp until it answers",
                extra={"tsa": self._where, "reason": reason, "detail": detail[:200]},
            )

    def _succeeded(self) -> None:
        self._metrics.segments_timestamped.inc()
        self._alert = None
        if self._backoff:
            log.info(
                "the TSA answers again",
                extra={"tsa": self._where, "unstamped_segments": self._unstamped},
            )
        self._backoff = 0.0
        self._closed_until = 0.0
        self._unstamped = 0
