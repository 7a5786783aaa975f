"""Benchmarks behind scripts/bench. Each figure is printed next to a baseline run
in the same session against the same local S3 server, as a ratio.

    scripts/bench agent [--events N] [--rounds R]
    scripts/bench verify [--segments N] [--events-per-segment M] [--rounds R] [--no-cloudtrail]
    scripts/bench hotpath

agent: ~300-byte events POSTed to /v1/events in 1,000-event requests by
concurrent clients (``--workload k8s``: Kubernetes audit ``EventList`` bodies of
400 Events of ~1.5 KB each, as the API server's webhook sends them, POSTed to
/v1/ingest/k8s-audit);
events/s acknowledged, events/s durably in S3 (first POST to the last segment
confirmed), the agent's peak RSS, and two baselines on the same bodies, in the
same round, against the same server: the durable shipper (:class:`DurableShipper`:
the same aiohttp stack and load generator, fsync before the 200, 10,000-event
zstd batches, COMPLIANCE PutObject from a thread pool; no validation or sealing)
and a plain boto3 put_object loop (one object per request).

verify: segments of the agent's default size in the local S3 server; verify in
this process and as the CLI (wall, CPU, peak RSS), the CLI over a 5-segment
archive, the floor (list, download, decompress, leaf hashes, interior nodes)
and list + download + SHA-256 with verify's own parallelism, and AWS's
``aws cloudtrail validate-logs`` over a CloudTrail archive of the same events
(``scripts/bench_cloudtrail.py``).

hotpath: CPU an event of each step of both hot paths, in one process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import web

from audit_archiver.core.segment import compress_body
from audit_archiver.storage.local_s3 import DUMMY_ENVIRONMENT, create_locked_bucket, local_client

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin" / "audit-archiver"
# The agent, S3Store.connect and the spawned baseline workers all read these.
os.environ.update(DUMMY_ENVIRONMENT)
# Commands start as they do where the package is installed: with its bytecode
# cached (pip writes it), not compiled from source at every start.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
ENV = dict(os.environ)


class LocalS3:
    """``audit-archiver local-s3`` in a process of its own."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [str(BIN), "local-s3", "--port", "0"], stdout=subprocess.PIPE, env=ENV, text=True
        )
        assert self.process.stdout is not None
        banner = self.process.stdout.readline()
        self.endpoint = re.search(r"(http://\S+)", banner).group(1)  # type: ignore[union-attr]
        self.client = local_client(self.endpoint)

    def new_bucket(self, name: str) -> str:
        create_locked_bucket(self.client, name, retention_days=1)
        return name

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def make_body(first: int, count: int) -> bytes:
    """``count`` events of about 300 bytes each, as NDJSON."""
    lines = []
    for i in range(first, first + count):
        event = {
            "actor": {"id": f"user-{i % 977}", "type": "user"},
            "action": "invoice.read",
            "resource": {"id": f"invoice/{i}", "type": "invoice"},
            # a distinct time per event: no help from the agent's memo of checked values
            "time": f"2026-11-23T{10 + i // 3_600_000 % 10}:{i // 60_000 % 60:02d}:"
            f"{i // 1000 % 60:02d}.{i % 1000:03d}Z",
            "outcome": "success",
            "source_ip": f"10.0.{i % 200}.{i % 250 + 1}",
            "details": {"request_id": f"{i:032x}", "note": "x" * 60},
        }
        lines.append(json.dumps(event, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode()


def make_k8s_body(first: int, count: int) -> bytes:
    """An ``audit.k8s.io/v1`` ``EventList`` of ``count`` Events of about 1.5 KB each
    (level Metadata, the shape kube-apiserver writes), with distinct auditIDs."""
    items = []
    for i in range(first, first + count):
        stamp = f"2026-11-23T{10 + i // 3_600_000 % 10}:{i // 60_000 % 60:02d}:{i // 1000 % 60:02d}"
        items.append(
            {
                "kind": "Event",
                "apiVersion": "audit.k8s.io/v1",
                "level": "Metadata",
                "auditID": f"{i:08x}-5f3a-4c1d-9e2b-{i:012x}",
                "stage": "ResponseComplete",
                "requestURI": f"/api/v1/namespaces/team-{i % 50}/configmaps/app-config-{i}",
                "verb": "update",
                "user": {
                    "username": f"system:serviceaccount:team-{i % 50}:deployer",
                    "uid": f"{i:032x}",
                    "groups": [
                        "system:serviceaccounts",
                        f"system:serviceaccounts:team-{i % 50}",
                        "system:authenticated",
                    ],
                    "extra": {
                        "authentication.kubernetes.io/pod-name": [f"deployer-{i % 977}"],
                        "authentication.kubernetes.io/pod-uid": [f"{i * 7:032x}"],
                    },
                },
                "sourceIPs": [f"10.{i % 200}.{i % 250}.{i % 254 + 1}"],
                "userAgent": "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",
                "objectRef": {
                    "resource": "configmaps",
                    "namespace": f"team-{i % 50}",
                    "name": f"app-config-{i}",
                    "uid": f"{i * 3:032x}",
                    "apiVersion": "v1",
                    "resourceVersion": str(1_000_000 + i),
                },
                "responseStatus": {"metadata": {}, "code": 200},
                "requestReceivedTimestamp": f"{stamp}.{i % 1000:03d}000Z",
                "stageTimestamp": f"{stamp}.{i % 1000:03d}512Z",
                "annotations": {
                    "authorization.k8s.io/decision": "allow",
                    "authorization.k8s.io/reason": 'RBAC: allowed by RoleBinding "deployer/'
                    f'team-{i % 50}" of Role "configmap-editor" to ServiceAccount "deployer/'
                    f'team-{i % 50}"',
                    "pod-security.kubernetes.io/enforce-policy": "restricted:latest",
                    "mutation.webhook.admission.k8s.io/round_0_index_0": json.dumps(
                        {
                            "configuration": "policy-agent",
                            "webhook": "mutate.policy-agent.example.com",
                            "mutated": False,
                        }
                    ),
                    "validation.policy.admission.k8s.io/validation_failure": "[]",
                },
            }
        )
    body = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items}
    return json.dumps(body, separators=(",", ":")).encode()


WORKLOADS = {
    # name: (path, events per request, body maker, content type)
    "events": ("/v1/events", 1000, make_body, "application/x-ndjson"),
    "k8s": ("/v1/ingest/k8s-audit", 400, make_k8s_body, "application/json"),
}


def _metric(port: int, name: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _wait(condition: Callable[[], bool], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("bench: timed out")
        time.sleep(0.02)


def post_all(port: int, requests: list[bytes], clients: int) -> None:
    """Send every pre-built request from ``clients`` keep-alive connections."""
    queue = list(range(len(requests)))
    lock = threading.Lock()

    def client() -> None:
        """A lean keep-alive HTTP client: pre-built requests, minimal response parsing,
        so the load generator takes as little of the shared CPU as it can."""
        with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
            reader = conn.makefile("rb")
            while True:
                with lock:
                    if not queue:
                        break
                    index = queue.pop()
                conn.sendall(requests[index])
                status = reader.readline()
                length = 0
                while (line := reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                reader.read(length)
                assert status.split()[1] == b"200", status
            reader.close()

    with ThreadPoolExecutor(clients) as pool:
        for running in [pool.submit(client) for _ in range(clients)]:
            running.result()  # a client that failed fails the round


def agent_round(
    s3: LocalS3, events: int, clients: int, work: Path, workload: str = "events"
) -> dict[str, float]:
    bucket = s3.new_bucket(f"bench-{os.getpid()}-{time.monotonic_ns()}")
    subprocess.run(
        [str(BIN), "keygen", "--out", str(work / "keys")], check=True, capture_output=True
    )
    token = "bench-token-0123456789abcdef"  # noqa: S105 (a local benchmark token)
    (work / "token").write_text(token)
    log = open(work / "agent.log", "w+")  # noqa: SIM115
    agent = subprocess.Popen(
        [
            str(BIN),
            "agent",
            "--bucket",
            bucket,
            "--prefix",
            "bench",
            "--stream",
            "s1",
            "--signing-key",
            str(work / "keys" / "signing.key"),
            "--retention-days",
            "1",
            "--spool",
            str(work / "spool"),
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            str(work / "token"),
            "--endpoint-url",
            s3.endpoint,
            "--batch-max-events",
            "10000",
            "--batch-max-age",
            "1",
            "--spool-max-bytes",
            str(4 << 30),
            "--log-level",
            "warning",
        ],
        stderr=log,
        env=ENV,
    )

    def port() -> int | None:
        return next(iter(_listening_ports(agent.pid)), None)

    _wait(lambda: port() is not None or agent.poll() is not None, 60)
    listen = port()
    assert listen is not None, (work / "agent.log").read_text()
    path, per_request, maker, content_type = WORKLOADS[workload]
    bodies = [maker(i * per_request, per_request) for i in range(events // per_request)]
    raw_bytes = sum(len(b) for b in bodies)
    requests = [
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
        % (path.encode(), token.encode(), content_type.encode(), len(body), body)
        for body in bodies
    ]
    started = time.perf_counter()
    post_all(listen, requests, clients)
    acked = time.perf_counter() - started
    _wait(
        lambda: (
            _metric(listen, "audit_archiver_events_pending") == 0
            and _metric(listen, "audit_archiver_segments_pending") == 0
        )
    )
    durable = time.perf_counter() - started
    assert _metric(listen, "audit_archiver_events_accepted_total") == events
    rss = _peak_rss_kib(agent.pid)
    workers_rss = sum(_peak_rss_kib(child) for child in _children(agent.pid))
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(60) == 0, (work / "agent.log").read_text()
    log.close()
    objects = [
        s3.client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in s3.client.list_objects_v2(Bucket=bucket)["Contents"]
    ]
    shipper = shipper_round(s3, requests, clients, work, token=token, workload=workload)
    baseline = baseline_round(s3, bodies)
    shutil.rmtree(work / "spool", ignore_errors=True)
    shutil.rmtree(work / "keys", ignore_errors=True)
    return {
        "acked_eps": events / acked,
        "durable_eps": events / durable,
        "shipper_acked_eps": events / shipper["acked_s"],
        "shipper_eps": events / shipper["durable_s"],
        "baseline_eps": events / baseline,
        "rss_mib": rss / 1024,
        "workers_rss_mib": workers_rss / 1024,
        "shipper_rss_mib": shipper["rss_mib"],
        "segments": len(objects),
        "raw_mb": raw_bytes / 1e6,
        "stored_mb": sum(len(o) for o in objects) / 1e6,
    }


class DurableShipper:
    """The durable shipper baseline: what a user's own simple shipper would do.

    The agent's HTTP stack (aiohttp) takes the same requests; each body is
    appended to a local batch file and fsync'd before the 200 (group commit:
    one write pass and one fsync for every request waiting, in one disk thread,
    as the agent's committer does); every ``batch_events`` events the file is
    closed and its bodies, zstd-compressed at the agent's level
    (:func:`~audit_archiver.core.segment.compress_body`), are PutObject'ed with
    COMPLIANCE retention by a background thread pool, then the file is deleted.
    A batch older than ``max_age`` seconds is shipped as it is. No validation,
    signing, Merkle tree or chain.
    """

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        spool: Path,
        token: str,
        *,
        batch_events: int,
        events_per_body: int | None,
        max_age: float = 1.0,
        uploaders: int = 4,
    ) -> None:
        self.client = local_client(endpoint)
        self.bucket = bucket
        self.spool = spool
        self.authorization = f"Bearer {token}".encode()
        self.batch_events = batch_events
        self.events_per_body = events_per_body  # None: NDJSON, one event a line
        self.max_age = max_age
        self.retain_until = datetime.now(UTC) + timedelta(days=1)
        self.accepted = 0
        self.shipped = 0
        self.objects = 0
        self.failed: str | None = None
        self._count_lock = threading.Lock()
        self._disk = ThreadPoolExecutor(1)
        self._uploads = ThreadPoolExecutor(uploaders)
        self._queue: list[tuple[bytes, int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._batch: list[bytes] = []
        self._batch_count = 0
        self._batch_started = 0.0
        self._file: BinaryIO | None = None
        self._number = 0

    async def ingest(self, request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, self.authorization):
            return web.json_response({"error": "unauthorized"}, status=401)
        body = await request.read()
        count = body.count(b"\n") if self.events_per_body is None else self.events_per_body
        done = asyncio.get_running_loop().create_future()
        self._queue.append((body, count, done))
        self._wake.set()
        await done
        return web.json_response({"accepted": count})

    async def stats(self, _request: web.Request) -> web.Response:
        with self._count_lock:
            shipped, objects = self.shipped, self.objects
        return web.json_response(
            {
                "accepted": self.accepted,
                "shipped": shipped,
                "objects": objects,
                "failed": self.failed,
            }
        )

    async def commit_loop(self) -> None:
        """Group commit: everything queued is written and fsync'd in one pass."""
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):  # wake at least every max_age / 4
                await asyncio.wait_for(self._wake.wait(), self.max_age / 4)
            self._wake.clear()
            queued, self._queue = self._queue, []
            try:
                await loop.run_in_executor(self._disk, self._append, [(b, n) for b, n, _ in queued])
            except Exception as e:  # reported to the clients and to /stats
                self.failed = repr(e)
                for _, _, done in queued:
                    done.set_exception(e)
                continue
            self.accepted += sum(n for _, n, _ in queued)
            for _, _, done in queued:
                done.set_result(None)

    def _append(self, bodies: list[tuple[bytes, int]]) -> None:
        """Append to the batch file, ship each full batch; fsync before returning."""
        for body, count in bodies:
            if self._file is None:
                self._file = open(self.spool / f"{self._number:012d}.ndjson", "wb")  # noqa: SIM115
                self._batch_started = time.monotonic()
            self._file.write(body)
            self._batch.append(body)
            self._batch_count += count
            if self._batch_count >= self.batch_events:
                self._ship()
        if self._file is None:
            return
        if time.monotonic() - self._batch_started >= self.max_age:
            self._ship()  # a batch that waited long enough goes as it is
        elif bodies:
            self._file.flush()
            os.fsync(self._file.fileno())

    def _ship(self) -> None:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        path = Path(self._file.name)
        self._uploads.submit(self._upload, self._number, self._batch, self._batch_count, path)
        self._file, self._batch, self._batch_count = None, [], 0
        self._number += 1

    def _upload(self, number: int, bodies: list[bytes], count: int, path: Path) -> None:
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=f"shipper/{number:012d}.ndjson.zst",
                Body=compress_body(b"".join(bodies), "zstd"),
                ObjectLockMode="COMPLIANCE",
                ObjectLockRetainUntilDate=self.retain_until,
            )
        except Exception as e:  # /stats reports it: the round fails
            self.failed = repr(e)
            return
        path.unlink()
        with self._count_lock:
            self.shipped += count
            self.objects += 1

    def serve(self) -> None:
        async def serving() -> None:
            app = web.Application(client_max_size=64 << 20)
            for route, _, _, _ in WORKLOADS.values():
                app.router.add_post(route, self.ingest)
            app.router.add_get("/stats", self.stats)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            committer = asyncio.create_task(self.commit_loop())
            port = runner.addresses[0][1]
            print(port, flush=True)
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            await stop.wait()
            committer.cancel()
            await runner.cleanup()

        asyncio.run(serving())
        self._uploads.shutdown(wait=True)


def shipper_round(
    s3: LocalS3, requests: list[bytes], clients: int, work: Path, *, token: str, workload: str
) -> dict[str, float]:
    """The same requests, load generator and client count, sent to :class:`DurableShipper`
    in a process of its own (as the agent is); seconds until all are acknowledged and
    until the last object is stored, and the shipper's peak RSS."""
    bucket = s3.new_bucket(f"shipper-{os.getpid()}-{time.monotonic_ns()}")
    spool = work / "shipper-spool"
    spool.mkdir()
    _, per_request, _, content_type = WORKLOADS[workload]
    command = [sys.executable, __file__, "shipper", s3.endpoint, bucket, str(spool), token]
    if content_type != "application/x-ndjson":
        command += ["--events-per-body", str(per_request)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=ENV, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        events = len(requests) * per_request

        def stats() -> dict[str, int]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/stats")
            found = json.loads(conn.getresponse().read())
            conn.close()
            if found["failed"]:
                raise SystemExit(f"bench: the durable shipper failed: {found['failed']}")
            return found  # type: ignore[no-any-return]

        started = time.perf_counter()
        post_all(port, requests, clients)
        acked = time.perf_counter() - started
        _wait(lambda: stats()["shipped"] >= events)
        durable = time.perf_counter() - started
        final = stats()
        assert final["accepted"] == final["shipped"] == events, final
        rss = _peak_rss_kib(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        shutil.rmtree(spool, ignore_errors=True)
    stored = s3.client.list_objects_v2(Bucket=bucket)["Contents"]
    assert len(stored) == final["objects"] == -(-events // 10_000), (len(stored), final)
    return {"acked_s": acked, "durable_s": durable, "rss_mib": rss / 1024}


def baseline_round(s3: LocalS3, objects: list[bytes]) -> float:
    """Seconds to ship the same request bodies with a plain boto3 put_object loop.

    One object per 1,000-event request, as a shipper with no spool, no
    validation and no sealing would write them, into a bucket with the same
    default COMPLIANCE retention as the agent's.
    """
    bucket = s3.new_bucket(f"plain-{os.getpid()}-{time.monotonic_ns()}")
    started = time.perf_counter()
    for index, data in enumerate(objects):
        s3.client.put_object(Bucket=bucket, Key=f"plain/{index:012d}", Body=data)
    return time.perf_counter() - started


def _listening_ports(pid: int) -> list[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:
            ports.append(int(fields[1].split(":")[1], 16))
    return ports


def _children(pid: int) -> list[int]:
    """The agent's child processes (its workers and multiprocessing's resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def bench_agent(args: argparse.Namespace) -> None:
    s3 = LocalS3()
    rounds = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for index in range(args.rounds):
                result = agent_round(s3, args.events, args.clients, Path(tmp), args.workload)
                rounds.append(result)
                print(
                    f"round {index + 1}: " + ", ".join(f"{k}={v:,.1f}" for k, v in result.items()),
                    flush=True,
                )
    finally:
        s3.stop()
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    ratios = [r["durable_eps"] / r["baseline_eps"] for r in rounds]
    shipper_ratios = [r["durable_eps"] / r["shipper_eps"] for r in rounds]
    print(
        json.dumps(
            {
                "benchmark": "agent",
                "workload": args.workload,
                "events": args.events,
                "rounds": args.rounds,
                "clients": args.clients,
                "median": median,
                "median_end_to_end_vs_durable_shipper_ratio": statistics.median(shipper_ratios),
                "median_end_to_end_vs_plain_put_ratio": statistics.median(ratios),
            },
            indent=1,
        )
    )


def _bench_signer() -> Any:
    """A throwaway signing key (no copy kept); its public key goes to .bench/verify.pub."""
    from audit_archiver.keys import generate_key_pair, load_signer

    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys"
        generate_key_pair(keys)
        signer = load_signer(keys / "signing.key")
        (ROOT / ".bench").mkdir(exist_ok=True)
        shutil.copy(keys / "signing.pub", ROOT / ".bench" / "verify.pub")
    return signer


def _store_segments(s3: LocalS3, bucket: str, segments: int, per_segment: int, signer: Any) -> int:
    """Seal and upload ``segments`` segments of ``per_segment`` events; return raw bytes."""
    from datetime import UTC, datetime, timedelta

    from audit_archiver.agent.sealer import StreamSealer
    from audit_archiver.core.chain import ChainHead
    from audit_archiver.core.encoding import format_timestamp
    from audit_archiver.core.event import encode_event_batch
    from audit_archiver.core.line import seal_line
    from audit_archiver.storage.s3 import S3Store

    store = S3Store.connect(bucket, region="us-east-1", endpoint_url=s3.endpoint)
    sealer = StreamSealer(
        prefix="bench", stream="s1", signer=signer, head=ChainHead(), retention_days=1
    )
    encoded = encode_event_batch(make_body(0, per_segment))
    until = datetime.now(UTC) + timedelta(days=2)
    raw = 0
    for _ in range(segments):
        now = format_timestamp(datetime.now(UTC))
        first = sealer.head.next_seq
        lines = [seal_line(e, first + i, now) for i, e in enumerate(encoded)]
        raw += sum(len(x) + 1 for x in lines)
        segment = sealer.seal(lines, now)
        store.put_new(segment.key, segment.data, retain_until=until)
    return raw


def _baseline_chunk(args: tuple[str, str, list[str], bool, int]) -> tuple[int, int]:
    """Download a chunk of objects; hash them (b) or decompress + Merkle root (a)."""
    import hashlib

    from audit_archiver.core.merkle import root_of_lines
    from audit_archiver.core.segment import decompress_body, open_segment
    from audit_archiver.storage.s3 import S3Store

    endpoint, bucket, keys, merkle, threads = args
    store = _BASELINE_STORES.get(bucket)
    if store is None:
        store = _BASELINE_STORES[bucket] = S3Store.connect(
            bucket, region="us-east-1", endpoint_url=endpoint
        )

    def one(key: str) -> tuple[int, int]:
        data = store.get(key)
        if not merkle:
            hashlib.sha256(data).digest()
            return len(data), 0
        opened = open_segment(data)
        raw = decompress_body(opened.body, opened.container)
        lines = raw.split(b"\n")
        lines.pop()
        root_of_lines(lines)
        return len(data), len(lines)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(one, keys))
    return sum(r[0] for r in results), sum(r[1] for r in results)


_BASELINE_STORES: dict[str, Any] = {}


def _baseline(s3: LocalS3, bucket: str, workers: int, merkle: bool) -> tuple[float, int]:
    """The floor (``merkle``: list, download, decompress, leaf hashes and interior
    nodes) or list + download + SHA-256, with verify's own parallelism: the same
    downloads in flight, in threads of this process for an archive under
    ``verify/worker.py``'s process thresholds, else the same worker processes."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from audit_archiver.storage.s3 import S3Store
    from audit_archiver.verify.worker import PROCESS_BYTES, PROCESS_THRESHOLD

    started = time.perf_counter()
    store = S3Store.connect(bucket, region="us-east-1", endpoint_url=s3.endpoint)
    versions = [v for v in store.list_versions("bench/") if not v.is_delete_marker]
    keys = [v.key for v in versions]
    if len(keys) < PROCESS_THRESHOLD and sum(v.size for v in versions) < PROCESS_BYTES:
        _BASELINE_STORES[bucket] = store
        result = _baseline_chunk((s3.endpoint, bucket, keys, merkle, workers))
        return time.perf_counter() - started, result[0]
    processes = min(len(os.sched_getaffinity(0)), workers)
    threads = -(-workers // processes)
    chunks = [keys[i : i + 16] for i in range(0, len(keys), 16)]
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        results = list(
            pool.map(_baseline_chunk, [(s3.endpoint, bucket, c, merkle, threads) for c in chunks])
        )
    return time.perf_counter() - started, sum(r[0] for r in results)


def _verify_round(s3: LocalS3, bucket: str, workers: int) -> tuple[float, int, int]:
    from audit_archiver.verify.run import VerifySettings, build_verifier

    started = time.perf_counter()
    settings = VerifySettings(
        public_keys=(ROOT / ".bench" / "verify.pub",),
        bucket=bucket,
        endpoint_url=s3.endpoint,
        region="us-east-1",
        prefix="bench",
        workers=workers,
        progress=False,
    )
    report = build_verifier(settings).run()
    assert report.ok, report.problems[:3]
    return time.perf_counter() - started, report.events, report.segments


def _verify_cli(s3: LocalS3, bucket: str, workers: int) -> tuple[float, float, int, float]:
    """Run ``audit-archiver verify --json`` as a user does; (wall s, CPU s, events
    verified, peak RSS MiB) of that process (its VmHWM, sampled: see
    ``bench_cloudtrail._run``, which runs the CloudTrail validator the same way)."""
    import bench_cloudtrail

    command = [
        str(BIN),
        "verify",
        "--bucket",
        bucket,
        "--prefix",
        "bench",
        "--endpoint-url",
        s3.endpoint,
        "--region",
        "us-east-1",
        "--public-key",
        str(ROOT / ".bench" / "verify.pub"),
        "--workers",
        str(workers),
        "--no-progress",
        "--json",
    ]
    done = bench_cloudtrail._run(command, ENV)
    assert done.exit_code == 0, done.stderr[-2000:]
    cpu = done.usage.ru_utime + done.usage.ru_stime
    events = int(json.loads(done.stdout)["events"])
    return done.wall_seconds, cpu, events, done.peak_rss_kib / 1024


def bench_verify(args: argparse.Namespace) -> None:
    import bench_cloudtrail

    s3 = LocalS3()
    try:
        bucket = s3.new_bucket(f"verify-{os.getpid()}")
        small = s3.new_bucket(f"verify-small-{os.getpid()}")
        print(
            f"uploading {args.segments} segments of {args.events_per_segment} events...", flush=True
        )
        signer = _bench_signer()
        raw = _store_segments(s3, bucket, args.segments, args.events_per_segment, signer)
        _store_segments(s3, small, 5, args.events_per_segment, signer)
        stored = sum(
            o["Size"]
            for page in s3.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])
        )
        events = args.segments * args.events_per_segment
        trail = None
        if not args.no_cloudtrail:
            print("building the CloudTrail archive of the same events...", flush=True)
            lines = [
                line
                for first in range(0, events, args.events_per_segment)
                for line in make_body(first, args.events_per_segment).splitlines()
            ]
            trail = bench_cloudtrail.prepare_cloudtrail_archive(
                s3.endpoint, lines, args.events_per_segment
            )
        rounds = []
        for index in range(args.rounds):
            verify_s, verified_events, segments = _verify_round(s3, bucket, args.workers)
            assert (verified_events, segments) == (events, args.segments)
            cli_s, cli_cpu, cli_events, cli_rss = _verify_cli(s3, bucket, args.workers)
            assert cli_events == events
            small_s, _, small_events, _ = _verify_cli(s3, small, args.workers)
            assert small_events == 5 * args.events_per_segment
            merkle_s, _ = _baseline(s3, bucket, args.workers, merkle=True)
            sha_s, _ = _baseline(s3, bucket, args.workers, merkle=False)
            result = {
                "verify_eps": events / verify_s,
                "verify_mbps": stored / 1e6 / verify_s,
                "irreducible_eps": events / merkle_s,
                "download_sha256_eps": events / sha_s,
                "ratio_vs_irreducible": merkle_s / verify_s,
                "ratio_vs_download_sha256": sha_s / verify_s,
                "cli_wall_s": cli_s,
                "cli_cpu_s": cli_cpu,
                "cli_eps": events / cli_s,
                "cli_peak_rss_mib": cli_rss,
                "small_archive_cli_wall_s": small_s,
            }
            if trail is not None:
                timing = bench_cloudtrail.cloudtrail_round(trail)
                assert timing.events == events, timing
                result |= {
                    "cloudtrail_wall_s": timing.wall_seconds,
                    "cloudtrail_cpu_s": timing.cpu_seconds,
                    "cloudtrail_eps": events / timing.wall_seconds,
                    "cloudtrail_peak_rss_mib": timing.peak_rss_mib,
                    "cli_vs_cloudtrail_wall": timing.wall_seconds / cli_s,
                    "cli_vs_cloudtrail_cpu": timing.cpu_seconds / cli_cpu,
                }
            rounds.append(result)
            print(
                f"round {index + 1}: " + ", ".join(f"{k}={v:,.2f}" for k, v in result.items()),
                flush=True,
            )
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        if trail is not None:
            trail.close()
        s3.stop()
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(
        json.dumps(
            {
                "benchmark": "verify",
                "segments": args.segments,
                "events_per_segment": args.events_per_segment,
                "events": events,
                "raw_mb": raw / 1e6,
                "stored_mb": stored / 1e6,
                "workers": args.workers,
                "rounds": args.rounds,
                "median": median,
                "peak_rss_mib": {"bench_process": own},
            },
            indent=1,
        )
    )


def _cpu_us_per_event(work: Callable[[], object], events: int, repeat: int = 5) -> float:
    """The least CPU time of ``repeat`` runs of ``work``, in microseconds an event."""
    best = min(_cpu_seconds(work) for _ in range(repeat))
    return best / events * 1e6


def _cpu_seconds(work: Callable[[], object]) -> float:
    started = time.process_time()
    work()
    return time.process_time() - started


def _round_trip(value: object) -> object:
    """Through pickle and back, as a worker's argument or result goes (our own bytes)."""
    import pickle

    return pickle.loads(pickle.dumps(value))  # noqa: S301


def bench_hotpath(args: argparse.Namespace) -> None:
    """CPU an event of each step of the agent's and the verifier's hot paths, in
    one process with nothing else running in it (no HTTP, no S3, no pipes): what
    the profiles of ``agent`` and ``verify`` spread over processes, step by step."""
    import hashlib
    import io

    from audit_archiver.agent.encodings import BodyTask, decode_and_encode
    from audit_archiver.core.line import EventRun
    from audit_archiver.core.merkle import root_of_leaf_list
    from audit_archiver.core.segment import compress_body, decompress_body, prepare_runs_body
    from audit_archiver.core.signing import load_trusted_key
    from audit_archiver.core.trust import TrustPolicy
    from audit_archiver.verify.segment_check import check_segment

    per = args.events_per_segment
    bodies = [make_body(first, 1000) for first in range(0, per, 1000)]
    tasks = [BodyTask("events", body, None, "application/x-ndjson", 1 << 26) for body in bodies]
    encoded = [decode_and_encode(task).events for task in tasks]
    stamp = "2026-11-30T08:00:00.123456Z"
    runs = [EventRun(i * 1000, stamp, e.event_count, e.data) for i, e in enumerate(encoded)]
    lines = [line for run in runs for line in run.sealed_lines()]
    raw = b"\n".join(lines) + b"\n"
    leaves = [hashlib.sha256(b"\x00" + line).digest() for line in lines]
    signer = _bench_signer()
    from audit_archiver.agent.sealer import StreamSealer
    from audit_archiver.core.chain import ChainHead

    sealer = StreamSealer(prefix="bench", stream="s1", signer=signer, head=ChainHead())
    segment = sealer.seal(lines, stamp)
    policy = TrustPolicy.every_stream([(load_trusted_key(signer.public_pem()), "bench key")])
    steps: dict[str, Callable[[], object]] = {
        "agent: parse, validate, encode (decode_and_encode)": lambda: [
            decode_and_encode(task) for task in tasks
        ],
        "agent: request body and result through pickle": lambda: [
            _round_trip(task) and _round_trip(e) for task, e in zip(tasks, encoded, strict=True)
        ],
        "agent: seal lines (header per line)": lambda: [run.sealed_lines() for run in runs],
        "agent: whole segment body (prepare_runs_body)": lambda: prepare_runs_body(runs, 0, "zstd"),
        "both: leaf hash per line": lambda: [
            hashlib.sha256(b"\x00" + line).digest() for line in lines
        ],
        "both: interior nodes (root_of_leaf_list)": lambda: root_of_leaf_list(leaves),
        "both: zstd compress (level 3)": lambda: compress_body(raw, "zstd"),
        "verify: zstd decompress": lambda: decompress_body(segment_body, "zstd"),
        "verify: whole segment check (check_segment, in memory)": lambda: check_segment(
            segment.key.removeprefix("bench/"),
            io.BytesIO(segment.data),
            policy,
            stream_id="s1",
            segment_seq=0,
            expected_object_key=segment.key,
        ),
    }
    segment_body = compress_body(raw, "zstd")
    figures = {name: _cpu_us_per_event(work, per) for name, work in steps.items()}
    for name, value in figures.items():
        print(f"{value:7.2f} us/event  {name}")
    print(json.dumps({"benchmark": "hotpath", "events": per, "us_per_event": figures}, indent=1))


def run_shipper(args: argparse.Namespace) -> None:
    DurableShipper(
        args.endpoint,
        args.bucket,
        args.spool,
        args.token,
        batch_events=10_000,  # the agent's --batch-max-events in agent_round
        events_per_body=args.events_per_body,
    ).serve()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="which", required=True)
    agent = sub.add_parser("agent")
    agent.add_argument("--events", type=int, default=200_000)
    agent.add_argument("--rounds", type=int, default=5)
    agent.add_argument("--clients", type=int, default=8)
    agent.add_argument("--workload", choices=sorted(WORKLOADS), default="events")
    agent.set_defaults(run=bench_agent)
    verify = sub.add_parser("verify")
    verify.add_argument("--segments", type=int, default=30)
    verify.add_argument(
        "--events-per-segment", type=int, default=10_000, help="the agent's --batch-max-events"
    )
    verify.add_argument(
        "--no-cloudtrail",
        action="store_true",
        help="skip `aws cloudtrail validate-logs` (it installs awscli into .bench/ first)",
    )
    verify.add_argument("--rounds", type=int, default=3)
    verify.add_argument("--workers", type=int, default=16)
    verify.set_defaults(run=bench_verify)
    hotpath = sub.add_parser("hotpath", help="CPU an event of each hot-path step, one process")
    hotpath.add_argument("--events-per-segment", type=int, default=10_000)
    hotpath.set_defaults(run=bench_hotpath)
    shipper = sub.add_parser("shipper", help="(internal) the durable shipper baseline's process")
    shipper.add_argument("endpoint")
    shipper.add_argument("bucket")
    shipper.add_argument("spool", type=Path)
    shipper.add_argument("token")
    shipper.add_argument("--events-per-body", type=int)
    shipper.set_defaults(run=run_shipper)
    args = parser.parse_args()
    if args.which == "agent" and (args.events < 1000 or args.events % 1000):
        parser.error("--events: a positive multiple of 1000 (events go in 1,000-event requests)")
    args.run(args)


if __name__ == "__main__":
    sys.exit(main())
