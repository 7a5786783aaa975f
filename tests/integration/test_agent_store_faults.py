"""Store faults through the real CLI against moto's S3 server: hostile bucket
writers, S3 unreachable at start, and shutdown with S3 down or coming back.

The verdicts come from ``audit-archiver verify --bucket`` (the lead's verifier,
which checks the chain around an object the agent stepped over, ADR 7).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from tests.helpers import wait_for
from tests.integration.agent_process import (
    AgentProcess,
    FlakyProxy,
    launch,
    ndjson,
    verify_in_bucket,
)
from tests.s3server import s3_client


def key(n: int) -> str:
    return f"audit/web-1/{n:012d}.ndjson.zst"


def plant(endpoint: str, bucket: str, name: str, data: bytes) -> None:
    """What a writer without the key can do: a plain PutObject (a new version)."""
    digest = base64.b64encode(hashlib.md5(data).digest()).decode()
    s3_client(endpoint).put_object(Bucket=bucket, Key=name, Body=data, ContentMD5=digest)


def problems(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {(p["kind"], p["key"]) for p in report["problems"]}


def logged(agent: AgentProcess, message: str) -> bool:
    return any(entry.get("msg") == message for entry in agent.logs)


def test_junk_at_the_next_key_is_stepped_over(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    agent = launch(agents, tmp_path, endpoint, bucket, args=("--batch-max-events", "10"))
    agent.start().wait_ready()
    assert agent.post(ndjson(0, 10))[1]["last_seq"] == 9
    wait_for(lambda: logged(agent, "uploaded segment"), what="segment 0")
    plant(endpoint, bucket, key(1), b"junk from a writer without the key")
    assert agent.post(ndjson(10, 10))[1]["last_seq"] == 19
    wait_for(
        lambda: logged(agent, "re-sealed the waiting segments after a foreign object"),
        what="the step over",
    )
    status, ready = agent.get("/readyz")
    assert status == 200, ready
    metrics = agent.get("/metrics")[1].decode()
    assert "audit_archiver_foreign_objects_total 1.0" in metrics
    assert agent.post(ndjson(20, 5))[1]["first_seq"] == 20
    assert agent.terminate() == 0
    code, report = verify_in_bucket(endpoint, bucket, "--public-key", agent.public_key)
    assert code == 1
    assert problems(report) == {("malformed_segment", key(1))}
    assert report["events"] == 25


def test_fresh_spool_starts_over_junk_versions_and_delete_markers(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    first = launch(agents, tmp_path, endpoint, bucket, args=("--batch-max-events", "10"))
    first.start().wait_ready()
    assert first.post(ndjson(0, 20))[0] == 200
    assert first.terminate() == 0
    client = s3_client(endpoint)
    plant(endpoint, bucket, key(1), b"a newer junk version of the newest segment")
    client.delete_object(Bucket=bucket, Key=key(1))  # and a delete marker on top
    second = launch(agents, tmp_path, endpoint, bucket, spool=tmp_path / "fresh-spool")
    second.start().wait_ready()
    assert second.post(ndjson(20, 5))[1] == {"accepted": 5, "first_seq": 20, "last_seq": 24}
    assert second.terminate() == 0
    _, report = verify_in_bucket(endpoint, bucket, "--public-key", second.public_key)
    assert report["events"] == 25
    assert {name for _, name in problems(report)} <= {key(1)}, report["problems"]


def test_s3_unreachable_at_start_with_an_empty_spool(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    proxy = FlakyProxy(int(endpoint.rsplit(":", 1)[1]))
    agent = launch(agents, tmp_path, proxy.url, bucket).start()
    agent.wait_ready()
    assert agent.post(ndjson(0, 4)) == (200, {"accepted": 4, "first_seq": None, "last_seq": None})
    status, ready = agent.get("/readyz")
    assert status == 200, ready
    proxy.up()
    wait_for(lambda: logged(agent, "chain head found"), what="the head")
    assert agent.post(ndjson(4, 2)) == (200, {"accepted": 2, "first_seq": 4, "last_seq": 5})
    assert agent.terminate() == 0
    proxy.down()
    code, report = verify_in_bucket(endpoint, bucket, "--public-key", agent.public_key)
    assert (code, report["events"], report["problems"]) == (0, 6, [])


def test_sigterm_with_s3_down_exits_3_and_a_restart_completes(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    proxy = FlakyProxy(int(endpoint.rsplit(":", 1)[1]))
    proxy.up()
    agent = launch(agents, tmp_path, proxy.url, bucket, args=("--grace-period", "1"))
    agent.start().wait_ready()
    assert agent.post(ndjson(0, 5))[0] == 200
    wait_for(lambda: logged(agent, "uploaded segment"), what="the first upload")
    proxy.down()
    assert agent.post(ndjson(5, 7))[0] == 200
    assert agent.terminate() == 3
    left = [e for e in agent.logs if e.get("msg") == "acknowledged data left in the spool"]
    assert [(e["segments"], e["events"]) for e in left] == [(1, 0)]
    assert any("keep this volume" in str(e.get("msg")) for e in agent.logs)  # the stderr line
    proxy.up()
    again = launch(agents, tmp_path, proxy.url, bucket).start()
    again.wait_ready()
    assert again.terminate() == 0
    proxy.down()
    code, report = verify_in_bucket(endpoint, bucket, "--public-key", agent.public_key)
    assert (code, report["events"], report["problems"]) == (0, 12, [])


def test_sigterm_while_uploads_fail_then_s3_back_exits_0(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    proxy = FlakyProxy(int(endpoint.rsplit(":", 1)[1]))
    proxy.up()
    # a grace period shorter than the backoff by then: a lost wake-up would run it out
    agent = launch(agents, tmp_path, proxy.url, bucket, args=("--grace-period", "4"))
    agent.start().wait_ready()
    proxy.down()
    assert agent.post(ndjson(0, 5))[0] == 200
    # failures pile up: after six the backoff is 6.4 to 12.8 s
    wait_for(lambda: _transient_errors(agent) >= 6, timeout=60, what="six failed attempts")
    proxy.up()
    assert agent.terminate(timeout=60) == 0
    proxy.down()
    code, report = verify_in_bucket(endpoint, bucket, "--public-key", agent.public_key)
    assert (code, report["events"], report["problems"]) == (0, 5, [])


def _transient_errors(agent: AgentProcess) -> float:
    for line in agent.get("/metrics")[1].decode().splitlines():
        if line.startswith('audit_archiver_storage_errors_total{kind="transient"}'):
            return float(line.split()[-1])
    return 0.0
