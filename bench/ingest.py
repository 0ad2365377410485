"""Live ingest throughput and latency: ``python bench/ingest.py`` prints a table.

The local exchange runs in its own process (one core) and plays a tape as fast as it can; this
process runs the real websocket client, the gate, the engine (features, River, ADWIN) and the
SQLite store on the other core, exactly as the daemon does. Measured:

1. frames/s sustained from the socket into the engine, on the two real BTCUSDT captures served as
   fast as the exchange can (logreg, 1 s bars, every stage on);
2. p50 / p99 latency from a frame's arrival to the prediction it triggers (a bar close), and
   from arrival to the end of processing for every frame (the engine's lag) — meaningful in the
   paced run (``--rate``), where the engine keeps up; flat out, it measures queueing;
3. an engine slower than the wire (a 10-tree adaptive random forest on 1 s bars of the simulator,
   with a small queue): the queue fills to its bound, the socket is paused (backpressure), lag
   grows — and not one trade id is lost or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ares_stream import logs
from ares_stream.config import Config, replace_values
from ares_stream.daemon.ingest import Ingest, LagStats, ws_settings
from ares_stream.engine import Engine
from ares_stream.events import Prediction, Trade
from ares_stream.feed.backfill import Backfiller
from ares_stream.feed.gate import Gate
from ares_stream.feed.ws import WsFeed, backoff
from ares_stream.sim.simulator import write_recording
from ares_stream.store.db import open_db
from ares_stream.store.runs import RunStore

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WS = sorted((DATA / "ws").glob("binance-spot-btcusdt-2024080*.gz"))


def serve(paths: list[str], urls: Any, stop: Any, rate: float | None) -> None:
    """The exchange process: play the tape once a client subscribes, until told to stop."""
    from ares_stream.sim.exchange import LocalExchange, Tape

    async def main() -> None:
        tape = Tape.from_recording(paths)
        async with LocalExchange(tape, rate=rate, ping_interval=None, max_queue=2_000_000) as ex:
            urls.put((ex.ws_url, ex.rest_url, len(tape.frames)))
            while not stop.is_set():
                await asyncio.sleep(0.05)

    asyncio.run(main())


class TimedStore(RunStore):
    """The run store, also timing arrival → prediction for every prediction."""

    latency: LagStats

    def prediction(self, p: Prediction) -> None:
        self.latency.add(time.time_ns() - p.ts_init)
        super().prediction(p)


class CountingEngine(Engine):
    """The engine, also keeping the trade ids it processed (to prove none was lost)."""

    ids: list[int]

    def _process(self, ev: Any) -> None:
        if type(ev) is Trade:
            self.ids.append(ev.trade_id)
        super()._process(ev)


async def run_client(ws: str, rest: str, n_frames: int, cfg: Config, db: Path) -> dict[str, Any]:
    cfg = replace_values(cfg, {"feed": {"ws_url": ws, "rest_url": rest}})
    store = TimedStore(open_db(db), mode="bench", config={}, sources=[])
    store.latency = LagStats()
    engine = CountingEngine(cfg, store, gate=Gate(backfill=True))
    engine.ids = []
    feed = WsFeed(ws_settings(cfg), reconnect_delays=backoff(0.05, cap=0.5))
    async with Backfiller(rest) as backfiller:
        ingest = Ingest(engine, feed, backfiller)
        feed.on_notice = ingest.on_notice
        task = asyncio.create_task(ingest.run())
        while feed.stats["frames"] == 0:
            await asyncio.sleep(0.001)
        start = time.perf_counter()
        while engine.counts["frames"] < n_frames and not task.done():
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - start
        ingest.stop()
        await task
    store.flush()
    return {"frames": engine.counts["frames"], "elapsed": elapsed, "lag": ingest.lag,
            "latency": store.latency, "ids": engine.ids, "feed": dict(feed.stats),
            "predictions": engine.summary()["predictions"], "gate": dict(engine.gate.counts)}


def scenario(paths: list[str], cfg: Config, tmp: Path, name: str,
             rate: float | None = None) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    urls, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=serve, args=(paths, urls, stop, rate), daemon=True)
    server.start()
    try:
        ws, rest, n = urls.get(timeout=120)
        n_ws = n  # every tape frame is subscribed to by the client below
        return asyncio.run(run_client(ws, rest, n_ws, cfg, tmp / f"{name}.db"))
    finally:
        stop.set()
        server.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-seconds", type=int, default=3 * 3600,
                        help="simulated seconds for the overload scenario")
    parser.add_argument("--rate", type=float, default=10_000,
                        help="frames/s of the paced scenario (latency without queueing)")
    args = parser.parse_args()
    missing = [str(p) for p in WS if not p.exists()] or ([] if WS else [str(DATA / "ws")])
    if missing:
        sys.exit(f"bench/ingest.py: real data missing: {', '.join(missing)}")
    logs.configure(level="error")
    rows = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        real = replace_values(Config(), {"feed": {"symbols": ["BTCUSDT"], "streams": [
            "trade", "bookTicker", "depth@100ms"], "record": False},
            "bars": {"interval": "1s"}})
        r = scenario([str(p) for p in WS], real, tmp, "real")
        rows.append(("real BTCUSDT captures as fast as served", r))
        paced = scenario([str(p) for p in WS], real, tmp, "paced", rate=args.rate)
        rows.append((f"real BTCUSDT captures paced at {args.rate:,.0f} frames/s", paced))
        sim = tmp / "sim.gz"
        write_recording(sim, seconds=args.sim_seconds, seed=5)
        slow = replace_values(Config(), {
            "feed": {"symbols": ["SIMUSDT"], "streams": ["aggTrade", "bookTicker"],
                     "record": False, "queue_size": 2_000},
            "bars": {"interval": "1s"}, "labels": {"horizon": 5},
            "learner": {"model": "arf"}})
        s = scenario([str(sim)], slow, tmp, "slow")
        rows.append(("simulator, ARF (slower than the wire), queue 2,000", s))
    print_table(rows)


def print_table(rows: list[tuple[str, dict[str, Any]]]) -> None:
    head = ("scenario", "frames", "frames/s", "arrival→prediction p50/p99 ms",
            "frame lag p50/p99 ms", "max queue", "backpressure waits", "ids lost/dup")
    table = [head]
    for name, r in rows:
        ids = r["ids"]
        lost_dup = (f"{max(ids) - min(ids) + 1 - len(set(ids))}/{len(ids) - len(set(ids))}"
                    if ids else "-")
        table.append((
            name, f"{r['frames']:,}", f"{r['frames'] / r['elapsed']:,.0f}",
            f"{r['latency'].quantile(0.5):.2f} / {r['latency'].quantile(0.99):.2f}",
            f"{r['lag'].quantile(0.5):.2f} / {r['lag'].quantile(0.99):.2f}",
            f"{r['feed']['max_queue']:,}", f"{r['feed']['queue_full_waits']:,}", lost_dup))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for i, row in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
