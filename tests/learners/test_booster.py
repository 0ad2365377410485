"""Warm-start XGBoost: bounded trees, schema guard, refresh, UBJSON round trips, determinism."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from ares_stream.learners import booster as bst
from ares_stream.learners.buffer import feature_hash as buffer_feature_hash

NAMES = ["ret_1", "ret_5", "vol", "spread"]
SMALL = bst.BoosterSettings(params={"nthread": 1}, rounds_refit=20, rounds_update=5,
                            max_trees=40)


def data(n: int, seed: int = 0, flip: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(NAMES)))
    signal = -X[:, 0] if flip else X[:, 0]
    y = (signal + 0.5 * rng.normal(size=n) > 0).astype(np.float64)
    ts = (np.arange(n, dtype=np.int64) + 1_000 * seed) * 60_000_000_000
    return X, y, ts


@pytest.fixture(scope="module")
def parent() -> bst.TrainedBooster:
    X, y, ts = data(600)
    return bst.fit(X, y, ts, NAMES, SMALL)


def test_fit_records_lineage_facts(parent: bst.TrainedBooster) -> None:
    """A fresh fit has rounds_refit trees, the training range, row count and library versions."""
    _, _, ts = data(600)
    assert (parent.how, parent.n_trees, parent.booster.num_boosted_rounds()) == ("refit", 20, 20)
    assert (parent.train_start, parent.train_end, parent.rows) == (ts[0], ts[-1], 600)
    assert parent.features == tuple(NAMES) and parent.feature_hash == bst.feature_hash(NAMES)
    assert set(parent.versions) == {"xgboost", "numpy", "python"}
    assert parent.booster.feature_names == NAMES


def test_warm_start_adds_exactly_rounds_update_trees(parent: bst.TrainedBooster) -> None:
    """A warm start adds rounds_update trees and extends the range and rows of its parent."""
    X, y, ts = data(100, seed=1)
    child = bst.update(parent, X, y, ts, NAMES, SMALL)
    assert child.how == "warm_start"
    assert child.booster.num_boosted_rounds() == child.n_trees == parent.n_trees + 5
    assert (child.train_start, child.train_end) == (parent.train_start, ts[-1])
    assert child.rows == parent.rows + 100
    assert parent.booster.num_boosted_rounds() == 20  # the parent is left untouched


def test_hundred_updates_never_pass_the_cap() -> None:
    """100 successive updates never hold more than max_trees trees; the cap triggers refits."""
    settings = bst.BoosterSettings(rounds_refit=5, rounds_update=3, max_trees=20)
    X, y, ts = data(5_100, seed=2)
    tb = bst.fit(X[:100], y[:100], ts[:100], NAMES, settings)
    hows = []
    for i in range(100):
        new = slice(100 + 50 * i, 150 + 50 * i)
        window = slice(max(0, new.stop - 500), new.stop)
        tb = bst.update(tb, X[new], y[new], ts[new], NAMES, settings,
                        X_window=X[window], y_window=y[window], ts_window=ts[window])
        assert tb.n_trees == tb.booster.num_boosted_rounds() <= settings.max_trees
        hows.append(tb.how)
    assert hows.count("refit") == 100 // 6  # refit at 5 trees, 5 warm starts to 20, repeat
    assert set(hows) == {"refit", "warm_start"}


def test_changed_schema_refits_on_the_window(parent: bst.TrainedBooster) -> None:
    """New feature names refit on the window (never a warm start); without a window it refuses."""
    names = [*NAMES[:3], "imbalance"]
    X, y, ts = data(300, seed=3)
    with pytest.raises(bst.SchemaChanged):
        bst.update(parent, X[-50:], y[-50:], ts[-50:], names, SMALL)
    tb = bst.update(parent, X[-50:], y[-50:], ts[-50:], names, SMALL,
                    X_window=X, y_window=y, ts_window=ts)
    assert (tb.how, tb.n_trees, tb.rows, tb.features) == ("refit", 20, 300, tuple(names))
    assert tb.booster.feature_names == names and tb.train_start == ts[0]


def test_reordered_features_are_a_changed_schema(parent: bst.TrainedBooster) -> None:
    """The same names in another order are another schema."""
    assert bst.plan(parent, NAMES[::-1], SMALL) == "refit"
    assert bst.plan(parent, NAMES, SMALL) == "warm_start"


def test_upward_drift_forces_a_refit(parent: bst.TrainedBooster) -> None:
    """force_refit refits from scratch on the window; without the window it is an error."""
    X, y, ts = data(300, seed=4)
    with pytest.raises(ValueError, match="needs the window"):
        bst.update(parent, X, y, ts, NAMES, SMALL, force_refit=True)
    tb = bst.update(parent, X[-50:], y[-50:], ts[-50:], NAMES, SMALL,
                    X_window=X, y_window=y, ts_window=ts, force_refit=True)
    assert (tb.how, tb.n_trees, tb.rows) == ("refit", 20, 300)


def test_refresh_keeps_trees_and_changes_predictions(parent: bst.TrainedBooster) -> None:
    """Refresh re-weights leaves on the new rows: same tree count, different predictions."""
    X, y, ts = data(400, seed=5, flip=True)
    settings = bst.BoosterSettings(rounds_refit=20, rounds_update=5, max_trees=40,
                                   mode="refresh")
    tb = bst.update(parent, X, y, ts, NAMES, settings)
    assert (tb.how, tb.n_trees, tb.booster.num_boosted_rounds()) == ("refresh", 20, 20)
    before, after = bst.predict(parent, X), bst.predict(tb, X)
    assert np.abs(before - after).max() > 0.05
    assert np.corrcoef(after, X[:, 0])[0, 1] < 0 < np.corrcoef(before, X[:, 0])[0, 1]
    grown = bst.update(tb, X, y, ts, NAMES, SMALL)  # a refreshed booster can warm start again
    assert (grown.how, grown.n_trees) == ("warm_start", 25)


def test_ubjson_round_trip_predicts_identically(parent: bst.TrainedBooster) -> None:
    """A booster rebuilt from its UBJSON blob and metadata predicts bit-for-bit the same."""
    blob = bst.to_ubjson(parent)
    assert blob[:1] == b"{" and b"pickle" not in blob
    meta = {"features": list(parent.features), "feature_hash": parent.feature_hash,
            "params": parent.params, "n_trees": parent.n_trees, "how": parent.how,
            "train_start": parent.train_start, "train_end": parent.train_end,
            "rows": parent.rows, "versions": parent.versions}
    back = bst.from_ubjson(blob, meta)
    X, _, _ = data(200, seed=6)
    np.testing.assert_array_equal(bst.predict(back, X), bst.predict(parent, X))
    x = dict(zip(NAMES, X[0], strict=True))
    assert bst.predict_one(back, x) == bst.predict_one(parent, x)
    assert back.features == parent.features and back.n_trees == parent.n_trees
    with pytest.raises(bst.SchemaChanged):
        bst.from_ubjson(blob, meta | {"features": NAMES[::-1]})


def test_warm_start_is_deterministic_across_a_restore(parent: bst.TrainedBooster) -> None:
    """A warm start gives the same trees twice, and from a parent restored from UBJSON."""
    X, y, ts = data(200, seed=7)
    meta = {"features": NAMES, "feature_hash": parent.feature_hash, "params": parent.params,
            "n_trees": parent.n_trees, "how": parent.how, "train_start": parent.train_start,
            "train_end": parent.train_end, "rows": parent.rows, "versions": parent.versions}
    restored = bst.from_ubjson(bst.to_ubjson(parent), meta)
    blobs = {bst.to_ubjson(bst.update(p, X, y, ts, NAMES, SMALL))
             for p in (parent, parent, restored)}
    assert len(blobs) == 1


def test_predict_one_matches_batch_and_treats_missing_as_nan(
        parent: bst.TrainedBooster) -> None:
    """predict_one orders the mapping by the booster's features; an absent feature is missing."""
    X, _, _ = data(5, seed=8)
    x = {name: float(v) for name, v in zip(NAMES, X[0], strict=True)}
    assert bst.predict_one(parent, dict(reversed(x.items()))) == pytest.approx(
        bst.predict(parent, X[:1])[0], abs=1e-7)
    row = X[:1].copy()
    row[0, 2] = math.nan
    del x["vol"]
    assert bst.predict_one(parent, x) == pytest.approx(bst.predict(parent, row)[0], abs=1e-7)
    with pytest.raises(bst.SchemaChanged):
        bst.predict(parent, X[:, :3])


def test_settings_merge_defaults_and_pickle() -> None:
    """Settings lay params over the defaults, stay immutable and pickle into a worker."""
    s = bst.BoosterSettings(params={"max_depth": 6})
    assert s.param_dict["max_depth"] == 6 and s.param_dict["objective"] == "binary:logistic"
    assert pickle.loads(pickle.dumps(s)) == s and hash(s) == hash(bst.BoosterSettings(
        params={"max_depth": 6}))
    with pytest.raises(ValueError):
        bst.BoosterSettings(mode="append")
    with pytest.raises(ValueError):
        bst.BoosterSettings(rounds_refit=400, max_trees=300)


def test_feature_hash_agrees_with_the_buffer() -> None:
    """The booster and the sample buffer hash a feature list the same way."""
    assert bst.feature_hash(NAMES) == buffer_feature_hash(NAMES)
