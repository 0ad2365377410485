"""The ``feature_drift`` table: every scheduled comparison of a feature's recent window with the
champion's training window (:mod:`ares_stream.validation.drift` computes them).

>>> from ares_stream.store.db import open_db
>>> db = open_db(":memory:")
>>> insert(db, [DriftRow(1, "BTCUSDT", 60, "ret_1", 0.31, 0.2, 900, 300, 0.25, True, 4)])
1
>>> [(r.feature, r.psi, r.drifted) for r in recent(db, "BTCUSDT")]
[('ret_1', 0.31, True)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import sqlite_utils

from ares_stream.events import DriftDetected

__all__ = ["DriftRow", "insert", "insert_event", "recent"]


class DriftRow(NamedTuple):
    """One feature's comparison at one check."""

    run_id: int | None
    symbol: str
    ts_event: int
    feature: str
    psi: float | None  # None (NaN in memory): not measured
    ks: float | None
    reference_rows: int
    recent_rows: int
    threshold: float | None  # the PSI to exceed; None (NaN in memory): not judged
    drifted: bool
    model_id: int | None


_COLUMNS = ("run_id, symbol, ts_event, feature, psi, ks, reference_rows, recent_rows, threshold, "
            "drifted, model_id")
_INSERT = f"INSERT INTO feature_drift ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_EVENT = ("INSERT INTO drift_events (run_id, symbol, ts_event, ts_init, detector, mean_before, "
          "mean_after, samples_seen, action) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
_RECENT = (f"SELECT {_COLUMNS} FROM feature_drift WHERE symbol = ? "
           "ORDER BY ts_event DESC, rowid LIMIT ?")


def _num(v: float | None) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


def insert(db: sqlite_utils.Database, rows: Sequence[DriftRow]) -> int:
    """Write one check's rows in one transaction; returns how many."""
    params = [(*r[:4], _num(r.psi), _num(r.ks), r.reference_rows, r.recent_rows,
               _num(r.threshold), int(r.drifted), r.model_id) for r in rows]
    conn = db.conn
    with conn:
        conn.execute("BEGIN")
        conn.executemany(_INSERT, params)
    return len(params)


def recent(db: sqlite_utils.Database, symbol: str, limit: int = 1000) -> list[DriftRow]:
    """The symbol's newest rows, newest check first."""
    cur = db.conn.execute(_RECENT, (symbol, limit))
    return [DriftRow._make((*r[:9], bool(r[9]), r[10])) for r in cur]


def insert_event(db: sqlite_utils.Database, run_id: int | None, d: DriftDetected) -> None:
    """Write one drift event now (detector "features": ``mean_before`` holds the PSI threshold,
    ``mean_after`` the largest PSI of the check, ``samples_seen`` the recent rows compared)."""
    conn = db.conn
    with conn:
        conn.execute("BEGIN")
        conn.execute(_EVENT, (run_id, d.symbol, d.ts_event, d.ts_init, d.detector,
                              d.mean_before, d.mean_after, d.samples_seen, d.action))
