"""The sample buffer: one symbol's labelled samples, time-ordered, bounded by rows and by age.

Samples arrive from the delayed labeller in event-time order; boosters train on :meth:`window`
copies in a worker. Rows live in preallocated numpy arrays used as a sliding region: ``add``
writes one row at the end (amortized O(1), no allocation), eviction moves the start, and when
the end hits the capacity the live rows are moved to the front (capacity = ``max_rows`` plus a
sixteenth of slack, so a compaction every ``max_rows / 16`` adds costs about sixteen row copies,
~1 KB of memmove, per add). :meth:`window` is therefore one contiguous slice copy.

**Bytes per row** (:func:`row_bytes`): the features are held as float32 — what XGBoost trains
and predicts on anyway (its DMatrix and ``inplace_predict`` round float64 input to float32 the
same way), so boosters are unchanged; the time (int64), forward return and close (float64, the
walk-forward's PnL) and label (int8) keep their precision. With the 15 default features a row
costs ``(8 + 15×4 + 1 + 8 + 8) × 17/16 = 90`` B instead of ``(8 + 15×8 + 1 + 8 + 8) × 5/4 = 181``.
The online learner never reads the buffer (it learns from the engine's float64 features); the
walk-forward's River candidate and the feature-drift check read these float32 values.

With a :class:`~ares_stream.store.buffer.BufferStore`, :meth:`flush` writes the rows added since
the last flush in one transaction and prunes the rows evicted from memory; :meth:`load` rebuilds
the buffer after a restart from the rows written with the same feature schema.

>>> buf = SampleBuffer("BTCUSDT", ["ret_1", "rsi_14"], max_rows=3)
>>> for ts in (1, 2, 3, 4):
...     buf.add(ts, {"ret_1": 0.1 * ts}, label=ts % 2, forward_return=0.0)
>>> ts, X, y, fwd = buf.window()
>>> ts.tolist(), X[:, 0].astype(float).round(2).tolist(), bool(np.isnan(X[:, 1]).all()), y.tolist()
([2, 3, 4], [0.2, 0.3, 0.4], True, [0, 1, 0])
>>> buf.added_since(3), buf.feature_hash
(1, 'e351b2dbae513395')
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Mapping, Sequence

import numpy as np
import structlog

from ares_stream.store.buffer import BufferStore, decode_x

__all__ = ["SampleBuffer", "feature_hash", "row_bytes"]

log = structlog.get_logger(__name__)

_DAY_NS = 86_400 * 10**9
_MIN_CAPACITY = 1024
_SLACK = 16  # capacity = max_rows + max_rows / _SLACK
FEATURE_DTYPE = np.float32


def row_bytes(n_features: int) -> float:
    """Bytes one buffered row costs in a full buffer: its arrays' items times the slack.

    >>> row_bytes(15)  # the default feature set
    90.3125
    """
    per = 8 + n_features * np.dtype(FEATURE_DTYPE).itemsize + 1 + 8 + 8  # ts, X, y, fwd, close
    return per * (1 + 1 / _SLACK)


def feature_hash(names: Sequence[str]) -> str:
    """First 16 hex digits of the sha256 of the ordered feature names joined by newlines.

    >>> feature_hash(["a", "b"]) != feature_hash(["b", "a"])
    True
    """
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


class SampleBuffer:
    """Labelled samples of one symbol, time-ordered, bounded by rows and by age (event time)."""

    def __init__(
        self,
        symbol: str,
        features: Sequence[str],
        *,
        max_rows: int = 200_000,
        max_age_ns: int = 30 * _DAY_NS,
        store: BufferStore | None = None,
    ) -> None:
        if not features or len(set(features)) != len(features):
            raise ValueError(f"features must be non-empty and unique: {list(features)}")
        if max_rows < 1 or max_age_ns < 0:
            raise ValueError(f"max_rows must be >= 1 and max_age_ns >= 0: {max_rows}, {max_age_ns}")
        self.symbol = symbol
        self.features: tuple[str, ...] = tuple(features)
        self.feature_hash = feature_hash(self.features)
        self.max_rows = max_rows
        self.max_age_ns = max_age_ns
        self.store = store
        self.rejected = 0  # samples ignored because their ts_event was not after the newest
        self._limit = max_rows + max(max_rows // _SLACK, 1)
        self._getter = operator.itemgetter(*self.features)
        self._alloc(min(self._limit, _MIN_CAPACITY))
        self._flushed_ts: int | None = None  # newest ts_event known to be in the store

    def _alloc(self, capacity: int) -> None:
        d = len(self.features)
        self._ts = np.empty(capacity, dtype=np.int64)
        self._X = np.empty((capacity, d), dtype=FEATURE_DTYPE)
        self._y = np.empty(capacity, dtype=np.int8)
        self._fwd = np.empty(capacity, dtype=np.float64)
        self._close = np.empty(capacity, dtype=np.float64)
        self._lo = self._hi = 0
        self._newest: int | None = None

    def __len__(self) -> int:
        return self._hi - self._lo

    def newest(self) -> int | None:
        """``ts_event`` of the newest sample added (ns); None before the first."""
        return self._newest

    def oldest(self) -> int | None:
        """``ts_event`` of the oldest sample still held (ns); None when empty."""
        return int(self._ts[self._lo]) if self._hi > self._lo else None

    def add(self, ts_event: int, x: Mapping[str, float], label: int, forward_return: float,
            close: float = math.nan) -> None:
        """Append one sample (missing features are NaN) and its bar's ``close``; an old or
        repeated ``ts_event`` is ignored.

        Measured hot path: ~1 µs for 15 features, hence the flat code.
        """
        if self._newest is not None and ts_event <= self._newest:
            self.rejected += 1
            return
        if self._hi == len(self._ts):
            self._make_room()
        i = self._hi
        try:
            self._X[i] = self._getter(x)
        except KeyError:
            self._X[i] = [x.get(name, math.nan) for name in self.features]
        self._ts[i] = ts_event
        self._y[i] = label
        self._fwd[i] = forward_return
        self._close[i] = close
        self._hi = i + 1
        self._newest = ts_event
        self._evict(ts_event)

    def _evict(self, newest: int) -> None:
        lo = max(self._lo, self._hi - self.max_rows)
        cutoff = newest - self.max_age_ns
        if self._ts[lo] < cutoff:
            lo += int(np.searchsorted(self._ts[lo:self._hi], cutoff, side="left"))
        self._lo = lo

    def _make_room(self) -> None:
        """Move the live rows to the front, or grow (doubling, up to ``max_rows`` + slack)."""
        n, capacity = len(self), len(self._ts)
        if capacity < self._limit and n > capacity // 2:
            old: tuple[np.ndarray, ...] = (self._ts, self._X, self._y, self._fwd, self._close)
            lo, hi, newest = self._lo, self._hi, self._newest
            self._alloc(min(2 * capacity, self._limit))
            new: tuple[np.ndarray, ...] = (self._ts, self._X, self._y, self._fwd, self._close)
            for a, b in zip(new, old, strict=True):
                a[:n] = b[lo:hi]
            self._newest = newest
        else:
            for a in (self._ts, self._X, self._y, self._fwd, self._close):
                a[:n] = a[self._lo:self._hi]
        self._lo, self._hi = 0, n

    def _start(self, since: int | None) -> int:
        if since is None:
            return self._lo
        return self._lo + int(np.searchsorted(self._ts[self._lo:self._hi], since, side="right"))

    def added_since(self, ts: int) -> int:
        """Rows held with ``ts_event > ts``."""
        return self._hi - self._start(ts)

    def window(
        self, since: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Copies of ``(ts int64[n], X float32[n, d], y int8[n], fwd float64[n])`` of the rows
        with ``ts_event > since`` (all rows if ``since`` is None), ordered by ``ts_event``."""
        s = slice(self._start(since), self._hi)
        return self._ts[s].copy(), self._X[s].copy(), self._y[s].copy(), self._fwd[s].copy()

    def closes(self, since: int | None = None) -> np.ndarray:
        """A copy of the bar closes of the rows :meth:`window` returns (NaN where unknown)."""
        return self._close[self._start(since):self._hi].copy()

    def flush(self) -> None:
        """Write the rows added since the last flush (one transaction), then prune evicted rows."""
        if self.store is None or not len(self):
            return
        start = self._start(self._flushed_ts)
        if start < self._hi:
            s = slice(start, self._hi)
            rows = zip(self._ts[s].tolist(), self._X[s], self._y[s].tolist(),
                       self._fwd[s].tolist(), [self.feature_hash] * (self._hi - start),
                       self._close[s].tolist(), strict=True)
            self.store.add_many(self.symbol, rows)
            self._flushed_ts = self._newest
        self.store.prune(self.symbol, older_than_ts=int(self._ts[self._lo]))

    def load(self) -> int:
        """Fill an empty buffer from the store with this symbol's rows of this feature schema.

        Rows written under another feature list are ignored (counted and logged); the bounds
        apply as if the rows had been added one by one. Returns the number of rows kept.
        """
        if self.store is None:
            return 0
        if len(self):
            raise RuntimeError("SampleBuffer.load() must run on an empty buffer (at startup)")
        rows = self.store.load(self.symbol, self.feature_hash)
        ignored = self.store.count(self.symbol) - len(rows)
        if ignored:
            log.warning("buffer_rows_ignored", symbol=self.symbol, rows=ignored,
                        feature_hash=self.feature_hash, reason="other feature schema")
        if rows:
            self._fill(rows)
        log.info("buffer_loaded", symbol=self.symbol, rows=len(self), ignored=ignored)
        return len(self)

    def _fill(self, rows: list[tuple[int, bytes, int, float, float]]) -> None:
        d = len(self.features)
        ts, blobs, y, fwd, close = zip(*rows, strict=True)
        try:  # float32 rows, or float64 ones written before the buffer held float32
            X = decode_x(blobs, d)
        except ValueError as exc:
            raise ValueError(f"buffer rows of {self.symbol}: {exc}") from None
        keep = slice(max(0, len(rows) - self.max_rows), len(rows))  # the newest max_rows
        n = keep.stop - keep.start
        self._alloc(min(self._limit, max(_MIN_CAPACITY, n)))
        self._ts[:n] = np.asarray(ts[keep], dtype=np.int64)
        self._X[:n] = X[keep]
        self._y[:n] = np.asarray(y[keep], dtype=np.int8)
        self._fwd[:n] = np.asarray(fwd[keep], dtype=np.float64)
        self._close[:n] = np.asarray(close[keep], dtype=np.float64)
        self._hi = n
        self._newest = self._flushed_ts = int(self._ts[n - 1])
        self._evict(self._newest)
