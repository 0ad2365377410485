"""Risk limits: daily loss, drawdown and stale-feed switches in event time; the position cap."""

from __future__ import annotations

import json

from ares_stream.config import TradingConfig
from ares_stream.trading.risk import DAILY_LOSS, DRAWDOWN, STALE, Risk

S = 10**9
DAY = 86_400 * S
T0 = 1_767_225_600 * S  # 2026-01-01 00:00 UTC
CFG = TradingConfig(max_daily_loss=500.0, max_drawdown=0.2, stale_feed_s=60.0,
                    max_position_notional=2000.0)


def fresh(equity: float = 10_000.0) -> Risk:
    r = Risk(CFG, equity)
    r.on_trade_seen(T0)
    return r


def test_daily_loss_trips_and_clears_on_the_next_utc_day() -> None:
    """A loss past ``max_daily_loss`` from the day's opening equity blocks until UTC midnight."""
    r = fresh()
    r.on_equity(T0 + 10 * S, 9_600.0)
    assert r.tripped is None
    r.on_equity(T0 + 3_600 * S, 9_499.0)
    assert r.tripped == DAILY_LOSS
    r.on_trade_seen(T0 + DAY - S)
    assert r.allows(T0 + DAY - S) == (False, DAILY_LOSS)
    r.on_trade_seen(T0 + DAY)
    assert r.allows(T0 + DAY) == (True, "")
    assert r.tripped is None


def test_the_day_opens_with_the_last_equity_of_the_day_before() -> None:
    """The daily loss is measured from the previous day's last equity, not the starting cash."""
    r = fresh()
    r.on_equity(T0 + DAY - S, 9_000.0)  # 1,000 down on day one: tripped that day
    assert r.tripped == DAILY_LOSS
    r.on_equity(T0 + DAY + S, 8_600.0)  # day two opened at 9,000: 400 down
    assert r.tripped is None


def test_drawdown_switch_is_sticky_across_days_until_reset() -> None:
    """Equity 20 % below its running peak trips the drawdown switch, kept until ``reset()``."""
    r = Risk(TradingConfig(max_daily_loss=1e9, max_drawdown=0.2), 10_000.0)
    r.on_equity(T0, 12_000.0)
    r.on_equity(T0 + S, 9_700.0)
    assert r.tripped is None and round(r.drawdown, 4) == 0.1917
    r.on_equity(T0 + 2 * S, 9_500.0)
    assert r.tripped == DRAWDOWN
    r.on_trade_seen(T0 + 5 * DAY)
    assert r.allows(T0 + 5 * DAY) == (False, DRAWDOWN)
    r.reset()
    assert r.allows(T0 + 5 * DAY) == (True, "")
    r.on_equity(T0 + 5 * DAY, 9_000.0)
    assert r.tripped is None  # the peak restarted from 9,500


def test_a_tripped_drawdown_switch_survives_a_day_change_and_a_json_round_trip() -> None:
    """Without ``reset()`` the drawdown switch holds: a new UTC day and a restored checkpoint both
    keep it, while a daily-loss trip of the same account would have cleared."""
    r = Risk(TradingConfig(max_daily_loss=100.0, max_drawdown=0.05), 10_000.0)
    r.on_trade_seen(T0)
    r.on_equity(T0 + S, 9_000.0)
    assert r.tripped == DRAWDOWN
    r.on_equity(T0 + DAY + S, 9_000.0)
    copy = Risk(r.cfg, 10_000.0)
    copy.restore(json.loads(json.dumps(r.state())))
    copy.on_trade_seen(T0 + 2 * DAY)
    copy.on_equity(T0 + 2 * DAY, 9_000.0)
    assert copy.tripped == DRAWDOWN and copy.allows(T0 + 2 * DAY) == (False, DRAWDOWN)


def test_stale_feed_refuses_orders_without_tripping() -> None:
    """No trade for more than ``stale_feed_s`` (or none yet) refuses orders; a trade clears it."""
    r = Risk(CFG, 10_000.0)
    assert r.allows(T0) == (False, STALE)
    r.on_trade_seen(T0)
    assert r.allows(T0 + 60 * S) == (True, "")
    assert r.allows(T0 + 60 * S + 1) == (False, STALE)
    assert r.tripped is None
    r.on_trade_seen(T0 + 61 * S)
    assert r.allows(T0 + 62 * S) == (True, "")


def test_clamp_limits_to_the_position_cap_and_zero() -> None:
    """``clamp`` keeps a target within ``[0, max_position_notional / price]``."""
    r = fresh()
    assert r.clamp("BTCUSDT", 30.0, 100.0) == 20.0
    assert r.clamp("BTCUSDT", 5.0, 100.0) == 5.0
    assert r.clamp("BTCUSDT", -1.0, 100.0) == 0.0


def test_state_round_trips_through_json() -> None:
    """A restored Risk decides exactly as the original."""
    r = fresh()
    r.on_equity(T0 + S, 9_400.0)
    copy = Risk(CFG, 10_000.0)
    copy.restore(json.loads(json.dumps(r.state())))
    assert copy.state() == r.state()
    assert copy.allows(T0 + 2 * S) == r.allows(T0 + 2 * S) == (False, DAILY_LOSS)
