"""One daemon owns a database, and what it starts dies with it: real daemon processes against the
local exchange — a second daemon on the same file is refused naming the first's pid, a SIGKILL
frees the file and leaves no child behind, and a refused start leaves no run to resume."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
from pathlib import Path

import pytest

from ares_stream.sim.exchange import Faults, Tape
from ares_stream.store.lock import holder
from tests.batch.test_worker import children, stat
from tests.daemon.test_ingest import exchange_in_thread
from tests.daemon.test_lifecycle import (
    API_KEY,
    API_SECRET,
    CONFIG,
    finish,
    logged,
    start,
    start_live,
    wait_for,
)


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    """The rows of ``sql`` on ``db`` ([] while the file or table is not there, or locked)."""
    if not db.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []


def newest_checkpoint(db: Path) -> int:
    """The id of the newest checkpoint row (0 before the first)."""
    found = rows(db, "select max(id) from checkpoints")
    return int(found[0][0] or 0) if found else 0


def config(tmp: Path, name: str, text: str) -> Path:
    """A config file ``name`` beside the daemon's (``start`` rewrites its own each time)."""
    path = tmp / name
    path.write_text(text.format(recordings=tmp / "recordings"))
    return path


def test_a_second_daemon_on_one_database_is_refused_and_a_kill_frees_it(
        tape: Tape, tmp_path: Path) -> None:
    """While a daemon runs, a second one on its ``--db`` exits 2 at once with one line naming
    the first's pid and the lock file — no traceback, no run of its own — and the first keeps
    checkpointing. After a SIGKILL of the first (the kernel drops its lock) a new one starts."""
    db, other = tmp_path / "paper.db", tmp_path / "second"
    other.mkdir()
    with exchange_in_thread(tape, rate=400, faults=Faults()) as urls:
        first = start(urls, tmp_path, "--checkpoint-every", "0.3")
        try:
            wait_for("the first daemon's checkpoints", lambda: newest_checkpoint(db) >= 2)
            second = start(urls, other, "--db", str(db))
            second.wait(timeout=120)
            refusal = (other / "daemon.log").read_text()
            seen = newest_checkpoint(db)
            wait_for("the first's checkpoints to go on", lambda: newest_checkpoint(db) >= seen + 3)
            assert first.poll() is None
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=60)
        assert second.returncode == 2, refusal
        assert refusal == (f"ares-stream run: error: {db} is in use by pid {first.pid} "
                           f"(lock {db}.lock)\n")
        assert rows(db, "select id, status from runs") == [(1, "running")]
        wait_for("the kernel to drop the dead daemon's lock", lambda: holder(db) is None)
        third = start(urls, tmp_path, "--checkpoint-every", "0.3")
        wait_for("the restarted daemon", lambda: logged(tmp_path, '"resumed": true'))
        assert holder(db) == third.pid
        third.send_signal(signal.SIGTERM)
        err = finish(third, tmp_path)
    assert third.returncode == 0, err[-2000:]
    assert rows(db, "select id, status from runs") == [(1, "finished")]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_killed_daemon_leaves_no_child_process_behind(tape: Tape, tmp_path: Path) -> None:
    """A daemon with batch learning has a worker process and multiprocessing's resource tracker;
    after a SIGKILL of the daemon both exit (they used to wait forever as orphans)."""
    cfg = config(tmp_path, "batch.toml", CONFIG.replace("enabled = false",
                                                        "min_rows = 60\nupdate_rows = 60"))
    with exchange_in_thread(tape, rate=600, faults=Faults()) as urls:
        proc = start(urls, tmp_path, "--config", str(cfg))
        try:
            wait_for("the batch worker and the resource tracker", lambda: sum(
                "spawn_main" in cmd or "resource_tracker" in cmd
                for cmd in children(proc.pid).values()) >= 2, timeout=240)
            kids = children(proc.pid)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        left = set(kids)
        wait_for(f"the killed daemon's children {sorted(left)} to exit",
                 lambda: all(stat(pid) is None for pid in left), timeout=60)


def test_a_start_refused_for_its_metrics_port_leaves_no_run(tape: Tape, tmp_path: Path) -> None:
    """A metrics port already taken (a real listening socket) refuses the start with one line,
    exit 2, before any run exists; the next start begins a fresh run, not a resumed one."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = config(tmp_path, "busy.toml", CONFIG.replace("port = 0", f"port = {port}"))
        with exchange_in_thread(tape, rate=400, faults=Faults()) as urls:
            proc = start(urls, tmp_path, "--config", str(busy))
            err = finish(proc, tmp_path)
            assert proc.returncode == 2, err[-2000:]
            assert f"metrics endpoint cannot bind 127.0.0.1:{port}" in err
            assert "Traceback" not in err and len(err.strip().splitlines()) == 1
            db = tmp_path / "paper.db"
            assert rows(db, "select id, status from runs") == []
            proc = start(urls, tmp_path)  # port 0: any free one
            wait_for("the next start", lambda: logged(tmp_path, '"daemon_started"'))
            proc.send_signal(signal.SIGTERM)
            err = finish(proc, tmp_path)
    assert proc.returncode == 0, err[-2000:]
    started = [json.loads(line) for line in err.splitlines() if '"daemon_started"' in line]
    assert started[0]["resumed"] is False
    assert rows(db, "select id, status from runs") == [(1, "finished")]


def test_a_live_start_the_exchange_refuses_closes_its_run_failed(tape: Tape,
                                                                   tmp_path: Path) -> None:
    """A live start refused by the exchange (a key it does not know) after the run row exists
    ends with one line, exit 2, and its run closed ``failed`` with the reason; the next start
    does not resume that run, which never started."""
    from ares_stream.sim.exchange import Account

    account = Account({"USDT": 10_000}, api_key="another-" + API_KEY, api_secret=API_SECRET)
    env = {**os.environ, "ARES_API_KEY": API_KEY, "ARES_API_SECRET": API_SECRET}
    db = tmp_path / "live.db"
    with exchange_in_thread(tape, rate=400, faults=Faults(), account=account) as urls:
        for attempt in (1, 2):
            proc = start_live(urls, tmp_path, env, "")
            err = finish(proc, tmp_path)
            assert proc.returncode == 2, err[-2000:]
            assert "Traceback" not in err
            assert err.count("ares-stream run: error: live start-up failed") == attempt
    runs = rows(db, "select id, status, summary from runs order by id")
    assert [(r[0], r[1]) for r in runs] == [(1, "failed"), (2, "failed")]
    assert all("start-up failed: live start-up failed" in str(r[2]) for r in runs)
