"""Which features does the selection keep on the real candles? Permutation importance on the
walk-forward folds of the default config (:mod:`ares_stream.validation.selection`).

    PYTHONPATH=. python bench/selection.py [--rows 100000] [--repeats 3]

The newest ``--rows`` one-minute BTCUSDT candles become samples as in ``bench/features.py`` (the
default feature set, the default label); the validation's own folds (``jobs.folds_of``) and refit
recipe give each feature's importance and interval; then the fold log losses of the full-schema
recipe, of ``xgb_selected`` (prequential: features chosen from earlier folds only) and of the
constant prior.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from ares_stream.batch import jobs
from ares_stream.config import Config
from ares_stream.learners.scores import log_loss
from ares_stream.validation import selection as sel
from bench.features import candle_rows, window_of


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--confidence", type=float, default=0.9)
    args = ap.parse_args()
    cfg = Config()
    w = window_of(candle_rows(cfg), cfg, args.rows)
    spec, settings = jobs.spec_of(cfg), jobs.settings_of(cfg)
    folds = jobs.folds_of(len(w.y), spec)

    def recipe(names: tuple[str, ...]) -> Any:  # the refit recipe of a schema
        return jobs.refit_recipe("xgb", names, settings).fit

    started = time.perf_counter()
    ev = sel.gather(w.X, w.y, folds, recipe(w.features), repeats=args.repeats,
                    seed=cfg.learner.seed, gap=spec.horizon + spec.embargo)
    s = sel.select(w.features, ev, confidence=args.confidence)
    p_sel = sel.selected_predictions(w.X, w.y, w.features, folds, ev, recipe,
                                     confidence=args.confidence)
    print(f"{len(w.y):,} samples, {len(folds)} folds x {args.repeats} repeats, "
          f"{time.perf_counter() - started:.0f} s; kept {list(s.kept)}")
    print(f"{'feature':<12} {'mean':>9} {'low':>9} {'high':>9} kept  per fold")
    for e in sorted(s.evidence, key=lambda e: -e.mean):
        folds_txt = " ".join(f"{v:+.5f}" for v in e.per_fold)
        print(f"{e.feature:<12} {e.mean:>+9.5f} {e.low:>+9.5f} {e.high:>+9.5f} "
              f"{'yes' if e.kept else 'no ':<4}  {folds_txt}")
    print(f"{'fold':>4} {'prior':>8} {'all':>8} {'selected':>8}")
    for f, e in zip(folds, ev, strict=True):
        y = w.y[f.test]
        prior = float(np.clip(w.y[f.train].mean(), 0.01, 0.99))
        print(f"{f.index:>4} {log_loss(y, np.full(len(y), prior)):>8.4f} "
              f"{log_loss(y, e.p_full):>8.4f} {log_loss(y, p_sel[f.test]):>8.4f}")


if __name__ == "__main__":
    main()
