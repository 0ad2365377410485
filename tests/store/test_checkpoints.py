"""Which run a daemon's start resumes: one a crash left behind, never one that never started."""

from __future__ import annotations

from ares_stream.store import checkpoints
from ares_stream.store.db import open_db
from ares_stream.store.runs import RunStore


def test_a_crashed_run_is_resumed_and_a_finished_one_is_not() -> None:
    """A run left ``running`` (killed) is the one to resume; once finished, none is."""
    db = open_db(":memory:")
    store = RunStore(db, mode="paper", config={}, sources=[])
    assert checkpoints.resumable_run(db, "paper") == store.run_id
    assert checkpoints.resumable_run(db, "live") is None
    store.close("finished", {})
    assert checkpoints.resumable_run(db, "paper") is None


def test_a_failed_start_is_never_resumed_but_a_failed_run_with_a_checkpoint_is() -> None:
    """A run closed ``failed`` before its first checkpoint (a start refused after the run row
    was made) is not resumed; a ``failed`` run that has a checkpoint is."""
    db = open_db(":memory:")
    refused = RunStore(db, mode="paper", config={}, sources=[])
    db.conn.execute("UPDATE runs SET status = 'failed' WHERE id = ?", (refused.run_id,))
    assert checkpoints.resumable_run(db, "paper") is None
    ran = RunStore(db, mode="paper", config={}, sources=[])
    checkpoints.save(db, ran.run_id, ts_wall=1, ts_event=1, cursors={}, state=b"")
    db.conn.execute("UPDATE runs SET status = 'failed' WHERE id = ?", (ran.run_id,))
    assert checkpoints.resumable_run(db, "paper") == ran.run_id
