"""The target file: one TOML file describing the backend under soak.

The file is validated once, on load. Secrets never live in it: the file names
environment variables, and an optional `.env` file fills them in.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from soakcheck.redact import mask_secrets

DEFAULT_TARGET = Path("fixtures/targets/local.toml")
MAX_DURATION_S = 366 * 86400
# A window of more slots than this makes reports no one reads and slow verdicts.
MAX_SLOTS = 10_000

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


class TargetError(Exception):
    """The target file is missing, unreadable or invalid."""


def parse_duration(value: object) -> float:
    """Convert "24h", "30s", "10m", "1.5h" or a number of seconds to seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '2h' or '30s', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(
                f"expected a duration such as '2h', '10m' or '30s', got {value!r}"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"expected a positive duration, got {value!r}")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"expected a duration of at most 366 days, got {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Section(BaseModel):
    # Unknown keys are typos far more often than intent, so they are rejected.
    model_config = ConfigDict(extra="forbid")


def _check_url_parts(value: str, secret_key: str = "an environment variable") -> None:
    """Reject a URL with credentials in it or a port that is not a number."""
    parts = urlsplit(value)
    if parts.password is not None or "@" in parts.netloc:
        raise ValueError(
            f"the URL contains credentials; put the password in {secret_key} instead"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(
            f"the URL's port is not a number from 1 to 65535: {value!r}"
        ) from None
    if not parts.hostname:
        raise ValueError(f"the URL has no host name: {value!r}")
    if port == 0:
        raise ValueError(f"the URL's port must be from 1 to 65535: {value!r}")


class ProcessConfig(_Section):
    """How to find the backend process and read its memory."""

    port: int | None = Field(default=None, ge=1, le=65535)
    pid_file: Path | None = None
    cmdline_pattern: str | None = None
    metrics_url: str | None = None

    @field_validator("cmdline_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(
                    f"invalid regular expression {value!r}: {error}"
                ) from None
        return value

    memory_json_path: str | None = None
    memory_primary_mb: float = Field(default=500, gt=0)
    memory_critical_mb: float = Field(default=1024, gt=0)

    @model_validator(mode="after")
    def _critical_above_primary(self) -> ProcessConfig:
        if self.memory_critical_mb < self.memory_primary_mb:
            raise ValueError(
                f"memory_critical_mb ({self.memory_critical_mb}) must not be below "
                f"memory_primary_mb ({self.memory_primary_mb})"
            )
        return self


HealthPreset = Literal["seed", "terminus", "spring", "health+json", "auto"]


class BackendConfig(_Section):
    """The HTTP backend and the shape of its health response."""

    base_url: str = "http://localhost:3001"
    health_path: str = "/health"
    timeout: Duration = 5.0
    preset: HealthPreset = "seed"
    status_path: str | None = None
    services_path: str | None = None
    uptime_path: str | None = None
    services: list[str] = Field(default_factory=list)
    primary_services: list[str] = Field(default_factory=lambda: ["webhookQueue"])
    latency_samples: int = Field(default=5, ge=1, le=50)
    latency_p95_ms: float = Field(default=100, gt=0)
    uptime_tolerance_ratio: float = Field(default=0.05, ge=0)
    uptime_tolerance_s: float = Field(default=60, ge=0)
    process: ProcessConfig = Field(default_factory=ProcessConfig)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(
                f"expected an http:// or https:// URL such as "
                f"'http://localhost:3001', got {value!r}"
            )
        _check_url_parts(value)
        return value.rstrip("/")

    @field_validator("health_path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"expected a path starting with '/', got {value!r}")
        return value

    @property
    def health_url(self) -> str:
        return self.base_url + self.health_path


class RedisConfig(_Section):
    """The Redis server behind the BullMQ queues."""

    url: str = "redis://localhost:6379/0"
    password_env: str = "REDIS_PASSWORD"
    timeout: Duration = 5.0
    prefix: str = "bull"
    queues: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    memory_check_mb: float = Field(default=50, gt=0)
    memory_primary_mb: float = Field(default=100, gt=0)
    required_policy: str = "noeviction"
    stalled_after: Duration = 600.0

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not re.match(r"^rediss?://", value):
            raise ValueError(
                f"expected a redis:// or rediss:// URL such as "
                f"'redis://localhost:6379/0', got {value!r}"
            )
        _check_url_parts(value, "redis.password_env")
        return value


class LogsConfig(_Section):
    """The backend's log files, read incrementally between checkpoints."""

    files: list[Path] = Field(default_factory=list)
    errors_per_hour: int = Field(default=10, ge=0)
    worker_pattern: str | None = "RecordingQueueWorker running normally"
    custom_pattern: str | None = None
    reconciliation_time: str = "03:00"
    reconciliation_start: str = "Reconciliation started"
    reconciliation_done: str = "Reconciliation completed"

    @field_validator("worker_pattern", "custom_pattern")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(
                    f"invalid regular expression {value!r}: {error}"
                ) from None
        return value

    @field_validator("reconciliation_time")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        if not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", value):
            raise ValueError(f"expected a UTC time of day 'HH:MM', got {value!r}")
        return value


class QueueStatsConfig(_Section):
    """The backend's optional queue statistics endpoint."""

    path: str = "/api/monitoring/queue-stats"
    token_env: str = "MONITORING_TOKEN"


class WindowConfig(_Section):
    """The soak window: how long, and how often a checkpoint runs."""

    length: Duration = 86400.0
    interval: Duration = 7200.0

    @model_validator(mode="after")
    def _interval_fits(self) -> WindowConfig:
        if self.length / self.interval > MAX_SLOTS:
            raise ValueError(
                f"a {self.length:g} s window checked every {self.interval:g} s has "
                f"more than {MAX_SLOTS} slots; choose a longer interval"
            )
        if self.interval > self.length:
            raise ValueError(
                f"interval ({self.interval:g} s) is longer than the window "
                f"({self.length:g} s)"
            )
        return self


class PolicyConfig(_Section):
    """The decision policy; the defaults are the ones the checklist states."""

    required_p0: list[str] = Field(default_factory=list)
    missed_slot_is_conditional: bool = True
    resolution_clears_conditional: bool = True
    resolution_overrides_primary: bool = False
    planned_checks: list[str] = Field(
        default_factory=lambda: [
            "uptime.no_restart",
            "uptime.delta",
            "health.*",
            "logs.*",
        ]
    )
    planned_after_checks: list[str] = Field(
        default_factory=lambda: ["uptime.no_restart", "uptime.delta"]
    )
    backend_memory_cap_mb: float | None = Field(default=None, gt=0)
    redis_memory_cap_mb: float | None = Field(default=None, gt=0)
    trend_min_points: int = Field(default=3, ge=2)
    trend_horizon_h: float = Field(default=0.0, ge=0)


class P0Config(_Section):
    """State-changing P0 tests; refused unless `allowed` is true."""

    allowed: bool = False
    stripe_webhook_path: str = "/api/webhooks/stripe"
    stripe_secret_env: str = "STRIPE_WEBHOOK_SECRET"
    stripe_event_type: str = "invoice.payment_succeeded"
    stripe_customer_id: str = "cus_soak_p0"
    # Stripe's SDKs reject a signature timestamp older than 300 s by default.
    stripe_tolerance_s: int = Field(default=300, gt=0)
    # Evidence that the event was processed: the job with id = event id in
    # this BullMQ queue, and this line in the log files under [logs]. An
    # empty string turns one of them off.
    webhook_queue: str | None = "webhook-processing"
    processed_log_pattern: str | None = "Processed Stripe event {event_id}"
    processing_timeout: Duration = 30.0
    duplicate_wait: Duration = 3.0
    debt_limit_path: str = "/api/billing/charges"
    debt_limit_token_env: str | None = None
    debt_limit_over: dict[str, object] = Field(
        default_factory=lambda: {"customerId": "cus_soak_over", "amountCents": 900000}
    )
    debt_limit_under: dict[str, object] = Field(
        default_factory=lambda: {"customerId": "cus_soak_under", "amountCents": 100}
    )
    debt_limit_status: int = Field(default=402, ge=400, le=499)
    reconciliation_trigger: Literal["http", "queue"] = "http"
    reconciliation_path: str = "/api/billing/reconciliation"
    reconciliation_status_path: str = "/api/billing/reconciliation/{job_id}"
    reconciliation_token_env: str = "MONITORING_TOKEN"
    reconciliation_queue: str = "billing-reconciliation"
    reconciliation_job_name: str = "manual-reconciliation"
    reconciliation_timeout: Duration = 60.0

    @field_validator(
        "stripe_webhook_path",
        "debt_limit_path",
        "reconciliation_path",
        "reconciliation_status_path",
    )
    @classmethod
    def _p0_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"expected a path starting with '/', got {value!r}")
        return value

    @field_validator("reconciliation_status_path")
    @classmethod
    def _has_job_id(cls, value: str) -> str:
        if "{job_id}" not in value:
            raise ValueError(
                f"expected a path with a {{job_id}} placeholder such as "
                f"'/api/billing/reconciliation/{{job_id}}', got {value!r}"
            )
        return value

    @field_validator("webhook_queue", "processed_log_pattern", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        # TOML has no null, so an empty string turns that evidence off.
        return None if value == "" else value

    @field_validator("processed_log_pattern")
    @classmethod
    def _has_event_id(cls, value: str | None) -> str | None:
        if value is not None and "{event_id}" not in value:
            raise ValueError(
                f"expected log text with an {{event_id}} placeholder such as "
                f"'Processed Stripe event {{event_id}}', got {value!r}"
            )
        return value


class AlertsConfig(_Section):
    """Alert settings; the webhook URL is a secret, so only its variable is named."""

    slack_webhook_env: str = "SLACK_WEBHOOK_URL"


class Target(_Section):
    """A whole target file."""

    name: str = Field(default="local", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    env_file: Path | None = None
    backend: BackendConfig = Field(default_factory=BackendConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    logs: LogsConfig = Field(default_factory=LogsConfig)
    queue_stats: QueueStatsConfig | None = None
    window: WindowConfig = Field(default_factory=WindowConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    p0: P0Config = Field(default_factory=P0Config)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)

    # Set on load, not read from the file.
    source: Path | None = Field(default=None, exclude=True)
    environment: dict[str, str] = Field(default_factory=dict, exclude=True, repr=False)

    def window_policy(self) -> dict[str, object]:
        """Return the decision policy a new window stores, caps filled in."""
        policy = self.policy.model_dump()
        if policy["backend_memory_cap_mb"] is None:
            policy["backend_memory_cap_mb"] = self.backend.process.memory_primary_mb
        if policy["redis_memory_cap_mb"] is None:
            policy["redis_memory_cap_mb"] = self.redis.memory_primary_mb
        return policy

    def known_secrets(self) -> list[str]:
        """Return the secret values this target reads, to mask them in output."""
        variables = [
            self.redis.password_env,
            self.p0.stripe_secret_env,
            self.alerts.slack_webhook_env,
        ]
        if self.queue_stats is not None:
            variables.append(self.queue_stats.token_env)
        variables.append(self.p0.reconciliation_token_env)
        if self.p0.debt_limit_token_env:
            variables.append(self.p0.debt_limit_token_env)
        values = [self.secret(variable) for variable in variables]
        return [value for value in values if value]

    def secret(self, variable: str) -> str | None:
        """Return a secret from the process environment or the `.env` file."""
        value = os.environ.get(variable)
        if value is None:
            value = self.environment.get(variable)
        return value or None


def _format_errors(error: ValidationError, path: Path) -> str:
    lines = [f"invalid target file {path}:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key; check its spelling against README.md"
        value = item.get("input")
        # The project's own validators already name the value they reject, and
        # an unknown key's value may be a secret put in the wrong place.
        echoed = (
            isinstance(value, dict)
            or ", got " in message
            or item["type"] == "extra_forbidden"
        )
        shown = "" if echoed else f" (got {value!r})"
        lines.append(mask_secrets(f"  {key}: {message}{shown}"))
    return "\n".join(lines)


def load_target(path: str | Path) -> Target:
    """Read, validate and return a target file, raising TargetError on bad input."""
    path = Path(path)
    try:
        # utf-8-sig drops the byte-order mark some Windows editors write.
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise TargetError(
            f"target file not found: {path}; pass TARGET=path/to/target.toml "
            f"or copy {DEFAULT_TARGET}"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise TargetError(f"cannot read target file {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise TargetError(f"invalid TOML in target file {path}: {error}") from None

    for forbidden in ("password", "token", "secret"):
        if _contains_key(raw, forbidden):
            raise TargetError(
                f"target file {path} contains a {forbidden!r} key; secrets belong "
                f"in environment variables or the .env file named by env_file"
            )

    try:
        target = Target.model_validate(raw)
    except ValidationError as error:
        raise TargetError(_format_errors(error, path)) from None

    target.source = path
    target.environment = _read_env_file(target, path)
    return target


def _contains_key(table: object, name: str) -> bool:
    if isinstance(table, dict):
        for key, value in table.items():
            if key == name or _contains_key(value, name):
                return True
    return False


def _read_env_file(target: Target, path: Path) -> dict[str, str]:
    if target.env_file is None:
        return {}
    env_path = target.env_file
    if not env_path.is_absolute():
        env_path = path.parent / env_path
    if not env_path.exists():
        raise TargetError(
            f"env_file {env_path} named by {path} was not found; create it or "
            f"remove the env_file key"
        )
    if not env_path.is_file():
        raise TargetError(f"env_file {env_path} named by {path} is not a file")
    try:
        values = dotenv_values(env_path, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TargetError(
            f"cannot read env_file {env_path} named by {path}: {error}; it must "
            f"be a UTF-8 text file of NAME=value lines"
        ) from None
    return {key: value for key, value in values.items() if value is not None}
