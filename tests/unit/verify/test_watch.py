"""The watch loop in process: its schedule, failures, exit codes, signals and figures.

Runs verify real folders (``build_stream``) except where a run must fail or take
a given time; there a stand-in verifier is built instead.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from audit_archiver import config
from audit_archiver.errors import ConfigurationError, StorageError, StorageUnavailableError
from audit_archiver.storage.localdir import LocalDirectoryStore
from audit_archiver.verify.metrics import RunFigures, VerifyMetrics
from audit_archiver.verify.problems import KINDS, Problem
from audit_archiver.verify.report import Report
from audit_archiver.verify.run import VerifySettings, build_verifier, run_verify
from audit_archiver.verify.verifier import Verifier, VerifyOptions
from audit_archiver.verify.watch import (
    RunInfo,
    Watcher,
    WatchOutcome,
    WatchSettings,
    parse_listen,
    render_run,
    watch,
    watch_settings,
)
from tests.helpers import OTHER_SEED, build_stream, fixed_signer, forge
from tests.vectors.generate import HERE as VECTORS

PUBLIC = VECTORS / "public.pem"


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


# -- settings ----------------------------------------------------------------------------


def folder_settings(root: Path, state: Path) -> VerifySettings:
    return VerifySettings(
        public_keys=(PUBLIC,), local_dir=root, prefix="audit", state=state, progress=False
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:9464", ("::1", 9464)),
        ("metrics.local:80", ("metrics.local", 80)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected
    assert config.parse_listen(text) == expected  # one set of rules with the agent's --listen


@pytest.mark.parametrize("text", ["", "9464", ":9464", "host:", "host:port", "h:65536", "h:-1"])
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(ConfigurationError, match="--metrics-listen"):
        parse_listen(text)
    with pytest.raises(ConfigurationError):
        config.parse_listen(text)


def test_metrics_cannot_listen_on_a_unix_socket() -> None:
    assert config.parse_listen("unix:/run/m.sock") == Path("/run/m.sock")  # the agent can
    with pytest.raises(ConfigurationError, match=r"--metrics-listen.*unix socket"):
        parse_listen("unix:/run/m.sock")


@pytest.mark.parametrize("interval", [0.0, -1.0, math.nan, math.inf])
def test_interval_must_be_positive_and_finite(tmp_path: Path, interval: float) -> None:
    with pytest.raises(ConfigurationError, match="--watch SECONDS"):
        WatchSettings(folder_settings(tmp_path, tmp_path / "s"), interval)


def test_watch_needs_state_and_metrics_need_watch(tmp_path: Path) -> None:
    no_state = VerifySettings(public_keys=(PUBLIC,), local_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="--watch needs --state"):
        watch_settings(no_state, 5.0, None)
    with pytest.raises(ConfigurationError, match="--metrics-listen needs --watch"):
        watch_settings(no_state, None, "127.0.0.1:0")
    assert watch_settings(no_state, None, None) is None
    settings = watch_settings(folder_settings(tmp_path, tmp_path / "s"), 5.0, "[::1]:0")
    assert settings is not None
    assert settings.metrics_listen == ("::1", 0)


# -- stand-ins for the schedule and failure tests ------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeStop:
    """Set once the watcher has logged ``runs`` outcomes (logging happens in the main
    thread, after a run's thread is done); records each wait between runs."""

    clock: FakeClock
    logged: list[str]
    runs: int
    waits: list[float] = field(default_factory=list)

    def is_set(self) -> bool:
        return sum("run " in line for line in self.logged) >= self.runs

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(round(timeout, 6))
        self.clock.now += timeout
        return self.is_set()


@dataclass
class Script:
    """Each build returns a verifier that takes ``steps[i]`` seconds, returns that
    report, or raises that error."""

    clock: FakeClock
    steps: list[float | BaseException | Report]
    started: list[float] = field(default_factory=list)

    def build(self, settings: VerifySettings) -> Verifier:
        self.started.append(self.clock.now)
        step = self.steps.pop(0)
        if isinstance(step, BaseException):
            raise step
        clock, outcome = self.clock, step

        class Run:
            heads: dict[str, Any] = {}  # noqa: RUF012
            options = VerifyOptions()

            def newest_listed(self) -> dict[str, int]:
                return {}

            def run(self) -> Report:
                if isinstance(outcome, Report):
                    return outcome
                clock.now += outcome
                return Report("fake")

        return cast(Verifier, Run())


def scripted(
    tmp_path: Path, steps: list[float | BaseException | Report], interval: float = 10.0
) -> tuple[Watcher, Script, FakeStop, VerifyMetrics, list[str]]:
    clock = FakeClock()
    logged: list[str] = []
    stop = FakeStop(clock, logged, len(steps))
    script = Script(clock, steps)
    metrics = VerifyMetrics(interval)
    watcher = Watcher(
        WatchSettings(folder_settings(tmp_path, tmp_path / "state.json"), interval),
        metrics,
        emit=lambda report, info: None,
        log=logged.append,
        build=script.build,
        monotonic=clock,
        wall=clock,
    )
    return watcher, script, stop, metrics, logged


def test_runs_start_one_interval_apart_and_a_late_run_is_followed_at_once(
    tmp_path: Path,
) -> None:
    watcher, script, stop, metrics, _ = scripted(tmp_path, [3.0, 12.0, 1.0, 10.0])
    assert watcher.loop(stop) == 0
    assert [t - 1000 for t in script.started] == [0.0, 10.0, 22.0, 32.0]
    assert stop.waits == [7.0, 9.0]  # none after the 12 s run, none after the last
    assert sample(metrics.registry, "audit_archiver_verify_runs_total", result="ok") == 4
    assert sample(metrics.registry, "audit_archiver_verify_last_run_duration_seconds") == 10.0
    assert sample(metrics.registry, "audit_archiver_verify_watch_interval_seconds") == 10.0


def test_storage_errors_are_counted_and_the_next_run_retries(tmp_path: Path) -> None:
    watcher, script, stop, metrics, logged = scripted(
        tmp_path, [StorageUnavailableError("S3 is down"), StorageError("AccessDenied"), 1.0]
    )
    assert watcher.loop(stop) == 0
    assert len(script.started) == 3
    registry = metrics.registry
    assert sample(registry, "audit_archiver_verify_storage_errors_total") == 2
    assert sample(registry, "audit_archiver_verify_runs_total", result="error") == 2
    assert sample(registry, "audit_archiver_verify_runs_total", result="ok") == 1
    assert "run 1 did not complete: storage error: S3 is down" in logged[0]


def test_no_completed_run_exits_2_and_exports_no_last_run(tmp_path: Path) -> None:
    watcher, _, stop, metrics, _ = scripted(tmp_path, [StorageError("down")] * 3)
    assert watcher.loop(stop) == 2
    assert sample(metrics.registry, "audit_archiver_verify_last_run_ok") is None
    assert sample(metrics.registry, "audit_archiver_verify_problems", kind="chain_broken") is None


def test_exit_code_is_the_last_completed_runs(tmp_path: Path) -> None:
    bad = Report("fake", problems=[Problem("chain_broken", "k", "d", stream="s")])
    watcher, _, stop, _, _ = scripted(tmp_path, [1.0, bad, StorageError("down")])
    assert watcher.loop(stop) == 1
    watcher, _, stop, _, _ = scripted(tmp_path, [bad, 1.0, StorageError("down")])
    assert watcher.loop(stop) == 0


def test_configuration_error_ends_the_first_run_only(tmp_path: Path) -> None:
    watcher, _, stop, _, _ = scripted(tmp_path, [ConfigurationError("bad key"), 1.0])
    with pytest.raises(ConfigurationError, match="bad key"):
        watcher.loop(stop)
    watcher, script, stop, metrics, logged = scripted(
        tmp_path, [1.0, ConfigurationError("state file unwritable"), 1.0]
    )
    assert watcher.loop(stop) == 0
    assert len(script.started) == 3
    assert sample(metrics.registry, "audit_archiver_verify_runs_total", result="error") == 1
    assert sample(metrics.registry, "audit_archiver_verify_storage_errors_total") == 0
    assert any("state file unwritable" in line for line in logged)


# -- real folders: state, counting, gauges -------------------------------------------------


def test_counts_each_event_once_and_problems_reset_each_run(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    one = build_stream(None, "one", segments=3, per_segment=4)
    two = build_stream(None, "two", segments=4, per_segment=5)
    store = LocalDirectoryStore(root)

    def put(segments: list[Any]) -> None:
        for segment in segments:
            store.put_new(segment.key.removeprefix("audit/"), segment.data, retain_until=None)

    put(one + two[:2])
    metrics = VerifyMetrics(1.0)
    reports: list[tuple[Report, RunInfo]] = []
    state = tmp_path / "state.json"
    watcher = Watcher(
        WatchSettings(folder_settings(root, state), 1.0),
        metrics,
        emit=lambda report, info: reports.append((report, info)),
        log=lambda line: None,
    )
    registry = metrics.registry

    def events() -> float | None:
        return sample(registry, "audit_archiver_verify_events_verified_total")

    watcher.run_once()
    assert reports[-1][0].ok
    assert events() == 12 + 10
    assert sample(registry, "audit_archiver_verify_last_run_ok") == 1
    sealed = sample(
        registry, "audit_archiver_verify_newest_verified_seal_timestamp_seconds", stream="two"
    )
    assert sealed == pytest.approx(datetime.fromisoformat(two[1].seal.sealed_at).timestamp())

    # Stream "one" is rewritten behind its head; "two" grows meanwhile.
    (root / "one" / "000000000001.ndjson.zst").write_bytes(forge(one[1], fixed_signer(OTHER_SEED)))
    put(two[2:])
    for run in range(3):  # "one" keeps its saved head; "two"'s advances in the first run
        watcher.run_once()
        report = reports[-1][0]
        assert [(p.kind, p.stream) for p in report.problems] == [("history_rewritten", "one")]
        new_in_two = sum(s.events for s in report.streams if s.stream == "two")
        assert new_in_two == (10 if run == 0 else 0)
        saved = json.loads(state.read_text())["streams"]
        assert (saved["one"]["segment_seq"], saved["two"]["segment_seq"]) == (2, 3)
    assert events() == 22 + 10
    assert sample(registry, "audit_archiver_verify_problems", kind="history_rewritten") == 1
    assert sample(registry, "audit_archiver_verify_last_run_ok") == 0
    assert sample(registry, "audit_archiver_verify_runs_total", result="problems") == 3
    newest = sample(
        registry, "audit_archiver_verify_newest_verified_seal_timestamp_seconds", stream="two"
    )
    assert newest == pytest.approx(datetime.fromisoformat(two[3].seal.sealed_at).timestamp())
    assert watcher.exit_code == 1

    # Put the original back: the next run is clean and the problems gauge goes back to 0.
    (root / "one" / "000000000001.ndjson.zst").write_bytes(one[1].data)
    watcher.run_once()
    assert reports[-1][0].ok
    assert sample(registry, "audit_archiver_verify_problems", kind="history_rewritten") == 0
    assert events() == 32
    assert [info.number for _, info in reports] == [1, 2, 3, 4, 5]


def test_every_problem_kind_is_exported_with_zero() -> None:
    metrics = VerifyMetrics()
    metrics.record_run(RunFigures(started=1.0, duration=0.5, ok=False, problems={"truncated": 2}))
    for kind in KINDS:
        want = 2 if kind == "truncated" else 0
        assert sample(metrics.registry, "audit_archiver_verify_problems", kind=kind) == want


def test_render_run_json_and_text() -> None:
    report = Report("s3://b/p")
    info = RunInfo(3, 1767323045.5, 1.23456)
    line = render_run(report, info, as_json=True)
    assert line.endswith("}\n")
    assert line.count("\n") == 1
    parsed = json.loads(line)
    assert parsed["ok"] is True
    assert parsed["watch"] == {
        "run": 3,
        "started_at": "2026-01-02T03:04:05.500000Z",
        "duration_seconds": 1.235,
    }
    text = render_run(report, info, as_json=False)
    assert text.startswith("--- run 3, started 2026-01-02T03:04:05.500000Z, 1.23 s\n")
    assert "PASSED" in text


# -- signals -----------------------------------------------------------------------------


def test_sigterm_abandons_a_run_in_progress(tmp_path: Path) -> None:
    """The verifier is stuck (a hung download, say): SIGTERM still ends the watcher."""
    release = threading.Event()

    def stuck(settings: VerifySettings) -> Verifier:
        os.kill(os.getpid(), signal.SIGTERM)
        release.wait(30)
        raise StorageError("released")  # the abandoned run's outcome is never looked at

    settings = WatchSettings(folder_settings(tmp_path, tmp_path / "state.json"), 60.0)
    before = signal.getsignal(signal.SIGTERM)
    logged: list[str] = []
    started = time.monotonic()
    try:
        outcome = watch(settings, emit=lambda report, info: None, log=logged.append, build=stuck)
    finally:
        release.set()
    assert time.monotonic() - started < 5
    assert outcome == WatchOutcome(code=2, abandoned=True)
    assert any("abandoned" in line for line in logged)
    assert not any("did not complete" in line for line in logged)
    assert signal.getsignal(signal.SIGTERM) is before
    assert not (tmp_path / "state.json").exists()


def test_sigint_while_waiting_returns_the_last_verdict(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    build_stream(root, "one", segments=2)
    settings = WatchSettings(folder_settings(root, tmp_path / "state.json"), 60.0)

    def then_interrupt(verify: VerifySettings) -> Verifier:
        signal.setitimer(signal.ITIMER_REAL, 0.3)  # SIGALRM -> SIGINT once the run is done
        return build_verifier(verify)

    previous = signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    before = signal.getsignal(signal.SIGINT)
    try:
        started = time.monotonic()
        outcome = watch(
            settings, emit=lambda report, info: None, log=lambda line: None, build=then_interrupt
        )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert outcome == WatchOutcome(code=0, abandoned=False)
    assert time.monotonic() - started < 5
    assert (tmp_path / "state.json").exists()
    assert signal.getsignal(signal.SIGINT) is before


# -- the state saving rule (verify --state and --watch alike) --------------------------------


def test_state_advances_for_every_stream_without_a_problem_of_its_own(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    state = tmp_path / "state.json"
    store = LocalDirectoryStore(root)
    a = build_stream(None, "a", segments=3)
    b = build_stream(None, "b", segments=6)
    c = build_stream(None, "c", segments=2)

    def put(segment: Any, data: bytes | None = None) -> None:
        key = segment.key.removeprefix("audit/")
        store.put_new(key, segment.data if data is None else data, retain_until=None)

    def saved() -> dict[str, int]:
        streams = json.loads(state.read_text())["streams"]
        return {name: head["segment_seq"] for name, head in streams.items()}

    def flipped(segment: Any) -> bytes:
        return segment.data[:-1] + bytes([segment.data[-1] ^ 1])  # a body byte

    for segment in [*a[:2], *b[:2]]:
        put(segment)
    assert run_verify(folder_settings(root, state)).ok
    assert saved() == {"a": 1, "b": 1}

    # "a" gets a broken segment, "b" grows, "c" appears with a broken segment of its own.
    put(a[2], flipped(a[2]))
    put(b[2])
    put(b[3])
    put(c[0])
    put(c[1], flipped(c[1]))
    report = run_verify(folder_settings(root, state))
    assert {p.stream for p in report.problems} == {"a", "c"}
    assert saved() == {"a": 1, "b": 3}  # a keeps its head, c has none yet
    again = run_verify(folder_settings(root, state))  # a permanent problem is reported again
    assert {p.stream for p in again.problems} == {"a", "c"}
    assert [s.segments for s in again.streams if s.stream == "b"] == [0]  # b stays incremental

    # A run of one stream keeps the other streams' saved heads.
    put(b[4])
    only_b = dataclasses.replace(folder_settings(root, state), streams=("b",))
    assert run_verify(only_b).ok
    assert saved() == {"a": 1, "b": 4}

    # A stray object is found again by every run from the listing: it holds no head back.
    put(b[5])
    (root / "b" / "notes.txt").write_text("not a segment\n")
    (root / "notes.txt").write_text("not a segment\n")
    stray = run_verify(only_b)
    assert sorted((p.kind, p.stream or "") for p in stray.problems) == [
        ("unexpected_object", ""),
        ("unexpected_object", "b"),
    ]
    assert saved() == {"a": 1, "b": 5}
    again = run_verify(only_b)
    assert len(again.problems) == 2  # still reported: nothing is forgotten

    # A bad tail cannot be erased: the kept head remembers what was listed after it.
    seen = json.loads(state.read_text())["streams"]["a"]
    assert (seen["segment_seq"], seen["seen_through"]) == (1, 2)
    (root / a[2].key.removeprefix("audit/")).unlink()
    erased = run_verify(folder_settings(root, state))
    assert ("truncated", "a") in {(p.kind, p.stream) for p in erased.problems}
