"""Risk: VaR/ES against direct quantiles, bootstrap intervals that cover at their nominal rate,
block lengths that follow autocorrelation, daily sampling against pandas, seeded determinism."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ares_stream.validation import metrics as vm
from ares_stream.validation import risk

SEEDS = 200
# Coverage of a 90 % interval over SEEDS independent series: within 3 binomial standard errors
# of 180 (sd = √(200 · 0.9 · 0.1) ≈ 4.2), i.e. 168 … 192 of 200.
NOMINAL, TOLERANCE = risk.LEVEL * SEEDS, 3.0 * math.sqrt(SEEDS * 0.9 * 0.1)


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    """A stationary AR(1) with unit innovations (200 periods of burn-in dropped)."""
    e = rng.normal(size=n + 200)
    y = np.empty_like(e)
    y[0] = e[0]
    for i in range(1, e.size):
        y[i] = phi * y[i - 1] + e[i]
    return y[200:]


def _mean(paths: np.ndarray) -> np.ndarray:
    return np.asarray(paths.mean(axis=1))


def _covered(make: Callable[[np.random.Generator], tuple[float, float]], truth: float) -> int:
    """How many of SEEDS intervals (from a fresh series each) hold ``truth``."""
    hits = 0
    for seed in range(SEEDS):
        lo, hi = make(np.random.default_rng(seed))
        hits += lo <= truth <= hi
    return hits


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [7, 50, 333, 1000])
def test_var_and_es_equal_a_direct_quantile_and_tail_mean(seed: int, n: int) -> None:
    """VaR is ``np.quantile`` of the losses and ES the mean of the ⌈(1 − α)n⌉ worst losses,
    both positive; ES is never below VaR."""
    r = np.random.default_rng(seed).standard_t(3, n) * 0.01
    for t in risk.var_es(r, levels=(0.9, 0.95, 0.99), n_boot=50, seed=seed):
        worst = np.sort(r)[: math.ceil((1 - t.level) * n - 1e-9)]
        assert t.var == pytest.approx(np.quantile(-r, t.level), rel=1e-12)
        assert t.es == pytest.approx(-worst.mean(), rel=1e-12)
        assert t.es >= t.var and t.n == n


def test_the_mean_interval_covers_at_its_nominal_rate_on_iid_normal_returns() -> None:
    """On i.i.d. normal series the 90 % interval of the mean holds the true mean in 90 % of
    200 seeds, within binomial tolerance."""
    def make(rng: np.random.Generator) -> tuple[float, float]:
        return risk.bootstrap_ci(rng.normal(0.5, 2.0, 250), _mean, n_boot=500,
                                 seed=int(rng.integers(2**31)))
    assert abs(_covered(make, 0.5) - NOMINAL) <= TOLERANCE


def test_the_block_bootstrap_covers_the_mean_of_an_ar1_and_the_iid_one_does_not() -> None:
    """On AR(1) series (φ = 0.5) the block bootstrap's interval covers the mean at its nominal
    rate; resampling single returns (block 1) ignores the dependence (the long-run variance is
    3× the variance) and covers about two thirds of the time: under 75 %."""
    series = [_ar1(np.random.default_rng(s), 1000, 0.5) for s in range(SEEDS)]
    blocked = sum(lo <= 0.0 <= hi for lo, hi in
                  (risk.bootstrap_ci(y, _mean, n_boot=500, seed=s) for s, y in enumerate(series)))
    single = sum(lo <= 0.0 <= hi for lo, hi in
                 (risk.bootstrap_ci(y, _mean, n_boot=500, block=1, seed=s)
                  for s, y in enumerate(series)))
    assert abs(blocked - NOMINAL) <= TOLERANCE
    assert single < 0.75 * SEEDS


def test_the_var_interval_covers_the_true_var_of_normal_returns() -> None:
    """The 95 % VaR's 90 % interval holds the normal distribution's true VaR at its nominal
    rate over 200 seeds."""
    truth = -(0.001 + 0.02 * stats.norm.ppf(0.05))

    def make(rng: np.random.Generator) -> tuple[float, float]:
        t = risk.var_es(rng.normal(0.001, 0.02, 1000), levels=(0.95,), n_boot=500,
                        seed=int(rng.integers(2**31)))[0]
        return t.var_ci
    assert abs(_covered(make, truth) - NOMINAL) <= TOLERANCE


def test_the_sharpe_interval_covers_the_true_sharpe_of_a_year_of_daily_returns() -> None:
    """A year of i.i.d. daily returns (mean 0.2 %, sd 2 %): the annualised Sharpe's interval
    holds 0.1 × √365 at its nominal rate, and the point values equal the metrics'."""
    def make(rng: np.random.Generator) -> tuple[float, float]:
        r = rng.normal(0.002, 0.02, 365)
        ratios = risk.annualised(r, n_boot=500, seed=int(rng.integers(2**31)))
        assert ratios.sharpe == pytest.approx(vm.sharpe(r, 365.0), rel=1e-12)
        assert ratios.sortino == pytest.approx(vm.sortino(r, 365.0), rel=1e-12)
        assert ratios.volatility == pytest.approx(r.std(ddof=1) * math.sqrt(365), rel=1e-12)
        return ratios.sharpe_ci
    assert abs(_covered(make, 0.1 * math.sqrt(365)) - NOMINAL) <= TOLERANCE


def test_the_block_length_grows_with_autocorrelation() -> None:
    """The median block length over 15 AR(1) series rises with φ = 0, 0.3, 0.6, 0.9; white
    noise gets blocks of 1 to 3."""
    medians = [np.median([risk.block_length(_ar1(np.random.default_rng(s), 2000, phi))
                          for s in range(15)]) for phi in (0.0, 0.3, 0.6, 0.9)]
    assert medians[0] <= 3 and all(np.diff(medians) > 0), medians


def test_the_block_length_stays_within_a_quarter_of_the_series() -> None:
    """A random walk (the most dependent series) gets at most n / 4; tiny and constant series
    get 1."""
    walk = np.cumsum(np.random.default_rng(3).normal(size=40))
    assert 1 <= risk.block_length(walk) <= 10
    assert risk.block_length(np.ones(100)) == 1 and risk.block_length(np.array([])) == 1


def test_bootstrap_paths_are_circular_blocks_of_the_series() -> None:
    """Every path is made of runs of ``block`` consecutive returns, wrapping round the end."""
    x = np.arange(10.0)
    paths = risk.bootstrap_paths(x, n_paths=50, block=4, horizon=12, seed=5)
    assert paths.shape == (50, 12)
    steps = (np.diff(paths.reshape(50, 3, 4), axis=2) % 10)
    assert np.all(steps == 1)


def test_daily_returns_equal_a_pandas_daily_resample() -> None:
    """Equity marked at irregular times over ~40 days with whole days missing: the returns of
    its UTC day-end samples equal pandas' ``resample('1D').last().ffill().pct_change()``."""
    rng = np.random.default_rng(11)
    start = np.datetime64("2025-05-20T07:31:00", "ns").astype(np.int64)
    ts = np.sort(start + rng.integers(0, 40 * risk.DAY_NS, 3000))
    ts = ts[(ts - start) // risk.DAY_NS % 7 != 3]  # a day a week without any mark
    equity = 10_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, ts.size)))
    s = pd.Series(equity, index=pd.to_datetime(ts, utc=True))
    want = s.resample("1D").last().ffill().pct_change().dropna().to_numpy()
    assert np.allclose(risk.daily_returns(ts, equity), want, rtol=1e-12, atol=0)


def test_the_same_seed_gives_the_same_results_and_another_seed_others() -> None:
    """Paths, intervals, VaR/ES and the Monte Carlo are a function of the seed."""
    r = np.random.default_rng(0).normal(0, 0.01, 300)
    assert np.array_equal(risk.bootstrap_paths(r, seed=4), risk.bootstrap_paths(r, seed=4))
    assert not np.array_equal(risk.bootstrap_paths(r, seed=4), risk.bootstrap_paths(r, seed=5))
    assert risk.var_es(r, seed=2) == risk.var_es(r, seed=2) != risk.var_es(r, seed=3)
    a, b = risk.monte_carlo(r, 365, seed=1), risk.monte_carlo(r, 365, seed=1)
    assert a.final_return == b.final_return and np.array_equal(a.growth, b.growth)


def test_monte_carlo_summarises_the_bootstrap_paths() -> None:
    """The final-return quantiles, P(loss), drawdowns and Sharpes equal those computed directly
    from :func:`bootstrap_paths` with the same seed and block."""
    r = np.random.default_rng(8).normal(0.0005, 0.01, 400)
    mc = risk.monte_carlo(r, 365, n_paths=300, horizon=100, seed=9)
    paths = risk.bootstrap_paths(r, n_paths=300, block=mc.block, horizon=100, seed=9)
    final = np.prod(1 + paths, axis=1) - 1
    assert np.allclose(mc.final_return, np.quantile(final, risk.QUANTILES))
    assert mc.p_loss == np.mean(final < 0) and mc.horizon == 100 and mc.n_paths == 300
    sharpes = [vm.sharpe(p, 365) for p in paths]
    drawdowns = [vm.max_drawdown(p) for p in paths]
    assert np.allclose(mc.sharpe, np.quantile(sharpes, risk.QUANTILES))
    assert np.allclose(mc.max_drawdown, np.quantile(drawdowns, risk.QUANTILES))
    assert mc.growth.shape == (5, 101) and np.all(mc.growth[:, 0] == 1.0)
    assert np.allclose(mc.growth[:, -1], 1 + np.asarray(mc.final_return))


def test_empty_series_give_nan_not_errors() -> None:
    """No returns: VaR/ES, ratios and the Monte Carlo are NaN (n = 0), nothing raises."""
    empty = np.array([])
    assert all(math.isnan(t.var) and t.n == 0 for t in risk.var_es(empty))
    ratios = risk.annualised(empty)
    assert math.isnan(ratios.sharpe) and math.isnan(ratios.sharpe_ci[0]) and ratios.days == 0
    mc = risk.monte_carlo(empty, 365, n_paths=10)
    assert math.isnan(mc.p_loss) and all(math.isnan(q) for q in mc.final_return)
    assert risk.daily_returns(np.array([1]), np.array([1.0])).size == 0
