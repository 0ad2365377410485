"""``ares-stream status`` over real SQLite files built through the store modules."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from ares_stream.errors import AresError
from ares_stream.events import DriftDetected, Gap, Prediction
from ares_stream.status import HOUR_NS, format_status, main_status, status_report
from ares_stream.store import checkpoints, models, validations
from ares_stream.store.db import MIGRATIONS, StoreError, open_db
from ares_stream.store.runs import RunStore
from ares_stream.store.status import MissingDatabase
from ares_stream.store.trading import TradingStore

T0 = 1_700_000_000 * 10**9  # event time of the first bar, ns
MIN = 60 * 10**9
NOW = T0 + 5 * HOUR_NS


def model(db: sqlite_utils.Database, symbol: str, kind: str, created: int, **extra: Any) -> int:
    return models.insert(db, symbol=symbol, kind=kind, created=created, rows=5000, how="refit",
                         params={}, features=["r1"], feature_hash="h", versions={},
                         format="ubjson", blob=b"{}", **extra).id


def decision(symbol: str, ts: int, promoted: bool, loss: float) -> validations.ValidationRow:
    return validations.ValidationRow(1, symbol, ts, "xgb_refit", None, "champion", None, 5, loss,
                                     0.69, 0.69 - loss, 0.001, 0.02, 0.005, promoted, "gate", "[]")


def build_full(path: Path) -> None:
    """A paper daemon's file: two runs, feed incidents, models, decisions, drift, trading."""
    db = open_db(path)
    old = RunStore(db, mode="paper", config={}, sources=["ws"])
    old.close("interrupted", {})
    store = RunStore(db, mode="paper", config={}, sources=["ws"])
    end = T0 + 4 * HOUR_NS  # the newest event time in the file
    for i in range(3):
        store.prediction(Prediction("BTCUSDT", end - i * MIN, end - i * MIN + 7, "logreg", 5,
                                    0.5, 0.5, 100.0))
    store.gap(Gap("BTCUSDT", end - 2 * HOUR_NS, end - 2 * HOUR_NS, "agg_id", 10, 14))
    store.gap(Gap("BTCUSDT", end - 10 * MIN, end - 10 * MIN, "agg_id", 20, 21))
    for ts in (end - 3 * HOUR_NS, end - 5 * MIN, end - 4 * MIN):
        store.health("", 0, ts, "rejected", 1, "bad price: b'{}'")
    for ts in (end - 90 * MIN, end - 30 * MIN):
        store.health("", 0, ts, "disconnected", 1, "1006")
        store.health("", 0, ts + 1, "connected", 1, "connection 2")
    store.health("", 0, end - 20 * MIN, "lag", 40, "engine 600 ms behind")
    for ts, dups in ((end - 3 * HOUR_NS, 5), (end - 10 * MIN, 7)):  # the daemon's counters
        store.health("", 0, ts, "duplicates", dups, json.dumps({"total": dups}))
    store.health("", 0, end - 2 * MIN, "rate_limited", 3, json.dumps({"total": 3}))
    store.health("", 0, end - MIN, "lag_stats", 1200, json.dumps(
        {"p50_ms": 0.5, "p99_ms": 4.25, "max_ms": 9.0, "frames": 1200}))
    store.health("", 0, 0, "totals", 999, "{}")  # a replay summary row: never an incident
    for ready, seconds in ((2.5, 9.0), (1.25, 0.5)):  # a start, then a restart (the one shown)
        store.health("", 0, NOW - HOUR_NS, "startup", 0, json.dumps({"ready_after_s": ready}))
        how = "restart" if seconds < 1 else "cold start"
        for symbol in ("BTCUSDT", "ETHUSDT"):
            store.health(symbol, 0, NOW - HOUR_NS, "warmup", 300, json.dumps(
                {"how": how, "kind": "agg_id", "seconds": seconds, "requests": 1,
                 "complete": True}), 1, 300)
    for i, ts in enumerate((T0 + HOUR_NS, T0 + 2 * HOUR_NS, T0 + 3 * HOUR_NS)):
        store.drift(DriftDetected("BTCUSDT" if i < 2 else "ETHUSDT", ts, ts, "adwin", 0.6,
                                  0.7 + i / 100, 100 * i, "reset"))
    store.flush()
    first = model(db, "BTCUSDT", "xgboost", T0, n_trees=100)
    second = model(db, "BTCUSDT", "xgboost", T0 + HOUR_NS, n_trees=140, parent=first)
    models.promote(db, first)
    models.promote(db, second)
    model(db, "ETHUSDT", "river", T0, status="champion")
    validations.insert(db, decision("BTCUSDT", T0 + HOUR_NS, False, 0.70))
    validations.insert(db, decision("BTCUSDT", T0 + 2 * HOUR_NS, True, 0.68))
    validations.insert(db, decision("ETHUSDT", T0 + HOUR_NS, False, 0.71))
    stale = TradingStore(db, run_id=old.run_id)
    stale.position("BTCUSDT", 9.0, 1.0, 0.0, T0)
    stale.equity(T0, 1.0, 0.0, 1.0, 0.0, 0.0)
    trading = TradingStore(db, run_id=store.run_id)
    trading.signal_gate("BTCUSDT", T0, False, "no walk-forward validation yet")
    trading.signal_gate("BTCUSDT", T0 + 2 * HOUR_NS, True, "")
    trading.signal_gate("ETHUSDT", T0 + HOUR_NS, False, "no validated edge after costs (river: x)")
    trading.position("BTCUSDT", 0.5, 100.1, 12.5, end)
    trading.position("ETHUSDT", 0.0, 0.0, -2.5, end)
    for i, (eq, dd, fees) in enumerate([(10_000.0, 0.0, 0.0), (10_200.0, 0.0, 1.0),
                                        (9_690.0, 0.05, 2.0), (9_900.0, 0.0294, 3.0)]):
        trading.equity(T0 + i * HOUR_NS, eq - 50.05, 50.05, eq, dd, fees)
    trading.flush()
    checkpoints.save(db, store.run_id, ts_wall=NOW - 12 * 10**9, ts_event=end, cursors={},
                     state=b"s")
    db.conn.close()


@pytest.fixture
def full(tmp_path: Path) -> Path:
    path = tmp_path / "paper.db"
    build_full(path)
    return path


def test_missing_file_is_a_clear_error_and_creates_nothing(tmp_path: Path) -> None:
    """A database that does not exist raises an AresError naming the path, and is not created."""
    path = tmp_path / "nope.db"
    with pytest.raises(MissingDatabase, match=r"nope\.db: no such database") as info:
        status_report(path)
    assert isinstance(info.value, AresError) and info.value.path == path
    assert not path.exists()


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    """A file that is not SQLite raises a StoreError naming it."""
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"junk\.db"):
        status_report(path)


def test_empty_database_says_none_yet_everywhere(tmp_path: Path) -> None:
    """A fresh database reports nulls and empty lists, and each text section 'none yet'."""
    path = tmp_path / "paper.db"
    open_db(path).conn.close()
    report = status_report(path, now_ns=NOW)
    assert report["heartbeat"] == {"source": None, "ts_ns": None, "age_s": None}
    assert report["run"] is None and report["pnl"] is None
    assert report["champions"] == report["validations"] == report["positions"] == []
    assert report["drift"] == {"count": 0, "by_symbol": {}, "last": None}
    assert report["feed_health"]["window_end_ns"] is None
    text = format_status(report).splitlines()
    assert len(text) == 13
    assert report["lag"] is None and report["integrity"] == {"ok": True, "problems": []}
    assert report["health"]["ok"] and text[1] == "health       none yet"
    for line in text[3:]:
        assert line.endswith("none yet"), line


def test_full_database(full: Path) -> None:
    """Every section reads back what the stores wrote."""
    r = status_report(full, now_ns=NOW)
    assert r["heartbeat"] == {"source": "checkpoint", "ts_ns": NOW - 12 * 10**9, "age_s": 12.0}
    assert r["run"]["id"] == 2 and r["run"]["mode"] == "paper"
    assert r["run"]["status"] == "running" and r["run"]["runs"] == 2
    fh = r["feed_health"]
    assert fh["window_end_ns"] == T0 + 4 * HOUR_NS
    assert fh["last_hour"] == {"gaps": 1, "rejected": 2, "reconnects": 1, "lag_episodes": 1,
                               "duplicates": 7, "rate_limited": 3, "banned": 0}
    assert fh["total"] == {"gaps": 2, "rejected": 3, "reconnects": 2, "lag_episodes": 1,
                           "duplicates": 12, "rate_limited": 3, "banned": 0}
    assert r["lag"] == {"p50_ms": 0.5, "p99_ms": 4.25, "max_ms": 9.0, "frames": 1200,
                        "ts_ns": T0 + 4 * HOUR_NS - MIN, "run_id": 2}
    champs = {(c["symbol"], c["kind"]): c for c in r["champions"]}
    assert sorted(champs) == [("BTCUSDT", "xgboost"), ("ETHUSDT", "river")]
    btc = champs["BTCUSDT", "xgboost"]
    assert (btc["version"], btc["n_trees"], btc["created_ns"]) == (2, 140, T0 + HOUR_NS)
    val = {v["symbol"]: v for v in r["validations"]}
    assert val["BTCUSDT"]["decision"] == "promoted"
    assert val["BTCUSDT"]["ts_event_ns"] == T0 + 2 * HOUR_NS
    assert val["BTCUSDT"]["challenger_loss"] == 0.68 and val["BTCUSDT"]["ci_high"] == 0.02
    assert val["ETHUSDT"]["decision"] == "kept"
    assert r["drift"]["count"] == 3 and r["drift"]["by_symbol"] == {"BTCUSDT": 2, "ETHUSDT": 1}
    assert r["drift"]["last"]["symbol"] == "ETHUSDT"
    assert r["drift"]["last"]["ts_event_ns"] == T0 + 3 * HOUR_NS
    assert [(p["symbol"], p["qty"], p["run_id"]) for p in r["positions"]] == \
        [("BTCUSDT", 0.5, 2), ("ETHUSDT", 0.0, 2)]
    assert [(g["symbol"], g["trading"], g["ts_event_ns"]) for g in r["signal"]] == \
        [("BTCUSDT", True, T0 + 2 * HOUR_NS), ("ETHUSDT", False, T0 + HOUR_NS)]
    pnl = r["pnl"]
    assert pnl["run_id"] == 2 and pnl["equity"] == 9_900.0 and pnl["start_equity"] == 10_000.0
    assert pnl["return"] == pytest.approx(-0.01)
    assert pnl["max_drawdown"] == 0.05 and pnl["fees"] == 3.0 and pnl["realized_pnl"] == 10.0


def test_text_output(full: Path) -> None:
    """The text report names the heartbeat source and shows each section on aligned lines."""
    text = format_status(status_report(full, now_ns=NOW))
    assert "heartbeat    12.0 s ago (newest checkpoint, 2023-11-15 03:13:08Z)" in text
    assert "run          #2 paper, running" in text
    assert "start-up     READY 1.25 s after the process started" in text
    assert "REST warm-up (restart): 600 items in 1.00 s, 2 requests" in text
    assert "last hour: 1 gaps, 2 rejected, 1 reconnects, 1 lag episodes, 7 duplicates " \
        "dropped, 3 REST 429s, 0 REST 418s" in text
    assert "lag          engine p50 0.50 ms, p99 4.25 ms, max 9.00 ms over 1,200 frames" in text
    assert "BTCUSDT xgboost model 2 v2, 140 trees, refit on 5000 rows" in text
    assert "BTCUSDT promoted xgb_refit vs champion" in text
    assert "CI [0.0010, 0.0200]" in text
    assert "3 events (BTCUSDT 2, ETHUSDT 1); last ETHUSDT" in text
    assert "BTCUSDT 0.5 @ 100.10, realized +12.50" in text
    assert "ETHUSDT flat since 2023-11-14 23:13:20Z: no validated edge after costs (river: x)" \
        in text
    assert "equity 9900.00 (-1.00 % since 10000.00)" in text
    assert "max drawdown 5.00 %, fees 3.00" in text
    assert "none yet" not in text


def test_heartbeat_falls_back_to_the_newest_prediction(tmp_path: Path) -> None:
    """Without a checkpoint the heartbeat is the newest prediction's receive time, and says so."""
    path = tmp_path / "paper.db"
    db = open_db(path)
    store = RunStore(db, mode="paper", config={}, sources=[])
    store.prediction(Prediction("BTCUSDT", T0, NOW - 90 * 10**9, "logreg", 5, 0.5, 0.5, 1.0))
    store.flush()
    db.conn.close()
    report = status_report(path, now_ns=NOW)
    assert report["heartbeat"]["source"] == "prediction"
    assert report["heartbeat"]["age_s"] == 90.0
    assert "90.0 s ago (newest prediction" in format_status(report)
    assert report["pnl"] is None and report["positions"] == []


def test_old_schema_reads_as_none_yet(tmp_path: Path) -> None:
    """A file from schema 1 (no models, trading or checkpoints tables) still reports."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0] + "\nPRAGMA user_version = 1;")
    conn.close()
    report = status_report(path, now_ns=NOW)
    assert report["schema_version"] == 1
    assert report["champions"] == [] and report["pnl"] is None
    assert report["heartbeat"]["source"] is None


def test_status_never_writes(full: Path) -> None:
    """Reading a database changes none of its bytes and leaves no journal behind."""
    before = hashlib.sha256(full.read_bytes()).hexdigest()
    status_report(full)
    assert hashlib.sha256(full.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in full.parent.iterdir()) == ["paper.db"]


def test_reads_beside_a_running_writer(tmp_path: Path) -> None:
    """Rows committed to the WAL by a daemon that still has the file open are seen."""
    path = tmp_path / "live.db"
    db = open_db(path)
    store = RunStore(db, mode="live", config={}, sources=[])
    store.drift(DriftDetected("BTCUSDT", T0, T0, "adwin", 0.6, 0.7, 10, "reset"))
    store.flush()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["live.db", "live.db-shm", "live.db-wal"]
    report = status_report(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == files
    assert report["run"]["mode"] == "live" and report["drift"]["count"] == 1
    db.conn.close()


def test_json_is_stable_and_documented(full: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints one JSON document whose top-level keys come in the documented order."""
    assert main_status(str(full), as_json=True) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report) == ["schema", "db", "schema_version", "now_ns", "heartbeat", "run",
                            "startup", "health", "integrity", "feed_health", "lag", "champions",
                            "validations", "drift", "signal", "positions", "pnl"]
    assert report["schema"] == 1 and report["db"] == str(full)
    assert list(report["validations"][0])[:3] == ["symbol", "ts_event_ns", "decision"]
    again = status_report(full, now_ns=report["now_ns"])
    assert json.loads(json.dumps(again)) == report


def test_main_status_text_and_default_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Without --db it reads state/paper.db (or live.db) of the working directory."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AresError, match="pass --db FILE"):
        main_status(None, as_json=False)
    build_full(tmp_path / "state" / "paper.db")
    assert main_status(None, as_json=False) == 0
    out = capsys.readouterr().out
    assert out.startswith("ares-stream status: state/paper.db\n")
    assert "heartbeat" in out


def newer_schema(path: Path) -> int:
    """Make ``path`` a database of a schema version past this code's; that version."""
    open_db(path).conn.close()
    version = len(MIGRATIONS) + 1
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.close()
    return version


def corrupt_table(path: Path, table: str) -> None:
    """Overwrite the first page of ``table`` with garbage, as a damaged disk (or a hand) would."""
    conn = sqlite3.connect(path)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    (size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    with path.open("r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\xfe" * 128)


def test_a_database_of_a_newer_schema_is_refused_naming_both_versions(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file from a newer ares-stream is refused in one line with exit 2, naming its schema
    version and the one this code knows — not read as if it were ours."""
    from ares_stream.cli import main

    path = tmp_path / "paper.db"
    version = newer_schema(path)
    assert main(["status", "--db", str(path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"ares-stream status: error: {path}: database schema version {version} is "
                   f"newer than this ares-stream knows ({len(MIGRATIONS)}); upgrade ares-stream "
                   "to read it\n")


def test_a_corrupt_checkpoints_table_is_one_warning_and_the_rest_is_shown(
        full: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file whose checkpoints table is damaged: one warning line on stderr (exit 0), the JSON
    says why, and every section that can still be read is shown (the heartbeat falls back to
    the newest prediction)."""
    from ares_stream.cli import main

    corrupt_table(full, "checkpoints")
    assert main(["status", "--db", str(full)]) == 0
    out, err = capsys.readouterr()
    assert err.startswith(f"ares-stream status: warning: {full} fails SQLite's integrity check (")
    assert err.endswith("); showing what can be read\n") and err.count("\n") == 1
    assert "run          #2 paper, running" in out and "(newest prediction" in out
    assert "BTCUSDT promoted xgb_refit vs champion" in out
    report = status_report(full, now_ns=NOW)
    assert report["integrity"]["ok"] is False and report["integrity"]["problems"]
    assert report["heartbeat"]["source"] == "prediction"


def test_health_is_red_for_a_dead_daemon_a_stalled_owner_and_a_failed_run(tmp_path: Path) -> None:
    """Health from the database and its lock: a run marked running that no process owns (the
    daemon died), an owner whose newest checkpoint is older than 3 periods and 30 s (it cannot
    write: a full disk), a run that failed (its reason); an owner checkpointing is ok."""
    from ares_stream.store.lock import DatabaseLock

    path = tmp_path / "paper.db"
    store = RunStore(open_db(path), mode="paper", config={}, sources=["ws"])
    store.health("", 0, NOW, "startup", 0, json.dumps({"ready_after_s": 1.0,
                                                        "checkpoint_every_s": 5.0}))
    store.flush()
    checkpoints.save(store.db, store.run_id, ts_wall=NOW, ts_event=NOW, cursors={}, state=b"")
    dead = status_report(path, now_ns=NOW + 10**9)["health"]
    assert not dead["ok"] and "no process owns the database" in dead["reason"]
    assert format_status(status_report(path, now_ns=NOW)).splitlines()[1].startswith(
        "health       RED: run #1 is marked running")
    with DatabaseLock(path) as lock:
        assert lock.held
        fresh = status_report(path, now_ns=NOW + 10 * 10**9)["health"]
        stale = status_report(path, now_ns=NOW + 31 * 10**9)["health"]
    assert fresh["ok"] and fresh["checkpoint_age_s"] == 10.0
    assert not stale["ok"] and "wrote no checkpoint for 31.0 s" in stale["reason"]
    assert "one every 5 s expected" in stale["reason"]
    store.abandon("cannot write paper.db: database or disk is full (is the disk full?)")
    failed = status_report(path, now_ns=NOW)["health"]
    assert not failed["ok"] and failed["reason"] == (
        "run #1 failed: cannot write paper.db: database or disk is full (is the disk full?)")
