"""Bounded rings of recent samples kept as numpy arrays instead of Python objects.

A learner keeps its last few hundred samples (to warm a fresh model after a drift) and the last
``rolling_window`` labels (to revert them out of its rolling metrics). As deques of tuples of
dicts and floats these cost ~800 B and ~200 B a sample (measured: 414 KB and 215 KB per symbol,
``bench/memory.py``); here a sample is its float64 values and an index into the few key orders
seen, so a warm sample of 15 features costs ~150 B and a rolling label 16 B. The values stay
float64 and the dicts come back with the same keys in the same order: what a learner reads from
a ring is equal to what it put there, so no prediction changes.

>>> ring = WarmRing(2, int_labels=True)
>>> for i in range(3):
...     ring.append({"a": 0.1 * i, "b": 1.0}, 1, 0.5 + i)
>>> list(ring), len(ring)
([({'a': 0.1, 'b': 1.0}, 1, 1.5), ({'a': 0.2, 'b': 1.0}, 1, 2.5)], 2)
>>> roll = RollingPairs(Count, 2)
>>> for y in (1, 2, 3):
...     roll.update(y, 0.0)
>>> roll.get()
5.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

__all__ = ["RollingPairs", "WarmRing"]


class WarmRing:
    """The last ``maxlen`` ``(x, y, loss)`` samples, oldest first; ``x`` a dict of floats.

    ``int_labels``: ``y`` comes back as an ``int`` (a class label), else as a ``float``.
    """

    def __init__(self, maxlen: int, *, int_labels: bool) -> None:
        self.maxlen, self.int_labels = maxlen, int_labels
        self._orders: list[tuple[str, ...]] = []  # the key orders seen; rows point into it
        self._x = np.empty((maxlen, 0), dtype=np.float64)
        self._order = np.empty(maxlen, dtype=np.int32)
        self._y = np.empty(maxlen, dtype=np.float64)
        self._loss = np.empty(maxlen, dtype=np.float64)
        self._next = self._n = 0
        self._last = -1  # the key order of the latest sample

    def __len__(self) -> int:
        return self._n

    def append(self, x: Mapping[str, float], y: float, loss: float) -> None:
        """Add one sample, dropping the oldest when full. Runs once per learned sample."""
        if not self.maxlen:
            return
        keys = tuple(x)
        k = self._last
        if k < 0 or self._orders[k] != keys:
            k = self._last = self._order_index(keys)
        i = self._next
        self._x[i, : len(keys)] = list(x.values())
        self._order[i], self._y[i], self._loss[i] = k, y, loss
        self._next = (i + 1) % self.maxlen
        self._n = min(self._n + 1, self.maxlen)

    def _order_index(self, keys: tuple[str, ...]) -> int:
        """The index of this key order (added, and the value columns widened, if new)."""
        if keys in self._orders:
            return self._orders.index(keys)
        self._orders.append(keys)
        if len(keys) > self._x.shape[1]:
            wider = np.full((self.maxlen, len(keys)), np.nan)
            wider[:, : self._x.shape[1]] = self._x
            self._x = wider
        return len(self._orders) - 1

    def clear(self) -> None:
        """Forget every sample (the key orders too)."""
        self._orders.clear()
        self._next = self._n = 0
        self._last = -1

    def _rows(self) -> np.ndarray:
        """Positions of the samples held, oldest first."""
        return (np.arange(self._n) + (self._next - self._n)) % self.maxlen if self.maxlen else \
            np.empty(0, dtype=np.int64)

    def __iter__(self) -> Iterator[tuple[dict[str, float], Any, float]]:
        orders, label = self._orders, (int if self.int_labels else float)
        for i in self._rows().tolist():
            keys = orders[int(self._order[i])]
            yield (dict(zip(keys, self._x[i, : len(keys)].tolist(), strict=True)),
                   label(self._y[i]), float(self._loss[i]))

    def losses(self) -> list[float]:
        """The losses of the samples held, oldest first."""
        return list(self._loss[self._rows()].tolist())

    def nbytes(self) -> int:
        """Bytes of the arrays (the key orders aside: a few tuples shared by every row)."""
        return self._x.nbytes + self._order.nbytes + self._y.nbytes + self._loss.nbytes


class RollingPairs:
    """River's ``utils.Rolling`` for a metric updated with ``(y, p)`` pairs of floats: the same
    calls in the same order (revert the oldest pair once the window is full, then update), the
    pairs kept in two float64 rings instead of a deque of ``(args, kwargs)`` tuples.

    ``int_labels``: ``y`` goes back to ``revert`` as an ``int``, as it came.
    """

    def __init__(self, factory: Callable[[], Any], window_size: int, *,
                 int_labels: bool = True) -> None:
        self.obj: Any = factory()
        self.window_size, self.int_labels = window_size, int_labels
        self._y = np.empty(window_size, dtype=np.float64)
        self._p = np.empty(window_size, dtype=np.float64)
        self._next = self._n = 0

    def __len__(self) -> int:
        return self._n

    def update(self, y: float, p: float) -> None:
        """Revert the pair leaving the window (if full), then add ``(y, p)``."""
        i = self._next
        if self._n == self.window_size:
            old = float(self._y[i])
            self.obj.revert(int(old) if self.int_labels else old, float(self._p[i]))
        self.obj.update(y, p)
        self._y[i], self._p[i] = y, p
        self._next = (i + 1) % self.window_size
        self._n = min(self._n + 1, self.window_size)

    def get(self) -> Any:
        """The wrapped metric's value over the window."""
        return self.obj.get()

    @classmethod
    def of(cls, rolling: Any, *, int_labels: bool) -> RollingPairs:
        """The same window taken from a River ``utils.Rolling`` (a state saved before rings)."""
        ring = cls.__new__(cls)
        ring.obj, ring.window_size = rolling.obj, rolling.window_size
        ring.int_labels = int_labels
        pairs = [args for args, _ in rolling.window]
        n = len(pairs)
        ring._y = np.empty(ring.window_size, dtype=np.float64)
        ring._p = np.empty(ring.window_size, dtype=np.float64)
        ring._y[:n] = [y for y, _ in pairs]
        ring._p[:n] = [p for _, p in pairs]
        ring._n, ring._next = n, n % ring.window_size
        return ring


class Count:
    """A toy metric for the examples: the sum of ``y`` over the window."""

    def __init__(self) -> None:
        self.total = 0.0

    def update(self, y: float, p: float) -> None:
        """Add ``y``."""
        self.total += y

    def revert(self, y: float, p: float) -> None:
        """Take ``y`` away."""
        self.total -= y

    def get(self) -> float:
        """The sum."""
        return self.total
