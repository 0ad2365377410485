"""The ``checkpoints`` table: the engine's state and the feed cursor, written atomically.

A checkpoint row is written in one transaction after every buffered row of the run has been
flushed, so the newest checkpoint never refers to rows that are not on disk. Only the newest few
are kept.

>>> from ares_stream.store.db import open_db
>>> db = open_db(":memory:")
>>> save(db, 1, ts_wall=5, ts_event=4, cursors={"BTCUSDT|agg_id": 9}, state=b"s")
>>> latest(db, 1)
Checkpoint(run_id=1, ts_wall=5, ts_event=4, cursors={'BTCUSDT|agg_id': 9}, state=b's')
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlite_utils

KEEP = 3


@dataclass(frozen=True)
class Checkpoint:
    """One saved checkpoint: wall and event time (ns), the feed cursors, the engine state in
    :mod:`ares_stream.codec`'s format (never a pickle)."""
    run_id: int
    ts_wall: int
    ts_event: int
    cursors: dict[str, int]
    state: bytes


def save(db: sqlite_utils.Database, run_id: int, *, ts_wall: int, ts_event: int,
         cursors: dict[str, int], state: bytes) -> None:
    """Write one checkpoint and drop all but the newest ``KEEP`` of the run, atomically."""
    conn = db.conn
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO checkpoints (run_id, ts_wall, ts_event, cursors, state) "
                     "VALUES (?, ?, ?, ?, ?)",
                     (run_id, ts_wall, ts_event, json.dumps(cursors, sort_keys=True), state))
        conn.execute("DELETE FROM checkpoints WHERE run_id = ? AND id NOT IN (SELECT id FROM "
                     "checkpoints WHERE run_id = ? ORDER BY id DESC LIMIT ?)",
                     (run_id, run_id, KEEP))


def latest(db: sqlite_utils.Database, run_id: int) -> Checkpoint | None:
    """The newest checkpoint of ``run_id``, or None before the first."""
    row = db.conn.execute("SELECT run_id, ts_wall, ts_event, cursors, state FROM checkpoints "
                          "WHERE run_id = ? ORDER BY id DESC LIMIT 1", (run_id,)).fetchone()
    if row is None:
        return None
    return Checkpoint(row[0], row[1], row[2], json.loads(row[3]), bytes(row[4]))


def resumable_run(db: sqlite_utils.Database, mode: str) -> int | None:
    """The newest run of ``mode`` that did not end cleanly (a crash or a kill): to resume. A
    ``failed`` one only if it has a checkpoint: a start that failed before its run got one (a
    taken port, an exchange refusing a live start) left nothing to resume."""
    row = db.conn.execute("SELECT id FROM runs WHERE mode = ? AND (status = 'running' OR "
                          "(status = 'failed' AND EXISTS (SELECT 1 FROM checkpoints c "
                          "WHERE c.run_id = runs.id))) ORDER BY id DESC LIMIT 1",
                          (mode,)).fetchone()
    return None if row is None else int(row[0])
