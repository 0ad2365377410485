"""What the dashboard shows, read from a database in one bounded pass (``store/monitor.py``).

:func:`poll` is the cheap question asked every second ("did anything change?"); :func:`snapshot`
the answer sent to the browsers when it did: the newest :data:`POINTS` bars of equity and
drawdown, the rolling log loss of each model over the newest labelled predictions, and the
tables (positions, fills, drift, models, decisions, feed health). Times are ns since the epoch
(``*_ns``), chart x values seconds (what uPlot draws); NaN is sent as null.

The rolling log loss is over the last :data:`ROLLING` labelled predictions (all symbols, in time
order), of each model where it had a probability: ``online`` (the River learner, the
``value`` column), ``booster`` (the champion booster) and ``forecast`` (the traded probability,
``proba``). ``baseline`` predicts the label frequency seen so far in the window shown — the
report's prequential prior, counted from the window's first row rather than the run's.

>>> import tempfile, os
>>> snap = snapshot(os.path.join(tempfile.mkdtemp(), "none.db"))
>>> snap["state"], snap["reason"].endswith("no database there yet")
('waiting', True)
>>> rolling_mean(np.array([1.0, np.nan, 3.0, 5.0]), 2, min_count=1).tolist()
[1.0, 1.0, 3.0, 4.0]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ares_stream.errors import AresError
from ares_stream.learners.scores import log_losses, prequential_rate
from ares_stream.store import monitor as sql
from ares_stream.store import status as st

__all__ = ["MAX_DRAWN", "POINTS", "ROLLING", "Extent", "poll", "rolling_mean", "snapshot"]

POINTS = 2000  # newest bars (equity marks; labelled predictions per symbol) on each chart
ROLLING = 200  # labelled predictions in the rolling log loss
MAX_DRAWN = 1000  # points sent per chart series (evenly thinned, the newest always kept)
ROWS = 20  # rows of each table (fills, drift events, decisions)
HOUR_NS = 3600 * 10**9
MODELS = {"online": 2, "booster": 3, "forecast": 4}  # name -> column of labelled_tail


@dataclass
class Extent:
    """The worst drawdown and the number of a run's equity marks, carried from one snapshot to
    the next so that each reads only the marks written since (a year of bars is not rescanned
    at every bar). Starts over when the run or its first mark changes."""

    run_id: int | None = None
    first_ts: int | None = None
    newest: int | None = None
    max_drawdown: float | None = None
    rows: int = 0

    def update(self, conn: Any, run_id: int | None) -> dict[str, Any]:
        """Read the marks after :attr:`newest`; the run's first mark and its figures so far."""
        after = self.newest if run_id == self.run_id else None
        seen = sql.equity_since(conn, run_id, after)
        if after is not None and seen["first_ts"] != self.first_ts:  # another file: read it all
            after, seen = None, sql.equity_since(conn, run_id, None)
        if after is None:
            self.run_id, self.first_ts, self.max_drawdown, self.rows = (
                run_id, seen["first_ts"], None, 0)
        if seen["rows"]:
            worst = [w for w in (self.max_drawdown, seen["max_drawdown"]) if w is not None]
            self.max_drawdown = max(worst) if worst else None
            self.rows += seen["rows"]
            self.newest = seen["newest"]
        return seen


def poll(db_path: str | Path) -> tuple[Any, ...] | str:
    """What changes when anything shown changes (:func:`~ares_stream.store.monitor.marks`), or
    a line saying why the database cannot be read (it is not there yet, say)."""
    try:
        with st.open_readonly(db_path) as conn:
            return sql.marks(conn)
    except AresError as exc:
        return str(exc)


def snapshot(db_path: str | Path, now_ns: int | None = None,
             extent: Extent | None = None) -> dict[str, Any]:
    """Everything the page shows; ``state`` is ``live``, ``waiting`` (no database or no run
    yet: ``reason`` says which) or ``error`` (a file that cannot be read: ``reason``).
    ``extent``, kept by the caller between snapshots, spares re-reading old equity marks."""
    base = {"db": str(db_path), "now_ns": time.time_ns() if now_ns is None else now_ns}
    try:
        with st.open_readonly(db_path) as conn:
            run = st.latest_run(conn)
            if run is None:
                return {**base, "state": "waiting", "reason": "no run in the database yet"}
            return {**base, "state": "live", "reason": "",
                    **_read(conn, run, Extent() if extent is None else extent)}
    except st.MissingDatabase:
        return {**base, "state": "waiting", "reason": f"{db_path}: no database there yet"}
    except AresError as exc:
        return {**base, "state": "error", "reason": str(exc)}


def _read(conn: Any, run: dict[str, Any], extent: Extent) -> dict[str, Any]:
    """The sections of a database that has a run."""
    symbols = sql.symbols(conn, run["id"])
    bars = [{"symbol": s, **sql.newest_bar(conn, run["id"], s)} for s in symbols]
    newest = max((b["ts_event"] for b in bars), default=None)
    eq_run, marks = sql.equity_tail(conn, POINTS)
    lag = st.latest_health(conn, "lag_stats")
    return {
        "run": {**_ns(run, "started_at", "ended_at"), "symbols": symbols},
        "last_bar": None if newest is None else _ns(max(bars, key=lambda b: b["ts_event"]),
                                                    "ts_event"),
        "pnl": None if eq_run is None else _pnl(extent.update(conn, eq_run), extent, marks),
        "equity": _equity(marks),
        "loss": _losses(sorted((r for s in symbols for r in sql.labelled_tail(
            conn, run["id"], s, POINTS + ROLLING)), key=lambda r: r[0])),
        "positions": [_ns(p, "ts_event") for p in st.positions(conn)],
        "fills": [_ns(f, "ts_event") for f in sql.fills_tail(conn, ROWS)],
        "signal": [_ns(g, "ts_event") | {"trading": bool(g["trading"])}
                   for g in st.signal_gates(conn)],
        "drift": [_ns(d, "ts_event") for d in sql.drift_tail(conn, ROWS)],
        "feature_drift": {"checks": [_ns(c, "ts_event") for c in sql.feature_checks(conn)],
                          "drifted": [_ns(f, "ts_event")
                                      for f in sql.feature_drift_latest(conn)]},
        "champions": [_ns(c, "created") for c in st.champions(conn)],
        "candidates": [_ns(c, "created") for c in sql.latest_candidates(conn)],
        "validations": [_ns(v, "ts_event") | {"promoted": bool(v["promoted"])}
                        for v in sql.validations_tail(conn, ROWS)],
        "feed": {"total": sql.feed_counts(conn, run["id"]),
                 "last_hour": sql.feed_counts(conn, run["id"],
                                              None if newest is None else newest - HOUR_NS),
                 "lag": _lag(lag)},
    }


def _ns(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    """``row`` with each time column renamed ``<name>_ns``."""
    return {f"{k}_ns" if k in keys else k: v for k, v in row.items()}


def _pnl(seen: dict[str, Any], extent: Extent, marks: list[tuple[Any, ...]]) -> dict[str, Any]:
    """The equity card: the newest mark against the run's first, the worst drawdown."""
    ts, equity, drawdown, fees = marks[-1]
    start = seen["first_equity"]
    return {"run_id": extent.run_id, "ts_event_ns": ts, "equity": equity, "start_equity": start,
            "return": equity / start - 1 if start else None, "drawdown": drawdown,
            "max_drawdown": max(extent.max_drawdown or 0.0, drawdown), "fees": fees,
            "marks": extent.rows}


def _lag(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    try:
        detail = json.loads(row["detail"])
    except ValueError:
        detail = {}
    return {"p50_ms": detail.get("p50_ms"), "p99_ms": detail.get("p99_ms"),
            "max_ms": detail.get("max_ms"), "frames": int(row["count"]), "ts_ns": row["ts_init"]}


def _equity(rows: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
    """The chart's columns: time (s), equity, drawdown (%), thinned to :data:`MAX_DRAWN`."""
    if not rows:
        return {"t": [], "equity": [], "drawdown": []}
    a = np.array(rows, dtype=np.float64)
    keep = _thin(len(a))
    return {"t": _seconds(a[keep, 0]), "equity": _json(a[keep, 1]),
            "drawdown": _json(a[keep, 2] * 100.0)}


def _losses(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """Rolling log loss of each model and of the baseline over labelled rows in time order."""
    out: dict[str, Any] = {"window": ROLLING, "t": [], "series": {}, "means": {}}
    if not rows:
        return out
    a = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=np.float64)
    a = a[-POINTS - ROLLING:]
    y, min_count = a[:, 1], max(1, min(ROLLING, len(a)) // 2)
    losses = {name: np.where(np.isfinite(a[:, col]),
                             log_losses(y, np.nan_to_num(a[:, col], nan=0.5)), np.nan)
              for name, col in MODELS.items()}
    losses["baseline"] = log_losses(y, prequential_rate(y))
    first = max(0, len(a) - POINTS)
    keep = first + _thin(len(a) - first)
    out["t"] = _seconds(a[keep, 0])
    for name, loss in losses.items():
        out["series"][name] = _json(rolling_mean(loss, ROLLING, min_count)[keep])
        scored = loss[first:][np.isfinite(loss[first:])]
        out["means"][name] = float(scored.mean()) if scored.size else None
    return out


def rolling_mean(x: np.ndarray, window: int, min_count: int) -> np.ndarray:
    """Mean of the finite values among the last ``window`` rows; NaN where fewer than
    ``min_count`` of them are finite. O(n) by cumulative sums."""
    ok = np.isfinite(x)
    sums = np.concatenate(([0.0], np.cumsum(np.where(ok, x, 0.0))))
    counts = np.concatenate(([0], np.cumsum(ok)))
    lo = np.maximum(np.arange(1, x.size + 1) - window, 0)
    n = counts[1:] - counts[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= min_count, (sums[1:] - sums[lo]) / np.maximum(n, 1), np.nan)


def _thin(n: int) -> np.ndarray:
    """Indices of at most :data:`MAX_DRAWN` evenly spaced rows of ``n``, first and last kept."""
    if n <= MAX_DRAWN:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, MAX_DRAWN).round().astype(np.int64))


def _seconds(ns: np.ndarray) -> list[float]:
    """Event times (ns) as the seconds uPlot's time axis draws, to the millisecond."""
    return [round(v / 1e9, 3) for v in ns.tolist()]


def _json(a: np.ndarray) -> list[float | None]:
    """Floats rounded to 6 significant digits; NaN and infinities as None."""
    return [float(f"{v:.6g}") if np.isfinite(v) else None for v in a.tolist()]
