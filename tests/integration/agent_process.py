"""Drive the real ``audit-archiver agent`` in a subprocess, and a switchable TCP proxy."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from tests.helpers import wait_for
from tests.integration.cli import BIN, run_cli
from tests.s3server import s3_client

TOKEN = "integration-test-token-0123456789"


class AgentProcess:
    """One agent process; stderr JSON log lines are collected as they come."""

    def __init__(
        self,
        workdir: Path,
        endpoint: str,
        bucket: str,
        *,
        stream: str = "web-1",
        spool: Path | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        listen: bool = True,
    ) -> None:
        self.workdir = workdir
        keys = workdir / "keys"
        if not (keys / "signing.key").exists():
            subprocess.run(
                [str(BIN), "keygen", "--out", str(keys)], check=True, capture_output=True
            )
            (workdir / "token").write_text(TOKEN + "\n")
        self.public_key = keys / "signing.pub"
        self.spool = spool or workdir / "spool"
        self.argv = [
            str(BIN),
            "agent",
            "--bucket",
            bucket,
            "--prefix",
            "audit",
            "--stream",
            stream,
            "--signing-key",
            str(keys / "signing.key"),
            "--retention-days",
            "2",
            "--spool",
            str(self.spool),
            "--endpoint-url",
            endpoint,
            "--region",
            "us-east-1",
            "--batch-max-age",
            "0.5",
            "--grace-period",
            "10",
            "--ingest-workers",
            "0",
            *args,
        ]
        if listen:
            self.argv += ["--listen", "127.0.0.1:0", "--token-file", str(workdir / "token")]
        self.env = {**os.environ, **(env or {})}
        self.logs: list[dict[str, Any]] = []
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, stdin: int | None = None) -> AgentProcess:
        self.logs = []
        self.port = None
        self.process = subprocess.Popen(
            self.argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env
        )
        self._reader = threading.Thread(target=self._read_logs, args=(self.process,), daemon=True)
        self._reader.start()
        return self

    def _read_logs(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            try:
                entry = json.loads(raw)
            except ValueError:
                entry = {"msg": raw.decode(errors="replace").rstrip(), "level": "raw"}
            self.logs.append(entry)
            if entry.get("msg") == "listening":
                self.port = int(str(entry["address"]).rsplit(":", 1)[1])
        process.stderr.close()

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for(lambda: self.port is not None or self.exited(), timeout, "the listening log")
        wait_for(lambda: self.exited() or self.get("/readyz")[0] == 200, timeout, "readiness")
        assert not self.exited(), self.logs

    def exited(self) -> bool:
        assert self.process is not None
        return self.process.poll() is not None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], Any]:
        assert self.port is not None
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            raw = response.read()
            content = (
                json.loads(raw)
                if response.getheader("Content-Type", "").startswith("application/json")
                else raw
            )
            return response.status, dict(response.getheaders()), content
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, Any]:
        status, _, content = self.request("GET", path)
        return status, content

    def post(self, body: bytes, token: str | None = TOKEN) -> tuple[int, Any]:
        headers = {"Content-Type": "application/x-ndjson"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        status, _, content = self.request("POST", "/v1/events", body, headers)
        return status, content

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(30)

    def wait(self, timeout: float = 60) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop_quietly(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        if self.process is not None:
            self._reader.join(30)
            if self.process.stdin is not None:
                self.process.stdin.close()


def launch(agents: list[AgentProcess], *args: Any, **kwargs: Any) -> AgentProcess:
    """An :class:`AgentProcess` (not started yet) that the ``agents`` fixture stops at teardown."""
    agent = AgentProcess(*args, **kwargs)
    agents.append(agent)
    return agent


def verify_in_bucket(endpoint: str, bucket: str, *args: str | Path) -> tuple[int, dict[str, Any]]:
    """Run ``audit-archiver verify --bucket --prefix audit --json`` with ``args`` (the trust
    and any options); return its exit code (0 or 1, matching ``ok``) and its report."""
    result = run_cli(
        "verify",
        "--bucket",
        bucket,
        "--prefix",
        "audit",
        "--endpoint-url",
        endpoint,
        *args,
        "--json",
        "--no-progress",
    )
    assert result.returncode in (0, 1), result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert result.returncode == (0 if report["ok"] else 1), (result.returncode, report)
    return result.returncode, report


def ndjson(first: int, count: int, pad: int = 0) -> bytes:
    """Events ``first`` .. ``first + count - 1`` as an NDJSON body (``pad``: random hex)."""
    return b"".join(
        json.dumps(
            {
                "actor": f"user-{i}",
                "action": "read",
                "resource": {"id": f"doc/{i}"},
                "n": i,
                "pad": secrets.token_hex(pad // 2),
            }
        ).encode()
        + b"\n"
        for i in range(first, first + count)
    )


def download_latest(endpoint: str, bucket: str, prefix: str, dest: Path) -> list[str]:
    """Download the latest version of every object under ``prefix/`` like ``aws s3 sync``."""
    client = s3_client(endpoint)
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix + "/"
    ):
        for item in page.get("Contents", []):
            key = item["Key"]
            target = dest / key[len(prefix) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
            keys.append(key)
    return keys


class FlakyProxy:
    """A TCP forwarder on loopback that can be switched off (connections refused) and on."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._server: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()  # down() must not miss a connection being accepted

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            server, self._server = self._server, None
            open_connections, self._open = self._open, []
        if server is not None:
            try:
                server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            server.close()
        for conn in open_connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._server is not server:  # switched off meanwhile
                    client.close()
                    upstream.close()
                    return
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


def retry_until_ok(agent: AgentProcess, body: bytes, timeout: float = 30) -> Any:
    """POST until a 200 (riding out 503s); return the answer."""
    deadline = time.monotonic() + timeout
    while True:
        status, answer = agent.post(body)
        if status == 200:
            return answer
        assert status == 503, (status, answer)
        assert time.monotonic() < deadline, "still 503"
        time.sleep(0.05)


def metric_value(agent: AgentProcess, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples on the agent's /metrics whose labels include ``labels``."""
    status, text = agent.get("/metrics")
    assert status == 200
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_text = series.partition("{")
        if metric != name:
            continue
        found = dict(
            part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part
        )
        if all(found.get(key) == f'"{want}"' for key, want in labels.items()):
            total += float(value)
    return total


def _child_pids(pid: int) -> list[int]:
    children: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    for task in tasks:
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


def peak_rss_bytes(pid: int, *, children: bool = False) -> int:
    """Peak resident memory (VmHWM) of ``pid``, plus every descendant's with ``children``.

    Summing per-process peaks over-states a simultaneous peak: a safe upper bound.
    A ``pid`` that is gone raises (no reading is not a zero); a descendant gone meanwhile
    is skipped.
    """
    pids, total = [pid], 0
    while pids:
        current = pids.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            if current == pid:
                raise
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) * 1024
        if children:
            pids += _child_pids(current)
    return total
