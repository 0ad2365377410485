"""A tampered checkpoint row runs nothing: the daemon refuses it, says why, and runs on from a cold
engine state (the checkpoint's feed cursor still resumes the run)."""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ares_stream import codec
from ares_stream.sim.exchange import Faults, Tape
from tests.daemon.test_ingest import exchange_in_thread
from tests.daemon.test_lifecycle import (
    SYMBOL,
    finish,
    logged,
    prediction_count,
    start,
    wait_for,
    wait_for_predictions,
)


class Exploit:
    """Pickles to ``os.system("touch <marker>")``: what unpickling the row would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, (f"touch {self.marker}",)


def crafted(kind: str, marker: Path) -> bytes:
    """A checkpoint state that would create ``marker`` if it were loaded the unsafe way."""
    if kind == "pickle":
        return pickle.dumps({"state": Exploit(marker), "counts": {}, "config": {}})
    tree = [codec.DICT, "state", [codec.OBJ, [codec.GLOBAL, "os", "system"], [f"touch {marker}"]]]
    payload = msgspec.msgpack.encode(tree)
    return msgspec.msgpack.encode([codec.FORMAT, codec.VERSION,
                                   hashlib.sha256(payload).digest(), payload])


def test_the_pickle_really_runs_when_unpickled(tmp_path: Path) -> None:
    """The crafted pickle is a live exploit (in a throwaway process), so the test below that it
    does not run means something."""
    control = tmp_path / "control"
    unpickle = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
    subprocess.run([sys.executable, "-c", unpickle], input=crafted("pickle", control), check=True)
    assert control.exists()


@pytest.mark.parametrize("kind", ["pickle", "codec naming os.system"])
def test_a_tampered_checkpoint_is_refused_and_the_daemon_runs_cold(
        tape: Tape, tmp_path: Path, kind: str) -> None:
    """A crash leaves a run to resume; its checkpoint rows are replaced by a crafted state (an
    old-style pickle, or a checksummed codec payload naming os.system). On restart the file the
    payload would create does not appear, the daemon logs ``checkpoint_refused`` with the reason,
    predicts on from a cold engine state and writes its next checkpoints in the codec's format."""
    db, marker = tmp_path / "paper.db", tmp_path / "pwned"
    with exchange_in_thread(tape, rate=400, faults=Faults()) as urls:
        proc = start(urls, tmp_path, "--checkpoint-every", "0.3", streams="aggTrade")
        wait_for_predictions(db, 5)
        wait_for("a checkpoint that counts predictions", lambda: _counted(db) > 0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        with sqlite3.connect(db) as conn:
            (good,) = conn.execute("SELECT state FROM checkpoints ORDER BY id DESC LIMIT 1"
                                   ).fetchone()
            conn.execute("UPDATE checkpoints SET state = ?", (crafted(kind, marker),))
        before = prediction_count(db)
        proc = start(urls, tmp_path, "--checkpoint-every", "0.3", streams="aggTrade")
        wait_for("the refusal", lambda: logged(tmp_path, '"checkpoint_refused"'))
        wait_for("predictions after the refusal", lambda: prediction_count(db) >= before + 5)
        proc.send_signal(signal.SIGTERM)
        err = finish(proc, tmp_path)
    assert not marker.exists()
    assert proc.returncode == 0, err[-3000:]
    refusal = next(line for line in err.splitlines() if '"checkpoint_refused"' in line)
    reason = "a pickle" if kind == "pickle" else "os.system is not on the codec's allowlist"
    assert reason in refusal and "cold start of the engine state" in refusal
    assert "Traceback" not in err
    with sqlite3.connect(db) as conn:
        (state,) = conn.execute("SELECT state FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1  # the run resumed
    # the engine's prediction counter: a restored one goes on from the killed run's count
    now, then = codec.loads(state)["state"][SYMBOL], codec.loads(good)["state"][SYMBOL]
    assert then.predictions > 0 and now.predictions > 0
    assert now.predictions < then.predictions + (prediction_count(db) - before)


def _counted(db: Path) -> int:
    """The predictions the newest checkpoint's engine state counts (0 before one). The rows go
    to disk just before the state, so rows alone do not mean a checkpoint counts them."""
    try:
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT state FROM checkpoints ORDER BY id DESC LIMIT 1"
                               ).fetchone()
    except sqlite3.OperationalError:
        return 0
    return 0 if row is None else int(codec.loads(row[0])["state"][SYMBOL].predictions)


def _start_with(urls: dict[str, str], tmp: Path, extra_toml: str) -> subprocess.Popen[str]:
    from tests.daemon.test_lifecycle import CONFIG

    cfg = tmp / "changed.toml"
    cfg.write_text(CONFIG.format(recordings=tmp / "recordings") + extra_toml)
    return subprocess.Popen(
        [sys.executable, "daemon.py", "--paper", "--symbols", SYMBOL, "--streams", "aggTrade",
         "--ws-url", urls["ws"], "--rest-url", urls["rest"], "--db", str(tmp / "paper.db"),
         "--config", str(cfg), "--log-json", "--checkpoint-every", "0.3"],
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.DEVNULL,
        stderr=(tmp / "daemon.log").open("a"), text=True)


def test_a_restart_keeps_the_learned_state_unless_what_shapes_it_changed(
        tape: Tape, tmp_path: Path) -> None:
    """After a crash, an upgrade's new config key or new trading limits keep the checkpoint's
    engine state (the prediction counter goes on); a changed learner setting starts it cold and
    says which."""
    db = tmp_path / "paper.db"
    log = tmp_path / "daemon.log"

    def crash(proc: subprocess.Popen[str], starts: int) -> bytes:
        wait_for("this start's READY", lambda: log.read_text().count('"daemon_started"') >= starts)
        n = _newest_checkpoint(db)
        wait_for("a checkpoint of this start", lambda: _newest_checkpoint(db) > n)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        with sqlite3.connect(db) as conn:
            return bytes(conn.execute("SELECT state FROM checkpoints ORDER BY id DESC LIMIT 1"
                                      ).fetchone()[0])

    with exchange_in_thread(tape, rate=400, faults=Faults()) as urls:
        proc = _start_with(urls, tmp_path, "")
        wait_for_predictions(db, 5)
        first = crash(proc, 1)
        with sqlite3.connect(db) as conn:  # as if written by a version without these keys
            saved = codec.loads(first)
            del saved["config"]["store"]["watchdog_failures"], saved["config"]["learner"]["shrink"]
            conn.execute("UPDATE checkpoints SET state = ?", (codec.dumps(saved),))
        kept = crash(_start_with(urls, tmp_path, "[trading]\nmax_daily_loss = 123.0\n"), 2)
        assert '"checkpoint_config_changed"' not in log.read_text()
        proc = _start_with(urls, tmp_path, "[learner]\nlr = 0.05\n")
        wait_for("the cold start", lambda: logged(tmp_path, '"checkpoint_config_changed"'))
        proc.send_signal(signal.SIGTERM)
        err = finish(proc, tmp_path)
    assert proc.returncode == 0, err[-2000:]
    changed = next(line for line in err.splitlines() if '"checkpoint_config_changed"' in line)
    assert '"learner.lr"' in changed and "trading" not in changed
    then, now = codec.loads(first)["state"][SYMBOL], codec.loads(kept)["state"][SYMBOL]
    assert now.predictions > then.predictions > 0  # resumed, not restarted from 0


def _newest_checkpoint(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT coalesce(max(id), 0) FROM checkpoints").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
