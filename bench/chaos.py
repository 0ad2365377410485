"""Crash safety under fire: ``python bench/chaos.py [--quick] [--json PATH]`` prints a table.

The local exchange (:mod:`ares_stream.sim.exchange`) runs on a thread of this process and streams
one simulated symbol's aggTrades; the daemon runs as real child processes (``daemon.py --paper
--streams aggTrade --checkpoint-every 1 --log-json``), each with its own log file and a
``NOTIFY_SOCKET`` of ours, so READY is timed as systemd sees it. Scenarios (issue 15,
"Measured"):

1. **kill series**: the exchange streams 200 trades/s the whole time; the daemon is killed with
   SIGKILL 100 times at uniformly random moments 0–5 s after READY, and 20 times during start-up
   (uniformly 0 to the median spawn→READY time so far, after the spawn), in a seeded random
   order, each kill followed by a restart; then a last start runs until it has caught up with
   what the exchange had sent when it started, and is stopped with SIGTERM (exit 0 expected).
2. **outage, SIGKILL**: the daemon keeps up with 2,500 trades/s, is SIGKILLed, stays down 60 s
   while the exchange goes on (150,000 ids), is restarted and must backfill it all over REST.
3. **outage, refused**: the same outage with the daemon alive: the exchange drops its websocket
   and refuses every new handshake (HTTP 503) for 60 s; REST stays up. The daemon reconnects
   on its own (its backoff) and must catch up over REST.

Measured per scenario (the table's rows):

- **ids lost**: ids of the tape between the first and the last id the daemon recorded that no
  recording file holds (the daemon records every frame it consumes, backfilled ones included;
  the files of all its processes together), plus ids inside ``#GAP`` markers (shown apart);
- **predictions vs an uninterrupted replay**: the final database's predictions (every run) are
  compared with ``run_replay`` of the same tape (up to the daemon's last prediction): *missing*
  and *extra* bar times, and *differing* ones (online value off by > 1e-9, or a different label
  where both have one). A trade used twice (or lost) changes its bar, its features and every
  prediction after: **ids duplicated in what the engine used** is the differing + extra count;
- **restarts that failed**: a process that exited by itself before its kill (any exit code), did
  not send READY within ``--ready-deadline`` s (a post-READY kill), or a last start that did not
  exit 0 on SIGTERM or did not catch up;
- **checkpoint progress**: the newest checkpoint's trade-id cursor after each killed process
  against before its start: *stuck* counts processes that lived at least ``--stuck-after`` s
  (2: two checkpoint periods) after READY without moving it; *went back* counts any that
  lowered it; *discarded* counts starts that did not restore the checkpoint they found
  (``checkpoint_config_changed`` / ``checkpoint_refused`` in their log: a cold engine state);
- **time to READY**: spawn → the READY datagram (p50/p90, every start that got there; target
  3 s, the issue's "READY within 3 s of start" — READY comes before the REST catch-up here),
  the daemon's own ``ready_after_s`` (from its ``daemon_started`` line), and the catch-up it
  reports (``warmup_done``, what ``status`` shows);
- **leftover processes**: descendants of a killed daemon (its children as ``/proc`` showed
  them just before the kill — the batch worker, multiprocessing's resource tracker — and any
  orphan re-parented to this process, which makes itself a child subreaper) still alive
  ``LEFTOVER_WAIT`` s after the kill; they are then killed so that the series goes on clean;
- **integrity_check**: ``PRAGMA integrity_check`` of the database after every kill.

Config (written beside the databases): 1 s bars, horizon 5, recordings on, batch learning ON at
a small setting (min_rows 100, a warm start every wall second once 10 new rows came, a 3-fold
validation every 5 s) so that the worker process and its resource tracker exist to be left
over; metrics port 0, no periodic report. The River prediction (``value``) and the labels do not
depend on batch learning, so the reference replay runs with batch learning off (fast).

``--quick``: 10 + 3 kills, 15 s outages at 1,000 trades/s (~2 minutes). The default is the
issue's full spec (~13 minutes on 2 cores). ``--json PATH`` writes every number and every
process's record; ``--keep DIR`` keeps the databases, logs and recordings. Progress goes to
stderr, the table to stdout. The code measured is whichever ``ares_stream`` this interpreter
imports (its path and commit are printed), and the run ends by saying whether that code changed
while it ran (a tree edited under a running bench fails restarts that are not the daemon's
fault: an import error half-way through a save, a config key added → checkpoint discarded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import random
import re
import select
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ares_stream
from ares_stream import logs
from ares_stream.config import load_config, replace_values
from ares_stream.events import Gap
from ares_stream.feed.recording import RecordingSource
from ares_stream.replay import run_replay
from ares_stream.sim.exchange import Faults, LocalExchange, Tape
from ares_stream.sim.simulator import write_recording

ROOT = Path(__file__).resolve().parents[1]
CODE = Path(ares_stream.__file__).resolve().parents[1]  # the checkout measured
SYMBOL = "SIMUSDT"
TRADES_PER_SECOND = 10.0  # simulator taker orders per simulated second: ~17 aggTrades per 1 s bar
LEFTOVER_WAIT = 5.0  # seconds a killed daemon's children get to die before they count as left
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
CONFIG = """
[bars]
interval = "1s"
[labels]
horizon = 5
threshold_bps = 1.0
[batch]
enabled = true
min_rows = 100
update_rows = 40
update_every = "1s"
validate_every = "5s"
validate_rows = 200
rounds_refit = 20
rounds_update = 5
max_trees = 60
folds = 3
bootstrap = 200
[metrics]
port = 0
[report]
every_hours = 0
[feed]
recordings_dir = "{recordings}"
"""
_AGG_ID = re.compile(rb'"a":(\d+)')


@dataclass(frozen=True)
class Spec:
    """What to run (``FULL`` is the issue's spec)."""

    kills: int  # SIGKILLs at random times after READY
    startup_kills: int  # SIGKILLs during start-up
    kill_rate: float  # trades/s during the kill series
    kill_window: float  # kills land uniformly 0..this many seconds after READY
    outage_s: float
    outage_rate: float  # trades/s during the outage scenarios
    outage_warm_s: float  # seconds the daemon runs live before the outage


FULL = Spec(100, 20, 200.0, 5.0, 60.0, 2_500.0, 10.0)
QUICK = Spec(10, 3, 200.0, 5.0, 15.0, 1_000.0, 5.0)


@dataclass
class Life:
    """One daemon process: how it started, how it ended, what it left."""

    n: int
    kind: str  # ready (killed after READY) | startup (killed during start-up) | final | outage
    ready_s: float | None = None  # spawn → READY datagram
    ready_after_s: float | None = None  # the daemon's own figure (daemon_started)
    catch_up_s: float | None = None  # its REST catch-up after a restart (warmup_done)
    catch_up_items: int | None = None
    kill_at_s: float | None = None  # the kill's planned time (after READY, or after spawn)
    killed_before_ready: bool | None = None
    rc: int | None = None
    failure: str = ""
    cursor_before: int = 0
    cursor_after: int = 0
    children: list[str] = field(default_factory=list)  # its descendants just before the kill
    leftovers: list[str] = field(default_factory=list)
    integrity: str = ""
    errors: list[str] = field(default_factory=list)  # events of its error lines, tracebacks
    connects: list[str] = field(default_factory=list)  # when its websocket connected (UTC ISO)
    discarded: str = ""  # the checkpoint it did not restore (checkpoint_config_changed, …)


# -- the exchange --------------------------------------------------------------------------------


@contextlib.contextmanager
def exchange_in_thread(tape: Tape, rate: float) -> Iterator[LocalExchange]:
    """A local exchange on its own thread and event loop, clock started by the first
    subscriber; yields the exchange (its position and faults are read and set from here)."""
    box: dict[str, LocalExchange] = {}
    stop = threading.Event()

    def serve() -> None:
        async def main() -> None:
            async with LocalExchange(tape, rate=rate, faults=Faults(), ping_interval=None) as ex:
                box["ex"] = ex
                while not stop.is_set():
                    await asyncio.sleep(0.02)

        asyncio.run(main())

    thread = threading.Thread(target=serve, name="local-exchange", daemon=True)
    thread.start()
    while not box and thread.is_alive():
        time.sleep(0.01)
    if not box:
        raise SystemExit("bench/chaos.py: the local exchange did not start")
    try:
        yield box["ex"]
    finally:
        stop.set()
        thread.join(timeout=30)


def make_tape(tmp: Path, frames: int, seed: int) -> Tape:
    """A simulated aggTrade-only tape of at least ``frames`` frames."""
    path = tmp / "tape.gz"
    seconds = int(frames / (1.4 * TRADES_PER_SECOND)) + 600  # ~1.45 aggTrades per order
    write_recording(path, seconds=seconds, seed=seed, symbol=SYMBOL, streams=("aggTrade",),
                    trades_per_second=TRADES_PER_SECOND)
    return Tape.from_recording([path])


def live_id(ex: LocalExchange) -> int:
    """The id of the last trade the exchange has broadcast (0 before the first)."""
    series = ex.tape.agg_trades[SYMBOL]
    n = series.visible(ex.position)
    return series.ids[n - 1] if n else 0


# -- processes -----------------------------------------------------------------------------------


def proc_stat(pid: int) -> tuple[str, int, str, str] | None:
    """``(state, ppid, start time, comm)`` of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm, rest = text[text.find("(") + 1 : text.rfind(")")], text[text.rfind(")") + 2 :].split()
    return rest[0], int(rest[1]), rest[19], comm


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def descendants(root: int) -> dict[int, tuple[str, str]]:
    """Every live descendant of ``root``: pid → (start time, what it is)."""
    parents: dict[int, list[int]] = {}
    stats = {}
    for pid in all_pids():
        st = proc_stat(pid)
        if st is not None:
            stats[pid] = st
            parents.setdefault(st[1], []).append(pid)
    found: dict[int, tuple[str, str]] = {}
    todo = list(parents.get(root, []))
    while todo:
        pid = todo.pop()
        found[pid] = (stats[pid][2], describe(pid, stats[pid][3]))
        todo += parents.get(pid, [])
    return found


def describe(pid: int, comm: str) -> str:
    """A short name: the multiprocessing role when it is one, else the command name."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        cmd = ""
    for role in ("resource_tracker", "spawn_main", "forkserver"):
        if role in cmd:
            return role
    return comm


def alive(pid: int, started: str) -> bool:
    """The same process (pid and start time) exists and is not a zombie."""
    st = proc_stat(pid)
    return st is not None and st[2] == started and st[0] != "Z"


def orphans(known: set[int]) -> dict[int, tuple[str, str]]:
    """Children of this process that it did not start (orphans given to us as subreaper);
    zombies among them are reaped."""
    me, found = os.getpid(), {}
    for pid in all_pids():
        st = proc_stat(pid)
        if st is None or st[1] != me or pid in known:
            continue
        if st[0] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        else:
            found[pid] = (st[2], describe(pid, st[3]))
    return found


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process (Linux), so none escapes a count."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def percentile(xs: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank, lower) of ``xs``; None when empty."""
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


# -- one scenario's daemons ----------------------------------------------------------------------


class Daemons:
    """Spawns, times, kills and inspects the daemon processes of one scenario (one database,
    one recordings directory, one exchange)."""

    def __init__(self, tmp: Path, ex: LocalExchange, ready_deadline: float,
                 stuck_after: float) -> None:
        self.tmp, self.ex = tmp, ex
        self.ready_deadline, self.stuck_after = ready_deadline, stuck_after
        self.db = tmp / "paper.db"
        (tmp / "logs").mkdir(parents=True, exist_ok=True)
        self.config = tmp / "daemon.toml"
        self.config.write_text(CONFIG.format(recordings=tmp / "recordings"))
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(tmp / "notify.sock"))
        self.lives: list[Life] = []
        self.started_at = 0.0
        self.current: subprocess.Popen[bytes] | None = None

    def close(self) -> None:
        if self.current is not None and self.current.poll() is None:
            self.current.kill()  # a bench interrupted half-way: our own child, by its pid
            self.current.wait(timeout=30)
        self.sock.close()

    # -- start ------------------------------------------------------------------------------

    def spawn(self, kind: str) -> tuple[subprocess.Popen[bytes], Life]:
        life = Life(len(self.lives), kind, cursor_before=self.cursor())
        self.lives.append(life)
        self._drain()
        argv = [sys.executable, "daemon.py", "--paper", "--symbols", SYMBOL, "--streams",
                "aggTrade", "--ws-url", self.ex.ws_url, "--rest-url", self.ex.rest_url,
                "--db", str(self.db), "--config", str(self.config), "--log-json",
                "--checkpoint-every", "1"]
        env = {**os.environ, "NOTIFY_SOCKET": str(self.tmp / "notify.sock")}
        with self.log_path(life).open("ab") as log:
            self.started_at = time.perf_counter()
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=log)
        self.current = proc
        return proc, life

    def log_path(self, life: Life) -> Path:
        return self.tmp / "logs" / f"daemon-{life.n:03d}-{life.kind}.log"

    def _drain(self) -> bool:
        """Read every queued datagram; whether one said READY."""
        ready = False
        while select.select([self.sock], [], [], 0)[0]:
            ready |= b"READY=1" in self.sock.recv(65536)
        return ready

    def wait_ready(self, proc: subprocess.Popen[bytes], life: Life) -> bool:
        """Wait for the READY datagram (or the process's end, or the deadline)."""
        end = time.monotonic() + self.ready_deadline
        while time.monotonic() < end and proc.poll() is None:
            if select.select([self.sock], [], [], 0.05)[0] and self._drain():
                life.ready_s = time.perf_counter() - self.started_at
                return True
        return False

    def pause(self, seconds: float) -> None:
        """Sleep, reading the notify socket meanwhile (as systemd would: a full socket makes the
        daemon's STATUS sends fail with EAGAIN)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if select.select([self.sock], [], [], min(left, 0.5))[0]:
                self._drain()

    def ready_estimate(self) -> float:
        """The median spawn → READY so far (3 s before any)."""
        done = [x.ready_s for x in self.lives if x.ready_s is not None]
        return statistics.median(done) if done else 3.0

    # -- end --------------------------------------------------------------------------------

    def kill(self, proc: subprocess.Popen[bytes], life: Life) -> None:
        """SIGKILL (unless it already ended: a failed restart), then the checks of a kill."""
        rc = proc.poll()
        if rc is not None:
            life.failure = f"exited by itself with {rc}"
            children: dict[int, tuple[str, str]] = {}
        else:
            children = descendants(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            life.children = sorted(what for _, what in children.values())
        life.rc = proc.wait(timeout=60)
        life.leftovers = self.leftovers(children)
        self.after(life)

    def stop(self, proc: subprocess.Popen[bytes], life: Life) -> None:
        """SIGTERM: the daemon must exit 0 within the shutdown bound."""
        proc.send_signal(signal.SIGTERM)
        try:
            life.rc = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            life.rc = proc.wait(timeout=30)
        if life.rc != 0:
            life.failure = life.failure or f"SIGTERM: exit {life.rc}"
        life.leftovers = self.leftovers({})
        self.after(life)

    def leftovers(self, children: dict[int, tuple[str, str]]) -> list[str]:
        """Descendants still alive ``LEFTOVER_WAIT`` s after their daemon died; killed then."""
        end = time.monotonic() + LEFTOVER_WAIT
        while True:
            left = {p: v for p, v in children.items() if alive(p, v[0])}
            left |= orphans(set())
            if not left or time.monotonic() > end:
                break
            time.sleep(0.05)
        for pid, (started, _) in left.items():
            if alive(pid, started):
                os.kill(pid, signal.SIGKILL)  # a descendant of our own child, by its pid
        deadline = time.monotonic() + 5
        while orphans(set()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return sorted(what for _, what in left.values())

    def after(self, life: Life) -> None:
        """The checks after every end: integrity, the cursor, the process's log."""
        self.current = None
        life.integrity = self.integrity()
        life.cursor_after = self.cursor()
        life.killed_before_ready = life.ready_s is None and not self._drain()
        self.read_log(life)

    def read_log(self, life: Life) -> None:
        text = self.log_path(life).read_text(errors="replace")
        if "Traceback" in text:
            life.errors.append("Traceback")
            if life.failure:  # what ended it, e.g. an ImportError of code edited meanwhile
                life.failure += ": " + text.strip().splitlines()[-1][:160]
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            event = rec.get("event")
            if event == "daemon_started":
                life.ready_after_s = rec.get("ready_after_s")
            elif event == "warmup_done" and rec.get("how") == "catch_up":
                life.catch_up_s, life.catch_up_items = rec.get("seconds"), rec.get("items")
            elif event == "feed_connected":
                life.connects.append(rec.get("timestamp", ""))
            elif event in ("checkpoint_config_changed", "checkpoint_refused"):
                life.discarded = str(event)
            if rec.get("level") in ("error", "critical"):
                life.errors.append(str(event))

    # -- the database -----------------------------------------------------------------------

    def query(self, sql: str) -> list[Any] | None:
        """Rows of ``sql`` on the database (None when it does not exist or is busy)."""
        if not self.db.exists():
            return None
        try:
            with contextlib.closing(sqlite3.connect(self.db, timeout=10)) as conn:
                return conn.execute(sql).fetchall()
        except sqlite3.Error:
            return None

    def integrity(self) -> str:
        rows = self.query("PRAGMA integrity_check")
        if rows is None:
            return "ok" if not self.db.exists() else "unreadable"
        return "; ".join(str(r[0]) for r in rows)[:200]

    def cursor(self) -> int:
        """The trade-id cursor of the newest checkpoint (0 before any)."""
        rows = self.query("SELECT cursors FROM checkpoints ORDER BY id DESC LIMIT 1")
        if not rows:
            return 0
        cursors = json.loads(rows[0][0])
        return max((int(v) for k, v in cursors.items() if k.startswith(SYMBOL)), default=0)

    def until_cursor(self, proc: subprocess.Popen[bytes], target: Callable[[], int],
                     timeout: float) -> bool:
        """Wait until the newest checkpoint covers trade id ``target()``; False if the process
        ended or ``timeout`` passed first."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and proc.poll() is None:
            if self.cursor() >= target():
                return True
            self.pause(0.2)
        return False

    def catch_up(self, proc: subprocess.Popen[bytes], life: Life, target: int,
                 timeout: float = 900.0) -> dict[str, float | None]:
        """Seconds (from now) until the checkpoint covers ``target`` (what was missed), then
        until it is within 2 s of the exchange's live head; a failure if either times out."""
        t, out = time.perf_counter(), {}
        for name, goal in (("caught_up_s", lambda: target),
                           ("at_live_s", lambda: live_id(self.ex) - int(2 * (self.ex.rate or 0)))):
            ok = self.until_cursor(proc, goal, timeout)
            out[name] = round(time.perf_counter() - t, 2) if ok else None
            if not ok:
                life.failure = life.failure or f"{name[:-2]}: not within {timeout:.0f} s"
                break
        return out


# -- scenarios -----------------------------------------------------------------------------------


def kill_series(spec: Spec, tape: Tape, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``spec.kills`` SIGKILLs after READY and ``spec.startup_kills`` during start-up, in a
    seeded random order (the first after READY), each followed by a restart; a last start."""
    rng = random.Random(args.seed)
    kinds = ["ready"] * (spec.kills - 1) + ["startup"] * spec.startup_kills
    rng.shuffle(kinds)
    kinds.insert(0, "ready")
    with exchange_in_thread(tape, spec.kill_rate) as ex:
        d = Daemons(tmp, ex, args.ready_deadline, args.stuck_after)
        try:
            for i, kind in enumerate(kinds):
                proc, life = d.spawn(kind)
                if kind == "ready":
                    kill_after_ready(d, proc, life, rng.uniform(0, spec.kill_window))
                else:
                    life.kill_at_s = rng.uniform(0, d.ready_estimate())
                    time.sleep(life.kill_at_s)  # READY may come meanwhile: after() tells
                    d.kill(proc, life)
                note(f"kill series {i + 1}/{len(kinds)}: {kind}, {progress(life)}")
            extra = final_start(d, ex, "final")
        finally:
            d.close()
    return summarise(d, tape, ex.position, extra)


def kill_after_ready(d: Daemons, proc: subprocess.Popen[bytes], life: Life, after: float) -> None:
    life.kill_at_s = after
    if not d.wait_ready(proc, life):
        life.failure = (f"exited with {proc.returncode} before READY" if proc.poll() is not None
                        else f"no READY within {d.ready_deadline:.0f} s")
    else:
        d.pause(after)
    d.kill(proc, life)


def final_start(d: Daemons, ex: LocalExchange, kind: str, timeout: float = 900.0,
                tail: float = 2.0) -> dict[str, Any]:
    """A start that runs until its checkpoint covers what the exchange had sent when it
    started and then reaches the live head (plus ``tail`` s), then SIGTERM."""
    target = live_id(ex)
    proc, life = d.spawn(kind)
    extra: dict[str, Any] = {"missed_at_start": target - life.cursor_before}
    if not d.wait_ready(proc, life):
        life.failure = "no READY"
    else:
        ready = life.ready_s or 0.0
        extra |= {k: v if v is None else round(v + ready, 2)
                  for k, v in d.catch_up(proc, life, target, timeout).items()}
        d.pause(tail)
    d.stop(proc, life)
    note(f"{kind} start: {progress(life)}, caught up after {extra.get('caught_up_s')} s, "
         f"at the live head after {extra.get('at_live_s')} s")
    return extra


def outage(spec: Spec, tape: Tape, tmp: Path, args: argparse.Namespace,
           how: str) -> dict[str, Any]:
    """The daemon live at ``spec.outage_rate``, then down ``spec.outage_s`` (``how``:
    "kill": SIGKILLed and restarted after; "refuse": the exchange drops it and refuses every
    handshake), then caught up over REST."""
    with exchange_in_thread(tape, spec.outage_rate) as ex:
        d = Daemons(tmp, ex, args.ready_deadline, args.stuck_after)
        try:
            extra = run_outage(d, ex, spec, how)
        finally:
            d.close()
    return summarise(d, tape, ex.position, extra)


def run_outage(d: Daemons, ex: LocalExchange, spec: Spec, how: str) -> dict[str, Any]:
    proc, life = d.spawn("live")
    if not d.wait_ready(proc, life):
        life.failure = "no READY"
        d.kill(proc, life)
        return {"error": "the first start never got READY"}
    d.pause(spec.outage_warm_s)
    extra: dict[str, Any] = {"behind_at_outage_ids": live_id(ex) - d.cursor(),
                             "id_at_outage": live_id(ex)}
    if how == "kill":
        d.kill(proc, life)
        d.pause(spec.outage_s)
        extra["ids_while_down"] = live_id(ex) - extra["id_at_outage"]
        extra |= final_start(d, ex, "after-outage")
        return extra
    ex.faults.refuse_connections, ex.faults.drop_every = 10**9, 1
    d.pause(spec.outage_s)
    ex.faults.drop_every, ex.faults.refuse_connections = 0, 0
    ended = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f"{time.time() % 1:.6f}"[1:]
    target = live_id(ex)
    extra["ids_while_down"] = target - extra["id_at_outage"]
    extra |= d.catch_up(proc, life, target)
    d.pause(2.0)
    d.stop(proc, life)
    extra["reconnected_s"] = seconds_after(ended, life.connects)
    note(f"refused outage: {progress(life)}, reconnected after {extra['reconnected_s']} s, "
         f"caught up after {extra['caught_up_s']} s, at the live head after "
         f"{extra.get('at_live_s')} s")
    return extra


def seconds_after(start: str, stamps: list[str]) -> float | None:
    """Seconds from ``start`` to the first of ``stamps`` after it (UTC ISO, microseconds)."""
    def parse(stamp: str) -> float:
        return time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + float(stamp[19:26])
    later = [parse(x) - parse(start) for x in stamps if x.rstrip("Z") > start]
    return round(min(later), 2) if later else None


def note(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def progress(life: Life) -> str:
    ready = "-" if life.ready_s is None else f"{life.ready_s:.2f} s"
    bad = f" FAILED: {life.failure}" if life.failure else ""
    return (f"READY {ready}, rc {life.rc}, cursor {life.cursor_before}→{life.cursor_after}, "
            f"leftovers {len(life.leftovers)}, integrity {life.integrity}{bad}")


# -- what the daemon consumed ----------------------------------------------------------------------


def recorded_ids(directory: Path) -> tuple[set[int], int, int]:
    """Trade ids in every recording file, the ids inside ``#GAP`` markers, and the frames
    recorded twice within one file (one process: duplicates its gate dropped)."""
    seen: set[int] = set()
    gap_ids, repeated = 0, 0
    for path in sorted(directory.glob("*.gz")) if directory.exists() else []:
        top = 0
        for item in RecordingSource([path]):
            if isinstance(item, Gap):
                gap_ids += item.last_missing - item.first_missing + 1
                continue
            m = _AGG_ID.search(item.data)
            if m is None:
                continue
            a = int(m[1])
            repeated += a <= top
            top = max(top, a)
            seen.add(a)
    return seen, gap_ids, repeated


def ids_lost(tape: Tape, seen: set[int]) -> tuple[int, int, int]:
    """``(lost, first, last)``: tape ids between the first and the last one seen, not seen."""
    if not seen:
        return 0, 0, 0
    first, last = min(seen), max(seen)
    ids = tape.agg_trades[SYMBOL].ids
    return sum(1 for a in ids if first <= a <= last and a not in seen), first, last


def reference(tape: Tape, upto: int, config: Path, tmp: Path) -> list[tuple[int, float, Any]]:
    """Predictions ``(ts_event, value, label)`` of an uninterrupted replay of the tape's first
    ``upto`` frames (batch learning off: the online value and the label do not depend on it)."""
    path = tmp / "reference.txt"
    with path.open("wb") as fh:
        for i, (stream, payload) in enumerate(tape.frames[:upto]):
            fh.write(b'%d {"stream":"%s","data":%s}\n' % (i + 1, stream.encode(), payload))
    cfg = replace_values(load_config(config), {"batch": {"enabled": False}})
    result = run_replay([str(path)], cfg, db_path=tmp / "reference.db")
    with contextlib.closing(sqlite3.connect(result.db_path)) as conn:
        rows = conn.execute("SELECT ts_event, value, label FROM predictions ORDER BY ts_event")
        return [tuple(r) for r in rows]


def compare(got: list[Any], want: list[Any]) -> dict[str, int]:
    """Missing, extra and differing predictions of ``got`` against ``want`` (up to got's last)."""
    if not got:
        return {"predictions": 0, "missing": len(want), "extra": 0, "differing": 0}
    last = got[-1][0]
    want_by = {w[0]: w for w in want if w[0] <= last}
    got_by = {g[0]: g for g in got}
    differing = 0
    for ts, g in got_by.items():
        w = want_by.get(ts)
        if w is not None and (abs(g[1] - w[1]) > 1e-9 or
                              (g[2] is not None and w[2] is not None and g[2] != w[2])):
            differing += 1
    return {"predictions": len(got), "missing": len(want_by.keys() - got_by.keys()),
            "extra": len(got) - len(got_by) + len(got_by.keys() - want_by.keys()),
            "differing": differing}


def summarise(d: Daemons, tape: Tape, position: int, extra: dict[str, Any]) -> dict[str, Any]:
    """Every measure of one scenario, from its processes, recordings and database."""
    seen, gap_ids, repeated = recorded_ids(d.tmp / "recordings")
    lost, first, last = ids_lost(tape, seen)
    got = d.query("SELECT ts_event, value, label FROM predictions ORDER BY ts_event") or []
    runs = d.query("SELECT count(DISTINCT run_id) FROM predictions") or [(0,)]
    cmp = compare(got, reference(tape, position, d.config, d.tmp))
    killed = [x for x in d.lives if x.rc == -signal.SIGKILL]
    restarts = d.lives[1:]
    stuck = [x.n for x in d.lives if x.ready_s is not None and x.kill_at_s is not None
             and x.kind == "ready" and x.kill_at_s >= d.stuck_after
             and x.cursor_after <= x.cursor_before]
    return {
        "ids": {"first": first, "last": last, "recorded": len(seen), "lost": lost,
                "in_gap_markers": gap_ids, "recorded_twice_in_one_process": repeated},
        "predictions": cmp, "runs_with_predictions": runs[0][0],
        "kills": {"after_ready": sum(x.kind == "ready" for x in killed),
                  "startup": sum(x.kind == "startup" for x in killed),
                  "startup_landed_before_ready": sum(bool(x.killed_before_ready) for x in killed
                                                     if x.kind == "startup"),
                  "other": sum(x.kind not in ("ready", "startup") for x in killed)},
        "failed": [f"#{x.n} {x.kind}: {x.failure}" for x in d.lives if x.failure],
        "restarts": len(restarts),
        "discarded": [f"#{x.n}: {x.discarded}" for x in d.lives if x.discarded],
        "stuck": stuck, "went_back": [x.n for x in d.lives if x.cursor_after < x.cursor_before],
        "longest_no_progress": longest_streak([x.cursor_after <= x.cursor_before
                                               for x in restarts]),
        "advance_p50": percentile([x.cursor_after - x.cursor_before for x in d.lives
                                   if x.kind == "ready"], 0.5),
        "ready_s": [x.ready_s for x in d.lives if x.ready_s is not None],
        "ready_after_s": [x.ready_after_s for x in d.lives if x.ready_after_s is not None],
        "catch_up_s": [x.catch_up_s for x in d.lives if x.catch_up_s is not None],
        "leftovers": [f"#{x.n}: {', '.join(x.leftovers)}" for x in d.lives if x.leftovers],
        "children_at_kills": sum(len(x.children) for x in killed),
        "kills_with_children": sum(bool(x.children) for x in killed),
        "leftover_count": sum(len(x.leftovers) for x in d.lives),
        "integrity_checks": len(d.lives), "integrity_bad": [
            f"#{x.n}: {x.integrity}" for x in d.lives if x.integrity != "ok"],
        "log_errors": sorted({e for x in d.lives for e in x.errors}),
        "processes_with_errors": sum(bool(x.errors) for x in d.lives),
        "exchange": {k: v for k, v in d.ex.stats.items() if v},
        "tape_ran_out": d.ex.done.is_set(),
        "extra": extra, "lives": [asdict(x) for x in d.lives],
    }


def longest_streak(flags: list[bool]) -> int:
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


# -- the table -------------------------------------------------------------------------------------


def p50_p90(xs: list[float]) -> str:
    if not xs:
        return "-"
    return f"{percentile(xs, 0.5):.2f} / {percentile(xs, 0.9):.2f}"


ROWS: list[tuple[str, str, Any, Any]] = [  # (measure, target, cell, pass?)
    ("SIGKILLs: after READY + during start-up", "≥100 + 20",
     lambda r: f"{r['kills']['after_ready'] + r['kills']['other']} + {r['kills']['startup']}",
     None),
    ("ids lost (tape ids no recording holds)", "0",
     lambda r: f"{r['ids']['lost']:,} of {r['ids']['last'] - r['ids']['first'] + 1:,}",
     lambda r: r["ids"]["lost"] == 0),
    ("  of which inside #GAP markers", "0", lambda r: f"{r['ids']['in_gap_markers']:,}",
     lambda r: r["ids"]["in_gap_markers"] == 0),
    ("ids duplicated in what the engine used", "0",
     lambda r: f"{r['predictions']['differing'] + r['predictions']['extra']:,}",
     lambda r: r["predictions"]["differing"] + r["predictions"]["extra"] == 0),
    ("predictions vs replay: missing/extra/differing", "0/0/0",
     lambda r: "{missing}/{extra}/{differing} of {predictions:,}".format(**r["predictions"]),
     lambda r: r["predictions"]["missing"] + r["predictions"]["extra"]
     + r["predictions"]["differing"] == 0 and r["predictions"]["predictions"] > 0),
    ("runs the predictions belong to", "1", lambda r: str(r["runs_with_predictions"]),
     lambda r: r["runs_with_predictions"] == 1),
    ("restarts that failed", "0", lambda r: f"{len(r['failed'])} of {r['restarts']}",
     lambda r: not r["failed"]),
    ("restarts that discarded the checkpoint", "0", lambda r: str(len(r["discarded"])),
     lambda r: not r["discarded"]),
    ("restarts stuck (no checkpoint progress)", "0", lambda r: str(len(r["stuck"])),
     lambda r: not r["stuck"]),
    ("checkpoint cursor went back", "0", lambda r: str(len(r["went_back"])),
     lambda r: not r["went_back"]),
    ("longest run of restarts without progress", "-", lambda r: str(r["longest_no_progress"]),
     None),
    ("checkpoint advance per post-READY kill p50", "-",
     lambda r: "-" if r["advance_p50"] is None else f"{r['advance_p50']:,} ids", None),
    ("time to READY p50/p90 (spawn → READY), s", "p90 ≤ 3", lambda r: p50_p90(r["ready_s"]),
     lambda r: bool(r["ready_s"]) and (percentile(r["ready_s"], 0.9) or 0.0) <= 3.0),
    ("  the daemon's ready_after_s p50/p90, s", "-", lambda r: p50_p90(r["ready_after_s"]),
     None),
    ("  catch-up as status shows it p50/p90, s", "-", lambda r: p50_p90(r["catch_up_s"]), None),
    ("leftover processes after a kill (or stop)", "0", lambda r: str(r["leftover_count"]),
     lambda r: r["leftover_count"] == 0),
    ("  descendants alive at the kills / kills", "-",
     lambda r: f"{r['children_at_kills']} at {r['kills_with_children']} of "
               f"{r['kills']['after_ready'] + r['kills']['startup'] + r['kills']['other']}", None),
    ("integrity_check not ok", "0",
     lambda r: f"{len(r['integrity_bad'])} of {r['integrity_checks']}",
     lambda r: not r["integrity_bad"]),
]


def table(results: dict[str, dict[str, Any]]) -> tuple[str, bool]:
    """The printed table (a PASS/FAIL column over the scenarios) and whether all passed."""
    names = list(results)
    rows = [("measure", "target", *names, "verdict")]
    every = True
    for label, target, cell, check in ROWS:
        ok = None if check is None else all(check(results[n]) for n in names)
        every &= ok is not False
        rows.append((label, target, *(cell(results[n]) for n in names),
                     "" if ok is None else "PASS" if ok else "FAIL"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths).rstrip())
    return "\n".join(lines), every


def details(results: dict[str, dict[str, Any]]) -> str:
    """What the table summarises: outage figures, failures, leftovers, log errors."""
    out = []
    for name, r in results.items():
        x = r["extra"]
        out.append(f"{name}: ids {r['ids']['first']:,}..{r['ids']['last']:,}, "
                   f"{r['ids']['recorded_twice_in_one_process']:,} frames recorded twice in one "
                   f"process (duplicates the gate dropped); exchange {r['exchange']}"
                   + ("; THE TAPE RAN OUT" if r["tape_ran_out"] else ""))
        if "ids_while_down" in x:
            out.append(f"  outage: {x['ids_while_down']:,} ids while down, "
                       f"{x['behind_at_outage_ids']:,} ids behind when it began; backfilled "
                       f"{x.get('caught_up_s')} s and at the live head {x.get('at_live_s')} s "
                       "after the " + (f"end of the outage (reconnected after "
                                       f"{x['reconnected_s']} s)" if "reconnected_s" in x
                                       else "restart (READY included)"))
        elif "missed_at_start" in x:
            out.append(f"  last start: {x['missed_at_start']:,} ids behind; caught up after "
                       f"{x.get('caught_up_s')} s, at the live head after {x.get('at_live_s')} s")
        for key, title in (("failed", "failed"), ("discarded", "checkpoint not restored"),
                           ("leftovers", "leftovers"),
                           ("integrity_bad", "integrity"), ("log_errors", "error log events")):
            if r[key]:
                out.append(f"  {title}: " + "; ".join(map(str, r[key][:12]))
                           + (" …" if len(r[key]) > 12 else ""))
        if r["stuck"]:
            out.append(f"  stuck processes: {r['stuck']}")
    return "\n".join(out)


def code_version() -> str:
    """Where the measured ``ares_stream`` lives, and its commit when it is a git checkout."""
    try:
        head = subprocess.run(["git", "-C", str(CODE), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(CODE), "status", "--porcelain", "--",
                                "ares_stream", "configs", "daemon.py"], capture_output=True,
                               text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return f"{CODE} (not a git checkout)"
    return f"{CODE} at {head}" + (f" + {len(dirty)} uncommitted files" if dirty else "")


def code_files() -> dict[str, int]:
    """Modification times (ns) of the code the daemon runs: a tree edited during the run
    explains failures that are not the daemon's (an import error, a changed config schema)."""
    files = [*CODE.joinpath("ares_stream").rglob("*.py"), CODE / "daemon.py",
             CODE / "configs" / "default.toml"]
    return {str(p.relative_to(CODE)): p.stat().st_mtime_ns for p in files if p.exists()}


def code_changes(before: dict[str, int]) -> str:
    after = code_files()
    changed = sorted((after.get(k, 0), k) for k in before.keys() | after.keys()
                     if before.get(k) != after.get(k))
    if not changed:
        return "the code measured did not change during the run"
    return "WARNING: the code changed during the run: " + ", ".join(
        f"{k} ({time.strftime('%H:%M:%S', time.localtime(t / 1e9))})" if t else f"{k} (removed)"
        for t, k in changed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="10 + 3 kills, 15 s outages at 1,000 trades/s (~2 min)")
    parser.add_argument("--only", choices=["kills", "outage-kill", "outage-refuse"],
                        action="append", help="run only these scenarios (repeatable)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--ready-deadline", type=float, default=120.0,
                        help="seconds a start may take to READY before it counts as failed")
    parser.add_argument("--stuck-after", type=float, default=2.0,
                        help="a process living this long after READY must move the checkpoint")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="work in DIR and keep it (databases, logs, recordings)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = parser.parse_args()
    spec = QUICK if args.quick else FULL
    only = args.only or ["kills", "outage-kill", "outage-refuse"]
    logs.configure(level="error")
    subreaper = become_subreaper()
    print(f"ares_stream: {code_version()}")
    print(f"spec: {spec}; seed {args.seed}; subreaper {subreaper}", flush=True)
    started, code = time.perf_counter(), code_files()
    with contextlib.ExitStack() as stack:
        work = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        results = run_all(spec, only, work, args)
    took = time.perf_counter() - started
    text, ok = table(results)
    print(text)
    print(details(results))
    print(code_changes(code))
    print(f"overall: {'PASS' if ok else 'FAIL'} ({took / 60:.1f} min)")
    if args.json:
        args.json.write_text(json.dumps({"code": code_version(), "code_changes":
                                         code_changes(code), "spec": asdict(spec),
                                         "seconds": round(took, 1), "pass": ok,
                                         "results": results}, indent=1, default=str))


def run_all(spec: Spec, only: list[str], work: Path,
            args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Run the scenarios on one tape long enough for the longest of them."""
    need = max(spec.kill_rate * ((spec.kills + spec.startup_kills) * 10 + 600),
               spec.outage_rate * (spec.outage_warm_s + spec.outage_s + 150))
    work.mkdir(parents=True, exist_ok=True)
    note(f"simulating a tape of ≥ {need:,.0f} aggTrades")
    tape = make_tape(work, int(need), args.seed)
    note(f"tape: {len(tape.frames):,} frames")
    results: dict[str, dict[str, Any]] = {}
    if "kills" in only:
        results["kill series"] = kill_series(spec, tape, work / "kills", args)
    for how in ("kill", "refuse"):
        if f"outage-{how}" in only:
            name = f"outage {spec.outage_s:.0f} s @ {spec.outage_rate:,.0f}/s ({how})"
            results[name] = outage(spec, tape, work / f"outage-{how}", args, how)
    return results


if __name__ == "__main__":
    main()
