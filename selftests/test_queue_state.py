"""Self-tests of the BullMQ queue probe against a live Redis and real BullMQ jobs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from bullmq import Queue, Worker

from selftests.redis_server import RedisServer, free_port
from soakcheck.probes.errors import ProbeError
from soakcheck.probes.queues import (
    STALLED_REASON,
    QueueStatsError,
    command_budget,
    compare_counts,
    parse_queue_stats,
    queue_key,
    read_queue_state,
)
from soakcheck.probes.redis_info import connect

JOB_DEADLINE_S = 15.0
TEN_MINUTES_MS = 600_000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path)
    running.wait_ready()
    yield running
    running.stop()


@pytest.fixture
def client(server: RedisServer) -> redis.Redis:
    return connect(server.url)


def run(coroutine: Awaitable[Any]) -> Any:
    """Run BullMQ code to completion, failing the test after JOB_DEADLINE_S."""
    return asyncio.run(asyncio.wait_for(coroutine, JOB_DEADLINE_S))


async def wait_for_counts(
    queue: Queue, done: Callable[[dict[str, int]], bool]
) -> dict[str, int]:
    deadline = time.monotonic() + JOB_DEADLINE_S
    while time.monotonic() < deadline:
        counts = await queue.getJobCounts()
        if done(counts):
            return counts
        await asyncio.sleep(0.02)
    raise AssertionError(f"queue {queue.name} never reached the counts: {counts}")


async def fail_or_complete(url: str, queue: Queue, prefix: str = "bull") -> None:
    """Run a worker that fails jobs named "fail" until no job is left waiting."""

    async def process(job: Any, token: str) -> str:
        if job.name == "fail":
            raise ValueError("payment provider timed out")
        return "done"

    worker = Worker(queue.name, process, {"connection": url, "prefix": prefix})
    try:
        await wait_for_counts(queue, lambda c: c["waiting"] == 0 and c["active"] == 0)
    finally:
        await worker.close()


def now_ms() -> int:
    return int(time.time() * 1000)


def write_job(
    client: redis.Redis,
    queue: str,
    job_id: str,
    state: str,
    *,
    prefix: str = "bull",
    at_ms: int | None = None,
    lock: bool = False,
    **fields: Any,
) -> None:
    """Write one job the way BullMQ lays it out: its hash, plus its id in a state.

    Ids are LPUSHed onto the `wait` and `active` lists, as BullMQ does. The
    sorted sets are scored by finishedOn when the job has one.
    """
    at_ms = now_ms() if at_ms is None else at_ms
    job = {"name": "charge", "data": "{}", "opts": "{}", "timestamp": at_ms}
    job.update(fields)
    client.hset(queue_key(prefix, queue, job_id), mapping=job)

    key = queue_key(prefix, queue, state)
    if state in ("wait", "active", "paused"):
        client.lpush(key, job_id)
    else:
        client.zadd(key, {job_id: int(job.get("finishedOn", at_ms))})
    if lock:
        client.set(queue_key(prefix, queue, f"{job_id}:lock"), "token", px=30_000)


def fill_queue(client: redis.Redis, queue: str, total: int, active: int) -> None:
    """Write `total` small jobs through pipelines, `active` of them active."""
    at_ms = now_ms()
    pipe = client.pipeline(transaction=False)
    states = ["wait", "completed", "completed", "failed", "delayed", "prioritized"]

    for number in range(1, total + 1):
        job_id = str(number)
        state = "active" if number <= active else states[number % len(states)]
        pipe.hset(
            queue_key("bull", queue, job_id),
            mapping={"name": "n", "data": "{}", "timestamp": at_ms},
        )
        if state in ("wait", "active"):
            pipe.lpush(queue_key("bull", queue, state), job_id)
        else:
            pipe.zadd(queue_key("bull", queue, state), {job_id: at_ms - number})
        if state == "active":
            pipe.set(queue_key("bull", queue, f"{job_id}:lock"), "t", px=60_000)
        if len(pipe) >= 5000:
            pipe.execute()
    pipe.execute()


def commands_sent(stats: dict[str, Any]) -> int:
    """Return all command calls in INFO commandstats except INFO itself."""
    return sum(
        int(value["calls"])
        for name, value in stats.items()
        if name.startswith("cmdstat_") and name != "cmdstat_info"
    )


def measured_read(
    server: RedisServer, client: redis.Redis, queue: str, **options: Any
) -> tuple[int, Any]:
    """Read a queue and return the commands Redis counted for it, and the state."""
    admin = redis.Redis(port=server.port, decode_responses=True, socket_timeout=5)
    client.ping()
    before = commands_sent(admin.info("commandstats"))

    state = read_queue_state(
        client, "bull", queue, window_start_ms=0, previous=None, **options
    )
    after = commands_sent(admin.info("commandstats"))

    # The ping opens the probe's connection before the first count, so its
    # setup commands are not counted. The admin client sends only INFO.
    return after - before, state


def test_counts_match_bullmq(server: RedisServer, client: redis.Redis) -> None:
    """Counts equal BullMQ's getJobCounts for real jobs in every state."""

    async def make_jobs() -> dict[str, int]:
        queue = Queue("billing", {"connection": server.url})
        try:
            for name in ("fail", "fail", "ok", "ok", "ok"):
                await queue.add(name, {"invoice": 1})
            await fail_or_complete(server.url, queue)
            await queue.add("later", {}, {"delay": 60_000})
            await queue.add("urgent", {}, {"priority": 3})
            for _ in range(4):
                await queue.add("next", {})
            return await queue.getJobCounts("paused", *queue.sanitizeJobTypes([]))
        finally:
            await queue.close()

    expected = run(make_jobs())

    state = read_queue_state(
        client, "bull", "billing", window_start_ms=0, previous=None
    )

    assert state.counts == expected
    assert state.exists


def test_failed_in_window_only(server: RedisServer, client: redis.Redis) -> None:
    """A job failed before the window start is not counted, one failed after is."""

    async def fail_two() -> int:
        queue = Queue("refunds", {"connection": server.url})
        try:
            await queue.add("fail", {"refund": "old"})
            await fail_or_complete(server.url, queue)
            await asyncio.sleep(0.01)
            window_start = now_ms()
            await asyncio.sleep(0.01)
            await queue.add("fail", {"refund": "new"})
            await fail_or_complete(server.url, queue)
            return window_start
        finally:
            await queue.close()

    window_start = run(fail_two())

    state = read_queue_state(
        client, "bull", "refunds", window_start_ms=window_start, previous=None
    )

    assert state.counts["failed"] == 2
    assert state.failed_in_window == 1
    assert [job.job_id for job in state.failed_samples] == ["2"]
    assert state.failed_samples[0].failed_reason == "payment provider timed out"
    assert state.failed_samples[0].attempts == 1
    assert state.failed_sample_complete


def test_failed_samples_newest_first_and_capped(client: redis.Redis) -> None:
    """Failed samples are the newest in the window, at most sample_limit of them."""
    start = now_ms() - 60_000
    for number in range(1, 9):
        finished = start + number * 1000
        write_job(client, "emails", str(number), "failed", finishedOn=finished)

    state = read_queue_state(
        client, "bull", "emails", window_start_ms=start, previous=None, sample_limit=3
    )

    assert state.failed_in_window == 8
    assert [job.job_id for job in state.failed_samples] == ["8", "7", "6"]
    assert not state.failed_sample_complete


def test_stalled_failures_and_old_fields(client: redis.Redis) -> None:
    """Stalled failures are counted, and older `attemptsMade` hashes are read.

    BullMQ's stalled checker fails a job only after its lock expires twice,
    which takes minutes with real workers. So the failed jobs are written the
    way that checker leaves them: a hash with failedReason and finishedOn,
    and the id in the failed set scored by finishedOn.
    """
    finished = now_ms() - 1000
    write_job(
        client,
        "sync",
        "a1",
        "failed",
        finishedOn=finished,
        failedReason=STALLED_REASON,
        atm=2,
    )
    write_job(
        client,
        "sync",
        "a2",
        "failed",
        finishedOn=finished - 1,
        failedReason="card declined",
        attemptsMade=3,
    )

    state = read_queue_state(
        client, "bull", "sync", window_start_ms=finished - 5000, previous=None
    )
    attempts = {job.job_id: job.attempts for job in state.failed_samples}

    assert state.stalled_failures_in_window == 1
    assert attempts == {"a1": 2, "a2": 3}


def test_lockless_active_job_found(client: redis.Redis) -> None:
    """An active job whose lock key is gone is reported, one with a lock is not.

    A real worker always holds the lock while the job is active, so the
    lockless job is written as a dead worker leaves it: the hash and the id in
    the active list, with no `<id>:lock` key.
    """
    write_job(client, "recording", "10", "active", processedOn=now_ms(), lock=True)
    write_job(client, "recording", "11", "active", processedOn=now_ms())

    state = read_queue_state(
        client, "bull", "recording", window_start_ms=0, previous=None
    )

    assert state.lockless_active == ["11"]
    assert state.active_checked == 2
    assert not state.active_check_capped


def test_lockless_persisting_across_reads(client: redis.Redis) -> None:
    """A job lockless at two reads in a row is listed as persisting."""
    write_job(client, "recording", "20", "active", processedOn=now_ms())
    first = read_queue_state(
        client, "bull", "recording", window_start_ms=0, previous=None
    )
    write_job(client, "recording", "21", "active", processedOn=now_ms())

    second = read_queue_state(
        client, "bull", "recording", window_start_ms=0, previous=first.state
    )

    assert first.lockless_active_persisting == []
    assert sorted(second.lockless_active) == ["20", "21"]
    assert second.lockless_active_persisting == ["20"]


def test_active_job_without_hash_found(client: redis.Redis) -> None:
    """An active id whose job hash is gone is reported as missing its hash."""
    client.lpush(queue_key("bull", "recording", "active"), "99")

    state = read_queue_state(
        client, "bull", "recording", window_start_ms=0, previous=None
    )

    assert state.active_without_hash == ["99"]


def test_long_running_job_found(server: RedisServer, client: redis.Redis) -> None:
    """A job active under a real worker past the limit is reported with its age."""

    async def hold_job() -> tuple[Any, Any]:
        queue = Queue("reports", {"connection": server.url})
        release = asyncio.Event()

        async def process(job: Any, token: str) -> str:
            await asyncio.wait_for(release.wait(), JOB_DEADLINE_S)
            return "done"

        worker = Worker("reports", process, {"connection": server.url})
        try:
            await queue.add("nightly", {})
            await wait_for_counts(queue, lambda c: c["active"] == 1)
            late = now_ms() + TEN_MINUTES_MS + 5000
            read = read_queue_state
            at_late = await asyncio.to_thread(
                read, client, "bull", "reports", window_start_ms=0, previous=None,
                now_ms=late,
            )  # fmt: skip
            at_now = await asyncio.to_thread(
                read, client, "bull", "reports", window_start_ms=0, previous=None
            )
            return at_late, at_now
        finally:
            release.set()
            await worker.close()
            await queue.close()

    late, current = run(hold_job())

    assert [job.job_id for job in late.long_running] == ["1"]
    assert late.long_running[0].age_s > TEN_MINUTES_MS / 1000
    assert late.lockless_active == []
    assert current.long_running == []


def test_paused_queue_seen(server: RedisServer, client: redis.Redis) -> None:
    """Queue.pause() shows as paused, and resume() clears it."""

    async def pause_then_resume() -> tuple[Any, Any]:
        queue = Queue("webhooks", {"connection": server.url})
        try:
            await queue.add("stripe", {})
            await queue.pause()
            paused = await asyncio.to_thread(
                read_queue_state,
                client,
                "bull",
                "webhooks",
                window_start_ms=0,
                previous=None,
            )
            await queue.resume()
            resumed = await asyncio.to_thread(
                read_queue_state,
                client,
                "bull",
                "webhooks",
                window_start_ms=0,
                previous=None,
            )
            return paused, resumed
        finally:
            await queue.close()

    paused, resumed = run(pause_then_resume())

    assert paused.is_paused
    assert not resumed.is_paused


def test_queue_name_with_colon(server: RedisServer, client: redis.Redis) -> None:
    """A queue named "ingress:avalanche" is read apart from the queue "ingress"."""

    async def add_jobs() -> None:
        inner = Queue("ingress:avalanche", {"connection": server.url})
        outer = Queue("ingress", {"connection": server.url})
        try:
            await inner.add("event", {})
            await inner.add("event", {})
            await outer.add("event", {})
        finally:
            await inner.close()
            await outer.close()

    run(add_jobs())

    inner = read_queue_state(
        client, "bull", "ingress:avalanche", window_start_ms=0, previous=None
    )
    outer = read_queue_state(
        client, "bull", "ingress", window_start_ms=0, previous=None
    )

    assert inner.counts["waiting"] == 2
    assert outer.counts["waiting"] == 1


def test_custom_prefix(server: RedisServer, client: redis.Redis) -> None:
    """Jobs under a custom prefix are read with that prefix and absent under bull."""

    async def add_jobs() -> None:
        queue = Queue("invoices", {"connection": server.url, "prefix": "soak"})
        try:
            await queue.add("pdf", {})
            await queue.add("pdf", {})
        finally:
            await queue.close()

    run(add_jobs())

    custom = read_queue_state(
        client, "soak", "invoices", window_start_ms=0, previous=None
    )
    default = read_queue_state(
        client, "bull", "invoices", window_start_ms=0, previous=None
    )

    assert custom.counts["waiting"] == 2
    assert custom.exists
    assert not default.exists


def test_missing_queue_reads_zero(client: redis.Redis) -> None:
    """A queue with no keys reads as absent with every count 0."""
    state = read_queue_state(
        client, "bull", "nothing", window_start_ms=0, previous=None
    )

    assert not state.exists
    assert set(state.counts.values()) == {0}


def test_legacy_marker_not_counted(client: redis.Redis) -> None:
    """A trailing "0:" delay marker in the wait list is not counted as a job."""
    write_job(client, "mail", "1", "wait")
    write_job(client, "mail", "2", "wait")
    client.rpush(queue_key("bull", "mail", "wait"), "0:1700000000000")

    state = read_queue_state(client, "bull", "mail", window_start_ms=0, previous=None)

    assert state.counts["waiting"] == 2
    assert state.wait_checked == 2


def test_stalled_counter_raised_between_reads(client: redis.Redis) -> None:
    """A stalled counter raised between two checkpoints is reported once.

    Driving a real stall needs a worker whose lock expires, which takes
    minutes, so the test makes the move BullMQ's stalled checker makes: remove
    the id from active, add 1 to the hash's `stc`, and RPUSH the id onto wait.
    Job "8" uses the older `stalledCounter` field name.
    """
    write_job(client, "sync", "7", "active", processedOn=now_ms(), lock=True, stc=0)
    write_job(client, "sync", "8", "wait", stalledCounter=1)
    first = read_queue_state(client, "bull", "sync", window_start_ms=0, previous=None)

    client.lrem(queue_key("bull", "sync", "active"), 1, "7")
    client.hincrby(queue_key("bull", "sync", "7"), "stc", 1)
    client.rpush(queue_key("bull", "sync", "wait"), "7")
    client.hincrby(queue_key("bull", "sync", "8"), "stalledCounter", 1)
    second = read_queue_state(
        client, "bull", "sync", window_start_ms=0, previous=first.state
    )
    third = read_queue_state(
        client, "bull", "sync", window_start_ms=0, previous=second.state
    )

    assert first.stalled_counter_raised == []
    assert sorted(second.stalled_counter_raised) == ["7", "8"]
    assert second.stalled_counters == {"7": 1, "8": 2}
    assert third.stalled_counter_raised == []


def test_state_is_json(client: redis.Redis) -> None:
    """The checkpoint state and the whole result survive a JSON round trip."""
    write_job(client, "sync", "1", "active", processedOn=now_ms(), stc=1)
    state = read_queue_state(client, "bull", "sync", window_start_ms=0, previous=None)

    restored = json.loads(json.dumps(state.state))
    again = read_queue_state(
        client, "bull", "sync", window_start_ms=0, previous=restored
    )

    assert json.loads(json.dumps(state.to_dict()))["queue"] == "sync"
    assert again.stalled_counter_raised == []


def test_commands_used_matches_redis(server: RedisServer, client: redis.Redis) -> None:
    """commands_used equals the commands Redis counted for the read."""
    fill_queue(client, "billing", total=100, active=5)

    counted, state = measured_read(server, client, "billing")

    assert state.commands_used == counted


def test_cost_same_for_100_and_20000_jobs(
    server: RedisServer, client: redis.Redis
) -> None:
    """A queue of 20,000 jobs costs as many commands as a queue of 100.

    The small queue has more than 10 waiting and 5 failed jobs, so with these
    limits both reads fill every sample and must cost the same.
    """
    fill_queue(client, "small", total=100, active=5)
    fill_queue(client, "large", total=20_000, active=5)
    limits = {"sample_limit": 5, "active_scan_limit": 1000, "wait_scan_limit": 10}

    small_cost, small = measured_read(server, client, "small", **limits)
    large_cost, large = measured_read(server, client, "large", **limits)

    assert sum(large.counts.values()) == 20_000
    assert small.counts["waiting"] > 10
    assert large_cost == small_cost


def test_cost_within_budget_at_defaults(
    server: RedisServer, client: redis.Redis
) -> None:
    """With default limits, reads of 100 and 20,000 jobs stay within the budget."""
    fill_queue(client, "small", total=100, active=5)
    fill_queue(client, "large", total=20_000, active=5)

    small_cost, _ = measured_read(server, client, "small")
    large_cost, _ = measured_read(server, client, "large")

    assert small_cost <= command_budget()
    assert large_cost <= command_budget()
    # Only the samples differ: the small queue has fewer than 100 waiting ids.
    assert large_cost - small_cost <= 100 + 5


def test_active_check_capped(server: RedisServer, client: redis.Redis) -> None:
    """Past active_scan_limit active jobs, the cost stops growing and is flagged."""
    fill_queue(client, "some", total=40, active=12)
    fill_queue(client, "many", total=40, active=30)
    limits = {"sample_limit": 0, "active_scan_limit": 10, "wait_scan_limit": 0}

    some_cost, some = measured_read(server, client, "some", **limits)
    many_cost, many = measured_read(server, client, "many", **limits)

    assert many.active_checked == 10
    assert many.active_check_capped
    assert some.active_check_capped
    assert many_cost == some_cost
    assert many_cost == command_budget(**limits)


def test_zero_limits_read_no_job(server: RedisServer, client: redis.Redis) -> None:
    """With every limit 0 the read is counts only, one MULTI/EXEC."""
    fill_queue(client, "billing", total=200, active=20)

    cost, state = measured_read(
        server,
        client,
        "billing",
        sample_limit=0,
        active_scan_limit=0,
        wait_scan_limit=0,
    )

    assert state.active_checked == 0
    assert state.failed_samples == []
    assert cost == state.commands_used
    assert cost == command_budget(
        sample_limit=0, active_scan_limit=0, wait_scan_limit=0
    )


def test_unreachable_redis_raises_probe_error() -> None:
    """A Redis that refuses connections raises ProbeError naming the URL."""
    url = f"redis://127.0.0.1:{free_port()}/0"

    with pytest.raises(ProbeError) as caught:
        read_queue_state(
            connect(url), "bull", "billing", window_start_ms=0, previous=None
        )

    assert url in str(caught.value)
    assert "billing" in str(caught.value)


def test_queue_stats_compared(server: RedisServer, client: redis.Redis) -> None:
    """The endpoint's counts are compared count by count with Redis."""
    write_job(client, "billing", "1", "failed", finishedOn=now_ms())
    write_job(client, "billing", "2", "wait")
    body = json.dumps({"queues": {"billing": {"waiting": 1, "failed": 2, "active": 0}}})

    endpoint = parse_queue_stats(body)
    state = read_queue_state(
        client, "bull", "billing", window_start_ms=0, previous=None
    )

    assert compare_counts(state.counts, endpoint["billing"]) == [
        "failed: Redis 1, endpoint 2"
    ]


def test_compare_counts_tolerance() -> None:
    """Differences within the tolerance are not reported."""
    redis_counts = {"waiting": 10, "completed": 500}

    mismatches = compare_counts(
        redis_counts, {"waiting": 11, "completed": 520}, tolerance=2
    )

    assert mismatches == ["completed: Redis 500, endpoint 520"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param("<html>502 Bad Gateway</html>", "not JSON", id="html-page"),
        pytest.param('{"status": "ok"}', 'no "queues" object', id="no-queues"),
        pytest.param('{"queues": {"q": 3}}', "expected an object", id="not-object"),
        pytest.param(
            '{"queues": {"q": {"failed": "3"}}}', "non-negative integer", id="string"
        ),
        pytest.param(
            '{"queues": {"q": {"failed": -1}}}', "non-negative integer", id="negative"
        ),
    ],
)
def test_queue_stats_invalid_body(body: str, message: str) -> None:
    """A queue-stats body of the wrong shape raises an error saying what is wrong."""
    with pytest.raises(QueueStatsError) as caught:
        parse_queue_stats(body)

    assert message in str(caught.value)
