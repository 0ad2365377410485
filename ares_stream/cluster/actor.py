"""One shard's actor: it runs the shard's daemon and reports on it.

The actor is a small supervisor: its daemon is ``ares-stream run --shard K/N`` — the one code
path, exactly as a systemd instance runs it — in a child process the kernel kills with SIGTERM
when the actor's process dies (``PR_SET_PDEATHSIG``), so a killed actor leaves no daemon behind
holding the shard's database. Ray restarts a dead actor (the runner creates it with
``max_restarts``); the new actor's daemon finds the shard's database and resumes from its last
checkpoint, backfilling what it missed over REST. A daemon that exits with an error while its
actor lives is started again by :meth:`ShardActor.check`.

The class is plain Python (no Ray import): :mod:`ares_stream.cluster.runner` makes it a Ray actor.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["ShardActor", "daemon_argv"]

_PR_SET_PDEATHSIG = 1
ROOT = Path(__file__).resolve().parents[2]


def daemon_argv(run_args: list[str], shard: str) -> list[str]:
    """The shard's daemon command: ``python -m ares_stream.cli run <run_args> --shard K/N``."""
    return [sys.executable, "-m", "ares_stream.cli", "run", *run_args, "--shard", shard]


def _die_with_parent() -> None:  # in the child, between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class ShardActor:
    """Runs shard ``shard`` (``K/N``) of ``run_args`` in ``workdir``; its log in
    ``<workdir>/shard-<K>of<N>.log`` (appended across restarts)."""

    def __init__(self, run_args: list[str], shard: str, workdir: str) -> None:
        self.argv = daemon_argv(run_args, shard)
        self.shard = shard
        self.workdir = Path(workdir)
        k, n = shard.split("/")
        self.log_path = self.workdir / f"shard-{k}of{n}.log"
        self.started = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._start()

    def _start(self) -> None:
        env = dict(os.environ)
        env.setdefault("PYTHONPATH", str(ROOT))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=self.workdir, env=env,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=log, preexec_fn=_die_with_parent)
        self.started += 1

    def status(self) -> dict[str, Any]:
        """The shard's pid, exit code (None while it runs), starts, host and actor pid."""
        assert self.proc is not None
        return {"shard": self.shard, "pid": self.proc.pid, "returncode": self.proc.poll(),
                "starts": self.started, "host": socket.gethostname(), "actor_pid": os.getpid()}

    def check(self) -> dict[str, Any]:
        """Start the daemon again if it ended with an error (a clean exit 0 stays ended)."""
        assert self.proc is not None
        code = self.proc.poll()
        if code not in (None, 0):
            self._start()
        return self.status()

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM the daemon (it checkpoints and exits 0); SIGKILL after ``timeout``."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.proc.poll() is None:
                self.proc.kill()
        return self.proc.wait()
