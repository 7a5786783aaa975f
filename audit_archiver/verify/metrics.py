"""Prometheus metrics of the continuous auditor (``verify --watch``), in a registry of its own.

Names start with ``audit_archiver_verify_``. Two kinds:

- *Last completed run* (gauges): its start time, duration, verdict, problems by
  kind, and each stream's newest verified seal. They are served from one
  snapshot replaced as a whole when a run completes, so a scrape never sees one
  run's problems beside another's verdict, and they are absent until the first
  run completes (``absent(...)`` tells "never completed" from "failed"). A run
  that raised (storage error) does not complete: the gauges keep describing the
  last one that did.
- *Totals since start* (counters): events newly verified, runs by result
  (``ok``, ``problems``, ``error``), storage errors.

Label values are bounded: ``kind`` is one of :data:`~audit_archiver.verify.problems.KINDS`
(every kind is exported, 0 when absent, so a kind's series exists before it
first fires); ``stream`` is a stream id of the layout, one series per stream
seen.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from audit_archiver.errors import ConfigurationError
from audit_archiver.verify.problems import KINDS

__all__ = ["MetricsServer", "RunFigures", "VerifyMetrics"]

PREFIX = "audit_archiver_verify_"
RESULTS = ("ok", "problems", "error")


@dataclass(frozen=True)
class RunFigures:
    """What one completed run adds to the metrics.

    ``newest_seals``: unix seconds of the newest verified seal of each stream that
    verified without a problem in this run (other streams keep their last value).
    """

    started: float
    duration: float
    ok: bool
    problems: Mapping[str, int]
    newest_seals: Mapping[str, float] = field(default_factory=dict)
    new_events: int = 0


class _LastRun(Collector):
    """The gauges of the last completed run, served from one snapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._run: RunFigures | None = None
        self._newest: dict[str, float] = {}

    def update(self, run: RunFigures) -> None:
        with self._lock:
            self._run = run
            self._newest = {**self._newest, **run.newest_seals}

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            run, newest = self._run, dict(self._newest)
        if run is None:
            return
        yield GaugeMetricFamily(
            PREFIX + "last_run_start_timestamp_seconds",
            "When the last completed run started (unix seconds)",
            value=run.started,
        )
        yield GaugeMetricFamily(
            PREFIX + "last_run_duration_seconds",
            "How long the last completed run took",
            value=run.duration,
        )
        yield GaugeMetricFamily(
            PREFIX + "last_run_ok",
            "1 if the last completed run found no problem, else 0",
            value=1.0 if run.ok else 0.0,
        )
        problems = GaugeMetricFamily(
            PREFIX + "problems",
            "Problems the last completed run found, by kind",
            labels=["kind"],
        )
        for kind in KINDS:
            problems.add_metric([kind], float(run.problems.get(kind, 0)))
        yield problems
        seals = GaugeMetricFamily(
            PREFIX + "newest_verified_seal_timestamp_seconds",
            "sealed_at of each stream's newest verified segment (unix seconds)",
            labels=["stream"],
        )
        for stream, moment in sorted(newest.items()):
            seals.add_metric([stream], moment)
        yield seals


@dataclass(frozen=True)
class MetricsServer:
    """A running metrics endpoint (``http://host:port/metrics``)."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        """Where to scrape."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class VerifyMetrics:
    """Every metric ``verify --watch`` exports."""

    def __init__(self, interval: float | None = None) -> None:
        """``interval``: the watch interval, exported so alerts can scale with it."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._last = _LastRun()
        r.register(self._last)
        self.events_verified = Counter(
            PREFIX + "events_verified",
            "Events newly verified (each counted once, in the run that first verified it"
            " without a problem in its stream)",
            registry=r,
        )
        self.runs = Counter(
            PREFIX + "runs",
            "Runs by result: ok, problems (completed, found some), error (did not complete)",
            ["result"],
            registry=r,
        )
        for result in RESULTS:
            self.runs.labels(result)
        self.storage_errors = Counter(
            PREFIX + "storage_errors",
            "Runs that stopped on a storage error (S3 or the disk failed or refused)",
            registry=r,
        )
        if interval is not None:
            Gauge(
                PREFIX + "watch_interval_seconds",
                "The --watch interval (a run starts this long after the previous one started)",
                registry=r,
            ).set(interval)

    def record_run(self, run: RunFigures) -> None:
        """A run completed: replace the last-run gauges, add to the totals."""
        self._last.update(run)
        self.events_verified.inc(run.new_events)
        self.runs.labels("ok" if run.ok else "problems").inc()

    def record_error(self, *, storage: bool) -> None:
        """A run did not complete (``storage``: because the store failed)."""
        self.runs.labels("error").inc()
        if storage:
            self.storage_errors.inc()

    def serve(self, host: str, port: int) -> MetricsServer:
        """Serve ``/metrics`` on ``host``:``port`` (port 0: any free port) in a thread.

        Raises:
            ConfigurationError: the address cannot be resolved or bound.
        """
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except (OSError, OverflowError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {reason}") from e
        return MetricsServer(host, int(server.server_address[1]), server, thread)
