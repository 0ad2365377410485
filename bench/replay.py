"""Replay throughput: ``python bench/replay.py`` (or ``python3 tasks.py bench``) prints a table.

Measures, single process, on the real data in ``../shared/data``:

1. trade frames/s decoded and barred (decode + continuity + bar builder; frames preloaded);
2. frames/s end to end on the two BTCUSDT websocket captures (read gzip, decode, bars, features,
   predict, learn, ADWIN, SQLite); then with ``features.book`` off and on, alternated (on: the
   depth diffs build the local book and its features instead of being ignored);
3. bars/s on the 130,708 one-minute candles through features + predict + learn + ADWIN + store
   (candles preloaded);
4. the same features recomputed the naive way (pandas over a trailing 200-bar window on every bar)
   and the ratio to the incremental features.

Targets (issue 2): ≥ 200,000 trade frames/s; ≥ 20,000 bars/s; ≥ 50× the naive baseline.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ares_stream import logs
from ares_stream.config import Config, replace_values
from ares_stream.engine import Engine
from ares_stream.features.bars import BarBuilder, parse_interval
from ares_stream.features.pipeline import FeatureSet
from ares_stream.feed.binance import Decoder
from ares_stream.feed.publicdata import PublicDataSource
from ares_stream.feed.sequence import IdSequence
from ares_stream.replay import run_replay
from ares_stream.store.db import open_db
from ares_stream.store.runs import RunStore

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WS = sorted((DATA / "ws").glob("binance-spot-btcusdt-2024080*.gz"))
KLINES = DATA / "klines" / "BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz"


def require(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        sys.exit(f"bench/replay.py: real data missing: {', '.join(missing)}")


def trade_frames() -> list[tuple[int, bytes]]:
    frames = []
    for path in WS:
        with gzip.open(path, "rb") as fh:
            for line in fh:
                ts, _, frame = line.rstrip(b"\n").partition(b" ")
                if b"@trade" in frame[:40]:
                    frames.append((int(ts), frame))
    return frames


def shifted_copies(frames: list[tuple[int, bytes]], repeat: int) -> list[tuple[int, bytes]]:
    """``repeat`` copies of the trade frames, each later in time and id, so ids stay continuous."""
    import json

    out = []
    first, last = json.loads(frames[0][1])["data"], json.loads(frames[-1][1])["data"]
    id_span, ms_span = last["t"] - first["t"] + 1, last["T"] - first["T"] + 1000
    for k in range(repeat):
        for ts, frame in frames:
            msg = json.loads(frame)
            d = msg["data"]
            d["t"] += k * id_span
            d["T"] += k * ms_span
            d["E"] += k * ms_span
            out.append((ts + k * ms_span * 1_000_000, json.dumps(msg).encode()))
    return out


def bench_decode_and_bar(repeat: int) -> tuple[float, int]:
    """Hot path of a trade frame: decode, id continuity, bar builder. Frames preloaded."""
    frames = shifted_copies(trade_frames(), repeat)
    decoder, seq, builder = Decoder(), IdSequence(), BarBuilder("BTCUSDT", parse_interval("1s"))
    decode, check, on_trade = decoder.decode, seq.check, builder.on_trade
    start = time.perf_counter()
    for ts, frame in frames:
        t = decode(frame, ts)
        check(t.trade_id)  # type: ignore[union-attr]
        on_trade(t)  # type: ignore[arg-type]
    return len(frames) / (time.perf_counter() - start), len(frames)


def bench_end_to_end(tmp: Path, book: bool = False, tag: str = "") -> tuple[float, int, int]:
    """A replay of both captures, 1 s bars; ``book``: the local book and its features on (the
    depth diffs, ~7 % of the frames, are applied instead of ignored)."""
    cfg = replace_values(Config(), {"bars": {"interval": "1s"}, "labels": {"horizon": 10},
                                    "features": {"book": book}})
    result = run_replay([str(p) for p in WS], cfg, db_path=tmp / f"ws{book}{tag}.db")
    return result.items / result.elapsed, result.items, result.summary["bars"]


def bench_depth(tmp: Path, rounds: int = 3) -> tuple[float, float]:
    """Replay frames/s with the book off and on, alternated ``rounds`` times (the machine's
    speed drifts): the median of each."""
    off, on = [], []
    for r in range(rounds):
        off.append(bench_end_to_end(tmp, False, f"r{r}")[0])
        on.append(bench_end_to_end(tmp, True, f"r{r}")[0])
    return float(np.median(off)), float(np.median(on))


def bench_bars(tmp: Path) -> tuple[float, int, list]:
    klines = list(PublicDataSource(KLINES))
    cfg = Config()
    store = RunStore(open_db(tmp / "k.db"), mode="bench", config={}, sources=[],
                     flush_rows=cfg.store.flush_rows)
    engine = Engine(cfg, store)
    on_event = engine.on_event
    start = time.perf_counter()
    for k in klines:
        on_event(k)
    store.flush()
    elapsed = time.perf_counter() - start
    return engine.summary()["bars"] / elapsed, engine.summary()["bars"], klines


def bench_features(klines: list, naive_bars: int, window: int = 200) -> tuple[float, float]:
    """Incremental FeatureSet vs the naive pandas recompute over a trailing window per bar."""
    from ares_stream.features.bars import bar_from_kline

    bars = [bar_from_kline(k) for k in klines]
    fs = FeatureSet()
    start = time.perf_counter()
    for b in bars:
        fs.update(b)
    inc = len(bars) / (time.perf_counter() - start)
    frame = pd.DataFrame({"close": [b.close for b in bars], "high": [b.high for b in bars],
                          "low": [b.low for b in bars], "volume": [b.volume for b in bars],
                          "vwap": [b.vwap for b in bars]})
    start = time.perf_counter()
    for i in range(window, window + naive_bars):
        naive_features(frame.iloc[i - window:i + 1])
    naive = naive_bars / (time.perf_counter() - start)
    return inc, naive


def naive_features(w: pd.DataFrame) -> dict[str, float]:
    """The feature set the way a notebook computes it: pandas over the window, every bar."""
    close = w["close"]
    logc = np.log(close)
    r = logc.diff()
    delta = close.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / 14, adjust=False).mean()
    macd = close.ewm(span=12, adjust=False).mean() - close.ewm(span=26, adjust=False).mean()
    roll = close.rolling(20)
    pv = (w["vwap"] * w["volume"]).rolling(20).sum() / w["volume"].rolling(20).sum()
    vol = w["volume"].rolling(20)
    return {
        "ret_1": logc.diff(1).iloc[-1], "ret_5": logc.diff(5).iloc[-1],
        "ret_15": logc.diff(15).iloc[-1],
        "vol_ewma": float(np.sqrt(r.pow(2).ewm(span=20, adjust=False).mean().iloc[-1])),
        "rsi_14": float(100 - 100 / (1 + gain.iloc[-1] / max(loss.iloc[-1], 1e-12))),
        "macd": macd.iloc[-1] / close.iloc[-1],
        "macd_signal": macd.ewm(span=9, adjust=False).mean().iloc[-1] / close.iloc[-1],
        "boll_z": ((close - roll.mean()) / roll.std()).iloc[-1],
        "vwap_dev": float(np.log(close.iloc[-1] / pv.iloc[-1])),
        "hl_range": float(np.log(w["high"].iloc[-1] / w["low"].iloc[-1])),
        "volume_z": ((w["volume"] - vol.mean()) / vol.std()).iloc[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--naive-bars", type=int, default=1000, help="bars for the pandas baseline")
    parser.add_argument("--repeat", type=int, default=5, help="copies of the trade frames")
    args = parser.parse_args()
    require(*WS, KLINES)
    logs.configure(level="warning")
    with tempfile.TemporaryDirectory() as tmp:
        dec, n_dec = bench_decode_and_bar(args.repeat)
        e2e, n_e2e, e2e_bars = bench_end_to_end(Path(tmp))
        depth_off, depth_on = bench_depth(Path(tmp))
        bars_rate, n_bars, klines = bench_bars(Path(tmp))
        inc, naive = bench_features(klines, args.naive_bars)
    rows = [
        ("trade frames decoded + barred", f"{n_dec:,} frames", f"{dec:,.0f} frames/s",
         ">= 200,000"),
        ("end to end, BTCUSDT ws captures (1s bars)", f"{n_e2e:,} frames, {e2e_bars:,} bars",
         f"{e2e:,.0f} frames/s", "-"),
        ("  the same, book off (median of 3, alternated)", f"{n_e2e:,} frames",
         f"{depth_off:,.0f} frames/s", "-"),
        ("  the same, book on: depth diffs applied", f"{n_e2e:,} frames",
         f"{depth_on:,.0f} frames/s ({depth_on / depth_off - 1:+.0%})", "-"),
        ("1m candles: features+predict+learn+ADWIN+store", f"{n_bars:,} bars",
         f"{bars_rate:,.0f} bars/s", ">= 20,000"),
        ("features only, incremental", f"{len(klines):,} bars", f"{inc:,.0f} bars/s", "-"),
        ("features only, naive pandas (200-bar window)", f"{args.naive_bars:,} bars",
         f"{naive:,.0f} bars/s", "-"),
        ("incremental / naive", "", f"{inc / naive:,.0f}x", ">= 50x"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("measure", "work", "result", "target")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
