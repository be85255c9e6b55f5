"""Request helpers shared by the routes: JSON errors, bearer auth, bodies."""

from __future__ import annotations

import hmac
import json
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import JSONResponse

from .runtime import Runtime


class InvalidRequest(Exception):
    """A request body or field that the route cannot accept (HTTP 400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def runtime_of(request: Request) -> Runtime:
    """Return the Runtime that the lifespan stored on the app."""
    return cast(Runtime, request.app.state.runtime)


def json_error(status_code: int, error: str, **fields: Any) -> JSONResponse:
    """Build a JSON error response `{"error": ..., **fields}`."""
    return JSONResponse({"error": error, **fields}, status_code=status_code)


def bearer_token_valid(request: Request) -> bool:
    """True when the Authorization header carries the monitoring token."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False

    expected = runtime_of(request).settings.monitoring_token
    return hmac.compare_digest(token.strip().encode(), expected.encode())


def unauthorized() -> JSONResponse:
    """Build the 401 response for a missing or wrong bearer token."""
    response = json_error(
        401,
        "unauthorized",
        message="missing or invalid bearer token in the Authorization header",
    )
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def read_json_object(request: Request, *, required: bool) -> dict[str, Any]:
    """Parse the body as a JSON object; an empty body is {} unless required."""
    body = await request.body()
    if not body.strip():
        if required:
            raise InvalidRequest("body", "request body must be a JSON object")
        return {}

    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest("body", f"request body is not valid JSON: {exc}") from exc

    if not isinstance(value, dict):
        raise InvalidRequest(
            "body", f"request body must be a JSON object, got {type(value).__name__}"
        )
    return value
