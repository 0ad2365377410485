"""Walk-forward evaluation: real candidates, real folds, delayed labels, out-of-sample champions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from river import stream
from sklearn.linear_model import LogisticRegression

from ares_stream.learners.online import make_model
from ares_stream.rule import Rule
from ares_stream.validation import promotion as gate
from ares_stream.validation.splits import walk_forward
from ares_stream.validation.walkforward import (
    ConstantPrior,
    FixedModel,
    FoldResult,
    Persistence,
    RefitCandidate,
    RiverCandidate,
    fold_losses,
    fold_table,
    run_walk_forward,
    summary_by_candidate,
)

H = 3
PERIODS_PER_YEAR = 525_600  # 1-minute bars
RULE = Rule()


def _closes(fwd: np.ndarray) -> np.ndarray:
    """A close path whose H-bar log returns are ``fwd`` on average (each bar a third of the
    label's return)."""
    return 100.0 * np.exp(np.concatenate(([0.0], np.cumsum(fwd[:-1] / H))))


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four features; the forward return over H bars is 0.2% × f0 plus noise; label = return > 0."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    fwd = 0.002 * (X[:, 0] + rng.standard_normal(n))
    return X, (fwd > 0).astype(np.int64), fwd


def _sk_refit(X: np.ndarray, y: np.ndarray):
    """A refit recipe: scikit-learn logistic regression on the fold's training rows."""
    model = LogisticRegression().fit(X, y)
    return lambda Xt: model.predict_proba(Xt)[:, 1]


def _river() -> RiverCandidate:
    return RiverCandidate("river", lambda: make_model("logreg"))


def test_every_candidate_on_every_fold() -> None:
    """Results come fold by fold, candidate by candidate; learners beat the naive baselines."""
    X, y, fwd = _data(2400)
    folds = walk_forward(len(y), n_folds=4, horizon=H)
    cands = [ConstantPrior(), Persistence(), _river(), RefitCandidate("refit", _sk_refit)]
    results = run_walk_forward(X, y, fwd, folds, cands, horizon=H, rule=RULE,
                               close=_closes(fwd),
                               periods_per_year=PERIODS_PER_YEAR)
    assert [(r.fold, r.candidate) for r in results] == [
        (f.index, c.name) for f in folds for c in cands]
    assert all(r.n == len(folds[0].test) for r in results)
    s = summary_by_candidate(results)
    assert s["refit"]["log_loss"] < s["prior"]["log_loss"] - 0.05
    assert s["river"]["log_loss"] < s["prior"]["log_loss"] - 0.05
    assert s["prior"]["log_loss"] == pytest.approx(math.log(2), abs=0.01)
    assert s["refit"]["roc_auc"] > 0.7 and s["refit"]["folds"] == 4
    assert {"total_return", "sharpe", "max_drawdown", "turnover"} <= set(s["refit"])


def _flip_from(y: np.ndarray, k: int) -> np.ndarray:
    """The labels with every test label from row k on inverted."""
    out = y.copy()
    out[k:] = 1 - out[k:]
    return out


@pytest.mark.parametrize("candidate", [_river(), Persistence()], ids=lambda c: c.name)
def test_test_labels_are_used_only_after_the_delay(candidate) -> None:
    """Changing test labels from row k on changes no prediction before row k + horizon."""
    X, y, _ = _data(400, seed=1)
    Xtr, ytr, Xte, yte = X[:300], y[:300], X[300:], y[300:]
    base = candidate.fit_predict(Xtr, ytr, Xte, yte, H)
    for k in (0, 7, 50):
        changed = candidate.fit_predict(Xtr, ytr, Xte, _flip_from(yte, k), H)
        np.testing.assert_array_equal(changed[: k + H], base[: k + H])
        assert changed[k + H] != base[k + H]  # learned as soon as it is known, like the engine


def test_river_candidate_follows_river_delayed_order() -> None:
    """RiverCandidate's test predictions equal River's simulate_qa(delay=horizon) loop."""
    X, y, _ = _data(500, seed=2)
    got = _river().fit_predict(X[:300], y[:300], X[300:], y[300:], H)
    model = make_model("logreg")
    for x, label in zip(X[:300].tolist(), y[:300].tolist(), strict=True):
        model.learn_one({f"x{i}": v for i, v in enumerate(x)}, label)
    test = [({f"x{i}": v for i, v in enumerate(x)}, int(t))
            for x, t in zip(X[300:].tolist(), y[300:].tolist(), strict=True)]
    expected = []
    for _, x, label in stream.simulate_qa(test, moment=None, delay=H):
        if label is None:
            expected.append(model.predict_proba_one(x).get(1, 0.0))
        else:
            model.learn_one(x, label)
    np.testing.assert_array_equal(got, expected)


def test_persistence_by_hand() -> None:
    """Row j gets 0.5 × prior + 0.5 × y[j − h]; the first h rows use the last train label."""
    ytr, yte = np.array([0, 0, 0, 1]), np.array([1, 0, 0, 1, 1])
    p = Persistence().fit_predict(np.zeros((4, 1)), ytr, np.zeros((5, 1)), yte, 2)
    # prior 0.25: label 1 → 0.625, label 0 → 0.125
    assert p.tolist() == [0.625, 0.625, 0.625, 0.125, 0.125]


def test_constant_prior_is_clipped() -> None:
    """An all-zero training set predicts 0.01, not a certain 0."""
    p = ConstantPrior().fit_predict(np.zeros((3, 1)), np.zeros(3), np.zeros((2, 1)), np.zeros(2), 1)
    assert p.tolist() == [0.01, 0.01]


def test_fixed_model_scored_only_out_of_sample() -> None:
    """A champion trained up to row t is scored on test rows j > t + horizon only."""
    X, y, fwd = _data(1200, seed=3)
    trained_until = 850
    champion = LogisticRegression().fit(X[: trained_until + 1], y[: trained_until + 1])
    fixed = FixedModel("champion", lambda Xt: champion.predict_proba(Xt)[:, 1], trained_until)
    # test blocks 600-799, 800-999, 1000-1199
    folds = walk_forward(len(y), n_folds=3, test_size=200, horizon=H)
    results = run_walk_forward(X, y, fwd, folds, [fixed, ConstantPrior()], horizon=H, rule=RULE,
                               close=_closes(fwd),
                               periods_per_year=PERIODS_PER_YEAR)
    by_fold = {r.fold: r for r in results if r.candidate == "champion"}
    assert by_fold[0].n == 0 and math.isnan(by_fold[0].log_loss)
    assert by_fold[1].n == 999 - (trained_until + H)
    assert by_fold[2].n == 200
    rows = np.arange(trained_until + H + 1, 1000)
    p = champion.predict_proba(X[rows])[:, 1]
    expected = -np.mean(y[rows] * np.log(p) + (1 - y[rows]) * np.log(1 - p))
    assert by_fold[1].log_loss == pytest.approx(expected, rel=1e-12)
    losses = fold_losses(results, "champion")
    assert math.isnan(losses[0]) and not math.isnan(losses[1])
    assert summary_by_candidate(results)["champion"]["folds"] == 2


def test_fold_table_lists_every_result() -> None:
    """The table has a header and one aligned line per fold × candidate."""
    X, y, fwd = _data(600, seed=4)
    results = run_walk_forward(X, y, fwd, walk_forward(600, n_folds=2, horizon=H),
                               [ConstantPrior(), Persistence()], horizon=H, rule=RULE,
                               close=_closes(fwd),
                               periods_per_year=PERIODS_PER_YEAR)
    lines = fold_table(results).splitlines()
    assert len(lines) == 1 + len(results) and "logloss" in lines[0] and "maxdd" in lines[0]
    assert len({len(line) for line in lines}) == 1
    assert lines[2].split()[:2] == ["0", "persistence"]


def test_row_is_flat() -> None:
    """FoldResult.row() flattens classification and trading metrics into one dict."""
    r = FoldResult(1, "x", 5, 0.6, 0.2, 0.7, 0.6, {"sharpe": 1.5})
    assert r.row() == {"fold": 1, "candidate": "x", "n": 5, "log_loss": 0.6, "brier": 0.2,
                       "roc_auc": 0.7, "accuracy": 0.6, "sharpe": 1.5}


def test_bad_inputs_raise() -> None:
    """Mismatched lengths or a wrong number of predictions raise ValueError."""
    X, y, fwd = _data(300)
    folds = walk_forward(300, n_folds=2, horizon=H)
    with pytest.raises(ValueError, match="lengths"):
        run_walk_forward(X, y[:-1], fwd, folds, [ConstantPrior()], horizon=H, rule=RULE,
                         periods_per_year=1)
    short = RefitCandidate("short", lambda X_, y_: (lambda Xt: np.zeros(len(Xt) - 1)))
    with pytest.raises(ValueError, match="short"):
        run_walk_forward(X, y, fwd, folds, [short], horizon=H, rule=RULE, periods_per_year=1)


def test_walk_forward_feeds_the_gate() -> None:
    """A real refit beats the prior on paired fold losses and is promoted."""
    X, y, fwd = _data(2400, seed=5)
    results = run_walk_forward(X, y, fwd, walk_forward(2400, n_folds=5, horizon=H),
                               [ConstantPrior(), RefitCandidate("refit", _sk_refit)], horizon=H,
                               rule=RULE, close=_closes(fwd), periods_per_year=PERIODS_PER_YEAR)
    challenger = gate.pick_challenger(summary_by_candidate(results), ["refit", "prior"])
    d = gate.decide(challenger, fold_losses(results, challenger), "prior",
                    fold_losses(results, "prior"))
    assert challenger == "refit" and d.promote and d.folds == 5
