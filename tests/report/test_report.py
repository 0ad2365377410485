"""The report of real runs: a small simulated replay (paper broker and batch learning on), a feed
with gaps and a bad frame, an empty run and an old database, through ``ares-stream report`` and
the end of ``ares-stream replay``."""

from __future__ import annotations

import gzip
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ares_stream.cli import main
from ares_stream.report import figures, write_report
from ares_stream.report.data import load
from ares_stream.sim.simulator import write_recording
from ares_stream.store.db import MIGRATIONS, open_db
from ares_stream.store.runs import RunStore

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "demo.toml"
SECTIONS = {"summary": "Summary", "equity": "Equity and drawdown", "risk": "Risk",
            "price": "Price, position and fills",
            "learners": "Learners: rolling log loss and accuracy",
            "uses": "What the models use", "validation": "Walk-forward validation",
            "feed-health": "Feed health"}
FIGURES = ("equity", "fan", "price", "learners", "feed_health", "importance", "drift_timeline")
SUMMARY_ROWS = ("Return", "Sharpe", "Sortino", "Volatility", "Max drawdown", "Calmar", "Hit rate",
                "Turnover", "Fees")
# anything that would make a browser fetch: a URL scheme, a protocol-relative or relative path
_REFERENCE = re.compile(r"""(?:src|href|action|poster|data)\s*=\s*["']?(?!data:image/png;base64,)
                            (?!\#)[^"'\s>]+|url\(|@import|<link|<script[^>]*src""", re.I | re.X)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """Six simulated hours of 10 s bars (a planted flip at +3 h) replayed by ``ares-stream
    replay``, which writes the report at its end: (database, report, stdout)."""
    tmp = tmp_path_factory.mktemp("replayed")
    write_recording(tmp / "sim.gz", seconds=6 * 3600, seed=3)
    db, out = tmp / "run.db", tmp / "report"
    args = ["replay", str(tmp / "sim.gz"), "--config", str(DEMO), "--db", str(db), "--quiet",
            "--report", str(out)]
    proc = subprocess.run([sys.executable, "-m", "ares_stream.cli", *args], cwd=tmp,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return db, out / "report.html", proc.stdout


def _sections(page: str) -> dict[str, str]:
    """Each section's HTML by id."""
    found = re.findall(r'<section id="([\w-]+)"[^>]*>(.*?)</section>', page, re.S)
    return dict(found)


def test_replay_writes_a_self_contained_report_with_every_section(
        replayed: tuple[Path, Path, str]) -> None:
    """``ares-stream replay`` ends with the report: every section and figure is on the page as
    an embedded PNG, the PNGs are beside it, and nothing on the page points outside itself."""
    _, html_path, stdout = replayed
    assert f"report: {html_path}" in stdout
    page = html_path.read_text(encoding="utf-8")
    sections = _sections(page)
    for sid, title in SECTIONS.items():
        assert sid in sections, sid
        assert f">{title}</h2>" in sections[sid]
    for name in FIGURES:
        img = re.search(rf'<img id="fig-{name}"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"',
                        page)
        assert img, name
        png = (html_path.parent / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    assert _REFERENCE.search(page) is None, _REFERENCE.search(page)
    assert "http://" not in page and "https://" not in page


def test_summary_and_tables_show_what_the_run_did(replayed: tuple[Path, Path, str]) -> None:
    """The summary names every trading metric with a number, the validation section lists the
    fold table of the latest decision, and the learners carry the run's drift event."""
    db, html_path, _ = replayed
    sections = _sections(html_path.read_text(encoding="utf-8"))
    summary = re.sub(r"<[^>]+>", " ", sections["summary"])
    for row in SUMMARY_ROWS:
        assert re.search(rf"{row}[^\n]*?\s+[-+]?[\d,.]+", summary), row
    data = load(db)
    assert data.summary["traded"] and data.summary["round_trips"] > 10
    assert 0 <= data.summary["hit_rate"] <= 1 and data.summary["fees"] > 0
    assert data.drifts.time.size >= 1 and data.promotions
    assert np.isfinite(data.scores.booster).sum() > 100  # the champion booster's own probability
    legend = [t.get_text() for t in figures._learners(data, figures.time_span(data), 500)
              .legends[0].get_texts()]
    for name, mean in data.summary["log_loss"].items():  # the figure and the table agree
        label = "baseline" if name == "constant" else name
        assert any(t.startswith(label) and f"{mean:.4f}" in t for t in legend), (name, legend)
    folds = data.validations[-1].folds
    assert folds and all(f"<td>{row['candidate']}</td>" in sections["validation"] for row in folds)


def test_the_models_use_section_shows_importance_drifted_features_and_why_each_fill(
        replayed: tuple[Path, Path, str]) -> None:
    """With batch learning on, "What the models use" ranks the champion booster's real features,
    lists the features that drifted beside the loss drift, and gives each of the last 50 fills
    the top 3 contributions its order stored (joined by client id)."""
    db, html_path, _ = replayed
    uses = _sections(html_path.read_text(encoding="utf-8"))["uses"]
    conn = sqlite3.connect(db)
    champion, names = conn.execute("SELECT id, features FROM models WHERE kind = 'xgboost' "
                                   "AND status = 'champion'").fetchone()
    first = conn.execute("SELECT feature FROM model_importance WHERE model_id = ? "
                         "ORDER BY shap DESC LIMIT 1", (champion,)).fetchone()[0]
    drifted = {r[0] for r in conn.execute("SELECT feature FROM feature_drift WHERE drifted = 1")}
    fills = conn.execute("SELECT client_id FROM fills ORDER BY ts_event DESC, id DESC LIMIT 50"
                         ).fetchall()
    why = conn.execute("SELECT feature, value, contribution FROM order_reasons "
                       "WHERE client_id = ? ORDER BY rank LIMIT 3", fills[0]).fetchall()
    conn.close()
    assert "none yet" not in uses and 'id="fig-importance"' in uses
    assert f"(model {champion})" in uses and f'<td class="num">1</td> <td>{first}</td>' in uses
    assert all(f"<td>{f}</td>" in uses for f in drifted)  # how many: drift.* thresholds
    assert "drift event (adwin)" in uses
    assert 'id="fig-coefficients"' in uses  # the online learner's weights over time
    rows = re.findall(r"<tr><td>[^<]+ UTC</td> <td>SIMUSDT</td> <td>(?:BUY|SELL)</td>.*?</tr>",
                      uses)
    assert len(rows) == len(fills) == 50
    expected = ", ".join(f"{f}={v:.4g} ({c:+.3f})" for f, v, c in why)
    assert f"<td>{expected}</td>" in rows[0]
    assert len(why) == 3 and all(f in json.loads(names) for f, _, _ in why)


def test_drifted_features_of_a_real_check_are_listed_with_their_psi(
        replayed: tuple[Path, Path, str], tmp_path: Path) -> None:
    """The rows of a real feature drift check marked drifted (whatever the thresholds made of
    this run) appear in the section's table with their PSI, and on the drift timeline."""
    import shutil

    db = tmp_path / "drifted.db"
    shutil.copy(replayed[0], db)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE feature_drift SET drifted = 1 WHERE rowid IN "
                     "(SELECT rowid FROM feature_drift ORDER BY ts_event, rowid LIMIT 3)")
    rows = conn.execute("SELECT feature, psi FROM feature_drift WHERE drifted = 1").fetchall()
    conn.close()
    assert len(rows) == 3
    uses = _sections(write_report(db, tmp_path / "out").read_text(encoding="utf-8"))["uses"]
    assert 'id="fig-drift_timeline"' in uses
    for feature, psi in rows:
        assert re.search(rf"<td>feature drifted</td> <td>{feature}</td> <td>PSI {psi:.4f}", uses)


def test_report_cli_on_a_database_a_run_and_a_window(replayed: tuple[Path, Path, str],
                                                     tmp_path: Path) -> None:
    """``ares-stream report DB``, ``DB:RUN`` and ``RUN --db DB --last 1h`` write reports; the
    windowed one covers one hour of bars."""
    db, _, _ = replayed
    assert main(["report", str(db), "--out", str(tmp_path / "a")]) == 0
    assert main(["report", f"{db}:1", "--out", str(tmp_path / "b")]) == 0
    assert main(["report", "1", "--db", str(db), "--last", "1h", "--out", str(tmp_path / "c")]) == 0
    for d in "abc":
        assert (tmp_path / d / "report.html").is_file()
    hour = load(db, 1, last=3600 * 10**9)
    span = hour.equity.time[-1] - hour.equity.time[0]
    assert span == np.timedelta64(3600, "s")


@pytest.mark.parametrize("argv, message", [
    (["report", "nowhere.db"], "nowhere.db: no such database"),
    (["report", "7"], "needs --db FILE"),
    (["report", "{db}:99"], "no run 99 (runs in this database: 1)"),
    (["report", "{db}", "--last", "1w"], "--last: bad bar interval '1w'"),
])
def test_user_mistakes_are_one_line_and_exit_2(replayed: tuple[Path, Path, str], argv: list[str],
                                               message: str, tmp_path: Path) -> None:
    """A missing database, a bare run id, an unknown run and a bad window are each one line on
    stderr with exit code 2 — no traceback."""
    db, _, _ = replayed
    args = [a.format(db=db) for a in argv] + ["--out", str(tmp_path / "x")]
    proc = subprocess.run([sys.executable, "-m", "ares_stream.cli", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_an_empty_run_and_an_empty_database_are_reported_clearly(tmp_path: Path) -> None:
    """A run that recorded nothing renders (no trades, no predictions; importance, drifts and
    fills say "none yet"); a database without runs is refused with a clear reason."""
    db = tmp_path / "empty.db"
    store = RunStore(open_db(db), mode="paper", config={}, sources=[])
    assert main(["report", str(tmp_path / "none.db")]) == 2
    path = write_report(db, tmp_path / "out")
    page = path.read_text(encoding="utf-8")
    assert all(f'id="{sid}"' in page for sid in SECTIONS)
    assert "no trades" in page.lower()
    uses = _sections(page)["uses"]
    for what in ("Booster importance", "Champion booster ranking",
                 "Feature drift and loss drift", "Fills"):
        assert f"{what}: none yet." in uses, what
    store.db.conn.close()
    bare = tmp_path / "bare.db"
    open_db(bare).conn.close()
    with pytest.raises(Exception, match="no runs yet"):
        write_report(bare, tmp_path / "bare")


def test_feed_incidents_are_counted_and_drawn(tmp_path: Path) -> None:
    """A recording with a hole in the trade ids and a malformed line, replayed with --skip-bad:
    the report counts one gap and one rejected frame."""
    src = tmp_path / "sim.gz"
    write_recording(src, seconds=1800, seed=4, streams=("aggTrade",))
    with gzip.open(src, "rt") as f:
        lines = f.read().splitlines()
    cut = [*lines[:3000], lines[3000].split(" ", 1)[0] + ' {"stream": broken', *lines[3010:]]
    (tmp_path / "cut.txt").write_text("\n".join(cut) + "\n")
    db = tmp_path / "cut.db"
    assert main(["replay", str(tmp_path / "cut.txt"), "--interval", "10s", "--db", str(db),
                 "--quiet", "--skip-bad", "--report", str(tmp_path / "r")]) == 0
    totals = load(db).health.totals
    assert totals["gaps"] == 1 and totals["rejected frames"] == 1
    page = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert "rejected" in _sections(page)["feed-health"]


def test_a_database_from_before_the_booster_column_still_reports(tmp_path: Path) -> None:
    """A schema-3 database (no ``predictions.booster``) opened read-only reports the booster
    as absent instead of failing."""
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript("".join(MIGRATIONS[:3]) + "\nPRAGMA user_version = 3;")
    conn.execute("INSERT INTO runs (mode, config, code_version, sources, started_at, status) "
                 "VALUES ('replay', '{}', '0', '[]', 0, 'finished')")
    conn.executemany("INSERT INTO predictions (run_id, symbol, ts_event, ts_init, model, horizon, "
                     "proba, value, close, label, loss) VALUES (1, 'X', ?, ?, 'logreg', 1, 0.6, "
                     "0.6, 100, ?, 0.5)", [(i * 60 * 10**9, i, i % 2) for i in range(1, 50)])
    conn.commit()
    conn.close()
    data = load(db)
    assert data.scores.label.size == 49 and np.isnan(data.scores.booster).all()
    assert write_report(db, tmp_path / "out").is_file()


def test_a_newer_schema_is_refused_and_a_damaged_file_reported_with_a_warning(
        replayed: tuple[Path, Path, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``report`` refuses a database of a newer schema in one line naming both versions (exit
    2); a file with a damaged checkpoints table is reported with one warning line, and the page
    says so."""
    import shutil

    from tests.test_status import corrupt_table, newer_schema

    newer = tmp_path / "newer.db"
    version = newer_schema(newer)
    assert main(["report", str(newer), "--out", str(tmp_path / "n")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"database schema version {version} is newer than this " \
        f"ares-stream knows ({len(MIGRATIONS)})" in err
    damaged = tmp_path / "damaged.db"
    shutil.copy(replayed[0], damaged)
    corrupt_table(damaged, "checkpoints")
    assert main(["report", str(damaged), "--out", str(tmp_path / "d")]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"ares-stream report: warning: {damaged} fails SQLite's integrity "
                          "check (") and err.count("\n") == 1
    page = (tmp_path / "d" / "report.html").read_text(encoding="utf-8")
    assert "fails SQLite&#x27;s integrity check" in page or "fails SQLite's integrity check" in page
    assert all(f'id="{sid}"' in page for sid in SECTIONS)
