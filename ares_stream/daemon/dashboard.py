"""The live dashboard served beside the daemon (``[monitor] enabled``).

The daemon starts ``ares-stream monitor`` on its own database as a child process: the dashboard
reads the file read-only through the WAL in a process of its own, so serving browsers never
takes time from the daemon's event loop. The child is told the daemon's pid and ends by itself
once the daemon is gone — even killed with SIGKILL — and the daemon stops it at shutdown. A
dashboard that cannot start (its port is taken) is a warning: the daemon trades on without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import structlog

from ares_stream.config import MonitorConfig

__all__ = ["Dashboard"]

log = structlog.get_logger("ares_stream.daemon")

START_TIMEOUT_S = 60.0  # for the child to print its URL (imports on a busy machine)


class Dashboard:
    """The dashboard child process of one daemon."""

    def __init__(self, config: MonitorConfig, db_path: str | Path) -> None:
        self.config = config
        self.db_path = db_path
        self.proc: asyncio.subprocess.Process | None = None
        self.url: str | None = None
        self._drain: asyncio.Future[None] | None = None

    async def start(self) -> str | None:
        """Start the child and wait for its URL (logged as ``dashboard_started``); None when it
        could not start (logged as ``dashboard_failed``, with its one line)."""
        c = self.config
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ares_stream.cli", "monitor", "--db", str(self.db_path),
            "--host", c.host, "--port", str(c.port), "--parent-pid", str(os.getpid()),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError:
            line = b""
        text = line.decode(errors="replace").strip()
        if not text.startswith("dashboard: "):
            error = await self._error()
            log.warning("dashboard_failed", error=error or text or "no answer", port=c.port)
            await self.stop()
            return None
        self.url = text.split()[-1]
        self._drain = asyncio.ensure_future(self._discard(self.proc.stdout))
        log.info("dashboard_started", url=self.url, pid=self.proc.pid)
        return self.url

    async def _error(self) -> str:
        assert self.proc is not None and self.proc.stderr is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 5.0)
            return (await self.proc.stderr.read()).decode(errors="replace").strip()
        return ""

    @staticmethod
    async def _discard(stream: asyncio.StreamReader) -> None:
        """Read what the child still prints, so a full pipe never blocks it."""
        while await stream.readline():
            pass

    async def stop(self) -> None:
        """SIGTERM the child and wait for it (SIGKILL after 10 s)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
