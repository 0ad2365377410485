"""Read-only SQL behind ``ares-stream report``: one run's recorded history, as columns.

Every query takes a connection from :func:`~ares_stream.store.status.open_readonly` (so a running
daemon's database is read through its WAL, never written), one run id and an optional event-time
lower bound ``since`` (ns), and returns ``{column: numpy array}`` in time order. A table or column
an older schema lacks reads as empty (or NaN), so any ares-stream database can be reported on.

>>> from ares_stream.store.db import open_db
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "h.db"); open_db(path).conn.close()
>>> from ares_stream.store.status import open_readonly
>>> with open_readonly(path) as conn:
...     find_run(conn, None), len(equity(conn, 1)["ts_event"]), scores(conn, 1)["booster"].dtype
(None, 0, dtype('float64'))
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import numpy as np

__all__ = [
    "closes",
    "coefficients",
    "drifts",
    "equity",
    "features_drifted",
    "fills",
    "find_run",
    "health",
    "health_totals",
    "importance",
    "newest_event",
    "order_reasons",
    "runs",
    "scores",
    "validations",
]

# an incident's receive time; rows without one (backfill summaries) fall back to event time
_HEALTH_TIME = "CASE WHEN ts_init > 0 THEN ts_init ELSE ts_event END"


def _columns(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...],
             types: dict[str, Any]) -> dict[str, np.ndarray]:
    """Run ``sql`` and return each column as an array of its type (NULL → NaN for floats)."""
    try:
        rows = conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        rows = []
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(types)
    out = {}
    for (name, kind), col in zip(types.items(), cols, strict=True):
        if kind is float:
            out[name] = np.array([np.nan if v is None else v for v in col], dtype=np.float64)
        else:
            out[name] = np.array(col, dtype=kind)
    return out


def _has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return any(r[1] == column for r in conn.execute(f"PRAGMA table_info({table})"))


def runs(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every run: id, mode, status, started_at, ended_at (newest last)."""
    try:
        cur = conn.execute("SELECT id, mode, status, started_at, ended_at FROM runs ORDER BY id")
    except sqlite3.OperationalError:
        return []
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def find_run(conn: sqlite3.Connection, run_id: int | None) -> dict[str, Any] | None:
    """Run ``run_id`` (the newest when None) with its config and sources parsed; None if absent."""
    sql = "SELECT id, mode, status, started_at, ended_at, config, sources, summary FROM runs "
    sql += "WHERE id = ?" if run_id is not None else "ORDER BY id DESC LIMIT 1"
    try:
        cur = conn.execute(sql, () if run_id is None else (run_id,))
    except sqlite3.OperationalError:
        return None
    row = cur.fetchone()
    if row is None:
        return None
    out = dict(zip([d[0] for d in cur.description], row, strict=True))
    out["config"], out["sources"] = json.loads(out["config"]), json.loads(out["sources"])
    out["summary"] = json.loads(out["summary"]) if out["summary"] else {}
    return out


def newest_event(conn: sqlite3.Connection, run_id: int) -> int | None:
    """The newest bar (prediction or equity mark) of the run, ns; None before the first."""
    newest = []
    for table in ("predictions", "equity"):
        try:
            row = conn.execute(f"SELECT MAX(ts_event) FROM {table} WHERE run_id IS ?",
                               (run_id,)).fetchone()
        except sqlite3.OperationalError:
            continue
        if row and row[0] is not None:
            newest.append(int(row[0]))
    return max(newest) if newest else None


def equity(conn: sqlite3.Connection, run_id: int, since: int = 0) -> dict[str, np.ndarray]:
    """The run's equity marks from event time ``since`` (ns) on, in time order."""
    return _columns(conn, "SELECT ts_event, equity, drawdown, fees FROM equity "
                    "WHERE run_id IS ? AND ts_event >= ? ORDER BY ts_event", (run_id, since),
                    {"ts_event": np.int64, "equity": float, "drawdown": float, "fees": float})


def closes(conn: sqlite3.Connection, run_id: int, since: int = 0) -> dict[str, np.ndarray]:
    """The close of every predicted bar, by symbol then time."""
    return _columns(conn, "SELECT symbol, ts_event, close FROM predictions "
                    "WHERE run_id = ? AND ts_event >= ? ORDER BY symbol, ts_event",
                    (run_id, since), {"symbol": object, "ts_event": np.int64, "close": float})


def fills(conn: sqlite3.Connection, run_id: int) -> dict[str, np.ndarray]:
    """Every fill of the run (also those before a report's window: positions start there)."""
    return _columns(conn, "SELECT ts_event, symbol, side, qty, price, fee, client_id FROM fills "
                    "WHERE run_id IS ? ORDER BY ts_event, id", (run_id,),
                    {"ts_event": np.int64, "symbol": object, "side": object, "qty": float,
                     "price": float, "fee": float, "client_id": object})


def scores(conn: sqlite3.Connection, run_id: int, since: int = 0) -> dict[str, np.ndarray]:
    """Labelled predictions: label, the online (``value``), booster and traded probabilities."""
    try:
        booster = "booster" if _has_column(conn, "predictions", "booster") else "NULL"
    except sqlite3.OperationalError:
        booster = "NULL"
    return _columns(conn, f"SELECT ts_event, symbol, label, value, {booster}, proba "
                    "FROM predictions WHERE run_id = ? AND ts_event >= ? AND label IS NOT NULL "
                    "ORDER BY ts_event, symbol", (run_id, since),
                    {"ts_event": np.int64, "symbol": object, "label": float, "river": float,
                     "booster": float, "ensemble": float})


def drifts(conn: sqlite3.Connection, run_id: int, since: int = 0) -> dict[str, np.ndarray]:
    """The run's drift events from event time ``since`` (ns) on, in time order."""
    return _columns(conn, "SELECT ts_event, symbol, mean_before, mean_after, detector "
                    "FROM drift_events WHERE run_id = ? AND ts_event >= ? ORDER BY ts_event, id",
                    (run_id, since), {"ts_event": np.int64, "symbol": object,
                                      "mean_before": float, "mean_after": float,
                                      "detector": object})


def importance(conn: sqlite3.Connection, run_id: int) -> dict[str, np.ndarray]:
    """Every booster's importance rows (boosters of this run or an earlier one), by symbol and
    version; ``champion`` is 1 on the rows of each symbol's champion booster."""
    return _columns(conn, "SELECT m.symbol, m.version, m.id, i.feature, i.gain, i.shap, "
                    "m.status = 'champion' FROM model_importance i JOIN models m "
                    "ON m.id = i.model_id WHERE m.kind = 'xgboost' AND "
                    "(m.run_id IS NULL OR m.run_id <= ?) ORDER BY m.symbol, m.version, "
                    "coalesce(i.shap, -1) DESC, i.feature", (run_id,),
                    {"symbol": object, "version": np.int64, "model_id": np.int64,
                     "feature": object, "gain": float, "shap": float, "champion": np.int64})


def features_drifted(conn: sqlite3.Connection, run_id: int,
                     since: int = 0) -> dict[str, np.ndarray]:
    """The run's feature drift results that crossed the threshold, in time order."""
    return _columns(conn, "SELECT ts_event, symbol, feature, psi, ks, threshold "
                    "FROM feature_drift WHERE run_id = ? AND ts_event >= ? AND drifted = 1 "
                    "ORDER BY ts_event, feature", (run_id, since),
                    {"ts_event": np.int64, "symbol": object, "feature": object, "psi": float,
                     "ks": float, "threshold": float})


def coefficients(conn: sqlite3.Connection, run_id: int, since: int = 0) -> dict[str, np.ndarray]:
    """The run's online learner coefficients (standardized inputs) over time, in time order."""
    return _columns(conn, "SELECT ts_event, symbol, feature, coef FROM learner_coefficients "
                    "WHERE run_id = ? AND ts_event >= ? ORDER BY ts_event, symbol, feature",
                    (run_id, since), {"ts_event": np.int64, "symbol": object, "feature": object,
                                      "coef": float})


def order_reasons(conn: sqlite3.Connection, run_id: int) -> dict[str, np.ndarray]:
    """Why each of the run's orders was sent: its top contributions, by client id then rank."""
    return _columns(conn, "SELECT client_id, feature, value, contribution FROM order_reasons "
                    "WHERE run_id = ? ORDER BY client_id, rank", (run_id,),
                    {"client_id": object, "feature": object, "value": float,
                     "contribution": float})


def validations(conn: sqlite3.Connection, run_id: int, since: int = 0) -> list[dict[str, Any]]:
    """Every promotion decision of the run (oldest first), its fold rows parsed."""
    try:
        cur = conn.execute("SELECT ts_event, symbol, challenger, incumbent, improvement, "
                           "promoted, reason, fold_table FROM validations WHERE run_id IS ? "
                           "AND ts_event >= ? ORDER BY ts_event, id", (run_id, since))
    except sqlite3.OperationalError:
        return []
    names = [d[0] for d in cur.description]
    out = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    for row in out:
        row["folds"] = json.loads(row.pop("fold_table") or "[]")
    return out


def health(conn: sqlite3.Connection, run_id: int, since: int = 0) -> dict[str, np.ndarray]:
    """Feed incidents at their receive time (the run's totals row excluded)."""
    return _columns(conn, f"SELECT {_HEALTH_TIME} AS t, kind, count, detail FROM feed_health "
                    f"WHERE run_id = ? AND kind != 'totals' AND {_HEALTH_TIME} >= ? "
                    f"AND {_HEALTH_TIME} > 0 ORDER BY t, id", (run_id, since),
                    {"ts": np.int64, "kind": object, "count": np.int64, "detail": object})


def health_totals(conn: sqlite3.Connection, run_id: int) -> dict[str, int]:
    """The engine's end-of-run counters (frames, rejected, gaps …) when the run wrote them."""
    try:
        row = conn.execute("SELECT detail FROM feed_health WHERE run_id = ? AND kind = 'totals' "
                           "ORDER BY id DESC LIMIT 1", (run_id,)).fetchone()
    except sqlite3.OperationalError:
        return {}
    try:
        counts = json.loads(row[0]) if row else {}
    except ValueError:
        return {}
    return {k: int(v) for k, v in counts.items() if isinstance(v, int | float)}


# -- what the simulator's demo reads of a run (ares_stream.sim.demo) ------------------------------

def newest_run_config(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The config the newest run recorded; None when the file has no run."""
    row = conn.execute("SELECT config FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    return None if row is None else dict(json.loads(row[0]))


def run_config(conn: sqlite3.Connection, run_id: int | None) -> dict[str, Any]:
    """The config a run recorded (``{}`` when there is no such run)."""
    row = conn.execute("SELECT config FROM runs WHERE id IS ?", (run_id,)).fetchone()
    return json.loads(row[0]) if row else {}


def drift_rows(conn: sqlite3.Connection, run_id: int | None) -> list[dict[str, Any]]:
    """A run's drift events, oldest first."""
    return _dicts(conn, "SELECT symbol, ts_event, mean_before, mean_after, samples_seen "
                  "FROM drift_events WHERE run_id IS ? ORDER BY ts_event", (run_id,))


def labelled_predictions(conn: sqlite3.Connection,
                         run_id: int | None) -> list[tuple[int, float, float, int, float]]:
    """``(ts_event, value, proba, label, loss)`` of a run's labelled predictions, in time order."""
    return conn.execute("SELECT ts_event, value, proba, label, loss FROM predictions "
                        "WHERE run_id IS ? AND label IS NOT NULL ORDER BY ts_event",
                        (run_id,)).fetchall()


def boosters_by_how(conn: sqlite3.Connection, run_id: int | None) -> dict[str, int]:
    """How many boosters a run trained, by how (refit, warm_start, refresh)."""
    return dict(conn.execute("SELECT how, COUNT(*) FROM models WHERE kind = 'xgboost' "
                             "AND run_id IS ? GROUP BY how", (run_id,)).fetchall())


def decision_rows(conn: sqlite3.Connection, run_id: int | None) -> list[dict[str, Any]]:
    """A run's promotion decisions, oldest first."""
    return _dicts(conn, "SELECT ts_event, challenger, incumbent, improvement, promoted, reason "
                  "FROM validations WHERE run_id IS ? ORDER BY ts_event", (run_id,))


def fill_count(conn: sqlite3.Connection, run_id: int | None) -> int:
    """How many fills a run booked."""
    return int(conn.execute("SELECT COUNT(*) FROM fills WHERE run_id IS ?",
                            (run_id,)).fetchone()[0])


def _dicts(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    cur = conn.execute(sql, args)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
