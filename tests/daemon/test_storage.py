"""What the daemon and replay do when storage fails or a kill comes: the recording holds every id
the checkpoints cover, and a full disk is an error at once — health red, no new orders, the
watchdog starved after ``store.watchdog_failures`` — that ends a command with one line.

The full disk is real: a small tmpfs mounted for the test (root, or a user namespace, is needed;
the tests skip naming why when neither is available)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ares_stream.feed import RawFrame
from ares_stream.feed.recording import RecordingSource, expand_paths
from ares_stream.sim.exchange import Faults, Tape
from tests.daemon.test_ingest import exchange_in_thread
from tests.daemon.test_lifecycle import (
    CONFIG,
    SYMBOL,
    finish,
    logged,
    receive,
    scrape_metrics,
    start,
    wait_for,
    wait_for_predictions,
)

ROOT = Path(__file__).resolve().parents[2]
KLINES = Path("/work/shared/data/klines/BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz")




@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs at ``tmp_path/disk``: a disk that really fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("a full disk needs a tmpfs mount: run as root (mount -t tmpfs)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for a full disk: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` to the last byte, then free ``leave`` bytes; the filler file (delete it to
    free the space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
        if leave:
            os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)
    return filler


def recorded_ids(directory: Path) -> tuple[list[int], int]:
    """The aggregate trade ids in every recording under ``directory``, and the gap markers."""
    ids = []
    source = RecordingSource(expand_paths([str(directory)]))
    for item in source:
        if isinstance(item, RawFrame):
            data = json.loads(item.data)
            ids.append(int(data.get("data", data)["a"]))
    return ids, source.stats["markers"]


def newest_cursor(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute("select cursors from checkpoints order by id desc limit 1").fetchone()
    return int(json.loads(row[0])[f"{SYMBOL}|agg_id"])


def test_the_recording_holds_every_id_its_checkpoints_cover(tape: Tape, tmp_path: Path) -> None:
    """SIGKILLed at random points with checkpoints 5 times a second (the recording flushes once
    a second): after the restarts the recordings hold every id up to the newest checkpoint's
    cursor — the recorder is synced before each checkpoint, so a restart that resumes from the
    cursor never leaves a hole between one file's last id and the next file's first."""
    rng = random.Random(11)
    db = tmp_path / "paper.db"
    with exchange_in_thread(tape, rate=300, faults=Faults()) as urls:
        for i in range(6):
            proc = start(urls, tmp_path, "--checkpoint-every", "0.2", streams="aggTrade")
            if i == 0:
                wait_for_predictions(db, 3)
            starts = i + 1
            wait_for("this start's READY",
                     lambda: (tmp_path / "daemon.log").read_text().count('"daemon_started"')
                     >= starts)  # noqa: B023 - waited for within this iteration
            time.sleep(rng.uniform(0.5, 1.5))  # a random kill point, not a wait for anything
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    ids, gaps = recorded_ids(tmp_path / "recordings")
    cursor = newest_cursor(db)
    assert gaps == 0
    have = set(ids)
    missing = [i for i in range(min(ids), cursor + 1) if i not in have]
    assert not missing, f"{len(missing)} ids the checkpoint covers are not recorded: {missing[:5]}"


def test_a_full_disk_turns_health_red_halts_and_ends_with_one_line(
        tape: Tape, tmp_path: Path, small_disk: Path) -> None:
    """The database's disk fills up under a running daemon: at once a ``checkpoint_failed``
    error, ``ares_healthy`` 0 with the failures counted, the watchdog starved after
    ``store.watchdog_failures`` (2) failures; space freed: ``checkpoint_recovered``, healthy
    again. Filled again, SIGTERM ends it with exit 1, one line naming the disk, no traceback,
    and the run marked failed."""
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "600000"}
    db = small_disk / "paper.db"
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(CONFIG.format(recordings=tmp_path / "recordings")
                   + "[store]\nwatchdog_failures = 2\n")
    messages: list[bytes] = []
    with exchange_in_thread(tape, rate=300, faults=Faults()) as urls:
        proc = subprocess.Popen(
            [sys.executable, "daemon.py", "--paper", "--symbols", SYMBOL, "--streams", "aggTrade",
             "--ws-url", urls["ws"], "--rest-url", urls["rest"], "--db", str(db), "--config",
             str(cfg), "--log-json", "--checkpoint-every", "0.3"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "daemon.log").open("a"), text=True)
        try:
            wait_for_predictions(db, 3)
            port = next(json.loads(line)["metrics_port"]
                        for line in (tmp_path / "daemon.log").open()
                        if '"daemon_started"' in line)
            filler = fill(small_disk)
            wait_for("checkpoint_failed", lambda: logged(tmp_path, '"checkpoint_failed"'))
            wait_for("two failures in a row",
                     lambda: scrape_metrics(port)[("ares_checkpoint_failures", ())] >= 2)
            assert scrape_metrics(port)[("ares_healthy", ())] == 0
            receive(sock, messages, 1.0, lambda: False)  # what was sent before: drained
            messages.clear()
            receive(sock, messages, 3.0, lambda: False)  # 10 watchdog periods: none may come
            assert b"WATCHDOG=1" not in b"".join(messages), "a failing daemon fed the watchdog"
            assert any(b"CHECKPOINT FAILING" in m for m in messages)
            filler.unlink()
            wait_for("checkpoint_recovered", lambda: logged(tmp_path, '"checkpoint_recovered"'))
            wait_for("healthy again", lambda: scrape_metrics(port)[("ares_healthy", ())] == 1)
            receive(sock, messages, 60, lambda: b"WATCHDOG=1" in b"".join(messages))
            assert b"WATCHDOG=1" in b"".join(messages)
            fill(small_disk)
            wait_for("failing again",
                     lambda: (tmp_path / "daemon.log").read_text().count('"checkpoint_failed"')
                     > 2)
        finally:
            proc.send_signal(signal.SIGTERM)
            err = finish(proc, tmp_path)
            sock.close()
    assert proc.returncode == 1, err[-2000:]
    assert "Traceback" not in err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith("ares-stream run: error: cannot write") and "disk" in last, last
    (small_disk / "filler").unlink()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        status, summary = conn.execute("select status, summary from runs").fetchone()
    assert status == "failed" and "cannot write" in summary


@pytest.mark.skipif(not KLINES.exists(), reason=f"needs {KLINES}")
def test_replay_onto_a_full_disk_ends_with_one_line_and_a_failed_run(
        tmp_path: Path, small_disk: Path) -> None:
    """A replay whose database fills the disk: exit 1, one line on stderr, no traceback, the run
    marked failed with the reason."""
    db = small_disk / "replay.db"
    fill(small_disk, leave=3 << 20)
    done = subprocess.run(
        [sys.executable, "-m", "ares_stream.cli", "replay", str(KLINES), "--db", str(db)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert errors == [f"ares-stream replay: error: cannot write {db}: database or disk is full "
                      "(is the disk full?)"], done.stderr[-2000:]
    with contextlib.closing(sqlite3.connect(db)) as conn:
        status, summary = conn.execute("select status, summary from runs").fetchone()
    assert status == "failed" and "disk is full" in summary


def test_storage_failures_are_told_apart_from_other_errors() -> None:
    from ares_stream.store.failures import storage_failure

    assert storage_failure(OSError(errno.EDQUOT, "Disk quota exceeded")) is not None
    assert storage_failure(sqlite3.OperationalError("no such table: runs")) is None
    assert storage_failure(PermissionError(errno.EACCES, "denied")) is None


def test_a_full_recording_disk_ends_the_daemon_with_one_line(
        tape: Tape, tmp_path: Path, small_disk: Path) -> None:
    """The recordings' disk fills up (the database's does not): the recording cannot hold what
    the next checkpoint would cover, so the daemon ends — exit 1, one line naming the disk, no
    traceback — and its run is marked failed; the newest checkpoint is still one whose frames
    are all recorded."""
    db = tmp_path / "paper.db"
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(CONFIG.format(recordings=small_disk / "recordings"))
    with exchange_in_thread(tape, rate=300, faults=Faults()) as urls:
        proc = subprocess.Popen(
            [sys.executable, "daemon.py", "--paper", "--symbols", SYMBOL, "--streams", "aggTrade",
             "--ws-url", urls["ws"], "--rest-url", urls["rest"], "--db", str(db), "--config",
             str(cfg), "--log-json", "--checkpoint-every", "0.3"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(tmp_path / "daemon.log").open("a"),
            text=True)
        try:
            wait_for_predictions(db, 3)
            fill(small_disk)
            wait_for("the daemon to end", lambda: proc.poll() is not None)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            err = finish(proc, tmp_path)
    assert proc.returncode == 1, err[-2000:]
    assert "Traceback" not in err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last == (f"ares-stream run: error: cannot write the recording in {small_disk}/"
                    "recordings: No space left on device (is the disk full?)"), last
    assert '"reason": "the recording failed"' in err
    with contextlib.closing(sqlite3.connect(db)) as conn:
        status, summary = conn.execute("select status, summary from runs").fetchone()
    assert status == "failed" and "No space left" in summary
    (small_disk / "filler").unlink()
    ids, _ = recorded_ids(small_disk / "recordings")
    missing = set(range(min(ids), newest_cursor(db) + 1)) - set(ids)
    assert not missing, f"{len(missing)} ids the checkpoint covers are not recorded"
