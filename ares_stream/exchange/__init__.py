"""A local Binance-compatible exchange for tests and ``--feed sim``: websocket streams and REST
market data replaying a :class:`Tape`, with injected :class:`Faults`.

Like the real exchange it has one broadcast clock: a single task walks the tape at ``rate``
frames/s (``None``: as fast as the loop allows) and hands each frame to every connection
subscribed to its stream at that moment. A client that is not connected misses those frames
(nothing is resent); REST gives back what the clock has already broadcast, and nothing after.
With ``start_on_subscribe`` the clock starts when a first connection subscribes to anything.

Use it as an async context manager; connect to ``ws_url + "/stream?streams=btcusdt@aggTrade"``
or ``ws_url + "/ws/btcusdt@aggTrade"``, query ``rest_url + "/api/v3/aggTrades?symbol=BTCUSDT"``.
With an :class:`Account` it also takes signed orders (``/api/v3/order`` …), matched against what
the clock has broadcast; see :mod:`ares_stream.exchange.account`.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from ares_stream.exchange.account import Account
from ares_stream.exchange.faults import Faults
from ares_stream.exchange.rest import RestServer
from ares_stream.exchange.tape import Tape
from ares_stream.exchange.wsserver import WsServer

__all__ = ["STAT_KEYS", "Account", "Faults", "LocalExchange", "Tape"]

STAT_KEYS = (
    "connections", "refused", "drops", "closes", "malformed", "duplicates", "swaps", "silences",
    "shutdowns", "overflows", "rest_requests", "rest_429", "rest_418", "subscribe_messages",
    "rate_limited", "orders", "order_rejects",
)  # fmt: skip
"""The keys of :attr:`LocalExchange.stats` (``overflows``: slow clients dropped; ``orders``: new
order requests, ``order_rejects``: those answered with an error)."""
_BATCH = 64  # frames between yields to the loop at full speed; into one client in the same
# process (the real 41k-frame capture): 1 → 36k frames/s, 16 → 62k, 64 → 83–86k, 256 → 79k


class LocalExchange:
    """Websocket and REST servers on free ports of ``host`` over one broadcast clock.

    ``max_queue`` bounds each connection's outbound queue (frames); a client that falls that
    far behind is dropped, as Binance drops slow clients. ``account`` (balances, API key and
    secret) answers the signed trading endpoints; without one they refuse every key.
    """

    def __init__(
        self,
        tape: Tape,
        *,
        rate: float | None = None,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        ping_interval: float | None = 20.0,
        start_on_subscribe: bool = True,
        max_queue: int = 50_000,
        account: Account | None = None,
    ) -> None:
        self.tape, self.rate, self.start_on_subscribe = tape, rate, start_on_subscribe
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self.position = 0  # frames of the tape broadcast so far: the exchange's clock
        self.done = asyncio.Event()  # set once the whole tape was broadcast
        self._go = asyncio.Event()
        self._clock: asyncio.Task[None] | None = None
        faults = faults if faults is not None else Faults()
        self.account = account
        if account is not None:
            account.bind(tape, self._position, self.stats)
        self._rest = RestServer(tape, self._position, faults, self.stats, host=host,
                                account=account)
        self._ws = WsServer(
            faults, self.stats, host=host, ping_interval=ping_interval, max_queue=max_queue,
            on_subscribe=self._go.set,
        )  # fmt: skip

    @property
    def faults(self) -> Faults:
        """The faults in force (mutable at run time; assigning a new one replaces them)."""
        return self._ws.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
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

    async def _run(self) -> None:
        """The broadcast clock: every frame to its subscribers, paced by ``rate``."""
        await self._go.wait()
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, (stream, payload) in enumerate(self.tape.frames):
            if self.rate is not None:
                ahead = start + i / self.rate - loop.time()
                await asyncio.sleep(ahead if ahead > 0.001 else 0)  # below 1 ms: catch up
            elif i % _BATCH == 0:
                await asyncio.sleep(0)
            self._ws.broadcast(stream.lower(), stream, payload)
            self.position = i + 1
        self._ws.end_of_tape()
        self.done.set()
