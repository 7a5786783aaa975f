"""Stdin and tail sources under hostile input: every bad line is counted, logged
without its content and skipped; an over-long line is never held whole; the tail
position moves past a skipped line; I/O errors are retried or reported."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from audit_archiver.agent.metrics import AgentMetrics
from audit_archiver.agent.sources import StdinSource, TailSource
from audit_archiver.core.event import MAX_DEPTH
from audit_archiver.core.line import EncodedEvents
from audit_archiver.errors import SourceError
from tests.helpers import wait_for

SECRET = "s3cr3t-payload"  # present in every poison line: it must never reach the log


def event(n: int) -> bytes:
    return json.dumps({"actor": "a", "action": "read", "resource": f"doc/{n}", "n": n}).encode()


POISON = {
    "not_json": b'{"actor": "' + SECRET.encode() + b'", oops',
    "invalid": json.dumps({"actor": SECRET, "action": "read"}).encode(),
    "too_deep": b'{"actor":"a","action":"b","resource":"c","x":"'
    + SECRET.encode()
    + b'","d":'
    + b"[" * (MAX_DEPTH + 5)
    + b"]" * (MAX_DEPTH + 5)
    + b"}",
    "not_json_utf8": b'{"actor":"\xff\xfe' + SECRET.encode() + b'","action":"b","resource":"c"}',
    "too_large": b'{"actor":"a","action":"b","resource":"' + SECRET.encode() * 200 + b'"}',
}
MAX_LINE = 2048  # the sources under test are built with this --max-line-bytes


class FakeAgent:
    """What a source uses of the agent: settings, metrics, submit, stop."""

    def __init__(self) -> None:
        self.settings = SimpleNamespace(max_line_bytes=MAX_LINE)
        self.metrics = AgentMetrics()
        self.stopped = threading.Event()
        self.events: list[dict[str, Any]] = []
        self.stop_requests = 0

    def submit(self, events: EncodedEvents) -> Future[None]:
        lines = events.data.split(b"\n")[:-1]
        assert len(lines) == events.event_count
        self.events += [json.loads(line) for line in lines]
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def readiness(self) -> str | None:
        return None

    def request_stop(self) -> None:
        self.stop_requests += 1
        self.stopped.set()

    def rejected(self, source: str, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "audit_archiver_events_rejected_total", {"source": source, "reason": reason}
        )
        return value or 0.0


@pytest.fixture
def agent() -> FakeAgent:
    return FakeAgent()


@pytest.fixture
def pipe() -> Iterator[tuple[Any, Any]]:
    read_fd, write_fd = os.pipe()
    reader, writer = os.fdopen(read_fd, "rb"), os.fdopen(write_fd, "wb")
    yield reader, writer
    reader.close()
    if not writer.closed:
        writer.close()


def skipped_records(caplog: pytest.LogCaptureFixture, source: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == f"{source}: invalid event skipped"]


def test_stdin_skips_every_kind_of_poison_line_and_goes_on(
    agent: FakeAgent, pipe: tuple[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = pipe
    lines = [event(0)]
    for n, poison in enumerate(POISON.values(), start=1):
        lines += [poison, event(n)]
    body = b"\n".join(lines) + b"\n"
    source = StdinSource(agent, reader)  # type: ignore[arg-type]
    caplog.set_level(logging.INFO)
    source.start()
    writer.write(body)
    writer.close()
    source.join(30)
    assert [e["n"] for e in agent.events] == list(range(len(POISON) + 1))
    assert source.error is None and agent.stop_requests == 1  # end of input: a normal end
    assert agent.rejected("stdin", "not_json") == 2
    for reason in ("invalid", "too_deep", "too_large"):
        assert agent.rejected("stdin", reason) == 1
    records = skipped_records(caplog, "stdin")
    offsets = [sum(len(line) + 1 for line in lines[:i]) for i in range(len(lines))]
    expected = [
        (2 * i + 2, offsets[2 * i + 1], len(poison)) for i, poison in enumerate(POISON.values())
    ]
    assert [(r.line, r.offset, r.length) for r in records] == expected  # type: ignore[attr-defined]
    assert all(SECRET not in json.dumps(vars(r), default=str) for r in caplog.records)


def test_a_deeply_nested_line_does_not_stop_the_tail(tmp_path: Path, agent: FakeAgent) -> None:
    log_file = tmp_path / "app.log"
    deep = b'{"actor":' * 200 + b"\n" + b"[" * 100_000 + b"\n"  # 1,800 bytes; 100 kB
    log_file.write_bytes(event(0) + b"\n" + deep + event(1) + b"\n")
    state = tmp_path / "tail.json"
    source = TailSource(agent, log_file, state, poll_seconds=0.01)  # type: ignore[arg-type]
    source.start()
    try:
        wait_for(lambda: len(agent.events) == 2, what="both valid events")
        wait_for(
            lambda: (
                state.exists()
                and json.loads(state.read_text())["offset"] == log_file.stat().st_size
            ),
            what="the position past every line",
        )
    finally:
        source.stop()
        source.join(30)
    assert source.error is None and agent.stop_requests == 0
    assert agent.rejected("tail", "too_deep") == 1
    assert agent.rejected("tail", "too_large") == 1  # 100,000 bytes > MAX_LINE
    # a restart resumes after them: nothing is read twice, nothing retried
    again = FakeAgent()
    source = TailSource(again, log_file, state, poll_seconds=0.01)  # type: ignore[arg-type]
    source.start()
    with log_file.open("ab") as f:
        f.write(event(2) + b"\n")
    try:
        wait_for(lambda: len(again.events) == 1, what="the appended event")
    finally:
        source.stop()
        source.join(30)
    assert [e["n"] for e in again.events] == [2]
    assert again.rejected("tail", "too_deep") == again.rejected("tail", "too_large") == 0


def test_a_skipped_line_at_the_end_of_the_file_is_committed(
    tmp_path: Path, agent: FakeAgent
) -> None:
    log_file = tmp_path / "app.log"
    log_file.write_bytes(event(0) + b"\n" + POISON["invalid"] + b"\n")
    state = tmp_path / "tail.json"
    source = TailSource(agent, log_file, state, poll_seconds=0.01)  # type: ignore[arg-type]
    source.start()
    try:
        wait_for(
            lambda: (
                state.exists()
                and json.loads(state.read_text())["offset"] == log_file.stat().st_size
            ),
            what="the position past the invalid last line",
        )
    finally:
        source.stop()
        source.join(30)
    assert [e["n"] for e in agent.events] == [0]


def feed_huge_line(agent: FakeAgent, size: int) -> tuple[float, int]:
    """Feed ``size`` bytes of one line without newline, then a valid line; (seconds, peak)."""
    source = StdinSource(agent, stream=SimpleNamespace())  # type: ignore[arg-type]
    chunk = b"x" * (1 << 20)
    tracemalloc.start()
    started = time.process_time()  # CPU time: other processes on the machine do not count
    for _ in range(size // len(chunk)):
        source._feed(chunk)
    source._feed(b"\n" + event(7) + b"\n")
    elapsed = time.process_time() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return elapsed, peak


def test_a_huge_line_is_dropped_unbuffered_in_linear_time(agent: FakeAgent) -> None:
    small_time = min(feed_huge_line(agent, 16 << 20)[0] for _ in range(3))
    runs = [feed_huge_line(agent, 128 << 20) for _ in range(3)]
    big_time, big_peak = min(t for t, _ in runs), max(p for _, p in runs)
    # memory: not the line (128 MiB), at most the chunk being split and one limit's worth
    assert big_peak < 4 * MAX_LINE + (1 << 20), big_peak
    # time: 8 times the bytes cost about 8 times as long (quadratic would be 64 times);
    # the best of three CPU times, with a floor, so a loaded machine cannot fail it
    assert big_time < 20 * max(small_time, 0.02), (small_time, big_time)
    assert agent.rejected("stdin", "too_large") == 6
    assert [e["n"] for e in agent.events] == [7] * 6


def test_a_last_line_without_newline_is_read_at_the_end_of_input(
    agent: FakeAgent, pipe: tuple[Any, Any]
) -> None:
    reader, writer = pipe
    source = StdinSource(agent, reader)  # type: ignore[arg-type]
    source.start()
    writer.write(event(0) + b"\n" + b"y" * (3 * MAX_LINE))
    writer.close()
    source.join(30)
    assert [e["n"] for e in agent.events] == [0]
    assert agent.rejected("stdin", "too_large") == 1


def test_a_stdin_read_error_stops_the_agent_with_an_error(tmp_path: Path, agent: FakeAgent) -> None:
    directory = os.open(tmp_path, os.O_RDONLY)
    try:
        source = StdinSource(agent, SimpleNamespace(fileno=lambda: directory))  # type: ignore[arg-type]
        source.start()
        source.join(30)
    finally:
        os.close(directory)
    assert isinstance(source.error, SourceError)
    assert "cannot read standard input" in str(source.error)
    assert source.error.exit_code != 0
    assert agent.stop_requests == 1


def test_a_tail_io_error_is_retried_and_shown_as_an_alert(tmp_path: Path, agent: FakeAgent) -> None:
    log_file = tmp_path / "app.log"
    log_file.write_bytes(event(0) + b"\n")
    state = tmp_path / "tail.json"
    state.mkdir()
    (state / "blocker").write_text("the position cannot be saved over a directory")
    source = TailSource(agent, log_file, state, poll_seconds=0.01)  # type: ignore[arg-type]
    source.start()
    try:
        wait_for(lambda: source.alert is not None and "I/O error" in source.alert, what="alert")
        (state / "blocker").unlink()
        state.rmdir()
        wait_for(state.is_file, what="the position saved once the error is gone")
        wait_for(lambda: source.alert is None, what="the alert cleared")
    finally:
        source.stop()
        source.join(30)
    assert source.error is None and agent.stop_requests == 0
    assert {e["n"] for e in agent.events} == {0}  # at least once: maybe more than once


def test_a_missing_tail_file_is_waited_for(tmp_path: Path, agent: FakeAgent) -> None:
    log_file = tmp_path / "later.log"
    source = TailSource(agent, log_file, tmp_path / "tail.json", poll_seconds=0.01)  # type: ignore[arg-type]
    source.start()
    try:
        wait_for(lambda: source.alert is not None and "does not exist" in source.alert)
        log_file.write_bytes(event(3) + b"\n")
        wait_for(lambda: len(agent.events) == 1, what="the event once the file exists")
    finally:
        source.stop()
        source.join(30)
    assert source.alert is None and agent.events[0]["n"] == 3


# --- one length limit for every format -------------------------------------------------

PRODUCERS = Path(__file__).resolve().parents[2] / "fixtures" / "producers"


def padded_to(size: int, fmt: str) -> bytes:
    """A valid one-line record of ``fmt``, exactly ``size`` bytes long (padding in a string)."""
    if fmt == "events":
        record: dict[str, Any] = {"actor": "a", "action": "read", "resource": "r", "pad": ""}
    elif fmt == "k8s-audit":
        record = {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "auditID": "id-1",
            "stage": "ResponseComplete",
            "verb": "get",
            "requestURI": "/api/v1/pods",
            "user": {"username": "alice"},
            "pad": "",
        }
    else:  # a CloudTrail record as an EventBridge envelope's detail holds it
        record = json.loads((PRODUCERS / "cloudtrail-eventbridge.json").read_bytes())["detail"]
        record["pad"] = ""
    bare = len(json.dumps(record).encode())
    record["pad"] = "x" * (size - bare)
    line = json.dumps(record).encode()
    assert len(line) == size
    return line


@pytest.mark.parametrize("fmt", ["events", "k8s-audit", "cloudtrail"])
@pytest.mark.parametrize("split", [False, True], ids=["one-chunk", "two-chunks"])
def test_max_line_bytes_holds_for_every_format(agent: FakeAgent, fmt: str, split: bool) -> None:
    source = StdinSource(agent, stream=SimpleNamespace(), format_name=fmt)  # type: ignore[arg-type]
    data = padded_to(MAX_LINE, fmt) + b"\n" + padded_to(MAX_LINE + 1, fmt) + b"\n"
    data += padded_to(100_000, fmt) + b"\n" + padded_to(1500, fmt) + b"\n"
    if split:  # each line crosses a chunk boundary
        for cut in range(0, len(data), 1000):
            source._feed(data[cut : cut + 1000])
    else:
        source._feed(data)
    assert len(agent.events) == 2  # the line of exactly MAX_LINE bytes, and the short one
    assert agent.rejected("stdin", "too_large") == 2


def test_max_line_bytes_comes_from_the_settings() -> None:
    agent = FakeAgent()
    agent.settings.max_line_bytes = 1500
    source = StdinSource(agent, stream=SimpleNamespace())  # type: ignore[arg-type]
    source._feed(padded_to(1500, "events") + b"\n" + padded_to(1501, "events") + b"\n")
    assert len(agent.events) == 1
    assert agent.rejected("stdin", "too_large") == 1


# --- tail position and rotation, driven step by step (poll 0: no waiting) --------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


StepTail = Callable[..., TailSource]


@pytest.fixture
def stepped_tail() -> Iterator[StepTail]:
    """Builds tail sources to drive with ``_step`` (grace 5 s on a fake clock); closes them."""
    made: list[TailSource] = []

    def make(
        agent: FakeAgent, log_file: Path, state: Path, clock: Clock | None = None
    ) -> TailSource:
        source = TailSource(
            agent,  # type: ignore[arg-type]
            log_file,
            state,
            poll_seconds=0,
            rotation_grace=5.0,
            clock=clock or Clock(),
        )
        made.append(source)
        return source

    yield make
    for source in made:
        source._close()


def lines(*numbers: int) -> bytes:
    return b"".join(event(n) + b"\n" for n in numbers)


def drive(source: TailSource, steps: int = 3, *, resume: bool = False) -> None:
    for _ in range(steps):
        assert source._step(resume)
        resume = False


def test_a_rotated_file_is_read_until_idle_for_the_grace_period(
    stepped_tail: StepTail, tmp_path: Path, agent: FakeAgent
) -> None:
    log_file, rotated, state = tmp_path / "app.log", tmp_path / "app.log.1", tmp_path / "t.json"
    log_file.write_bytes(lines(0))
    clock = Clock()
    source = stepped_tail(agent, log_file, state, clock)
    drive(source, resume=True)
    # logrotate `create`: rename, new empty file; the application writes on to the old one
    log_file.rename(rotated)
    log_file.write_bytes(lines(100))
    drive(source)  # the empty read sees the new file: the old one is drained first
    with rotated.open("ab") as f:
        f.write(lines(1, 2))
    clock.now += 4.9
    drive(source)
    assert [e["n"] for e in agent.events] == [0, 1, 2]
    clock.now += 4.9  # idle 4.9 s since the last bytes: still within the grace
    drive(source)
    with rotated.open("ab") as f:
        f.write(lines(3))  # the last write, then the application reopens its log
    clock.now += 4.9
    drive(source)
    assert [e["n"] for e in agent.events] == [0, 1, 2, 3]
    saved = json.loads(state.read_text())
    assert (saved["inode"], saved["offset"]) == (rotated.stat().st_ino, rotated.stat().st_size)
    clock.now += 5.0  # idle for the grace period: now the new file
    drive(source)
    assert [e["n"] for e in agent.events] == [0, 1, 2, 3, 100]
    assert json.loads(state.read_text())["inode"] == log_file.stat().st_ino


def test_a_truncated_file_is_read_again_at_once(
    stepped_tail: StepTail, tmp_path: Path, agent: FakeAgent
) -> None:
    log_file = tmp_path / "app.log"
    log_file.write_bytes(lines(0, 1))
    source = stepped_tail(agent, log_file, tmp_path / "t.json")
    drive(source, resume=True)
    with log_file.open("r+b") as f:  # copytruncate: same file, shorter (no grace needed)
        f.truncate(0)
        f.write(lines(2))
    drive(source)
    assert [e["n"] for e in agent.events] == [0, 1, 2]


def test_a_restart_while_draining_a_rotated_file_finds_it_again(
    stepped_tail: StepTail, tmp_path: Path, agent: FakeAgent
) -> None:
    log_file, rotated, state = tmp_path / "app.log", tmp_path / "app.log.1", tmp_path / "t.json"
    log_file.write_bytes(lines(0))
    source = stepped_tail(agent, log_file, state)
    drive(source, resume=True)
    log_file.rename(rotated)
    log_file.write_bytes(lines(100))
    with rotated.open("ab") as f:
        f.write(lines(1))
    drive(source)
    source._close()  # the agent is killed before the grace period is over
    with rotated.open("ab") as f:
        f.write(lines(2))
    with log_file.open("ab") as f:
        f.write(lines(101))
    again, clock = FakeAgent(), Clock()
    source = stepped_tail(again, log_file, state, clock)
    drive(source, resume=True)
    assert [e["n"] for e in again.events] == [2]  # the rest of the old file, from the position
    clock.now += 5.0
    drive(source)
    assert [e["n"] for e in again.events] == [2, 100, 101]  # then the new file, whole
    source._close()
    assert [e["n"] for e in agent.events] == [0, 1]


def test_a_reused_inode_is_read_from_its_start_after_a_restart(
    stepped_tail: StepTail, tmp_path: Path, agent: FakeAgent
) -> None:
    log_file, state = tmp_path / "app.log", tmp_path / "t.json"
    log_file.write_bytes(lines(*range(50)))
    source = stepped_tail(agent, log_file, state)
    drive(source, resume=True)
    source._close()
    inode = log_file.stat().st_ino
    log_file.write_bytes(lines(*range(100, 160)))  # another file under the same inode
    assert log_file.stat().st_ino == inode
    again = FakeAgent()
    source = stepped_tail(again, log_file, state)
    drive(source, resume=True)
    source._close()
    assert [e["n"] for e in again.events] == list(range(100, 160))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, [3, 4]),  # the same file: resume at the offset
        ({"device": -1}, [0, 1, 2, 3, 4]),  # another device
        ({"prefix_sha256": "0" * 64}, [0, 1, 2, 3, 4]),  # other first bytes
        ({"prefix_length": 1 << 20}, [0, 1, 2, 3, 4]),  # the file is shorter than its prefix
    ],
    ids=["same", "device", "fingerprint", "short"],
)
def test_the_position_names_its_file(
    stepped_tail: StepTail, tmp_path: Path, change: dict[str, Any], expected: list[int]
) -> None:
    log_file, state = tmp_path / "app.log", tmp_path / "t.json"
    log_file.write_bytes(lines(0, 1, 2))
    source = stepped_tail(FakeAgent(), log_file, state)
    drive(source, resume=True)
    source._close()
    saved = json.loads(state.read_text())
    prefix = log_file.read_bytes()[:4096]
    assert saved["device"] == log_file.stat().st_dev
    assert saved["prefix_length"] == len(prefix) == len(lines(0, 1, 2))
    assert saved["prefix_sha256"] == hashlib.sha256(prefix).hexdigest()
    state.write_text(json.dumps(saved | change))
    with log_file.open("ab") as f:
        f.write(lines(3, 4))
    again = FakeAgent()
    source = stepped_tail(again, log_file, state)
    drive(source, resume=True)
    source._close()
    assert [e["n"] for e in again.events] == expected


def test_an_old_position_file_is_trusted_on_the_inode(
    stepped_tail: StepTail, tmp_path: Path, agent: FakeAgent
) -> None:
    log_file, state = tmp_path / "app.log", tmp_path / "t.json"
    log_file.write_bytes(lines(0, 1, 2))
    offset = len(lines(0, 1))
    old = {"path": str(log_file), "inode": log_file.stat().st_ino, "offset": offset}
    state.write_text(json.dumps(old))
    source = stepped_tail(agent, log_file, state)
    drive(source, resume=True)
    source._close()
    assert [e["n"] for e in agent.events] == [2]
    saved = json.loads(state.read_text())  # rewritten in the new form
    assert saved["offset"] == log_file.stat().st_size and "prefix_sha256" in saved
