"""The risk figures of two runs: the 1m BTCUSDT candles and the demo's simulator.

    PYTHONPATH=. python bench/risk.py            # ~3 min on 2 cores

1. **candles**: ``ares-stream replay`` of the 130,708 one-minute BTCUSDT candles, default config
   with batch learning off and ``trading.require_edge = false`` (so the online learner trades and
   there is a strategy to judge: with the edge gate on, nothing trades on these candles);
2. **sim**: a replay of a simulated day with ``configs/demo.toml`` (boosters trained, validated,
   promoted; the paper broker trades), then ``ares-stream stress`` on its champion.

For each: the report's figures (:func:`ares_stream.report.data.load`): Sharpe and Sortino from
daily returns with their 90 % intervals beside the per-bar annualisation, the Monte Carlo of the
strategy's returns (final return and drawdown quantiles, P(loss)), daily VaR/ES of the strategy
and of buy-and-hold, and the regime table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ares_stream import logs
from ares_stream.cli import main as cli
from ares_stream.config import Config, load_config, replace_values
from ares_stream.replay import run_replay
from ares_stream.report.data import load
from ares_stream.report.model import ReportData
from ares_stream.sim.simulator import write_recording

ROOT = Path(__file__).resolve().parents[1]
KLINES = ROOT.parent / "shared" / "data" / "klines" / "BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz"


def show(title: str, data: ReportData) -> None:
    s, r = data.summary, data.risk
    print(f"\n== {title} ==")
    print(f"return {s.get('return', float('nan')):+.4%}, max drawdown "
          f"{s.get('max_drawdown', float('nan')):.4%}, daily returns {s.get('daily_returns')}")
    for k in ("sharpe", "sortino", "volatility"):
        ci = s.get(f"{k}_ci") or (float("nan"), float("nan"))
        print(f"  {k:<10} daily {s.get(k, float('nan')):+.3f}  [{ci[0]:+.3f}, {ci[1]:+.3f}]"
              + (f"   per bar {s.get(k + '_bar', float('nan')):+.3f}" if k != "volatility" else ""))
    mc = r.monte_carlo
    if mc is not None and mc.horizon:
        print(f"  monte carlo ({r.basis}, {mc.n_paths} paths x {mc.horizon}, block {mc.block}): "
              f"final return 5/50/95 % {mc.final_return[0]:+.4f} / {mc.final_return[2]:+.4f} / "
              f"{mc.final_return[4]:+.4f}; max drawdown 50/95 % {mc.max_drawdown[2]:.4f} / "
              f"{mc.max_drawdown[4]:.4f}; P(loss) {mc.p_loss:.1%}")
    else:
        print(f"  monte carlo: none ({r.why})")
    for series, tails in r.tails.items():
        for t in tails:
            print(f"  {series} {t.level:.0%}: VaR {t.var:.4f} [{t.var_ci[0]:.4f}, "
                  f"{t.var_ci[1]:.4f}]  ES {t.es:.4f} [{t.es_ci[0]:.4f}, {t.es_ci[1]:.4f}]")
    for symbol, rows in data.regimes.items():
        for row in rows:
            print(f"  {symbol} {row.regime:<14} {row.n:>7,} {row.share:>6.1%} log loss "
                  f"{row.log_loss:.4f} hit {row.hit_rate:.2f} account {row.pnl:+.4%}")


def candles(tmp: Path) -> None:
    cfg = replace_values(Config(), {"batch": {"enabled": False},
                                    "trading": {"require_edge": False}})
    started = time.perf_counter()
    result = run_replay([str(KLINES)], cfg, db_path=tmp / "candles.db")
    show(f"1m BTCUSDT candles, online learner trading ({time.perf_counter() - started:.0f} s)",
         load(result.db_path))


def sim(tmp: Path, seconds: int) -> None:
    rec = tmp / "sim.gz"
    write_recording(rec, seconds=seconds, seed=7)
    started = time.perf_counter()
    result = run_replay([str(rec)], load_config(ROOT / "configs" / "demo.toml"),
                        db_path=tmp / "demo.db")
    took = time.perf_counter() - started
    print("\n== ares-stream stress on the demo run's champion ==", flush=True)
    started = time.perf_counter()
    code = cli(["stress", "--db", str(result.db_path), "--scenario", "crash", "vol_spike",
                "liquidity"])
    print(f"(exit {code}, {time.perf_counter() - started:.1f} s)")
    show(f"demo simulator, {seconds / 3600:g} h ({took:.0f} s)", load(result.db_path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim-seconds", type=int, default=86_400)
    args = ap.parse_args()
    logs.configure(level="error")
    with tempfile.TemporaryDirectory() as d:
        if KLINES.exists():
            candles(Path(d))
        else:
            print(f"real data missing: {KLINES}")
        sim(Path(d), args.sim_seconds)


if __name__ == "__main__":
    main()
