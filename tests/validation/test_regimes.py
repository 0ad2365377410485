"""Causal market regimes and scores per regime (ares_stream/validation/regimes.py)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ares_stream.rule import Rule
from ares_stream.validation import metrics, regimes, splits, walkforward
from ares_stream.validation.regimes import NAMES, TRANSITION, UNKNOWN, label, table, transitions


def path(seed: int, n: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = np.exp(np.cumsum(rng.normal(0, 0.05, n)))  # wandering volatility
    return 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n) * vol))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(600, 2900))
def test_a_label_never_reads_a_later_close(seed: int, cut: int) -> None:
    """Changing every close after bar ``cut`` changes no label up to ``cut``."""
    close = path(seed)
    other = close.copy()
    other[cut + 1:] *= np.exp(np.random.default_rng(seed + 1).normal(0, 0.05, len(close) - cut - 1))
    kw = {"vol_window": 30, "trend_window": 20, "min_history": 300, "refresh": 50}
    assert np.array_equal(label(close, **kw)[:cut + 1], label(other, **kw)[:cut + 1])


def test_terciles_split_a_stationary_market_about_evenly() -> None:
    """On i.i.d. returns each volatility tercile holds about a third of the labelled bars, and
    the first ``min_history`` volatilities are unknown."""
    close = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.001, 20_000)))
    lab = label(close, vol_window=20, trend_window=20, min_history=500, refresh=100)
    known = lab[lab != UNKNOWN]
    shares = np.bincount(known // 2, minlength=3) / len(known)
    assert np.all(np.abs(shares - 1 / 3) < 0.05)
    assert np.all(lab[:520] == UNKNOWN) and np.all(lab[600:] != UNKNOWN)


def test_transitions_mark_the_bars_after_a_change_of_known_regime() -> None:
    """A change between two known regimes marks that bar and the next ``bars - 1``."""
    lab = np.array([UNKNOWN, 0, 0, 1, 1, 1, 1, 3, 3])
    assert transitions(lab, bars=2).tolist() == [False, False, False, True, True, False,
                                                 False, True, True]


def test_the_table_scores_each_regime_like_a_direct_computation() -> None:
    """Rows, log loss and hit rate per regime equal the metrics on those rows; the PnL is the
    sum of the rule's per-bar returns there; shares of the regimes sum to one."""
    rng = np.random.default_rng(3)
    lab = rng.integers(-1, 6, 2000)
    y = rng.integers(0, 2, 2000)
    p = np.clip(rng.random(2000), 0.01, 0.99)
    p[::7] = np.nan
    r = rng.normal(0, 0.001, 2000)
    rows = {row.regime: row for row in table(lab, y, p, r)}
    for k, name in enumerate(NAMES):
        m = (lab == k) & ~np.isnan(p)
        assert rows[name].n == m.sum()
        assert math.isclose(rows[name].log_loss, metrics.log_loss(y[m], p[m]))
        assert math.isclose(rows[name].hit_rate, np.mean((p[m] >= 0.5) == (y[m] == 1)))
        assert math.isclose(rows[name].pnl, math.fsum(r[lab == k]))
    assert math.isclose(sum(rows[n].share for n in NAMES), ((lab != -1) & ~np.isnan(p)).sum()
                        / (~np.isnan(p)).sum())
    assert TRANSITION in rows


def test_walk_forward_results_carry_their_regimes_and_merge_over_folds() -> None:
    """Each fold result holds its regime rows; merged, the rows add up to the scored rows of
    the labelled bars, and the PnL to the sum over folds."""
    rng = np.random.default_rng(5)
    n = 4000
    close = path(9, n)
    X = rng.normal(size=(n, 3))
    fwd = np.r_[np.diff(np.log(close)), 0.0]
    y = (fwd > 0).astype(int)
    folds = splits.walk_forward(n, n_folds=3, test_size=600, horizon=1)
    lab = label(close, vol_window=30, trend_window=30, min_history=300)
    results = walkforward.run_walk_forward(
        X, y, fwd, folds, [walkforward.ConstantPrior()], horizon=1, rule=Rule(),
        close=close, regime_labels=lab)
    assert all(r.regimes for r in results)
    merged = regimes.summary([r.regimes for r in results])
    known = sum(int((lab[f.test] != UNKNOWN).sum()) for f in folds)
    assert sum(r.n for r in merged if r.regime != TRANSITION) == known
    assert math.isclose(sum(r.pnl for r in merged if r.regime != TRANSITION),
                        sum(row.pnl for res in results for row in res.regimes
                            if row.regime != TRANSITION))
