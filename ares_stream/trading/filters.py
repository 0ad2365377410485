"""A symbol's trading filters as ``exchangeInfo`` publishes them: round an order to them, or name
the one it fails, before the exchange does.

- ``LOT_SIZE``: ``minQty <= qty <= maxQty`` and ``qty - minQty`` a multiple of ``stepSize``;
  quantities round **down** to the step (never more than we meant to trade);
- ``PRICE_FILTER``: ``minPrice <= price <= maxPrice`` (0: no bound) and ``price - minPrice`` a
  multiple of ``tickSize``; a limit price rounds toward the safe side (a BUY down, a SELL up);
- ``MIN_NOTIONAL`` / ``NOTIONAL``: ``price × qty`` at least ``minNotional`` (and, for
  ``NOTIONAL``, at most ``maxNotional``).

Values are :class:`~decimal.Decimal` parsed from Binance's strings, so a rounded quantity prints
exactly as the exchange will check it.

>>> f = SymbolFilters.from_info({"symbol": "BTCUSDT", "baseAsset": "BTC", "quoteAsset": "USDT",
...     "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000",
...                  "tickSize": "0.01"},
...                 {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000",
...                  "stepSize": "0.00001"},
...                 {"filterType": "NOTIONAL", "minNotional": "5", "maxNotional": "9000000"}]})
>>> f.round_qty(0.0123456789), f.limit_price(61837.63, "BUY", 20.0)
(Decimal('0.01234'), Decimal('61961.30'))
>>> f.limit_price(61837.63, "SELL", 20.0)
Decimal('61713.96')
>>> f.refusal(Decimal("0.00005"), Decimal("61961.30"))
'NOTIONAL: notional 3.098065 below minNotional 5'
>>> f.refusal(Decimal("0.01234"), Decimal("61961.30"))
''
>>> text(Decimal("0.01000000")), text(Decimal("10.00000000"))
('0.01', '10')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from ares_stream.errors import AresError

__all__ = ["SymbolFilters", "exchange_filters", "text"]

_ZERO = Decimal(0)


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))


def text(value: Decimal) -> str:
    """A decimal as an API parameter: plain notation, no trailing zeros."""
    out = f"{value.normalize():f}"
    return out if out != "-0" else "0"


def _snap(value: Decimal, base: Decimal, step: Decimal, rounding: str) -> Decimal:
    """``value`` moved onto the grid ``base + k × step`` (unchanged when ``step`` is 0)."""
    if step <= _ZERO:
        return value
    origin = base if value >= base else _ZERO
    k = ((value - origin) / step).to_integral_value(rounding)
    return (origin + k * step).quantize(step)


@dataclass(frozen=True)
class SymbolFilters:
    """The filters of one symbol (0 where exchangeInfo has no bound)."""

    symbol: str
    base: str  # base asset, e.g. BTC
    quote: str  # quote asset, e.g. USDT
    tick: Decimal = _ZERO  # PRICE_FILTER tickSize
    min_price: Decimal = _ZERO
    max_price: Decimal = _ZERO
    step: Decimal = _ZERO  # LOT_SIZE stepSize
    min_qty: Decimal = _ZERO
    max_qty: Decimal = _ZERO
    min_notional: Decimal = _ZERO  # the larger of MIN_NOTIONAL and NOTIONAL minNotional
    max_notional: Decimal = _ZERO  # NOTIONAL maxNotional
    notional_filter: str = "NOTIONAL"  # the filter that sets min_notional

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> SymbolFilters:
        """From one entry of exchangeInfo's ``symbols``."""
        by_type = {f["filterType"]: f for f in info.get("filters", [])}
        price, lot = by_type.get("PRICE_FILTER", {}), by_type.get("LOT_SIZE", {})
        old, new = by_type.get("MIN_NOTIONAL", {}), by_type.get("NOTIONAL", {})
        old_min, new_min = _dec(old.get("minNotional", 0)), _dec(new.get("minNotional", 0))
        return cls(
            symbol=info["symbol"], base=info["baseAsset"], quote=info["quoteAsset"],
            tick=_dec(price.get("tickSize", 0)), min_price=_dec(price.get("minPrice", 0)),
            max_price=_dec(price.get("maxPrice", 0)), step=_dec(lot.get("stepSize", 0)),
            min_qty=_dec(lot.get("minQty", 0)), max_qty=_dec(lot.get("maxQty", 0)),
            min_notional=max(old_min, new_min), max_notional=_dec(new.get("maxNotional", 0)),
            notional_filter="MIN_NOTIONAL" if old_min > new_min else "NOTIONAL",
        )  # fmt: skip

    def round_qty(self, qty: float | Decimal) -> Decimal:
        """``qty`` rounded down onto the LOT_SIZE grid (never below 0)."""
        return max(_snap(_dec(qty), self.min_qty, self.step, ROUND_FLOOR), _ZERO)

    def round_price(self, price: float | Decimal, *, up: bool) -> Decimal:
        """``price`` on the PRICE_FILTER grid, rounded up or down."""
        return _snap(_dec(price), self.min_price, self.tick, ROUND_CEILING if up else ROUND_FLOOR)

    def limit_price(self, last: float, side: str, slippage_bps: float) -> Decimal:
        """A marketable limit that caps slippage: ``last × (1 ± bps)``, rounded toward ``last``
        (a BUY pays at most, a SELL gets at least, the cap)."""
        slip = _dec(slippage_bps) / 10_000
        if side == "BUY":
            return self.round_price(_dec(last) * (1 + slip), up=False)
        return self.round_price(_dec(last) * (1 - slip), up=True)

    def refusal(self, qty: Decimal, price: Decimal) -> str:
        """Why the exchange would refuse a limit order of ``qty`` at ``price`` ('' if it would
        not): the failing filter's name first."""
        for check in (self._price_refusal, self._lot_refusal, self._notional_refusal):
            reason = check(qty, price)
            if reason:
                return reason
        return ""

    def is_dust(self, qty: Decimal, price: Decimal) -> bool:
        """A valid price but a quantity below ``minQty`` or the minimum notional: a remainder
        the exchange will never trade, as opposed to an order that is wrong."""
        return not self._price_refusal(qty, price) and (
            qty <= _ZERO or qty < self.min_qty or qty * price < self.min_notional)

    def _price_refusal(self, qty: Decimal, price: Decimal) -> str:
        if price <= _ZERO or price < self.min_price:
            return f"PRICE_FILTER: price {text(price)} below minPrice {text(self.min_price)}"
        if self.max_price > _ZERO and price > self.max_price:
            return f"PRICE_FILTER: price {text(price)} above maxPrice {text(self.max_price)}"
        if _snap(price, self.min_price, self.tick, ROUND_FLOOR) != price:
            return f"PRICE_FILTER: price {text(price)} not a multiple of tickSize {text(self.tick)}"
        return ""

    def _lot_refusal(self, qty: Decimal, price: Decimal) -> str:
        if qty <= _ZERO or qty < self.min_qty:
            return f"LOT_SIZE: quantity {text(qty)} below minQty {text(self.min_qty)}"
        if self.max_qty > _ZERO and qty > self.max_qty:
            return f"LOT_SIZE: quantity {text(qty)} above maxQty {text(self.max_qty)}"
        if _snap(qty, self.min_qty, self.step, ROUND_FLOOR) != qty:
            return f"LOT_SIZE: quantity {text(qty)} not a multiple of stepSize {text(self.step)}"
        return ""

    def _notional_refusal(self, qty: Decimal, price: Decimal) -> str:
        notional = qty * price
        if notional < self.min_notional:
            return (f"{self.notional_filter}: notional {text(notional)} below minNotional "
                    f"{text(self.min_notional)}")
        if self.max_notional > _ZERO and notional > self.max_notional:
            return (f"NOTIONAL: notional {text(notional)} above maxNotional "
                    f"{text(self.max_notional)}")
        return ""


def exchange_filters(info: Mapping[str, Any], symbols: Iterable[str]) -> dict[str, SymbolFilters]:
    """The filters of ``symbols`` from a whole exchangeInfo answer; an :class:`AresError` for a
    symbol the exchange does not list or does not trade."""
    listed = {s["symbol"]: s for s in info.get("symbols", [])}
    out: dict[str, SymbolFilters] = {}
    for symbol in symbols:
        entry = listed.get(symbol.upper())
        if entry is None:
            raise AresError(f"{symbol}: the exchange does not list this symbol")
        if entry.get("status", "TRADING") != "TRADING":
            raise AresError(f"{symbol}: not trading on the exchange (status {entry['status']})")
        out[entry["symbol"]] = SymbolFilters.from_info(entry)
    return out
