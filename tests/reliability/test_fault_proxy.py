"""S3 misbehaves between the agent and moto (:class:`FaultProxy`); nothing acknowledged is lost.

For each kind of fault: events flow while uploads fail, SIGTERM arrives while
the fault is still active, the fault then clears within the grace period, and
the agent must exit 0 with every acknowledged seq stored exactly once and the
archive verifying. A fault that outlasts the grace period must end in exit 3
(events left in the spool), and a restart on the same spool completes the
archive. A seeded mix of every fault ends the same way.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.integration.agent_process import AgentProcess, launch
from tests.reliability import figures
from tests.reliability.archive import (
    ACKED,
    AckLog,
    delivery_problems,
    read_archive,
    verify_bucket,
)
from tests.reliability.conftest import LONG
from tests.reliability.faultproxy import KINDS, FaultProxy, everything

# botocore tries a request up to 3 times; 3 faults in a row fail one attempt of
# the agent's own retry loop, 6 make it back off at least once.
FAST_FAULTS = ("error500", "slowdown", "reset_mid", "drop_response")
SLOW_FAULTS = ("latency", "blackhole")  # each costs one 10 s read timeout


def _agent(
    agents: list[AgentProcess], workdir: Path, proxy: FaultProxy, bucket: str, *extra: str
) -> AgentProcess:
    return launch(
        agents,
        workdir,
        proxy.url,
        bucket,
        args=("--batch-max-events", "10", "--grace-period", "30", *extra),
    )


def _post_batches(agent: AgentProcess, log: AckLog, tag: str, count: int) -> None:
    assert agent.port is not None
    for n in range(count):
        post = log.send(agent.port, [f"{tag}-{n}-{i}" for i in range(10)])
        assert post.outcome == ACKED, post


def _check_archive(endpoint: str, bucket: str, agent: AgentProcess, log: AckLog) -> int:
    code, report = verify_bucket(endpoint, bucket, agent.public_key)
    assert code == 0, report["problems"][:10]
    archive = read_archive(endpoint, bucket)
    assert archive.foreign == []
    assert set(archive.versions.values()) <= {1}, archive.versions
    assert delivery_problems(log, archive) == []
    assert len(archive.events) == log.count(ACKED)
    return len(archive.events)


@pytest.mark.parametrize("kind", FAST_FAULTS + SLOW_FAULTS)
def test_fault_then_sigterm_during_it(
    kind: str,
    tmp_path: Path,
    locked_bucket: tuple[str, str],
    proxy: FaultProxy,
    agents: list[AgentProcess],
) -> None:
    endpoint, bucket = locked_bucket
    agent = _agent(agents, tmp_path, proxy, bucket).start()
    agent.wait_ready()
    log = AckLog()
    slow = kind in SLOW_FAULTS
    if not slow:  # uploads fail while events keep coming; then they go through
        proxy.add(kind, count=6)
        _post_batches(agent, log, "running", 3)
        wait_for(lambda: proxy.pending() == 0, 60, f"six {kind} faults")
    injected_before = proxy.injected[kind]
    proxy.add(kind, count=1 if slow else 6)
    _post_batches(agent, log, "at-sigterm", 2)
    wait_for(lambda: proxy.injected[kind] > injected_before, 30, f"a {kind} fault")
    started = time.monotonic()
    code = agent.terminate(timeout=90)
    assert code == 0, (kind, agent.logs[-15:])
    took = time.monotonic() - started
    assert proxy.pending() == 0
    events = _check_archive(endpoint, bucket, agent, log)
    figures.record(
        f"fault_{kind}",
        faults=proxy.injected[kind],
        acked_events=log.count(ACKED),
        archived_events=events,
        sigterm_to_exit_s=round(took, 1),
        lost=0,
    )


# Refused (S3 down) past the grace period: tests/integration/test_agent_store_faults.py.
@pytest.mark.parametrize("kind", ["slowdown", "blackhole"])
def test_fault_outlasting_the_grace_period_exits_3_and_a_restart_completes(
    kind: str,
    tmp_path: Path,
    locked_bucket: tuple[str, str],
    proxy: FaultProxy,
    agents: list[AgentProcess],
) -> None:
    endpoint, bucket = locked_bucket
    agent = _agent(agents, tmp_path, proxy, bucket, "--grace-period", "2").start()
    agent.wait_ready()
    log = AckLog()
    _post_batches(agent, log, "before", 1)
    wait_for(lambda: proxy.requests["PUT"] >= 1, 30, "the first upload")
    if kind == "refused":
        proxy.refuse()
    else:
        proxy.add(kind, count=None, match=everything)
    _post_batches(agent, log, "during", 3)
    if kind != "refused":
        wait_for(lambda: proxy.injected[kind] >= 1, 30, f"a {kind} fault")
    assert agent.terminate(timeout=60) == 3, (kind, agent.logs[-15:])
    stopped = [e for e in agent.logs if e.get("level") in ("warning", "error")]
    assert stopped, "no log line says what was left in the spool"
    proxy.clear()
    proxy.accept_again()
    again = _agent(agents, tmp_path, proxy, bucket).start()
    again.wait_ready()
    assert again.terminate() == 0
    _check_archive(endpoint, bucket, again, log)
    figures.record(f"outlasting_{kind}", faults=max(1, proxy.injected[kind]), lost=0)


def test_seeded_mix_of_faults(
    tmp_path: Path,
    locked_bucket: tuple[str, str],
    proxy: FaultProxy,
    agents: list[AgentProcess],
    seed: int,
) -> None:
    print(f"fault mix seed {seed} (replay: AUDIT_ARCHIVER_SEED={seed})")
    endpoint, bucket = locked_bucket
    wanted = 300 if LONG else 40
    kinds = KINDS if LONG else FAST_FAULTS
    agent = _agent(agents, tmp_path, proxy, bucket, "--batch-max-events", "20").start()
    agent.wait_ready()
    log = AckLog()
    proxy.mix(seed, 0.3, kinds)
    stop = threading.Event()

    def post_forever() -> None:
        n = 0
        while not stop.is_set() and agent.port is not None:
            log.send(agent.port, [f"mix-{n}-{i}" for i in range(5)])
            n += 1
            stop.wait(0.05)

    client = threading.Thread(target=post_forever, daemon=True)
    client.start()
    try:
        wait_for(
            lambda: sum(proxy.injected.values()) >= wanted,
            60 + 12 * wanted * LONG,
            f"{wanted} faults (seed {seed})",
        )
    finally:
        stop.set()
        client.join(30)
    code = agent.terminate(timeout=120)
    assert code == 0, (seed, [e for e in agent.logs if e.get("level") != "info"][-10:])
    proxy.clear()
    events = _check_archive(endpoint, bucket, agent, log)
    assert log.count(ACKED) >= 50, f"too few acknowledged events (seed {seed})"
    figures.record(
        "fault_mix",
        seed=seed,
        faults=dict(proxy.injected),
        requests=dict(proxy.requests),
        acked_events=log.count(ACKED),
        archived_events=events,
        lost=0,
    )
