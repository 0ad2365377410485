"""Feature selection as part of a validation job (``[selection] enabled = true``), in the worker.

:func:`validate` measures every feature's permutation importance on the validation's own purged
walk-forward folds (:mod:`ares_stream.validation.selection`: the refit recipe fitted on each
fold's training rows, each feature shuffled on its test rows), adds the ``xgb_selected``
candidate — the refit recipe on the kept features, scored prequentially: on each fold the features
kept by the earlier folds' evidence — and runs :func:`ares_stream.batch.jobs.validate` with it.
When the gate promotes ``xgb_selected``, the booster on the kept features is fitted on the whole
window: a different feature hash, so a fresh fit, never a warm start across schemas; it predicts
by feature name (:func:`ares_stream.learners.booster.predict`, ``predict_one``). When no feature
is kept there is nothing to train and ``xgb_selected`` does not compete; the evidence is stored
all the same (:mod:`ares_stream.store.selection`).

Cost: one more booster fit per fold (the recipe the permutations probe) plus one per fold whose
earlier evidence dropped something, and ``repeats x features`` predictions per fold.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ares_stream.batch import jobs
from ares_stream.config import Config
from ares_stream.learners import booster as bst
from ares_stream.store.selection import SelectionRow
from ares_stream.validation import selection as sel
from ares_stream.validation import walkforward

__all__ = ["Selected", "SelectionSpec", "from_rows", "rows_of", "spec_of", "subset_model",
           "validate"]


@dataclass(frozen=True)
class SelectionSpec:
    """The ``[selection]`` settings a validation job needs, plain to pickle."""

    repeats: int
    confidence: float
    seed: int


@dataclass(frozen=True)
class Selected:
    """What a selection found, and the kept features' whole-window booster when it won."""

    selection: sel.Selection
    model: jobs.Blob | None  # fitted only when the gate promotes xgb_selected
    seconds: float  # wall time of the evidence and the prequential fits


def spec_of(config: Config) -> SelectionSpec | None:
    """The selection settings of a config; None when ``[selection]`` is not enabled."""
    s = config.selection
    return SelectionSpec(s.repeats, s.confidence, config.learner.seed) if s.enabled else None


def validate(sspec: SelectionSpec, window: jobs.Window, spec: jobs.ValidationSpec,
             settings: bst.BoosterSettings, champions: jobs.Timeline, lineage: jobs.Timeline,
             tuned: Any = None) -> jobs.ValidationOutcome:
    """:func:`jobs.validate` with the feature selection and its ``xgb_selected`` candidate."""
    started = time.perf_counter()
    folds = jobs.folds_of(len(window.y), spec)

    def recipe(names: tuple[str, ...]) -> Any:
        return jobs.refit_recipe("xgb_selected", names, settings).fit

    evidence = sel.gather(window.X, window.y, folds, recipe(window.features),
                          repeats=sspec.repeats, seed=sspec.seed,
                          gap=spec.horizon + spec.embargo)
    selection = sel.select(window.features, evidence, confidence=sspec.confidence)
    extra = []
    if selection.kept:
        p = sel.selected_predictions(window.X, window.y, window.features, folds, evidence,
                                     recipe, confidence=sspec.confidence)
        extra.append(walkforward.Realized("xgb_selected", p, fill_prior=False))
    seconds = time.perf_counter() - started
    out = jobs.validate(window, spec, settings, champions, lineage, tuned, extra=extra)
    d = out.decision
    model = (subset_model(window, selection.kept, settings)
             if d.promote and d.challenger == "xgb_selected" else None)
    return dataclasses.replace(out, selected=Selected(selection, model, seconds))


def subset_model(window: jobs.Window, kept: tuple[str, ...],
                 settings: bst.BoosterSettings) -> jobs.Blob:
    """A fresh booster on the ``kept`` columns of the whole window, with its importance."""
    cols = np.array([window.features.index(f) for f in kept], dtype=np.int64)
    sub = dataclasses.replace(window, X=window.X[:, cols], features=kept)
    return jobs.explained(bst.fit(sub.X, sub.y, sub.ts, kept, settings), sub)


def rows_of(selection: sel.Selection, run_id: int | None, symbol: str, ts: int,
            model_id: int | None) -> list[SelectionRow]:
    """The selection as rows of the ``feature_selection`` table."""
    return [SelectionRow(run_id, symbol, ts, e.feature, e.mean, e.low, e.high, e.kept,
                         e.per_fold, selection.folds, selection.repeats, selection.confidence,
                         model_id) for e in selection.evidence]


def from_rows(rows: list[SelectionRow]) -> sel.Selection:
    """A stored selection back (the inverse of :func:`rows_of`); rows of one selection."""
    evidence = tuple(sel.FeatureEvidence(r.feature, r.mean, r.low, r.high, r.kept, r.per_fold)
                     for r in rows)
    return sel.Selection(tuple(r.feature for r in rows), evidence, rows[0].folds,
                         rows[0].repeats, rows[0].confidence)
