"""The Stripe webhook exchange: deliver an event, watch it processed, resend it.

The exchange returns facts only; the tests in tests/p0/ judge them. The
evidence of processing is the BullMQ job whose id is the event id (the
usual way a backend lets BullMQ drop a repeated delivery) and the lines
that name the event in the backend's log.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soakcheck.config import Target
from soakcheck.p0.bullmq_jobs import JobStatus, read_job_status
from soakcheck.p0.log_follow import LogFollower, event_line_pattern
from soakcheck.p0.secret import Secret
from soakcheck.p0.stripe_event import build_event, serialize
from soakcheck.p0.stripe_webhook import Delivery, deliver
from soakcheck.p0.waiting import poll
from soakcheck.probes.errors import ProbeError
from soakcheck.probes.redis_info import connect

log = logging.getLogger(__name__)


@dataclass
class Evidence:
    """The signs of processing in the queue and the log files at one moment."""

    job: JobStatus | None = None
    job_error: str | None = None
    log_lines: list[str] | None = None
    missing_logs: list[Path] = field(default_factory=list)
    waited_s: float = 0.0

    @property
    def log_count(self) -> int | None:
        return None if self.log_lines is None else len(self.log_lines)

    def settled(self) -> bool:
        """Return whether every configured source shows the event processed."""
        job_done = self.job_error is None and (self.job is None or self.job.finished)
        log_done = self.log_lines is None or len(self.log_lines) >= 1
        return job_done and log_done


@dataclass
class WebhookExchange:
    """A delivery of one test event, its processing and a repeated delivery."""

    url: str
    event: dict[str, Any]
    first: Delivery
    processed: Evidence | None = None
    resend: Delivery | None = None
    after_resend: Evidence | None = None

    @property
    def event_id(self) -> str:
        return str(self.event["id"])


class ProcessingWatcher:
    """Watch the job queue and the log files for signs that one event ran."""

    def __init__(self, target: Target, event_id: str) -> None:
        p0 = target.p0
        self.target = target
        self.event_id = event_id
        self.pattern: re.Pattern[str] | None = None
        self.follower: LogFollower | None = None
        self.matched: list[str] = []
        self.client: Any = None
        self.client_error: str | None = None

        # The mark is set now, before the delivery, so no line is missed.
        if p0.processed_log_pattern and target.logs.files:
            self.pattern = event_line_pattern(p0.processed_log_pattern, event_id)
            self.follower = LogFollower(list(target.logs.files))
        if p0.webhook_queue:
            redis = target.redis
            password = target.secret(redis.password_env)
            try:
                self.client = connect(redis.url, password, redis.timeout)
            except ProbeError as error:
                self.client_error = str(error)

    def look(self) -> Evidence:
        """Read what the queue and the logs show right now."""
        evidence = Evidence()
        if self.follower is not None and self.pattern is not None:
            lines = self.follower.new_lines()
            self.matched += [line for line in lines if self.pattern.search(line)]
            evidence.log_lines = list(self.matched)
            evidence.missing_logs = self.follower.missing_paths()

        queue = self.target.p0.webhook_queue
        if queue and self.client_error is not None:
            evidence.job_error = self.client_error
        elif queue:
            prefix = self.target.redis.prefix
            try:
                evidence.job = read_job_status(
                    self.client, prefix, queue, self.event_id
                )
            except ProbeError as error:
                evidence.job_error = str(error)
        return evidence

    def wait_processed(self, timeout_s: float) -> Evidence:
        """Wait until every source shows the event processed, or time out."""
        started = time.monotonic()
        evidence = poll(self.look, Evidence.settled, timeout_s=timeout_s)
        evidence.waited_s = time.monotonic() - started
        return evidence

    def wait_for_repeat(self, wait_s: float) -> Evidence:
        """Watch for a second processing of the event for `wait_s` seconds.

        Only the log can show a second run: BullMQ keeps one job per id, so
        a repeat runs under another id or none.
        """
        started = time.monotonic()
        if self.follower is None:
            evidence = self.look()
        else:
            evidence = poll(
                self.look,
                lambda seen: (seen.log_count or 0) > 1,
                timeout_s=wait_s,
            )
        evidence.waited_s = time.monotonic() - started
        return evidence

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def run_exchange(target: Target, secret: Secret) -> WebhookExchange:
    """Deliver a fresh signed event, wait for it to run, then deliver it again."""
    p0 = target.p0
    url = target.backend.base_url + p0.stripe_webhook_path
    timeout_s = target.backend.timeout
    now = int(time.time())
    event = build_event(p0.stripe_event_type, p0.stripe_customer_id, now)
    payload = serialize(event)

    watcher = ProcessingWatcher(target, event["id"])
    try:
        first = deliver(url, payload, event["id"], secret, timeout_s=timeout_s)
        exchange = WebhookExchange(url, event, first)
        if not first.response.ok:
            return exchange

        exchange.processed = watcher.wait_processed(p0.processing_timeout)

        # Stripe signs each delivery attempt anew, with the time of that attempt.
        exchange.resend = deliver(
            url, payload, event["id"], secret, timeout_s=timeout_s
        )
        # A repeat takes about as long as the first run did, so wait at least
        # twice that before calling the event processed once.
        wait_s = max(p0.duplicate_wait, 2 * exchange.processed.waited_s)
        exchange.after_resend = watcher.wait_for_repeat(
            min(wait_s, p0.processing_timeout)
        )
        return exchange
    finally:
        watcher.close()
