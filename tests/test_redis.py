"""Redis: reachable, memory, eviction policy and persistence."""

from typing import Any

import pytest

from soakcheck.config import Target
from soakcheck.observation import MB, Observation
from soakcheck.probes.redis_info import RedisFacts
from soakcheck.probes.result import ProbeResult

pytestmark = pytest.mark.checklist


@pytest.mark.check("redis.reachable")
def test_redis_reachable(
    redis_facts: ProbeResult[RedisFacts], observe: Observation
) -> None:
    """Redis replies to PING."""
    facts = redis_facts.require()
    observe.record(facts.ping_ms, unit="ms", subject="Redis PING")

    assert facts.ping_ok, f"Redis PING failed: {facts.ping_error}"


@pytest.mark.check("redis.memory")
def test_redis_memory(
    target: Target, redis_facts: ProbeResult[RedisFacts], observe: Observation
) -> None:
    """Redis used_memory stays under the check threshold."""
    facts = redis_facts.require()
    if facts.used_memory is None:
        pytest.fail("Redis INFO has no used_memory field; is this a Redis server?")
    used_mb = facts.used_memory / MB
    limits = target.redis
    observe.record(
        round(used_mb, 2),
        threshold=limits.memory_check_mb,
        unit="MB",
        operator="<",
        subject="Redis used_memory",
    )
    if used_mb >= limits.memory_primary_mb:
        observe.detail = f"above the {limits.memory_primary_mb:g} MB primary limit"
    else:
        observe.escalate("warning", "secondary")

    assert observe.holds(), observe.describe()


@pytest.mark.check("redis.eviction_policy")
def test_redis_eviction_policy(
    target: Target, redis_facts: ProbeResult[RedisFacts], observe: Observation
) -> None:
    """maxmemory-policy is noeviction, because BullMQ loses jobs otherwise."""
    facts = redis_facts.require()
    required = target.redis.required_policy
    policy = facts.maxmemory_policy or "unknown (not in INFO)"
    observe.record(
        policy, threshold=required, operator="==", subject="Redis maxmemory-policy"
    )

    assert observe.holds(), (
        f"{observe.describe()}; run CONFIG SET maxmemory-policy {required} "
        f"and set it in redis.conf"
    )


def _previous_redis(previous: dict[str, Any] | None) -> dict[str, Any]:
    return (previous or {}).get("state", {}).get("redis", {}) or {}


@pytest.mark.check("redis.evictions")
def test_redis_evictions(
    redis_facts: ProbeResult[RedisFacts],
    previous: dict[str, Any] | None,
    observe: Observation,
) -> None:
    """No key was evicted since the last checkpoint."""
    facts = redis_facts.require()
    if facts.evicted_keys is None:
        pytest.skip("Redis INFO has no evicted_keys field")
    before = _previous_redis(previous).get("evicted_keys")
    baseline = before if isinstance(before, int) and before <= facts.evicted_keys else 0
    observe.record(
        facts.evicted_keys - baseline,
        threshold=0,
        unit="keys",
        operator="==",
        subject="keys evicted since the last checkpoint",
    )

    assert observe.holds(), observe.describe()


@pytest.mark.check("redis.persistence")
def test_redis_persistence(
    redis_facts: ProbeResult[RedisFacts], observe: Observation
) -> None:
    """The last RDB save and AOF write succeeded, where persistence is on."""
    facts = redis_facts.require()
    failures = facts.persistence_failures()
    observe.record(
        ", ".join(failures) or "ok",
        threshold="ok",
        operator="==",
        subject="Redis persistence status",
    )

    assert observe.holds(), observe.describe()


@pytest.mark.check("redis.rejected_connections")
def test_redis_rejected_connections(
    redis_facts: ProbeResult[RedisFacts],
    previous: dict[str, Any] | None,
    observe: Observation,
) -> None:
    """Redis rejected no client connection since the last checkpoint."""
    facts = redis_facts.require()
    if facts.rejected_connections is None:
        pytest.skip("Redis INFO has no rejected_connections field")
    before = _previous_redis(previous).get("rejected_connections")
    current = facts.rejected_connections
    baseline = before if isinstance(before, int) and before <= current else 0
    observe.record(
        current - baseline,
        threshold=0,
        unit="connections",
        operator="==",
        subject="connections rejected since the last checkpoint",
    )

    assert observe.holds(), observe.describe()
