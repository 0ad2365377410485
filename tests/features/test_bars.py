"""Time bars from trades and book tops, and bars from closed klines."""

from __future__ import annotations

import csv
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ares_stream.events import NS_PER_MS, NS_PER_S, BookTop, Kline, Trade
from ares_stream.features.bars import BarBuilder, bar_from_kline, parse_interval
from tests.conftest import shared_path

MIN = 60 * NS_PER_S


def trade(ts: int, price: float = 100.0, qty: float = 1.0, sell: bool = False) -> Trade:
    """A trade at ``ts`` ns, received 5 ns later; ``sell`` means the seller was the aggressor."""
    return Trade("BTCUSDT", ts, ts + 5, 1, price, qty, sell)


def book(ts: int, bid: float = 99.0, ask: float = 101.0) -> BookTop:
    return BookTop("BTCUSDT", ts, ts, 1, bid, 2.0, ask, 3.0)


@pytest.mark.parametrize(
    ("text", "ns"),
    [("1s", NS_PER_S), ("10s", 10 * NS_PER_S), ("1m", MIN), ("5m", 5 * MIN), ("1h", 60 * MIN),
     ("1d", 1440 * MIN), ("15m", 15 * MIN)],
)  # fmt: skip
def test_parse_interval(text: str, ns: int) -> None:
    """Binance interval names become nanoseconds."""
    assert parse_interval(text) == ns


@pytest.mark.parametrize("text", ["", "m", "0m", "1M", "1w", "1 m", "-1m", "1.5m", "1min", "01m"])
def test_parse_interval_rejects(text: str) -> None:
    """Anything but a positive integer and s/m/h/d is a ValueError that quotes the text."""
    with pytest.raises(ValueError, match="bad bar interval"):
        parse_interval(text)


def test_bars_align_to_the_interval() -> None:
    """A bar opens at floor(ts / interval) * interval and ends one interval later."""
    bb = BarBuilder("BTCUSDT", MIN)
    assert bb.on_trade(trade(61_500_000_000)) is None
    bar = bb.on_trade(trade(2 * MIN))
    assert bar is not None
    assert (bar.open_time, bar.ts_event, bar.interval_ns) == (MIN, 2 * MIN, MIN)
    assert bar.ts_init == 2 * MIN + 5  # received with the trade that closed it


def test_ohlcv_vwap_and_buy_volume() -> None:
    """OHLC, volume, taker-buy volume, trade count and VWAP of the trades inside the bar."""
    bb = BarBuilder("BTCUSDT", MIN)
    rows = [(1, 100.0, 2.0, False), (2, 104.0, 1.0, True), (3, 97.0, 0.5, True)]
    for ts, price, qty, sell in [*rows, (4, 101.0, 1.5, False)]:
        assert bb.on_trade(trade(ts * NS_PER_S, price, qty, sell)) is None
    bar = bb.on_trade(trade(MIN, 500.0))
    assert bar is not None
    assert (bar.open, bar.high, bar.low, bar.close) == (100.0, 104.0, 97.0, 101.0)
    assert (bar.volume, bar.buy_volume, bar.sell_volume, bar.trade_count) == (5.0, 3.5, 1.5, 4)
    assert bar.vwap == pytest.approx((200 + 104 + 48.5 + 151.5) / 5.0, rel=1e-15)


def test_empty_intervals_make_no_bar() -> None:
    """Quiet minutes yield no bar; the next bar starts at the next trade's minute."""
    bb = BarBuilder("BTCUSDT", MIN)
    bb.on_trade(trade(10 * NS_PER_S))
    first = bb.on_trade(trade(5 * MIN + 30 * NS_PER_S, 101.0))
    second = bb.on_trade(trade(9 * MIN, 102.0))
    assert first is not None and second is not None
    assert (first.open_time, second.open_time) == (0, 5 * MIN)
    assert (second.open, second.trade_count) == (101.0, 1)


def test_a_trade_exactly_at_the_end_closes_the_bar() -> None:
    """The bar is [open, open + interval): a trade at the end belongs to the next bar."""
    bb = BarBuilder("BTCUSDT", MIN)
    bb.on_trade(trade(MIN - 1))
    bar = bb.on_trade(trade(MIN, 7.0))
    assert bar is not None and bar.close == 100.0 and bar.trade_count == 1


def test_late_trades_fold_into_the_open_bar() -> None:
    """A trade stamped before the open bar is counted late and folded in, never reopening a bar."""
    bb = BarBuilder("BTCUSDT", MIN)
    bb.on_trade(trade(10 * NS_PER_S, 100.0))
    bb.on_trade(trade(MIN + NS_PER_S, 105.0))  # closes the first bar
    assert bb.on_trade(trade(30 * NS_PER_S, 90.0, 2.0, sell=True)) is None  # late
    bar = bb.on_trade(trade(2 * MIN, 110.0))
    assert bb.late == 1
    assert bar is not None and bar.open_time == MIN
    assert (bar.low, bar.close, bar.volume, bar.buy_volume) == (90.0, 105.0, 3.0, 1.0)
    assert bar.trade_count == 2


def test_bar_carries_the_last_book_top_before_it_closed() -> None:
    """The bar has the last book top before its end; one stamped later goes to the next bar."""
    bb = BarBuilder("BTCUSDT", MIN)
    bb.on_trade(trade(NS_PER_S))
    bb.on_book(book(2 * NS_PER_S, 98.0, 102.0))
    bb.on_book(book(50 * NS_PER_S, 99.0, 101.0))
    bb.on_book(book(MIN + NS_PER_S, 95.0, 96.0))  # after the end: next bar's
    first = bb.on_trade(trade(MIN + 2 * NS_PER_S))
    second = bb.on_trade(trade(2 * MIN))
    assert first is not None and second is not None
    assert (first.bid, first.ask, first.bid_qty, first.ask_qty) == (99.0, 101.0, 2.0, 3.0)
    assert (second.bid, second.ask) == (95.0, 96.0)


def test_no_book_seen_means_none() -> None:
    """Without any book top the bar's book fields are None."""
    bb = BarBuilder("BTCUSDT", MIN)
    bb.on_trade(trade(1))
    bar = bb.on_trade(trade(MIN))
    assert bar is not None and (bar.bid, bar.ask, bar.bid_qty, bar.ask_qty) == (None,) * 4


def test_reset_drops_the_partial_bar_and_the_book() -> None:
    """After a gap the partial bar never becomes a bar, and the old book top is forgotten."""
    bb = BarBuilder("BTCUSDT", MIN)
    bb.on_book(book(0))
    bb.on_trade(trade(NS_PER_S, 50.0))
    bb.reset()
    assert bb.on_trade(trade(3 * MIN, 60.0)) is None
    bar = bb.on_trade(trade(4 * MIN, 70.0))
    assert bar is not None
    assert (bar.open_time, bar.open, bar.trade_count, bar.bid) == (3 * MIN, 60.0, 1, None)


def test_bad_interval_is_rejected() -> None:
    """A builder needs a positive interval."""
    with pytest.raises(ValueError, match="positive"):
        BarBuilder("BTCUSDT", 0)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 90 * NS_PER_S), st.floats(1e-8, 1e4), st.booleans()),
        min_size=1, max_size=200,
    ),
    interval=st.sampled_from([NS_PER_S, 10 * NS_PER_S, MIN]),
)  # fmt: skip
def test_bar_volumes_add_up_to_the_trades_of_closed_bars(
    steps: list[tuple[int, float, bool]], interval: int
) -> None:
    """Closed bars hold every trade before the last open bar: volumes, buys and counts add up."""
    bb = BarBuilder("BTCUSDT", interval)
    ts, trades, bars = 1_700_000_000 * NS_PER_S, [], []
    for gap, qty, sell in steps:
        ts += gap
        trades.append((ts, qty, sell))
        bar = bb.on_trade(trade(ts, 100.0, qty, sell))
        if bar is not None:
            bars.append(bar)
    last_open = ts - ts % interval
    closed = [(q, s) for t, q, s in trades if t < last_open]
    assert sum(b.trade_count or 0 for b in bars) == len(closed)
    assert math.isclose(sum(b.volume for b in bars), math.fsum(q for q, _ in closed), rel_tol=1e-12)
    buys = math.fsum(q for q, s in closed if not s)
    assert math.isclose(sum(b.buy_volume or 0.0 for b in bars), buys, rel_tol=1e-12, abs_tol=1e-300)


def test_real_xrpeth_trades_match_a_pandas_resample() -> None:
    """1m bars of a real aggTrade tape equal pandas' resample of the same trades (closed bars)."""
    path = shared_path("aggtrades/XRPETH-aggTrades-2019-10-11_2019-10-13.csv")
    with path.open(newline="") as fh:
        rows = [(int(r[5]), float(r[1]), float(r[2]), r[6] == "True") for r in csv.reader(fh)]
    bb, bars = BarBuilder("XRPETH", MIN), []
    for i, (ms, price, qty, maker) in enumerate(rows):
        bar = bb.on_trade(Trade("XRPETH", ms * NS_PER_MS, ms * NS_PER_MS, i, price, qty, maker))
        if bar is not None:
            bars.append(bar)
    df = pd.DataFrame(rows, columns=["ms", "price", "qty", "maker"])
    df.index = pd.to_datetime(df.ms, unit="ms")
    df["pq"], df["buy"] = df.price * df.qty, df.qty.where(~df.maker, 0.0)
    g = df.resample("1min")
    want = g.price.ohlc().assign(
        volume=g.qty.sum(), count=g.price.count(), pq=g.pq.sum(), buy=g.buy.sum()
    )
    want = want[want["count"] > 0].iloc[:-1]  # the last minute is still open at the end
    assert len(bars) == len(want) > 1_000
    got = pd.DataFrame([(b.open, b.high, b.low, b.close, b.trade_count) for b in bars],
                       columns=["open", "high", "low", "close", "count"])  # fmt: skip
    np.testing.assert_array_equal(got.to_numpy(), want[got.columns].to_numpy())
    np.testing.assert_array_equal([b.open_time for b in bars], want.index.as_unit("ns").asi8)
    np.testing.assert_allclose([b.volume for b in bars], want.volume, rtol=1e-12)
    np.testing.assert_allclose([b.buy_volume for b in bars], want.buy, rtol=1e-12)
    np.testing.assert_allclose([b.vwap for b in bars], want.pq / want.volume, rtol=1e-12)


def test_bar_from_kline() -> None:
    """A closed kline ends at open + interval, keeps taker volume and uses the typical price."""
    k = Kline("BTCUSDT", 5, 9, "5m", 10 * MIN, 15 * MIN - NS_PER_MS, 1.0, 4.0, 0.5, 2.0, 7.0)
    bar = bar_from_kline(k)
    assert (bar.ts_event, bar.ts_init, bar.open_time) == (15 * MIN, 9, 10 * MIN)
    assert bar.interval_ns == 5 * MIN
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (1.0, 4.0, 0.5, 2.0, 7.0)
    assert (bar.buy_volume, bar.trade_count, bar.bid) == (None, None, None)
    assert bar.vwap == pytest.approx(6.5 / 3, rel=1e-15)


def test_an_open_kline_is_not_a_bar() -> None:
    """Only closed klines become bars."""
    k = Kline("BTCUSDT", 5, 9, "1m", 0, MIN - NS_PER_MS, 1.0, 1.0, 1.0, 1.0, 1.0, closed=False)
    with pytest.raises(ValueError, match="not closed"):
        bar_from_kline(k)
