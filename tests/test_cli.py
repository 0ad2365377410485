"""``ares-stream models``: listing and pruning the registry of a real database file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from ares_stream.cli import main
from ares_stream.learners import booster as bst
from ares_stream.learners.registry import Registry
from ares_stream.store.db import open_db
from ares_stream.store.runs import RunStore

T0 = 1_704_067_200 * 10**9  # 2024-01-01 00:00 UTC, ns


@pytest.fixture(scope="module")
def tb() -> bst.TrainedBooster:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = (X[:, 0] + rng.normal(size=300) > 0).astype(float)
    ts = T0 + np.arange(300, dtype=np.int64) * 60 * 10**9
    return bst.fit(X, y, ts, ["ret_1", "vol", "spread"],
                   bst.BoosterSettings(rounds_refit=5, max_trees=20))


def state(path: Path, tb: bst.TrainedBooster, keep_models: int | None = None) -> Path:
    """Six BTCUSDT boosters (v2 once champion) and two ETHUSDT ones, as the daemon writes them;
    with ``keep_models``, a run that recorded it in its config."""
    db = open_db(path)
    if keep_models is not None:
        RunStore(db, mode="paper", config={"batch": {"keep_models": keep_models}}, sources=[])
    reg = Registry(db)
    with capture_logs():
        btc = [reg.add_booster("BTCUSDT", tb, created=T0 + i) for i in range(6)]
        for i in range(2):
            reg.add_booster("ETHUSDT", tb, created=T0 + i)
        reg.promote(btc[1].id)
        reg.promote(btc[5].id)
    db.conn.close()
    return path


def pruned(path: Path) -> dict[str, list[int]]:
    """The pruned versions of each symbol."""
    out: dict[str, list[int]] = {"BTCUSDT": [], "ETHUSDT": []}
    for r in Registry(open_db(path)).list():
        if r.pruned:
            out[r.symbol].append(r.version)
    return out


def test_models_prune_dry_run_then_prune(tmp_path: Path, tb: bst.TrainedBooster,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run prints what would go and deletes nothing; the prune then does exactly that."""
    db = state(tmp_path / "paper.db", tb)
    size = len(bst.to_ubjson(tb)) / 1000
    assert main(["models", "prune", "--db", str(db), "--keep", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"BTCUSDT: would keep 3, prune 3, free {3 * size:.1f} kB",
                   "ETHUSDT: would keep 2, prune 0, free 0 B",
                   f"total: would keep 5, prune 3, free {3 * size:.1f} kB (dry run: nothing "
                   "deleted)"]
    assert pruned(db) == {"BTCUSDT": [], "ETHUSDT": []}
    assert main(["models", "prune", "--db", str(db), "--keep", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"BTCUSDT: kept 3, pruned 3, freed {3 * size:.1f} kB"
    assert out[2].startswith(f"total: kept 5, pruned 3, freed {3 * size:.1f} kB")
    assert pruned(db) == {"BTCUSDT": [1, 3, 4], "ETHUSDT": []}  # v2 was champion once


def test_models_lists_pruned_models_and_keeps_its_old_form(
        tmp_path: Path, tb: bst.TrainedBooster, capsys: pytest.CaptureFixture[str]) -> None:
    """`models --db DB`, `models list` and `models --db DB --symbol S` still list; pruned ones
    show as pruned."""
    db = state(tmp_path / "paper.db", tb)
    assert main(["models", "--db", str(db), "prune", "--keep", "1", "--symbol", "btcusdt"]) == 0
    capsys.readouterr()
    assert main(["models", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[9] == "blob" and len(lines) == 9
    assert [line.split()[3] for line in lines[1:] if "pruned" in line] == ["1", "3", "4", "5"]
    assert main(["models", "list", "--db", str(db), "--symbol", "ETHUSDT"]) == 0
    listed = capsys.readouterr().out
    assert "ETHUSDT" in listed and "BTCUSDT" not in listed and "pruned" not in listed


def test_models_prune_keep_defaults_to_the_config(tmp_path: Path, tb: bst.TrainedBooster,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Without --keep: batch.keep_models of --config, else of the database's latest run."""
    db = state(tmp_path / "paper.db", tb, keep_models=4)
    assert main(["models", "prune", "--db", str(db)]) == 0
    assert pruned(db)["BTCUSDT"] == [1]
    config = tmp_path / "ares.toml"
    config.write_text("[batch]\nkeep_models = 1\n")
    assert main(["models", "prune", "--db", str(db), "--config", str(config)]) == 0
    assert pruned(db) == {"BTCUSDT": [1, 3, 4, 5], "ETHUSDT": [1]}
    assert "total: kept 3, pruned 4" in capsys.readouterr().out.splitlines()[-1]


def test_models_prune_vacuum_shrinks_the_file(tmp_path: Path, tb: bst.TrainedBooster,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--vacuum gives the pruned bytes back to the file system and says how many."""
    db = state(tmp_path / "paper.db", tb)
    assert main(["models", "prune", "--db", str(db), "--keep", "0", "--vacuum"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("vacuum: the file shrank by ") and last != "vacuum: the file shrank by 0"


def test_models_prune_missing_db_is_one_line_exit_2(tmp_path: Path) -> None:
    """Run as a process, a missing --db prints one line naming it, exit code 2, no traceback."""
    missing = tmp_path / "nope.db"
    proc = subprocess.run([sys.executable, "-m", "ares_stream.cli", "models", "prune", "--db",
                           str(missing), "--dry-run"], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"ares-stream models: error: {missing}: no such database\n"
    assert not missing.exists()


def test_models_prune_bad_keep_is_exit_2(tmp_path: Path, tb: bst.TrainedBooster,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A --keep that is no whole number >= 0 is refused by the parser (exit code 2)."""
    db = state(tmp_path / "paper.db", tb)
    for keep in ("-1", "two"):
        with pytest.raises(SystemExit) as stop:
            main(["models", "prune", "--db", str(db), "--keep", keep])
        assert stop.value.code == 2
        assert "--keep: expected a whole number >= 0" in capsys.readouterr().err
    assert pruned(db) == {"BTCUSDT": [], "ETHUSDT": []}


def test_writers_are_refused_while_another_process_owns_the_database(
        tmp_path: Path, tb: bst.TrainedBooster, capsys: pytest.CaptureFixture[str]) -> None:
    """While a daemon holds a database's lock, ``models prune``, ``tune`` and ``replay --db`` on
    it end with one line naming the holder's pid (exit 2) and change nothing; readers
    (``models``, ``status``) still read it."""
    import os

    from ares_stream.sim.simulator import write_recording
    from ares_stream.store.lock import DatabaseLock

    db = state(tmp_path / "paper.db", tb)
    write_recording(tmp_path / "sim.gz", seconds=120, seed=1)
    refusal = f"error: {db} is in use by pid {os.getpid()} (lock {db}.lock)\n"
    with DatabaseLock(db):  # the daemon's, as far as the commands can tell
        assert main(["models", "prune", "--db", str(db), "--keep", "0"]) == 2
        assert capsys.readouterr().err == f"ares-stream models: {refusal}"
        assert main(["replay", str(tmp_path / "sim.gz"), "--db", str(db), "--no-report",
                     "--quiet"]) == 2
        assert capsys.readouterr().err == f"ares-stream replay: {refusal}"
        assert main(["tune", "--db", str(db), "--trials", "2"]) == 2  # it writes the search
        assert capsys.readouterr().err == f"ares-stream tune: {refusal}"
        assert main(["models", "--db", str(db)]) == 0 and main(["status", "--db", str(db)]) == 0
    assert pruned(db) == {"BTCUSDT": [], "ETHUSDT": []}
    assert main(["models", "prune", "--db", str(db), "--keep", "0"]) == 0  # once it is free


def test_profile_lies_under_the_config_file_and_the_flags(tmp_path: Path) -> None:
    """defaults < --profile < --config < flags, for the commands that take a config."""
    from ares_stream.cli import _config, build_parser

    path = tmp_path / "mine.toml"
    path.write_text('[batch]\nfolds = 4\n[feed]\nsymbols = ["BTCUSDT"]\n')
    args = build_parser().parse_args(["replay", "x.csv", "--profile", "quick", "--config",
                                      str(path), "--symbols", "ethusdt"])
    cfg = _config(args)
    assert (cfg.batch.folds, cfg.batch.rounds_refit, cfg.feed.symbols) == (4, 30, ("ETHUSDT",))
    run = build_parser().parse_args(["run", "--paper", "--profile", "production"])
    assert _config(run).batch.folds == 6


@pytest.mark.parametrize("argv", [["replay", "x.csv"], ["run", "--paper"], ["validate"]])
def test_unknown_profile_is_one_line_exit_2(argv: list[str], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown --profile ends with one line naming the valid ones, exit 2."""
    db = tmp_path / "v.db"
    open_db(db)
    extra = ["--db", str(db)] if argv[0] == "validate" else []
    assert main([*argv, *extra, "--profile", "fast"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown profile 'fast' (valid: quick, dev, production)" in err


def test_daemon_py_takes_a_profile(tmp_path: Path) -> None:
    """python daemon.py passes --profile to `run`: an unknown one is one line, exit 2."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "daemon.py"), "--paper", "--profile", "x"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 2 and "unknown profile 'x'" in out.stderr
    assert out.stderr.count("\n") == 1
