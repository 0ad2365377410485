"""Batch learning through the engine: boosters trained, warm-started, capped, validated, promoted.

Real replays on real one-minute candles (or a planted-signal simulation) with a small batch
config, a real worker process, real XGBoost boosters and a real SQLite run database.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ares_stream.cli import main
from ares_stream.config import Config, replace_values
from ares_stream.learners.ensemble import ensemble
from ares_stream.replay import run_replay
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


def test_tree_count_never_exceeds_the_cap(run: Path) -> None:
    """No registered booster has more trees than batch.max_trees; the cap forced refits."""
    rows = query(run, "select how, n_trees from models")
    assert max(n for _, n in rows) <= SMALL["max_trees"]
    assert sum(1 for how, _ in rows if how == "refit") >= 2


def test_boosters_are_ubjson_never_pickle(run: Path) -> None:
    """Every stored booster is UBJSON with its ordered features and hash."""
    for fmt, blob, features, fhash in query(
            run, "select format, blob, features, feature_hash from models"):
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
    """On labels that are pure noise no booster beats the prior: nothing is promoted."""
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


def test_models_and_validate_commands(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`models` lists the registry; `validate` prints the fold table and a decision."""
    assert main(["models", "--db", str(run)]) == 0
    out = capsys.readouterr().out
    assert "warm_start" in out and "refit" in out and "BTCUSDT" in out
    assert main(["validate", "--db", str(run)]) == 0
    out = capsys.readouterr().out
    assert "xgb_refit" in out and "prior" in out and "decision:" in out


def test_missing_db_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`models --db` on a missing file says so in one line, exit 2."""
    assert main(["models", "--db", str(tmp_path / "none.db")]) == 2
    assert "no such database" in capsys.readouterr().err


def test_ensemble_weights_follow_validated_skill() -> None:
    """Without skill or champion the online probability is traded; otherwise skill weights."""
    assert ensemble(0.3, None, 1.0, 1.0) == 0.3
    assert ensemble(0.3, 0.9, 0.0, 0.0) == 0.3
    assert ensemble(0.3, 0.9, 0.0, 0.02) == pytest.approx(0.9)
    assert ensemble(0.3, 0.9, 0.01, 0.01) == pytest.approx(0.6)
