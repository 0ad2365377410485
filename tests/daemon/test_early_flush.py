"""Rows reach the file between checkpoints (``store.flush_seconds``), so readers — the
dashboard, ``status`` — see each bar within a second; a restart from the checkpoint before them
writes them again without a duplicate."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ares_stream.sim.exchange import Faults, Tape
from tests.conftest import wait_until
from tests.daemon.conftest import SYMBOL
from tests.daemon.test_ingest import exchange_in_thread
from tests.paper import count, paper_daemon, query, write_config

EXTRA = """
[labels]
horizon = 1
threshold_bps = 1.0
[drift]
delta = 0.9             # the online loss drifts up on this tape (as in test_alerts)
[batch]
enabled = false
[store]
flush_seconds = 0.2
"""


def daemon(urls: dict[str, str], tmp: Path, checkpoint_every: str) -> subprocess.Popen[str]:
    return paper_daemon(urls, tmp, "--db", str(tmp / "paper.db"), "--checkpoint-every",
                        checkpoint_every, symbols=SYMBOL)


def test_bars_reach_the_file_long_before_the_first_checkpoint(tape: Tape, tmp_path: Path) -> None:
    db = tmp_path / "paper.db"
    write_config(tmp_path, EXTRA)
    with exchange_in_thread(tape, rate=300, faults=Faults()) as urls:
        proc = daemon(urls, tmp_path, "600")
        try:
            wait_until(lambda: count(db, "predictions") > 0 or proc.poll() is not None,
                       what="a prediction row")
            assert count(db, "checkpoints") == 0 and proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(timeout=120)


def test_a_kill_after_early_rows_and_a_restart_leave_no_duplicate(tape: Tape,
                                                                 tmp_path: Path) -> None:
    """Killed just after a drift event was written early (after its checkpoint), the restart
    detects it again from the checkpoint's state: it is in the file once; the predictions after
    the checkpoint are written again in place."""
    db = tmp_path / "paper.db"
    write_config(tmp_path, EXTRA)
    with exchange_in_thread(tape, rate=300, faults=Faults()) as urls:
        proc = daemon(urls, tmp_path, "3")
        try:
            wait_until(lambda: count(db, "checkpoints") > 0 or proc.poll() is not None,
                       what="a checkpoint")
            wait_until(lambda: count(db, "drift_events") > 0 or proc.poll() is not None,
                       what="a drift row")
            proc.kill()
            proc.wait(timeout=60)
            first = query(db, "select symbol, ts_event, detector from drift_events "
                              "order by id limit 1")[0]
            ckpt = query(db, "select max(ts_event) from checkpoints")[0][0]
            proc = daemon(urls, tmp_path, "3")
            wait_until(lambda: query(db, "select count(*) from checkpoints where ts_event > "
                                     f"{first[1]}")[0][0] or proc.poll() is not None,
                       what="a checkpoint of the restarted daemon past the drift")
        finally:
            proc.terminate()
            proc.wait(timeout=120)
    dupes = query(db, "select symbol, ts_event, detector, count(*) from drift_events group by "
                      "1, 2, 3 having count(*) > 1")
    assert dupes == [], dupes
    assert first in [tuple(r) for r in query(db, "select symbol, ts_event, detector from "
                                                 "drift_events")]
    dup_preds = query(db, "select symbol, ts_event, count(*) from predictions group by 1, 2 "
                          "having count(*) > 1")
    assert dup_preds == []
    log = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in log
    # the case at stake: the drift row was written after the checkpoint the restart used
    assert isinstance(ckpt, int) and first[1] > ckpt  # type: ignore[operator]
