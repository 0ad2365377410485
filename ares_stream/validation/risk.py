"""Risk of a return series: block bootstrap, Monte Carlo paths, VaR and expected shortfall, and
ratios annualised from daily returns.

**Block bootstrap.** Returns are resampled in circular blocks (Politis & Romano 1992): a path is
blocks of ``block`` consecutive returns, each starting at a uniform random index and wrapping
round the end, so short-range dependence (volatility clustering, autocorrelation) survives the
resampling. :func:`block_length` chooses the block by Politis & White's (2004) automatic rule with
Patton, Politis & White's (2009) correction — the rule of the ``arch`` package's
``optimal_block_length`` (its circular-bootstrap column): find the lag after which the
autocorrelations are insignificant, estimate the long-run variance and its derivative with a
flat-top lag window, and take the block that minimises the bootstrap variance's MSE. White noise
gets blocks of 1 (the i.i.d. bootstrap); the stronger the autocorrelation, the longer the block.

**Intervals** are percentile intervals of the block bootstrap: the 5 % and 95 % quantiles of the
statistic over ``n_boot`` resamples of the series (a 90 % interval, :data:`LEVEL`).

**VaR and ES** are historical and positive losses: ``VaR_α`` is the α-quantile of the losses
``−r`` (``np.quantile``, linear interpolation), ``ES_α`` the mean of the ``⌈(1 − α)·n⌉`` worst
losses. Both are per period of the returns given (per day in the report).

**Annualisation** uses daily returns: equity sampled at each UTC day's end, ×√365 (crypto trades
every day). Per-bar returns annualised by √(bars per year) assume the bars independent; intraday
returns are not (bid-ask bounce, fee bursts on trades, volatility clusters), and on 1-minute bars
that more than doubled a Sharpe ratio's size.

>>> r = np.random.default_rng(0).normal(0.001, 0.02, 500)
>>> block_length(r)
1
>>> [(t.level, round(t.var, 4), round(t.es, 4)) for t in var_es(r, n_boot=200)]
[(0.95, 0.0287, 0.043), (0.99, 0.0492, 0.0657)]
>>> mc = monte_carlo(r, 365, n_paths=200)
>>> mc.growth.shape, mc.final_return[0] < mc.final_return[2] < mc.final_return[4]
((5, 501), True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ares_stream.validation.metrics import sharpe, sortino

__all__ = ["DAY_NS", "LEVEL", "QUANTILES", "MonteCarlo", "Ratios", "TailRisk", "annualised",
           "block_length", "bootstrap_ci", "bootstrap_paths", "daily_returns", "monte_carlo",
           "period_returns", "var_es"]

DAY_NS = 86_400 * 10**9
LEVEL = 0.90  # the confidence of every bootstrap interval
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)  # of a Monte Carlo distribution
_NAN = float("nan")
Interval = tuple[float, float]
Statistic = Callable[[np.ndarray], np.ndarray]  # (paths, periods) -> one value per path


@dataclass(frozen=True)
class TailRisk:
    """Historical VaR and expected shortfall at ``level`` (positive losses per period), with
    their bootstrap intervals, over ``n`` returns."""
    level: float
    var: float
    var_ci: Interval
    es: float
    es_ci: Interval
    n: int


@dataclass(frozen=True)
class MonteCarlo:
    """Bootstrapped paths of ``horizon`` periods: the :data:`QUANTILES` of their final return,
    maximum drawdown and annualised Sharpe, the share of paths that lost money, and ``growth``,
    the quantiles of the compounded growth (start 1) at every step — a fan chart's bands."""
    final_return: tuple[float, ...]
    max_drawdown: tuple[float, ...]
    sharpe: tuple[float, ...]
    p_loss: float
    growth: np.ndarray  # (len(QUANTILES), horizon + 1)
    n_paths: int
    horizon: int
    block: int


@dataclass(frozen=True)
class Ratios:
    """Sharpe, Sortino and volatility annualised from ``days`` daily returns (√365), with their
    bootstrap intervals; ``block`` is the bootstrap's block length."""
    sharpe: float
    sharpe_ci: Interval
    sortino: float
    sortino_ci: Interval
    volatility: float
    volatility_ci: Interval
    days: int
    block: int


def block_length(returns: np.ndarray) -> int:
    """The circular block bootstrap's block length for ``returns`` (Politis & White 2004, with
    the 2009 correction), rounded and kept within ``[1, n / 4]``.

    >>> block_length(np.arange(3.0))
    1
    """
    x = np.asarray(returns, dtype=np.float64)
    n = x.size
    if n < 8:
        return 1
    acv, m = _autocovariances(x)
    lags = np.arange(1, m + 1)
    window = np.where(lags / m <= 0.5, 1.0, 2.0 * (1.0 - lags / m))  # the flat-top lag window
    g = 2.0 * float(np.sum(window * lags * acv[1:m + 1]))
    long_run = acv[0] + 2.0 * float(np.sum(window * acv[1:m + 1]))
    if long_run <= 0.0:
        return 1
    b = (2.0 * g * g / (4.0 / 3.0 * long_run * long_run)) ** (1 / 3) * n ** (1 / 3)
    cap = max(1, min(n // 4, math.ceil(min(3.0 * math.sqrt(n), n / 3.0))))
    return int(min(max(1, math.floor(b + 0.5)), cap))


def _autocovariances(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Autocovariances up to ``√n + K`` lags, and the window ``M``: twice the last lag before
    ``K`` insignificant autocorrelations in a row (``|ρ| < 2√(log10 n / n)``)."""
    n = x.size
    k = max(5, int(math.log10(n)))
    m_max = math.ceil(math.sqrt(n)) + k
    e = x - x.mean()
    acv = np.array([e[i:] @ e[:n - i] / n for i in range(m_max + 1)])
    quiet = np.abs(acv[1:] / acv[0]) < 2.0 * math.sqrt(math.log10(n) / n) if acv[0] > 0 else \
        np.ones(m_max, dtype=bool)
    runs = np.lib.stride_tricks.sliding_window_view(quiet, k).all(axis=1)
    m_hat = int(np.argmax(runs)) if runs.any() else m_max  # lags m̂+1 … m̂+K are all quiet
    return acv, min(2 * max(m_hat, 1), m_max)


def bootstrap_paths(returns: np.ndarray, *, n_paths: int = 1000, block: int | None = None,
                    horizon: int | None = None, seed: int = 0) -> np.ndarray:
    """``n_paths`` circular block bootstrap resamples of ``returns``, ``horizon`` periods each
    (the series' length by default): an array of paths × periods.

    >>> bootstrap_paths(np.array([1.0, 2.0, 3.0, 4.0]), n_paths=2, block=2).tolist()  # wraps
    [[4.0, 1.0, 3.0, 4.0], [3.0, 4.0, 2.0, 3.0]]
    """
    x = np.asarray(returns, dtype=np.float64)
    n = x.size
    h = n if horizon is None else int(horizon)
    if n == 0 or h <= 0:
        return np.empty((n_paths, max(h, 0)), dtype=np.float64)
    b = block_length(x) if block is None else max(1, min(int(block), n))
    starts = np.random.default_rng(seed).integers(0, n, size=(n_paths, -(-h // b)))
    index = (starts[:, :, None] + np.arange(b)) % n
    return x[index.reshape(n_paths, -1)[:, :h]]


def bootstrap_ci(returns: np.ndarray, statistic: Statistic, *, level: float = LEVEL,
                 n_boot: int = 1000, block: int | None = None, seed: int = 0) -> Interval:
    """The percentile interval of ``statistic`` (one value per row of a paths × periods array)
    over ``n_boot`` block bootstrap resamples of ``returns``; NaN below two returns."""
    x = np.asarray(returns, dtype=np.float64)
    if x.size < 2:
        return _NAN, _NAN
    values = statistic(bootstrap_paths(x, n_paths=n_boot, block=block, seed=seed))
    return _interval(values, level)


def _interval(values: np.ndarray, level: float) -> Interval:
    ok = values[np.isfinite(values)]
    if not ok.size:
        return _NAN, _NAN
    lo, hi = np.quantile(ok, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def var_es(returns: np.ndarray, levels: Sequence[float] = (0.95, 0.99), n_boot: int = 1000,
           seed: int = 0) -> list[TailRisk]:
    """Historical VaR and expected shortfall of ``returns`` at each level, as positive losses,
    with 90 % block bootstrap percentile intervals (NaN without returns).

    >>> t = var_es(np.linspace(-0.1, 0.1, 21), levels=(0.9,), n_boot=100)[0]
    >>> round(t.var, 4), round(t.es, 4), t.n
    (0.08, 0.09, 21)
    """
    x = np.asarray(returns, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not x.size:
        return [TailRisk(a, _NAN, (_NAN, _NAN), _NAN, (_NAN, _NAN), 0) for a in levels]
    paths = bootstrap_paths(x, n_paths=n_boot, seed=seed) if x.size > 1 else None
    out = []
    for a in levels:
        var, es = _var(x[None, :], a)[0], _es(x[None, :], a)[0]
        var_ci = _interval(_var(paths, a), LEVEL) if paths is not None else (_NAN, _NAN)
        es_ci = _interval(_es(paths, a), LEVEL) if paths is not None else (_NAN, _NAN)
        out.append(TailRisk(a, float(var), var_ci, float(es), es_ci, int(x.size)))
    return out


def _var(paths: np.ndarray, level: float) -> np.ndarray:
    return np.asarray(np.quantile(-paths, level, axis=1), dtype=np.float64)


def _es(paths: np.ndarray, level: float) -> np.ndarray:
    k = max(1, math.ceil(round((1.0 - level) * paths.shape[1], 9)))
    worst = -np.sort(paths, axis=1)[:, :k]  # the k largest losses of each row
    return np.asarray(worst.mean(axis=1), dtype=np.float64)


def monte_carlo(returns: np.ndarray, periods_per_year: float, *, n_paths: int = 1000,
                horizon: int | None = None, block: int | None = None,
                seed: int = 0) -> MonteCarlo:
    """Distributions over ``n_paths`` block bootstrap paths of ``horizon`` periods (the series'
    length by default) of the final return, maximum drawdown and Sharpe (annualised by
    √``periods_per_year``), and P(final return < 0)."""
    x = np.asarray(returns, dtype=np.float64)
    x = x[np.isfinite(x)]
    b = block_length(x) if block is None else int(block)
    if not x.size:
        nan = tuple(_NAN for _ in QUANTILES)
        return MonteCarlo(nan, nan, nan, _NAN, np.full((len(QUANTILES), 1), np.nan), n_paths,
                          0, b)
    paths = bootstrap_paths(x, n_paths=n_paths, block=b, horizon=horizon, seed=seed)
    growth = np.concatenate((np.ones((n_paths, 1)), np.cumprod(1.0 + paths, axis=1)), axis=1)
    final = growth[:, -1] - 1.0
    drawdown = np.max(1.0 - growth / np.maximum.accumulate(growth, axis=1), axis=1)
    return MonteCarlo(_quantiles(final), _quantiles(drawdown),
                      _quantiles(_sharpes(paths, periods_per_year)), float(np.mean(final < 0.0)),
                      np.quantile(growth, QUANTILES, axis=0), n_paths, int(paths.shape[1]), b)


def _quantiles(values: np.ndarray) -> tuple[float, ...]:
    ok = values[np.isfinite(values)]
    if not ok.size:
        return tuple(_NAN for _ in QUANTILES)
    return tuple(float(q) for q in np.quantile(ok, QUANTILES))


def _sharpes(paths: np.ndarray, periods_per_year: float) -> np.ndarray:
    """Each row's annualised Sharpe (NaN where it has no volatility)."""
    if paths.shape[1] < 2:
        return np.full(paths.shape[0], np.nan)
    sd = paths.std(axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sd > 0, paths.mean(axis=1) / sd * math.sqrt(periods_per_year), np.nan)


def _sortinos(paths: np.ndarray, periods_per_year: float) -> np.ndarray:
    down = np.sqrt(np.mean(np.minimum(paths, 0.0) ** 2, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(down > 0, paths.mean(axis=1) / down * math.sqrt(periods_per_year),
                        np.nan)


def _volatilities(paths: np.ndarray, periods_per_year: float) -> np.ndarray:
    if paths.shape[1] < 2:
        return np.full(paths.shape[0], np.nan)
    return np.asarray(paths.std(axis=1, ddof=1) * math.sqrt(periods_per_year))


def period_returns(ts_ns: np.ndarray, values: np.ndarray, step_ns: int) -> np.ndarray:
    """Simple returns of ``values`` sampled at the end of each ``step_ns`` interval counted from
    the epoch (for a day: UTC midnight to midnight): the last mark of an interval wins and an
    interval without one carries the previous value. The first interval's end is the first
    sample, so a run that starts mid-interval contributes no partial first return.

    >>> period_returns(np.array([5, 9, 12, 31]), np.array([1.0, 2.0, 3.0, 6.0]), 10).tolist()
    [0.5, 0.0, 1.0]
    """
    ts = np.asarray(ts_ns, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    ts, v = ts[ok], v[ok]
    if ts.size < 2:
        return np.array([], dtype=np.float64)
    slot = ts // step_ns - ts[0] // step_ns
    last = np.r_[slot[1:] != slot[:-1], True]  # the last mark of each interval
    grid = np.full(int(slot[-1]) + 1, np.nan)
    grid[slot[last]] = v[last]
    filled = grid[np.maximum.accumulate(np.where(np.isnan(grid), 0, np.arange(grid.size)))]
    return np.asarray(filled[1:] / filled[:-1] - 1.0, dtype=np.float64)


def daily_returns(ts_ns: np.ndarray, equity: np.ndarray) -> np.ndarray:
    """Simple returns of ``equity`` sampled at each UTC day's end (last mark wins, carried over
    days without one); ``ts_ns`` are nanoseconds since the epoch, in time order.

    >>> day = DAY_NS
    >>> daily_returns(np.array([0, day // 2, day + 1, 3 * day + 5]),
    ...               np.array([100.0, 100.0, 110.0, 99.0])).round(4).tolist()
    [0.1, 0.0, -0.1]
    """
    return period_returns(ts_ns, equity, DAY_NS)


def annualised(daily: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> Ratios:
    """Sharpe, Sortino (target 0) and volatility of ``daily`` returns annualised by √365, with
    90 % block bootstrap percentile intervals.

    >>> r = annualised(np.random.default_rng(1).normal(0.001, 0.02, 365), n_boot=200)
    >>> r.days, r.sharpe_ci[0] < r.sharpe < r.sharpe_ci[1], round(r.volatility, 2)
    (365, True, 0.35)
    """
    x = np.asarray(daily, dtype=np.float64)
    x = x[np.isfinite(x)]
    b = block_length(x)
    paths = bootstrap_paths(x, n_paths=n_boot, block=b, seed=seed) if x.size > 1 else None

    def ci(stat: Callable[[np.ndarray, float], np.ndarray]) -> Interval:
        return _interval(stat(paths, 365.0), LEVEL) if paths is not None else (_NAN, _NAN)

    vol = float(np.std(x, ddof=1) * math.sqrt(365.0)) if x.size > 1 else _NAN
    return Ratios(sharpe(x, 365.0) if x.size else _NAN, ci(_sharpes),
                  sortino(x, 365.0) if x.size else _NAN, ci(_sortinos), vol, ci(_volatilities),
                  int(x.size), b)
