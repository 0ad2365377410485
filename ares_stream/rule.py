"""The one trading rule: how a traded probability becomes a position, and what that costs.

The paper (and live) broker and the walk-forward validation both trade through :class:`Rule`, so
a candidate is judged on the PnL the broker would really make with it, not on a proxy:

- **signal** (:meth:`Rule.target`, long-only spot): ``p > enter`` scales in by ``order_notional``
  of quote per bar up to ``max_position_notional`` (a position already past the cap — it grew
  with the price — is held, not trimmed); ``p < exit`` goes flat; otherwise (between the
  thresholds, or NaN) the position is held;
- **costs**: ``fee_bps`` of the notional on both legs, and adverse slippage;
- **fills** in :meth:`Rule.simulate` (bars without a trade tape, as the broker fills candles): an
  order decided at bar *t*'s close fills at bar *t + 1*'s open — here the close of bar *t*, the
  only price a buffered sample keeps — moved ``slippage_bps`` against us, and is marked at the
  closes from then on; a buy is cut to the cash (fee included), an order below ``min_notional``
  is not sent unless it closes the position. Whatever is held at the end is sold at the last
  close (fee and slippage paid), so every PnL is after a full round trip.

The kill switches of :mod:`ares_stream.trading.risk` are not simulated: validation measures the
signal, the switches guard the account.

>>> from ares_stream.config import TradingConfig
>>> rule = Rule.from_config(TradingConfig(enter=0.55, exit=0.5, order_notional=1000.0,
...                                       max_position_notional=2000.0))
>>> rule.target(0.6, 0.0, 100.0), rule.target(0.6, 15.0, 100.0), rule.target(0.6, 25.0, 100.0)
(10.0, 20.0, 25.0)
>>> rule.target(0.52, 15.0, 100.0), rule.target(0.4, 15.0, 100.0)
(15.0, 0.0)
>>> flat = Rule.from_config(TradingConfig(fee_bps=0.0, candle_slippage_bps=0.0))
>>> sim = flat.simulate(np.array([0.9, 0.9, 0.1, 0.1]), np.array([100.0, 110.0, 121.0, 121.0]))
>>> round(sim.pnl, 6), sim.fills, sim.exposure   # 1,000 in at 100, scaled in at 110, out at 121
(300.0, 3, 0.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ares_stream.config import TradingConfig

__all__ = ["MIN_NOTIONAL", "Rule", "Simulation", "adverse"]

MIN_NOTIONAL = 5.0  # quote: Binance spot's usual NOTIONAL filter on USDT pairs


def adverse(side: str, ref: float, bps: float) -> float:
    """``ref`` moved ``bps`` against a market order of ``side``.

    >>> adverse("BUY", 100.0, 2.0), adverse("SELL", 100.0, 2.0)
    (100.02, 99.98)
    """
    return ref * (1.0 + bps / 1e4) if side == "BUY" else ref * (1.0 - bps / 1e4)


@dataclass(frozen=True)
class Simulation:
    """What trading :class:`Rule` on a stretch of bars made, in quote and as fractions of cash."""

    pnl: float  # after fees and slippage, quote
    gross: float  # before fees and slippage, quote
    fees: float
    slippage: float  # quote paid to slippage
    fills: int
    exposure: float  # share of bars holding a position
    hit_rate: float  # share of round trips that made money after costs (NaN: none)
    turnover: float  # quote traded / starting cash
    returns: np.ndarray  # per-bar change of equity / starting cash
    cash: float  # the starting cash the fractions are of

    @property
    def total_return(self) -> float:
        """PnL after costs as a fraction of the starting cash."""
        return self.pnl / self.cash


@dataclass(frozen=True)
class Rule:
    """Thresholds, sizing, caps and costs of the strategy (see the module docstring)."""

    enter: float = 0.55
    exit: float = 0.5
    order_notional: float = 1_000.0
    max_position_notional: float = 2_000.0
    fee_bps: float = 10.0
    slippage_bps: float = 2.0  # fills without a trade tape (candles, validation)
    starting_cash: float = 10_000.0
    min_notional: float = MIN_NOTIONAL

    @classmethod
    def from_config(cls, cfg: TradingConfig) -> Rule:
        """The rule of a config's ``[trading]`` section."""
        return cls(cfg.enter, cfg.exit, cfg.order_notional, cfg.max_position_notional,
                   cfg.fee_bps, cfg.candle_slippage_bps, cfg.starting_cash)

    def target(self, p: float, qty: float, price: float) -> float:
        """The base quantity to hold after a bar whose traded probability is ``p``."""
        if p > self.enter and price > 0.0:
            cap = self.max_position_notional / price
            return max(qty, min(qty + self.order_notional / price, cap))
        if p < self.exit:
            return 0.0
        return qty

    def simulate(self, p: np.ndarray, close: np.ndarray) -> Simulation:
        """Trade the rule bar by bar on ``p`` (per bar) over the bars' ``close`` prices.

        A hot loop of plain floats: validation runs it for every candidate on every fold.
        """
        ps, cs = np.asarray(p, dtype=np.float64).tolist(), np.asarray(close, dtype=float).tolist()
        n = len(ps)
        fee, bps = self.fee_bps / 1e4, self.slippage_bps
        cash0 = cash = self.starting_cash
        qty = fees = slipped = traded = 0.0
        fills = held = wins = trips = 0
        equity = np.empty(n + 1)
        equity[0] = cash0
        trip_start = cash0
        for t in range(n):
            price = cs[t]
            if price != price or price <= 0.0:
                equity[t + 1] = equity[t]
                continue
            if qty > 0.0:
                held += 1
            target = self.target(ps[t], qty, price) if t < n - 1 else 0.0
            delta = target - qty
            if delta != 0.0 and not (abs(delta) * price < self.min_notional and target > 0.0):
                fill = adverse("BUY" if delta > 0.0 else "SELL", price, bps)  # at the next open
                if delta > 0.0:  # a buy within the cash
                    delta = min(delta, max(cash, 0.0) / (fill * (1.0 + fee)))
                if delta != 0.0:
                    notional = abs(delta) * fill
                    if qty == 0.0:
                        trip_start = cash
                    cash -= delta * fill + notional * fee
                    qty += delta
                    fees += notional * fee
                    slipped += abs(delta) * abs(fill - price)
                    traded += notional
                    fills += 1
                    if qty <= 1e-12:
                        qty = 0.0
                        trips += 1
                        wins += cash > trip_start
            equity[t + 1] = cash + qty * price
        pnl = float(equity[-1] - cash0)
        return Simulation(
            pnl=pnl, gross=pnl + fees + slipped, fees=fees, slippage=slipped, fills=fills,
            exposure=held / n if n else math.nan, hit_rate=wins / trips if trips else math.nan,
            turnover=traded / cash0, returns=np.diff(equity) / cash0, cash=cash0)
