"""The model registry on a real SQLite file: versions, champions, UBJSON and River round trips,
pruning."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import river
import xgboost as xgb
from structlog.testing import capture_logs

from ares_stream import codec
from ares_stream.errors import UnsafeFormatError
from ares_stream.learners import booster as bst
from ares_stream.learners.online import OnlineLearner
from ares_stream.learners.registry import (
    ModelPruned,
    Registry,
    RegistryError,
    RiverVersionError,
)
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
    assert (rec.kind, rec.how, rec.format, rec.rows) == ("river", "online", "codec-v1", 50)
    assert rec.versions["river"] == river.__version__
    assert rec.feature_hash == bst.feature_hash(["ret_1", "vol"])


def test_river_from_another_version_is_refused(tmp_path: Path) -> None:
    """A learner saved by another River version is refused with a message naming both."""
    reg = registry(tmp_path)
    rec = reg.save_river("BTCUSDT", OnlineLearner("logreg", horizon=1), created=T0)
    models.set_versions(reg.db, rec.id, rec.versions | {"river": "0.19.0"})
    with pytest.raises(RiverVersionError) as err:
        reg.load_river(rec.id)
    assert str(err.value).startswith(
        f"model {rec.id} was saved by river 0.19.0; this is river {river.__version__}: ")


def test_river_blob_is_the_codec_not_pickle(tmp_path: Path) -> None:
    """The stored learner is the codec's envelope, which pickle cannot load."""
    reg = registry(tmp_path)
    rec = reg.save_river("BTCUSDT", OnlineLearner("hat", task="classification"), created=T0)
    blob = models.blob(reg.db, rec.id)
    assert not blob.startswith(b"\x80") and b"ares-codec" in blob[:32]
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(blob)
    assert isinstance(codec.loads(blob), OnlineLearner)


class Marker:
    """Pickles to a call of os.system that creates a file: what a tampered row would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        import os
        return os.system, (f"touch {self.path}",)


def test_a_pickled_learner_of_an_earlier_version_is_refused_unloaded(tmp_path: Path) -> None:
    """A River learner stored as a pickle (the format of earlier versions) is refused with
    UnsafeFormatError saying so, and its pickle never runs."""
    reg = registry(tmp_path)
    marker = tmp_path / "ran"
    rec = models.insert(
        reg.db, symbol="BTCUSDT", kind="river", created=T0, rows=0, how="online",
        params={}, features=[], feature_hash=bst.feature_hash([]),
        versions={"river": river.__version__}, format="pickle",
        blob=pickle.dumps(Marker(marker)), parent=None, metrics=None, status="candidate",
        run_id=None)
    with pytest.raises(UnsafeFormatError, match=r"stored as a pickle by an earlier version.*"
                                                r"will not be loaded"):
        reg.load_river(rec.id)
    assert not marker.exists()
    assert isinstance(reg.load_river(reg.save_river("BTCUSDT", OnlineLearner("logreg"),
                                                    created=T0).id), OnlineLearner)


def test_a_tampered_learner_blob_is_refused(tmp_path: Path) -> None:
    """A River blob that does not verify is a CodecError naming the model."""
    reg = registry(tmp_path)
    rec = reg.save_river("BTCUSDT", OnlineLearner("logreg"), created=T0)
    blob = bytearray(models.blob(reg.db, rec.id))
    blob[-3] ^= 0xFF
    reg.db.conn.execute("UPDATE models SET blob = ? WHERE id = ?", (bytes(blob), rec.id))
    with pytest.raises(codec.CodecError, match=f"model {rec.id}: checksum mismatch"):
        reg.load_river(rec.id)


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


def test_prune_keeps_the_newest_and_every_champion(tmp_path: Path,
                                                   tb: bst.TrainedBooster) -> None:
    """Pruning deletes the bytes of the boosters beyond the newest, every ever-champion kept."""
    reg = registry(tmp_path)
    btc = [reg.add_booster("BTCUSDT", tb, created=T0 + i * MINUTE) for i in range(8)]
    eth = [reg.add_booster("ETHUSDT", tb, created=T0 + i * MINUTE) for i in range(3)]
    reg.promote(btc[1].id)
    reg.promote(btc[4].id)  # v2 is retired now, but was champion once
    result = reg.prune("BTCUSDT", keep=3)
    size = len(bst.to_ubjson(tb))
    assert [(p.symbol, p.kept, p.pruned, p.bytes_freed) for p in result.symbols] == \
        [("BTCUSDT", 5, 3, 3 * size)]
    assert (result.kept, result.pruned, result.bytes_freed) == (5, 3, 3 * size)
    after = {r.version: r for r in reg.list("BTCUSDT")}
    assert sorted(after) == list(range(1, 9))  # every record stays
    assert [v for v, r in after.items() if r.pruned] == [1, 3, 4]
    assert after[1].size == size and after[1].n_trees == 15 and after[1].rows == 500
    assert all(models.blob(reg.db, r.id) == bst.to_ubjson(tb)
               for r in after.values() if r.version in (2, 5, 6, 7, 8))
    assert not any(r.pruned for r in reg.list("ETHUSDT")) and len(eth) == 3
    assert reg.prune("BTCUSDT", keep=3).pruned == 0  # nothing left to prune


def test_loading_a_pruned_booster_fails_clearly(tmp_path: Path, tb: bst.TrainedBooster) -> None:
    """A pruned booster's bytes are gone: loading it says so; a kept one still predicts."""
    reg = registry(tmp_path)
    old, new = (reg.add_booster("BTCUSDT", tb, created=T0 + i) for i in range(2))
    reg.prune("BTCUSDT", keep=1)
    with pytest.raises(ModelPruned, match=rf"^model {old.id} \(BTCUSDT xgboost v1\) was pruned: "):
        Registry(open_db(tmp_path / "state.db")).load_booster(old.id)
    with pytest.raises(ModelPruned):
        reg.promote(old.id)  # a champion without its bytes could not trade
    X = np.random.default_rng(2).normal(size=(50, 3))
    np.testing.assert_array_equal(bst.predict(reg.load_booster(new.id), X), bst.predict(tb, X))


def test_prune_dry_run_deletes_nothing(tmp_path: Path, tb: bst.TrainedBooster) -> None:
    """A dry run reports exactly what the prune then does, and deletes nothing itself."""
    reg = registry(tmp_path)
    for i in range(5):
        reg.add_booster("BTCUSDT", tb, created=T0 + i)
    dry = reg.prune(keep=2, dry_run=True)
    assert not any(r.pruned for r in reg.list())
    real = reg.prune(keep=2)
    assert (dry.kept, dry.pruned, dry.bytes_freed) == (real.kept, real.pruned, real.bytes_freed)
    assert (real.kept, real.pruned, dry.dry_run, real.dry_run) == (2, 3, True, False)


def test_prune_every_symbol_keep_zero_spares_champions_and_river(
        tmp_path: Path, tb: bst.TrainedBooster) -> None:
    """keep=0 over every symbol leaves only the ever-champions' bytes; River models are no
    boosters and are never pruned; a negative keep is refused."""
    reg = registry(tmp_path)
    champ = reg.add_booster("ETHUSDT", tb, created=T0, status="champion")
    reg.add_booster("ETHUSDT", tb, created=T0 + 1)
    reg.add_booster("BTCUSDT", tb, created=T0)
    river_id = reg.save_river("BTCUSDT", OnlineLearner("logreg", horizon=1), created=T0).id
    result = reg.prune(keep=0)
    assert [(p.symbol, p.kept, p.pruned) for p in result.symbols] == \
        [("BTCUSDT", 0, 1), ("ETHUSDT", 1, 1)]
    assert [r.id for r in reg.list() if not r.pruned] == [champ.id, river_id]
    assert isinstance(reg.load_river(river_id), OnlineLearner)
    with pytest.raises(RegistryError, match="must be >= 0"):
        reg.prune(keep=-1)


def test_prune_logs_and_the_listing_shows_pruned(tmp_path: Path, tb: bst.TrainedBooster) -> None:
    """A prune logs models_pruned per symbol; the listing shows pruned boosters as pruned."""
    reg = registry(tmp_path)
    for i in range(3):
        reg.add_booster("BTCUSDT", tb, created=T0 + i)
    with capture_logs() as logs:
        reg.prune("BTCUSDT", keep=1)
    assert [(e["event"], e["pruned"], e["kept"]) for e in logs] == [("models_pruned", 2, 1)]
    lines = reg.table().splitlines()
    assert lines[0].split()[9] == "blob"
    assert [line.split()[9] for line in lines[1:3]] == ["pruned", "pruned"]
    size = len(bst.to_ubjson(tb)) / 1000
    assert lines[3].split()[9:11] == [f"{size:.1f}", "kB"] and "pruned" not in lines[3]
