"""The one way to build a run's engine: replay, the live ingest and the daemon all come here.

:func:`build_engine` gives the engine its collaborators at construction — the batch learner when
the config enables it (in a worker process; replay applies its jobs on event time, live on wall
time) — and the broker the caller built (the paper broker of a replay or of the paper daemon,
the live broker; none for ``ares-stream record``), and the broker the batch learner's
:meth:`~ares_stream.batch.learner.BatchLearner.reasons` (why each order was sent).
:meth:`Engine.close <ares_stream.engine.Engine.close>` tears it down.
"""

from __future__ import annotations

from typing import Any

from ares_stream.batch.learner import BatchLearner, for_run
from ares_stream.config import Config
from ares_stream.engine import Broker, Engine, Recorder
from ares_stream.feed.gate import Gate

__all__ = ["build_engine"]

def build_engine(config: Config, store: Any, *, replay: bool, learn: bool = True,
                 gate: Gate | None = None, recorder: Recorder | None = None,
                 broker: Broker | None = None) -> Engine:
    """An engine for one run writing to ``store`` (a RunStore). ``learn=False``: decode, gate,
    record and count only — no learners, no batch, no broker."""
    batch: BatchLearner | None = None
    if learn:
        batch = for_run(config, store, replay=replay)
    if batch is not None and broker is not None and hasattr(broker, "explain"):
        broker.explain = batch.reasons  # an order stores why its bar's booster predicted so
    return Engine(config, store, gate=gate, recorder=recorder, learn=learn, batch=batch,
                  broker=broker)
