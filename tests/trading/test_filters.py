"""Symbol filters: parsing exchangeInfo, rounding quantities and limit prices, naming refusals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ares_stream.errors import AresError
from ares_stream.feed import RawFrame
from ares_stream.sim.exchange.rest import exchange_info
from ares_stream.sim.exchange.tape import Tape
from ares_stream.trading.filters import SymbolFilters, exchange_filters, text

INFO = {
    "symbol": "ETHBTC", "status": "TRADING", "baseAsset": "ETH", "quoteAsset": "BTC",
    "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.00001000", "maxPrice": "922327.00000000",
         "tickSize": "0.00001000"},
        {"filterType": "LOT_SIZE", "minQty": "0.00010000", "maxQty": "100000.00000000",
         "stepSize": "0.00010000"},
        {"filterType": "NOTIONAL", "minNotional": "0.00010000", "applyMinToMarket": True,
         "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
    ],
}  # fmt: skip  (a real Binance entry, trimmed)
F = SymbolFilters.from_info(INFO)


def test_parses_a_real_exchange_info_entry() -> None:
    """Assets, tick, step and notional bounds come from their filters, as decimals."""
    assert (F.base, F.quote, F.tick, F.step) == ("ETH", "BTC", Decimal("0.00001"),
                                                 Decimal("0.0001"))
    assert (F.min_notional, F.max_notional, F.notional_filter) == (
        Decimal("0.0001"), Decimal("9000000"), "NOTIONAL")


def test_limit_prices_cap_slippage_rounding_toward_the_last_price() -> None:
    """A BUY limit is last × (1 + bps) rounded down, a SELL limit last × (1 − bps) rounded up."""
    assert F.limit_price(0.05123, "BUY", 20.0) == Decimal("0.05133")  # 0.05133246 down
    assert F.limit_price(0.05123, "SELL", 20.0) == Decimal("0.05113")  # 0.05112754 up
    assert F.limit_price(0.05123, "BUY", 0.0) == Decimal("0.05123")


@pytest.mark.parametrize(("qty", "price", "reason"), [
    ("0.00005", "0.05", "LOT_SIZE: quantity 0.00005 below minQty 0.0001"),
    ("200000", "0.05", "LOT_SIZE: quantity 200000 above maxQty 100000"),
    ("0.00015", "0.05", "LOT_SIZE: quantity 0.00015 not a multiple of stepSize 0.0001"),
    ("1", "0.000001", "PRICE_FILTER: price 0.000001 below minPrice 0.00001"),
    ("1", "0.050005", "PRICE_FILTER: price 0.050005 not a multiple of tickSize 0.00001"),
    ("0.0010", "0.05", "NOTIONAL: notional 0.00005 below minNotional 0.0001"),
    ("1", "0.05", ""),
])  # fmt: skip
def test_refusals_name_the_filter(qty: str, price: str, reason: str) -> None:
    """Each violated bound is named with the filter and the values."""
    assert F.refusal(Decimal(qty), Decimal(price)) == reason


@pytest.mark.parametrize(("qty", "price", "dust"), [
    ("0.00005", "0.05", True),  # below minQty
    ("0.0010", "0.05", True),  # below the minimum notional
    ("0", "0.05", True),
    ("0.00215", "0.05", False),  # off the step grid: a wrong order, not a remainder
    ("200000", "0.05", False),
    ("0.00005", "0.000001", False),  # a bad price is never dust
    ("1", "0.05", False),
])  # fmt: skip
def test_dust_is_a_valid_price_with_too_little_to_trade(qty: str, price: str, dust: bool) -> None:
    """Only a quantity below minQty or the minimum notional at a valid price is dust."""
    assert F.is_dust(Decimal(qty), Decimal(price)) is dust


def test_the_local_exchanges_info_parses_and_unknown_symbols_are_errors() -> None:
    """exchangeInfo as the local exchange publishes it; an unlisted symbol names itself."""
    agg = (b'{"e":"aggTrade","s":"BTCUSDT","a":1,"p":"100.51","q":"0.25000","f":1,"l":1,'
           b'"T":1,"m":true}')
    info = exchange_info(Tape([RawFrame(0, agg)]))
    filters = exchange_filters(info, ["btcusdt"])
    f = filters["BTCUSDT"]
    assert (f.quote, text(f.tick), text(f.step), text(f.min_notional)) == ("USDT", "0.01",
                                                                           "0.01", "5")
    assert f.notional_filter == "NOTIONAL"  # MIN_NOTIONAL and NOTIONAL agree: the newer name
    with pytest.raises(AresError, match="ETHUSDT: the exchange does not list"):
        exchange_filters(info, ["ETHUSDT"])
    halted = {"symbols": [{**info["symbols"][0], "status": "HALT"}]}
    with pytest.raises(AresError, match="status HALT"):
        exchange_filters(halted, ["BTCUSDT"])


@given(st.decimals(min_value=0, max_value=10**6, places=12, allow_nan=False))
def test_rounded_quantities_are_on_the_grid_and_never_larger(qty: Decimal) -> None:
    """For any quantity: rounded down, at most one step below, and on the LOT_SIZE grid."""
    rounded = F.round_qty(qty)
    assert rounded <= qty and qty - rounded < F.step
    if rounded >= F.min_qty:
        assert (rounded - F.min_qty) % F.step == 0


@given(st.floats(min_value=0.0001, max_value=1000.0), st.sampled_from(["BUY", "SELL"]),
       st.floats(min_value=0.0, max_value=500.0))
def test_limit_prices_never_pass_the_cap(last: float, side: str, bps: float) -> None:
    """A BUY limit is at most, a SELL limit at least, the capped price, within one tick."""
    price = F.limit_price(last, side, bps)
    cap = Decimal(str(last)) * (1 + (Decimal(str(bps)) / 10_000) * (1 if side == "BUY" else -1))
    assert (price <= cap if side == "BUY" else price >= cap)
    assert abs(price - cap) < F.tick
