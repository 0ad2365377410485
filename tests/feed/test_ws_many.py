"""Many symbols over many connections, against the real local exchange on 127.0.0.1.

The exchange plays a simulator tape relabelled into hundreds of symbols, refuses request lines
over 8 KB and connections over 1,024 streams, and disconnects a client that sends more than 5
messages a second; its stats say what it saw.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from ares_stream.config import Config, replace_values
from ares_stream.daemon.ingest import Ingest, ws_settings
from ares_stream.engine import Engine
from ares_stream.events import Trade
from ares_stream.feed.backfill import Backfiller
from ares_stream.feed.gate import Gate
from ares_stream.feed.pool import FeedPool
from ares_stream.feed.ws import ConnectionBudget, WsSettings, backoff
from ares_stream.sim.exchange import LocalExchange, Tape, many_symbols
from ares_stream.sim.simulator import write_recording
from tests.conftest import DEADLINE, until
from tests.daemon.test_ingest import exchange_in_thread
from tests.test_engine import ListSink

STREAMS = ("aggTrade", "bookTicker")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Tape:
    """A few minutes of one simulated symbol (aggTrades and book tops)."""
    path = tmp_path_factory.mktemp("many") / "one.gz"
    write_recording(path, seconds=600, seed=5, symbol="SIMUSDT")
    return Tape.from_recording([path])


def expected(tape: Tape) -> dict[str, list[int]]:
    """Each symbol's aggregate trade ids, in tape order."""
    return {s: [row["a"] for row in series.rows] for s, series in tape.agg_trades.items()}


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 2 * DEADLINE))


@pytest.mark.parametrize(("cap", "connections"), [(1024, 2), (300, 4)])
def test_600_symbols_spread_over_connections_every_frame_once(
        source: Tape, cap: int, connections: int) -> None:
    """600 symbols x 2 streams go over the fewest connections the cap allows, within 8 KB
    request lines and 5 messages a second, and every frame of every symbol arrives once."""
    tape = many_symbols(source, 600, frames=30)
    want = expected(tape)

    async def main() -> None:
        async with LocalExchange(tape, ping_interval=None, start_after_streams=1200) as ex:
            settings = WsSettings(base_url=ex.ws_url, symbols=tuple(tape.symbols),
                                  streams=STREAMS, max_streams=cap)
            pool = FeedPool(settings, reconnect_delays=backoff(0.02, cap=0.1))
            got: dict[str, list[int]] = defaultdict(list)
            frames = 0
            task = asyncio.create_task(pool.run())
            started = time.monotonic()
            try:
                await until(lambda: ex.subscribed_streams() == 1200, what="every subscription")
                subscribed = time.monotonic() - started
                while frames < len(tape.frames):
                    message = json.loads((await pool.queue.get()).data)
                    if "stream" not in message:
                        continue  # a reply to a SUBSCRIBE
                    frames += 1
                    if message["data"].get("e") == "aggTrade":
                        got[message["data"]["s"]].append(message["data"]["a"])
            finally:
                pool.stop()
                await task
            stats = dict(ex.stats)
        assert pool.connections == stats["connections"] == connections
        assert pool.stats["connects"] == connections and pool.stats["disconnects"] == 0
        assert dict(got) == want  # every id of every symbol, once, in order
        assert stats["uri_too_long"] == stats["over_cap"] == stats["rate_limited"] == 0
        assert stats["max_request_line"] <= 8192 and stats["max_conn_streams"] <= cap
        assert 1 <= stats["max_msg_rate"] <= 5
        assert subscribed < 10, f"subscribing took {subscribed:.1f} s"

    run(main())


class SymbolEngine(Engine):
    """The engine, keeping the aggregate trade ids it processed per symbol (after the gate)."""

    def __init__(self, *args: Any, delay: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ids: dict[str, list[int]] = defaultdict(list)
        self.delay = delay

    def on_frame(self, ts_init: int, data: bytes) -> None:
        if self.delay:
            time.sleep(self.delay)  # a slow engine: it holds the loop
        super().on_frame(ts_init, data)

    def _process(self, ev: Any) -> None:
        if type(ev) is Trade:
            self.ids[ev.symbol].append(ev.trade_id)
        super()._process(ev)


def config(ws_url: str, rest_url: str, symbols: list[str], **feed: Any) -> Config:
    settings = {"symbols": symbols, "streams": list(STREAMS), "ws_url": ws_url,
                "rest_url": rest_url, "silence_timeout_s": 30.0, **feed}
    return replace_values(Config(), {"feed": settings, "bars": {"interval": "10s"}})


def test_killing_one_connection_backfills_only_its_symbols(source: Tape) -> None:
    """The exchange aborts one connection of two mid-tape: it reconnects, and REST fills the
    hole of its symbols alone; the engine gets every id of every symbol once, in order."""
    tape = many_symbols(source, 600, frames=40)
    want = expected(tape)

    async def main() -> None:
        async with LocalExchange(tape, rate=8_000, ping_interval=None,
                                 start_after_streams=1200) as ex:
            cfg = config(ex.ws_url, ex.rest_url, tape.symbols)
            engine = SymbolEngine(cfg, ListSink(), gate=Gate(backfill=True), learn=False)
            pool = FeedPool(ws_settings(cfg), reconnect_delays=backoff(0.02, cap=0.1))
            async with Backfiller(ex.rest_url) as backfiller:
                ingest = Ingest(engine, pool, backfiller)
                pool.on_notice = ingest.on_notice
                task = asyncio.create_task(ingest.run())
                try:
                    await until(lambda: ex.position > len(tape.frames) // 3, what="a third")
                    before = ex.rest_asked
                    assert ex.drop("s0000usdt@aggTrade") == 1
                    await until(lambda: all(engine.ids.get(s, [None])[-1:] == ids[-1:]
                                            for s, ids in want.items()), what="every last id")
                finally:
                    ingest.stop()
                    await task
            asked = {s for s, n in ex.rest_asked.items() if n > before.get(s, 0)}
            assert ex.stats["drops"] == 1 and pool.stats["connects"] == 3
        assert dict(engine.ids) == want
        assert asked and asked <= pool.symbols(0), "REST asked about another connection's symbol"
        assert engine.gate.counts["backfilled"] > 0 and engine.gate.counts["unfilled"] == 0

    run(main())


def test_a_slow_engine_never_passes_for_a_silent_connection(source: Tape) -> None:
    """An engine that holds the loop ~2 s at a time (8 ms a frame, 256 frames between yields)
    while frames keep arriving: the watchdog (1.5 s, shorter than a hold, longer than a busy
    machine's stall of the exchange's thread) judges what the socket received, so the healthy
    connection is never replaced, and every id arrives."""
    tape = many_symbols(source, 20, frames=100)
    want = expected(tape)

    async def main() -> None:
        with exchange_in_thread(tape, rate=400) as urls:
            cfg = config(urls["ws"], urls["rest"], tape.symbols, silence_timeout_s=1.5)
            engine = SymbolEngine(cfg, ListSink(), gate=Gate(backfill=True), learn=False,
                                  delay=0.008)
            pool = FeedPool(ws_settings(cfg), reconnect_delays=backoff(0.02, cap=0.1))
            ingest = Ingest(engine, pool, None)
            pool.on_notice = ingest.on_notice
            task = asyncio.create_task(ingest.run())
            try:
                await until(lambda: sum(map(len, engine.ids.values())) >= 500,
                            what="500 trades through the slow engine")
            finally:
                ingest.stop()
                await task
        assert pool.stats["silences"] == 0 and pool.stats["connects"] == 1
        assert pool.stats["disconnects"] == 0
        assert all(engine.ids[s] == ids[:len(engine.ids[s])] for s, ids in want.items())

    run(main())


def test_the_pool_of_one_connection_is_the_single_feed(tmp_path: Path) -> None:
    """A few symbols make one connection whose URL carries every stream, as before."""
    pool = FeedPool(WsSettings(base_url="ws://x", symbols=("BTCUSDT", "ETHUSDT")))
    assert pool.connections == 1
    assert pool.url == "ws://x/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"
    many = FeedPool(WsSettings(base_url="ws://x", symbols=tuple(f"S{i}" for i in range(3000)),
                               streams=STREAMS))
    assert many.connections == 6 and all(len(f.names) == 1000 for f in many.feeds)
    assert all(len(f.url) < 4200 for f in many.feeds)


def test_the_connection_budget_holds_attempts_to_its_window() -> None:
    """Within a window only ``limit`` attempts go at once; the next waits for the oldest to age
    out of it (Binance: 300 per 5 minutes per IP), and retries noted count too."""

    async def main() -> None:
        budget = ConnectionBudget(limit=3, window=0.3)
        began = time.monotonic()
        for _ in range(3):
            await budget.acquire()
        assert time.monotonic() - began < 0.3 and budget.waited == 0
        budget.note()  # a retry made by websockets' loop
        await budget.acquire()  # the fifth: waits for the first two to leave the window
        assert time.monotonic() - began >= 0.3 and budget.waited > 0
        assert len(budget.attempts) <= 3

    run(main())
