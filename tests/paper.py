"""A paper daemon as a user starts it, for the tests that run one against the local exchange:
its config file, the process, and reads of its database while it runs."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

BASE = """
[bars]
interval = "1s"
[metrics]
port = 0
[feed]
silence_timeout_s = 5.0
recordings_dir = "{tmp}/recordings"
"""
NO_BATCH = "\n[batch]\nenabled = false\n"


def write_config(tmp: Path, extra: str = NO_BATCH, name: str = "daemon.toml") -> Path:
    """``tmp/<name>``: 1 s bars, any metrics port, recordings under ``tmp``, then ``extra``
    (TOML tables; batch learning off unless it says otherwise)."""
    path = tmp / name
    path.write_text(BASE.format(tmp=tmp) + extra)
    return path


def paper_daemon(urls: dict[str, str], tmp: Path, *args: str, symbols: str,
                 config: Path | None = None, log: str = "daemon.log") -> subprocess.Popen[str]:
    """``daemon.py --paper`` on the local exchange at ``urls`` (aggTrade and bookTicker), its
    JSON log appended to ``tmp/<log>``; ``args`` go last (``--db``, ``--shard`` …)."""
    return subprocess.Popen(
        [sys.executable, "daemon.py", "--paper", "--symbols", symbols, "--streams",
         "aggTrade,bookTicker", "--ws-url", urls["ws"], "--rest-url", urls["rest"],
         "--config", str(config or tmp / "daemon.toml"), "--log-json", *args],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(tmp / log).open("a"), text=True)


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` on the database a daemon is writing ([] before it has the table)."""
    try:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.Error:
        return []


def count(db: Path, table: str) -> int:
    rows = query(db, f"select count(*) from {table}")
    return int(rows[0][0]) if rows else 0


def recordings(tmp: Path, symbols: list[str], *, seconds: int, seed: int) -> list[Path]:
    """One simulated recording per symbol (seeds ``seed``, ``seed + 1`` …) under ``tmp``."""
    from ares_stream.sim.simulator import write_recording

    paths = [tmp / f"{sym}.gz" for sym in symbols]
    for i, (sym, path) in enumerate(zip(symbols, paths, strict=True)):
        write_recording(path, seconds=seconds, seed=seed + i, symbol=sym)
    return paths


def symbols_in(db: Path) -> set[str]:
    """The symbols the database has predictions of."""
    return {r[0] for r in query(db, "select distinct symbol from predictions")}
