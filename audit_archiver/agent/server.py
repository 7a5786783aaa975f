"""The HTTP face of the agent (aiohttp): ingest, health, readiness and metrics.

Ingest endpoints (:data:`INGEST_ROUTES`), one per body format
(:mod:`audit_archiver.core.formats`): ``POST /v1/events`` (the archiver's own
events), ``/v1/ingest/k8s-audit``, ``/v1/ingest/cloudtrail``,
``/v1/ingest/gcp-audit`` and ``/v1/logs`` (OTLP/HTTP). Every one has the same
auth, limits and durability, and answers 200 ``{"accepted", "first_seq",
"last_seq"}`` only once the events are fsync'd in the spool (``/v1/logs``: an
``ExportLogsServiceResponse`` in the request's content type). Formats whose
items carry a producer id pass the dedupe window first
(:mod:`audit_archiver.agent.dedupe`): the answer then adds ``deduplicated``,
the items of the request that were archived before (they count in
``accepted``; ``first_seq``/``last_seq`` cover the events archived now, null
when there are none).

Bodies may carry a ``Content-Encoding`` (:mod:`audit_archiver.agent.encodings`):
decoded in the worker, the decoded size bounded by ``--max-body-bytes`` (413);
any other coding is 415, decided from the header before the body is read.

Status codes: 400 bad event (the whole request is refused; the body
names the line and field), a body not valid in its coding, or bad HTTP, 401 missing, malformed or wrong
credentials (see :mod:`audit_archiver.agent.auth`), 404/405 unknown path or
method, 408 a body that stalls for the idle timeout or arrives slower than
:data:`MIN_BODY_RATE` on average after a grace of ``--header-timeout`` (so a
trickling client holds its share of the body budget for at most
``max(grace, size / rate)``), 413 body over the limit
(refused from Content-Length before reading when it is sent; a coded body's
decoded size counts too; its encoded events over :data:`OUTPUT_RATIO` times
the bytes it reserved), 415 an unknown Content-Encoding (or, on ``/v1/logs``,
a content type other than protobuf or JSON), 503 with
Retry-After when the spool is full, the agent is not ready, or the request
waited the idle timeout for room in the body budget (``--max-inflight-bytes``,
see :mod:`audit_archiver.agent.admission`).

Every error body is JSON ``{"error": ...}`` (on ``/v1/logs``, a
``google.rpc.Status`` in the request's encoding, as OTLP/HTTP requires; JSON
unless the request was protobuf), whoever produced the error: the
handlers, aiohttp's router (a middleware) or aiohttp's HTTP parser
(:class:`JsonErrorRequestHandler`). A handler exception is logged as JSON and
answered 500 ``{"error": "internal error"}`` without details.

``Expect``: on every route, ``100-continue`` is answered only by an ingest
handler, once the credentials, the headers and the Content-Length are checked
and the body's bytes are reserved (so a refused client never sends its body);
any other expectation is a JSON 417 that does not echo it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status

from audit_archiver.agent.admission import BodyBudget
from audit_archiver.agent.auth import TokenSet
from audit_archiver.agent.dedupe import DedupeWindow, select_events
from audit_archiver.agent.encodings import (
    BodyDecodingError,
    BodyTask,
    DecodedBodyTooLargeError,
    UnsupportedEncodingError,
    decode_and_encode,
    parse_content_encoding,
)
from audit_archiver.agent.ingest import Accepted
from audit_archiver.agent.listener import (
    client_certificate_name,
    request_finished,
    request_started,
)
from audit_archiver.agent.pipeline import Agent
from audit_archiver.core.formats import DEFAULT_OPTIONS, FORMATS, EncodedBatch, FormatOptions
from audit_archiver.core.formats.otlp import JSON_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE, is_json
from audit_archiver.core.line import EncodedEvents
from audit_archiver.errors import (
    AuthenticationError,
    EventValidationError,
    NotReadyError,
    SpoolFullError,
)

__all__ = [
    "INGEST_ROUTES",
    "LOCAL_CLIENT",
    "ClientAuth",
    "JsonErrorRequestHandler",
    "build_app",
    "request_handler_factory",
]

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = "5"
LOCAL_CLIENT = "local"
"""The client name on a Unix socket without tokens (file permissions are the auth)."""
_CHALLENGE = 'Bearer realm="audit-archiver", Basic realm="audit-archiver"'
INGEST_ROUTES: dict[str, str] = {
    "/v1/events": "events",
    "/v1/ingest/k8s-audit": "k8s-audit",
    "/v1/ingest/cloudtrail": "cloudtrail",
    "/v1/ingest/gcp-audit": "gcp-audit",
    "/v1/logs": "otlp",
}
"""POST path -> the body format it takes (a key of :data:`~audit_archiver.core.formats.FORMATS`)."""
_OTLP = "otlp"
_GRPC_CODES = {400: 3, 401: 16, 408: 4, 413: 8, 415: 3, 417: 3, 500: 13, 503: 14}
"""HTTP status -> google.rpc.Code for OTLP failure bodies (INVALID_ARGUMENT,
UNAUTHENTICATED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE)."""
MIN_BODY_RATE = 64 << 10
"""Bytes per second a request body must average once its grace period is over."""
OUTPUT_RATIO = 3
"""A request's encoded events may be at most this many times the body bytes it
reserved (413 beyond): the canonical form of a number can be longer than sent
(``1e15`` is encoded ``1000000000000000.0``) and the native formats keep the
producer's record whole beside the mapped fields (1.7-2.3 times the body). A
request reserves this many times its body in the budget, so the budget bounds
the encoded events too."""


@dataclass(frozen=True)
class ClientAuth:
    """How ingest clients prove who they are.

    ``tokens``: a token is required (and names the client). ``certificates``:
    TLS already required a client certificate; without tokens its subject CN
    names the client. Neither: only for a Unix socket, every client is
    :data:`LOCAL_CLIENT`.
    """

    tokens: TokenSet | None = None
    certificates: bool = False

    def identify(self, request: web.BaseRequest) -> str:
        """Return the client name for ``request``.

        Raises:
            AuthenticationError: missing, malformed or wrong credentials.
        """
        if self.tokens is not None:
            values = [v for k, v in request.raw_headers if k.lower() == b"authorization"]
            return self.tokens.authenticate(values)
        if self.certificates:
            name = client_certificate_name(request.transport)
            if name is None:
                raise AuthenticationError("no client certificate with a subject CN")
            return name
        return LOCAL_CLIENT


_AGENT: web.AppKey[Agent] = web.AppKey("agent", Agent)
_AUTH: web.AppKey[ClientAuth] = web.AppKey("auth", ClientAuth)
_LIMIT: web.AppKey[int] = web.AppKey("limit", int)
_STALL: web.AppKey[float] = web.AppKey("stall", float)
_GRACE: web.AppKey[float] = web.AppKey("body_grace", float)
_RATE: web.AppKey[int] = web.AppKey("body_min_rate", int)
_SEEN: web.AppKey[set[str]] = web.AppKey("seen_clients")
_ENCODER: web.AppKey[Executor | None] = web.AppKey("encoder")
_BUDGET: web.AppKey[BodyBudget] = web.AppKey("body_budget", BodyBudget)
_OPTIONS: web.AppKey[FormatOptions] = web.AppKey("format_options", FormatOptions)
_DEDUPE: web.AppKey[DedupeWindow] = web.AppKey("dedupe", DedupeWindow)


def error_response(status: int, message: str, **extra: Any) -> web.Response:
    """A JSON error answer ``{"error": message, ...}`` (503 adds Retry-After)."""
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else None
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


def otlp_error_response(status: int, message: str, content_type: str | None) -> web.Response:
    """An OTLP/HTTP failure answer: a ``google.rpc.Status`` in the request's
    encoding (protobuf, or JSON for ``application/json``); 503 adds Retry-After."""
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else None
    answer = Status(code=_GRPC_CODES.get(status, 2), message=message)
    if is_json(content_type):
        body = json_format.MessageToJson(answer, indent=None).encode()
        return web.Response(
            body=body, status=status, content_type=JSON_CONTENT_TYPE, headers=headers
        )
    return web.Response(
        body=answer.SerializeToString(),
        status=status,
        content_type=PROTOBUF_CONTENT_TYPE,
        headers=headers,
    )


def _status_text(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"


class _StalledBodyError(Exception):
    pass


async def _read_limited(
    request: web.Request, limit: int, stall: float, expected: int | None
) -> bytes | None:
    """The body, or None when it is over ``limit`` bytes.

    Read into one buffer: of the announced ``expected`` size when the client
    sent a Content-Length (aiohttp ends the body there), else one growing up
    to ``limit``; no list of chunks and no joined copy beside it. The bytes
    returned are the buffer's one copy (the buffer is dropped at once).

    Raises:
        _StalledBodyError: no byte for ``stall`` seconds, or fewer than
            ``(elapsed - grace) x rate`` bytes received (the app's body grace
            and minimum rate).
    """
    loop = asyncio.get_running_loop()
    grace = request.app[_GRACE]
    rate = request.app[_RATE]
    started = loop.time()
    buffer = bytearray(expected or 0)
    size = 0
    while True:
        # the next byte must come before the average falls under the rate
        due = started + grace + size / rate - loop.time()
        try:
            async with asyncio.timeout(min(stall, max(due, 0.0))):
                chunk = await request.content.readany()
        except TimeoutError as e:
            raise _StalledBodyError from e
        if not chunk:
            break
        end = size + len(chunk)
        if end > limit:
            return None
        if end <= len(buffer):
            buffer[size:end] = chunk
        else:
            del buffer[size:]
            buffer += chunk
        size = end
    del buffer[size:]
    return bytes(buffer)


class _RefusedError(Exception):
    """An ingest request refused with ``status`` (and the JSON error's extra fields)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def _ingest_handler(format_name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def ingest(request: web.Request) -> web.Response:
        agent = request.app[_AGENT]
        try:
            response = await _handle_ingest(request, agent, format_name)
        except _RefusedError as e:
            if format_name == _OTLP:
                response = otlp_error_response(e.status, e.message, request.content_type)
            else:
                response = error_response(e.status, e.message, **e.extra)
            if e.status == 401:
                response.headers["WWW-Authenticate"] = _CHALLENGE
            if e.status == 408:
                response.force_close()
        agent.metrics.requests.labels(str(response.status)).inc()
        return response

    return ingest


def _authenticate(request: web.Request, agent: Agent) -> str:
    client = request.app[_AUTH].identify(request)
    agent.metrics.requests_by_client.labels(client).inc()
    seen = request.app[_SEEN]
    if client not in seen:
        seen.add(client)
        log.info("first request from a client", extra={"client": client})
    return client


def _check_headers(request: web.Request, format_name: str) -> str | None:
    """The body's coding, from the headers alone (before a byte of the body is read).

    Raises:
        _RefusedError: 415 unknown coding or (OTLP) content type; 413 over the limit.
    """
    try:
        coding = parse_content_encoding(request.headers.get("Content-Encoding"))
    except UnsupportedEncodingError as e:
        raise _RefusedError(415, str(e)) from e
    if format_name == _OTLP and request.content_type not in (
        PROTOBUF_CONTENT_TYPE,
        JSON_CONTENT_TYPE,
        "application/octet-stream",  # aiohttp's name for "no Content-Type"
    ):
        raise _RefusedError(
            415, f"Content-Type must be {PROTOBUF_CONTENT_TYPE} or {JSON_CONTENT_TYPE}"
        )
    limit = request.app[_LIMIT]
    if request.content_length is not None and request.content_length > limit:
        raise _RefusedError(413, f"body over the {limit}-byte limit")
    return coding


async def _handle_ingest(request: web.Request, agent: Agent, format_name: str) -> web.Response:
    try:
        client = _authenticate(request, agent)
    except AuthenticationError as e:
        log.warning(
            "unauthorized request",
            extra={"reason": str(e), "remote": request.remote, "rate_limit": True},
        )
        raise _RefusedError(401, f"unauthorized: {e}") from e
    coding = _check_headers(request, format_name)
    limit = request.app[_LIMIT]
    # A coded body is reserved at the limit: its decoded size (and so its
    # encoded events, held here while they are committed) is known only later.
    body_bytes = (
        limit if coding is not None or request.content_length is None else request.content_length
    )
    # the body, then its encoded events (at most OUTPUT_RATIO x the body): one
    # reservation covers whichever is held
    reserved = OUTPUT_RATIO * max(body_bytes, 1)
    budget = request.app[_BUDGET]
    if not budget.try_reserve(reserved):
        agent.metrics.body_admission.labels("waited").inc()
        if not await budget.reserve(reserved, request.app[_STALL]):
            agent.metrics.body_admission.labels("refused").inc()
            raise _RefusedError(503, "too many request bytes in flight; retry later")
    agent.metrics.inflight_body_bytes.set(budget.used)
    try:
        if _expects_continue(request):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the answer has not started
        return await _admitted(
            request,
            agent,
            client,
            BodyTask(
                format_name,
                b"",
                coding,
                request.content_type,
                limit,
                request.app[_OPTIONS],
                reserved,
            ),
        )
    finally:
        budget.release(reserved)
        agent.metrics.inflight_body_bytes.set(budget.used)


def _expects_continue(request: web.BaseRequest) -> bool:
    expect = request.headers.get("Expect")
    return (
        expect is not None
        and request.version >= (1, 1)
        and expect.strip().lower() == "100-continue"
    )


def _expectation_failed(request: web.BaseRequest) -> web.StreamResponse | None:
    """A JSON 417 for an ``Expect`` other than ``100-continue`` (never echoed), else None."""
    if "Expect" not in request.headers or request.version < (1, 1):
        return None
    if _expects_continue(request):
        return None
    response = error_response(417, "only 'Expect: 100-continue' is supported")
    response.force_close()  # the body, if any, is not read
    return response


async def _expect(request: web.Request) -> web.StreamResponse | None:
    """aiohttp's ``Expect`` hook on every route, before the handler: never
    answers 100 itself (the ingest handler does, after its checks)."""
    return _expectation_failed(request)


async def _encode(request: web.Request, agent: Agent, task: BodyTask) -> EncodedBatch:
    """Read the body and have a worker decode, map and encode it.

    Raises:
        _RefusedError: 408 stalled, 413 too large (sent or decoded), 400 bad body.
        NotReadyError, SpoolFullError: not accepting now.
    """
    try:
        body = await _read_limited(request, task.limit, request.app[_STALL], request.content_length)
    except _StalledBodyError as e:
        raise _RefusedError(
            408, "the request body stalled or arrived too slowly; send it without pauses"
        ) from e
    if body is None:
        raise _RefusedError(413, f"body over the {task.limit}-byte limit")
    if task.format_name == _OTLP and request.content_type == "application/octet-stream":
        task = task._replace(content_type=PROTOBUF_CONTENT_TYPE)
    agent.check_ready()  # backpressure first: no worker time for a refused body
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(
            request.app[_ENCODER], decode_and_encode, task._replace(body=body)
        )
    except EventValidationError as e:
        if e.kind == "too_large" and e.line is None:  # the encoded events, not one event
            agent.metrics.events_rejected.labels("http", "too_large").inc()
            raise _RefusedError(413, str(e)) from e
        agent.metrics.events_rejected.labels("http", "invalid").inc()
        raise _RefusedError(400, str(e), line=e.line, field=e.field, reason=e.reason) from e
    except BodyDecodingError as e:
        agent.metrics.events_rejected.labels("http", "bad_encoding").inc()
        raise _RefusedError(400, str(e)) from e
    except DecodedBodyTooLargeError as e:
        agent.metrics.events_rejected.labels("http", "too_large").inc()
        raise _RefusedError(413, str(e)) from e


async def _commit_new(
    request: web.Request, agent: Agent, format_name: str, batch: EncodedBatch
) -> tuple[Accepted, int]:
    """Commit the batch's events that the dedupe window has not seen; return
    the answer and how many were left out as already archived."""
    if not FORMATS[format_name].dedupe:
        return await _commit(agent, batch.events), 0
    window = request.app[_DEDUPE]
    deadline = asyncio.get_running_loop().time() + request.app[_STALL]
    while (claim := window.claim(format_name, batch.dedupe_keys)).busy:
        for busy in claim.busy:  # a resend while the first copy is being committed
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or not await asyncio.to_thread(busy.wait, remaining):
                raise _RefusedError(503, "a copy of this batch is being committed; retry later")
    duplicates = batch.events.event_count - len(claim.fresh)
    if duplicates:
        agent.metrics.events_deduplicated.labels(format_name).inc(duplicates)
    events = select_events(batch.events, claim.fresh)
    if not events.event_count:
        window.release(claim)
        return Accepted(0, None, None), duplicates
    try:
        future = agent.submit(events)
    except BaseException:
        window.release(claim)
        raise
    future.add_done_callback(
        lambda done: (
            window.commit(claim)
            if not done.cancelled() and done.exception() is None
            else window.release(claim)
        )
    )
    return await asyncio.wrap_future(future), duplicates


async def _commit(agent: Agent, events: EncodedEvents) -> Accepted:
    if not events.event_count:
        return Accepted(0, None, None)
    return await asyncio.wrap_future(agent.submit(events))


async def _admitted(
    request: web.Request, agent: Agent, client: str, task: BodyTask
) -> web.Response:
    """Read, encode and commit a body whose bytes are reserved in the budget."""
    try:
        batch = await _encode(request, agent, task)
        accepted, duplicates = await _commit_new(request, agent, task.format_name, batch)
    except SpoolFullError as e:
        raise _RefusedError(503, "spool is full; retry later") from e
    except NotReadyError as e:
        raise _RefusedError(503, f"not ready: {e}") from e
    total = batch.events.event_count
    log.debug(
        "events accepted",
        extra={
            "client": client,
            "format": task.format_name,
            "accepted": total,
            "deduplicated": duplicates,
            "first_seq": accepted.first_seq,
        },
    )
    if batch.response is not None:
        return web.Response(body=batch.response, content_type=batch.response_content_type)
    answer: dict[str, Any] = {
        "accepted": total,
        "first_seq": accepted.first_seq,
        "last_seq": accepted.last_seq,
    }
    if FORMATS[task.format_name].dedupe:
        answer["deduplicated"] = duplicates
    return web.json_response(answer)


async def _healthz(request: web.Request) -> web.Response:
    agent = request.app[_AGENT]
    if agent.fatal_error is not None:
        return web.json_response({"status": "failed"}, status=500)
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    agent = request.app[_AGENT]
    reason = agent.readiness()
    if reason is not None:
        return error_response(503, reason)
    return web.json_response({"status": "ready", "alerts": agent.alerts()})


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[_AGENT].metrics.render()
    return web.Response(
        body=body,
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    request_started(request.transport)
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        headers = {k: v for k, v in e.headers.items() if k.lower() in ("allow", "retry-after")}
        response = error_response(e.status, _status_text(e.status))
        response.headers.update(headers)
        return response
    except Exception:
        log.exception("request handler failed", extra={"method": request.method})
        return error_response(500, "internal error")
    finally:
        request_finished(request.transport)


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler with JSON bodies for the errors it makes itself.

    The HTTP parser's 400s (bad request line, bad header, line too long) and a
    500 escaping the application get ``{"error": ...}``; nothing of the request
    is echoed and no traceback is sent.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        handler = self._request_handler
        assert handler is not None

        async def checked(request: BaseRequest) -> web.StreamResponse:
            # before aiohttp's router: its own Expect hook (unknown paths) raises
            # on a non-ASCII value and echoes the header
            failed = _expectation_failed(request)
            if failed is not None:
                request_started(request.transport)
                request_finished(request.transport)
                return failed
            return await handler(request)

        self._request_handler = checked

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Return a JSON error answer and close the connection afterwards."""
        del message  # may quote the client's bytes
        if status >= 500:
            log.error(
                "HTTP error",
                extra={"status": status, "error_type": type(exc).__name__, "rate_limit": True},
            )
        else:
            log.info(
                "bad HTTP request",
                extra={"status": status, "error_type": type(exc).__name__, "rate_limit": True},
            )
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error answer")
        text = "internal error" if status == 500 else _status_text(status)
        response = error_response(status, text)
        response.force_close()
        return response


def request_handler_factory(
    server: web.Server, idle_timeout: float
) -> Callable[[], RequestHandler]:
    """The per-connection protocol factory for ``server`` (an AppRunner's)."""
    loop = asyncio.get_running_loop()
    # Content-Encoding is decoded by the handlers (bounded, in the workers), never
    # by aiohttp's parser (unbounded, on the event loop).
    options: dict[str, Any] = {"access_log": None, "auto_decompress": False}

    def make() -> RequestHandler:
        return JsonErrorRequestHandler(server, loop=loop, keepalive_timeout=idle_timeout, **options)

    return make


def build_app(
    agent: Agent,
    auth: ClientAuth,
    max_body_bytes: int,
    encoder: Executor | None = None,
    *,
    stall_timeout: float = 60.0,
    body_grace: float = 10.0,
    body_min_rate: int = MIN_BODY_RATE,
    max_inflight_bytes: int | None = None,
    format_options: FormatOptions = DEFAULT_OPTIONS,
    dedupe: DedupeWindow | None = None,
) -> web.Application:
    """Build the aiohttp application serving ``agent``.

    ``encoder`` runs the parsing, validation and encoding of request bodies (a
    process pool uses every core; None: the event loop's default thread pool).
    ``stall_timeout``: seconds a request body may go without a byte (408), and
    that a request may wait for the body budget (503).
    ``body_grace``, ``body_min_rate``: a body must have sent
    ``(elapsed - body_grace) x body_min_rate`` bytes at any moment (408);
    pass ``--header-timeout`` as the grace.
    ``max_inflight_bytes``: the body budget (:mod:`~audit_archiver.agent.admission`);
    None: the agent's settings (``--max-inflight-bytes``).
    ``format_options``: the OTLP field choices (``--otlp-actor-attribute``...).
    ``dedupe``: the window of producer ids (None: a new one with the default bounds).
    """
    budget = max_inflight_bytes or agent.settings.body_budget_bytes()
    app = web.Application(client_max_size=max_body_bytes + 1, middlewares=[_json_errors])
    app[_AGENT] = agent
    app[_AUTH] = auth
    app[_LIMIT] = max_body_bytes
    app[_STALL] = stall_timeout
    app[_GRACE] = body_grace
    app[_RATE] = body_min_rate
    app[_SEEN] = set()
    app[_ENCODER] = encoder
    app[_BUDGET] = BodyBudget(OUTPUT_RATIO * max(budget, max_body_bytes))
    app[_OPTIONS] = format_options
    app[_DEDUPE] = dedupe or DedupeWindow()
    for path, format_name in INGEST_ROUTES.items():
        app.router.add_post(path, _ingest_handler(format_name), expect_handler=_expect)
    app.router.add_get("/healthz", _healthz, expect_handler=_expect)
    app.router.add_get("/readyz", _readyz, expect_handler=_expect)
    app.router.add_get("/metrics", _metrics, expect_handler=_expect)
    return app
