"""The live feed end to end against the local exchange, under every fault it can inject.

Real components only: the local Binance-compatible exchange (websocket + REST on 127.0.0.1), the
websocket client, the real python-binance AsyncClient for backfill, the gate and the engine. For
every fault: the trade ids the engine received equal exactly the tape's — none lost, none
duplicated, in order — and every incident is counted in feed health.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from ares_stream.config import Config, replace_values
from ares_stream.daemon.ingest import Ingest, run_record, ws_settings
from ares_stream.engine import Engine
from ares_stream.events import Trade
from ares_stream.feed import RawFrame
from ares_stream.feed.backfill import Backfiller
from ares_stream.feed.gate import Gate
from ares_stream.feed.recording import RecordingSource
from ares_stream.feed.ws import WsFeed, backoff
from ares_stream.replay import run_replay
from ares_stream.sim.exchange import Faults, LocalExchange, Tape
from ares_stream.sim.simulator import write_recording
from tests.conftest import DEADLINE, shared_path, wait_until
from tests.test_engine import ListSink

SYMBOL = "SIMUSDT"


class CaptureEngine(Engine):
    """The engine, keeping the trade ids it processed (after the gate), in order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ids: list[int] = []

    def _process(self, ev: Any) -> None:
        if type(ev) is Trade:
            self.ids.append(ev.trade_id)
        super()._process(ev)


@pytest.fixture(scope="module")
def tape(tmp_path_factory: pytest.TempPathFactory) -> Tape:
    """About 14,000 frames (5,600 aggTrades, 8,500 book tops) of the simulator."""
    path = tmp_path_factory.mktemp("tape") / "sim.gz"
    write_recording(path, seconds=1800, seed=11, symbol=SYMBOL)
    return Tape.from_recording([path])


def tape_ids(tape: Tape) -> list[int]:
    return [row["a"] for row in tape.agg_trades[SYMBOL].rows]


def live_config(ex: LocalExchange, **feed: Any) -> Config:
    # silence_timeout_s: long, so that only a planted silence is one; a short one would take a
    # stall of a busy machine, or the engine still busy after the tape, for a dead connection
    settings = {"symbols": [SYMBOL], "streams": ["aggTrade", "bookTicker"], "ws_url": ex.ws_url,
                "rest_url": ex.rest_url, "silence_timeout_s": 30.0, **feed}
    return replace_values(Config(), {"feed": settings, "bars": {"interval": "10s"}})


async def ingest(tape: Tape, faults: Faults, *, rate: float = 20_000, learn: bool = False,
                 timeout: float = 2 * DEADLINE, **feed: Any
                 ) -> tuple[CaptureEngine, ListSink, Any]:
    """Run the live path until the engine has the tape's last trade (or time runs out)."""
    last = tape_ids(tape)[-1]
    async with LocalExchange(tape, rate=rate, faults=faults, ping_interval=None) as ex:
        cfg = live_config(ex, **feed)
        sink = ListSink()
        gate = Gate(backfill=True, cursors={(SYMBOL, "agg_id"): tape_ids(tape)[0] - 1})
        engine = CaptureEngine(cfg, sink, gate=gate, learn=learn)
        await pump_until(engine, ex.rest_url, has_id(engine, last), timeout=timeout)
        return engine, sink, dict(ex.stats)


def has_id(engine: CaptureEngine, last: int) -> Callable[[], bool]:
    return lambda: bool(engine.ids) and engine.ids[-1] == last


async def pump_until(engine: Engine, rest_url: str, done: Callable[[], bool], *,
                     recorder: Any = None, clock: Any = None,
                     checkpoint: Callable[[], None] | None = None,
                     timeout: float = 2 * DEADLINE) -> WsFeed:
    """The live path (websocket, REST backfill, the engine) until ``done()``; its feed."""
    feed_ = WsFeed(ws_settings(engine.config), reconnect_delays=backoff(0.02, cap=0.1))
    async with Backfiller(rest_url) as backfiller:
        run = Ingest(engine, feed_, backfiller, recorder, clock)
        run.checkpoint = checkpoint
        feed_.on_notice = run.on_notice
        task = asyncio.create_task(run.run())
        try:
            async with asyncio.timeout(timeout):
                while not done():
                    await asyncio.sleep(0.02)
        finally:
            run.stop()
            await task
    return feed_


@contextlib.contextmanager
def exchange_in_thread(tape: Tape, **kwargs: Any) -> Iterator[dict[str, str]]:
    """A local exchange on its own thread and event loop (so a blocking client cannot stall it);
    yields its URLs."""
    urls: dict[str, str] = {}
    stop = threading.Event()

    def serve() -> None:
        async def main() -> None:
            async with LocalExchange(tape, ping_interval=None, **kwargs) as ex:
                urls.update(ws=ex.ws_url, rest=ex.rest_url)
                while not stop.is_set():
                    await asyncio.sleep(0.02)

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        wait_until(lambda: urls or not thread.is_alive(), what="the exchange to listen")
        assert urls, "the exchange thread ended without listening"
        yield urls
    finally:
        stop.set()
        thread.join(timeout=10)


def incidents(sink: ListSink) -> Counter[str]:
    return Counter(i[3] for i in sink.incidents)


def check_exact(engine: CaptureEngine, tape: Tape) -> None:
    assert engine.ids == tape_ids(tape), "ids lost, duplicated or out of order"


def test_clean_feed_delivers_the_tape(tape: Tape) -> None:
    """Without faults the engine receives every trade id once, in order."""
    engine, sink, _ = asyncio.run(ingest(tape, Faults()))
    check_exact(engine, tape)
    assert incidents(sink)["connected"] == 1


def test_repeated_drops_are_backfilled(tape: Tape) -> None:
    """The server drops the connection mid-stream again and again; REST fills every hole."""
    # 3.5 s of tape: time for three drops and reconnections on a slow machine
    engine, sink, stats = asyncio.run(
        ingest(tape, Faults(drop_every=500, max_drops=5), rate=4_000))
    check_exact(engine, tape)
    assert stats["drops"] >= 3
    seen = incidents(sink)
    assert seen["disconnected"] == stats["drops"] and seen["connected"] == stats["drops"] + 1
    assert seen["backfill"] >= 1 and engine.gate.counts["backfilled"] > 0
    assert engine.gate.counts["unfilled"] == 0


def test_malformed_frames_are_counted_and_skipped(tape: Tape) -> None:
    """Every malformed frame is rejected and recorded; no trade is lost."""
    engine, sink, stats = asyncio.run(ingest(tape, Faults(malformed_every=250)))
    check_exact(engine, tape)
    assert stats["malformed"] > 0
    assert engine.counts["rejected"] == stats["malformed"] == incidents(sink)["rejected"]


def test_duplicates_and_out_of_order_frames(tape: Tape) -> None:
    """Re-sent and swapped frames: duplicates dropped and counted, order restored."""
    engine, _, stats = asyncio.run(ingest(tape, Faults(duplicate_every=97, swap_every=89)))
    check_exact(engine, tape)
    assert stats["duplicates"] > 0 and stats["swaps"] > 0
    assert engine.gate.counts["duplicates"] > 0 and engine.gate.counts["gaps"] > 0


def test_silence_triggers_reconnect_and_backfill(tape: Tape) -> None:
    """A connection that goes silent is replaced by the watchdog; the hole is backfilled."""
    # 4.7 s of tape: time for two planted silences, each noticed and reconnected, on a slow
    # machine. The watchdog may also fire once the tape has ended, or at a stall of the machine.
    engine, sink, stats = asyncio.run(ingest(tape, Faults(silence_after=500, max_drops=2),
                                             rate=3_000, silence_timeout_s=0.2))
    check_exact(engine, tape)
    assert stats["silences"] == 2 and incidents(sink)["silence"] >= 2


def test_clean_closes_and_server_shutdown(tape: Tape) -> None:
    """Clean closes and a serverShutdown notice both lead to a new connection, nothing lost."""
    # 2.8 s of tape: time for two closes and reconnections on a slow machine
    engine, sink, stats = asyncio.run(ingest(tape, Faults(close_every=400, max_drops=2),
                                             rate=5_000))
    check_exact(engine, tape)
    assert stats["closes"] == 2 and incidents(sink)["disconnected"] == 2
    engine, sink, stats = asyncio.run(ingest(tape, Faults(shutdown_after=1500, max_drops=1)))
    check_exact(engine, tape)
    assert stats["shutdowns"] == 1 and incidents(sink)["server_shutdown"] == 1


def test_refused_connections_are_retried(tape: Tape) -> None:
    """Handshakes refused for a while are retried with backoff and reported."""
    engine, sink, stats = asyncio.run(ingest(tape, Faults(refuse_connections=3)))
    check_exact(engine, tape)
    assert stats["refused"] == 3 and incidents(sink)["connect_failed"] == 3


def test_rest_429_during_backfill_is_waited_out(tape: Tape) -> None:
    """REST answers 429 to the backfill twice; it waits Retry-After and still fills the hole."""
    engine, _, stats = asyncio.run(
        ingest(tape, Faults(drop_every=1500, max_drops=1, rest_429=2)))
    check_exact(engine, tape)
    assert stats["rest_429"] == 2 and engine.gate.counts["unfilled"] == 0


def test_catch_up_checkpoints_as_it_goes_exactly_at_what_was_consumed(tape: Tape) -> None:
    """A catch-up of the whole tape over REST (the exchange broadcast it before we connected)
    calls the checkpoint hook every ``backfill_checkpoint_items`` items; at every call the
    gate's cursor is exactly the last id the engine consumed, and all arrive once, in order."""
    key = (SYMBOL, "agg_id")

    async def main() -> tuple[CaptureEngine, list[tuple[int, int, int]]]:
        async with LocalExchange(tape, ping_interval=None, start_on_subscribe=False) as ex:
            await asyncio.wait_for(ex.done.wait(), DEADLINE)
            cfg = live_config(ex, backfill_checkpoint_items=500)
            gate = Gate(backfill=True, cursors={key: tape_ids(tape)[0] - 1})
            engine = CaptureEngine(cfg, ListSink(), gate=gate)
            saved: list[tuple[int, int, int]] = []

            def checkpoint() -> None:
                saved.append((gate.cursors()[key], engine.ids[-1], len(engine.ids)))

            await pump_until(engine, ex.rest_url, has_id(engine, tape_ids(tape)[-1]),
                             checkpoint=checkpoint)
            return engine, saved

    engine, saved = asyncio.run(main())
    check_exact(engine, tape)
    assert len(saved) >= len(tape_ids(tape)) // 1_000  # every page of 1,000 is past 500
    assert all(cursor == last for cursor, last, _ in saved)
    counts = [n for _, _, n in saved]
    assert all(b - a >= 500 for a, b in itertools.pairwise(counts))


def test_unfillable_gap_is_recorded_not_hidden(tape: Tape) -> None:
    """When REST refuses (418), the hole is recorded as a gap and the feed carries on."""
    ids = tape_ids(tape)
    engine, sink, _ = asyncio.run(
        ingest(tape, Faults(drop_every=1500, max_drops=1, rest_418=50)))
    assert engine.gate.counts["unfilled"] >= 1 and sink.gaps
    missing = set(ids) - set(engine.ids)
    gaps = [g for g in sink.gaps if g.kind == "agg_id"]
    assert missing == {i for g in gaps for i in range(g.first_missing, g.last_missing + 1)}
    assert engine.ids == sorted(set(engine.ids))


def test_record_against_the_exchange_replays_identically(tape: Tape, tmp_path: Path) -> None:
    """`record` under drops writes a recording whose replay gives the live run's predictions."""

    async def main() -> tuple[list[Any], dict[str, Any]]:
        faults = Faults(drop_every=900, max_drops=3)
        async with LocalExchange(tape, rate=20_000, faults=faults, ping_interval=None) as ex:
            cfg = live_config(ex)
            sink = ListSink()
            gate = Gate(backfill=True, cursors={(SYMBOL, "agg_id"): tape_ids(tape)[0] - 1})
            from ares_stream.feed.recorder import RecordingWriter

            with RecordingWriter(tmp_path / "rec") as rec:
                engine = CaptureEngine(cfg, sink, gate=gate, recorder=rec)
                await pump_until(engine, ex.rest_url, has_id(engine, tape_ids(tape)[-1]),
                                 recorder=rec)
            return sink.predictions, dict(engine.gate.counts)

    predictions, gate_counts = asyncio.run(main())
    assert gate_counts["backfilled"] > 0 and predictions
    cfg = replace_values(Config(), {"bars": {"interval": "10s"}})
    result = run_replay([str(tmp_path / "rec")], cfg, db_path=tmp_path / "replay.db")
    with sqlite3.connect(result.db_path) as conn:
        replayed = conn.execute("select ts_event, value from predictions order by ts_event")
        assert [(p.ts_event, p.value) for p in predictions] == list(replayed)


def test_record_command_writes_recordings_and_feed_health(
        tape: Tape, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run_record (the `ares-stream record` body) records the stream and its incidents."""
    from ares_stream.daemon import ingest as live

    made: list[Ingest] = []  # run_record's ingest, to stop it once it has what is checked
    build = live.build_ingest

    def build_and_keep(*args: Any, **kwargs: Any) -> Any:
        ingest, backfiller = build(*args, **kwargs)
        made.append(ingest)
        return ingest, backfiller

    monkeypatch.setattr(live, "build_ingest", build_and_keep)

    def recorded_enough() -> bool:
        counts = made[0].engine.counts if made else {}
        return (counts.get("feed_connected", 0) >= 2 and counts.get("frames", 0) > 1000
                and made[0].engine.gate.counts["backfilled"] > 0)

    async def main() -> dict[str, Any]:
        async with LocalExchange(tape, rate=20_000, faults=Faults(drop_every=2000, max_drops=1),
                                 ping_interval=None) as ex:
            cfg = live_config(ex)
            # the duration only ends a run that never gets there
            task = asyncio.create_task(run_record(cfg, str(tmp_path / "out"),
                                                  duration=2 * DEADLINE))
            async with asyncio.timeout(2 * DEADLINE):
                while not (recorded_enough() or task.done()):
                    await asyncio.sleep(0.02)
            if made:
                made[0].stop()
            return await task

    summary = asyncio.run(main())
    assert summary["files"] and summary["feed"]["connects"] >= 2
    frames = list(RecordingSource([tmp_path / "out"]))
    assert len(frames) >= summary["counts"]["frames"] > 1000
    with sqlite3.connect(tmp_path / "out" / "record.db") as conn:
        kinds = dict(conn.execute("select kind, count(*) from feed_health group by kind"))
    assert kinds["disconnected"] >= 1 and kinds["connected"] >= 2
    assert kinds.get("backfill", 0) >= 1


def test_rotation_with_overlap_loses_and_duplicates_nothing(tape: Tape) -> None:
    """Proactive rotation opens a new connection before closing the old: every id exactly once."""
    engine, sink, _ = asyncio.run(ingest(tape, Faults(), rate=5_000, rotate_hours=0.25 / 3600))
    check_exact(engine, tape)
    assert incidents(sink)["rotated"] >= 2


def test_real_trade_capture_with_drops_is_backfilled_by_trade_id(tmp_path: Path) -> None:
    """The real BTCUSDT @trade capture, dropped mid-stream, is completed via historicalTrades."""
    real = Tape.from_recording([shared_path("ws/binance-spot-btcusdt-20240808.gz")])
    ids = [row["id"] for row in real.trades["BTCUSDT"].rows]

    async def main() -> tuple[list[int], dict[str, int]]:
        # about 2 s of tape: time for two drops and reconnections on a slow machine
        faults = Faults(drop_every=4_000, max_drops=3)
        async with LocalExchange(real, rate=20_000, faults=faults, ping_interval=None) as ex:
            cfg = replace_values(live_config(ex), {"feed": {
                "symbols": ["BTCUSDT"], "streams": ["trade", "bookTicker", "depth@100ms"]}})
            gate = Gate(backfill=True, cursors={("BTCUSDT", "trade_id"): ids[0] - 1})
            engine = CaptureEngine(cfg, ListSink(), gate=gate, learn=False)
            await pump_until(engine, ex.rest_url, has_id(engine, ids[-1]))
            return engine.ids, dict(ex.stats)

    got, stats = asyncio.run(main())
    assert stats["drops"] >= 2
    assert got == ids


def test_record_cli_output_replays_to_the_tape(tape: Tape, tmp_path: Path) -> None:
    """`ares-stream record` as a process, against the exchange under drops: its recording
    replays to exactly the tape's trades."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "rec"
    faults = Faults(drop_every=1200, max_drops=2)
    last = b'"a":%d,' % tape_ids(tape)[-1]

    def has_last_trade() -> bool:
        """Whether the recording (flushed each second, read up to there) has the tape's last
        trade: in a recording, every trade before it is there by then, live or backfilled."""
        if not list(out.glob("*.gz")):
            return False
        with capture_logs():  # the tail not flushed yet reads as cut: a warning
            return any(last in item.data for item in RecordingSource([out], skip_bad=True)
                       if isinstance(item, RawFrame))

    logs = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with exchange_in_thread(tape, rate=8_000, faults=faults) as urls, \
            logs[0].open("w") as stdout, logs[1].open("w") as stderr:
        proc = subprocess.Popen(  # stopped by SIGTERM, as a service is, once it has the tape
            [sys.executable, "-m", "ares_stream.cli", "record", "--symbols", SYMBOL, "--streams",
             "aggTrade,bookTicker", "--ws-url", urls["ws"], "--rest-url", urls["rest"],
             "--out", str(out), "--duration", str(5 * DEADLINE)],
            stdout=stdout, stderr=stderr, text=True)
        try:
            wait_until(lambda: proc.poll() is not None or has_last_trade(), every=0.2,
                       timeout=3 * DEADLINE, what="the recording to hold the last trade")
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=DEADLINE)
        finally:
            proc.kill()
    assert proc.returncode == 0, logs[1].read_text()[-2000:]
    assert "recorded" in logs[0].read_text()
    sink = ListSink()
    engine = CaptureEngine(replace_values(Config(), {"bars": {"interval": "10s"}}), sink)
    for item in RecordingSource([out]):
        engine.feed(item)
    assert engine.ids == tape_ids(tape)
    assert sink.gaps == []


def test_engine_falling_behind_is_reported_and_loses_nothing(tape: Tape) -> None:
    """An engine slower than the wire (exchange in its own thread): the queue stays bounded,
    the socket is paused, the lag episode is reported, and no trade id is lost."""
    class SlowEngine(CaptureEngine):
        def _process(self, ev: Any) -> None:
            if type(ev) is Trade:
                time.sleep(0.0005)  # 0.5 ms per trade: far slower than the 20k frames/s served
            super()._process(ev)

    async def main(urls: dict[str, str]) -> tuple[SlowEngine, ListSink, dict[str, int]]:
        cfg = replace_values(Config(), {"feed": {
            "symbols": [SYMBOL], "streams": ["aggTrade", "bookTicker"], "ws_url": urls["ws"],
            "rest_url": urls["rest"], "queue_size": 200, "silence_timeout_s": 5.0}})
        sink = ListSink()
        gate = Gate(backfill=True, cursors={(SYMBOL, "agg_id"): tape_ids(tape)[0] - 1})
        engine = SlowEngine(cfg, sink, gate=gate, learn=False)
        feed_ = await pump_until(engine, urls["rest"], has_id(engine, tape_ids(tape)[-1]))
        return engine, sink, dict(feed_.stats)

    with exchange_in_thread(tape, rate=20_000) as urls:
        engine, sink, stats = asyncio.run(main(urls))
    check_exact(engine, tape)
    assert stats["max_queue"] <= 200 and stats["queue_full_waits"] > 0
    assert incidents(sink)["lag"] >= 1 and engine.counts["lag_episodes"] >= 1


def test_live_batch_learning_runs_off_the_loop(tape: Tape, tmp_path: Path) -> None:
    """Live: boosters train and validate in the worker process while frames keep flowing;
    APScheduler drives the periodic validation; results land in the registry."""
    from ares_stream.batch.learner import for_run
    from ares_stream.daemon.ingest import batch_clock
    from ares_stream.store.db import open_db
    from ares_stream.store.runs import RunStore

    async def main() -> tuple[dict[str, int], list[int], int]:
        async with LocalExchange(tape, rate=3_000, ping_interval=None) as ex:
            cfg = replace_values(live_config(ex), {
                "bars": {"interval": "1s"}, "labels": {"horizon": 5, "threshold_bps": 1.0},
                "batch": {"min_rows": 300, "update_rows": 200, "update_every": "1s",
                          "validate_every": "1s", "validate_rows": 300, "folds": 3,
                          "rounds_refit": 10, "rounds_update": 5, "max_trees": 30,
                          "bootstrap": 200}})
            store = RunStore(open_db(tmp_path / "live.db"), mode="paper", config={},
                             sources=[])
            gate = Gate(backfill=True, cursors={(SYMBOL, "agg_id"): tape_ids(tape)[0] - 1})
            engine = CaptureEngine(cfg, store, gate=gate,
                                   batch=for_run(cfg, store, replay=False))
            clock = batch_clock(engine.batch)
            counts = engine.batch.counts  # the clock keeps submitting after the tape ends
            await pump_until(engine, ex.rest_url, lambda: (
                has_id(engine, tape_ids(tape)[-1])() and counts["validations"] >= 1
                and counts["trained"] >= 2), clock=clock, timeout=3 * DEADLINE)
            engine.batch.finish(engine.last_ts)
            store.flush()
            models = [n for (n,) in store.db.execute("select n_trees from models")]
            return dict(engine.batch.counts), models, clock.stats["batch_validate"]["runs"]

    counts, trees, clock_runs = asyncio.run(main())
    assert counts["trained"] >= 2 and counts["validations"] >= 1, str(counts)
    assert trees and max(trees) <= 30
    assert clock_runs >= 1


def test_the_live_book_resyncs_after_a_depth_gap_and_its_recording_replays_identically(
        tmp_path: Path) -> None:
    """With book features on, the live path syncs the local book from the exchange's depth diffs
    and a REST snapshot, resyncs after diffs lost on its connection (recorded in feed health),
    and the recording it writes replays to the same predictions: the same book, the same
    features."""
    path = tmp_path / "depth.gz"
    write_recording(path, seconds=1200, seed=12, symbol=SYMBOL, book_beta=3e-4,
                    streams=("aggTrade", "bookTicker", "depth@100ms"))
    tape = Tape.from_recording([path])
    last = tape_ids(tape)[-1]

    async def main() -> tuple[CaptureEngine, ListSink]:
        faults = Faults(skip_depth_every=3000)
        async with LocalExchange(tape, rate=5_000, faults=faults, ping_interval=None) as ex:
            cfg = replace_values(live_config(ex, streams=["aggTrade", "bookTicker",
                                                          "depth@100ms"]),
                                 {"features": {"book": True}})
            sink = ListSink()
            gate = Gate(backfill=True, cursors={(SYMBOL, "agg_id"): tape_ids(tape)[0] - 1})
            from ares_stream.feed.recorder import RecordingWriter

            with RecordingWriter(tmp_path / "rec") as rec:
                engine = CaptureEngine(cfg, sink, gate=gate, recorder=rec)
                await pump_until(engine, ex.rest_url, has_id(engine, last), recorder=rec)
            assert ex.stats["depth_skips"] >= 2
            return engine, sink

    engine, sink = asyncio.run(main())
    assert engine.counts["depth_break"] >= 1 and engine.counts["book_snapshots"] >= 2
    assert any(row[3] == "book_resync" for row in sink.incidents)
    assert engine.state[SYMBOL].features.book is not None
    assert sink.predictions, "bars with a synced book were predicted"
    cfg = replace_values(Config(), {"bars": {"interval": "10s"}, "features": {"book": True}})
    result = run_replay([str(tmp_path / "rec")], cfg, db_path=tmp_path / "replay.db")
    assert result.summary["book"]["resyncs"] == engine.counts["depth_break"]
    with sqlite3.connect(result.db_path) as conn:
        replayed = conn.execute("select ts_event, value from predictions order by ts_event")
        assert [(p.ts_event, p.value) for p in sink.predictions] == list(replayed)
