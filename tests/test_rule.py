"""The one trading rule: the signal, the costs, and the bar-by-bar simulation validation uses."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ares_stream.config import TradingConfig
from ares_stream.events import Bar
from ares_stream.rule import Rule
from ares_stream.trading.paper import PaperBroker

FREE = Rule(fee_bps=0.0, slippage_bps=0.0)


def test_thresholds_scale_in_and_cap() -> None:
    """Above enter: +order_notional per bar up to the cap; below exit: flat; between: hold."""
    r = Rule(enter=0.55, exit=0.5, order_notional=1000.0, max_position_notional=2500.0)
    assert r.target(0.56, 0.0, 100.0) == 10.0
    assert r.target(0.56, 20.0, 100.0) == 25.0
    assert r.target(0.55, 7.0, 100.0) == 7.0  # strictly above enter
    assert r.target(0.49, 7.0, 100.0) == 0.0
    assert r.target(math.nan, 7.0, 100.0) == 7.0


def test_from_config_takes_the_trading_section() -> None:
    cfg = TradingConfig(enter=0.6, exit=0.45, fee_bps=7.5, candle_slippage_bps=3.0)
    r = Rule.from_config(cfg)
    assert (r.enter, r.exit, r.fee_bps, r.slippage_bps) == (0.6, 0.45, 7.5, 3.0)


def test_simulation_pays_fees_and_slippage_on_both_legs() -> None:
    """Flat prices: a round trip loses exactly the two fees and the two slippages."""
    r = Rule(fee_bps=10.0, slippage_bps=2.0, order_notional=1000.0, max_position_notional=1000.0)
    sim = r.simulate(np.array([0.9, 0.9, 0.9]), np.full(3, 100.0))
    buy, sell = 100.02, 99.98
    expected = 10 * sell * 0.999 - 10 * buy * 1.001
    assert sim.pnl == pytest.approx(expected, rel=1e-12) and sim.gross == pytest.approx(0.0)
    assert sim.fills == 2 and sim.hit_rate == 0.0


def test_no_signal_never_trades() -> None:
    sim = FREE.simulate(np.full(50, 0.3), np.linspace(100, 200, 50))
    assert sim.pnl == 0.0 and sim.fills == 0 and sim.exposure == 0.0 and math.isnan(sim.hit_rate)


def test_buys_are_cut_to_the_cash() -> None:
    r = Rule(fee_bps=0.0, slippage_bps=0.0, order_notional=8000.0,
             max_position_notional=50_000.0, starting_cash=10_000.0)
    sim = r.simulate(np.array([0.9, 0.9, 0.9, 0.1]), np.full(4, 100.0))
    assert sim.turnover == pytest.approx(2.0)  # 10,000 in (8,000 then 2,000), 10,000 out


def test_tiny_orders_are_not_sent_unless_they_close() -> None:
    r = Rule(fee_bps=0.0, slippage_bps=0.0, order_notional=1000.0, max_position_notional=1003.0)
    sim = r.simulate(np.array([0.9, 0.9, 0.1]), np.full(3, 100.0))
    assert sim.fills == 2  # the 3-quote top-up is below the 5-quote minimum


def test_nan_closes_are_skipped() -> None:
    sim = FREE.simulate(np.array([0.9, 0.9, 0.1]), np.array([100.0, math.nan, 110.0]))
    assert sim.pnl == pytest.approx(100.0)


@given(st.floats(0.0, 1.0), st.floats(0.0, 50.0), st.floats(1.0, 1e5))
def test_target_is_never_negative_and_never_buys_past_the_cap(p: float, qty: float,
                                                              price: float) -> None:
    """The target is ≥ 0 and a buy never takes the position past ``max_position_notional``."""
    r = Rule(order_notional=1000.0, max_position_notional=2000.0)
    target = r.target(p, qty, price)
    assert target >= 0.0
    if target > qty:
        assert target * price <= r.max_position_notional * (1 + 1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_validation_trades_exactly_what_the_paper_broker_trades_on_candles(seed: int) -> None:
    """One rule: the paper broker on candles (each open the previous close) and
    :meth:`Rule.simulate` over the same closes and probabilities end with the same PnL after
    fees and slippage, the same fills and the same round trips."""
    rng = np.random.default_rng(seed)
    n = 400
    close = 100.0 * np.exp(np.cumsum(0.003 * rng.standard_normal(n)))
    p = np.clip(0.5 + 0.1 * rng.standard_normal(n), 0.0, 1.0)
    p[-2:] = 0.0  # flat before the end, so neither side has a position left to liquidate
    cfg = TradingConfig(fee_bps=10.0, candle_slippage_bps=2.0, order_notional=1500.0,
                        max_position_notional=4000.0, max_daily_loss=1e12, max_drawdown=1.0)
    broker = PaperBroker(cfg, None)
    minute = 60 * 10**9
    for t in range(n):
        open_ = close[t - 1] if t else close[0]
        hi, lo = max(open_, close[t]), min(open_, close[t])
        broker.on_bar(Bar("X", (t + 1) * minute, (t + 1) * minute, t * minute, minute, open_, hi,
                          lo, close[t], 1.0, None, 1, close[t]), float(p[t]))
    sim = Rule.from_config(cfg).simulate(p, close)
    assert broker.fills == sim.fills > 20
    assert broker.cash - cfg.starting_cash == pytest.approx(sim.pnl, rel=1e-9, abs=1e-6)
    assert broker.fees_paid == pytest.approx(sim.fees, rel=1e-9)
