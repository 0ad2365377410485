"""``ares-stream replay``: a plain loop over recorded sources, through the engine, into a run DB.

Recordings (``<receive ns> <frame>`` lines, gzip or plain) and data.binance.vision files (CSV, ZIP,
candle CSV) can be mixed: every source is ordered by receive time and merged into one stream, so
the engine sees what the live daemon would have seen.
"""

from __future__ import annotations

import heapq
import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ares_stream.config import Config, as_dict
from ares_stream.engine import Engine
from ares_stream.feed import RawFrame
from ares_stream.feed.publicdata import PublicDataSource
from ares_stream.feed.recording import RECORDING_SUFFIXES, RecordingSource, expand_paths
from ares_stream.learners import memory
from ares_stream.runtime import build_engine
from ares_stream.store.db import open_db
from ares_stream.store.failures import STORAGE_ERRORS, storage_failure
from ares_stream.store.lock import DatabaseLock
from ares_stream.store.reserve import Reserve
from ares_stream.store.runs import RunStore
from ares_stream.trading import paper

_PUBLIC_SUFFIXES = (".csv", ".csv.gz", ".zip")


def is_public_data(path: Path) -> bool:
    """A data.binance.vision style file (CSV / ZIP), as opposed to a raw-frame recording."""
    return path.name.lower().endswith(_PUBLIC_SUFFIXES)


def open_sources(paths: Sequence[str], *, skip_bad: bool = False,
                 symbol: str | None = None) -> tuple[Iterator[Any], list[Any]]:
    """One time-ordered stream of raw frames and events from every path, and the sources."""
    files = expand_paths(paths, suffixes=RECORDING_SUFFIXES | {".csv", ".zip"})
    public = [f for f in files if is_public_data(f)]
    recorded = [f for f in files if not is_public_data(f)]
    sources: list[Any] = [PublicDataSource(f, symbol=symbol, skip_bad=skip_bad) for f in public]
    if recorded:
        sources.append(RecordingSource(recorded, skip_bad=skip_bad))
    if len(sources) == 1:
        return iter(sources[0]), sources
    return heapq.merge(*sources, key=_receive_time), sources


def _receive_time(item: Any) -> int:
    return int(item.ts_init)


def default_db_path(config: Config) -> Path:
    """A fresh ``<store.dir>/runs/replay-<UTC time>.db`` for a replay's run database."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path(config.store.dir) / "runs" / f"replay-{stamp}.db"


@dataclass
class ReplayResult:
    """What a replay did: its database and run id, counts, wall seconds, the engine summary."""
    db_path: Path
    run_id: int
    frames: int
    items: int
    elapsed: float
    summary: dict[str, Any]


def run_replay(paths: Sequence[str], config: Config, *, db_path: Path | None = None,
               progress: TextIO | None = None) -> ReplayResult:
    """Replay ``paths`` through a fresh engine into a run database; returns the summary.

    A storage failure (a full disk) stops the replay with one :class:`StorageError`: the run is
    marked ``failed`` if the disk still takes that one row, and nothing else is attempted. The
    database is locked while the replay writes it (:mod:`ares_stream.store.lock`): one that a
    daemon or another replay owns refuses the replay, naming the owner's pid. A config whose
    symbols' buffers and state cannot fit in memory is refused first
    (:class:`~ares_stream.learners.memory.MemoryShortfall`, the arithmetic on one line)."""
    memory.check(config)
    db_path = db_path or default_db_path(config)
    with DatabaseLock(db_path):
        return _replay(paths, config, db_path=db_path, progress=progress)


def _replay(paths: Sequence[str], config: Config, *, db_path: Path | None,
            progress: TextIO | None) -> ReplayResult:
    """:func:`run_replay`, the database locked."""
    symbol = config.feed.symbols[0] if len(config.feed.symbols) == 1 else None
    stream, sources = open_sources(paths, skip_bad=config.feed.skip_bad, symbol=symbol)
    db_path = db_path or default_db_path(config)
    store = RunStore(open_db(db_path), mode="replay", config=as_dict(config),
                     sources=[str(p) for p in paths], flush_rows=config.store.flush_rows)
    reserve = Reserve(db_path)
    reserve.keep()  # released for the run's last row when the disk fills up
    broker = paper.for_run(config, store)
    engine = build_engine(config, store, replay=True, broker=broker)
    started = time.perf_counter()
    status, items = "failed", 0
    try:
        items = _drive(engine, stream, progress, sources)
        engine.close(drain=True)
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except STORAGE_ERRORS as exc:
        failure = storage_failure(exc, str(db_path))
        if failure is None:
            raise
        status = "storage"
        engine.close(drain=False)
        reserve.release()
        store.abandon(str(failure))
        raise failure from None
    finally:
        if status != "storage":
            if status != "finished":
                engine.close(drain=False)
            try:
                summary = _close_run(engine, store, broker, config, sources, status,
                                     time.perf_counter() - started)
            except STORAGE_ERRORS as exc:
                failure = storage_failure(exc, str(db_path))
                if failure is None:
                    raise
                reserve.release()
                store.abandon(str(failure))
                raise failure from None
            reserve.release()
    return ReplayResult(db_path, store.run_id, engine.counts["frames"], items,
                        summary["elapsed_s"], summary)


def _close_run(engine: Engine, store: RunStore, broker: paper.PaperBroker, config: Config,
               sources: Sequence[Any], status: str, elapsed: float) -> dict[str, Any]:
    """Flush what is left, record the run's summary and status, close the database."""
    summary = engine.summary()
    summary["sources"] = {str(i): dict(getattr(s, "stats", {})) for i, s in enumerate(sources)}
    summary["elapsed_s"] = elapsed
    if broker.store is not None:
        broker.store.flush()
    summary["paper"] = {"equity": broker.equity, "cash": broker.cash,
                        "fees": broker.fees_paid, "orders": broker.orders,
                        "fills": broker.fills, "start": config.trading.starting_cash}
    if engine.batch is not None:
        summary["batch"] = dict(engine.batch.counts)
    counts = summary["counts"]
    store.health("", 0, 0, "totals", counts.get("frames", 0) or items_seen(sources),
                 json.dumps(counts, sort_keys=True))
    store.close(status, summary)
    store.db.conn.close()
    return summary


def items_seen(sources: Sequence[Any]) -> int:
    """Rows read from file sources (they carry no frames)."""
    return sum(int(getattr(s, "stats", {}).get("events", 0)) for s in sources)


def _drive(engine: Engine, stream: Iterable[Any], progress: TextIO | None,
           sources: Sequence[Any] = ()) -> int:
    """The replay loop. Hot path: one call per frame, progress checked every 16k items."""
    feed = engine.feed
    items = 0
    if progress is None:
        for items, item in enumerate(stream, 1):  # noqa: B007 - items is the count afterwards
            feed(item)
        return items
    bar = Progress(progress, sources)
    for items, item in enumerate(stream, 1):
        feed(item)
        if not items & 0x3FFF:
            bar.show(items, item)
    bar.done(items)
    return items


class Progress:
    """A one-line progress display on a terminal: items, items/s, time reached, ETA.

    The ETA comes from the fraction of the input files' bytes read so far.
    """

    def __init__(self, out: TextIO, sources: Sequence[Any] = ()) -> None:
        self.out = out
        self.sources = sources
        self.started = time.perf_counter()
        self.last = 0.0

    def fraction(self) -> float | None:
        """Share of the input read (each source weighted alike), or None when unknown."""
        if not self.sources:
            return None
        return sum(s.progress() for s in self.sources) / len(self.sources)

    def show(self, items: int, item: Any) -> None:
        """Redraw the line for ``items`` read so far (``item`` the latest), at most every 0.25 s."""
        now = time.perf_counter()
        if now - self.last < 0.25:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        ts = item.ts_init if type(item) is RawFrame else getattr(item, "ts_event", 0)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts / 1e9))
        done = self.fraction()
        eta = f"ETA {elapsed * (1 - done) / done:6.1f} s" if done else "ETA      ?"
        pct = f"{100 * done:5.1f}%" if done is not None else ""
        self.out.write(f"\r  {pct} {items:>12,} frames  {items / elapsed:>10,.0f}/s  {eta}"
                       f"  at {when} UTC ")
        self.out.flush()

    def done(self, items: int) -> None:
        """Clear the line at the end of the replay."""
        self.out.write("\r" + " " * 70 + "\r")
        self.out.flush()


def format_summary(result: ReplayResult) -> str:
    """The end-of-replay table a person reads."""
    s = result.summary
    counts = s["counts"]
    rate = result.items / max(result.elapsed, 1e-9)
    rows: list[tuple[str, str]] = [
        ("frames", f"{counts.get('frames', 0):,} ({counts.get('rejected', 0):,} rejected)"),
        ("items (frames + file rows)", f"{result.items:,}"),
        ("bars", f"{s['bars']:,}"),
        ("predictions", f"{s['predictions']:,} ({s['labelled']:,} labelled)"),
        ("gaps", f"{counts.get('gaps', 0):,}"),
        ("duplicates dropped", f"{counts.get('duplicates', 0):,}"),
        ("drift events", f"{s['drifts']:,}"),
        ("throughput", f"{rate:,.0f} items/s in {result.elapsed:.2f} s"),
    ]
    for sym, st in s["symbols"].items():
        if "log_loss" in st:
            rows.append((f"{sym} log loss", f"online {st['log_loss']:.5f}, traded ensemble "
                         f"{st['ensemble_log_loss']:.5f} (constant baseline "
                         f"{st['baseline_log_loss']:.5f})"))
            rows.append((f"{sym} accuracy", f"{st['accuracy']:.4f}"))
        elif "mae" in st:
            rows.append((f"{sym} MAE", f"{st['mae']:.6g}"))
    if "book" in s:
        bk = s["book"]
        rows.append(("order book", f"{bk['applied']:,} depth diffs applied, {bk['snapshots']:,} "
                     f"snapshots, {bk['resyncs']:,} resyncs" if bk["applied"] else
                     "features.book is on but no depth diff was applied (no depth stream or "
                     "no snapshot in the input): no bar had book features, nothing was predicted"))
    if "batch" in s:
        b = s["batch"]
        rows.append(("boosters trained", f"{b['trained']:,} ({b['refits']:,} refits, "
                     f"{b['warm_starts']:,} warm starts, {b['refreshes']:,} refreshes)"))
        rows.append(("validations", f"{b['validations']:,} ({b['promotions']:,} promotions)"))
    if "paper" in s:
        p = s["paper"]
        ret = p["equity"] / p["start"] - 1
        rows.append(("paper trading", f"equity {p['equity']:,.2f} ({ret:+.2%}), "
                     f"{p['fills']:,} fills, fees {p['fees']:,.2f}"))
    rows.append(("run database", f"{result.db_path} (run {result.run_id})"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def progress_stream() -> TextIO | None:
    """Where the progress line goes: stderr on a terminal, else None (no progress line)."""
    return sys.stderr if sys.stderr.isatty() else None
