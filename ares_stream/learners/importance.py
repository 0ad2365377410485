"""What a model uses: gain share and mean |SHAP| per feature, and why one prediction came out.

For a booster, :func:`booster_importance` gives, per feature, its share of the total gain of
every split (``get_score(importance_type="total_gain")``, normalised to sum 1; a feature never
split on gets 0) and its mean absolute SHAP value over the training rows — XGBoost's own exact
TreeSHAP (``pred_contribs=True``), on at most ``sample`` rows drawn with a fixed seed. Both run in
the batch worker, beside the fit. :func:`contributions` explains one row: the SHAP contribution
of every feature to the booster's margin (log-odds), the top ``k`` by size. The contributions
plus the bias sum to the margin exactly. For a River learner, :func:`river_coefficients` gives the
coefficients of its logistic regression on the standardized inputs (its own scaler precedes it).

>>> from ares_stream.learners import booster as bst
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(500, 3)); y = (X[:, 1] > 0).astype(float); ts = np.arange(500)
>>> tb = bst.fit(X, y, ts, ["a", "b", "c"], bst.BoosterSettings(rounds_refit=20))
>>> imp = booster_importance(tb, X)
>>> max(imp, key=lambda f: imp[f].shap), round(sum(i.gain for i in imp.values()), 6)
('b', 1.0)
>>> [r.feature for r in contributions(tb, {"a": 0.1, "b": 2.0, "c": -0.3}, k=1)]
['b']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ares_stream.learners import booster as bst

__all__ = ["SAMPLE", "TOP_K", "FeatureImportance", "Reason", "booster_importance",
           "contributions", "river_coefficients", "shap_values"]

SAMPLE = 5_000  # rows mean |SHAP| is measured on, at most (exact TreeSHAP: ~0.1 ms a row)
TOP_K = 5  # contributions stored per order


@dataclass(frozen=True)
class FeatureImportance:
    """One feature of one model: gain share, mean |SHAP|, standardized coefficient (River)."""

    gain: float | None = None
    shap: float | None = None
    coef: float | None = None


@dataclass(frozen=True)
class Reason:
    """One feature's part in one prediction: its value and SHAP contribution (log-odds)."""

    feature: str
    value: float
    contribution: float


def shap_values(tb: bst.TrainedBooster, X: np.ndarray) -> np.ndarray:
    """Exact TreeSHAP of each row of ``X``: ``(n, features + 1)``, the last column the bias;
    each row sums to the booster's margin (``output_margin``)."""
    dm = bst.xgboost().DMatrix(np.asarray(X, dtype=np.float64), feature_names=list(tb.features),
                               nthread=int(tb.params.get("nthread", 1)))
    return np.asarray(tb.booster.predict(dm, pred_contribs=True, validate_features=False),
                      dtype=np.float64)


def booster_importance(tb: bst.TrainedBooster, X: np.ndarray, *, sample: int = SAMPLE,
                       seed: int = 0) -> dict[str, FeatureImportance]:
    """Gain share and mean |SHAP| of every feature of ``tb`` (``X``: its training rows)."""
    gain = _gain_shares(tb)
    rows = X
    if len(X) > sample:
        pick = np.random.default_rng(seed).choice(len(X), size=sample, replace=False)
        rows = X[np.sort(pick)]
    mean_abs = np.abs(shap_values(tb, rows)[:, :-1]).mean(axis=0) if len(rows) else \
        np.zeros(len(tb.features))
    return {f: FeatureImportance(gain=gain[f], shap=float(s))
            for f, s in zip(tb.features, mean_abs, strict=True)}


def _gain_shares(tb: bst.TrainedBooster) -> dict[str, float]:
    """Each feature's share of the total gain (0 for one never split on; all 0 for a stump)."""
    raw = tb.booster.get_score(importance_type="total_gain")  # a float per feature used
    score = {f: float(v) for f, v in raw.items() if isinstance(v, int | float)}
    total = sum(score.values())
    return {f: score.get(f, 0.0) / total if total > 0 else 0.0 for f in tb.features}


def contributions(tb: bst.TrainedBooster, x: Mapping[str, float],
                  k: int = TOP_K) -> list[Reason]:
    """The ``k`` largest SHAP contributions (by size) of ``tb``'s prediction for one bar's
    features ``x`` (a missing feature is NaN), largest first."""
    row = np.array([[x.get(f, math.nan) for f in tb.features]], dtype=np.float64)
    phi = shap_values(tb, row)[0, :-1]
    order = np.argsort(-np.abs(phi), kind="stable")[:k]
    return [Reason(tb.features[i], float(row[0, i]), float(phi[i])) for i in order]


def river_coefficients(learner: object, features: Sequence[str] = ()) -> dict[str, float]:
    """The weights of the linear model inside a River learner, on its standardized inputs (the
    learner's own scaler precedes them); ``{}`` when it holds none (a tree). ``features``: the
    names to report, a feature the model never weighted at 0."""
    weights = _linear_weights(learner)
    if weights is None:
        return {}
    names = list(features) or sorted(weights)
    return {f: float(weights.get(f, 0.0)) for f in names}


def _linear_weights(model: Any, depth: int = 0) -> Mapping[str, float] | None:
    """The ``weights`` of the last linear step, through wrappers and pipelines."""
    if depth > 5 or model is None:
        return None
    weights = getattr(model, "weights", None)
    if isinstance(weights, Mapping) and not isinstance(model, Mapping):
        return weights
    steps = getattr(model, "steps", None)
    if isinstance(steps, Mapping):
        for step in reversed(list(steps.values())):
            found = _linear_weights(step, depth + 1)
            if found is not None:
                return found
    for attr in ("classifier", "model", "regressor"):
        found = _linear_weights(getattr(model, attr, None), depth + 1)
        if found is not None:
            return found
    return None
