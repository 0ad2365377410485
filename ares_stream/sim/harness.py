"""The simulated exchange: the simulator, or a recording, served as a local Binance.

A :class:`SimFeed` is a :class:`~ares_stream.sim.exchange.Tape` (built straight from the simulator's
``frames(spec)``, or read from recordings), the planted :class:`Schedule` when there is one, and
the pace: ``speed`` × real time, frame *i* going out at start + (tᵢ − t₀) / speed. Two ways to
serve it, both a real websocket and REST server on 127.0.0.1 (:class:`LocalExchange`):

- ``ares-stream sim-exchange`` (:func:`serve`) runs it in the foreground for any client; the tape
  starts when the first client subscribes. When it is over the exchange keeps serving REST (the
  whole history) and idle websockets until Ctrl-C or SIGTERM, both a clean exit 0 — a daemon
  pointed at it sees a quiet market, not a dead exchange. ``--exit-at-end`` stops it instead.
- ``daemon.py --paper --feed sim`` (:func:`run_daemon`, :class:`ExchangeThread`) runs it
  in-process on its own event loop in a thread, so the daemon's loop (and the GIL-bound engine)
  cannot stall the pacing, while the daemon connects to it through its normal websocket ingest
  and REST backfill, on a fresh database (:func:`fresh_db`); at the end it prints what the
  daemon learned against the schedule and writes the report (:mod:`ares_stream.sim.demo`).

``targets`` tells a consumer when it has everything: the last trade id of each trade stream.

>>> tape = Tape.from_frames([(1_000, "simusdt@aggTrade",
...     b'{"e":"aggTrade","s":"SIMUSDT","a":5,"p":"1","q":"1","f":5,"l":5,"T":1,"m":true}')])
>>> targets(tape, ("aggTrade", "bookTicker"))
{('SIMUSDT', 'agg_id'): 5}
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import sys
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import structlog

from ares_stream.config import Config, replace_values
from ares_stream.daemon import startup
from ares_stream.errors import AresError
from ares_stream.sim.exchange import LocalExchange, Tape

if TYPE_CHECKING:
    from ares_stream.daemon.ingest import Ingest
    from ares_stream.daemon.lifecycle import Daemon, DaemonOptions, ExtraTasks
    from ares_stream.sim.simulator import Schedule

log = structlog.get_logger("ares_stream.sim.harness")

__all__ = ["ExchangeThread", "SimFeed", "banner", "describe", "fresh_db", "load_schedule",
           "recorded", "run_daemon", "serve", "simulated", "targets"]


@dataclass
class SimFeed:
    """What the simulated exchange plays: a tape, what was planted in it, and how fast."""

    tape: Tape
    schedule: Schedule | None
    speed: float
    source: str  # "simulator seed 7, 43,200 s" or the recording paths

    @property
    def span_s(self) -> float:
        """Seconds of tape time from the first frame to the last."""
        times = self.tape.times
        return (times[-1] - times[0]) / 1e9 if times else 0.0


def simulated(*, seconds: int, seed: int, symbol: str, streams: Sequence[str],
              speed: float) -> SimFeed:
    """A feed of the seeded simulator, generated in memory (no file)."""
    from ares_stream.sim import simulator

    try:
        spec = simulator.SimSpec(symbol=symbol, seconds=seconds, seed=seed,
                                 streams=tuple(streams))
        tape = Tape.from_frames(simulator.frames(spec))
    except ValueError as exc:  # an unknown stream or a bad setting, in the simulator's words
        raise AresError(f"simulator: {exc}") from None
    schedule = simulator.schedule_of(spec)
    schedule.frames = len(tape.frames)
    return SimFeed(tape, schedule, speed, f"simulator seed {seed}, {seconds:,} s of {symbol}")


def recorded(paths: Sequence[str | Path], *, speed: float) -> SimFeed:
    """A feed of recordings (files, globs, directories), with the schedule written beside the
    first one (``<path>.schedule.json``) when there is one."""
    tape = Tape.from_recording(paths)
    if not tape.frames:
        raise AresError(f"{', '.join(map(str, paths))}: no market frames to serve")
    return SimFeed(tape, load_schedule(Path(f"{paths[0]}.schedule.json")), speed,
                   ", ".join(map(str, paths)))


def load_schedule(path: Path) -> Schedule | None:
    """The schedule in ``path``, or None when there is no such file."""
    from ares_stream.sim.simulator import Schedule

    return Schedule.from_json(path.read_bytes()) if path.is_file() else None


def targets(tape: Tape, streams: Sequence[str]) -> dict[tuple[str, str], int]:
    """The last id of each trade stream among ``streams``, keyed as the gate's cursors are:
    a consumer whose cursors reached these has consumed the whole tape."""
    wanted = {s.lower() for s in streams}
    out = {}
    for kind, key, series in (("aggtrade", "agg_id", tape.agg_trades),
                              ("trade", "trade_id", tape.trades)):
        if kind in wanted:
            out.update({(sym, key): rows.ids[-1] for sym, rows in series.items() if rows.ids})
    return out


class ExchangeThread:
    """A :class:`LocalExchange` over a feed, on its own event loop in a daemon thread.

    A context manager: entering starts it and returns once both servers listen (a port that
    cannot be bound is an :class:`AresError`); ``done`` is set when the whole tape was
    broadcast; leaving stops it.
    """

    def __init__(self, feed: SimFeed, *, host: str = "127.0.0.1", ws_port: int = 0,
                 rest_port: int = 0) -> None:
        self.feed = feed
        self.exchange = LocalExchange(feed.tape, speed=feed.speed, host=host, ws_port=ws_port,
                                      rest_port=rest_port)
        self.done = threading.Event()
        self._ready = threading.Event()
        self._error: OSError | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="sim-exchange", daemon=True)

    @property
    def ws_url(self) -> str:
        """The websocket base URL the exchange listens on."""
        return self.exchange.ws_url

    @property
    def rest_url(self) -> str:
        """The REST base URL the exchange listens on."""
        return self.exchange.rest_url

    def __enter__(self) -> ExchangeThread:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise AresError(f"simulated exchange cannot listen: {self._error}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=10)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        try:
            await self.exchange.start()
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            if await _first(self.exchange, self._stopping):
                self.done.set()
                await self._stopping.wait()
        finally:
            await self.exchange.stop()


async def _first(exchange: LocalExchange, stop: asyncio.Event) -> bool:
    """Wait until the tape is over or ``stop`` is set; whether the tape is over."""
    ended = asyncio.create_task(exchange.done.wait())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({ended, stopped}, return_when=asyncio.FIRST_COMPLETED)
    ended.cancel()
    stopped.cancel()
    return exchange.done.is_set()


def banner(feed: SimFeed, ws_url: str, rest_url: str, schedule_path: Path | None,
           streams: Sequence[str]) -> str:
    """What ``sim-exchange`` prints once it listens: where, what, and how to point a daemon."""
    tape, lines = feed.tape, []
    wall = feed.span_s / feed.speed
    lines.append(f"sim-exchange: {feed.source}: {len(tape.frames):,} frames over "
                 f"{feed.span_s:,.0f} s of tape time at {feed.speed:g}x ({wall:,.1f} s)")
    lines.append(f"  websocket  {ws_url}")
    lines.append(f"  REST       {rest_url}")
    if feed.schedule is not None:
        where = f"{schedule_path}: " if schedule_path is not None else ""
        lines.append(f"  schedule   {where}{describe(feed.schedule)}")
    lines.append("point the daemon at it:")
    lines.append(f"  python daemon.py --paper --symbols {','.join(tape.symbols)} --streams "
                 f"{','.join(streams)} --ws-url {ws_url} --rest-url {rest_url}")
    lines.append("the tape starts when a first client subscribes; Ctrl-C or SIGTERM stops.")
    return "\n".join(lines)


def describe(schedule: Schedule) -> str:
    """The planted changes, as offsets from the start."""
    def offsets(times: Sequence[int]) -> str:
        """``times`` (ns) as seconds after the start, comma-separated; ``none`` when empty."""
        return ", ".join(f"+{(t - schedule.start_ns) / 1e9:,.0f} s" for t in times) or "none"

    return (f"concept drifts at {offsets(schedule.concept_drifts_ns)}; volatility switches at "
            f"{offsets(schedule.volatility_switches_ns)}")


async def serve(feed: SimFeed, *, host: str = "127.0.0.1", ws_port: int = 0,
                rest_port: int = 0, exit_at_end: bool = False,
                schedule_path: Path | None = None, streams: Sequence[str] = (),
                out: TextIO = sys.stdout) -> int:
    """``ares-stream sim-exchange``: serve ``feed`` until SIGINT/SIGTERM (or the tape's end
    with ``exit_at_end``); 0. Once listening, the schedule goes to ``schedule_path``."""
    exchange = LocalExchange(feed.tape, speed=feed.speed, host=host, ws_port=ws_port,
                             rest_port=rest_port)
    loop, stop = asyncio.get_running_loop(), asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await exchange.start()
        except OSError as exc:
            raise AresError(f"cannot listen on {host}: {exc.strerror or exc}") from None
        if schedule_path is not None and feed.schedule is not None:
            schedule_path.parent.mkdir(parents=True, exist_ok=True)
            schedule_path.write_bytes(feed.schedule.to_json())
        print(banner(feed, exchange.ws_url, exchange.rest_url, schedule_path, streams),
              file=out, flush=True)
        if await _first(exchange, stop):
            took = loop.time() - (exchange.started or loop.time())
            print(f"tape over: {exchange.position:,} frames broadcast in {took:,.1f} s"
                  + ("" if exit_at_end else "; still serving REST until Ctrl-C"),
                  file=out, flush=True)
            if not exit_at_end:
                await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await exchange.stop()
    st = exchange.stats
    print(f"sim-exchange stopped: {exchange.position:,} of {len(feed.tape.frames):,} frames "
          f"broadcast, {st['connections']:,} connections, {st['rest_requests']:,} REST requests",
          file=out, flush=True)
    return 0


def fresh_db(path: Path | None, default: Path) -> Path:
    """A simulated run starts from an empty database (it must not resume an older run): the
    default file is replaced; a named one must not exist yet."""
    if path is not None:
        if path.exists():
            raise AresError(f"{path} exists: a simulated run starts from a fresh database "
                            "(delete it, or pick another --db)")
        return path
    for suffix in ("", "-wal", "-shm"):
        Path(f"{default}{suffix}").unlink(missing_ok=True)
    return default


def run_daemon(config: Config, options: DaemonOptions, feed: SimFeed, report_dir: Path) -> int:
    """``daemon.py --feed sim``: the exchange on its own loop, the daemon against it until the
    tape is consumed, then what it learned (stdout) and the report (``report_dir``)."""
    from ares_stream.daemon.lifecycle import Daemon
    from ares_stream.sim import demo

    faulthandler.enable()
    started = time.monotonic()
    startup.hold()  # the database opens next: a stop signal is remembered, not raised
    with ExchangeThread(feed) as exchange:
        config = _sim_config(config, feed, exchange.ws_url, exchange.rest_url)
        print(f"simulated exchange: {feed.source}, {len(feed.tape.frames):,} frames at "
              f"{feed.speed:g}x (~{feed.span_s / feed.speed:,.0f} s) on {exchange.ws_url}; "
              f"database {options.db_path}", flush=True)
        try:
            code = asyncio.run(Daemon(config, options, extra_tasks=daemon_tasks(exchange)).main())
        finally:
            startup.stopped()
    findings = demo.summarize(options.db_path, feed.schedule)
    report = demo.write_report(options.db_path, report_dir, feed.schedule)
    print(f"what the daemon learned in {time.monotonic() - started:,.1f} s:\n"
          f"{demo.format_findings(findings)}\n  report: {report}", flush=True)
    return code


def _sim_config(config: Config, feed: SimFeed, ws_url: str, rest_url: str) -> Config:
    """The feed pointed at the simulated exchange: its symbols (those the config names, if
    any), its URLs, no recording (the simulator regenerates the tape from its seed)."""
    symbols = [s for s in feed.tape.symbols if not config.feed.symbols
               or s in config.feed.symbols]
    if not symbols:
        raise AresError(f"none of {', '.join(config.feed.symbols)} is on the simulated tape "
                        f"(it has {', '.join(feed.tape.symbols)})")
    return replace_values(config, {"feed": {"symbols": symbols, "ws_url": ws_url,
                                            "rest_url": rest_url, "endpoint": "spot",
                                            "record": False}}, source="--feed sim")


END_GRACE = 60.0  # seconds the tape's end waits for the engine to consume what was sent
PROGRESS_EVERY = 5.0  # seconds between progress lines


def daemon_tasks(sim: ExchangeThread) -> ExtraTasks:
    """The daemon's plug-in tasks against ``sim``: stop at the tape's end, print progress."""
    def tasks(daemon: Daemon) -> list[Coroutine[Any, Any, None]]:
        """The two plug-in coroutines: :func:`end_of_feed` and :func:`progress`."""
        return [end_of_feed(daemon, sim), progress(daemon, sim)]
    return tasks


async def end_of_feed(daemon: Daemon, sim: ExchangeThread) -> None:
    """Stop ``daemon`` once the simulated exchange broadcast its whole tape and the engine
    consumed it (or ``END_GRACE`` seconds after, with a warning)."""
    while not sim.done.is_set():
        await asyncio.sleep(0.1)
    assert daemon.ingest is not None
    symbols = set(daemon.config.feed.symbols)
    want = {k: v for k, v in targets(sim.feed.tape, daemon.config.feed.streams).items()
            if k[0] in symbols}
    deadline, frames = time.monotonic() + END_GRACE, -1
    while not consumed(daemon.ingest, want, frames):
        if time.monotonic() > deadline:
            log.warning("feed_end_not_consumed", waited_s=END_GRACE, want=str(want))
            break
        frames = daemon.ingest.engine.counts["frames"]
        await asyncio.sleep(0.25)
    daemon.request_stop("end of the simulated feed")


def consumed(ingest: Ingest, want: dict[tuple[str, str], int], frames_before: int) -> bool:
    """Every trade stream reached its last id (no trade stream: no frame came for a while) and
    nothing waits in the feed's queue."""
    engine = ingest.engine
    if not ingest.feed.queue.empty():
        return False
    if not want:
        return engine.counts["frames"] == frames_before
    cursors = engine.gate.cursors()
    return all(cursors.get(key, -1) >= last for key, last in want.items())


async def progress(daemon: Daemon, sim: ExchangeThread) -> None:
    """A line on stderr every few seconds: how far the simulated run is, what it learned."""
    assert daemon.ingest is not None
    engine, times = daemon.ingest.engine, sim.feed.tape.times
    span = max(times[-1] - times[0], 1) if times else 1
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        done = min(max((engine.last_ts - times[0]) / span, 0.0), 1.0) if times else 0.0
        bars = sum(st.bars for st in engine.state.values())
        line = f"  {done:6.1%} of the tape · bars {bars:,} · drifts {engine.counts['drifts']:,}"
        if engine.batch is not None:
            c = engine.batch.counts
            line += f" · boosters {c['trained']:,} · promotions {c['promotions']:,}"
        if engine.broker is not None:
            line += f" · equity {engine.broker.equity:,.2f}"
        print(line, file=sys.stderr, flush=True)
