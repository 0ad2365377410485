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

import numpy as np

__all__ = ["P_MAX", "P_MIN", "log_loss", "log_loss_one", "log_losses", "prequential_p",
           "prequential_rate"]

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
