"""The batch worker process: it dies with the process that started it.

The worker of :class:`~ares_stream.batch.learner.BatchLearner` is a spawned process waiting on
its job queue. It holds both ends of that queue, so a parent killed with SIGKILL never sends it
an end of file: left alone it would wait forever, an orphan, and keep multiprocessing's resource
tracker (which waits for every holder of its pipe) alive with it. So the pool's initializer,
:func:`init_worker`, ties the worker's life to its parent's:

- on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker the moment its
  parent dies (strictly: the parent *thread* that started it — the pool is started from the
  event loop's thread, or the replay's main thread, which live as long as the process);
- elsewhere (or if ``prctl`` is refused), a daemon thread that checks the parent pid every
  ``poll`` seconds and exits the process once it changed (the orphan was re-parented).

Either way a parent that died before the worker got here is caught by a first check. Once the
worker is gone the resource tracker reads its end of file and exits too. (Linux; a process whose
parent lives on goes on.)

>>> import subprocess
>>> child = ("import os; from ares_stream.batch import worker; "
...          "print(worker.die_with_parent(os.getppid()))")  # its parent (we) lives on
>>> subprocess.run([sys.executable, "-c", child], capture_output=True, text=True).stdout.strip()
'prctl'
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from typing import Any

from ares_stream import logs

__all__ = ["PR_SET_PDEATHSIG", "die_with_parent", "init_worker"]

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
EXIT_ORPHANED = 70  # the exit code of a worker whose parent is gone


def init_worker(parent: int, log_settings: dict[str, Any]) -> None:
    """The pool's initializer: die with ``parent`` (its pid), then log as it does."""
    die_with_parent(parent)
    logs.configure_worker(log_settings)


def die_with_parent(parent: int, *, use_prctl: bool = True, poll: float = 1.0) -> str:
    """Make this process end when ``parent`` does; how: ``"prctl"`` or ``"watch"``."""
    how = "prctl" if use_prctl and _pdeathsig(signal.SIGKILL) else "watch"
    if how == "watch":
        threading.Thread(target=_watch, args=(parent, poll), name="parent-watch",
                         daemon=True).start()
    if os.getppid() != parent:  # it died before the signal was armed: nobody would send it
        os._exit(EXIT_ORPHANED)
    return how


def _pdeathsig(sig: int) -> bool:
    """Ask the kernel for ``sig`` at the parent's death (Linux); whether it agreed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _watch(parent: int, poll: float) -> None:
    """Exit the process once the parent pid is no longer ``parent``."""
    while os.getppid() == parent:
        time.sleep(poll)  # a poll, not a wait for anything: the parent's death has no event
    os._exit(EXIT_ORPHANED)
