"""Metrics of a fold: probabilistic classification scores and the trading result after fees.

Classification: ``y`` in {0, 1}, ``p`` = P(y=1). Each score equals scikit-learn's
(``log_loss``, ``brier_score_loss``, ``roc_auc_score``, ``accuracy_score`` of ``p > 0.5``);
``log_loss`` clips ``p`` to ``[1e-15, 1 - 1e-15]`` like River's, ``roc_auc`` is NaN when ``y``
holds one class only.

Trading: a fold's probabilities are traded through the one trading rule the broker uses
(:class:`ares_stream.rule.Rule`: thresholds, scaling in, caps, fees on both legs, slippage), bar
by bar over the rows' closes; :func:`rule_metrics` turns that simulation into the fold's PnL
after costs, ratios, drawdown, hit rate, turnover and exposure. The ratio helpers take per-period
returns.

>>> r = np.array([0.1, -0.1, 0.0])
>>> round(total_return(r), 4), round(max_drawdown(r), 4)
(-0.01, 0.1)
"""

from __future__ import annotations

import math

import numpy as np

from ares_stream.learners.scores import log_loss, log_losses
from ares_stream.rule import Simulation

__all__ = [
    "accuracy",
    "annualise",
    "average_ranks",
    "brier",
    "calmar",
    "log_loss",
    "log_losses",
    "max_drawdown",
    "roc_auc",
    "rule_metrics",
    "sharpe",
    "sortino",
    "total_return",
]

_NAN = float("nan")


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared difference between ``p`` and the outcome ``y``."""
    return float(np.mean((np.asarray(p, dtype=np.float64) - np.asarray(y)) ** 2))


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve: P(p of a random positive > p of a random negative), ties ½.

    Computed from ranks (Mann–Whitney U). NaN when ``y`` holds a single class.
    """
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return _NAN
    ranks = average_ranks(np.asarray(p, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, ties sharing their average rank (``scipy.stats.rankdata``'s
    default, in numpy: importing scipy.stats costs the daemon ~0.4 s of start-up).

    >>> average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist()
    [3.5, 1.0, 3.5, 2.0]
    """
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    new = np.r_[True, xs[1:] != xs[:-1]]  # the first of each run of equal values
    group = np.cumsum(new)  # 1-based group of each sorted value
    bounds = np.r_[np.flatnonzero(new), x.size]  # where each group starts; the end
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = 0.5 * (bounds[group] + bounds[group - 1] + 1)
    return ranks


def accuracy(y: np.ndarray, p: np.ndarray) -> float:
    """Share of rows where ``p > 0.5`` equals ``y == 1``."""
    return float(np.mean((np.asarray(p) > 0.5) == np.asarray(y).astype(bool)))


def total_return(r: np.ndarray) -> float:
    """Compounded return of the periods: ``∏(1 + r) − 1``."""
    return float(np.prod(1.0 + np.asarray(r, dtype=np.float64)) - 1.0)


def sharpe(r: np.ndarray, periods_per_year: float) -> float:
    """Annualised Sharpe ratio, zero risk-free rate: ``mean / std(ddof=1) × √periods_per_year``.

    NaN with fewer than two periods or zero volatility.
    """
    r = np.asarray(r, dtype=np.float64)
    sd = float(np.std(r, ddof=1)) if r.size > 1 else 0.0
    return float(np.mean(r)) / sd * math.sqrt(periods_per_year) if sd > 0.0 else _NAN


def sortino(r: np.ndarray, periods_per_year: float) -> float:
    """Annualised Sortino ratio, target 0: ``mean / √mean(min(r, 0)²) × √periods_per_year``.

    The downside deviation averages over all periods. NaN when no period lost money.
    """
    r = np.asarray(r, dtype=np.float64)
    down = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2))) if r.size else 0.0
    return float(np.mean(r)) / down * math.sqrt(periods_per_year) if down > 0.0 else _NAN


def max_drawdown(r: np.ndarray) -> float:
    """Largest fall of the compounded equity curve from its running peak (a positive fraction).

    The curve starts at 1 before the first period, so a first-period loss counts.
    """
    equity = np.concatenate(([1.0], np.cumprod(1.0 + np.asarray(r, dtype=np.float64))))
    return float(np.max(1.0 - equity / np.maximum.accumulate(equity)))


def calmar(r: np.ndarray, periods_per_year: float) -> float:
    """Annualised compounded return (CAGR) over max drawdown; NaN without a drawdown or periods.

    CAGR extrapolates: on a fold much shorter than a year it explodes (inf past float range).
    """
    r = np.asarray(r, dtype=np.float64)
    mdd = max_drawdown(r)
    if r.size == 0 or mdd <= 0.0:
        return _NAN
    return annualise(total_return(r), periods_per_year / r.size) / mdd


def annualise(total: float, power: float) -> float:
    """``(1 + total) ** k − 1`` without overflow: inf when it exceeds float range, −1 if ruined."""
    if total <= -1.0:
        return -1.0
    growth = math.log1p(total) * power
    return math.expm1(growth) if growth < 700.0 else math.inf


def rule_metrics(sim: Simulation, periods_per_year: float) -> dict[str, float]:
    """The trading metrics of one :meth:`Rule.simulate <ares_stream.rule.Rule.simulate>` run.

    PnL is a fraction of the starting cash, after fees and slippage (``total_return``) and
    before (``gross_return``); ratios are of the per-bar equity changes, ``periods_per_year``
    bars a year; ``max_drawdown`` is of the equity curve.

    >>> from ares_stream.rule import Rule
    >>> sim = Rule(fee_bps=0.0, slippage_bps=0.0).simulate(np.array([0.9, 0.1]),
    ...                                                    np.array([100.0, 110.0]))
    >>> m = rule_metrics(sim, periods_per_year=2)
    >>> round(m["total_return"], 4), m["fills"], m["exposure"], m["hit_rate"]
    (0.01, 2.0, 0.5, 1.0)
    """
    r = sim.returns
    equity = 1.0 + np.concatenate(([0.0], np.cumsum(r)))
    peak = np.maximum.accumulate(equity)
    return {
        "total_return": sim.total_return,
        "gross_return": sim.gross / sim.cash,
        "sharpe": sharpe(r, periods_per_year) if r.size else _NAN,
        "sortino": sortino(r, periods_per_year) if r.size else _NAN,
        "max_drawdown": float(np.max(1.0 - equity / peak)),
        "hit_rate": sim.hit_rate,
        "turnover": sim.turnover,
        "exposure": sim.exposure,
        "fills": float(sim.fills),
        "periods": float(r.size),
    }
