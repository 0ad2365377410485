"""Importance per model and the reasons of one prediction: real boosters, real River learners."""

from __future__ import annotations

import numpy as np

from ares_stream.learners import booster as bst
from ares_stream.learners import importance as imp
from ares_stream.learners.online import make_model
from ares_stream.learners.registry import Registry
from ares_stream.store.db import open_db

FEATURES = ("noise_a", "signal", "noise_b", "noise_c")


def _one_signal(n: int = 2_000, seed: int = 0) -> tuple[bst.TrainedBooster, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURES)))
    y = (X[:, 1] + 0.3 * rng.normal(size=n) > 0).astype(float)
    tb = bst.fit(X, y, np.arange(n), FEATURES, bst.BoosterSettings(rounds_refit=40))
    return tb, X


def test_the_only_informative_feature_ranks_first_by_gain_and_by_shap() -> None:
    """Where only one feature carries the label, it leads both rankings by far."""
    tb, X = _one_signal()
    result = imp.booster_importance(tb, X)
    assert list(result) == list(FEATURES)
    assert max(result, key=lambda f: result[f].gain or 0.0) == "signal"
    assert max(result, key=lambda f: result[f].shap or 0.0) == "signal"
    others = max(result[f].shap or 0.0 for f in FEATURES if f != "signal")
    assert (result["signal"].shap or 0.0) > 5 * others


def test_gain_shares_sum_to_one() -> None:
    """Gain shares are a distribution over the model's features."""
    tb, X = _one_signal(seed=1)
    shares = [i.gain or 0.0 for i in imp.booster_importance(tb, X).values()]
    assert abs(sum(shares) - 1.0) < 1e-9 and min(shares) >= 0.0


def test_shap_values_and_bias_sum_to_the_margin() -> None:
    """Each row's contributions plus the bias equal the booster's margin (exact TreeSHAP)."""
    tb, X = _one_signal(seed=2)
    phi = imp.shap_values(tb, X[:50])
    dm = bst.xgboost().DMatrix(X[:50], feature_names=list(FEATURES))
    margin = tb.booster.predict(dm, output_margin=True)
    np.testing.assert_allclose(phi.sum(axis=1), margin, rtol=1e-5, atol=1e-5)
    p = 1.0 / (1.0 + np.exp(-phi.sum(axis=1)))
    np.testing.assert_allclose(p, bst.predict(tb, X[:50]), rtol=1e-5, atol=1e-6)


def test_the_sample_is_bounded_and_seeded() -> None:
    """Past ``sample`` rows, the mean |SHAP| is measured on a seeded draw: same seed, same."""
    tb, X = _one_signal(n=3_000, seed=3)
    a = imp.booster_importance(tb, X, sample=500, seed=7)
    b = imp.booster_importance(tb, X, sample=500, seed=7)
    assert a == b
    assert a != imp.booster_importance(tb, X, sample=500, seed=8)


def test_contributions_name_the_top_features_of_one_row() -> None:
    """A row's top-k reasons are real features with their values, largest |contribution| first,
    and all k of them with the bias make the margin when k covers every feature."""
    tb, X = _one_signal(seed=4)
    x = dict(zip(FEATURES, X[0], strict=True))
    top = imp.contributions(tb, x, k=2)
    assert top[0].feature == "signal" and len(top) == 2
    assert top[0].value == x["signal"]
    assert abs(top[0].contribution) >= abs(top[1].contribution)
    full = imp.contributions(tb, x, k=len(FEATURES))
    bias = imp.shap_values(tb, X[:1])[0, -1]
    p = 1.0 / (1.0 + np.exp(-(bias + sum(r.contribution for r in full))))
    assert abs(p - bst.predict_one(tb, x)) < 1e-5


def test_the_registry_stores_importance_with_the_booster() -> None:
    """``add_booster(importance=...)`` writes one row per feature, most important first."""
    tb, X = _one_signal(seed=5)
    reg = Registry(open_db(":memory:"))
    rec = reg.add_booster("BTCUSDT", tb, created=0, importance=imp.booster_importance(tb, X))
    rows = reg.importance(rec.id)
    assert sorted(r["feature"] for r in rows) == sorted(FEATURES)
    assert rows[0]["feature"] == "signal" and rows[0]["coef"] is None


def test_a_river_learner_saved_in_the_registry_gets_its_standardized_coefficients() -> None:
    """A saved logistic regression's weights on standardized inputs become its importance rows;
    the informative feature has the largest one."""
    rng = np.random.default_rng(0)
    model = make_model("logreg")
    for _ in range(3_000):
        x = {"signal": float(rng.normal()), "noise": float(rng.normal())}
        model.learn_one(x, x["signal"] + 0.3 * float(rng.normal()) > 0)
    reg = Registry(open_db(":memory:"))
    rec = reg.save_river("BTCUSDT", model, created=0, features=["signal", "noise"])
    rows = {r["feature"]: r for r in reg.importance(rec.id)}
    assert set(rows) == {"signal", "noise"}
    assert abs(rows["signal"]["coef"]) > 3 * abs(rows["noise"]["coef"])
    assert imp.river_coefficients({"w": 1.0}) == {}
