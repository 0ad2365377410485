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

Pruning deletes the bytes of the boosters beyond the ``keep`` newest of a symbol, except those of
every model ever champion; their records stay:

>>> c = insert(db, **row, blob=b"{}")
>>> prune(db, "BTCUSDT", keep=1)
Pruning(symbol='BTCUSDT', kept=2, pruned=1, bytes_freed=2)
>>> [(m.version, m.pruned, m.ever_champion) for m in list_models(db)]
[(1, True, False), (2, False, True), (3, False, False)]
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from ares_stream.store.db import StoreError

__all__ = ["STATUSES", "ModelPruned", "ModelRecord", "Pruning", "blob", "booster_symbols",
           "champion", "get", "insert", "list_models", "promote", "prune", "set_status",
           "set_versions", "update_metrics", "vacuum"]

STATUSES = ("candidate", "champion", "retired")
_COLUMNS = ("id, symbol, kind, version, parent, created, train_start, train_end, rows, how, "
            "n_trees, params, features, feature_hash, versions, metrics, status, format, run_id, "
            "COALESCE(pruned, length(blob)), pruned IS NOT NULL, ever_champion")
_INSERT = (
    "INSERT INTO models (symbol, kind, version, parent, created, train_start, train_end, rows, "
    "how, n_trees, params, features, feature_hash, versions, metrics, status, format, blob, "
    "run_id, ever_champion) VALUES (?, ?, (SELECT COALESCE(MAX(version), 0) + 1 FROM models "
    "WHERE symbol = ? AND kind = ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_RETIRE = ("UPDATE models SET status = 'retired' WHERE symbol = ? AND kind = ? "
           "AND status = 'champion' AND id != ?")
_NEWEST = ("SELECT id FROM models WHERE symbol = ?1 AND kind = 'xgboost' "
           "ORDER BY version DESC LIMIT ?2")
_STORED = ("SELECT id, length(blob), ever_champion OR id IN (" + _NEWEST + ") FROM models "
           "WHERE symbol = ?1 AND kind = 'xgboost' AND pruned IS NULL")  # index models_stored


class ModelPruned(StoreError):
    """A pruned model's bytes are asked for: only its record is left."""


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
    format: str  # ubjson (xgboost) | codec-v1 (river) | pickle (earlier versions: refused)
    run_id: int | None
    size: int  # bytes of the model blob (of the deleted one, once pruned)
    pruned: bool  # its bytes were deleted to save space; the record stays
    ever_champion: bool  # promoted at least once: never pruned

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ModelRecord:
        """A record from a row of the model columns, its JSON fields decoded."""
        (id_, symbol, kind, version, parent, created, start, end, rows, how, n_trees, params,
         features, fhash, versions, metrics, status, fmt, run_id, size, pruned, ever) = row
        return cls(id_, symbol, kind, version, parent, created, start, end, rows, how, n_trees,
                   json.loads(params), tuple(json.loads(features)), fhash, json.loads(versions),
                   json.loads(metrics), status, fmt, run_id, size, bool(pruned), bool(ever))


@dataclass(frozen=True)
class Pruning:
    """What a prune did (or would do) to one symbol's boosters."""

    symbol: str
    kept: int  # boosters whose bytes stay stored: the newest, and every one ever champion
    pruned: int  # boosters whose bytes this prune deleted
    bytes_freed: int  # their bytes (pages SQLite reuses; VACUUM gives them back to the disk)


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
           _dumps(metrics or {}), status, format, blob, run_id, status == "champion")
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
    """The stored model bytes (UBJSON for xgboost, the codec for river); pruned: ModelPruned."""
    row = db.conn.execute("SELECT blob, pruned, symbol, kind, version FROM models WHERE id = ?",
                          (model_id,)).fetchone()
    if row is None:
        raise StoreError(f"no model with id {model_id}")
    if row[1] is not None:
        raise ModelPruned(
            f"model {model_id} ({row[2]} {row[3]} v{row[4]}) was pruned: its {row[1]:,} bytes "
            "were deleted to save space and only its record is left (every symbol keeps its "
            "batch.keep_models newest boosters and every model ever champion)")
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
    """Make ``model_id`` the champion and retire the one it replaces, in one transaction.
    A pruned model cannot be champion: :class:`ModelPruned`."""
    with _write(db) as conn:
        row = conn.execute("SELECT symbol, kind, pruned FROM models WHERE id = ?",
                           (model_id,)).fetchone()
        if row is None:
            raise StoreError(f"no model with id {model_id}")
        if row[2] is not None:
            raise ModelPruned(f"model {model_id} was pruned: a model without its bytes "
                              "cannot be champion")
        conn.execute(_RETIRE, (row[0], row[1], model_id))
        conn.execute("UPDATE models SET status = 'champion', ever_champion = 1 WHERE id = ?",
                     (model_id,))


def booster_symbols(db: sqlite_utils.Database) -> list[str]:
    """The symbols with at least one booster, sorted."""
    rows = db.conn.execute("SELECT DISTINCT symbol FROM models WHERE kind = 'xgboost' "
                           "ORDER BY symbol")
    return [r[0] for r in rows]


def prune(db: sqlite_utils.Database, symbol: str, keep: int, *,
          dry_run: bool = False) -> Pruning:
    """Delete the bytes of ``symbol``'s boosters that are neither among its ``keep`` newest nor
    ever champion, in one transaction; their records stay. ``dry_run``: only count them.
    Reads the boosters still stored, through an index: cheap after every training."""
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    with _busy(), _read(db) if dry_run else _write(db) as conn:
        stored = conn.execute(_STORED, (symbol, keep)).fetchall()
        doomed = [(size, id_) for id_, size, kept in stored if not kept]
        if doomed and not dry_run:
            conn.executemany("UPDATE models SET blob = X'', pruned = ? WHERE id = ?", doomed)
    return Pruning(symbol, len(stored) - len(doomed), len(doomed), sum(s for s, _ in doomed))


def vacuum(db: sqlite_utils.Database) -> int:
    """Rebuild the whole file (``VACUUM``), giving its free pages back to the file system; the
    bytes it shrank by. Locks out every writer while it runs."""
    before = _file_bytes(db)
    with _busy():
        db.conn.execute("VACUUM")
        db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return before - _file_bytes(db)


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


@contextmanager
def _busy() -> Iterator[None]:
    """Another process holding the lock past the busy timeout: a StoreError that says so."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise
        raise StoreError(f"the database is busy ({exc}): another process (a daemon?) is "
                         "writing it; try again, or stop it first") from None


def _read(db: sqlite_utils.Database) -> AbstractContextManager[sqlite3.Connection]:
    """Reads only: no transaction, no lock taken."""
    return nullcontext(db.conn)


def _file_bytes(db: sqlite_utils.Database) -> int:
    return int(db.conn.execute("PRAGMA page_count").fetchone()[0]) * \
        int(db.conn.execute("PRAGMA page_size").fetchone()[0])


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
