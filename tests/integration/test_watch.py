"""``verify --watch``: the continuous auditor, through the real CLI.

A watcher runs as a subprocess against moto's S3 server over HTTP (or a folder the
real ``seal`` command writes into). Segments are added, overwritten and removed
between its runs while the test reads its reports (one JSON line per run) and
scrapes its metrics endpoint; it is stopped with SIGTERM or SIGINT and its exit
code checked. Expected values come from the segments the test built (their seals'
event counts and ``sealed_at``), not from the verifier.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from audit_archiver.core.segment import SealedSegment
from audit_archiver.storage.s3 import S3Store
from tests.helpers import OTHER_SEED, build_stream, fixed_signer, forge
from tests.integration.agent_process import FlakyProxy
from tests.integration.cli import BIN, run_cli
from tests.reliability.faultproxy import FaultProxy, Request
from tests.s3server import moto_s3_backend, s3_client
from tests.vectors.generate import HERE as VECTORS

PUBLIC = VECTORS / "public.pem"
RETAIN = datetime(2100, 1, 1).astimezone()
TIMEOUT = 30.0
INTERVAL = "0.2"


def key(stream: str, n: int) -> str:
    return f"audit/{stream}/{n:012d}.ndjson.zst"


def unix(segment: SealedSegment) -> float:
    """The seal's own ``sealed_at``, as unix seconds (read from the built seal)."""
    return datetime.fromisoformat(segment.seal.sealed_at).timestamp()


def upload(endpoint: str, bucket: str, segments: list[SealedSegment]) -> None:
    store = S3Store.connect(bucket, region="us-east-1", endpoint_url=endpoint)
    for segment in segments:
        store.put_new(segment.key, segment.data, retain_until=RETAIN)


class Watch:
    """A running ``audit-archiver verify --watch`` process: its reports, logs and metrics."""

    def __init__(self, *args: str | Path) -> None:
        self.process = subprocess.Popen(
            [str(BIN), "verify", *map(str, args), "--json", "--no-progress"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        self.reports: list[dict[str, Any]] = []
        self.log: list[str] = []
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, pipe: Any, is_stdout: bool) -> None:
        for line in pipe:
            with self._lock:
                if is_stdout:
                    self.reports.append(json.loads(line))
                else:
                    self.log.append(line.rstrip("\n"))

    def wait(self, condition: Callable[[], object], what: str) -> Any:
        deadline = time.monotonic() + TIMEOUT
        while True:
            found = condition()
            if found:
                return found
            if self.process.poll() is not None:
                raise AssertionError(f"watch exited {self.process.returncode}: {self.log}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; log: {self.log[-5:]}")
            time.sleep(0.02)

    def mark(self) -> int:
        """How many reports have arrived: take it *before* changing the bucket, then
        pass it to :meth:`report`, so that a run completing in between is not missed."""
        with self._lock:
            return len(self.reports)

    def report(
        self, predicate: Callable[[dict[str, Any]], bool], what: str, *, after: int
    ) -> dict[str, Any]:
        """The first report at index ``after`` or later (see :meth:`mark`) matching
        ``predicate``."""

        def match() -> dict[str, Any] | None:
            with self._lock:
                return next((r for r in self.reports[after:] if predicate(r)), None)

        found: dict[str, Any] = self.wait(match, what)
        return found

    def since(self, after: int, last: dict[str, Any]) -> list[dict[str, Any]]:
        """The reports from index ``after`` through ``last`` (one report may see only
        part of a change, so a change is summed over these)."""
        with self._lock:
            return self.reports[after : self.reports.index(last) + 1]

    def runs_after(self, count: int) -> None:
        """Wait for ``count`` more reports."""
        target = self.mark() + count
        self.wait(lambda: self.mark() >= target, f"{count} more run(s)")

    @property
    def metrics_url(self) -> str:
        def url() -> str | None:
            with self._lock:
                for line in self.log:
                    match = re.search(r"(http://\S+/metrics)", line)
                    if match:
                        return match.group(1)
            return None

        found: str = self.wait(url, "the metrics address on stderr")
        return found

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one sample on the metrics endpoint (None when absent)."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as answer:
            text = answer.read().decode()
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            metric, _, label_text = series.partition("{")
            found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_text.rstrip("}")))
            if metric == name and found == labels:
                return float(value)
        return None

    def stop(self, signum: int = signal.SIGTERM) -> int:
        started = time.monotonic()
        self.process.send_signal(signum)
        code = self.process.wait(TIMEOUT)
        self._close()
        assert time.monotonic() - started < 10, "the watcher took too long to stop"
        assert not any("Traceback" in line for line in self.log), self.log
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT)
        self._close()

    def _close(self) -> None:
        for reader in self._readers:
            reader.join(5)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def watches() -> Iterator[list[Watch]]:
    started: list[Watch] = []
    yield started
    for watch in started:
        watch.kill()


def start(watches: list[Watch], *args: str | Path) -> Watch:
    watch = Watch(*args)
    watches.append(watch)
    return watch


def bucket_args(endpoint: str, bucket: str, state: Path) -> list[str | Path]:
    return [
        "--bucket",
        bucket,
        "--prefix",
        "audit",
        "--endpoint-url",
        endpoint,
        "--region",
        "us-east-1",
        "--public-key",
        PUBLIC,
        "--state",
        state,
        "--watch",
        INTERVAL,
        "--metrics-listen",
        "127.0.0.1:0",
    ]


def problems(report: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((p["kind"], p["key"]) for p in report["problems"])


def head_of(report: dict[str, Any], stream: str) -> int | None:
    for summary in report["stream_summaries"]:
        if summary["stream"] == stream:
            seq: int | None = summary["head_segment_seq"]
            return seq
    return None


# -- usage errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--watch", "5"], "--watch needs --state"),
        (["--metrics-listen", "127.0.0.1:0"], "--metrics-listen needs --watch"),
        (["--watch", "0", "--state", "{state}"], "--watch"),
        (["--watch", "nan", "--state", "{state}"], "--watch"),
        (["--watch", "5", "--state", "{state}", "--metrics-listen", "nope"], "HOST:PORT"),
        (["--watch", "5", "--state", "{state}", "--metrics-listen", "127.0.0.1:99999"], "port"),
    ],
)
def test_watch_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "archive").mkdir()
    filled = [a.replace("{state}", str(tmp_path / "state.json")) for a in args]
    result = run_cli("verify", "--local-dir", tmp_path / "archive", "--public-key", PUBLIC, *filled)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state.json").exists()


def test_metrics_address_in_use_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "archive").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_cli(
            "verify",
            "--local-dir",
            tmp_path / "archive",
            "--public-key",
            PUBLIC,
            "--state",
            tmp_path / "state.json",
            "--watch",
            "5",
            "--metrics-listen",
            f"127.0.0.1:{port}",
        )
    assert result.returncode == 2, result.stderr
    assert "cannot serve metrics on 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


# -- a bucket changing under the watcher ---------------------------------------------------


def test_watch_follows_new_segments_and_catches_rewritten_history(
    locked_bucket: tuple[str, str], tmp_path: Path, watches: list[Watch]
) -> None:
    endpoint, bucket = locked_bucket
    app1 = build_stream(None, "app-1", segments=5, per_segment=4)
    app2 = build_stream(None, "app-2", segments=4, per_segment=5)
    upload(endpoint, bucket, app1[:3] + app2[:2])
    state = tmp_path / "state.json"
    watch = start(watches, *bucket_args(endpoint, bucket, state))

    first = watch.report(lambda r: True, "the first run", after=0)
    assert first["ok"], first["problems"]
    assert (first["segments"], first["events"]) == (5, 3 * 4 + 2 * 5)
    assert json.loads(state.read_text())["streams"]["app-1"]["segment_seq"] == 2
    assert watch.metric("audit_archiver_verify_last_run_ok") == 1
    assert watch.metric("audit_archiver_verify_events_verified_total") == 22
    assert watch.metric(
        "audit_archiver_verify_newest_verified_seal_timestamp_seconds", stream="app-1"
    ) == pytest.approx(unix(app1[2]))
    assert watch.metric("audit_archiver_verify_problems", kind="extra_version") == 0

    # New segments are picked up incrementally: only they are downloaded and counted.
    before = watch.mark()
    upload(endpoint, bucket, app1[3:])
    grown = watch.report(lambda r: head_of(r, "app-1") == 4, "app-1's new segments", after=before)
    assert grown["ok"], grown["problems"]
    assert grown["incremental"]
    since = watch.since(before, grown)  # a run may see one upload of the two
    assert sum(r["segments"] for r in since) == 2
    assert sum(r["events"] for r in since) == 8
    watch.wait(
        lambda: watch.metric("audit_archiver_verify_events_verified_total") == 30,
        "30 events verified",
    )
    assert watch.metric(
        "audit_archiver_verify_newest_verified_seal_timestamp_seconds", stream="app-1"
    ) == pytest.approx(unix(app1[4]))

    # An old segment overwritten with a new version: every later run reports it, app-1's
    # saved head stops advancing, and app-2's (no problem of its own) goes on.
    before = watch.mark()
    forged = forge(app1[1], fixed_signer(OTHER_SEED))
    s3_client(endpoint).put_object(
        Bucket=bucket, Key=key("app-1", 1), Body=forged, ChecksumAlgorithm="SHA256"
    )
    upload(endpoint, bucket, app2[2:])
    tampered = watch.report(
        lambda r: bool(r["problems"]) and head_of(r, "app-2") == 3,
        "the overwrite reported",
        after=before,
    )
    assert problems(tampered) == [("extra_version", key("app-1", 1))]
    watch.runs_after(3)
    assert problems(watch.reports[-1]) == [("extra_version", key("app-1", 1))]
    saved = json.loads(state.read_text())["streams"]
    assert (saved["app-1"]["segment_seq"], saved["app-2"]["segment_seq"]) == (4, 3)
    assert watch.metric("audit_archiver_verify_events_verified_total") == 40
    assert watch.metric("audit_archiver_verify_problems", kind="extra_version") == 1
    assert watch.metric("audit_archiver_verify_last_run_ok") == 0
    assert (watch.metric("audit_archiver_verify_runs_total", result="problems") or 0) >= 3
    assert watch.metric(
        "audit_archiver_verify_newest_verified_seal_timestamp_seconds", stream="app-2"
    ) == pytest.approx(unix(app2[3]))

    # A segment behind the saved head removed behind S3's back (no delete marker, no new
    # version): caught from the listing, without downloading anything old.
    before = watch.mark()
    moto_s3_backend().buckets[bucket].keys.pop(key("app-2", 0))
    rewritten = watch.report(
        lambda r: any(p["kind"] == "history_rewritten" for p in r["problems"]),
        "the deletion reported",
        after=before,
    )
    assert problems(rewritten) == [
        ("extra_version", key("app-1", 1)),
        ("history_rewritten", key("app-2", 0)),
    ]
    watch.wait(
        lambda: watch.metric("audit_archiver_verify_problems", kind="history_rewritten") == 1,
        "the problems gauge",
    )
    assert watch.metric("audit_archiver_verify_events_verified_total") == 40

    assert watch.stop(signal.SIGTERM) == 1  # the last run found problems


class CountingProxy(FaultProxy):
    """Forwards to moto (or applies the rules added) and records every segment GET."""

    def __init__(self, target_port: int) -> None:
        self._got: list[str] = []
        self._got_lock = threading.Lock()
        super().__init__(target_port)

    def _decide(self, request: Request) -> str | None:
        if request.method == "GET" and ".ndjson" in request.target:
            with self._got_lock:
                self._got.append(request.target.partition("?")[0])
        return super()._decide(request)

    def gets(self) -> list[str]:
        """The paths of the segment GETs so far (``/bucket/key``)."""
        with self._got_lock:
            return list(self._got)


@pytest.fixture
def counting(moto_endpoint: str) -> Iterator[CountingProxy]:
    proxy = CountingProxy(int(moto_endpoint.rsplit(":", 1)[1]))
    try:
        yield proxy
    finally:
        proxy.close()


def test_a_permanent_problem_on_one_stream_does_not_freeze_the_others(
    locked_bucket: tuple[str, str],
    counting: CountingProxy,
    tmp_path: Path,
    watches: list[Watch],
) -> None:
    """An ``extra_version`` under COMPLIANCE cannot go away: its stream's saved head stays,
    every run reports it, and the other stream's head still advances, so each run
    downloads only that stream's saved head and what is new (counted at the proxy)."""
    _, bucket = locked_bucket
    endpoint = counting.url
    app1 = build_stream(None, "app-1", segments=2, per_segment=3)
    app2 = build_stream(None, "app-2", segments=6, per_segment=2)
    upload(endpoint, bucket, app1 + app2[:1])
    state = tmp_path / "state.json"
    watch = start(watches, *bucket_args(endpoint, bucket, state))
    assert watch.report(lambda r: True, "the first run", after=0)["ok"]

    before = watch.mark()
    s3_client(endpoint).put_object(
        Bucket=bucket,
        Key=key("app-1", 0),
        Body=forge(app1[0], fixed_signer(OTHER_SEED)),
        ChecksumAlgorithm="SHA256",
    )
    watch.report(lambda r: bool(r["problems"]), "the overwrite reported", after=before)

    def app2_gets() -> list[str]:
        return [path for path in counting.gets() if "/app-2/" in path]

    uploaded = 1
    for head in (2, 3, 5):  # app-2 grows in steps while app-1's problem stays
        before = watch.mark()
        upload(endpoint, bucket, app2[uploaded : head + 1])
        uploaded = head + 1
        grown = watch.report(
            lambda r, head=head: head_of(r, "app-2") == head, f"app-2 at {head}", after=before
        )
        assert problems(grown) == [("extra_version", key("app-1", 0))]
        assert json.loads(state.read_text())["streams"]["app-2"]["segment_seq"] == head
        # The runs after this one start from the saved head: one GET of it per run,
        # nothing older.
        got = len(app2_gets())
        watch.runs_after(2)
        later = app2_gets()[got:]
        assert later, "each run downloads the saved head to compare it"
        assert set(later) == {f"/{bucket}/{key('app-2', head)}"}, later
    assert watch.metric("audit_archiver_verify_events_verified_total") == 3 * 2 + 6 * 2
    assert watch.metric("audit_archiver_verify_problems", kind="extra_version") == 1
    assert json.loads(state.read_text())["streams"]["app-1"]["segment_seq"] == 1
    assert watch.stop(signal.SIGTERM) == 1


def test_storage_errors_are_counted_and_retried(
    locked_bucket: tuple[str, str], tmp_path: Path, watches: list[Watch]
) -> None:
    endpoint, bucket = locked_bucket
    stream = build_stream(None, "app-1", segments=2)
    upload(endpoint, bucket, stream)
    proxy = FlakyProxy(int(endpoint.rsplit(":", 1)[1]))  # down: connections refused
    state = tmp_path / "state.json"
    watch = start(watches, *bucket_args(proxy.url, bucket, state))
    try:
        watch.wait(
            lambda: (watch.metric("audit_archiver_verify_storage_errors_total") or 0) >= 2,
            "two storage errors",
        )
        assert watch.reports == []
        assert watch.metric("audit_archiver_verify_last_run_ok") is None
        assert (watch.metric("audit_archiver_verify_runs_total", result="error") or 0) >= 2
        assert any("storage error" in line for line in watch.log), watch.log
        proxy.up()
        report = watch.report(lambda r: True, "a run once S3 is back", after=0)
        assert report["ok"], report["problems"]
        assert state.exists()
        assert watch.metric("audit_archiver_verify_events_verified_total") == 8
    finally:
        proxy.down()
    assert watch.stop(signal.SIGINT) == 0  # the last completed run was clean


def test_stopped_before_any_run_completed_exits_2(
    locked_bucket: tuple[str, str], tmp_path: Path, watches: list[Watch]
) -> None:
    _, bucket = locked_bucket
    proxy = FlakyProxy(1)  # never up
    watch = start(watches, *bucket_args(proxy.url, bucket, tmp_path / "state.json"))
    watch.wait(
        lambda: (watch.metric("audit_archiver_verify_storage_errors_total") or 0) >= 1,
        "a storage error",
    )
    assert watch.stop(signal.SIGTERM) == 2
    assert watch.reports == []
    assert not (tmp_path / "state.json").exists()


def test_sigterm_ends_a_run_hung_on_s3(
    locked_bucket: tuple[str, str], tmp_path: Path, watches: list[Watch]
) -> None:
    """S3 accepts connections and never answers: the run hangs in a read (10 s timeout,
    retried); SIGTERM still ends the watcher at once, without waiting for it."""
    _, bucket = locked_bucket
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(16)  # the kernel completes connections; nobody reads or answers
        url = f"http://127.0.0.1:{black_hole.getsockname()[1]}"
        watch = start(watches, *bucket_args(url, bucket, tmp_path / "state.json"))
        watch.metrics_url  # noqa: B018  # started: the first run is under way
        time.sleep(0.5)  # let it reach the hung request (no observable event to poll)
        assert watch.stop(signal.SIGTERM) == 2
    assert any("abandoned" in line for line in watch.log), watch.log
    assert watch.reports == []
    assert list(tmp_path.iterdir()) == []


def _children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: no worker processes")
def test_sigterm_during_a_large_run_leaves_no_worker_process_behind(
    locked_bucket: tuple[str, str], counting: CountingProxy, tmp_path: Path, watches: list[Watch]
) -> None:
    """A run of 64+ segments spreads its downloads over worker processes. SIGTERM while
    they hang on S3 ends the watcher at once, and its workers with it: a pool worker
    whose parent is gone would otherwise wait for its next task forever."""
    _, bucket = locked_bucket
    upload(counting.url, bucket, build_stream(None, "app-1", segments=70, per_segment=1))
    counting.add(
        "blackhole", count=None, match=lambda r: r.method == "GET" and ".ndjson" in r.target
    )
    watch = start(watches, *bucket_args(counting.url, bucket, tmp_path / "state.json"))
    workers: set[int] = set()
    try:
        workers = watch.wait(
            lambda: len(counting.gets()) >= 2 and _children(watch.process.pid),
            "worker processes stuck in downloads",
        )
        watch.process.send_signal(signal.SIGTERM)
        assert watch.process.wait(TIMEOUT) == 2
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in workers), "orphaned worker processes"
    finally:
        for pid in workers:  # the test's own processes, should the check above fail
            if _alive(pid):  # (they hold the watcher's stdout: reading it would never end)
                os.kill(pid, signal.SIGKILL)
        watch.kill()
    assert any("abandoned" in line for line in watch.log), watch.log
    assert not any("Traceback" in line for line in watch.log), watch.log


# -- a folder the real ``seal`` command appends to ----------------------------------------


def _seal(tmp_path: Path, keys: Path, archive: Path, first: int, count: int) -> None:
    events = tmp_path / f"events-{first}.ndjson"
    events.write_text(
        "".join(
            json.dumps({"actor": f"u{i}", "action": "read", "resource": {"id": f"r{i}"}}) + "\n"
            for i in range(first, first + count)
        )
    )
    sealed = run_cli(
        "seal",
        "--input",
        events,
        "--out-dir",
        archive,
        "--stream",
        "web",
        "--signing-key",
        keys / "signing.key",
        "--batch-max-events",
        "10",
    )
    assert sealed.returncode == 0, sealed.stderr


def test_watch_a_folder_sealed_between_runs(tmp_path: Path, watches: list[Watch]) -> None:
    keys = tmp_path / "keys"
    assert run_cli("keygen", "--out", keys).returncode == 0
    archive = tmp_path / "archive"
    _seal(tmp_path, keys, archive, 0, 20)
    state = tmp_path / "state.json"
    watch = start(
        watches,
        "--local-dir",
        archive,
        "--prefix",
        "audit",
        "--public-key",
        keys / "signing.pub",
        "--state",
        state,
        "--watch",
        INTERVAL,
    )
    assert watch.report(lambda r: True, "the first run", after=0)["events"] == 20
    before = watch.mark()
    _seal(tmp_path, keys, archive, 20, 15)
    grown = watch.report(lambda r: head_of(r, "web") == 3, "the new segments", after=before)
    assert grown["ok"], grown["problems"]
    since = watch.since(before, grown)  # a run may see one file of the two
    assert sum(r["segments"] for r in since) == 2
    assert sum(r["events"] for r in since) == 15

    # A segment behind the head swapped for a copy of another (same size, other content):
    # the folder has no versions, so the listing digest holds each file's SHA-256.
    before = watch.mark()
    (archive / "web" / "000000000000.ndjson.zst").write_bytes(
        (archive / "web" / "000000000001.ndjson.zst").read_bytes()
    )
    swapped = watch.report(lambda r: not r["ok"], "the swapped segment", after=before)
    assert [p["kind"] for p in swapped["problems"]] == ["history_rewritten"]
    assert watch.stop(signal.SIGTERM) == 1
