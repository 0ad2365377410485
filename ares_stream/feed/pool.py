"""Many websocket connections as one feed: every configured stream, within Binance's limits.

A :class:`FeedPool` deals the symbols evenly over as few connections as ``max_streams`` (at most
1,024 streams a connection, Binance's cap) allows, a symbol's streams always on one connection.
Each connection is a :class:`~ares_stream.feed.ws.WsFeed` with its own rotation, silence
watchdog and reconnects (and its own pacing of SUBSCRIBE messages, under 5 a second); they share

- one bounded queue: frames of all connections interleave in arrival order, as a recording keeps
  them, and a slow engine holds every reader back alike (backpressure, nothing dropped);
- one :class:`~ares_stream.feed.ws.ConnectionBudget`: 300 connection attempts per 5 minutes per
  IP, reconnects and rotations included.

Every :class:`~ares_stream.feed.ws.FeedNotice` names its connection (``conn``) and the symbols
it carries, so downstream catches up over REST only what one connection may have missed.

>>> [len(c) for c in split_streams([f"s{i}" for i in range(600)], ["aggTrade", "bookTicker"])]
[600, 600]
>>> split_streams(["a", "b", "c"], ["trade", "depth"], max_streams=4)
[['a@trade', 'a@depth', 'b@trade', 'b@depth'], ['c@trade', 'c@depth']]
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence

from ares_stream.feed import RawFrame
from ares_stream.feed.ws import (
    MAX_STREAMS,
    ConnectionBudget,
    Delays,
    FeedNotice,
    WsFeed,
    WsSettings,
    stream_names,
)

__all__ = ["FeedPool", "split_streams"]


def split_streams(symbols: Sequence[str], streams: Sequence[str],
                  max_streams: int = MAX_STREAMS) -> list[list[str]]:
    """The stream names of each connection: the fewest connections of at most ``max_streams``,
    the symbols dealt evenly in their order, each symbol's streams together."""
    per_symbol = len(dict.fromkeys(streams))
    if per_symbol > max_streams:
        raise ValueError(f"{per_symbol} streams per symbol do not fit {max_streams} per "
                         "connection")
    unique = list(dict.fromkeys(s.lower() for s in symbols))
    if not unique:
        return [[]]
    conns = math.ceil(len(unique) / (max_streams // per_symbol))
    size = math.ceil(len(unique) / conns)
    return [stream_names(unique[i:i + size], streams, None) for i in range(0, len(unique), size)]


class FeedPool:
    """Read every stream of ``settings`` over as many connections as it takes, into
    :attr:`queue`, until :meth:`stop` (the interface of one :class:`WsFeed`)."""

    def __init__(self, settings: WsSettings, *, reconnect_delays: Delays | None = None,
                 on_notice: Callable[[FeedNotice], None] | None = None,
                 budget: ConnectionBudget | None = None) -> None:
        self.settings = settings
        self.on_notice = on_notice
        self.budget = budget if budget is not None else ConnectionBudget()
        self.feeds: list[WsFeed] = []
        chunks = split_streams(settings.symbols, settings.streams, settings.max_streams)
        for conn, names in enumerate(chunks):
            queue = self.feeds[0].queue if self.feeds else None
            self.feeds.append(WsFeed(settings, reconnect_delays=reconnect_delays,
                                     on_notice=self._forward, names=names, queue=queue,
                                     budget=self.budget, conn=conn))
        self.connections = len(self.feeds)
        self.url = self.feeds[0].url

    @property
    def queue(self) -> asyncio.Queue[RawFrame]:
        """The one bounded queue every connection reads into."""
        return self.feeds[0].queue

    @property
    def stats(self) -> dict[str, int]:
        """The connections' counters summed (``max_queue``: of the shared queue)."""
        total = dict.fromkeys(self.feeds[0].stats, 0)
        for feed in self.feeds:
            for key, value in feed.stats.items():
                total[key] = max(total[key], value) if key == "max_queue" else total[key] + value
        total["connections"] = self.connections
        return total

    def lag_ns(self) -> int:
        """How long the oldest queued frame has waited (ns); 0 when the queue is empty."""
        return self.feeds[0].lag_ns()

    def symbols(self, conn: int) -> frozenset[str]:
        """The symbols (upper case) connection ``conn`` carries."""
        return self.feeds[conn].symbols

    async def run(self) -> None:
        """Run every connection until :meth:`stop`; a fatal error of one stops them all."""
        tasks = [asyncio.create_task(feed.run(), name=f"ws-feed-{feed.conn}")
                 for feed in self.feeds]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            self.stop()
            await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        """End :meth:`run` promptly, closing every connection."""
        for feed in self.feeds:
            feed.stop()

    def _forward(self, notice: FeedNotice) -> None:
        if self.on_notice is not None:
            self.on_notice(notice)
