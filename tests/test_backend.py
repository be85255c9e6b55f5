"""Backend process: resident memory of the process and its children."""

import pytest

from soakcheck.config import Target
from soakcheck.observation import MB, Observation
from soakcheck.probes.process import ProcessMemory
from soakcheck.probes.result import ProbeResult

pytestmark = pytest.mark.checklist


@pytest.mark.check("backend.memory")
def test_backend_memory(
    target: Target,
    backend_memory: ProbeResult[ProcessMemory | None],
    observe: Observation,
) -> None:
    """The backend's resident memory stays under the primary limit."""
    memory = backend_memory.require()
    if memory is None:
        pytest.skip(
            "no backend memory source configured: set backend.process.port, "
            "pid_file, cmdline_pattern, metrics_url or memory_json_path"
        )
    limits = target.backend.process
    rss_mb = memory.rss_bytes / MB
    observe.record(
        round(rss_mb, 1),
        threshold=limits.memory_primary_mb,
        unit="MB",
        operator="<",
        subject="backend RSS",
    )
    observe.detail = f"measured from {memory.source}"
    if rss_mb >= limits.memory_critical_mb:
        observe.escalate("critical")
        observe.detail += f"; above the {limits.memory_critical_mb:g} MB critical limit"

    assert observe.holds(), observe.describe()
