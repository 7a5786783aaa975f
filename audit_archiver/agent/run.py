"""Running the agent as a process: sources, listener, signals, exit code.

The listener's files and sockets (tokens, TLS certificates, the bound address)
are checked and bound before the agent starts: a bad token file, a busy port or
something other than a stale socket at a Unix path is a configuration error
(exit 2) before any event is accepted.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from audit_archiver.agent.auth import load_token_file
from audit_archiver.agent.kms import KmsSigner
from audit_archiver.agent.listener import Listener, bind_tcp, bind_unix, build_tls_context
from audit_archiver.agent.pipeline import Agent
from audit_archiver.agent.server import ClientAuth, build_app, request_handler_factory
from audit_archiver.agent.sources import StdinSource, TailSource
from audit_archiver.agent.workers import start_worker_pool
from audit_archiver.config import AgentSettings
from audit_archiver.core.signing import Ed25519Signer, load_trusted_key
from audit_archiver.keys import load_public_key, load_signer
from audit_archiver.storage.s3 import S3Store

__all__ = ["ListenerConfig", "build_agent", "load_listener_config", "run_agent"]

log = logging.getLogger(__name__)
_RUNNER_SHUTDOWN_SECONDS = 5.0


@dataclass(frozen=True)
class ListenerConfig:
    """What the listener needs beyond the settings: client auth and the TLS context."""

    auth: ClientAuth
    tls: ssl.SSLContext | None


def load_listener_config(settings: AgentSettings) -> ListenerConfig:
    """Read the token file and TLS files named by ``settings``.

    Raises:
        ConfigurationError: unreadable or malformed token file, bad TLS files,
            a TLS key readable by group or others.
    """
    tokens = load_token_file(settings.token_file) if settings.token_file is not None else None
    tls = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        tls = build_tls_context(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    return ListenerConfig(ClientAuth(tokens, certificates=settings.tls_client_ca is not None), tls)


def build_agent(settings: AgentSettings) -> Agent:
    """Load the key and connect the store; return an agent that has not started.

    Raises:
        ConfigurationError: bad key (own or ``--previous-public-key``) or settings.
    """
    settings.validate()
    signer: Ed25519Signer | KmsSigner
    if settings.kms_key_id is not None:
        signer = KmsSigner.connect(settings.kms_key_id, region=settings.region, endpoint_url=None)
    else:
        assert settings.signing_key is not None
        signer = load_signer(settings.signing_key)
    own_key = load_trusted_key(signer.public_pem())
    previous_keys = [load_public_key(path) for path in settings.previous_public_keys]
    store = S3Store.connect(
        settings.bucket,
        region=settings.region,
        endpoint_url=settings.endpoint_url,
        read_timeout=settings.s3_read_timeout,
    )
    return Agent(settings, store, signer, own_key, previous_keys=previous_keys)


def _bind(settings: AgentSettings) -> list[socket.socket]:
    if settings.listen is None:
        return []
    if isinstance(settings.listen, Path):
        return [bind_unix(settings.listen)]
    return bind_tcp(*settings.listen)


async def _start_http(
    agent: Agent,
    settings: AgentSettings,
    config: ListenerConfig,
    sockets: list[socket.socket],
    pool: Executor | None,
) -> tuple[web.AppRunner, Listener]:
    app = build_app(
        agent,
        config.auth,
        settings.max_body_bytes,
        pool,
        stall_timeout=settings.idle_timeout,
        body_grace=settings.header_timeout,
        format_options=settings.format_options(),
    )
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=_RUNNER_SHUTDOWN_SECONDS
    )
    await runner.setup()
    assert runner.server is not None
    listener = Listener(
        sockets,
        request_handler_factory(runner.server, settings.idle_timeout),
        agent.metrics,
        max_connections=settings.max_connections,
        header_timeout=settings.header_timeout,
        tls=config.tls,
        unix_path=settings.listen if isinstance(settings.listen, Path) else None,
    )
    listener.start()
    if isinstance(settings.listen, Path):
        log.info("listening on a unix socket", extra={"path": str(settings.listen)})
    else:
        log.info("listening", extra={"address": listener.address, "tls": config.tls is not None})
    return runner, listener


async def _serve(
    agent: Agent,
    settings: AgentSettings,
    config: ListenerConfig,
    sockets: list[socket.socket],
    pool: Executor | None,
) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, agent.request_stop)
    http: tuple[web.AppRunner, Listener] | None = None
    try:
        if sockets:
            http = await _start_http(agent, settings, config, sockets, pool)
        await loop.run_in_executor(None, agent.stopped.wait)
    finally:
        log.info("shutting down", extra={"grace_period_s": settings.grace_period})
        agent.exit_code = await loop.run_in_executor(None, agent.shutdown)
        if http is not None:
            runner, listener = http
            await listener.close()
            await runner.cleanup()


def run_agent(settings: AgentSettings) -> int:
    """Run until SIGTERM/SIGINT, end of stdin or a fatal error; return the exit code.

    Raises:
        ConfigurationError: refused at start-up (no Object Lock, bad settings,
            listener files or address).
        StorageError: the spool cannot be used.
    """
    settings.validate()
    config = load_listener_config(settings)
    agent = build_agent(settings)
    sockets = _bind(settings)  # before any thread starts: bind_unix sets the umask
    pool = None
    sources: list[StdinSource | TailSource] = []
    try:
        pool = start_worker_pool(settings.ingest_workers)
        agent.start(pool)
        if settings.stdin:
            sources.append(
                StdinSource(
                    agent,
                    format_name=settings.stdin_format,
                    options=settings.format_options(),
                )
            )
        if settings.tail is not None:
            sources.append(
                TailSource(
                    agent,
                    settings.tail,
                    settings.spool / "tail.json",
                    format_name=settings.tail_format,
                    options=settings.format_options(),
                )
            )
        for source in sources:
            source.start()
        agent.add_alert_provider(
            lambda: [source.alert for source in sources if source.alert is not None]
        )
        asyncio.run(_serve(agent, settings, config, sockets, pool))
    finally:
        for source in sources:
            source.stop()
        for source in sources:
            source.join(5)
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        for sock in sockets:
            sock.close()
    failed = next((source.error for source in sources if source.error is not None), None)
    if failed is not None and agent.exit_code == 0:
        log.error("stopped: an event source failed", extra={"error": str(failed)})
        return failed.exit_code  # never 0 on an error; accepted events were drained first
    return agent.exit_code
