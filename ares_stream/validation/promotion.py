"""The promotion gate: a challenger replaces the champion only on walk-forward evidence.

Inputs are paired per-fold log losses (the same folds, in the same order; a fold where either
loss is NaN is dropped). With ``d_k = incumbent_k − challenger_k`` (positive = the challenger is
better) the challenger is promoted only if both hold:

1. **margin**: ``mean(d) >= margin × mean(incumbent)`` — ``margin`` is relative (0.005 = the
   challenger must cut the log loss by at least 0.5%);
2. **evidence**: the paired bootstrap over folds (resample the folds with replacement ``n_boot``
   times, take the mean of ``d``) has a ``1 − alpha`` percentile interval with ``ci_low > 0``.
   The generator is seeded, so the same losses always give the same decision.

Fewer than ``min_folds`` usable folds is never enough evidence.

3. **edge after costs** (when the challenger's per-fold PnLs are given): the challenger must make
   money trading the broker's rule after fees and slippage — :func:`edge`: the ``confidence``
   bootstrap interval of its mean fold PnL lies above 0. A model that forecasts better but loses
   money after costs is not promoted.

:func:`edge` is also what lets a signal reach the broker at all (``trading.require_edge``).

4. **deflated Sharpe** (when ``deflated`` is given: the challenger came out of a hyperparameter
   search of N trials): :func:`deflated_sharpe` — the probability that its out-of-sample Sharpe
   beats the best Sharpe N trials of pure noise would show — must reach ``min_dsr``. The best of
   many tries looks good by luck alone; this charges the candidate for every configuration tried.

>>> d = decide("xgb", [0.60, 0.61, 0.59, 0.60], "champion", [0.65, 0.66, 0.64, 0.66])
>>> d.promote, round(d.improvement, 4), d.ci_low > 0
(True, 0.0525, True)
>>> decide("xgb", [0.6, 0.6], "champion", [0.7, 0.7]).reason
'not promoted: 2 usable folds, fewer than the 3 required'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = ["Decision", "Deflated", "Edge", "decide", "deflated_sharpe", "edge",
           "expected_max_sharpe", "pick_challenger"]


@dataclass(frozen=True)
class Decision:
    """The gate's verdict and the numbers behind it (one row of the ``validations`` table)."""

    promote: bool
    challenger: str
    incumbent: str
    folds: int  # usable (paired, non-NaN) folds
    challenger_loss: float  # mean log loss over the usable folds
    incumbent_loss: float
    improvement: float  # mean per-fold (incumbent − challenger)
    ci_low: float  # paired bootstrap percentile interval of the improvement
    ci_high: float
    margin: float  # the relative margin required
    reason: str


def decide(
    challenger: str,
    challenger_losses: Sequence[float],
    incumbent: str,
    incumbent_losses: Sequence[float],
    *,
    margin: float = 0.005,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    min_folds: int = 3,
    challenger_pnls: Sequence[float] | None = None,
    confidence: float = 0.9,
    deflated: Deflated | None = None,
    min_dsr: float = 0.95,
) -> Decision:
    """Promote ``challenger`` over ``incumbent`` or not (see the module docstring)."""
    c, i = np.asarray(challenger_losses, float), np.asarray(incumbent_losses, float)
    if c.shape != i.shape:
        raise ValueError(f"unpaired losses: {c.size} challenger folds, {i.size} incumbent folds")
    ok = ~(np.isnan(c) | np.isnan(i))
    c, i = c[ok], i[ok]
    k = int(c.size)

    def verdict(promote: bool, low: float, high: float, reason: str) -> Decision:
        """The :class:`Decision`, with the means over the usable folds (NaN without any)."""
        c_mean, i_mean = (float(c.mean()), float(i.mean())) if k else (math.nan, math.nan)
        return Decision(promote, challenger, incumbent, k, c_mean, i_mean, i_mean - c_mean,
                        low, high, margin, reason)

    if k < min_folds:
        return verdict(False, math.nan, math.nan,
                       f"not promoted: {k} usable folds, fewer than the {min_folds} required")
    d = i - c
    low, high = _bootstrap_ci(d, n_boot=n_boot, alpha=alpha, seed=seed)
    need = margin * float(i.mean())
    numbers = (f"{challenger} log loss {c.mean():.4f} vs {incumbent} {i.mean():.4f} over {k} "
               f"folds: improvement {d.mean():.4f} (needed {need:.4f}), "
               f"{1 - alpha:.0%} CI [{low:.4f}, {high:.4f}]")
    if d.mean() < need:
        return verdict(False, low, high, f"not promoted, below the margin: {numbers}")
    if low <= 0.0:
        return verdict(False, low, high, f"not promoted, CI includes 0: {numbers}")
    if challenger_pnls is not None:
        e = edge(challenger_pnls, confidence=confidence, n_boot=n_boot, seed=seed,
                 min_folds=min_folds)
        if not e.ok:
            return verdict(False, low, high, f"not promoted, no edge after costs ({e.reason}): "
                                             f"{numbers}")
        numbers += f"; {e.reason}"
    if deflated is not None:
        if not deflated.dsr >= min_dsr:  # NaN (no returns) is no evidence
            return verdict(False, low, high, f"not promoted, deflated Sharpe {deflated.dsr:.3f} "
                                             f"< {min_dsr} ({deflated.reason}): {numbers}")
        numbers += f"; {deflated.reason}"
    return verdict(True, low, high, f"promoted: {numbers}")


@dataclass(frozen=True)
class Edge:
    """Whether a signal makes money after costs on walk-forward evidence, and the numbers."""

    ok: bool
    folds: int  # folds with a PnL
    mean: float  # mean fold PnL after costs (fraction of cash)
    low: float  # the bootstrap interval of the mean
    high: float
    reason: str


def edge(pnls: Sequence[float], *, confidence: float = 0.9, n_boot: int = 2000, seed: int = 0,
         min_folds: int = 3) -> Edge:
    """After-cost edge: the two-sided ``confidence`` bootstrap interval of the mean fold PnL
    (folds resampled with replacement, seeded) lies above 0, over at least ``min_folds`` folds.

    >>> edge([0.02, 0.01, 0.03, 0.015]).ok, edge([0.02, -0.03, 0.01, 0.0]).ok
    (True, False)
    >>> edge([0.02, 0.01]).reason
    'fold PnL on 2 folds, fewer than 3'
    """
    v = np.asarray(pnls, dtype=float)
    v = v[~np.isnan(v)]
    k = int(v.size)
    if k < min_folds:
        return Edge(False, k, float(v.mean()) if k else math.nan, math.nan, math.nan,
                    f"fold PnL on {k} folds, fewer than {min_folds}")
    low, high = _bootstrap_ci(v, n_boot=n_boot, alpha=1.0 - confidence, seed=seed)
    text = (f"fold PnL after costs {v.mean():+.4f} over {k} folds, {confidence:.0%} CI "
            f"[{low:+.4f}, {high:+.4f}]")
    return Edge(low > 0.0, k, float(v.mean()), low, high, text)


EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Deflated:
    """The deflated Sharpe ratio of a candidate picked from ``n_trials`` and its inputs
    (Sharpe ratios per observation, not annualised)."""

    dsr: float  # P(true Sharpe > sr0): the probabilistic Sharpe ratio against sr0
    sharpe: float  # the candidate's observed Sharpe
    sr0: float  # expected maximum Sharpe of n_trials unskilled trials (0 for one trial)
    n_trials: int
    observations: int
    skew: float
    kurtosis: float  # not excess: 3 for a normal
    reason: str


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """``E[max SR]`` of ``n_trials`` independent unskilled trials whose Sharpe ratios vary by
    ``variance`` (Bailey & López de Prado 2014, eq. 6); 0 for a single trial.

    >>> round(expected_max_sharpe(100, 0.5 / 250) * 250 ** 0.5, 4)  # the paper's example
    1.7894
    """
    if n_trials <= 1 or not variance > 0:
        return 0.0
    g = EULER_GAMMA
    return math.sqrt(variance) * ((1 - g) * _NORMAL.inv_cdf(1 - 1 / n_trials)
                                  + g * _NORMAL.inv_cdf(1 - 1 / (n_trials * math.e)))


def probabilistic_sharpe(sharpe: float, benchmark: float, observations: int, skew: float,
                         kurtosis: float) -> float:
    """PSR: P(true Sharpe > ``benchmark``) given the observed one over ``observations``
    returns of that skew and (non-excess) kurtosis (Bailey & López de Prado 2012)."""
    var = 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2
    if observations < 2 or not var > 0:
        return math.nan
    return _NORMAL.cdf((sharpe - benchmark) * math.sqrt(observations - 1) / math.sqrt(var))


def deflated_sharpe(returns: Sequence[float] | np.ndarray,
                    trial_sharpes: Sequence[float] | np.ndarray,
                    n_trials: int | None = None) -> Deflated:
    """The deflated Sharpe ratio of ``returns`` (the chosen configuration's out-of-sample
    per-bar returns) when it was the best of ``n_trials`` (default: ``len(trial_sharpes)``)
    whose Sharpe ratios were ``trial_sharpes``: the PSR against :func:`expected_max_sharpe`.
    One trial: the PSR against 0. NaN returns are left out.

    >>> r = np.random.default_rng(0).normal(0.001, 0.01, 1000)
    >>> one = deflated_sharpe(r, [0.1])
    >>> many = deflated_sharpe(r, np.random.default_rng(1).normal(0, 0.03, 100))
    >>> round(one.sr0, 3), one.dsr > many.dsr, many.n_trials
    (0.0, True, 100)
    """
    v = np.asarray(returns, dtype=float)
    v = v[~np.isnan(v)]
    s = np.asarray(trial_sharpes, dtype=float)
    s = s[np.isfinite(s)]
    n = len(trial_sharpes) if n_trials is None else n_trials
    sr0 = expected_max_sharpe(n, float(s.var(ddof=1)) if s.size > 1 else 0.0)
    if v.size < 3 or not v.std() > 0:
        return Deflated(math.nan, math.nan, sr0, n, int(v.size), math.nan, math.nan,
                        f"deflated Sharpe: {v.size} returns, nothing to measure")
    z = (v - v.mean()) / v.std()
    sr, skew, kurt = float(v.mean() / v.std(ddof=1)), float((z**3).mean()), float((z**4).mean())
    dsr = probabilistic_sharpe(sr, sr0, int(v.size), skew, kurt)
    return Deflated(dsr, sr, sr0, n, int(v.size), skew, kurt,
                    f"deflated Sharpe {dsr:.3f} (Sharpe {sr:.4f}/bar vs {sr0:.4f} expected of "
                    f"the best of {n} trials, {v.size} bars)")


def _bootstrap_ci(d: np.ndarray, *, n_boot: int, alpha: float, seed: int) -> tuple[float, float]:
    """Percentile interval of the mean of ``d`` over ``n_boot`` resamples with replacement."""
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def pick_challenger(summary: Mapping[str, Mapping[str, float]], names: Sequence[str]) -> str:
    """The name among ``names`` with the lowest mean ``log_loss`` in ``summary``.

    >>> pick_challenger({"xgb": {"log_loss": 0.62}, "river": {"log_loss": 0.64},
    ...                  "prior": {"log_loss": 0.60}}, ["xgb", "river"])
    'xgb'
    """
    scored = [(summary[n]["log_loss"], n) for n in names
              if n in summary and not math.isnan(summary[n].get("log_loss", math.nan))]
    if not scored:
        raise ValueError(f"none of {list(names)} has a log loss in the summary")
    return min(scored)[1]
