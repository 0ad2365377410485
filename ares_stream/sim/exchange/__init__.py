"""A local Binance-compatible exchange for tests and ``--feed sim``: websocket streams and REST
market data replaying a :class:`Tape`, with injected :class:`Faults`.

Like the real exchange it has one broadcast clock: a single task walks the tape and hands each
frame to every connection subscribed to its stream at that moment — at ``rate`` frames/s, or
paced by the frames' receive times at ``speed`` × real time (frame *i* goes out at the clock's
start + (tᵢ − t₀) / speed), or (neither) as fast as the loop allows. A client that is not
connected misses those frames (nothing is resent); REST gives back what the clock has already
broadcast, and nothing after.
With ``start_on_subscribe`` the clock starts when a first connection subscribes to anything;
with ``start_after_streams`` = n once n distinct streams have a subscriber (a client spreading
many symbols over several connections gets every frame from the first).
:meth:`LocalExchange.drop` aborts the connections carrying a stream (an exchange-side fault on
one connection of many); :func:`~ares_stream.sim.exchange.tape.many_symbols` relabels a tape
into n symbols, and ``exchangeInfo`` lists the played symbols (TRADING) beside a few that are
not (:data:`~ares_stream.sim.exchange.rest.NOT_TRADING`).

Use it as an async context manager; connect to ``ws_url + "/stream?streams=btcusdt@aggTrade"``
or ``ws_url + "/ws/btcusdt@aggTrade"``, query ``rest_url + "/api/v3/aggTrades?symbol=BTCUSDT"``;
a tape with depth diffs serves ``btcusdt@depth@100ms`` and the matching book at
``rest_url + "/api/v3/depth?symbol=BTCUSDT&limit=100"``.
With an :class:`Account` it also takes signed orders (``/api/v3/order`` …), matched against what
the clock has broadcast; see :mod:`ares_stream.sim.exchange.account`.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from ares_stream.sim.exchange.account import Account
from ares_stream.sim.exchange.faults import Faults
from ares_stream.sim.exchange.rest import RestServer
from ares_stream.sim.exchange.tape import Tape, many_symbols
from ares_stream.sim.exchange.wsserver import WsServer

__all__ = ["STAT_KEYS", "Account", "Faults", "LocalExchange", "Tape", "many_symbols"]

STAT_KEYS = (
    "connections", "refused", "drops", "closes", "malformed", "duplicates", "swaps", "silences",
    "shutdowns", "overflows", "rest_requests", "rest_429", "rest_418", "subscribe_messages",
    "rate_limited", "orders", "order_rejects", "depth_skips", "stale_depth", "uri_too_long",
    "over_cap", "max_request_line", "max_conn_streams", "max_msg_rate",
)  # fmt: skip
"""The keys of :attr:`LocalExchange.stats` (``overflows``: slow clients dropped; ``orders``: new
order requests, ``order_rejects``: those answered with an error; ``depth_skips``: depth diffs left
out on a connection, ``stale_depth``: stale depth snapshots served; ``uri_too_long``: handshakes
refused 414, ``over_cap``: requests for more than 1,024 streams on a connection; the ``max_``
keys: the longest request line, most streams on one connection, most incoming messages within a
second on one connection)."""
_BATCH = 64  # frames between yields to the loop at full speed; into one client in the same
# process (the real 41k-frame capture): 1 → 36k frames/s, 16 → 62k, 64 → 83–86k, 256 → 79k


class LocalExchange:
    """Websocket and REST servers on ``host`` over one broadcast clock.

    ``ws_port`` / ``rest_port``: 0 (the default) picks free ports. ``rate`` (frames/s) and
    ``speed`` (a multiple of the tape's own time) are exclusive. ``max_queue`` bounds each
    connection's outbound queue (frames); a client that falls that far behind is dropped, as
    Binance drops slow clients. ``account`` (balances, API key and
    secret) answers the signed trading endpoints; without one they refuse every key.
    """

    def __init__(
        self,
        tape: Tape,
        *,
        rate: float | None = None,
        speed: float | None = None,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        ws_port: int = 0,
        rest_port: int = 0,
        ping_interval: float | None = 20.0,
        start_on_subscribe: bool = True,
        max_queue: int = 50_000,
        account: Account | None = None,
        start_after_streams: int = 0,
    ) -> None:
        if rate is not None and speed is not None:
            raise ValueError("rate and speed are exclusive: pace by frames/s or by tape time")
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.tape, self.rate, self.speed = tape, rate, speed
        self.start_on_subscribe = start_on_subscribe or start_after_streams > 0
        self.start_after_streams = start_after_streams
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self.position = 0  # frames of the tape broadcast so far: the exchange's clock
        self.done = asyncio.Event()  # set once the whole tape was broadcast
        self.started: float | None = None  # loop time the clock started at
        self._go = asyncio.Event()
        self._clock: asyncio.Task[None] | None = None
        faults = faults if faults is not None else Faults()
        self.account = account
        if account is not None:
            account.bind(tape, self._position, self.stats)
        self._rest = RestServer(tape, self._position, faults, self.stats, host=host,
                                port=rest_port, account=account)
        self._ws = WsServer(
            faults, self.stats, host=host, port=ws_port, ping_interval=ping_interval,
            max_queue=max_queue, on_subscribe=self._subscribed,
        )  # fmt: skip

    @property
    def faults(self) -> Faults:
        """The faults in force (mutable at run time; assigning a new one replaces them)."""
        return self._ws.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        """Replace the faults of both servers."""
        self._ws.faults = self._rest.faults = faults

    @property
    def ws_url(self) -> str:
        """``ws://<host>:<port>`` (empty before :meth:`start`)."""
        return self._ws.url

    @property
    def rest_url(self) -> str:
        """``http://<host>:<port>`` (empty before :meth:`start`)."""
        return self._rest.url

    def _position(self) -> int:
        return self.position

    def _subscribed(self) -> None:
        if not self.start_after_streams or self._ws.streams() >= self.start_after_streams:
            self._go.set()

    def drop(self, stream: str) -> int:
        """Abort (no close frame) every connection carrying ``stream``; how many there were."""
        return self._ws.drop(stream)

    @property
    def rest_asked(self) -> dict[str, int]:
        """REST requests naming each symbol so far (a backfill, a catch-up, a snapshot …)."""
        return dict(self._rest.asked)

    def subscribed_streams(self) -> int:
        """How many distinct streams have a subscriber now."""
        return self._ws.streams()

    async def start(self) -> None:
        """Start both servers and the clock (which waits for a subscriber if asked to)."""
        await self._rest.start()
        await self._ws.start()
        if not self.start_on_subscribe:
            self._go.set()
        self._clock = asyncio.create_task(self._run(), name="local-exchange-clock")

    async def stop(self) -> None:
        """Stop the clock, close every connection and both servers."""
        if self._clock is not None:
            self._clock.cancel()
            await asyncio.gather(self._clock, return_exceptions=True)
            self._clock = None
        await self._ws.stop()
        await self._rest.stop()

    async def __aenter__(self) -> LocalExchange:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def due(self, i: int) -> float:
        """Seconds after the clock's start at which frame ``i`` goes out (paced clocks)."""
        if self.speed is not None:
            return (self.tape.times[i] - self.tape.times[0]) / 1e9 / self.speed
        return i / self.rate if self.rate is not None else 0.0

    async def _run(self) -> None:
        """The broadcast clock: every frame to its subscribers, paced by ``rate`` or ``speed``."""
        await self._go.wait()
        loop = asyncio.get_running_loop()
        self.started = start = loop.time()
        paced = self.rate is not None or self.speed is not None
        for i, (stream, payload) in enumerate(self.tape.frames):
            if paced:
                ahead = start + self.due(i) - loop.time()
                await asyncio.sleep(ahead if ahead > 0.001 else 0)  # below 1 ms: catch up
            elif i % _BATCH == 0:
                await asyncio.sleep(0)
            self._ws.broadcast(stream.lower(), stream, payload)
            self.position = i + 1
        self._ws.end_of_tape()
        self.done.set()
