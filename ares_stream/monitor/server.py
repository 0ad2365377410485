"""The dashboard's web server (aiohttp): the page, its static files, a JSON snapshot and a stream
of server-sent events.

One poller asks the database every :data:`POLL_S` seconds whether anything changed
(:func:`~ares_stream.monitor.data.poll`: a few index seeks through a fresh read-only connection,
no lock, nothing written); when it did, it reads a new bounded snapshot in a thread and pushes
it to every connected browser as one ``snapshot`` event. A browser gets the current snapshot as
soon as it connects, and the newest one only when it falls behind (one slot per client: a slow
client never holds the poller up). ``GET /api/snapshot`` returns the same JSON.

Routes: ``/`` (the page), ``/static/…`` (its script, style and the vendored uPlot),
``/api/snapshot``, ``/api/events``. Requests naming another host than the loopback one the
server listens on are refused (a web page elsewhere cannot read the dashboard through DNS
rebinding), and the page may load nothing but its own files (Content-Security-Policy).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from ares_stream.errors import AresError
from ares_stream.monitor import data

__all__ = ["POLL_S", "Dashboard", "main_monitor", "serve"]

POLL_S = 1.0  # seconds between two polls of the database
PARENT_CHECK_S = 1.0  # how often a daemon's dashboard checks that the daemon lives
KEEPALIVE_S = 15.0  # an SSE comment this often: a vanished client is noticed, proxies stay open
STATIC = Path(__file__).with_name("static")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Dashboard:
    """The server of one database: :meth:`start`, then :meth:`stop`."""

    def __init__(self, db_path: str | Path, *, host: str = "127.0.0.1", port: int = 8080,
                 poll_s: float = POLL_S) -> None:
        self.db_path, self.host, self.port, self.poll_s = Path(db_path), host, port, poll_s
        self._marks: Any = None
        self._snapshot: dict[str, Any] = {}
        self._payload = b""
        self._version = 0
        self._extent = data.Extent()  # equity marks already read, across snapshots
        self._clients: set[asyncio.Queue[bytes | None]] = set()
        self._runner: web.AppRunner | None = None
        self._poller: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> str:
        """Read the first snapshot, listen (``port`` 0: any free one) and poll; the page's URL.
        A port in use raises :class:`AresError`."""
        await self.refresh()
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._page)
        app.router.add_get("/api/snapshot", self._snapshot_json)
        app.router.add_get("/api/events", self._events)
        app.router.add_static("/static/", STATIC)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise AresError(f"cannot listen on {self.host}:{self.port}: "
                            f"{exc.strerror or exc}") from None
        self.port = self._runner.addresses[0][1]
        self._poller = asyncio.create_task(self._poll())
        return self.url

    async def stop(self) -> None:
        """Stop polling, end every event stream and close the server."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for client in self._clients:
            _offer(client, None)
        if self._runner is not None:
            await self._runner.cleanup()

    async def refresh(self) -> bool:
        """Poll once; when something changed, read the new snapshot and push it to every
        client. True when it did."""
        marks = await asyncio.to_thread(data.poll, self.db_path)
        if self._version and marks == self._marks:
            return False
        snap = await asyncio.to_thread(data.snapshot, self.db_path, None, self._extent)
        self._version += 1
        self._marks, self._snapshot = marks, {**snap, "version": self._version}
        body = json.dumps(self._snapshot, separators=(",", ":"))
        self._payload = f"id: {self._version}\nevent: snapshot\ndata: {body}\n\n".encode()
        for client in self._clients:
            _offer(client, self._payload)
        return True

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.refresh()
            except Exception as exc:  # the dashboard outlives a bad read; the next poll retries
                self._marks = f"poll failed: {exc!r}"

    @web.middleware
    async def _guard(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Refuse another Host than ours on loopback; forbid the page any other origin."""
        name = (request.url.host or "").strip("[]")
        if self.host in _LOOPBACK and name not in _LOOPBACK:
            raise web.HTTPForbidden(text=f"this dashboard answers on {self.url} only\n")
        response = await handler(request)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("Cache-Control", "no-cache")
        return response

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html",
                                headers={"Content-Type": "text/html; charset=utf-8"})

    async def _snapshot_json(self, request: web.Request) -> web.Response:
        return web.json_response(self._snapshot)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """The event stream: the current snapshot, then each new one, until either side ends."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        client: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)
        self._clients.add(client)
        try:
            item: bytes | None = self._payload
            while item is not None:
                await response.write(item)
                try:
                    item = await asyncio.wait_for(client.get(), KEEPALIVE_S)
                except TimeoutError:
                    item = b": keepalive\n\n"
        except (ConnectionResetError, ConnectionError):
            pass  # the browser went away
        finally:
            self._clients.discard(client)
        return response


def _offer(client: asyncio.Queue[bytes | None], item: bytes | None) -> None:
    """Put ``item`` in the client's one slot, replacing what it has not read yet."""
    with contextlib.suppress(asyncio.QueueEmpty):
        client.get_nowait()
    client.put_nowait(item)


async def serve(db_path: str | Path, *, host: str = "127.0.0.1", port: int = 8080,
                poll_s: float = POLL_S, out: TextIO = sys.stdout,
                parent: int | None = None) -> int:
    """Serve the dashboard of ``db_path`` until SIGINT or SIGTERM — or, given the ``parent``
    pid (the daemon that started it), until that process is gone; 0."""
    dashboard = Dashboard(db_path, host=host, port=port, poll_s=poll_s)
    loop, stop = asyncio.get_running_loop(), asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    orphan = None if parent is None else asyncio.create_task(_orphaned(parent, stop))
    try:
        url = await dashboard.start()
        print(f"dashboard: {url}", file=out)
        print(f"reading {db_path} read-only, every {poll_s:g} s; Ctrl-C stops", file=out,
              flush=True)
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if orphan is not None:
            orphan.cancel()
        await dashboard.stop()
    return 0


async def _orphaned(parent: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once the process is no longer ``parent``'s child (it died, even by SIGKILL:
    the orphan is re-parented)."""
    while os.getppid() == parent:
        await asyncio.sleep(PARENT_CHECK_S)
    stop.set()


def main_monitor(db_path: str | Path, host: str, port: int, parent: int | None = None) -> int:
    """The body of ``ares-stream monitor``; a user's error raises :class:`AresError`."""
    if not 0 <= port <= 65535:
        raise AresError(f"--port must be 0-65535, got {port}")
    return asyncio.run(serve(db_path, host=host, port=port, parent=parent))
