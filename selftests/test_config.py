"""Target files: validated on load, secrets kept out of them."""

from pathlib import Path

import pytest

from soakcheck.config import TargetError, load_target, parse_duration

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "targets"


def test_local_target_loads() -> None:
    """The seed target file loads with the seed backend's layout."""
    target = load_target(FIXTURES / "local.toml")

    assert target.backend.health_url == "http://localhost:3001/health"
    assert target.redis.url == "redis://localhost:6379/0"
    assert target.backend.services == [
        "database",
        "supabase",
        "backgroundJobs",
        "webhookQueue",
    ]
    assert target.window.length == 24 * 3600
    assert target.window.interval == 2 * 3600


def test_unknown_key_named() -> None:
    """A misspelt key is rejected with its full name."""
    with pytest.raises(TargetError) as caught:
        load_target(FIXTURES / "invalid" / "typo_key.toml")

    assert "backend.helth_path" in str(caught.value)
    assert "unknown key" in str(caught.value)


def test_bad_values_named_with_fix() -> None:
    """Each invalid value is reported with its key, the value and what was expected."""
    with pytest.raises(TargetError) as caught:
        load_target(FIXTURES / "invalid" / "bad_values.toml")
    message = str(caught.value)

    assert "backend.base_url" in message
    assert "'localhost:3001'" in message
    assert "backend.latency_p95_ms" in message
    assert "redis.url" in message
    assert "window.interval" in message
    assert "'soon'" in message


def test_secret_key_rejected() -> None:
    """A password written into the target file is rejected, without echoing it."""
    with pytest.raises(TargetError) as caught:
        load_target(FIXTURES / "invalid" / "secret_in_file.toml")

    assert "environment" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_password_in_url_rejected() -> None:
    """A Redis URL carrying a password is rejected, without echoing it."""
    with pytest.raises(TargetError) as caught:
        load_target(FIXTURES / "invalid" / "password_in_url.toml")

    assert "password_env" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_invalid_toml_reported() -> None:
    """A file that is not TOML is reported with its path."""
    with pytest.raises(TargetError) as caught:
        load_target(FIXTURES / "invalid" / "not_toml.toml")

    assert "invalid TOML" in str(caught.value)
    assert "not_toml.toml" in str(caught.value)


def test_missing_file_says_how() -> None:
    """A missing target file is reported with the way to name another one."""
    with pytest.raises(TargetError) as caught:
        load_target(FIXTURES / "nope.toml")

    assert "not found" in str(caught.value)
    assert "TARGET=" in str(caught.value)


def test_env_file_supplies_secrets(tmp_path: Path, monkeypatch) -> None:
    """A secret missing from the environment comes from the env_file."""
    monkeypatch.delenv("SOAK_TEST_TOKEN", raising=False)
    (tmp_path / "soak.env").write_text("SOAK_TEST_TOKEN=from-file\n")
    (tmp_path / "t.toml").write_text('name = "t"\nenv_file = "soak.env"\n')

    target = load_target(tmp_path / "t.toml")

    assert target.secret("SOAK_TEST_TOKEN") == "from-file"


def test_environment_wins_over_env_file(tmp_path: Path, monkeypatch) -> None:
    """The process environment overrides the .env file."""
    monkeypatch.setenv("SOAK_TEST_TOKEN", "from-environment")
    (tmp_path / "soak.env").write_text("SOAK_TEST_TOKEN=from-file\n")
    (tmp_path / "t.toml").write_text('name = "t"\nenv_file = "soak.env"\n')

    target = load_target(tmp_path / "t.toml")

    assert target.secret("SOAK_TEST_TOKEN") == "from-environment"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("24h", 86400, id="hours"),
        pytest.param("10m", 600, id="minutes"),
        pytest.param("30s", 30, id="seconds"),
        pytest.param("1.5h", 5400, id="fraction"),
        pytest.param(45, 45, id="bare-number"),
    ],
)
def test_duration_parsed(text: object, seconds: float) -> None:
    """Durations are read in hours, minutes or seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5s", "0", "2 weeks"])
def test_bad_duration_rejected(text: str) -> None:
    """A duration that is not a positive number with a unit is rejected."""
    with pytest.raises(ValueError):
        parse_duration(text)
