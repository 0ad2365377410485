"""Online learner vs the constant: ``python bench/online.py [--quick]`` prints a table.

For each stream, the prequential log loss of the engine's online learner
(:func:`~ares_stream.learners.policies.learner_for`: the model, ADWIN and its challengers) next
to the constant's — the prequential label frequency (:func:`~ares_stream.learners.scores.
prequential_rate`) on the same rows, the baseline the engine and the walk-forward report — for
the learner before issue 14 (``OLD``: River's ``StandardScaler | LogisticRegression``, SGD 0.01,
unbounded, unshrunk) and with ``configs/default.toml``'s ``[learner]``, side by side:

- ``walk``: one-minute candles of an i.i.d. Gaussian random walk (4.5 bps a minute, BTCUSDT's
  one-minute volatility in 2025), nothing to learn;
- ``garch``: a GARCH(1,1) walk (alpha 0.08, beta 0.9): the direction is noise, but volatility
  clusters, so whether 10 minutes move more than 20 bps is somewhat predictable;
- ``BTCUSDT``: the 130,708 real one-minute candles of ``../shared/data/klines`` (skipped, naming
  the path, when absent).

Each at a 20-bps label threshold (``[labels]``'s default) and at 0. Features, labels and the
order of predictions and updates are the engine's own: bars → ``feature_set(config)`` →
``LabelQueue(horizon 10)``; per bar the due labels are learned, then the bar is predicted.

Target (issue 14): on noise within 0.005 nats of the constant; on the real candles not worse
than it (within 0.002). The constant looks ahead a little: scoring row *t* it counts the labels
of rows *t - 9 … t - 1*, not yet known when row *t* was predicted (10-bar labels overlap), which
favours it by ~0.02 nats a row over the first thousand rows (~0.001 a row over 20,000) and
nothing in the long run.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ares_stream.config import Config, replace_values
from ares_stream.events import Bar, Kline
from ares_stream.features.bars import bar_from_kline
from ares_stream.features.labels import LabelQueue
from ares_stream.features.pipeline import feature_set
from ares_stream.feed.publicdata import PublicDataSource
from ares_stream.learners.online import OnlineLearner
from ares_stream.learners.policies import learner_for
from ares_stream.learners.scores import log_losses, prequential_rate

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KLINES = DATA / "klines" / "BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz"
OLD = {"lr": 0.01, "intercept_lr": 0.01, "l2": 0.0, "clip": 0.0, "warmup": 0, "shrink": False}
MINUTE_NS = 60_000_000_000
SIGMA = 4.5e-4  # one-minute log-return volatility
CASES = ("walk", "garch", "BTCUSDT")


@dataclass
class Samples:
    """The labelled rows of a stream: features, labels, and labels known before each prediction."""

    xs: list[dict[str, float]]
    ys: list[int]
    known: list[int]  # rows learned before row t is predicted


def walk(n: int, seed: int, garch: bool, sub: int = 6) -> list[Bar]:
    """``n`` one-minute candles of a Gaussian (or GARCH(1,1)) walk, each from ``sub`` steps."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, sub))
    sd = np.full(n, SIGMA)
    if garch:
        alpha, beta, var = 0.08, 0.9, SIGMA**2
        shock = z.sum(axis=1) / math.sqrt(sub)
        for t in range(n):
            sd[t] = math.sqrt(var)
            var = SIGMA**2 * (1 - alpha - beta) + (alpha * shock[t] ** 2 + beta) * var
    path = np.cumsum((z * (sd[:, None] / math.sqrt(sub))).ravel()).reshape(n, sub)
    close = path[:, -1]
    open_ = np.concatenate(([0.0], close[:-1]))
    high, low = np.maximum(path.max(axis=1), open_), np.minimum(path.min(axis=1), open_)
    o, h, lo, c = ((100_000.0 * np.exp(v)).tolist() for v in (open_, high, low, close))
    volume = np.exp(1.8 + rng.standard_normal(n)).tolist()
    return [Bar("SIM", (i + 1) * MINUTE_NS, (i + 1) * MINUTE_NS, i * MINUTE_NS, MINUTE_NS, o[i],
                h[i], lo[i], c[i], volume[i], None, None, (h[i] + lo[i] + c[i]) / 3.0)
            for i in range(n)]  # fmt: skip


def real_bars(limit: int | None) -> list[Bar]:
    """The real one-minute candles as the engine bars them (the first ``limit``)."""
    bars = []
    for k in PublicDataSource(KLINES):
        if not isinstance(k, Kline):
            continue
        bars.append(bar_from_kline(k))
        if limit is not None and len(bars) >= limit:
            break
    return bars


def samples(bars: list[Bar], config: Config) -> Samples:
    """The engine's features and delayed labels of ``bars``, and when each label is known."""
    features = feature_set(config)
    queue = LabelQueue(config.labels.horizon, config.labels.threshold_bps / 1e4)
    xs: list[dict[str, float]] = []
    ys: list[int] = []
    known: list[int] = []
    for bar in bars:
        ys.extend(r.label for r in queue.resolve(bar.close))
        x = features.update(bar)
        if x is not None:
            xs.append(x)
            known.append(len(ys))
        queue.push(x, bar.close, bar.ts_event)
    return Samples(xs[: len(ys)], ys, known[: len(ys)])


def predictions(learner: OnlineLearner, s: Samples) -> np.ndarray:
    """The engine's loop over the rows: learn the labels due, then predict. A measured loop."""
    xs, ys, known = s.xs, s.ys, s.known
    out: list[float] = []
    learned = 0
    for t, x in enumerate(xs):
        while learned < known[t]:
            learner.learn(xs[learned], ys[learned], out[learned])
            learned += 1
        out.append(learner.predict(x))
    return np.array(out)


def configs(threshold_bps: float) -> tuple[Config, Config]:
    """The old learner's config and the default one, at this label threshold."""
    new = replace_values(Config(), {"labels": {"threshold_bps": threshold_bps}})
    return replace_values(new, {"learner": OLD}), new


def stream(case: str, n: int, seed: int) -> list[Bar] | None:
    """The bars of one case (``None``: the real data is missing)."""
    if case == "BTCUSDT":
        return real_bars(n) if KLINES.exists() else None
    return walk(n, seed, garch=case == "garch")


def run_case(job: tuple[str, float, int, int]) -> tuple[str, float, list[float] | None]:
    """(case, threshold, [rows, label rate, constant, old, new]); ``None``: no real data."""
    case, threshold, n, seed = job
    bars = stream(case, n, seed)
    if bars is None:
        return case, threshold, None
    old, new = configs(threshold)
    s = samples(bars, new)
    y = np.array(s.ys, dtype=np.float64)
    constant = float(log_losses(y, prequential_rate(y)).mean())
    losses = [float(log_losses(y, predictions(learner_for(c), s)).mean()) for c in (old, new)]
    return case, threshold, [float(y.size), float(y.mean()), constant, *losses]


def cost_ns(s: Samples, config: Config, rows: int = 20_000, repeat: int = 3) -> float:
    """Best-of-``repeat`` nanoseconds per row of the learner's predict + learn (+ ADWIN, scores)."""
    part = Samples(s.xs[:rows], s.ys[:rows], [min(k, rows) for k in s.known[:rows]])
    best = math.inf
    for _ in range(repeat):
        learner = learner_for(config)
        start = time.perf_counter()
        predictions(learner, part)
        best = min(best, time.perf_counter() - start)
    return best / len(part.xs) * 1e9


def table(results: list[tuple[str, float, list[float] | None]]) -> list[str]:
    """The printed rows: log losses in nats, differences to the constant in millinats."""
    head = (f"{'stream':<9} {'label':>6} {'rows':>8} {'rate':>6} {'constant':>9} "
            f"{'old':>8} {'old-c':>7} {'new':>8} {'new-c':>7}")
    lines = [head, "-" * len(head)]
    for case, threshold, r in results:
        if r is None:
            lines.append(f"{case:<9} {threshold:>4.0f}bp  skipped: real data missing: {KLINES}")
            continue
        rows, rate, constant, old, new = r
        lines.append(f"{case:<9} {threshold:>4.0f}bp {rows:>8,.0f} {rate:>6.3f} {constant:>9.5f} "
                     f"{old:>8.5f} {1e3 * (old - constant):>+7.2f} {new:>8.5f} "
                     f"{1e3 * (new - constant):>+7.2f}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=200_000, help="candles per simulated walk")
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulated walks")
    parser.add_argument("--quick", action="store_true", help="50,000 candles per stream")
    parser.add_argument("--jobs", type=int, default=min(2, multiprocessing.cpu_count()))
    args = parser.parse_args(argv)
    n = 50_000 if args.quick else args.bars
    jobs = [(case, t, None if case == "BTCUSDT" and not args.quick else n, args.seed)
            for case in CASES for t in (20.0, 0.0)]
    start = time.perf_counter()
    with multiprocessing.Pool(args.jobs) as pool:
        results = pool.map(run_case, jobs)  # type: ignore[arg-type]
    print("\n".join(table(results)))
    print(f"\nprequential log loss, nats (old-c, new-c: millinats vs the constant); label 10 bars "
          f"ahead; old = River's pipeline, new = configs/default.toml [learner]; "
          f"{time.perf_counter() - start:.0f} s")
    s = samples(walk(22_000, args.seed, garch=False), Config())
    old, new = configs(20.0)
    print(f"learner predict + learn per row (ADWIN and scores included): old "
          f"{cost_ns(s, old):,.0f} ns, new {cost_ns(s, new):,.0f} ns")


if __name__ == "__main__":
    main()
