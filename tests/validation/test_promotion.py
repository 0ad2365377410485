"""The promotion gate: margin and a paired bootstrap CI over folds must both say yes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ares_stream.validation import promotion as gate
from ares_stream.validation.promotion import Decision, decide, pick_challenger

INCUMBENT = [0.690, 0.688, 0.692, 0.689, 0.691, 0.690]


def test_clear_win_is_promoted() -> None:
    """A challenger 0.03 nats better on every fold is promoted, with the numbers recorded."""
    challenger = [v - 0.03 for v in INCUMBENT]
    d = decide("xgb-2", challenger, "xgb-1", INCUMBENT)
    assert d.promote and d.folds == 6
    assert d.improvement == pytest.approx(0.03)
    assert d.ci_low == pytest.approx(0.03) and d.ci_high == pytest.approx(0.03)
    assert d.incumbent_loss == pytest.approx(0.69) and d.margin == 0.005
    assert d.reason.startswith("promoted: xgb-2 log loss 0.6600 vs xgb-1 0.6900 over 6 folds")


def test_win_below_margin_is_not_promoted() -> None:
    """A consistent win of 0.002 nats is below 0.5% of 0.69 (0.00345): not promoted."""
    d = decide("xgb-2", [v - 0.002 for v in INCUMBENT], "xgb-1", INCUMBENT)
    assert not d.promote and d.ci_low > 0
    assert "below the margin" in d.reason and "needed 0.0034" in d.reason


def test_margin_is_relative() -> None:
    """The same absolute win passes a smaller relative margin."""
    assert decide("c", [v - 0.002 for v in INCUMBENT], "i", INCUMBENT, margin=0.001).promote


def test_noisy_win_is_not_promoted() -> None:
    """A mean win above the margin whose fold-to-fold noise puts 0 inside the CI: not promoted."""
    diffs = [0.05, -0.04, 0.06, -0.05, 0.03, -0.01]
    d = decide("c", [i - x for i, x in zip(INCUMBENT, diffs, strict=True)], "i", INCUMBENT)
    assert d.improvement == pytest.approx(sum(diffs) / 6)
    assert d.improvement > 0.005 * d.incumbent_loss
    assert d.ci_low < 0 < d.ci_high and not d.promote
    assert "CI includes 0" in d.reason


def test_losing_challenger_is_not_promoted() -> None:
    """A worse challenger has a negative improvement and is not promoted."""
    d = decide("c", [v + 0.01 for v in INCUMBENT], "i", INCUMBENT)
    assert not d.promote and d.improvement < 0 and d.ci_high < 0


def test_deterministic_for_a_seed() -> None:
    """The same losses and seed give the same decision; another seed resamples differently."""
    diffs = [0.02, 0.01, -0.005, 0.03, 0.0, 0.015]
    challenger = [i - x for i, x in zip(INCUMBENT, diffs, strict=True)]
    a = decide("c", challenger, "i", INCUMBENT, seed=7)
    assert a == decide("c", challenger, "i", INCUMBENT, seed=7)
    assert (a.ci_low, a.ci_high) != (decide("c", challenger, "i", INCUMBENT, seed=8).ci_low,
                                     decide("c", challenger, "i", INCUMBENT, seed=8).ci_high)


def test_too_few_folds() -> None:
    """Fewer than min_folds usable folds is never promoted, however large the win."""
    d = decide("c", [0.1, 0.1], "i", [0.7, 0.7])
    assert not d.promote and d.folds == 2 and math.isnan(d.ci_low)
    assert d.reason == "not promoted: 2 usable folds, fewer than the 3 required"


def test_nan_folds_are_dropped_pairwise() -> None:
    """A fold where either side is NaN (e.g. the champion was in sample) does not count."""
    nan = math.nan
    d = decide("c", [0.60, nan, 0.61, 0.60, 0.62], "i", [nan, 0.7, 0.70, 0.69, 0.71])
    assert d.folds == 3 and d.promote
    assert d.challenger_loss == pytest.approx((0.61 + 0.60 + 0.62) / 3)
    assert decide("c", [0.6, nan, nan], "i", [nan, 0.7, 0.7]).folds == 0


def test_unpaired_losses_raise() -> None:
    """Loss lists of different lengths cannot be paired."""
    with pytest.raises(ValueError, match="unpaired"):
        decide("c", [0.6, 0.6, 0.6], "i", [0.7, 0.7])


def test_decision_is_frozen() -> None:
    """A Decision cannot be altered after the fact."""
    d = decide("c", [0.6] * 3, "i", [0.7] * 3)
    assert isinstance(d, Decision)
    with pytest.raises(AttributeError):
        d.promote = False  # type: ignore[misc]


def test_pick_challenger() -> None:
    """The lowest mean log loss among the named candidates wins; NaN and unnamed are ignored."""
    summary = {"river": {"log_loss": 0.66}, "refit": {"log_loss": 0.65},
               "prior": {"log_loss": 0.60}, "champion": {"log_loss": math.nan}}
    assert pick_challenger(summary, ["river", "refit", "champion"]) == "refit"
    with pytest.raises(ValueError, match="none of"):
        pick_challenger(summary, ["champion", "missing"])


def test_a_better_forecast_that_loses_money_after_costs_is_not_promoted() -> None:
    """Promotion needs the log-loss evidence and positive after-cost fold PnL (the 1h finding:
    an xgb_refit that beat the prior on log loss lost about 95 % per fold after fees)."""
    better = ([0.60, 0.61, 0.59, 0.60], [0.65, 0.66, 0.64, 0.66])
    d = gate.decide("xgb", better[0], "champion", better[1],
                    challenger_pnls=[-0.9, -0.95, -0.97, -0.93])
    assert not d.promote and d.reason.startswith("not promoted, no edge after costs")
    d = gate.decide("xgb", better[0], "champion", better[1],
                    challenger_pnls=[0.01, 0.02, 0.015, 0.012])
    assert d.promote and "fold PnL after costs +0.0142" in d.reason


def test_edge_needs_the_whole_interval_above_zero() -> None:
    """Mostly winning folds with one large loss are no edge; the confidence is configurable."""
    pnls = [0.02, 0.03, 0.025, -0.04, 0.02]
    assert not gate.edge(pnls, confidence=0.9).ok
    assert gate.edge([0.02, 0.03, 0.025, 0.001, 0.02], confidence=0.9).ok
    e = gate.edge([0.01, float("nan"), 0.02, 0.015])
    assert e.folds == 3 and e.ok and e.low > 0


def test_deflated_sharpe_matches_the_papers_formula_by_hand() -> None:
    """Bailey & López de Prado (2014)'s example — annualised SR 2.5 over 1250 days, skew -3,
    kurtosis 10, 100 trials whose annualised Sharpe ratios vary by 0.5 — gives SR0 ≈ 1.7894
    annualised and DSR ≈ 0.9004, here from the formula's pieces written out by hand."""
    from statistics import NormalDist

    nd, g = NormalDist(), 0.5772156649015329
    sr, var, n, t, skew, kurt = 2.5 / 250**0.5, 0.5 / 250, 100, 1250, -3.0, 10.0
    sr0 = var**0.5 * ((1 - g) * nd.inv_cdf(1 - 1 / n) + g * nd.inv_cdf(1 - 1 / (n * math.e)))
    dsr = nd.cdf((sr - sr0) * (t - 1) ** 0.5 / (1 - skew * sr + (kurt - 1) / 4 * sr**2) ** 0.5)
    assert gate.expected_max_sharpe(n, var) == pytest.approx(sr0)
    assert sr0 * 250**0.5 == pytest.approx(1.7894, abs=1e-4)
    assert gate.probabilistic_sharpe(sr, sr0, t, skew, kurt) == pytest.approx(dsr)
    assert dsr == pytest.approx(0.9004, abs=1e-4)


def test_deflated_sharpe_of_returns_uses_their_moments_and_the_trials_variance() -> None:
    """From returns: Sharpe mean/std (ddof 1), skew and non-excess kurtosis of the returns, the
    benchmark from the trials' Sharpe variance; one trial reduces to the PSR against 0."""
    rng = np.random.default_rng(0)
    r = rng.standard_t(5, 2000) * 0.01 + 0.0008
    trials = rng.normal(0.0, 0.02, 50)
    d = gate.deflated_sharpe(r, trials)
    z = (r - r.mean()) / r.std()
    sr = r.mean() / r.std(ddof=1)
    sr0 = gate.expected_max_sharpe(50, float(np.var(trials, ddof=1)))
    assert (d.sharpe, d.sr0, d.n_trials) == (pytest.approx(sr), pytest.approx(sr0), 50)
    assert d.dsr == pytest.approx(gate.probabilistic_sharpe(
        sr, sr0, 2000, float((z**3).mean()), float((z**4).mean())))
    one = gate.deflated_sharpe(r, [sr])
    assert one.sr0 == 0.0 and one.dsr == pytest.approx(gate.probabilistic_sharpe(
        sr, 0.0, 2000, float((z**3).mean()), float((z**4).mean())))
    assert one.dsr > d.dsr


def test_a_tuned_challenger_needs_its_deflated_sharpe() -> None:
    """With the log-loss evidence and an edge, the best of many trials is still not promoted
    when its deflated Sharpe is below min_dsr — and would have been without the deflation."""
    better = ([0.60, 0.61, 0.59, 0.60], [0.65, 0.66, 0.64, 0.66])
    pnls = [0.01, 0.02, 0.015, 0.012]
    r = np.random.default_rng(1).normal(0.0025, 0.02, 1000)  # PSR vs 0 ≈ 0.99
    many = gate.deflated_sharpe(r, np.random.default_rng(2).normal(0, 0.05, 100))
    one = gate.deflated_sharpe(r, [0.0], 1)
    assert one.dsr >= 0.95 > many.dsr

    def decide(deflated: gate.Deflated | None) -> Decision:
        return gate.decide("xgb_tuned", better[0], "champion", better[1], challenger_pnls=pnls,
                           deflated=deflated)

    no = decide(many)
    assert not no.promote and no.reason.startswith("not promoted, deflated Sharpe")
    assert decide(one).promote and decide(None).promote
