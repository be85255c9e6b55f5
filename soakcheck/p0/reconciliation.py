"""Trigger a reconciliation run and wait, bounded, until its job finishes.

The run is started over HTTP (the backend's trigger endpoint, which returns
the job id) or, with `reconciliation_trigger = "queue"`, by adding a job to
the reconciliation's BullMQ queue as a scheduler would.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from soakcheck.config import Target
from soakcheck.p0.bullmq_jobs import FINAL_STATES, add_job, read_job_status
from soakcheck.p0.client import HttpResponse, cut, request
from soakcheck.p0.waiting import PollingStopped, poll
from soakcheck.probes.errors import ProbeError
from soakcheck.probes.redis_info import connect

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5


@dataclass
class JobReport:
    """The state of the reconciliation job at one moment."""

    state: str
    failed_reason: str | None = None
    result: Any = None

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


@dataclass
class ReconciliationRun:
    """A triggered run: how it was started, its job id and where it ended."""

    trigger: str
    job_id: str
    report: JobReport
    waited_s: float


def run_reconciliation(target: Target) -> ReconciliationRun:
    """Start a reconciliation run and wait for its job, up to the timeout.

    Raises ProbeError when the run cannot be started or its state not read.
    """
    p0, redis = target.p0, target.redis
    if p0.reconciliation_trigger == "queue":
        trigger = f"BullMQ job in queue {p0.reconciliation_queue}"
        job_id = _add_to_queue(target)
        client = connect(redis.url, target.secret(redis.password_env), redis.timeout)
        try:
            report, waited_s = _wait(target, _queue_reader(target, client, job_id))
        finally:
            client.close()
    else:
        token = _token(target)
        url = target.backend.base_url + p0.reconciliation_path
        trigger = f"POST {url}"
        job_id = _start_over_http(target, url, token)
        report, waited_s = _wait(target, _http_reader(target, job_id, token))

    log.info(
        "reconciliation run job=%s state=%s waited_s=%.1f",
        job_id,
        report.state,
        waited_s,
    )
    return ReconciliationRun(trigger, job_id, report, waited_s)


def _wait(target: Target, read: Callable[[], JobReport]) -> tuple[JobReport, float]:
    started = time.monotonic()
    report = poll(
        read,
        lambda seen: seen.finished,
        timeout_s=target.p0.reconciliation_timeout,
        interval_s=POLL_INTERVAL_S,
    )
    return report, time.monotonic() - started


def _token(target: Target) -> str:
    variable = target.p0.reconciliation_token_env
    token = target.secret(variable)
    if token is None:
        raise ProbeError(
            f"{variable} is not set: the reconciliation endpoint needs the bearer "
            f"token; set it in the environment or in the .env file named by env_file"
        )
    return token


def _start_over_http(target: Target, url: str, token: str) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    response = request("POST", url, timeout_s=target.backend.timeout, headers=headers)
    _raise_for_status(response, target.p0.reconciliation_token_env)

    body = response.json()
    job_id = body.get("jobId", body.get("id")) if isinstance(body, dict) else None
    if job_id is None:
        raise ProbeError(
            f"POST {url} returned no job id (expected JSON with 'jobId'): "
            f"{cut(response.body) or '(empty body)'}"
        )
    return str(job_id)


def _http_reader(target: Target, job_id: str, token: str) -> Callable[[], JobReport]:
    p0 = target.p0
    path = p0.reconciliation_status_path.replace("{job_id}", job_id)
    url = target.backend.base_url + path
    headers = {"Authorization": f"Bearer {token}"}

    def read() -> JobReport:
        response = request(
            "GET", url, timeout_s=target.backend.timeout, headers=headers
        )
        _raise_for_status(response, p0.reconciliation_token_env)
        body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("state"), str):
            raise ProbeError(
                f"GET {url} returned no job state (expected JSON with 'state'): "
                f"{cut(response.body) or '(empty body)'}"
            )
        return JobReport(body["state"], body.get("failedReason"), body.get("result"))

    return read


def _raise_for_status(response: HttpResponse, token_env: str) -> None:
    if response.ok:
        return
    if response.status in (401, 403):
        raise PollingStopped(f"{response.summary()}; check {token_env}")
    if response.status == 404:
        raise PollingStopped(
            f"{response.summary()}; check p0.reconciliation_path and "
            f"p0.reconciliation_status_path"
        )
    # Other statuses (a 503 during a deploy) may pass, so polling goes on.
    raise ProbeError(response.summary())


def _add_to_queue(target: Target) -> str:
    p0, redis = target.p0, target.redis
    data = {
        "trigger": "manual",
        "requestedBy": "soakcheck",
        "requestedAt": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return add_job(
        redis.url,
        target.secret(redis.password_env),
        redis.prefix,
        p0.reconciliation_queue,
        p0.reconciliation_job_name,
        data,
        timeout_s=redis.timeout,
    )


def _queue_reader(target: Target, client: Any, job_id: str) -> Callable[[], JobReport]:
    p0, redis = target.p0, target.redis

    def read() -> JobReport:
        status = read_job_status(client, redis.prefix, p0.reconciliation_queue, job_id)
        return JobReport(status.state, status.failed_reason, status.return_value)

    return read
