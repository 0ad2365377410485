"""Read-only SQL behind ``ares-stream compare``: what two runs or two models left in a database.

Every query takes a connection from :func:`~ares_stream.store.status.open_readonly` (a running
daemon's file is read through its WAL, never written). A table an older schema lacks reads as
empty. Per run the validation counts; per model its record, its top features, every validation it
took part in (as ``challenger_id`` or ``incumbent_id``, fold rows parsed) and the promotions of
the run that promoted it (its champion periods follow from them).

>>> from ares_stream.store.db import open_db
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "c.db"); open_db(path).conn.close()
>>> from ares_stream.store.status import open_readonly
>>> with open_readonly(path) as conn:
...     model(conn, 1), validation_counts(conn, 1), model_validations(conn, 1)
(None, (0, 0), [])
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import sqlite_utils

from ares_stream.store import models
from ares_stream.store.models import ModelRecord

__all__ = ["model", "model_validations", "run_promotions", "top_features", "validation_counts"]

_VALIDATION = ("SELECT id, run_id, symbol, ts_event, challenger, challenger_id, incumbent, "
               "incumbent_id, folds, challenger_loss, incumbent_loss, improvement, ci_low, "
               "ci_high, margin, promoted, reason, fold_table FROM validations ")


def model(conn: sqlite3.Connection, model_id: int) -> ModelRecord | None:
    """The registry's record of ``model_id`` (no blob), or None."""
    try:
        return models.get(sqlite_utils.Database(conn, recursive_triggers=False,
                                                execute_plugins=False), model_id)
    except sqlite3.OperationalError:  # no models table yet
        return None


def validation_counts(conn: sqlite3.Connection, run_id: int) -> tuple[int, int]:
    """(validations, promotions) the run recorded."""
    try:
        row = conn.execute("SELECT COUNT(*), COALESCE(SUM(promoted), 0) FROM validations "
                           "WHERE run_id IS ?", (run_id,)).fetchone()
    except sqlite3.OperationalError:
        return 0, 0
    return int(row[0]), int(row[1])


def model_validations(conn: sqlite3.Connection, model_id: int) -> list[dict[str, Any]]:
    """Every decision ``model_id`` took part in, as challenger or incumbent, oldest first; its
    ``fold_table`` parsed into ``folds`` (rows: fold, candidate, n, metrics ...)."""
    rows = _dicts(conn, _VALIDATION + "WHERE challenger_id = ?1 OR incumbent_id = ?1 "
                  "ORDER BY ts_event, id", (model_id,))
    for row in rows:
        row["promoted"] = bool(row["promoted"])
        row["fold_rows"] = json.loads(row.pop("fold_table") or "[]")
    return rows


def run_promotions(conn: sqlite3.Connection, run_id: int | None,
                   symbol: str) -> list[tuple[int, int]]:
    """(event time, model id) of every promotion of ``symbol`` in run ``run_id``, oldest first:
    :func:`ares_stream.store.validations.promotions` within one run."""
    try:
        rows = conn.execute("SELECT ts_event, challenger_id FROM validations WHERE run_id IS ? "
                            "AND symbol = ? AND promoted = 1 AND challenger_id IS NOT NULL "
                            "ORDER BY ts_event, id", (run_id, symbol)).fetchall()
    except sqlite3.OperationalError:
        return []
    return [(int(t), int(m)) for t, m in rows]


def top_features(conn: sqlite3.Connection, model_id: int, limit: int = 5) -> list[dict[str, Any]]:
    """The model's ``limit`` most important features (mean |SHAP|, then gain share, then the
    size of the coefficient), as :func:`ares_stream.store.importance.of_model` ranks them."""
    return _dicts(conn, "SELECT feature, gain, shap, coef FROM model_importance "
                  "WHERE model_id = ? ORDER BY coalesce(shap, -1) DESC, coalesce(gain, -1) DESC, "
                  "abs(coalesce(coef, 0)) DESC, feature LIMIT ?", (model_id, limit))


def _dicts(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    try:
        cur = conn.execute(sql, args)
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return []
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
