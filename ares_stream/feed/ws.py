"""The live Binance websocket: the only module that touches the socket (client side).

:class:`WsFeed` reads one combined-stream URL and puts every frame, stamped with ``time.time_ns()``
right after receipt, on a bounded queue as a :class:`~ares_stream.feed.RawFrame`. Nothing is
dropped: a full queue makes the reader wait (backpressure), counted in ``stats``.

Connections are made by websockets' ``async for ws in connect(url, ...)``; the retry decision
(:func:`process_exception`) and the delays (:func:`backoff`) are plain functions passed in. What the
feed adds on top, each reported as a :class:`FeedNotice`:

- a silence watchdog: no frame for ``silence_timeout`` seconds → ``silence``, reconnect;
- ``serverShutdown`` and proactive rotation after ``rotate_after`` seconds: a second connection is
  opened while the old one is still read; the old one is closed (and drained) once the new one has
  delivered its first data frame (``rotated``). During that overlap both connections' frames reach
  the queue, so **downstream must deduplicate trades by id** (it already skips ids it has seen);
- ``disconnected`` whenever the feed was left without a live connection (server close, abrupt
  drop, silence, keepalive timeout): the one notice after which a gap is possible. Finding the
  gap, by trade id, is downstream's job. The next connection waits for the next backoff delay,
  because websockets resets its own backoff after every successful handshake and a server that
  accepts and drops at once would otherwise be hammered; the delays restart once a connection has
  lasted ``STABLE_AFTER`` seconds.

Live subscriptions (:meth:`WsFeed.subscribe`) are batched, paced to ``CONTROL_SPACING`` per
message on each connection (Binance allows 5 incoming messages a second, pings and pongs
included), and replayed on every new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from ares_stream.errors import AresError
from ares_stream.feed import RawFrame

__all__ = ["FeedError", "FeedNotice", "WsFeed", "WsSettings", "backoff", "process_exception",
           "stream_names", "stream_url"]

log = structlog.get_logger(__name__)

Delays = Callable[[], Generator[float, None, None]]
MAX_STREAMS = 1024  # Binance: streams per connection
SUBSCRIBE_BATCH = 200  # stream names per SUBSCRIBE message
CONTROL_SPACING = 0.25  # s between our control messages: 4/s leaves room under 5/s for a ping/pong
STABLE_AFTER = 10.0  # s a connection must last for the reconnect delays to start over
_DATA = b'{"stream":"'  # every combined-stream data frame starts so; anything else is inspected
_BANG = b'{"stream":"!'  # "!serverShutdown" and the all-market streams


class FeedError(AresError):
    """The websocket cannot be used as configured (e.g. the handshake is refused with a 4xx)."""


@dataclass(frozen=True)
class WsSettings:
    """Where to connect and how patient to be; times in seconds."""

    base_url: str = "wss://stream.binance.com:9443"  # or data-stream.binance.vision, fstream…
    symbols: tuple[str, ...] = ()
    streams: tuple[str, ...] = ("aggTrade",)  # per symbol: trade, bookTicker, kline_1m, depth…
    time_unit: str | None = None  # "MICROSECOND" appends &timeUnit=MICROSECOND
    silence_timeout: float = 30.0  # no frame for this long on a connection → reconnect
    rotate_after: float = 23.5 * 3600  # proactive rotation before Binance's 24 h limit
    queue_size: int = 100_000  # bound of the queue between socket and engine
    open_timeout: float = 10.0
    ping_interval: float | None = 20.0  # our keepalive pings (server pings are answered anyway)
    ping_timeout: float | None = 20.0
    close_timeout: float = 1.0  # wait for the closing handshake, then drop the TCP connection

    def __post_init__(self) -> None:
        times = (self.silence_timeout, self.rotate_after, self.open_timeout, self.close_timeout)
        if min(times) <= 0 or self.queue_size < 1:
            raise ValueError("WsSettings: timeouts and rotate_after must be > 0, queue_size >= 1")


@dataclass(frozen=True)
class FeedNotice:
    """What happened to the connection, for feed health: ``kind`` at ``ts`` (ns)."""

    kind: str  # connected, disconnected, silence, rotated, server_shutdown, error_frame, …
    ts: int
    detail: str = ""


def stream_names(symbols: Sequence[str], streams: Sequence[str]) -> list[str]:
    """Combined-stream names, symbol lower-cased, stream kept as given, duplicates dropped.

    >>> stream_names(["BTCUSDT", "ethusdt"], ["aggTrade", "depth@100ms"])
    ['btcusdt@aggTrade', 'btcusdt@depth@100ms', 'ethusdt@aggTrade', 'ethusdt@depth@100ms']
    """
    names = list(dict.fromkeys(f"{s.lower()}@{st}" for s in symbols for st in streams))
    if len(names) > MAX_STREAMS:
        raise ValueError(f"{len(names)} streams; Binance allows {MAX_STREAMS} per connection")
    return names


def stream_url(settings: WsSettings) -> str:
    """The combined-stream URL for ``settings``.

    >>> stream_url(WsSettings(symbols=("BTCUSDT",), time_unit="MICROSECOND"))
    'wss://stream.binance.com:9443/stream?streams=btcusdt@aggTrade&timeUnit=MICROSECOND'
    >>> stream_url(WsSettings(base_url="wss://fstream.binance.com/", symbols=("btcusdt",),
    ...                       streams=("bookTicker",)))
    'wss://fstream.binance.com/stream?streams=btcusdt@bookTicker'
    """
    query = []
    if names := stream_names(settings.symbols, settings.streams):
        query.append("streams=" + "/".join(names))
    if settings.time_unit:
        query.append("timeUnit=" + settings.time_unit)
    url = settings.base_url.rstrip("/") + "/stream"
    return url + "?" + "&".join(query) if query else url


def backoff(initial: float = 1.0, factor: float = 2.0, cap: float = 60.0, jitter: float = 0.5,
            rng: random.Random | None = None) -> Delays:
    """A reconnect policy: delays grow by ``factor`` up to ``cap``, each cut by up to ``jitter``.

    Every delay lies in ``[base * (1 - jitter), base]``, so clients that lost the same server do
    not come back in step, and no delay exceeds ``cap``.

    >>> delays = backoff(initial=1.0, factor=2.0, cap=8.0, jitter=0.0)()
    >>> [next(delays) for _ in range(5)]
    [1.0, 2.0, 4.0, 8.0, 8.0]
    """
    if not (initial > 0 and factor >= 1 and cap >= initial and 0 <= jitter <= 1):
        raise ValueError("backoff needs initial > 0, factor >= 1, cap >= initial, 0 <= jitter <= 1")
    source = rng if rng is not None else random.Random()

    def delays() -> Generator[float, None, None]:
        """The delays in seconds, endlessly: growing by ``factor`` up to ``cap``, each jittered."""
        base = initial
        while True:
            yield base * (1.0 - jitter * source.random())
            base = min(cap, base * factor)

    return delays


def process_exception(exc: Exception) -> Exception | None:
    """Tell websockets' reconnect loop whether a failed attempt is retryable (``None``) or fatal.

    Network errors, timeouts, broken handshakes, 5xx, 408 and 429 are retried; any other HTTP
    status (403 by a firewall, 404 for a bad path, 418 for a banned IP) is fatal.
    """
    if isinstance(exc, OSError | TimeoutError | InvalidMessage):
        return None
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status >= 500 or status in (408, 429):
            return None
        return FeedError(f"the server rejected the websocket handshake with HTTP {status} "
                         f"{exc.response.reason_phrase}: check base_url and stream names")
    return FeedError(f"cannot open the websocket: {exc!r}")


class _FrameQueue(asyncio.Queue[RawFrame]):
    """An asyncio queue of frames that can show its oldest frame."""

    _queue: deque[RawFrame]

    def _init(self, maxsize: int) -> None:
        self._queue = deque()

    def oldest(self) -> RawFrame | None:
        """The frame queued longest, without taking it; None when the queue is empty."""
        return self._queue[0] if self._queue else None


class _Link:
    """One open connection, its reader task and what the feed wants from it."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.opened = self.idle_since = time.monotonic()  # idle_since is inf while blocked on put
        self.first_frame = asyncio.Event()  # set by the first data frame
        self.replace = asyncio.Event()  # set when the connection should be handed over
        self.reason = ""  # why: "age" or "server_shutdown"
        self.closed: ConnectionClosed | None = None
        self.reported = False  # its "disconnected" notice was sent
        self.next_send = 0.0  # monotonic time the next control message may go out
        self.send_lock = asyncio.Lock()
        self.tasks: list[asyncio.Task[None]] = []  # [reader, subscription replay]
        self.timer: asyncio.TimerHandle | None = None

    def replace_after(self, delay: float, reason: str) -> None:
        """Ask for a handover in ``delay`` seconds (re-arming any earlier request)."""
        if self.timer is not None:
            self.timer.cancel()
        self.replace.clear()
        self.timer = asyncio.get_running_loop().call_later(delay, self.request_replace, reason)

    def request_replace(self, reason: str) -> None:
        """Ask for a handover now, for ``reason`` (a request already pending keeps its reason)."""
        if not self.replace.is_set():
            self.reason = reason
            self.replace.set()


class WsFeed:
    """Read a Binance combined stream into :attr:`queue` until :meth:`stop`.

    ``reconnect_delays`` is the backoff policy (see :func:`backoff`); ``on_notice`` receives every
    :class:`FeedNotice`. Call :meth:`stop` from the loop that runs :meth:`run`; a stopped feed
    stays stopped. A fatal handshake refusal ends :meth:`run` with :class:`FeedError`.
    """

    def __init__(self, settings: WsSettings, *, reconnect_delays: Delays | None = None,
                 on_notice: Callable[[FeedNotice], None] | None = None) -> None:
        self.settings = settings
        self.url = stream_url(settings)
        self.reconnect_delays = reconnect_delays if reconnect_delays is not None else backoff()
        self.on_notice = on_notice
        self.stats: dict[str, int] = dict.fromkeys(
            ("frames", "connects", "disconnects", "silences", "rotations", "server_shutdowns",
             "error_frames", "subscribe_messages", "queue_full_waits", "max_queue",
             "connect_failures"), 0)
        self._queue: _FrameQueue | None = None
        self._links: set[_Link] = set()
        self._subscribed: list[str] = []  # live subscriptions, replayed on every new connection
        self._delays: Generator[float, None, None] | None = None  # after a dropped connection
        self._task: asyncio.Task[Any] | None = None
        self._stopped = False
        self._ids = 0

    @property
    def queue(self) -> asyncio.Queue[RawFrame]:
        """The bounded queue of received frames (created on first use)."""
        return self._frames()

    def _frames(self) -> _FrameQueue:
        if self._queue is None:
            self._queue = _FrameQueue(self.settings.queue_size)
        return self._queue

    def lag_ns(self) -> int:
        """How long the oldest queued frame has waited (ns); 0 when the queue is empty."""
        oldest = self._frames().oldest()
        return 0 if oldest is None else time.time_ns() - oldest.ts_init

    async def run(self) -> None:
        """Connect, read and reconnect until :meth:`stop`."""
        if self._stopped:
            return
        self._task = asyncio.current_task()
        conns = cast(AsyncGenerator[ClientConnection, None], aiter(connect(
            self.url, process_exception=self._failed_attempt,
            reconnect_delays=self.reconnect_delays, **self._options())))
        try:
            async with contextlib.aclosing(conns):
                async for ws in conns:
                    await self._session(ws)
        except asyncio.CancelledError:
            if not self._stopped or self._task is None:
                raise
            self._task.uncancel()
        finally:
            await asyncio.gather(*(self._finish(link, drain=False) for link in list(self._links)))
            self._task = None

    def _failed_attempt(self, exc: Exception) -> Exception | None:
        """A connection attempt failed: report it (feed_health), then retry or give up."""
        verdict = process_exception(exc)
        self.stats["connect_failures"] += 1
        self._notice("connect_failed", f"{type(exc).__name__}: {exc}"[:200])
        return verdict

    def stop(self) -> None:
        """End :meth:`run` promptly, closing every connection."""
        if not self._stopped:  # a second cancel would break the shutdown of the first
            self._stopped = True
            if self._task is not None:
                self._task.cancel()

    async def subscribe(self, streams: Sequence[str]) -> None:
        """Subscribe to ``streams`` now on every open connection and on every later one."""
        new = [name for name in dict.fromkeys(streams) if name not in self._subscribed]
        if len(stream_names(self.settings.symbols, self.settings.streams)) + len(
                self._subscribed) + len(new) > MAX_STREAMS:
            raise ValueError(f"more than {MAX_STREAMS} streams on one connection")
        self._subscribed.extend(new)
        await asyncio.gather(*(self._send_subscribe(link, new) for link in list(self._links)))

    # ---- one connection after another --------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        s = self.settings
        # No permessage-deflate: market-data frames are small and inflating costs CPU per frame.
        return {"open_timeout": s.open_timeout, "ping_interval": s.ping_interval,
                "ping_timeout": s.ping_timeout, "close_timeout": s.close_timeout,
                "compression": None, "max_queue": 256}

    async def _session(self, ws: ClientConnection) -> None:
        """Serve ``ws`` and its successors until the feed is left without a connection."""
        link = self._start(ws)
        while (why := await self._watch(link)) == "replace":
            link = await self._handover(link)
        if why == "silence":
            self.stats["silences"] += 1
            self._notice("silence", f"no frame for {self.settings.silence_timeout} s")
        await self._finish(link, drain=False)
        self._disconnected(link, "silence" if why == "silence" else "")
        if time.monotonic() - link.opened >= STABLE_AFTER:
            self._delays = None
        await asyncio.sleep(self._next_delay())

    def _start(self, ws: ClientConnection) -> _Link:
        link = _Link(ws)
        link.replace_after(self.settings.rotate_after, "age")
        link.tasks.append(asyncio.create_task(self._read(link)))
        if self._subscribed:
            replay = self._send_subscribe(link, list(self._subscribed))
            link.tasks.append(asyncio.create_task(replay))
        self._links.add(link)
        self.stats["connects"] += 1
        self._notice("connected", f"connection {self.stats['connects']}")
        return link

    async def _watch(self, link: _Link) -> str:
        """Wait until ``link`` closes ("closed"), goes silent or should be replaced."""
        reader, limit = link.tasks[0], self.settings.silence_timeout
        replace = asyncio.ensure_future(link.replace.wait())
        try:
            while not replace.done() and not reader.done():
                idle = time.monotonic() - link.idle_since
                if idle >= limit:
                    return "silence"
                await asyncio.wait((reader, replace), timeout=limit - idle if idle >= 0 else limit,
                                   return_when=asyncio.FIRST_COMPLETED)
            return "replace" if replace.done() else "closed"
        finally:
            replace.cancel()

    async def _handover(self, old: _Link) -> _Link:
        """Open a successor to ``old``; close ``old`` once the successor has delivered a frame."""
        try:
            ws = await connect(self.url, **self._options())
        except Exception as exc:
            if (fatal := process_exception(exc)) is not None:
                raise fatal from exc
            return self._keep(old, f"{old.reason}: cannot open a successor: {exc}")
        if old.tasks[0].done():  # the old one ended before the new one was open: a gap is possible
            self._disconnected(old, "")
        new = self._start(ws)
        first = asyncio.ensure_future(new.first_frame.wait())
        try:
            await asyncio.wait((first, new.tasks[0]), timeout=self.settings.silence_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            first.cancel()
        if not new.first_frame.is_set():
            await self._finish(new, drain=False)
            return self._keep(old, f"{old.reason}: the successor sent nothing")
        await self._finish(old, drain=True)
        self._delays = None
        self.stats["rotations"] += 1
        self._notice("rotated", old.reason)
        return new

    def _keep(self, old: _Link, detail: str) -> _Link:
        """A handover failed: carry on with ``old`` and try again after the next delay."""
        self._notice("handover_failed", detail)
        old.replace_after(self._next_delay(), old.reason)
        return old

    async def _finish(self, link: _Link, *, drain: bool) -> None:
        """Close ``link``; with ``drain``, read what it had buffered up to its close."""
        if link.timer is not None:
            link.timer.cancel()
        closing = asyncio.ensure_future(link.ws.close())
        if drain:  # the reader ends at the close, after the frames buffered before it
            await asyncio.wait(link.tasks[:1])
        await closing
        for task in link.tasks:
            task.cancel()
        results = await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.discard(link)
        if isinstance(results[0], Exception):  # crash-only: a reader fails only on a bug
            raise results[0]

    def _disconnected(self, link: _Link, detail: str) -> None:
        if not link.reported:
            link.reported = True
            self.stats["disconnects"] += 1
            self._notice("disconnected", detail or str(link.closed or "closed"))

    def _next_delay(self) -> float:
        if self._delays is None:
            self._delays = self.reconnect_delays()
        return next(self._delays)

    # ---- frames in, messages out -------------------------------------------------------------

    async def _read(self, link: _Link) -> None:
        """Put every frame of ``link`` on the queue, stamped at receipt (hot loop)."""
        recv, queue, stats, monotonic = link.ws.recv, self._frames(), self.stats, time.monotonic
        try:
            while True:
                link.idle_since = monotonic()
                data = await recv(decode=False)
                frame = RawFrame(time.time_ns(), data)
                if not data.startswith(_DATA) or data.startswith(_BANG):
                    self._inspect(link, data)
                elif not link.first_frame.is_set():
                    link.first_frame.set()
                if queue.full():
                    link.idle_since = math.inf  # waiting on the consumer is not silence
                    stats["queue_full_waits"] += 1
                    await queue.put(frame)
                else:
                    queue.put_nowait(frame)
                stats["frames"] += 1
                if (n := queue.qsize()) > stats["max_queue"]:
                    stats["max_queue"] = n
        except ConnectionClosed as exc:
            link.closed = exc

    def _inspect(self, link: _Link, data: bytes) -> None:
        """Notice a ``serverShutdown`` or an error frame (both are forwarded as well)."""
        if b'"serverShutdown"' in data:
            self.stats["server_shutdowns"] += 1
            self._notice("server_shutdown", data[:200].decode(errors="replace"))
            link.request_replace("server_shutdown")
        elif data.startswith((b'{"code"', b'{"error"')):
            self.stats["error_frames"] += 1
            self._notice("error_frame", data[:200].decode(errors="replace"))

    async def _send_subscribe(self, link: _Link, names: Sequence[str]) -> None:
        """Send SUBSCRIBE for ``names`` on ``link``, batched and paced; a closed link is skipped."""
        async with link.send_lock:
            for i in range(0, len(names), SUBSCRIBE_BATCH):
                await asyncio.sleep(max(0.0, link.next_send - time.monotonic()))
                self._ids += 1
                message = {"method": "SUBSCRIBE", "params": list(names[i:i + SUBSCRIBE_BATCH]),
                           "id": self._ids}
                try:
                    await link.ws.send(json.dumps(message))
                except ConnectionClosed:
                    return  # the next connection replays every subscription
                link.next_send = time.monotonic() + CONTROL_SPACING
                self.stats["subscribe_messages"] += 1

    def _notice(self, kind: str, detail: str) -> None:
        notice = FeedNotice(kind, time.time_ns(), detail)
        quiet = kind in ("connected", "rotated")
        (log.info if quiet else log.warning)("feed_" + kind, detail=detail, url=self.url)
        if self.on_notice is not None:
            self.on_notice(notice)
