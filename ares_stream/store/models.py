"""The ``models`` table: the registry's SQL. Versions, statuses and metrics change atomically.

Every write is one transaction (``BEGIN IMMEDIATE``, so the version read and the insert cannot
interleave with another writer). A ``(symbol, kind)`` has at most one champion: promoting a model
retires the champion it replaces in the same transaction, and so does inserting one as champion.

>>> from ares_stream.store.db import open_db
>>> db = open_db(":memory:")
>>> row = dict(symbol="BTCUSDT", kind="xgboost", created=1, rows=10, how="refit",
...            params={}, features=["a"], feature_hash="h", versions={}, format="ubjson")
>>> a = insert(db, **row, blob=b"{}")
>>> b = insert(db, **row, blob=b"{}", parent=a.id)
>>> (a.version, b.version, b.parent == a.id, b.status)
(1, 2, True, 'candidate')
>>> promote(db, b.id); champion(db, "BTCUSDT", "xgboost").id == b.id
True
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from ares_stream.store.db import StoreError

__all__ = ["STATUSES", "ModelRecord", "blob", "champion", "get", "insert", "list_models",
           "promote", "set_status", "set_versions", "update_metrics"]

STATUSES = ("candidate", "champion", "retired")
_COLUMNS = ("id, symbol, kind, version, parent, created, train_start, train_end, rows, how, "
            "n_trees, params, features, feature_hash, versions, metrics, status, format, run_id")
_INSERT = (
    "INSERT INTO models (symbol, kind, version, parent, created, train_start, train_end, rows, "
    "how, n_trees, params, features, feature_hash, versions, metrics, status, format, blob, "
    "run_id) VALUES (?, ?, (SELECT COALESCE(MAX(version), 0) + 1 FROM models WHERE symbol = ? "
    "AND kind = ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_RETIRE = ("UPDATE models SET status = 'retired' WHERE symbol = ? AND kind = ? "
           "AND status = 'champion' AND id != ?")


@dataclass(frozen=True)
class ModelRecord:
    """One row of ``models`` without its blob; JSON columns decoded."""

    id: int
    symbol: str
    kind: str  # xgboost | river
    version: int  # 1, 2, ... per (symbol, kind)
    parent: int | None
    created: int  # event time, ns
    train_start: int | None  # event time of the first / last training row, ns
    train_end: int | None
    rows: int
    how: str  # refit | warm_start | refresh | online
    n_trees: int | None
    params: dict[str, Any]
    features: tuple[str, ...]
    feature_hash: str
    versions: dict[str, str]
    metrics: dict[str, Any]
    status: str  # candidate | champion | retired
    format: str  # ubjson | pickle
    run_id: int | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ModelRecord:
        """A record from a row of the model columns, its JSON fields decoded."""
        (id_, symbol, kind, version, parent, created, start, end, rows, how, n_trees, params,
         features, fhash, versions, metrics, status, fmt, run_id) = row
        return cls(id_, symbol, kind, version, parent, created, start, end, rows, how, n_trees,
                   json.loads(params), tuple(json.loads(features)), fhash, json.loads(versions),
                   json.loads(metrics), status, fmt, run_id)


@contextmanager
def _write(db: sqlite_utils.Database) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken before the first read so no other writer interleaves."""
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def insert(db: sqlite_utils.Database, *, symbol: str, kind: str, created: int, rows: int,
           how: str, params: Mapping[str, Any], features: Sequence[str], feature_hash: str,
           versions: Mapping[str, str], format: str, blob: bytes, parent: int | None = None,
           train_start: int | None = None, train_end: int | None = None,
           n_trees: int | None = None, metrics: Mapping[str, Any] | None = None,
           status: str = "candidate", run_id: int | None = None) -> ModelRecord:
    """Insert a model as the next version of its ``(symbol, kind)``; return its record."""
    _check_status(status)
    row = (symbol, kind, symbol, kind, parent, created, train_start, train_end, rows, how,
           n_trees, _dumps(params), json.dumps(list(features)), feature_hash, _dumps(versions),
           _dumps(metrics or {}), status, format, blob, run_id)
    with _write(db) as conn:
        model_id = int(conn.execute(_INSERT, row).lastrowid or 0)
        if status == "champion":
            conn.execute(_RETIRE, (symbol, kind, model_id))
    return _require(db, model_id)


def get(db: sqlite_utils.Database, model_id: int) -> ModelRecord | None:
    """The record of ``model_id``, or None."""
    row = db.conn.execute(f"SELECT {_COLUMNS} FROM models WHERE id = ?", (model_id,)).fetchone()
    return None if row is None else ModelRecord.from_row(row)


def blob(db: sqlite_utils.Database, model_id: int) -> bytes:
    """The stored model bytes (UBJSON for xgboost, a pickle for river)."""
    row = db.conn.execute("SELECT blob FROM models WHERE id = ?", (model_id,)).fetchone()
    if row is None:
        raise StoreError(f"no model with id {model_id}")
    return bytes(row[0])


def list_models(db: sqlite_utils.Database, symbol: str | None = None,
                kind: str | None = None) -> list[ModelRecord]:
    """Records in id order, optionally of one symbol and/or kind."""
    sql = f"SELECT {_COLUMNS} FROM models WHERE (?1 IS NULL OR symbol = ?1) " \
          "AND (?2 IS NULL OR kind = ?2) ORDER BY id"
    return [ModelRecord.from_row(r) for r in db.conn.execute(sql, (symbol, kind))]


def champion(db: sqlite_utils.Database, symbol: str, kind: str) -> ModelRecord | None:
    """The current champion of ``(symbol, kind)``, or None."""
    row = db.conn.execute(f"SELECT {_COLUMNS} FROM models WHERE symbol = ? AND kind = ? AND "
                          "status = 'champion' ORDER BY id DESC LIMIT 1", (symbol, kind)).fetchone()
    return None if row is None else ModelRecord.from_row(row)


def promote(db: sqlite_utils.Database, model_id: int) -> None:
    """Make ``model_id`` the champion and retire the one it replaces, in one transaction."""
    with _write(db) as conn:
        row = conn.execute("SELECT symbol, kind FROM models WHERE id = ?", (model_id,)).fetchone()
        if row is None:
            raise StoreError(f"no model with id {model_id}")
        conn.execute(_RETIRE, (row[0], row[1], model_id))
        conn.execute("UPDATE models SET status = 'champion' WHERE id = ?", (model_id,))


def set_status(db: sqlite_utils.Database, model_id: int, status: str) -> None:
    """Set ``candidate`` or ``retired``; ``champion`` goes through :func:`promote`."""
    _check_status(status)
    if status == "champion":
        promote(db, model_id)
        return
    with _write(db) as conn:
        conn.execute("UPDATE models SET status = ? WHERE id = ?", (status, model_id))


def update_metrics(db: sqlite_utils.Database, model_id: int,
                   metrics: Mapping[str, Any]) -> None:
    """Merge ``metrics`` into the stored metrics (a key given replaces the stored value)."""
    with _write(db) as conn:
        row = conn.execute("SELECT metrics FROM models WHERE id = ?", (model_id,)).fetchone()
        if row is None:
            raise StoreError(f"no model with id {model_id}")
        merged = json.loads(row[0]) | dict(metrics)
        conn.execute("UPDATE models SET metrics = ? WHERE id = ?", (_dumps(merged), model_id))


def set_versions(db: sqlite_utils.Database, model_id: int, versions: Mapping[str, str]) -> None:
    """Overwrite the recorded library versions (repairs, and tests of version checks)."""
    with _write(db) as conn:
        conn.execute("UPDATE models SET versions = ? WHERE id = ?", (_dumps(versions), model_id))


def _require(db: sqlite_utils.Database, model_id: int) -> ModelRecord:
    record = get(db, model_id)
    if record is None:
        raise StoreError(f"no model with id {model_id}")
    return record


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"model status {status!r}: expected one of {STATUSES}")


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), sort_keys=True, default=_plain)


def _plain(value: Any) -> Any:
    """numpy scalars (``np.int64``, ``np.float32``) as the Python numbers they hold."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
