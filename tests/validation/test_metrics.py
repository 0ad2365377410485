"""Fold metrics: scikit-learn's classification scores, hand-computed trading results."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from ares_stream.rule import Rule
from ares_stream.validation import metrics as m

# Hand-worked net returns of four periods.
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


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-3, 3) | st.floats(-1e6, 1e6), min_size=1, max_size=60))
def test_average_ranks_equal_scipy_rankdata(values: list[float]) -> None:
    """The numpy ranks (kept off scipy.stats for the daemon's start-up) equal scipy's, ties too."""
    from scipy.stats import rankdata

    x = np.asarray(values, dtype=np.float64)
    assert np.array_equal(m.average_ranks(x), rankdata(x))


def test_rule_metrics_by_hand() -> None:
    """1,000 in at 100 (10 bps fee, 2 bps slippage), marked at 110, out at 121: the fold's PnL,
    before and after costs, as fractions of the 10,000 starting cash; ratios of the bar changes."""
    sim = Rule(fee_bps=10.0, slippage_bps=2.0, order_notional=1000.0,
               max_position_notional=1000.0).simulate(np.array([0.9, 0.9, 0.1]),
                                                      np.array([100.0, 110.0, 121.0]))
    buy, sell, qty = 100.0 * 1.0002, 121.0 * 0.9998, 10.0  # sized at the deciding close
    pnl = qty * sell * (1 - 0.001) - qty * buy * (1 + 0.001)
    s = m.rule_metrics(sim, periods_per_year=4)
    assert s["total_return"] == pytest.approx(pnl / 10_000, rel=1e-12)
    assert s["gross_return"] == pytest.approx(qty * 21.0 / 10_000, rel=1e-9)
    assert s["fills"] == 2 and s["hit_rate"] == 1.0 and s["exposure"] == pytest.approx(2 / 3)
    assert s["turnover"] == pytest.approx(qty * (buy + sell) / 10_000, rel=1e-12)
    assert s["periods"] == 3
    assert s["max_drawdown"] == pytest.approx(qty * (buy * 1.001 - 100.0) / 10_000)
