"""Delayed labels: a prediction made at bar *t* is scored only once bar *t + horizon* has closed.

The clock is the bar count. Every closed bar is one tick of the horizon clock, whether or not the
features were ready on it (warm-up after start or after a gap, a missing book top): such a bar
produces no sample but its close is still the future price of earlier bars. Only bars pushed with
features become samples.

Per bar, the order is River's ``stream.simulate_qa`` with integer moments (bar indices) and a
constant ``delay=horizon``, the loop behind ``evaluate.progressive_val_score``:

1. ``resolve(close)`` reveals, oldest first, every pending sample with ``t + horizon <= i``;
   the caller scores and learns them;
2. then the caller predicts on bar ``i`` and ``push``-es it.

So a sample is learned before the prediction of the bar on which its label became known, and never
earlier.

The targets, from the closes of bar *t* and bar *t + horizon*:

- regression: ``forward_return = log(close[t + horizon] / close[t])``;
- classification: ``label = 1`` if ``forward_return > threshold`` else ``0``, where ``threshold``
  (log-return units, e.g. ``0.002`` = 20 bps) is the round-trip cost of a trade. ``label == 1``
  reads "a long opened at this close and closed ``horizon`` bars later would have paid its fees".

After a data gap call ``clear()``: a label spanning the gap would mix two disconnected markets.

>>> q = LabelQueue(horizon=2, threshold=0.002)
>>> for i, close in enumerate([100.0, 101.0, 99.0, 102.0]):
...     for r in q.resolve(close):
...         print(i, r.ts_event, r.label, round(r.forward_return, 5))
...     q.push({"f": 0.0} if i != 1 else None, close, ts_event=i)
2 0 0 -0.01005
>>> [(r.ts_event, r.label) for r in q.resolve(103.0)]  # bar 4 reveals bar 2; bar 3 waits for 5
[(2, 1)]
>>> len(q), q.clear()
(1, 1)
"""

from __future__ import annotations

import math
from collections import deque

import msgspec

__all__ = ["LabelQueue", "Resolved"]

_log = math.log


class Resolved(msgspec.Struct, frozen=True):
    """A sample whose label is known: what was pushed at bar *t*, and its targets."""

    x: dict[str, float]  # the features of bar t, as predicted on
    ts_event: int  # ns, the bar t
    close: float  # close of bar t
    payload: object  # whatever the caller pushed with it (typically its prediction)
    forward_return: float  # log(close[t + horizon] / close[t]): the regression target
    label: int  # 1 if forward_return > threshold (a long would have paid its fees), else 0


class LabelQueue:
    """Holds samples until their horizon has elapsed; O(1) amortised per bar.

    Examples
    --------
    >>> q = LabelQueue(horizon=1, threshold=0.0)
    >>> q.resolve(10.0), q.push({"a": 1.0}, 10.0, ts_event=0, payload=0.7)
    ([], None)
    >>> [(r.label, r.payload) for r in q.resolve(11.0)]
    [(1, 0.7)]
    """

    __slots__ = ("_bar", "_pending", "_resolved_bar", "horizon", "threshold")

    def __init__(self, horizon: int, threshold: float) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1 bar, got {horizon}")
        self.horizon = horizon
        self.threshold = threshold
        self._bar = 0  # index of the bar about to be pushed
        self._resolved_bar = -1  # the bar index resolve() last ran for
        # (bar index, x, close, ts_event, payload), oldest first
        self._pending: deque[tuple[int, dict[str, float], float, int, object]] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    def resolve(self, close: float) -> list[Resolved]:
        """Reveal every pending sample whose horizon ends at this bar; call before ``push``."""
        bar = self._bar
        self._resolved_bar = bar
        pending = self._pending
        if not pending or pending[0][0] + self.horizon > bar:
            return []
        out = []
        due = bar - self.horizon
        threshold = self.threshold
        while pending and pending[0][0] <= due:
            _, x, c0, ts, payload = pending.popleft()
            r = _log(close / c0)
            out.append(Resolved(x, ts, c0, payload, r, 1 if r > threshold else 0))
        return out

    def push(
        self, x: dict[str, float] | None, close: float, ts_event: int, payload: object = None
    ) -> None:
        """Close the current bar: enqueue it as a sample if it has features (``x`` not None).

        Raises ``RuntimeError`` if ``resolve`` was not called for this bar first: skipping it
        would label earlier samples with a later close.
        """
        bar = self._bar
        if self._resolved_bar != bar:
            raise RuntimeError("LabelQueue.resolve(close) must be called before push() on each bar")
        if x is not None:
            self._pending.append((bar, x, close, ts_event, payload))
        self._bar = bar + 1

    def clear(self) -> int:
        """Drop every pending sample (after a data gap); return how many were dropped."""
        n = len(self._pending)
        self._pending.clear()
        return n
