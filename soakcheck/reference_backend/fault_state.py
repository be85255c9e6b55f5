"""The faults currently injected into one reference backend process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

SERVICE_NAMES = ("database", "supabase", "backgroundJobs", "webhookQueue")

# Key in a job's data that marks a job created by a fault; the processors
# act on it instead of doing the job's normal work.
FAULT_MARKER = "soakFault"


@dataclass
class LongRunningHold:
    """A job kept active on purpose until the fault is cleared."""

    queue: str
    minutes: float
    job_id: str | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class FaultState:
    """Flags and resources of the active faults; one instance per app."""

    down_services: set[str] = field(default_factory=set)
    health_delay_ms: int = 0
    invalid_health: bool = False
    accept_bad_signature: bool = False
    process_duplicates: bool = False
    debt_limit_off: bool = False
    reconciliation_fails: bool = False
    memory_blocks: list[bytearray] = field(default_factory=list)
    leak_task: asyncio.Task[None] | None = None
    long_running: dict[str, LongRunningHold] = field(default_factory=dict)
    stalled_jobs: list[tuple[str, str]] = field(default_factory=list)
    failed_jobs: list[tuple[str, str]] = field(default_factory=list)
    paused_queues: set[str] = field(default_factory=set)
    held_stalled_checks: set[str] = field(default_factory=set)

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the memory faults."""
        return sum(len(block) for block in self.memory_blocks)

    def release_held_resources(self) -> list[str]:
        """Stop the memory leak, free memory, let held jobs finish; return names."""
        released = []
        if self.leak_task is not None:
            self.leak_task.cancel()
            self.leak_task = None
            released.append("memory_leak")
        if self.memory_blocks:
            self.memory_blocks.clear()
            released.append("memory")
        if self.long_running:
            for hold in self.long_running.values():
                hold.release.set()
            self.long_running.clear()
            released.append("long_running_job")
        return released

    def describe(self) -> dict[str, Any]:
        """List the active faults with their parameters, for GET /_faults."""
        active: dict[str, Any] = {}

        if self.down_services:
            active["service_down"] = {"services": sorted(self.down_services)}
        if self.health_delay_ms:
            active["slow_health"] = {"delay_ms": self.health_delay_ms}
        if self.invalid_health:
            active["invalid_health"] = {}
        if self.accept_bad_signature:
            active["accept_bad_signature"] = {}
        if self.process_duplicates:
            active["process_duplicates"] = {}
        if self.debt_limit_off:
            active["debt_limit_off"] = {}
        if self.reconciliation_fails:
            active["reconciliation_fails"] = {}

        if self.leak_task is not None and not self.leak_task.done():
            active["memory_leak"] = {"held_mb": round(self.memory_bytes / 2**20, 1)}
        elif self.memory_blocks:
            active["memory_grow"] = {"held_mb": round(self.memory_bytes / 2**20, 1)}

        if self.long_running:
            active["long_running_job"] = [
                {"queue": hold.queue, "jobId": hold.job_id}
                for hold in self.long_running.values()
            ]
        if self.stalled_jobs:
            active["stalled_job"] = [
                {"queue": queue, "jobId": job_id} for queue, job_id in self.stalled_jobs
            ]
        if self.failed_jobs:
            active["failed_job"] = [
                {"queue": queue, "jobId": job_id} for queue, job_id in self.failed_jobs
            ]
        if self.paused_queues:
            active["pause_queue"] = {"queues": sorted(self.paused_queues)}
        return active
