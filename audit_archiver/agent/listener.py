"""The ingest listener: sockets, TLS, and the limits slow or hostile clients meet.

The agent accepts connections itself (``loop.sock_accept``) and hands each one
to aiohttp with ``loop.connect_accepted_socket``, so every connection is
counted from the moment it is accepted, before any TLS handshake:

- at most ``max_connections`` are open, so the process's file descriptors stay
  bounded (``max_connections`` + a fixed base). A new connection over the cap
  takes the slot of a connection that is not inside a request (still sending
  its headers, or idle between requests), which is reset
  (``audit_archiver_connections_refused_total{reason="evicted"}``): the oldest
  one of the peer holding the most such connections, or of the newcomer's own
  peer when that one holds as many. A peer is a source IP address, or on a
  Unix socket a client process (``SO_PEERCRED``; every client of a Unix socket
  shares one address, so the address alone would make a flooding sidecar and a
  legitimate one the same peer). When every connection is inside a request the
  new one is reset instead (reason ``limit``). A flood of connections that
  never finish their headers, from one address or from a few, therefore only
  ever evicts its own connections once it holds the most, and cannot lock out
  clients elsewhere;
- the TLS handshake must finish within ``header_timeout`` (reason ``tls`` when
  it fails or times out), and then the request headers within
  ``header_timeout`` of the connection opening, or of the first byte after an
  answered request (reason ``header_timeout``); an idle keep-alive connection
  is closed after aiohttp's ``keepalive_timeout`` (``--idle-timeout``);
- when the process runs out of descriptors anyway, accepting pauses briefly and
  the warning is rate-limited (see :mod:`audit_archiver.agent.logs`).

A Unix socket is created with mode 0660 under a temporary name and renamed
into place: a stale socket is replaced, a live one (something answers) is
refused, and anything else at the path (a symlink, a file) is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audit_archiver.agent.metrics import AgentMetrics
from audit_archiver.errors import ConfigurationError, KeyFileError

__all__ = [
    "Listener",
    "bind_tcp",
    "bind_unix",
    "build_tls_context",
    "client_certificate_name",
    "request_finished",
    "request_started",
]

log = logging.getLogger(__name__)
BACKLOG = 512
_ACCEPT_RETRY_SECONDS = 0.1
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_UNIX_SOCKET_MODE = 0o660


def build_tls_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """A server TLS context: TLS 1.2 or newer; with ``client_ca``, client certificates required.

    Only ``client_ca`` is trusted for client certificates (never the system
    store). The key file must not be accessible by group or others.

    Raises:
        ConfigurationError: unreadable, mismatched or widely readable files.
    """
    try:
        mode = key.stat().st_mode
    except OSError as e:
        raise KeyFileError(f"cannot read --tls-key {key}: {e.strerror}") from e
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"--tls-key {key} is accessible by group or others"
            f" (mode {stat.S_IMODE(mode):04o}); run: chmod 600 {key}"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigurationError(f"cannot load --tls-cert {cert} / --tls-key {key}: {e}") from e
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as e:
            raise ConfigurationError(f"cannot load --tls-client-ca {client_ca}: {e}") from e
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_certificate_name(transport: asyncio.BaseTransport | None) -> str | None:
    """The subject CN of the verified client certificate on ``transport``, if any."""
    if transport is None:
        return None
    cert = transport.get_extra_info("peercert")
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for attribute, value in rdn:
            if attribute == "commonName" and isinstance(value, str) and value:
                return value
    return None


def bind_tcp(host: str, port: int) -> list[socket.socket]:
    """Listening, non-blocking sockets for every address of ``host`` (one port for all).

    Raises:
        ConfigurationError: the address cannot be resolved or bound.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigurationError(f"--listen {host}:{port}: cannot resolve {host!r}") from e
    sockets: list[socket.socket] = []
    seen: set[Any] = set()
    try:
        for family, kind, proto, _, resolved in infos:
            if resolved in seen:
                continue
            seen.add(resolved)
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            address = resolved
            if port == 0 and len(sockets) > 1:  # the same free port on every address
                address = (resolved[0], sockets[0].getsockname()[1], *resolved[2:])
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except OSError as e:
        for sock in sockets:
            sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {e.strerror}") from e
    return sockets


def bind_unix(path: Path) -> socket.socket:
    """A listening, non-blocking Unix socket at ``path`` with mode 0660.

    Call before other threads start (the umask is set around ``bind``).

    Raises:
        ConfigurationError: the path holds something other than a stale
            socket, or the socket cannot be created.
    """
    where = f"--listen unix:{path}"
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        existing = None
    except OSError as e:
        raise ConfigurationError(f"{where}: {e.strerror}") from e
    if existing is not None:
        if not stat.S_ISSOCK(existing.st_mode):
            raise ConfigurationError(
                f"{where}: the path exists and is not a socket (a file, directory or"
                " symlink there is never replaced); remove it or choose another path"
            )
        if _socket_answers(path):
            raise ConfigurationError(f"{where}: another process is listening on this socket")
    temporary = path.with_name(f"{path.name}.{os.getpid() % 100_000}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)  # a leftover of this pid's predecessor (never followed)
        old_umask = os.umask(0o777 & ~_UNIX_SOCKET_MODE)
        try:
            sock.bind(str(temporary))
        finally:
            os.umask(old_umask)
        os.rename(temporary, path)  # atomic; replaces the stale socket, never follows a link
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise ConfigurationError(f"{where}: cannot create the socket: {e.strerror}") from e
    return sock


def _socket_answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError as e:
        raise ConfigurationError(f"--listen unix:{path}: cannot probe it: {e.strerror}") from e
    finally:
        probe.close()
    return True


def request_started(transport: asyncio.BaseTransport | None) -> None:
    """Tell the connection its request headers are complete (stops the header timer)."""
    connection = transport.get_protocol() if transport is not None else None
    if isinstance(connection, _Connection):
        connection.request_started()


def request_finished(transport: asyncio.BaseTransport | None) -> None:
    """Tell the connection its request was handled (the next one gets a header timer)."""
    connection = transport.get_protocol() if transport is not None else None
    if isinstance(connection, _Connection):
        connection.request_finished()


class _Connection(asyncio.Protocol):
    """Forwards to the HTTP protocol; enforces the header timeout; frees its slot once."""

    def __init__(self, listener: Listener, inner: asyncio.Protocol) -> None:
        self._listener = listener
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._in_request = False
        self._released = False
        self.peer: object = None
        """Who opened it, for fairness (:func:`_peer`)."""
        self.task: asyncio.Task[None] | None = None
        """Hands the socket to aiohttp (and runs the TLS handshake)."""

    def evict(self) -> None:
        """Reset the connection now (even during its TLS handshake); its slot is free at once."""
        self._disarm()
        self.release()
        if self._transport is not None:
            self._transport.abort()
        elif self.task is not None:
            self.task.cancel()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._arm()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._timer is None and not self._in_request:
            self._arm()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.release()
        self._inner.connection_lost(exc)

    def request_started(self) -> None:
        self._in_request = True
        self._disarm()
        self._listener.busy(self)

    def request_finished(self) -> None:
        self._in_request = False
        if not self._released:
            self._listener.waiting(self)

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._listener.busy(self)
            self._listener.released()

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._listener.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self._in_request or self._transport is None or self._transport.is_closing():
            return
        self._listener.refused("header_timeout")
        self._transport.abort()


class Listener:
    """Accepts connections on bound sockets and serves them with ``protocol_factory``."""

    def __init__(
        self,
        sockets: list[socket.socket],
        protocol_factory: Callable[[], asyncio.Protocol],
        metrics: AgentMetrics,
        *,
        max_connections: int,
        header_timeout: float,
        tls: ssl.SSLContext | None = None,
        unix_path: Path | None = None,
    ) -> None:
        self._sockets = sockets
        self._factory = protocol_factory
        self._metrics = metrics
        self._max = max_connections
        self.header_timeout = header_timeout
        self._tls = tls
        self._unix_path = unix_path
        self._unix_inode = os.lstat(unix_path).st_ino if unix_path is not None else None
        self._open = 0
        self._waiting: dict[object, dict[_Connection, None]] = {}
        """Connections not inside a request, by peer, oldest first."""
        self._accepting: list[asyncio.Task[None]] = []
        self._handshakes: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        """``host:port`` of the first TCP socket, or ``unix:/path``."""
        if self._unix_path is not None:
            return f"unix:{self._unix_path}"
        host, port = self._sockets[0].getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def open_connections(self) -> int:
        """Connections counted against the cap (including TLS handshakes)."""
        return self._open

    def start(self) -> None:
        """Start accepting (call in the event loop)."""
        loop = asyncio.get_running_loop()
        self._accepting = [loop.create_task(self._accept(sock)) for sock in self._sockets]

    async def close(self) -> None:
        """Stop accepting, drop TLS handshakes in progress, remove the Unix socket.

        Connections already handed to aiohttp are closed by its runner.
        """
        tasks = [*self._accepting, *self._handshakes]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sock in self._sockets:
            sock.close()
        if self._unix_path is not None:
            with contextlib.suppress(OSError):
                if os.lstat(self._unix_path).st_ino == self._unix_inode:
                    os.unlink(self._unix_path)

    def waiting(self, connection: _Connection) -> None:
        own = self._waiting.setdefault(connection.peer, {})
        own.pop(connection, None)
        own[connection] = None

    def busy(self, connection: _Connection) -> None:
        own = self._waiting.get(connection.peer)
        if own is None:
            return
        own.pop(connection, None)
        if not own:
            del self._waiting[connection.peer]

    def _victim(self, peer: object) -> _Connection | None:
        """The connection to evict for a newcomer from ``peer``, or None (all busy)."""
        if not self._waiting:
            return None
        top = max(self._waiting.values(), key=len)
        own = self._waiting.get(peer)
        if own and len(own) >= len(top):
            top = own  # the newcomer's peer holds the most: it pays for itself
        return next(iter(top))

    def released(self) -> None:
        self._open -= 1
        self._metrics.connections_open.set(self._open)

    def refused(self, reason: str) -> None:
        self._metrics.connections_refused.labels(reason).inc()
        log.warning(
            "connection closed by the listener",
            extra={"reason": reason, "open": self._open, "rate_limit": True},
        )

    async def _accept(self, server: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(server)
            except OSError as e:
                if e.errno in _OUT_OF_RESOURCES:
                    log.warning(
                        "cannot accept connections: out of file descriptors or memory",
                        extra={"error": e.strerror, "open": self._open, "rate_limit": True},
                    )
                    await asyncio.sleep(_ACCEPT_RETRY_SECONDS)
                continue  # ECONNABORTED and the like: the client gave up
            peer = _peer(sock)
            if self._open >= self._max:
                victim = self._victim(peer)
                if victim is None:
                    _reset(sock)
                    self.refused("limit")
                    continue
                victim.evict()
                self.refused("evicted")
            self._open += 1
            self._metrics.connections_open.set(self._open)
            try:
                connection = _Connection(self, self._factory())
                connection.peer = peer
            except Exception:
                log.exception("cannot set up a connection")
                sock.close()
                self.released()
                continue
            self.waiting(connection)  # evictable from now on, before the handshake
            connection.task = loop.create_task(self._establish(sock, connection))
            self._handshakes.add(connection.task)
            connection.task.add_done_callback(self._handshakes.discard)
            await asyncio.sleep(0)  # sock_accept does not yield while the backlog is full

    async def _establish(self, sock: socket.socket, connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        made = connection
        try:
            if self._tls is None:
                await loop.connect_accepted_socket(lambda: made, sock)
            else:
                await loop.connect_accepted_socket(
                    lambda: made,
                    sock,
                    ssl=self._tls,
                    ssl_handshake_timeout=self.header_timeout,
                    ssl_shutdown_timeout=self.header_timeout,
                )
        except BaseException as e:
            sock.close()
            released = connection.released
            connection.release()
            if not isinstance(e, Exception):
                raise
            if not released:
                self.refused("tls" if self._tls is not None else "error")
        finally:
            connection.task = None


_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def _peer(sock: socket.socket) -> object:
    """The peer of an accepted socket, for fairness: its IP address, or on a
    Unix socket its process id (None where the kernel does not say)."""
    if sock.family == socket.AF_UNIX:
        try:
            pid, _, _ = _PEERCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
            )
        except (OSError, AttributeError):
            return None
        return ("pid", pid)
    try:
        return sock.getpeername()[0]
    except OSError:
        return None


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset: the descriptor is freed now, no TIME_WAIT is left."""
    with contextlib.suppress(OSError):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
