"""Feature drift: has a feature's recent distribution moved away from the one a model was fit on?

Two statistics per feature, both comparing a *reference* sample (the champion's training rows) with
a *recent* one (the newest buffered rows):

- **PSI**, the population stability index: the reference's quantiles cut ``bins`` bins (ties
  merged), each side's share of rows per bin is floored at ``eps``, and
  ``PSI = sum((q - p) * ln(q / p))``. The usual reading: < 0.1 stable, 0.1–0.2 a shift to watch,
  > 0.2 a shift (the threshold in ``[drift]`` was measured: docs/drift.md).
- **KS**, the two-sample Kolmogorov–Smirnov statistic: the largest gap between the two empirical
  CDFs (``scipy.stats.ks_2samp(...).statistic``, without scipy).

NaNs (a feature not yet warm) are left out of both samples; a feature with fewer than
``min_rows`` finite values on either side is not measured (NaN, never drifted).

**When is a PSI large?** PSI is never 0 between two finite samples: under no change its expected
value is about ``(bins - 1) * (1/n + 1/m)``, and far more for autocorrelated rows (bars of a
volatility that wanders, overlapping-window features) whose effective sample size is a fraction of
``n``; a feature that follows the price level (``spread_bps`` of a fixed tick) never returns to its
reference at all. So a feature drifts when its PSI is above **both** the fixed floor
``psi_threshold`` and its own null: the largest PSI of any ``len(recent)`` consecutive rows of the
reference against the rest of the reference (:func:`psi_null`, windows every ``len(recent) // 5``
rows), times ``null_factor``. The recent window must look less like the training data than any
stretch of the training data itself. This adapts per feature to its autocorrelation and its own
wander, with no list of features to exclude; it needs a reference of at least
``reference_windows`` recent windows, else the feature is not judged (``threshold`` NaN, never
drifted). Measured on the simulator: docs/drift.md.

>>> rng = np.random.default_rng(0)
>>> a, b = rng.normal(size=5_000), rng.normal(size=5_000)
>>> round(psi(a, b), 3) < 0.01, round(psi(a, b + 1.0), 1)
(True, 1.0)
>>> round(ks(a, b + 1.0), 2)
0.39
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["FeatureDrift", "compare", "ks", "psi", "psi_null"]

BINS = 10
EPS = 1e-4  # floor of a bin's share: an empty bin costs a large but finite PSI term
MIN_ROWS = 50
REFERENCE_WINDOWS = 4  # a reference shorter than this many recent windows is not judged
NULL_FACTOR = 1.5  # the default of drift.psi_null_factor (docs/drift.md)


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's comparison."""

    feature: str
    psi: float  # NaN: not measured
    ks: float
    reference_rows: int  # finite values compared on each side
    recent_rows: int
    drifted: bool  # psi above the threshold
    threshold: float = math.nan  # max(psi_threshold, null_factor x null max); NaN: not judged


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[np.isfinite(x)]


def psi(reference: np.ndarray, recent: np.ndarray, *, bins: int = BINS, eps: float = EPS) -> float:
    """The population stability index of ``recent`` against ``reference`` (quantile bins of the
    reference, shares floored at ``eps``); NaN when either side holds no finite value."""
    ref, rec = _finite(reference), _finite(recent)
    if not len(ref) or not len(rec):
        return math.nan
    edges = _edges(ref, bins)
    p = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
    q = np.bincount(np.searchsorted(edges, rec, side="right"), minlength=len(edges) + 1)
    p = np.maximum(p / len(ref), eps)
    q = np.maximum(q / len(rec), eps)
    return float(np.sum((q - p) * np.log(q / p)))


def _edges(ref: np.ndarray, bins: int) -> np.ndarray:
    return np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1]))


def psi_null(reference: np.ndarray, window: int, *, stride: int | None = None, bins: int = BINS,
             eps: float = EPS) -> np.ndarray:
    """The PSI of every ``window`` consecutive finite rows of ``reference`` (starting every
    ``stride`` rows, default ``window // 5``) against the rest of the reference, on the
    reference's bins: what PSI a window of that length shows with no change beyond the
    reference's own. Empty when the reference holds fewer than ``2 * window`` finite rows.

    >>> x = np.random.default_rng(0).normal(size=2_000)
    >>> n = psi_null(x, 500); len(n), bool(n.max() < 0.1)
    (16, True)
    """
    ref = _finite(reference)
    if window < 1 or len(ref) < 2 * window:
        return np.empty(0)
    edges = _edges(ref, bins)
    k = len(edges) + 1
    idx = np.searchsorted(edges, ref, side="right")
    cum = np.zeros((len(ref) + 1, k))
    np.add.at(cum, (np.arange(1, len(ref) + 1), idx), 1.0)
    cum = np.cumsum(cum, axis=0)
    starts = np.arange(0, len(ref) - window + 1, max(1, stride or window // 5))
    inside = cum[starts + window] - cum[starts]
    q = np.maximum(inside / window, eps)
    p = np.maximum((cum[-1] - inside) / (len(ref) - window), eps)
    out: np.ndarray = np.sum((q - p) * np.log(q / p), axis=1)
    return out


def ks(reference: np.ndarray, recent: np.ndarray) -> float:
    """The two-sample Kolmogorov–Smirnov statistic (the largest gap between the empirical CDFs);
    NaN when either side holds no finite value."""
    a, b = np.sort(_finite(reference)), np.sort(_finite(recent))
    if not len(a) or not len(b):
        return math.nan
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / len(a)
    cdf_b = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def compare(reference: np.ndarray, recent: np.ndarray, features: Sequence[str], *,
            psi_threshold: float, null_factor: float = NULL_FACTOR,
            reference_windows: int = REFERENCE_WINDOWS,
            min_rows: int = MIN_ROWS) -> list[FeatureDrift]:
    """Each column of ``recent`` against the same column of ``reference`` (rows × features, the
    reference in time order): drifted when the PSI is above ``psi_threshold`` and above
    ``null_factor`` times the largest PSI of the reference's own windows of ``len(recent)`` rows
    (:func:`psi_null`); not judged when the reference holds fewer than ``reference_windows``
    such windows."""
    out = []
    for j, name in enumerate(features):
        ref, rec = _finite(reference[:, j]), _finite(recent[:, j])
        if len(ref) < min_rows or len(rec) < min_rows:
            out.append(FeatureDrift(name, math.nan, math.nan, len(ref), len(rec), False))
            continue
        p = psi(ref, rec)
        null = psi_null(ref, len(rec)) if len(ref) >= reference_windows * len(rec) else None
        limit = (max(psi_threshold, null_factor * float(null.max()))
                 if null is not None and len(null) else math.nan)
        out.append(FeatureDrift(name, p, ks(ref, rec), len(ref), len(rec), p > limit, limit))
    return out
