"""Reconciliation at start: the exchange is the truth, and the live broker adopts it.

In order:

1. the clock offset to the exchange (signed requests carry its time) and the symbols' filters
   (``exchangeInfo``); the symbols must share one quote asset (the broker's cash);
2. orders a checkpoint restored as in flight are queried to their final state, and their fills
   booked (an order the exchange never had is closed as not placed);
3. open orders: ours (client id ``ares-…``) are cancelled, anyone else's are left and logged;
4. balances: cash := free + locked quote, each symbol's position := free + locked base. A
   position that appears gets the last traded price as its average price. The differences with
   what the broker believed are logged (``reconciled``), per asset. A broker that did not restore a
   checkpoint starts its risk limits from the exchange's equity, not from ``starting_cash``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from ares_stream.errors import AresError
from ares_stream.trading.filters import exchange_filters
from ares_stream.trading.paper import Position
from ares_stream.trading.risk import Risk

if TYPE_CHECKING:
    from ares_stream.trading.live import LiveBroker

__all__ = ["PREFIX", "Reconciliation", "reconcile"]

PREFIX = "ares-"  # every client id of ours starts with it

log = structlog.get_logger("ares_stream.trading")
_TINY = 1e-9  # a difference below this is float noise, not news


@dataclass
class Reconciliation:
    """What :meth:`LiveBroker.start` found and did."""

    balances: dict[str, tuple[float, float]] = field(default_factory=dict)  # asset: free, locked
    cancelled: list[str] = field(default_factory=list)  # our open orders, cancelled
    foreign: list[str] = field(default_factory=list)  # open orders not ours, left alone
    differences: dict[str, float] = field(default_factory=dict)  # asset: exchange − believed
    resolved: list[str] = field(default_factory=list)  # restored in-flight orders, queried


async def reconcile(broker: LiveBroker, symbols: list[str]) -> Reconciliation:
    """Load filters, settle restored orders, cancel ours, adopt the balances."""
    await _sync_time(broker)
    broker.filters = exchange_filters(await broker.call(broker.client.get_exchange_info),
                                      symbols)
    quotes = sorted({f.quote for f in broker.filters.values()})
    if len(quotes) != 1:
        raise AresError(f"live trading needs symbols of one quote asset, got {quotes}")
    broker.quote_asset = quotes[0]
    rec = Reconciliation()
    for o in list(broker.in_flight):
        await broker.resolve(o, "in flight at the checkpoint")
        rec.resolved.append(o.client_id)
    await _cancel_open(broker, rec)
    account = await broker.call(broker.client.get_account)
    assets = {broker.quote_asset} | {f.base for f in broker.filters.values()}
    rec.balances = {b["asset"]: (float(b["free"]), float(b["locked"]))
                    for b in account["balances"] if b["asset"] in assets}
    await _adopt(broker, rec)
    log.info("reconciled", **asdict(rec), cash=round(broker.cash, 8),
             equity=round(broker.equity, 8))
    return rec


async def _sync_time(broker: LiveBroker) -> None:
    """Sign with the exchange's clock: python-binance adds ``timestamp_offset``."""
    before = time.time()
    server = (await broker.call(broker.client.get_server_time))["serverTime"]
    broker.client.timestamp_offset = server - int((before + time.time()) * 500)


async def _cancel_open(broker: LiveBroker, rec: Reconciliation) -> None:
    for symbol in broker.filters:
        for order in await broker.call(broker.client.get_open_orders, symbol=symbol):
            cid = order["clientOrderId"]
            if not cid.startswith(PREFIX):
                rec.foreign.append(cid)
                log.warning("foreign_order_left", client_id=cid, symbol=symbol,
                            side=order["side"], qty=order["origQty"], price=order["price"])
                continue
            await broker.call(broker.client.cancel_order, symbol=symbol, orderId=order["orderId"])
            rec.cancelled.append(cid)
            if broker.store is not None:
                broker.store.order_status(cid, "cancelled", "open at start",
                                          exchange_id=str(order["orderId"]))
            log.info("order_cancelled", client_id=cid, symbol=symbol, reason="open at start")


async def _adopt(broker: LiveBroker, rec: Reconciliation) -> None:
    """Cash and positions := the exchange's balances; the differences into ``rec``."""
    def total(asset: str) -> float:
        """The exchange's balance of ``asset``, free plus locked (0 when there is none)."""
        free, locked = rec.balances.get(asset, (0.0, 0.0))
        return free + locked

    believed = {broker.quote_asset: broker.cash}
    for symbol, f in broker.filters.items():
        believed[f.base] = broker.positions.get(symbol, Position()).qty
    broker.cash = total(broker.quote_asset)
    now = time.time_ns()
    for symbol, f in broker.filters.items():
        qty = total(f.base)
        pos = broker.positions.get(symbol)
        if pos is None and qty <= 0.0:
            continue
        pos = broker.positions.setdefault(symbol, Position())
        if abs(qty - pos.qty) > _TINY:
            if pos.qty <= 0.0 or pos.avg_price <= 0.0:
                pos.avg_price = await _last_price(broker, symbol)
            pos.qty, pos.ts_event = qty, now
            if broker.store is not None:
                broker.store.position(symbol, pos.qty, pos.avg_price, pos.realized_pnl, now)
    broker.positions_changed()
    rec.differences = {asset: total(asset) - was for asset, was in believed.items()
                       if abs(total(asset) - was) > _TINY}
    value = sum(p.qty * broker.last_price(s, p.avg_price) for s, p in broker.positions.items())
    broker.equity = broker.cash + value
    if not broker.restored:
        broker.risk = Risk(broker.cfg, broker.equity)


async def _last_price(broker: LiveBroker, symbol: str) -> float:
    """The last known price of ``symbol``: the broker's, else the exchange's last trade."""
    price = broker.last_price(symbol, 0.0)
    if price > 0.0:
        return price
    try:
        rows: list[dict[str, Any]] = await broker.call(broker.client.get_aggregate_trades,
                                                       symbol=symbol, limit=1)
    except Exception as exc:  # a price for the books only: carry on without one
        log.warning("price_unavailable", symbol=symbol, error=repr(exc))
        return 0.0
    if rows:
        broker.note_price(symbol, float(rows[-1]["p"]))
    return broker.last_price(symbol, 0.0)
