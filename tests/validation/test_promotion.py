"""The promotion gate: margin and a paired bootstrap CI over folds must both say yes."""

from __future__ import annotations

import math

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
