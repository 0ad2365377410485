"""The live Binance websocket: the only module that touches the socket (client side).

:class:`WsFeed` serves one connection's streams (at most 1,024, Binance's cap) and puts every
frame, stamped with ``time.time_ns()`` right after receipt, on a bounded queue as a
:class:`~ares_stream.feed.RawFrame`. Nothing is dropped: a full queue makes the reader wait
(backpressure), counted in ``stats``. Many connections are the job of
:class:`~ares_stream.feed.pool.FeedPool`: one :class:`WsFeed` each, sharing one queue and one
:class:`ConnectionBudget`.

How a connection asks for its streams: the first ones go in the URL, as many as keep the path
within :data:`URL_BUDGET` bytes (a server refuses a request line over 8 KB with 414); the rest
follow as ``SUBSCRIBE`` messages of :data:`SUBSCRIBE_BATCH` names, paced under 5 messages a
second, on every new connection. The URL alone would need a connection per ~200 streams, SUBSCRIBE
alone would leave every connection silent until its first reply; both keep a small configuration
exactly one short URL, and fill a connection up to 1,024 streams with at most 5 messages (1 s).
A connection is *ready* once every SUBSCRIBE is confirmed (``{"result":null,"id":n}``): its
``connected`` notice says whether it is already (``complete``); if not, ``subscribed`` follows.

Connections are made by websockets' ``async for ws in connect(url, ...)``; the retry decision
(:func:`process_exception`) and the delays (:func:`backoff`) are plain functions passed in. What the
feed adds on top, each reported as a :class:`FeedNotice`:

- a silence watchdog: no data frame *received by the socket* for ``silence_timeout`` seconds →
  ``silence``, reconnect (received is stamped where websockets parses the frame, so an engine
  that holds the loop, or a reader waiting on a full queue, is never taken for a silent server);
- ``serverShutdown`` and proactive rotation after ``rotate_after`` seconds: a second connection is
  opened while the old one is still read; the old one is closed (and drained) once the new one is
  ready and has delivered its first data frame (``rotated``). During that overlap both
  connections' frames reach the queue, so **downstream must deduplicate trades by id** (it
  already skips ids it has seen);
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
from websockets.frames import Opcode

from ares_stream.errors import AresError
from ares_stream.feed import RawFrame

__all__ = ["MAX_STREAMS", "URL_BUDGET", "ConnectionBudget", "FeedError", "FeedNotice", "WsFeed",
           "WsSettings", "backoff", "connection_url", "process_exception", "stream_names",
           "stream_url"]

log = structlog.get_logger(__name__)

Delays = Callable[[], Generator[float, None, None]]
MAX_STREAMS = 1024  # Binance: streams per connection
SUBSCRIBE_BATCH = 200  # stream names per SUBSCRIBE message
URL_BUDGET = 4096  # bytes of a connection's path and query: half the usual 8 KB request line
CONNECTIONS_PER_WINDOW = (300, 300.0)  # Binance: 300 connection attempts per 5 minutes per IP
CONTROL_SPACING = 0.25  # s between our control messages: 4/s leaves room under 5/s for a ping/pong
STABLE_AFTER = 10.0  # s a connection must last for the reconnect delays to start over
_DATA = b'{"stream":"'  # every combined-stream data frame starts so; anything else is inspected
_BANG = b'{"stream":"!'  # "!serverShutdown" and the all-market streams
_REPLY = b'{"result":'  # a reply to one of our control messages
_DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)


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
    max_streams: int = MAX_STREAMS  # streams per connection (a pool opens as many as needed)

    def __post_init__(self) -> None:
        times = (self.silence_timeout, self.rotate_after, self.open_timeout, self.close_timeout)
        if min(times) <= 0 or self.queue_size < 1:
            raise ValueError("WsSettings: timeouts and rotate_after must be > 0, queue_size >= 1")
        if not 1 <= self.max_streams <= MAX_STREAMS:
            raise ValueError(f"WsSettings: max_streams must be 1-{MAX_STREAMS}")


@dataclass(frozen=True)
class FeedNotice:
    """What happened to the connection, for feed health: ``kind`` at ``ts`` (ns)."""

    kind: str  # connected, subscribed, disconnected, silence, rotated, server_shutdown, …
    ts: int
    detail: str = ""
    conn: int = 0  # which connection of a pool
    symbols: frozenset[str] = frozenset()  # the symbols it carries (upper case)
    complete: bool = True  # connected: every stream is on already (else "subscribed" follows)


class ConnectionBudget:
    """Binance's limit on connection attempts per IP (300 per 5 minutes), shared by every
    connection of a process: :meth:`acquire` waits until an attempt is within it."""

    def __init__(self, limit: int = CONNECTIONS_PER_WINDOW[0],
                 window: float = CONNECTIONS_PER_WINDOW[1]) -> None:
        self.limit, self.window = limit, window
        self.attempts: deque[float] = deque()  # monotonic times of the recent attempts
        self.waited = 0.0  # seconds spent waiting for room

    def note(self) -> None:
        """Count an attempt made without asking (a retry inside websockets' reconnect loop)."""
        self.attempts.append(time.monotonic())

    async def acquire(self) -> None:
        """Wait until one more attempt fits in the window, and count it."""
        while True:
            now = time.monotonic()
            while self.attempts and self.attempts[0] <= now - self.window:
                self.attempts.popleft()
            if len(self.attempts) < self.limit:
                self.attempts.append(now)
                return
            delay = self.attempts[0] + self.window - now
            self.waited += delay
            await asyncio.sleep(delay)


def stream_names(symbols: Sequence[str], streams: Sequence[str],
                 limit: int | None = MAX_STREAMS) -> list[str]:
    """Combined-stream names, symbol lower-cased, stream kept as given, duplicates dropped; more
    than ``limit`` (one connection's) is an error.

    >>> stream_names(["BTCUSDT", "ethusdt"], ["aggTrade", "depth@100ms"])
    ['btcusdt@aggTrade', 'btcusdt@depth@100ms', 'ethusdt@aggTrade', 'ethusdt@depth@100ms']
    """
    names = list(dict.fromkeys(f"{s.lower()}@{st}" for s in symbols for st in streams))
    if limit is not None and len(names) > limit:
        raise ValueError(f"{len(names)} streams; Binance allows {limit} per connection")
    return names


def connection_url(base_url: str, names: Sequence[str], time_unit: str | None = None,
                   budget: int = URL_BUDGET) -> tuple[str, list[str]]:
    """A connection's URL with the first ``names`` that keep its path within ``budget`` bytes,
    and the names left for SUBSCRIBE.

    >>> connection_url("wss://x", ["a@trade", "b@trade", "c@trade"], budget=30)
    ('wss://x/stream?streams=a@trade', ['b@trade', 'c@trade'])
    >>> connection_url("wss://x/", [], "MICROSECOND")
    ('wss://x/stream?timeUnit=MICROSECOND', [])
    """
    path, unit = "/stream", f"timeUnit={time_unit}" if time_unit else ""
    size = len(path) + len("?streams=") + (len(unit) + 1 if unit else 0) - 1
    n = 0
    while n < len(names) and size + 1 + len(names[n]) <= budget:
        size += 1 + len(names[n])
        n += 1
    query = ([f"streams={'/'.join(names[:n])}"] if n else []) + ([unit] if unit else [])
    url = base_url.rstrip("/") + path + ("?" + "&".join(query) if query else "")
    return url, list(names[n:])


def symbols_of(names: Sequence[str]) -> frozenset[str]:
    """The symbols (upper case) of stream names; all-market streams (``!…``) have none."""
    return frozenset(n.partition("@")[0].upper() for n in names if not n.startswith("!"))


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


class _Stamped(ClientConnection):
    """websockets' client connection, stamping when the socket last delivered a data frame:
    where the frame is parsed, before anyone reads it (a busy loop or a full queue delays the
    reader, never this)."""

    last_frame = 0.0  # time.monotonic() of the last data frame received; 0: none yet

    def process_event(self, event: Any) -> None:
        if getattr(event, "opcode", None) in _DATA_OPCODES:
            self.last_frame = time.monotonic()
        super().process_event(event)


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
        self.subscribed = asyncio.Event()  # every SUBSCRIBE of the replay confirmed
        self.pending: set[int] = set()  # ids of the replay's SUBSCRIBEs not yet answered
        self.replaying = False  # the replay is still being sent
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

    connections = 1

    def __init__(self, settings: WsSettings, *, reconnect_delays: Delays | None = None,
                 on_notice: Callable[[FeedNotice], None] | None = None,
                 names: Sequence[str] | None = None, queue: asyncio.Queue[RawFrame] | None = None,
                 budget: ConnectionBudget | None = None, conn: int = 0) -> None:
        self.settings = settings
        if names is None:
            names = stream_names(settings.symbols, settings.streams, settings.max_streams)
        elif len(names) > settings.max_streams:
            raise ValueError(f"{len(names)} streams; at most {settings.max_streams} per connection")
        self.names = list(names)
        self.symbols = symbols_of(self.names)
        self.url, extra = connection_url(settings.base_url, self.names, settings.time_unit)
        self.conn = conn
        self.budget = budget if budget is not None else ConnectionBudget()
        self.reconnect_delays = reconnect_delays if reconnect_delays is not None else backoff()
        self.on_notice = on_notice
        self.stats: dict[str, int] = dict.fromkeys(
            ("frames", "connects", "disconnects", "silences", "rotations", "server_shutdowns",
             "error_frames", "subscribe_messages", "queue_full_waits", "max_queue",
             "connect_failures", "subscribed"), 0)
        self._queue: _FrameQueue | None = cast(_FrameQueue | None, queue)
        self._links: set[_Link] = set()
        self._subscribed: list[str] = extra  # subscriptions replayed on every new connection
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
        try:
            await self.budget.acquire()
        except asyncio.CancelledError:
            if not self._stopped:
                raise
            self._task.uncancel()
            return
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
        if verdict is None:
            self.budget.note()  # websockets retries after its delay: one more attempt
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
        new = [name for name in dict.fromkeys(streams)
               if name not in self._subscribed and name not in self.names]
        if len(self.names) + len(new) > MAX_STREAMS:
            raise ValueError(f"more than {MAX_STREAMS} streams on one connection")
        self.names.extend(new)
        self._subscribed.extend(new)
        await asyncio.gather(*(self._send_subscribe(link, new) for link in list(self._links)))

    # ---- one connection after another --------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        s = self.settings
        # No permessage-deflate: market-data frames are small and inflating costs CPU per frame.
        return {"open_timeout": s.open_timeout, "ping_interval": s.ping_interval,
                "ping_timeout": s.ping_timeout, "close_timeout": s.close_timeout,
                "compression": None, "max_queue": 256, "create_connection": _Stamped}

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
        await self.budget.acquire()  # the next attempt, made by websockets' loop

    def _start(self, ws: ClientConnection) -> _Link:
        link = _Link(ws)
        link.replace_after(self.settings.rotate_after, "age")
        link.tasks.append(asyncio.create_task(self._read(link)))
        if self._subscribed:
            link.replaying = True
            replay = self._send_subscribe(link, list(self._subscribed), replay=True)
            link.tasks.append(asyncio.create_task(replay))
        else:
            link.subscribed.set()
        self._links.add(link)
        self.stats["connects"] += 1
        self._notice("connected", f"connection {self.stats['connects']}",
                     complete=link.subscribed.is_set())
        return link

    async def _watch(self, link: _Link) -> str:
        """Wait until ``link`` closes ("closed"), goes silent or should be replaced."""
        reader, limit = link.tasks[0], self.settings.silence_timeout
        replace = asyncio.ensure_future(link.replace.wait())
        received = cast(_Stamped, link.ws)
        try:
            while not replace.done() and not reader.done():
                idle = time.monotonic() - max(link.idle_since, received.last_frame)
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
            await self.budget.acquire()
            ws = await connect(self.url, **self._options())
        except Exception as exc:
            if (fatal := process_exception(exc)) is not None:
                raise fatal from exc
            return self._keep(old, f"{old.reason}: cannot open a successor: {exc}")
        if old.tasks[0].done():  # the old one ended before the new one was open: a gap is possible
            self._disconnected(old, "")
        new = self._start(ws)
        first = asyncio.ensure_future(self._settled(new))
        try:
            await asyncio.wait((first, new.tasks[0]), timeout=self.settings.silence_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            first.cancel()
        if not (new.first_frame.is_set() and new.subscribed.is_set()):
            await self._finish(new, drain=False)
            why = "sent nothing" if new.subscribed.is_set() else "did not confirm its streams"
            return self._keep(old, f"{old.reason}: the successor {why}")
        await self._finish(old, drain=True)
        self._delays = None
        self.stats["rotations"] += 1
        self._notice("rotated", old.reason)
        return new

    @staticmethod
    async def _settled(link: _Link) -> None:
        """Until ``link`` has every stream on and has delivered a data frame."""
        await link.subscribed.wait()
        await link.first_frame.wait()

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
        """Notice a ``serverShutdown``, an error frame or a reply (all are forwarded as well)."""
        if data.startswith(_REPLY) or (data.startswith(b'{"code"') and link.pending):
            self._answered(link, data)
        if b'"serverShutdown"' in data:
            self.stats["server_shutdowns"] += 1
            self._notice("server_shutdown", data[:200].decode(errors="replace"))
            link.request_replace("server_shutdown")
        elif data.startswith((b'{"code"', b'{"error"')):
            self.stats["error_frames"] += 1
            self._notice("error_frame", data[:200].decode(errors="replace"))

    def _answered(self, link: _Link, data: bytes) -> None:
        """A reply (or an error) to a SUBSCRIBE of the replay: ``subscribed`` after the last."""
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            link.pending.discard(json.loads(data).get("id"))
        self._check_subscribed(link)

    def _check_subscribed(self, link: _Link) -> None:
        if link.pending or link.replaying or link.subscribed.is_set():
            return
        link.subscribed.set()
        self.stats["subscribed"] += 1
        self._notice("subscribed", f"{len(self.names)} streams on connection {self.conn}")

    async def _send_subscribe(self, link: _Link, names: Sequence[str],
                              replay: bool = False) -> None:
        """Send SUBSCRIBE for ``names`` on ``link``, batched and paced; a closed link is skipped.
        The ``replay`` of a new connection tracks its ids until each is answered."""
        async with link.send_lock:
            for i in range(0, len(names), SUBSCRIBE_BATCH):
                await asyncio.sleep(max(0.0, link.next_send - time.monotonic()))
                self._ids += 1
                message = {"method": "SUBSCRIBE", "params": list(names[i:i + SUBSCRIBE_BATCH]),
                           "id": self._ids}
                if replay:
                    link.pending.add(self._ids)
                try:
                    await link.ws.send(json.dumps(message))
                except ConnectionClosed:
                    return  # the next connection replays every subscription
                link.next_send = time.monotonic() + CONTROL_SPACING
                self.stats["subscribe_messages"] += 1
            if replay:
                link.replaying = False
                self._check_subscribed(link)

    def _notice(self, kind: str, detail: str, complete: bool = True) -> None:
        notice = FeedNotice(kind, time.time_ns(), detail, self.conn, self.symbols, complete)
        quiet = kind in ("connected", "rotated", "subscribed")
        (log.info if quiet else log.warning)("feed_" + kind, detail=detail, conn=self.conn,
                                             url=self.url[:200])
        if self.on_notice is not None:
            self.on_notice(notice)
