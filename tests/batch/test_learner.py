"""Batch learning through the engine: boosters trained, warm-started, capped, validated, promoted.

Real replays on real one-minute candles (or a planted-signal simulation) with a small batch
config, a real worker process, real XGBoost boosters and a real SQLite run database.
"""

from __future__ import annotations

import gzip
import json
import math
import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ares_stream.batch import jobs
from ares_stream.batch.learner import BatchLearner, Pending
from ares_stream.cli import main
from ares_stream.config import Config, replace_values
from ares_stream.learners import booster as bst
from ares_stream.learners.ensemble import OnlinePool, ensemble
from ares_stream.learners.registry import Registry
from ares_stream.replay import run_replay
from ares_stream.store import validations
from ares_stream.store.db import open_db
from ares_stream.store.runs import RunStore
from ares_stream.validation import promotion as gate
from ares_stream.validation import walkforward
from tests.conftest import shared_path

SMALL = {
    "min_rows": 600, "update_rows": 300, "update_every": "6h", "rounds_refit": 20,
    "rounds_update": 10, "max_trees": 50, "validate_every": "12h", "validate_rows": 1500,
    "folds": 4, "bootstrap": 500, "buffer_rows": 6000,
}


def candles(tmp_path: Path, n: int) -> Path:
    """The first ``n`` real one-minute BTCUSDT candles, as a candle CSV."""
    src = shared_path("klines/BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz")
    with gzip.open(src, "rt") as fh:
        lines = [next(fh) for _ in range(n + 1)]
    out = tmp_path / "BTCUSDT-1m-sample.csv"
    out.write_text("".join(lines))
    return out


def small_config(**batch: Any) -> Config:
    return replace_values(Config(), {"batch": {**SMALL, **batch},
                                     "labels": {"horizon": 10, "threshold_bps": 5.0}})


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("batch")
    result = run_replay([str(candles(tmp, 12_000))], small_config(), db_path=tmp / "run.db")
    assert result.summary["batch"]["trained"] > 0
    return result.db_path


def test_replay_trains_warm_starts_and_refits(run: Path) -> None:
    """A replay registers refits and warm starts, each warm start continuing its parent."""
    rows = query(run, "select id, parent, how, n_trees from models where kind = 'xgboost'")
    hows = {how for _, _, how, _ in rows}
    assert {"refit", "warm_start"} <= hows
    trees = {i: n for i, _, _, n in rows}
    for _, parent, how, n in rows:
        if how == "warm_start":
            assert parent in trees and n == trees[parent] + 10


def test_old_boosters_are_pruned_champions_kept(run: Path) -> None:
    """Past batch.keep_models boosters per symbol the oldest lose their bytes (their records
    stay); every model that was ever champion keeps its bytes."""
    stored = query(run, "select count(*) from models where kind = 'xgboost' and pruned is null "
                        "and ever_champion = 0")[0][0]
    pruned = query(run, "select count(*) from models where pruned is not null")[0][0]
    assert stored <= Config().batch.keep_models and pruned > 0
    assert query(run, "select count(*) from models where ever_champion = 1 and pruned is not null"
                 ) == [(0,)]


def test_tree_count_never_exceeds_the_cap(run: Path) -> None:
    """No registered booster has more trees than batch.max_trees; the cap forced refits."""
    rows = query(run, "select how, n_trees from models")
    assert max(n for _, n in rows) <= SMALL["max_trees"]
    assert sum(1 for how, _ in rows if how == "refit") >= 2


def test_boosters_are_ubjson_never_pickle(run: Path) -> None:
    """Every stored booster is UBJSON with its ordered features and hash (a pruned one keeps its
    record, not its bytes)."""
    for fmt, blob, features, fhash in query(
            run, "select format, blob, features, feature_hash from models where pruned is null"):
        assert fmt == "ubjson" and blob[:1] == b"{" and b"pickle" not in blob[:64]
        assert len(json.loads(features)) == 15 and len(fhash) == 16


def test_every_validation_is_recorded_with_its_numbers(run: Path) -> None:
    """Each re-validation stores a decision with losses, CI and a fold table, promoted or not."""
    rows = query(run, "select folds, challenger_loss, incumbent_loss, ci_low, ci_high, promoted,"
                      " reason, fold_table from validations")
    assert len(rows) >= 2
    for folds, cl, il, lo, hi, promoted, reason, table in rows:
        assert folds >= 3 and cl > 0 and il > 0 and lo <= hi and reason
        names = {r["candidate"] for r in json.loads(table)}
        assert {"prior", "persistence", "river", "xgb_refit", "champion"} <= names
        if promoted:
            assert lo > 0


def test_champion_is_unique_and_was_earned(run: Path) -> None:
    """At most one champion; it is the model of the last promoting validation."""
    champs = query(run, "select id from models where status = 'champion'")
    promoted = query(run, "select challenger_id from validations where promoted = 1 "
                          "order by ts_event desc, id desc limit 1")
    assert len(champs) <= 1
    assert [c for (c,) in champs] == [p for (p,) in promoted]


def test_replay_with_batch_is_deterministic(run: Path, tmp_path: Path) -> None:
    """The same input replayed again gives the same models, decisions and predictions."""
    again = run_replay([str(candles(tmp_path, 12_000))], small_config(),
                       db_path=tmp_path / "again.db").db_path
    for sql in ("select symbol, version, how, n_trees, rows, status, blob from models",
                "select ts_event, challenger, promoted, challenger_loss, ci_low from validations",
                "select ts_event, proba, value from predictions order by ts_event"):
        assert query(run, sql) == query(again, sql)


def test_noise_is_never_promoted(tmp_path: Path) -> None:
    """On labels that are pure noise no booster beats the prior: nothing is promoted, no edge is
    ever validated, so the paper broker never trades (18,744 fills lost a whole account to fees
    on a GARCH walk before signals needed a validated edge)."""
    rng = np.random.default_rng(0)
    n = 9_000
    t0 = 1_700_000_000_000
    price = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    lines = ["open_time,open,high,low,close,volume"] + [
        f"{t0 + i * 60_000},{p:.4f},{p * 1.001:.4f},{p * 0.999:.4f},{p:.4f},{1 + rng.random():.3f}"
        for i, p in enumerate(price)]
    path = tmp_path / "NOISE-1m-x.csv"
    path.write_text("\n".join(lines) + "\n")
    result = run_replay([str(path)], small_config(), db_path=tmp_path / "n.db")
    assert result.summary["batch"]["validations"] >= 2
    assert query(result.db_path, "select count(*) from validations where promoted = 1") == [(0,)]
    assert query(result.db_path, "select count(*) from orders") == [(0,)]
    gates = query(result.db_path, "select trading, reason from signal_gate order by ts_event")
    assert gates and all(t == 0 for t, _ in gates)
    assert gates[0][1] == "no walk-forward validation yet"


def test_models_and_validate_commands(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`models` lists the registry; `validate` prints the fold table and a decision."""
    assert main(["models", "--db", str(run)]) == 0
    out = capsys.readouterr().out
    assert "warm_start" in out and "refit" in out and "BTCUSDT" in out
    assert main(["validate", "--db", str(run)]) == 0
    out = capsys.readouterr().out
    assert "xgb_refit" in out and "prior" in out and "decision:" in out
    assert "edge after costs (trading the broker's rule):" in out


def test_validate_reads_an_earlier_versions_run_config(run: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A database whose run recorded a key this version removed (batch.fee_bps) still
    validates with that run's config: the removed key is dropped, not an error."""
    old = tmp_path / "old.db"
    with sqlite3.connect(run) as src, sqlite3.connect(old) as dst:
        src.backup(dst)
    with sqlite3.connect(old) as conn:
        (text,) = conn.execute("select config from runs order by id desc limit 1").fetchone()
        cfg = json.loads(text)
        cfg["batch"]["fee_bps"] = 10.0
        conn.execute("update runs set config = ?", (json.dumps(cfg),))
    assert main(["validate", "--db", str(old)]) == 0
    assert "decision:" in capsys.readouterr().out


def test_missing_db_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`models --db` on a missing file says so in one line, exit 2."""
    assert main(["models", "--db", str(tmp_path / "none.db")]) == 2
    assert "no such database" in capsys.readouterr().err


def test_ensemble_weights_follow_validated_skill() -> None:
    """Without a skilled member the fallback is used; otherwise skill weights."""
    assert ensemble([(0.9, 1.0)], 0.3) == 0.9
    assert ensemble([(0.3, 0.0), (0.9, 0.0)], 0.5) == 0.5
    assert ensemble([(0.3, 0.0), (0.9, 0.02)], 0.5) == pytest.approx(0.9)
    assert ensemble([(0.3, 0.01), (0.9, 0.01)], 0.5) == pytest.approx(0.6)


# -- what the ensemble weights and what may trade (issue 14) ---------------------------------

DAY = 86_400 * 10**9
FEATURES = ("a", "b")


def _learner(tmp_path: Path, **batch: Any) -> tuple[BatchLearner, Any]:
    """A batch learner on a real run database whose jobs run in this thread (results are
    hand-made validation outcomes, applied through the learner's own path)."""
    store = RunStore(open_db(tmp_path / "w.db"), mode="replay", config={}, sources=[])
    cfg = replace_values(Config(), {"batch": {"min_rows": 20, "folds": 2, **batch}})
    learner = BatchLearner(cfg, Registry(store.db, run_id=store.run_id), features=FEATURES,
                           executor=ThreadPoolExecutor(1))
    return learner, store


def _booster(seed: int = 0) -> jobs.Blob:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((200, 2))
    y = (X[:, 0] + rng.standard_normal(200) > 0).astype(np.int64)
    return jobs.to_blob(bst.fit(X, y, np.arange(200) * 60 * 10**9, FEATURES,
                                bst.BoosterSettings(rounds_refit=5)))


def _outcome(losses: dict[str, float], pnls: dict[str, list[float]], *,
             promote: str | None = None, refit: jobs.Blob | None = None) -> jobs.ValidationOutcome:
    summary = {name: {"log_loss": v, "folds": 5.0} for name, v in losses.items()}
    edges = {name: gate.edge(p) for name, p in pnls.items()}
    d = gate.Decision(promote is not None, promote or "xgb_refit", "champion", 5, 0.5, 0.6, 0.1,
                      0.05, 0.15, 0.001, "promoted" if promote else "not promoted")
    return jobs.ValidationOutcome(d, [], "", refit, summary, edges)


def _validate(learner: BatchLearner, ts: int, out: jobs.ValidationOutcome) -> None:
    """Apply ``out`` as the symbol's next validation, at event time ``ts``."""
    done: Future[Any] = Future()
    done.set_result(out)
    learner.tick("BTCUSDT", ts)
    champ = learner.symbols["BTCUSDT"].champion
    learner.pending.append(Pending("BTCUSDT", "validate", done, ts, ts,
                                   {"champion": champ, "candidate": None}))
    learner.apply_due(ts)


WIN = [0.01, 0.02, 0.015, 0.01, 0.012]  # after-cost fold PnLs with an edge
LOSE = [0.01, -0.03, 0.002, -0.01, 0.0]


def test_a_new_champion_is_weighted_by_its_own_skill(tmp_path: Path) -> None:
    """After a promotion the champion's weight is the skill of the model promoted, measured in
    that validation — not its predecessor's (the booster had weight 0 after its promotion)."""
    learner, _ = _learner(tmp_path)
    _validate(learner, DAY, _outcome({"prior": 0.60, "river": 0.59, "xgb_refit": 0.55,
                                      "champion": 0.60}, {"river": WIN, "xgb_refit": WIN},
                                     promote="xgb_refit", refit=_booster()))
    river, champion = learner.skills("BTCUSDT")
    assert river == pytest.approx(0.01) and champion == pytest.approx(0.05)
    assert learner.blocked("BTCUSDT") == ""
    learner.stop()


def test_no_trading_without_a_validated_edge(tmp_path: Path) -> None:
    """A better forecast that loses money after costs keeps the symbol flat, and says why;
    nothing trades before the first validation."""
    learner, _ = _learner(tmp_path)
    learner.tick("BTCUSDT", 1)
    assert learner.blocked("BTCUSDT") == "no walk-forward validation yet"
    _validate(learner, DAY, _outcome({"prior": 0.60, "river": 0.58, "champion": 0.60},
                                     {"river": LOSE}))
    reason = learner.blocked("BTCUSDT")
    assert reason.startswith("no validated edge after costs (river: fold PnL after costs")
    _validate(learner, 2 * DAY, _outcome({"prior": 0.60, "river": 0.61, "champion": 0.60},
                                         {"river": WIN}))
    assert learner.blocked("BTCUSDT") == "no model beats the constant prior"
    learner.stop()


def test_require_edge_off_trades_the_skill_weighted_signal(tmp_path: Path) -> None:
    learner, _ = _learner(tmp_path)
    learner.require_edge = False
    learner.tick("BTCUSDT", 1)
    assert learner.blocked("BTCUSDT") == ""
    learner.stop()


def test_a_champion_that_does_not_re_earn_its_place_stops_trading(tmp_path: Path) -> None:
    """Not re-measurable (too few out-of-sample folds) for more than champion_max_validations
    validations: weight 0; re-measured on its own rows with a skill: trades again."""
    learner, _ = _learner(tmp_path, champion_max_validations=2, champion_max_age="30d")
    _validate(learner, DAY, _outcome({"prior": 0.60, "river": 0.61, "xgb_refit": 0.55},
                                     {"river": LOSE, "xgb_refit": WIN},
                                     promote="xgb_refit", refit=_booster()))
    assert learner.skills("BTCUSDT")[1] > 0
    for k in (2, 3):  # two validations without a re-measure: still within the limit
        _validate(learner, k * DAY, _outcome({"prior": 0.60, "river": 0.61}, {"river": LOSE}))
        assert learner.skills("BTCUSDT")[1] > 0
    _validate(learner, 4 * DAY, _outcome({"prior": 0.60, "river": 0.61}, {"river": LOSE}))
    assert learner.skills("BTCUSDT") == (0.0, 0.0)
    assert "not re-earned since validation 1" in learner.blocked("BTCUSDT")
    _validate(learner, 5 * DAY, _outcome({"prior": 0.60, "river": 0.61, "current": 0.58},
                                         {"river": LOSE, "current": WIN}))
    assert learner.skills("BTCUSDT")[1] == pytest.approx(0.02)
    assert learner.blocked("BTCUSDT") == ""
    learner.stop()


def test_a_champion_expires_with_event_time(tmp_path: Path) -> None:
    learner, _ = _learner(tmp_path, champion_max_age="2d")
    _validate(learner, DAY, _outcome({"prior": 0.60, "river": 0.61, "xgb_refit": 0.55},
                                     {"river": LOSE, "xgb_refit": WIN},
                                     promote="xgb_refit", refit=_booster()))
    learner.tick("BTCUSDT", 3 * DAY)
    assert learner.skills("BTCUSDT")[1] > 0
    learner.tick("BTCUSDT", 3 * DAY + 1)
    assert learner.skills("BTCUSDT")[1] == 0.0
    learner.stop()


def test_a_champion_re_measured_without_skill_loses_its_weight(tmp_path: Path) -> None:
    learner, _ = _learner(tmp_path)
    _validate(learner, DAY, _outcome({"prior": 0.60, "river": 0.61, "xgb_refit": 0.55},
                                     {"river": LOSE, "xgb_refit": WIN},
                                     promote="xgb_refit", refit=_booster()))
    _validate(learner, 2 * DAY, _outcome({"prior": 0.60, "river": 0.61, "current": 0.62},
                                         {"river": LOSE, "current": WIN}))
    assert learner.skills("BTCUSDT") == (0.0, 0.0)
    learner.stop()


def test_apply_delay_counts_from_submission(tmp_path: Path) -> None:
    """A job submitted at bar T applies at T + apply_delay, even though the sample that
    triggered it is ``horizon`` bars older than T."""
    learner, _ = _learner(tmp_path, apply_delay="10m")
    minute = 60 * 10**9
    learner.tick("BTCUSDT", 100 * minute)
    done: Future[Any] = Future()
    done.set_result(None)
    learner._pending("BTCUSDT", "train", done, 90 * minute)  # the sample's bar, 10 bars back
    assert learner.pending[-1].apply_at == 110 * minute
    learner.stop()


def test_weights_and_edge_survive_a_restart(tmp_path: Path) -> None:
    """A learner started on the same database finds each model's skill and edge in the latest
    stored validation: the signal trades again at once, as before the restart."""
    w = jobs.Window(np.arange(400) * 60 * 10**9, np.random.default_rng(0).standard_normal((400, 2)),
                    np.arange(400) % 2, np.zeros(400), FEATURES, np.full(400, 100.0))
    learner, store = _learner(tmp_path)
    results = [walkforward.FoldResult(k, name, 100, loss, 0.2, 0.5, 0.5, {"total_return": pnl})
               for k in range(5)
               for name, loss, pnl in (("prior", 0.60, 0.0), ("river", 0.58, WIN[k]),
                                       ("xgb_refit", 0.55, WIN[k]), ("champion", 0.60, 0.0))]
    out = _outcome({"prior": 0.60, "river": 0.58, "xgb_refit": 0.55, "champion": 0.60},
                   {"river": WIN, "xgb_refit": WIN}, promote="xgb_refit", refit=_booster())
    out = jobs.ValidationOutcome(out.decision, results, "", out.refit, out.summary, out.edges)
    _validate(learner, DAY, out)
    before = learner.skills("BTCUSDT")
    learner.stop()
    del w
    again = BatchLearner(learner.config, Registry(store.db, run_id=store.run_id),
                         features=FEATURES, executor=ThreadPoolExecutor(1))
    again.tick("BTCUSDT", DAY + 1)
    assert again.skills("BTCUSDT") == pytest.approx(before)
    assert again.blocked("BTCUSDT") == ""
    again.stop()


def test_the_forecast_uses_every_skilled_model_only_edged_ones_trade(tmp_path: Path) -> None:
    """Where nothing makes money after costs (real 1m candles at 10 bps) the forecast still
    uses the boosters' skill, while nothing reaches the broker; a model with an edge trades."""
    learner, _ = _learner(tmp_path)
    sb = learner._symbol("BTCUSDT")
    sb.lineage.append(jobs.Blob(_booster().data, _booster().meta, 7))
    x = {"a": 1.5, "b": 0.0}
    _validate(learner, DAY, _outcome({"prior": 0.60, "river": 0.60, "lineage": 0.57},
                                     {"river": LOSE, "lineage": LOSE}))
    b = learner.blend("BTCUSDT", x, 0.2)
    p_lineage = bst.predict_one(jobs.from_blob(sb.lineage[-1]), x)
    assert b.forecast == pytest.approx(p_lineage) and b.booster is None
    assert math.isnan(b.trade) and b.blocked.startswith("no validated edge after costs (lineage")
    _validate(learner, 2 * DAY, _outcome({"prior": 0.60, "river": 0.59, "lineage": 0.57},
                                         {"river": WIN, "lineage": LOSE}))
    b = learner.blend("BTCUSDT", x, 0.2)
    assert b.trade == pytest.approx(0.2) and b.blocked == ""  # the edged online learner alone
    assert b.forecast == pytest.approx((0.01 * 0.2 + 0.03 * p_lineage) / 0.04)
    learner.stop()


def test_each_validation_refits_and_pools_the_forecast(tmp_path: Path) -> None:
    """Not promoted (no edge), the refit recipe's whole-window model still continues the lineage
    with the recipe's skill; the forecast weighs it by skill, then by the mix that scored best on
    the live predictions once the pool has its labels."""
    learner, store = _learner(tmp_path)
    refit = _booster(3)
    out = _outcome({"prior": 0.60, "river": 0.58, "xgb_refit": 0.56, "lineage": 0.59},
                   {"river": LOSE, "xgb_refit": LOSE, "lineage": LOSE}, refit=refit)
    _validate(learner, DAY, out)
    sb = learner.symbols["BTCUSDT"]
    assert jobs.ubjson(sb.lineage[-1]) == refit.data and sb.lineage[-1].model_id is not None
    assert sb.skill["lineage"] == pytest.approx(0.04) and sb.champion is None
    x = {"a": -0.7, "b": 0.3}
    p_refit = bst.predict_one(jobs.from_blob(refit), x)
    sb.pool = OnlinePool(min_samples=1)
    b = learner.blend("BTCUSDT", x, 0.3)  # recorded at DAY; the pool has no label yet
    assert b.forecast == pytest.approx((0.02 * 0.3 + 0.04 * p_refit) / 0.06)
    assert math.isnan(b.trade) and b.blocked.startswith("no validated edge")
    learner.on_sample("BTCUSDT", DAY, x, int(p_refit > 0.3), 0.0, 100.0)  # the refit was right
    b = learner.blend("BTCUSDT", x, 0.3)
    assert b.forecast == pytest.approx(p_refit)
    rows = query(tmp_path / "w.db", "select how from models where kind = 'xgboost'")
    assert rows == [("refit",)]
    learner.stop()
    del store


def test_a_drift_suspends_the_edge_until_the_next_validation(tmp_path: Path) -> None:
    """The edge was validated before the change the drift signals: nothing trades until a
    validation — submitted at once — measures it again."""
    learner, _ = _learner(tmp_path)
    _validate(learner, DAY, _outcome({"prior": 0.60, "river": 0.58}, {"river": WIN}))
    assert learner.blocked("BTCUSDT") == ""
    sb = learner.symbols["BTCUSDT"]
    for i in range(30):  # enough samples for a validation job to be submitted
        sb.buffer.add(DAY + i, {"a": float(i), "b": 0.0}, i % 2, 0.0, 100.0)
    learner.on_drift("BTCUSDT", DAY + 100)
    assert learner.blocked("BTCUSDT").startswith("a drift since the last validation")
    assert "validate" in sb.busy
    learner.stop()


def test_what_blend_trades_and_what_blocked_says_agree(tmp_path: Path) -> None:
    """The lineage's newest booster is the champion itself (weighted as the champion): its edge
    opens nothing by itself, and `blocked` says so rather than "" with nothing to trade."""
    learner, _ = _learner(tmp_path)
    _validate(learner, DAY, _outcome({"prior": 0.60, "river": 0.61, "xgb_refit": 0.55},
                                     {"river": LOSE, "xgb_refit": WIN},
                                     promote="xgb_refit", refit=_booster()))
    sb = learner.symbols["BTCUSDT"]
    sb.refit_tb = None  # as after a restart: the newest stored booster is the champion
    sb.skill["lineage"], sb.edge["lineage"] = 0.02, gate.edge(WIN)
    sb.skill["champion"], sb.edge["champion"] = 0.03, gate.edge(LOSE)
    b = learner.blend("BTCUSDT", {"a": 0.1, "b": 0.2}, 0.4)
    assert math.isnan(b.trade) == bool(b.blocked) and b.blocked.startswith("no validated edge")
    learner.stop()


def test_a_manual_champion_trades_only_once_a_validation_measures_it(tmp_path: Path) -> None:
    """``models promote`` in a running learner: the champion changes at once, with no weight and
    no edge until a validation measures it on its own rows; a validation that was running
    meanwhile (it measured the champion before) promotes nothing."""
    from ares_stream.batch import manual

    learner, _ = _learner(tmp_path)
    _validate(learner, DAY, _outcome({"prior": 0.60, "river": 0.61, "xgb_refit": 0.55,
                                      "champion": 0.60}, {"river": LOSE, "xgb_refit": WIN},
                                     promote="xgb_refit", refit=_booster()))
    sb = learner.symbols["BTCUSDT"]
    assert learner.blocked("BTCUSDT") == "" and sb.champion is not None
    before = sb.champion.model_id
    rec = learner.registry.add_booster("BTCUSDT", jobs.from_blob(_booster(1)), created=DAY)
    running: Future[Any] = Future()
    running.set_result(_outcome({"prior": 0.60, "river": 0.61, "xgb_refit": 0.50},
                                {"river": LOSE, "xgb_refit": WIN}, promote="xgb_refit",
                                refit=_booster(2)))
    stale = Pending("BTCUSDT", "validate", running, DAY + 1, DAY + 1,
                    {"champion": sb.champion, "candidate": None})
    answer = learner.manual(manual.ManualDecision("promote", "ops", "why", model_id=rec.id),
                            DAY + 2)
    assert answer.ok and (answer.model_id, answer.replaced) == (rec.id, before)
    assert sb.champion is not None and sb.champion.model_id == rec.id
    assert learner.registry.champion("BTCUSDT").id == rec.id  # type: ignore[union-attr]
    assert learner.skills("BTCUSDT")[1] == 0.0
    assert "not validated since it was loaded" in learner.blocked("BTCUSDT")
    learner.pending.append(stale)
    learner.apply_due(DAY + 3)
    assert sb.champion.model_id == rec.id
    last = validations.recent(learner.registry.db, "BTCUSDT", limit=1)[0]
    assert not last.promoted and "not applied: a manual decision" in last.reason
    _validate(learner, DAY + 4, _outcome({"prior": 0.60, "river": 0.61, "current": 0.56},
                                         {"river": LOSE, "current": WIN}))
    assert learner.skills("BTCUSDT")[1] == pytest.approx(0.04)
    assert learner.blocked("BTCUSDT") == ""
    refused = learner.manual(manual.ManualDecision("promote", "ops", "why", model_id=999), DAY)
    assert not refused.ok and "no model with id 999" in refused.message
    learner.stop()


def held_replay(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Any]:
    """A replay of the candles with batch learning; its database and its batch learner."""
    from ares_stream import replay

    engines: list[Any] = []
    build = replay.build_engine

    def keep(*args: Any, **kwargs: Any) -> Any:
        engines.append(build(*args, **kwargs))
        return engines[-1]

    monkeypatch.setattr(replay, "build_engine", keep)
    result = run_replay([str(candles(tmp_path, 12_000))], small_config(),
                        db_path=tmp_path / f"{name}.db")
    return result.db_path, engines[0].batch


def test_the_held_lineage_is_bounded_and_decides_as_the_unbounded_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over many trainings a symbol holds only the newest boosters a validation is handed
    (here 4), packed; the same replay holding every booster unpacked stores the same models,
    validations, promotions and predictions."""
    import ares_stream.batch.learner as learner_mod

    monkeypatch.setattr(learner_mod, "_TIMELINE", 4)
    held, batch = held_replay(tmp_path, "held", monkeypatch)
    with monkeypatch.context() as m:  # the unbounded reference: append everything, raw
        m.setattr(learner_mod, "_keep", lambda timeline, item: timeline.append(item))
        m.setattr(jobs, "pack", lambda blob: blob)
        every, unbounded = held_replay(tmp_path, "every", m)
    sb, ref = batch.symbols["BTCUSDT"], unbounded.symbols["BTCUSDT"]
    assert batch.counts["trained"] > 10 and len(ref.lineage) > 10
    assert query(held, "select count(*) from validations")[0][0] >= 2
    assert len(sb.lineage) == 4 and all(b.packed for b in sb.lineage)
    assert [b.model_id for b in sb.lineage] == [b.model_id for b in ref.lineage[-4:]]
    raw = sum(len(b.data) for b in ref.lineage[-4:])
    assert sum(len(b.data) for b in sb.lineage) < raw / 2
    assert [jobs.from_blob(b).n_trees for b in sb.lineage] == [
        jobs.from_blob(b).n_trees for b in ref.lineage[-4:]]
    for sql in ("select symbol, version, how, n_trees, rows, status, blob from models",
                "select ts_event, challenger, promoted, challenger_loss, ci_low, fold_table "
                "from validations",
                "select ts_event, proba, value from predictions order by ts_event"):
        assert query(held, sql) == query(every, sql)
