"""The hyperparameter search: trials scored on the gate's walk-forward folds, pruned, bounded,
seeded, blind to every row after its event time, and charged for its trials at the gate."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from ares_stream.batch import jobs, tuning
from ares_stream.store.db import open_db
from ares_stream.store.tuning import insert, optuna_path, recent
from ares_stream.validation import promotion as gate
from ares_stream.validation import walkforward
from tests.batch.test_jobs import H, _config, _window

CFG = _config()
SPEC = jobs.spec_of(CFG)
BASE = jobs.settings_of(CFG)


def _search(w: jobs.Window, at: int | None = None, **how: object) -> tuning.SearchOutcome:
    spec = tuning.SearchSpec(**{"trials": 10, "seconds": None, "seed": 3, **how})  # type: ignore[arg-type]
    return tuning.search(w, int(w.ts[-1]) + H * 60 * 10**9 if at is None else at, SPEC, BASE,
                         spec)


def test_a_trial_is_its_mean_log_loss_on_the_gates_walk_forward_folds() -> None:
    """Every completed trial scored every fold of jobs.folds_of; its value is the mean fold log
    loss of the refit recipe with its settings on those folds."""
    w = _window(1500, seed=1)
    out = _search(w, trials=6)
    folds = jobs.folds_of(out.rows, SPEC)
    assert out.best is not None and all(t.folds == len(folds) for t in out.trials
                                        if t.state == "COMPLETE")
    cand = jobs.refit_recipe("t", w.features, tuning.settings_from(out.best.params, BASE))
    results = walkforward.run_walk_forward(w.X, w.y, w.fwd, folds, [cand], horizon=H,
                                           rule=SPEC.rule, close=w.close)
    assert out.best.value == pytest.approx(np.mean([r.log_loss for r in results]))


def test_weak_trials_are_pruned_at_an_early_fold() -> None:
    """The median pruner stops some trials before their last fold."""
    out = _search(_window(1500, seed=2, signal=0.0), trials=20)
    pruned = [t for t in out.trials if t.state == "PRUNED"]
    assert pruned and all(t.folds < SPEC.folds for t in pruned)


def test_the_search_is_bounded_by_trials_and_by_seconds() -> None:
    """``trials`` caps the count; ``seconds`` ends a search that would run far longer."""
    w = _window(1200, seed=4)
    assert len(_search(w, trials=3).trials) == 3
    started = time.perf_counter()
    out = _search(w, trials=10_000, seconds=1.0)
    assert 1 <= len(out.trials) < 10_000 and time.perf_counter() - started < 30


def test_rows_after_the_search_time_change_nothing() -> None:
    """A search at event time T finds the same trials, values and best parameters when every
    row after T (features, labels, returns, closes) is rewritten: no leak from the future."""
    w = _window(2000, seed=5)
    at = int(w.ts[1400])
    rng = np.random.default_rng(99)
    after = w.ts > at
    X, y, fwd, close = w.X.copy(), w.y.copy(), w.fwd.copy(), np.asarray(w.close).copy()
    X[after] = rng.standard_normal(X[after].shape) * 10
    y[after] = 1 - y[after]
    fwd[after] = -fwd[after]
    close[after] = close[after] * 3.0
    rewritten = dataclasses.replace(w, X=X, y=y, fwd=fwd, close=close)
    a, b = _search(w, at), _search(rewritten, at)
    assert a.rows == b.rows < 1400
    assert [(t.state, t.value, t.params) for t in a.trials] == [
        (t.state, t.value, t.params) for t in b.trials]
    assert a.best == b.best


def test_the_study_persists_in_its_own_sqlite_file(tmp_path: Path) -> None:
    """The trials are in Optuna's file beside the state database; the run store records the
    search; a search of the same name replaces the old study."""
    db = open_db(tmp_path / "run.db")
    path = optuna_path(db)
    assert path == str(tmp_path / "run.db") + ".optuna.db"
    w = _window(1200, seed=6)
    for _ in range(2):
        out = _search(w, trials=4, storage=path, study="BTCUSDT@1")
    assert len(optuna.load_study(study_name="BTCUSDT@1", storage=f"sqlite:///{path}").trials) == 4
    insert(db, tuning.row_of(out, None, "BTCUSDT"))
    [row] = recent(db)
    assert (row.study, row.trials, row.best_value) == ("BTCUSDT@1", 4, out.best.value)


def test_on_noise_the_best_of_many_trials_is_deflated_and_not_promoted() -> None:
    """On pure noise, the deflated Sharpe of the best trial is below the gate's 0.95 and below
    its undeflated PSR against 0 (what a gate blind to the trial count would see), and the tuned
    candidate is not promoted."""
    w = _window(1500, seed=7, signal=0.0)
    out = _search(w, trials=25)
    assert out.deflated is not None and out.best is not None
    undeflated = gate.deflated_sharpe(_best_returns(w, out), [0.0], 1)
    assert out.deflated.dsr < 0.95
    assert out.deflated.sr0 > 0 and out.deflated.dsr < undeflated.dsr
    tuned = out.tuned()
    assert tuned is not None and tuned.n_trials == len(out.trials)
    v = jobs.validate(w, SPEC, BASE, [], [], tuned)
    assert "xgb_tuned" in v.summary and v.deflated is not None
    assert not (v.decision.promote and v.decision.challenger == "xgb_tuned")


def _best_returns(w: jobs.Window, out: tuning.SearchOutcome) -> np.ndarray:
    assert out.best is not None
    cand = jobs.refit_recipe("t", w.features, tuning.settings_from(out.best.params, BASE))
    res = walkforward.run_walk_forward(w.X[: out.rows], w.y[: out.rows], w.fwd[: out.rows],
                                       jobs.folds_of(out.rows, SPEC), [cand], horizon=H,
                                       rule=SPEC.rule, close=np.asarray(w.close)[: out.rows])
    return np.concatenate([r.returns for r in res if r.returns is not None])


def test_a_replay_runs_the_periodic_search_in_the_worker_deterministically(
        tmp_path: Path) -> None:
    """With [tuning] enabled a replay searches on its event-time clock, records each search,
    tries xgb_tuned in the validations after it; a second replay finds the same searches."""
    from ares_stream.config import replace_values
    from ares_stream.replay import run_replay
    from tests.batch.test_learner import candles, query, small_config

    cfg = replace_values(small_config(), {"tuning": {"enabled": True, "every": "12h",
                                                     "trials": 4, "seconds": 0.001}})
    src = str(candles(tmp_path, 4_000))
    rows = []
    for name in ("a.db", "b.db"):
        result = run_replay([src], cfg, db_path=tmp_path / name)
        rows.append(query(result.db_path, "select ts_event, trials, best_value, best_params "
                                          "from tuning order by ts_event"))
    assert rows[0] and rows[0] == rows[1]
    assert all(trials == 4 for _, trials, _, _ in rows[0])  # replay: trials, not seconds
    tables = query(tmp_path / "a.db", "select fold_table from validations")
    assert any("xgb_tuned" in t for (t,) in tables)
