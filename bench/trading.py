"""Trading benchmark: ``python bench/trading.py [--quick] [--only NAME]`` prints a table.

Each scenario is one ``ares-stream replay`` (the public entry point, in a child process) into its
own run database, measured from that database's tables alone:

- ``gauss-20``, ``gauss-0``: 200,000 one-minute candles of an i.i.d. Gaussian log-return walk
  (sigma 6 bps a minute), with the defaults (``labels.threshold_bps`` 20) and with 0 bps;
- ``garch-20``, ``garch-0``: the same length of a GARCH(1,1) walk (unconditional sigma 6 bps a
  minute, alpha 0.05, beta 0.93: persistence 0.98), labels at 20 and 0 bps. Neither walk holds any
  edge: whatever a learner finds there is noise (the GARCH walk's volatility is predictable, its
  direction is not). The candles are the data.binance.vision 12-column layout (open = previous
  close, high/low from a Brownian bridge inside the minute; volume and trade count grow with the
  bar's absolute return, the taker-buy share with its signed return, as in real candles), seeded;
- ``sim``: the demo's simulator (``ares-stream simulate --seconds 43200 --seed 7``, the tape
  ``python3 tasks.py demo`` plays) replayed with ``configs/demo.toml``;
- ``btc``: the real 1-minute BTCUSDT candles in ``../shared/data/klines`` with the defaults,
  and beside it a FreqAI-style baseline: an XGBoost classifier refitted at every UTC midnight on
  the last 30 days of samples whose label was known then (a sample of bar t is labelled at bar
  t + horizon), at least ``batch.min_rows`` of them, predicting the next day. Its features and
  labels come from the engine's own code (``bar_from_kline``, ``feature_set``, ``LabelQueue``)
  and are checked against the run's labels and buffered feature vectors; its trees are the
  project's (``booster.fit`` with ``settings_of(config)``).

Per run: bars; the share of bars closed holding a position (equity rows, ``positions_value > 0``);
fills; PnL before costs (fees and slippage, from the fills, added back) and after costs (last
equity − starting cash), in % of the starting cash; max drawdown of the equity rows; the mean log
loss over labelled predictions of the traded probability (``predictions.proba``), the online
learner (``value``) and the prequential constant (``(ones + ½) / (n + 1)`` of the labels of the
earlier bars, as the engine's summary scores it).
On the real candles, paired per bar (ours − baseline): the mean log-loss difference of the traded
probability, of the champion booster (``predictions.booster``, where it exists) and of the online
learner, each with a 95 % day-block bootstrap CI (whole UTC days resampled, 2,000 times, seeded).

Targets (issue 14): on the four noise walks at most 1 % of bars in a position and PnL after
costs ≥ −0.5 %; on the simulator, PnL after costs > 0; on the real candles, the traded
probability's CI upper bound ≤ 0 against the baseline and the online learner within 0.002 nats of
the constant (PnL reported as it is).

The replays run ``--jobs`` (2) at a time beside the baseline: ~15 minutes on 2 cores; ``--quick``
(30,000 synthetic candles, 4 simulated hours, the first 30 days of the real candles) ~2 minutes.
``--only NAME`` (repeatable) runs some scenarios; ``--keep DIR`` keeps the inputs, databases and
replay logs; ``--json PATH`` writes the results too. Below the table: each run's counts, the
warnings it logged (a kill switch: the share of bars in a position before it), and the checks
that the baseline saw the run's own bars, labels and features. A run that failed or left no
predictions says so, and the exit code is 1.

The code measured is whichever ``ares_stream`` this interpreter imports (its path and commit are
printed): ``PYTHONPATH=/some/checkout .venv/bin/python bench/trading.py`` measures that checkout.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import ares_stream
from ares_stream.config import Config, as_dict, load_config

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
KLINES = DATA / "klines" / "BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz"
CODE = Path(ares_stream.__file__).resolve().parents[1]  # the checkout measured (PYTHONPATH)
DEMO_CONFIG = next((d / "configs" / "demo.toml" for d in (CODE, ROOT)
                    if (d / "configs" / "demo.toml").exists()), ROOT / "configs" / "demo.toml")
DAY_NS = 86_400 * 10**9
MINUTE_MS = 60_000
START_MS = 1_735_689_600_000  # 2025-01-01 00:00 UTC: the synthetic candles' first open time
SIGMA = 6e-4  # per-minute sd of the synthetic walks' log returns (6 bps)
GARCH = (0.05, 0.93)  # alpha, beta
SIM_SECONDS, SIM_SEED = 43_200, 7  # python3 tasks.py demo
BASELINE_DAYS = 30
N_BOOT, SEED = 2000, 0
NOISE_MAX_IN_POSITION, NOISE_MIN_PNL, ONLINE_MAX_EXCESS = 0.01, -0.005, 0.002


# -- synthetic candles --------------------------------------------------------------------------


def gaussian_walk(n: int, seed: int, sigma: float = SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """``n`` i.i.d. N(0, sigma²) log returns, and each one's sigma.

    >>> r, s = gaussian_walk(100_000, 1)
    >>> round(float(r.std() / 6e-4), 2), float(s[0])
    (1.0, 0.0006)
    """
    rng = np.random.default_rng(seed)
    return sigma * rng.standard_normal(n), np.full(n, sigma)


def garch_walk(n: int, seed: int, sigma: float = SIGMA,
               params: tuple[float, float] = GARCH) -> tuple[np.ndarray, np.ndarray]:
    """``n`` GARCH(1,1) log returns ``r_t = s_t z_t``, ``s_t² = w + a r_{t-1}² + b s_{t-1}²``,
    with unconditional sd ``sigma``, and each one's conditional sd ``s_t``.

    >>> r, s = garch_walk(200_000, 1)
    >>> 0.9 < float(r.std() / 6e-4) < 1.1, bool(np.corrcoef(r[1:] ** 2, r[:-1] ** 2)[0, 1] > 0.05)
    (True, True)
    """
    alpha, beta = params
    omega = sigma**2 * (1.0 - alpha - beta)
    z = np.random.default_rng(seed).standard_normal(n).tolist()
    r, s = [0.0] * n, [0.0] * n
    var = sigma**2
    for t in range(n):  # a recursion: one pass, no vectorised form
        s[t] = sd = math.sqrt(var)
        r[t] = x = sd * z[t]
        var = omega + alpha * x * x + beta * var
    return np.array(r), np.array(s)


def candle_rows(r: np.ndarray, s: np.ndarray, seed: int, price0: float = 100_000.0,
                steps: int = 12) -> list[str]:
    """data.binance.vision 12-column kline rows of the log returns ``r`` (conditional sd ``s``).

    Open is the previous close; high and low are the extremes of a Brownian bridge of ``steps``
    steps from open to close; volume grows with the sd and the bar's |return|, the trade count
    with the volume, the taker-buy share with the bar's signed return.

    >>> rows = [x.split(",") for x in candle_rows(*gaussian_walk(50, 2), seed=2)]
    >>> all(a[4] == b[1] for a, b in zip(rows, rows[1:])), len(rows[0])
    (True, 12)
    >>> all(float(x[2]) >= max(float(x[1]), float(x[4])) >= min(float(x[1]), float(x[4]))
    ...     >= float(x[3]) for x in rows)
    True
    """
    rng = np.random.default_rng(seed + 10_000)
    n = len(r)
    close = np.round(price0 * np.exp(np.cumsum(r)), 2)
    open_ = np.concatenate(([price0], close[:-1]))
    path = np.cumsum(rng.standard_normal((n, steps)), axis=1) * (s / math.sqrt(steps))[:, None]
    path -= np.arange(1, steps + 1) / steps * (path[:, -1] - r)[:, None]  # pinned at r
    high = np.maximum(np.round(open_ * np.exp(path.max(axis=1)), 2), np.maximum(open_, close))
    low = np.minimum(np.round(open_ * np.exp(path.min(axis=1)), 2), np.minimum(open_, close))
    z = r / s
    volume = np.round(6.0 * rng.lognormal(0.0, 0.7, n) * (s / SIGMA) * (0.5 + 0.5 * np.abs(z)), 5)
    count = 1 + rng.poisson(volume * 120.0)
    share = np.clip(0.5 + 0.2 * np.tanh(z) + 0.05 * rng.standard_normal(n), 0.01, 0.99)
    buy = np.round(volume * share, 5)
    typical = (high + low + close) / 3.0
    t = START_MS + MINUTE_MS * np.arange(n)
    cols = zip(t.tolist(), open_.tolist(), high.tolist(), low.tolist(), close.tolist(),
               volume.tolist(), count.tolist(), buy.tolist(), typical.tolist(), strict=True)
    return [f"{ot},{o:.2f},{h:.2f},{lo:.2f},{c:.2f},{v:.5f},{ot + MINUTE_MS - 1},"
            f"{v * tp:.4f},{k},{b:.5f},{b * tp:.4f},0"
            for ot, o, h, lo, c, v, k, b, tp in cols]


def write_walk(path: Path, kind: str, n: int, seed: int) -> Path:
    """Write ``n`` candles of the ``gauss`` or ``garch`` walk to ``path`` (gzip CSV)."""
    r, s = (gaussian_walk if kind == "gauss" else garch_walk)(n, seed)
    with gzip.open(path, "wt", compresslevel=1) as fh:
        fh.write("\n".join(candle_rows(r, s, seed)) + "\n")
    return path


def head_of_candles(src: Path, dst: Path, rows: int) -> Path:
    """The header and first ``rows`` rows of a candle CSV (``--quick``)."""
    with gzip.open(src, "rt") as fin, gzip.open(dst, "wt", compresslevel=1) as fout:
        for i, line in enumerate(fin):
            if i > rows:
                break
            fout.write(line)
    return dst


# -- scenarios and jobs -------------------------------------------------------------------------


@dataclass
class Scenario:
    """One replay: its input, its config (``None``: the built-in defaults), what it shows."""

    name: str
    what: str
    input: str  # gauss | garch | sim | btc
    config: str | None = None  # a TOML path
    labels_bps: float | None = None  # a [labels] threshold override, written as a TOML file


SCENARIOS = (
    Scenario("gauss-20", "i.i.d. Gaussian walk, labels 20 bps (defaults)", "gauss"),
    Scenario("gauss-0", "i.i.d. Gaussian walk, labels 0 bps", "gauss", labels_bps=0.0),
    Scenario("garch-20", "GARCH(1,1) walk, labels 20 bps (defaults)", "garch"),
    Scenario("garch-0", "GARCH(1,1) walk, labels 0 bps", "garch", labels_bps=0.0),
    Scenario("sim", "the demo's simulator, configs/demo.toml", "sim", config=str(DEMO_CONFIG)),
    Scenario("btc", "real BTCUSDT 1m candles (defaults)", "btc"),
)
BY_NAME = {s.name: s for s in SCENARIOS}


@dataclass
class Job:
    """A unit of work for the pool: a replay of a scenario, or the real candles' baseline."""

    name: str  # a scenario name, or "btc-baseline"
    input: Path
    work: Path
    config: Path | None = None
    size: int = 0  # for ordering: longest first


def prepare(names: Sequence[str], work: Path, quick: bool) -> list[Job]:
    """Write the inputs the chosen scenarios need; one job per replay (and the baseline)."""
    n = 30_000 if quick else 200_000
    inputs: dict[str, Path] = {}
    for kind, seed in (("gauss", 1), ("garch", 2)):
        if any(BY_NAME[x].input == kind for x in names):
            inputs[kind] = write_walk(work / f"{kind.upper()}USDT-1m-synthetic.csv.gz", kind, n,
                                      seed)
            print(f"  wrote {n:,} candles of the {kind} walk: {inputs[kind]}", flush=True)
    if "sim" in names:
        inputs["sim"] = simulate(work, 14_400 if quick else SIM_SECONDS)
    if "btc" in names:
        inputs["btc"] = (head_of_candles(KLINES, work / "BTCUSDT-1m-first30d.csv.gz", 30 * 1440)
                         if quick else KLINES)
    jobs = []
    for name in names:
        sc = BY_NAME[name]
        cfg = Path(sc.config) if sc.config else None
        if sc.labels_bps is not None:
            cfg = work / f"labels-{sc.labels_bps:g}bps.toml"
            cfg.write_text(f"[labels]\nthreshold_bps = {sc.labels_bps!r}\n")
        size = {"btc": 3, "garch": 2, "gauss": 2, "sim": 1}[sc.input]
        jobs.append(Job(name, inputs[sc.input], work, cfg, size))
    if "btc" in names:
        jobs.append(Job("btc-baseline", inputs["btc"], work, None, 3))
    return sorted(jobs, key=lambda j: -j.size)


def simulate(work: Path, seconds: int) -> Path:
    """The demo's simulated tape, written by ``ares-stream simulate``."""
    out = work / f"sim-seed{SIM_SEED}-{seconds}s.gz"
    cmd = [sys.executable, "-m", "ares_stream.cli", "simulate", "--out", str(out),
           "--seconds", str(seconds), "--seed", str(SIM_SEED)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=work, check=False)
    if done.returncode != 0:
        sys.exit(f"bench/trading.py: ares-stream simulate failed: {done.stderr.strip()[-500:]}")
    print(f"  {done.stdout.strip()}", flush=True)
    return out


def say(line: str) -> None:
    """One progress line in one write: the pool's workers share stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def run_job(job: Job) -> dict[str, Any]:
    """Run one job (in a pool worker) and return what it measured, as plain data."""
    say(f"  started {job.name} ({job.input.name})")
    start = time.perf_counter()
    try:
        out = run_baseline(job) if job.name == "btc-baseline" else run_scenario(job)
    except Exception as exc:  # a bench reports a failed job, its traceback in a file, and goes on
        trace = job.work / f"{job.name}.traceback"
        trace.write_text(traceback.format_exc())
        out = {"name": job.name, "error": f"{type(exc).__name__}: {exc} (see {trace})"}
    out["seconds"] = time.perf_counter() - start
    return out


def run_scenario(job: Job) -> dict[str, Any]:
    """``ares-stream replay`` of the job's input into a fresh database, then its measures."""
    db = job.work / f"{job.name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "ares_stream.cli", "replay", str(job.input), "--db", str(db),
           "--quiet", "--no-report"]
    if job.config is not None:
        cmd += ["--config", str(job.config)]
    log = job.work / f"{job.name}.log"
    with log.open("w") as err, (job.work / f"{job.name}.out").open("w") as summary:
        done = subprocess.run(cmd, stdout=summary, stderr=err, cwd=job.work, check=False)
    notes, kill = log_notes(log)
    if done.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        return {"name": job.name, "error": f"replay exited {done.returncode}: {tail[0][:300]}",
                "notes": notes, "db": str(db)}
    out = measure(db, kill)
    out["notes"] = notes + out["notes"]
    return {"name": job.name, "db": str(db), **out}


def log_notes(path: Path) -> tuple[list[str], dict[str, Any] | None]:
    """Warnings and errors the replay logged (JSON lines on stderr), counted by event, with the
    first one's event time and reason; and the first kill switch's (after it, no new orders)."""
    seen: Counter[str] = Counter()
    first: dict[str, str] = {}
    kill = None
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("level") in ("warning", "error", "critical"):
            key = f"{rec['level']} {rec.get('event', '?')}"
            seen[key] += 1
            if key not in first:
                first[key] = _first_detail(rec)
            if kill is None and rec.get("event") == "kill_switch_tripped":
                kill = {"ts_event": rec.get("ts_event"), "reason": rec.get("reason")}
    return [f"logged {k} x{n}{first[k]}" for k, n in seen.most_common(8)], kill


def _first_detail(rec: dict[str, Any]) -> str:
    parts = []
    if isinstance(rec.get("ts_event"), int):
        parts.append(time.strftime("at %Y-%m-%d %H:%M UTC", time.gmtime(rec["ts_event"] / 1e9)))
    parts += [f"{k}: {str(rec[k])[:120]}" for k in ("reason", "error") if k in rec]
    return f" (first {', '.join(parts)})" if parts else ""


# -- measures from a run database ---------------------------------------------------------------


def max_drawdown(equity: np.ndarray, start: float) -> float:
    """The largest fall from a running peak (the starting cash included), as a fraction.

    >>> max_drawdown(np.array([100.0, 120.0, 90.0, 130.0]), 100.0)
    0.25
    """
    peak = np.maximum.accumulate(np.concatenate(([start], equity)))[1:]
    return float(np.max(1.0 - equity / peak)) if equity.size else 0.0


def slippage_paid(side: np.ndarray, qty: np.ndarray, price: np.ndarray,
                  slippage_bps: np.ndarray) -> float:
    """Quote paid to slippage: ``qty × |price − ref|`` signed against us, where the fill row's
    ``slippage_bps`` is the fill price against the reference (trade or bar) price.

    >>> slippage_paid(np.array(["BUY", "SELL"]), np.array([1.0, 1.0]), np.array([101.0, 99.0]),
    ...               np.array([100.0, 100.0]))
    2.0
    """
    s = slippage_bps / 1e4
    ref = np.where(side == "BUY", price / (1.0 + s), price / (1.0 - s))
    return float(np.sum(qty * np.where(side == "BUY", price - ref, ref - price)))


def log_losses(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-row log loss, clipped as ``ares_stream.learners.scores`` (River's clamp).

    >>> log_losses(np.array([1.0, 0.0]), np.array([0.9, 0.9])).round(6).tolist()
    [0.105361, 2.302585]
    """
    from ares_stream.learners.scores import log_losses as scored

    return scored(y, p)


def prequential_rate(y: np.ndarray) -> np.ndarray:
    """The constant baseline's P(1) before each row: ``(ones + ½) / (n + 1)`` of earlier labels.

    >>> prequential_rate(np.array([1.0, 0.0, 1.0])).tolist()
    [0.5, 0.75, 0.5]
    """
    ones = np.concatenate(([0.0], np.cumsum(y)[:-1]))
    return (ones + 0.5) / (np.arange(y.size) + 1.0)


def _query(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
    return bool(_query(conn, "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)))


def measure(db: Path, kill: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the table reports about the newest run of ``db`` (``kill``: the first kill
    switch the run logged, whose time bounds a second share of bars in a position)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (run_id, status, cfg_json, summary_json), = _query(
            conn, "SELECT id, status, config, summary FROM runs ORDER BY id DESC LIMIT 1")
        config, summary = json.loads(cfg_json), json.loads(summary_json or "{}")
        out: dict[str, Any] = {"run_id": run_id, "status": status, "bars": summary.get("bars"),
                               "config": {k: config.get(k) for k in ("labels", "trading")}}
        out["notes"] = [] if status == "finished" else [f"run status is {status!r}"]
        out |= _predictions(conn, run_id, summary, out["notes"])
        out |= _trading(conn, run_id, float(config["trading"]["starting_cash"]), out["notes"],
                        kill)
        out |= _batch(conn, run_id, summary)
        if out.get("bars") is not None and out["equity_rows"] not in (0, out["bars"]):
            out["notes"].append(f"{out['equity_rows']:,} equity rows for {out['bars']:,} bars")
    finally:
        conn.close()
    return out


def _predictions(conn: sqlite3.Connection, run_id: int, summary: dict[str, Any],
                 notes: list[str]) -> dict[str, Any]:
    rows = _query(conn, "SELECT symbol, ts_event, proba, value, booster, label, loss "
                  "FROM predictions WHERE run_id = ? ORDER BY symbol, ts_event", (run_id,))
    out: dict[str, Any] = {"predictions": len(rows)}
    lab = [r for r in rows if r[5] is not None and r[2] is not None]
    out["labelled"] = len(lab)
    out["booster_rows"] = sum(1 for r in rows if r[4] is not None)
    if not rows:
        notes.append("NO PREDICTIONS in the run database")
        return out
    if not lab:
        notes.append("no labelled predictions with a probability in the run database")
        return out
    if len({r[0] for r in rows}) > 1:
        notes.append("several symbols: the constant baseline runs over all of them in turn")
    y = np.array([r[5] for r in lab], dtype=float)
    traded = log_losses(y, np.array([r[2] for r in lab], dtype=float))
    out["ll_traded"] = float(traded.mean())
    out["ll_online"] = float(log_losses(y, np.array([r[3] for r in lab], dtype=float)).mean())
    out["ll_const"] = float(log_losses(y, prequential_rate(y)).mean())
    out["label_rate"] = float(y.mean())
    stored = np.array([np.nan if r[6] is None else r[6] for r in lab], dtype=float)
    worst = float(np.max(np.abs(stored - traded), initial=0.0, where=np.isfinite(stored)))
    if not np.isfinite(stored).all() or worst > 1e-9:
        notes.append(f"predictions.loss: {np.sum(~np.isfinite(stored)):,} labelled rows without "
                     f"one; up to {worst:.3g} from the traded probability's log loss")
    _check_summary(summary, out, notes)
    return out


def _check_summary(summary: dict[str, Any], out: dict[str, Any], notes: list[str]) -> None:
    """The engine's own end-of-run log losses must match the ones recomputed from the rows."""
    symbols = summary.get("symbols") or {}
    if len(symbols) != 1:
        return
    (s,) = symbols.values()
    for ours, theirs in (("ll_traded", "ensemble_log_loss"), ("ll_online", "log_loss"),
                         ("ll_const", "baseline_log_loss")):
        if theirs in s and abs(s[theirs] - out[ours]) > 1e-6:
            notes.append(f"{ours} {out[ours]:.6f} from the rows, {s[theirs]:.6f} in the "
                         "engine's summary")


def _trading(conn: sqlite3.Connection, run_id: int, start: float, notes: list[str],
             kill: dict[str, Any] | None) -> dict[str, Any]:
    rows = _query(conn, "SELECT ts_event, positions_value, equity FROM equity WHERE run_id = ? "
                  "ORDER BY ts_event", (run_id,))
    eq = np.array([r[1:] for r in rows], dtype=float).reshape(-1, 2)
    fills = _query(conn, "SELECT side, qty, price, fee, slippage_bps FROM fills WHERE run_id = ?",
                   (run_id,))
    orders = _query(conn, "SELECT status, count(*) FROM orders WHERE run_id = ? GROUP BY status",
                    (run_id,))
    out: dict[str, Any] = {"start_cash": start, "fills": len(fills), "orders": dict(orders),
                           "equity_rows": len(eq)}
    if not len(eq):
        notes.append("NO EQUITY ROWS: the paper broker marked nothing")
        return out
    side = np.array([f[0] for f in fills])
    qty, price, fee, slip = (np.array([f[k] for f in fills], dtype=float) for k in (1, 2, 3, 4))
    out["fees"] = float(fee.sum())
    out["slippage"] = slippage_paid(side, qty, price, slip) if fills else 0.0
    out["in_position"] = float(np.mean(eq[:, 0] > 0.0))  # a position held at the bar's close
    out["bars_in_position"] = int(np.sum(eq[:, 0] > 0.0))
    out["pnl_after"] = float(eq[-1, 1] - start)
    out["pnl_before"] = out["pnl_after"] + out["fees"] + out["slippage"]
    out["max_drawdown"] = max_drawdown(eq[:, 1], start)
    if eq[-1, 0] > 0.0:
        notes.append(f"still holding a position at the end ({eq[-1, 0]:,.2f} quote, marked)")
    if kill is not None and isinstance(kill["ts_event"], int):
        before = np.array([r[0] for r in rows], dtype=np.int64) < kill["ts_event"]
        held = eq[:, 0] > 0.0
        out["in_position_before_kill"] = float(held[before].mean()) if before.any() else 0.0
        notes.append(f"before the first kill switch ({kill['reason']}) a position was held at "
                     f"{held[before].sum():,} of {before.sum():,} bars "
                     f"({100 * out['in_position_before_kill']:.2f}%), after it at "
                     f"{held[~before].sum():,} of {(~before).sum():,}")
    return out


def _batch(conn: sqlite3.Connection, run_id: int, summary: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"batch": summary.get("batch", {})}
    out["validations"], out["promotions"] = _query(
        conn, "SELECT count(*), coalesce(sum(promoted), 0) FROM validations WHERE run_id = ?",
        (run_id,))[0]
    if _table_exists(conn, "signal_gate"):
        out["gate_on"], out["gate_rows"] = _query(
            conn, "SELECT coalesce(sum(trading), 0), count(*) FROM signal_gate WHERE run_id = ?",
            (run_id,))[0]
    return out


# -- the daily-refit baseline on the real candles -----------------------------------------------


@dataclass
class Samples:
    """Every bar with features: its time, features, and (once known) label and when it was known."""

    names: tuple[str, ...]
    ts: list[int] = field(default_factory=list)
    X: list[list[float]] = field(default_factory=list)
    label: dict[int, int] = field(default_factory=dict)  # ts_event -> label
    known: dict[int, int] = field(default_factory=dict)  # ts_event -> bar end it was revealed at


def engine_samples(path: Path, config: Config) -> Samples:
    """The bars, features and delayed labels of a candle file, by the engine's own code and in
    its order per bar (reveal due labels, update the features, queue the bar); a jump in the
    candle times resets the features and drops pending labels, as the engine's gate does."""
    from ares_stream.features.bars import bar_from_kline
    from ares_stream.features.labels import LabelQueue
    from ares_stream.features.pipeline import feature_set
    from ares_stream.feed.publicdata import PublicDataSource

    features = feature_set(config)
    queue = LabelQueue(config.labels.horizon, config.labels.threshold_bps / 1e4)
    out = Samples(tuple(features.names))
    last_end = None
    for k in PublicDataSource(path):
        bar = bar_from_kline(k)
        if last_end is not None and bar.ts_event <= last_end:
            continue  # a duplicate candle
        if last_end is not None and bar.open_time != last_end:
            features.reset()
            queue.clear()
        last_end = bar.ts_event
        for r in queue.resolve(bar.close):
            out.label[r.ts_event], out.known[r.ts_event] = r.label, bar.ts_event
        x = features.update(bar)
        queue.push(x, bar.close, bar.ts_event)
        if x is not None:
            out.ts.append(bar.ts_event)
            out.X.append([x.get(n, math.nan) for n in out.names])
    return out


def daily_refit(s: Samples, config: Config, days: int = BASELINE_DAYS) -> dict[str, Any]:
    """At each UTC midnight T: fit on the samples of [T − days, T) labelled by T (at least
    ``batch.min_rows``), predict the bars ending in [T, T + 1 day)."""
    from ares_stream.batch.jobs import settings_of
    from ares_stream.learners import booster

    ts, X = np.array(s.ts, dtype=np.int64), np.array(s.X, dtype=np.float64)
    known = np.array([s.known.get(t, np.iinfo(np.int64).max) for t in s.ts], dtype=np.int64)
    y = np.array([s.label.get(t, -1) for t in s.ts], dtype=np.float64)
    p = np.full(len(ts), np.nan)
    settings, fits = settings_of(config), []
    for day in range(int(ts.min() // DAY_NS) + 1, int(ts.max() // DAY_NS) + 1):
        t0 = day * DAY_NS
        train = (known <= t0) & (ts >= t0 - days * DAY_NS)
        target = (ts >= t0) & (ts < t0 + DAY_NS)
        if train.sum() < config.batch.min_rows or not target.any():
            continue
        model = booster.fit(X[train], y[train], ts[train], s.names, settings)
        p[target] = booster.predict(model, X[target])
        fits.append(int(train.sum()))
    return {"ts": ts, "p": p, "y": y, "fits": fits}


def run_baseline(job: Job) -> dict[str, Any]:
    """The baseline's predictions on the real candles, saved for pairing with the run's."""
    config = load_config(job.config)
    samples = engine_samples(job.input, config)
    res = daily_refit(samples, config)
    path = job.work / "btc-baseline.npz"
    np.savez(path, ts=res["ts"], p=res["p"], y=res["y"], X=np.array(samples.X))
    return {"name": job.name, "npz": str(path), "fits": len(res["fits"]),
            "train_rows_median": float(np.median(res["fits"])) if res["fits"] else 0.0,
            "config": json.loads(json.dumps(as_dict(config))), "names": list(samples.names)}


def day_block_ci(diff: np.ndarray, ts: np.ndarray, n_boot: int = N_BOOT,
                 seed: int = SEED) -> tuple[float, float, float]:
    """The mean of ``diff`` and a 95 % percentile CI, resampling whole UTC days (of ``ts``, ns).

    >>> ts = np.arange(4) * 43_200 * 10**9  # two rows a day
    >>> day_block_ci(np.full(4, 0.5), ts)
    (0.5, 0.5, 0.5)
    >>> m, lo, hi = day_block_ci(np.array([1.0, 1.0, -1.0, -1.0]), ts)
    >>> m, lo, hi
    (0.0, -1.0, 1.0)
    """
    _, day = np.unique(ts // DAY_NS, return_inverse=True)
    sums, counts = np.bincount(day, weights=diff), np.bincount(day).astype(float)
    idx = np.random.default_rng(seed).integers(0, len(sums), size=(n_boot, len(sums)))
    means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(lo), float(hi)


def compare(run: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Ours against the baseline, paired per bar, with the checks that make it the same data."""
    b = np.load(base["npz"])
    conn = sqlite3.connect(f"file:{run['db']}?mode=ro", uri=True)
    try:
        rows = _query(conn, "SELECT ts_event, proba, value, booster, label FROM predictions "
                      "WHERE run_id = ? AND label IS NOT NULL AND proba IS NOT NULL "
                      "ORDER BY ts_event", (run["run_id"],))
        ts = np.array([r[0] for r in rows], dtype=np.int64)
        P = np.array([[np.nan if v is None else v for v in r[1:]] for r in rows],
                     dtype=float).reshape(-1, 4)  # traded, online, booster, label
        checks = _checks(conn, run, base, b, ts)
    finally:
        conn.close()
    pos = np.minimum(np.searchsorted(b["ts"], ts), len(b["ts"]) - 1)
    found = b["ts"][pos] == ts
    bad = int(np.sum(found & (b["y"][pos] != P[:, 3])))
    if bad:
        checks.append((False, f"LABELS DIFFER on {bad:,} rows: the baseline's are not the run's"))
    both = found & np.isfinite(b["p"][pos])
    y, tb, base_ll = P[both, 3], ts[both], log_losses(P[both, 3], b["p"][pos][both])
    out: dict[str, Any] = {"checks": checks, "valid": all(ok for ok, _ in checks),
                           "fits": base["fits"], "train_rows_median": base["train_rows_median"],
                           "rows": int(both.sum()), "days": len(np.unique(tb // DAY_NS)),
                           "ll_baseline": float(base_ll.mean()) if both.any() else math.nan}
    for key, col in (("traded", 0), ("booster", 2), ("online", 1)):
        p = P[both, col]
        has = np.isfinite(p)
        if not has.any():
            out[key] = None
            continue
        ours = log_losses(y[has], p[has])
        mean, lo, hi = day_block_ci(ours - base_ll[has], tb[has])
        out[key] = {"rows": int(has.sum()), "days": len(np.unique(tb[has] // DAY_NS)),
                    "ours": float(ours.mean()), "baseline": float(base_ll[has].mean()),
                    "diff": mean, "ci": [lo, hi]}
    return out


Check = tuple[bool, str]  # (the data agree, what was checked)


def _checks(conn: sqlite3.Connection, run: dict[str, Any], base: dict[str, Any],
            b: Any, ts: np.ndarray) -> list[Check]:
    """Same settings as the run, the same labelled bars, the run's buffered feature vectors."""
    checks: list[Check] = []
    (cfg_json,), = _query(conn, "SELECT config FROM runs WHERE id = ?", (run["run_id"],))
    cfg = json.loads(cfg_json)
    for section in ("bars", "features", "labels", "batch"):
        if cfg.get(section) != base["config"].get(section):
            checks.append((False, f"CONFIG DIFFERS: the run's [{section}] is not the baseline's"))
    ours, theirs = set(ts.tolist()), set(b["ts"][b["y"] >= 0].tolist())
    if ours == theirs:
        checks.append((True, f"the same {len(ours):,} labelled bars as the run"))
    else:
        checks.append((False, f"LABELLED BARS DIFFER: {len(ours - theirs):,} only in the run, "
                              f"{len(theirs - ours):,} only in the baseline"))
    checks.append(_buffer_check(conn, b))
    return checks


def _buffer_check(conn: sqlite3.Connection, b: Any) -> Check:
    """The run's buffered feature vectors (its last ``buffer_days``) against the recomputed."""
    try:
        rows = _query(conn, "SELECT ts_event, x FROM buffer ORDER BY ts_event")
    except sqlite3.Error as exc:
        return True, f"features not checked: the buffer table cannot be read ({exc})"
    if not rows:
        return True, "features not checked: the run's buffer table is empty"
    index = {t: i for i, t in enumerate(b["ts"].tolist())}
    X, same, missing = b["X"], 0, 0
    for t, blob in rows:
        i = index.get(int(t))
        if i is None:
            missing += 1
            continue
        # float32 since the buffer holds float32 (float64 before): equal up to float32 rounding
        x = np.frombuffer(blob, dtype=np.float32 if len(blob) == 4 * len(X[i]) else np.float64)
        same += int(x.shape == X[i].shape
                    and np.allclose(x, X[i], rtol=2e-7, atol=1e-12, equal_nan=True))
    if same == len(rows):
        return True, f"features identical to the run's buffer on all {same:,} buffered rows"
    return False, (f"FEATURES DIFFER from the run's buffer: {same:,} of {len(rows):,} rows "
                   f"identical, {missing:,} buffered bars not in the baseline")


# -- targets and tables -------------------------------------------------------------------------


UNMEASURED = ("the run produced a measurement",
              "the run finished with labelled predictions and equity rows")


def targets(r: dict[str, Any], cmp: dict[str, Any] | None) -> list[tuple[str, bool | None]]:
    """(target, passed) of a scenario; ``None``: not measurable."""
    name = r["name"]
    if "error" in r:
        return [(UNMEASURED[0], False)]
    if r.get("status") != "finished" or not r.get("labelled") or not r.get("equity_rows"):
        return [(UNMEASURED[1], False)]
    if name.startswith(("gauss", "garch")):
        pos, pnl = r.get("in_position"), r.get("pnl_after")
        return [(f"in a position <= {NOISE_MAX_IN_POSITION:.0%} of bars",
                 None if pos is None else pos <= NOISE_MAX_IN_POSITION),
                (f"PnL after costs >= {NOISE_MIN_PNL:+.1%}",
                 None if pnl is None else pnl / r["start_cash"] >= NOISE_MIN_PNL)]
    if name == "sim":
        pnl = r.get("pnl_after")
        return [("PnL after costs > 0", None if pnl is None else pnl > 0.0)]
    traded = None if cmp is None else cmp.get("traded")
    excess = (r["ll_online"] - r["ll_const"]) if "ll_online" in r else None
    return [("traded vs daily-refit baseline: CI upper <= 0",
             None if traded is None or not cmp or not cmp["valid"] else traded["ci"][1] <= 0.0),
            (f"online within {ONLINE_MAX_EXCESS} nats of the constant",
             None if excess is None else excess <= ONLINE_MAX_EXCESS)]


def _pct(x: float | None, start: float, digits: int = 2) -> str:
    return "-" if x is None else f"{100 * x / start:+.{digits}f}%"


def _num(x: Any, fmt: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def scenario_row(r: dict[str, Any], tg: list[tuple[str, bool | None]]) -> tuple[str, ...]:
    if "error" in r:
        return (r["name"], "ERROR", *["-"] * 9, "FAIL")
    start = r.get("start_cash", 1.0)
    costs = None if "fees" not in r else r["fees"] + r["slippage"]
    verdict = "FAIL" if any(ok is False for _, ok in tg) else (
        "n/a" if any(ok is None for _, ok in tg) else "PASS")
    return (r["name"], _num(r.get("bars"), ","),
            "-" if "in_position" not in r else f"{100 * r['in_position']:.2f}%",
            _num(r.get("fills"), ","), _pct(r.get("pnl_before"), start),
            "-" if costs is None else f"{100 * costs / start:.2f}%",
            _pct(r.get("pnl_after"), start),
            "-" if "max_drawdown" not in r else f"{100 * r['max_drawdown']:.2f}%",
            _num(r.get("ll_traded"), ".5f"), _num(r.get("ll_online"), ".5f"),
            _num(r.get("ll_const"), ".5f"), verdict)


HEAD = ("scenario", "bars", "in position", "fills", "PnL before", "costs", "PnL after",
        "max DD", "LL traded", "LL online", "LL const", "targets")


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Fixed-width columns, the first left-aligned."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def comparison_lines(cmp: dict[str, Any] | None, base: dict[str, Any] | None) -> list[str]:
    if base is None:
        return []
    if "error" in base:
        return [f"baseline: ERROR {base['error']}"]
    if cmp is None:
        return ["baseline: no run of the real candles to compare with"]
    lines = [f"real candles, paired per bar, ours − daily-refit XGBoost baseline ({cmp['fits']} "
             f"refits, median {cmp['train_rows_median']:,.0f} training rows; its log loss "
             f"{cmp['ll_baseline']:.5f} on {cmp['rows']:,} rows, {cmp['days']} days); 95% CI "
             f"by {N_BOOT} day-block bootstrap resamples:"]
    rows = []
    for key, what in (("traded", "traded probability"), ("booster", "champion booster"),
                      ("online", "online learner")):
        c = cmp.get(key)
        if c is None:
            rows.append((what, "0", "-", "-", "-", "-", "no rows with this probability"))
            continue
        rows.append((what, f"{c['rows']:,}", str(c["days"]), f"{c['ours']:.5f}",
                     f"{c['baseline']:.5f}", f"{c['diff']:+.5f}",
                     f"[{c['ci'][0]:+.5f}, {c['ci'][1]:+.5f}]"))
    lines += ["  " + x for x in table(("probability", "rows", "days", "LL ours", "LL baseline",
                                       "mean diff", "95% CI"), rows).splitlines()]
    lines += [f"  check {'ok' if ok else 'FAILED'}: {c}" for ok, c in cmp["checks"]]
    return lines


def code_version() -> str:
    """Where the measured ``ares_stream`` lives, and its commit when it is a git checkout."""
    where = CODE
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--",
                                "ares_stream", "configs"], capture_output=True, text=True,
                               check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return f"{where} (not a git checkout)"
    return f"{where} at {head}" + (f" + {len(dirty)} uncommitted files" if dirty else "")


def report(results: dict[str, dict[str, Any]], names: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """The printed tables and their JSON form (``measured``: every target could be measured)."""
    base = results.get("btc-baseline")
    run = results.get("btc")
    cmp = None
    if base is not None and run is not None and "error" not in base and "error" not in run:
        try:
            cmp = compare(run, base)
        except Exception as exc:  # the runs' results still print; the pairing's failure too
            base = {**base, "error": f"pairing with the run failed: {type(exc).__name__}: {exc}"}
    rows, lines, doc = [], [], {"scenarios": {}, "baseline": cmp}
    measured = base is None or "error" not in base
    for name in names:
        r = results[name]
        tg = targets(r, cmp)
        measured &= all(ok is not None and t not in UNMEASURED for t, ok in tg)
        rows.append(scenario_row(r, tg))
        doc["scenarios"][name] = {**r, "targets": [{"target": t, "pass": ok} for t, ok in tg]}
        verdicts = "; ".join(f"{t} {'PASS' if ok else 'FAIL' if ok is False else 'n/a'}"
                             for t, ok in tg)
        extra = _extra(r)
        lines.append(f"  {name} ({BY_NAME[name].what}): {verdicts}"
                     + (f"\n      {extra}" if extra else ""))
        lines += [f"      note: {n}" for n in r.get("notes", [])]
        if "error" in r:
            lines.append(f"      ERROR: {r['error']}")
    text = [table(HEAD, rows), "", "PnL, costs (fees + slippage) in % of the starting cash; "
            "in position: share of bars closed holding one; LL: mean log loss over labelled "
            "predictions", "", *comparison_lines(cmp, base), "", "targets:", *lines]
    doc["measured"] = measured  # every target measured: no failed run, no failed check
    return "\n".join(text), doc


def _extra(r: dict[str, Any]) -> str:
    if "error" in r or "predictions" not in r:
        return ""
    b = r.get("batch") or {}
    parts = [f"{r['predictions']:,} predictions ({r['labelled']:,} labelled, label rate "
             f"{r.get('label_rate', math.nan):.3f})",
             f"{r.get('bars_in_position', 0):,} bars in a position",
             f"orders {sum(r.get('orders', {}).values()):,}",
             f"fees {r.get('fees', 0):,.2f}, slippage {r.get('slippage', 0):,.2f}",
             f"boosters {b.get('trained', 0)}, validations {r['validations']} "
             f"({r['promotions']} promoted" + (f", {b['validate_failed']} failed" if
                                               b.get("validate_failed") else "") + ")",
             f"champion-booster rows {r['booster_rows']:,}"]
    if "gate_rows" in r:
        parts.append(f"signal gate: {r['gate_rows']} changes ({r['gate_on']} opening)"
                     if r["gate_rows"] else "signal gate: no rows")
    return "; ".join(parts)


# -- main ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="30,000 synthetic candles, 4 simulated hours, 30 real days")
    parser.add_argument("--only", action="append", choices=list(BY_NAME), metavar="NAME",
                        help=f"run this scenario only (repeatable): {', '.join(BY_NAME)}")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the inputs, databases and logs in DIR")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="replays at a time (default 2)")
    args = parser.parse_args(argv)
    names = list(dict.fromkeys(args.only or BY_NAME))
    if "btc" in names and not KLINES.exists():
        print(f"bench/trading.py: real data missing: {KLINES}; skipping the btc scenario")
        names.remove("btc")
        if not names:
            return 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ares-trading-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print(f"trading benchmark{' (quick)' if args.quick else ''}: {', '.join(names)}\n"
              f"  code: {code_version()}\n  work: {work}", flush=True)
        jobs = prepare(names, work.resolve(), args.quick)
        results: dict[str, dict[str, Any]] = {}
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            for k, res in enumerate(pool.imap_unordered(run_job, jobs), 1):
                results[res["name"]] = res
                state = "FAILED" if "error" in res else "done"
                print(f"  {state} {res['name']} in {res['seconds']:.0f} s ({k}/{len(jobs)})",
                      flush=True)
        text, doc = report(results, names)
    elapsed = time.perf_counter() - started
    print(f"\n{text}\n\n{elapsed:.0f} s on {args.jobs} processes")
    if args.json:
        doc |= {"code": code_version(), "quick": args.quick, "seconds": elapsed}
        args.json.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    return 0 if doc["measured"] else 1


if __name__ == "__main__":
    sys.exit(main())
