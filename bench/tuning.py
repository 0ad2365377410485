"""Does tuning help, and does the deflated Sharpe stop the search from fooling the gate?

    PYTHONPATH=. python bench/tuning.py                  # ~5 min on 2 cores
    PYTHONPATH=. python bench/tuning.py --seeds 3 --trials 10 --noise-trials 30   # quick

Samples are built directly (as the tests' ``_window``): three standard normal features, per-bar
log returns ``signal x f0(previous bar) + 0.002 noise``, the label over ``H`` bars at 0 bps,
the broker's rule with 1 bp fees. Every score is the daemon's own purged walk-forward
(:func:`ares_stream.batch.jobs.validate` / :mod:`ares_stream.batch.tuning`).

- **signal** (``--seeds`` seeds, weak planted signal): the search runs on one window; tuned and
  default parameters are then scored on a *fresh* window of the same process (out of the
  search's sample), per seed; the table gives the mean log-loss difference and its paired
  bootstrap CI over seeds, and how often the tuned candidate is promoted by the gate
  (log loss + edge + deflated Sharpe) on the search window;
- **noise** (random-walk candles, no signal): ``--noise-trials`` trials per seed; promotions of
  the tuned candidate against the champion (the prior here) with and without the deflation,
  and the mean deflated Sharpe vs the undeflated PSR against 0.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ares_stream.batch import jobs, tuning
from ares_stream.config import Config, replace_values
from ares_stream.validation import promotion as gate
from ares_stream.validation import walkforward

H = 5
MIN = 60 * 10**9


def window(n: int, seed: int, signal: float) -> jobs.Window:
    """Per-bar log returns driven by f0 of the bar before; a label over H bars at 0 bps."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + H, 3))
    r = signal * X[:, 0] + 0.002 * rng.standard_normal(n + H)
    close = 100.0 * np.exp(np.concatenate(([0.0], np.cumsum(r[:-1]))))
    fwd = np.log(close[H:] / close[:-H])
    return jobs.Window(np.arange(n) * MIN, X[:n], (fwd[:n] > 0).astype(np.int64), fwd[:n],
                       ("f0", "f1", "f2"), close[:n])


def sim_windows(seed: int, seconds: int = 86_400) -> tuple[jobs.Window, jobs.Window, Config]:
    """A simulated day (one concept, demo config, 10 s bars) replayed through the engine: its
    first half is the search's window, its second half the fresh one."""
    import sys
    import tempfile
    from pathlib import Path

    from ares_stream.config import load_config
    from ares_stream.sim.simulator import write_recording

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "bench"))
    import features as fb  # bench/features.py: the engine's vectors of every bar

    cfg = load_config(root / "configs" / "demo.toml")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "day.gz"
        write_recording(path, seconds=seconds, seed=seed, concept=((0.0, 0.8),))
        w = fb.window_of(fb.engine_rows(fb.read_frames([path]), cfg), cfg)
    half = len(w.y) // 2
    cut = [jobs.Window(w.ts[s], w.X[s], w.y[s], w.fwd[s], w.features, w.close[s])  # type: ignore[index]
           for s in (slice(0, half), slice(half, None))]
    return cut[0], cut[1], cfg


def part_sim(seeds: int, trials: int) -> None:
    """Tuned vs default on the simulator: search on a day's first half, score on its second."""
    diffs, promoted, lines = [], 0, []
    for s in range(seeds):
        first, second, cfg = sim_windows(s)
        spec, base = jobs.spec_of(cfg), jobs.settings_of(cfg)
        how = tuning.SearchSpec(trials, None, s)
        out = tuning.search(first, int(first.ts[-1]) + 10**10, spec, base, how)
        tuned_out = out.tuned()
        assert tuned_out is not None
        v = jobs.validate(first, spec, base, [], [], tuned_out)
        tuned, default = wf_loss(second, spec, tuned_out.settings), wf_loss(second, spec, base)
        diffs.append(default - tuned)
        ok = deflated(v, spec).promote
        promoted += ok
        dsr = v.deflated.dsr if v.deflated else float("nan")
        lines.append(f"{s:>4} {default:>9.4f} {tuned:>9.4f} {default - tuned:>+9.4f} "
                     f"{out.pruned:>6} {dsr:>6.3f} {'yes' if ok else 'no':>8}")
        print(lines[-1], flush=True)
    low, high = boot(np.array(diffs))
    print(f"simulator: mean gain (default - tuned) {np.mean(diffs):+.4f}, 95% paired bootstrap "
          f"CI [{low:+.4f}, {high:+.4f}]; tuned promoted {promoted}/{seeds}")


def config() -> Config:
    return replace_values(Config(), {"labels": {"horizon": H, "threshold_bps": 0.0},
                                     "batch": {"folds": 4, "bootstrap": 1000},
                                     "trading": {"fee_bps": 1.0, "candle_slippage_bps": 0.0}})


def wf_loss(w: jobs.Window, spec: jobs.ValidationSpec, settings: object) -> float:
    cand = jobs.refit_recipe("x", w.features, settings)  # type: ignore[arg-type]
    res = walkforward.run_walk_forward(w.X, w.y, w.fwd, jobs.folds_of(len(w.y), spec), [cand],
                                       horizon=H, rule=spec.rule, close=w.close)
    return float(np.mean([r.log_loss for r in res]))


def searched(w: jobs.Window, spec: jobs.ValidationSpec, cfg: Config, trials: int,
             seed: int) -> tuple[tuning.SearchOutcome, jobs.ValidationOutcome]:
    how = tuning.SearchSpec(trials, None, seed)
    out = tuning.search(w, int(w.ts[-1]) + H * MIN, spec, jobs.settings_of(cfg), how)
    tuned = out.tuned()
    assert tuned is not None
    return out, jobs.validate(w, spec, jobs.settings_of(cfg), [], [], tuned)


def undeflated(v: jobs.ValidationOutcome, spec: jobs.ValidationSpec) -> gate.Decision:
    """The gate's verdict on xgb_tuned vs the champion policy, blind to the trial count."""
    return gate.decide("xgb_tuned", walkforward.fold_losses(v.results, "xgb_tuned"), "champion",
                       walkforward.fold_losses(v.results, "champion"), margin=spec.margin,
                       n_boot=spec.n_boot, seed=spec.seed,
                       challenger_pnls=walkforward.fold_pnls(v.results, "xgb_tuned"),
                       confidence=spec.confidence)


def deflated(v: jobs.ValidationOutcome, spec: jobs.ValidationSpec) -> gate.Decision:
    """The same verdict with the deflated Sharpe required (what the daemon does)."""
    return gate.decide("xgb_tuned", walkforward.fold_losses(v.results, "xgb_tuned"), "champion",
                       walkforward.fold_losses(v.results, "champion"), margin=spec.margin,
                       n_boot=spec.n_boot, seed=spec.seed,
                       challenger_pnls=walkforward.fold_pnls(v.results, "xgb_tuned"),
                       confidence=spec.confidence, deflated=v.deflated, min_dsr=spec.min_dsr)


def part_signal(seeds: int, trials: int, rows: int, signal: float) -> None:
    cfg = config()
    spec, base = jobs.spec_of(cfg), jobs.settings_of(cfg)
    diffs, promoted, lines = [], 0, []
    for s in range(seeds):
        out, v = searched(window(rows, s, signal), spec, cfg, trials, s)
        fresh = window(rows, 10_000 + s, signal)
        tuned, default = wf_loss(fresh, spec, out.tuned().settings), wf_loss(fresh, spec, base)
        diffs.append(default - tuned)
        ok = deflated(v, spec).promote
        promoted += ok
        dsr = v.deflated.dsr if v.deflated else float("nan")
        lines.append(f"{s:>4} {default:>9.4f} {tuned:>9.4f} {default - tuned:>+9.4f} "
                     f"{out.pruned:>6} {dsr:>6.3f} {'yes' if ok else 'no':>8}")
    print(f"\nsignal {signal}: {seeds} seeds, {trials} trials, {rows} rows; walk-forward log loss "
          "on a fresh window of the same process")
    print(f"{'seed':>4} {'default':>9} {'tuned':>9} {'gain':>9} {'pruned':>6} {'DSR':>6} "
          f"{'promoted':>8}")
    print("\n".join(lines))
    low, high = boot(np.array(diffs))
    print(f"mean gain (default - tuned) {np.mean(diffs):+.4f}, 95% paired bootstrap CI "
          f"[{low:+.4f}, {high:+.4f}]; tuned promoted {promoted}/{seeds}")


def part_noise(seeds: int, trials: int, rows: int) -> None:
    cfg = config()
    spec = jobs.spec_of(cfg)
    with_d = without = 0
    lines = []
    for s in range(seeds):
        out, v = searched(window(rows, 500 + s, 0.0), spec, cfg, trials, s)
        a, b = deflated(v, spec), undeflated(v, spec)
        with_d += a.promote
        without += b.promote
        d = v.deflated
        psr0 = gate.deflated_sharpe(_returns(v), [0.0], 1).dsr
        lines.append(f"{s:>4} {len(out.trials):>6} {out.pruned:>6} {d.sharpe:>8.4f} "
                     f"{d.sr0:>7.4f} {psr0:>6.3f} {d.dsr:>6.3f} {b.promote!s:>9} "
                     f"{a.promote!s:>9}")
    print(f"\nnoise: {seeds} seeds x {trials} trials, {rows} rows (random walk)")
    print(f"{'seed':>4} {'trials':>6} {'pruned':>6} {'SR/bar':>8} {'SR0':>7} {'PSR0':>6} "
          f"{'DSR':>6} {'undefl.':>9} {'deflated':>9}")
    print("\n".join(lines))
    print(f"promotions of xgb_tuned: without the deflation {without}/{seeds}, with it "
          f"{with_d}/{seeds}")


def _returns(v: jobs.ValidationOutcome) -> np.ndarray:
    parts = [r.returns for r in v.results if r.candidate == "xgb_tuned" and r.returns is not None]
    return np.concatenate(parts) if parts else np.empty(0)


def boot(d: np.ndarray, n: int = 5000) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    means = d[rng.integers(0, d.size, (n, d.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--rows", type=int, default=3000)
    p.add_argument("--signal", type=float, default=0.0015)
    p.add_argument("--noise-seeds", type=int, default=5)
    p.add_argument("--noise-trials", type=int, default=100)
    p.add_argument("--source", choices=("synthetic", "sim"), default="synthetic",
                   help="sim: the simulator's days (demo config) instead of synthetic samples")
    a = p.parse_args()
    started = time.perf_counter()
    if a.source == "sim":
        from ares_stream import logs

        logs.configure(level="error")
        print(f"simulator: {a.seeds} seeds, {a.trials} trials; search on a day's first half, "
              "walk-forward log loss on its second half")
        print(f"{'seed':>4} {'default':>9} {'tuned':>9} {'gain':>9} {'pruned':>6} {'DSR':>6} "
              f"{'promoted':>8}", flush=True)
        part_sim(a.seeds, a.trials)
    else:
        part_signal(a.seeds, a.trials, a.rows, a.signal)
    part_noise(a.noise_seeds, a.noise_trials, a.rows)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
