"""BullMQ queues: no failed job in the window, none stalled or stuck, not paused."""

import pytest

from soakcheck.config import Target
from soakcheck.observation import Observation
from soakcheck.probes.queues import QueueState, compare_counts
from soakcheck.probes.result import ProbeResult

pytestmark = pytest.mark.checklist


def _state(queue_states: dict[str, ProbeResult[QueueState]], queue: str) -> QueueState:
    return queue_states[queue].require()


@pytest.mark.check("queues.failed")
def test_queues_failed(
    queue: str,
    queue_states: dict[str, ProbeResult[QueueState]],
    observe: Observation,
) -> None:
    """No job of the queue failed within the window."""
    state = _state(queue_states, queue)
    observe.record(
        state.failed_in_window,
        threshold=0,
        unit="jobs",
        operator="==",
        subject=f"jobs of {queue} failed in the window",
    )
    observe.detail = f"{state.counts.get('failed', 0)} failed in all"
    observe.evidence = [
        f"job {sample.job_id}: {sample.failed_reason}"
        for sample in state.failed_samples
    ]

    assert observe.holds(), observe.describe()


@pytest.mark.check("queues.stalled")
def test_queues_stalled(
    queue: str,
    target: Target,
    queue_states: dict[str, ProbeResult[QueueState]],
    observe: Observation,
) -> None:
    """No active job of the queue lost its lock or ran past the time limit."""
    state = _state(queue_states, queue)
    problems = []
    problems += [
        f"job {job_id} active without lock" for job_id in state.lockless_active
    ]
    problems += [
        f"job {job.job_id} active for {job.age_s / 60:.1f} min"
        for job in state.long_running
    ]
    problems += [
        f"job {job_id} stalled counter raised"
        for job_id in state.stalled_counter_raised
    ]
    if state.stalled_failures_in_window:
        problems.append(
            f"{state.stalled_failures_in_window} jobs failed as stalled in the window"
        )
    # One job can be both lockless and long-running; it counts once.
    jobs = set(state.lockless_active)
    jobs |= {job.job_id for job in state.long_running}
    jobs |= set(state.stalled_counter_raised)
    stuck = len(jobs) + state.stalled_failures_in_window
    observe.record(
        stuck,
        threshold=0,
        unit="jobs",
        operator="==",
        subject=f"stalled or stuck jobs of {queue} "
        f"(limit {target.redis.stalled_after / 60:g} min active)",
    )
    observe.evidence = problems

    assert observe.holds(), f"{observe.describe()}: {'; '.join(problems[:5])}"


@pytest.mark.check("queues.paused")
def test_queues_paused(
    queue: str,
    queue_states: dict[str, ProbeResult[QueueState]],
    observe: Observation,
) -> None:
    """The queue is not paused."""
    state = _state(queue_states, queue)
    observe.record(
        "paused" if state.is_paused else "running",
        threshold="running",
        operator="==",
        subject=f"queue {queue}",
    )

    assert observe.holds(), observe.describe()


@pytest.mark.check("queues.stats_match")
def test_queues_stats_match(
    queue: str,
    queue_states: dict[str, ProbeResult[QueueState]],
    queue_stats: ProbeResult[dict[str, dict[str, int]]] | None,
    observe: Observation,
) -> None:
    """The backend's queue-stats endpoint reports the counts Redis holds."""
    if queue_stats is None:
        pytest.skip("no [queue_stats] endpoint configured in the target file")
    state = _state(queue_states, queue)
    endpoint = queue_stats.require()
    if queue not in endpoint:
        pytest.fail(
            f"queue-stats endpoint does not list {queue!r} (it lists: "
            f"{', '.join(sorted(endpoint)) or 'nothing'})"
        )

    # The two reads are moments apart on a live queue, so a small drift is normal.
    mismatches = compare_counts(state.counts, endpoint[queue], tolerance=2)
    observe.record(
        len(mismatches),
        threshold=0,
        unit="counts",
        operator="==",
        subject=f"queue-stats counts of {queue} that differ from Redis",
    )
    observe.detail = "; ".join(mismatches)

    assert observe.holds(), observe.describe()
