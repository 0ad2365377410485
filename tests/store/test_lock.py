"""The database lock: one owner, a refusal naming the holder's pid, freed by the kernel at death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ares_stream.store.lock import DatabaseInUse, DatabaseLock, holder, lock_path
from tests.conftest import wait_until

HOLD = """
import sys, time
from ares_stream.store.lock import DatabaseLock
DatabaseLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_the_lock_file_is_beside_the_database_and_names_its_holder(tmp_path: Path) -> None:
    """``<db>.lock`` beside the database holds the owner's pid while it holds the lock."""
    db = tmp_path / "state" / "paper.db"
    with DatabaseLock(db) as lock:
        assert lock.held and lock_path(db) == tmp_path / "state" / "paper.db.lock"
        assert lock_path(db).read_text() == f"{os.getpid()}\n"
        assert holder(db) == os.getpid()
    assert not lock.held and holder(db) is None and lock_path(db).exists()


def test_a_second_owner_is_refused_with_the_holders_pid_and_may_take_it_after(
        tmp_path: Path) -> None:
    """A second acquire (even in the same process) fails at once naming pid and lock file;
    once the first lets go, it succeeds."""
    db = tmp_path / "paper.db"
    first = DatabaseLock(db).acquire()
    with pytest.raises(DatabaseInUse) as refused:
        DatabaseLock(db).acquire()
    assert refused.value.pid == os.getpid()
    assert str(refused.value) == f"{db} is in use by pid {os.getpid()} (lock {db}.lock)"
    first.release()
    first.release()  # idempotent
    with DatabaseLock(db):
        pass


def test_the_kernel_frees_the_lock_of_a_killed_holder(tmp_path: Path) -> None:
    """A holder killed with SIGKILL leaves its pid in the file, but not the lock: the next
    owner takes it without any clean-up."""
    db = tmp_path / "paper.db"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        with pytest.raises(DatabaseInUse, match=f"in use by pid {proc.pid} "):
            DatabaseLock(db).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert lock_path(db).read_text().strip() == str(proc.pid)  # stale, and harmless
    wait_until(lambda: holder(db) is None, what="the kernel to drop the lock")
    with DatabaseLock(db):
        assert holder(db) == os.getpid()


def test_an_in_memory_database_needs_no_lock() -> None:
    """``:memory:`` is private to its connection: nothing to lock, no file made."""
    with DatabaseLock(":memory:") as lock:
        assert not lock.held
    assert not Path(":memory:.lock").exists()


def test_a_status_probe_at_the_moment_of_acquiring_does_not_refuse_the_owner(
        tmp_path: Path) -> None:
    """``holder`` probes with a shared lock for an instant; a daemon acquiring then still gets
    the database (it retries through the probe), while a real holder still refuses it."""
    import fcntl
    import threading

    db = tmp_path / "paper.db"
    lock_path(db).write_text("")
    fd = os.open(lock_path(db), os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)  # a probe that lasts 50 ms (real ones: microseconds)
    timer = threading.Timer(0.05, os.close, (fd,))
    timer.start()
    lock = DatabaseLock(db).acquire()
    timer.join()
    assert lock.held
    lock.release()
