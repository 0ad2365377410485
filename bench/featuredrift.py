"""Feature drift on the simulator: false events on stationary days, flags after volatility
switches, and the bound no window-against-training test can beat.

    PYTHONPATH=. python bench/featuredrift.py --seeds 10            # ~35 min on 2 cores
    PYTHONPATH=. python bench/featuredrift.py --seeds 10 --keep /tmp/fd   # keep the replays
    PYTHONPATH=. python bench/featuredrift.py --cost        # only what a check costs (~1 min)

**Cost.** One check over 15 features with a 50,000-row reference and a 10,000-row recent window,
timed as the worker runs it; and the engine's time per bar (features, River, store: the work on
the event loop) over 20,000 real one-minute candles with the worker idle, then with the worker
running checks back to back: a check never runs on the loop.

Per seed one simulated day (demo config, 10 s bars) is replayed three times: **stationary** (one
volatility regime, one concept), with the simulator's **volatility switches** (x2 at 6 h, x1 at
12 h, x2 at 18 h; one concept), and with its **concept flip** (beta +0.8 -> -0.8 half-way, one
volatility regime: only the relationship changes, what does the feature test see?). The replay
runs the check every 10 minutes with events off (``psi_threshold`` 1e9, ``feature_window`` 50:
every check with 50 rows after the champion's training window is stored with its reference model).
Offline, every stored check is recomputed with :func:`ares_stream.validation.drift.compare` — the
daemon's own code — for each recent window ``W``; a setting (null factor, ``features_drifted``
k) then decides:

- **false /10k**: "features" events on the stationary days per 10,000 bars (once per episode, as
  :class:`ares_stream.batch.featuredrift.Watch` raises them);
- **flagged <= 200**: per switch, the seeds on which a volatility feature (``vol_ewma`` or
  ``hl_range``) is flagged drifted by a check within 200 bars after it;
- **(chance)**: the same flags within 200 bars of the same times on the stationary days: how many
  of the flags a check would raise there anyway;
- **event <= 200**, **event <= 2 h**: per switch, the seeds with a "features" event within 200
  bars, and within 2 hours;
- **concept /10k**: "features" events per 10k bars on the concept-flip days (the inputs do not
  change there: only ADWIN on the loss can see that drift).

Events do not change the champion offline (no early refit), so each setting sees the same checks.

**The bound.** The simulator's log-volatility wanders (AR(1), sd ``VOL_OF_VOL``, half-life
``VOL_HALF_LIFE_S``) around its regime level; a x2 switch moves the level by ln 2. An oracle that
sees the latent log-volatility itself and knows the reference level exactly flags a switch when the
mean of its last ``W`` bars is more than ``h`` from it; with ``h`` set for at most one false event
per 10k bars (checks every 60 bars), the table gives its chance of flagging a switch within 200
bars. No test of a recent window against the training distribution can do better on this market.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from ares_stream import logs
from ares_stream.batch.featuredrift import MAX_REFERENCE, Watch
from ares_stream.config import Config, load_config, replace_values
from ares_stream.engine import Engine
from ares_stream.feed.publicdata import PublicDataSource
from ares_stream.replay import run_replay
from ares_stream.sim.harness import load_schedule
from ares_stream.sim.simulator import VOL_HALF_LIFE_S, VOL_OF_VOL, write_recording
from ares_stream.store.buffer import decode_x
from ares_stream.store.db import open_db
from ares_stream.store.runs import RunStore
from ares_stream.validation.drift import compare

ROOT = Path(__file__).resolve().parents[1]
KLINES = ROOT.parent / "shared" / "data" / "klines" / "BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz"
BAR_S = 10
BAR_NS = BAR_S * 10**9
DAY_BARS = 86_400 // BAR_S
CHECK_BARS = 60  # the replay's check period (10 min of 10 s bars)
WITHIN = 200  # bars after a switch
VOL_FEATURES = ("vol_ewma", "hl_range")
WINDOWS = (100, 150, 200, 500)
FACTORS = (1.0, 1.5, 2.0, 3.0)
KS = (2, 3, 4)
FLOOR = 0.25


# -- the replays -------------------------------------------------------------------------------

def replay_day(seed: int, kind: str, out: Path) -> Path:
    """Replay one simulated day of ``kind`` ("stationary" | "vol" | "concept") into
    ``out/<seed>-<kind>.db`` (kept when it exists); returns the database path."""
    db = out / f"{seed}-{kind}.db"
    if db.exists():
        return db
    path = out / f"{seed}-{kind}.gz"
    extra: dict[str, Any] = {
        "stationary": {"concept": ((0.0, 0.8),), "vol_regimes": ((0.0, 1.0),)},
        "vol": {"concept": ((0.0, 0.8),)},
        "concept": {"vol_regimes": ((0.0, 1.0),)},  # the simulator's flip: beta +0.8 -> -0.8
    }[kind]
    write_recording(path, seconds=86_400, seed=seed, **extra)
    cfg = replace_values(load_config(ROOT / "configs" / "demo.toml"), {"drift": {
        "feature_every": "10m", "feature_window": 50, "psi_threshold": 1e9}})
    partial = out / f"{seed}-{kind}.partial.db"
    partial.unlink(missing_ok=True)
    run_replay([str(path)], cfg, db_path=partial)
    partial.rename(db)
    path.unlink()
    for leftover in out.glob(f"{seed}-{kind}.partial.db*"):  # its lock and disk reserve
        leftover.unlink()
    return db


def _replay_in_child(job: tuple[int, str, Path]) -> Path:
    """One replay in its own interpreter (a replay owns its worker processes and logging)."""
    seed, kind, out = job
    subprocess.run([sys.executable, __file__, "--one", str(seed), kind, str(out)], check=True)
    return out / f"{seed}-{kind}.db"


# -- the offline checks ------------------------------------------------------------------------

@dataclass
class Check:
    """One stored check recomputed: per feature its PSI and its null (the largest PSI of the
    reference's own windows; NaN when not judged)."""

    ts: int
    model_id: int
    psi: np.ndarray
    null: np.ndarray


def checks(db: Path, window: int) -> tuple[list[str], list[Check], list[int]]:
    """Every stored check of ``db`` recomputed for a recent window of ``window`` rows; the
    feature names and the volatility switch times."""
    conn = sqlite3.connect(db)
    features = json.loads(conn.execute("SELECT features FROM models LIMIT 1").fetchone()[0])
    rows = conn.execute("SELECT ts_event, x FROM buffer ORDER BY ts_event").fetchall()
    ts = np.array([r[0] for r in rows], dtype=np.int64)
    X = decode_x([r[1] for r in rows], len(features))  # float32, as the worker reads it
    spans = {i: (a, b) for i, a, b in conn.execute("SELECT id, train_start, train_end FROM models")}
    stored = conn.execute("SELECT DISTINCT ts_event, model_id FROM feature_drift "
                          "ORDER BY ts_event").fetchall()
    conn.close()
    out = []
    for t, model_id in stored:
        start, end = spans[model_id]
        lo, cut, hi = (int(np.searchsorted(ts, v, side="right")) for v in (start - 1, end, t))
        if hi - cut < window:
            continue  # fewer than `window` rows after the training window: no check yet
        ref, rec = X[max(lo, cut - MAX_REFERENCE):cut], X[hi - window:hi]
        res = compare(ref, rec, features, psi_threshold=1e-12, null_factor=1.0)
        out.append(Check(t, model_id, np.array([r.psi for r in res]),
                         np.array([r.threshold for r in res])))
    schedule = load_schedule(Path(str(db).replace(".db", ".gz") + ".schedule.json"))
    switches = list(schedule.volatility_switches_ns) if schedule is not None else []
    return features, out, switches


def drifted(c: Check, factor: float) -> np.ndarray:
    """Which features drift under ``factor``: PSI above the floor and ``factor`` x the null."""
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(c.psi, nan=-1.0) > np.maximum(FLOOR, factor * c.null)


def false_events(days: list[list[Check]], factor: float, k: int) -> float:
    """"features" events per 10k bars (once per episode) over stationary days."""
    events = 0
    for day in days:
        watch = Watch()
        events += sum(watch.fires("S", c.model_id, drifted=int(drifted(c, factor).sum()) >= k)
                      for c in day)
    return events * 10_000 / (DAY_BARS * max(1, len(days)))


def flagged(day: list[Check], switches: list[int], vol: list[int], factor: float,
            k: int) -> list[tuple[bool, bool, bool]]:
    """Per switch: a volatility feature flagged within WITHIN bars; an event within them; an
    event within 2 hours."""
    out = []
    for s in switches:
        near = [(c.ts, drifted(c, factor)) for c in day if s < c.ts <= s + 7200 * 10**9]
        soon = [f for ts, f in near if ts <= s + WITHIN * BAR_NS]
        out.append((any(f[vol].any() for f in soon), any(f.sum() >= k for f in soon),
                    any(f.sum() >= k for _, f in near)))
    return out


# -- the bound ---------------------------------------------------------------------------------

def oracle(window: int, *, bars: int = 2_000_000, trials: int = 20_000,
           seed: int = 0) -> tuple[float, float]:
    """The latent log-volatility's AR(1) at 10 s bars: the threshold ``h`` on the |mean of the
    last ``window`` bars| that gives at most 1 false event per 10k bars (checks every
    CHECK_BARS), and the chance that a check within WITHIN bars of a ln 2 step flags it."""
    rng = np.random.default_rng(seed)
    phi = 0.5 ** (BAR_S / VOL_HALF_LIFE_S)
    x = np.empty(bars)
    x[0] = rng.normal(0.0, VOL_OF_VOL)
    shocks = rng.normal(0.0, VOL_OF_VOL * math.sqrt(1 - phi * phi), bars)
    for i in range(1, bars):  # ~1 s: plain loop, no scipy needed
        x[i] = phi * x[i - 1] + shocks[i]
    cum = np.concatenate([[0.0], np.cumsum(x)])
    at = np.arange(window, bars + 1, CHECK_BARS)
    means = np.abs(cum[at] - cum[at - window]) / window
    h = 0.0
    for h in np.arange(0.05, 2.0, 0.01):
        over = means > h
        if np.sum(over[1:] & ~over[:-1]) * 10_000 / bars <= 1.0:
            break
    # a switch at a random place and phase of the check clock: flagged when any check in
    # (s, s + WITHIN] sees |mean| > h, the post-switch rows of its window shifted by ln 2
    hits = 0
    for _ in range(trials):
        s = int(rng.integers(window + WITHIN, bars - WITHIN))
        first = s + 1 + int(rng.integers(0, CHECK_BARS))
        for t in range(first, s + WITHIN + 1, CHECK_BARS):
            post = min(window, t - s)
            m = (cum[t] - cum[t - window]) / window + math.log(2) * post / window
            if abs(m) > h:
                hits += 1
                break
    return float(h), hits / trials


# -- the cost ----------------------------------------------------------------------------------

def _one_check(reference_rows: int = 50_000, recent_rows: int = 10_000, features: int = 15,
               repeat: int = 3) -> float:
    """Seconds of one check (PSI, KS and the null of every feature), the best of ``repeat``."""
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(reference_rows, features))
    rec = rng.normal(0.1, 1.0, size=(recent_rows, features))
    names = [f"f{i}" for i in range(features)]
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        compare(ref, rec, names, psi_threshold=0.25, null_factor=1.5)
        best = min(best, time.perf_counter() - start)
    return best


def _checks_for(seconds: float) -> int:
    """Checks run back to back in the worker for ``seconds``."""
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        _one_check(repeat=1)
        n += 1
    return n


def cost() -> None:
    """What a check costs the worker, and the engine's time per bar (on the loop's thread)
    with the worker idle and with the worker running checks back to back."""
    print(f"one check, 15 features, reference 50,000 rows, recent 10,000: "
          f"{_one_check() * 1e3:.0f} ms in the worker (one core)")
    if not KLINES.exists():
        print(f"engine lag: real data missing: {KLINES}")
        return
    klines = list(PublicDataSource(KLINES))[:20_000]
    cfg = replace_values(Config(), {"batch": {"enabled": False}})
    print(f"\n{'engine per bar':<40} {'bars':>7} {'p50':>9} {'p99':>9} {'max':>9}")
    with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ProcessPoolExecutor(
            1, mp_context=get_context("spawn")) as pool:
        pool.submit(int, 0).result()  # the worker is up before timing
        for label, busy in (("worker idle", False), ("worker running drift checks", True)):
            engine = Engine(cfg, RunStore(open_db(Path(tmp) / f"lag{busy}.db"), mode="bench",
                                          config={}, sources=[]))
            future = pool.submit(_checks_for, 3.0) if busy else None  # longer than the loop
            times = []
            for k in klines:
                start = time.perf_counter_ns()
                engine.on_event(k)
                times.append(time.perf_counter_ns() - start)
            ran = future.result() if future is not None else 0
            arr = np.array(times) / 1e3
            print(f"{label + (f' ({ran} checks)' if busy else ''):<40} {len(arr):>7,} "
                  f"{np.percentile(arr, 50):>6.1f} µs {np.percentile(arr, 99):>6.1f} µs "
                  f"{arr.max() / 1e3:>6.2f} ms", flush=True)


# -- the table ---------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--keep", type=Path, help="keep (and reuse) the replayed days here")
    ap.add_argument("--jobs", type=int, default=2, help="replays at once")
    ap.add_argument("--cost", action="store_true", help="only the cost of a check (~1 min)")
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    logs.configure(level="error")
    if args.one:
        replay_day(int(args.one[0]), args.one[1], Path(args.one[2]))
        return
    cost()
    if args.cost:
        return
    print()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        seeds = list(range(1, args.seeds + 1))
        jobs = [(s, kind, out) for s in seeds for kind in ("stationary", "vol", "concept")]
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(_replay_in_child, jobs))
        report(out, seeds)


def report(out: Path, seeds: list[int]) -> None:
    print(f"{len(seeds)} seeds; stationary {len(seeds) * DAY_BARS:,} bars; switches x2 6 h, "
          f"x1 12 h, x2 18 h; floor {FLOOR}. chance: a volatility feature flagged within "
          f"{WITHIN} bars of the same times on the stationary days\n")
    print(f"{'W':>4} {'factor':>6} {'k':>2} {'false /10k':>10} {'concept /10k':>12}   flagged "
          f"<= {WITHIN} 6/12/18 h  (chance)   event <= {WITHIN}   event <= 2 h")
    for window in WINDOWS:
        calm = [checks(out / f"{s}-stationary.db", window)[1] for s in seeds]
        shifted = [checks(out / f"{s}-vol.db", window) for s in seeds]
        flips = [checks(out / f"{s}-concept.db", window)[1] for s in seeds]
        names = shifted[0][0]
        vol = [names.index(f) for f in VOL_FEATURES if f in names]
        for factor in FACTORS:
            for k in KS:
                per = [flagged(day, sw, vol, factor, k) for _, day, sw in shifted]
                chance = [flagged(day, sw, vol, factor, k)
                          for day, (_, _, sw) in zip(calm, shifted, strict=True)]
                flags = "/".join(str(sum(p[i][0] for p in per)) for i in range(3))
                odds = "/".join(str(sum(p[i][0] for p in chance)) for i in range(3))
                events = "/".join(str(sum(p[i][1] for p in per)) for i in range(3))
                later = "/".join(str(sum(p[i][2] for p in per)) for i in range(3))
                print(f"{window:>4} {factor:>6.1f} {k:>2} {false_events(calm, factor, k):>10.2f} "
                      f"{false_events(flips, factor, k):>12.2f}   {flags:>17}  ({odds:>8})   "
                      f"{events:>12}   {later:>12}", flush=True)
    print(f"\nBound (oracle on the latent log-volatility, <= 1 false event per 10k bars, checks "
          f"every {CHECK_BARS} bars):")
    for window in (60, 120, 200, 300):
        h, p = oracle(window)
        print(f"  W={window:>3}: |mean log-vol| > {h:.2f} flags a x2 switch within {WITHIN} bars "
              f"with probability {p:.2f}; on >= 9 of 10 seeds: {_at_least(9, 10, p):.2f}")


def _at_least(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


if __name__ == "__main__":
    main()
