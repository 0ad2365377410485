"""Risk limits: position cap, daily loss, drawdown and stale-feed kill switches, in event time.

- **position cap**: :meth:`Risk.clamp` limits a buy so the position stays within
  ``max_position_notional`` of quote;
- **daily loss**: equity more than ``max_daily_loss`` below the equity the UTC day opened with
  (the last equity of the day before) trips ``"daily loss limit"``; sticky until the next UTC day
  *of event time* — in a replay the recorded day, not the wall clock's: the first mark or order
  check stamped on the next day clears it, and trading resumes that day;
- **drawdown**: equity more than ``max_drawdown`` (a fraction) below its running peak trips
  ``"drawdown kill switch"``; sticky across days until :meth:`Risk.reset` — and nothing in
  ares-stream calls ``reset`` (neither replay, the daemon, SIGHUP nor a command). A tripped
  drawdown switch therefore holds for the rest of the run: to the end of a replay's input, until
  the daemon stops. A restart that resumes the run (after a crash or a kill) restores it from the
  checkpoint; a new run (after a clean stop, or when the config changed and the checkpoint is not
  restored) starts fresh, its peak the starting equity;
- **stale feed**: no trade seen for ``stale_feed_s`` of event time (or none yet) refuses orders with
  ``"stale feed"``; it trips nothing and clears with the next trade.

The broker flattens when a switch trips and asks :meth:`Risk.allows` before every order. All of
it is in :meth:`Risk.state`, so a resumed run continues exactly where its checkpoint left off.

>>> from ares_stream.config import TradingConfig
>>> day = 86_400 * 10**9
>>> r = Risk(TradingConfig(max_daily_loss=500.0, max_drawdown=0.2), 10_000.0)
>>> r.on_trade_seen(5)
>>> r.allows(10)
(True, '')
>>> r.on_equity(10, 9_400.0)
>>> r.tripped, r.allows(20)
('daily loss limit', (False, 'daily loss limit'))
>>> r.on_trade_seen(day + 5)
>>> r.allows(day + 10)                          # a new UTC day
(True, '')
>>> r.allows(day + 61 * 10**9)                  # no trade for 61 s
(False, 'stale feed')
"""

from __future__ import annotations

from typing import Any

from ares_stream.config import TradingConfig
from ares_stream.events import NS_PER_S

NS_PER_DAY = 86_400 * NS_PER_S
DAILY_LOSS = "daily loss limit"
DRAWDOWN = "drawdown kill switch"
STALE = "stale feed"


class Risk:
    """The limits of one account; feed it equity and trade times, ask it before each order."""

    def __init__(self, cfg: TradingConfig, starting_equity: float) -> None:
        self.cfg = cfg
        self.starting_equity = starting_equity
        self.tripped: str | None = None
        self.peak = starting_equity
        self.drawdown = 0.0
        self._day = -1  # UTC day number (event time) of the last equity seen
        self._day_start = starting_equity
        self._last_equity = starting_equity
        self._tripped_day = -1
        self._last_trade: int | None = None
        self._stale_ns = round(cfg.stale_feed_s * NS_PER_S)

    def on_equity(self, ts_event: int, equity: float) -> None:
        """Track the day's opening equity, the peak and the drawdown; trip a switch if breached."""
        self._roll_day(ts_event)
        self.peak = max(self.peak, equity)
        self.drawdown = 1.0 - equity / self.peak if self.peak > 0.0 else 0.0
        self._last_equity = equity
        if self.tripped == DRAWDOWN:
            return
        if self.drawdown > self.cfg.max_drawdown:
            self.tripped = DRAWDOWN
        elif self.tripped is None and self._day_start - equity > self.cfg.max_daily_loss:
            self.tripped, self._tripped_day = DAILY_LOSS, self._day

    def on_trade_seen(self, ts_event: int) -> None:
        """A trade (or, on a candle replay, a bar) arrived: the feed is alive at ``ts_event``."""
        if self._last_trade is None or ts_event > self._last_trade:
            self._last_trade = ts_event

    def allows(self, ts_event: int) -> tuple[bool, str]:
        """Whether an order may be sent at ``ts_event``, and if not, why."""
        self._roll_day(ts_event)
        if self.tripped is not None:
            return False, self.tripped
        if self._last_trade is None or ts_event - self._last_trade > self._stale_ns:
            return False, STALE
        return True, ""

    def clamp(self, symbol: str, target_qty: float, price: float) -> float:
        """``target_qty`` limited to ``[0, max_position_notional / price]`` (long-only spot)."""
        cap = self.cfg.max_position_notional / price if price > 0.0 else 0.0
        return max(0.0, min(target_qty, cap))

    def reset(self) -> None:
        """Clear a tripped switch and restart the peak from now: an operator's decision, which
        nothing in ares-stream makes for them (see the module's docstring)."""
        self.tripped = None
        self.peak = self._last_equity
        self.drawdown = 0.0

    def _roll_day(self, ts_event: int) -> None:
        day = ts_event // NS_PER_DAY
        if day <= self._day:
            return
        if self._day >= 0:  # the day opens with the last equity of the day before
            self._day_start = self._last_equity
        self._day = day
        if self.tripped == DAILY_LOSS and day > self._tripped_day:
            self.tripped = None

    def state(self) -> dict[str, Any]:
        """Plain data for a checkpoint."""
        return {"tripped": self.tripped, "peak": self.peak, "drawdown": self.drawdown,
                "day": self._day, "day_start": self._day_start,
                "last_equity": self._last_equity, "tripped_day": self._tripped_day,
                "last_trade": self._last_trade}

    def restore(self, s: dict[str, Any]) -> None:
        """Continue from :meth:`state`'s output."""
        self.tripped, self.peak, self.drawdown = s["tripped"], s["peak"], s["drawdown"]
        self._day, self._day_start = s["day"], s["day_start"]
        self._last_equity, self._tripped_day = s["last_equity"], s["tripped_day"]
        self._last_trade = s["last_trade"]
