"""The ``feature_selection`` table: every feature selection a validation made, with its evidence.

One row per feature of the schema selected from: its mean permutation importance (log-loss
increase when shuffled on a fold's test rows) over folds × repeats, the interval that decided it,
each fold's mean, and whether it was kept (:mod:`ares_stream.validation.selection`). The rows of
one selection share ``(symbol, ts_event)``, written in one transaction.

>>> from ares_stream.store.db import open_db
>>> db = open_db(":memory:")
>>> rows = [SelectionRow(None, "BTCUSDT", 60, "ret_1", 0.02, 0.01, 0.03, True, (0.02, 0.02),
...                      (3, 4), 3, 0.9, None),
...         SelectionRow(None, "BTCUSDT", 60, "rsi_14", 0.0, -0.01, 0.01, False, (0.0, 0.0),
...                      (3, 4), 3, 0.9, None)]
>>> insert(db, rows)
2
>>> [(r.feature, r.kept) for r in latest(db, "BTCUSDT")]
[('ret_1', True), ('rsi_14', False)]
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import sqlite_utils

__all__ = ["SelectionRow", "history", "insert", "latest"]


class SelectionRow(NamedTuple):
    """One feature's verdict in one selection (migration 10 in ``store/db.py``)."""

    run_id: int | None
    symbol: str
    ts_event: int  # event time of the validation that selected, ns
    feature: str
    mean: float  # mean log-loss increase when permuted, over folds x repeats (NaN: none)
    low: float  # the interval that decided it: kept <=> low > 0
    high: float
    kept: bool
    per_fold: tuple[float, ...]  # each fold's mean over its repeats, oldest fold first
    folds: tuple[int, ...]  # the walk-forward folds (Fold.index) the evidence came from
    repeats: int
    confidence: float
    model_id: int | None  # the booster trained on the kept features (None: none registered)


_COLUMNS = ("run_id, symbol, ts_event, feature, mean, low, high, kept, per_fold, folds, repeats, "
            "confidence, model_id")
_INSERT = f"INSERT INTO feature_selection ({_COLUMNS}) VALUES ({', '.join('?' * 13)})"


def _num(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def _nan(v: float | None) -> float:
    return math.nan if v is None else float(v)


def insert(db: sqlite_utils.Database, rows: Sequence[SelectionRow]) -> int:
    """Write one selection's rows in one transaction; returns how many."""
    params = [(r.run_id, r.symbol, r.ts_event, r.feature, _num(r.mean), _num(r.low),
               _num(r.high), int(r.kept), json.dumps([_num(v) for v in r.per_fold]),
               json.dumps(list(r.folds)), r.repeats, r.confidence, r.model_id) for r in rows]
    with db.conn:
        db.conn.execute("BEGIN")
        db.conn.executemany(_INSERT, params)
    return len(params)


def _row(values: Sequence[Any]) -> SelectionRow:
    (run_id, symbol, ts, feature, mean, low, high, kept, per_fold, folds, repeats, confidence,
     model_id) = values
    return SelectionRow(run_id, symbol, int(ts), feature, _nan(mean), _nan(low), _nan(high),
                        bool(kept), tuple(_nan(v) for v in json.loads(per_fold)),
                        tuple(int(f) for f in json.loads(folds)), int(repeats),
                        float(confidence), model_id)


def latest(db: sqlite_utils.Database, symbol: str) -> list[SelectionRow]:
    """The newest selection of ``symbol`` (any run), in schema order; [] without one."""
    cur = db.conn.execute(
        f"SELECT {_COLUMNS} FROM feature_selection WHERE symbol = ?1 AND ts_event = "
        "(SELECT max(ts_event) FROM feature_selection WHERE symbol = ?1) ORDER BY rowid",
        (symbol,))
    return [_row(r) for r in cur.fetchall()]


def history(db: sqlite_utils.Database, symbol: str) -> list[list[SelectionRow]]:
    """Every selection of ``symbol``, oldest first, each in schema order."""
    cur = db.conn.execute(f"SELECT {_COLUMNS} FROM feature_selection WHERE symbol = ? "
                          "ORDER BY ts_event, rowid", (symbol,))
    out: dict[int, list[SelectionRow]] = {}
    for values in cur.fetchall():
        row = _row(values)
        out.setdefault(row.ts_event, []).append(row)
    return list(out.values())
