"""Re-validation on demand (``ares-stream validate``): rebuild a symbol's batch state from the
database — buffer, booster lineage, champion timeline — and run the same walk-forward job the
daemon runs on its schedule, in this process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ares_stream.batch import jobs
from ares_stream.config import Config
from ares_stream.learners.buffer import SampleBuffer
from ares_stream.learners.registry import Registry
from ares_stream.store import buffer as buffer_store
from ares_stream.store import validations

if TYPE_CHECKING:
    import sqlite_utils


@dataclass(frozen=True)
class Revalidation:
    """One symbol's on-demand validation: the buffered rows it ran on, and its outcome."""
    symbol: str
    rows: int
    outcome: jobs.ValidationOutcome | None  # None: too few samples


def revalidate(db: sqlite_utils.Database, config: Config, features: tuple[str, ...],
               symbol: str | None = None) -> list[Revalidation]:
    """Validate every symbol of the buffer (or one) as the scheduled job would."""
    registry = Registry(db)
    store = buffer_store.BufferStore(db)
    out = []
    for sym in [symbol] if symbol else buffer_store.symbols(db):
        buffer = SampleBuffer(sym, features, max_rows=config.batch.buffer_rows,
                              max_age_ns=int(config.batch.buffer_days * 86_400e9), store=store)
        buffer.load()
        if len(buffer) < config.batch.min_rows:
            out.append(Revalidation(sym, len(buffer), None))
            continue
        ts, X, y, fwd = buffer.window()
        window = jobs.Window(ts, X, y, fwd, buffer.features, buffer.closes())
        outcome = jobs.validate(window, jobs.spec_of(config), jobs.settings_of(config),
                                _champions(db, registry, sym), _lineage(registry, sym))
        out.append(Revalidation(sym, len(buffer), outcome))
    return out


def _lineage(registry: Registry, symbol: str) -> jobs.Timeline:
    models = [m for m in registry.list(symbol) if m.kind == "xgboost" and not m.pruned]
    return [(int(m.train_end or 0), jobs.to_blob(registry.load_booster(m.id), m.id))
            for m in sorted(models, key=lambda m: m.id)[-50:]]


def _champions(db: sqlite_utils.Database, registry: Registry, symbol: str) -> jobs.Timeline:
    return [(ts, jobs.to_blob(registry.load_booster(mid), mid))
            for ts, mid in validations.promotions(db, symbol)[-50:]]
