"""One owner per database: an exclusive OS lock on ``<database>.lock``, beside the file.

A process that writes a state database — the daemon for its whole life, ``replay --db`` and
``models prune`` while they run — first takes an exclusive ``flock`` on the lock file and writes
its pid into it. A second writer is refused at once with one line naming the holder's pid; it
never waits. The kernel drops the lock when the holder's last descriptor closes, so a process
killed with SIGKILL leaves nothing to clean up: the file stays (removing it would race with the
next taker) and only its lock counts, never its contents. Readers (``status``, ``report``) take
no lock. The descriptor is not inherited by spawned or exec'd children (``O_CLOEXEC``), so a
leftover child never keeps a dead daemon's database locked.

>>> import tempfile, os
>>> db = os.path.join(tempfile.mkdtemp(), "paper.db")
>>> lock = DatabaseLock(db).acquire()
>>> holder(db) == os.getpid()
True
>>> DatabaseLock(db).acquire()  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ares_stream.store.lock.DatabaseInUse: ...paper.db is in use by pid ... (lock ...paper.db.lock)
>>> lock.release(); holder(db) is None
True
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from ares_stream.store.db import StoreError

__all__ = ["DatabaseInUse", "DatabaseLock", "holder", "lock_path"]

_PROBE_GRACE_S = 0.5


class DatabaseInUse(StoreError):
    """Another process holds the database's lock (``pid``: its pid, None if it wrote none)."""

    def __init__(self, db_path: str | Path, pid: int | None) -> None:
        self.pid = pid
        who = f"pid {pid}" if pid is not None else "another process"
        super().__init__(f"{db_path} is in use by {who} (lock {lock_path(db_path)})")


def lock_path(db_path: str | Path) -> Path:
    """The lock file of a database: ``<database>.lock`` beside it."""
    return Path(f"{db_path}.lock")


class DatabaseLock:
    """The exclusive lock of the database at ``db_path``, held from :meth:`acquire` until
    :meth:`release` (or the process's end). ``:memory:`` needs none: every call is a no-op."""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = db_path
        self.path = lock_path(db_path)
        self._fd: int | None = None

    def acquire(self) -> DatabaseLock:
        """Take the lock and write our pid into the file; :class:`DatabaseInUse` if taken."""
        if str(self.db_path) == ":memory:" or self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            _lock(fd)
        except BlockingIOError:
            os.close(fd)
            raise DatabaseInUse(self.db_path, _read_pid(self.path)) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Let go of the lock (idempotent); the file stays for the next owner."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor drops the flock

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def __enter__(self) -> DatabaseLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def holder(db_path: str | Path) -> int | None:
    """The pid holding the database's lock now, or None when nobody does (it is tested by
    trying the lock, so a stale pid in the file of a dead process never counts)."""
    path = lock_path(db_path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a probe: it writes nothing
    except BlockingIOError:
        return _read_pid(path)
    finally:
        os.close(fd)
    return None


def _lock(fd: int) -> None:
    """``flock(LOCK_EX | LOCK_NB)``, tried for :data:`_PROBE_GRACE_S`: a :func:`holder` probe
    holds a shared lock for an instant, which must not refuse a daemon starting then (an owner
    holds it for good, so a refusal costs only this grace)."""
    deadline = time.monotonic() + _PROBE_GRACE_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _read_pid(path: Path) -> int | None:
    """The pid the holder wrote (None if unreadable or not yet written)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
