"""The simulated exchange: the simulator paced at a multiple of real time over a real loopback
websocket and REST server, the ``sim-exchange`` command as a process, and the daemon's
``--feed sim`` run to its end."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from ares_stream.errors import AresError
from ares_stream.sim.exchange import LocalExchange, Tape
from ares_stream.sim.harness import ExchangeThread, fresh_db, simulated, targets
from ares_stream.sim.simulator import Schedule, SimSpec, frames, schedule_of, write_recording
from tests.conftest import DEADLINE

ROOT = Path(__file__).resolve().parents[2]
SPEC = SimSpec(seconds=120, seed=5)
QUIET = "[metrics]\nport = 0\n[batch]\nenabled = false\n[bars]\ninterval = \"10s\"\n"


async def _receive_all(url: str, n: int) -> list[tuple[float, bytes]]:
    """``n`` frames of a combined-stream connection, each with its arrival (monotonic s)."""
    got: list[tuple[float, bytes]] = []
    async with connect(url, max_size=None) as ws:
        while len(got) < n:
            message = await asyncio.wait_for(ws.recv(), 30)
            got.append((time.monotonic(), message.encode() if isinstance(message, str)
                        else message))
    return got


def test_paced_exchange_serves_the_simulator_at_speed() -> None:
    """At speed 40, two simulated minutes take (at least) 3 s, every frame is the simulator's own
    bytes in order, and no frame goes out before start + (t_i - t_0) / speed.

    How late a busy machine lets the frames go is a matter of its speed (bench/), not checked
    here."""
    sim = list(frames(SPEC))
    tape = Tape.from_frames(sim)

    async def main() -> tuple[list[tuple[float, bytes]], float]:
        async with LocalExchange(tape, speed=40, ping_interval=None) as ex:
            url = f"{ex.ws_url}/stream?streams=simusdt@aggTrade/simusdt@bookTicker"
            got = await _receive_all(url, len(sim))
            assert ex.started is not None  # loop time: time.monotonic(), as the arrivals
            return got, ex.started

    got, started = asyncio.run(main())
    assert [m for _, m in got] == [b'{"stream":"%s","data":%s}' % (s.encode(), p)
                                   for _, s, p in sim]
    span = (sim[-1][0] - sim[0][0]) / 1e9 / 40
    assert got[-1][0] - started >= span - 0.001
    # the clock sends a frame due within 1 ms at once
    early = max((t - sim[0][0]) / 1e9 / 40 - (a - started)
                for (a, _), (t, _, _) in zip(got, sim, strict=True))
    assert early <= 0.001


def test_rate_and_speed_are_exclusive() -> None:
    """Pacing by frames/s and by tape time at once is refused, as is a speed of 0."""
    tape = Tape.from_frames(frames(SimSpec(seconds=10)))
    with pytest.raises(ValueError, match="exclusive"):
        LocalExchange(tape, rate=100, speed=2)
    with pytest.raises(ValueError, match="speed"):
        LocalExchange(tape, speed=0)


def test_tape_from_frames_equals_tape_from_the_recording(tmp_path: Path) -> None:
    """A tape built straight from the simulator holds the frames, receive times and REST rows
    of the tape read back from the same spec's recording."""
    write_recording(tmp_path / "s.gz", SPEC)
    direct, recorded = Tape.from_frames(frames(SPEC)), Tape.from_recording([tmp_path / "s.gz"])
    assert direct.frames == recorded.frames and direct.times == recorded.times
    assert direct.agg_trades["SIMUSDT"].rows == recorded.agg_trades["SIMUSDT"].rows
    assert list(direct) == list(frames(SPEC))


def test_exchange_thread_finishes_and_targets_are_the_last_ids() -> None:
    """The in-process exchange on its own thread sets ``done`` after the whole tape went out to
    a subscriber, and the consumer's targets are the tape's last aggregate trade id."""
    feed = simulated(seconds=60, seed=2, symbol="SIMUSDT", streams=["aggTrade"], speed=60)
    want = targets(feed.tape, ["aggTrade", "bookTicker"])
    assert want == {("SIMUSDT", "agg_id"): feed.tape.agg_trades["SIMUSDT"].ids[-1]}
    with ExchangeThread(feed) as ex:
        url = f"{ex.ws_url}/ws/simusdt@aggTrade"
        got = asyncio.run(_receive_all(url, len(feed.tape.frames)))
        assert ex.done.wait(DEADLINE)
    assert json.loads(got[-1][1])["a"] == want[("SIMUSDT", "agg_id")]


def test_a_simulated_run_needs_a_fresh_database(tmp_path: Path) -> None:
    """The default database is replaced (with its WAL); a named one that exists is refused."""
    default = tmp_path / "paper-seed1.db"
    for name in ("paper-seed1.db", "paper-seed1.db-wal"):
        (tmp_path / name).write_text("old")
    assert fresh_db(None, default) == default and not list(tmp_path.iterdir())
    (tmp_path / "mine.db").write_text("old")
    with pytest.raises(AresError, match="fresh database"):
        fresh_db(tmp_path / "mine.db", default)


def _start_cli(*args: str) -> tuple[subprocess.Popen[str], dict[str, str], str]:
    """``ares-stream sim-exchange ARGS`` as a process; its URLs and banner once printed."""
    proc = subprocess.Popen([sys.executable, "-m", "ares_stream.cli", "sim-exchange", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    urls, banner = {}, ""
    while "Ctrl-C" not in banner:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "no output"
        banner += line
        found = re.search(r"(websocket|REST) +(\S+://\S+)$", line.strip())
        if found:
            urls[found[1]] = found[2]
    return proc, urls, banner


def test_cli_prints_urls_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    """``sim-exchange`` prints its URLs, writes the schedule, serves REST and the stream, keeps
    serving after the tape, and exits 0 on SIGTERM."""
    schedule = tmp_path / "sched.json"
    proc, urls, banner = _start_cli("--seconds", "60", "--seed", "4", "--speed", "60",
                            "--schedule", str(schedule))
    try:
        with urllib.request.urlopen(f"{urls['REST']}/api/v3/ping", timeout=30) as r:
            assert r.status == 200
        n = len(list(frames(SimSpec(seconds=60, seed=4))))
        asyncio.run(_receive_all(f"{urls['websocket']}/stream?streams=simusdt@aggTrade/"
                                 "simusdt@bookTicker", n))
        assert proc.stdout is not None
        over = ""
        while "tape over" not in over:  # printed once the whole tape is out
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "no output"
            over += line
        with urllib.request.urlopen(f"{urls['REST']}/api/v3/ping", timeout=30) as r:
            assert r.status == 200  # still serving after the tape
        assert proc.poll() is None, "still serving after the tape"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "still serving" in over and f"{n:,} of {n:,} frames broadcast" in out
    assert f"--ws-url {urls['websocket']} --rest-url {urls['REST']}" in banner
    assert "Traceback" not in err
    planted = schedule_of(SimSpec(seconds=60, seed=4))
    planted.frames = n
    assert Schedule.from_json(schedule.read_bytes()) == planted


def test_cli_busy_port_is_one_clear_line() -> None:
    """A websocket port that is taken ends ``sim-exchange`` with exit 2 and one line."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = str(sock.getsockname()[1])
        done = subprocess.run([sys.executable, "-m", "ares_stream.cli", "sim-exchange",
                               "--seconds", "10", "--port", port], cwd=ROOT,
                              capture_output=True, text=True, timeout=2 * DEADLINE)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "cannot listen" in done.stderr


def _daemon(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "c.toml").write_text(QUIET)
    return subprocess.run(
        [sys.executable, "daemon.py", "--paper", "--feed", "sim", "--seed", "3", "--config",
         str(tmp_path / "c.toml"), "--db", str(tmp_path / "p.db"), "--quiet", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=5 * DEADLINE)


def test_daemon_feed_sim_runs_to_the_end_of_the_tape(tmp_path: Path) -> None:
    """``daemon.py --paper --feed sim`` consumes the whole simulated tape over the loopback
    websocket, then exits 0 with predictions, a final checkpoint at the tape's last trade id,
    a finished run, the summary and a report."""
    done = _daemon(tmp_path, "--sim-seconds", "600", "--speed", "300")
    assert done.returncode == 0, done.stderr[-2000:]
    feed = simulated(seconds=600, seed=3, symbol="SIMUSDT", streams=["aggTrade"], speed=1)
    last = feed.tape.agg_trades["SIMUSDT"].ids[-1]
    with sqlite3.connect(tmp_path / "p.db") as conn:
        assert conn.execute("select status from runs").fetchall() == [("finished",)]
        assert conn.execute("select count(*) from predictions").fetchone()[0] > 20
        (cursors,) = conn.execute("select cursors from checkpoints order by id desc").fetchone()
    assert json.loads(cursors)["SIMUSDT|agg_id"] == last
    assert "planted drift +0:05:00" in done.stdout and (tmp_path / "report.html").exists()


def test_daemon_duration_stops_a_long_tape_early(tmp_path: Path) -> None:
    """``--duration 2`` stops a tape that would take minutes, through the normal shutdown."""
    started = time.monotonic()
    done = _daemon(tmp_path, "--sim-seconds", "3600", "--speed", "10", "--duration", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.monotonic() - started < 120  # the tape takes 360 s; start-up a few s at most
    with sqlite3.connect(tmp_path / "p.db") as conn:
        assert conn.execute("select status from runs").fetchall() == [("finished",)]
        assert conn.execute("select count(*) from checkpoints").fetchone()[0] >= 1
