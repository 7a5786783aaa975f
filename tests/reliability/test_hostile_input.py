"""Hostile producers against the real agent, end to end (real CLI, moto over HTTP).

Only what the other suites do not already run through the real agent: poison
lines on ``--stdin`` and a huge ``--tail`` line without a newline. Run
elsewhere end to end: a poison tail line and the memory bound under worst-case
bodies (tests/integration/test_agent_body.py), deep nesting, bad
``Authorization`` headers and slowloris at a file limit of 1,024
(tests/integration/test_listener.py).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from tests.helpers import wait_for
from tests.integration.agent_process import AgentProcess, launch, peak_rss_bytes
from tests.reliability import figures
from tests.reliability.archive import body_of, read_archive, verify_bucket

MiB = 1 << 20
MARKER = "poison-content-must-not-be-logged"

POISON_LINES = {
    "deep_array": b"[" * 100_000,
    "deep_object": b'{"actor":' * 5_000,
    "deep_inside_event": (
        b'{"actor":"a","action":"b","resource":"c","details":{"x":'
        + b"[" * 50_000
        + b"]" * 50_000
        + b"}}"
    ),
    "not_json": f"{MARKER} this is not json".encode(),
    "not_utf8": b'{"actor":"\xff\xfe","action":"b","resource":"c"}',
    "invalid_event": json.dumps({"action": "b", "resource": "c", "m": MARKER}).encode(),
    "over_long": json.dumps(
        {"actor": "a", "action": "b", "resource": "c", "pad": MARKER + "x" * (200 * 1024)}
    ).encode(),
}


def _poisoned_feed(first: int, last: int) -> bytes:
    """Valid events ``eid`` v<first>..v<last-1> with every poison line in between."""
    valid = [f"v{n}" for n in range(first, last)]
    half = len(valid) // 2
    return body_of(valid[:half]) + b"\n".join(POISON_LINES.values()) + b"\n" + body_of(valid[half:])


def _no_content_logged(agent: AgentProcess) -> None:
    leaked = [e for e in agent.logs if MARKER in json.dumps(e)]
    assert leaked == [], "event contents leaked into the logs"
    assert not [e for e in agent.logs if "Traceback" in json.dumps(e)], "a traceback was logged"


def _archived_eids(endpoint: str, bucket: str, agent: AgentProcess) -> list[str | None]:
    code, report = verify_bucket(endpoint, bucket, agent.public_key)
    assert code == 0, report["problems"][:10]
    return [e.eid for e in sorted(read_archive(endpoint, bucket).events, key=lambda e: e.seq)]


def test_poison_lines_on_stdin_are_skipped(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    agent = launch(
        agents,
        tmp_path,
        endpoint,
        bucket,
        listen=False,
        args=("--stdin", "--max-line-bytes", "65536"),
    )
    agent.start(stdin=subprocess.PIPE)
    assert agent.process is not None and agent.process.stdin is not None
    agent.process.stdin.write(_poisoned_feed(0, 10))
    agent.process.stdin.close()
    assert agent.wait(60) == 0, agent.logs[-10:]
    assert sorted(_archived_eids(endpoint, bucket, agent), key=str) == [f"v{n}" for n in range(10)]
    _no_content_logged(agent)
    figures.record("poison_stdin", hostile_inputs=len(POISON_LINES), lost=0)


def test_a_huge_line_without_newline_costs_bounded_memory_and_linear_time(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    feed = tmp_path / "app.log"
    feed.write_bytes(body_of(["before"]))
    agent = launch(agents, tmp_path, endpoint, bucket, args=("--tail", str(feed)))
    agent.start().wait_ready()
    assert agent.process is not None
    position = tmp_path / "spool" / "tail.json"
    wait_for(position.exists, 30, "the first line")
    baseline = peak_rss_bytes(agent.process.pid)
    huge = 128 * MiB
    started = time.monotonic()
    with feed.open("ab") as out:
        chunk = b"x" * MiB
        for _ in range(huge // MiB):  # one line, growing while the agent reads it
            out.write(chunk)
            out.flush()
        out.write(b"\n" + body_of(["after"]))
    size = feed.stat().st_size
    wait_for(
        lambda: json.loads(position.read_text()).get("offset") == size or agent.exited(),
        60,
        "the tail to pass the huge line",
    )
    took = time.monotonic() - started
    grown = peak_rss_bytes(agent.process.pid) - baseline
    assert not agent.exited()
    assert grown < 32 * MiB, f"peak RSS grew by {grown / MiB:.0f} MiB for a {huge // MiB} MiB line"
    assert took < 30, f"{took:.1f} s to skip a {huge // MiB} MiB line"
    assert agent.terminate() == 0
    assert sorted(_archived_eids(endpoint, bucket, agent), key=str) == ["after", "before"]
    figures.record(
        "huge_line",
        line_mib=huge // MiB,
        rss_growth_mib=round(grown / MiB, 1),
        seconds=round(took, 1),
    )
