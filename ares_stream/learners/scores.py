"""The one log loss and the one constant baseline every stage scores with.

``log_loss_one`` is the per-event form (the engine, the online learner), ``log_losses`` and
``log_loss`` the vector form (walk-forward folds, reports, the demo); all clip ``p`` to
``[P_MIN, P_MAX]`` exactly as River's ``LogLoss`` does, so a number printed by a replay, a fold
table and a report agree. The baseline is *prequential*: before each row, the label frequency
seen so far, ``(ones + ½) / (n + 1)`` — a constant model that never looks ahead.

>>> round(log_loss_one(0.9, 1), 6), round(log_loss_one(0.0, 1), 3)
(0.105361, 34.539)
>>> log_losses(np.array([1, 0]), np.array([0.9, 0.9])).round(6).tolist()
[0.105361, 2.302585]
>>> prequential_p(0, 0), prequential_p(1, 1), prequential_p(1, 2)
(0.5, 0.75, 0.5)
>>> prequential_rate(np.array([1.0, 0.0, 1.0])).tolist()
[0.5, 0.75, 0.5]
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["P_MAX", "P_MIN", "RollingScores", "log_loss", "log_loss_one", "log_losses",
           "prequential_p", "prequential_rate"]

P_MIN, P_MAX = 1e-15, 1 - 1e-15  # River's LogLoss clamp
_log = math.log


def log_loss_one(p: float, label: float) -> float:
    """The negative log likelihood of one outcome (``label`` 1 or 0) under P(1) = ``p``, clipped."""
    p = P_MIN if p < P_MIN else (P_MAX if p > P_MAX else p)
    return -_log(p) if label else -_log(1.0 - p)


def log_losses(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """:func:`log_loss_one` of each row, as float64."""
    y, p = np.asarray(y, dtype=np.float64), np.clip(np.asarray(p, dtype=np.float64), P_MIN, P_MAX)
    return np.asarray(-(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)), dtype=np.float64)


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """The mean of :func:`log_losses`."""
    return float(np.mean(log_losses(y, p)))


def prequential_p(ones: int, n: int) -> float:
    """The baseline's P(label = 1) after ``n`` labels of which ``ones`` were 1."""
    return (ones + 0.5) / (n + 1.0)


def prequential_rate(y: np.ndarray) -> np.ndarray:
    """:func:`prequential_p` before each row of ``y``, vectorised."""
    ones = np.concatenate(([0.0], np.cumsum(y)[:-1]))
    return np.asarray((ones + 0.5) / (np.arange(y.size) + 1.0), dtype=np.float64)


class RollingScores:
    """Log loss and accuracy (P >= 0.5 read as 1) of several forecasters over their last
    ``window`` labels, O(1) per label: a ring of (loss, hit) and running sums per name. A NaN
    probability (the forecaster had nothing to say) is not scored.

    >>> r = RollingScores(window=2)
    >>> for y, p in ((1, 0.9), (0, 0.9), (0, 0.2)):
    ...     r.update(y, {"m": p, "none": math.nan})
    >>> loss, acc = r.get("m"); round(loss, 6), acc, r.names
    (1.262864, 0.5, ('m',))
    """

    def __init__(self, window: int = 1000) -> None:
        self.window = window
        self._ring: dict[str, _Ring] = {}  # name -> its last ``window`` (loss, hit), float64/int8
        self._sums: dict[str, list[float]] = {}  # name -> [loss sum, hits]

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore saved scores; rings saved as deques of ``(loss, hit)`` become numpy rings."""
        self.__dict__.update(state)
        for name, ring in list(self._ring.items()):
            if isinstance(ring, deque):
                self._ring[name] = new = _Ring(self.window)
                for loss, hit in ring:
                    new.push(loss, hit)

    @property
    def names(self) -> tuple[str, ...]:
        """The forecasters scored so far, in first-seen order."""
        return tuple(self._ring)

    def update(self, label: int, probs: Mapping[str, float | None]) -> None:
        """Score each forecaster's P(label = 1) against ``label``."""
        for name, p in probs.items():
            if p is None or math.isnan(p):
                continue
            ring = self._ring.get(name)
            if ring is None:
                ring = self._ring[name] = _Ring(self.window)
            sums = self._sums.setdefault(name, [0.0, 0.0])
            loss, hit = log_loss_one(p, label), int((p >= 0.5) == bool(label))
            old = ring.push(loss, hit)
            sums[0] += loss
            sums[1] += hit
            if old is not None:
                sums[0] -= old[0]
                sums[1] -= old[1]

    def get(self, name: str) -> tuple[float, float]:
        """(mean log loss, accuracy) of ``name`` over its window; NaNs before its first label."""
        ring = self._ring.get(name)
        if ring is None or not ring.n:
            return math.nan, math.nan
        loss_sum, hits = self._sums[name]
        return max(loss_sum, 0.0) / ring.n, hits / ring.n


class _Ring:
    """The last ``size`` (loss, hit) pairs of one forecaster: float64 and int8 arrays."""

    def __init__(self, size: int) -> None:
        self.loss = np.empty(size, dtype=np.float64)
        self.hit = np.empty(size, dtype=np.int8)
        self.next = self.n = 0

    def push(self, loss: float, hit: int) -> tuple[float, int] | None:
        """Add a pair; the one it pushed out of a full ring, or None."""
        i, size = self.next, len(self.loss)
        old = (float(self.loss[i]), int(self.hit[i])) if self.n == size else None
        self.loss[i], self.hit[i] = loss, hit
        self.next, self.n = (i + 1) % size, min(self.n + 1, size)
        return old
