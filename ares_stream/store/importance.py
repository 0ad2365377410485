"""The ``model_importance`` and ``order_reasons`` tables: what each model uses, why each order.

A model's importance rows are written once, with the model (one transaction); a second write
for the same model and feature replaces the first. An order's reasons — the top SHAP
contributions of the booster prediction behind it — go with the trading store's flush, after the
order they reference; a resumed run rewriting them keeps the first.

>>> from ares_stream.store.db import open_db
>>> from ares_stream.store import models
>>> db = open_db(":memory:")
>>> m = models.insert(db, symbol="BTCUSDT", kind="xgboost", created=1, rows=10, how="refit",
...                   params={}, features=["a", "b"], feature_hash="h", versions={},
...                   format="ubjson", blob=b"{}")
>>> write(db, m.id, [("a", 0.75, 0.2, None), ("b", 0.25, 0.1, None)])
>>> [(r["feature"], r["gain"]) for r in of_model(db, m.id)]
[('a', 0.75), ('b', 0.25)]
>>> [r["model_id"] for r in of_models(db, [m.id])]
[1, 1]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlite_utils

__all__ = ["INSERT_REASON", "coefficient_readings", "coefficient_symbols", "of_model", "of_models",
           "reasons", "write"]

_INSERT = ("INSERT OR REPLACE INTO model_importance (model_id, feature, gain, shap, coef) "
           "VALUES (?, ?, ?, ?, ?)")
INSERT_REASON = (  # (client_id, rank, run_id, model_id, feature, value, contribution)
    "INSERT OR IGNORE INTO order_reasons (client_id, rank, run_id, model_id, feature, value, "
    "contribution) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = "model_id, feature, gain, shap, coef"


def write(db: sqlite_utils.Database, model_id: int,
          rows: Iterable[tuple[str, float | None, float | None, float | None]]) -> None:
    """A model's importance: ``(feature, gain share, mean |SHAP|, coefficient)`` rows."""
    values = [(model_id, f, g, s, c) for f, g, s, c in rows]
    if not values:
        return
    with db.conn:
        db.conn.execute("BEGIN")
        db.conn.executemany(_INSERT, values)


def of_model(db: sqlite_utils.Database, model_id: int) -> list[dict[str, Any]]:
    """A model's rows, by mean |SHAP| then gain share then coefficient size, largest first."""
    return of_models(db, [model_id])


def of_models(db: sqlite_utils.Database, model_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The rows of several models, each model's ranked as :func:`of_model`."""
    if not model_ids:
        return []
    marks = ", ".join("?" * len(model_ids))
    cur = db.conn.execute(
        f"SELECT {_COLUMNS} FROM model_importance WHERE model_id IN ({marks}) "  # marks: ?s only
        "ORDER BY model_id, coalesce(shap, -1) DESC, coalesce(gain, -1) DESC, "
        "abs(coalesce(coef, 0)) DESC, feature", tuple(model_ids))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def coefficient_readings(db: sqlite_utils.Database, symbol: str,
                         last: int) -> list[tuple[int, dict[str, float]]]:
    """The online learner's ``last`` newest coefficient readings of ``symbol`` (any run),
    oldest first: ``(event time, {feature: coefficient})``."""
    cur = db.conn.execute(
        "SELECT ts_event, feature, coef FROM learner_coefficients WHERE symbol = ? AND ts_event "
        "IN (SELECT DISTINCT ts_event FROM learner_coefficients WHERE symbol = ? "
        "ORDER BY ts_event DESC LIMIT ?) ORDER BY ts_event, rowid", (symbol, symbol, last))
    out: dict[int, dict[str, float]] = {}
    for ts, feature, coef in cur.fetchall():
        out.setdefault(int(ts), {})[str(feature)] = float(coef)
    return list(out.items())


def coefficient_symbols(db: sqlite_utils.Database) -> list[str]:
    """The symbols with online learner coefficient readings, sorted."""
    cur = db.conn.execute("SELECT DISTINCT symbol FROM learner_coefficients ORDER BY symbol")
    return [str(s) for (s,) in cur.fetchall()]


def reasons(db: sqlite_utils.Database,
            run_id: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """Each order's reasons (of one run, or all), by client id, rank first to last."""
    cur = db.conn.execute(
        "SELECT client_id, rank, model_id, feature, value, contribution FROM order_reasons "
        "WHERE ?1 IS NULL OR run_id = ?1 ORDER BY client_id, rank", (run_id,))
    out: dict[str, list[dict[str, Any]]] = {}
    for cid, rank, model_id, feature, value, contribution in cur.fetchall():
        out.setdefault(cid, []).append({"rank": rank, "model_id": model_id, "feature": feature,
                                        "value": value, "contribution": contribution})
    return out
