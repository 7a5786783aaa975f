"""Prometheus metrics of the agent, in a registry of its own (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["AgentMetrics"]


class _Rejections:
    """``audit_archiver_events_rejected_total{source,reason}``.

    ``labels(source, reason)``; ``labels(reason)`` alone means source ``http``.
    """

    def __init__(self, counter: Counter) -> None:
        self._counter = counter

    def labels(self, *values: str) -> Counter:
        """The child counter for ``(source, reason)`` (or ``(reason,)`` from HTTP)."""
        return self._counter.labels(*(("http", *values) if len(values) == 1 else values))


class AgentMetrics:
    """Every metric the agent exports; names start with ``audit_archiver_``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_accepted = Counter(
            "audit_archiver_events_accepted",
            "Events acknowledged (durable in the spool)",
            registry=r,
        )
        self.events_rejected = _Rejections(
            Counter(
                "audit_archiver_events_rejected",
                "Events (or source lines) refused, by source (http, stdin, tail) and reason",
                ["source", "reason"],
                registry=r,
            )
        )
        self.bytes_accepted = Counter(
            "audit_archiver_bytes_accepted", "Bytes of acknowledged event lines", registry=r
        )
        self.requests = Counter(
            "audit_archiver_http_requests", "Ingest requests, by status code", ["code"], registry=r
        )
        self.spool_bytes = Gauge(
            "audit_archiver_spool_bytes", "Bytes held in the spool", registry=r
        )
        self.spool_max_bytes = Gauge("audit_archiver_spool_max_bytes", "Spool byte cap", registry=r)
        self.events_pending = Gauge(
            "audit_archiver_events_pending", "Acknowledged events not yet sealed", registry=r
        )
        self.segments_pending = Gauge(
            "audit_archiver_segments_pending", "Sealed segments not yet confirmed by S3", registry=r
        )
        self.segments_sealed = Counter(
            "audit_archiver_segments_sealed", "Segments sealed", registry=r
        )
        self.segments_uploaded = Counter(
            "audit_archiver_segments_uploaded", "Segments confirmed by S3", registry=r
        )
        self.upload_errors = Counter(
            "audit_archiver_upload_errors", "Failed upload attempts", registry=r
        )
        self.upload_retries = Counter(
            "audit_archiver_upload_retries",
            "Upload attempts that retried an earlier failure",
            registry=r,
        )
        self.upload_latency = Histogram(
            "audit_archiver_upload_latency_seconds",
            "Time of one successful PutObject",
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.last_upload = Gauge(
            "audit_archiver_last_successful_upload_timestamp_seconds",
            "Unix time of the last segment S3 confirmed",
            registry=r,
        )
        # listener (issue 10): connections and clients
        self.connections_refused = Counter(
            "audit_archiver_connections_refused",
            "Connections closed by the listener: limit (over --max-connections, all busy),"
            " evicted (not inside a request, of the peer holding the most, to make room),"
            " tls (handshake failed or timed out), header_timeout (headers not"
            " complete within --header-timeout), error (the connection could not be"
            " set up)",
            ["reason"],
            registry=r,
        )
        self.connections_open = Gauge(
            "audit_archiver_connections_open", "Open ingest connections", registry=r
        )
        self.requests_by_client = Counter(
            "audit_archiver_requests_by_client",
            "Authenticated ingest requests, by client name (token name or certificate CN)",
            ["client"],
            registry=r,
        )
        # store faults (issue 10): storage errors by what to do, foreign objects, shutdown
        self.storage_errors = Counter(
            "audit_archiver_storage_errors",
            "Failed S3 requests of the pipeline: transient (retried with backoff) or"
            " permanent (refused until an operator acts; retried at the backoff cap)",
            ["kind"],
            registry=r,
        )
        self.foreign_objects = Counter(
            "audit_archiver_foreign_objects",
            "Objects this agent did not write found at its stream's segment keys (skipped)",
            registry=r,
        )
        self.unconfirmed_segments = Gauge(
            "audit_archiver_unconfirmed_segments",
            "Sealed segments in the spool that S3 has not confirmed (at shutdown: left behind)",
            registry=r,
        )
        # request-body admission (issue 10): the --max-inflight-bytes budget
        self.body_admission = Counter(
            "audit_archiver_body_admission",
            "Ingest requests that found the body budget (--max-inflight-bytes) spent:"
            " waited (then admitted), refused (503 after waiting --idle-timeout)",
            ["outcome"],
            registry=r,
        )
        self.inflight_body_bytes = Gauge(
            "audit_archiver_inflight_body_bytes",
            "Body bytes reserved by ingest requests being read, encoded or committed",
            registry=r,
        )

        # producers' formats (issue 11): the dedupe window
        self.events_deduplicated = Counter(
            "audit_archiver_events_deduplicated",
            "Items of producer batches left out because an event with the same producer"
            " id was archived within the dedupe window (they still count as accepted)",
            ["format"],
            registry=r,
        )
        # trusted timestamps: --tsa-url
        self.segments_timestamped = Counter(
            "audit_archiver_segments_timestamped",
            "Segments sealed with an RFC 3161 time-stamp token from --tsa-url",
            registry=r,
        )
        self.tsa_failures = Counter(
            "audit_archiver_tsa_failures",
            "Segments sealed without a time-stamp token, by reason: unreachable, timeout,"
            " http_error, too_large, invalid_response, invalid_token, not_granted, wrong_imprint,"
            " wrong_nonce (the TSA failed or answered something refused), invalid (the token"
            " failed the --tsa-cert check), circuit_open (the TSA was skipped during the backoff"
            " after a failure), reseal_budget (a re-seal ran out of its TSA time budget)",
            ["reason"],
            registry=r,
        )

    def render(self) -> bytes:
        """Return the Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
