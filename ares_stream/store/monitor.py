"""Read-only SQL behind ``ares-stream monitor``: what the live dashboard polls and shows.

Every query takes a connection from :func:`~ares_stream.store.status.open_readonly` (a running
daemon's file is read through its WAL, never written, no lock taken) and is bounded: an index
seek or the newest ``limit`` rows, so a poll costs the same on a file of a day and of a year.
:func:`marks` is the poll itself: a tuple that changes whenever a bar, a fill, a drift event, a
decision, a model or a feed incident is written. A table that an older schema lacks reads as
empty (or None), as in ``status``.

>>> from ares_stream.store.db import open_db
>>> from ares_stream.store.status import open_readonly
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "m.db"); open_db(path).conn.close()
>>> with open_readonly(path) as conn:
...     marks(conn), symbols(conn, 1), equity_tail(conn, 10), feature_drift_latest(conn)
((None, None, (), None, None, None, None, None, None, None, None), [], (None, []), [])
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ares_stream.store.status import _HEALTH_KINDS, _INCIDENT_TIME, _dicts, _one

__all__ = ["drift_tail", "equity_since", "equity_tail", "feature_checks", "feature_drift_latest",
           "feed_counts", "fills_tail", "labelled_tail", "latest_candidates", "marks",
           "newest_bar", "symbols", "validations_tail"]

# tables whose newest row id says that something was added to them
_GROWING = ("drift_events", "validations", "fills", "feed_health", "signal_gate", "models")


def marks(conn: sqlite3.Connection) -> tuple[Any, ...]:
    """What changes when anything the dashboard shows is written: the newest run and its status,
    each symbol's newest bar, the newest equity mark, the newest row of each growing table, the
    champions' ids and the newest feature-drift check. Index seeks only."""
    run = _one(conn, "runs", "SELECT id || ':' || status FROM runs ORDER BY id DESC LIMIT 1")
    run_id = _one(conn, "runs", "SELECT MAX(id) FROM runs")
    bars = tuple(newest_bar(conn, run_id, s)["ts_event"] for s in symbols(conn, run_id))
    equity = _one(conn, "equity", "SELECT run_id || ':' || ts_event FROM equity "
                  "ORDER BY run_id DESC, ts_event DESC LIMIT 1")
    grown = tuple(_one(conn, t, f"SELECT MAX(id) FROM {t}") for t in _GROWING)
    champions = _one(conn, "models", "SELECT group_concat(id) FROM models "
                     "WHERE status = 'champion'")
    checks = _one(conn, "feature_drift", "SELECT MAX(rowid) FROM feature_drift")
    return (run, equity, bars, *grown, champions, checks)


def symbols(conn: sqlite3.Connection, run_id: int | None) -> list[str]:
    """The symbols run ``run_id`` predicted for, sorted: one index seek per symbol (a loose
    index scan of the predictions' primary key)."""
    out: list[str] = []
    sql = "SELECT MIN(symbol) FROM predictions WHERE run_id = ? AND symbol > ?"
    while run_id is not None and (found := _one(conn, "predictions", sql,
                                                (run_id, out[-1] if out else ""))) is not None:
        out.append(str(found))
    return out


def newest_bar(conn: sqlite3.Connection, run_id: int | None, symbol: str) -> dict[str, Any]:
    """The newest prediction of ``symbol`` in run ``run_id``: its bar time, close and the traded
    probability (keys present, values None when there is none)."""
    rows = _dicts(conn, "predictions", "SELECT ts_event, close, proba FROM predictions "
                  "WHERE run_id = ? AND symbol = ? ORDER BY ts_event DESC LIMIT 1",
                  (run_id, symbol))
    return rows[0] if rows else {"ts_event": None, "close": None, "proba": None}


def labelled_tail(conn: sqlite3.Connection, run_id: int, symbol: str,
                  limit: int) -> list[tuple[Any, ...]]:
    """The newest ``limit`` labelled predictions of ``symbol``, oldest first: ``(ts_event,
    label, online probability, booster probability, traded probability)``."""
    booster = "booster" if any(r[1] == "booster" for r in
                               conn.execute("PRAGMA table_info(predictions)")) else "NULL"
    rows = _dicts(conn, "predictions", f"SELECT ts_event, label, value, {booster} AS booster, "
                  "proba FROM predictions WHERE run_id = ? AND symbol = ? AND label IS NOT NULL "
                  "ORDER BY ts_event DESC LIMIT ?", (run_id, symbol, limit))
    return [tuple(r.values()) for r in reversed(rows)]


def equity_tail(conn: sqlite3.Connection, limit: int) -> tuple[int | None, list[tuple[Any, ...]]]:
    """The newest run with equity marks and its newest ``limit`` marks, oldest first:
    ``(ts_event, equity, drawdown, fees)``; ``(None, [])`` before the first."""
    if _one(conn, "equity", "SELECT 1 FROM equity LIMIT 1") is None:
        return None, []
    run_id = _one(conn, "equity", "SELECT run_id FROM equity ORDER BY run_id DESC LIMIT 1")
    rows = conn.execute("SELECT ts_event, equity, drawdown, fees FROM equity WHERE run_id IS ? "
                        "ORDER BY ts_event DESC LIMIT ?", (run_id, limit)).fetchall()
    return run_id, rows[::-1]


def equity_since(conn: sqlite3.Connection, run_id: int | None,
                 after: int | None) -> dict[str, Any]:
    """Run ``run_id``'s first equity mark (``first_ts``, ``first_equity``) and, over its marks
    after event time ``after`` (all when None): the worst drawdown, how many and the newest
    time. Primary-key range reads: a caller that remembers ``newest`` reads each mark once."""
    first = conn.execute("SELECT ts_event, equity FROM equity WHERE run_id IS ? "
                         "ORDER BY ts_event LIMIT 1", (run_id,)).fetchone() or (None, None)
    worst, rows, newest = conn.execute(
        "SELECT MAX(drawdown), COUNT(*), MAX(ts_event) FROM equity WHERE run_id IS ? "
        "AND ts_event > ?", (run_id, -1 if after is None else after)).fetchone()
    return {"first_ts": first[0], "first_equity": first[1], "max_drawdown": worst,
            "rows": int(rows), "newest": newest}


def fills_tail(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` fills of any run, newest first."""
    return _dicts(conn, "fills", "SELECT ts_event, symbol, side, qty, price, fee, slippage_bps, "
                  "run_id FROM fills ORDER BY id DESC LIMIT ?", (limit,))


def drift_tail(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` drift events of any run, newest first."""
    return _dicts(conn, "drift_events", "SELECT ts_event, symbol, detector, mean_before, "
                  "mean_after, samples_seen, action, run_id FROM drift_events "
                  "ORDER BY id DESC LIMIT ?", (limit,))


def feature_drift_latest(conn: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    """The features above their threshold at each symbol's newest check, largest PSI first."""
    return _dicts(conn, "feature_drift", "SELECT symbol, ts_event, feature, psi, ks, threshold, "
                  "model_id FROM feature_drift f WHERE drifted = 1 AND ts_event = "
                  "(SELECT MAX(ts_event) FROM feature_drift g WHERE g.symbol = f.symbol) "
                  "ORDER BY psi DESC, symbol, feature LIMIT ?", (limit,))


def feature_checks(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Each symbol's newest feature-drift check: its time, features compared and drifted."""
    return _dicts(conn, "feature_drift", "SELECT symbol, ts_event, COUNT(*) AS features, "
                  "SUM(drifted) AS drifted FROM feature_drift f WHERE ts_event = "
                  "(SELECT MAX(ts_event) FROM feature_drift g WHERE g.symbol = f.symbol) "
                  "GROUP BY symbol, ts_event ORDER BY symbol")


def latest_candidates(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The newest candidate (trained, not promoted) of each symbol and kind."""
    return _dicts(conn, "models", "SELECT symbol, kind, id, version, n_trees, how, rows, created "
                  "FROM models WHERE id IN (SELECT MAX(id) FROM models WHERE status = "
                  "'candidate' GROUP BY symbol, kind) ORDER BY symbol, kind")


def validations_tail(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` promotion decisions of any symbol, newest first."""
    return _dicts(conn, "validations", "SELECT ts_event, symbol, promoted, challenger, incumbent, "
                  "challenger_loss, incumbent_loss, improvement, margin, reason FROM validations "
                  "ORDER BY id DESC LIMIT ?", (limit,))


def feed_counts(conn: sqlite3.Connection, run_id: int | None,
                since: int | None = None) -> dict[str, int]:
    """The feed-health counters of ``status`` (gaps, rejected frames, reconnects, lag episodes,
    duplicates, 429s, 418s) of run ``run_id``, those after ``since`` (ns) if given: an index
    seek on (run, kind) each, so the daemon's periodic rows of other kinds cost nothing."""
    out = {}
    for name, (kind, agg) in _HEALTH_KINDS.items():
        sql = (f"SELECT {agg} FROM feed_health WHERE run_id = ? AND kind = ? "
               f"AND (? IS NULL OR {_INCIDENT_TIME} > ?)")
        out[name] = int(_one(conn, "feed_health", sql, (run_id, kind, since, since)) or 0)
    return out
