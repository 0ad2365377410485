"""REST fills run beside the pump, several at once: a cold start of many symbols warms them
concurrently (``feed.backfill_concurrency``) instead of one after another, each symbol's
history complete."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from urllib.request import urlopen

from ares_stream.sim.exchange import Faults, Tape
from tests.conftest import wait_until
from tests.daemon.test_ingest import exchange_in_thread
from tests.paper import paper_daemon, recordings, symbols_in, write_config

SYMBOLS = ["SIMAUSDT", "SIMBUSDT", "SIMCUSDT", "SIMDUSDT"]


def history(rest: str, symbol: str) -> int:
    with urlopen(f"{rest}/api/v3/aggTrades?symbol={symbol}&limit=1000", timeout=60) as r:
        return len(json.loads(r.read()))


def test_a_cold_start_warms_its_symbols_at_once(tmp_path: Path) -> None:
    """Against an exchange that answers REST 0.5 s late, four symbols' warm-ups overlap (each
    one starts before the first ends); every symbol is warmed and predicts."""
    tape = Tape.from_recording(recordings(tmp_path, SYMBOLS, seconds=900, seed=60))
    write_config(tmp_path, "\n[batch]\nenabled = false\n")
    cfg = (tmp_path / "daemon.toml").read_text().replace(
        "[feed]\n", "[feed]\nwarmup_trades = 300\nbackfill_concurrency = 4\n")
    (tmp_path / "daemon.toml").write_text(cfg)
    with exchange_in_thread(tape, rate=1000, faults=Faults(rest_delay_s=0.5),
                            start_on_subscribe=False) as urls:
        wait_until(lambda: all(history(urls["rest"], s) >= 300 for s in SYMBOLS),
                   what="history of every symbol on REST")
        proc = paper_daemon(urls, tmp_path, "--db", str(tmp_path / "paper.db"),
                            symbols=",".join(SYMBOLS))
        try:
            wait_until(lambda: symbols_in(tmp_path / "paper.db") == set(SYMBOLS)
                       or proc.poll() is not None, what="predictions of every symbol")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=120) == 0
    events = [json.loads(line) for line in (tmp_path / "daemon.log").read_text().splitlines()
              if '"warmup_started"' in line or '"warmup_done"' in line]
    started = [e["symbol"] for e in events if e["event"] == "warmup_started"]
    first_done = next(i for i, e in enumerate(events) if e["event"] == "warmup_done")
    assert set(started) == set(SYMBOLS)
    assert len({e["symbol"] for e in events[:first_done]}) >= 2, events  # they overlapped
    done = [e for e in events if e["event"] == "warmup_done"]
    assert {e["symbol"] for e in done} == set(SYMBOLS)
