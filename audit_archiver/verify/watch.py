"""The continuous auditor: ``verify --watch SECONDS --state FILE [--metrics-listen HOST:PORT]``.

Each run is an ordinary incremental verify (:func:`~audit_archiver.verify.run.build_verifier`
then :func:`~audit_archiver.verify.run.run_verifier`): it loads the state file
afresh, checks the bucket's settings and the whole version listing (so a
segment behind the saved head that was deleted, replaced or overwritten is
reported by every run, from the listing digest the state holds), downloads only
the segments after each saved head, and saves the state by the rule of
:func:`~audit_archiver.verify.run.heads_to_save`: a stream with a problem keeps
its saved head, so the next run re-checks the same segments and reports the
problem again (nothing is forgotten because time passed), while the other
streams' heads advance.

Invariants:

- A run starts ``interval`` seconds after the previous one *started*; a run
  longer than that is followed at once (never two at a time).
- A storage error (S3 or the disk failed) ends that run only: it is logged,
  counted and the next run retries. A configuration error ends the watcher
  when the first run meets it (bad keys, state file, prefix: exit 2); later it
  is counted like a storage error (the state file's disk may come back).
- SIGTERM or SIGINT stops the watcher at once, also during a run: each run
  goes in a thread of its own, which a stop abandons (a hung download cannot
  hold the process; the run's report is not printed, its figures not recorded,
  and the state file is the old one or, if the run was saving it, the new one:
  saves are atomic, at worst leaving a temporary file beside it). The process
  then ends without waiting for that thread, after killing the run's worker
  processes (:func:`end_worker_processes`): a spawned worker whose parent is
  gone would otherwise wait for its next task forever. The exit status is that
  of the last *completed* run: 0 clean, 1 problems, 2 if no run completed.
- Events are counted as verified once per stream, in the first run where their
  stream verified without a problem (a re-check after a problem elsewhere does
  not count them twice).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Protocol

from audit_archiver import config
from audit_archiver.core.encoding import format_timestamp, parse_rfc3339
from audit_archiver.errors import ConfigurationError, StorageError
from audit_archiver.verify.metrics import RunFigures, VerifyMetrics
from audit_archiver.verify.report import Report, render_text, safe_text
from audit_archiver.verify.run import VerifySettings, build_verifier, run_verifier
from audit_archiver.verify.state import StreamHead
from audit_archiver.verify.verifier import Verifier

__all__ = [
    "RunInfo",
    "WatchOutcome",
    "WatchSettings",
    "Watcher",
    "end_worker_processes",
    "parse_listen",
    "render_run",
    "watch",
    "watch_settings",
]


_POLL_SECONDS = 0.1
"""How often the main thread looks for a stop while a run is in progress."""


def parse_listen(text: str) -> tuple[str, int]:
    """``--metrics-listen``: ``HOST:PORT`` by the agent's ``--listen`` rules
    (:func:`audit_archiver.config.parse_listen`, the one parser of both), except
    that a ``unix:`` socket is refused: Prometheus scrapes over TCP.

    Raises:
        ConfigurationError: not HOST:PORT with a port from 0 to 65535.
    """
    try:
        listen = None if text.startswith("unix:") else config.parse_listen(text)
    except ConfigurationError as e:
        raise ConfigurationError(
            f"--metrics-listen {text!r} is not HOST:PORT with a port from 0 to 65535"
            " (e.g. 127.0.0.1:9464, [::1]:9464)"
        ) from e
    if not isinstance(listen, tuple):
        raise ConfigurationError(
            f"--metrics-listen {text!r}: serve metrics on HOST:PORT (Prometheus cannot"
            " scrape a unix socket)"
        )
    return listen


@dataclass(frozen=True)
class WatchSettings:
    """What ``verify --watch`` was asked to do, checked."""

    verify: VerifySettings
    interval: float
    metrics_listen: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        """Refuse a watch that could not work.

        Raises:
            ConfigurationError: no ``--state``, or an interval that is not a
                positive finite number of seconds.
        """
        if not (math.isfinite(self.interval) and self.interval > 0):
            raise ConfigurationError("--watch SECONDS must be a number of seconds above 0")
        if self.verify.state is None:
            raise ConfigurationError(
                "--watch needs --state FILE (each run checks only what is new since the"
                " saved heads, and the listing of everything before them)"
            )


def watch_settings(
    verify: VerifySettings, interval: float | None, metrics_listen: str | None
) -> WatchSettings | None:
    """The watch the options ask for, or None for a single verify run.

    Raises:
        ConfigurationError: ``--metrics-listen`` without ``--watch``, ``--shard`` with
            ``--watch``, or bad values.
    """
    if interval is not None and verify.shard is not None:
        raise ConfigurationError(
            "--shard cannot be used with --watch: a watch keeps one --state of every"
            " stream's head, and a shard checks only parts of streams (shard a full run,"
            " then `report merge`)"
        )
    if interval is None:
        if metrics_listen is not None:
            raise ConfigurationError("--metrics-listen needs --watch SECONDS")
        return None
    listen = parse_listen(metrics_listen) if metrics_listen is not None else None
    return WatchSettings(verify, interval, listen)


@dataclass(frozen=True)
class RunInfo:
    """When a completed run started (unix seconds) and how long it took."""

    number: int
    started: float
    duration: float

    def to_json(self) -> dict[str, object]:
        """The ``watch`` member of a run's JSON report line."""
        return {
            "run": self.number,
            "started_at": format_timestamp(datetime.fromtimestamp(self.started, UTC)),
            "duration_seconds": round(self.duration, 3),
        }


class StopSignal(Protocol):
    """What the loop needs of a :class:`threading.Event`."""

    def is_set(self) -> bool:
        """True once the watcher must stop."""
        ...  # pragma: no cover

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the stop; True if it came."""
        ...  # pragma: no cover


class _Attempt:
    """One run in a thread of its own, so that a stop never has to wait for it.

    The thread only verifies and saves the state (:func:`run_verifier`); the main thread reads the
    outcome once ``done`` is set, and does everything else (metrics, output).
    """

    def __init__(self, build: Callable[[], Verifier], state: Path | None, name: str) -> None:
        self.done = threading.Event()
        self.report: Report | None = None
        self.heads: dict[str, StreamHead] = {}
        self.error: BaseException | None = None
        self._build = build
        self._state = state
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _run(self) -> None:
        try:
            verifier = self._build()
            self.report = run_verifier(verifier, self._state)
            self.heads = dict(verifier.heads)
        except BaseException as e:  # handed over to the main thread, which decides
            self.error = e
        finally:
            self.done.set()


class _Tally:
    """Which events were already counted as verified, per stream (next seq after them)."""

    def __init__(self) -> None:
        self._through: dict[str, int] = {}

    def add(self, report: Report, heads: Mapping[str, StreamHead]) -> int:
        """Events newly verified by ``report``: those of streams without a problem in
        it that no earlier run of this watcher counted."""
        troubled = {p.stream for p in report.problems if p.stream is not None}
        new = 0
        for summary in report.streams:
            head = heads.get(summary.stream)
            if summary.stream in troubled or head is None:
                continue
            counted = self._through.get(summary.stream)
            new += summary.events if counted is None else max(0, head.next_seq - counted)
            self._through[summary.stream] = max(head.next_seq, counted or 0)
        return new


def _newest_seals(report: Report, heads: Mapping[str, StreamHead]) -> dict[str, float]:
    """Unix seconds of the verified head seal of every stream without a problem."""
    troubled = {p.stream for p in report.problems if p.stream is not None}
    newest = {}
    for name, head in heads.items():
        if name in troubled or not head.sealed_at:
            continue
        try:
            newest[name] = parse_rfc3339(head.sealed_at).timestamp()
        except ValueError:  # the state holds only checked timestamps; be total anyway
            continue
    return newest


class Watcher:
    """Runs verify every interval, feeding reports to ``emit`` and figures to ``metrics``."""

    def __init__(
        self,
        settings: WatchSettings,
        metrics: VerifyMetrics,
        *,
        emit: Callable[[Report, RunInfo], None],
        log: Callable[[str], None],
        build: Callable[[VerifySettings], Verifier] = build_verifier,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._emit = emit
        self._log = log
        self._build = build
        self._monotonic = monotonic
        self._wall = wall
        self._tally = _Tally()
        self._attempts = 0
        self.last_ok: bool | None = None
        """Verdict of the last completed run (None: none completed)."""
        self.abandoned = False
        """True once a stop came during a run (its thread may still be going)."""

    @property
    def exit_code(self) -> int:
        """0 if the last completed run was clean, 1 if it found problems, 2 if none completed."""
        return 2 if self.last_ok is None else 0 if self.last_ok else 1

    def run_once(self, stop: StopSignal | None = None) -> bool:
        """One run: verify and save the state (in a thread), then report and
        record the figures. Returns False if ``stop`` came first: the run is
        abandoned, still going in its thread, and nothing of it is recorded.

        Raises:
            ConfigurationError: on the first attempt only (later ones are counted).
        """
        self._attempts += 1
        number = self._attempts
        started, wall = self._monotonic(), self._wall()
        settings = self._settings.verify
        attempt = _Attempt(lambda: self._build(settings), settings.state, f"verify-run-{number}")
        while not attempt.done.wait(_POLL_SECONDS):
            if stop is not None and stop.is_set():
                return False
        if isinstance(attempt.error, StorageError):
            self._failed(number, f"storage error: {attempt.error}", storage=True)
            return True
        if isinstance(attempt.error, ConfigurationError) and number > 1:
            self._failed(number, f"error: {attempt.error}", storage=False)
            return True
        if attempt.error is not None:
            raise attempt.error
        report = attempt.report
        assert report is not None
        duration = self._monotonic() - started
        self.last_ok = report.ok
        self._metrics.record_run(
            RunFigures(
                started=wall,
                duration=duration,
                ok=report.ok,
                problems=Counter(p.kind for p in report.problems),
                newest_seals=_newest_seals(report, attempt.heads),
                new_events=self._tally.add(report, attempt.heads),
            )
        )
        verdict = "PASSED" if report.ok else f"FAILED ({len(report.problems)} problem(s))"
        self._log(f"run {number}: {verdict} in {duration:.2f} s")
        self._emit(report, RunInfo(number, wall, duration))
        return True

    def _failed(self, number: int, reason: str, *, storage: bool) -> None:
        self._metrics.record_error(storage=storage)
        self._log(
            f"run {number} did not complete: {safe_text(reason)}; retrying at the next interval"
        )

    def loop(self, stop: StopSignal) -> int:
        """Run every interval until ``stop`` is set; return the exit code.

        Raises:
            ConfigurationError: the first run met a configuration error.
        """
        interval = self._settings.interval
        while not stop.is_set():
            started = self._monotonic()
            if not self.run_once(stop):
                self.abandoned = True
                self._log("stopped during a run: the run was abandoned (its state not saved)")
                break
            delay = started + interval - self._monotonic()
            if delay > 0:
                stop.wait(delay)
        return self.exit_code


def render_run(report: Report, info: RunInfo, *, as_json: bool) -> str:
    """One run's report: a JSON line (the verify report plus ``watch``), or the text
    report under a line naming the run."""
    if as_json:
        return json.dumps({**report.to_json(), "watch": info.to_json()}) + "\n"
    when = info.to_json()["started_at"]
    return f"--- run {info.number}, started {when}, {info.duration:.2f} s\n" + render_text(report)


@dataclass(frozen=True)
class WatchOutcome:
    """How the watcher ended: the exit code, and whether a run was left running in a
    thread (then the process should exit without waiting for it)."""

    code: int
    abandoned: bool


def end_worker_processes(timeout: float = 2.0) -> int:
    """Kill this process's multiprocessing children (an abandoned run's download
    workers) and reap them; return how many there were.

    Called before the process exits without waiting for an abandoned run: a
    spawned pool worker holds both ends of its task queue, so its parent's exit
    never wakes it, and it would wait for a next task forever (an orphan, until
    the container or the systemd unit's cgroup is torn down). Workers hold no
    state of the watcher (the state file is written by the run's thread in this
    process), so killing them loses nothing.
    """
    children = multiprocessing.active_children()
    for child in children:
        child.kill()
    for child in children:
        child.join(timeout)
    return len(children)


def watch(
    settings: WatchSettings,
    *,
    emit: Callable[[Report, RunInfo], None],
    log: Callable[[str], None],
    build: Callable[[VerifySettings], Verifier] = build_verifier,
) -> WatchOutcome:
    """Serve the metrics and run the watch loop until SIGTERM or SIGINT (handlers
    installed for the duration, then restored; call from the main thread).

    Raises:
        ConfigurationError: the metrics address cannot be served, or the first
            run met a configuration error.
    """
    metrics = VerifyMetrics(settings.interval)
    server = None
    if settings.metrics_listen is not None:
        server = metrics.serve(*settings.metrics_listen)
        log(f"serving metrics on {server.url}")
    watcher = Watcher(settings, metrics, emit=emit, log=log, build=build)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {signum: signal.signal(signum, on_signal) for signum in signals}
    try:
        code = watcher.loop(stop)
        log(f"stopped; exit status {code}")
        return WatchOutcome(code, watcher.abandoned)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if server is not None:
            server.close()
