"""The daemon: the asyncio shell around the engine, its whole life on one screen.

``startup() → run() → shutdown()``:

- **startup** takes the database's lock (:mod:`ares_stream.store.lock`: one owner, a second
  daemon is refused naming the first's pid), binds the metrics port, then opens the mode's own
  database (paper and live never share a file), resumes the run a crash left behind (same run
  id), restores the newest checkpoint — learners, features, labels, bar builders, counters — and
  the feed cursor, and wires the websocket ingest, REST backfill, recording and batch learning;
  a start that fails after that closes the run it opened ``failed``;
- **run** pumps frames until asked to stop; a checkpoint every ``checkpoint_every`` seconds
  flushes every buffered row, then writes the engine state and the cursor; the first thing after
  connecting is a REST catch-up from the cursor, so a restart re-processes exactly what came after
  the checkpoint;
- **shutdown** stops the feed, writes a final checkpoint and closes the run — within
  ``shutdown_timeout`` seconds.

``--duration`` stops the daemon after that many wall seconds, through the normal shutdown. A
plug-in adds its own tasks beside the pump (``extra_tasks``: the simulated exchange's harness,
:mod:`ares_stream.sim.harness`, watches for its tape's end and prints progress); the daemon knows
nothing of what they are.

Every ``report.every_hours`` (default 24) an APScheduler job writes the report of the period just
past (:mod:`ares_stream.report`) under ``report.dir``: the job's thread runs ``ares-stream report``
in a child process, so drawing never competes with the event loop for the GIL, and the child reads
the database read-only through the WAL.

Signals: SIGTERM and SIGINT stop gracefully; a second SIGINT forces an immediate exit (130);
SIGHUP re-reads the config file's ``[trading]`` limits and logs them (everything else needs a
restart).

Rows are written only at checkpoints (and idempotently), so a crash loses at most the last
checkpoint interval, and what is on disk always matches a checkpoint.

Under systemd (``Type=notify``) the daemon sends READY once its loop runs, STATUS with its
counters, WATCHDOG only while it is healthy — the pump is alive and frames (or connection
attempts) came within ``STALL_AFTER`` seconds — and STOPPING when it shuts down; a daemon that
stops pinging is restarted by systemd.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import faulthandler
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from ares_stream import codec, shards
from ares_stream.batch import manual
from ares_stream.batch.learner import BatchLearner
from ares_stream.clock import LiveClock
from ares_stream.config import Config, as_dict, load_config, state_changes
from ares_stream.daemon import alerts, counters, startup
from ares_stream.daemon.dashboard import Dashboard
from ares_stream.daemon.ingest import Ingest, build_ingest
from ares_stream.daemon.prometheus import Metrics
from ares_stream.daemon.sdnotify import Notifier, watchdog_interval
from ares_stream.errors import AresError, StorageError
from ares_stream.feed import universe
from ares_stream.learners import memory
from ares_stream.learners.booster import xgboost as booster_module
from ares_stream.store import checkpoints
from ares_stream.store.db import open_db
from ares_stream.store.failures import STORAGE_ERRORS, storage_failure
from ares_stream.store.lock import DatabaseLock
from ares_stream.store.reserve import Reserve
from ares_stream.store.runs import RunStore
from ares_stream.trading import paper

if TYPE_CHECKING:  # paper mode never imports the order client
    from ares_stream.trading.live import LiveBroker

log = structlog.get_logger("ares_stream.daemon.lifecycle")

ExtraTasks = Callable[["Daemon"], list[Coroutine[Any, Any, None]]]

NEVER = 2**62  # flush_rows of the daemon's run store: rows are written on its timers only
STALL_AFTER = 120.0  # seconds without a frame or a connection attempt: unhealthy, no WATCHDOG
REPORT_TIMEOUT = 280.0  # seconds a periodic report may take (the clock abandons a job at 300)


@dataclass
class DaemonOptions:
    """How to run the daemon: mode, database, checkpoint period and time bounds (seconds)."""
    mode: str  # "paper" | "live"
    db_path: Path
    config_path: Path | None = None
    checkpoint_every: float = 5.0
    shutdown_timeout: float = 30.0
    duration: float | None = None  # wall seconds, then stop


class Daemon:
    """One shard's process: startup → run → shutdown. ``extra_tasks(daemon)``: coroutines a
    plug-in runs beside the pump, cancelled at shutdown (they may call ``request_stop``)."""

    def __init__(self, config: Config, options: DaemonOptions,
                 extra_tasks: ExtraTasks | None = None) -> None:
        self.config = config
        self.options = options
        self.extra_tasks = extra_tasks
        self.stop_requested = asyncio.Event()
        self.interrupts = 0
        self.store: RunStore | None = None
        self.ingest: Ingest | None = None
        self.checkpoints = 0
        self.checkpoint_failures = 0  # in a row; > 0: health is red and nothing trades
        self.checkpoint_error = ""
        self.reserve = Reserve(options.db_path)
        self.notifier = Notifier()
        self.metrics: Metrics | None = None
        self.metrics_port: int | None = None
        self.broker: paper.PaperBroker | None = None  # the engine's (paper, or live on it)
        self.live_broker: LiveBroker | None = None
        self._activity = (0, time.monotonic())  # (frames + notices seen, when that changed)
        self._reported_until = 0  # event time the last periodic report reached, ns
        self.lock: DatabaseLock | None = None  # one owner per database, from startup on
        self.alerts: alerts.Alerts | None = None  # webhooks: hooked into the log events
        self.dashboard: Dashboard | None = None  # [monitor] enabled: its child process
        self._dashboard_start: asyncio.Task[str | None] | None = None

    async def main(self) -> int:
        """The daemon's life: signals first, then startup, run and (always) shutdown; returns 0."""
        self._signals()  # first: a stop requested from here on goes through shutdown
        if early := startup.requested():  # came while the process was still starting
            self.request_stop(early)
        try:
            try:
                await self.startup()
            except BaseException as exc:
                await self._start_failed(exc)
                raise
            try:
                await self.run()
            finally:
                await self.shutdown()
        finally:
            await self._stop_dashboard()
            await alerts.stop(self.alerts)
            await self._release_signals()
            if self.lock is not None:
                self.lock.release()  # the database is closed: the next owner may take it
        return 0

    async def _stop_dashboard(self) -> None:
        if self._dashboard_start is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._dashboard_start
        if self.dashboard is not None:
            await self.dashboard.stop()

    async def _start_failed(self, exc: BaseException) -> None:
        """Start-up failed after the lock (a taken metrics port, an exchange refusing a live
        start, anything): the endpoint closes, and a run it opened is closed ``failed`` with
        the reason — never resumed, unless it has a checkpoint from an earlier start."""
        if self.metrics is not None:
            await self.metrics.stop()
        if self.ingest is not None and self.ingest.recorder is not None:
            self.ingest.recorder.close()
        if self.store is not None:
            reason = f"start-up failed: {str(exc) or type(exc).__name__}"
            self.reserve.release()  # (room for that row if the start failed on a full disk)
            self.store.abandon(reason)
            log.error("daemon_start_failed", run_id=self.store.run_id, error=reason)

    # -- startup ------------------------------------------------------------------------------

    async def startup(self) -> None:
        """Lock, open, resume, wire; READY. A stop already requested leaves the database
        untouched; one that comes during an await below is honoured by ``run`` and ``shutdown``.
        The database's lock comes first (a second daemon on it is refused, naming the holder's
        pid), then the metrics port (a taken one refuses the start before any run exists)."""
        if self.stop_requested.is_set():
            log.info("daemon_stopped", checkpoints=0, detail="before opening the database")
            return
        self.lock = DatabaseLock(self.options.db_path).acquire()  # held until main() returns
        self.config = shards.narrow(await universe.resolve(self.config))  # a file's or a
        # quote's symbols, cut to the shard's (feed.shard)
        memory.check(self.config)  # symbols x buffers + state that cannot fit: refused, one line
        self.alerts = await alerts.start(self.config.alerts)  # from here on, events are alerted
        await self._start_metrics()
        db = open_db(self.options.db_path)
        self.reserve.keep()  # given back for the run's last row if the disk fills up
        resume = checkpoints.resumable_run(db, self.options.mode)
        self.store = RunStore(db, mode=self.options.mode, config=as_dict(self.config),
                              sources=[self.config.feed.urls()[0]], flush_rows=NEVER,
                              resume=resume)
        ckpt = checkpoints.latest(db, self.store.run_id) if resume else None
        cursors = _cursors_in(ckpt.cursors) if ckpt else None
        self.broker = await self._broker()
        self.ingest, self.backfiller = build_ingest(self.config, self.store, cursors=cursors,
                                                    broker=self.broker)
        self.ingest.checkpoint = self.try_checkpoint  # backfill and catch-up checkpoint as they go
        self.ingest.engine.log_bars = True
        if ckpt is not None:
            self.store.discard_after(ckpt.ts_event)  # written early: they come again
            self._restore(ckpt)
        self._wire_metrics()
        if self.live_broker is not None:  # the exchange is the truth: adopt balances, orders
            await self._reconcile(self.live_broker)
        self.ingest.catch_up_due = ckpt is not None  # from the cursor, even before a frame
        self._schedule_reports()
        self._count_feed()
        if self.config.monitor.enabled:  # its own process; READY does not wait for it
            self.dashboard = Dashboard(self.config.monitor, self.options.db_path)
            self._dashboard_start = asyncio.create_task(self.dashboard.start())
        ready_after = startup.process_age()
        self.notifier.ready(f"{self.options.mode}: run {self.store.run_id} started")
        self.store.health("", 0, time.time_ns(), "startup", 0,
                          json.dumps({"ready_after_s": round(ready_after, 3),
                                      "checkpoint_every_s": self.options.checkpoint_every}))
        log.info("daemon_started", mode=self.options.mode, db=str(self.options.db_path),
                 run_id=self.store.run_id, resumed=resume is not None,
                 metrics_port=self.metrics_port, ready_after_s=round(ready_after, 3),
                 checkpoint=ckpt.ts_event if ckpt else None)
        if self.config.batch.enabled:  # import xgboost now, in a thread, not on the first model
            asyncio.get_running_loop().run_in_executor(None, booster_module)

    def _schedule_reports(self) -> None:
        """The periodic report job on the ingest's APScheduler clock (one is made if batch
        learning did not need one)."""
        assert self.ingest is not None
        hours = self.config.report.every_hours
        if hours <= 0:
            return
        self._clock().every("report", hours * 3600.0, self.write_report)

    def write_report(self, now_ns: int) -> Path | None:
        """Write the report of what came since the previous one (the first: the whole run) in a
        child process (called in a worker thread); its path, or None when it failed (logged)."""
        assert self.store is not None and self.ingest is not None
        cfg = self.config.report
        since, until = self._reported_until, self.ingest.engine.last_ts
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now_ns / 1e9))
        out = Path(cfg.dir or Path(self.config.store.dir) / "reports") / \
            f"{self.options.mode}-run{self.store.run_id}-{stamp}"
        cmd = [sys.executable, "-m", "ares_stream.cli", "report",
               f"{self.options.db_path}:{self.store.run_id}", "--out", str(out),
               "--rolling", str(cfg.rolling)]
        if since:
            cmd += ["--since", str(np.datetime64(since, "ns"))]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARES_API_")}
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                  timeout=REPORT_TIMEOUT, check=False)
        except (subprocess.TimeoutExpired, OSError) as exc:
            log.error("report_failed", error=str(exc))
            return None
        if proc.returncode != 0:
            log.error("report_failed", code=proc.returncode, error=proc.stderr.strip()[-500:])
            return None
        self._reported_until = until  # a failed report's period goes into the next one
        log.info("report_written", path=str(out / "report.html"),
                 seconds=round(time.monotonic() - started, 2))
        return out / "report.html"

    async def _broker(self) -> paper.PaperBroker:
        """Paper: no client, no keys. Live: keys from the environment (or the keys file), the
        order client on the testnet unless the config says otherwise."""
        assert self.store is not None
        if self.options.mode != "live":
            return paper.for_run(self.config, self.store, flush_rows=NEVER)
        from ares_stream.trading import live  # the only import of an order-placing client

        cfg = self.config.trading
        client = await live.connect(cfg, live.load_credentials(cfg))
        self.live_broker = live.for_run(self.config, self.store, client, flush_rows=NEVER)
        log.warning("live_trading", order_url=live.order_url(cfg), testnet=cfg.testnet)
        return self.live_broker

    async def _reconcile(self, broker: LiveBroker) -> None:
        """Filters and reconciliation; an exchange that refuses us is a clean, named exit."""
        from binance.exceptions import BinanceAPIException, BinanceRequestException

        try:
            await broker.start(self.config.feed.symbols)
        except (BinanceAPIException, BinanceRequestException, OSError, TimeoutError) as exc:
            await broker.client.close_connection()
            from ares_stream.trading.live import order_url

            raise AresError(f"live start-up failed at {order_url(self.config.trading)}: "
                            f"{_exchange_error(exc)}") from None

    async def _start_metrics(self) -> None:
        """Prometheus at http://127.0.0.1:9464/metrics; the engine's totals are read at scrape."""
        m = self.config.metrics
        if not m.enabled:
            return
        self.metrics = Metrics()
        self.metrics_port = await self.metrics.start(m.host, m.port, allow_remote=m.allow_remote)

    def _wire_metrics(self) -> None:
        """The engine's totals read at every scrape, each frame's lag into the histogram, the
        feed's connects and disconnects into ``ares_feed_connected``."""
        if self.metrics is None:
            return
        assert self.ingest is not None
        self.metrics.on_scrape(self._publish)
        self.ingest.lag.histogram = self.metrics.engine_lag
        self.ingest.on_connection = self.metrics.set_feed_connected

    def _count_feed(self) -> None:
        """Duplicates dropped, REST 429s and 418s and the period's engine lag into
        ``feed_health`` every checkpoint period (:mod:`ares_stream.daemon.counters`), on the
        ingest's clock (one is made if nothing else needed one)."""
        assert self.ingest is not None
        self._clock().every("feed_counters", self.options.checkpoint_every,
                            counters.for_ingest(self.ingest).record, run_in_executor=False)

    def _clock(self) -> LiveClock:
        """The ingest's APScheduler clock (batch learning's), made if nothing needed one yet."""
        assert self.ingest is not None
        if self.ingest.clock is None:
            self.ingest.clock = LiveClock()
        return self.ingest.clock

    def _publish(self) -> None:
        assert self.metrics is not None and self.ingest is not None
        engine = self.ingest.engine
        state = engine.state.items()
        self.metrics.observe_engine(
            engine.counts, predictions={s: st.predictions for s, st in state},
            drifts={s: st.learner.n_drifts for s, st in state})
        self.metrics.observe_models(engine)  # rolling scores, drift and champion ages
        for sym, st in state:
            self.metrics.set_model_version(sym, "river", st.learner.version)
        if isinstance(engine.batch, BatchLearner):
            self._publish_batch(engine.batch)
        broker = self.broker
        if broker is not None:
            self.metrics.set_equity(broker.equity)
            for sym, pos in broker.positions.items():
                self.metrics.set_position(sym, pos.qty)

    def _publish_batch(self, batch: BatchLearner) -> None:
        """Fit durations since the last scrape; the champion's and the newest booster's ids."""
        assert self.metrics is not None
        while batch.fits:
            self.metrics.observe_fit(batch.fits.popleft()[2])
        for sym, sb in batch.symbols.items():
            if sb.champion is not None and sb.champion.model_id is not None:
                self.metrics.set_model_version(sym, "champion", sb.champion.model_id)
            if sb.lineage and sb.lineage[-1].model_id is not None:
                self.metrics.set_model_version(sym, "booster", sb.lineage[-1].model_id)
        for (sym, feature), psi in batch.feature_psi.items():
            self.metrics.set_feature_psi(sym, feature, psi)

    def _restore(self, ckpt: checkpoints.Checkpoint) -> None:
        assert self.ingest is not None
        try:  # the codec, never pickle: a tampered row must not run code
            saved = codec.loads(ckpt.state)
            if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict):
                raise codec.CodecError("the checkpoint holds no engine state")
        except codec.CodecError as exc:
            log.error("checkpoint_refused", reason=str(exc),
                      action="cold start of the engine state")
            return
        changed = state_changes(saved.get("config"), self.config)
        if changed:  # only what shapes the learned state: trading limits etc. keep it
            log.warning("checkpoint_config_changed", changed=changed,
                        action="cold start of the engine state")
            return
        engine = self.ingest.engine
        engine.restore_state(saved["state"])
        engine.counts.update(saved["counts"])
        engine.last_ts = ckpt.ts_event
        if self.broker is not None and "broker" in saved:
            self.broker.restore(saved["broker"])

    def _signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self._interrupt)
        loop.add_signal_handler(signal.SIGHUP, self._reload)

    async def _release_signals(self) -> None:
        """Done: handle a signal that came during the last synchronous steps (a second Ctrl-C
        still forces 130), then take our handlers off the loop while it still runs (the loop's
        own close shuts its wakeup pipe before it removes them: a signal in between prints an
        "Exception ignored" traceback) and ignore stop signals until the process is gone."""
        for _ in range(2):  # read the wakeup pipe, then run what it scheduled
            await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        stops = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
        # removing a loop handler puts the default action back (death by SIGTERM) until
        # stopped() ignores it: blocked meanwhile, a signal waits and is then discarded
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        try:
            for sig in stops:
                loop.remove_signal_handler(sig)
            startup.stopped()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)

    def request_stop(self, why: str = "") -> None:
        """Stop the daemon (``why`` is logged): set ``stop_requested`` and stop the ingest pump."""
        log.info("daemon_stopping", reason=why)
        self.stop_requested.set()
        if self.ingest is not None:
            self.ingest.stop()

    def _interrupt(self) -> None:
        self.interrupts += 1
        if self.interrupts > 1:
            log.warning("daemon_forced_exit")
            os._exit(130)
        self.request_stop("SIGINT")

    def _reload(self) -> None:
        self.notifier.reloading()
        try:
            self._reload_trading()
        finally:
            self.notifier.ready("reloaded")

    def _reload_trading(self) -> None:
        path = self.options.config_path
        try:
            trading = load_config(path).trading if path else self.config.trading
        except AresError as exc:
            log.error("config_reload_failed", error=str(exc))
            return
        self.config = dataclasses.replace(self.config, trading=trading)
        log.info("config_reloaded", section="trading", **dataclasses.asdict(trading))

    # -- run ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Pump frames, with checkpoints, watchdog and plug-in tasks, until a stop or the pump ends.
        The pump gets ``shutdown_timeout`` seconds to wind down; then the helpers are cancelled."""
        if self.stop_requested.is_set():  # during start-up: straight to shutdown
            return
        assert self.ingest is not None
        backfiller = self.backfiller
        async with backfiller if backfiller is not None else contextlib.nullcontext():
            pump = asyncio.create_task(self.ingest.run(), name="ingest")
            helpers = [asyncio.create_task(self._checkpointer(), name="checkpoints"),
                       asyncio.create_task(self._watchdog(pump), name="watchdog"),
                       asyncio.create_task(self._requests(), name="requests"),
                       asyncio.create_task(self._flusher(), name="flusher")]
            if self.extra_tasks is not None:
                helpers += [asyncio.create_task(c) for c in self.extra_tasks(self)]
            if self.options.duration is not None:
                asyncio.get_running_loop().call_later(self.options.duration, self.request_stop,
                                                      "duration")
            stop = asyncio.create_task(self.stop_requested.wait())
            try:
                await asyncio.wait({pump, stop}, return_when=asyncio.FIRST_COMPLETED)
                await self._bounded(pump)
            finally:
                stop.cancel()
                for task in helpers:
                    task.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)

    async def _bounded(self, pump: asyncio.Task[None]) -> None:
        """Let the pump wind down (feed closed, recording flushed) within the shutdown bound."""
        try:
            await asyncio.wait_for(pump, self.options.shutdown_timeout)
        except TimeoutError:
            log.error("shutdown_timeout", seconds=self.options.shutdown_timeout)

    async def _watchdog(self, pump: asyncio.Task[None]) -> None:
        """WATCHDOG=1 (and STATUS) every half watchdog period while healthy — and while
        checkpoints have failed fewer than ``store.watchdog_failures`` times in a row (health is
        red from the first failure; systemd restarts the daemon once the watchdog starves)."""
        interval = watchdog_interval() or 10.0
        while True:
            await asyncio.sleep(interval)
            healthy, status = self.health(pump)
            self.notifier.status(status)
            if self.metrics is not None:
                self.metrics.set_health(healthy, self.checkpoint_failures)
            alive = healthy or (self.checkpoint_failures and self.live(pump) and
                                self.checkpoint_failures < self.config.store.watchdog_failures)
            if alive:
                self.notifier.watchdog()
            if healthy:
                if self.metrics is not None:
                    self.metrics.heartbeat()
            else:
                log.warning("daemon_unhealthy", status=status, watchdog_fed=bool(alive))

    def health(self, pump: asyncio.Task[None]) -> tuple[bool, str]:
        """Healthy: the pump runs, frames or connection attempts keep coming, and the last
        checkpoint succeeded."""
        assert self.ingest is not None
        counts = self.ingest.engine.counts
        bars = sum(s.bars for s in self.ingest.engine.state.values())
        status = (f"frames {counts['frames']:,}, bars {bars:,}, lag p99 "
                  f"{self.ingest.lag.quantile(0.99):.1f} ms, checkpoints {self.checkpoints}")
        if self.checkpoint_failures:
            status += (f", CHECKPOINT FAILING ({self.checkpoint_failures} in a row: "
                       f"{self.checkpoint_error})")
        return self.live(pump) and not self.checkpoint_failures, status

    def live(self, pump: asyncio.Task[None]) -> bool:
        """The pump runs and frames (or connection attempts) came within ``STALL_AFTER``."""
        assert self.ingest is not None
        counts = self.ingest.engine.counts
        seen = counts["frames"] + sum(v for k, v in counts.items() if k.startswith("feed_"))
        if seen != self._activity[0]:
            self._activity = (seen, time.monotonic())
        return not pump.done() and time.monotonic() - self._activity[1] <= STALL_AFTER

    async def _requests(self) -> None:
        """Manual decisions (``ares-stream models promote / rollback``) left in the database's
        requests directory, applied between frames and answered (``batch/manual.py``)."""
        while True:
            await asyncio.sleep(manual.POLL_S)
            for path, request in manual.pending(self.options.db_path):
                self.answer_request(path, request)

    def answer_request(self, path: Path, request: manual.ManualDecision | Exception) -> None:
        """Apply one request and write its answer (a failure to write it is logged, not raised)."""
        assert self.ingest is not None
        engine = self.ingest.engine
        if isinstance(request, Exception):
            result = manual.Answer(False, str(request))
        elif not isinstance(engine.batch, BatchLearner):
            result = manual.Answer(False, "batch learning is off in this daemon: it has no "
                                   "boosters to promote")
        else:
            try:
                result = engine.batch.manual(request, engine.last_ts or time.time_ns())
            except Exception as exc:  # the database refused the write (a full disk …)
                result = manual.Answer(False, f"could not apply it: {exc}")
        if not result.ok:
            log.warning("manual_decision_refused", request=path.stem, reason=result.message)
        try:
            manual.answer(path, result)
        except OSError as exc:
            log.error("manual_decision_unanswered", request=path.stem, error=str(exc))
            path.unlink(missing_ok=True)  # never applied twice

    async def _flusher(self) -> None:
        """Rows a restart writes again identically go to the database every
        ``store.flush_seconds`` (readers see each bar that soon); the rest at checkpoints. A
        failure here is left to the next checkpoint, which reports it."""
        every = self.config.store.flush_seconds
        if every <= 0 or every >= self.options.checkpoint_every:
            return
        while True:
            await asyncio.sleep(every)
            if self.store is not None and not self.checkpoint_failures:
                try:
                    self.store.flush_early()
                except Exception as exc:  # the checkpoint tells the failure
                    log.debug("early_flush_failed", error=str(exc))

    async def _checkpointer(self) -> None:
        while True:
            await asyncio.sleep(self.options.checkpoint_every)
            self.try_checkpoint()

    def try_checkpoint(self) -> bool:
        """:meth:`checkpoint`; a failure — the storage (a full disk), or anything else (state the
        codec refuses) — is logged at once, turns health red and halts trading until a
        checkpoint succeeds again (rows that could not be written wait in memory for the next
        one); after ``store.watchdog_failures`` in a row the watchdog starves. Returns whether
        it succeeded."""
        try:
            self.checkpoint()
        except Exception as exc:  # every failure is told; none ends the checkpointer
            failure = storage_failure(exc, self._written())
            self.checkpoint_failures += 1
            self.checkpoint_error = str(failure or f"{type(exc).__name__}: {exc}")
            log.error("checkpoint_failed", error=self.checkpoint_error,
                      failures=self.checkpoint_failures, exc_info=failure is None)
            if self.broker is not None:
                self.broker.halted = f"checkpoint failing: {self.checkpoint_error}"
            if self.metrics is not None:
                self.metrics.set_health(False, self.checkpoint_failures)
            if self._recording_failed():  # lines may be lost from it: end, resume from the
                self.request_stop("the recording failed")  # last checkpoint it holds whole
            return False
        if self.checkpoint_failures:
            log.info("checkpoint_recovered", after_failures=self.checkpoint_failures)
            self.checkpoint_failures, self.checkpoint_error = 0, ""
            if self.broker is not None:
                self.broker.halted = ""
            if self.metrics is not None:
                self.metrics.set_health(True, 0)
        return True

    def _recording_failed(self) -> bool:
        rec = self.ingest.recorder if self.ingest is not None else None
        return rec is not None and rec.failed is not None

    def _written(self) -> str:
        """What a storage failure failed to write: the recording, or the database."""
        if self._recording_failed():
            assert self.ingest is not None and self.ingest.recorder is not None
            return f"the recording in {self.ingest.recorder.directory}"
        return str(self.options.db_path)

    def checkpoint(self) -> None:
        """Flush every buffered row and sync the recording, then write the engine state and the
        feed cursor: a checkpoint never covers a row or a recorded frame that is not on disk."""
        assert self.ingest is not None and self.store is not None
        engine = self.ingest.engine
        if engine.batch is not None:
            engine.batch.flush()
        self.store.flush()
        if self.broker is not None and self.broker.store is not None:
            self.broker.store.flush()  # orders and fills before the checkpoint that counts them
        if self.ingest.recorder is not None:
            self.ingest.recorder.sync()  # every frame the cursor below covers is in the file
        state = codec.dumps({"state": engine.state, "counts": dict(engine.counts),
                             "config": as_dict(self.config),
                             "broker": self.broker.state() if self.broker else None})
        checkpoints.save(self.store.db, self.store.run_id, ts_wall=time.time_ns(),
                         ts_event=engine.last_ts, cursors=_cursors_out(engine.gate.cursors()),
                         state=state)
        self.checkpoints += 1

    # -- shutdown -----------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop feed, metrics and live orders, write a last checkpoint, close the run and database.
        Nothing to do when start-up never opened the database."""
        if self.ingest is None or self.store is None:
            return
        self.notifier.stopping("checkpointing and closing")
        self.ingest.stop()
        if self.metrics is not None:
            await self.metrics.stop()
        if self.live_broker is not None:
            await self.live_broker.close()  # orders in flight answered (bounded) and booked
        failure: StorageError | None = None
        try:
            self.checkpoint()
            if self.ingest.recorder is not None:
                self.ingest.recorder.close()
            self.store.close("finished", self.ingest.engine.summary())
            self.store.db.conn.close()
        except STORAGE_ERRORS as exc:
            failure = storage_failure(exc, self._written())
            if failure is None:
                raise
            self.reserve.release()
            self.store.abandon(str(failure))  # the run: failed (the reserve's space takes it)
            log.error("daemon_failed", error=str(failure), checkpoints=self.checkpoints)
        finally:
            self.ingest.engine.close(drain=False)
            self.reserve.release()
            log.info("daemon_stopped", checkpoints=self.checkpoints)
        if failure is not None:
            raise failure


def _cursors_out(cursors: dict[tuple[str, str], int]) -> dict[str, int]:
    return {f"{sym}|{kind}": last for (sym, kind), last in cursors.items()}


def _cursors_in(saved: dict[str, int]) -> dict[tuple[str, str], int]:
    return {tuple(key.split("|", 1)): last for key, last in saved.items()}  # type: ignore[misc]


def _exchange_error(exc: BaseException) -> str:
    code, message = getattr(exc, "code", None), getattr(exc, "message", None)
    return f"code {code}: {message}" if code is not None else (str(exc) or type(exc).__name__)


def default_db(config: Config, mode: str) -> Path:
    """Paper and live never share a database file."""
    return Path(config.store.dir) / f"{mode}.db"


def run_daemon(config: Config, options: DaemonOptions) -> int:
    """Run the daemon to completion in a fresh event loop."""
    faulthandler.enable()  # a watchdog kill (SIGABRT) leaves every thread's traceback in the log
    startup.hold()  # the database opens next: a stop signal is remembered, not raised
    try:
        return asyncio.run(Daemon(config, options).main())
    finally:
        startup.stopped()
