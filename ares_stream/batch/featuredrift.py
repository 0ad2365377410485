"""The feature drift check of one symbol: windows, the worker's job, and what a result does.

Every ``drift.feature_every`` of event time (the batch learner's clock), per symbol:

- the **reference** is the champion's training window — the buffered rows from its
  ``train_start`` to its ``train_end`` (the newest booster's before a first champion), its newest
  :data:`MAX_REFERENCE` rows at most, consecutive (the noise-aware threshold slides windows along
  it); rows the buffer evicted are gone from it;
- the **recent** window is the newest ``drift.feature_window`` labelled rows after ``train_end``:
  no check until that many exist, so the two never overlap. A row enters the buffer when its label
  resolves, so every value a check reads is from before its event time (``horizon`` bars before);
- the worker computes PSI and KS per feature (:func:`check`, :mod:`ares_stream.validation.drift`);
  the result applies between bars like the other jobs. A feature drifts when its PSI is above
  ``drift.psi_threshold`` and above ``drift.psi_null_factor`` times the largest PSI of any
  ``feature_window`` consecutive reference rows against the rest of the reference (its own noise,
  autocorrelation and wander; none judged while the reference holds fewer than
  ``drift.reference_windows`` windows). Each check stores every feature's row; when
  at least ``drift.features_drifted`` features drifted, a drift
  event of detector ``"features"`` is recorded and the batch learner refits early, as after an
  upward ADWIN drift — once per episode: the watch re-arms when a check finds fewer drifted
  features or the reference model changes.

>>> w = Watch()
>>> w.fires("BTCUSDT", 7, drifted=True), w.fires("BTCUSDT", 7, drifted=True)
(True, False)
>>> w.fires("BTCUSDT", 8, drifted=True)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import structlog

from ares_stream.config import DriftConfig
from ares_stream.events import DriftDetected
from ares_stream.learners.buffer import SampleBuffer
from ares_stream.store import feature_drift
from ares_stream.validation.drift import FeatureDrift, compare

__all__ = ["MAX_REFERENCE", "Watch", "Windows", "check", "record", "windows"]

if TYPE_CHECKING:
    import sqlite_utils

log = structlog.get_logger("ares_stream.batch")

MAX_REFERENCE = 50_000  # newest reference rows compared: PSI and KS cost O(n log n)


@dataclass(frozen=True)
class Windows:
    """The two samples of one check (rows × features, in the buffer's feature order)."""

    reference: np.ndarray
    recent: np.ndarray
    ts_event: int  # the newest recent row's event time


def windows(buffer: SampleBuffer, train_start: int, train_end: int,
            recent_rows: int) -> Windows | None:
    """The reference and recent windows, or None while fewer than ``recent_rows`` rows came
    after ``train_end`` or the buffer no longer holds the training rows."""
    if buffer.added_since(train_end) < recent_rows:
        return None
    ts, X, _, _ = buffer.window(since=train_start - 1)
    cut = int(np.searchsorted(ts, train_end, side="right"))
    if cut == 0:
        return None
    return Windows(X[max(0, cut - MAX_REFERENCE):cut], X[-recent_rows:], int(ts[-1]))


def check(w: Windows, features: Sequence[str], cfg: DriftConfig) -> list[FeatureDrift]:
    """The worker's job: every feature's PSI and KS, recent against reference, and whether it
    drifted (:func:`ares_stream.validation.drift.compare`)."""
    return compare(w.reference, w.recent, features, psi_threshold=cfg.psi_threshold,
                   null_factor=cfg.psi_null_factor, reference_windows=cfg.reference_windows)


@dataclass
class Watch:
    """Per symbol, whether a drifted check should raise an event (once per episode)."""

    _raised: dict[str, int] = field(default_factory=dict)  # symbol -> reference model id

    def fires(self, symbol: str, model_id: int, *, drifted: bool) -> bool:
        """Whether this check's outcome raises an event; re-arms on a calm check or a new
        reference model."""
        if not drifted:
            self._raised.pop(symbol, None)
            return False
        if self._raised.get(symbol) == model_id:
            return False
        self._raised[symbol] = model_id
        return True


def record(db: sqlite_utils.Database, run_id: int | None, symbol: str, ts: int,
           results: Sequence[FeatureDrift], model_id: int, cfg: DriftConfig,
           watch: Watch) -> DriftDetected | None:
    """Store one check's rows; the drift event it raises, if any (stored and logged too)."""
    feature_drift.insert(db, [
        feature_drift.DriftRow(run_id, symbol, ts, r.feature, r.psi, r.ks, r.reference_rows,
                               r.recent_rows, r.threshold, r.drifted, model_id)
        for r in results])
    drifted = [r for r in results if r.drifted]
    if not watch.fires(symbol, model_id, drifted=len(drifted) >= cfg.features_drifted):
        return None
    measured = [r.psi for r in results if not math.isnan(r.psi)]
    names = ", ".join(r.feature for r in sorted(drifted, key=lambda r: -r.psi))
    d = DriftDetected(symbol, ts, ts, "features", cfg.psi_threshold,
                      max(measured), max(r.recent_rows for r in results),
                      f"early refit: {names} drifted")
    feature_drift.insert_event(db, run_id, d)
    log.info("drift_detected", symbol=symbol, ts_event=ts, detector="features",
             features=[r.feature for r in drifted], model_id=model_id, action=d.action)
    return d
