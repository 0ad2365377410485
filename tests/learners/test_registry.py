"""The model registry on a real SQLite file: versions, champions, UBJSON and River round trips."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import river
import xgboost as xgb

from ares_stream.learners import booster as bst
from ares_stream.learners.online import OnlineLearner
from ares_stream.learners.registry import Registry, RegistryError, RiverVersionError
from ares_stream.store import models
from ares_stream.store.db import StoreError, open_db

NAMES = ["ret_1", "vol", "spread"]
T0 = 1_704_067_200 * 10**9  # 2024-01-01 00:00 UTC, ns
MINUTE = 60 * 10**9


@pytest.fixture(scope="module")
def tb() -> bst.TrainedBooster:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 3))
    y = (X[:, 0] + rng.normal(size=500) > 0).astype(float)
    ts = T0 + np.arange(500, dtype=np.int64) * MINUTE
    return bst.fit(X, y, ts, NAMES, bst.BoosterSettings(rounds_refit=15, max_trees=50))


def registry(tmp_path: Path) -> Registry:
    return Registry(open_db(tmp_path / "state.db"), run_id=7)


def test_versions_increment_per_symbol_and_kind(tmp_path: Path,
                                                tb: bst.TrainedBooster) -> None:
    """Each (symbol, kind) numbers its models 1, 2, 3 … independently of the others."""
    reg = registry(tmp_path)
    btc = [reg.add_booster("BTCUSDT", tb, created=T0 + i) for i in range(3)]
    eth = reg.add_booster("ETHUSDT", tb, created=T0)
    river_btc = reg.save_river("BTCUSDT", OnlineLearner("logreg", horizon=1), created=T0)
    assert [r.version for r in btc] == [1, 2, 3]
    assert (eth.version, river_btc.version) == (1, 1)
    assert [r.id for r in reg.list("BTCUSDT")] == [btc[0].id, btc[1].id, btc[2].id, river_btc.id]
    assert btc[0].run_id == 7 and btc[0].status == "candidate"


def test_promote_keeps_exactly_one_champion(tmp_path: Path, tb: bst.TrainedBooster) -> None:
    """Promoting retires the old champion; each (symbol, kind) has exactly one champion."""
    reg = registry(tmp_path)
    a = reg.add_booster("BTCUSDT", tb, created=T0)
    b = reg.add_booster("BTCUSDT", tb, created=T0 + MINUTE, parent=a.id)
    other = reg.add_booster("ETHUSDT", tb, created=T0, status="champion")
    reg.promote(a.id)
    reg.promote(b.id)
    statuses = {r.id: r.status for r in reg.list()}
    assert statuses == {a.id: "retired", b.id: "champion", other.id: "champion"}
    champ = reg.champion("BTCUSDT")
    assert champ is not None and champ.id == b.id and champ.parent == a.id
    c = reg.add_booster("BTCUSDT", tb, created=T0 + 2 * MINUTE, status="champion")
    assert [r.id for r in reg.list("BTCUSDT") if r.status == "champion"] == [c.id]


def test_promote_is_atomic(tmp_path: Path, tb: bst.TrainedBooster) -> None:
    """When crowning the new model fails, the old champion is not retired (one transaction)."""
    reg = registry(tmp_path)
    old = reg.add_booster("BTCUSDT", tb, created=T0, status="champion")
    new = reg.add_booster("BTCUSDT", tb, created=T0 + MINUTE)
    reg.db.execute(  # a real failure on the second statement of the promotion
        "CREATE TEMP TRIGGER refuse BEFORE UPDATE OF status ON models "
        f"WHEN NEW.id = {new.id} AND NEW.status = 'champion' BEGIN SELECT RAISE(ABORT, 'no'); END")
    with pytest.raises(sqlite3.IntegrityError):
        reg.promote(new.id)
    assert {r.id: r.status for r in reg.list()} == {old.id: "champion", new.id: "candidate"}
    with pytest.raises(StoreError, match="no model with id 99"):
        reg.promote(99)
    assert reg.champion("BTCUSDT") == reg.get(old.id)


def test_booster_round_trip_predicts_identically(tmp_path: Path,
                                                 tb: bst.TrainedBooster) -> None:
    """A booster reloaded from a reopened database predicts exactly as the one saved."""
    rec = registry(tmp_path).add_booster("BTCUSDT", tb, created=T0 + 500 * MINUTE,
                                         metrics={"logloss": 0.69})
    back = Registry(open_db(tmp_path / "state.db")).load_booster(rec.id)
    X = np.random.default_rng(1).normal(size=(300, 3))
    np.testing.assert_array_equal(bst.predict(back, X), bst.predict(tb, X))
    assert (back.features, back.feature_hash, back.n_trees) == (tb.features, tb.feature_hash, 15)
    assert (back.train_start, back.train_end, back.rows) == (tb.train_start, tb.train_end, 500)
    assert back.params == tb.params and back.versions == tb.versions
    assert (rec.how, rec.n_trees, rec.format, rec.metrics) == ("refit", 15, "ubjson",
                                                               {"logloss": 0.69})


def test_booster_blob_is_ubjson_not_pickle(tmp_path: Path, tb: bst.TrainedBooster) -> None:
    """The stored booster is UBJSON (opens with '{'), loadable by XGBoost alone, not a pickle."""
    reg = registry(tmp_path)
    rec = reg.add_booster("BTCUSDT", tb, created=T0)
    blob = models.blob(reg.db, rec.id)
    assert blob[:1] == b"{" and not blob.startswith(b"\x80") and b"pickle" not in blob
    assert xgb.Booster(model_file=bytearray(blob)).num_boosted_rounds() == 15
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(blob)


def test_river_round_trip(tmp_path: Path) -> None:
    """A checkpointed River learner reloads with the same state and predictions."""
    learner = OnlineLearner("logreg", horizon=1)
    for i in range(50):
        x = {"ret_1": (i % 7) - 3.0, "vol": 1.0 + i % 3}
        learner.learn(x, int(x["ret_1"] > 0), learner.predict(x))
    rec = registry(tmp_path).save_river("BTCUSDT", learner, created=T0, features=["ret_1", "vol"],
                                        metrics={"logloss": 0.5})
    back = Registry(open_db(tmp_path / "state.db")).load_river(rec.id)
    assert isinstance(back, OnlineLearner)
    x = {"ret_1": 2.0, "vol": 1.0}
    assert back.predict(x) == learner.predict(x) and back.n_learned == 50
    assert (rec.kind, rec.how, rec.format, rec.rows) == ("river", "online", "pickle", 50)
    assert rec.versions["river"] == river.__version__
    assert rec.feature_hash == bst.feature_hash(["ret_1", "vol"])


def test_river_from_another_version_is_refused(tmp_path: Path) -> None:
    """A learner pickled by another River version is refused with a message naming both."""
    reg = registry(tmp_path)
    rec = reg.save_river("BTCUSDT", OnlineLearner("logreg", horizon=1), created=T0)
    models.set_versions(reg.db, rec.id, rec.versions | {"river": "0.19.0"})
    with pytest.raises(RiverVersionError) as err:
        reg.load_river(rec.id)
    assert str(err.value).startswith(
        f"model {rec.id} was saved by river 0.19.0; this is river {river.__version__}: ")


def test_kinds_are_not_confused(tmp_path: Path, tb: bst.TrainedBooster) -> None:
    """A River id is not loaded as a booster, nor a booster id unpickled as River."""
    reg = registry(tmp_path)
    booster_id = reg.add_booster("BTCUSDT", tb, created=T0).id
    river_id = reg.save_river("BTCUSDT", OnlineLearner("logreg", horizon=1), created=T0).id
    with pytest.raises(RegistryError):
        reg.load_booster(river_id)
    with pytest.raises(RegistryError):
        reg.load_river(booster_id)


def test_metrics_merge_and_retire(tmp_path: Path, tb: bst.TrainedBooster) -> None:
    """Recorded metrics merge into the stored ones (numpy numbers included); retire sets status."""
    reg = registry(tmp_path)
    rec = reg.add_booster("BTCUSDT", tb, created=T0, metrics={"logloss": 0.7, "auc": 0.5})
    reg.record_metrics(rec.id, {"logloss": np.float32(0.5), "folds": np.int64(4)})
    reg.retire(rec.id)
    again = reg.get(rec.id)
    assert again.metrics == {"logloss": 0.5, "auc": 0.5, "folds": 4}
    assert again.status == "retired"
    with pytest.raises(ValueError):
        models.set_status(reg.db, rec.id, "best")


def test_table_lists_the_models(tmp_path: Path, tb: bst.TrainedBooster) -> None:
    """The text listing has a header and one aligned line per model, with UTC times and metrics."""
    reg = registry(tmp_path)
    assert reg.table() == "no models"
    a = reg.add_booster("BTCUSDT", tb, created=T0 + 600 * MINUTE, status="champion",
                        metrics={"logloss": 0.6812, "auc": 0.55})
    reg.save_river("ETHUSDT", OnlineLearner("logreg", horizon=1), created=T0)
    lines = reg.table().splitlines()
    assert lines[0].split()[:5] == ["id", "symbol", "kind", "v", "parent"]
    assert len(lines) == 3
    assert len({line.index(word) for line, word in zip(lines, ["kind", "xgboost", "river"],
                                                       strict=True)}) == 1  # aligned columns
    assert lines[1].split()[:9] == [str(a.id), "BTCUSDT", "xgboost", "1", "-", "champion",
                                    "refit", "15", "500"]
    assert "2024-01-01 00:00 → 2024-01-01 08:19" in lines[1]
    assert "2024-01-01 10:00" in lines[1] and "logloss=0.6812 auc=0.5500" in lines[1]
    assert "ETHUSDT" in lines[2] and "river" in lines[2] and "online" in lines[2]
    assert "ETHUSDT" not in reg.table("BTCUSDT")
