"""A restart loop against a large backlog: every restart checkpoints as it catches up, so even one
killed moments after it began makes progress, and no id is lost or used twice in the end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest

from ares_stream.config import load_config
from ares_stream.replay import run_replay
from ares_stream.sim.exchange import LocalExchange, Tape
from ares_stream.sim.simulator import write_recording
from ares_stream.status import status_report
from tests.conftest import wait_until
from tests.daemon.test_lifecycle import (
    SYMBOL,
    finish,
    logged,
    sigterm_while_stopped,
    start,
    tape_file,
    wait_for,
)

KILLS = 3  # restarts killed while catching up


@pytest.fixture(scope="module")
def backlog(tmp_path_factory: pytest.TempPathFactory) -> Tape:
    """About 313,000 aggregate trades (200 a second for 20 minutes of market)."""
    path = tmp_path_factory.mktemp("backlog") / "sim.gz"
    write_recording(path, seconds=1200, seed=23, symbol=SYMBOL, streams=("aggTrade",),
                    trades_per_second=200.0)
    return Tape.from_recording([path])


@contextlib.contextmanager
def exchange_thread(tape: Tape, rate: float) -> Iterator[tuple[dict[str, str], Any]]:
    """A local exchange on its own thread and loop, paced at ``rate`` frames/s; yields its URLs
    and a function that lifts the pace (the rest of the tape goes out at once)."""
    urls: dict[str, str] = {}
    held: dict[str, Any] = {}
    stop = threading.Event()

    def serve() -> None:
        async def main() -> None:
            async with LocalExchange(tape, rate=rate, ping_interval=None) as ex:
                held.update(ex=ex, loop=asyncio.get_running_loop())
                urls.update(ws=ex.ws_url, rest=ex.rest_url)
                while not stop.is_set():
                    await asyncio.sleep(0.02)

        asyncio.run(main())

    def unpace() -> None:
        held["loop"].call_soon_threadsafe(setattr, held["ex"], "rate", None)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        wait_until(lambda: urls or not thread.is_alive(), what="the exchange to listen")
        assert urls, "the exchange thread ended without listening"
        yield urls, unpace
    finally:
        stop.set()
        thread.join(timeout=10)


def cursor(db: Path) -> int:
    """The aggTrade cursor of the newest checkpoint (-1 before the first)."""
    if not db.exists():
        return -1
    try:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            row = conn.execute("select cursors from checkpoints order by id desc limit 1"
                               ).fetchone()
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return -1
    return -1 if row is None else int(json.loads(row[0]).get(f"{SYMBOL}|agg_id", -1))


def served(rest: str, ident: int) -> bool:
    """Whether the exchange's REST serves aggregate trade ``ident``."""
    with urlopen(f"{rest}/api/v3/aggTrades?symbol={SYMBOL}&fromId={ident}&limit=1",
                 timeout=30) as r:
        return bool(json.loads(r.read()))


def log_count(tmp: Path, text: str) -> int:
    path = tmp / "daemon.log"
    return path.read_text().count(text) if path.exists() else 0


def fall_behind(urls: dict[str, str], unpace: Callable[[], None], tmp: Path, last: int) -> int:
    """A first run, SIGKILLed after its first checkpoint; then the rest of the tape (up to
    ``last``) goes out while no daemon runs: a backlog on REST. The checkpoint's cursor."""
    proc = start(urls, tmp, "--checkpoint-every", "0.3", streams="aggTrade")
    wait_for("a first checkpoint", lambda: cursor(tmp / "paper.db") >= 500)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    unpace()
    wait_for("the whole tape on REST", lambda: served(urls["rest"], last))
    return cursor(tmp / "paper.db")


def saved_or_caught_up(tmp: Path, before: int) -> Callable[[], bool]:
    """Whether a checkpoint beyond ``before`` was written, or a catch-up ended, from now on."""
    caught_up = log_count(tmp, '"warmup_done"')
    return lambda: cursor(tmp / "paper.db") > before or log_count(tmp, '"warmup_done"') > caught_up


def test_a_restart_loop_progresses_through_a_large_backlog_and_loses_nothing(
        backlog: Tape, tmp_path: Path) -> None:
    """A daemon killed (SIGKILL) while its checkpoint is ~300,000 ids behind, restarted and
    killed again as soon as it begins catching up, three times: each restart has checkpointed
    further (inside its catch-up, with the periodic checkpoint an hour away), and a last run
    ends with the tape's last id and exactly the predictions of an uninterrupted replay."""
    db = tmp_path / "paper.db"
    last = backlog.agg_trades[SYMBOL].ids[-1]
    with exchange_thread(backlog, rate=200) as (urls, unpace):
        cursors = [fall_behind(urls, unpace, tmp_path, last)]
        for _ in range(KILLS):
            progress = saved_or_caught_up(tmp_path, cursors[-1])
            proc = start(urls, tmp_path, "--checkpoint-every", "3600", streams="aggTrade")
            wait_for("a checkpoint, or the end of the catch-up", progress)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            cursors.append(cursor(db))
            assert cursors[-2] < cursors[-1] < last, f"no progress while catching up: {cursors}"
        caught_up = log_count(tmp_path, '"warmup_done"')
        proc = start(urls, tmp_path, "--checkpoint-every", "0.3", streams="aggTrade")
        wait_for("the last run's catch-up", lambda: log_count(tmp_path, '"warmup_done"')
                 > caught_up, timeout=300)
        wait_for("a checkpoint at the tape's last id", lambda: cursor(db) == last)
        proc.send_signal(signal.SIGTERM)
        err = finish(proc, tmp_path)
    assert proc.returncode == 0, err[-2000:]
    assert "max_items" not in err and '"backfill_checkpointed"' in err
    warmup = status_report(db)["startup"]["warmup"]  # the whole REST catch-up, timed
    assert warmup["how"] == "restart" and warmup["items"] == last - cursors[-1], warmup
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        assert conn.execute("select count(*) from feed_health where kind = 'gap'"
                            ).fetchone()[0] == 0
        assert conn.execute("select count(distinct run_id) from predictions").fetchone()[0] == 1
        got = conn.execute("select ts_event, value, label from predictions "
                           "order by ts_event").fetchall()
    cfg = load_config(tmp_path / "daemon.toml")
    clean = run_replay([str(tape_file(backlog, tmp_path))], cfg, db_path=tmp_path / "clean.db")
    with contextlib.closing(sqlite3.connect(clean.db_path)) as conn:
        want = conn.execute("select ts_event, value, label from predictions "
                            "order by ts_event").fetchall()
    assert [g[0] for g in got] == [w[0] for w in want], "a prediction was lost or duplicated"
    assert max(abs(g[1] - w[1]) for g, w in zip(got, want, strict=True)) < 1e-9
    labelled = [(g, w) for g, w in zip(got, want, strict=True) if g[2] is not None]
    assert all(g[2] == w[2] for g, w in labelled), "a label differs"


def test_sigterm_during_a_long_catch_up_stops_promptly_with_its_progress_saved(
        backlog: Tape, tmp_path: Path) -> None:
    """A SIGTERM in the middle of a ~300,000-id catch-up: the fetch is abandoned after the page
    in hand, the daemon exits 0 within its shutdown bound, and its final checkpoint keeps every
    page it consumed (beyond the catch-up's own last checkpoint)."""
    db = tmp_path / "paper.db"
    last = backlog.agg_trades[SYMBOL].ids[-1]
    with exchange_thread(backlog, rate=200) as (urls, unpace):
        behind = fall_behind(urls, unpace, tmp_path, last)
        proc = start(urls, tmp_path, "--checkpoint-every", "3600", streams="aggTrade")
        wait_for("a checkpoint inside the catch-up",
                 lambda: logged(tmp_path, '"backfill_checkpointed"'))
        sigterm_while_stopped(proc)  # lands in the catch-up, however slow the machine
        saved = cursor(db)
        err = finish(proc, tmp_path)
    assert proc.returncode == 0, err[-2000:]
    assert '"backfill_abandoned"' in err and '"shutdown_timeout"' not in err
    assert "Traceback" not in err
    assert behind < saved <= cursor(db) < last
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("select status from runs").fetchall() == [("finished",)]

