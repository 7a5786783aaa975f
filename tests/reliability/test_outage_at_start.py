"""A fresh agent (empty spool) starts while S3 is unreachable: it accepts events anyway.

The answer is 200 with ``first_seq``/``last_seq`` null (the stream's head is
not known yet); once S3 answers, the events get their seqs in the order they
were acknowledged, and the archive ends complete, gap-free and verifying.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.integration.agent_process import AgentProcess, launch
from tests.reliability import figures
from tests.reliability.archive import (
    ACKED,
    NULL_SEQ,
    AckLog,
    delivery_problems,
    read_archive,
    verify_bucket,
)
from tests.reliability.faultproxy import FaultProxy, everything


# Refused with a new stream: tests/integration/test_agent_store_faults.py.
@pytest.mark.parametrize(
    ("outage", "history"),
    [("blackhole", False), ("blackhole", True), ("refused", True)],
    ids=["blackhole-new-stream", "blackhole-existing-stream", "refused-existing-stream"],
)
def test_fresh_spool_during_an_outage_accepts_events(
    outage: str,
    history: bool,
    tmp_path: Path,
    locked_bucket: tuple[str, str],
    proxy: FaultProxy,
    agents: list[AgentProcess],
) -> None:
    endpoint, bucket = locked_bucket
    log = AckLog()
    if history:  # a previous pod wrote segments; its spool is gone
        earlier = launch(agents, tmp_path, endpoint, bucket, spool=tmp_path / "old-spool")
        earlier.start().wait_ready()
        assert earlier.port is not None
        assert log.send(earlier.port, [f"old-{i}" for i in range(7)]).outcome == ACKED
        assert earlier.terminate() == 0
    if outage == "refused":
        proxy.refuse()
    else:
        proxy.add("blackhole", count=None, match=everything)
    agent = launch(agents, tmp_path, proxy.url, bucket, args=("--batch-max-events", "10"))
    agent.start()
    wait_for(lambda: agent.port is not None or agent.exited(), 30, "the listening log")
    assert not agent.exited(), agent.logs
    assert agent.port is not None
    posts = [log.send(agent.port, [f"dark-{n}-{i}" for i in range(4)]) for n in range(5)]
    assert [p.status for p in posts] == [200] * 5, [(p.status, p.outcome) for p in posts]
    assert {(p.first_seq, p.last_seq) for p in posts} == {(None, None)}
    assert log.count(NULL_SEQ) == 20
    status, ready = agent.get("/readyz")
    assert status == 200, ready
    started = time.monotonic()
    proxy.clear()
    proxy.accept_again()
    later = log.send(agent.port, [f"back-{i}" for i in range(3)])
    assert later.status == 200, later
    assert agent.terminate(timeout=90) == 0, agent.logs[-15:]
    code, report = verify_bucket(endpoint, bucket, agent.public_key)
    assert code == 0, report["problems"][:10]
    archive = read_archive(endpoint, bucket)
    assert delivery_problems(log, archive) == []
    offset = 7 if history else 0
    in_order = [e.eid for e in sorted(archive.events, key=lambda e: e.seq)]
    sent = [eid for p in log.snapshot() for eid in p.eids]
    assert in_order == sent, "seqs follow the order of the acknowledgements"
    assert [e.seq for e in sorted(archive.events, key=lambda e: e.seq)] == list(range(offset + 23))
    figures.record(
        f"outage_at_start_{outage}_{'existing' if history else 'new'}",
        null_seq_events=20,
        recovery_s=round(time.monotonic() - started, 1),
        lost=0,
    )
