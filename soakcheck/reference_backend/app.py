"""The ASGI app: routes, error handling, request log lines and lifespan."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .billing import create_charge, reconciliation_status, start_reconciliation
from .faults import BAD_GATEWAY_PAGE, fault_routes
from .processors import RECORDING_QUEUE
from .queues import QueueUnavailable
from .runtime import Runtime
from .settings import Settings
from .web import (
    InvalidRequest,
    bearer_token_valid,
    json_error,
    read_json_object,
    runtime_of,
    unauthorized,
)
from .webhooks import stripe_webhook

logger = logging.getLogger(__name__)

# Larger bodies are rejected with 413. Stripe events are far smaller.
MAX_BODY_BYTES = 1_048_576

# Health probes come every few seconds, so they get no request log line, as
# Node.js services set up with pino-http's autoLogging.ignore option do.
UNLOGGED_PATHS = frozenset({"/health"})


async def health(request: Request) -> Response:
    """GET /health: overall status, service flags and uptime in seconds."""
    runtime = runtime_of(request)
    faults = runtime.faults
    if faults.health_delay_ms:
        await asyncio.sleep(faults.health_delay_ms / 1000)
    if faults.invalid_health:
        return HTMLResponse(BAD_GATEWAY_PAGE, status_code=502)

    services = await runtime.service_flags()
    healthy = all(services.values())
    body = {
        "status": "ok" if healthy else "degraded",
        "services": services,
        "uptime": round(runtime.uptime_seconds, 3),
    }
    return JSONResponse(body, status_code=200 if healthy else 503)


async def queue_stats(request: Request) -> JSONResponse:
    """GET /api/monitoring/queue-stats: job counts per queue (bearer token)."""
    if not bearer_token_valid(request):
        return unauthorized()

    counts = await runtime_of(request).queues.counts()
    return JSONResponse({"queues": counts})


async def create_recording(request: Request) -> JSONResponse:
    """POST /api/recordings: queue the upload of a call recording."""
    body = await read_json_object(request, required=False)
    recording_id = body.get("recordingId", f"rec_{int(time.time() * 1000)}")
    if not isinstance(recording_id, str) or not recording_id:
        raise InvalidRequest("recordingId", "recordingId must be a non-empty string")

    job = await runtime_of(request).queues.add(
        RECORDING_QUEUE, "upload-recording", {"recordingId": recording_id}
    )
    return JSONResponse({"jobId": job.id, "recordingId": recording_id}, status_code=202)


async def invalid_request(request: Request, exc: Exception) -> Response:
    invalid = cast(InvalidRequest, exc)
    return json_error(
        400, "invalid_request", field=invalid.field, message=invalid.message
    )


async def queue_unavailable(request: Request, exc: Exception) -> Response:
    logger.error(
        "Redis unavailable during %s %s: %s",
        request.method,
        request.url.path,
        exc,
    )
    return json_error(503, "redis_unavailable", message=str(exc))


async def http_error(request: Request, exc: Exception) -> Response:
    http_exc = cast(HTTPException, exc)
    if http_exc.status_code == 404:
        return json_error(404, "not_found", path=request.url.path)
    error = str(http_exc.detail).lower().replace(" ", "_")
    return JSONResponse(
        {"error": error}, status_code=http_exc.status_code, headers=http_exc.headers
    )


async def server_error(request: Request, exc: Exception) -> Response:
    return json_error(500, "internal_error")


class RequestLogMiddleware:
    """Log one line per request, as pino-http does in a Node.js service.

    The messages and the error level follow pino-http (7.x and later): an
    exception or a 5xx status is "request errored" at level 50. A 4xx is
    logged at warn (40), a common customLogLevel choice, and the rest at
    info (30).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._request_ids = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLOGGED_PATHS:
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        status_code = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        fields: dict[str, Any] = {
            "reqId": f"req-{next(self._request_ids)}",
            "req": {"method": scope["method"], "url": scope["path"]},
        }
        try:
            await self.app(scope, receive, send_with_status)
        except Exception:
            fields["res"] = {"statusCode": 500}
            fields["responseTime"] = round((time.perf_counter() - started) * 1000, 1)
            logger.exception("request errored", extra={"fields": fields})
            raise

        fields["res"] = {"statusCode": status_code}
        fields["responseTime"] = round((time.perf_counter() - started) * 1000, 1)
        if status_code >= 500:
            logger.error("request errored", extra={"fields": fields})
        elif status_code >= 400:
            logger.warning("request completed", extra={"fields": fields})
        else:
            logger.info("request completed", extra={"fields": fields})


def create_app(settings: Settings) -> Starlette:
    """Build the reference backend's ASGI app for `settings`."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = Runtime(settings)
        app.state.runtime = runtime
        runtime.start()
        logger.info(
            "Reference backend started on http://%s:%d (redis %s, prefix %s, "
            "faults %s)",
            settings.host,
            settings.port,
            settings.redacted_redis_url,
            settings.prefix,
            "allowed" if settings.allow_faults else "off",
        )
        try:
            yield
        finally:
            logger.info("Reference backend shutting down")
            await runtime.close()
            logger.info("Reference backend shutdown complete")

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/api/monitoring/queue-stats", queue_stats, methods=["GET"]),
        Route("/api/webhooks/stripe", stripe_webhook, methods=["POST"]),
        Route("/api/billing/charges", create_charge, methods=["POST"]),
        Route("/api/billing/reconciliation", start_reconciliation, methods=["POST"]),
        Route(
            "/api/billing/reconciliation/{job_id}",
            reconciliation_status,
            methods=["GET"],
        ),
        Route("/api/recordings", create_recording, methods=["POST"]),
    ]
    if settings.allow_faults:
        routes += fault_routes()

    return Starlette(
        routes=routes,
        middleware=[Middleware(RequestLogMiddleware)],
        exception_handlers={
            InvalidRequest: invalid_request,
            QueueUnavailable: queue_unavailable,
            HTTPException: http_error,
            500: server_error,
        },
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
    )
