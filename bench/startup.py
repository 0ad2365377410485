"""Start-up of the daemon: import time, time to READY, a SIGTERM during start-up.

    .venv/bin/python bench/startup.py [--runs 5]

Measured against a simulated exchange in its own process (``ares-stream sim-exchange``), as a
real exchange would be: every daemon run is a fresh process with ``NOTIFY_SOCKET`` pointing at a
datagram socket of ours, so READY is timed exactly as systemd sees it.

- ``--help``: ``ares-stream --help`` as a whole process;
- ``import``: ``import ares_stream.daemon.lifecycle`` in a fresh interpreter (the wall time of
  the import alone, measured inside the child);
- ``READY, cold``: process start → READY on an empty database (no checkpoint);
- ``READY, restart``: the same on the database a previous run left (a checkpoint to restore);
- ``warm-up``: the REST warm-up of the cold start (trades fetched before the first live one),
  as ``ares-stream status`` shows it;
- ``SIGTERM at +0.3 s``: a stop request in the middle of the imports: exit code and how long
  the process took to end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
[bars]
interval = "1s"
[batch]
enabled = false
[metrics]
port = 0
[report]
every_hours = 0
[feed]
recordings_dir = "{dir}/recordings"
"""


def child_seconds(code: str) -> float:
    """Wall seconds of ``code`` measured inside a fresh interpreter."""
    timed = f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", timed], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return float(out.split()[-1])


def process_seconds(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - t


def start_exchange(tmp: Path) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ares_stream.cli", "sim-exchange", "--seconds", "7200",
         "--speed", "1", "--schedule", str(tmp / "schedule.json")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    ws = rest = ""
    for line in proc.stdout:
        if m := re.search(r"websocket\s+(\S+)", line):
            ws = m[1]
        if m := re.search(r"REST\s+(\S+)", line):
            rest = m[1]
        if ws and rest:
            return proc, ws, rest
    raise SystemExit("sim-exchange did not start")


def daemon_argv(ws: str, rest: str, tmp: Path) -> list[str]:
    cfg = tmp / "daemon.toml"
    cfg.write_text(CONFIG.format(dir=tmp))
    return [sys.executable, "daemon.py", "--paper", "--symbols", "SIMUSDT", "--streams",
            "aggTrade", "--ws-url", ws, "--rest-url", rest, "--db", str(tmp / "paper.db"),
            "--config", str(cfg), "--log-json", "--checkpoint-every", "1"]


def until_ready(argv: list[str], tmp: Path, sock: socket.socket) -> float:
    """Start the daemon; seconds to READY; then SIGTERM it and wait for its exit."""
    env = {**os.environ, "NOTIFY_SOCKET": sock.getsockname()}
    with (tmp / "daemon.log").open("a") as log:
        t = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
        ready = None
        while ready is None:
            sock.settimeout(120)
            if b"READY=1" in sock.recv(4096):
                ready = time.perf_counter() - t
        time.sleep(3)  # let it run a little: the warm-up, a checkpoint to restart from
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return ready


def warmup_seconds(tmp: Path) -> float | None:
    """The cold start's REST warm-up as the daemon logged it (``warmup_done``), if it did."""
    for line in (tmp / "daemon.log").read_text().splitlines():
        if '"warmup_done"' in line:
            return float(json.loads(line)["seconds"])
    return None


def early_sigterm(argv: list[str], after: float) -> tuple[int, float]:
    t = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(after)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    return rc, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    n = ap.parse_args().runs
    rows: list[tuple[str, list[float]]] = []
    rows.append(("ares-stream --help (s)", [process_seconds(
        [sys.executable, "-m", "ares_stream.cli", "--help"]) for _ in range(n)]))
    rows.append(("import ares_stream.daemon.lifecycle (s)",
                 [child_seconds("import ares_stream.daemon.lifecycle") for _ in range(n)]))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        exchange, ws, rest = start_exchange(tmp)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(tmp / "notify.sock"))
        try:
            cold, restart, warm, codes = [], [], [], []
            for i in range(n):
                run = tmp / f"run{i}"
                run.mkdir()
                argv = daemon_argv(ws, rest, run)
                cold.append(until_ready(argv, run, sock))
                w = warmup_seconds(run)
                if w is not None:
                    warm.append(w)
                restart.append(until_ready(argv, run, sock))
                rc, took = early_sigterm(argv, 0.3)
                codes.append((rc, took))
            rows.append(("READY, cold start (s)", cold))
            rows.append(("READY, restart from a checkpoint (s)", restart))
            if warm:
                rows.append(("REST warm-up of the cold start (s)", warm))
            rows.append(("SIGTERM at +0.3 s: process ended after (s)", [t for _, t in codes]))
        finally:
            sock.close()
            exchange.send_signal(signal.SIGINT)
            exchange.wait(timeout=30)
    print(f"{'measure':<44} {'min':>7} {'median':>7} {'max':>7}")
    for name, xs in rows:
        print(f"{name:<44} {min(xs):7.3f} {statistics.median(xs):7.3f} {max(xs):7.3f}")
    print("SIGTERM at +0.3 s: exit codes", sorted({rc for rc, _ in codes}))


if __name__ == "__main__":
    main()
