"""A probe's outcome as a value, so one unreachable system fails only its checks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

import pytest

from soakcheck.probes.errors import ProbeError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class ProbeResult(Generic[T]):
    """Facts a probe returned, or the reason it could not measure."""

    value: T | None = None
    error: str | None = None

    def require(self) -> T:
        """Return the facts, or fail the calling test with the probe's reason."""
        if self.error is not None:
            pytest.fail(self.error, pytrace=False)
        # A probe may return None for "not configured"; the test decides.
        return cast(T, self.value)


def attempt(name: str, probe: Callable[[], T]) -> ProbeResult[T]:
    """Run a probe, turning its failure into a reason instead of an exception."""
    try:
        return ProbeResult(value=probe())
    except ProbeError as error:
        log.info("probe %s could not measure: %s", name, error)
        return ProbeResult(error=str(error))
    except Exception as error:  # a probe bug must not cost the checkpoint
        log.exception("probe %s failed unexpectedly", name)
        return ProbeResult(
            error=f"{name} probe failed: {type(error).__name__}: {error}"
        )
