"""Metrics of a fold: probabilistic classification scores and the trading result after fees.

Classification: ``y`` in {0, 1}, ``p`` = P(y=1). Each score equals scikit-learn's
(``log_loss``, ``brier_score_loss``, ``roc_auc_score``, ``accuracy_score`` of ``p > 0.5``);
``log_loss`` clips ``p`` to ``[1e-15, 1 - 1e-15]`` like River's, ``roc_auc`` is NaN when ``y``
holds one class only.

Trading, long-only spot. ``positions(p)`` holds 1 unit when ``p > enter``, else nothing.
``strategy_returns`` is the net simple return of holding ``pos[t]`` over the label's forward log
return ``fwd[t]``: ``pos[t] × (exp(fwd[t]) − 1) − fee × |pos[t] − pos[t−1]|`` with ``pos[−1] = 0``
(start flat) and ``fee = fee_bps / 10⁴`` per side traded (entering and leaving each pay once).

**Overlapping horizons.** With a horizon of H rows, the forward returns of consecutive rows share
H − 1 of their H bars: holding every row's position over its own forward return would compound the
same bars H times. A strategy that trades on the label horizon re-decides every H rows, so
:func:`trading_summary` evaluates the rows ``0, H, 2H, …`` (:func:`every`), whose periods tile the
time axis without overlap. Its ``periods_per_year`` counts those periods (rows per year / H), the
same unit as :func:`sharpe`'s.

>>> r = strategy_returns(np.array([1, 1, 0]), np.log([1.1, 0.9, 1.2]), fee_bps=0)
>>> r.round(4).tolist(), round(total_return(r), 4), round(max_drawdown(r), 4)
([0.1, -0.1, 0.0], -0.01, 0.1)
"""

from __future__ import annotations

import math

import numpy as np

from ares_stream.learners.scores import log_loss, log_losses

__all__ = [
    "accuracy",
    "annualise",
    "average_ranks",
    "brier",
    "calmar",
    "every",
    "hit_rate",
    "log_loss",
    "log_losses",
    "max_drawdown",
    "positions",
    "roc_auc",
    "sharpe",
    "sortino",
    "strategy_returns",
    "total_return",
    "trading_summary",
    "turnover",
]

_NAN = float("nan")
_TRADING = ("total_return", "sharpe", "sortino", "max_drawdown", "calmar", "hit_rate", "turnover")


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


def positions(p: np.ndarray, *, enter: float = 0.5) -> np.ndarray:
    """Long-only spot position per row: 1 when ``p > enter``, else 0 (NaN → 0)."""
    return (np.asarray(p, dtype=np.float64) > enter).astype(np.float64)


def strategy_returns(pos: np.ndarray, fwd_log_returns: np.ndarray, *, fee_bps: float) -> np.ndarray:
    """Net simple return per period of holding ``pos[t]`` over ``fwd_log_returns[t]``.

    ``fee_bps`` is charged on every unit traded, per side; the book starts flat.
    """
    pos = np.asarray(pos, dtype=np.float64)
    traded = np.abs(np.diff(pos, prepend=0.0))
    return pos * np.expm1(np.asarray(fwd_log_returns, dtype=np.float64)) - traded * fee_bps / 1e4


def every(arr: np.ndarray, h: int) -> np.ndarray:
    """Rows ``0, h, 2h, …`` of ``arr``: the non-overlapping periods of an ``h``-row horizon."""
    return np.asarray(arr)[::h]


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


def hit_rate(r: np.ndarray, pos: np.ndarray) -> float:
    """Share of positive net returns among the periods holding a position; NaN if none."""
    held = np.asarray(pos) != 0
    return float(np.mean(np.asarray(r)[held] > 0.0)) if held.any() else _NAN


def turnover(pos: np.ndarray) -> float:
    """Mean ``|pos[t] − pos[t−1]|`` per period, starting flat (units traded per period)."""
    pos = np.asarray(pos, dtype=np.float64)
    return float(np.mean(np.abs(np.diff(pos, prepend=0.0)))) if pos.size else _NAN


def trading_summary(
    p: np.ndarray, fwd: np.ndarray, *, horizon: int, fee_bps: float, periods_per_year: float
) -> dict[str, float]:
    """The trading metrics of acting on ``p`` every ``horizon`` rows (see the module docstring).

    ``fwd`` is each row's forward log return over ``horizon`` rows; ``periods_per_year`` counts
    the evaluated periods of ``horizon`` rows per year (e.g. 1-minute bars, horizon 5: 105,120).

    >>> s = trading_summary(np.array([0.9, 0.9, 0.2, 0.2]), np.log([1.1, 1.1, 0.9, 0.9]),
    ...                     horizon=2, fee_bps=0, periods_per_year=4)
    >>> round(s["total_return"], 6), s["turnover"], s["periods"], s["hit_rate"]
    (0.1, 1.0, 2.0, 1.0)
    """
    pos = positions(every(p, horizon))
    r = strategy_returns(pos, every(fwd, horizon), fee_bps=fee_bps)
    if r.size == 0:
        return {k: _NAN for k in _TRADING} | {"periods": 0.0}
    return {
        "total_return": total_return(r),
        "sharpe": sharpe(r, periods_per_year),
        "sortino": sortino(r, periods_per_year),
        "max_drawdown": max_drawdown(r),
        "calmar": calmar(r, periods_per_year),
        "hit_rate": hit_rate(r, pos),
        "turnover": turnover(pos),
        "periods": float(r.size),
    }
