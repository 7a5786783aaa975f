"""Running the agent as a process: sources, HTTP server, signals, exit code."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import Executor

from aiohttp import web

from audit_archiver.agent.kms import KmsSigner
from audit_archiver.agent.pipeline import Agent
from audit_archiver.agent.server import build_app
from audit_archiver.agent.sources import StdinSource, TailSource
from audit_archiver.agent.workers import start_worker_pool
from audit_archiver.config import AgentSettings
from audit_archiver.core.signing import Ed25519Signer, load_trusted_key
from audit_archiver.errors import ConfigurationError
from audit_archiver.keys import load_public_key, load_signer
from audit_archiver.storage.s3 import S3Store

__all__ = ["build_agent", "read_token", "run_agent"]

log = logging.getLogger(__name__)


def read_token(settings: AgentSettings) -> bytes:
    """Read the bearer token clients must present.

    Raises:
        ConfigurationError: the token file is unreadable or empty.
    """
    if settings.token_file is None:
        return b""
    try:
        token = settings.token_file.read_bytes().strip()
    except OSError as e:
        raise ConfigurationError(
            f"cannot read --token-file {settings.token_file}: {e.strerror}"
        ) from e
    if len(token) < 16:
        raise ConfigurationError(
            f"--token-file {settings.token_file} must hold a token of at least 16 characters"
        )
    return token


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
        settings.bucket, region=settings.region, endpoint_url=settings.endpoint_url
    )
    return Agent(settings, store, signer, own_key, previous_keys=previous_keys)


async def _serve(
    agent: Agent, settings: AgentSettings, token: bytes, pool: Executor | None
) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, agent.request_stop)
    runner: web.AppRunner | None = None
    if settings.listen is not None:
        app = build_app(agent, token, settings.max_body_bytes, pool)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        host, port = settings.listen
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        bound = runner.addresses[0] if runner.addresses else (host, port)
        log.info("listening", extra={"address": f"{bound[0]}:{bound[1]}"})
    await loop.run_in_executor(None, agent.stopped.wait)
    log.info("shutting down", extra={"grace_period_s": settings.grace_period})
    code = await loop.run_in_executor(None, agent.shutdown)
    agent.exit_code = code
    if runner is not None:
        await runner.cleanup()


def run_agent(settings: AgentSettings) -> int:
    """Run until SIGTERM/SIGINT, end of stdin or a fatal error; return the exit code.

    Raises:
        ConfigurationError: refused at start-up (no Object Lock, bad settings).
        StorageError: the spool cannot be used.
    """
    token = read_token(settings)
    agent = build_agent(settings)
    pool = start_worker_pool(settings.ingest_workers)
    sources: list[StdinSource | TailSource] = []
    try:
        agent.start(pool)
        if settings.stdin:
            sources.append(StdinSource(agent))
        if settings.tail is not None:
            sources.append(TailSource(agent, settings.tail, settings.spool / "tail.json"))
        for source in sources:
            source.start()
        asyncio.run(_serve(agent, settings, token, pool))
    finally:
        for source in sources:
            source.stop()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return agent.exit_code
