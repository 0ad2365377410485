"""The ``tuning`` table: every hyperparameter search, its best trial and its deflated Sharpe;
and where Optuna keeps its own study file (beside the state database).

>>> from ares_stream.store.db import open_db
>>> db = open_db(":memory:")
>>> row = TuningRow(None, "BTCUSDT", 60, "BTCUSDT@60", 2000, 50, 12, 0.68, '{"eta": 0.1}',
...                 0.05, 0.04, 0.7, 12.5)
>>> insert(db, row) > 0
True
>>> [(t.study, t.trials, t.dsr) for t in recent(db)]
[('BTCUSDT@60', 50, 0.7)]
>>> optuna_path(db) is None  # an in-memory database: the study stays in memory too
True
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

import sqlite_utils

_COLUMNS = ("run_id, symbol, ts_event, study, rows, trials, pruned, best_value, best_params, "
            "sharpe, sr0, dsr, seconds")


@dataclass(frozen=True)
class TuningRow:
    """One search (see migration 9 in ``store/db.py`` for the columns)."""

    run_id: int | None
    symbol: str
    ts_event: int
    study: str
    rows: int
    trials: int
    pruned: int
    best_value: float | None
    best_params: str  # JSON
    sharpe: float | None
    sr0: float | None
    dsr: float | None
    seconds: float


def insert(db: sqlite_utils.Database, row: TuningRow) -> int:
    """Store one search; returns its id."""
    marks = ", ".join("?" * len(_COLUMNS.split(",")))
    with db.conn:
        cur = db.conn.execute(f"INSERT INTO tuning ({_COLUMNS}) VALUES ({marks})", astuple(row))
    return int(cur.lastrowid or 0)


def recent(db: sqlite_utils.Database, symbol: str | None = None,
           limit: int = 20) -> list[TuningRow]:
    """The latest searches, newest first."""
    where, args = ("WHERE symbol = ?", [symbol]) if symbol else ("", [])
    rows = db.conn.execute(
        f"SELECT {_COLUMNS} FROM tuning {where} ORDER BY ts_event DESC, id DESC LIMIT ?",
        [*args, limit]).fetchall()
    return [TuningRow(*r) for r in rows]


def optuna_path(db: sqlite_utils.Database) -> str | None:
    """``<db>.optuna.db``: the file of Optuna's own study storage, beside the state database
    (None for an in-memory database)."""
    for _, name, file in db.conn.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return f"{file}.optuna.db" if file else None
    return None
