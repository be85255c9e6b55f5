"""The pytest plugin that turns a run of the checklist into a checkpoint.

It loads and validates the target file once, gives each test an
`observe` object to record its measured value, threshold and unit, adds
those to the HTML report's table, and at the end writes the checkpoint
record. The HTML and JUnit reports are written under temporary names and
renamed into place when the run ends, so a killed run leaves no half file.
"""

from __future__ import annotations

import html
import logging
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from soakcheck import __version__
from soakcheck.alerts import WebhookURLError, notify_checkpoint, webhook_url_from_env
from soakcheck.checklist import spec_for
from soakcheck.config import DEFAULT_TARGET, Target, TargetError, load_target
from soakcheck.incident import write_snapshot
from soakcheck.observation import Observation, with_unit
from soakcheck.record import SCHEMA, latest_record, write_json_atomic
from soakcheck.redact import mask_secrets, mask_values
from soakcheck.window import Window, load_window, now_utc

log = logging.getLogger(__name__)

SESSION_KEY = pytest.StashKey["SoakSession"]()
OBSERVATION_KEY = pytest.StashKey[Observation]()


@dataclass
class SoakSession:
    """Everything one checkpoint run collects before it writes its record."""

    target: Target
    checkpoint_base: Path | None
    window: Window | None
    slot_index: int | None
    kind: str
    previous: dict[str, Any] | None
    started_at: datetime = field(default_factory=now_utc)
    results: list[dict[str, Any]] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)

    @property
    def checkpoint_id(self) -> str | None:
        return self.checkpoint_base.name if self.checkpoint_base else None

    def path_for(self, suffix: str) -> Path | None:
        if self.checkpoint_base is None:
            return None
        return self.checkpoint_base.with_name(self.checkpoint_base.name + suffix)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("soakcheck")
    group.addoption(
        "--target",
        default=os.environ.get("TARGET") or str(DEFAULT_TARGET),
        help="target TOML file describing the backend (default: $TARGET or "
        f"{DEFAULT_TARGET})",
    )
    group.addoption(
        "--checkpoint",
        default=None,
        help="write this checkpoint's reports as PATH.json, PATH.html and PATH.xml",
    )
    group.addoption(
        "--window-dir",
        default=None,
        help="folder of the window this checkpoint belongs to",
    )
    group.addoption(
        "--slot-index", type=int, default=None, help="index of the window slot"
    )
    group.addoption(
        "--checkpoint-kind",
        default="scheduled",
        choices=("scheduled", "p0"),
        help="scheduled checkpoint or the P0 run",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "check(id): the checklist id a test reports")
    target_path = config.getoption("target", default=None)
    if target_path is None or not _runs_checklist(config):
        return

    try:
        target = load_target(target_path)
    except TargetError as error:
        raise pytest.UsageError(str(error)) from None

    base = config.getoption("checkpoint")
    window_dir = config.getoption("window_dir")
    window = load_window(Path(window_dir)) if window_dir else None
    checkpoint_base = Path(base) if base else None
    kind = config.getoption("checkpoint_kind")
    previous = latest_record(window.directory) if window else None

    session = SoakSession(
        target=target,
        checkpoint_base=checkpoint_base,
        window=window,
        slot_index=config.getoption("slot_index"),
        kind=kind,
        previous=previous,
    )
    if previous:
        session.state = dict(previous.get("state", {}))
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(SessionHooks(session), "soakcheck-session")

    if checkpoint_base is not None:
        # Reports go to hidden partial files first, renamed at the end.
        config.option.htmlpath = str(_partial(session.path_for(".html")))
        config.option.self_contained_html = True
        config.option.xmlpath = str(_partial(session.path_for(".xml")))
    _add_run_context(config, session)


def _runs_checklist(config: pytest.Config) -> bool:
    """Return whether this run collects the checklist in tests/.

    Other suites of the project (the self-tests) load this plugin through the
    top-level conftest.py but have no target to check.
    """
    if config.getoption("checkpoint"):
        return True
    checklist = config.rootpath / "tests"
    for argument in config.args:
        path = (config.invocation_params.dir / argument.split("::")[0]).resolve()
        if path == checklist or checklist in path.parents:
            return True
    return False


def _ends_with(path: Path, closing: bytes) -> bool:
    with path.open("rb") as stream:
        stream.seek(max(0, path.stat().st_size - 256))
        return stream.read().rstrip().endswith(closing)


def _partial(path: Path | None) -> Path:
    assert path is not None
    return path.with_name(f".{path.name}.partial")


def _add_run_context(config: pytest.Config, session: SoakSession) -> None:
    try:
        from pytest_metadata.plugin import metadata_key
    except ImportError:
        return
    metadata = config.stash.get(metadata_key, None)
    if metadata is None:
        return
    metadata["Target"] = f"{session.target.name} ({session.target.source})"
    metadata["Backend"] = session.target.backend.base_url
    if session.window is not None:
        metadata["Window"] = session.window.id
        metadata["Window start"] = session.window.start.isoformat()
        if session.slot_index is not None:
            metadata["Slot"] = session.window.slot(session.slot_index).label
    metadata["Checkpoint"] = session.checkpoint_id or "(not recorded)"
    metadata["Started"] = session.started_at.isoformat(timespec="seconds")
    metadata["soakcheck"] = __version__
    # Environment variables can carry secrets; the report has no use for them.
    metadata.pop("Environment", None)


def soak_session(config: pytest.Config) -> SoakSession:
    try:
        return config.stash[SESSION_KEY]
    except KeyError:
        raise pytest.UsageError("soakcheck: no target loaded; pass --target") from None


@pytest.fixture(scope="session")
def soak(request: pytest.FixtureRequest) -> SoakSession:
    """The checkpoint being run: target, window, previous record, state."""
    return soak_session(request.config)


@pytest.fixture(scope="session")
def target(soak: SoakSession) -> Target:
    """The validated target file."""
    return soak.target


@pytest.fixture
def observe(request: pytest.FixtureRequest) -> Observation:
    """The measured value, threshold and unit of the current checklist test."""
    marker = request.node.get_closest_marker("check")
    if marker is None:
        raise pytest.UsageError(
            f"{request.node.nodeid} uses `observe` but has no @pytest.mark.check"
        )
    check_id = check_id_of(request.node)
    assert check_id is not None
    observation = Observation(check_id)
    request.node.stash[OBSERVATION_KEY] = observation
    return observation


def check_id_of(item: pytest.Item) -> str | None:
    """Return the checklist id of a test: `queues.failed[webhook-processing]`.

    The parameter's own value names the instance, not pytest's id, which
    escapes non-ASCII names (a queue called "ünïcødé" would become
    "\\xfcn\\xef...") and so could never match a resolution note.
    """
    marker = item.get_closest_marker("check")
    if marker is None:
        return None
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return str(marker.args[0])
    values = list(callspec.params.values())
    if len(values) == 1 and isinstance(values[0], str | Path):
        label = values[0].name if isinstance(values[0], Path) else values[0]
    else:
        label = callspec.id
    return f"{marker.args[0]}[{label}]"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    observation = item.stash.get(OBSERVATION_KEY, None)
    check_id = check_id_of(item)
    if check_id is None:
        return
    if observation is None:
        observation = Observation(check_id)
    report.soak_observation = observation.to_dict()
    _mask_report(report, soak_session(item.config).target.known_secrets())

    if report.failed and observation.evidence:
        try:
            from pytest_html import extras
        except ImportError:
            return
        known = soak_session(item.config).target.known_secrets()
        text = "\n".join(
            mask_values(mask_secrets(line), known) for line in observation.evidence
        )
        report.extras = [*getattr(report, "extras", []), extras.text(text, "evidence")]


def _mask_report(report: pytest.TestReport, known: list[str]) -> None:
    """Mask secrets in the failure text that the terminal, HTML and XML show.

    A health body or a job's failedReason can carry a password or a token,
    and pytest prints them verbatim otherwise.
    """
    if report.longrepr is None:
        return
    if isinstance(report.longrepr, tuple):
        path, line, reason = report.longrepr
        report.longrepr = (path, line, mask_values(mask_secrets(reason), known))
        return
    report.longrepr = mask_values(mask_secrets(report.longreprtext), known)


def _result_of(
    report: pytest.TestReport, observation: dict[str, Any]
) -> dict[str, Any]:
    outcome = report.outcome
    if report.when == "setup" and report.failed:
        outcome = "failed"
    message = ""
    if report.skipped and isinstance(report.longrepr, tuple):
        message = str(report.longrepr[2]).removeprefix("Skipped: ")
    elif report.failed:
        message = _failure_line(report)
    elif outcome == "passed":
        message = _describe(observation)
    return {
        "check": observation["check"],
        "nodeid": report.nodeid,
        "outcome": outcome,
        "severity": observation["severity"],
        "criterion": observation["criterion"],
        "area": observation["area"],
        "subject": observation["subject"],
        "value": observation["value"],
        "threshold": observation["threshold"],
        "unit": observation["unit"],
        "operator": observation["operator"],
        "message": mask_secrets(message),
        "evidence": [mask_secrets(line) for line in observation["evidence"][:10]],
        "duration_s": round(report.duration, 4),
    }


def _describe(observation: dict[str, Any]) -> str:
    fields = {key: observation[key] for key in Observation.__dataclass_fields__}
    return Observation(**fields).describe()


def _failure_line(report: pytest.TestReport) -> str:
    text = report.longreprtext or ""
    for line in text.splitlines():
        if line.startswith("E "):
            reason = line[2:].strip()
            return reason.removeprefix("Failed: ").removeprefix("AssertionError: ")
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else "failed").removeprefix("Failed: ")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if SESSION_KEY not in config.stash:
        return
    soak = config.stash[SESSION_KEY]
    path = soak.path_for(".json")
    if path is None:
        return
    record = build_record(soak)
    snapshot = soak.path_for(".incident.txt")
    assert snapshot is not None
    try:
        if write_snapshot(soak.target, record, snapshot) is not None:
            record["artifacts"]["incident"] = snapshot.name
            soak.artifacts["incident"] = snapshot.name
    except Exception:  # the record matters more than the snapshot
        log.exception("incident snapshot failed; the record is written without it")
    known = soak.target.known_secrets()
    write_json_atomic(path, _mask_known(record, known))
    summary = record["summary"]
    log.info(
        "checkpoint written id=%s window=%s passed=%d failed=%d criticals=%d",
        soak.checkpoint_id,
        soak.window.id if soak.window else "-",
        summary["passed"],
        summary["failed"],
        summary["criticals"],
    )
    _send_alerts(soak, record)
    # A scheduled checkpoint's exit status follows the primary criteria, not
    # every warning; a P0 run fails when any of its tests failed.
    if soak.kind == "p0":
        session.exitstatus = 1 if summary["failed"] else 0
    else:
        session.exitstatus = 1 if summary["primary_failed"] else 0


def _send_alerts(soak: SoakSession, record: dict[str, Any]) -> None:
    """Notify Slack of new and cleared failures; never fails the checkpoint."""
    if soak.window is None:
        return
    variable = soak.target.alerts.slack_webhook_env
    try:
        url = webhook_url_from_env(variable, {**soak.target.environment, **os.environ})
    except WebhookURLError as error:
        log.error("alerts not sent: %s", error)
        print(f"soakcheck: alerts not sent: {error}", file=sys.stderr)
        return
    # Short timeouts: a dead webhook must not hold the checkpoint for minutes;
    # what is not delivered is retried at the next checkpoint.
    sent = notify_checkpoint(
        soak.window.directory, record, url, timeout_s=3.0, retries=1
    )
    failed = [entry for entry in sent if not entry.get("delivered")]
    if failed:
        print(
            f"soakcheck: {len(failed)} Slack message(s) not delivered "
            f"({failed[0].get('error')}); they are retried at the next checkpoint",
            file=sys.stderr,
        )


def _mask_known(value: Any, known: list[str]) -> Any:
    """Mask configured secret values anywhere in a JSON-ready structure."""
    if not known:
        return value
    if isinstance(value, str):
        return mask_values(value, known)
    if isinstance(value, dict):
        return {key: _mask_known(item, known) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask_known(item, known) for item in value]
    return value


def build_record(soak: SoakSession) -> dict[str, Any]:
    """Assemble the JSON record of a finished checkpoint."""
    finished = now_utc()
    results = soak.results
    failed = [r for r in results if r["outcome"] == "failed"]
    slot = None
    if soak.window is not None and soak.slot_index is not None:
        slot = soak.window.slot(soak.slot_index)
    return {
        "schema": SCHEMA,
        "soakcheck_version": __version__,
        "target": soak.target.name,
        "backend": soak.target.backend.base_url,
        "window": soak.window.to_dict() if soak.window else None,
        "checkpoint": {
            "id": soak.checkpoint_id,
            "kind": soak.kind,
            "slot_index": slot.index if slot else None,
            "slot_id": slot.id if slot else None,
            "slot_label": slot.label if slot else None,
            "due_at": slot.due.isoformat() if slot else None,
            "started_at": soak.started_at.isoformat(),
            "finished_at": finished.isoformat(),
            "duration_s": round((finished - soak.started_at).total_seconds(), 3),
        },
        "summary": {
            "total": len(results),
            "passed": sum(r["outcome"] == "passed" for r in results),
            "failed": len(failed),
            "skipped": sum(r["outcome"] == "skipped" for r in results),
            "criticals": sum(r["severity"] == "critical" for r in failed),
            "warnings": sum(r["severity"] == "warning" for r in failed),
            "infos": sum(r["severity"] == "info" for r in failed),
            "primary_failed": sum(r["criterion"] == "primary" for r in failed),
        },
        "results": results,
        "measurements": soak.measurements,
        "state": soak.state,
        "artifacts": soak.artifacts,
    }


def _publish_reports(config: pytest.Config, soak: SoakSession) -> None:
    if soak.checkpoint_base is None:
        return
    for suffix, closing in ((".html", b"</html>"), (".xml", b">")):
        final = soak.path_for(suffix)
        assert final is not None
        partial = _partial(final)
        if not partial.exists():
            continue
        if not _ends_with(partial, closing):
            # A full disk or a kill mid-write leaves a cut-off report; keep it
            # out of the final name rather than present it as complete.
            log.error("report %s is incomplete; left as %s", final.name, partial)
            continue
        os.replace(partial, final)
    # NOTE: pytest-html 4 prints the path it wrote in its terminal summary;
    # pointing its private attribute at the final name keeps that line true.
    for plugin in config.pluginmanager.get_plugins():
        if hasattr(plugin, "_report_path"):
            plugin._report_path = soak.path_for(".html")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # A run interrupted before sessionfinish still gets what was written.
    soak = config.stash.get(SESSION_KEY, None)
    if soak is not None:
        _publish_reports(config, soak)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


@pytest.hookimpl(tryfirst=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    soak = config.stash.get(SESSION_KEY, None)
    if soak is None:
        return
    # The reports are complete once every sessionfinish hook has run, which
    # pytest guarantees before the terminal summary.
    _publish_reports(config, soak)
    failed = [r for r in soak.results if r["outcome"] == "failed"]
    passed = sum(r["outcome"] == "passed" for r in soak.results)
    criticals = sum(r["severity"] == "critical" for r in failed)
    warnings = sum(r["severity"] == "warning" for r in failed)
    infos = sum(r["severity"] == "info" for r in failed)
    where = soak.path_for(".html")
    slot = ""
    if soak.window is not None and soak.slot_index is not None:
        slot = f"{soak.window.slot(soak.slot_index).label}, "
    terminalreporter.write_sep("=", "checkpoint summary")
    for result in failed:
        terminalreporter.write_line(
            f"  {result['severity'].upper():8} {result['check']}: {result['message']}"
        )
    terminalreporter.write_line(
        f"checkpoint {soak.checkpoint_id or '(not recorded)'} ({slot}"
        f"target {soak.target.name}): {passed} passed, {_count(warnings, 'warning')}"
        f", {_count(criticals, 'critical')}, {_count(infos, 'info notice')}; "
        f"report {where or 'not written (no --checkpoint)'}"
    )


class SessionHooks:
    """Hooks that need the checkpoint but get no `config` argument from pytest."""

    def __init__(self, soak: SoakSession) -> None:
        self.soak = soak

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        observation = getattr(report, "soak_observation", None)
        if observation is None:
            return
        failed_early = report.when == "setup" and not report.passed
        if report.when == "call" or failed_early:
            self.soak.results.append(_result_of(report, observation))

    def pytest_html_report_title(self, report: Any) -> None:
        _set_title(self.soak, report)

    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str]
    ) -> None:
        incident = self.soak.artifacts.get("incident")
        if incident:
            link = html.escape(incident)
            prefix.append(
                "<p><strong>A critical check failed.</strong> Incident snapshot "
                f'(log lines, Redis INFO, queue counts): <a href="{link}">{link}</a>'
                "</p>"
            )


def _set_title(soak: SoakSession, report: Any) -> None:
    slot = ""
    if soak.window is not None and soak.slot_index is not None:
        slot = f" — {soak.window.slot(soak.slot_index).label}"
    report.title = f"soakcheck checkpoint: {soak.target.name}{slot}"


def pytest_html_results_table_header(cells: list[str]) -> None:
    cells.insert(1, '<th class="sortable" data-column-type="check">Check</th>')
    cells.insert(2, "<th>Measured</th>")
    cells.insert(3, "<th>Threshold</th>")
    cells.insert(4, '<th class="sortable" data-column-type="severity">Severity</th>')


def pytest_html_results_table_row(report: pytest.TestReport, cells: list[str]) -> None:
    observation = getattr(report, "soak_observation", None) or {}
    check = observation.get("check", "")
    measured = threshold = ""
    if observation.get("value") is not None:
        fields = {key: observation[key] for key in Observation.__dataclass_fields__}
        item = Observation(**fields)
        measured = with_unit(item.value, item.unit)
        if item.threshold is not None:
            threshold = f"{item.operator} {with_unit(item.threshold, item.unit)}"
    severity = ""
    if observation and report.failed:
        severity = observation.get("severity", "")
    elif observation:
        severity = f"({spec_for(check).severity})"
    cells.insert(1, f'<td class="col-check">{html.escape(check)}</td>')
    cells.insert(2, f"<td>{html.escape(measured)}</td>")
    cells.insert(3, f"<td>{html.escape(threshold)}</td>")
    cells.insert(4, f'<td class="col-severity">{html.escape(severity)}</td>')


def pytest_html_results_table_html(report: pytest.TestReport, data: list[str]) -> None:
    """Show a skipped check's reason as a sentence, not as pytest's raw tuple."""
    if not (report.skipped and isinstance(report.longrepr, tuple) and data):
        return

    path, line, reason = report.longrepr
    reason = str(reason).removeprefix("Skipped: ")
    data[0] = html.escape(f"Skipped: {reason} ({Path(path).name}:{line})") + "\n"
