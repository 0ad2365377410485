"""``ares-stream explain``: what a model uses, and how that changed across its last versions.

For the chosen model — ``--model ID``; else each symbol's (or ``--symbol``'s) champion booster,
else its newest booster — one table: its features ranked by mean |SHAP| (then gain share; a
River learner by the size of its standardized coefficient), with the gain share, the mean |SHAP|
and the feature's rank in each of the lineage's last versions up to it (``-``: not measured, a
model stored before importance was). Bad input is an :class:`~ares_stream.errors.AresError`: one
line, exit 2.

>>> from ares_stream.store.db import open_db
>>> from ares_stream.store import models
>>> db = open_db(":memory:")
>>> m = models.insert(db, symbol="SIMUSDT", kind="xgboost", created=0, rows=10, how="refit",
...                   params={}, features=["flow_imb", "ret_1"], feature_hash="h", versions={},
...                   format="ubjson", blob=b"{}")
>>> from ares_stream.store import importance
>>> importance.write(db, m.id, [("flow_imb", 0.8, 0.4, None), ("ret_1", 0.2, 0.05, None)])
>>> print(explain(db, model_id=m.id))
SIMUSDT xgboost v1 (model 1, candidate, refit, 10 rows)
rank  feature   gain share  mean |SHAP|  rank in v1
   1  flow_imb       0.800       0.4000           1
   2  ret_1          0.200       0.0500           2
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ares_stream.errors import AresError
from ares_stream.store import importance, models
from ares_stream.store.models import ModelRecord

if TYPE_CHECKING:
    import sqlite_utils

__all__ = ["LAST", "ExplainError", "explain", "ranking"]

LAST = 5  # versions of a lineage whose ranks are shown


class ExplainError(AresError):
    """The model or symbol asked for is not in the database, or has nothing to explain."""


def explain(db: sqlite_utils.Database, *, model_id: int | None = None,
            symbol: str | None = None, last: int = LAST) -> str:
    """The text of ``ares-stream explain`` (see the module docstring)."""
    if last < 1:
        raise ExplainError(f"--last {last}: show at least 1 version")
    if model_id is not None:
        return "\n\n".join(_model_text(db, m, last) for m in _chosen(db, model_id, symbol))
    symbols = [symbol] if symbol else importance.coefficient_symbols(db)
    online = [t for s in symbols if (t := _online_text(db, s, last))]
    try:
        boosters = [_model_text(db, m, last) for m in _chosen(db, model_id, symbol)]
    except ExplainError:
        if not online:
            raise
        boosters = []  # batch learning off, or no booster yet: the online learner alone
    return "\n\n".join(boosters + online)


def _chosen(db: sqlite_utils.Database, model_id: int | None,
            symbol: str | None) -> list[ModelRecord]:
    if model_id is not None:
        record = models.get(db, model_id)
        if record is None:
            raise ExplainError(f"no model with id {model_id}")
        return [record]
    boosters = models.list_models(db, symbol, "xgboost")
    if not boosters:
        where = f" for {symbol}" if symbol else ""
        raise ExplainError(f"no boosters{where} in this database: nothing to explain yet")
    out = []
    for sym in sorted({m.symbol for m in boosters}):
        champ = models.champion(db, sym, "xgboost")
        out.append(champ if champ is not None else [m for m in boosters if m.symbol == sym][-1])
    return out


def ranking(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The features of one model's importance rows, most important first (rows come ranked)."""
    return [r["feature"] for r in rows]


def _model_text(db: sqlite_utils.Database, m: ModelRecord, last: int) -> str:
    lineage = [v for v in models.list_models(db, m.symbol, m.kind) if v.version <= m.version]
    lineage = sorted(lineage, key=lambda v: v.version)[-last:]
    rows = importance.of_models(db, [v.id for v in lineage])
    by_model: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_model.setdefault(r["model_id"], []).append(r)
    mine = by_model.get(m.id, [])
    if not mine:
        raise ExplainError(f"model {m.id} ({m.symbol} {m.kind} v{m.version}) has no stored "
                           "importance: it was stored before ares-stream measured it")
    ranks = [{f: i for i, f in enumerate(ranking(by_model.get(v.id, [])), 1)} for v in lineage]
    cols = _columns(mine)
    head = ["rank", "feature", *(name for name, _ in cols),
            "rank in " + " ".join(f"v{v.version}" for v in lineage)]
    body = [[str(i), r["feature"], *(fmt(r) for _, fmt in cols),
             " ".join(str(rk.get(r["feature"], "-")).rjust(len(f"v{v.version}"))
                      for rk, v in zip(ranks, lineage, strict=True))]
            for i, r in enumerate(mine, 1)]
    return _title(m) + "\n" + _grid(head, body)


def _online_text(db: sqlite_utils.Database, symbol: str, last: int) -> str:
    """The online learner's newest coefficients ranked by size, with the feature's rank at each
    of the last readings; "" when none was stored (not a linear learner, or an old database)."""
    readings = importance.coefficient_readings(db, symbol, last)
    if not readings:
        return ""
    ts, newest = readings[-1]
    ranks = [{f: i for i, f in enumerate(sorted(r, key=lambda f: (-abs(r[f]), f)), 1)}
             for _, r in readings]
    labels = [f"r{i}" for i in range(1, len(readings) + 1)]
    head = ["rank", "feature", "coefficient", "rank in " + " ".join(labels)]
    body = [[str(i), f, f"{newest[f]:+.4f}",
             " ".join(str(rk.get(f, "-")).rjust(len(lb)) for rk, lb in zip(ranks, labels,
                                                                            strict=True))]
            for i, f in enumerate(sorted(newest, key=lambda f: (-abs(newest[f]), f)), 1)]
    when = _utc(ts)
    return (f"{symbol} online learner (weights on standardized inputs, read at {when}; "
            f"r1..r{len(readings)}: the last readings, oldest first)\n" + _grid(head, body))


def _utc(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts // 10**9))


def _columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, Any]]:
    """The measures this model has: gain share and mean |SHAP| (boosters), coefficient (River)."""
    cols: list[tuple[str, Any]] = []
    if any(r["gain"] is not None for r in rows):
        cols.append(("gain share", lambda r: _num(r["gain"], 3)))
    if any(r["shap"] is not None for r in rows):
        cols.append(("mean |SHAP|", lambda r: _num(r["shap"], 4)))
    if any(r["coef"] is not None for r in rows):
        cols.append(("coefficient", lambda r: _num(r["coef"], 4)))
    return cols


def _title(m: ModelRecord) -> str:
    trees = f", {m.n_trees} trees" if m.n_trees else ""
    return (f"{m.symbol} {m.kind} v{m.version} (model {m.id}, {m.status}, {m.how}{trees}, "
            f"{m.rows:,} rows)")


def _grid(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    lines = []
    for row in [head, *body]:
        cells = [c.ljust(w) if i == 1 else c.rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
