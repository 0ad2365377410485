"""Market regimes, labelled causally, and a model's scores per regime and at regime changes.

Each bar gets one of six regimes: its **volatility tercile** (low / mid / high) crossed with its
**trend** (up / down), from past data only:

- volatility at bar *t*: the standard deviation of the last ``vol_window`` log returns up to and
  including *t*'s (closes up to *t*);
- the tercile cut points: the 1/3 and 2/3 quantiles of the volatilities of the bars *before*
  the current refresh point, recomputed every ``refresh`` bars (no bar's label reads a later
  volatility); none before ``min_history`` volatilities exist (label ``-1``: unknown);
- trend at bar *t*: the sign of the log return over the last ``trend_window`` bars (up when >= 0).

A **transition** bar lies within ``transition_bars`` after a change of label. :func:`table` gives,
per regime (and for transitions), the rows, the log loss and hit rate of the predictions there,
and the PnL the rule made in those bars (the sum of its per-bar returns: fractions of cash).

>>> rng = np.random.default_rng(0)  # calm and rising, then four times as volatile and falling
>>> r = np.r_[rng.normal(0.0005, 0.001, 300), rng.normal(-0.002, 0.004, 300)]
>>> lab = label(np.exp(np.cumsum(r)), vol_window=20, trend_window=20, min_history=50, refresh=25)
>>> [NAMES[lab[i]] for i in (200, 400)], int((lab == UNKNOWN).sum())
(['low-vol up', 'high-vol down'], 75)

Terciles are relative to the past: long into the volatile stretch its bars become "mid" as the
past fills with them (bar 599: ``'mid-vol down'``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ares_stream.validation import metrics

__all__ = ["NAMES", "TRANSITION", "UNKNOWN", "RegimeRow", "label", "summary", "table",
           "transitions"]

NAMES = ("low-vol down", "low-vol up", "mid-vol down", "mid-vol up", "high-vol down",
         "high-vol up")
UNKNOWN = -1
TRANSITION = "transition"  # the row of bars just after a change of regime


@dataclass(frozen=True)
class RegimeRow:
    """One regime's scores: rows, share of the scored rows, log loss, hit rate, rule PnL."""

    regime: str
    n: int
    share: float
    log_loss: float
    hit_rate: float
    pnl: float  # sum of the rule's per-bar returns in these bars (fraction of cash)


def label(close: np.ndarray, *, vol_window: int = 60, trend_window: int = 60,
          min_history: int = 500, refresh: int = 100) -> np.ndarray:
    """Each bar's regime index into :data:`NAMES` (``UNKNOWN`` while warming up), causally."""
    c = np.asarray(close, dtype=np.float64)
    n = len(c)
    out = np.full(n, UNKNOWN, dtype=np.int64)
    if n <= max(vol_window, trend_window):
        return out
    r = np.diff(np.log(c))
    vol = np.full(n, np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(r, vol_window)
    vol[vol_window:] = windows.std(axis=1, ddof=1)  # bar t: returns r[t-vol_window+1..t]
    trend = np.full(n, np.nan)
    trend[trend_window:] = np.log(c[trend_window:] / c[:-trend_window])
    for start in range(0, n, refresh):
        past = vol[:start]
        past = past[~np.isnan(past)]
        if len(past) < min_history:
            continue
        lo, hi = np.quantile(past, [1 / 3, 2 / 3])
        block = slice(start, min(n, start + refresh))
        v, t = vol[block], trend[block]
        ok = ~np.isnan(v) & ~np.isnan(t)
        tercile = np.where(v <= lo, 0, np.where(v <= hi, 1, 2))
        out[block] = np.where(ok, 2 * tercile + (t >= 0), UNKNOWN)
    return out


def transitions(labels: np.ndarray, bars: int = 10) -> np.ndarray:
    """True for the ``bars`` bars starting at each change between two known regimes."""
    lab = np.asarray(labels)
    changed = np.r_[False, (lab[1:] != lab[:-1]) & (lab[1:] != UNKNOWN) & (lab[:-1] != UNKNOWN)]
    since = np.full(len(lab), np.iinfo(np.int64).max)
    last = -1
    for i, c in enumerate(changed):  # a short loop per fold: clarity over vector tricks
        if c:
            last = i
        if last >= 0:
            since[i] = i - last
    return since < bars


def table(labels: np.ndarray, y: np.ndarray, p: np.ndarray, returns: np.ndarray | None = None,
          *, transition_bars: int = 10) -> list[RegimeRow]:
    """Per regime present (in :data:`NAMES` order), then for transition bars: the scores of
    the rows with a prediction, and the rule PnL over those bars (``returns``: per bar)."""
    lab, y_, p_ = np.asarray(labels), np.asarray(y, dtype=np.float64), np.asarray(p, float)
    r = np.zeros(len(lab)) if returns is None else np.asarray(returns, dtype=np.float64)
    scored = ~np.isnan(p_)
    total = max(int(scored.sum()), 1)
    masks = [(NAMES[k], lab == k) for k in range(len(NAMES))]
    masks.append((TRANSITION, transitions(lab, transition_bars)))
    return [_row(name, m, y_, p_, r, scored, total) for name, m in masks if (m & scored).any()]


def _row(name: str, mask: np.ndarray, y: np.ndarray, p: np.ndarray, r: np.ndarray,
         scored: np.ndarray, total: int) -> RegimeRow:
    m = mask & scored
    yy, pp = y[m], p[m]
    return RegimeRow(name, int(m.sum()), float(m.sum()) / total, metrics.log_loss(yy, pp),
                     float(np.mean((pp >= 0.5) == (yy == 1))), math.fsum(r[mask]))


def summary(rows: Sequence[Sequence[RegimeRow]]) -> list[RegimeRow]:
    """Fold tables merged: rows summed, log loss and hit rate weighted by rows, PnL summed."""
    by: dict[str, list[RegimeRow]] = {}
    for fold in rows:
        for row in fold:
            by.setdefault(row.regime, []).append(row)
    total = max(sum(r.n for k, v in by.items() if k != TRANSITION for r in v), 1)
    order = [*NAMES, TRANSITION]
    out = []
    for name in sorted(by, key=order.index):
        rs = by[name]
        n = sum(r.n for r in rs)
        w = [r.n / n for r in rs] if n else [0.0] * len(rs)
        out.append(RegimeRow(name, n, n / total, math.fsum(x * r.log_loss for x, r in zip(
            w, rs, strict=True)), math.fsum(x * r.hit_rate for x, r in zip(w, rs, strict=True)),
            math.fsum(r.pnl for r in rs)))
    return out
