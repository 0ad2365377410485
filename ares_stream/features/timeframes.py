"""Several timeframes from one stream: closed base bars in, higher bars and their features out.

A :class:`BarAggregator` folds the closed base bars of one symbol (built from trades, aggTrades or
klines alike) into epoch-aligned bars of a longer interval. A :class:`MultiTimeframe` keeps one
aggregator and one :class:`~ares_stream.features.pipeline.FeatureSet` per higher interval and
gives, at every base bar, the features of each higher timeframe's last *closed* bar.

>>> from ares_stream.events import Bar
>>> m = 60_000_000_000
>>> agg = BarAggregator(5 * m)
>>> out = [agg.update(Bar("X", (i + 1) * m, (i + 1) * m + 9, i * m, m, 10.0 + i, 11.0 + i,
...                       9.0 + i, 10.5 + i, 2.0, 1.0, 3, 10.2 + i)) for i in range(7)]
>>> [len(o) for o in out]  # the 1m bar ending at minute 5 closes the 5m bar
[0, 0, 0, 0, 1, 0, 0]
>>> h = out[4][0]
>>> h.open_time, h.ts_event, h.open, h.high, h.low, h.close, h.volume, h.trade_count, h.vwap
(0, 300000000000, 10.0, 15.0, 9.0, 14.5, 10.0, 15, 12.2)
"""

from __future__ import annotations

from collections.abc import Callable

from ares_stream.events import Bar
from ares_stream.features.bars import parse_interval
from ares_stream.features.pipeline import FeatureSet

_NO_BAR = -(2**63)  # "no open higher bar" / "no base bar seen": every open_time is after it
BOOK_TOP_FEATURES = ("spread_bps", "book_imb")  # left out of higher timeframes (see MultiTimeframe)


class BarAggregator:
    """Higher-timeframe bars of ``interval_ns`` from the closed base bars of one symbol.

    The higher bar starting at ``start`` (a multiple of ``interval_ns`` since the epoch) is the
    aggregate of the base bars with ``open_time`` in ``[start, start + interval_ns)``:

    - ``open`` of the first, ``high``/``low`` the max/min, ``close`` of the last;
    - ``volume`` the sum; ``buy_volume`` and ``trade_count`` the sums, ``None`` if any base bar
      lacks them; ``vwap`` volume-weighted (``sum(vwap * volume) / volume``; the close when the
      volume is 0) — for klines, whose ``vwap`` is the typical price, a volume-weighted typical
      price;
    - ``ts_event`` the higher bar's end, ``interval_ns`` the higher interval, ``ts_init`` the
      ``ts_init`` of the base bar that completed it; ``bid``/``ask`` and sizes of the last base bar.

    **When a higher bar is emitted**: as soon as it is known complete, i.e. on the base bar that
    ends exactly at its end, or — when no base bar ends there (a quiet last base interval, a gap)
    — on the first base bar of a later higher interval. That base bar may also end its own higher
    bar (with one base bar in it), so :meth:`update` returns a tuple: none, one or two higher
    bars, oldest first. A higher bar ending at ``e`` has always been returned by the time a base
    bar with ``ts_event >= e`` was fed; never earlier. The open bar at the end of a stream is
    never emitted: only complete bars leave.

    Base bars must be epoch-aligned (as :class:`~ares_stream.features.bars.BarBuilder` bars and
    klines are), of an interval that divides ``interval_ns`` (checked on the first bar: a
    ``ValueError``), and in time order: a base bar that starts before the end of the previous
    one (late, or a duplicate) is skipped and counted in ``late``.

    >>> m = 60_000_000_000
    >>> agg = BarAggregator(15 * m)
    >>> def base(i): return Bar("X", (i + 1) * m, (i + 1) * m + 7, i * m, m, 1.0, 2.0, 0.5,
    ...                         1.0 + i, 1.0, None, 4, 1.0)
    >>> [agg.update(base(i)) for i in (0, 13)]  # minute 14 is quiet: [0, 15m) is not known done
    [(), ()]
    >>> [(h.ts_event // m, h.ts_init // m, h.close, h.buy_volume) for h in agg.update(base(29))]
    [(15, 30, 14.0, None), (30, 30, 30.0, None)]
    >>> BarAggregator(15 * m).update(Bar("X", 7 * m, 7 * m, 0, 7 * m, 1, 1, 1, 1, 1, 1, 1, 1))
    Traceback (most recent call last):
    ...
    ValueError: interval_ns 900000000000 is not a multiple of the base bars' interval 420000000000
    """

    __slots__ = (
        "_base", "_buy", "_count", "_high", "_last", "_low", "_open", "_pv", "_seen", "_start",
        "_volume", "interval_ns", "late",
    )  # fmt: skip

    def __init__(self, interval_ns: int) -> None:
        if not isinstance(interval_ns, int) or interval_ns <= 0:
            raise ValueError(f"interval_ns must be a positive integer, got {interval_ns!r}")
        self.interval_ns = interval_ns
        self.late = 0  # base bars skipped: they started before the previous one ended
        self._base = 0  # the base bars' interval, once checked
        self.reset()

    def reset(self) -> None:
        """A data gap: drop the open higher bar (it may lack base bars) and the time order."""
        self._start = self._seen = _NO_BAR
        self._last: Bar | None = None  # the last base bar of the open higher bar
        self._open = self._high = self._low = self._volume = self._pv = 0.0
        self._buy: float | None = None
        self._count: int | None = None

    def update(self, bar: Bar) -> tuple[Bar, ...]:
        """Add one closed base bar; return the higher bars it completed, oldest first."""
        if bar.interval_ns != self._base:
            self._check(bar.interval_ns)
        if bar.open_time < self._seen:
            self.late += 1
            return ()
        iv = self.interval_ns
        start = bar.open_time - bar.open_time % iv
        if bar.ts_event > start + iv:
            raise ValueError(f"base bar {bar.open_time}..{bar.ts_event} crosses a {iv} ns boundary")
        self._seen = bar.ts_event
        out: tuple[Bar, ...] = ()
        if start == self._start:
            self._fold(bar)
        else:
            if self._last is not None:
                out = (self._emit(bar.ts_init),)
            self._begin(bar, start)
        if bar.ts_event == start + iv:
            out = (*out, self._emit(bar.ts_init))
            self._start, self._last = _NO_BAR, None
        return out

    def _check(self, base: int) -> None:
        if base <= 0 or self.interval_ns % base:
            raise ValueError(
                f"interval_ns {self.interval_ns} is not a multiple of the base bars'"
                f" interval {base}"
            )
        self._base = base

    def _begin(self, bar: Bar, start: int) -> None:
        self._start = start
        self._last = bar
        self._open, self._high, self._low = bar.open, bar.high, bar.low
        self._volume = bar.volume
        self._pv = bar.vwap * bar.volume
        self._buy = bar.buy_volume
        self._count = bar.trade_count

    def _fold(self, bar: Bar) -> None:
        self._last = bar
        if bar.high > self._high:
            self._high = bar.high
        if bar.low < self._low:
            self._low = bar.low
        self._volume += bar.volume
        self._pv += bar.vwap * bar.volume
        buy, count = self._buy, self._count
        self._buy = None if buy is None or bar.buy_volume is None else buy + bar.buy_volume
        self._count = None if count is None or bar.trade_count is None else count + bar.trade_count

    def _emit(self, ts_init: int) -> Bar:
        last, start, iv, vol = self._last, self._start, self.interval_ns, self._volume
        assert last is not None
        return Bar(
            last.symbol, start + iv, ts_init, start, iv, self._open, self._high, self._low,
            last.close, vol, self._buy, self._count, self._pv / vol if vol > 0.0 else last.close,
            last.bid, last.ask, last.bid_qty, last.ask_qty,
        )  # fmt: skip


class _Frame:
    """One higher timeframe: its aggregator, its feature set and its last closed bar's vector."""

    __slots__ = ("agg", "features", "last", "rename")

    def __init__(self, label: str, features: FeatureSet) -> None:
        self.agg = BarAggregator(parse_interval(label))
        self.features = features
        self.last: dict[str, float] | None = None
        self.rename = {n: f"{n}@{label}" for n in features.names if n not in BOOK_TOP_FEATURES}


class MultiTimeframe:
    """The features of higher timeframes of one symbol, at every closed base bar.

    ``intervals`` are interval texts (``"15m"``, ``"1h"``; see
    :func:`~ares_stream.features.bars.parse_interval`), used verbatim as the name suffixes;
    ``make_features`` returns a fresh :class:`FeatureSet` (e.g. ``lambda: feature_set(config)``,
    the base set's parameters), one per timeframe, fed with that timeframe's closed bars.

    :meth:`update` feeds the base bar to every :class:`BarAggregator` first, then returns the
    feature vector of each timeframe's **last closed** higher bar, names suffixed ``@<label>``
    (``ret_1@15m``), in the order of ``names``; ``None`` until every timeframe has a warm vector.
    **Causality**: the value at the base bar ending at ``t`` reads only higher bars with
    ``ts_event <= t`` (the higher bar that this very base bar closes is used at once).

    **Fixed names**: ``names`` is known at construction: each timeframe's ``FeatureSet.names``
    without ``spread_bps`` and ``book_imb``. Those read the book top at the higher bar's close,
    i.e. the last base bar's quote, which the base features already carry fresher. As in
    :meth:`FeatureSet.update`, a feature whose input the higher bars lack (``flow_imb`` without
    ``buy_volume``, ``intensity`` without ``trade_count``: missing in any base bar of the higher
    bar) is left out of the dict, which is then a subset of ``names`` in the same order.

    >>> from ares_stream.events import Bar
    >>> m = 60_000_000_000
    >>> small = lambda: FeatureSet(return_horizons=(1,), vol_span=1, rsi_period=1,
    ...     macd=(1, 1, 1), boll_window=1, vwap_window=1, flow_window=1, intensity_span=1,
    ...     volume_window=1)
    >>> mtf = MultiTimeframe(("5m",), small)
    >>> mtf.names[:3]
    ('ret_1@5m', 'vol_ewma@5m', 'rsi_1@5m')
    >>> def base(i): return Bar("X", (i + 1) * m, (i + 1) * m, i * m, m, 100.0 + i, 101.0 + i,
    ...                         99.0 + i, 100.0 + i, 1.0, 0.5, 2, 100.0 + i)
    >>> out = [mtf.update(base(i)) for i in range(16)]
    >>> [o is None for o in out[8:11]]  # the 5m bar ending at minute 10 is the 2nd: warm
    [True, False, False]
    >>> import math
    >>> [round(o["ret_1@5m"], 6) for o in out[9:16]]  # minutes 10..16: log(109/104), log(114/109)
    [0.046957, 0.046957, 0.046957, 0.046957, 0.046957, 0.044851, 0.044851]
    >>> round(math.log(109 / 104), 6), round(math.log(114 / 109), 6)
    (0.046957, 0.044851)
    """

    __slots__ = ("_frames", "_merged", "intervals", "names")  # no factory kept: the state is
    # checkpointed by ares_stream.codec, which stores no closures

    def __init__(self, intervals: tuple[str, ...], make_features: Callable[[], FeatureSet]) -> None:
        lengths = [parse_interval(text) for text in intervals]
        if not intervals or len(set(lengths)) != len(lengths):
            raise ValueError(f"intervals must be distinct and non-empty: {intervals}")
        self.intervals = intervals
        self._frames = tuple(_Frame(text, make_features()) for text in intervals)
        self.names: tuple[str, ...] = tuple(n for f in self._frames for n in f.rename.values())
        self._merged: dict[str, float] | None = None

    def update(self, bar: Bar) -> dict[str, float] | None:
        """Feed one closed base bar; the higher timeframes' features (a new dict), or ``None``."""
        closed = False
        for frame in self._frames:
            for higher in frame.agg.update(bar):
                frame.last = frame.features.update(higher)
                closed = True
        if closed:
            self._merged = self._merge()
        return None if self._merged is None else dict(self._merged)

    def _merge(self) -> dict[str, float] | None:
        out: dict[str, float] = {}
        for frame in self._frames:
            if frame.last is None:
                return None
            rename = frame.rename
            out.update((rename[k], v) for k, v in frame.last.items() if k in rename)
        return out

    def reset(self) -> None:
        """A data gap: drop the open higher bars; every timeframe warms up again."""
        for frame in self._frames:
            frame.agg.reset()
            frame.features.reset()
            frame.last = None
        self._merged = None
