"""Model-quality gauges: how well each model forecasts now, and how old its evidence is.

A custom collector, like the engine totals: :meth:`ModelQuality.observe` reads the engine (and
its batch learner) at scrape time and keeps the values, so the hot path pays nothing and a
symbol or a challenger that went away leaves no stale series behind. Per symbol:

- ``ares_rolling_log_loss`` / ``ares_rolling_accuracy`` ``{model}``: over the learner's rolling
  window of revealed labels, for ``river`` (the online model), ``booster`` (the champion
  booster, once there is one), ``ensemble`` (the traded forecast) and ``baseline`` (the
  prequential constant probability). Classification only; kept in memory, so a restart starts
  the window afresh;
- ``ares_drift_age_seconds``: since the last ADWIN drift (absent before the first);
- ``ares_champion_age_seconds``: since the champion booster was promoted (absent without one);
- ``ares_validation_promoted`` ``{challenger}``: the last walk-forward validation's decision,
  1 promoted, 0 kept the incumbent;
- ``ares_features_drifting``: features whose PSI drifted at the last feature drift check.

Ages are measured from ``now`` (Unix ns; the wall clock by default) to event times, which the
live daemon receives within milliseconds of the exchange stamping them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ares_stream.batch.learner import BatchLearner
from ares_stream.learners.scores import RollingScores

if TYPE_CHECKING:
    from ares_stream.engine import Engine

__all__ = ["MODELS", "QUALITY", "ModelQuality"]

MODELS = ("river", "booster", "ensemble", "baseline")

# metric name -> (help, labels besides symbol)
QUALITY: dict[str, tuple[str, tuple[str, ...]]] = {
    "ares_rolling_log_loss": ("Mean log loss over the rolling window of revealed labels, per "
                              "symbol and model (river, booster, ensemble = traded, baseline).",
                              ("model",)),
    "ares_rolling_accuracy": ("Accuracy (P >= 0.5 read as up) over the rolling window of revealed "
                              "labels, per symbol and model.", ("model",)),
    "ares_drift_age_seconds": ("Seconds since the last ADWIN drift of the online loss.", ()),
    "ares_champion_age_seconds": ("Seconds since the champion booster was promoted.", ()),
    "ares_validation_promoted": ("The last walk-forward validation's decision: 1 the challenger "
                                 "was promoted, 0 the incumbent kept.", ("challenger",)),
    "ares_features_drifting": ("Features drifted (PSI) at the last feature drift check.", ()),
}

Row = tuple[tuple[str, ...], float]


class ModelQuality(Collector):
    """The quality gauges of the last :meth:`observe`."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Row]] = {name: [] for name in QUALITY}

    def observe(self, engine: Engine, now: int | None = None) -> None:
        """Read the engine's and its batch learner's state; ages are taken at ``now`` (ns)."""
        now_ns = time.time_ns() if now is None else now
        rows: dict[str, list[Row]] = {name: [] for name in QUALITY}
        for sym, st in sorted(engine.state.items()):
            rolling = st.rolling if st.rolling is not None else RollingScores()
            for model in rolling.names:
                loss, accuracy = rolling.get(model)
                rows["ares_rolling_log_loss"].append(((sym, model), loss))
                rows["ares_rolling_accuracy"].append(((sym, model), accuracy))
            if st.last_drift:
                rows["ares_drift_age_seconds"].append(((sym,), (now_ns - st.last_drift) / 1e9))
        if isinstance(engine.batch, BatchLearner):
            self._observe_batch(engine.batch, now_ns, rows)
        self.rows = rows

    @staticmethod
    def _observe_batch(batch: BatchLearner, now_ns: int, rows: dict[str, list[Row]]) -> None:
        for sym, sb in sorted(batch.symbols.items()):
            if sb.champion is not None and sb.champion_since:
                age = (now_ns - sb.champion_since[-1][0]) / 1e9
                rows["ares_champion_age_seconds"].append(((sym,), age))
            if sb.decision is not None:
                challenger, promoted = sb.decision
                rows["ares_validation_promoted"].append(((sym, challenger), float(promoted)))
        for sym, n in sorted(batch.features_drifting.items()):
            rows["ares_features_drifting"].append(((sym,), float(n)))

    def collect(self) -> Iterator[Metric]:
        """One gauge family per quality metric, with the rows of the last :meth:`observe`."""
        for name, (doc, labels) in QUALITY.items():
            family = GaugeMetricFamily(name, doc, labels=["symbol", *labels])
            for values, value in self.rows[name]:
                family.add_metric(list(values), value)
            yield family
