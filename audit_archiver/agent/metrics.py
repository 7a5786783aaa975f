"""Prometheus metrics of the agent, in a registry of its own (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["AgentMetrics"]


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
        self.events_rejected = Counter(
            "audit_archiver_events_rejected", "Events refused, by reason", ["reason"], registry=r
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

    def render(self) -> bytes:
        """Return the Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
