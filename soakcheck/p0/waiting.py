"""Bounded polling: read until a condition is true or the deadline passes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    retry_if_result,
    stop_after_delay,
    wait_fixed,
)

from soakcheck.probes.errors import ProbeError

T = TypeVar("T")


class PollingStopped(ProbeError):
    """A failure that polling again cannot fix, such as a 401 or 404 response."""


def poll(
    read: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout_s: float,
    interval_s: float = 0.2,
) -> T:
    """Call `read` until `done` holds for its result; return the last result.

    A ProbeError (a backend or Redis hiccup) is retried until the deadline,
    then raised, but PollingStopped is raised at once. The deadline may pass
    by one interval and one read.
    """

    def last_outcome(state: RetryCallState) -> T:
        assert state.outcome is not None
        return state.outcome.result()

    retrying = Retrying(
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(interval_s),
        retry=retry_if_result(lambda result: not done(result))
        | (
            retry_if_exception_type(ProbeError)
            & retry_if_not_exception_type(PollingStopped)
        ),
        retry_error_callback=last_outcome,
    )
    return retrying(read)
