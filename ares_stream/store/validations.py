"""The ``validations`` table: every promotion decision, promoted or not, with its numbers.

>>> from ares_stream.store.db import open_db
>>> db = open_db(":memory:")
>>> row = ValidationRow(None, "BTCUSDT", 60, "xgb_refit", None, "prior", None, 5, 0.60, 0.65,
...                     0.05, 0.01, 0.09, 0.005, True, "beats the prior", "[]")
>>> insert(db, row) > 0
True
>>> [v.challenger for v in recent(db)]
['xgb_refit']
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, replace

import sqlite_utils

_COLUMNS = (
    "run_id, symbol, ts_event, challenger, challenger_id, incumbent, incumbent_id, folds, "
    "challenger_loss, incumbent_loss, improvement, ci_low, ci_high, margin, promoted, reason, "
    "fold_table, decided_by"
)


@dataclass(frozen=True)
class ValidationRow:
    """One decision (see migration 2 in ``store/db.py`` for the columns)."""

    run_id: int | None
    symbol: str
    ts_event: int
    challenger: str
    challenger_id: int | None
    incumbent: str
    incumbent_id: int | None
    folds: int
    challenger_loss: float | None
    incumbent_loss: float | None
    improvement: float | None
    ci_low: float | None
    ci_high: float | None
    margin: float
    promoted: bool
    reason: str
    fold_table: str  # JSON rows
    decided_by: str | None = None  # who made a manual decision; None: the promotion gate


def insert(db: sqlite_utils.Database, row: ValidationRow) -> int:
    """Store one decision; returns its id."""
    marks = ", ".join("?" * len(_COLUMNS.split(",")))
    with db.conn:
        cur = db.conn.execute(f"INSERT INTO validations ({_COLUMNS}) VALUES ({marks})",
                              astuple(row))
    return int(cur.lastrowid or 0)


def recent(db: sqlite_utils.Database, symbol: str | None = None,
           limit: int = 20) -> list[ValidationRow]:
    """The latest decisions, newest first."""
    where, args = ("WHERE symbol = ?", [symbol]) if symbol else ("", [])
    rows = db.conn.execute(
        f"SELECT {_COLUMNS} FROM validations {where} ORDER BY ts_event DESC, id DESC LIMIT ?",
        [*args, limit]).fetchall()
    return [replace(ValidationRow(*r), promoted=bool(r[14])) for r in rows]


def promotions(db: sqlite_utils.Database, symbol: str) -> list[tuple[int, int]]:
    """(event time, model id) of every promotion of a symbol, manual ones included, in the order
    they were made."""
    rows = db.conn.execute(
        "SELECT ts_event, challenger_id FROM validations WHERE symbol = ? AND promoted = 1 "
        "AND challenger_id IS NOT NULL ORDER BY id", [symbol]).fetchall()
    return [(int(t), int(m)) for t, m in rows]


def measured(db: sqlite_utils.Database, symbol: str) -> tuple[ValidationRow | None, bool]:
    """The symbol's newest decision of the promotion gate (a manual one measures nothing), and
    whether a manual decision came after it (its champion measurement is then not the current
    champion's)."""
    rows = db.conn.execute(
        f"SELECT {_COLUMNS} FROM validations WHERE symbol = ? AND decided_by IS NULL "
        "ORDER BY id DESC LIMIT 1", [symbol]).fetchall()
    if not rows:
        return None, False
    gate = replace(ValidationRow(*rows[0]), promoted=bool(rows[0][14]))
    later = db.conn.execute(
        "SELECT 1 FROM validations WHERE symbol = ? AND decided_by IS NOT NULL AND id > "
        "(SELECT MAX(id) FROM validations WHERE symbol = ? AND decided_by IS NULL)",
        [symbol, symbol]).fetchone()
    return gate, later is not None
