"""Permutation-importance feature selection on the walk-forward folds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ares_stream.learners import booster as bst
from ares_stream.validation.selection import (
    gather,
    select,
    selected_predictions,
    t_quantile,
)
from ares_stream.validation.splits import walk_forward

NAMES = ("f0", "f1", "f2", "f3", "f4")
SETTINGS = bst.BoosterSettings(rounds_refit=30)


def _data(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Five features; only f0 carries signal: label = f0 + noise > 0."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, len(NAMES)))
    return X, (X[:, 0] + rng.standard_normal(n) > 0).astype(np.float64)


def _recipe(names: tuple[str, ...] = NAMES):
    """The refit recipe: a fresh booster on the rows given, as its predict function."""
    def fit(X: np.ndarray, y: np.ndarray):
        tb = bst.fit(X, y, np.arange(len(y)), names, SETTINGS)
        return lambda Xt: bst.predict(tb, Xt)
    return fit


def test_the_signal_feature_is_kept_and_noise_dropped() -> None:
    """On data where only f0 predicts the label, f0 is kept and every noise feature dropped."""
    X, y = _data()
    folds = walk_forward(len(y), n_folds=5, horizon=3)
    sel = select(NAMES, gather(X, y, folds, _recipe(), repeats=3, gap=3), confidence=0.9)
    assert sel.kept == ("f0",)
    assert sel.dropped == NAMES[1:]
    f0 = sel.evidence[0]
    assert f0.low > 0 and f0.mean > 0.05 and len(f0.per_fold) == 5
    assert sel.folds == (0, 1, 2, 3, 4) and sel.repeats == 3


def test_permutation_never_uses_training_rows() -> None:
    """Every matrix a fold's model predicts holds values of that fold's test rows only."""
    X, y = _data(600)
    X += np.arange(600)[:, None] * 1000.0  # a value tells its row: round(value / 1000)
    folds = walk_forward(600, n_folds=3, horizon=2)
    predicted: list[list[np.ndarray]] = []

    def fit(Xt: np.ndarray, yt: np.ndarray):
        calls: list[np.ndarray] = []
        predicted.append(calls)
        return lambda Xs: calls.append(Xs.copy()) or np.full(len(Xs), 0.5) + 1e-3 * Xs[:, 0]

    gather(X, y, folds, fit, repeats=2, gap=2)
    assert len(predicted) == len(folds)
    for f, calls in zip(folds, predicted, strict=True):
        assert len(calls) == 1 + 2 * len(NAMES)  # unpermuted, then repeats x features
        for M in calls:
            rows = set(np.rint(M / 1000.0).astype(int).ravel().tolist())
            assert rows <= set(f.test.tolist())


def test_selection_is_deterministic() -> None:
    """The same data, folds and seed give the same evidence, to the bit."""
    X, y = _data(1500)
    folds = walk_forward(1500, n_folds=3, horizon=1)
    a = select(NAMES, gather(X, y, folds, _recipe(), repeats=2, seed=7))
    b = select(NAMES, gather(X, y, folds, _recipe(), repeats=2, seed=7))
    c = select(NAMES, gather(X, y, folds, _recipe(), repeats=2, seed=8))
    assert a == b
    assert a.evidence != c.evidence


def test_the_last_gap_rows_of_a_test_block_are_not_scored() -> None:
    """With a gap as long as the test block, nothing is scored: no evidence, nothing kept."""
    X, y = _data(600)
    folds = walk_forward(600, n_folds=3, horizon=1)
    ev = gather(X, y, folds, _recipe(), repeats=1, gap=len(folds[0].test))
    assert all(np.isnan(e.deltas).all() for e in ev)
    assert select(NAMES, ev).kept == ()


def test_selected_predictions_use_only_earlier_folds_evidence() -> None:
    """Before ``min_folds`` folds of evidence the recipe keeps every feature (its predictions
    are the full recipe's); later folds refit on the features the earlier folds kept."""
    X, y = _data()
    folds = walk_forward(len(y), n_folds=4, horizon=1)
    ev = gather(X, y, folds, _recipe(), repeats=2, gap=1)
    asked: list[tuple[str, ...]] = []

    def fit_on(kept: tuple[str, ...]):
        asked.append(kept)
        return _recipe(kept)

    p = selected_predictions(X, y, NAMES, folds, ev, fit_on, min_folds=2)
    for f, e in zip(folds[:2], ev[:2], strict=True):
        np.testing.assert_array_equal(p[f.test], e.p_full)
    assert asked == [("f0",), ("f0",)]
    assert np.isfinite(p[folds[-1].test]).all()
    assert np.isnan(p[: folds[0].test[0]]).all()


@pytest.mark.parametrize("df", [1, 2, 3, 4, 8, 30])
def test_t_quantile_matches_scipy(df: int) -> None:
    """The package's t quantile is within 1 % of scipy's."""
    for q in (0.9, 0.95, 0.975, 0.995):
        assert t_quantile(q, df) == pytest.approx(stats.t.ppf(q, df), rel=0.01)
