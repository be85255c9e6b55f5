"""Notes, resolutions and planned periods: stored, validated and read back."""

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from selftests.verdict_windows import (
    START,
    add_record,
    healthy_results,
    make_window,
    result,
)
from soakcheck.cli import main
from soakcheck.notes import (
    NOTES_FILE,
    NoteError,
    add_note,
    add_planned,
    add_resolution,
    parse_time,
    read_notes,
)


def test_note_stored_as_json_line(tmp_path: Path) -> None:
    """A note is one JSON line with its time, author and text."""
    window = make_window(tmp_path)

    add_note(window.directory, "deploy went fine", author="alice", moment=START)
    lines = (window.directory / NOTES_FILE).read_text().splitlines()
    entry = json.loads(lines[0])

    assert len(lines) == 1
    assert entry["kind"] == "note"
    assert entry["author"] == "alice"
    assert entry["text"] == "deploy went fine"
    assert entry["at"] == "2026-12-04T08:00:00+00:00"


def test_author_defaults_to_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an author, the note is signed with $USER."""
    window = make_window(tmp_path)
    monkeypatch.setenv("USER", "bob")

    entry = add_note(window.directory, "checked the heap")

    assert entry["author"] == "bob"


def test_concurrent_appends_stay_whole(tmp_path: Path) -> None:
    """Notes appended from several threads at once each stay one whole line."""
    window = make_window(tmp_path)

    def write(number: int) -> None:
        for index in range(50):
            add_note(window.directory, f"writer {number} note {index} " + "x" * 500)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    notebook = read_notes(window.directory)

    assert len(notebook.entries) == 400


def test_resolution_read_back(tmp_path: Path) -> None:
    """A resolution is read back with its check, reason and time."""
    window = make_window(tmp_path)
    moment = START + timedelta(hours=3)

    add_resolution(
        window.directory, "logs.errors", "known 404s", author="carol", moment=moment
    )
    resolution = read_notes(window.directory).resolutions[0]

    assert resolution.check == "logs.errors"
    assert resolution.reason == "known 404s"
    assert resolution.at == moment


def test_resolution_covers_family(tmp_path: Path) -> None:
    """A resolution of a family covers each parametrised id of it."""
    window = make_window(tmp_path)
    moment = START + timedelta(hours=3)
    add_resolution(window.directory, "logs.errors", "known", moment=moment)
    notebook = read_notes(window.directory)

    before = notebook.resolution_for("logs.errors[app.log]", START)
    after = notebook.resolution_for("logs.errors[app.log]", moment + timedelta(1))
    other = notebook.resolution_for("logs.critical[app.log]", START)

    assert before is not None
    assert after is None
    assert other is None


def test_unknown_check_rejected(tmp_path: Path) -> None:
    """Resolving a check id that is not in the checklist names it and the fix."""
    window = make_window(tmp_path)

    with pytest.raises(NoteError) as error:
        add_resolution(window.directory, "logs.eror", "typo")

    assert "'logs.eror'" in str(error.value)
    assert "logs.errors[app.log]" in str(error.value)


def test_planned_end_before_start_rejected(tmp_path: Path) -> None:
    """A planned period that ends before it starts is rejected with both times."""
    window = make_window(tmp_path)

    with pytest.raises(NoteError) as error:
        add_planned(window.directory, START, START - timedelta(hours=1), "deploy")

    assert "--planned-to" in str(error.value)


def test_empty_reason_rejected(tmp_path: Path) -> None:
    """A resolution without a reason is rejected."""
    window = make_window(tmp_path)

    with pytest.raises(NoteError):
        add_resolution(window.directory, "logs.errors", "   ")


def test_secret_in_note_masked(tmp_path: Path) -> None:
    """A Stripe key pasted into a note is masked in the stored file."""
    window = make_window(tmp_path)
    key = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"

    add_note(window.directory, f"rotated {key} after the test", moment=START)
    stored = (window.directory / NOTES_FILE).read_text()

    assert key not in stored
    assert "sk_live_" in stored


def test_control_codes_in_note_removed(tmp_path: Path) -> None:
    """Colour codes and control characters pasted into a note are not stored."""
    window = make_window(tmp_path)

    entry = add_note(
        window.directory, "\x1b[31mred\x1b[0m text\x07 and\ttab", moment=START
    )

    assert entry["text"] == "red text and\ttab"
    assert "\\u001b" not in (window.directory / NOTES_FILE).read_text()


def test_time_without_offset_is_utc() -> None:
    """An ISO time without an offset is taken as UTC."""
    moment = parse_time("2026-12-04T10:00", "--planned-from")

    assert moment == datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def test_invalid_line_skipped(tmp_path: Path) -> None:
    """A torn or invalid line in the notes file is skipped, the rest is read."""
    window = make_window(tmp_path)
    add_note(window.directory, "first", moment=START)
    with (window.directory / NOTES_FILE).open("a") as stream:
        stream.write('{"kind": "note", "at": "2026-12-04T09\n')
        stream.write('{"kind": "alien", "at": "2026-12-04T09:00:00"}\n')
    add_note(window.directory, "second", moment=START + timedelta(hours=1))

    notebook = read_notes(window.directory)

    assert [entry["text"] for entry in notebook.entries] == ["first", "second"]


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("0001-01-01T00:00", "9999-12-31T00:00", "longer than the window"),
        ("2026-11-01T00:00", "2026-11-01T01:00", "outside the window"),
    ],
    ids=["all-time", "before-window"],
)
def test_cli_rejects_planned_period_beyond_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], start, end, message
) -> None:
    """A planned period outside the window or longer than it is rejected."""
    window = make_window(tmp_path)
    arguments = ["note", "--reports", str(tmp_path), "--window", window.id]
    arguments += ["--planned-from", start, "--planned-to", end, "--reason", "r"]

    code = main(arguments)

    assert code != 0
    assert message in capsys.readouterr().err
    assert read_notes(window.directory).planned == []


def test_cli_adds_planned_period(tmp_path: Path) -> None:
    """`note --planned-from --planned-to --reason` records a planned period."""
    window = make_window(tmp_path)

    code = main(
        [
            "note",
            "--reports",
            str(tmp_path),
            "--window",
            window.id,
            "--planned-from",
            "2026-12-04T12:00",
            "--planned-to",
            "2026-12-04T12:30",
            "--reason",
            "deploy v1.4",
            "--author",
            "dave",
        ]
    )
    period = read_notes(window.directory).planned[0]

    assert code == 0
    assert period.reason == "deploy v1.4"
    assert period.author == "dave"
    assert period.end - period.start == timedelta(minutes=30)


def test_cli_resolve_without_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`note --resolve` without --reason exits 3 with a message naming --reason."""
    window = make_window(tmp_path)

    code = main(
        ["note", "--reports", str(tmp_path), "--window", window.id, "--resolve", "x"]
    )

    assert code == 3
    assert "--reason is required" in capsys.readouterr().err
    assert not (window.directory / NOTES_FILE).exists()


def test_cli_resolve_needs_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`note --resolve` accepts a check that failed and rejects one that did not."""
    window = make_window(tmp_path)
    failing = healthy_results() + [result("logs.errors[app.log]", "failed", value=3)]
    add_record(window, 0, failing)
    arguments = ["note", "--reports", str(tmp_path), "--window", window.id]

    accepted = main([*arguments, "--resolve", "logs.errors", "--reason", "retry noise"])
    rejected = main([*arguments, "--resolve", "redis.memory", "--reason", "fine"])

    assert accepted == 0
    assert rejected == 3
    assert "'redis.memory' has not failed" in capsys.readouterr().err
    assert [r.check for r in read_notes(window.directory).resolutions] == [
        "logs.errors"
    ]
