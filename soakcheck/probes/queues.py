"""BullMQ queue probe: job counts, failures, stalls and locks, read from Redis.

Keys are built as `<prefix>:<queue>:<suffix>` from the configured prefix and
queue name, the way BullMQ names them (queue names may contain ':', so keys
are never split). Counts follow BullMQ's own counter script (getCounts-1.lua):
LLEN for the `wait`, `paused` and `active` lists, ZCARD for the sorted sets,
and 0 for a missing key.

One read is two round trips, and `command_budget` caps its command count
from the limits passed in, however many jobs the queue contains. It sends no
KEYS or SCAN, and every list or set range it reads is bounded.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from soakcheck.probes.errors import ProbeError
from soakcheck.probes.redis_info import DEFAULT_PASSWORD_ENV, describe_redis_error

log = logging.getLogger(__name__)

LIST_STATES = ("wait", "paused", "active")
SORTED_SET_STATES = (
    "completed",
    "failed",
    "delayed",
    "prioritized",
    "waiting-children",
)
COUNT_NAMES = (
    "waiting",
    "active",
    "completed",
    "failed",
    "delayed",
    "paused",
    "prioritized",
    "waiting-children",
)
ENDPOINT_COUNT_NAMES = (
    "waiting",
    "active",
    "completed",
    "failed",
    "delayed",
    "paused",
    "prioritized",
)

# BullMQ before v5 pushed delay markers ("0:<timestamp>") onto the wait list.
# BullMQ's counter drops a trailing one, and this probe does too.
LEGACY_MARKER_PREFIX = "0:"

# The failedReason BullMQ's stalled-job checker writes
# (moveStalledJobsToWait-9.lua in the bullmq package).
STALLED_REASON = "job stalled more than allowable limit"

# Job hash fields: v5 short names first, then the names older versions used.
ATTEMPTS_FIELDS = ("atm", "attemptsMade")
STALLED_COUNTER_FIELDS = ("stc", "stalledCounter")


class QueueStatsError(ValueError):
    """The queue-stats endpoint body is not the expected JSON shape."""


@dataclass
class FailedJob:
    """One failed job from the window, as its hash records it."""

    job_id: str
    failed_reason: str | None
    finished_on_ms: int | None
    attempts: int | None


@dataclass
class LongRunningJob:
    """An active job whose worker took it longer ago than the limit."""

    job_id: str
    processed_on_ms: int
    age_s: float


@dataclass
class QueueState:
    """Facts from one bounded read of a BullMQ queue.

    `failed_samples`, `stalled_failures_in_window` and the job lists are
    samples: `failed_sample_complete`, `active_check_capped` and
    `wait_checked` show how much of the queue they cover. `is_paused` is the
    `paused` field of the meta hash, which BullMQ treats as the pause flag.

    NOTE: legacy Bull (not BullMQ) keeps its pause flag in a `meta-paused`
    key instead, which this probe does not read.
    """

    queue: str
    prefix: str
    exists: bool
    is_paused: bool
    counts: dict[str, int]
    library_version: str | None
    read_at_ms: int
    window_start_ms: int
    failed_in_window: int
    failed_samples: list[FailedJob] = field(default_factory=list)
    failed_sample_complete: bool = True
    stalled_failures_in_window: int = 0
    active_checked: int = 0
    active_check_capped: bool = False
    lockless_active: list[str] = field(default_factory=list)
    lockless_active_persisting: list[str] = field(default_factory=list)
    active_without_hash: list[str] = field(default_factory=list)
    long_running: list[LongRunningJob] = field(default_factory=list)
    wait_checked: int = 0
    stalled_counter_raised: list[str] = field(default_factory=list)
    stalled_counters: dict[str, int] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    commands_used: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the state as JSON-ready data for a checkpoint record."""
        return asdict(self)


@dataclass
class _Snapshot:
    """Replies of the first round trip, read in one MULTI/EXEC."""

    meta: dict[str, str]
    counts: dict[str, int]
    key_present: bool
    failed_in_window: int
    failed_ids: list[str]
    active_ids: list[str]
    wait_ids: list[str]
    commands: int


def queue_key(prefix: str, queue: str, suffix: str) -> str:
    """Return the Redis key BullMQ uses for `suffix` (a state or a job id)."""
    return f"{prefix}:{queue}:{suffix}"


def command_budget(
    *, sample_limit: int = 5, active_scan_limit: int = 1000, wait_scan_limit: int = 100
) -> int:
    """Return the most commands one read_queue_state call sends with these limits.

    The first round trip is 14 commands (MULTI, 12 reads of meta and counts,
    EXEC) plus one range read per limit above 0. The second reads each
    sampled job: two commands per active job (lock and hash), and one per
    waiting or failed job.
    """
    limits = (sample_limit, active_scan_limit, wait_scan_limit)
    ranges = sum(1 for limit in limits if limit > 0)
    return 14 + ranges + 2 * active_scan_limit + wait_scan_limit + sample_limit


def read_queue_state(
    client: redis.Redis,
    prefix: str,
    queue: str,
    *,
    window_start_ms: int,
    previous: Mapping[str, Any] | None,
    long_running_ms: int = 600_000,
    sample_limit: int = 5,
    now_ms: int | None = None,
    active_scan_limit: int = 1000,
    wait_scan_limit: int = 100,
    password_env: str = DEFAULT_PASSWORD_ENV,
) -> QueueState:
    """Read one queue's counts, failures in the window, locks and stall signs.

    `previous` is the `state` of the last checkpoint's QueueState, or None at
    the first checkpoint, which only records a baseline for stalled counters.
    At most `active_scan_limit` of the oldest active jobs and
    `wait_scan_limit` of the next-to-run waiting jobs have their hashes read.
    Raises ProbeError, naming the URL and the fix, when Redis fails.
    """
    _check_limits(prefix, queue, sample_limit, active_scan_limit, wait_scan_limit)
    read_at_ms = int(time.time() * 1000) if now_ms is None else now_ms
    started = time.perf_counter()
    log.debug("queue read start prefix=%s queue=%s", prefix, queue)

    try:
        snapshot = _read_snapshot(
            client,
            prefix,
            queue,
            window_start_ms=window_start_ms,
            sample_limit=sample_limit,
            active_scan_limit=active_scan_limit,
            wait_scan_limit=wait_scan_limit,
        )
        hashes, hash_commands = _read_job_hashes(client, prefix, queue, snapshot)
    except redis.RedisError as exc:
        message = describe_redis_error(client, exc, password_env=password_env)
        raise ProbeError(f"reading queue {queue!r} failed: {message}") from exc

    state = _build_state(
        snapshot,
        hashes,
        queue=queue,
        prefix=prefix,
        previous=previous,
        read_at_ms=read_at_ms,
        window_start_ms=window_start_ms,
        long_running_ms=long_running_ms,
        active_scan_limit=active_scan_limit,
    )
    state.commands_used = snapshot.commands + hash_commands

    log.info(
        "queue read done queue=%s waiting=%d active=%d failed_in_window=%d "
        "lockless=%d long_running=%d commands=%d ms=%.1f",
        queue,
        state.counts["waiting"],
        state.counts["active"],
        state.failed_in_window,
        len(state.lockless_active),
        len(state.long_running),
        state.commands_used,
        (time.perf_counter() - started) * 1000.0,
    )
    return state


def _check_limits(
    prefix: str,
    queue: str,
    sample_limit: int,
    active_scan_limit: int,
    wait_scan_limit: int,
) -> None:
    if not prefix:
        raise ValueError("BullMQ prefix is empty: set it, 'bull' is the default")
    if not queue:
        raise ValueError("queue name is empty: set the queue names to watch")

    limits = {
        "sample_limit": sample_limit,
        "active_scan_limit": active_scan_limit,
        "wait_scan_limit": wait_scan_limit,
    }
    for name, value in limits.items():
        if value < 0:
            raise ValueError(f"{name} is {value}: use 0 or a positive number")


def _read_snapshot(
    client: redis.Redis,
    prefix: str,
    queue: str,
    *,
    window_start_ms: int,
    sample_limit: int,
    active_scan_limit: int,
    wait_scan_limit: int,
) -> _Snapshot:
    # One MULTI/EXEC makes the counts come from one instant, so a job moving
    # from wait to active during the read is not counted twice.
    pipe = client.pipeline(transaction=True)
    pipe.hgetall(queue_key(prefix, queue, "meta"))
    for name in LIST_STATES:
        pipe.llen(queue_key(prefix, queue, name))
    for name in ("wait", "paused"):
        pipe.lindex(queue_key(prefix, queue, name), -1)
    for name in SORTED_SET_STATES:
        pipe.zcard(queue_key(prefix, queue, name))

    failed_key = queue_key(prefix, queue, "failed")
    pipe.zcount(failed_key, window_start_ms, "+inf")

    # Each range below is skipped at limit 0, because LRANGE -0 -1 would
    # return the whole list.
    if sample_limit:
        pipe.zrevrangebyscore(failed_key, "+inf", window_start_ms, 0, sample_limit)

    # Workers move jobs from the right end of wait to the left end of active,
    # so the right end of active contains the oldest jobs, the ones most
    # likely to be stuck. The stalled checker RPUSHes jobs back onto wait, so
    # they are next to run (Lua scripts of the bullmq package 3.4.4).
    if active_scan_limit:
        pipe.lrange(queue_key(prefix, queue, "active"), -active_scan_limit, -1)
    if wait_scan_limit:
        pipe.lrange(queue_key(prefix, queue, "wait"), -wait_scan_limit, -1)

    commands = len(pipe) + 2
    replies = iter(pipe.execute())
    return _parse_snapshot(
        replies,
        commands=commands,
        sample_limit=sample_limit,
        active_scan_limit=active_scan_limit,
        wait_scan_limit=wait_scan_limit,
    )


def _parse_snapshot(
    replies: Any,
    *,
    commands: int,
    sample_limit: int,
    active_scan_limit: int,
    wait_scan_limit: int,
) -> _Snapshot:
    meta = {_text(k): _text(v) for k, v in (next(replies) or {}).items()}
    lengths = {name: int(next(replies)) for name in LIST_STATES}
    tails = {name: next(replies) for name in ("wait", "paused")}
    sizes = {name: int(next(replies)) for name in SORTED_SET_STATES}
    failed_in_window = int(next(replies))

    failed_ids = _ids(next(replies)) if sample_limit else []
    active_ids = _ids(next(replies)) if active_scan_limit else []
    wait_ids = _ids(next(replies)) if wait_scan_limit else []

    counts = {
        "waiting": _without_marker(lengths["wait"], tails["wait"]),
        "active": lengths["active"],
        "paused": _without_marker(lengths["paused"], tails["paused"]),
        **sizes,
    }
    key_present = any(lengths.values()) or any(sizes.values())

    return _Snapshot(
        meta=meta,
        counts={name: counts[name] for name in COUNT_NAMES},
        key_present=key_present,
        failed_in_window=failed_in_window,
        failed_ids=failed_ids,
        # Newest first in the list, so reverse to report the oldest first.
        active_ids=_real_ids(reversed(active_ids)),
        wait_ids=_real_ids(reversed(wait_ids)),
        commands=commands,
    )


def _read_job_hashes(
    client: redis.Redis, prefix: str, queue: str, snapshot: _Snapshot
) -> tuple[dict[str, list[Any]], int]:
    """Read the fields the checks need from each sampled job, in one pipeline."""
    pipe = client.pipeline(transaction=False)
    plan: list[tuple[str, str]] = []

    for job_id in snapshot.active_ids:
        pipe.exists(queue_key(prefix, queue, f"{job_id}:lock"))
        plan.append(("lock", job_id))
        pipe.hmget(
            queue_key(prefix, queue, job_id),
            ["processedOn", "timestamp", *STALLED_COUNTER_FIELDS],
        )
        plan.append(("active", job_id))

    for job_id in snapshot.wait_ids:
        pipe.hmget(queue_key(prefix, queue, job_id), list(STALLED_COUNTER_FIELDS))
        plan.append(("wait", job_id))

    for job_id in snapshot.failed_ids:
        pipe.hmget(
            queue_key(prefix, queue, job_id),
            ["failedReason", "finishedOn", *ATTEMPTS_FIELDS],
        )
        plan.append(("failed", job_id))

    if not plan:
        return {}, 0

    commands = len(pipe)
    replies = pipe.execute()
    hashes: dict[str, list[Any]] = {}
    for (kind, job_id), reply in zip(plan, replies, strict=True):
        hashes[f"{kind}:{job_id}"] = reply if isinstance(reply, list) else [reply]
    return hashes, commands


def _build_state(
    snapshot: _Snapshot,
    hashes: dict[str, list[Any]],
    *,
    queue: str,
    prefix: str,
    previous: Mapping[str, Any] | None,
    read_at_ms: int,
    window_start_ms: int,
    long_running_ms: int,
    active_scan_limit: int,
) -> QueueState:
    samples = [_failed_job(job_id, hashes) for job_id in snapshot.failed_ids]
    stalled = [s for s in samples if STALLED_REASON in (s.failed_reason or "")]

    state = QueueState(
        queue=queue,
        prefix=prefix,
        exists=bool(snapshot.meta) or snapshot.key_present,
        is_paused="paused" in snapshot.meta,
        counts=snapshot.counts,
        library_version=snapshot.meta.get("version"),
        read_at_ms=read_at_ms,
        window_start_ms=window_start_ms,
        failed_in_window=snapshot.failed_in_window,
        failed_samples=samples,
        failed_sample_complete=len(samples) >= snapshot.failed_in_window,
        stalled_failures_in_window=len(stalled),
        active_checked=len(snapshot.active_ids),
        active_check_capped=snapshot.counts["active"] > active_scan_limit,
        wait_checked=len(snapshot.wait_ids),
    )

    _check_active_jobs(state, snapshot, hashes, read_at_ms, long_running_ms)
    _check_stalled_counters(state, snapshot, hashes, previous)

    before = _previous_ids(previous, "lockless_active")
    state.lockless_active_persisting = [
        job_id for job_id in state.lockless_active if job_id in before
    ]
    state.state["read_at_ms"] = read_at_ms
    state.state["lockless_active"] = list(state.lockless_active)
    return state


def _check_active_jobs(
    state: QueueState,
    snapshot: _Snapshot,
    hashes: dict[str, list[Any]],
    read_at_ms: int,
    long_running_ms: int,
) -> None:
    for job_id in snapshot.active_ids:
        has_lock = bool(hashes[f"lock:{job_id}"][0])
        processed_on, timestamp = (_int(v) for v in hashes[f"active:{job_id}"][:2])

        # Every BullMQ job hash has a timestamp, so a reply without one means
        # the hash is gone (evicted, removed, or written under another prefix).
        if processed_on is None and timestamp is None:
            state.active_without_hash.append(job_id)
        if not has_lock:
            state.lockless_active.append(job_id)

        # processedOn is milliseconds since the epoch, stored as a string.
        if processed_on is not None and read_at_ms - processed_on > long_running_ms:
            age_s = (read_at_ms - processed_on) / 1000.0
            state.long_running.append(LongRunningJob(job_id, processed_on, age_s))


def _check_stalled_counters(
    state: QueueState,
    snapshot: _Snapshot,
    hashes: dict[str, list[Any]],
    previous: Mapping[str, Any] | None,
) -> None:
    before = _previous_counters(previous)
    counters: dict[str, int] = {}

    # The counter fields follow processedOn and timestamp in an active reply.
    for list_name, ids, offset in (
        ("active", snapshot.active_ids, 2),
        ("wait", snapshot.wait_ids, 0),
    ):
        for job_id in ids:
            values = hashes[f"{list_name}:{job_id}"][offset:]
            counter = _first_int(values)
            if not counter:
                continue

            counters[job_id] = counter
            # A job missing from the previous state had counter 0 then,
            # because only jobs with a positive counter are kept.
            if previous is not None and counter > before.get(job_id, 0):
                state.stalled_counter_raised.append(job_id)

    state.stalled_counters = counters
    state.state["stalled_counters"] = dict(counters)


def _failed_job(job_id: str, hashes: dict[str, list[Any]]) -> FailedJob:
    reason, finished_on, *attempts = hashes[f"failed:{job_id}"]
    return FailedJob(
        job_id=job_id,
        failed_reason=_text(reason) if reason is not None else None,
        finished_on_ms=_int(finished_on),
        attempts=_first_int(attempts),
    )


def parse_queue_stats(
    json_body: str | bytes | Mapping[str, Any],
) -> dict[str, dict[str, int]]:
    """Parse a queue-stats body into queue name -> count name -> count.

    The expected shape is {"queues": {"<name>": {"waiting": n, "active": n,
    ...}}}. Count names outside ENDPOINT_COUNT_NAMES are ignored. Raises
    QueueStatsError naming the part of the body that does not fit.
    """
    body: Any = json_body
    if isinstance(json_body, str | bytes):
        try:
            body = json.loads(json_body)
        except ValueError as exc:
            excerpt = _excerpt(json_body)
            raise QueueStatsError(
                f"queue-stats body is not JSON ({exc}): {excerpt}"
            ) from exc

    queues = body.get("queues") if isinstance(body, Mapping) else None
    if not isinstance(queues, Mapping):
        raise QueueStatsError(
            'queue-stats body has no "queues" object: expected '
            '{"queues": {"<name>": {"waiting": 0, ...}}}'
        )

    return {
        str(name): _endpoint_counts(name, counts) for name, counts in queues.items()
    }


def _endpoint_counts(name: Any, counts: Any) -> dict[str, int]:
    if not isinstance(counts, Mapping):
        raise QueueStatsError(
            f"queue-stats entry for queue {name!r} is {counts!r}: expected an "
            "object of counts"
        )

    parsed = {}
    for count_name in ENDPOINT_COUNT_NAMES:
        if count_name not in counts:
            continue

        value = counts[count_name]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise QueueStatsError(
                f"queue-stats count {count_name!r} of queue {name!r} is "
                f"{value!r}: expected a non-negative integer"
            )
        parsed[count_name] = value

    return parsed


def compare_counts(
    redis_counts: Mapping[str, int],
    endpoint_counts: Mapping[str, int],
    *,
    tolerance: int = 0,
) -> list[str]:
    """List the counts on which Redis and the endpoint differ by more than
    `tolerance`, as "failed: Redis 3, endpoint 2".

    Only counts the endpoint reports are compared. A missing Redis count is
    0, as a missing key is in BullMQ.
    """
    mismatches = []

    for name in ENDPOINT_COUNT_NAMES:
        if name not in endpoint_counts:
            continue

        in_redis = redis_counts.get(name, 0)
        at_endpoint = endpoint_counts[name]
        if abs(in_redis - at_endpoint) > tolerance:
            mismatches.append(f"{name}: Redis {in_redis}, endpoint {at_endpoint}")

    return mismatches


def _without_marker(length: int, tail: Any) -> int:
    if tail is not None and _text(tail).startswith(LEGACY_MARKER_PREFIX):
        return max(length - 1, 0)
    return length


def _ids(reply: Any) -> list[str]:
    return [_text(item) for item in reply or []]


def _real_ids(ids: Any) -> list[str]:
    """Drop legacy markers and repeats, keeping the first occurrence."""
    seen: dict[str, None] = {}
    for job_id in ids:
        if not job_id.startswith(LEGACY_MARKER_PREFIX):
            seen.setdefault(job_id, None)
    return list(seen)


def _previous_ids(previous: Mapping[str, Any] | None, name: str) -> set[str]:
    if previous is None:
        return set()

    ids = previous.get(name)
    if not isinstance(ids, list):
        return set()
    return {str(job_id) for job_id in ids}


def _previous_counters(previous: Mapping[str, Any] | None) -> dict[str, int]:
    if previous is None:
        return {}

    counters = previous.get("stalled_counters")
    if not isinstance(counters, Mapping):
        return {}
    return {str(k): v for k, v in counters.items() if isinstance(v, int)}


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _int(value: Any) -> int | None:
    if value is None:
        return None

    try:
        return int(_text(value))
    except ValueError:
        return None


def _first_int(values: Sequence[Any]) -> int | None:
    for value in values:
        number = _int(value)
        if number is not None:
            return number
    return None


def _excerpt(body: str | bytes, limit: int = 200) -> str:
    text = _text(body)
    if len(text) <= limit:
        return text
    return text[:limit] + "...[cut]"
