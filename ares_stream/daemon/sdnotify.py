"""The sd_notify datagram protocol: tell systemd we are ready, alive, reloading or stopping.

No libsystemd: the protocol is one ``AF_UNIX``/``SOCK_DGRAM`` datagram per message, sent to the
socket named by ``$NOTIFY_SOCKET`` (a path, or an abstract name written with a leading ``@``), made
of ``KEY=VALUE`` lines. Outside systemd the variable is unset and every call is a no-op, so the
daemon calls the same methods under systemd, in a terminal and in tests.

Sends never block (a receiver that stops reading costs a failed send, not a stalled event loop)
and never raise: a failure is logged once per notifier and reported as ``False``.

>>> quiet = Notifier("")  # no socket: a no-op notifier
>>> quiet.enabled, quiet.ready("warming up")
(False, None)
>>> watchdog_interval({"WATCHDOG_USEC": "30000000"})  # WatchdogSec=30: ping every 15 s
15.0
>>> watchdog_interval({}) is None
True
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import structlog

__all__ = ["Notifier", "watchdog_interval"]

log = structlog.get_logger(__name__)


class Notifier:
    """Sends sd_notify messages to ``socket_path`` (default ``$NOTIFY_SOCKET``; empty: no-op)."""

    def __init__(self, socket_path: str | None = None) -> None:
        if socket_path is None:
            socket_path = os.environ.get("NOTIFY_SOCKET", "")
        self.socket_path = socket_path
        self.enabled = bool(socket_path)
        self._address = "\0" + socket_path[1:] if socket_path.startswith("@") else socket_path
        self._sock: socket.socket | None = None
        self._warned = False

    def ready(self, status: str = "") -> None:
        """Startup is finished (``READY=1``); systemd starts the watchdog and the units after us."""
        self.send(READY=1, **_status(status))

    def status(self, text: str) -> None:
        """A one-line state for ``systemctl status`` (``STATUS=``)."""
        self.send(STATUS=text)

    def watchdog(self) -> None:
        """Still healthy (``WATCHDOG=1``); send only from a loop that is making progress."""
        self.send(WATCHDOG=1)

    def stopping(self, status: str = "") -> None:
        """Shutdown has begun (``STOPPING=1``)."""
        self.send(STOPPING=1, **_status(status))

    def reloading(self) -> None:
        """A reload has begun (``RELOADING=1``); send ``ready()`` again when it is done.

        ``MONOTONIC_USEC`` is required with it since systemd 253 and ignored before.
        """
        self.send(RELOADING=1, MONOTONIC_USEC=time.monotonic_ns() // 1000)

    def send(self, **fields: str | int) -> bool:
        """Send ``fields`` as one datagram; ``True`` when it left, ``False`` otherwise."""
        if not self.enabled:
            return False
        try:
            self._socket().sendto(_encode(fields), self._address)
        except OSError as exc:
            self._warn(exc)
            return False
        return True

    def close(self) -> None:
        """Close the socket (a later send opens a new one)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
        return self._sock

    def _warn(self, exc: OSError) -> None:
        if not self._warned:
            self._warned = True
            log.warning("sd_notify_failed", socket=self.socket_path, error=str(exc))


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC``, as systemd advises.

    ``None`` when there is no watchdog, or when ``$WATCHDOG_PID`` names another process (the
    variables were inherited from a parent that systemd watches, not meant for us).

    >>> watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "0"}) is None
    True
    """
    env = os.environ if environ is None else environ
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None


def _status(text: str) -> dict[str, str]:
    return {"STATUS": text} if text else {}


def _encode(fields: Mapping[str, str | int]) -> bytes:
    """``KEY=VALUE`` lines; a newline inside a value would start a new field, so it is flattened.

    >>> _encode({"READY": 1, "STATUS": "a\\nb"})
    b'READY=1\\nSTATUS=a b'
    """
    lines = (f"{key}={str(value).replace(chr(10), ' ')}" for key, value in fields.items())
    return "\n".join(lines).encode()
