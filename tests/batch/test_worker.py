"""The batch worker dies with its parent: after a SIGKILL of the process that started it, neither
the worker nor multiprocessing's resource tracker is left behind."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
LINUX = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

POOL = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from ares_stream import logs
from ares_stream.batch import worker
if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=worker.init_worker,
                               initargs=(os.getpid(), logs.worker_settings()))
    print(pool.submit(os.getpid).result(), flush=True)
    time.sleep(600)
"""

WATCHED = """
import os, subprocess, sys, time
if sys.argv[1:2] == ["child"]:
    from ares_stream.batch.worker import die_with_parent
    print(die_with_parent(int(sys.argv[2]), use_prctl=False, poll=0.05), flush=True)
else:
    subprocess.Popen([sys.executable, __file__, "child", str(os.getpid())])
time.sleep(600)
"""


def stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a live process; None once it is gone (a zombie is gone too)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else (fields[0], int(fields[1]))


def children(pid: int) -> dict[int, str]:
    """The live children of ``pid``: pid -> command line."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := stat(int(entry.name))) is not None and st[1] == pid:
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            out[int(entry.name)] = cmdline.replace(b"\0", b" ").decode()
    return out


def assert_all_gone(pids: set[int]) -> None:
    """Wait (deadline) until every one of ``pids`` has exited."""
    wait_until(lambda: all(stat(p) is None for p in pids), timeout=60,
               what=f"the children {sorted(p for p in pids if stat(p) is not None)} to exit")


@LINUX
def test_a_pool_worker_and_the_resource_tracker_die_with_a_killed_parent() -> None:
    """A spawned pool (the batch learner's) under SIGKILL of its parent: its worker and the
    resource tracker exit within the deadline instead of waiting forever as orphans."""
    parent = subprocess.Popen([sys.executable, "-c", POOL], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert parent.stdout is not None
        worker_pid = int(parent.stdout.readline())
        kids = children(parent.pid)
        assert worker_pid in kids
        assert any("resource_tracker" in cmd for cmd in kids.values()), kids
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=60)
    assert_all_gone(set(kids))


@LINUX
def test_without_prctl_the_watch_thread_ends_an_orphan(tmp_path: Path) -> None:
    """The fallback (no ``prctl``): the worker sees its parent pid change and exits."""
    script = tmp_path / "watched.py"
    script.write_text(WATCHED)
    parent = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline() == "watch\n"  # the child armed its watch thread
        kids = children(parent.pid)
        assert len(kids) == 1
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=60)
    assert_all_gone(set(kids))
