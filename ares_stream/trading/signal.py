"""The signal: a traded probability becomes a target position (long-only spot).

- ``p > enter``: scale in by ``order_notional`` of quote per bar, up to ``max_position_notional``
  (a position already at or past the cap — it grew with the price — is held, not trimmed);
- ``p < exit``: go flat;
- otherwise (between the thresholds, or NaN as a regression model gives): hold.

>>> from ares_stream.config import TradingConfig
>>> cfg = TradingConfig(enter=0.55, exit=0.5, order_notional=1000.0, max_position_notional=2000.0)
>>> target_position(0.6, 0.0, 100.0, cfg)      # enter: 1,000 quote of base
10.0
>>> target_position(0.6, 15.0, 100.0, cfg)     # scale in, capped at 2,000 quote
20.0
>>> target_position(0.6, 25.0, 100.0, cfg)     # already past the cap: hold
25.0
>>> target_position(0.52, 15.0, 100.0, cfg)    # between the thresholds: hold
15.0
>>> target_position(0.4, 15.0, 100.0, cfg)     # exit
0.0
"""

from __future__ import annotations

from ares_stream.config import TradingConfig


def target_position(p: float, current_qty: float, price: float, cfg: TradingConfig) -> float:
    """The base-asset quantity to hold after a bar whose traded probability is ``p``."""
    if p > cfg.enter and price > 0.0:
        cap = cfg.max_position_notional / price
        return max(current_qty, min(current_qty + cfg.order_notional / price, cap))
    if p < cfg.exit:
        return 0.0
    return current_qty
