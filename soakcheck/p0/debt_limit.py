"""The debt-limit requests: one charge over the limit, one control charge under it."""

from __future__ import annotations

import json
import logging

from soakcheck.config import Target
from soakcheck.p0.client import HttpResponse, request
from soakcheck.probes.errors import ProbeError

log = logging.getLogger(__name__)


def send_charge(target: Target, body: dict[str, object]) -> HttpResponse:
    """POST one charge request to the debt-limit path and return the response."""
    p0 = target.p0
    url = target.backend.base_url + p0.debt_limit_path
    headers = {"Content-Type": "application/json"}
    if p0.debt_limit_token_env:
        token = target.secret(p0.debt_limit_token_env)
        if token is None:
            raise ProbeError(
                f"{p0.debt_limit_token_env} is not set: the charge request needs "
                f"its bearer token; set it in the environment or in the .env file "
                f"named by env_file"
            )
        headers["Authorization"] = f"Bearer {token}"

    content = json.dumps(body).encode("utf-8")
    response = request(
        "POST", url, timeout_s=target.backend.timeout, content=content, headers=headers
    )
    log.info("debt-limit request sent url=%s status=%d", url, response.status)
    return response


def explain_status(response: HttpResponse) -> str:
    """Say what an unexpected response to the over-limit charge means."""
    if response.ok:
        return "the backend accepted it, so the debt limit is not enforced"
    if response.status in (401, 403):
        return (
            "the request was not authorised; set p0.debt_limit_token_env to the "
            "variable that holds its bearer token"
        )
    if response.status == 404:
        return "no route at that URL; check p0.debt_limit_path in the target file"
    if response.status in (400, 422):
        return (
            "the backend found the request invalid instead of applying the limit; "
            "check p0.debt_limit_over in the target file"
        )
    if response.status >= 500:
        return "the backend failed; see its log"
    return (
        f"set p0.debt_limit_status = {response.status} if that is the backend's "
        f"debt-limit status"
    )
