"""The real agent killed at a chosen step (``AUDIT_ARCHIVER_FAILPOINTS``): nothing
acknowledged is lost, and no acknowledged seq is given to another event."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.helpers import wait_for
from tests.integration.agent_process import AgentProcess, launch, metric_value
from tests.reliability.archive import (
    ACKED,
    UNANSWERED,
    AckLog,
    delivery_problems,
    read_archive,
)

# A batch boundary inside an 11-event request; nothing sealed by age meanwhile.
BATCH = ("--batch-max-events", "9", "--batch-max-age", "60")


def test_kill_after_creating_a_wal_file_loses_no_later_event(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    """The crash-loop loss (issue 10) with the real CLI, one step at a time.

    1. The first append creates the WAL file named after the next seq (0); the
       agent is killed before writing to it (``wal-opened``): no answer.
    2. The next agent starts from that spool, acknowledges 11 events (seqs
       0..10) and seals 0..8; then it is killed.
    3. A third agent drains the spool: 9 and 10 must be archived, with the
       seqs they were acknowledged with (not given to later events).
    """
    endpoint, bucket = locked_bucket
    log = AckLog()
    first = launch(
        agents,
        tmp_path,
        endpoint,
        bucket,
        args=BATCH,
        env={"AUDIT_ARCHIVER_FAILPOINTS": "wal-opened"},
    )
    first.start().wait_ready()
    assert first.port is not None
    assert log.send(first.port, ["never-written"]).outcome == UNANSWERED
    assert first.wait(30) == -signal.SIGKILL
    assert [p.stat().st_size for p in (first.spool / "wal").glob("*.wal")] == [0]

    second = launch(agents, tmp_path, endpoint, bucket, args=BATCH)
    second.start().wait_ready()
    assert second.port is not None
    post = log.send(second.port, [f"e{i}" for i in range(11)])
    assert (post.outcome, post.first_seq, post.last_seq) == (ACKED, 0, 10)
    wait_for(
        lambda: metric_value(second, "audit_archiver_segments_sealed_total") >= 1,
        what="the first 9 events sealed",
    )
    second.kill()

    third = launch(agents, tmp_path, endpoint, bucket, args=BATCH)
    third.start().wait_ready()
    assert third.port is not None
    later = log.send(third.port, ["later"])
    assert (later.outcome, later.first_seq) == (ACKED, 11)
    assert third.terminate() == 0, third.logs[-10:]
    archive = read_archive(endpoint, bucket)
    assert delivery_problems(log, archive) == []
    assert sorted((e.seq, e.eid) for e in archive.events) == [
        *((i, f"e{i}") for i in range(11)),
        (11, "later"),
    ]
