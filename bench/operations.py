"""Operations under load: the demo at 800x with the dashboard open and alerts firing.

    .venv/bin/python bench/operations.py [--runs 2] [--speed 800] [--sim-seconds 43200]

Each run plays the demo (``python3 tasks.py demo``: the paper daemon against the simulated
exchange, 12 simulated hours of 10 s bars at 800x, the planted concept flip half-way) twice,
interleaved so that the machine's drift hits both alike:

- **plain**: the daemon alone, no webhook;
- **watched**: the same daemon with a webhook (a local aiohttp server) in ``[alerts]``, and
  ``ares-stream monitor`` serving its database, open in headless Chromium (when installed) and
  followed by an event-stream client of ours that notes when each snapshot arrives.

Measured, per drift event the daemon detected (its ``drift_detected`` log line, read from its
stderr as it is written):

- **log → row**: until the row is in the database file (a reader polling every 20 ms) — the
  daemon writes its rows at each checkpoint (``--checkpoint-every``, 5 s);
- **row → dashboard**: from the row's commit until an event-stream snapshot holding it arrives:
  the dashboard's own delay (the issue's "within 5 s of the daemon recording it");
- **log → dashboard**: the two together;
- **log → webhook**: until the local webhook receives the drift alert.

And the daemon's engine lag (a frame's arrival to the end of its processing, the ``lag_stats``
rows it writes each period): the median and the worst of the periods' p99, plain against watched.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

ROOT = Path(__file__).resolve().parents[1]
ALERTS = """
[alerts]
webhooks = ["{url}/hook"]
min_interval_s = 0.0
dedup_s = 0.0           # every drift is measured (a deployment keeps the 5-minute dedup)
max_per_minute = 600
"""


class Receiver:
    """A webhook on 127.0.0.1 (its own thread and loop): notes when each body arrives."""

    def __init__(self) -> None:
        self.bodies: list[tuple[float, dict[str, Any]]] = []
        self.url = ""
        self._stop = threading.Event()

    @contextlib.contextmanager
    def running(self) -> Iterator[Receiver]:
        ready = threading.Event()

        async def handle(request: web.Request) -> web.Response:
            self.bodies.append((time.time(), await request.json()))
            return web.Response(text="ok")

        async def serve() -> None:
            app = web.Application()
            app.router.add_post("/hook", handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"
            ready.set()
            while not self._stop.is_set():
                await asyncio.sleep(0.05)
            await runner.cleanup()

        thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
        thread.start()
        ready.wait(30)
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(10)


def follow_stream(url: str, seen: dict[tuple[str, int], float], stop: threading.Event) -> None:
    """Read the dashboard's event stream; note when each drift event first arrives."""
    async def main() -> None:
        async with ClientSession(timeout=ClientTimeout(total=None)) as session, \
                session.get(url + "api/events") as resp:
            async for raw in resp.content:
                if stop.is_set():
                    return
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                now = time.time()
                snap = json.loads(line[5:])
                for d in snap.get("drift") or []:
                    seen.setdefault((d["symbol"], int(d["ts_event_ns"])), now)

    with contextlib.suppress(Exception):
        asyncio.run(main())


def poll_rows(db: Path, seen: dict[tuple[str, int], float], stop: threading.Event) -> None:
    """Note when each drift row is first readable in the database file."""
    while not stop.is_set():
        with contextlib.suppress(sqlite3.Error), \
                contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            for sym, ts in conn.execute("SELECT symbol, ts_event FROM drift_events"):
                seen.setdefault((sym, int(ts)), time.time())
        time.sleep(0.02)


def read_log(proc: subprocess.Popen[str], drifts: dict[tuple[str, int], float],
             log: list[str]) -> None:
    """The daemon's JSON log lines as they come; ``drift_detected`` times noted."""
    assert proc.stderr is not None
    for line in proc.stderr:
        now = time.time()
        log.append(line)
        if '"drift_detected"' in line:
            with contextlib.suppress(ValueError, KeyError):
                e = json.loads(line)
                drifts.setdefault((e["symbol"], int(e["ts_event"])), now)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def browser(url: str) -> Any:
    """Headless Chromium on the dashboard (None when Chromium or selenium is missing)."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return None
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or ""), options=opts)
    driver.get(url)
    return driver


def run_once(args: argparse.Namespace, watched: bool, seed: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="ops-"))
    db = tmp / "paper.db"
    config = (ROOT / "configs" / "demo.toml").read_text()
    config += f'\n[feed]\nrecordings_dir = "{tmp}/recordings"\n[report]\nevery_hours = 0\n'
    logged: dict[tuple[str, int], float] = {}
    rows: dict[tuple[str, int], float] = {}
    shown: dict[tuple[str, int], float] = {}
    log: list[str] = []
    stop = threading.Event()
    with contextlib.ExitStack() as stack:
        rx = stack.enter_context(Receiver().running()) if watched else None
        if rx is not None:
            config += ALERTS.format(url=rx.url)
        (tmp / "ops.toml").write_text(config)
        monitor = dashboard = None
        threads = [threading.Thread(target=poll_rows, args=(db, rows, stop), daemon=True)]
        if watched:
            port = free_port()
            monitor = subprocess.Popen(
                [sys.executable, "-m", "ares_stream.cli", "monitor", "--db", str(db), "--port",
                 str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                text=True)
            assert monitor.stdout is not None
            url = monitor.stdout.readline().split()[-1]
            dashboard = browser(url)
            threads.append(threading.Thread(target=follow_stream, args=(url, shown, stop),
                                            daemon=True))
        for t in threads:
            t.start()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "daemon.py", "--paper", "--feed", "sim", "--sim-seconds",
             str(args.sim_seconds), "--speed", str(args.speed), "--seed", str(seed), "--config",
             str(tmp / "ops.toml"), "--db", str(db), "--log-json"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        reader = threading.Thread(target=read_log, args=(proc, logged, log), daemon=True)
        reader.start()
        proc.wait()
        reader.join(30)
        wall = time.perf_counter() - t0
        deadline = time.time() + 10  # the last rows and alerts may still be on their way
        while time.time() < deadline and watched and any(k not in shown for k in logged):
            time.sleep(0.1)
        stop.set()
        if dashboard is not None:
            dashboard.quit()
        if monitor is not None:
            monitor.terminate()
            monitor.wait(30)
    hooks = {}
    for t, body in (rx.bodies if rx is not None else []):
        if body.get("event") == "drift":
            hooks.setdefault((body.get("symbol"), int(body.get("ts_event", -1))), t)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        lag = [json.loads(d) for (d,) in conn.execute(
            "SELECT detail FROM feed_health WHERE kind = 'lag_stats' ORDER BY id")]
    p99 = [x["p99_ms"] for x in lag if x.get("frames")]
    out = {"watched": watched, "seed": seed, "wall_s": wall, "drifts": len(logged),
           "p99_median": statistics.median(p99) if p99 else float("nan"),
           "p99_max": max(p99) if p99 else float("nan"), "periods": len(p99),
           "browser": dashboard is not None, "exit": proc.returncode,
           "log_to_row": [rows[k] - t for k, t in logged.items() if k in rows],
           "row_to_shown": [shown[k] - rows[k] for k in logged if k in shown and k in rows],
           "log_to_shown": [shown[k] - t for k, t in logged.items() if k in shown],
           "log_to_hook": [hooks[k] - t for k, t in logged.items() if k in hooks],
           "missed_dashboard": sum(k not in shown for k in logged) if watched else 0,
           "missed_hook": sum(k not in hooks for k in logged) if watched else 0}
    if proc.returncode != 0:
        sys.stderr.write("".join(log[-20:]))
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values) * 1e3:,.0f} / {max(values) * 1e3:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--speed", type=float, default=800.0)
    ap.add_argument("--sim-seconds", type=int, default=43_200)
    ap.add_argument("--seed", type=int, default=7, help="first seed; run k uses seed + k")
    args = ap.parse_args()
    results = []
    for k in range(args.runs):
        for watched in (False, True) if k % 2 == 0 else (True, False):
            r = run_once(args, watched, args.seed + k)
            results.append(r)
            print(f"run {k} {'watched' if watched else 'plain  '}: {r['wall_s']:.0f} s, "
                  f"{r['drifts']} drifts, lag p99 median {r['p99_median']:.2f} ms, "
                  f"exit {r['exit']}", flush=True)
    print()
    print("| variant | runs | drifts | log -> row ms (median / max) | row -> dashboard | "
          "log -> dashboard | log -> webhook | missed (dashboard / webhook) | "
          "lag p99 ms, median of periods | worst period p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for watched in (False, True):
        rs = [r for r in results if r["watched"] == watched]

        def cat(key: str, rs: list[dict[str, Any]] = rs) -> list[float]:
            return [v for r in rs for v in r[key]]
        name = "watched (dashboard" + (" + browser" if any(r["browser"] for r in rs) else "") \
            + " + webhook)" if watched else "plain"
        print(f"| {name} | {len(rs)} | {sum(r['drifts'] for r in rs)} | "
              f"{_ms(cat('log_to_row'))} | {_ms(cat('row_to_shown'))} | "
              f"{_ms(cat('log_to_shown'))} | {_ms(cat('log_to_hook'))} | "
              f"{sum(r['missed_dashboard'] for r in rs)} / {sum(r['missed_hook'] for r in rs)}"
              f" | {statistics.median(r['p99_median'] for r in rs):.2f} | "
              f"{max(r['p99_max'] for r in rs):.2f} |")


if __name__ == "__main__":
    main()
