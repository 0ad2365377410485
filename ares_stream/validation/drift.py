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

__all__ = ["FeatureDrift", "compare", "ks", "psi"]

BINS = 10
EPS = 1e-4  # floor of a bin's share: an empty bin costs a large but finite PSI term
MIN_ROWS = 50


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's comparison."""

    feature: str
    psi: float  # NaN: not measured
    ks: float
    reference_rows: int  # finite values compared on each side
    recent_rows: int
    drifted: bool  # psi above the threshold


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[np.isfinite(x)]


def psi(reference: np.ndarray, recent: np.ndarray, *, bins: int = BINS, eps: float = EPS) -> float:
    """The population stability index of ``recent`` against ``reference`` (quantile bins of the
    reference, shares floored at ``eps``); NaN when either side holds no finite value."""
    ref, rec = _finite(reference), _finite(recent)
    if not len(ref) or not len(rec):
        return math.nan
    edges = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    p = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
    q = np.bincount(np.searchsorted(edges, rec, side="right"), minlength=len(edges) + 1)
    p = np.maximum(p / len(ref), eps)
    q = np.maximum(q / len(rec), eps)
    return float(np.sum((q - p) * np.log(q / p)))


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
            psi_threshold: float, min_rows: int = MIN_ROWS) -> list[FeatureDrift]:
    """Each column of ``recent`` against the same column of ``reference`` (rows × features)."""
    out = []
    for j, name in enumerate(features):
        ref, rec = _finite(reference[:, j]), _finite(recent[:, j])
        if len(ref) < min_rows or len(rec) < min_rows:
            out.append(FeatureDrift(name, math.nan, math.nan, len(ref), len(rec), False))
            continue
        p = psi(ref, rec)
        out.append(FeatureDrift(name, p, ks(ref, rec), len(ref), len(rec), p > psi_threshold))
    return out
