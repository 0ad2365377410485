"""Feature selection inside validation: the xgb_selected candidate, its model, its evidence."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ares_stream.batch import jobs, selecting
from ares_stream.config import replace_values
from ares_stream.features.families import feature_names
from ares_stream.learners import booster as bst
from ares_stream.replay import run_replay
from ares_stream.store import selection as store
from ares_stream.store.db import open_db
from tests.batch.test_learner import candles, query, small_config

NAMES = ("f0", "f1", "f2", "f3", "f4")
SETTINGS = bst.BoosterSettings(rounds_refit=30, max_trees=60)


def _window(n: int = 3000, seed: int = 0) -> jobs.Window:
    """Five features; only f0 moves the next bar's return; label = that return > 0."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, len(NAMES)))
    fwd = 0.002 * (X[:, 0] + rng.standard_normal(n))
    close = 100.0 * np.exp(np.concatenate(([0.0], np.cumsum(fwd[:-1]))))
    ts = np.arange(n, dtype=np.int64) * 60_000_000_000
    return jobs.Window(ts, X, (fwd > 0).astype(np.float64), fwd, NAMES, close)


def _spec() -> jobs.ValidationSpec:
    cfg = replace_values(small_config(), {"labels": {"horizon": 1}})
    return jobs.spec_of(cfg)


def test_validation_keeps_the_signal_and_scores_xgb_selected() -> None:
    """On data where only f0 carries signal the validation keeps f0 alone, and xgb_selected
    is scored on every fold beside the full-schema refit recipe."""
    out = selecting.validate(selecting.SelectionSpec(3, 0.9, 0), _window(), _spec(), SETTINGS,
                             [], [])
    assert out.selected is not None
    assert out.selected.selection.kept == ("f0",)
    assert out.selected.selection.dropped == NAMES[1:]
    assert out.summary["xgb_selected"]["folds"] == out.summary["xgb_refit"]["folds"]
    assert out.summary["xgb_selected"]["log_loss"] < out.summary["prior"]["log_loss"]


def test_a_subset_schema_booster_predicts_by_feature_name() -> None:
    """The kept-features booster has its own feature hash (a refit, not a warm start) and
    predicts rows of the full schema, in any column order, by name."""
    w = _window(800)
    first = jobs.Window(w.ts[:400], w.X[:400], w.y[:400], w.fwd[:400], NAMES)
    blob = selecting.subset_model(first, ("f2", "f0"), SETTINGS)
    tb = jobs.from_blob(blob)
    assert tb.features == ("f2", "f0") and tb.how == "refit"
    assert tb.feature_hash != bst.feature_hash(NAMES)
    direct = bst.predict(tb, w.X[:, [2, 0]])
    np.testing.assert_array_equal(bst.predict(tb, w.X, NAMES), direct)
    order = [4, 2, 0, 1, 3]
    np.testing.assert_array_equal(bst.predict(tb, w.X[:, order], [NAMES[i] for i in order]),
                                  direct)
    row = dict(zip(NAMES, w.X[5], strict=True))
    assert bst.predict_one(tb, row) == np.float32(direct[5])
    timeline = [(0, jobs.Blob(blob.data, blob.meta, 1))]
    p = jobs.realized(w, timeline, 1)  # as a stored champion, scored out of sample by name
    np.testing.assert_array_equal(p[402:], direct[402:])


def test_the_evidence_round_trips_through_the_store() -> None:
    """A selection written as rows and read back is the same selection."""
    out = selecting.validate(selecting.SelectionSpec(2, 0.9, 0), _window(1500), _spec(),
                             SETTINGS, [], [])
    assert out.selected is not None
    db = open_db(":memory:")
    store.insert(db, selecting.rows_of(out.selected.selection, None, "X", 7, None))
    assert selecting.from_rows(store.latest(db, "X")) == out.selected.selection


def test_a_replay_with_selection_enabled_stores_every_selection(tmp_path: Path) -> None:
    """A replay with [selection] enabled stores one row per feature at every validation."""
    cfg = replace_values(small_config(), {"selection": {"enabled": True, "repeats": 2}})
    result = run_replay([str(candles(tmp_path, 6_000))], cfg, db_path=tmp_path / "r.db")
    rows = query(result.db_path, "SELECT ts_event, count(*), sum(kept) FROM feature_selection "
                 "GROUP BY ts_event")
    validations = query(result.db_path, "SELECT count(*) FROM validations")[0][0]
    assert validations >= 1 and len(rows) == validations
    assert all(n == len(feature_names(cfg)) for _, n, _ in rows)


def test_a_promoted_selection_becomes_the_champion_on_its_own_schema(tmp_path: Path) -> None:
    """When the gate promotes xgb_selected, the batch learner registers the kept-features
    booster, makes it the champion (its probability is what the ensemble reads, by name from a
    full-schema bar), keeps it out of the warm-start lineage, and stores the selection with the
    champion's id."""
    from concurrent.futures import Future

    from ares_stream.batch.learner import BatchLearner, Pending
    from ares_stream.learners.registry import Registry

    out = selecting.validate(selecting.SelectionSpec(3, 0.9, 0), _window(3000, 0), _spec(),
                             SETTINGS, [], [])
    assert out.decision.promote and out.decision.challenger == "xgb_selected"
    assert out.selected is not None and out.selected.model is not None
    cfg = replace_values(small_config(), {"selection": {"enabled": True}})
    db = open_db(tmp_path / "run.db")
    learner = BatchLearner(cfg, Registry(db), features=NAMES, replay=True,
                           executor=_NoWorker())  # type: ignore[arg-type]
    sb = learner._symbol("X")
    ts = 3000 * 60_000_000_000
    learner._apply_validation(sb, Pending("X", "validate", Future(), ts, ts, {}), out, ts)
    champion = Registry(db).champion("X", "xgboost")
    assert champion is not None and champion.features == ("f0",)
    assert sb.champion_tb is not None and sb.champion_tb.features == ("f0",)
    assert all(b.model_id != champion.id for b in sb.lineage)
    row = dict(zip(NAMES, [0.5, 0.1, -0.2, 0.3, 0.0], strict=True))
    assert learner.proba("X", row) == bst.predict_one(sb.champion_tb, row)
    kept = {r.feature: r.model_id for r in store.latest(db, "X") if r.kept}
    assert kept == {"f0": champion.id}


class _NoWorker:
    """An executor the test never submits to (the outcome is applied directly)."""

    def submit(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("no job expected")

    def shutdown(self, *args: object, **kwargs: object) -> None:
        return None
