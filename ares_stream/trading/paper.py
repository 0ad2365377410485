"""The paper broker: market orders filled as the market would fill them, in event time, no keys.

The fill model:

- **the decision time** of a bar is the event time of the trade that closed it — the first trade
  of the next interval, which the engine feeds (``on_trade``) *before* the bar (``on_bar``) — or
  the bar's end (``bar.ts_event``) for a candle. Its order is submitted then (``ts_submit``) and
  fills at the **first later trade at least** ``latency_ms`` **after it**: never at the closing
  trade nor any trade before it;
- **slippage** ``"book"``: a BUY pays the last known ask, a SELL gets the last known bid — a book
  top more than ``book_max_age_ms`` (event time) older than the fill is not used; without one,
  and with ``"bps"``, the fill is the trade's price moved ``slippage_bps`` against us;
- **no trade tape** (candles: the symbol never had a trade): an order fills at the next bar's
  open moved ``candle_slippage_bps`` against us (BUY: open × (1 + s), SELL: open × (1 − s)), at
  ``ts_submit + latency`` (the open's time + latency); an order submitted inside that bar fills
  at its close, at its end. Latency moves the time, the slippage the price;
- the fill row records the slippage in bps against the reference price (the trade, or the open);
  **fees** ``fee_bps`` of the notional, in the quote asset, on both legs;
- long-only spot: a BUY is cut to what the cash pays for (fee included), a SELL to the position;
  an order below ``MIN_NOTIONAL`` quote is not sent unless it closes the position. While a symbol
  has an order in flight, its bars decide nothing.

``on_bar`` marks the account to market at the bar's close (one equity row per bar), feeds the
risk limits, flattens when a kill switch trips, then turns the bar's probability into an order
(``p`` NaN, as a regression model gives: no decision). ``blocked`` (the reason the signal may not
trade, e.g. no validated edge) targets flat: an open position is sold by a normal market order and
nothing is bought. The **signal gate** of each symbol — trading, or flat and why — is logged
(``signal_gate_changed``) and stored (``signal_gate``) once per change, not per bar; it is part of
:meth:`PaperBroker.state`, so a restart writes no duplicate row.

**Why each trade**: given ``explain`` (the batch learner's :meth:`reasons
<ares_stream.batch.learner.BatchLearner.reasons>`), an order a bar's decision sends stores the
top SHAP contributions of the booster prediction behind it (``order_reasons``); they are computed
only then, never per bar. A kill switch's sale has none.

Client ids are deterministic: ``<symbol>-<bar ts_event>`` (``r<run>-`` in front within a run,
``-k<n>`` behind for a kill-switch sale). Paper mode imports no exchange client at all.

>>> from structlog.testing import capture_logs
>>> from ares_stream.config import TradingConfig
>>> from ares_stream.events import Bar, Trade
>>> broker = PaperBroker(TradingConfig(fee_bps=10.0, slippage="bps", slippage_bps=0.0), None)
>>> s, ms = 10**9, 10**6
>>> def trade(ts, i, price=100.0): return Trade("BTCUSDT", ts, ts, i, price, 1.0, False)
>>> with capture_logs() as logs:
...     broker.on_trade(trade(59 * s, 1))                 # inside the bar [0 s, 60 s)
...     broker.on_trade(trade(60 * s + 80 * ms, 2))       # opens the next bar: closes this one
...     broker.on_bar(Bar("BTCUSDT", 60 * s, 60 * s, 0, 60 * s, 100.0, 100.0, 100.0, 100.0,
...                       1.0, None, 1, 100.0), 0.6)      # decided at 60.08 s
...     broker.on_trade(trade(60 * s + 120 * ms, 3))      # < 50 ms after the decision
...     broker.on_trade(trade(60 * s + 130 * ms, 4))      # fills here
>>> [(e["event"], e["client_id"]) for e in logs]
[('order_submitted', 'BTCUSDT-60000000000'), ('order_filled', 'BTCUSDT-60000000000')]
>>> broker.positions["BTCUSDT"].qty, broker.positions["BTCUSDT"].ts_event, broker.fees_paid
(10.0, 60130000000, 1.0)

On candles the next bar's open fills it, ``candle_slippage_bps`` (2 by default) worse:

>>> candles = PaperBroker(TradingConfig(), None)
>>> def candle(end, open_): return Bar("BTCUSDT", end * s, end * s, (end - 60) * s, 60 * s,
...                                    open_, open_, open_, open_, 1.0, None, 1, open_)
>>> with capture_logs():
...     candles.on_bar(candle(60, 100.0), 0.6)        # decided at 60 s: BUY 10
...     candles.on_bar(candle(120, 101.0), 0.52)      # opened at 101.0
>>> round(candles.positions["BTCUSDT"].avg_price, 6), candles.positions["BTCUSDT"].ts_event
(101.0202, 60050000000)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import astuple, dataclass
from typing import Any

import structlog

from ares_stream.config import Config, TradingConfig
from ares_stream.events import NS_PER_MS, Bar, BookTop, Trade
from ares_stream.learners.importance import Reason
from ares_stream.rule import MIN_NOTIONAL, Rule, adverse
from ares_stream.store.trading import TradingStore
from ares_stream.trading.risk import Risk

log = structlog.get_logger("ares_stream.trading")

Explain = Callable[[str], "tuple[int | None, list[Reason]] | None"]  # symbol -> (model, reasons)


@dataclass
class Position:
    """A long spot position: base quantity, average entry price, realized PnL (before fees)."""

    qty: float = 0.0
    avg_price: float = 0.0
    realized_pnl: float = 0.0
    ts_event: int = 0


@dataclass
class Order:
    """A MARKET order in flight."""

    client_id: str
    symbol: str
    side: str  # BUY | SELL
    qty: float
    ts_event: int  # the bar that decided it, ns
    ts_submit: int  # event time it was sent (the decision time), ns


class PaperBroker:
    """Market orders fill at the first trade at least ``latency_ms`` after the decision, at that
    trade's price plus slippage (on candles: the next open, plus slippage); fees on both legs."""

    def __init__(self, cfg: TradingConfig, store: TradingStore | None, *,
                 run_id: int | None = None) -> None:
        self.cfg = cfg
        self.rule = Rule.from_config(cfg)  # the one trading rule, as validation trades it
        self.store = store
        self.run_id = run_id if run_id is not None or store is None else store.run_id
        self.cash = cfg.starting_cash
        self.positions: dict[str, Position] = {}
        self.fees_paid = 0.0
        self.orders = 0
        self.fills = 0
        self.equity = cfg.starting_cash
        self.blocked: Counter[str] = Counter()  # orders refused by a risk limit, by reason
        self.risk = Risk(cfg, cfg.starting_cash)
        self.halted = ""  # why the daemon forbids new orders now ('' : it does not), e.g. a
        # failing checkpoint: orders that cannot be recorded are not sent
        self._pending: list[Order] = []
        self._book: dict[str, tuple[float, float, int]] = {}  # bid, ask, ts_event
        self._last: dict[str, float] = {}  # last price per symbol
        self._seen: dict[str, int] = {}  # event time of each symbol's last trade (its tape)
        self._gate: dict[str, str] = {}  # why each symbol's signal may not trade ('': it may)
        self._flattened_for: str | None = None
        self._latency = round(cfg.latency_ms * NS_PER_MS)
        self._book_age = round(cfg.book_max_age_ms * NS_PER_MS)
        self._prefix = "" if self.run_id is None else f"r{self.run_id}-"
        self.explain: Explain | None = None  # why the symbol's last bar predicted what it did
        self._held: list[tuple[str, Position]] | None = None  # open positions (None: re-read)
        self._deciding = False  # an order now sent comes from a bar's prediction

    # -- events -----------------------------------------------------------------------------

    def on_trade(self, t: Trade) -> None:
        """A trade — fed before the bar it closes: fill the symbol's orders due at it.
        Hot path: one check when nothing waits."""
        self._last[t.symbol] = t.price
        self._seen[t.symbol] = t.ts_event
        self.risk.on_trade_seen(t.ts_event)
        if self._pending:
            for o in [o for o in self._pending if o.symbol == t.symbol]:
                if t.ts_event >= o.ts_submit + self._latency:
                    self._fill(o, t.price, t.ts_event, self._trade_price(o.side, t))

    def on_book(self, b: BookTop) -> None:
        """Keep the symbol's book top: with ``slippage = "book"`` a market order pays its spread."""
        self._book[b.symbol] = (b.bid, b.ask, b.ts_event)

    def on_bar(self, bar: Bar, p: float, blocked: str = "") -> None:
        """A closed bar and its traded probability: (candle fills,) mark, risk, signal gate,
        order. ``p`` NaN: no decision; ``blocked``: why the signal may not trade (go flat)."""
        sym = bar.symbol
        self._last[sym] = bar.close
        if sym not in self._seen:  # no tape: a candle
            self.risk.on_trade_seen(bar.ts_event)
            self._fill_at_bar(bar)
        now = max(self._seen.get(sym, 0), bar.ts_event)  # the closing trade's time, or the end
        self.mark(bar.ts_event, {}, sent_at=now)
        if not math.isnan(p):
            self._set_gate(bar, blocked)
            self._decide(bar, p, blocked, now)

    def mark(self, ts_event: int, prices: Mapping[str, float], *,
             sent_at: int | None = None) -> float:
        """Equity = cash + Σ qty × price (``prices`` over the last known); record it, feed the
        risk limits, and flatten (orders sent at ``sent_at``) if a kill switch has just tripped."""
        self._last.update(prices)
        last = self._last
        value = sum(pos.qty * last.get(sym, pos.avg_price) for sym, pos in self.held())
        self.equity = self.cash + value
        risk = self.risk
        risk.on_equity(ts_event, self.equity)
        if self.store is not None:
            self.store.equity(ts_event, self.cash, value, self.equity, risk.drawdown,
                              self.fees_paid)
        if risk.tripped != self._flattened_for:
            self._flattened_for = risk.tripped
            if risk.tripped is not None:
                log.warning("kill_switch_tripped", reason=risk.tripped, ts_event=ts_event,
                            equity=round(self.equity, 2), drawdown=round(risk.drawdown, 4))
                self.flatten(ts_event, risk.tripped, sent_at)
        return self.equity

    def held(self) -> list[tuple[str, Position]]:
        """The open positions (``qty`` not 0), in the order of :attr:`positions`: what a mark
        values, without walking every symbol ever filled. Re-read after a position opens or
        closes (:meth:`positions_changed`); the positions a mark leaves out are worth exactly 0,
        so the sum is the same to the last bit."""
        if self._held is None:
            self._held = [(s, p) for s, p in self.positions.items() if p.qty != 0.0]
        return self._held

    def positions_changed(self) -> None:
        """A position was opened or closed outside of a fill (a reconciliation): re-read them."""
        self._held = None

    def flatten(self, ts_event: int, reason: str, sent_at: int | None = None) -> None:
        """Cancel every order in flight and sell every position (sent at ``sent_at``, default
        ``ts_event``) at its next trade."""
        for o in self._pending:
            self._close(o, "cancelled", reason)
        self._pending.clear()
        at = ts_event if sent_at is None else sent_at
        for sym, pos in sorted(self.positions.items()):
            if pos.qty > 0.0:
                cid = f"{self._prefix}{sym}-{ts_event}-k{self.orders}"
                self._submit(Order(cid, sym, "SELL", pos.qty, ts_event, at))

    # -- decisions --------------------------------------------------------------------------

    def _set_gate(self, bar: Bar, blocked: str) -> None:
        """Log and store the symbol's signal gate when it changes (trading ↔ flat, or why)."""
        sym = bar.symbol
        if self._gate.get(sym, "") == blocked:
            return
        self._gate[sym] = blocked
        log.info("signal_gate_changed", symbol=sym, ts_event=bar.ts_event, trading=not blocked,
                 reason=blocked)
        if self.store is not None:
            self.store.signal_gate(sym, bar.ts_event, not blocked, blocked)

    def _decide(self, bar: Bar, p: float, blocked: str, now: int) -> None:
        sym, price = bar.symbol, bar.close
        if self.halted:
            self._block(sym, bar.ts_event, self.halted)
            return
        if price <= 0.0 or any(o.symbol == sym for o in self._pending):
            return
        pos = self.positions.get(sym)
        qty = pos.qty if pos is not None else 0.0
        target = 0.0 if blocked else self.rule.target(p, qty, price)
        if target > qty:
            target = max(qty, self.risk.clamp(sym, target, price))
        delta = target - qty
        if delta == 0.0 or (abs(delta) * price < MIN_NOTIONAL and target > 0.0):
            return
        ok, reason = self.risk.allows(now)
        if not ok:
            self._block(sym, bar.ts_event, reason)
            return
        side = "BUY" if delta > 0.0 else "SELL"
        self._deciding = True
        try:
            self._submit(Order(f"{self._prefix}{sym}-{bar.ts_event}", sym, side, abs(delta),
                               bar.ts_event, now))
        finally:
            self._deciding = False

    def _block(self, symbol: str, ts_event: int, reason: str) -> None:
        self.blocked[reason] += 1
        if self.blocked[reason] == 1 or self.blocked[reason] % 1000 == 0:
            log.info("order_blocked", symbol=symbol, ts_event=ts_event, reason=reason,
                     times=self.blocked[reason])

    def _submit(self, o: Order) -> None:
        self._pending.append(o)
        self.orders += 1
        if self.store is not None:
            self.store.order(o.client_id, o.symbol, o.side, o.qty, o.ts_event, o.ts_submit,
                             mode="paper")
            self._explain(o)
        log.info("order_submitted", client_id=o.client_id, symbol=o.symbol, side=o.side,
                 qty=o.qty, ts_submit=o.ts_submit)

    def _explain(self, o: Order) -> None:
        """Store the reasons of the prediction that sent ``o`` (after its order row)."""
        if self.explain is None or self.store is None or not self._deciding:
            return
        why = self.explain(o.symbol)
        if why is not None:
            self.store.reasons(o.client_id, why[0], why[1])

    # -- fills ------------------------------------------------------------------------------

    def _fill_at_bar(self, bar: Bar) -> None:
        """No trade tape: fill due orders at this bar's open (its close if sent inside it),
        ``candle_slippage_bps`` worse."""
        for o in [o for o in self._pending if o.symbol == bar.symbol]:
            due = o.ts_submit + self._latency
            if due > bar.ts_event:
                continue
            if o.ts_submit <= bar.open_time:
                ref, ts = bar.open, max(due, bar.open_time)
            else:
                ref, ts = bar.close, bar.ts_event
            self._fill(o, ref, ts, adverse(o.side, ref, self.cfg.candle_slippage_bps))

    def _trade_price(self, side: str, t: Trade) -> float:
        """The fill price of a market order meeting trade ``t``: across a fresh book top, or the
        trade's price plus ``slippage_bps``."""
        book = self._book.get(t.symbol)
        if (self.cfg.slippage == "book" and book is not None
                and t.ts_event - book[2] <= self._book_age):
            quote = book[1] if side == "BUY" else book[0]
            if quote > 0.0:
                return quote
        return adverse(side, t.price, self.cfg.slippage_bps)

    def _fill(self, o: Order, ref: float, ts_event: int, price: float) -> None:
        """Fill ``o`` at ``price`` (``ref``: the market price it slipped from)."""
        self._pending.remove(o)
        fee_rate = self.cfg.fee_bps / 1e4
        pos = self.positions.setdefault(o.symbol, Position())
        if o.side == "BUY":
            qty = min(o.qty, max(self.cash, 0.0) / (price * (1.0 + fee_rate)))
        else:
            qty = min(o.qty, pos.qty)
        if qty <= 0.0:
            self._close(o, "rejected", "insufficient cash" if o.side == "BUY" else "no position")
            return
        fee = qty * price * fee_rate
        self._apply(pos, o.side, qty, price, fee, ts_event)
        slip_bps = (price / ref - 1.0) * 1e4 * (1.0 if o.side == "BUY" else -1.0)
        self.fills += 1
        if self.store is not None:
            self.store.fill(o.client_id, o.symbol, o.side, qty, price, fee, ts_event, slip_bps)
            self._close(o, "filled", "" if qty == o.qty else "partial")
            self.store.position(o.symbol, pos.qty, pos.avg_price, pos.realized_pnl, ts_event)
        log.info("order_filled", client_id=o.client_id, symbol=o.symbol, side=o.side, qty=qty,
                 price=price, fee=fee, ts_event=ts_event)

    def _apply(self, pos: Position, side: str, qty: float, price: float, fee: float,
               ts_event: int) -> None:
        """Book a fill: cash, fees, position, average price, realized PnL."""
        self.fees_paid += fee
        was_open = pos.qty != 0.0
        if side == "BUY":
            self.cash -= qty * price + fee
            pos.avg_price = (pos.qty * pos.avg_price + qty * price) / (pos.qty + qty)
            pos.qty += qty
        else:
            self.cash += qty * price - fee
            pos.realized_pnl += (price - pos.avg_price) * qty
            pos.qty -= qty
            if pos.qty <= 0.0:
                pos.qty, pos.avg_price = 0.0, 0.0
        pos.ts_event = ts_event
        if was_open != (pos.qty != 0.0):
            self._held = None

    def _close(self, o: Order, status: str, reason: str) -> None:
        if self.store is not None:
            self.store.order_status(o.client_id, status, reason)
        if status != "filled":
            log.info("order_closed", client_id=o.client_id, status=status, reason=reason)

    # -- checkpoints ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to continue identically, as plain (JSON-able) data."""
        return {
            "cash": self.cash, "fees_paid": self.fees_paid, "orders": self.orders,
            "fills": self.fills, "equity": self.equity, "blocked": dict(self.blocked),
            "positions": {s: list(astuple(p)) for s, p in self.positions.items()},
            "pending": [list(astuple(o)) for o in self._pending],
            "book": {s: list(b) for s, b in self._book.items()},
            "last": dict(self._last), "seen": dict(self._seen), "gate": dict(self._gate),
            "flattened_for": self._flattened_for, "risk": self.risk.state(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state`'s output (possibly after a JSON round trip)."""
        self.cash, self.fees_paid = state["cash"], state["fees_paid"]
        self.orders, self.fills, self.equity = state["orders"], state["fills"], state["equity"]
        self.blocked = Counter(state["blocked"])
        self.positions = {s: Position(*p) for s, p in state["positions"].items()}
        self._held = None
        self._pending = [Order(*o) for o in state["pending"]]
        self._book = {s: (b[0], b[1], b[2]) for s, b in state["book"].items()}
        self._last = dict(state["last"])
        self._seen = dict(state["seen"])
        self._gate = dict(state["gate"])
        self._flattened_for = state["flattened_for"]
        self.risk.restore(dict(state["risk"]))


def for_run(config: Config, store: Any, *, flush_rows: int = 2000) -> PaperBroker:
    """The paper broker of a run: replay (event time) or the paper daemon."""
    return PaperBroker(config.trading, TradingStore(store.db, store.run_id, flush_rows=flush_rows))
