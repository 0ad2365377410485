"""``ares-stream compare``: real replays (boosters, validations, promotions) side by side."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ares_stream.cli import main
from ares_stream.config import Config, load_config, replace_values
from ares_stream.learners.online import make_model
from ares_stream.learners.registry import Registry
from ares_stream.replay import run_replay
from ares_stream.report.compare import compare_models, compare_runs, format_comparison
from ares_stream.report.data import load
from ares_stream.sim.simulator import write_recording
from ares_stream.store.db import open_db

ROOT = Path(__file__).resolve().parents[2]
# small numbers: in six simulated hours of 10 s bars the booster is validated every 300 bars and
# promoted twice in a row (the second promotion's validation holds both champions)
BATCH = {"bootstrap": 200, "rounds_refit": 20, "max_trees": 60, "validate_rows": 300,
         "margin": 0.0}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a.db: run 1 with batch learning, run 2 as b's; b.db: run 1 trading a higher entry
    level without batch learning), both replays of one simulated recording."""
    tmp = tmp_path_factory.mktemp("compare")
    write_recording(tmp / "sim.gz", seconds=6 * 3600, seed=3)
    learned = replace_values(load_config(ROOT / "configs" / "demo.toml"), {"batch": BATCH})
    other = replace_values(learned, {"trading": {"enter": 0.65}, "batch": {"enabled": False}})
    a, b = tmp / "a.db", tmp / "b.db"
    for cfg, db in ((learned, a), (other, b), (other, a)):
        _replay(tmp / "sim.gz", cfg, db)
    return a, b


def _replay(src: Path, cfg: Config, db: Path) -> None:
    run_replay([str(src)], cfg, db_path=db)


def _query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def _rows(c: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["section"], r["name"]): r for r in c["rows"]}


def _same(x: Any, y: Any) -> bool:
    """Equal, NaN and None (JSON null) being one."""
    if isinstance(y, float) and math.isnan(y):
        return x is None
    return bool(x == pytest.approx(y, rel=1e-12, abs=1e-12)) if isinstance(y, float) else x == y


def test_two_runs_show_each_runs_summary_and_the_config_keys_that_differ(
        runs: tuple[Path, Path]) -> None:
    """Two runs of two files: each column is that run's report summary, B − A their difference,
    the counts those of the database, and the config diff names exactly the changed keys."""
    a, b = runs
    c = compare_runs(f"{a}:1", str(b))
    assert (c["a"], c["b"]) == ({"db": str(a), "run_id": 1}, {"db": str(b), "run_id": 1})
    rows = _rows(c)
    for col, (path, rid) in (("a", (a, 1)), ("b", (b, 1))):
        s = load(path, rid).summary
        for key, name in (("return", "return"), ("max_drawdown", "max drawdown"),
                          ("fills", "fills"), ("fees", "fees"), ("turnover", "turnover (per day)"),
                          ("sharpe_bar", "Sharpe (per bar, indicative)"),
                          ("drift_events", "drift events")):
            assert _same(rows["trading" if key != "drift_events" else "learning", name][col],
                         s[key]), (col, key)
        for model, name in (("river", "online learner"), ("ensemble", "forecast (traded)"),
                            ("constant", "prior"), ("booster", "booster")):
            assert _same(rows["log loss", name][col], s["log_loss"][model]), (col, model)
        (n, promoted), = _query(path, "SELECT COUNT(*), COALESCE(SUM(promoted), 0) FROM "
                                "validations WHERE run_id = ?", rid)
        assert rows["learning", "validations"][col] == n
        assert rows["learning", "promotions"][col] == promoted
    assert rows["learning", "promotions"]["a"] >= 2 and rows["learning", "validations"]["b"] == 0
    fills = rows["trading", "fills"]
    assert fills["diff"] == fills["b"] - fills["a"] and fills["a"] != fills["b"]
    assert {d["key"]: (d["a"], d["b"]) for d in c["config_diff"]} == {
        "trading.enter": (0.6, 0.65), "batch.enabled": (True, False)}


def test_a_run_compared_with_itself_has_no_differences(runs: tuple[Path, Path]) -> None:
    """The newest run of a file against itself named by id: every difference is zero and no
    config key differs."""
    a, _ = runs
    c = compare_runs(str(a), f"{a}:2")
    diffs = [r["diff"] for r in c["rows"] if r["diff"] is not None]
    assert len(diffs) > 15 and all(d == 0 for d in diffs)
    assert all(r["a"] == r["b"] for r in c["rows"]) and c["config_diff"] == []


def test_two_models_of_one_lineage_side_by_side(runs: tuple[Path, Path]) -> None:
    """The champion and the model that replaced it: both list the validation that did it (one
    as incumbent, one as challenger), whose fold table side by side holds the stored fold
    rows' log loss and PnL of their two candidates; each one's spell as champion has the fills
    and the equity change of the run between its promotion and the next."""
    a, _ = runs
    vid, ts, old, new, challenger, incumbent, table, improvement = _query(
        a, "SELECT id, ts_event, incumbent_id, challenger_id, challenger, incumbent, fold_table, "
        "improvement FROM validations WHERE promoted = 1 AND incumbent_id IS NOT NULL "
        "ORDER BY id LIMIT 1")[0]
    c = compare_models(a, old, new)
    roles = {w: {v["id"]: v["role"] for v in c["validations"][w]} for w in ("a", "b")}
    assert roles["a"][vid] == "incumbent" and roles["b"][vid] == "challenger"
    ids = {w: {i for (i,) in _query(a, "SELECT id FROM validations WHERE challenger_id = ? OR "
                                       "incumbent_id = ?", m, m)} for w, m in (("a", old),
                                                                               ("b", new))}
    assert set(roles["a"]) == ids["a"] and set(roles["b"]) == ids["b"]
    (side,) = [t for t in c["fold_tables"] if t["validation_id"] == vid]
    assert (side["a_candidate"], side["b_candidate"]) == (incumbent, challenger)
    stored = {(r["fold"], r["candidate"]): r for r in json.loads(table)}
    assert [f["fold"] for f in side["folds"]] == sorted({f for f, _ in stored})
    for f in side["folds"]:
        mine, theirs = stored[f["fold"], incumbent], stored[f["fold"], challenger]
        assert f["a_log_loss"] == mine["log_loss"] and f["b_log_loss"] == theirs["log_loss"]
        assert f["a_pnl"] == mine["total_return"] and f["b_pnl"] == theirs["total_return"]
        assert f["diff_log_loss"] == pytest.approx(theirs["log_loss"] - mine["log_loss"])
    gain = [-f["diff_log_loss"] for f in side["folds"]]
    assert sum(gain) / len(gain) == pytest.approx(improvement)
    (spell,) = [s for s in c["champion"]["a"] if s["to_ns"] == ts]
    (fills,), = _query(a, "SELECT COUNT(*) FROM fills WHERE run_id = 1 AND ts_event >= ? AND "
                       "ts_event < ?", spell["from_ns"], ts)
    before, after = (_query(a, "SELECT equity FROM equity WHERE run_id = 1 AND ts_event <= ? "
                            "ORDER BY ts_event DESC LIMIT 1", t)[0][0]
                     for t in (spell["from_ns"], ts - 1))
    assert spell["fills"] == fills and spell["pnl"] == pytest.approx(after - before, abs=1e-6)
    assert c["champion"]["b"][0]["from_ns"] == ts and c["notes"] == []
    text = format_comparison(c)
    assert f"fold table of validation #{vid}" in text and f"B = {challenger}" in text


def test_models_of_different_kinds_compare_and_say_so(runs: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    """A booster beside a River learner of the registry: compared, with a note saying the kinds
    differ and that no validation holds both; the stored metrics of each are shown."""
    db = tmp_path / "kinds.db"
    shutil.copy(runs[0], db)
    river = Registry(open_db(db)).save_river("SIMUSDT", make_model("logreg"), created=0,
                                             metrics={"log_loss": 0.68})
    c = compare_models(db, 1, river.id)
    assert any("different kinds (xgboost vs river)" in n for n in c["notes"])
    assert any("no validation holds both" in n for n in c["notes"])
    assert _rows(c)["metrics", "log_loss"]["b"] == 0.68 and c["fold_tables"] == []


@pytest.mark.parametrize("what", ["runs", "models"])
def test_the_json_round_trips_and_the_text_is_a_table(
        runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str], what: str) -> None:
    """``--json`` prints exactly the comparison (schema 1) and reads back equal; the text has
    the A, B and B-A columns."""
    a, b = runs
    old, new = _query(a, "SELECT incumbent_id, challenger_id FROM validations WHERE promoted = 1 "
                      "AND incumbent_id IS NOT NULL ORDER BY id LIMIT 1")[0]
    args, built = ((["compare", f"{a}:1", str(b)], compare_runs(f"{a}:1", str(b))) if what == "runs"
                   else (["compare", "--db", str(a), str(old), str(new)],
                         compare_models(a, old, new)))
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == built and out["schema"] == 1 and out["what"] == what
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[2].split() == ["A", "B", "B-A"]
    assert ("trading.enter" in text) if what == "runs" else ("A as champion" in text)


@pytest.mark.parametrize(("args", "message"), [
    (["{tmp}/none.db", "{a}"], "{tmp}/none.db: no such database"),
    (["{a}:9", "{b}"], "{a}: no run 9 (runs in this database: 1, 2)"),
    (["--db", "{a}", "1", "999"], "no model with id 999 in {a}"),
    (["--db", "{tmp}/none.db", "1", "2"], "{tmp}/none.db: no such database"),
    (["{a}", "3"], "cannot compare a run ({a}) with a model (3)"),
    (["--db", "{a}", "3", "{b}"], "cannot compare a run ({b}) with a model (3)"),
    (["1", "2"], "name their database with --db DB"),
    (["--db", "{a}", "{a}", "{b}"], "--db is for two model ids"),
])
def test_bad_input_is_one_line_and_exit_2(runs: tuple[Path, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str], args: list[str],
                                          message: str) -> None:
    """A missing file, an unknown run or model id, a run mixed with a model: one line naming
    it on stderr, exit 2, no traceback."""
    a, b = runs
    names = {"a": a, "b": b, "tmp": tmp_path}
    assert main(["compare", *(x.format(**names) for x in args)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ares-stream compare: error: ")
    assert message.format(**names) in err
