"""A fault-injecting HTTP proxy between the agent and moto's S3 server.

The proxy listens on 127.0.0.1 (a port the OS picks) and forwards each HTTP
request it reads from the agent to moto over a fresh upstream connection. For
every request it first asks its rules whether to misbehave instead, and how:

``error500``        answer 500 InternalError itself (moto never sees the request)
``slowdown``        answer 503 SlowDown itself
``reset_mid``       forward the head and half of the body, then reset both sides
``drop_response``   forward the whole request, read moto's answer (the object is
                    stored), then reset the agent's connection without answering
``latency``         forward, then hold moto's answer for ``latency`` seconds
                    (past the agent's 10 s read timeout) before sending it
``blackhole``       read the request and never answer

and at the connection level :meth:`FaultProxy.refuse` closes the listening
socket (connection refused) until :meth:`FaultProxy.accept_again`.

Rules are consumed in order: ``add(kind, count=n)`` applies ``kind`` to the next
``n`` matching requests (``count=None``: until :meth:`clear`); ``mix(seed, rate,
kinds)`` draws a fault for each matching request from a seeded generator.
``injected`` counts the faults by kind. Every socket and thread is closed by
:meth:`close` (the proxy is a context manager); every blocking call has a
timeout, so nothing here can hang a test run.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

KINDS = ("error500", "slowdown", "reset_mid", "drop_response", "latency", "blackhole")
_IO_TIMEOUT = 30.0
_MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class Request:
    """What a rule sees of a request: its method and target (path and query)."""

    method: str
    target: str

    @property
    def is_upload(self) -> bool:
        """A PutObject of a segment (not a bucket-level call)."""
        return self.method == "PUT" and ".ndjson" in self.target and "?" not in self.target


def uploads(request: Request) -> bool:
    """Match segment uploads only."""
    return request.is_upload


def everything(_request: Request) -> bool:
    """Match every request."""
    return True


@dataclass
class _Rule:
    kind: str
    match: Callable[[Request], bool]
    remaining: int | None


@dataclass
class _Mix:
    rng: random.Random
    rate: float
    kinds: tuple[str, ...]
    match: Callable[[Request], bool]


class _ClosedError(Exception):
    """The peer closed the connection (or the proxy is closing)."""


class _Reader:
    """Buffered reads off a socket: lines and exact sizes."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    def _fill(self) -> None:
        data = self._sock.recv(65536)
        if not data:
            raise _ClosedError
        self._buffer += data

    def until(self, marker: bytes, limit: int = _MAX_HEAD) -> bytes:
        while marker not in self._buffer:
            if len(self._buffer) > limit:
                raise _ClosedError
            self._fill()
        head, _, self._buffer = self._buffer.partition(marker)
        return head + marker

    def exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def rest(self) -> bytes:
        chunks = [self._buffer]
        self._buffer = b""
        with contextlib.suppress(_ClosedError):
            while True:
                self._fill()
                chunks.append(self._buffer)
                self._buffer = b""
        return b"".join(chunks)


def _headers(head: bytes) -> dict[str, str]:
    found = {}
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            found[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return found


def _read_body(reader: _Reader, headers: dict[str, str]) -> bytes:
    """The framed body that follows a head (Content-Length or chunked)."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size_line = reader.until(b"\r\n")
            parts.append(size_line)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                parts.append(reader.until(b"\r\n"))  # trailers end with an empty line
                while not parts[-1].endswith(b"\r\n\r\n") and parts[-1] != b"\r\n":
                    parts.append(reader.until(b"\r\n"))
                return b"".join(parts)
            parts.append(reader.exactly(size + 2))
    return reader.exactly(int(headers.get("content-length", "0")))


def _canned(status: int, reason: str, code: str, message: str) -> bytes:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<RequestId>FAULTPROXY</RequestId></Error>"
    ).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nx-amz-request-id: FAULTPROXY\r\n\r\n"
    ).encode() + body


CANNED = {
    "error500": _canned(500, "Internal Server Error", "InternalError", "We encountered an error"),
    "slowdown": _canned(503, "Slow Down", "SlowDown", "Please reduce your request rate."),
}


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a dropped connection looks to the peer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """See the module docstring."""

    def __init__(self, target_port: int, *, latency: float = 11.0) -> None:
        self._target = target_port
        self.latency = latency
        self.injected: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self._rules: list[_Rule] = []
        self._mix: _Mix | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        self._server: socket.socket | None = None
        self.port = 0
        self._listen()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- control ----------------------------------------------------------

    def add(
        self, kind: str, *, count: int | None = 1, match: Callable[[Request], bool] = uploads
    ) -> None:
        """Apply ``kind`` to the next ``count`` requests ``match`` accepts (None: until clear)."""
        assert kind in KINDS, kind
        with self._lock:
            self._rules.append(_Rule(kind, match, count))

    def mix(
        self,
        seed: int,
        rate: float,
        kinds: tuple[str, ...] = KINDS,
        match: Callable[[Request], bool] = everything,
    ) -> None:
        """From now on, fault each matching request with probability ``rate`` (seeded)."""
        with self._lock:
            self._mix = _Mix(random.Random(seed), rate, kinds, match)

    def clear(self) -> None:
        """Forward everything from now on (held black-hole connections stay silent)."""
        with self._lock:
            self._rules.clear()
            self._mix = None

    def pending(self) -> int:
        """Counted faults not injected yet."""
        with self._lock:
            return sum(rule.remaining or 0 for rule in self._rules)

    def refuse(self) -> None:
        """Close the listening socket: new connections are refused."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            self.injected["refused"] += 1
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()

    def accept_again(self) -> None:
        """Listen again on the same port after :meth:`refuse`."""
        if self._server is None:
            self._listen()

    def close(self) -> None:
        """Stop listening, drop every connection, join every thread."""
        self._stop.set()
        self.refuse()
        with self._lock:
            sockets = list(self._sockets)
            threads = list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        for thread in threads:
            thread.join(10)

    # --- machinery ----------------------------------------------------------

    def _listen(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(128)
        self.port = server.getsockname()[1]
        self._server = server
        self._spawn(self._accept, server)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    @contextlib.contextmanager
    def _tracked(self, sock: socket.socket) -> Iterator[socket.socket]:
        with self._lock:
            self._sockets.add(sock)
        try:
            yield sock
        finally:
            with self._lock:
                self._sockets.discard(sock)
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self, server: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                return
            client.settimeout(_IO_TIMEOUT)
            self._spawn(self._serve, client)

    def _decide(self, request: Request) -> str | None:
        with self._lock:
            for rule in self._rules:
                if rule.match(request):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining == 0:
                            self._rules.remove(rule)
                    return rule.kind
            mix = self._mix
            if mix is not None and mix.match(request) and mix.rng.random() < mix.rate:
                return mix.rng.choice(mix.kinds)
        return None

    def _serve(self, client: socket.socket) -> None:
        with self._tracked(client):
            reader = _Reader(client)
            with contextlib.suppress(_ClosedError, OSError, ValueError):
                while not self._stop.is_set():
                    if not self._one_request(client, reader):
                        return

    def _one_request(self, client: socket.socket, reader: _Reader) -> bool:
        """Handle one request; False when the client connection is finished."""
        head = reader.until(b"\r\n\r\n")
        method, target = head.split(b" ", 2)[:2]
        request = Request(method.decode("latin-1"), target.decode("latin-1"))
        headers = _headers(head)
        self.requests[request.method] += 1
        kind = self._decide(request)
        if kind is not None:
            self.injected[kind] += 1
        if headers.get("expect", "").lower() == "100-continue":
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            head = b"\r\n".join(
                line for line in head.split(b"\r\n") if not line.lower().startswith(b"expect:")
            )
        if kind == "reset_mid":
            size = int(headers.get("content-length", "0"))
            half = reader.exactly(size // 2)
            with self._tracked(socket.create_connection(("127.0.0.1", self._target), 10)) as up:
                up.sendall(head + half)
                _reset(up)
            _reset(client)
            return False
        body = _read_body(reader, headers)
        if kind in CANNED:
            client.sendall(CANNED[kind])
            return True
        if kind == "blackhole":
            self._hold(client)
            return False
        response, close = self._forward(head + body, request.method)
        if kind == "drop_response":
            _reset(client)
            return False
        if kind == "latency" and self._stop.wait(self.latency):
            return False
        client.sendall(response)
        return not close

    def _hold(self, client: socket.socket) -> None:
        """Say nothing until the client gives up or the proxy closes."""
        client.settimeout(0.2)
        while not self._stop.is_set():
            try:
                if not client.recv(65536):
                    return
            except TimeoutError:
                continue

    def _forward(self, raw: bytes, method: str) -> tuple[bytes, bool]:
        """Send one request upstream; return moto's framed answer and whether it closes."""
        upstream = socket.create_connection(("127.0.0.1", self._target), 10)
        upstream.settimeout(_IO_TIMEOUT)
        with self._tracked(upstream):
            upstream.sendall(raw)
            reader = _Reader(upstream)
            while True:
                head = reader.until(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                if status >= 200:
                    break
            headers = _headers(head)
            if method == "HEAD" or status in (204, 304):
                body = b""
            elif "content-length" in headers or "transfer-encoding" in headers:
                body = _read_body(reader, headers)
            else:
                body = reader.rest()
                headers["connection"] = "close"
            return head + body, headers.get("connection", "").lower() == "close"
