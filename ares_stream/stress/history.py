"""Historical stress windows: the worst peak-to-trough falls of a candle file, as candles at the
champion's bar interval.

The file is a candle CSV with the header ``open_time,open,high,low,close,volume`` (``open_time``
in ms), gzip or plain. Its interval is the most common step between rows. Against the champion's
bar interval:

- the same: replayed as it is;
- finer, and the champion's interval a whole multiple of it: **resampled** (open of the first,
  highest high, lowest low, close of the last, summed volume; a bar that misses rows is kept);
- coarser (or not a divisor): **skipped** — bars of the champion's interval cannot be made from
  it, and replaying coarser bars would feed the champion features it was never trained on.

:func:`worst_windows` finds the ``k`` largest falls from a close to a later close at most
``max_bars`` later, windows not overlapping. Each is replayed with ``warmup_bars`` bars before
its peak (features only) and trades from the peak to the trough.

>>> close = np.array([10.0, 12.0, 6.0, 7.0, 11.0, 10.0, 3.0, 9.0])
>>> [(w.peak, w.trough, round(w.fall, 2)) for w in worst_windows(close, 2, max_bars=3)]
[(4, 6, 0.73), (1, 2, 0.5)]
>>> [(w.peak, w.trough, round(w.fall, 2)) for w in worst_windows(close, 2, max_bars=10)]
[(1, 6, 0.75)]
"""

from __future__ import annotations

import gzip
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ares_stream.errors import AresError
from ares_stream.events import Kline

__all__ = ["Candles", "Window", "load_candles", "resample", "to_klines", "worst_windows"]

MS = 1_000_000  # ns per ms
HEADER = "open_time,open,high,low,close,volume"


@dataclass(frozen=True)
class Candles:
    """Candles of one interval: open times (ns) and OHLCV columns."""

    step_ns: int
    open_ns: np.ndarray
    ohlcv: np.ndarray  # rows of open, high, low, close, volume


@dataclass(frozen=True)
class Window:
    """A fall from the close of bar ``peak`` to the close of bar ``trough``."""

    peak: int
    trough: int
    fall: float  # 1 - trough close / peak close


def load_candles(path: Path) -> Candles:
    """The candles of ``path``; an :class:`AresError` naming the file when it is not one."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="ascii") as fh:
            head = fh.readline().strip()
            if head != HEADER:
                raise AresError(f"{path}: expected the header {HEADER!r}, got {head[:60]!r}")
            data = np.loadtxt(fh, delimiter=",", ndmin=2)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise AresError(f"{path}: cannot read candles: {exc}") from None
    if data.shape[0] < 3 or data.shape[1] != 6:
        raise AresError(f"{path}: too few candle rows ({data.shape[0]})")
    open_ns = data[:, 0].astype(np.int64) * MS
    step = Counter(np.diff(open_ns).tolist()).most_common(1)[0][0]
    return Candles(int(step), open_ns, data[:, 1:])


def resample(c: Candles, step_ns: int) -> Candles:
    """``c`` as candles of ``step_ns`` (a whole multiple of its own step), epoch-aligned."""
    key = c.open_ns // step_ns
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    o, h, lo, cl, v = c.ohlcv.T
    out = np.column_stack([o[starts], np.maximum.reduceat(h, starts),
                           np.minimum.reduceat(lo, starts), cl[np.r_[starts[1:] - 1, -1]],
                           np.add.reduceat(v, starts)])
    return Candles(step_ns, key[starts] * step_ns, out)


def worst_windows(close: np.ndarray, k: int, *, max_bars: int) -> list[Window]:
    """The ``k`` largest peak-to-trough falls (a trough at most ``max_bars`` after its peak),
    largest first, no two sharing a bar."""
    peaks = _window_peaks(close, max_bars)
    fall = 1.0 - close / close[peaks]
    taken = np.zeros(close.size, dtype=bool)
    out: list[Window] = []
    for j in np.argsort(-fall, kind="stable"):
        i = int(peaks[j])
        if fall[j] <= 0.0 or len(out) == k:
            break
        if not taken[i:j + 1].any():
            taken[i:j + 1] = True
            out.append(Window(i, int(j), float(fall[j])))
    return out


def _window_peaks(close: np.ndarray, max_bars: int) -> np.ndarray:
    """For each bar, the index of the highest close among the ``max_bars`` bars up to it."""
    best: deque[int] = deque()
    peaks = np.empty(close.size, dtype=np.int64)
    values = close.tolist()
    for j, value in enumerate(values):
        while best and values[best[-1]] <= value:
            best.pop()
        best.append(j)
        if best[0] < j - max_bars:
            best.popleft()
        peaks[j] = best[0]
    return peaks


def to_klines(c: Candles, symbol: str, interval: str, lo: int, hi: int) -> list[Kline]:
    """Candles ``lo..hi`` (inclusive) as closed klines of ``symbol``, ending at open + step."""
    out = []
    for t, (o, h, low, cl, v) in zip(c.open_ns[lo:hi + 1].tolist(),
                                     c.ohlcv[lo:hi + 1].tolist(), strict=True):
        end = t + c.step_ns
        out.append(Kline(symbol, end, end, interval, t, end - MS, o, h, low, cl, v))
    return out
