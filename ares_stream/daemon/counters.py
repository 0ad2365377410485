"""The live feed's running counters into ``feed_health``, once per checkpoint period.

Some of what the feed goes through is counted, not logged row by row: duplicates the gate
dropped (re-sent frames, the overlap of a catch-up with the live stream), REST answers 429
(rate limited) and 418 (IP banned) the backfiller got, and the lag of every frame. Every
checkpoint period (a job on the daemon's APScheduler clock, on the loop) :meth:`FeedCounters.record`
turns what changed since the previous period into rows, written with the next checkpoint:

- ``duplicates``, ``rate_limited``, ``banned``: ``count`` is how many since the previous row
  (so their sum over a window is that window's total), ``detail`` the process's running total;
- ``lag_stats``: the engine lag of the period's frames — ``count`` frames, ``detail`` JSON
  ``{"p50_ms", "p99_ms", "max_ms", "frames"}`` — the figure ``ares-stream status`` shows.

A period without a change writes nothing. Rows carry no event time (``ts_event`` 0) and the wall
time of the period's end as ``ts_init``, like connection notices.

>>> from collections import Counter
>>> from ares_stream.daemon.ingest import LagStats
>>> rows = []
>>> class Sink:
...     def health(self, *row): rows.append(row)
>>> counts, stats, lag = Counter(frames=5), {"rate_limited": 0}, LagStats()
>>> counters = FeedCounters(counts, stats, lag, Sink())
>>> counts.update(frames=100, duplicates=2); stats["rate_limited"] += 1
>>> for ms in range(1, 101): lag.add(ms * 1_000_000)  # 1 ms ... 100 ms
>>> counters.record(7)
>>> [(kind, n) for _, _, _, kind, n, _ in rows]
[('duplicates', 2), ('rate_limited', 1), ('lag_stats', 100)]
>>> rows[-1][-1]
'{"p50_ms": 50.0, "p99_ms": 99.0, "max_ms": 100.0, "frames": 100}'
>>> rows.clear(); counters.record(8); rows  # nothing new: nothing written
[]
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Protocol

import numpy as np

from ares_stream.daemon.ingest import Ingest, LagStats

__all__ = ["COUNTED", "FeedCounters", "for_ingest"]

# feed_health kind -> (where the running total is: "engine" counts or "rest" stats, its key)
COUNTED = {"duplicates": ("engine", "duplicates"), "rate_limited": ("rest", "rate_limited"),
           "banned": ("rest", "banned")}


class HealthSink(Protocol):
    """Where feed_health rows go (the run store)."""

    def health(self, symbol: str, ts_event: int, ts_init: int, kind: str, count: int,
               detail: str) -> None:
        """Queue one feed_health row."""


class FeedCounters:
    """Turns the engine's counts, the backfiller's stats and the lag samples into rows."""

    def __init__(self, counts: Mapping[str, int], rest: Mapping[str, int], lag: LagStats,
                 sink: HealthSink) -> None:
        self.counts = counts  # the engine's running totals (restored from the checkpoint)
        self.rest = rest  # the backfiller's stats ({} without REST)
        self.lag = lag
        self.sink = sink
        self._seen = self._totals()  # the baseline: what the rows already cover

    def _totals(self) -> dict[str, int]:
        where = {"engine": self.counts, "rest": self.rest}
        totals = {kind: int(where[src].get(key, 0)) for kind, (src, key) in COUNTED.items()}
        return totals | {"frames": int(self.counts.get("frames", 0))}

    def record(self, now_ns: int) -> None:
        """Write a row for each counter that grew since the last call, and the period's lag."""
        totals, seen = self._totals(), self._seen
        self._seen = totals
        for kind in COUNTED:
            if (new := totals[kind] - seen[kind]) > 0:
                self.sink.health("", 0, now_ns, kind, new, json.dumps({"total": totals[kind]}))
        frames = min(totals["frames"] - seen["frames"], len(self.lag.samples))
        if frames > 0:
            self.sink.health("", 0, now_ns, "lag_stats", frames,
                             json.dumps(period_lag(self.lag, frames)))


def period_lag(lag: LagStats, frames: int) -> dict[str, float]:
    """p50, p99 and max (ms) of the newest ``frames`` lag samples, and how many they are."""
    frames = min(frames, len(lag.samples))  # only those: not the whole deque, on the loop
    newest = np.fromiter(itertools.islice(reversed(lag.samples), frames), dtype=np.int64,
                         count=frames)
    p50, p99 = np.quantile(newest, (0.5, 0.99), method="lower") / 1e6
    return {"p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3),
            "max_ms": round(float(newest.max()) / 1e6, 3), "frames": int(newest.size)}


def for_ingest(ingest: Ingest) -> FeedCounters:
    """The counters of a live ingest: its engine's counts, its backfiller's stats, its lag."""
    rest = ingest.backfiller.stats if ingest.backfiller is not None else {}
    return FeedCounters(ingest.engine.counts, rest, ingest.lag, ingest.engine.sink)
