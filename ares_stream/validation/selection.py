"""Feature selection by permutation importance on the purged walk-forward folds.

For each fold the refit recipe (``fit(X, y) -> predict``) is fitted on the fold's training rows;
then, on the fold's **test rows only**, each feature's column is shuffled among those rows
(``repeats`` times, seeded per fold) and the increase of the log loss over the unshuffled
predictions is that feature's importance on that fold. The last ``gap`` rows of a test block
(``horizon + embargo``) are not scored: their label windows reach into the next block, so the
evidence of fold *j* never shares a label with the test rows of a later fold.

**The rule.** A feature *helps* when the lower end of the central ``confidence`` interval of its
mean importance is above 0: a Student *t* interval over the folds' means (each fold's mean over
its repeats), ``mean ± t(k − 1) · sd / √k`` for *k* folds. Folds, not fold × repeat values, are
the units: the repeats of one fold share one model and one test block, so treating them as
independent would understate the spread; and with the handful of folds a walk-forward has, a
percentile bootstrap over folds is too narrow (with 4 folds, 3 positive and 1 small negative
leaves its 5 % quantile above 0), so the *t* interval it is. With fewer than 2 folds of evidence
nothing is kept. Expect about ``(1 − confidence) / 2`` of pure-noise features to pass by chance.

**Selection is part of the recipe.** Picking features on the very folds a candidate is scored on
would flatter it. :func:`selected_predictions` therefore scores the ``xgb_selected`` recipe
prequentially: on fold *k* it keeps the features chosen from the evidence of the folds before *k*
only (all of it before fold *k*'s training cut), and keeps every feature while fewer than
``min_folds`` folds of evidence exist. The whole-window model uses the evidence of every fold.

>>> from ares_stream.validation.splits import walk_forward
>>> rng = np.random.default_rng(0)
>>> X = rng.standard_normal((1200, 3)); y = (X[:, 0] + 0.5 * rng.standard_normal(1200) > 0)
>>> from sklearn.linear_model import LogisticRegression
>>> def fit(Xt, yt):
...     m = LogisticRegression().fit(Xt, yt)
...     return lambda Xs: m.predict_proba(Xs)[:, 1]
>>> folds = walk_forward(1200, n_folds=4, horizon=1)
>>> s = select(("f0", "f1", "f2"), gather(X, y, folds, fit, repeats=3))
>>> s.kept, s.dropped
(('f0',), ('f1', 'f2'))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from ares_stream.learners.scores import log_loss
from ares_stream.validation.splits import Fold

__all__ = ["FeatureEvidence", "FoldEvidence", "Selection", "gather", "select",
           "selected_predictions", "t_quantile"]

Recipe = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]


@dataclass(frozen=True)
class FoldEvidence:
    """One fold's permutation evidence: the log-loss increase per repeat and feature."""

    fold: int  # Fold.index
    test: np.ndarray  # the fold's test rows
    p_full: np.ndarray  # the recipe's predictions on every test row, all features
    deltas: np.ndarray  # (repeats, features): permuted minus base log loss on the scored rows


@dataclass(frozen=True)
class FeatureEvidence:
    """One feature's verdict: mean importance over folds × repeats, its interval, per fold."""

    feature: str
    mean: float
    low: float
    high: float
    kept: bool
    per_fold: tuple[float, ...]  # mean over the repeats of each fold, oldest fold first


@dataclass(frozen=True)
class Selection:
    """The kept and dropped features of a schema and the evidence behind each."""

    features: tuple[str, ...]  # the schema selected from, in order
    evidence: tuple[FeatureEvidence, ...]  # one per feature, in schema order
    folds: tuple[int, ...]  # Fold.index of the folds the evidence came from
    repeats: int
    confidence: float

    @property
    def kept(self) -> tuple[str, ...]:
        """The features that help, in schema order."""
        return tuple(e.feature for e in self.evidence if e.kept)

    @property
    def dropped(self) -> tuple[str, ...]:
        """The features that never helped, in schema order."""
        return tuple(e.feature for e in self.evidence if not e.kept)


def gather(X: np.ndarray, y: np.ndarray, folds: Sequence[Fold], fit: Recipe, *,
           repeats: int = 3, seed: int = 0, gap: int = 0) -> list[FoldEvidence]:
    """Per fold: fit on its training rows, permute each feature on its test rows (module doc)."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return [_fold(X, y, f, fit, repeats, seed, gap) for f in folds]


def _fold(X: np.ndarray, y: np.ndarray, fold: Fold, fit: Recipe, repeats: int, seed: int,
          gap: int) -> FoldEvidence:
    predict = fit(X[fold.train], y[fold.train])
    X_te = X[fold.test]
    p_full = np.asarray(predict(X_te), dtype=np.float64)
    scored = max(0, len(fold.test) - gap)
    deltas = np.full((repeats, X.shape[1]), np.nan)
    if scored >= 2:
        Xs, ys = X_te[:scored], y[fold.test[:scored]]
        base = log_loss(ys, p_full[:scored])
        rng = np.random.default_rng([seed, fold.index])
        for r in range(repeats):
            for j in range(X.shape[1]):
                Xp = Xs.copy()
                Xp[:, j] = Xs[rng.permutation(scored), j]
                deltas[r, j] = log_loss(ys, np.asarray(predict(Xp), dtype=np.float64)) - base
    return FoldEvidence(fold.index, fold.test, p_full, deltas)


def select(features: Sequence[str], evidence: Sequence[FoldEvidence], *,
           confidence: float = 0.9) -> Selection:
    """Keep the features whose interval (over folds) lies above 0 (module doc)."""
    names = tuple(features)
    usable = [e for e in evidence if np.isfinite(e.deltas).all()]
    per_fold = (np.array([e.deltas.mean(axis=0) for e in usable]) if usable
                else np.empty((0, len(names))))
    low, high = _interval(per_fold, confidence)
    mean = per_fold.mean(axis=0) if len(usable) else np.full(len(names), np.nan)
    rows = tuple(FeatureEvidence(n, float(mean[j]), float(low[j]), float(high[j]),
                                 bool(low[j] > 0.0), tuple(float(v) for v in per_fold[:, j]))
                 for j, n in enumerate(names))
    repeats = usable[0].deltas.shape[0] if usable else 0
    return Selection(names, rows, tuple(e.fold for e in usable), repeats, confidence)


def _interval(per_fold: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The central ``confidence`` Student *t* interval of the mean over the folds (rows of
    ``per_fold``); NaN with fewer than 2 folds."""
    k, n = per_fold.shape
    if k < 2:
        return np.full(n, np.nan), np.full(n, np.nan)
    half = t_quantile((1.0 + confidence) / 2.0, k - 1) * per_fold.std(axis=0, ddof=1)
    mean = per_fold.mean(axis=0)
    return mean - half / math.sqrt(k), mean + half / math.sqrt(k)


def t_quantile(q: float, df: int) -> float:
    """Student *t* quantile: exact for 1 and 2 degrees of freedom, else the Cornish-Fisher
    expansion in ``1/df`` about the normal quantile (Abramowitz & Stegun 26.7.5), within 1 % of
    the exact value for ``q <= 0.995`` (no scipy in the package).

    >>> round(t_quantile(0.95, 4), 2), round(t_quantile(0.975, 30), 2)
    (2.13, 2.04)
    """
    if df == 1:
        return math.tan(math.pi * (q - 0.5))
    if df == 2:
        return (2 * q - 1) / math.sqrt(2 * q * (1 - q))
    z = NormalDist().inv_cdf(q)
    g = ((z**3 + z) / 4, (5 * z**5 + 16 * z**3 + 3 * z) / 96,
         (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
         (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160)
    return z + sum(gi / df ** (i + 1) for i, gi in enumerate(g))


def selected_predictions(X: np.ndarray, y: np.ndarray, features: Sequence[str],
                         folds: Sequence[Fold], evidence: Sequence[FoldEvidence],
                         fit_on: Callable[[tuple[str, ...]], Recipe], *,
                         confidence: float = 0.9, min_folds: int = 2) -> np.ndarray:
    """The selected recipe's out-of-sample predictions, per row (NaN outside the test rows).

    Fold *k* keeps the features selected from the evidence of the earlier folds (every feature
    while fewer than ``min_folds`` of them exist, or when none would be kept) and refits
    ``fit_on(kept)`` — a recipe taking the kept columns only — on its training rows.
    """
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    names = tuple(features)
    p = np.full(len(y), np.nan)
    for k, (fold, ev) in enumerate(zip(folds, evidence, strict=True)):
        kept = names
        if k >= min_folds:
            kept = select(names, evidence[:k], confidence=confidence).kept or names
        if kept == names:
            p[fold.test] = ev.p_full
            continue
        cols = np.array([names.index(f) for f in kept], dtype=np.int64)
        predict = fit_on(kept)(X[np.ix_(fold.train, cols)], y[fold.train])
        p[fold.test] = predict(X[np.ix_(fold.test, cols)])
    return p
