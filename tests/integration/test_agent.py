"""The real agent in a subprocess against moto's S3 server over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import zstandard

from tests.helpers import wait_for
from tests.integration.agent_process import (
    TOKEN,
    AgentProcess,
    FlakyProxy,
    download_latest,
    launch,
    ndjson,
    retry_until_ok,
    verify_in_bucket,
)
from tests.integration.cli import run_cli
from tests.s3server import create_plain_bucket, s3_client, unique_bucket_name


def verify_bucket(endpoint: str, bucket: str, public_key: Path, dest: Path) -> dict[str, Any]:
    """Download the archive to ``dest`` and run ``verify --local-dir --json`` on it."""
    download_latest(endpoint, bucket, "audit", dest)
    result = run_cli(
        "verify", "--local-dir", dest, "--prefix", "audit", "--public-key", public_key, "--json"
    )
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert result.returncode == (0 if report["ok"] else 1)
    return report


def archived_events(
    endpoint: str, bucket: str, public_key: Path, dest: Path
) -> list[dict[str, Any]]:
    """Every event line in the bucket, in key order, once the archive has verified.

    The lines are read as ``zstd -dc`` would (the seal frame is skipped), not
    through the project's own segment reader.
    """
    report = verify_bucket(endpoint, bucket, public_key, dest)
    assert report["ok"], report["problems"]
    found = []
    for path in sorted(dest.rglob("*.zst")):
        raw = (
            zstandard.ZstdDecompressor()
            .stream_reader(path.read_bytes(), read_across_frames=True)
            .read()
        )
        found += [json.loads(line) for line in raw.splitlines()]
    return found


def seqs_in_bucket(endpoint: str, bucket: str, public_key: Path, dest: Path) -> list[int]:
    """The ``seq`` of every archived event (see :func:`archived_events`)."""
    return [event["seq"] for event in archived_events(endpoint, bucket, public_key, dest)]


def test_round_trip_with_compliance_retention(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    agent = launch(
        agents,
        tmp_path,
        endpoint,
        bucket,
        args=("--batch-max-events", "40", "--ingest-workers", "2"),
    ).start()
    agent.wait_ready()
    answers = [agent.post(ndjson(i * 30, 30)) for i in range(3)]
    assert answers == [
        (200, {"accepted": 30, "first_seq": i * 30, "last_seq": i * 30 + 29}) for i in range(3)
    ]
    before = datetime.now(UTC)
    assert agent.terminate() == 0
    report = verify_bucket(endpoint, bucket, agent.public_key, tmp_path / "copy")
    assert (report["ok"], report["streams"], report["segments"], report["events"]) == (
        True,
        1,
        3,
        90,
    )
    code, in_bucket = verify_in_bucket(endpoint, bucket, "--public-key", agent.public_key)
    assert code == 0, in_bucket
    assert in_bucket["events"] == 90
    client = s3_client(endpoint)
    for key in [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]:
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        until = head["ObjectLockRetainUntilDate"]
        assert before + timedelta(days=2) - timedelta(minutes=5) < until
        assert until < datetime.now(UTC) + timedelta(days=2, minutes=1)
        with pytest.raises(client.exceptions.ClientError):
            client.delete_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])
    leaked = [entry for entry in agent.logs if "user-" in json.dumps(entry)]
    assert leaked == [], "event contents leaked into the logs"
    assert [e for e in agent.logs if e["level"] in ("warning", "error")] == []


def _worker_pids(pid: int) -> list[int]:
    """The agent's worker processes (not multiprocessing's resource tracker)."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return [
        child
        for child in children
        if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def test_a_killed_worker_process_does_not_stop_ingest(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    agent = launch(
        agents,
        tmp_path,
        endpoint,
        bucket,
        args=("--batch-max-events", "20", "--ingest-workers", "1"),
    ).start()
    agent.wait_ready()
    assert agent.post(ndjson(0, 30))[0] == 200
    assert agent.process is not None
    (worker,) = _worker_pids(agent.process.pid)
    os.kill(worker, signal.SIGKILL)
    assert agent.post(ndjson(30, 30)) == (200, {"accepted": 30, "first_seq": 30, "last_seq": 59})
    assert agent.post(ndjson(60, 5))[0] == 200
    assert agent.terminate() == 0
    warnings = [e["msg"] for e in agent.logs if e["level"] == "warning"]
    assert "worker processes are gone; encoding and sealing in the main process" in warnings
    assert seqs_in_bucket(endpoint, bucket, agent.public_key, tmp_path / "copy") == list(range(65))


@pytest.mark.parametrize("point", ["before-ack", "after-seal", "after-put", "after-head"])
def test_sigkill_at_each_step_loses_nothing(
    point: str, tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    crashing = launch(
        agents,
        tmp_path,
        endpoint,
        bucket,
        args=("--batch-max-events", "20"),
        env={"AUDIT_ARCHIVER_FAILPOINTS": point},
    ).start()
    crashing.wait_ready()
    acked: list[int] = []
    for i in range(4):
        try:
            status, answer = crashing.post(ndjson(i * 10, 10))
        except (ConnectionError, OSError):
            break
        assert status == 200
        acked += range(answer["first_seq"], answer["last_seq"] + 1)
    assert crashing.wait(30) == -signal.SIGKILL
    restarted = launch(
        agents, tmp_path, endpoint, bucket, args=("--batch-max-events", "20")
    ).start()
    restarted.wait_ready()
    assert restarted.terminate() == 0
    # seqs_in_bucket also asserts that the archive verifies.
    found = seqs_in_bucket(endpoint, bucket, restarted.public_key, tmp_path / "copy")
    assert found == list(range(len(found))), "gap or duplicate"
    assert set(acked) <= set(found)


def test_kill_9_after_acknowledgement(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    agent = launch(agents, tmp_path, endpoint, bucket, args=("--batch-max-age", "60")).start()
    agent.wait_ready()
    for i in range(5):
        assert agent.post(ndjson(i * 7, 7))[0] == 200
    agent.kill()
    again = launch(agents, tmp_path, endpoint, bucket).start()
    again.wait_ready()
    assert again.terminate() == 0
    assert seqs_in_bucket(endpoint, bucket, again.public_key, tmp_path / "copy") == list(range(35))


def test_s3_down_at_start_and_during_the_run(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    proxy = FlakyProxy(int(endpoint.rsplit(":", 1)[1]))
    proxy.up()
    first = launch(agents, tmp_path, proxy.url, bucket).start()
    first.wait_ready()
    assert first.post(ndjson(0, 5))[0] == 200
    assert first.terminate() == 0
    proxy.down()
    agent = launch(agents, tmp_path, proxy.url, bucket).start()
    agent.wait_ready()
    assert agent.post(ndjson(5, 5)) == (200, {"accepted": 5, "first_seq": 5, "last_seq": 9})
    wait_for(
        lambda: any(e.get("msg") == "upload failed; will retry" for e in agent.logs),
        what="a failed upload",
    )
    proxy.up()
    wait_for(
        lambda: any(e.get("msg") == "uploaded segment" for e in agent.logs),
        what="the upload after recovery",
    )
    proxy.down()
    assert agent.post(ndjson(10, 5))[0] == 200
    proxy.up()
    assert agent.terminate() == 0
    proxy.down()
    assert seqs_in_bucket(endpoint, bucket, agent.public_key, tmp_path / "copy") == list(range(15))


def test_bucket_without_object_lock_is_refused(
    tmp_path: Path, moto_endpoint: str, agents: list[AgentProcess]
) -> None:
    bucket = unique_bucket_name("plain")
    create_plain_bucket(s3_client(moto_endpoint), bucket)
    agent = launch(agents, tmp_path, moto_endpoint, bucket).start()
    assert agent.wait() == 2
    assert agent.process is not None and agent.process.stderr is not None
    wait_for(
        lambda: any("Object Lock" in str(e.get("msg")) for e in agent.logs),
        what="the refusal message",
    )


BAD_BODIES = [
    (b'{"actor":"a","action":"b","resource":"c"}\nnot json\n', 2, None),
    (b"[1]\n", 1, None),
    (b'{"actor":"a","action":"b","resource":"c"}\n\xff\xfe\n', 2, None),
    (b'{"action":"b","resource":"c"}\n', 1, "actor"),
    (b'{"actor":"a","action":"","resource":"c"}\n', 1, "action"),
    (b'{"actor":"a","action":"b","resource":"c","seq":4}\n', 1, "seq"),
]


def test_bad_requests_get_their_status_and_the_agent_keeps_serving(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    agent = launch(agents, tmp_path, endpoint, bucket, args=("--max-body-bytes", "4096")).start()
    agent.wait_ready()
    for body, line, field in BAD_BODIES:
        status, answer = agent.post(body)
        assert status == 400, body
        assert answer["line"] == line
        assert answer["field"] == field
    assert agent.post(ndjson(0, 1), token=None)[0] == 401
    assert agent.post(ndjson(0, 1), token="wrong-token-0123456789")[0] == 401
    assert agent.post(ndjson(0, 200, pad=50))[0] == 413
    status, _headers, _ = agent.request(
        "POST",
        "/v1/events",
        b"x" * 10,
        {"Authorization": f"Bearer {TOKEN}", "Content-Length": "999999"},
    )
    assert status == 413
    assert agent.post(b"[" + b",".join(ndjson(0, 2).splitlines()) + b"]") == (
        200,
        {"accepted": 2, "first_seq": 0, "last_seq": 1},
    )
    assert agent.get("/healthz") == (200, {"status": "ok"})
    status, metrics = agent.get("/metrics")
    assert status == 200
    text = metrics.decode()
    assert 'audit_archiver_events_rejected_total{reason="invalid",source="http"} 6.0' in text
    assert "audit_archiver_events_accepted_total 2.0" in text
    assert agent.terminate() == 0


def test_backpressure_503_then_recovery(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    proxy = FlakyProxy(int(endpoint.rsplit(":", 1)[1]))
    proxy.up()
    agent = launch(
        agents,
        tmp_path,
        proxy.url,
        bucket,
        args=(
            "--spool-max-bytes",
            str(1 << 20),
            "--max-body-bytes",
            str(256 << 10),
            "--batch-max-events",
            "500",
        ),
    ).start()
    agent.wait_ready()
    proxy.down()
    body = ndjson(0, 500, pad=400)
    statuses = []
    for _ in range(10):
        status, headers, answer = agent.request(
            "POST", "/v1/events", body, {"Authorization": f"Bearer {TOKEN}"}
        )
        statuses.append(status)
        if status == 503:
            assert headers["Retry-After"] == "5"
            assert "spool is full" in answer["error"]
            break
        # Sealing compresses the batch and frees spool bytes; wait for it so that
        # the spool is full at rest, not only until the batcher catches up.
        wait_for(lambda: segments_sealed(agent) == len(statuses), what="the batch to be sealed")
    assert statuses[-1] == 503 and set(statuses[:-1]) == {200}
    assert agent.get("/readyz")[0] == 503
    proxy.up()
    wait_for(lambda: agent.get("/readyz")[0] == 200, timeout=60, what="the spool to drain")
    retry_until_ok(agent, ndjson(0, 3))
    assert agent.terminate() == 0
    proxy.down()
    accepted = 500 * (len(statuses) - 1) + 3
    found = seqs_in_bucket(endpoint, bucket, agent.public_key, tmp_path / "copy")
    assert found == list(range(accepted))


def segments_sealed(agent: AgentProcess) -> int:
    """The agent's ``audit_archiver_segments_sealed_total`` metric."""
    status, metrics = agent.get("/metrics")
    assert status == 200
    for line in metrics.decode().splitlines():
        if line.startswith("audit_archiver_segments_sealed_total "):
            return int(float(line.split()[1]))
    raise AssertionError("no audit_archiver_segments_sealed_total metric")


def test_fresh_spool_continues_an_existing_stream(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    first = launch(agents, tmp_path, endpoint, bucket).start()
    first.wait_ready()
    assert first.post(ndjson(0, 8))[0] == 200
    assert first.terminate() == 0
    second = launch(agents, tmp_path, endpoint, bucket, spool=tmp_path / "fresh").start()
    second.wait_ready()
    assert second.post(ndjson(8, 4)) == (200, {"accepted": 4, "first_seq": 8, "last_seq": 11})
    assert second.terminate() == 0
    report = verify_bucket(endpoint, bucket, first.public_key, tmp_path / "copy")
    assert (report["ok"], report["segments"], report["events"]) == (True, 2, 12)


def test_heartbeat_segments_when_idle(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    agent = launch(agents, tmp_path, endpoint, bucket, args=("--heartbeat", "0.3")).start()
    agent.wait_ready()
    client = s3_client(endpoint)
    wait_for(
        lambda: client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) >= 3,
        what="three heartbeat segments",
    )
    assert agent.terminate() == 0
    report = verify_bucket(endpoint, bucket, agent.public_key, tmp_path / "copy")
    assert report["ok"] and report["events"] == 0 and report["segments"] >= 3


def test_stdin_source_and_config_precedence(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    config = tmp_path / "agent.toml"
    config.write_text(f'stream = "from-file"\nbucket = "{bucket}"\nbatch-max-events = 7\n')
    agent = launch(
        agents,
        tmp_path,
        endpoint,
        bucket,
        listen=False,
        args=("--stdin", "--config", str(config)),
        env={"AUDIT_ARCHIVER_STREAM": "from-env"},
    )
    agent.argv.remove("--stream")
    agent.argv.remove("web-1")
    agent.start(stdin=subprocess.PIPE)
    assert agent.process is not None and agent.process.stdin is not None
    agent.process.stdin.write(ndjson(0, 20) + b'{"bad": true}\n' + ndjson(20, 1))
    agent.process.stdin.close()
    assert agent.wait() == 0
    keys = download_latest(endpoint, bucket, "audit", tmp_path / "copy")
    assert keys == [f"audit/from-env/{n:012d}.ndjson.zst" for n in range(3)]
    events = archived_events(endpoint, bucket, agent.public_key, tmp_path / "copy")
    assert [(event["seq"], event["n"]) for event in events] == [(n, n) for n in range(21)]
    assert any(
        e.get("msg") == "stdin: invalid event skipped" and e["line"] == 21 for e in agent.logs
    )


def test_an_unreadable_stdin_stops_the_agent_with_exit_2_never_0(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    """Standard input that cannot be read (here: opened write-only, EBADF) is not a clean
    end of input."""
    endpoint, bucket = locked_bucket
    agent = launch(agents, tmp_path, endpoint, bucket, listen=False, args=("--stdin",))
    write_only = os.open(tmp_path / "sink", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        agent.start(stdin=write_only)
    finally:
        os.close(write_only)
    assert agent.wait() == 2
    assert any("source failed" in e.get("msg", "") for e in agent.logs), agent.logs


def test_tail_source_follows_rotation(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    log_file = tmp_path / "app.log"
    log_file.write_bytes(ndjson(0, 5))
    agent = launch(
        agents, tmp_path, endpoint, bucket, listen=False, args=("--tail", str(log_file))
    ).start()
    wait_for((tmp_path / "spool" / "tail.json").exists, what="the first chunk")
    os.rename(log_file, tmp_path / "app.log.1")
    with open(tmp_path / "app.log.1", "ab") as old:
        old.write(ndjson(5, 2))
    log_file.write_bytes(ndjson(7, 3))
    wait_for(
        lambda: (
            json.loads((tmp_path / "spool" / "tail.json").read_text())["offset"]
            == len(ndjson(7, 3))
        ),
        what="the rotated file",
    )
    assert agent.terminate() == 0
    events = archived_events(endpoint, bucket, agent.public_key, tmp_path / "copy")
    found = [event["seq"] for event in events]
    assert found == list(range(10))
    # the old file is read to its end before the new one, each line once
    assert [event["n"] for event in events] == list(range(10))


def test_check_config(tmp_path: Path, moto_endpoint: str) -> None:
    agent = AgentProcess(tmp_path, moto_endpoint, "some-bucket")
    result = run_cli(*agent.argv[1:], "--check-config")
    assert result.returncode == 0, result.stderr
    assert "configuration OK: stream web-1 -> s3://some-bucket/audit/web-1/" in result.stdout
    bad = run_cli(*agent.argv[1:], "--check-config", "--stream", "a/b")
    assert bad.returncode == 2
    assert "invalid stream id" in bad.stderr
    missing = run_cli("agent", "--bucket", "b", "--check-config")
    assert missing.returncode == 2
    assert "missing setting(s): --prefix, --stream" in missing.stderr


def test_agent_signs_with_kms(
    tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1")
    key_id = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")["KeyMetadata"]["KeyId"]
    env = {"AWS_ENDPOINT_URL_KMS": endpoint}
    agent = launch(agents, tmp_path, endpoint, bucket, env=env)
    at = agent.argv.index("--signing-key")
    agent.argv[at : at + 2] = ["--kms-key-id", key_id]
    agent.start()
    agent.wait_ready()
    assert agent.post(ndjson(0, 12))[0] == 200
    assert agent.terminate() == 0
    public = run_cli("kms-public-key", "--kms-key-id", key_id, "--region", "us-east-1", env=env)
    assert public.returncode == 0, public.stderr
    (tmp_path / "kms.pub").write_text(public.stdout)
    report = verify_bucket(endpoint, bucket, tmp_path / "kms.pub", tmp_path / "copy")
    assert (report["ok"], report["events"]) == (True, 12)
    wrong = verify_bucket(endpoint, bucket, agent.public_key, tmp_path / "copy2")
    assert {p["kind"] for p in wrong["problems"]} == {"unknown_key"}


def _rotate_to_new_key(agent: AgentProcess, workdir: Path, *, previous: bool) -> Path:
    """Point ``agent`` at a new key pair (created under workdir/keys-b); return its public key.

    With ``previous`` the old public key is passed with --previous-public-key.
    """
    keys_b = workdir / "keys-b"
    if not (keys_b / "signing.key").exists():
        created = run_cli("keygen", "--out", keys_b)
        assert created.returncode == 0, created.stderr
    at = agent.argv.index("--signing-key")
    agent.argv[at + 1] = str(keys_b / "signing.key")
    if previous:
        agent.argv += ["--previous-public-key", str(workdir / "keys" / "signing.pub")]
    return keys_b / "signing.pub"


@pytest.mark.parametrize("fresh_spool", [False, True])
def test_key_rotation_continues_the_chain(
    fresh_spool: bool, tmp_path: Path, locked_bucket: tuple[str, str], agents: list[AgentProcess]
) -> None:
    endpoint, bucket = locked_bucket
    first = launch(agents, tmp_path, endpoint, bucket, args=("--batch-max-events", "10")).start()
    first.wait_ready()
    assert first.post(ndjson(0, 15))[0] == 200
    assert first.terminate() == 0
    key_a = first.public_key
    spool = tmp_path / "fresh-spool" if fresh_spool else None

    refused = launch(agents, tmp_path, endpoint, bucket, spool=spool)
    _rotate_to_new_key(refused, tmp_path, previous=False)
    refused.start()
    # Same spool: refused at start-up (configuration, 2). Fresh spool: the bucket's
    # head is signed by another key, so the agent stops as for a forked stream (1).
    assert refused.wait() == (1 if fresh_spool else 2)
    wait_for(
        lambda: any(
            "--previous-public-key" in f"{e.get('msg')} {e.get('error')}" for e in refused.logs
        ),
        what="the refusal naming --previous-public-key",
    )

    second = launch(agents, tmp_path, endpoint, bucket, spool=spool)
    key_b = _rotate_to_new_key(second, tmp_path, previous=True)
    second.start()
    second.wait_ready()
    assert second.post(ndjson(15, 7)) == (200, {"accepted": 7, "first_seq": 15, "last_seq": 21})
    assert second.terminate() == 0

    code, report = verify_in_bucket(endpoint, bucket, "--public-key", key_a, "--public-key", key_b)
    assert (code, report["ok"], report["segments"], report["events"]) == (0, True, 3, 22)
    code, only_a = verify_in_bucket(endpoint, bucket, "--public-key", key_a)
    assert code == 1 and "unknown_key" in {p["kind"] for p in only_a["problems"]}

    trust = tmp_path / "trust.toml"
    trust.write_text(
        f'[[key]]\npublic_key = "{key_a}"\nstreams = ["web-1"]\n'
        f'[[key]]\npublic_key = "{key_b}"\nstreams = ["web-*"]\nprefix = "audit"\n'
    )
    code, report = verify_in_bucket(endpoint, bucket, "--trust", trust)
    assert (code, report["ok"], report["events"]) == (0, True, 22), report["problems"]
    trust.write_text(
        f'[[key]]\npublic_key = "{key_a}"\nstreams = ["web-1"]\n'
        f'[[key]]\npublic_key = "{key_b}"\nstreams = ["billing-*"]\n'
    )
    code, report = verify_in_bucket(endpoint, bucket, "--trust", trust)
    assert code == 1
    assert {p["kind"] for p in report["problems"]} == {"key_not_allowed"}
