"""Command line: `python -m soakcheck check|verdict|window|demo|monitor|p0`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from soakcheck import __version__
from soakcheck.checkpoint import (
    DEFAULT_REPORTS,
    open_window,
    plan_checkpoint,
    run_checkpoint,
)
from soakcheck.config import DEFAULT_TARGET, TargetError, load_target
from soakcheck.locks import AlreadyRunning
from soakcheck.verdict import decide
from soakcheck.verdict_report import write_reports
from soakcheck.window import Window, list_windows, load_window, new_window

log = logging.getLogger("soakcheck")

EXIT_USAGE = 3


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # httpx logs every request with its full URL at INFO; that is noise here.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def _target_path(value: str | None) -> Path:
    return Path(value or os.environ.get("TARGET") or DEFAULT_TARGET)


def _reports(value: str | None) -> Path:
    return Path(value or os.environ.get("REPORTS") or DEFAULT_REPORTS)


def _find_window(reports: Path, target_name: str, window_id: str | None) -> Window:
    if window_id:
        directory = reports / window_id
        if not directory.is_dir():
            raise SystemExit(
                f"window {window_id!r} not found under {reports}; "
                f"list them with `python -m soakcheck window list`"
            )
        return load_window(directory)
    windows = list_windows(reports, target_name)
    if not windows:
        raise SystemExit(
            f"no window found for target {target_name!r} under {reports}; "
            "run `make check` first, or name a window with --window "
            "(`python -m soakcheck window list --all` lists them)"
        )
    return windows[-1]


def command_check(args: argparse.Namespace) -> int:
    target_path = _target_path(args.target)
    target = load_target(target_path)
    reports = _reports(args.reports)
    if args.window:
        window = _find_window(reports, target.name, args.window)
    else:
        window = open_window(target, reports)
    plan = plan_checkpoint(window, kind=args.kind)
    try:
        code = run_checkpoint(target_path, plan, args.pytest_args)
    except AlreadyRunning as error:
        print(f"soakcheck: {error}", file=sys.stderr)
        return EXIT_USAGE
    if plan.json.exists() and plan.html.exists():
        print(f"report: {plan.html}")
    elif plan.json.exists():
        print(f"record: {plan.json} (the HTML report was not completed)")
    else:
        print(f"no checkpoint record was written at {plan.json}", file=sys.stderr)
        return code if code > 1 else 2
    return code


def command_verdict(args: argparse.Namespace) -> int:
    target = load_target(_target_path(args.target))
    reports = _reports(args.reports)
    window = _find_window(reports, target.name, args.window)
    try:
        verdict = decide(window)
    except ValueError as error:
        print(f"soakcheck: {error}", file=sys.stderr)
        return EXIT_USAGE
    paths = write_reports(verdict, window.directory)
    print(f"verdict for window {window.id}: {verdict.decision}")
    for reason in verdict.reasons:
        print(f"  {reason.decision:11} {reason.text}")
    print(f"report: {paths['html']} (also verdict.md, verdict.json)")
    return verdict.exit_code


def command_window(args: argparse.Namespace) -> int:
    target = load_target(_target_path(args.target))
    reports = _reports(args.reports)
    if args.action == "start":
        length = args.length or target.window.length
        interval = args.interval or target.window.interval
        window = new_window(
            reports, target.name, length, interval, policy=target.window_policy()
        )
        print(
            f"started window {window.id}: {window.slot_count} slots, "
            f"ends {window.end.isoformat(timespec='seconds')}"
        )
        return 0
    for window in list_windows(reports, None if args.all else target.name):
        print(
            f"{window.id}  start {window.start.isoformat(timespec='seconds')}  "
            f"{window.slot_count} slots every {window.interval_s:g} s"
        )
    return 0


def command_monitor(args: argparse.Namespace) -> int:
    from soakcheck.monitor import Monitor, install_signal_handlers

    target_path = _target_path(args.target)
    target = load_target(target_path)
    reports = _reports(args.reports)
    if args.window:
        window = _find_window(reports, target.name, args.window)
    else:
        window = open_window(target, reports)
    monitor = Monitor(window, target_path)
    install_signal_handlers(monitor)
    try:
        verdict = monitor.run_window()
    except AlreadyRunning as error:
        print(f"soakcheck: {error}", file=sys.stderr)
        return EXIT_USAGE
    if monitor.missed:
        print(f"missed slots: {', '.join(monitor.missed)}")
    if verdict is None:
        print(f"monitor stopped; start it again to resume window {window.id}")
        return 130
    print(f"verdict for window {window.id}: {verdict.decision}")
    for reason in verdict.reasons:
        print(f"  {reason.decision:11} {reason.text}")
    print(f"report: {window.directory / 'verdict.html'}")
    return verdict.exit_code


def command_p0(args: argparse.Namespace) -> int:
    from soakcheck.p0.run import run_p0

    return run_p0(
        _target_path(args.target), _reports(args.reports), args.window, again=args.again
    )


def command_demo(args: argparse.Namespace) -> int:
    from soakcheck.demo import run_demo

    return run_demo(
        scenario=args.scenario,
        reports=_reports(args.reports),
        slots=args.slots,
        interval_s=args.interval,
        with_p0=not args.no_p0,
    )


def _failed_checks(directory: Path) -> set[str]:
    """Return the ids of the checks that failed in a window's records so far."""
    from soakcheck.record import list_records

    return {
        result["check"]
        for record in list_records(directory)
        for result in record.get("results", [])
        if result.get("outcome") == "failed"
    }


def command_note(args: argparse.Namespace) -> int:
    from soakcheck.notes import (
        NoteError,
        add_note,
        add_planned,
        add_resolution,
        parse_time,
    )

    reports = _reports(args.reports)
    if args.window:
        window = _find_window(reports, "", args.window)
    else:
        target = load_target(_target_path(args.target))
        window = _find_window(reports, target.name, None)
    planned = args.planned_from is not None or args.planned_to is not None
    try:
        if sum([bool(args.text), bool(args.resolve), planned]) != 1:
            raise NoteError(
                "give exactly one of: a note text, --resolve CHECK, or "
                "--planned-from and --planned-to"
            )
        if args.text:
            entry = add_note(window.directory, args.text, author=args.author)
        elif args.reason is None:
            raise NoteError("--reason is required with --resolve and --planned-*")
        elif args.resolve:
            entry = add_resolution(
                window.directory,
                args.resolve,
                args.reason,
                author=args.author,
                failed_checks=_failed_checks(window.directory),
            )
        elif args.planned_from is None or args.planned_to is None:
            raise NoteError("--planned-from and --planned-to go together")
        else:
            entry = add_planned(
                window.directory,
                parse_time(args.planned_from, "--planned-from"),
                parse_time(args.planned_to, "--planned-to"),
                args.reason,
                author=args.author,
                window=(window.start, window.end),
            )
    except NoteError as error:
        print(f"soakcheck note: {error}", file=sys.stderr)
        return EXIT_USAGE
    kind = "planned period" if entry["kind"] == "planned" else entry["kind"]
    print(f"{kind} added to window {window.id} by {entry['author']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soakcheck", description="Production-readiness soak checks."
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--target", help=f"target TOML file (default {DEFAULT_TARGET})"
        )
        sub.add_argument("--reports", help="reports folder (default reports/)")

    check = commands.add_parser("check", help="run one checkpoint of the window")
    common(check)
    check.add_argument("--window", help="window id (default: the open window)")
    check.add_argument(
        "--kind",
        choices=("scheduled", "p0"),
        default="scheduled",
        help=argparse.SUPPRESS,
    )
    check.add_argument("pytest_args", nargs="*", help="extra pytest arguments")
    check.set_defaults(handler=command_check)

    verdict = commands.add_parser("verdict", help="decide over a window")
    common(verdict)
    verdict.add_argument("--window", help="window id (default: the newest)")
    verdict.set_defaults(handler=command_verdict)

    window = commands.add_parser("window", help="start or list windows")
    common(window)
    window.add_argument("action", choices=("start", "list"))
    window.add_argument("--length", type=_duration, help="window length, e.g. 24h")
    window.add_argument("--interval", type=_duration, help="slot interval, e.g. 2h")
    window.add_argument("--all", action="store_true", help="list every target's")
    window.set_defaults(handler=command_window)

    monitor = commands.add_parser("monitor", help="run the whole window, then decide")
    common(monitor)
    monitor.add_argument("--window", help="window id (default: the open window)")
    monitor.set_defaults(handler=command_monitor)

    p0 = commands.add_parser(
        "p0", help="the manual P0 tests, which change state; once per window"
    )
    common(p0)
    p0.add_argument("--window", help="window id (default: the open window)")
    p0.add_argument(
        "--again", action="store_true", help="run them even if they ran in the window"
    )
    p0.set_defaults(handler=command_p0)

    demo = commands.add_parser("demo", help="compressed window on a bundled backend")
    demo.add_argument(
        "--scenario",
        default="healthy",
        help="healthy, leak, crash, failed-jobs, error-logs, fatal-log, "
        "stalled-job, slow-health, service-down",
    )
    demo.add_argument("--reports", help="reports folder (default reports/)")
    demo.add_argument(
        "--slots", type=int, default=4, help="checkpoints after the first"
    )
    demo.add_argument("--interval", type=float, default=4.0, help="seconds between")
    demo.add_argument(
        "--no-p0", action="store_true", help="skip the P0 tests (ends CONDITIONAL)"
    )
    demo.set_defaults(handler=command_demo)

    note = commands.add_parser(
        "note", help="add a note, a resolution or a planned period to a window"
    )
    common(note)
    note.add_argument("--window", help="window id (default: the newest)")
    note.add_argument("text", nargs="?", help="free text of a note")
    note.add_argument(
        "--resolve", metavar="CHECK", help="mark this check's failures so far resolved"
    )
    note.add_argument(
        "--planned-from",
        metavar="ISO",
        help="start of planned maintenance, ISO 8601 (UTC without an offset)",
    )
    note.add_argument("--planned-to", metavar="ISO", help="end of planned maintenance")
    note.add_argument("--reason", help="why: required with --resolve and --planned-*")
    note.add_argument("--author", help="who records it (default: $USER)")
    note.set_defaults(handler=command_note)
    return parser


def _duration(value: str) -> float:
    from soakcheck.config import parse_duration

    try:
        return parse_duration(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return args.handler(args)
    except (TargetError, ValueError) as error:
        print(f"soakcheck: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        where = f" {error.filename}" if error.filename else ""
        print(
            f"soakcheck: cannot use{where}: {error.strerror or error}; check that "
            f"the reports folder exists, is a folder and is writable",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except SystemExit as stop:
        if isinstance(stop.code, str):
            print(f"soakcheck: {stop.code}", file=sys.stderr)
            return EXIT_USAGE
        raise
    except KeyboardInterrupt:
        print("soakcheck: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
