"""Many symbols over many connections: ``python bench/connections.py`` prints a table.

The local exchange runs in its own process and plays a simulator tape relabelled into N symbols
(aggTrade and bookTicker each: 2N streams) as fast as it can, once every stream has a
subscriber; this process runs the real client (:class:`~ares_stream.feed.pool.FeedPool`: as
many connections as 1,024 streams each need, the first streams of each in its URL, the rest
SUBSCRIBEd in paced batches) into the engine as ``ares-stream record`` runs it (decode, gate,
bars; no learning) through the daemon's ingest loop. Measured per N:

- the time from the start until every connection has every stream confirmed (SUBSCRIBE answered);
- frames/s from the first frame to the last one processed by the engine (the whole tape), and
  whether every aggregate trade id of every symbol arrived exactly once;
- what the exchange saw: the longest request line, most streams and messages a second on one
  connection.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ares_stream import logs
from ares_stream.config import Config, replace_values
from ares_stream.daemon.ingest import Ingest, ws_settings
from ares_stream.engine import Engine
from ares_stream.events import Trade
from ares_stream.feed.pool import FeedPool
from ares_stream.feed.ws import FeedNotice, backoff
from ares_stream.sim.simulator import write_recording
from ares_stream.store.db import open_db
from ares_stream.store.runs import RunStore

STREAMS = ["aggTrade", "bookTicker"]


def serve(path: str, n: int, frames: int, out: Any, stop: Any) -> None:
    """The exchange process: the tape of ``n`` symbols, played once all 2n streams are on."""
    from ares_stream.sim.exchange import LocalExchange, Tape, many_symbols

    async def main() -> None:
        tape = many_symbols(Tape.from_recording([path]), n, frames=frames)
        ids = {s: [r["a"] for r in series.rows] for s, series in tape.agg_trades.items()}
        async with LocalExchange(tape, ping_interval=None, max_queue=2_000_000,
                                 start_after_streams=2 * n) as ex:
            out.put((ex.ws_url, ex.rest_url, len(tape.frames), tape.symbols, ids))
            while not stop.is_set():
                await asyncio.sleep(0.05)
            out.put(dict(ex.stats))

    asyncio.run(main())


class IdEngine(Engine):
    """The engine, keeping each symbol's aggregate trade ids (to prove none lost or doubled)."""

    ids: dict[str, list[int]]

    def _process(self, ev: Any) -> None:
        if type(ev) is Trade:
            self.ids[ev.symbol].append(ev.trade_id)
        super()._process(ev)


async def client(ws: str, symbols: list[str], n_frames: int, db: Path) -> dict[str, Any]:
    cfg = replace_values(Config(), {"feed": {"symbols": symbols, "streams": STREAMS,
                                             "ws_url": ws, "record": False},
                                    "bars": {"interval": "1s"}})
    store = RunStore(open_db(db), mode="bench", config={}, sources=[])
    engine = IdEngine(cfg, store, learn=False)
    engine.ids = defaultdict(list)
    pool = FeedPool(ws_settings(cfg), reconnect_delays=backoff(0.05, cap=0.5))
    ingest = Ingest(engine, pool, None)
    ready: list[float] = []

    def on_notice(notice: FeedNotice) -> None:
        ingest.on_notice(notice)
        if notice.kind == "subscribed" or (notice.kind == "connected" and notice.complete):
            ready.append(time.perf_counter())

    pool.on_notice = on_notice
    began = time.perf_counter()
    task = asyncio.create_task(ingest.run())
    while len(ready) < pool.connections or pool.stats["frames"] <= pool.stats[
            "subscribe_messages"]:  # every stream on, and a data frame in
        await asyncio.sleep(0.001)
    first = time.perf_counter()
    while engine.counts["frames"] < n_frames + pool.stats["subscribe_messages"]:
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - first
    ingest.stop()
    await task
    store.flush()
    return {"connections": pool.connections, "subscribe_s": max(ready) - began,
            "elapsed": elapsed, "ids": dict(engine.ids), "feed": pool.stats}


def scenario(path: Path, n: int, total: int, tmp: Path) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=serve, args=(str(path), n, max(1, total // n), out, stop),
                         daemon=True)
    server.start()
    try:
        ws, _, n_frames, symbols, ids = out.get(timeout=300)
        r = asyncio.run(client(ws, symbols, n_frames, tmp / f"n{n}.db"))
        stop.set()
        r["exchange"] = out.get(timeout=60)
        r["frames"], r["exact"] = n_frames, r["ids"] == ids
        return r
    finally:
        stop.set()
        server.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default="200,1000,2000", help="N values, comma-separated")
    parser.add_argument("--frames", type=int, default=200_000, help="tape frames per N")
    args = parser.parse_args()
    logs.configure(level="error")
    print(f"{'symbols':>7} {'streams':>7} {'conns':>5} {'subscribe s':>11} {'frames':>8} "
          f"{'frames/s':>9} {'exact':>5} {'max line B':>10} {'max streams':>11} "
          f"{'max msg/s':>9} {'SUBSCRIBEs':>10}")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        source = tmp / "one.gz"
        write_recording(source, seconds=6 * 3600, seed=7, symbol="SIMUSDT")
        for n in (int(x) for x in args.symbols.split(",")):
            r = scenario(source, n, args.frames, tmp)
            ex = r["exchange"]
            print(f"{n:>7} {2 * n:>7} {r['connections']:>5} {r['subscribe_s']:>11.3f} "
                  f"{r['frames']:>8,} {r['frames'] / r['elapsed']:>9,.0f} "
                  f"{'yes' if r['exact'] else 'NO':>5} {ex['max_request_line']:>10,} "
                  f"{ex['max_conn_streams']:>11} {ex['max_msg_rate']:>9} "
                  f"{r['feed']['subscribe_messages']:>10}", flush=True)


if __name__ == "__main__":
    main()
