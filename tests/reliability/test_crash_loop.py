"""SIGKILL the real agent again and again while clients post; nothing acknowledged is lost.

Each event carries a unique ``eid``; the clients record what every POST was
told (:class:`AckLog`). After the last kill a clean agent drains the spool,
``verify --bucket`` must pass, and every acknowledged event must be in the
bucket exactly once, at the seq it was acknowledged with.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.integration.agent_process import AgentProcess, launch, metric_value
from tests.reliability import figures
from tests.reliability.archive import (
    ACKED,
    DURABLE,
    REFUSED,
    UNANSWERED,
    AckLog,
    Archive,
    Post,
    delivery_problems,
    read_archive,
    verify_bucket,
)
from tests.reliability.conftest import LONG

KILLS = 300 if LONG else 50
BATCH_ARGS = ("--batch-max-events", "100", "--batch-max-age", "0.3")
PAUSE = 0.03  # between a client's posts: the loop must not outrun the uploads it checks


def _clients(
    agent: AgentProcess, log: AckLog, stop: threading.Event, count: int, errors: list[str]
) -> list[threading.Thread]:
    def post_forever(client: int) -> None:
        n = 0
        while not stop.is_set():
            port = agent.port
            if port is None:
                stop.wait(0.005)
                continue
            size = 1 + (n * 7 + client) % 20
            try:
                log.send(port, [f"c{client}-{n}-{i}" for i in range(size)], timeout=15)
            except Exception as e:  # a client that dies silently would prove nothing
                errors.append(repr(e))
                return
            n += 1
            stop.wait(PAUSE)

    threads = [threading.Thread(target=post_forever, args=(c,), daemon=True) for c in range(count)]
    for thread in threads:
        thread.start()
    return threads


def _drain(agent: AgentProcess, seed: int) -> None:
    """Wait until the spool is empty (nothing pending), then SIGTERM: exit 0."""
    wait_for(
        lambda: (
            agent.exited()
            or metric_value(agent, "audit_archiver_events_pending")
            + metric_value(agent, "audit_archiver_segments_pending")
            == 0
        ),
        120,
        "the spool to drain",
    )
    assert agent.terminate() == 0, (seed, agent.logs[-20:])


def _drain_and_check(
    agent: AgentProcess, log: AckLog | list[Post], endpoint: str, bucket: str, seed: int
) -> Archive:
    """Drain, clean stop, ``verify --bucket``, then the delivery check; return the archive."""
    _drain(agent, seed)
    code, report = verify_bucket(endpoint, bucket, agent.public_key)
    assert code == 0, (seed, report["problems"][:10])
    archive = read_archive(endpoint, bucket)
    assert archive.foreign == [], seed
    assert set(archive.versions.values()) <= {1}, f"a key written twice (seed {seed})"
    problems = delivery_problems(log, archive)
    assert problems == [], f"seed {seed}: {problems[:20]}"
    return archive


def _planted_faults_are_caught(log: AckLog | list[Post], archive: Archive) -> None:
    """The checker itself: a removed object and a doubled one must be reported."""
    posts = log.snapshot() if isinstance(log, AckLog) else log
    acked = {eid for p in posts if p.outcome == ACKED for eid in p.eids}
    key = next(e.key for e in archive.events if e.eid in acked)
    in_key = {e.eid for e in archive.events if e.key == key and e.eid in acked}
    lost = delivery_problems(posts, archive.without_key(key))
    assert {line.split()[3] for line in lost if line.startswith("lost:")} == in_key
    doubled = Archive(
        archive.events + [e for e in archive.events if e.key == key],
        archive.keys,
        archive.foreign,
        archive.versions,
    )
    assert any(line.startswith("duplicate:") for line in delivery_problems(posts, doubled))


def test_crash_loop_of_sigkills_loses_no_acknowledged_event(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess], seed: int
) -> None:
    print(f"crash loop seed {seed} (replay: AUDIT_ARCHIVER_SEED={seed})")
    endpoint, bucket = locked_bucket
    rng = random.Random(seed)
    agent = launch(agents, tmp_path, endpoint, bucket, args=BATCH_ARGS)
    log = AckLog()
    stop = threading.Event()
    errors: list[str] = []
    threads = _clients(agent, log, stop, 2, errors)
    moments: Counter[str] = Counter()
    acked_per_cycle = []
    started = time.monotonic()
    try:
        for cycle in range(KILLS):
            before = log.count(ACKED)
            agent.start()
            if rng.random() < 0.25:  # during start-up, recovery or the first uploads
                moments["start-up"] += 1
                time.sleep(rng.uniform(0.0, 0.8))
            else:
                agent.wait_ready()
                moments["running"] += 1
                time.sleep(rng.uniform(0.0, 1.0))
            assert not agent.exited(), (seed, cycle, agent.logs[-20:])
            assert errors == [], (seed, errors)
            agent.kill()
            acked_per_cycle.append(log.count(ACKED) - before)
        agent.start()
        agent.wait_ready()
        last = log.count(ACKED)
        wait_for(
            lambda: log.count(ACKED) > last + 20 or errors, 30, "acknowledgements after the loop"
        )
        assert errors == [], (seed, errors)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    archive = _drain_and_check(agent, log, endpoint, bucket, seed)
    acked, unanswered = log.count(ACKED), log.count(UNANSWERED)
    print(f"kills {KILLS} {dict(moments)}; acked {acked}; unanswered {unanswered}")
    assert acked >= 20 * KILLS, f"too few acknowledged events to prove anything (seed {seed})"
    assert sum(1 for n in acked_per_cycle if n > 0) >= KILLS // 2, (seed, acked_per_cycle)
    assert unanswered > 0, f"no kill landed during a request (seed {seed})"
    _planted_faults_are_caught(log, archive)
    figures.record(
        "crash_loop",
        kills=KILLS,
        seed=seed,
        acked_events=acked,
        unanswered_events=unanswered,
        archived_events=len(archive.events),
        segments=len(archive.keys),
        lost=0,
        seconds=round(time.monotonic() - started, 1),
    )


POINTS = ("before-ack", "after-answer", "after-seal", "after-put", "after-head")


def test_kills_around_the_acknowledgement_lose_nothing(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    """Kill at each step around the answer; the check can fail: it needs answers to check.

    ``before-ack``: the events are fsync'd, the client gets no answer; they must
    be archived all the same. ``after-answer``: SIGKILL the moment a 200 arrives.
    The other points kill after sealing, after the PUT and after recording it.
    """
    endpoint, bucket = locked_bucket
    rounds = 6 if LONG else 1  # each kill point once in CI; six times in long runs
    posts: list[Post] = []
    log = AckLog()
    batch = 0
    started = time.monotonic()
    for point in POINTS * rounds:
        env = {} if point == "after-answer" else {"AUDIT_ARCHIVER_FAILPOINTS": point}
        agent = launch(agents, tmp_path, endpoint, bucket, args=BATCH_ARGS, env=env)
        agent.start()
        agent.wait_ready()
        assert agent.port is not None
        acked_here = 0
        deadline = time.monotonic() + 20
        while not agent.exited():
            assert time.monotonic() < deadline, f"failpoint {point} never fired"
            post = log.send(agent.port, [f"b{batch}-{i}" for i in range(5)])
            batch += 1
            if post.outcome == ACKED:
                acked_here += 1
                if point == "after-answer":
                    agent.kill()
            else:  # the failpoint fired during this request (or just before it)
                assert post.outcome in (UNANSWERED, REFUSED), post
                if point == "before-ack":
                    assert post.outcome == UNANSWERED, post
                    post.outcome = DURABLE
                break
        assert agent.wait(30) == -signal.SIGKILL, (point, agent.logs[-10:])
        # Drain without failpoints, so the next armed agent fires on its own events
        # and not while recovering these.
        drain = launch(agents, tmp_path, endpoint, bucket, args=BATCH_ARGS)
        drain.start().wait_ready()
        _drain(drain, seed=0)
        if point == "before-ack":
            assert acked_here == 0
        else:
            assert acked_here >= 1, f"{point}: nothing acknowledged before the kill"
    posts = log.snapshot()
    assert sum(len(p.eids) for p in posts if p.outcome == ACKED) >= 5 * 4 * rounds
    assert sum(1 for p in posts if p.outcome == DURABLE) == rounds
    final = launch(agents, tmp_path, endpoint, bucket, args=BATCH_ARGS)
    final.start()
    final.wait_ready()
    archive = _drain_and_check(final, posts, endpoint, bucket, seed=0)
    _planted_faults_are_caught(posts, archive)
    figures.record(
        "kills_around_ack",
        kills=len(POINTS) * rounds,
        acked_events=sum(len(p.eids) for p in posts if p.outcome == ACKED),
        lost=0,
        seconds=round(time.monotonic() - started, 1),
    )


@pytest.mark.parametrize("planted", ["lost", "duplicate", "moved", "refused-archived"])
def test_the_delivery_check_reports_planted_faults(planted: str) -> None:
    """The checker, without an agent: each kind of planted fault is reported."""
    from tests.reliability.archive import Sealed

    posts = [
        Post(["a", "b"], ACKED, 200, 0, 1),
        Post(["c"], UNANSWERED),
        Post(["d"], REFUSED, 503),
    ]
    events = [Sealed("k0", 0, "a"), Sealed("k0", 1, "b"), Sealed("k1", 2, "c")]
    assert delivery_problems(posts, Archive(events, ["k0", "k1"], [], {})) == []
    if planted == "lost":
        events = events[1:]
        events = [Sealed(e.key, e.seq - 1, e.eid) for e in events]
    elif planted == "duplicate":
        events = [*events, Sealed("k2", 3, "c")]
    elif planted == "moved":
        events = [Sealed("k0", 0, "b"), Sealed("k0", 1, "a"), events[2]]
    else:
        events = [*events, Sealed("k2", 3, "d")]
    problems = delivery_problems(posts, Archive(events, ["k0", "k1", "k2"], [], {}))
    assert problems and problems[0].startswith(planted.split("-", maxsplit=1)[0]), problems
