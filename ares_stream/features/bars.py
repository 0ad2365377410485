"""Time bars: trades (and book tops) in, closed :class:`~ares_stream.events.Bar` values out.

Bars are aligned to the epoch: a trade at ``ts_event`` belongs to the bar opening at
``ts_event // interval_ns * interval_ns``. A bar closes when the first trade at or after its end
arrives; that trade opens the next bar. A quiet interval (no trade) yields no bar, a gap in the
data (:meth:`BarBuilder.reset`) drops the partial bar, and the end of a stream emits nothing:
only complete bars ever leave this module.

>>> parse_interval("5m")
300000000000
"""

from __future__ import annotations

import functools
import re

from ares_stream.events import NS_PER_S, Bar, BookTop, Kline, Trade

_UNIT_NS = {"s": NS_PER_S, "m": 60 * NS_PER_S, "h": 3_600 * NS_PER_S, "d": 86_400 * NS_PER_S}
_INTERVAL = re.compile(r"([1-9][0-9]*)([smhd])")
_NO_BAR = -(2**63)  # the end of "no open bar": every trade is at or after it


def parse_interval(text: str) -> int:
    """``"1s"``, ``"10s"``, ``"1m"``, ``"5m"``, ``"1h"``, ``"1d"`` … → nanoseconds.

    A positive integer followed by ``s``, ``m``, ``h`` or ``d``. Calendar intervals (Binance's
    ``1w``, aligned to Mondays, and ``1M``, months of unequal length) cannot be aligned by
    ``floor(ts / interval)`` and are rejected like any other malformed text.

    >>> parse_interval("10s"), parse_interval("1h")
    (10000000000, 3600000000000)
    >>> parse_interval("1M")
    Traceback (most recent call last):
    ...
    ValueError: bad bar interval '1M': expected a positive integer and one of s, m, h, d (e.g. '1m')
    """
    match = _INTERVAL.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"bad bar interval {text!r}: expected a positive integer and one of s, m, h, d"
            " (e.g. '1m')"
        )
    return int(match.group(1)) * _UNIT_NS[match.group(2)]


class BarBuilder:
    """Builds the time bars of one symbol from its trades and book tops.

    - ``on_trade`` returns the bar that the trade closed, else ``None``.
    - ``buy_volume`` is the taker-buy volume (trades with ``is_buyer_maker == False``).
    - ``vwap`` is ``sum(price * qty) / sum(qty)`` (the close, should every qty be 0).
    - A trade stamped before the open bar's start (late, out of order) is folded into the open bar
      and counted in ``late``: it adds to volume, VWAP, count, high and low, but does not move the
      close; a closed bar is never reopened.
    - The bar carries the last book top received before it closed whose ``ts_event`` is before the
      bar's end; a book top stamped at or after the end is kept for the next bar, so no bar
      carries a quote from after its ``ts_event``.

    >>> from ares_stream.events import Trade
    >>> bb = BarBuilder("BTCUSDT", parse_interval("1m"))
    >>> m = 60_000_000_000
    >>> for ts, price, qty, sell in [(5, 100.0, 1.0, False), (m - 1, 102.0, 3.0, True)]:
    ...     bb.on_trade(Trade("BTCUSDT", ts, ts + 9, 1, price, qty, sell))
    >>> bar = bb.on_trade(Trade("BTCUSDT", 3 * m, 3 * m + 7, 3, 99.0, 1.0, True))
    >>> bar.open_time, bar.ts_event, bar.ts_init, bar.close, bar.volume, bar.buy_volume, bar.vwap
    (0, 60000000000, 180000000007, 102.0, 4.0, 1.0, 101.5)
    """

    __slots__ = (
        "_book",
        "_buy",
        "_close",
        "_count",
        "_end",
        "_high",
        "_low",
        "_next_book",
        "_open",
        "_open_time",
        "_pq",
        "_volume",
        "interval_ns",
        "late",
        "symbol",
    )

    def __init__(self, symbol: str, interval_ns: int) -> None:
        if interval_ns <= 0:
            raise ValueError(f"interval_ns must be positive, got {interval_ns}")
        self.symbol = symbol
        self.interval_ns = interval_ns
        self.late = 0  # trades stamped before the open bar's start, folded into it
        self._book: BookTop | None = None  # last book top before the open bar's end
        self._next_book: BookTop | None = None  # a book top stamped at/after it
        self._reset_bar()

    def _reset_bar(self) -> None:
        self._open_time = self._end = _NO_BAR
        self._open = self._high = self._low = self._close = 0.0
        self._volume = self._buy = self._pq = 0.0
        self._count = 0

    def on_trade(self, t: Trade) -> Bar | None:
        """Add one trade; return the bar it closed, if any.

        Hot path (one call per trade, measured 0.2–0.35 µs, 3–5 M trades/s): plain attribute
        arithmetic, no call on the common branch.
        """
        ts = t.ts_event
        if ts >= self._end:
            bar = self._emit(t.ts_init) if self._count else None
            self._start(t, ts)
            return bar
        p = t.price
        q = t.qty
        if p > self._high:
            self._high = p
        elif p < self._low:
            self._low = p
        self._volume += q
        self._pq += p * q
        self._count += 1
        if not t.is_buyer_maker:
            self._buy += q
        if ts >= self._open_time:
            self._close = p
        else:
            self.late += 1
        return None

    def _start(self, t: Trade, ts: int) -> None:
        iv = self.interval_ns
        self._open_time = start = ts - ts % iv
        self._end = start + iv
        self._open = self._high = self._low = self._close = p = t.price
        self._volume = q = t.qty
        self._pq = p * q
        self._buy = 0.0 if t.is_buyer_maker else q
        self._count = 1
        nxt = self._next_book
        if nxt is not None:
            self._book = nxt
            self._next_book = None

    def _emit(self, ts_init: int) -> Bar:
        vol = self._volume
        book = self._book
        start = self._open_time
        return Bar(
            self.symbol, start + self.interval_ns, ts_init, start, self.interval_ns,
            self._open, self._high, self._low, self._close, vol, self._buy, self._count,
            self._pq / vol if vol > 0.0 else self._close,
            None if book is None else book.bid,
            None if book is None else book.ask,
            None if book is None else book.bid_qty,
            None if book is None else book.ask_qty,
        )  # fmt: skip

    def on_book(self, b: BookTop) -> None:
        """Remember the latest book top (for the open bar, or the next one if stamped later)."""
        if b.ts_event < self._end or not self._count:
            self._book = b
        else:
            self._next_book = b

    def reset(self) -> None:
        """A data gap: drop the partial bar (it is incomplete) and forget the book."""
        self._reset_bar()
        self._book = self._next_book = None


_interval_ns = functools.lru_cache(maxsize=64)(parse_interval)  # once per interval name


def bar_from_kline(k: Kline) -> Bar:
    """A closed kline → :class:`Bar`.

    ``ts_event`` is the candle's end, ``open_time + interval`` (Binance's ``close_time`` + 1 ms);
    ``buy_volume`` is the taker-buy volume where the source carries it (else ``None``). A kline
    has no quote volume here, so ``vwap`` is the typical price ``(high + low + close) / 3``.
    No book top: ``bid``/``ask`` are ``None``.

    >>> from ares_stream.events import Kline
    >>> k = Kline("BTCUSDT", 60_000_000_000, 60_000_000_500, "1m", 0, 59_999_000_000,
    ...           10.0, 13.0, 9.0, 11.0, 5.0, 42, 2.0)
    >>> b = bar_from_kline(k)
    >>> b.ts_event, b.interval_ns, b.buy_volume, b.trade_count, b.vwap
    (60000000000, 60000000000, 2.0, 42, 11.0)
    """
    if not k.closed:
        raise ValueError(f"kline {k.symbol} {k.interval} at {k.open_time} is not closed")
    iv = _interval_ns(k.interval)
    return Bar(
        k.symbol, k.open_time + iv, k.ts_init, k.open_time, iv,
        k.open, k.high, k.low, k.close, k.volume, k.taker_buy_volume, k.trade_count,
        (k.high + k.low + k.close) / 3.0,
    )  # fmt: skip
