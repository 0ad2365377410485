"""O(1) incremental features: one small class per feature, ``update(...)`` then ``get()``.

``get()`` is ``None`` while the feature warms up, exactly where the pandas expression in the class
docstring is NaN (``close``, ``volume`` … are the bar columns as ``pd.Series``). Constructor
arguments are stored verbatim; state lives in ``_private`` slots.

Every EWMA is ``ewm(span=s, adjust=False, min_periods=s)`` (or ``alpha=`` for Wilder), i.e.
``w = (1 - a) * w + a * x`` seeded with the first value. Rolling windows keep a ring buffer and
running sums. To stay exact (rtol 1e-9 against a batch computation, on any series) the sums are
rebuilt from the buffer with :func:`math.fsum` every ``window`` updates, and at once whenever the
rounding they may have picked up from a large value that has since left the window could matter
(see :class:`RollingZ`); the variance sums are kept relative to a reference near the window's mean,
so prices at 60,000 moving by cents lose no digits. Amortized cost stays O(1).

>>> r = LogReturn(1)
>>> r.update(100.0); r.get() is None
True
>>> r.update(110.0); round(r.get(), 6)
0.09531
"""

from __future__ import annotations

import math

_fsum = math.fsum
_log = math.log
_sqrt = math.sqrt

_SUM_TRUST = 256.0  # rebuild a positive running sum when it is below 1/256 of its largest term
_VAR_TRUST = 1e3  # rebuild the variance sums when m2 falls below 1/1000 of the largest square


def _check_positive(**kwargs: int) -> None:
    for name, value in kwargs.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class LogReturn:
    """Log return over ``k`` bars: ``np.log(close / close.shift(k))``.

    >>> r = LogReturn(2)
    >>> for c in (100.0, 105.0, 110.0): r.update(c)
    >>> round(r.get(), 6)
    0.09531
    """

    __slots__ = ("_buf", "_i", "_value", "k")

    def __init__(self, k: int) -> None:
        _check_positive(k=k)
        self.k = k
        self._buf: list[float] = []
        self._i = 0
        self._value: float | None = None

    def update(self, close: float) -> None:
        """Add the bar's close."""
        buf = self._buf
        if len(buf) < self.k:
            buf.append(close)
            return
        i = self._i
        self._value = _log(close / buf[i])
        buf[i] = close
        self._i = 0 if i + 1 == self.k else i + 1

    def get(self) -> float | None:
        """The log return over ``k`` bars; None for the first ``k`` closes."""
        return self._value


class EwmaVol:
    """EWMA volatility of 1-bar log returns, per bar (not annualized):

    ``np.log(close / close.shift(1)).pow(2).ewm(span=span, adjust=False, min_periods=span)
    .mean().pow(0.5)`` — ready after ``span`` returns.

    >>> v = EwmaVol(2)
    >>> for c in (100.0, 101.0, 100.0): v.update(c)
    >>> round(v.get(), 6)
    0.00995
    """

    __slots__ = ("_a", "_b", "_n", "_prev", "_value", "_w", "span")

    def __init__(self, span: int) -> None:
        _check_positive(span=span)
        self.span = span
        self._a = 2.0 / (span + 1.0)
        self._b = 1.0 - self._a
        self._n = 0  # returns seen
        self._prev = 0.0
        self._w = 0.0
        self._value: float | None = None

    def update(self, close: float) -> None:
        """Add the bar's close (the first one only seeds the return)."""
        prev = self._prev
        self._prev = close
        if prev == 0.0:  # the first close (prices are positive)
            return
        r = _log(close / prev)
        n = self._n = self._n + 1
        self._w = r * r if n == 1 else self._b * self._w + self._a * (r * r)
        if n >= self.span:
            self._value = _sqrt(self._w)

    def get(self) -> float | None:
        """The per-bar volatility; None until ``span`` returns were seen."""
        return self._value


class Rsi:
    """RSI with Wilder's smoothing, scaled to 0..1 (0.5 when the market has not moved)::

        d = close.diff()
        g = d.clip(lower=0).ewm(alpha=1 / period, adjust=False, min_periods=period).mean()
        l = (-d).clip(lower=0).ewm(alpha=1 / period, adjust=False, min_periods=period).mean()
        (g / (g + l)).mask(g + l == 0, 0.5)

    The averages are seeded with the first change (pandas' ``adjust=False``), not with the SMA of
    the first ``period`` changes of Wilder's book; ready after ``period`` changes.

    >>> r = Rsi(2)
    >>> for c in (10.0, 11.0, 10.5): r.update(c)
    >>> round(r.get(), 6)
    0.666667
    """

    __slots__ = ("_a", "_b", "_gain", "_loss", "_n", "_prev", "_value", "period")

    def __init__(self, period: int = 14) -> None:
        _check_positive(period=period)
        self.period = period
        self._a = 1.0 / period
        self._b = 1.0 - self._a
        self._n = 0
        self._prev = 0.0
        self._gain = self._loss = 0.0
        self._value: float | None = None

    def update(self, close: float) -> None:
        """Add the bar's close (the first one only seeds the change)."""
        prev = self._prev
        self._prev = close
        if prev == 0.0:
            return
        d = close - prev
        g = d if d > 0.0 else 0.0
        ls = -d if d < 0.0 else 0.0
        n = self._n = self._n + 1
        if n == 1:
            self._gain, self._loss = g, ls
        else:
            a, b = self._a, self._b
            self._gain = b * self._gain + a * g
            self._loss = b * self._loss + a * ls
        if n >= self.period:
            tot = self._gain + self._loss
            self._value = self._gain / tot if tot != 0.0 else 0.5

    def get(self) -> float | None:
        """The RSI in 0..1; None until ``period`` changes were seen."""
        return self._value


class Macd:
    """MACD divided by the close (scale-free), and its signal line::

        fast_ema = close.ewm(span=fast, adjust=False, min_periods=fast).mean()
        slow_ema = close.ewm(span=slow, adjust=False, min_periods=slow).mean()
        macd = (fast_ema - slow_ema) / close                                   # get()
        macd.ewm(span=signal, adjust=False, min_periods=signal).mean()         # signal()

    ``macd`` is ready after ``max(fast, slow)`` closes, the signal ``signal - 1`` closes later.

    >>> m = Macd(2, 3, 2)
    >>> for c in (100.0, 102.0, 104.0, 106.0): m.update(c)
    >>> round(m.get(), 6), round(m.signal(), 6)
    (0.007425, 0.006909)
    """

    __slots__ = ("_af", "_as", "_asig", "_fast", "_n", "_nsig", "_sig", "_slow", "_value",
                 "fast", "signal_span", "slow")  # fmt: skip

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        _check_positive(fast=fast, slow=slow, signal=signal)
        self.fast, self.slow, self.signal_span = fast, slow, signal
        self._af, self._as = 2.0 / (fast + 1.0), 2.0 / (slow + 1.0)
        self._asig = 2.0 / (signal + 1.0)
        self._n = self._nsig = 0
        self._fast = self._slow = self._sig = 0.0
        self._value: float | None = None

    def update(self, close: float) -> None:
        """Add the bar's close."""
        n = self._n = self._n + 1
        if n == 1:
            self._fast = self._slow = close
        else:
            af, as_ = self._af, self._as
            self._fast = (1.0 - af) * self._fast + af * close
            self._slow = (1.0 - as_) * self._slow + as_ * close
        if n < self.fast or n < self.slow:
            return
        m = self._value = (self._fast - self._slow) / close
        k = self._nsig = self._nsig + 1
        self._sig = m if k == 1 else (1.0 - self._asig) * self._sig + self._asig * m

    def get(self) -> float | None:
        """The MACD over the close; None until ``max(fast, slow)`` closes were seen."""
        return self._value

    def signal(self) -> float | None:
        """The signal line; None until ``signal - 1`` closes after the MACD is ready."""
        return self._sig if self._nsig >= self.signal_span else None


class RollingZ:
    """Z-score of the newest value against a rolling window (population std, 0 on a flat window)::

        m = x.rolling(window).mean(); sd = x.rolling(window).std(ddof=0)
        ((x - m) / sd).mask(sd == 0, 0.0)

    Used on the close (``boll_z``, the Bollinger z-score) and on the volume (``volume_z``).
    Numerics: the sums of ``x - ref`` and ``(x - ref)**2`` are kept with ``ref`` the window's mean
    at the last rebuild (exact differences for nearby prices); they are rebuilt every ``window``
    updates and whenever ``m2 = sum((x - mean)**2)`` falls below 1/1000 of the largest square
    added since the last rebuild (a large value left; its rounding could dominate).

    >>> z = RollingZ(3)
    >>> for x in (1.0, 2.0, 3.0): z.update(x)
    >>> round(z.get(), 6)
    1.224745
    """

    __slots__ = ("_big", "_buf", "_i", "_n", "_ref", "_s1", "_s2", "_value", "window")

    def __init__(self, window: int) -> None:
        _check_positive(window=window)
        self.window = window
        self._buf = [0.0] * window
        self._i = self._n = 0
        self._ref = self._s1 = self._s2 = self._big = 0.0
        self._value: float | None = None

    def update(self, x: float) -> None:
        """O(1) amortized; the hot branch is a dozen float operations."""
        buf, i, n, ref = self._buf, self._i, self.window, self._ref
        d = x - ref
        if self._n == n:
            o = buf[i] - ref
            self._s1 += d - o
            self._s2 += d * d - o * o
        else:
            if self._n == 0:
                self._ref = ref = x
                d = 0.0
            self._n += 1
            self._s1 += d
            self._s2 += d * d
        buf[i] = x
        if d * d > self._big:
            self._big = d * d
        self._i = i = 0 if i + 1 == n else i + 1
        if self._n < n:
            return
        m2 = self._s2 - self._s1 * self._s1 / n
        if i == 0 or m2 * _VAR_TRUST < self._big:
            m2 = self._rebuild()
            d = x - self._ref
        self._value = 0.0 if m2 <= 0.0 else (d - self._s1 / n) / _sqrt(m2 / n)

    def _rebuild(self) -> float:
        buf = self._buf
        n = self.window
        self._ref = ref = _fsum(buf) / n
        dev = [v - ref for v in buf]
        sq = [d * d for d in dev]
        self._s1 = s1 = _fsum(dev)
        self._s2 = s2 = _fsum(sq)
        self._big = max(sq)
        return s2 - s1 * s1 / n

    def get(self) -> float | None:
        """The newest value's z-score; None until ``window`` values were seen."""
        return self._value


class _RollingSum:
    """A rolling sum of non-negative values, rebuilt exactly every ``window`` updates and whenever
    it falls below 1/256 of the largest value added since: relative error ≲ 2·window·256·ε."""

    __slots__ = ("_big", "_buf", "_i", "_n", "sum", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self._buf = [0.0] * window
        self._i = self._n = 0
        self._big = self.sum = 0.0

    def push(self, x: float) -> bool:
        """Add ``x`` (the oldest value leaves); return whether the window is full."""
        buf, i = self._buf, self._i
        self.sum = s = self.sum + (x - buf[i])
        buf[i] = x
        if x > self._big:
            self._big = x
        self._i = i = 0 if i + 1 == self.window else i + 1
        if i == 0 or s * _SUM_TRUST < self._big:
            self.sum = _fsum(buf)
            self._big = max(buf)
        if self._n < self.window:
            self._n += 1
            return self._n == self.window
        return True


class VwapDeviation:
    """Log distance of the close from the rolling VWAP of ``window`` bars (0 on no volume)::

        v = volume.rolling(window).sum()
        np.log(close * v / (vwap * volume).rolling(window).sum()).mask(v == 0, 0.0)

    ``vwap`` is each bar's own VWAP, so the rolling value is the VWAP of every trade in the window.
    (Also 0 should ``vwap * volume`` underflow to 0, for volumes below ~1e-300.)

    >>> d = VwapDeviation(2)
    >>> d.update(100.0, 100.0, 1.0); d.update(103.0, 103.0, 2.0); round(d.get(), 6)
    0.009756
    """

    __slots__ = ("_pv", "_v", "_value", "window")

    def __init__(self, window: int) -> None:
        _check_positive(window=window)
        self.window = window
        self._pv = _RollingSum(window)
        self._v = _RollingSum(window)
        self._value: float | None = None

    def update(self, close: float, vwap: float, volume: float) -> None:
        """Add one bar's close, VWAP and volume."""
        self._pv.push(vwap * volume)
        if self._v.push(volume):
            v, pv = self._v.sum, self._pv.sum
            self._value = _log(close * v / pv) if v > 0.0 and pv > 0.0 else 0.0

    def get(self) -> float | None:
        """The log distance of the close from the rolling VWAP; None until ``window`` bars."""
        return self._value


class FlowImbalance:
    """Taker flow imbalance over ``window`` bars, in -1..1 (0 on no volume)::

        b = buy_volume.rolling(window).sum(); s = sell_volume.rolling(window).sum()
        ((b - s) / (b + s)).mask(b + s == 0, 0.0)

    >>> f = FlowImbalance(2)
    >>> f.update(3.0, 1.0); f.update(1.0, 1.0); round(f.get(), 6)
    0.333333
    """

    __slots__ = ("_buy", "_sell", "_value", "window")

    def __init__(self, window: int) -> None:
        _check_positive(window=window)
        self.window = window
        self._buy = _RollingSum(window)
        self._sell = _RollingSum(window)
        self._value: float | None = None

    def update(self, buy_volume: float, sell_volume: float) -> None:
        """Add one bar's taker-buy and taker-sell volumes."""
        self._buy.push(buy_volume)
        if self._sell.push(sell_volume):
            b, s = self._buy.sum, self._sell.sum
            self._value = (b - s) / (b + s) if b + s > 0.0 else 0.0

    def get(self) -> float | None:
        """The imbalance in -1..1; None until ``window`` bars were seen."""
        return self._value


class Intensity:
    """Trade intensity: log of this bar's trade rate over its EWMA (the EWMA includes the bar)::

        rate = (trade_count + 1) / (interval_ns / 1e9)      # trades per second, +1 keeps 0 finite
        np.log(rate / rate.ewm(span=span, adjust=False, min_periods=span).mean())

    >>> t = Intensity(2)
    >>> t.update(9, 1_000_000_000); t.update(19, 1_000_000_000); round(t.get(), 6)
    0.182322
    """

    __slots__ = ("_a", "_b", "_n", "_value", "_w", "span")

    def __init__(self, span: int) -> None:
        _check_positive(span=span)
        self.span = span
        self._a = 2.0 / (span + 1.0)
        self._b = 1.0 - self._a
        self._n = 0
        self._w = 0.0
        self._value: float | None = None

    def update(self, trade_count: int, interval_ns: int) -> None:
        """Add one bar's trade count and length (ns)."""
        rate = (trade_count + 1) / (interval_ns / 1e9)
        n = self._n = self._n + 1
        self._w = rate if n == 1 else self._b * self._w + self._a * rate
        if n >= self.span:
            self._value = _log(rate / self._w)

    def get(self) -> float | None:
        """The log of the bar's trade rate over its EWMA; None until ``span`` bars."""
        return self._value


class HighLowRange:
    """The bar's high-low range: ``np.log(high / low)`` (Parkinson's range), no warm-up.

    >>> h = HighLowRange(); h.update(101.0, 100.0); round(h.get(), 6)
    0.00995
    """

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value: float | None = None

    def update(self, high: float, low: float) -> None:
        """Take the bar's high and low (the value is this bar's alone)."""
        self._value = _log(high / low)

    def get(self) -> float | None:
        """``log(high / low)`` of the last bar; None before the first."""
        return self._value


class SpreadBps:
    """Quoted spread in basis points of the mid: ``(ask - bid) / ((ask + bid) / 2) * 1e4``.

    >>> s = SpreadBps(); s.update(99.99, 100.01); round(s.get(), 6)
    2.0
    """

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value: float | None = None

    def update(self, bid: float, ask: float) -> None:
        """Take the book top's bid and ask prices."""
        self._value = (ask - bid) / ((ask + bid) * 0.5) * 1e4

    def get(self) -> float | None:
        """The last spread, in bps of the mid; None before the first update."""
        return self._value


class BookImbalance:
    """Top-of-book size imbalance in -1..1, 0 on an empty top::

        ((bid_qty - ask_qty) / (bid_qty + ask_qty)).mask(bid_qty + ask_qty == 0, 0.0)

    >>> b = BookImbalance(); b.update(3.0, 1.0); b.get()
    0.5
    """

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value: float | None = None

    def update(self, bid_qty: float, ask_qty: float) -> None:
        """Take the book top's bid and ask sizes."""
        tot = bid_qty + ask_qty
        self._value = (bid_qty - ask_qty) / tot if tot > 0.0 else 0.0

    def get(self) -> float | None:
        """The last imbalance in -1..1; None before the first update."""
        return self._value
