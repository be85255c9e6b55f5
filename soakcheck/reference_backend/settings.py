"""Settings of the reference backend: command-line options and secrets."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

logger = logging.getLogger(__name__)

# Test-only secrets, used when the environment does not provide real ones. They
# are public in this file, so a backend running with them must never face
# real traffic.
TEST_WEBHOOK_SECRET = "whsec_reference_test_secret"
TEST_MONITORING_TOKEN = "reference-monitoring-token"

FAULTS_ENV_VAR = "SOAK_REFERENCE_FAULTS"


@dataclass(frozen=True)
class Settings:
    """Configuration of one reference backend process."""

    host: str
    port: int
    redis_url: str
    log_file: Path
    prefix: str = "bull"
    allow_faults: bool = False
    heartbeat_seconds: float = 30.0
    debt_limit_cents: int = 50_000
    pid_file: Path | None = None
    stalled_interval_seconds: float = 30.0
    webhook_secret: str = TEST_WEBHOOK_SECRET
    monitoring_token: str = TEST_MONITORING_TOKEN
    redis_password: str | None = None

    @property
    def connection_url(self) -> str:
        """Redis URL with the password from the environment, for clients only."""
        if not self.redis_password:
            return self.redis_url

        parts = urlsplit(self.redis_url)
        if parts.password:
            return self.redis_url

        user = quote(parts.username or "", safe="")
        netloc = f"{user}:{quote(self.redis_password, safe='')}@{parts.hostname}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def redacted_redis_url(self) -> str:
        """Redis URL safe for a log line: any password is replaced by ***."""
        parts = urlsplit(self.redis_url)
        if not parts.password:
            return self.redis_url

        netloc = f"{parts.username or ''}:***@{parts.hostname}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser of `python -m soakcheck.reference_backend`."""
    parser = argparse.ArgumentParser(
        prog="python -m soakcheck.reference_backend",
        description=(
            "Reference billing backend for soakcheck: health, Stripe webhooks, "
            "debt limit and BullMQ queues on a real Redis."
        ),
    )

    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=3001, help="TCP port to listen on")
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/0",
        help="Redis URL; a password may also come from REDIS_PASSWORD",
    )
    parser.add_argument(
        "--log-file",
        required=True,
        type=Path,
        help="file that receives one pino-style JSON object per line",
    )
    parser.add_argument("--prefix", default="bull", help="BullMQ key prefix")

    parser.add_argument(
        "--allow-faults",
        action="store_true",
        help=f"enable the /_faults routes (also enabled by {FAULTS_ENV_VAR}=1)",
    )

    parser.add_argument(
        "--heartbeat-seconds",
        type=float,
        default=30.0,
        help="seconds between recording-worker heartbeat log lines",
    )
    parser.add_argument(
        "--debt-limit-cents",
        type=int,
        default=50_000,
        help="maximum outstanding debt of one customer, in cents",
    )
    parser.add_argument("--pid-file", type=Path, help="file to write the process id to")

    parser.add_argument(
        "--stalled-interval-seconds",
        type=float,
        default=30.0,
        help="seconds between the workers' stalled-job checks (BullMQ default 30)",
    )
    return parser


def settings_from_args(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Parse the command line and read the secrets from the environment."""
    environ = os.environ if environ is None else environ
    parser = build_parser()
    args = parser.parse_args(argv)

    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is out of range; use 1 to 65535")
    if args.heartbeat_seconds <= 0:
        parser.error(f"--heartbeat-seconds {args.heartbeat_seconds} must be > 0")
    if args.debt_limit_cents < 0:
        parser.error(f"--debt-limit-cents {args.debt_limit_cents} must be >= 0")
    if args.stalled_interval_seconds <= 0:
        parser.error(
            f"--stalled-interval-seconds {args.stalled_interval_seconds} must be > 0"
        )

    faults_from_env = environ.get(FAULTS_ENV_VAR, "").strip().lower()
    return Settings(
        host=args.host,
        port=args.port,
        redis_url=args.redis_url,
        log_file=args.log_file,
        prefix=args.prefix,
        allow_faults=args.allow_faults or faults_from_env in ("1", "true", "yes"),
        heartbeat_seconds=args.heartbeat_seconds,
        debt_limit_cents=args.debt_limit_cents,
        pid_file=args.pid_file,
        stalled_interval_seconds=args.stalled_interval_seconds,
        webhook_secret=environ.get("STRIPE_WEBHOOK_SECRET") or TEST_WEBHOOK_SECRET,
        monitoring_token=environ.get("MONITORING_TOKEN") or TEST_MONITORING_TOKEN,
        redis_password=environ.get("REDIS_PASSWORD") or None,
    )


def log_secret_sources(settings: Settings) -> None:
    """Log which secrets fall back to their test values, never the values."""
    if settings.webhook_secret == TEST_WEBHOOK_SECRET:
        logger.warning(
            "Using the test-only Stripe webhook secret; set STRIPE_WEBHOOK_SECRET "
            "to the endpoint's whsec_ secret before serving real traffic"
        )
    elif not settings.webhook_secret.startswith("whsec_"):
        logger.warning(
            "STRIPE_WEBHOOK_SECRET does not start with whsec_: Stripe endpoint "
            "secrets do, so signature checks will likely fail"
        )

    if settings.monitoring_token == TEST_MONITORING_TOKEN:
        logger.warning(
            "Using the test-only monitoring token; set MONITORING_TOKEN before "
            "serving real traffic"
        )
