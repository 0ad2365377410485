"""Walk-forward re-validation: purged, embargoed splits, metrics, candidates and the promotion gate.

A stage of its own, off the event loop: given a labelled, time-ordered sample matrix it splits the
rows into walk-forward folds (:mod:`.splits`), scores every candidate model on every fold
(:mod:`.walkforward`, with :mod:`.metrics`), and decides whether a challenger replaces the champion
(:mod:`.gate`). Pure numpy / scikit-learn / River: no SQLite, no xgboost (models are passed in).
"""

from ares_stream.validation.promotion import Decision, decide, pick_challenger
from ares_stream.validation.splits import Fold, walk_forward
from ares_stream.validation.walkforward import (
    Candidate,
    ConstantPrior,
    FixedModel,
    FoldResult,
    Persistence,
    Realized,
    RefitCandidate,
    RiverCandidate,
    fold_losses,
    fold_table,
    run_walk_forward,
    summary_by_candidate,
)

__all__ = [
    "Candidate",
    "ConstantPrior",
    "Decision",
    "FixedModel",
    "Fold",
    "FoldResult",
    "Persistence",
    "Realized",
    "RefitCandidate",
    "RiverCandidate",
    "decide",
    "fold_losses",
    "fold_table",
    "pick_challenger",
    "run_walk_forward",
    "summary_by_candidate",
    "walk_forward",
]
