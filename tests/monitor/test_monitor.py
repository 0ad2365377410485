"""``ares-stream monitor`` over a real replay's database: a real aiohttp server on 127.0.0.1, an
aiohttp client reading its event stream, the CLI in a subprocess stopped by real signals, and
Debian's headless chromium driven by selenium."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ares_stream.cli import build_parser, main
from ares_stream.config import load_config
from ares_stream.monitor import data
from ares_stream.monitor.server import POLL_S, STATIC, Dashboard
from ares_stream.replay import run_replay
from ares_stream.sim.simulator import write_recording

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "demo.toml"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
DEADLINE_S = 60.0  # what a test waits for at most: things happen well before, never a sleep


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six simulated hours of 10 s bars through the demo config (paper broker, boosters,
    validations, a drift): the run database, shared read-only by the module's tests."""
    tmp = tmp_path_factory.mktemp("monitor")
    write_recording(tmp / "sim.gz", seconds=6 * 3600, seed=3)
    db = tmp / "run.db"
    run_replay([str(tmp / "sim.gz")], load_config(DEMO), db_path=db)
    return db


@pytest.fixture()
def db(replayed: Path, tmp_path: Path) -> Path:
    """A copy of the replay's database that a test may append to."""
    return Path(shutil.copy(replayed, tmp_path / "run.db"))


@contextmanager
def running(db_path: Path, poll_s: float = POLL_S, host: str = "127.0.0.1") -> Iterator[
        Dashboard]:
    """The dashboard of ``db_path`` served on a free port by an event loop in a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    dashboard = Dashboard(db_path, host=host, port=0, poll_s=poll_s)
    asyncio.run_coroutine_threadsafe(dashboard.start(), loop).result(DEADLINE_S)
    try:
        yield dashboard
    finally:
        asyncio.run_coroutine_threadsafe(dashboard.stop(), loop).result(DEADLINE_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(DEADLINE_S)
        loop.close()


def sql(db_path: Path, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


def append_bar(db_path: Path, equity: float, **drift: Any) -> int:
    """Write one more bar of the run as the daemon would (a prediction and an equity mark 10 s
    after the newest), and a drift event with ``drift``'s fields if given; its event time."""
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            run, symbol, ts = conn.execute("SELECT run_id, symbol, MAX(ts_event) FROM "
                                           "predictions GROUP BY run_id, symbol").fetchone()
            ts += 10 * 10**9
            conn.execute("INSERT INTO predictions (run_id, symbol, ts_event, ts_init, model, "
                         "horizon, proba, value, close) VALUES (?, ?, ?, ?, 'logreg', 1, 0.777, "
                         "0.777, 43210.5)", (run, symbol, ts, ts + 1))
            conn.execute("INSERT INTO equity (run_id, ts_event, cash, positions_value, equity, "
                         "drawdown, fees) VALUES (?, ?, ?, 0, ?, 0, 1.5)",
                         (run, ts, equity, equity))
            if drift:
                conn.execute("INSERT INTO drift_events (run_id, symbol, ts_event, ts_init, "
                             "detector, mean_before, mean_after, samples_seen, action) VALUES "
                             "(?, ?, ?, ?, 'adwin', 0.6, 0.9, 10, ?)",
                             (run, drift.get("symbol", symbol), ts, ts, drift["action"]))
    finally:
        conn.close()
    return int(ts)


def utc(ns: int) -> str:
    """An event time as the page shows it."""
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        return await resp.json()


async def next_snapshot(stream: aiohttp.StreamReader) -> dict[str, Any]:
    """The next ``snapshot`` event of a server-sent event stream."""
    event, body = "", ""
    async for raw in stream:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            body = line[6:]
        elif not line and event == "snapshot":
            return dict(json.loads(body))
    raise AssertionError("the event stream ended")


def test_the_snapshot_endpoint_returns_the_runs_figures(replayed: Path) -> None:
    """``/api/snapshot`` carries the run's equity, champion, decisions, drift, fills and every
    model's rolling log loss as the database holds them; the file and its folder are left
    exactly as they were (nothing written, no -wal/-shm or lock file made)."""
    before = (replayed.read_bytes(), sorted(p.name for p in replayed.parent.iterdir()))
    with running(replayed) as dash:
        snap = asyncio.run(get_json(dash.url + "api/snapshot"))
    assert (replayed.read_bytes(), sorted(p.name for p in replayed.parent.iterdir())) == before
    assert snap["state"] == "live" and snap["run"]["symbols"] == ["SIMUSDT"]
    (equity, ts), = sql(replayed, "SELECT equity, ts_event FROM equity ORDER BY ts_event DESC "
                        "LIMIT 1")
    assert snap["pnl"]["equity"] == pytest.approx(equity) and snap["pnl"]["ts_event_ns"] == ts
    (worst, marks), = sql(replayed, "SELECT MAX(drawdown), COUNT(*) FROM equity")
    assert (snap["pnl"]["max_drawdown"], snap["pnl"]["marks"]) == (worst, marks)
    assert 0 < len(snap["equity"]["t"]) <= data.MAX_DRAWN
    assert snap["equity"]["t"][-1] == ts / 1e9
    champions = sql(replayed, "SELECT id FROM models WHERE status = 'champion'")
    assert [c["id"] for c in snap["champions"]] == [c[0] for c in champions]
    decisions = sql(replayed, "SELECT COUNT(*), SUM(promoted) FROM validations")[0]
    assert len(snap["validations"]) == decisions[0] and decisions[1] >= 1
    assert len(snap["drift"]) == sql(replayed, "SELECT COUNT(*) FROM drift_events")[0][0] >= 1
    assert snap["fills"] and snap["positions"] and snap["candidates"]
    loss = snap["loss"]
    for name in ("online", "booster", "forecast", "baseline"):
        drawn = [v for v in loss["series"][name] if v is not None]
        assert drawn and all(0 < v < 5 for v in drawn), name
        assert loss["means"][name] > 0
    assert len(loss["t"]) == len(loss["series"]["online"]) <= data.MAX_DRAWN
    assert snap["feed"]["total"]["gaps"] == 0 and snap["feed"]["lag"] is None  # a replay


def test_an_event_stream_client_gets_a_new_bar_within_five_seconds(db: Path) -> None:
    """A client of ``/api/events`` first gets the current snapshot, then, within 5 s of a new
    bar written to the database (default poll period) while a writer holds it open as a daemon
    does (read through its WAL), a snapshot that shows it."""

    async def watch(url: str) -> tuple[dict[str, Any], dict[str, Any], float, int]:
        timeout = aiohttp.ClientTimeout(total=DEADLINE_S)
        async with aiohttp.ClientSession(timeout=timeout) as http, \
                http.get(url + "api/events") as resp:
            assert resp.headers["Content-Type"] == "text/event-stream"
            first = await next_snapshot(resp.content)
            ts = await asyncio.to_thread(append_bar, db, 12345.67)
            written = time.monotonic()
            second = await asyncio.wait_for(next_snapshot(resp.content), DEADLINE_S)
            return first, second, time.monotonic() - written, ts

    daemon = sqlite3.connect(db)  # the file stays open in WAL mode, as a running daemon's
    try:
        assert daemon.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        daemon.execute("SELECT COUNT(*) FROM runs").fetchone()
        assert Path(f"{db}-wal").exists()
        with running(db) as dash:
            first, second, took, ts = asyncio.run(watch(dash.url))
    finally:
        daemon.close()
    assert first["state"] == "live" and second["version"] > first["version"]
    assert second["last_bar"]["ts_event_ns"] == ts and second["pnl"]["equity"] == 12345.67
    assert second["equity"]["t"][-1] == ts / 1e9
    assert second["pnl"]["marks"] == first["pnl"]["marks"] + 1  # read on from the last mark
    assert took < 5.0, f"the update took {took:.2f} s"


def test_feature_drift_shows_the_newest_checks_features_above_threshold(db: Path) -> None:
    """Of each symbol's feature-drift checks only the newest is shown: its features above their
    threshold, largest PSI first, and how many of how many drifted."""
    (run, symbol, ts), = sql(db, "SELECT run_id, symbol, MAX(ts_event) FROM predictions")
    rows = [(ts - 60, "ret_1", 0.9, 1), (ts, "ret_1", 0.05, 0), (ts, "vol_10", 0.4, 1),
            (ts, "flow_1", 0.7, 1)]
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany("INSERT INTO feature_drift (run_id, symbol, ts_event, feature, psi, ks, "
                         "reference_rows, recent_rows, threshold, drifted) VALUES (?, ?, ?, ?, "
                         "?, 0.1, 900, 300, 0.25, ?)", [(run, symbol, *r) for r in rows])
    conn.close()
    snap = data.snapshot(db)["feature_drift"]
    assert [(f["feature"], f["psi"]) for f in snap["drifted"]] == [("flow_1", 0.7),
                                                                   ("vol_10", 0.4)]
    assert [(c["ts_event_ns"], c["drifted"], c["features"]) for c in snap["checks"]] \
        == [(ts, 2, 3)]


def test_a_missing_database_says_waiting_until_it_appears(replayed: Path,
                                                          tmp_path: Path) -> None:
    """Before the database exists the snapshot and the page say "waiting for data" (no
    traceback); once the file appears the stream turns live without a restart."""
    path = tmp_path / "later.db"

    async def watch(url: str) -> tuple[dict[str, Any], str, dict[str, Any]]:
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as page:
                html = await page.text()
            async with http.get(url + "api/events") as resp:
                waiting = await next_snapshot(resp.content)
                await asyncio.to_thread(shutil.copy, replayed, path)
                live = await asyncio.wait_for(next_snapshot(resp.content), DEADLINE_S)
        return waiting, html, live

    with running(path, poll_s=0.1) as dash:
        waiting, html, live = asyncio.run(watch(dash.url))
    assert waiting["state"] == "waiting" and "no database there yet" in waiting["reason"]
    assert "waiting for data" in html and "Traceback" not in json.dumps(waiting)
    assert live["state"] == "live" and live["pnl"]["equity"] > 0


def test_it_follows_a_replay_as_it_writes(tmp_path: Path) -> None:
    """Watching a file that a replay (another process) creates and writes: waiting, then live
    snapshots as it goes, never an error from reading beside the writer, and at the end the
    figures of the finished run."""
    write_recording(tmp_path / "sim.gz", seconds=3600, seed=5)
    path = tmp_path / "replay.db"

    async def watch(url: str) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        timeout = aiohttp.ClientTimeout(total=DEADLINE_S * 2)
        async with aiohttp.ClientSession(timeout=timeout) as http, \
                http.get(url + "api/events") as resp:
            seen.append(await next_snapshot(resp.content))
            replay = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ares_stream.cli", "replay", str(tmp_path / "sim.gz"),
                "--config", str(DEMO), "--db", str(path), "--quiet", "--no-report",
                cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL)
            while (seen[-1].get("run") or {}).get("status") != "finished":
                seen.append(await next_snapshot(resp.content))
            assert await replay.wait() == 0
        return seen

    with running(path, poll_s=0.05) as dash:
        seen = asyncio.run(watch(dash.url))
    assert seen[0]["state"] == "waiting"
    assert [s["reason"] for s in seen if s["state"] not in ("waiting", "live")] == []
    (equity,), = sql(path, "SELECT equity FROM equity ORDER BY ts_event DESC LIMIT 1")
    assert seen[-1]["pnl"]["equity"] == pytest.approx(equity)
    assert seen[-1]["pnl"]["marks"] == sql(path, "SELECT COUNT(*) FROM equity")[0][0]


def test_a_database_without_a_run_says_waiting(tmp_path: Path) -> None:
    """A database made by a daemon that has not started its run yet: waiting, "no run"."""
    from ares_stream.store.db import open_db

    open_db(tmp_path / "empty.db").conn.close()
    snap = data.snapshot(tmp_path / "empty.db")
    assert (snap["state"], snap["reason"]) == ("waiting", "no run in the database yet")


def test_it_listens_on_loopback_only_by_default(replayed: Path) -> None:
    """The CLI and the server default to 127.0.0.1; a request naming another host (DNS
    rebinding) is refused; the page and its files come with their content types and a policy
    that lets the page load nothing from elsewhere."""
    args = build_parser().parse_args(["monitor", "--db", str(replayed)])
    assert (args.host, args.port) == ("127.0.0.1", 8080)

    async def fetch(url: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with aiohttp.ClientSession() as http:
            for path in ("", "static/app.js", "static/style.css",
                         "static/vendor/uPlot.iife.min.js", "static/vendor/uPlot.min.css"):
                async with http.get(url + path) as resp:
                    out[path] = (resp.status, resp.content_type,
                                 resp.headers["Content-Security-Policy"])
            async with http.get(url, headers={"Host": f"evil.example:{dash.port}"}) as resp:
                out["rebound"] = resp.status
        return out

    with running(replayed) as dash:
        assert dash.host == Dashboard(replayed).host == "127.0.0.1"
        assert dash.url == f"http://127.0.0.1:{dash.port}/"
        got = asyncio.run(fetch(dash.url))
    assert got[""][:2] == (200, "text/html")
    assert got["static/app.js"][1] == got["static/vendor/uPlot.iife.min.js"][1] \
        == "application/javascript"
    assert got["static/style.css"][1] == got["static/vendor/uPlot.min.css"][1] == "text/css"
    assert all(v[0] == 200 and "default-src 'self'" in v[2] for k, v in got.items()
               if k != "rebound")
    assert got["rebound"] == 403


def test_a_port_in_use_is_one_line_and_exit_2(replayed: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``ares-stream monitor`` on a port another socket holds: one line, exit code 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["monitor", "--db", str(replayed), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ares-stream monitor: error: cannot listen on 127.0.0.1:{port}: ")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_it_cleanly(replayed: Path, sig: signal.Signals) -> None:
    """The CLI prints its URL, serves, and stops on SIGINT (Ctrl-C) or SIGTERM with exit code 0
    and nothing on stderr, also with a browser's event stream open."""
    proc = subprocess.Popen([sys.executable, "-m", "ares_stream.cli", "monitor", "--db",
                             str(replayed), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.fullmatch(r"dashboard: (http://127\.0\.0\.1:\d+/)\n", line)
        assert url, line

        async def stop_while_streaming() -> dict[str, Any]:
            async with aiohttp.ClientSession() as http, \
                    http.get(url[1] + "api/events") as resp:
                first = await next_snapshot(resp.content)
                proc.send_signal(sig)
                async for _ in resp.content:  # the server ends the stream
                    pass
            return first

        assert asyncio.run(stop_while_streaming())["state"] == "live"
        _, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0 and err == ""


def test_the_page_ships_with_the_package() -> None:
    """pyproject's package-data carries the page and the vendored uPlot (a wheel has them), and
    the vendored files are the version their README names."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["tool"]["setuptools"]["package-data"]["ares_stream.monitor"] == [
        "static/*", "static/vendor/*"]
    names = {p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file()}
    assert {"index.html", "app.js", "style.css", "vendor/uPlot.iife.min.js",
            "vendor/uPlot.min.css", "vendor/LICENSE", "vendor/README"} <= names
    version = re.search(r"uPlot \(v([\d.]+)\)", (STATIC / "vendor/uPlot.iife.min.js").read_text())
    assert version and f"uPlot {version[1]} (MIT" in (STATIC / "vendor/README").read_text()


# -- a real browser ---------------------------------------------------------------------------

_DRAWN = """const c = document.querySelector(arguments[0] + ' canvas');
if (!c || !c.width) return false;
const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
for (let i = 3; i < px.length; i += 4) if (px[i]) return true;
return false;"""


@pytest.fixture()
def browser() -> Iterator[Any]:
    """Headless chromium under chromedriver, with its console and network logged."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            pytest.skip(f"{path} is not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager must not go online
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1800", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_a_browser_shows_the_run_and_a_new_bar_without_reloading(db: Path,
                                                                   browser: Any) -> None:
    """In headless chromium the page shows the equity, draws both charts and fills the model
    and decision tables; a bar appended to the database then appears without a reload, a
    hostile string from the database is shown as text, and the page asked no host but ours."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def text(element_id: str) -> str:
        return str(browser.find_element(By.ID, element_id).text)

    (equity,), = sql(db, "SELECT equity FROM equity ORDER BY ts_event DESC LIMIT 1")
    wait = WebDriverWait(browser, DEADLINE_S)
    with running(db) as dash:
        browser.get(dash.url)
        wait.until(lambda b: b.execute_script("return document.body.dataset.state") == "live")
        wait.until(lambda b: b.execute_script(_DRAWN, "#chart-equity")
                   and b.execute_script(_DRAWN, "#chart-loss"))
        assert text("equity") == f"{equity:.2f}"
        assert "SIMUSDT" in text("champions") and "xgboost" in text("champions")
        assert "promoted" in text("validations") and "adwin" in text("drift")
        page = browser.execute_script("return document.body.dataset.version")
        hostile = "<img src=x onerror=alert(1)>"
        ts = append_bar(db, 98765.43, action=hostile)
        wait.until(lambda b: text("equity") == "98765.43")
        assert text("last-bar") == utc(ts) and "43210.5" in text("last-bar-detail")
        wait.until(lambda b: hostile in text("drift"))
        assert not browser.find_elements(By.CSS_SELECTOR, "#drift img")
        assert browser.execute_script("return performance.getEntriesByType('navigation')"
                                      ".length") == 1  # never reloaded
        assert browser.execute_script("return document.body.dataset.version") != page
        requested = {json.loads(e["message"])["message"]["params"]["request"]["url"]
                     for e in browser.get_log("performance")
                     if '"Network.requestWillBeSent"' in e["message"]}
        console = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert requested and all(u.startswith(dash.url) for u in requested), requested
    assert {dash.url + "static/vendor/uPlot.iife.min.js", dash.url + "api/events"} <= requested
    assert console == []
