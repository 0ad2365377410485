"""Does more information help? Each feature family's walk-forward value, honestly.

    PYTHONPATH=. python bench/features.py                 # ~15 min on 2 cores
    PYTHONPATH=. python bench/features.py --only candles  # one part: candles | captures | sim

Every feature set's samples go through the daemon's own walk-forward validation
(:func:`ares_stream.batch.jobs.validate`: purged, embargoed folds, the booster refit per fold and
the River learner, every fold traded with the broker's rule after fees and slippage). Per set the
table prints the booster's and River's mean fold log loss minus the constant prior's (negative:
better than guessing the base rate) and their mean fold PnL after costs.

- **candles**: the real one-minute BTCUSDT candles (the newest ``--rows``), default config: the
  bar features alone, and with the 15m and 1h timeframes;
- **captures**: the two real BTCUSDT websocket captures (20 minutes, trades, book tops, depth)
  replayed through the engine at 1 s bars: without and with the local book's features — so
  few bars that the table says mostly that 20 minutes decide nothing;
- **sim**: a simulated day (demo config, 10 s bars) with the depth stream and a planted
  book-imbalance effect (``book_beta``), and the same day without it; with and without the
  ``bookTicker`` stream (with it, the bar features' ``book_imb`` already holds the top-of-book
  imbalance the effect lives in): the bar features alone, with the book, with the 1m timeframe,
  with both.

Cross-asset features are not measured here: the real data holds one symbol (BTCUSDT) and the
simulator's symbols are independent by construction, so neither can show a leader effect.
"""

from __future__ import annotations

import argparse
import gzip
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ares_stream import logs
from ares_stream.batch import jobs
from ares_stream.config import Config, load_config, replace_values
from ares_stream.engine import Engine
from ares_stream.events import Bar
from ares_stream.features.bars import bar_from_kline
from ares_stream.features.families import SymbolFeatures, feature_names
from ares_stream.feed.publicdata import PublicDataSource
from ares_stream.learners import booster as bst
from ares_stream.sim.simulator import write_recording

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
KLINES = DATA / "klines" / "BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz"
CAPTURES = [DATA / "ws" / f"binance-spot-btcusdt-2024080{d}.gz" for d in (8, 9)]


class _Sink:
    """Discards the engine's rows (the bench keeps the feature vectors itself)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class _Tap(SymbolFeatures):
    """A symbol's features that also keep ``(bar, vector)`` of every bar."""

    __slots__ = ("rows",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.rows: list[tuple[Bar, dict[str, float] | None]] = []

    def update(self, bar: Bar) -> dict[str, float] | None:
        x = super().update(bar)
        self.rows.append((bar, x))
        return x


class _TapEngine(Engine):
    def new_features(self) -> SymbolFeatures:
        return _Tap(self.config, self.cross)


def window_of(rows: list[tuple[Bar, dict[str, float] | None]], cfg: Config,
              last: int | None = None) -> jobs.Window:
    """Samples (vector, label horizon bars ahead, forward return, close) of the bars with a
    vector; the newest ``last``."""
    names = feature_names(cfg)
    h, thr = cfg.labels.horizon, cfg.labels.threshold_bps / 1e4
    X, y, fwd, ts, close = [], [], [], [], []
    for i in range(len(rows) - h):
        bar, x = rows[i]
        if x is None:
            continue
        r = math.log(rows[i + h][0].close / bar.close)
        X.append([x.get(n, math.nan) for n in names])
        y.append(int(r > thr))
        fwd.append(r)
        ts.append(bar.ts_event)
        close.append(bar.close)
    keep = slice(-last if last else 0, None)
    return jobs.Window(np.array(ts[keep], dtype=np.int64), np.array(X[keep]),
                       np.array(y[keep]), np.array(fwd[keep]), names, np.array(close[keep]))


def score(window: jobs.Window, cfg: Config) -> dict[str, float]:
    """The walk-forward summary of the booster and River against the constant prior."""
    out = jobs.validate(window, jobs.spec_of(cfg), bst.BoosterSettings(), [], [])
    s = out.summary
    prior = s["prior"]["log_loss"]
    return {"rows": float(len(window.y)), "xgb": s["xgb_refit"]["log_loss"] - prior,
            "river": s["river"]["log_loss"] - prior,
            "xgb_pnl": s["xgb_refit"].get("total_return", math.nan),
            "river_pnl": s["river"].get("total_return", math.nan)}


def candle_rows(cfg: Config) -> list[tuple[Bar, dict[str, float] | None]]:
    feats = SymbolFeatures(cfg)
    return [(bar, feats.update(bar)) for bar in map(bar_from_kline, PublicDataSource(KLINES))]


def engine_rows(frames: list[tuple[int, bytes]], cfg: Config
                ) -> list[tuple[Bar, dict[str, float] | None]]:
    """Every bar's vector of the engine's first symbol, the frames replayed through it."""
    engine = _TapEngine(cfg, _Sink())
    for ts, data in frames:
        engine.on_frame(ts, data)
    taps = [st.features for st in engine.state.values()]
    return taps[0].rows if taps else []  # type: ignore[attr-defined]


def read_frames(paths: list[Path]) -> list[tuple[int, bytes]]:
    out = []
    for path in paths:
        with gzip.open(path, "rb") as f:
            for line in f:
                ts, _, data = line.rstrip(b"\n").partition(b" ")
                if data.startswith(b"{") or data.startswith(b"["):
                    out.append((int(ts), data))
    return out


def part_candles(rows: int) -> list[tuple[str, dict[str, float]]]:
    base = Config()
    out = []
    for label, extra in (("bar features", {}), ("+ 15m, 1h", {"timeframes": ["15m", "1h"]})):
        cfg = replace_values(base, {"features": extra})
        out.append((f"1m candles: {label}", score(window_of(candle_rows(cfg), cfg, rows), cfg)))
    return out


def part_captures() -> list[tuple[str, dict[str, float]]]:
    frames = read_frames(CAPTURES)
    base = replace_values(Config(), {"bars": {"interval": "1s"},
                                     "labels": {"horizon": 5, "threshold_bps": 0.0},
                                     "batch": {"folds": 3}})
    out = []
    for label, book in (("bar features", False), ("+ book", True)):
        cfg = replace_values(base, {"features": {"book": book}})
        out.append((f"ws captures 1s: {label}", score(window_of(engine_rows(frames, cfg), cfg),
                                                      cfg)))
    return out


def part_sim(tmp: Path, seconds: int, book_beta: float) -> list[tuple[str, dict[str, float]]]:
    """The simulated day with and without ``bookTicker``: with it, the bar features already hold
    the top-of-book imbalance (``book_imb``) the planted effect lives in."""
    path = tmp / f"sim{book_beta}.gz"
    write_recording(path, seconds=seconds, seed=3, concept=((0.0, 0.8),),
                    streams=("aggTrade", "bookTicker", "depth@100ms"), book_beta=book_beta)
    every = read_frames([path])
    base = load_config(ROOT / "configs" / "demo.toml")
    out = []
    for tops, frames in (("", every), (", no bookTicker",
                                       [f for f in every if b"@bookTicker" not in f[1][:40]])):
        for label, book, tfs in (("bar features", False, []), ("+ book", True, []),
                                 ("+ 1m", False, ["1m"]), ("+ book + 1m", True, ["1m"])):
            cfg = replace_values(base, {"features": {"book": book, "timeframes": tfs}})
            out.append((f"sim beta={book_beta:g}{tops}: {label}",
                        score(window_of(engine_rows(frames, cfg), cfg), cfg)))
    return out


def show(parts: list[tuple[str, dict[str, float]]]) -> None:
    for label, r in parts:
        print(f"{label:<42} {r['rows']:>7,.0f} {r['xgb']:>+12.4f} {r['river']:>+14.4f} "
              f"{r['xgb_pnl']:>+9.4f} {r['river_pnl']:>+10.4f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("candles", "captures", "sim"))
    ap.add_argument("--rows", type=int, default=100_000, help="newest candle samples")
    ap.add_argument("--sim-seconds", type=int, default=86_400)
    ap.add_argument("--book-beta", type=float, default=3e-4,
                    help="planted effect: next block log return per unit of top imbalance")
    args = ap.parse_args()
    logs.configure(level="error")
    missing = [str(p) for p in (KLINES, *CAPTURES) if not p.exists()]
    if missing and args.only != "sim":
        sys.exit(f"bench/features.py: real data missing: {', '.join(missing)}")
    print(f"{'feature set':<42} {'rows':>7} {'xgb - prior':>12} {'river - prior':>14} "
          f"{'xgb PnL':>9} {'river PnL':>10}   (log loss; PnL after costs, mean per fold)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "captures"):
            show(part_captures())
        if args.only in (None, "sim"):
            for beta in (args.book_beta, 0.0):
                show(part_sim(Path(tmp), args.sim_seconds, beta))
        if args.only in (None, "candles"):
            show(part_candles(args.rows))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
