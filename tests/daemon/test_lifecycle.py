"""The daemon as a real process against the local exchange: SIGTERM, SIGINT, and SIGKILL at
random points with restarts — the state store stays intact and the run resumes exactly."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ares_stream.config import load_config
from ares_stream.replay import run_replay
from ares_stream.sim.exchange import Faults, Tape
from ares_stream.sim.simulator import write_recording
from ares_stream.status import format_status, status_report
from tests.daemon.test_ingest import exchange_in_thread

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




def start(urls: dict[str, str], tmp: Path, *extra: str, streams: str = "aggTrade,bookTicker",
          env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    cfg = tmp / "daemon.toml"
    cfg.write_text(CONFIG.format(recordings=tmp / "recordings"))
    return subprocess.Popen(
        [sys.executable, "daemon.py", "--paper", "--symbols", SYMBOL, "--streams",
         streams, "--ws-url", urls["ws"], "--rest-url", urls["rest"],
         "--db", str(tmp / "paper.db"), "--config", str(cfg), "--log-json", *extra],
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.DEVNULL, env=env,
        stderr=(tmp / "daemon.log").open("a"), text=True)  # a file: a full pipe would block it


def finish(proc: subprocess.Popen[str], tmp: Path) -> str:
    """Wait for the daemon to exit; its log (stderr)."""
    proc.wait(timeout=120)
    return (tmp / "daemon.log").read_text()


def wait_for(what: str, done: Callable[[], bool], timeout: float = 120.0) -> None:
    """Poll ``done()`` until it holds; fail naming ``what`` after ``timeout`` seconds (generous:
    on this machine each wait ends in well under a second or two)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.005)


def logged(tmp: Path, text: str) -> bool:
    path = tmp / "daemon.log"
    return path.exists() and text in path.read_text()


def prediction_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return int(conn.execute("select count(*) from predictions").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return 0


def history_on_rest(url: str, query: str, n: int) -> Callable[[], bool]:
    """Whether the exchange's REST ``query`` (aggTrades or klines of SYMBOL) serves >= n items."""
    from urllib.request import urlopen

    def done() -> bool:
        with urlopen(f"{url}/api/v3/{query}&symbol={SYMBOL}&limit=1000", timeout=30) as r:
            return len(json.loads(r.read())) >= n
    return done


def wait_for_predictions(db: Path, n: int, timeout: float = 120.0) -> None:
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


def sigterm_caught(pid: int) -> bool:
    """Whether process ``pid`` has a handler for SIGTERM (bit 15 of SigCgt in /proc/PID/status),
    or is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) >> (signal.SIGTERM - 1) & 1)


def sigterm_while_stopped(proc: subprocess.Popen[str]) -> None:
    """SIGTERM a process frozen (SIGSTOP) where it is now, then let it go on: the signal lands
    exactly at the point a test waited for, however slow the machine."""
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        proc.send_signal(signal.SIGTERM)
    finally:
        os.kill(proc.pid, signal.SIGCONT)


def assert_stopped_cleanly(proc: subprocess.Popen[str], tmp: Path) -> str:
    """Exit 0, no traceback; a database, if made, whole and with no run left running."""
    err = finish(proc, tmp)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    db = tmp / "paper.db"
    if db.exists():
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
            assert conn.execute("select count(*) from runs where status = 'running'"
                                ).fetchone()[0] == 0
    return err


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_sigterm_during_the_imports_ends_start_up_with_exit_0(tape: Tape, tmp_path: Path) -> None:
    """From the moment its handler exists (daemon.py's first statements, long before the heavy
    imports end) a SIGTERM ends start-up at once: exit 0, one line, no database made."""
    with exchange_in_thread(tape, rate=400, faults=Faults()) as urls:
        proc = start(urls, tmp_path)
        wait_for("a SIGTERM handler in the daemon", lambda: sigterm_caught(proc.pid))
        os.kill(proc.pid, signal.SIGSTOP)
        importing = '"daemon_' not in (tmp_path / "daemon.log").read_text()
        proc.send_signal(signal.SIGTERM)
        os.kill(proc.pid, signal.SIGCONT)
        err = assert_stopped_cleanly(proc, tmp_path)
    assert importing, "the daemon had finished its imports before the test could look"
    assert "stopped by SIGTERM during start-up" in err or "before opening" in err, err
    assert not (tmp_path / "paper.db").exists()


@pytest.mark.parametrize("point", ["database opened", "READY", "REST warm-up"])
def test_sigterm_at_each_point_of_start_up_exits_0_with_a_whole_database(
        tape: Tape, tmp_path: Path, point: str) -> None:
    """A SIGTERM as the database file appears, at READY, or in the middle of the REST warm-up
    (a rate-limited one: every request answered 429, Retry-After 1 s) ends the daemon with exit
    0, its run closed and the database whole; a warm-up in progress is abandoned, not waited
    out."""
    faults = Faults(rest_429=1_000_000) if point == "REST warm-up" else Faults()
    sock = None
    env = dict(os.environ)
    if point == "READY":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(tmp_path / "notify.sock"))
        sock.settimeout(120)
        env["NOTIFY_SOCKET"] = str(tmp_path / "notify.sock")
    with exchange_in_thread(tape, rate=1_000, faults=faults, start_on_subscribe=False) as urls:
        wait_for("history on REST", history_on_rest(urls["rest"], "aggTrades?", 200)
                 if point != "REST warm-up" else lambda: True)
        proc = start(urls, tmp_path, streams="aggTrade", env=env)
        if point == "database opened":
            wait_for("the database file", lambda: (tmp_path / "paper.db").exists())
            sigterm_while_stopped(proc)
        elif point == "READY":
            assert sock is not None
            while b"READY=1" not in sock.recv(4096):
                pass
            proc.send_signal(signal.SIGTERM)
        else:
            wait_for("the warm-up to start", lambda: logged(tmp_path, '"warmup_started"'))
            proc.send_signal(signal.SIGTERM)
        err = assert_stopped_cleanly(proc, tmp_path)
    if sock is not None:
        sock.close()
    if point == "REST warm-up":
        assert '"backfill_abandoned"' in err and '"warmup_done"' not in err


def test_second_sigint_forces_exit(tape: Tape, tmp_path: Path) -> None:
    """A second Ctrl-C while the daemon is shutting down forces the exit (code 130).

    (Two signals sent at once are one signal to the process: the second is sent once the
    daemon has logged that it is stopping, as a person would press it again.)"""
    log_file = tmp_path / "daemon.log"
    with exchange_in_thread(tape, rate=400, faults=Faults()) as urls:
        proc = start(urls, tmp_path)
        wait_for_predictions(tmp_path / "paper.db", 1)
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 60
        while "daemon_stopping" not in log_file.read_text() and time.monotonic() < deadline:
            time.sleep(0.005)  # (a deadline of 60 s: the message comes within milliseconds)
        proc.send_signal(signal.SIGINT)
        finished_before = "daemon_stopped" in log_file.read_text()
        log = finish(proc, tmp_path)
    assert "daemon_stopping" in log
    assert proc.returncode == 130 or (proc.returncode == 0 and finished_before)


def test_signals_as_it_exits_after_a_clean_stop_change_nothing(tape: Tape, tmp_path: Path) -> None:
    """Once the daemon has stopped cleanly, Ctrl-Cs and SIGTERMs sent while the process exits
    (interpreter teardown included) neither kill it nor print a traceback: exit 0."""
    with exchange_in_thread(tape, rate=400, faults=Faults()) as urls:
        proc = start(urls, tmp_path)
        wait_for_predictions(tmp_path / "paper.db", 1)
        proc.send_signal(signal.SIGTERM)
        wait_for("the clean stop", lambda: logged(tmp_path, '"daemon_stopped"'))
        while proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT if proc.pid % 2 else signal.SIGTERM)
            time.sleep(0.001)  # a storm of signals until it is gone, not a wait for anything
        err = finish(proc, tmp_path)
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err


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
            time.sleep(rng.uniform(0.4, 1.6))  # a random kill point, not a wait for anything
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        before = prediction_count(db)
        proc = start(urls, tmp_path, "--checkpoint-every", "0.3", streams="aggTrade")
        wait_for("the last start caught up and predicted on",
                 lambda: prediction_count(db) >= before + 5)
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
    assert status_report(db)["startup"]["warmup"]["how"] == "restart"  # its catch-up, timed
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
            cwd=Path(__file__).resolve().parents[2], env=env, stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "daemon.log").open("a"), text=True)
        receive(sock, messages, 120, lambda: b"WATCHDOG=1" in b"".join(messages))
        proc.send_signal(signal.SIGTERM)
        receive(sock, messages, 120, lambda: proc.poll() is not None)
        finish(proc, tmp_path)
        receive(sock, messages, 0.5, lambda: False)
    sock.close()
    assert proc.returncode == 0
    kinds = [m.split(b"\n")[0].split(b"=")[0] for m in messages]
    assert kinds[0] == b"READY" and b"WATCHDOG" in kinds and b"STOPPING" in kinds
    assert any(m.startswith(b"STATUS=frames") for m in messages)


def cold_start(tape: Tape, tmp: Path, *, rate: int, history: tuple[str, int], streams: str,
               predictions: int) -> None:
    """A first start against an exchange that already has ``history`` (a REST query and how
    many items it must serve) on REST; SIGTERM once ``predictions`` are in; exit 0."""
    with exchange_in_thread(tape, rate=rate, faults=Faults(), start_on_subscribe=False) as urls:
        query, n = history
        wait_for(f"{n} items of history on REST ({query})", history_on_rest(urls["rest"], query, n))
        proc = start(urls, tmp, "--checkpoint-every", "0.5", streams=streams)
        wait_for_predictions(tmp / "paper.db", predictions)
        proc.send_signal(signal.SIGTERM)
        err = finish(proc, tmp)
    assert proc.returncode == 0, err[-2000:]


def test_cold_start_warms_features_from_rest_history(tape: Tape, tmp_path: Path) -> None:
    """A first start (no checkpoint) against an exchange with history fetches the trades before
    the first live one over REST, and trades only from the first live bar on."""
    cold_start(tape, tmp_path, rate=1_000, history=("aggTrades?", 1_000), streams="aggTrade",
               predictions=5)
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
    startup = status_report(tmp_path / "paper.db")["startup"]  # what `status` shows
    assert 0 < startup["ready_after_s"] < 600
    warmup = startup["warmup"]
    assert warmup["how"] == "cold start" and warmup["items"] >= count and warmup["complete"]
    assert warmup["seconds"] > 0 and warmup["requests"] >= 1
    assert "REST warm-up (cold start)" in format_status(status_report(tmp_path / "paper.db"))


def test_cold_start_warms_a_kline_only_feed_from_rest_klines(tmp_path: Path) -> None:
    """A kline-only feed (no trades to fetch) warms from the klines before its first closed one
    over REST, predicts on them, and trades only from the first live bar on."""
    path = tmp_path / "klines.gz"
    write_recording(path, seconds=1800, seed=22, symbol=SYMBOL, streams=("kline_1s",))
    klines = Tape.from_recording([path])
    cold_start(klines, tmp_path, rate=100, history=("klines?interval=1s", 700),
               streams="kline_1s", predictions=600)
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
    booster fit durations and model versions, equity, the rolling log loss and accuracy of the
    traded forecast — the values the daemon is living."""
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(CONFIG.replace("enabled = false", "min_rows = 60\nupdate_rows = 60")
                   .format(recordings=tmp_path / "recordings"))
    with exchange_in_thread(tape, rate=600, faults=Faults()) as urls:
        proc = subprocess.Popen(
            [sys.executable, "daemon.py", "--paper", "--symbols", SYMBOL, "--streams",
             "aggTrade,bookTicker", "--ws-url", urls["ws"], "--rest-url", urls["rest"],
             "--db", str(tmp_path / "paper.db"), "--config", str(cfg), "--log-json"],
            cwd=Path(__file__).resolve().parents[2], stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "daemon.log").open("a"), text=True)
        try:
            port = None
            deadline = time.monotonic() + 240
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
    assert got[("ares_fit_duration_seconds_count", ())] >= 1, "no booster fit within 240 s"
    assert 0 < got[("ares_fit_duration_seconds_sum", ())] < 60
    assert got[("ares_frames_total", ())] > 100
    assert got[("ares_predictions_total", (("symbol", SYMBOL),))] >= 60
    assert got[("ares_engine_lag_seconds_count", ())] > 0
    assert got[("ares_model_version", (("kind", "booster"), ("symbol", SYMBOL)))] >= 1
    assert (("ares_model_version", (("kind", "river"), ("symbol", SYMBOL)))) in got
    assert got[("ares_equity", ())] > 0
    ensemble = (("model", "ensemble"), ("symbol", SYMBOL))  # model quality, read at the scrape
    assert 0 < got[("ares_rolling_log_loss", ensemble)] < 5
    assert 0 <= got[("ares_rolling_accuracy", ensemble)] <= 1


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
require_edge = false  # orders from the first bars: the order path is tested, not the edge
{trading}
""")
    return subprocess.Popen(
        [sys.executable, "daemon.py", "--live", "--symbols", SYMBOL, "--streams",
         "aggTrade,bookTicker", "--ws-url", urls["ws"], "--rest-url", urls["rest"],
         "--db", str(tmp / "live.db"), "--config", str(cfg), "--log-json",
         "--checkpoint-every", "0.5"],
        cwd=Path(__file__).resolve().parents[2], env=env, stdout=subprocess.DEVNULL,
        stderr=(tmp / "daemon.log").open("a"), text=True)


def wait_for_fills(db: Path, n: int, timeout: float = 120.0) -> None:
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
    from ares_stream.sim.exchange import Account

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
    from ares_stream import codec

    broker = codec.loads(state[0])["broker"]
    assert broker["cash"] == pytest.approx(balances["USDT"], abs=1e-6)
    assert qty == pytest.approx(balances["SIM"], abs=1e-9)
    for secret in (API_KEY, API_SECRET):
        assert secret not in err
        for path in tmp_path.glob("live.db*"):
            assert secret.encode() not in path.read_bytes()


def test_live_refuses_without_opt_in_or_keys(tmp_path: Path) -> None:
    """--live without `live = true`, or without keys, exits 2 with one line saying what is
    missing — before connecting to anything."""
    root = Path(__file__).resolve().parents[2]
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
