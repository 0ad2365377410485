"""The daemon as a real process against the local exchange: SIGTERM, SIGINT, and SIGKILL at
random points with restarts — the state store stays intact and the run resumes exactly."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ares_stream.config import load_config
from ares_stream.exchange import Faults, Tape
from ares_stream.feed.simulator import write_recording
from ares_stream.replay import run_replay
from tests.test_live import exchange_in_thread

SYMBOL = "SIMUSDT"
CONFIG = """
[bars]
interval = "1s"
[labels]
horizon = 5
threshold_bps = 1.0
[batch]
enabled = false
[metrics]
port = 0
[feed]
silence_timeout_s = 2.0
recordings_dir = "{recordings}"
"""


@pytest.fixture(scope="module")
def tape(tmp_path_factory: pytest.TempPathFactory) -> Tape:
    path = tmp_path_factory.mktemp("dtape") / "sim.gz"
    write_recording(path, seconds=1800, seed=21, symbol=SYMBOL)
    return Tape.from_recording([path])


def start(urls: dict[str, str], tmp: Path, *extra: str,
          streams: str = "aggTrade,bookTicker") -> subprocess.Popen[str]:
    cfg = tmp / "daemon.toml"
    cfg.write_text(CONFIG.format(recordings=tmp / "recordings"))
    return subprocess.Popen(
        [sys.executable, "daemon.py", "--paper", "--symbols", SYMBOL, "--streams",
         streams, "--ws-url", urls["ws"], "--rest-url", urls["rest"],
         "--db", str(tmp / "paper.db"), "--config", str(cfg), "--log-json", *extra],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
        stderr=(tmp / "daemon.log").open("a"), text=True)  # a file: a full pipe would block it


def finish(proc: subprocess.Popen[str], tmp: Path) -> str:
    """Wait for the daemon to exit; its log (stderr)."""
    proc.wait(timeout=30)
    return (tmp / "daemon.log").read_text()


def wait_for_predictions(db: Path, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    if conn.execute("select count(*) from predictions").fetchone()[0] >= n:
                        return
            except sqlite3.OperationalError:
                pass
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} predictions in {db} after {timeout} s")


def test_sigterm_shuts_down_cleanly_with_a_final_checkpoint(tape: Tape, tmp_path: Path) -> None:
    """SIGTERM: exit 0 within the shutdown bound, run finished, a checkpoint written."""
    with exchange_in_thread(tape, rate=400, faults=Faults()) as urls:
        proc = start(urls, tmp_path, "--checkpoint-every", "0.5")
        wait_for_predictions(tmp_path / "paper.db", 20)
        proc.send_signal(signal.SIGTERM)
        err = finish(proc, tmp_path)
    assert proc.returncode == 0, err[-2000:]
    with sqlite3.connect(tmp_path / "paper.db") as conn:
        assert conn.execute("select status from runs").fetchall() == [("finished",)]
        assert conn.execute("select count(*) from checkpoints").fetchone()[0] >= 1
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert "Traceback" not in err
    assert '"event": "bar_closed"' in err and '"p_traded"' in err  # the canonical bar line


def test_second_sigint_forces_exit(tape: Tape, tmp_path: Path) -> None:
    """A second Ctrl-C while the daemon is shutting down forces the exit (code 130).

    (Two signals sent at once are one signal to the process: the second is sent once the
    daemon has logged that it is stopping, as a person would press it again.)"""
    log_file = tmp_path / "daemon.log"
    with exchange_in_thread(tape, rate=400, faults=Faults()) as urls:
        proc = start(urls, tmp_path)
        wait_for_predictions(tmp_path / "paper.db", 1)
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        while "daemon_stopping" not in log_file.read_text() and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        finished_before = "daemon_stopped" in log_file.read_text()
        log = finish(proc, tmp_path)
    assert "daemon_stopping" in log
    assert proc.returncode == 130 or (proc.returncode == 0 and finished_before)


def test_sigkill_at_random_points_resumes_exactly(tape: Tape, tmp_path: Path) -> None:
    """Killed with SIGKILL 20 times and restarted: integrity ok, one resumed run, no prediction
    duplicated or lost — the same predictions an uninterrupted replay of the tape makes.

    aggTrade only: what a dead daemon missed comes back over REST exactly. (Book tops missed
    while down cannot be fetched from Binance, so with bookTicker the bars are the same but
    the book features after a restart may differ.)"""
    rng = random.Random(7)
    db = tmp_path / "paper.db"
    with exchange_in_thread(tape, rate=250, faults=Faults()) as urls:
        for i in range(20):
            proc = start(urls, tmp_path, "--checkpoint-every", "0.3", streams="aggTrade")
            if i == 0:
                wait_for_predictions(db, 5)
            time.sleep(rng.uniform(0.4, 1.6))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        proc = start(urls, tmp_path, "--checkpoint-every", "0.3", streams="aggTrade")
        time.sleep(4.0)
        proc.send_signal(signal.SIGTERM)
        err = finish(proc, tmp_path)
    assert proc.returncode == 0, err[-2000:]
    with sqlite3.connect(db) as conn:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        assert conn.execute("select count(distinct run_id) from predictions").fetchone()[0] == 1
        got = conn.execute("select ts_event, value, label from predictions "
                           "order by ts_event").fetchall()
    cfg = load_config(tmp_path / "daemon.toml")
    clean = run_replay([str(tape_file(tape, tmp_path))], cfg, db_path=tmp_path / "clean.db")
    with sqlite3.connect(clean.db_path) as conn:
        want = conn.execute("select ts_event, value, label from predictions "
                            "order by ts_event").fetchall()
    last = got[-1][0]
    want = [w for w in want if w[0] <= last]
    assert [g[0] for g in got] == [w[0] for w in want], "a prediction was lost or duplicated"
    assert_positions_agree_with_fills(db)
    labelled = [(g, w) for g, w in zip(got, want, strict=True) if g[2] is not None]
    assert all(g[2] == w[2] for g, w in labelled), "a label differs"
    assert max(abs(g[1] - w[1]) for g, w in zip(got, want, strict=True)) < 1e-9


def assert_positions_agree_with_fills(db: Path) -> None:
    """Cash and positions rebuilt from the fills table equal the stored positions and equity."""
    with sqlite3.connect(db) as conn:
        fills = conn.execute("select side, qty, price, fee from fills").fetchall()
        qty = conn.execute("select coalesce(sum(qty), 0) from positions").fetchone()[0]
        cash = conn.execute("select cash from equity order by ts_event desc limit 1").fetchone()
    start = load_config(None).trading.starting_cash
    held = sum(q if s == "BUY" else -q for s, q, _, _ in fills)
    spent = sum((q * p + f) if s == "BUY" else -(q * p - f) for s, q, p, f in fills)
    assert abs(held - qty) < 1e-9
    if cash is not None:
        assert abs((start - spent) - cash[0]) < 1e-6


def receive(sock: Any, into: list[bytes], seconds: float, done: Callable[[], bool]) -> None:
    """Collect datagrams for up to ``seconds``, or until ``done()``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and not done():
        with contextlib.suppress(TimeoutError):
            into.append(sock.recv(4096))


def tape_file(tape: Tape, tmp: Path) -> Path:
    """The tape as a recording (the uninterrupted reference)."""
    path = tmp / "tape.txt"
    with path.open("wb") as fh:
        for i, (stream, payload) in enumerate(tape.frames):
            if not stream.endswith("@aggTrade"):
                continue
            fh.write(b"%d {\"stream\":\"%s\",\"data\":%s}\n" % (i + 1, stream.encode(), payload))
    return path


def test_daemon_speaks_sd_notify_on_a_real_socket(tape: Tape, tmp_path: Path) -> None:
    """Under a (simulated) systemd: READY, STATUS, WATCHDOG while healthy, STOPPING at the end."""
    import socket

    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"}
    messages: list[bytes] = []
    with exchange_in_thread(tape, rate=400, faults=Faults()) as urls:
        cfg = tmp_path / "daemon.toml"
        cfg.write_text(CONFIG.format(recordings=tmp_path / "recordings"))
        proc = subprocess.Popen(
            [sys.executable, "daemon.py", "--paper", "--symbols", SYMBOL, "--ws-url", urls["ws"],
             "--rest-url", urls["rest"], "--db", str(tmp_path / "paper.db"), "--config", str(cfg)],
            cwd=Path(__file__).resolve().parents[1], env=env, stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "daemon.log").open("a"), text=True)
        receive(sock, messages, 20, lambda: b"WATCHDOG=1" in b"".join(messages))
        proc.send_signal(signal.SIGTERM)
        receive(sock, messages, 20, lambda: proc.poll() is not None)
        finish(proc, tmp_path)
        receive(sock, messages, 0.5, lambda: False)
    sock.close()
    assert proc.returncode == 0
    kinds = [m.split(b"\n")[0].split(b"=")[0] for m in messages]
    assert kinds[0] == b"READY" and b"WATCHDOG" in kinds and b"STOPPING" in kinds
    assert any(m.startswith(b"STATUS=frames") for m in messages)


def test_cold_start_warms_features_from_rest_history(tape: Tape, tmp_path: Path) -> None:
    """A first start (no checkpoint) against an exchange with history fetches the trades before
    the first live one over REST, and trades only from the first live bar on."""
    with exchange_in_thread(tape, rate=1_000, faults=Faults(), start_on_subscribe=False) as urls:
        time.sleep(1.5)  # ~1,000 aggTrades of history already broadcast
        proc = start(urls, tmp_path, "--checkpoint-every", "0.5", streams="aggTrade")
        wait_for_predictions(tmp_path / "paper.db", 5)
        proc.send_signal(signal.SIGTERM)
        err = finish(proc, tmp_path)
    assert proc.returncode == 0, err[-2000:]
    with sqlite3.connect(tmp_path / "paper.db") as conn:
        count, last_warm = conn.execute(
            "select count, last_missing from feed_health where kind = 'backfill' "
            "order by id limit 1").fetchone()
        warm_end = {row["a"]: row["T"] for row in tape.agg_trades[SYMBOL].rows}[last_warm] * 10**6
        warm_predictions = conn.execute(
            "select count(*) from predictions where ts_event <= ?", (warm_end,)).fetchone()[0]
        early_orders = conn.execute(
            "select count(*) from orders where ts_event <= ?", (warm_end,)).fetchone()[0]
    assert count >= 500  # history fetched over REST before the first live trade
    assert warm_predictions > 0  # the features were warm on that history ...
    assert early_orders == 0  # ... but nothing was traded on it


def test_cold_start_warms_a_kline_only_feed_from_rest_klines(tmp_path: Path) -> None:
    """A kline-only feed (no trades to fetch) warms from the klines before its first closed one
    over REST, predicts on them, and trades only from the first live bar on."""
    path = tmp_path / "klines.gz"
    write_recording(path, seconds=1800, seed=22, symbol=SYMBOL, streams=("kline_1s",))
    klines = Tape.from_recording([path])
    with exchange_in_thread(klines, rate=100, faults=Faults(), start_on_subscribe=False) as urls:
        time.sleep(7)  # ~700 one-second klines of history already broadcast
        proc = start(urls, tmp_path, "--checkpoint-every", "0.5", streams="kline_1s")
        wait_for_predictions(tmp_path / "paper.db", 600)
        proc.send_signal(signal.SIGTERM)
        err = finish(proc, tmp_path)
    assert proc.returncode == 0, err[-2000:]
    with sqlite3.connect(tmp_path / "paper.db") as conn:
        count, kind, last_warm = conn.execute(
            "select count, detail, last_missing from feed_health where kind = 'backfill' "
            "order by id limit 1").fetchone()
        warm = conn.execute("select count(*) from predictions where ts_event <= ?",
                            (last_warm + 10**9,)).fetchone()[0]
        early = conn.execute("select count(*) from orders where ts_event <= ?",
                             (last_warm + 10**9,)).fetchone()[0]
    assert count == 500, (count, kind)  # warmup_klines before the first closed live kline
    assert warm > 400 and early == 0


def scrape_metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_endpoint_reports_the_running_daemon(tape: Tape, tmp_path: Path) -> None:
    """Scraping the paper daemon's /metrics: frames, predictions, the engine lag histogram,
    booster fit durations and model versions, equity — the values the daemon is living."""
    import json

    cfg = tmp_path / "daemon.toml"
    cfg.write_text(CONFIG.replace("enabled = false", "min_rows = 60\nupdate_rows = 60")
                   .format(recordings=tmp_path / "recordings"))
    with exchange_in_thread(tape, rate=600, faults=Faults()) as urls:
        proc = subprocess.Popen(
            [sys.executable, "daemon.py", "--paper", "--symbols", SYMBOL, "--streams",
             "aggTrade,bookTicker", "--ws-url", urls["ws"], "--rest-url", urls["rest"],
             "--db", str(tmp_path / "paper.db"), "--config", str(cfg), "--log-json"],
            cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "daemon.log").open("a"), text=True)
        try:
            port = None
            deadline = time.monotonic() + 60
            got: dict[Any, float] = {}
            while time.monotonic() < deadline:
                time.sleep(0.5)
                if port is None:
                    started = [json.loads(line) for line in (tmp_path / "daemon.log").open()
                               if '"daemon_started"' in line]
                    port = started[0]["metrics_port"] if started else None
                    continue
                got = scrape_metrics(port)
                if got.get(("ares_fit_duration_seconds_count", ()), 0) >= 1:
                    break
        finally:
            proc.send_signal(signal.SIGTERM)
            err = finish(proc, tmp_path)
    assert proc.returncode == 0, err[-2000:]
    assert got[("ares_fit_duration_seconds_count", ())] >= 1, "no booster fit within 60 s"
    assert 0 < got[("ares_fit_duration_seconds_sum", ())] < 60
    assert got[("ares_frames_total", ())] > 100
    assert got[("ares_predictions_total", (("symbol", SYMBOL),))] >= 60
    assert got[("ares_engine_lag_seconds_count", ())] > 0
    assert got[("ares_model_version", (("kind", "booster"), ("symbol", SYMBOL)))] >= 1
    assert (("ares_model_version", (("kind", "river"), ("symbol", SYMBOL)))) in got
    assert got[("ares_equity", ())] > 0


API_KEY = "ares-test-key-" + "k" * 40
API_SECRET = "ares-test-secret-" + "s" * 40


def start_live(urls: dict[str, str], tmp: Path, env: dict[str, str],
               trading: str) -> subprocess.Popen[str]:
    cfg = tmp / "live.toml"
    cfg.write_text(CONFIG.format(recordings=tmp / "recordings") + f"""
[trading]
live = true
rest_url = "{urls['rest']}"
enter = 0.5
exit = 0.4
{trading}
""")
    return subprocess.Popen(
        [sys.executable, "daemon.py", "--live", "--symbols", SYMBOL, "--streams",
         "aggTrade,bookTicker", "--ws-url", urls["ws"], "--rest-url", urls["rest"],
         "--db", str(tmp / "live.db"), "--config", str(cfg), "--log-json",
         "--checkpoint-every", "0.5"],
        cwd=Path(__file__).resolve().parents[1], env=env, stdout=subprocess.DEVNULL,
        stderr=(tmp / "daemon.log").open("a"), text=True)


def wait_for_fills(db: Path, n: int, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.OperationalError):
            if db.exists() and sqlite3.connect(db).execute(
                    "select count(*) from fills").fetchone()[0] >= n:
                return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {n} fills in {db} after {timeout} s")


def test_live_daemon_trades_on_the_exchange_and_reconciles(tape: Tape, tmp_path: Path) -> None:
    """`--live` against the local exchange's signed API: orders reach the exchange and their fills
    are booked, a stale order of ours is cancelled at start-up, the final cash and position equal
    the exchange's balances, and the key and secret appear in neither the log nor the database."""
    from ares_stream.exchange import Account

    account = Account({"USDT": 10_000, "SIM": 0.5}, api_key=API_KEY, api_secret=API_SECRET)
    env = {**os.environ, "ARES_API_KEY": API_KEY, "ARES_API_SECRET": API_SECRET}
    with exchange_in_thread(tape, rate=400, faults=Faults(), account=account) as urls:
        account.book.place({"symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "quantity": "10",
                            "price": "1.00", "timeInForce": "GTC",
                            "newClientOrderId": "ares-r9-stale"})  # before the clock starts
        proc = start_live(urls, tmp_path, env, "")
        try:
            wait_for_fills(tmp_path / "live.db", 3)
        finally:
            proc.send_signal(signal.SIGTERM)
            err = finish(proc, tmp_path)
        balances = {a: float(sum(account.balance(a))) for a in ("USDT", "SIM")}
        open_orders = account.open_orders({"symbol": SYMBOL})
    assert proc.returncode == 0, err[-3000:]
    assert '"event": "reconciled"' in err and "ares-r9-stale" in err
    assert open_orders == []  # the stale order of ours was cancelled
    db = tmp_path / "live.db"
    with sqlite3.connect(db) as conn:
        modes = {m for (m,) in conn.execute("select distinct mode from orders")}
        (qty,) = conn.execute("select qty from positions where symbol = ?", (SYMBOL,)).fetchone()
        state = conn.execute("select state from checkpoints order by id desc limit 1").fetchone()
    assert modes == {"live"}
    import pickle

    broker = pickle.loads(state[0])["broker"]
    assert broker["cash"] == pytest.approx(balances["USDT"], abs=1e-6)
    assert qty == pytest.approx(balances["SIM"], abs=1e-9)
    for secret in (API_KEY, API_SECRET):
        assert secret not in err
        for path in tmp_path.glob("live.db*"):
            assert secret.encode() not in path.read_bytes()


def test_live_refuses_without_opt_in_or_keys(tmp_path: Path) -> None:
    """--live without `live = true`, or without keys, exits 2 with one line saying what is
    missing — before connecting to anything."""
    root = Path(__file__).resolve().parents[1]
    cfg = tmp_path / "c.toml"
    cfg.write_text("[trading]\nlive = false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARES_API")}
    out = subprocess.run([sys.executable, "daemon.py", "--live", "--symbols", SYMBOL,
                          "--config", str(cfg), "--db", str(tmp_path / "l.db")],
                         cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "live = true" in out.stderr and "Traceback" not in out.stderr
    cfg.write_text("[trading]\nlive = true\n")
    out = subprocess.run([sys.executable, "daemon.py", "--live", "--symbols", SYMBOL,
                          "--config", str(cfg), "--db", str(tmp_path / "l.db")],
                         cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "ARES_API_KEY" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "l.db").exists()
