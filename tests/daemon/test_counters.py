"""What the live feed goes through reaches the operator: duplicates dropped, REST 429s and the
engine lag in ``feed_health`` and ``ares-stream status``; the connection in
``ares_feed_connected`` — real daemons against the local exchange, its faults injected."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from ares_stream.cli import main
from ares_stream.daemon.counters import FeedCounters
from ares_stream.daemon.ingest import LagStats
from ares_stream.sim.exchange import Faults, Tape
from ares_stream.status import status_report
from ares_stream.store.db import open_db
from ares_stream.store.runs import RunStore
from tests.daemon.test_ingest import exchange_in_thread
from tests.daemon.test_lifecycle import (
    finish,
    history_on_rest,
    scrape_metrics,
    start,
    wait_for,
)


def test_counters_write_only_what_grew_since_the_restored_totals(tmp_path: Path) -> None:
    """Built on a restored engine's totals, the counters write the growth since (not the
    restored total again); their rows are what ``status`` sums, and its lag is the period's."""
    db = tmp_path / "paper.db"
    store = RunStore(open_db(db), mode="paper", config={}, sources=[])
    counts, rest, lag = Counter(frames=1000, duplicates=40), {"rate_limited": 0, "banned": 0}, \
        LagStats()
    lag.add(900_000_000)  # a frame before the restart: not in the first period
    counters = FeedCounters(counts, rest, lag, store)
    counts.update(frames=2, duplicates=3)
    rest["rate_limited"] += 2
    lag.add(1_000_000)
    lag.add(3_000_000)
    counters.record(time.time_ns())
    counters.record(time.time_ns())  # nothing new
    store.flush()
    report = status_report(db)
    assert report["feed_health"]["total"] | {"gaps": 0} == {
        "gaps": 0, "rejected": 0, "reconnects": 0, "lag_episodes": 0, "duplicates": 3,
        "rate_limited": 2, "banned": 0}
    assert (report["lag"]["frames"], report["lag"]["p50_ms"], report["lag"]["max_ms"]) == \
        (2, 1.0, 3.0)
    store.db.conn.close()


def test_duplicates_429s_and_lag_reach_feed_health_and_status(
        tape: Tape, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An exchange that re-sends frames and answers the warm-up's first REST requests 429: the
    duplicates the gate dropped and the 429s become ``feed_health`` rows, and ``status`` (text
    and ``--json``) shows them with the engine lag of the last period."""
    db = tmp_path / "paper.db"
    faults = Faults(duplicate_every=5)
    with exchange_in_thread(tape, rate=400, faults=faults, start_on_subscribe=False) as urls:
        wait_for("history on REST", history_on_rest(urls["rest"], "aggTrades?", 200))
        faults.rest_429 = 2  # the daemon's first two REST requests (its warm-up) answered 429
        proc = start(urls, tmp_path, "--checkpoint-every", "0.5")
        try:
            def seen() -> bool:
                if not db.exists():
                    return False
                r = status_report(db)
                total = r["feed_health"]["total"]
                return (total["duplicates"] > 0 and total["rate_limited"] >= 2
                        and r["lag"] is not None)
            wait_for("duplicates, 429s and lag in the database", seen)
            assert main(["status", "--db", str(db)]) == 0
            text = capsys.readouterr().out
            assert main(["status", "--db", str(db), "--json"]) == 0
            report = json.loads(capsys.readouterr().out)
        finally:
            proc.send_signal(signal.SIGTERM)
            err = finish(proc, tmp_path)
    assert proc.returncode == 0, err[-2000:]
    total = report["feed_health"]["total"]
    assert total["rate_limited"] == 2 and total["banned"] == 0 and total["duplicates"] > 0
    assert f"{total['duplicates']:,} duplicates dropped, 2 REST 429s, 0 REST 418s" in text
    lag = report["lag"]
    assert lag["frames"] > 0 and 0 <= lag["p50_ms"] <= lag["p99_ms"] <= lag["max_ms"]
    assert f"lag          engine p50 {lag['p50_ms']:.2f} ms, p99 {lag['p99_ms']:.2f} ms" in text


def test_feed_connected_follows_the_websocket(tape: Tape, tmp_path: Path) -> None:
    """Scraping a running daemon: ``ares_feed_connected`` is 1 while connected, 0 once the
    exchange drops the connection and refuses new ones, and 1 again after it reconnects."""
    faults = Faults()
    connected = ("ares_feed_connected", ())
    with exchange_in_thread(tape, rate=400, faults=faults) as urls:
        proc = start(urls, tmp_path)
        try:
            port = metrics_port(tmp_path)
            wait_for("connected = 1", lambda: scrape_metrics(port).get(connected) == 1)
            faults.max_drops, faults.refuse_connections = 1, 3  # one drop, three refusals
            faults.drop_every = 1
            wait_for("connected = 0 after the drop",
                     lambda: scrape_metrics(port).get(connected) == 0)
            wait_for("connected = 1 after the reconnect",
                     lambda: scrape_metrics(port).get(connected) == 1)
        finally:
            proc.send_signal(signal.SIGTERM)
            err = finish(proc, tmp_path)
    assert proc.returncode == 0, err[-2000:]
    assert '"feed_disconnected"' in err or '"kind": "disconnected"' in err


def metrics_port(tmp: Path) -> int:
    """The metrics port the daemon logged at READY (``port = 0``: any free one)."""
    found: list[int] = []

    def logged_port() -> bool:
        log = tmp / "daemon.log"
        lines = log.read_text().splitlines() if log.exists() else []
        found.extend(json.loads(line)["metrics_port"] for line in lines
                     if '"daemon_started"' in line)
        return bool(found)
    wait_for("the daemon's metrics port", logged_port)
    return found[0]
