"""Stop signals from the first instant of the daemon's life, before anything heavy is imported.

The daemon spends its first second or more importing (river, numpy, aiohttp …; several seconds
on a busy machine), and then opens its database. A SIGTERM in that time must not kill it with
-15 half-way through, nor be lost. So the entry point calls :func:`install` before importing
anything else (stdlib only here), and start-up goes through two phases:

1. **abortable** (imports, argument and config parsing — nothing to save): a SIGTERM or SIGINT
   raises :class:`StartupInterrupted` wherever the main thread is; the command ends with exit 0
   and one log line;
2. **held**, from :func:`hold` (called just before the database is opened): a signal is only
   remembered (:func:`requested`); the daemon installs its own loop handlers as the first thing
   its event loop does, sees the request, and stops through its normal shutdown (final
   checkpoint, run closed), so the database is always left whole.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType

__all__ = ["StartupInterrupted", "hold", "install", "interrupted", "process_age", "requested",
           "restore_defaults", "stopped"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_state: dict[str, str | bool | None] = {"requested": None, "abortable": False}
_T0 = time.monotonic()  # when this module was imported: the fallback for process_age


class StartupInterrupted(BaseException):
    """A stop signal during the abortable phase of start-up. A ``BaseException``, like
    ``KeyboardInterrupt``, so that no library's ``except Exception`` swallows it."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal = signal_name


def install() -> None:
    """Catch SIGTERM and SIGINT from now on; start-up is abortable until :func:`hold`."""
    _state["abortable"] = True
    for sig in _SIGNALS:
        signal.signal(sig, _on_signal)


def hold() -> None:
    """From now on a signal is remembered, not raised: something that must be closed properly
    (the database) is about to open. Raises :class:`StartupInterrupted` if one already came."""
    _state["abortable"] = False
    for sig in _SIGNALS:  # an entry point that did not call install(): catch from here on
        if signal.getsignal(sig) is not _on_signal:
            signal.signal(sig, _on_signal)
    name = _state["requested"]
    if isinstance(name, str):
        raise StartupInterrupted(name)


def interrupted(stop: StartupInterrupted, command: str) -> int:
    """Say that start-up was stopped, in one line on stderr; the exit code, 0. Further signals
    are only remembered from here on, so a second SIGTERM cannot interrupt the goodbye."""
    _state["abortable"] = False
    print(f"ares-stream {command}: stopped by {stop.signal} during start-up", file=sys.stderr,
          flush=True)
    return 0


def stopped() -> None:
    """The daemon has shut down: from here to the process's exit SIGTERM, SIGINT and SIGHUP are
    ignored. A Ctrl-C pressed as it exits must not turn a clean stop into a KeyboardInterrupt
    traceback, nor — once the interpreter has torn its own handlers down — into a death by
    SIGINT (``SIG_IGN`` survives that)."""
    _state["abortable"] = False
    for sig in (*_SIGNALS, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def requested() -> str | None:
    """The name of the stop signal received during start-up, if any."""
    name = _state["requested"]
    return name if isinstance(name, str) else None


def restore_defaults() -> None:
    """Give SIGTERM and SIGINT back to Python's defaults (for a caller that runs on)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def process_age() -> float:
    """Seconds since this process started (Linux: from ``/proc/self/stat``, 10 ms ticks;
    elsewhere: since this module was imported)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime, in ticks
        return max(time.clock_gettime(time.CLOCK_BOOTTIME) - started, 0.0)
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic() - _T0


def _on_signal(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    _state["requested"] = name
    if _state["abortable"]:
        raise StartupInterrupted(name)


def _reset_for_test() -> None:
    _state["requested"] = None
