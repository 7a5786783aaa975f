"""The HTTP face of the agent (aiohttp): ingest, health, readiness and metrics.

``POST /v1/events`` takes NDJSON (or one JSON array) with ``Authorization:
Bearer <token>`` and answers 200 ``{"accepted", "first_seq", "last_seq"}`` only
once the events are fsync'd in the spool. Status codes: 400 bad event (the
whole request is refused; the body names the line and field), 401 bad token,
413 body over the limit (refused from Content-Length before reading when it is
sent), 503 with Retry-After when the spool is full or the agent is not ready.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from concurrent.futures import Executor
from typing import Any

from aiohttp import web

from audit_archiver.agent.pipeline import Agent
from audit_archiver.core.event import encode_request_body
from audit_archiver.errors import EventValidationError, NotReadyError, SpoolFullError

__all__ = ["build_app"]

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = "5"
_AGENT: web.AppKey[Agent] = web.AppKey("agent", Agent)
_TOKEN: web.AppKey[bytes] = web.AppKey("token", bytes)
_LIMIT: web.AppKey[int] = web.AppKey("limit", int)

_ENCODER: web.AppKey[Executor | None] = web.AppKey("encoder")


def _error(status: int, message: str, **extra: Any) -> web.Response:
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else None
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


def _authorized(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, supplied = header.partition(" ")
    if scheme.lower() != "bearer" or not supplied:
        return False
    return hmac.compare_digest(supplied.strip().encode(), request.app[_TOKEN])


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _ingest(request: web.Request) -> web.Response:
    agent = request.app[_AGENT]
    response = await _handle_ingest(request, agent)
    agent.metrics.requests.labels(str(response.status)).inc()
    return response


async def _handle_ingest(request: web.Request, agent: Agent) -> web.Response:  # noqa: PLR0911
    if not _authorized(request):
        return _error(401, "missing or wrong bearer token")
    limit = request.app[_LIMIT]
    if request.content_length is not None and request.content_length > limit:
        return _error(413, f"body over the {limit}-byte limit")
    body = await _read_limited(request, limit)
    if body is None:
        return _error(413, f"body over the {limit}-byte limit")
    loop = asyncio.get_running_loop()
    try:
        agent.check_ready()  # backpressure first: no worker time for a refused body
        events = await loop.run_in_executor(request.app[_ENCODER], encode_request_body, body)
        accepted = await asyncio.wrap_future(agent.submit(events))
    except EventValidationError as e:
        agent.metrics.events_rejected.labels("invalid").inc()
        return _error(400, str(e), line=e.line, field=e.field, reason=e.reason)
    except SpoolFullError:
        return _error(503, "spool is full; retry later")
    except NotReadyError as e:
        return _error(503, f"not ready: {e}")
    return web.json_response(
        {
            "accepted": accepted.accepted,
            "first_seq": accepted.first_seq,
            "last_seq": accepted.last_seq,
        }
    )


async def _healthz(request: web.Request) -> web.Response:
    agent = request.app[_AGENT]
    if agent.fatal_error is not None:
        return web.json_response({"status": "failed"}, status=500)
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    reason = request.app[_AGENT].readiness()
    if reason is not None:
        return _error(503, reason)
    return web.json_response({"status": "ready"})


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[_AGENT].metrics.render()
    return web.Response(
        body=body,
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def build_app(
    agent: Agent, token: bytes, max_body_bytes: int, encoder: Executor | None = None
) -> web.Application:
    """Build the aiohttp application serving ``agent``.

    ``encoder`` runs the parsing, validation and encoding of request bodies (a
    process pool uses every core; None: the event loop's default thread pool).
    """
    app = web.Application(client_max_size=max_body_bytes + 1)
    app[_AGENT] = agent
    app[_TOKEN] = token
    app[_LIMIT] = max_body_bytes
    app[_ENCODER] = encoder
    app.router.add_post("/v1/events", _ingest)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app
