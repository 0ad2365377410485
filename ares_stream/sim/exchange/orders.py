"""The local exchange's order book of one account: checks, matching, balances and fills.

- **Checks** (in Binance's order): parameters (-1102 missing, -1100 malformed, -1116/-1117/-1115
  bad type/side/timeInForce, -1106 a parameter MARKET does not take), a duplicate
  ``newClientOrderId`` (-2010 ``Duplicate order sent.``), the filters exchangeInfo publishes
  (-1013 ``Filter failure: LOT_SIZE`` …), then the balance (-2010 ``Account has insufficient
  balance for requested action.``). The required amount is locked while the order lives.
- **Matching** against what the clock has broadcast: MARKET fills all at the match price (EXPIRED
  when nothing was broadcast yet); a LIMIT that crosses (BUY ≥ ask or last, SELL ≤ bid or last)
  fills all at the match price, else IOC/FOK expire and GTC rests (NEW, never filled later).
- Amounts are :class:`~decimal.Decimal`; answers print them with 8 decimals as Binance does.
"""

from __future__ import annotations

import bisect
import itertools
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec

from ares_stream.sim.exchange.rest import ApiError, exchange_info
from ares_stream.sim.exchange.tape import Tape

__all__ = ["OPEN", "Book", "Order", "dec", "missing", "num"]

OPEN = frozenset({"NEW", "PARTIALLY_FILLED"})
_ZERO = Decimal(0)
_CLIENT_ID = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")
_DECIMAL = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
_RESP_TYPES = ("ACK", "RESULT", "FULL")


def dec(value: str) -> Decimal:
    """``value`` as an exact :class:`~decimal.Decimal`."""
    return Decimal(value)


def s8(value: Decimal) -> str:
    """A decimal as Binance prints it: 8 places."""
    return f"{value:.8f}"


def missing(name: str) -> ApiError:
    """Binance's -1102 error for a mandatory parameter ``name`` that was not sent."""
    return ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or "
                    "malformed.")  # fmt: skip


def num(params: dict[str, str], name: str, *, default: int | None = None) -> int:
    """An integer parameter (mandatory unless it has a ``default``)."""
    text = params.get(name, "")
    if text == "" and default is not None:
        return default
    if text == "":
        raise missing(name)
    if not text.lstrip("-").isdigit():
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                       "'^[0-9]{1,20}$'.")  # fmt: skip
    return int(text)


def _amount(params: dict[str, str], name: str) -> Decimal:
    text = params.get(name, "")
    if text == "":
        raise missing(name)
    if not _DECIMAL.match(text):
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                       "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")  # fmt: skip
    return Decimal(text)


class _BookTicker(msgspec.Struct):
    b: str  # best bid price
    a: str  # best ask price


@dataclass
class Order:
    """One order and what became of it."""

    symbol: str
    order_id: int
    client_id: str
    side: str  # BUY | SELL
    type: str  # MARKET | LIMIT
    tif: str  # GTC | IOC | FOK (GTC for MARKET, as Binance prints it)
    qty: Decimal
    price: Decimal  # 0 for MARKET
    time: int  # ms
    status: str = "NEW"
    executed: Decimal = _ZERO
    quote: Decimal = _ZERO  # cummulativeQuoteQty
    updated: int = 0
    locked: Decimal = _ZERO  # balance held while open
    fills: list[dict[str, Any]] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        """The GET /api/v3/order shape."""
        return {
            "symbol": self.symbol, "orderId": self.order_id, "orderListId": -1,
            "clientOrderId": self.client_id, "price": s8(self.price), "origQty": s8(self.qty),
            "executedQty": s8(self.executed), "cummulativeQuoteQty": s8(self.quote),
            "status": self.status, "timeInForce": self.tif, "type": self.type, "side": self.side,
            "stopPrice": s8(_ZERO), "icebergQty": s8(_ZERO), "time": self.time,
            "updateTime": self.updated or self.time, "isWorking": True, "workingTime": self.time,
            "origQuoteOrderQty": s8(_ZERO), "selfTradePreventionMode": "NONE",
        }  # fmt: skip

    def answer(self, resp_type: str) -> dict[str, Any]:
        """The POST /api/v3/order answer: ACK, RESULT or FULL."""
        out: dict[str, Any] = {"symbol": self.symbol, "orderId": self.order_id,
                               "orderListId": -1, "clientOrderId": self.client_id,
                               "transactTime": self.updated or self.time}
        if resp_type == "ACK":
            return out
        view = self.view()
        for key in ("price", "origQty", "executedQty", "origQuoteOrderQty",
                    "cummulativeQuoteQty", "status", "timeInForce", "type", "side",
                    "workingTime", "selfTradePreventionMode"):
            out[key] = view[key]
        if resp_type == "FULL":
            out["fills"] = [dict(f) for f in self.fills]
        return out


class Book:
    """Balances (asset → [free, locked]), orders and trades of one account."""

    def __init__(self, fee_bps: float, commission: str) -> None:
        self.fee = Decimal(str(fee_bps)) / 10_000
        self.commission = commission  # "quote" | "base": who pays a BUY's commission
        self.balances: dict[str, list[Decimal]] = {}
        self.orders: dict[int, Order] = {}
        self.trades: list[dict[str, Any]] = []
        self.updated = 0
        self._ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._tape = Tape([])
        self._position: Callable[[], int] = lambda: 0
        self._info: dict[str, dict[str, Any]] = {}
        self._books: dict[str, tuple[list[int], list[tuple[Decimal, Decimal]]]] = {}

    def bind(self, tape: Tape, position: Callable[[], int]) -> None:
        """Attach the tape and the exchange's clock (``position``: frames broadcast so far)."""
        self._tape, self._position = tape, position

    def credit(self, asset: str, amount: Decimal) -> None:
        """Add ``amount`` (negative: take) to the free balance of ``asset``."""
        self.balances.setdefault(asset, [_ZERO, _ZERO])[0] += amount

    # -- parameters -----------------------------------------------------------------------------

    def symbol(self, params: dict[str, str]) -> str:
        """The ``symbol`` parameter, checked: -1102 when missing, -1121 when not on the tape."""
        symbol = params.get("symbol", "")
        if not symbol:
            raise missing("symbol")
        if symbol not in self._tape.symbols:
            raise ApiError(-1121, "Invalid symbol.")
        return symbol

    def info(self, symbol: str) -> dict[str, Any]:
        """The symbol's exchangeInfo entry, exactly as REST publishes it."""
        if symbol not in self._info:
            self._info[symbol] = exchange_info(self._tape, [symbol])["symbols"][0]
        return self._info[symbol]

    def find(self, params: dict[str, str]) -> Order | None:
        """The order named by ``orderId`` or ``origClientOrderId`` of ``symbol``."""
        symbol = self.symbol(params)
        order_id, client_id = num(params, "orderId", default=-1), params.get("origClientOrderId")
        if order_id < 0 and not client_id:
            raise ApiError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both "
                           "were empty/null!")  # fmt: skip
        for order in self.orders.values():
            if order.symbol == symbol and (order.order_id == order_id
                                           or (order_id < 0 and order.client_id == client_id)):
                return order
        return None

    def _parse(self, params: dict[str, str]) -> Order:
        symbol = self.symbol(params)
        side, kind = params.get("side", ""), params.get("type", "")
        if not side:
            raise missing("side")
        if side not in ("BUY", "SELL"):
            raise ApiError(-1117, "Invalid side.")
        if not kind:
            raise missing("type")
        if kind not in ("MARKET", "LIMIT"):
            raise ApiError(-1116, "Invalid orderType.")
        qty, tif, price = _amount(params, "quantity"), "GTC", _ZERO
        if kind == "LIMIT":
            tif = params.get("timeInForce", "")
            if not tif:
                raise missing("timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise ApiError(-1115, "Invalid timeInForce.")
            price = _amount(params, "price")
        for name in ("price", "timeInForce"):
            if kind == "MARKET" and params.get(name):
                raise ApiError(-1106, f"Parameter '{name}' sent when not required.")
        if params.get("newOrderRespType", "FULL") not in _RESP_TYPES:
            raise ApiError(-1100, "Illegal characters found in parameter 'newOrderRespType'.")
        client_id = params.get("newClientOrderId") or secrets.token_hex(11)
        if not _CLIENT_ID.match(client_id):
            raise ApiError(-1100, "Illegal characters found in parameter 'newClientOrderId'; "
                           "legal range is '^[a-zA-Z0-9-_]{1,36}$'.")  # fmt: skip
        if any(o.symbol == symbol and o.client_id == client_id for o in self.orders.values()):
            raise ApiError(-2010, "Duplicate order sent.")
        return Order(symbol, 0, client_id, side, kind, tif, qty, price, int(time.time() * 1000))

    # -- checks ---------------------------------------------------------------------------------

    def _check_filters(self, o: Order, match: Decimal | None) -> None:
        """Raise -1013 naming the first filter the order fails (market orders: at ``match``)."""
        limit = o.type == "LIMIT"
        price = o.price if limit else match
        for f in self.info(o.symbol)["filters"]:
            kind = f["filterType"]
            if kind == "PRICE_FILTER" and limit:
                low, high, tick = dec(f["minPrice"]), dec(f["maxPrice"]), dec(f["tickSize"])
                bad = o.price < low or (high > 0 and o.price > high)
                bad = bad or (tick > 0 and (o.price - low) % tick != 0)
            elif kind == "LOT_SIZE":
                low, high, step = dec(f["minQty"]), dec(f["maxQty"]), dec(f["stepSize"])
                bad = o.qty < low or (high > 0 and o.qty > high)
                bad = bad or (step > 0 and (o.qty - low) % step != 0)
            elif kind in ("MIN_NOTIONAL", "NOTIONAL") and price is not None:
                notional = o.qty * price
                bad = (limit or f.get("applyToMarket", f.get("applyMinToMarket", True))) and (
                    notional < dec(f["minNotional"]))
                if kind == "NOTIONAL" and (limit or f.get("applyMaxToMarket", False)):
                    bad = bad or notional > dec(f["maxNotional"])
            else:
                continue
            if bad:
                raise ApiError(-1013, f"Filter failure: {kind}")

    def _required(self, o: Order, price: Decimal) -> tuple[str, Decimal]:
        """The asset and amount an order needs (and locks) at ``price``."""
        info = self.info(o.symbol)
        if o.side == "SELL":
            return info["baseAsset"], o.qty
        cost = o.qty * price
        return info["quoteAsset"], cost * (1 + self.fee) if self.commission == "quote" else cost

    # -- matching -------------------------------------------------------------------------------

    def place(self, params: dict[str, str], *, test: bool = False) -> Order:
        """Check, lock, match (or rest) one order; ``test``: check only."""
        o = self._parse(params)
        match = self.match_price(o.symbol, o.side)
        self._check_filters(o, match)
        asset, need = self._required(o, o.price if o.type == "LIMIT" else match or _ZERO)
        free, _ = self.balances.get(asset, (_ZERO, _ZERO))
        if need > free:
            raise ApiError(-2010, "Account has insufficient balance for requested action.")
        if test:
            return o
        o.order_id = next(self._ids)
        self.orders[o.order_id] = o
        self._lock(o, asset, need)
        crosses = match is not None and (
            o.type == "MARKET" or (o.price >= match if o.side == "BUY" else o.price <= match))
        if crosses and match is not None:
            self._fill(o, match)
        elif o.type == "MARKET" or o.tif != "GTC":
            self._close(o, "EXPIRED")
        return o

    def match_price(self, symbol: str, side: str) -> Decimal | None:
        """The book top's ask (BUY) or bid (SELL) if one was broadcast, else the last trade."""
        top = self._book_top(symbol)
        if top is not None and top[0 if side == "SELL" else 1] > 0:
            return top[0 if side == "SELL" else 1]
        return self._last_trade(symbol)

    def _last_trade(self, symbol: str) -> Decimal | None:
        position = self._position()
        best: tuple[int, Decimal | None] = (-1, None)
        for series, key in ((self._tape.agg_trades.get(symbol), "p"),
                            (self._tape.trades.get(symbol), "price")):
            n = series.visible(position) if series is not None else 0
            if series is not None and n and series.positions[n - 1] > best[0]:
                best = (series.positions[n - 1], Decimal(series.rows[n - 1][key]))
        return best[1]

    def _book_top(self, symbol: str) -> tuple[Decimal, Decimal] | None:
        if symbol not in self._books:  # index the symbol's book tops once
            stream, where, tops = f"{symbol.lower()}@bookticker", [], []
            for i, (name, payload) in enumerate(self._tape.frames):
                if name.lower() != stream:
                    continue
                try:
                    top = msgspec.json.decode(payload, type=_BookTicker)
                    bid_ask = (Decimal(top.b), Decimal(top.a))
                except (msgspec.DecodeError, msgspec.ValidationError, ArithmeticError):
                    continue  # a malformed frame (still broadcast): no book top
                if not (bid_ask[0].is_finite() and bid_ask[1].is_finite()):
                    continue
                where.append(i)
                tops.append(bid_ask)
            self._books[symbol] = (where, tops)
        where, tops = self._books[symbol]
        n = bisect.bisect_left(where, self._position())
        return tops[n - 1] if n else None

    def _lock(self, o: Order, asset: str, amount: Decimal) -> None:
        balance = self.balances.setdefault(asset, [_ZERO, _ZERO])
        balance[0] -= amount
        balance[1] += amount
        o.locked = amount

    def _unlock(self, o: Order) -> None:
        info = self.info(o.symbol)
        balance = self.balances[info["baseAsset" if o.side == "SELL" else "quoteAsset"]]
        balance[0] += o.locked
        balance[1] -= o.locked
        o.locked = _ZERO

    def _close(self, o: Order, status: str) -> None:
        self._unlock(o)
        o.status, o.updated = status, int(time.time() * 1000)
        self.updated = o.updated

    def cancel(self, o: Order) -> None:
        """Cancel ``o``: status ``CANCELED``, its locked balance freed."""
        self._close(o, "CANCELED")

    def _fill(self, o: Order, price: Decimal) -> None:
        """Fill all of ``o`` at ``price``: balances, commission, the trade, the answer's fill."""
        info = self.info(o.symbol)
        base, quote = info["baseAsset"], info["quoteAsset"]
        self._unlock(o)
        amount = (o.qty * price).quantize(Decimal("1e-8"))
        if o.side == "BUY" and self.commission == "base":
            fee, fee_asset = (o.qty * self.fee).quantize(Decimal("1e-8")), base
            self.credit(quote, -amount)
            self.credit(base, o.qty - fee)
        else:
            fee, fee_asset = (amount * self.fee).quantize(Decimal("1e-8")), quote
            sign = 1 if o.side == "BUY" else -1
            self.credit(base, sign * o.qty)
            self.credit(quote, -sign * amount - fee)
        trade_id = next(self._trade_ids)
        o.executed, o.quote, o.status = o.qty, amount, "FILLED"
        o.updated = self.updated = int(time.time() * 1000)
        o.fills.append({"price": s8(price), "qty": s8(o.qty), "commission": s8(fee),
                        "commissionAsset": fee_asset, "tradeId": trade_id})
        self.trades.append({
            "symbol": o.symbol, "id": trade_id, "orderId": o.order_id, "orderListId": -1,
            "price": s8(price), "qty": s8(o.qty), "quoteQty": s8(amount), "commission": s8(fee),
            "commissionAsset": fee_asset, "time": o.updated, "isBuyer": o.side == "BUY",
            "isMaker": False, "isBestMatch": True,
        })  # fmt: skip
