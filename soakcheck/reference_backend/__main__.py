"""Run the reference backend: `python -m soakcheck.reference_backend --help`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn

from .app import create_app
from .logfile import PinoFileHandler
from .settings import Settings, log_secret_sources, settings_from_args

logger = logging.getLogger("soakcheck.reference_backend")

# Seconds uvicorn waits for open connections on shutdown before closing them.
GRACEFUL_SHUTDOWN_SECONDS = 5


def configure_logging(settings: Settings) -> PinoFileHandler:
    """Send every log record of the process to the pino-style log file."""
    handler = PinoFileHandler(settings.log_file)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    return handler


def _ignore_replayed_signal(signum: int, frame: FrameType | None) -> None:
    # After a graceful shutdown, uvicorn restores the previous SIGTERM and
    # SIGINT handlers and raises the signal again. This no-op handler turns
    # that into a normal exit with status 0.
    return None


async def serve(settings: Settings, handler: PinoFileHandler) -> None:
    """Serve the app until SIGTERM or SIGINT; SIGHUP reopens the log file."""

    def reopen_log() -> None:
        handler.reopen()
        logger.info("Log file reopened after SIGHUP")

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reopen_log)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    await uvicorn.Server(config).serve()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the backend; return the process exit status."""
    settings = settings_from_args(argv)
    try:
        handler = configure_logging(settings)
    except OSError as exc:
        print(
            f"cannot open log file {settings.log_file}: {exc}; "
            "pass a writable path to --log-file",
            file=sys.stderr,
        )
        return 2

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _ignore_replayed_signal)

    if settings.pid_file is not None:
        settings.pid_file.write_text(f"{os.getpid()}\n")

    logger.info(
        "Reference backend starting pid=%d host=%s port=%d",
        os.getpid(),
        settings.host,
        settings.port,
    )
    log_secret_sources(settings)
    try:
        asyncio.run(serve(settings, handler))
    finally:
        if settings.pid_file is not None:
            settings.pid_file.unlink(missing_ok=True)
        logger.info("Reference backend stopped")
        handler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
