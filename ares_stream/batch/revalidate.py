"""Re-validation on demand (``ares-stream validate``): rebuild a symbol's batch state from the
database — buffer, booster lineage, champion timeline — and run the same walk-forward job the
daemon runs on its schedule, in this process; and the hyperparameter search on demand
(``ares-stream tune``, :func:`retune`)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ares_stream.batch import jobs, tuning
from ares_stream.config import Config
from ares_stream.errors import AresError
from ares_stream.learners.buffer import SampleBuffer
from ares_stream.learners.registry import Registry
from ares_stream.store import buffer as buffer_store
from ares_stream.store import tuning as tuning_store
from ares_stream.store import validations
from ares_stream.validation import promotion as gate
from ares_stream.validation import walkforward

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


@dataclass(frozen=True)
class Retune:
    """One symbol's on-demand search (``ares-stream tune``) and the tuned candidate's verdict
    against the champion on the validation's walk-forward."""
    symbol: str
    rows: int
    search: tuning.SearchOutcome | None  # None: too few samples
    validation: jobs.ValidationOutcome | None = None
    verdict: gate.Decision | None = None  # xgb_tuned against the champion policy


def retune(db: sqlite_utils.Database, config: Config, features: tuple[str, ...],
           symbol: str | None, how: tuning.SearchSpec,
           progress: Callable[[str, int, float], None] | None = None) -> list[Retune]:
    """Search every symbol of the buffer (or one) as the periodic job does, record each search,
    and validate its best configuration against the champion."""
    registry = Registry(db)
    out = []
    for sym in [symbol] if symbol else buffer_store.symbols(db):
        window = _window(db, config, features, sym)
        if symbol and not len(window.y):
            raise AresError(f"no buffered samples of {sym}")
        if len(window.y) < config.batch.min_rows:
            out.append(Retune(sym, len(window.y), None))
            continue
        at = int(window.ts[-1]) + 1  # every buffered row is labelled: all of them were known
        spec = jobs.spec_of(config)
        found = tuning.search(window, at, spec, jobs.settings_of(config),
                              dataclasses.replace(how, study=f"tune-{sym}-{at}"),
                              None if progress is None else functools.partial(progress, sym))
        tuning_store.insert(db, tuning.row_of(found, None, sym))
        tuned = found.tuned()
        if tuned is None:
            out.append(Retune(sym, len(window.y), found))
            continue
        v = jobs.validate(window, spec, jobs.settings_of(config), _champions(db, registry, sym),
                          _lineage(registry, sym), tuned)
        verdict = gate.decide(
            "xgb_tuned", walkforward.fold_losses(v.results, "xgb_tuned"), "champion",
            walkforward.fold_losses(v.results, "champion"), margin=spec.margin,
            n_boot=spec.n_boot, seed=spec.seed, confidence=spec.confidence,
            challenger_pnls=walkforward.fold_pnls(v.results, "xgb_tuned"),
            deflated=v.deflated, min_dsr=spec.min_dsr)
        out.append(Retune(sym, len(window.y), found, v, verdict))
    return out


def _window(db: sqlite_utils.Database, config: Config, features: tuple[str, ...],
            symbol: str) -> jobs.Window:
    buffer = SampleBuffer(symbol, features, max_rows=config.batch.buffer_rows,
                          max_age_ns=int(config.batch.buffer_days * 86_400e9),
                          store=buffer_store.BufferStore(db))
    buffer.load()
    ts, X, y, fwd = buffer.window()
    return jobs.Window(ts, X, y, fwd, buffer.features, buffer.closes())
