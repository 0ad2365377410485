"""Fold metrics: scikit-learn's classification scores, hand-computed trading results."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from ares_stream.validation import metrics as m

# A small hand-worked book: held, held, flat, held; 10 bps per side.
POS = np.array([1.0, 1.0, 0.0, 1.0])
FWD = np.log([1.10, 0.95, 1.20, 1.02])
# traded 1, 0, 1, 1 → fees 0.001, 0, 0.001, 0.001
NET = [0.099, -0.05, -0.001, 0.019]


def _random(seed: int, n: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities (rounded to one decimal to force ties, with exact 0 and 1)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = rng.random(n)
    return y, (np.round(p, 1) if ties else p)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 300), ties=st.booleans())
def test_classification_scores_equal_sklearn(seed: int, n: int, ties: bool) -> None:
    """Log loss, Brier, ROC AUC and accuracy equal scikit-learn's on any inputs (rtol 1e-12)."""
    y, p = _random(seed, n, ties)
    clipped = np.clip(p, 1e-15, 1 - 1e-15)  # sklearn clips at float eps, we at 1e-15
    ll = skm.log_loss(y, clipped, labels=[0, 1])
    assert m.log_loss(y, p) == pytest.approx(ll, rel=1e-12)
    assert m.brier(y, p) == pytest.approx(skm.brier_score_loss(y, p), rel=1e-12)
    assert m.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p > 0.5), rel=1e-12)
    if 0 < y.sum() < n:
        assert m.roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), rel=1e-12)
    else:
        assert math.isnan(m.roc_auc(y, p))


def test_log_loss_clips_certain_mistakes() -> None:
    """A certain wrong prediction costs -log(1e-15), not infinity."""
    assert m.log_loss(np.array([1]), np.array([0.0])) == pytest.approx(-math.log(1e-15))
    # 1 − (1 − 1e-15) is 1.11e-15 in float64
    assert m.log_loss(np.array([0]), np.array([1.0])) == pytest.approx(-math.log(1e-15), rel=1e-4)


def test_roc_auc_is_nan_for_one_class() -> None:
    """ROC AUC is undefined (NaN) when the fold holds only one class."""
    assert math.isnan(m.roc_auc(np.ones(5), np.linspace(0, 1, 5)))


def test_positions_long_only_above_enter() -> None:
    """A position is held only strictly above the entry threshold; NaN never trades."""
    p = np.array([0.2, 0.5, 0.51, np.nan, 0.7])
    assert m.positions(p).tolist() == [0, 0, 1, 0, 1]
    assert m.positions(p, enter=0.6).tolist() == [0, 0, 0, 0, 1]


def test_strategy_returns_by_hand() -> None:
    """Net return = position × simple forward return − 10 bps per unit traded, starting flat."""
    np.testing.assert_allclose(m.strategy_returns(POS, FWD, fee_bps=10), NET, rtol=1e-12)


def test_every_takes_non_overlapping_rows() -> None:
    """every(arr, h) keeps rows 0, h, 2h, …."""
    assert m.every(np.arange(10), 3).tolist() == [0, 3, 6, 9]


def test_total_return_by_hand() -> None:
    """Total return compounds: 1.099 × 0.95 × 0.999 × 1.019 − 1."""
    assert m.total_return(np.array(NET)) == pytest.approx(0.06282306305, rel=1e-10)


def test_max_drawdown_by_hand() -> None:
    """Peak 1.099 after period 1, trough 1.04300595 after period 3: drawdown 0.05095."""
    assert m.max_drawdown(np.array(NET)) == pytest.approx(0.05095, rel=1e-10)
    assert m.max_drawdown(np.array([-0.1, 0.2])) == pytest.approx(0.1)  # from the starting 1
    assert m.max_drawdown(np.array([0.01, 0.02])) == 0.0


def test_sharpe_by_hand() -> None:
    """Mean 0.01675, sample variance 0.01154075 / 3, four periods a year."""
    expected = 0.01675 / math.sqrt(0.01154075 / 3) * 2
    assert m.sharpe(np.array(NET), 4) == pytest.approx(expected, rel=1e-10)
    assert math.isnan(m.sharpe(np.array([0.01, 0.01]), 4))


def test_sortino_by_hand() -> None:
    """Downside deviation √((0.05² + 0.001²) / 4), four periods a year."""
    expected = 0.01675 / math.sqrt((0.0025 + 0.000001) / 4) * 2
    assert m.sortino(np.array(NET), 4) == pytest.approx(expected, rel=1e-10)
    assert math.isnan(m.sortino(np.array([0.01, 0.0]), 4))


def test_calmar_by_hand() -> None:
    """Four quarterly periods are one year: Calmar = 0.06282306305 / 0.05095."""
    assert m.calmar(np.array(NET), 4) == pytest.approx(0.06282306305 / 0.05095, rel=1e-9)
    # no drawdown → NaN
    assert math.isnan(m.calmar(np.array([0.01, 0.01]), 4))


def test_calmar_extremes() -> None:
    """Annualising a short lucky fold gives inf instead of an overflow; a ruined book gives -1."""
    assert m.calmar(np.array([0.5, -0.1]), 1e6) == math.inf
    assert m.calmar(np.array([-1.0, 0.0]), 4) == -1.0


def test_hit_rate_and_turnover_by_hand() -> None:
    """Two of the three held periods made money; 3 units traded over 4 periods."""
    assert m.hit_rate(np.array(NET), POS) == pytest.approx(2 / 3)
    assert m.turnover(POS) == 0.75
    assert math.isnan(m.hit_rate(np.zeros(3), np.zeros(3)))


def test_trading_summary_uses_every_horizon_th_row() -> None:
    """Horizon 2 trades rows 0, 2, 4 only: +10%, then flat (exit fee), then +5% after entry fee."""
    p = np.array([0.9, 0.9, 0.1, 0.9, 0.8, 0.1])
    fwd = np.log([1.10, 5.0, 0.5, 5.0, 1.05, 5.0])
    s = m.trading_summary(p, fwd, horizon=2, fee_bps=10, periods_per_year=4)
    # periods: 0.1 − 0.001, 0 − 0.001, 0.05 − 0.001
    assert s["periods"] == 3
    assert s["total_return"] == pytest.approx(1.099 * 0.999 * 1.049 - 1, rel=1e-12)
    assert s["turnover"] == 1.0 and s["hit_rate"] == 1.0
    r = np.array([0.099, -0.001, 0.049])
    assert s["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * 2, rel=1e-12)  # √4
    assert s["max_drawdown"] == pytest.approx(0.001, rel=1e-9)


def test_trading_summary_empty() -> None:
    """No rows give NaN metrics and zero periods."""
    s = m.trading_summary(np.array([]), np.array([]), horizon=1, fee_bps=10, periods_per_year=1)
    assert s["periods"] == 0 and math.isnan(s["total_return"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-3, 3) | st.floats(-1e6, 1e6), min_size=1, max_size=60))
def test_average_ranks_equal_scipy_rankdata(values: list[float]) -> None:
    """The numpy ranks (kept off scipy.stats for the daemon's start-up) equal scipy's, ties too."""
    from scipy.stats import rankdata

    x = np.asarray(values, dtype=np.float64)
    assert np.array_equal(m.average_ranks(x), rankdata(x))
