"""Read-only SQL behind ``ares-stream status``: a running daemon's database, never written to.

Nothing is created or changed beside the file: it is opened ``mode=ro`` through the WAL of the
daemon that has it open, or ``immutable=1`` when no WAL is there (a stopped daemon). Each query
returns plain dicts and lists; a table that an older schema lacks reads as empty, so a partly
built database answers "none yet" rather than failing. A file from a newer ares-stream (its
``user_version`` past :data:`~ares_stream.store.db.MIGRATIONS`) is refused, naming both versions;
:func:`integrity` runs SQLite's ``quick_check``, and a query that meets a corrupt page reads as
empty too, so a damaged file still shows what can be read (the caller warns).

>>> from ares_stream.store.db import open_db
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "s.db"); open_db(path).conn.close()
>>> with open_readonly(path) as conn:
...     (latest_run(conn), feed_health_counts(conn)["gaps"], champions(conn), integrity(conn))
(None, 0, [], [])
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ares_stream.store.db import MIGRATIONS, StoreError

__all__ = ["MissingDatabase", "NewerDatabase", "champions", "drift_summary", "equity_summary",
           "feed_health_counts", "integrity", "last_validations", "latest_health", "latest_run",
           "newest_checkpoint_wall", "newest_data_time", "newest_prediction_init",
           "open_readonly", "positions", "schema_version"]

# when an incident happened: its event time, or its receive time for those without one
# (connection notices, rejected frames and lag episodes carry ts_event = 0)
_INCIDENT_TIME = "CASE WHEN ts_event > 0 THEN ts_event ELSE ts_init END"
# status name -> (feed_health kind, what is summed: rows are incidents, count is frames)
# (duplicates dropped, REST 429s and 418s: rows of the daemon's counters, each the count since
# the previous one — see ares_stream/daemon/counters.py)
_HEALTH_KINDS = {"gaps": ("gap", "COUNT(*)"), "rejected": ("rejected", "SUM(count)"),
                 "reconnects": ("disconnected", "COUNT(*)"), "lag_episodes": ("lag", "COUNT(*)"),
                 "duplicates": ("duplicates", "SUM(count)"),
                 "rate_limited": ("rate_limited", "SUM(count)"), "banned": ("banned", "SUM(count)")}


class MissingDatabase(StoreError):
    """The database file named for ``status`` does not exist."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: no such database (pass --db FILE, e.g. state/paper.db)")


class NewerDatabase(StoreError):
    """The file's schema is newer than this code knows: reading it could only mislead."""

    def __init__(self, path: str | Path, version: int) -> None:
        self.version = version
        super().__init__(f"{path}: database schema version {version} is newer than this "
                         f"ares-stream knows ({len(MIGRATIONS)}); upgrade ares-stream to read it")


@contextmanager
def open_readonly(path: str | Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to an existing database; closed on exit."""
    if not Path(path).is_file():
        raise MissingDatabase(path)
    # With a WAL beside it (a daemon has the file open) read through it; without one, open the
    # file immutable, since a read-only WAL reader would leave -wal/-shm files owned by whoever
    # ran status (root, say) that the daemon's user could then not open.
    live = Path(f"{path}-wal").exists()
    uri = Path(path).resolve().as_uri() + ("?mode=ro" if live else "?immutable=1")
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot be read: {exc}") from None
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if (version := schema_version(conn)) > len(MIGRATIONS):
            raise NewerDatabase(path, version)
        yield conn
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a usable ares-stream database: {exc}") from None
    finally:
        conn.close()


def schema_version(conn: sqlite3.Connection) -> int:
    """The file's schema version (SQLite's ``user_version``)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def integrity(conn: sqlite3.Connection, limit: int = 5) -> list[str]:
    """What SQLite's ``quick_check`` finds wrong (up to ``limit`` lines); [] when the file is
    whole. It reads every page: on a large file it takes a while (about a second per GB)."""
    try:
        found = [str(r[0]) for r in conn.execute(f"PRAGMA quick_check({int(limit)})")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    return [] if found == ["ok"] else found


def _corrupt(exc: sqlite3.DatabaseError) -> bool:
    """A corrupt page (SQLITE_CORRUPT), as opposed to a mistake in a query."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == 11 or "malformed" in str(exc)


def _has(conn: sqlite3.Connection, table: str) -> bool:
    sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return conn.execute(sql, (table,)).fetchone() is not None


def _one(conn: sqlite3.Connection, table: str, sql: str, args: tuple[Any, ...] = ()) -> Any:
    """The first column of the first row, or None (also when the table does not exist)."""
    if not _has(conn, table):
        return None
    try:
        row = conn.execute(sql, args).fetchone()
    except sqlite3.DatabaseError as exc:
        if not _corrupt(exc):
            raise
        return None  # a damaged table reads as empty; integrity() says why
    return None if row is None else row[0]


def _dicts(conn: sqlite3.Connection, table: str, sql: str,
           args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    if not _has(conn, table):
        return []
    try:
        cur = conn.execute(sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    except sqlite3.DatabaseError as exc:
        if not _corrupt(exc):
            raise
        return []  # a damaged table reads as empty; integrity() says why


def latest_run(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The newest run (id, mode, status, start, end) and how many runs there are; or None."""
    rows = _dicts(conn, "runs", "SELECT id, mode, status, started_at, ended_at, "
                  "(SELECT COUNT(*) FROM runs) AS runs FROM runs ORDER BY id DESC LIMIT 1")
    return rows[0] if rows else None


def run_error(conn: sqlite3.Connection, run_id: int) -> str | None:
    """Why run ``run_id`` failed, as its summary says (``{"error": …}``), or None."""
    summary = _one(conn, "runs", "SELECT summary FROM runs WHERE id = ?", (run_id,))
    try:
        error = json.loads(summary).get("error") if summary else None
    except (ValueError, AttributeError):
        return None
    return str(error) if error else None


def newest_checkpoint_wall(conn: sqlite3.Connection) -> int | None:
    """Wall time of the newest checkpoint of any run (ns), or None."""
    value = _one(conn, "checkpoints", "SELECT MAX(ts_wall) FROM checkpoints")
    return None if value is None else int(value)


def newest_prediction_init(conn: sqlite3.Connection) -> int | None:
    """Receive time of the newest prediction of any run (ns), or None."""
    value = _one(conn, "predictions", "SELECT MAX(ts_init) FROM predictions")
    return None if value is None else int(value)


def newest_data_time(conn: sqlite3.Connection) -> int | None:
    """The newest event time of a prediction or a feed incident (ns), or None."""
    times = [_one(conn, "predictions", "SELECT MAX(ts_event) FROM predictions"),
             _one(conn, "feed_health", f"SELECT MAX({_INCIDENT_TIME}) FROM feed_health "
                  "WHERE kind != 'totals'")]
    known = [int(t) for t in times if t]
    return max(known) if known else None


def feed_health_counts(conn: sqlite3.Connection, since: int | None = None) -> dict[str, int]:
    """Gaps, rejected frames, reconnects, lag episodes; those after ``since`` (ns) if given."""
    out = {}
    for name, (kind, agg) in _HEALTH_KINDS.items():
        sql = f"SELECT {agg} FROM feed_health WHERE kind = ? AND (? IS NULL OR " \
              f"{_INCIDENT_TIME} > ?)"
        out[name] = int(_one(conn, "feed_health", sql, (kind, since, since)) or 0)
    return out


def latest_health(conn: sqlite3.Connection, kind: str) -> dict[str, Any] | None:
    """The newest ``feed_health`` row of ``kind`` (run_id, ts_init, count, detail), or None."""
    found = _dicts(conn, "feed_health", "SELECT run_id, ts_init, count, detail FROM feed_health "
                   "WHERE kind = ? ORDER BY id DESC LIMIT 1", (kind,))
    return found[0] if found else None


def startup_notes(conn: sqlite3.Connection, run_id: int) -> list[dict[str, Any]]:
    """The run's start-up records (kinds ``startup`` and ``warmup``), oldest first."""
    return _dicts(conn, "feed_health",
                  "SELECT kind, symbol, ts_init, count, detail FROM feed_health WHERE run_id = ?"
                  " AND kind IN ('startup', 'warmup') ORDER BY id", (run_id,))


def champions(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every champion model, by symbol then kind."""
    return _dicts(conn, "models", "SELECT symbol, kind, id, version, n_trees, how, rows, created "
                  "FROM models WHERE status = 'champion' ORDER BY symbol, kind")


def last_validations(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The newest decision of each symbol (``decided_by``: who made a manual one; None for the
    gate's, and in a file older than schema 11)."""
    by = "decided_by" if _has(conn, "validations") and any(
        r[1] == "decided_by" for r in conn.execute("PRAGMA table_info(validations)")) \
        else "NULL AS decided_by"
    return _dicts(conn, "validations", f"""
        SELECT symbol, ts_event, promoted, challenger, challenger_id, incumbent, incumbent_id,
               folds, challenger_loss, incumbent_loss, improvement, ci_low, ci_high, margin, reason,
               {by}
        FROM validations v WHERE id = (SELECT id FROM validations w WHERE w.symbol = v.symbol
                                       ORDER BY id DESC LIMIT 1)
        ORDER BY symbol""")


def drift_summary(conn: sqlite3.Connection) -> dict[str, Any]:
    """Count of drift events, per symbol, and the newest one."""
    per_symbol = _dicts(conn, "drift_events", "SELECT symbol, COUNT(*) AS n FROM drift_events "
                        "GROUP BY symbol ORDER BY symbol")
    last = _dicts(conn, "drift_events", "SELECT symbol, ts_event, detector, mean_before, "
                  "mean_after, action FROM drift_events ORDER BY ts_event DESC, id DESC LIMIT 1")
    return {"count": sum(r["n"] for r in per_symbol),
            "by_symbol": {r["symbol"]: r["n"] for r in per_symbol},
            "last": last[0] if last else None}


def _latest_run_of(conn: sqlite3.Connection, table: str) -> tuple[bool, int | None]:
    """(any rows?, the newest run id with rows there — None sorts last)."""
    if not _has(conn, table):
        return False, None
    row = conn.execute(f"SELECT run_id FROM {table} ORDER BY run_id DESC LIMIT 1").fetchone()
    return row is not None, None if row is None else row[0]


def positions(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The positions of the newest run that has any."""
    found, run_id = _latest_run_of(conn, "positions")
    if not found:
        return []
    return _dicts(conn, "positions", "SELECT symbol, qty, avg_price, realized_pnl, ts_event, "
                  "run_id FROM positions WHERE run_id IS ? ORDER BY symbol", (run_id,))


def signal_gates(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Per symbol, the latest signal gate row (trading or flat, and why) of the newest run."""
    found, run_id = _latest_run_of(conn, "signal_gate")
    if not found:
        return []
    return _dicts(conn, "signal_gate", "SELECT symbol, ts_event, trading, reason FROM signal_gate "
                  "WHERE id IN (SELECT MAX(id) FROM signal_gate WHERE run_id IS ? GROUP BY symbol) "
                  "ORDER BY symbol", (run_id,))


def equity_summary(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """First and last equity rows, worst drawdown and row count of the newest run with equity."""
    found, run_id = _latest_run_of(conn, "equity")
    if not found:
        return None
    cols = "ts_event, cash, positions_value, equity, drawdown, fees"
    first, last = (_dicts(conn, "equity", f"SELECT {cols} FROM equity WHERE run_id IS ? "
                          f"ORDER BY ts_event {order} LIMIT 1", (run_id,))[0]
                   for order in ("ASC", "DESC"))
    worst, rows = conn.execute("SELECT MAX(drawdown), COUNT(*) FROM equity WHERE run_id IS ?",
                               (run_id,)).fetchone()
    return {"run_id": run_id, "first": first, "last": last, "max_drawdown": worst, "rows": rows}
