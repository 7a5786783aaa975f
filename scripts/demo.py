"""The demo behind scripts/demo: local S3, the agent, events over HTTP, SIGTERM, verify,
then the auditor's path: query, prove one event, verify the proof offline.

Everything runs on loopback; nothing needs an AWS account. Run it with
``scripts/demo`` (which creates .venv first).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from audit_archiver.storage.local_s3 import DUMMY_ENVIRONMENT

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin" / "audit-archiver"
WORK = ROOT / ".demo"
ENV = {**os.environ, **DUMMY_ENVIRONMENT}


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def wait_for(condition, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            sys.exit(f"demo: timed out waiting for {what} (logs: {WORK})")
        time.sleep(0.05)
    return result


def request(
    port: int, method: str, path: str, body: bytes | None = None, token: str | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


def sample_events(first: int, count: int) -> bytes:
    rng = random.Random(first)
    actors = ["alice", "bob", "carol", "svc-billing"]
    lines = []
    for i in range(first, first + count):
        lines.append(
            json.dumps(
                {
                    "actor": {"id": rng.choice(actors), "type": "user"},
                    "action": rng.choice(["invoice.read", "invoice.update", "invoice.delete"]),
                    "resource": {"id": f"invoice/{1000 + i}", "type": "invoice"},
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "outcome": rng.choice(["success", "success", "denied"]),
                    "source_ip": f"10.0.{rng.randint(0, 9)}.{rng.randint(1, 250)}",
                }
            )
        )
    return ("\n".join(lines) + "\n").encode()


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    step("1. an S3-compatible endpoint on loopback with an Object-Lock bucket (moto)")
    s3 = subprocess.Popen(
        [str(BIN), "local-s3", "--port", "0"], stdout=subprocess.PIPE, env=ENV, text=True
    )
    assert s3.stdout is not None
    banner = s3.stdout.readline().strip()
    print(banner)
    endpoint = re.search(r"(http://\S+)", banner).group(1)  # type: ignore[union-attr]
    bucket = re.search(r"bucket=(\S+)", banner).group(1)  # type: ignore[union-attr]
    try:
        return run(endpoint, bucket)
    finally:
        s3.send_signal(signal.SIGTERM)
        s3.wait(30)


def run(endpoint: str, bucket: str) -> int:
    step("2. a signing key and an ingest token")
    subprocess.run([str(BIN), "keygen", "--out", str(WORK / "keys")], check=True)
    token = "demo-token-" + os.urandom(12).hex()
    (WORK / "token").write_text(token)

    step("3. the agent (batches of 100 events, 7-day COMPLIANCE retention)")
    with open(WORK / "agent.log", "w+") as log:
        agent = subprocess.Popen(
            [
                str(BIN),
                "agent",
                "--bucket",
                bucket,
                "--prefix",
                "audit",
                "--stream",
                "billing-1",
                "--signing-key",
                str(WORK / "keys" / "signing.key"),
                "--retention-days",
                "7",
                "--spool",
                str(WORK / "spool"),
                "--listen",
                "127.0.0.1:0",
                "--token-file",
                str(WORK / "token"),
                "--endpoint-url",
                endpoint,
                "--batch-max-events",
                "100",
                "--batch-max-age",
                "2",
            ],
            stderr=log,
            env=ENV,
        )
        try:
            agent_status = send_events(agent, log, token)
        finally:
            if agent.poll() is None:  # the demo stopped half-way: leave no agent behind
                agent.kill()
                agent.wait(30)
    if agent_status != 0:
        return agent_status

    step("6. verify the bucket")
    result = subprocess.run(
        [
            str(BIN),
            "verify",
            "--bucket",
            bucket,
            "--prefix",
            "audit",
            "--endpoint-url",
            endpoint,
            "--public-key",
            str(WORK / "keys" / "signing.pub"),
        ],
        env=ENV,
        check=False,
    )
    print(f"verify exit status {result.returncode} (0 = the archive is whole)")
    if result.returncode != 0:
        return result.returncode
    return audit(endpoint, bucket)


def audit(endpoint: str, bucket: str) -> int:
    """Steps 7 to 9: the auditor's path after verify: ask, prove one answer, check the proof."""
    source = ["--bucket", bucket, "--prefix", "audit", "--endpoint-url", endpoint]
    trust = ["--public-key", str(WORK / "keys" / "signing.pub")]
    step("7. who was denied access to an invoice? (query prints verified events only)")
    query = [str(BIN), "query", *source, *trust, "--outcome", "denied"]
    result = subprocess.run([*query, "--format", "table", "--limit", "5"], env=ENV, check=False)
    if result.returncode != 0:
        return result.returncode
    first = subprocess.run(
        [*query, "--format", "json", "--limit", "1"],
        env=ENV,
        check=False,
        capture_output=True,
        text=True,
    )
    if first.returncode != 0 or not first.stdout.strip():
        print(first.stderr, file=sys.stderr)
        return first.returncode or 1
    answer = json.loads(first.stdout)
    seq = answer["event"]["seq"]

    step(f"8. prove event {seq} of billing-1: a file a third party can check offline")
    proof = WORK / "proof.json"
    prove = [str(BIN), "prove", *source, *trust, "--stream", "billing-1", "--seq", str(seq)]
    result = subprocess.run([*prove, "--out", str(proof)], env=ENV, check=False)
    if result.returncode != 0:
        return result.returncode

    step("9. verify the proof (no bucket needed: only the file and the public key)")
    result = subprocess.run([str(BIN), "verify-proof", str(proof), *trust], check=False)
    print(f"verify-proof exit status {result.returncode} (0 = the event is proven)")
    return result.returncode


def send_events(agent: subprocess.Popen[bytes], log: TextIO, token: str) -> int:
    """Steps 3 to 5: wait for the agent, send it events, SIGTERM; return its exit status."""

    def listening_port() -> int | None:
        log.seek(0)
        for line in log:
            # skip a line the agent is still writing, or one that is not a log record
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("msg") == "listening":
                    return int(entry["address"].rsplit(":", 1)[1])
        return None

    port = wait_for(listening_port, "the agent to listen")
    wait_for(lambda: request(port, "GET", "/readyz")[0] == 200, "the agent to be ready")
    print(f"agent listening on 127.0.0.1:{port}")

    step("4. 350 sample events over HTTP, in 7 requests")
    for n in range(7):
        status, body = request(port, "POST", "/v1/events", sample_events(n * 50, 50), token)
        print(f"POST /v1/events -> {status} {body.decode()}")
    status, body = request(port, "POST", "/v1/events", b'{"actor":"x","action":"y"}\n', token)
    print(f"a bad event     -> {status} {body.decode()}")

    step("5. SIGTERM: seal the partial batch, upload, exit")
    agent.send_signal(signal.SIGTERM)
    status = agent.wait(60)
    print(f"agent exit status {status}")
    log.seek(0)
    uploads = [json.loads(x) for x in log if '"uploaded segment"' in x]
    for entry in uploads:
        print(
            f"  uploaded {entry['key']} ({entry['bytes']} bytes, retain until"
            f" {entry['retain_until'][:19]})"
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
