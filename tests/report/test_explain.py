"""``ares-stream explain``: a real registry with real boosters, printed and refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ares_stream.cli import main
from ares_stream.learners import booster as bst
from ares_stream.learners.importance import booster_importance
from ares_stream.learners.registry import Registry
from ares_stream.store.db import open_db

FEATURES = ("noise", "signal", "other")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three boosters of one lineage, the second the champion, each with its importance."""
    path = tmp_path_factory.mktemp("explain") / "run.db"
    reg = Registry(open_db(path))
    rng = np.random.default_rng(0)
    for version in range(3):
        X = rng.normal(size=(800, 3))
        y = (X[:, 1] + 0.2 * rng.normal(size=800) > 0).astype(float)
        tb = bst.fit(X, y, np.arange(800), FEATURES, bst.BoosterSettings(rounds_refit=20))
        rec = reg.add_booster("SIMUSDT", tb, created=version,
                              importance=booster_importance(tb, X))
        if version == 1:
            reg.promote(rec.id)
    return path


def test_explain_prints_the_champions_ranking_and_its_lineage_ranks(
        db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """By default each symbol's champion: the informative feature first, gain share and mean
    |SHAP| shown, its rank in each version of the lineage up to the champion."""
    assert main(["explain", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("SIMUSDT xgboost v2 (model 2, champion, refit, 20 trees")
    assert lines[1].split()[:7] == ["rank", "feature", "gain", "share", "mean", "|SHAP|", "rank"]
    assert lines[1].endswith("rank in v1 v2")
    assert lines[2].split()[:2] == ["1", "signal"] and lines[2].split()[-2:] == ["1", "1"]
    assert len(lines) == 2 + len(FEATURES)


def test_explain_a_model_by_id_or_symbol(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--model`` picks that model (its lineage's ranks up to it); ``--symbol`` that symbol."""
    assert main(["explain", "--db", str(db), "--model", "3", "--last", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("SIMUSDT xgboost v3 (model 3, candidate") and "rank in v2 v3" in out
    assert main(["explain", "--db", str(db), "--symbol", "simusdt"]) == 0
    assert "v2 (model 2, champion" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "99"], "no model with id 99"),
    (["--symbol", "ETHUSDT"], "no boosters for ETHUSDT"),
    (["--last", "0"], "--last 0"),
])
def test_bad_input_is_one_line_and_exit_2(db: Path, capsys: pytest.CaptureFixture[str],
                                          args: list[str], message: str) -> None:
    """An unknown model or symbol, or a bad --last: one line on stderr, exit 2, no traceback."""
    assert main(["explain", "--db", str(db), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ares-stream explain: error: ")
    assert message in err


def test_a_missing_database_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --db that does not exist: one line, exit 2 (and no file is created)."""
    assert main(["explain", "--db", str(tmp_path / "none.db")]) == 2
    assert "no such database" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_the_online_learners_coefficients_are_ranked_across_its_last_readings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without boosters (batch learning off) explain still shows the online learner: its newest
    weights by size, and each feature's rank at the last readings the run stored."""
    from ares_stream.store.runs import RunStore

    path = tmp_path / "online.db"
    store = RunStore(open_db(path), mode="replay", config={}, sources=[])
    readings = [{"flow_imb": 0.1, "ret_1": -0.5, "vol_ewma": 0.0},
                {"flow_imb": 0.4, "ret_1": -0.3, "vol_ewma": 0.01},
                {"flow_imb": 0.9, "ret_1": -0.2, "vol_ewma": 0.02}]
    for i, coefs in enumerate(readings):
        store.coefficients("SIMUSDT", (i + 1) * 3600 * 10**9, coefs)
    store.flush()
    assert main(["explain", "--db", str(path), "--last", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("SIMUSDT online learner") and "1970-01-01 03:00:00 UTC" in lines[0]
    assert lines[1].split()[-3:] == ["in", "r1", "r2"]
    assert lines[2].split() == ["1", "flow_imb", "+0.9000", "1", "1"]
    assert lines[3].split() == ["2", "ret_1", "-0.2000", "2", "2"]
    assert main(["explain", "--db", str(path), "--symbol", "ETHUSDT"]) == 2
