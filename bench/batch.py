"""Batch learning costs and the walk-forward table: ``python bench/batch.py`` prints tables.

1. XGBoost warm start (+rounds_update trees on the newest 10 % of rows) and refresh against a full
   refit, on 10k / 50k / 200k rows × 15 features (single thread, as the worker runs);
2. booster prediction latency per bar (``predict_one``) and per 1,000 rows;
3. the engine's lag while a fit runs in the worker process: bars pushed through the engine
   (features, River, ADWIN, store) with and without a 200k-row refit in flight, p50/p99 of the
   time per bar;
4. the walk-forward table (River vs XGBoost vs baselines) over the last ``--rows`` samples of the
   one-minute BTCUSDT candles, with the gate's decision — honestly: a market is hard to predict.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ares_stream import logs
from ares_stream.batch import jobs
from ares_stream.config import Config, replace_values
from ares_stream.engine import Engine
from ares_stream.features.bars import bar_from_kline
from ares_stream.features.pipeline import feature_set
from ares_stream.feed.publicdata import PublicDataSource
from ares_stream.learners import booster as bst
from ares_stream.store.db import open_db
from ares_stream.store.runs import RunStore

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KLINES = DATA / "klines" / "BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz"
FEATURES = tuple(f"f{i}" for i in range(15))


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURES)))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=n) > 0).astype(np.int64)
    return X, y, np.arange(n, dtype=np.int64)


def timed(f, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


def bench_fits() -> list[tuple[str, ...]]:
    return [fit_row(n) for n in (10_000, 50_000, 200_000)]


def fit_row(n: int) -> tuple[str, ...]:
    """Refit vs warm start vs refresh on ``n`` rows (the newest 10 % are the new rows)."""
    settings, refresh = bst.BoosterSettings(), bst.BoosterSettings(mode="refresh")
    X, y, ts = synthetic(n)
    cut = int(n * 0.9)
    refit = timed(lambda: bst.fit(X, y, ts, FEATURES, settings))
    parent = bst.fit(X[:cut], y[:cut], ts[:cut], FEATURES, settings)
    warm = timed(lambda: bst.update(parent, X[cut:], y[cut:], ts[cut:], FEATURES, settings))
    fresh = timed(lambda: bst.update(parent, X[cut:], y[cut:], ts[cut:], FEATURES, refresh))
    return (f"{n:,}", f"{refit * 1e3:,.0f} ms", f"{warm * 1e3:,.0f} ms",
            f"{fresh * 1e3:,.0f} ms", f"{refit / warm:,.0f}x")


def bench_predict() -> tuple[float, float]:
    X, y, ts = synthetic(50_000)
    tb = bst.fit(X, y, ts, FEATURES, bst.BoosterSettings())
    x = dict(zip(FEATURES, X[0].tolist(), strict=True))
    n = 2_000
    start = time.perf_counter()
    for _ in range(n):
        bst.predict_one(tb, x)
    one = (time.perf_counter() - start) / n
    batch = timed(lambda: bst.predict(tb, X[:1000]), repeat=20)
    return one * 1e6, batch * 1e3


def _fit_200k() -> int:
    X, y, ts = synthetic(200_000)
    return bst.fit(X, y, ts, FEATURES, bst.BoosterSettings(rounds_refit=300, max_trees=300)).n_trees


def bench_lag(klines: list, tmp: Path) -> list[tuple[str, ...]]:
    """Per-bar engine time with the worker idle, then with a 300-round 200k-row fit running."""
    cfg = replace_values(Config(), {"batch": {"enabled": False}})
    rows = []
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        pool.submit(int, 0).result()  # the worker is up before timing
        for label, busy in (("worker idle", False), ("worker fitting 200k rows", True)):
            engine = Engine(cfg, RunStore(open_db(tmp / f"lag{busy}.db"), mode="bench",
                                          config={}, sources=[]))
            future = pool.submit(_fit_200k) if busy else None
            times = []
            for k in klines[:20_000]:
                start = time.perf_counter_ns()
                engine.on_event(k)
                times.append(time.perf_counter_ns() - start)
                if future is not None and future.done():
                    break
            if future is not None:
                future.result()
            arr = np.array(times) / 1e3
            rows.append((label, f"{len(arr):,}", f"{np.percentile(arr, 50):.1f} µs",
                         f"{np.percentile(arr, 99):.1f} µs", f"{arr.max() / 1e3:.2f} ms"))
    return rows


def bench_walk_forward(klines: list, rows: int) -> tuple[str, str]:
    """River vs XGBoost vs baselines on the candles' samples, through the real job function."""
    cfg = Config()
    fs = feature_set(cfg)
    h, thr = cfg.labels.horizon, cfg.labels.threshold_bps / 1e4
    xs, closes, ts = [], [], []
    for k in klines:
        bar = bar_from_kline(k)
        x = fs.update(bar)
        closes.append(bar.close)
        ts.append(bar.ts_event)
        xs.append(x)
    closes_a = np.array(closes)
    X, y, fwd, t, c = [], [], [], [], []
    for i in range(len(xs) - h):
        if xs[i] is None:
            continue
        r = float(np.log(closes_a[i + h] / closes_a[i]))
        X.append([xs[i].get(n, np.nan) for n in fs.names])
        y.append(int(r > thr))
        fwd.append(r)
        t.append(ts[i])
        c.append(float(closes_a[i]))
    X_a, y_a = np.array(X[-rows:]), np.array(y[-rows:])
    window = jobs.Window(np.array(t[-rows:]), X_a, y_a, np.array(fwd[-rows:]), fs.names,
                         np.array(c[-rows:]))
    out = jobs.validate(window, jobs.spec_of(cfg), bst.BoosterSettings(), [], [])
    d = out.decision
    return out.table, f"decision: {'PROMOTE' if d.promote else 'keep'} — {d.reason}"


def table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000,
                        help="samples of the walk-forward table (the newest)")
    args = parser.parse_args()
    if not KLINES.exists():
        sys.exit(f"bench/batch.py: real data missing: {KLINES}")
    logs.configure(level="error")
    klines = list(PublicDataSource(KLINES))
    print(table(("rows", "refit 100 rounds", "warm start +10", "refresh", "refit/warm"),
                bench_fits()))
    one, thousand = bench_predict()
    print(f"\nbooster predict: one bar {one:.0f} µs; 1,000 rows {thousand:.2f} ms\n")
    with tempfile.TemporaryDirectory() as tmp:
        print(table(("engine per bar", "bars", "p50", "p99", "max"), bench_lag(klines, Path(tmp))))
    fold_table, decision = bench_walk_forward(klines, args.rows)
    print(f"\nwalk-forward, newest {args.rows:,} one-minute samples (5 folds, purge = horizon):")
    print(fold_table)
    print(decision)


if __name__ == "__main__":
    main()
