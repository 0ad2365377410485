"""Space kept in reserve beside a database, for the one row a full disk would otherwise refuse.

When the disk fills up, the daemon (or a replay) must still mark its run ``failed`` — a one-page
write that a disk with no free block refuses. So a process that writes a database first sets
aside :data:`SIZE` bytes in ``<db>.reserve`` (allocated, not sparse); on a storage failure it
deletes that file and then writes the run's end. The next start sets the reserve aside again
(and, on a disk still full, goes without one: the reserve is a courtesy, never a reason to stop).

>>> import tempfile, os
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> r = Reserve(d / "paper.db")
>>> r.keep(), os.path.getsize(d / "paper.db.reserve") == SIZE
(True, True)
>>> r.release(), (d / "paper.db.reserve").exists()
(True, False)
>>> Reserve(":memory:").keep()
False
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["SIZE", "Reserve"]

SIZE = 1 << 20  # a run's last row, the WAL frames around it, and some slack


class Reserve:
    """``<db>.reserve``: :meth:`keep` it at start, :meth:`release` it when the disk is full."""

    def __init__(self, db_path: str | Path) -> None:
        memory = str(db_path) in ("", ":memory:")
        self.path = None if memory else Path(f"{db_path}.reserve")

    def keep(self) -> bool:
        """Set :data:`SIZE` bytes aside (again); False when it cannot (no file, a full disk)."""
        if self.path is None:
            return False
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError:
            return False
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, SIZE)
            else:  # no fallocate (macOS): written blocks are allocated too
                os.pwrite(fd, b"\0" * SIZE, 0)
                os.fsync(fd)
            return True
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # half a reserve would only mislead
            return False
        finally:
            os.close(fd)

    def release(self) -> bool:
        """Give the reserved space back to the file system; whether there was any."""
        if self.path is None:
            return False
        try:
            self.path.unlink()
            return True
        except OSError:
            return False
