"""Reports: one self-contained HTML page (and its figures as PNG) of a run, to open offline.

:func:`write_report` loads a run from its database (read-only: a running daemon's file too),
draws the figures (:mod:`.figures`, matplotlib's Agg canvas, no pyplot state, safe in a worker
thread), computes the summary (:mod:`.metrics`) and writes ``report.html`` with every image
embedded as a ``data:`` URI — nothing on the page is fetched from anywhere. Files are written
beside each other and swapped in atomically, so a reader never sees half a report.

>>> parse_target("state/paper.db"), parse_target("runs/a.db:3"), parse_target("c:/x.db")
((PosixPath('state/paper.db'), None), (PosixPath('runs/a.db'), 3), (PosixPath('c:/x.db'), None))
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ares_stream.errors import AresError

__all__ = ["default_out", "parse_target", "write_report"]


def parse_target(target: str) -> tuple[Path, int | None]:
    """``FILE.db`` (its newest run) or ``FILE.db:RUN_ID`` → (path, run id or None)."""
    head, sep, tail = target.rpartition(":")
    if sep and head and tail.isdigit():
        return Path(head), int(tail)
    return Path(target), None


def default_out(db_path: str | Path, run_id: int) -> Path:
    """``<db dir>/<db stem>-run<ID>-report``: beside the database, one directory per run."""
    path = Path(db_path)
    return path.with_name(f"{path.stem}-run{run_id}-report")


def write_report(db_path: str | Path, out_dir: str | Path | None = None, *,
                 run_id: int | None = None, since: int | None = None, last: int | None = None,
                 rolling: int = 500, extra: Sequence[tuple[str, str, str]] = (),
                 warn: Callable[[str], None] | None = None) -> Path:
    """Write the report of run ``run_id`` (the newest if None) of ``db_path`` into ``out_dir``;
    returns ``report.html``'s path. ``since`` (ns) or ``last`` (ns before the run's newest bar)
    restrict it to a window of event time; ``extra`` sections (id, title, plain text) open the
    page (the demo's findings against its simulator). ``warn`` is told, in one line, when the
    database fails its integrity check (the page says so too)."""
    from ares_stream.report import data as report_data
    from ares_stream.report import figures, html

    if not Path(db_path).is_file():
        raise AresError(f"{db_path}: no such database")
    loaded = report_data.load(db_path, run_id, since, last)
    if loaded.run.integrity and warn is not None:
        warn(report_data.integrity_warning(loaded.run))
    out = Path(out_dir) if out_dir is not None else default_out(db_path, loaded.run.id)
    images = figures.render(loaded, rolling=rolling)
    page = html.page(loaded, images, extra=extra)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, png in images.items():
            _write(out / f"{name}.png", png)
        _write(out / "report.html", page.encode("utf-8"))
    except OSError as exc:
        raise AresError(f"cannot write the report into {out}: {exc.strerror or exc}") from None
    return out / "report.html"


def _write(path: Path, content: bytes) -> None:
    """Write beside ``path``, then rename over it: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        tmp.write_bytes(content)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
