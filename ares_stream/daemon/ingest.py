"""The asyncio shell around the engine for a live feed: websocket → engine, REST backfill, record.

``Ingest.run`` takes frames from the websocket feed's bounded queue (one queue however many
connections carry the symbols: :class:`~ares_stream.feed.pool.FeedPool`) and hands each to the
engine (``engine.on_frame``: decode, gate, stages). When the gate holds a symbol behind a gap it
queues a backfill request; the shell fetches it over REST (python-binance) and gives the synthetic
frames back to the engine (``engine.on_backfill``), page by page as they arrive, then the frames
that waited. A backfill or catch-up pages on while REST has the data (bounded by
``feed.backfill_max_seconds`` and the request weight), and every
``feed.backfill_checkpoint_items`` items or ``feed.backfill_checkpoint_seconds`` seconds of it
the ``checkpoint`` hook (the daemon's) saves what the engine consumed: a restart however soon
resumes from there. Connection notices (connects, drops, silences, rotations, server
shutdowns) go to ``feed_health``; a connection that comes back (or has confirmed its
subscriptions) has its own symbols caught up over REST, not every symbol of the daemon. The
time from a frame's arrival to the end of its processing is the **lag**, sampled for p50/p99.

Nothing here computes: it only moves frames, awaits REST and flushes the recording.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from ares_stream import shards
from ares_stream.batch.learner import BatchLearner
from ares_stream.clock import LiveClock
from ares_stream.config import Config
from ares_stream.daemon.prometheus import LagHistogram
from ares_stream.engine import BatchLearning, Broker, Engine
from ares_stream.feed import RawFrame, universe
from ares_stream.feed.backfill import Backfiller, BackfillResult
from ares_stream.feed.gate import BackfillRequest, Gate
from ares_stream.feed.pool import FeedPool
from ares_stream.feed.recorder import RecordingWriter
from ares_stream.feed.ws import FeedNotice, WsFeed, WsSettings, backoff
from ares_stream.runtime import build_engine

log = structlog.get_logger("ares_stream.daemon.ingest")

_LAG_SAMPLES = 100_000
LAG_WARN_NS = 1_000_000_000  # the oldest queued frame waited this long: the engine is behind
LAG_CLEAR_NS = 100_000_000  # ... and it has caught up again below this
# notices that change whether the feed is connected (a rotation's successor is; a handover's
# old connection that died first is reported disconnected before its successor's connect)
_LINK_STATE = {"connected": True, "rotated": True, "disconnected": False}


def ws_settings(config: Config) -> WsSettings:
    """The websocket settings of a config's [feed] section."""
    f = config.feed
    ws_url, _, _ = f.urls()
    return WsSettings(
        base_url=ws_url, symbols=tuple(s.lower() for s in f.symbols), streams=f.streams,
        time_unit=f.time_unit or None, silence_timeout=f.silence_timeout_s,
        rotate_after=f.rotate_hours * 3600, queue_size=f.queue_size,
        max_streams=f.streams_per_connection,
    )


@dataclass
class LagStats:
    """Arrival-to-processed lag of the last frames, in ns."""

    samples: deque[int] = field(default_factory=lambda: deque(maxlen=_LAG_SAMPLES))

    histogram: LagHistogram | None = None  # the metrics endpoint's, when it serves one

    def add(self, lag_ns: int) -> None:
        """Record one frame's lag (ns), also in the metrics histogram when there is one."""
        self.samples.append(lag_ns)
        if self.histogram is not None:
            self.histogram.add_ns(lag_ns)

    def quantile(self, q: float) -> float:
        """The q-quantile in ms (0 when empty)."""
        if not self.samples:
            return 0.0
        arr = np.fromiter(self.samples, dtype=np.int64, count=len(self.samples))
        return float(np.quantile(arr, q, method="lower")) / 1e6


class Ingest:
    """Websocket feed → engine, with inline REST backfill and an optional recording."""

    def __init__(self, engine: Engine, feed: WsFeed | FeedPool,
                 backfiller: Backfiller | None = None, recorder: RecordingWriter | None = None,
                 clock: LiveClock | None = None,
                 *, resumed: bool = False) -> None:
        self.engine = engine
        self.feed = feed
        self.backfiller = backfiller
        self.recorder = recorder
        self.clock = clock  # APScheduler: the batch jobs on wall time
        self.lag = LagStats()
        self.stopping = asyncio.Event()
        self.catch_up_due = False  # every symbol's cursor
        self.catch_up_symbols: set[str] = set()  # ... or only these (one connection's)
        self._up: dict[int, bool] = {}  # each connection's state, by its number
        self.caught_up = not resumed  # a restart's first catch-up is its warm-up: timed
        self.behind = False  # inside an episode of the engine falling behind
        self.checkpoint: Callable[[], object] | None = None  # saves what the engine consumed
        self._waits_seen = 0
        self._unsaved = 0  # backfilled items consumed since the last checkpoint of a backfill
        self._unsaved_since = 0.0  # when the first of them came (time.monotonic())
        self.on_connection: Callable[[bool], None] | None = None  # told on connect/disconnect
        self._snapshots: list[RawFrame] = []  # REST depth snapshots fetched, not yet consumed
        self._snapshot_tasks: set[asyncio.Task[None]] = set()
        self._backfills: set[asyncio.Task[None]] = set()  # REST fills running (feed.backfill_*)
        self._fetch_slots: asyncio.Semaphore | None = None  # made on the running loop

    def on_notice(self, notice: FeedNotice) -> None:
        """A connection incident: counted and stored in feed_health, and ``on_connection``
        told whether the feed is now connected (every connection). A new connection, once it
        carries all its streams, makes the pump catch up over REST from the cursors of its
        symbols (what the gap missed may never be revealed by a later live item)."""
        if notice.kind in ("rotated", "subscribed") or (notice.kind == "connected"
                                                        and notice.complete):
            if self.feed.connections > 1 and notice.symbols:
                self.catch_up_symbols |= notice.symbols
            else:
                self.catch_up_due = True
        if self.on_connection is not None and notice.kind in _LINK_STATE:
            self._up[notice.conn] = _LINK_STATE[notice.kind]
            whole = len(self._up) == self.feed.connections and all(self._up.values())
            self.on_connection(whole)
        self.engine.counts[f"feed_{notice.kind}"] += 1
        self.engine.sink.health("", 0, notice.ts, notice.kind, 1, notice.detail)
        log.info("feed_notice", kind=notice.kind, detail=notice.detail)

    async def run(self, max_frames: int | None = None) -> None:
        """Pump frames until ``stop()`` (or ``max_frames``); always stops the feed and flushes."""
        task = asyncio.create_task(self.feed.run(), name="ws-feed")
        if self.clock is not None:
            await self.clock.start()
        try:
            await self._pump(max_frames, task)
        finally:
            if self.clock is not None:
                await self.clock.shutdown()
            self.feed.stop()
            self.stopping.set()  # a fill in flight ends itself at once (backfill_abandoned)
            for pending in list(self._snapshot_tasks):
                pending.cancel()
            await asyncio.wait_for(asyncio.gather(task, *self._snapshot_tasks, *self._backfills,
                                                  return_exceptions=True), timeout=10)
            if self.recorder is not None:
                self.recorder.flush()

    async def _pump(self, max_frames: int | None, task: asyncio.Task[None]) -> None:
        """The live hot loop: take what is queued without awaiting, await only when empty."""
        queue, engine, frames = self.feed.queue, self.engine, 0
        if self.catch_up_due and not self.caught_up:
            await self._catch_up()  # a restart's REST catch-up first: its warm-up, timed whole
        while not self.stopping.is_set():
            if self._snapshots:
                self._feed_snapshots()
            try:
                frame = queue.get_nowait()
            except asyncio.QueueEmpty:
                try:
                    frame = await asyncio.wait_for(queue.get(), timeout=0.25)
                except TimeoutError:
                    self._idle(task)
                    if self.catch_up_due or self.catch_up_symbols:
                        await self._catch_up()
                    continue
            engine.on_frame(frame.ts_init, frame.data)
            if engine.snapshot_requests:
                self._ask_snapshots()
            if engine.gate.requests:
                self._start_backfills()  # in the background: other symbols' frames go on
            if self.catch_up_due or self.catch_up_symbols:
                await self._catch_up()
            self.lag.add(time.time_ns() - frame.ts_init)
            frames += 1
            if self.recorder is not None:
                self.recorder.maybe_flush()
            if max_frames is not None and frames >= max_frames:
                return
            if not frames & 0xFF:
                self._check_lag(time.time_ns() - frame.ts_init)
                await asyncio.sleep(0)  # let the socket reader and the scheduler run

    def _check_lag(self, lag_ns: int) -> None:
        """Report each episode of the engine falling behind the socket (feed_health, log).

        Behind means a frame waited over ``LAG_WARN_NS`` in the queue, or the queue was full
        (the socket reader had to wait: from then on the backlog sits in socket buffers, where
        receive stamps cannot see it).
        """
        waits = self.feed.stats["queue_full_waits"]
        full, self._waits_seen = waits > self._waits_seen, waits
        if not self.behind and (lag_ns > LAG_WARN_NS or full):
            self.behind = True
            queued = self.feed.queue.qsize()
            self.engine.counts["lag_episodes"] += 1
            why = "queue full" if full else "queued too long"
            self.engine.sink.health("", 0, time.time_ns(), "lag", queued,
                                    f"engine {lag_ns / 1e6:.0f} ms behind the socket ({why})")
            log.warning("engine_lagging", lag_ms=round(lag_ns / 1e6), queued=queued, why=why)
        elif self.behind and lag_ns < LAG_CLEAR_NS and not full:
            self.behind = False
            log.info("engine_caught_up", lag_ms=round(lag_ns / 1e6))

    def _idle(self, task: asyncio.Task[None]) -> None:
        if task.done() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        if self.engine.batch is not None:  # results of batch jobs, also when no bar comes
            self.engine.batch.apply_due(self.engine.last_ts)
        if self.recorder is not None:
            self.recorder.maybe_flush()

    def _ask_snapshots(self) -> None:
        """Fetch a REST depth snapshot for each book the engine asked for, in the background:
        the diffs go on arriving (the book buffers them) while it is on its way."""
        for symbol in self.engine.snapshot_requests:
            if self.backfiller is None:
                log.warning("book_no_snapshot", symbol=symbol, reason="no REST: backfill off")
                continue
            task = asyncio.create_task(self._snapshot(symbol), name=f"snapshot-{symbol}")
            self._snapshot_tasks.add(task)
            task.add_done_callback(self._snapshot_tasks.discard)
        self.engine.snapshot_requests.clear()

    async def _snapshot(self, symbol: str) -> None:
        """One symbol's snapshot, retried with backoff until it comes or the daemon stops (a
        book without one stays out of sync: its symbol gets no book features)."""
        assert self.backfiller is not None
        delays = backoff(initial=1.0, cap=60.0)()
        attempt = 0
        while not self.stopping.is_set():
            got = await self.backfiller.snapshot(symbol)
            if not isinstance(got, str):
                self._snapshots.append(got)
                return
            attempt += 1
            self.engine.sink.health(symbol, 0, time.time_ns(), "book_snapshot_failed", 1, got)
            log.warning("book_snapshot_failed", symbol=symbol, reason=got, attempt=attempt)
            await asyncio.sleep(next(delays))

    def _feed_snapshots(self) -> None:
        """Fetched snapshots into the engine as frames: decoded, recorded, applied to the book
        in this order, so a replay of the recording rebuilds the same book."""
        ready, self._snapshots = self._snapshots, []
        for frame in ready:
            self.engine.on_frame(frame.ts_init, frame.data)

    def _start_backfills(self) -> None:
        """Fetch every queued request over REST in a task of its own, at most
        ``feed.backfill_concurrency`` at once (one weight budget: the backfiller's), or give it
        up as a gap when there is no REST. The pump goes on meanwhile: the gate holds the frames
        of a symbol being filled (or warmed), and passes every other symbol's — a cold start of
        many symbols never stops the ones already warm."""
        gate = self.engine.gate
        for request in gate.take_requests():
            if self.backfiller is None:
                self.engine.on_backfill(request, [], complete=False, reason="backfill disabled")
                continue
            task = asyncio.create_task(self._backfill_one(request),
                                       name=f"backfill-{request.symbol}")
            self._backfills.add(task)
            task.add_done_callback(self._backfills.discard)

    async def _backfill_one(self, request: BackfillRequest) -> None:
        if self._fetch_slots is None:
            self._fetch_slots = asyncio.Semaphore(self.engine.config.feed.backfill_concurrency)
        async with self._fetch_slots:
            warmup = "warmup" if request in self.engine.gate.warming else ""
            result = await self._fetch(request, warmup)
        if result is None:  # stopping: the cursor stays after the pages consumed; the held
            return  # items were not, so a restart asks for them
        self.engine.on_backfill(request, [], result.complete, result.reason)

    async def _catch_up(self) -> None:
        """Everything REST has after each cursor (of the symbols due), through the gate
        (duplicates dropped)."""
        only = None if self.catch_up_due else self.catch_up_symbols
        self.catch_up_due, self.catch_up_symbols = False, set()
        if self.backfiller is None:
            return
        for request in self.engine.gate.catch_up_requests():
            if only is not None and request.symbol.upper() not in only:
                continue
            result = await self._fetch(request, "" if self.caught_up else "catch_up")
            if result is None:
                return
            if result.items:
                why = "" if result.reason in ("", "not_available") else f": {result.reason}"
                self.engine.on_backfill(request, [], True, f"catch_up{why}")
        self.caught_up = self.caught_up or only is None

    def _on_page(self, request: BackfillRequest, frames: list[RawFrame]) -> None:
        """One REST page into the engine at once; a checkpoint every N items or T seconds."""
        self.engine.on_backfill(request, frames, False, final=False)
        self.engine.counts["feed_rest_pages"] += 1  # feed activity: the daemon's health sees it
        if not self._unsaved:
            self._unsaved_since = time.monotonic()
        self._unsaved += len(frames)
        f = self.engine.config.feed
        due = (self._unsaved >= f.backfill_checkpoint_items
               or time.monotonic() - self._unsaved_since >= f.backfill_checkpoint_seconds)
        if due and self.checkpoint is not None:
            if self.checkpoint() is not False:  # False: it failed, and said so itself
                log.info("backfill_checkpointed", symbol=request.symbol, kind=request.kind,
                         items=self._unsaved, cursor=self.engine.gate.cursors().get(request.key))
            self._unsaved = 0

    async def _fetch(self, request: BackfillRequest, warmup: str) -> BackfillResult | None:
        """The backfiller's answer, its pages given to the engine as they came; None when a
        stop comes first (the fetch is cancelled: the pages consumed so far stay consumed).

        ``warmup`` names a start-up fetch (``warmup``: a cold start's history; ``catch_up``: a
        restart's, from the checkpoint): its duration is logged and kept in ``feed_health``
        (kind ``warmup``), where ``ares-stream status`` shows it."""
        assert self.backfiller is not None
        started = time.monotonic()
        if warmup:
            log.info("warmup_started", how=warmup, symbol=request.symbol, kind=request.kind,
                     first=request.first_missing, last=request.last_missing)
        on_page = functools.partial(self._on_page, request)
        fetch = asyncio.ensure_future(self.backfiller.fetch(request, on_page))
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({fetch, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not fetch.done():
                fetch.cancel()
                await asyncio.gather(fetch, return_exceptions=True)
        if fetch.cancelled():
            log.info("backfill_abandoned", reason="stopping", symbol=request.symbol,
                     kind=request.kind)
            return None
        result = fetch.result()
        if warmup:
            took = time.monotonic() - started
            detail = {"how": "cold start" if warmup == "warmup" else "restart",
                      "kind": request.kind, "seconds": round(took, 3),
                      "requests": result.requests, "complete": result.complete}
            self.engine.sink.health(request.symbol, 0, time.time_ns(), "warmup",
                                    result.items, json.dumps(detail),
                                    request.first_missing, request.last_missing)
            log.info("warmup_done", how=warmup, symbol=request.symbol, kind=request.kind,
                     items=result.items, seconds=round(took, 3),
                     complete=result.complete)
        return result

    def stop(self) -> None:
        """Ask :meth:`run` to stop: the pump ends after the frame (or REST page) in hand."""
        self.stopping.set()


def build_ingest(config: Config, store: Any, *, learn: bool = True,
                 cursors: dict[tuple[str, str], int] | None = None,
                 recordings: str | None = None,
                 broker: Broker | None = None) -> tuple[Ingest, Backfiller | None]:
    """Engine (:func:`~ares_stream.runtime.build_engine`), websocket feed, backfiller and
    recorder wired from a config; the batch learner's jobs on an APScheduler clock."""
    f = config.feed
    _, rest_url, market = f.urls()
    recorder = None
    if f.record or recordings:
        recorder = RecordingWriter(recordings or f.recordings_dir)
    cold = learn and not cursors
    gate = Gate(backfill=f.backfill, cursors=cursors, warmup=f.warmup_trades if cold else 0,
                warmup_klines=f.warmup_klines if cold else 0)
    engine = build_engine(config, store, replay=False, learn=learn, gate=gate,
                          recorder=recorder, broker=broker)
    backfiller = (Backfiller(rest_url, market=market, max_seconds=f.backfill_max_seconds)
                  if f.backfill else None)
    clock = batch_clock(engine.batch)
    ingest = Ingest(engine, FeedPool(ws_settings(config), reconnect_delays=backoff()),
                    backfiller, recorder, clock, resumed=bool(cursors))
    ingest.feed.on_notice = ingest.on_notice
    return ingest, backfiller


def batch_clock(batch: BatchLearning | None) -> LiveClock | None:
    """Live batch learning: results apply when done; APScheduler drives the periodic jobs on
    the loop (they only copy a window and submit it to the worker process)."""
    if not isinstance(batch, BatchLearner):
        return None
    clock = LiveClock()
    for kind, every in (("train", batch.update_every), ("validate", batch.validate_every),
                        ("features", batch.feature_every)):
        if every > 0:
            clock.every(f"batch_{kind}", every / 1e9, functools.partial(batch.periodic, kind),
                        run_in_executor=False)
    return clock


async def run_record(config: Config, out: str, *, duration: float | None = None,
                     max_frames: int | None = None) -> dict[str, Any]:
    """``ares-stream record``: websocket → gate → recording, without learning, until stopped."""
    import contextlib
    import signal
    from pathlib import Path

    from ares_stream.config import as_dict
    from ares_stream.store.db import open_db
    from ares_stream.store.runs import RunStore

    config = shards.narrow(await universe.resolve(config))  # a file's or a quote's symbols
    store = RunStore(open_db(Path(out) / "record.db"), mode="record", config=as_dict(config),
                     sources=[config.feed.urls()[0]])
    ingest, backfiller = build_ingest(config, store, learn=False, recordings=out)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, ingest.stop)
    status = "failed"
    try:
        async with backfiller if backfiller is not None else contextlib.nullcontext():
            if duration is not None:
                loop.call_later(duration, ingest.stop)
            await ingest.run(max_frames)
        status = "finished"
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        summary = record_summary(ingest)
        if ingest.recorder is not None:
            ingest.recorder.close()
        store.close(status, summary)
        store.db.conn.close()
    return summary


def record_summary(ingest: Ingest) -> dict[str, Any]:
    """What a recording session saw: frames, files, gaps, backfills, connections, lag."""
    rec = ingest.recorder
    return {
        "counts": dict(sorted(ingest.engine.counts.items())),
        "gate": dict(ingest.engine.gate.counts),
        "feed": dict(ingest.feed.stats),
        "files": [str(p) for p in rec.files] if rec is not None else [],
        "lag_p50_ms": ingest.lag.quantile(0.5), "lag_p99_ms": ingest.lag.quantile(0.99),
    }
