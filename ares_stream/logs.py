"""structlog set-up: JSON lines for journald and files, pretty output on a terminal.

Event names are snake_case facts (``feed_gap``, ``frame_rejected``, ``drift_detected``); values are
keyword arguments, never formatted into the message.

>>> import io
>>> out = io.StringIO()
>>> configure(stream=out, json=True)
>>> structlog.get_logger("x").info("feed_connected", url="ws://127.0.0.1")
>>> '"event": "feed_connected"' in out.getvalue()
True
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from ares_stream.redact import redact_secrets


class _Stderr:
    """Whatever ``sys.stderr`` is at the time of each write (it may be replaced meanwhile)."""

    def write(self, text: str) -> int:
        """Write ``text`` to the current ``sys.stderr``; return the characters written."""
        return sys.stderr.write(text)

    def flush(self) -> None:
        """Flush the current ``sys.stderr``."""
        sys.stderr.flush()

    def isatty(self) -> bool:
        """Whether the current ``sys.stderr`` is a terminal (pretty logs then)."""
        return sys.stderr.isatty()


_settings: dict[str, Any] = {"json": None, "level": "info"}  # the last configure() on stderr


def configure(*, stream: TextIO | None = None, json: bool | None = None,
              level: str = "info") -> None:
    """Route structlog to ``stream`` (stderr by default) as JSON, or pretty on a terminal."""
    target: Any = stream if stream is not None else _Stderr()
    if stream is None:
        _settings.update(json=json, level=level)
    if json is None:
        json = not target.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(sort_keys=False) if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,  # API keys, signatures and the like never reach a log line
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=target),
        cache_logger_on_first_use=False,
    )


def worker_settings() -> dict[str, Any]:
    """The logging of this process, for :func:`configure_worker` in a spawned worker."""
    return dict(_settings)


def configure_worker(settings: dict[str, Any]) -> None:
    """A worker process's initializer: log as its parent does (level, format, redaction)."""
    configure(**settings)
