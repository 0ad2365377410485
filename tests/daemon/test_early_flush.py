"""Rows reach the file between checkpoints (``store.flush_seconds``), so readers — the
dashboard, ``status`` — see each bar within a second; a restart from the checkpoint before them
writes them again without a duplicate."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path

from ares_stream.sim.exchange import Faults, Tape
from tests.conftest import wait_until
from tests.daemon.conftest import SYMBOL
from tests.daemon.test_ingest import exchange_in_thread

CONFIG = """
[bars]
interval = "1s"
[labels]
horizon = 1
threshold_bps = 1.0
[drift]
delta = 0.9             # the online loss drifts up on this tape (as in test_alerts)
[batch]
enabled = false
[metrics]
port = 0
[store]
flush_seconds = 0.2
[feed]
silence_timeout_s = 5.0
recordings_dir = "{tmp}/recordings"
"""


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    try:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.Error:
        return []


def count(db: Path, table: str) -> int:
    rows = query(db, f"select count(*) from {table}")
    return int(rows[0][0]) if rows else 0  # type: ignore[arg-type]


def daemon(urls: dict[str, str], tmp: Path, checkpoint_every: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "daemon.py", "--paper", "--symbols", SYMBOL, "--streams",
         "aggTrade,bookTicker", "--ws-url", urls["ws"], "--rest-url", urls["rest"],
         "--db", str(tmp / "paper.db"), "--config", str(tmp / "daemon.toml"), "--log-json",
         "--checkpoint-every", checkpoint_every], cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL, stderr=(tmp / "daemon.log").open("a"), text=True)


def test_bars_reach_the_file_long_before_the_first_checkpoint(tape: Tape, tmp_path: Path) -> None:
    db = tmp_path / "paper.db"
    (tmp_path / "daemon.toml").write_text(CONFIG.format(tmp=tmp_path))
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
    (tmp_path / "daemon.toml").write_text(CONFIG.format(tmp=tmp_path))
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
