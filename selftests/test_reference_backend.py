"""Self-tests of the reference backend and the helpers that start services.

Everything runs for real on loopback: a throwaway redis-server, the backend
as a subprocess serving HTTP, and BullMQ workers inside it.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis
import stripe
from redis.backoff import NoBackoff
from redis.retry import Retry

from soakcheck.reference_backend.settings import settings_from_args
from soakcheck.services import RedisServer, ReferenceBackend, free_port

TOKEN = "selftest-monitoring-token"
SECRET = "whsec_selftest_signing_secret"
PREFIX = "bull"
WEBHOOK_QUEUE = "webhook-processing"
RECONCILIATION_QUEUE = "billing-reconciliation"
DEBT_LIMIT_CENTS = 10_000
# Short stalled-check interval, so one test can wait out several checks.
STALLED_INTERVAL_SECONDS = 0.5
MB = 2**20
# redis-py retries a rejected AUTH a few times by default, which only slows
# down a test that expects the refusal.
NO_RETRY = Retry(NoBackoff(), 0)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def store(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def backend(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReferenceBackend]:
    log_file = tmp_path_factory.mktemp("backend") / "backend.log"
    with ReferenceBackend(
        redis_server.url,
        log_file,
        allow_faults=True,
        heartbeat_seconds=0.5,
        debt_limit_cents=DEBT_LIMIT_CENTS,
        stalled_interval_seconds=STALLED_INTERVAL_SECONDS,
        env={"MONITORING_TOKEN": TOKEN, "STRIPE_WEBHOOK_SECRET": SECRET},
    ) as server:
        server.wait_until_healthy()
        yield server


@pytest.fixture(scope="module")
def http(backend: ReferenceBackend) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=backend.base_url, timeout=5.0, trust_env=False) as c:
        yield c


@pytest.fixture(autouse=True)
def cleared_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    """Clear the shared backend's faults after each test that used it."""
    yield
    if "backend" in request.fixturenames:
        backend: ReferenceBackend = request.getfixturevalue("backend")
        if backend.is_running():
            backend.clear_faults()


@pytest.fixture(scope="module")
def redisless_backend(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ReferenceBackend]:
    """A backend without faults whose Redis URL points at a closed port."""
    log_file = tmp_path_factory.mktemp("redisless") / "backend.log"
    closed_port_url = f"redis://127.0.0.1:{free_port()}/0"
    with ReferenceBackend(
        closed_port_url,
        log_file,
        env={"MONITORING_TOKEN": "", "STRIPE_WEBHOOK_SECRET": ""},
    ) as server:
        yield server


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def read_log(path: Path, start: int = 0) -> list[dict[str, Any]]:
    """Return the JSON lines of a log file from byte offset `start`."""
    with path.open("rb") as handle:
        handle.seek(start)
        lines = handle.read().decode("utf-8", errors="replace").splitlines()
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def log_size(path: Path) -> int:
    return path.stat().st_size


def wait_for_entries(
    path: Path,
    predicate: Callable[[dict[str, Any]], bool],
    count: int = 1,
    start: int = 0,
    timeout: float = 5.0,
) -> list[dict[str, Any]]:
    """Wait until `count` log entries match; return the matches found by then."""
    deadline = time.monotonic() + timeout
    while True:
        matches = [entry for entry in read_log(path, start) if predicate(entry)]
        if len(matches) >= count or time.monotonic() >= deadline:
            return matches
        time.sleep(0.05)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `condition` until it is true or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def stripe_event(event_type: str = "invoice.payment_succeeded") -> bytes:
    event = {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": {"id": f"in_{uuid.uuid4().hex[:24]}", "object": "invoice"}},
    }
    return json.dumps(event, indent=2).encode()


def signed_headers(payload: bytes, timestamp: int | None = None) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(
        payload.decode(), SECRET, timestamp=timestamp
    )
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


def processed_lines(backend: ReferenceBackend, event_id: str) -> Callable[..., Any]:
    prefix = f"Processed Stripe event {event_id} "
    return lambda entry: str(entry.get("msg", "")).startswith(prefix)


def rss(backend: ReferenceBackend) -> int:
    assert backend.pid is not None
    return int(psutil.Process(backend.pid).memory_info().rss)


def job_key(queue: str, job_id: str) -> str:
    return f"{PREFIX}:{queue}:{job_id}"


# --- health and monitoring -------------------------------------------------


def test_health_shape(http: httpx.Client) -> None:
    """A healthy backend returns 200 with exactly the billing API's health shape."""
    response = http.get("/health")
    body = response.json()

    assert response.status_code == 200
    assert set(body) == {"status", "services", "uptime"}
    assert body["status"] == "ok"
    assert body["services"] == {
        "database": True,
        "supabase": True,
        "backgroundJobs": True,
        "webhookQueue": True,
    }
    assert isinstance(body["uptime"], float)


def test_health_uptime_grows(http: httpx.Client) -> None:
    """Uptime grows by the time that passed between two health responses."""
    first = http.get("/health").json()["uptime"]
    time.sleep(0.3)
    second = http.get("/health").json()["uptime"]

    assert second - first >= 0.25


def test_queue_stats_missing_token(http: httpx.Client) -> None:
    """Queue stats without a bearer token are rejected with a JSON 401."""
    response = http.get("/api/monitoring/queue-stats")

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_queue_stats_wrong_token(http: httpx.Client) -> None:
    """Queue stats with a wrong bearer token are rejected."""
    headers = {"Authorization": "Bearer not-the-token"}
    response = http.get("/api/monitoring/queue-stats", headers=headers)

    assert response.status_code == 401


def test_queue_stats_counts(http: httpx.Client) -> None:
    """Queue stats list the seven counts of each of the three queues."""
    response = http.get("/api/monitoring/queue-stats", headers=auth())
    queues = response.json()["queues"]
    states = {"waiting", "active", "completed", "failed", "delayed", "paused"}

    assert response.status_code == 200
    assert set(queues) == {WEBHOOK_QUEUE, "recording-upload", RECONCILIATION_QUEUE}
    for counts in queues.values():
        assert set(counts) == states | {"prioritized"}
        assert all(isinstance(value, int) for value in counts.values())


# --- Stripe webhooks ---------------------------------------------------------


def test_stripe_event_processed_once(
    http: httpx.Client, backend: ReferenceBackend
) -> None:
    """A correctly signed Stripe event is accepted and processed once."""
    payload = stripe_event()
    event_id = json.loads(payload)["id"]
    start = log_size(backend.log_path)

    response = http.post(
        "/api/webhooks/stripe", content=payload, headers=signed_headers(payload)
    )
    wait_for_entries(backend.log_path, processed_lines(backend, event_id), start=start)
    time.sleep(0.3)
    processed = [
        e
        for e in read_log(backend.log_path, start)
        if processed_lines(backend, event_id)(e)
    ]

    assert response.status_code == 200
    assert response.json() == {"received": True}
    assert len(processed) == 1
    assert processed[0]["level"] == 30


def test_stripe_duplicate_not_processed(
    http: httpx.Client, backend: ReferenceBackend
) -> None:
    """A second delivery of the same event is acknowledged but not processed."""
    payload = stripe_event()
    event_id = json.loads(payload)["id"]
    start = log_size(backend.log_path)

    first = http.post(
        "/api/webhooks/stripe", content=payload, headers=signed_headers(payload)
    )
    wait_for_entries(backend.log_path, processed_lines(backend, event_id), start=start)
    second = http.post(
        "/api/webhooks/stripe", content=payload, headers=signed_headers(payload)
    )
    time.sleep(0.5)
    processed = [
        e
        for e in read_log(backend.log_path, start)
        if processed_lines(backend, event_id)(e)
    ]

    assert first.json() == {"received": True}
    assert second.status_code == 200
    assert second.json() == {"received": True, "duplicate": True}
    assert len(processed) == 1


def test_stripe_bad_signature_rejected(http: httpx.Client) -> None:
    """An event signed with another secret is rejected with the library's message."""
    payload = stripe_event()
    header = stripe.WebhookSignature.generate_signature_header(
        payload.decode(), "whsec_some_other_secret"
    )
    response = http.post(
        "/api/webhooks/stripe", content=payload, headers={"Stripe-Signature": header}
    )

    assert response.status_code == 400
    assert "No signatures found matching" in response.json()["error"]


def test_stripe_modified_body_rejected(http: httpx.Client) -> None:
    """A body changed after signing (one trailing newline) is rejected."""
    payload = stripe_event()
    headers = signed_headers(payload)
    response = http.post(
        "/api/webhooks/stripe", content=payload + b"\n", headers=headers
    )

    assert response.status_code == 400


def test_stripe_stale_timestamp_rejected(http: httpx.Client) -> None:
    """An event signed ten minutes ago falls outside the 300 s tolerance."""
    payload = stripe_event()
    headers = signed_headers(payload, timestamp=int(time.time()) - 600)
    response = http.post("/api/webhooks/stripe", content=payload, headers=headers)

    assert response.status_code == 400
    assert "Timestamp outside the tolerance zone" in response.json()["error"]


def test_stripe_missing_signature_rejected(http: httpx.Client) -> None:
    """An event without a Stripe-Signature header is rejected."""
    response = http.post("/api/webhooks/stripe", content=stripe_event())

    assert response.status_code == 400


# --- billing -------------------------------------------------------------------


def charge(http: httpx.Client, customer: str, cents: int) -> httpx.Response:
    body = {"customerId": customer, "amountCents": cents}
    return http.post("/api/billing/charges", json=body)


def test_charge_under_limit(http: httpx.Client) -> None:
    """A charge that keeps the debt under the limit is created with 201."""
    response = charge(http, f"cus_{uuid.uuid4().hex[:10]}", 4_000)

    assert response.status_code == 201
    assert response.json()["debtCents"] == 4_000


def test_charge_over_limit(http: httpx.Client) -> None:
    """A charge that takes the debt over the limit is rejected with 402."""
    customer = f"cus_{uuid.uuid4().hex[:10]}"
    first = charge(http, customer, 8_000)
    second = charge(http, customer, 3_000)

    assert first.status_code == 201
    assert second.status_code == 402
    assert second.json() == {
        "error": "debt_limit_exceeded",
        "limitCents": DEBT_LIMIT_CENTS,
        "debtCents": 8_000,
    }


def test_charge_invalid_amount(http: httpx.Client) -> None:
    """A charge with a non-integer amount is rejected naming the field."""
    response = http.post(
        "/api/billing/charges", json={"customerId": "cus_1", "amountCents": "12"}
    )

    assert response.status_code == 400
    assert response.json()["field"] == "amountCents"


def test_charge_invalid_json(http: httpx.Client) -> None:
    """A charge whose body is not JSON is rejected with 400."""
    response = http.post("/api/billing/charges", content=b"{not json")

    assert response.status_code == 400
    assert response.json()["field"] == "body"


# --- reconciliation, recordings, heartbeat -------------------------------------


def reconciliation_state(http: httpx.Client, job_id: str) -> dict[str, Any]:
    response = http.get(f"/api/billing/reconciliation/{job_id}", headers=auth())
    return dict(response.json())


def wait_for_state(
    http: httpx.Client, job_id: str, states: set[str], timeout: float = 5.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = reconciliation_state(http, job_id)
        if body.get("state") in states or time.monotonic() >= deadline:
            return body
        time.sleep(0.05)


def test_reconciliation_completes(
    http: httpx.Client, backend: ReferenceBackend
) -> None:
    """A manually triggered reconciliation run completes and logs its steps."""
    start = log_size(backend.log_path)

    response = http.post("/api/billing/reconciliation", headers=auth())
    job_id = response.json()["jobId"]
    status = wait_for_state(http, job_id, {"completed", "failed"})
    messages = [e["msg"] for e in read_log(backend.log_path, start)]

    assert response.status_code == 202
    assert status["state"] == "completed"
    assert status["failedReason"] is None
    assert f"Reconciliation started run={job_id}" in messages
    assert any(
        m.startswith(f"Reconciliation completed run={job_id} charges=")
        for m in messages
    )


def test_reconciliation_requires_token(http: httpx.Client) -> None:
    """Triggering a reconciliation run without the token is rejected."""
    response = http.post("/api/billing/reconciliation")

    assert response.status_code == 401


def test_reconciliation_unknown_job(http: httpx.Client) -> None:
    """The status of an unknown reconciliation run is a 404."""
    response = http.get("/api/billing/reconciliation/no-such-run", headers=auth())

    assert response.status_code == 404


def test_nightly_reconciliation_scheduled(
    store: redis.Redis, backend: ReferenceBackend
) -> None:
    """The nightly reconciliation is registered for 03:00 UTC."""
    repeat_key = f"{PREFIX}:{RECONCILIATION_QUEUE}:repeat"
    wait_until(lambda: store.zscore(repeat_key, "nightly-reconciliation") is not None)
    next_ms = store.zscore(repeat_key, "nightly-reconciliation")

    assert next_ms is not None
    assert time.gmtime(next_ms / 1000).tm_hour == 3
    assert time.gmtime(next_ms / 1000).tm_min == 0


def test_recording_job_completes(http: httpx.Client, backend: ReferenceBackend) -> None:
    """A queued recording upload is processed by the recording worker."""
    start = log_size(backend.log_path)

    response = http.post("/api/recordings", json={"recordingId": "rec_selftest"})
    uploaded = wait_for_entries(
        backend.log_path,
        lambda e: e.get("msg") == "Recording rec_selftest uploaded",
        start=start,
    )

    assert response.status_code == 202
    assert len(uploaded) == 1


def test_heartbeat_logged(backend: ReferenceBackend) -> None:
    """The recording worker's heartbeat line appears every heartbeat interval."""
    start = log_size(backend.log_path)

    beats = wait_for_entries(
        backend.log_path,
        lambda e: e.get("msg") == "RecordingQueueWorker running normally",
        count=2,
        start=start,
    )

    assert len(beats) >= 2
    assert beats[0]["level"] == 30


def test_log_lines_are_pino_shaped(backend: ReferenceBackend) -> None:
    """Every log line is a JSON object with pino's level, time, pid and msg."""
    entries = read_log(backend.log_path)
    lines = backend.log_path.read_text().splitlines()

    assert len(entries) == len(lines)
    for entry in entries:
        assert entry["level"] in (20, 30, 40, 50, 60)
        assert isinstance(entry["time"], int)
        assert entry["pid"] == backend.pid
        assert isinstance(entry["msg"], str)


def test_secrets_not_logged(backend: ReferenceBackend) -> None:
    """Neither the monitoring token nor the webhook secret reaches the log."""
    text = backend.log_path.read_text()

    assert TOKEN not in text
    assert SECRET not in text


# --- faults --------------------------------------------------------------------


def test_service_down_degrades_health(
    http: httpx.Client, backend: ReferenceBackend
) -> None:
    """service_down turns the flag false and health to 503 until cleared."""
    backend.inject("service_down", service="webhookQueue")
    down = http.get("/health")
    backend.clear_faults()
    restored = http.get("/health")

    assert down.status_code == 503
    assert down.json()["status"] == "degraded"
    assert down.json()["services"]["webhookQueue"] is False
    assert down.json()["services"]["database"] is True
    assert restored.status_code == 200


def test_memory_grow_raises_rss(backend: ReferenceBackend) -> None:
    """memory_grow makes the backend's resident memory grow by about that much."""
    before = rss(backend)

    backend.inject("memory_grow", mb=40)
    after = rss(backend)

    assert after - before >= 35 * MB


def test_memory_leak_raises_rss(backend: ReferenceBackend) -> None:
    """memory_leak makes resident memory grow over time up to its cap."""
    before = rss(backend)

    backend.inject("memory_leak", mb_per_second=40, max_mb=20)
    grew = wait_until(lambda: rss(backend) - before >= 15 * MB, timeout=5.0)

    assert grew


def test_error_logs_written(backend: ReferenceBackend) -> None:
    """error_logs writes that many level-50 lines with an err object."""
    start = log_size(backend.log_path)

    backend.inject("error_logs", count=3)
    errors = [e for e in read_log(backend.log_path, start) if e["level"] == 50]

    assert len(errors) == 3
    assert all("message" in e["err"] for e in errors)


def test_fatal_log_written(backend: ReferenceBackend) -> None:
    """fatal_log writes one level-60 line."""
    start = log_size(backend.log_path)

    backend.inject("fatal_log")
    fatal = [e for e in read_log(backend.log_path, start) if e["level"] == 60]

    assert len(fatal) == 1


def test_failed_job_in_failed_set(
    store: redis.Redis, backend: ReferenceBackend
) -> None:
    """failed_job makes the worker fail a job into the failed set with a reason."""
    start = log_size(backend.log_path)

    result = backend.inject("failed_job", queue=WEBHOOK_QUEUE, count=1)
    job_id = result["jobIds"][0]
    score = store.zscore(f"{PREFIX}:{WEBHOOK_QUEUE}:failed", job_id)
    reason = store.hget(job_key(WEBHOOK_QUEUE, job_id), "failedReason")
    logged = wait_for_entries(
        backend.log_path,
        lambda e: e.get("jobId") == job_id and e["level"] == 50,
        start=start,
    )

    assert result["states"] == {job_id: "failed"}
    assert score is not None
    assert reason
    assert logged[0]["failedReason"] == reason


def test_clear_removes_failed_jobs(
    store: redis.Redis, backend: ReferenceBackend
) -> None:
    """Clearing the faults removes the jobs that failed_job failed."""
    job_id = backend.inject("failed_job", queue=WEBHOOK_QUEUE)["jobIds"][0]

    backend.clear_faults()
    score = store.zscore(f"{PREFIX}:{WEBHOOK_QUEUE}:failed", job_id)

    assert score is None


def test_stalled_job_without_lock(
    store: redis.Redis, backend: ReferenceBackend
) -> None:
    """stalled_job leaves an id in the active list with no lock, 15 min old."""
    result = backend.inject("stalled_job", queue=WEBHOOK_QUEUE)
    job_id = result["jobId"]
    active = store.lrange(f"{PREFIX}:{WEBHOOK_QUEUE}:active", 0, -1)
    processed_on = int(store.hget(job_key(WEBHOOK_QUEUE, job_id), "processedOn") or 0)
    age_minutes = (time.time() * 1000 - processed_on) / 60_000

    assert job_id in active
    assert store.exists(job_key(WEBHOOK_QUEUE, job_id) + ":lock") == 0
    assert 14.9 <= age_minutes <= 16


def test_stalled_job_survives_checks(
    store: redis.Redis, backend: ReferenceBackend
) -> None:
    """With hold (the default) the worker's stalled check leaves the job alone."""
    job_id = backend.inject("stalled_job", queue=WEBHOOK_QUEUE)["jobId"]

    time.sleep(STALLED_INTERVAL_SECONDS * 4)
    active = store.lrange(f"{PREFIX}:{WEBHOOK_QUEUE}:active", 0, -1)

    assert job_id in active


def test_stalled_job_recovered_without_hold(
    store: redis.Redis, backend: ReferenceBackend
) -> None:
    """With hold=false the worker's stalled check moves the job out of active."""
    job_id = backend.inject("stalled_job", queue=WEBHOOK_QUEUE, hold=False)["jobId"]
    active_key = f"{PREFIX}:{WEBHOOK_QUEUE}:active"

    left = wait_until(lambda: job_id not in store.lrange(active_key, 0, -1))

    assert left


def test_clear_removes_stalled_job(
    store: redis.Redis, backend: ReferenceBackend
) -> None:
    """Clearing the faults removes the fake stalled job from the active list."""
    job_id = backend.inject("stalled_job", queue=WEBHOOK_QUEUE)["jobId"]

    backend.clear_faults()
    active = store.lrange(f"{PREFIX}:{WEBHOOK_QUEUE}:active", 0, -1)

    assert job_id not in active
    assert store.exists(job_key(WEBHOOK_QUEUE, job_id)) == 0


def test_long_running_job_keeps_lock(
    store: redis.Redis, backend: ReferenceBackend
) -> None:
    """long_running_job holds an active, locked job whose processedOn is old."""
    result = backend.inject("long_running_job", queue=WEBHOOK_QUEUE, minutes=15)
    job_id = result["jobId"]
    active = store.lrange(f"{PREFIX}:{WEBHOOK_QUEUE}:active", 0, -1)
    processed_on = int(store.hget(job_key(WEBHOOK_QUEUE, job_id), "processedOn") or 0)
    age_minutes = (time.time() * 1000 - processed_on) / 60_000

    assert result["started"] is True
    assert job_id in active
    assert store.exists(job_key(WEBHOOK_QUEUE, job_id) + ":lock") == 1
    assert age_minutes > 10


def test_long_running_job_released(
    store: redis.Redis, backend: ReferenceBackend
) -> None:
    """Clearing the faults lets the long-running job finish."""
    job_id = backend.inject("long_running_job", queue=WEBHOOK_QUEUE)["jobId"]
    completed_key = f"{PREFIX}:{WEBHOOK_QUEUE}:completed"

    backend.clear_faults()
    finished = wait_until(lambda: store.zscore(completed_key, job_id) is not None)

    assert finished


def test_pause_queue_sets_meta(store: redis.Redis, backend: ReferenceBackend) -> None:
    """pause_queue sets the paused field of the queue's meta hash."""
    meta_key = f"{PREFIX}:{RECONCILIATION_QUEUE}:meta"

    backend.inject("pause_queue", queue=RECONCILIATION_QUEUE)
    paused = store.hexists(meta_key, "paused")
    backend.clear_faults()
    resumed = not store.hexists(meta_key, "paused")

    assert paused
    assert resumed


def test_slow_health_delays_response(
    http: httpx.Client, backend: ReferenceBackend
) -> None:
    """slow_health delays the health response by at least delay_ms."""
    backend.inject("slow_health", delay_ms=300)

    started = time.perf_counter()
    response = http.get("/health")
    elapsed = time.perf_counter() - started

    assert response.status_code == 200
    assert elapsed >= 0.3


def test_invalid_health_serves_html(
    http: httpx.Client, backend: ReferenceBackend
) -> None:
    """invalid_health makes /health return a proxy's 502 HTML page."""
    backend.inject("invalid_health")

    response = http.get("/health")

    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "502 Bad Gateway" in response.text


def test_accept_bad_signature_fault(
    http: httpx.Client, backend: ReferenceBackend
) -> None:
    """accept_bad_signature makes the backend accept a forged signature."""
    backend.inject("accept_bad_signature")
    payload = stripe_event()

    response = http.post(
        "/api/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": "t=1,v1=00"},
    )

    assert response.status_code == 200


def test_process_duplicates_fault(
    http: httpx.Client, backend: ReferenceBackend
) -> None:
    """process_duplicates makes a repeated delivery get processed twice."""
    backend.inject("process_duplicates")
    payload = stripe_event()
    event_id = json.loads(payload)["id"]
    start = log_size(backend.log_path)

    for _ in range(2):
        http.post(
            "/api/webhooks/stripe", content=payload, headers=signed_headers(payload)
        )
    processed = wait_for_entries(
        backend.log_path, processed_lines(backend, event_id), count=2, start=start
    )

    assert len(processed) == 2


def test_debt_limit_off_fault(http: httpx.Client, backend: ReferenceBackend) -> None:
    """debt_limit_off lets a charge over the limit through."""
    backend.inject("debt_limit_off")

    response = charge(http, f"cus_{uuid.uuid4().hex[:10]}", DEBT_LIMIT_CENTS + 1)

    assert response.status_code == 201


def test_reconciliation_fails_fault(
    http: httpx.Client, backend: ReferenceBackend
) -> None:
    """reconciliation_fails makes the run fail with a failedReason."""
    backend.inject("reconciliation_fails")

    job_id = http.post("/api/billing/reconciliation", headers=auth()).json()["jobId"]
    status = wait_for_state(http, job_id, {"completed", "failed"})

    assert status["state"] == "failed"
    assert "does not match" in status["failedReason"]


def test_fault_list_and_unknown_parameter(backend: ReferenceBackend) -> None:
    """GET /_faults lists active faults; an unknown parameter is a 400."""
    backend.inject("slow_health", delay_ms=10)
    with httpx.Client(base_url=backend.base_url, timeout=5.0, trust_env=False) as c:
        listed = c.get("/_faults").json()["active"]
        rejected = c.post("/_faults/memory_grow", json={"megabytes": 10})

    assert listed == {"slow_health": {"delay_ms": 10}}
    assert rejected.status_code == 400
    assert "megabytes" in rejected.json()["message"]


# --- process lifecycle -----------------------------------------------------------


def test_crash_ends_process(redis_server: RedisServer, tmp_path: Path) -> None:
    """crash logs a fatal line, then the process exits with the exit code."""
    with ReferenceBackend(
        redis_server.url, tmp_path / "crash.log", allow_faults=True
    ) as crashing:
        crashing.inject("crash", exit_code=3)
        exited = wait_until(lambda: not crashing.is_running())
        code = crashing.stop()
        fatal = [e for e in read_log(crashing.log_path) if e["level"] == 60]

    assert exited
    assert code == 3
    assert len(fatal) == 1


def test_sigterm_clean_shutdown(redis_server: RedisServer, tmp_path: Path) -> None:
    """SIGTERM closes workers, logs the shutdown, removes the pid file, exits 0."""
    pid_file = tmp_path / "backend.pid"
    with ReferenceBackend(
        redis_server.url, tmp_path / "term.log", pid_file=pid_file
    ) as stopping:
        stopping.wait_until_healthy()
        pid_written = pid_file.read_text().strip() == str(stopping.pid)
        code = stopping.stop()
        messages = [e["msg"] for e in read_log(stopping.log_path)]

    assert pid_written
    assert code == 0
    assert "Worker closed for queue webhook-processing" in messages
    assert "Reference backend shutdown complete" in messages
    assert not pid_file.exists()


def test_faults_off_by_default(redisless_backend: ReferenceBackend) -> None:
    """Without --allow-faults the fault routes return 404."""
    with httpx.Client(base_url=redisless_backend.base_url, trust_env=False) as c:
        response = c.post("/_faults/crash", json={}, timeout=5.0)

    assert response.status_code == 404
    assert redisless_backend.is_running()


def test_unreachable_redis_degrades(redisless_backend: ReferenceBackend) -> None:
    """With Redis unreachable the backend runs and reports degraded health."""
    with httpx.Client(base_url=redisless_backend.base_url, trust_env=False) as c:
        response = c.get("/health", timeout=5.0)
    services = response.json()["services"]

    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert services["backgroundJobs"] is False
    assert services["webhookQueue"] is False


def test_unreachable_redis_charge_503(redisless_backend: ReferenceBackend) -> None:
    """A charge while Redis is unreachable fails with 503, not a hang."""
    body = {"customerId": "cus_1", "amountCents": 100}
    with httpx.Client(base_url=redisless_backend.base_url, trust_env=False) as c:
        response = c.post("/api/billing/charges", json=body, timeout=10.0)

    assert response.status_code == 503


def test_test_secrets_logged_by_name(redisless_backend: ReferenceBackend) -> None:
    """Unset secrets fall back to test values, logged by name, never by value."""
    text = redisless_backend.log_path.read_text()

    assert "Using the test-only Stripe webhook secret" in text
    assert "Using the test-only monitoring token" in text
    assert "whsec_reference_test_secret" not in text
    assert "reference-monitoring-token" not in text


def test_sighup_reopens_log(redisless_backend: ReferenceBackend) -> None:
    """After the log is renamed, SIGHUP makes the backend write a new file."""
    log_path = redisless_backend.log_path
    rotated = log_path.with_name(log_path.name + ".1")
    log_path.rename(rotated)
    assert redisless_backend.pid is not None

    os.kill(redisless_backend.pid, signal.SIGHUP)
    reopened = wait_until(log_path.exists)
    messages = [e["msg"] for e in read_log(log_path)] if reopened else []

    assert reopened
    assert "Log file reopened after SIGHUP" in messages
    assert redisless_backend.is_running()


def test_backend_with_redis_password(tmp_path: Path) -> None:
    """A backend given REDIS_PASSWORD reaches a password-protected Redis."""
    with RedisServer(password="selftest-pass") as server:
        with ReferenceBackend(
            server.url, tmp_path / "auth.log", redis_password="selftest-pass"
        ) as protected:
            health = protected.wait_until_healthy()
        log_text = (tmp_path / "auth.log").read_text()

    assert health["status"] == "ok"
    assert "selftest-pass" not in log_text


# --- settings ------------------------------------------------------------------


def test_faults_enabled_by_environment() -> None:
    """SOAK_REFERENCE_FAULTS=1 enables the fault routes like --allow-faults."""
    settings = settings_from_args(
        ["--log-file", "backend.log"], environ={"SOAK_REFERENCE_FAULTS": "1"}
    )

    assert settings.allow_faults is True


def test_redis_password_kept_out_of_logs() -> None:
    """REDIS_PASSWORD joins the client URL but not the URL that gets logged."""
    settings = settings_from_args(
        ["--log-file", "backend.log", "--redis-url", "redis://127.0.0.1:6390/2"],
        environ={"REDIS_PASSWORD": "p@ss"},
    )

    assert settings.connection_url == "redis://:p%40ss@127.0.0.1:6390/2"
    assert "p@ss" not in settings.redacted_redis_url


def test_inline_redis_password_redacted() -> None:
    """A password written into --redis-url is masked in the logged URL."""
    url = "redis://:inline-secret@127.0.0.1:6390/0"
    settings = settings_from_args(["--log-file", "b.log", "--redis-url", url], {})

    assert settings.redacted_redis_url == "redis://:***@127.0.0.1:6390/0"
    assert settings.connection_url == url


def test_invalid_port_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    """An out-of-range port stops argument parsing with a message naming it."""
    with pytest.raises(SystemExit):
        settings_from_args(["--log-file", "backend.log", "--port", "70000"], {})
    error = capsys.readouterr().err

    assert "--port 70000 is out of range" in error


# --- service helpers ---------------------------------------------------------------


def test_redis_server_missing_binary() -> None:
    """A missing redis-server raises an error naming the package to install."""
    with pytest.raises(RuntimeError, match="apt-get install redis-server"):
        RedisServer(executable="/nonexistent/redis-server").start()


def test_redis_server_password() -> None:
    """A RedisServer with a password rejects clients that do not send it."""
    with RedisServer(password="selftest-pass") as server:
        anonymous = redis.Redis(
            host=server.host, port=server.port, socket_timeout=2, retry=NO_RETRY
        )
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        authenticated = server.client().ping()

    assert authenticated


def test_redis_server_policy(redis_server: RedisServer, store: redis.Redis) -> None:
    """The default RedisServer runs with the noeviction policy BullMQ needs."""
    policy = store.config_get("maxmemory-policy")["maxmemory-policy"]

    assert policy == "noeviction"
