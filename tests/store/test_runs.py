"""The batched run store: rows land in one transaction per flush and survive reopening."""

from __future__ import annotations

import math
from pathlib import Path

from ares_stream.events import DriftDetected, Gap, Outcome, Prediction
from ares_stream.store.db import open_db
from ares_stream.store.runs import RunStore


def make(tmp_path: Path, flush_rows: int = 1000) -> RunStore:
    return RunStore(open_db(tmp_path / "r.db"), mode="replay", config={"a": 1},
                    sources=["x"], flush_rows=flush_rows)


def test_rows_wait_until_flush(tmp_path: Path) -> None:
    """Predictions stay in memory until flush_rows is reached, then land together."""
    store = make(tmp_path, flush_rows=3)
    count = "select count(*) from predictions"
    for i in range(2):
        store.prediction(Prediction("X", i, i, "m", 1, 0.5, 0.5, 1.0))
    assert store.db.execute(count).fetchone()[0] == 0
    store.prediction(Prediction("X", 2, 2, "m", 1, 0.5, 0.5, 1.0))
    assert store.db.execute(count).fetchone()[0] == 3


def test_outcome_in_same_flush_updates_its_prediction(tmp_path: Path) -> None:
    """An outcome flushed together with its prediction fills the prediction's label columns."""
    store = make(tmp_path)
    store.prediction(Prediction("X", 10, 11, "m", 2, 0.7, 0.7, 5.0))
    store.outcome(Outcome("X", 10, 30, 30, -0.01, 0, 1.2))
    store.flush()
    row = store.db.execute("select ts_label, label, loss from predictions").fetchone()
    assert row == (30, 0, 1.2)


def test_regression_prediction_stores_null_proba(tmp_path: Path) -> None:
    """A NaN probability (regression) is stored as NULL, not NaN."""
    store = make(tmp_path)
    store.prediction(Prediction("X", 1, 1, "m", 1, math.nan, 0.002, 5.0))
    store.flush()
    assert store.db.execute("select proba, value from predictions").fetchone() == (None, 0.002)


def test_close_records_status_summary_and_health(tmp_path: Path) -> None:
    """close() flushes drift and feed-health rows and records the run's end."""
    store = make(tmp_path)
    store.drift(DriftDetected("X", 5, 6, "adwin", 0.6, 0.7, 100, "reset"))
    store.gap(Gap("X", 7, 8, "agg_id", 10, 19))
    store.health("", 0, 9, "rejected", 1, "bad json")
    store.close("finished", {"bars": 3})
    store.db.conn.close()
    db = open_db(tmp_path / "r.db")
    assert db.execute("select status, summary from runs").fetchone() == ("finished", '{"bars": 3}')
    assert db.execute("select count(*) from drift_events").fetchone()[0] == 1
    kinds = db.execute("select kind, count from feed_health order by id").fetchall()
    assert kinds == [("gap", 10), ("rejected", 1)]


def test_abandon_marks_the_run_failed_and_writes_nothing_else(tmp_path: Path) -> None:
    """The storage failed: the waiting rows are dropped, the run is marked failed with the
    reason, and the connection is closed."""
    import sqlite3

    store = make(tmp_path)
    store.prediction(Prediction("X", 1, 1, "m", 1, 0.5, 0.5, 1.0))
    assert store.abandon("cannot write r.db: database or disk is full")
    with sqlite3.connect(tmp_path / "r.db") as conn:
        assert conn.execute("select count(*) from predictions").fetchone()[0] == 0
        status, summary = conn.execute("select status, summary from runs").fetchone()
    assert status == "failed" and "disk is full" in summary
