"""`ares-stream tune`: the search on a database's buffered samples, recorded, summarised with the
deflated Sharpe and the tuned candidate against the champion; bad input is one line, exit 2."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ares_stream.cli import main
from ares_stream.replay import run_replay
from tests.batch.test_learner import candles, small_config


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("tune")
    result = run_replay([str(candles(tmp, 3_000))], small_config(), db_path=tmp / "run.db")
    return result.db_path


def test_tune_prints_the_best_trials_the_deflation_and_the_verdict(
        run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Trials, the deflated Sharpe and the comparison with the champion are printed; the search
    is recorded in the tuning table and its trials in <db>.optuna.db."""
    assert main(["tune", "--db", str(run), "--trials", "6", "--seconds", "300"]) == 0
    out = capsys.readouterr().out
    assert "BTCUSDT: search over" in out and "logloss" in out and "6 trials" in out
    assert "deflated Sharpe" in out and "against the champion:" in out
    with sqlite3.connect(run) as conn:
        assert conn.execute("select trials, symbol from tuning").fetchall() == [(6, "BTCUSDT")]
    assert Path(f"{run}.optuna.db").exists()


@pytest.mark.parametrize("argv", [["--trials", "0"], ["--seconds", "-1"],
                                  ["--symbol", "NOPEUSDT"]])
def test_tune_bad_input_is_one_line_exit_2(run: Path, argv: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Non-positive bounds or a symbol without samples: one line on stderr, exit 2."""
    assert main(["tune", "--db", str(run), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ares-stream tune: error:") and err.count("\n") == 1


def test_tune_missing_db_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A database that does not exist: one line, exit 2."""
    assert main(["tune", "--db", str(tmp_path / "none.db")]) == 2
    assert "no such database" in capsys.readouterr().err
