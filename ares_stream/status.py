"""``ares-stream status``: how a daemon's database says it is doing, as text or as stable JSON.

The database is only read (see ``store/status.py``), so ``status`` is safe beside a running daemon.
Sections of a database that has nothing for them yet say so ("none yet"); a missing file is an
error that names it.

**Health** is red when the newest run failed (its reason), when it is marked running but no
process holds the database's lock (its daemon died), or when the lock's owner wrote no checkpoint
for three of its periods and at least 30 s (it cannot write: a full disk?). **Heartbeat** is the
wall time of the newest checkpoint (``checkpoints.ts_wall``), or, when no
checkpoint was written yet, the receive time of the newest prediction (``predictions.ts_init``);
the report names which one it used. **Feed health** counts incidents of ``feed_health`` in total
and in the last hour of event time, the hour ending at the newest event time in the file (a
prediction's bar or an incident), so a replay's file and a stopped daemon's file read sensibly too.
An incident's time is its ``ts_event``, or its receive time when it has none (connection notices,
rejected frames, lag episodes). Reconnects are the feed's ``disconnected`` notices; duplicates
(items the gate dropped), REST 429s and 418s are the daemon's counters, written every checkpoint
period. **Lag** is the engine lag (a frame's arrival to the end of its processing) of the newest
period the daemon recorded: p50, p99 and max over its frames. **Start-up**
is the newest run's: how long after its process started the daemon was READY, and its REST
warm-up (the history a cold start fetches before its first live trade, or what a restart missed
since its checkpoint): items, requests and seconds. **Positions**
and **PnL** are those of the newest run that has any.

A database from a newer ares-stream (a schema version this code does not know) is refused with
one line naming both versions. A file that fails SQLite's ``quick_check`` is shown as far as it
can be read, after one warning line on stderr (and ``integrity`` in the JSON).

JSON (``--json``), schema 1; every time is an integer of ns since the epoch (``*_ns``), every
value absent from the database is ``null``, lists are sorted by symbol::

    {"schema": 1, "db": str, "schema_version": int, "now_ns": int,
     "heartbeat": {"source": "checkpoint" | "prediction" | null, "ts_ns": int?, "age_s": float?},
     "run": null | {"id", "mode", "status", "started_at_ns", "ended_at_ns", "runs"},
     "health": {"ok": bool, "reason": str, "owner_pid": int?, "checkpoint_every_s": float,
                "checkpoint_age_s": float?},
     "startup": null | {"ready_after_s": float?, "checkpoint_every_s": float?,
                        "warmup": null | {"how": "cold start" | "restart", "seconds", "items",
                                          "requests", "complete"}},
     "integrity": {"ok": bool, "problems": [str]},  # SQLite's quick_check (first lines)
     "feed_health": {"window_end_ns": int?,
                     "last_hour": {"gaps", "rejected", "reconnects", "lag_episodes",
                                   "duplicates", "rate_limited", "banned"},
                     "total": {...the same keys}},
     "lag": null | {"p50_ms", "p99_ms", "max_ms", "frames", "ts_ns", "run_id"},
     "champions": [{"symbol", "kind", "id", "version", "n_trees", "how", "rows", "created_ns"}],
     "validations": [{"symbol", "ts_event_ns", "decision": "promoted" | "kept", "challenger",
                      "challenger_id", "incumbent", "incumbent_id", "folds", "challenger_loss",
                      "incumbent_loss", "improvement", "ci_low", "ci_high", "margin", "reason",
                      "decided_by"}],  # decided_by: who made a manual decision, else null
     "drift": {"count", "by_symbol": {symbol: n},
               "last": null | {"symbol", "ts_event_ns", "detector", "mean_before", "mean_after",
                               "action"}},
     "signal": [{"symbol", "trading": bool, "reason", "ts_event_ns"}],  # the latest gate change
     "positions": [{"symbol", "qty", "avg_price", "realized_pnl", "ts_event_ns", "run_id"}],
     "pnl": null | {"run_id", "ts_event_ns", "equity", "cash", "positions_value", "start_equity",
                    "return", "max_drawdown", "fees", "realized_pnl"}}

>>> import tempfile, os
>>> from ares_stream.store.db import open_db
>>> path = os.path.join(tempfile.mkdtemp(), "paper.db"); open_db(path).conn.close()
>>> report = status_report(path)
>>> report["heartbeat"], report["run"], report["pnl"]
({'source': None, 'ts_ns': None, 'age_s': None}, None, None)
>>> print(format_status(report).splitlines()[2])
heartbeat    none yet (no checkpoint or prediction)
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ares_stream.errors import AresError
from ares_stream.store import status as sql
from ares_stream.store.lock import holder

__all__ = ["HOUR_NS", "SCHEMA", "default_db", "format_status", "main_status", "status_report"]

SCHEMA = 1
STALE_AFTER_S = 30.0  # a live owner's newest checkpoint older than this (and 3 periods): red
HOUR_NS = 3600 * 10**9
_DEFAULT_DBS = (Path("state/live.db"), Path("state/paper.db"))


def status_report(db_path: str | Path, now_ns: int | None = None) -> dict[str, Any]:
    """Everything ``status`` shows, read from the database at ``db_path``."""
    now = time.time_ns() if now_ns is None else now_ns
    with sql.open_readonly(db_path) as conn:
        problems = sql.integrity(conn)
        window_end = sql.newest_data_time(conn)
        since = None if window_end is None else window_end - HOUR_NS
        run, positions = sql.latest_run(conn), sql.positions(conn)
        startup_info = None if run is None else _startup(sql.startup_notes(conn, run["id"]))
        checkpoint = sql.newest_checkpoint_wall(conn)
        return {
            "schema": SCHEMA, "db": str(db_path), "schema_version": sql.schema_version(conn),
            "now_ns": now,
            "heartbeat": _heartbeat(checkpoint,
                                    sql.newest_prediction_init(conn), now),
            "run": None if run is None else _ns(run, "started_at", "ended_at"),
            "startup": startup_info,
            "health": _health(run, startup_info, checkpoint, now,
                              holder(db_path), None if run is None else
                              sql.run_error(conn, run["id"])),
            "integrity": {"ok": not problems, "problems": problems},
            "feed_health": {"window_end_ns": window_end,
                            "last_hour": sql.feed_health_counts(conn, since),
                            "total": sql.feed_health_counts(conn)},
            "lag": _lag(sql.latest_health(conn, "lag_stats")),
            "champions": [_ns(c, "created") for c in sql.champions(conn)],
            "validations": [_validation(v) for v in sql.last_validations(conn)],
            "drift": _drift(sql.drift_summary(conn)),
            "signal": [_ns(g, "ts_event") | {"trading": bool(g["trading"])}
                       for g in sql.signal_gates(conn)],
            "positions": [_ns(p, "ts_event") for p in positions],
            "pnl": _pnl(sql.equity_summary(conn), positions),
        }


def _ns(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    """``row`` with each time column renamed ``<name>_ns``, in place of the original key."""
    return {f"{k}_ns" if k in keys else k: v for k, v in row.items()}


def _heartbeat(checkpoint: int | None, prediction: int | None, now: int) -> dict[str, Any]:
    source, ts = (("checkpoint", checkpoint) if checkpoint is not None
                  else ("prediction", prediction) if prediction is not None else (None, None))
    return {"source": source, "ts_ns": ts,
            "age_s": None if ts is None else round((now - ts) / 1e9, 3)}


def _lag(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """The engine lag of the newest period the daemon recorded (a ``lag_stats`` row)."""
    if row is None:
        return None
    detail = json.loads(row["detail"])
    return {"p50_ms": detail.get("p50_ms"), "p99_ms": detail.get("p99_ms"),
            "max_ms": detail.get("max_ms"), "frames": int(row["count"]),
            "ts_ns": row["ts_init"], "run_id": row["run_id"]}


def _startup(notes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """When the run's daemon was last READY and how long that start's REST warm-up took (the
    fetches of the history a cold start warms on, or of what a restart missed since its
    checkpoint)."""
    starts = [i for i, n in enumerate(notes) if n["kind"] == "startup"]
    notes = notes[starts[-1]:] if starts else notes  # the newest start of a resumed run
    if not notes:
        return None
    ready = [json.loads(n["detail"]).get("ready_after_s") for n in notes if n["kind"] == "startup"]
    fetches = [(n, json.loads(n["detail"])) for n in notes if n["kind"] == "warmup"]
    every = [json.loads(n["detail"]).get("checkpoint_every_s") for n in notes
             if n["kind"] == "startup"]
    return {"ready_after_s": ready[-1] if ready else None,
            "checkpoint_every_s": every[-1] if every else None,
            "warmup": None if not fetches else {
                "how": fetches[0][1].get("how"),
                "seconds": round(sum(d.get("seconds", 0.0) for _, d in fetches), 3),
                "items": sum(int(n["count"]) for n, _ in fetches),
                "requests": sum(int(d.get("requests", 0)) for _, d in fetches),
                "complete": all(d.get("complete", True) for _, d in fetches)}}


def _health(run: dict[str, Any] | None, started: dict[str, Any] | None, checkpoint: int | None,
            now: int, owner: int | None, error: str | None) -> dict[str, Any]:
    """Green or red, and why: a failed run, a run marked running that no process owns (its
    daemon died), or an owner whose checkpoints stopped (it cannot write: a full disk?)."""
    every = (started or {}).get("checkpoint_every_s") or 5.0
    age = None if checkpoint is None else (now - checkpoint) / 1e9
    late = max(3 * every, STALE_AFTER_S)
    if run is None:
        ok, why = True, "no run yet"
    elif run["status"] == "failed":
        ok, why = False, f"run #{run['id']} failed: {error or 'no reason recorded'}"
    elif run["status"] == "running" and owner is None:
        ok, why = False, (f"run #{run['id']} is marked running but no process owns the "
                          "database: its daemon died (a crash or a kill); the next start "
                          "resumes it")
    elif owner is not None and age is not None and age > late:
        ok, why = False, (f"pid {owner} wrote no checkpoint for {_age(age)} (one every "
                          f"{every:g} s expected): it cannot write its database (a full disk?)")
    elif owner is not None:
        ok, why = True, f"pid {owner} owns the database and checkpoints"
    else:
        ok, why = True, f"run #{run['id']} {run['status']}; no process owns the database"
    return {"ok": ok, "reason": why, "owner_pid": owner,
            "checkpoint_every_s": every, "checkpoint_age_s": None if age is None else round(age, 3)}


def _validation(v: dict[str, Any]) -> dict[str, Any]:
    out = _ns(v, "ts_event")
    promoted = out.pop("promoted")
    return {"symbol": out.pop("symbol"), "ts_event_ns": out.pop("ts_event_ns"),
            "decision": "promoted" if promoted else "kept", **out}


def _drift(d: dict[str, Any]) -> dict[str, Any]:
    return {**d, "last": None if d["last"] is None else _ns(d["last"], "ts_event")}


def _pnl(eq: dict[str, Any] | None, positions: list[dict[str, Any]]) -> dict[str, Any] | None:
    if eq is None:
        return None
    first, last = eq["first"], eq["last"]
    start = first["equity"]
    return {"run_id": eq["run_id"], "ts_event_ns": last["ts_event"], "equity": last["equity"],
            "cash": last["cash"], "positions_value": last["positions_value"],
            "start_equity": start, "return": last["equity"] / start - 1 if start else None,
            "max_drawdown": eq["max_drawdown"], "fees": last["fees"],
            "realized_pnl": sum(p["realized_pnl"] for p in positions)}


# -- text ---------------------------------------------------------------------------------------

def format_status(report: dict[str, Any]) -> str:
    """The report as aligned text sections, one or more lines each."""
    lines = [f"ares-stream status: {report['db']}"]
    sections = [("health", _health_lines), ("heartbeat", _heartbeat_lines), ("run", _run_lines),
                ("start-up", _startup_lines), ("feed", _feed_lines), ("lag", _lag_lines),
                ("champions", _champion_lines), ("validation", _validation_lines),
                ("drift", _drift_lines), ("signal", _signal_lines),
                ("positions", _position_lines), ("pnl", _pnl_lines)]
    for title, render in sections:
        body = render(report) or ["none yet"]
        lines.append(f"{title:<12} {body[0]}")
        lines.extend(f"{'':<12} {more}" for more in body[1:])
    return "\n".join(lines)


def _when(ns: int | None) -> str:
    if not ns:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _health_lines(r: dict[str, Any]) -> list[str]:
    h = r["health"]
    if r["run"] is None:
        return []
    return [f"{'ok' if h['ok'] else 'RED'}: {h['reason']}"]


def _heartbeat_lines(r: dict[str, Any]) -> list[str]:
    hb = r["heartbeat"]
    if hb["source"] is None:
        return ["none yet (no checkpoint or prediction)"]
    what = "newest checkpoint" if hb["source"] == "checkpoint" else "newest prediction"
    return [f"{_age(hb['age_s'])} ago ({what}, {_when(hb['ts_ns'])})"]


def _run_lines(r: dict[str, Any]) -> list[str]:
    run = r["run"]
    if run is None:
        return []
    ended = f", ended {_when(run['ended_at_ns'])}" if run["ended_at_ns"] else ""
    return [f"#{run['id']} {run['mode']}, {run['status']}, started "
            f"{_when(run['started_at_ns'])}{ended} ({run['runs']} runs in this file)"]


def _startup_lines(r: dict[str, Any]) -> list[str]:
    st = r.get("startup")
    if st is None:
        return []
    out = []
    if st["ready_after_s"] is not None:
        out.append(f"READY {st['ready_after_s']:.2f} s after the process started")
    w = st["warmup"]
    if w is not None:
        cut = "" if w["complete"] else ", incomplete"
        out.append(f"REST warm-up ({w['how']}): {w['items']:,} items in {w['seconds']:.2f} s, "
                   f"{w['requests']} requests{cut}")
    return out


def _feed_lines(r: dict[str, Any]) -> list[str]:
    fh = r["feed_health"]

    def counts(c: dict[str, int]) -> str:
        """One window's feed-health counters, as one phrase."""
        return (f"{c['gaps']} gaps, {c['rejected']} rejected, {c['reconnects']} reconnects, "
                f"{c['lag_episodes']} lag episodes, {c['duplicates']:,} duplicates dropped, "
                f"{c['rate_limited']} REST 429s, {c['banned']} REST 418s")
    if fh["window_end_ns"] is None and not any(fh["total"].values()):
        return []
    return [f"last hour: {counts(fh['last_hour'])} (to {_when(fh['window_end_ns'])})",
            f"total:     {counts(fh['total'])}"]


def _lag_lines(r: dict[str, Any]) -> list[str]:
    lag = r.get("lag")
    if lag is None:
        return []
    return [f"engine p50 {lag['p50_ms']:.2f} ms, p99 {lag['p99_ms']:.2f} ms, max "
            f"{lag['max_ms']:.2f} ms over {lag['frames']:,} frames (the period to "
            f"{_when(lag['ts_ns'])})"]


def _champion_lines(r: dict[str, Any]) -> list[str]:
    def trees(n: int | None) -> str:
        """``, N trees`` for a booster; nothing for a model without trees."""
        return "" if n is None else f", {n} trees"
    return [f"{c['symbol']} {c['kind']} model {c['id']} v{c['version']}{trees(c['n_trees'])}, "
            f"{c['how']} on {c['rows']} rows, created {_when(c['created_ns'])}"
            for c in r["champions"]]


def _num(x: float | None, fmt: str = ".4f") -> str:
    return "-" if x is None else format(x, fmt)


def _validation_lines(r: dict[str, Any]) -> list[str]:
    return [f"{v['symbol']} {v['challenger']}: model {v['challenger_id']} in (was "
            f"{v['incumbent_id']}) at {_when(v['ts_event_ns'])}, {v['reason']}"
            if v.get("decided_by") else
            f"{v['symbol']} {v['decision']} {v['challenger']} vs {v['incumbent']} at "
            f"{_when(v['ts_event_ns'])}: loss {_num(v['challenger_loss'])} vs "
            f"{_num(v['incumbent_loss'])}, improvement {_num(v['improvement'])} CI "
            f"[{_num(v['ci_low'])}, {_num(v['ci_high'])}], margin {_num(v['margin'])}"
            for v in r["validations"]]


def _drift_lines(r: dict[str, Any]) -> list[str]:
    d = r["drift"]
    if not d["count"]:
        return []
    last = d["last"]
    per = ", ".join(f"{s} {n}" for s, n in d["by_symbol"].items())
    return [f"{d['count']} events ({per}); last {last['symbol']} at {_when(last['ts_event_ns'])}, "
            f"loss {last['mean_before']:.4f} -> {last['mean_after']:.4f}, {last['action']}"]


def _signal_lines(r: dict[str, Any]) -> list[str]:
    return [f"{g['symbol']} {'trading' if g['trading'] else 'flat'} since "
            f"{_when(g['ts_event_ns'])}" + ("" if g["trading"] else f": {g['reason']}")
            for g in r["signal"]]


def _position_lines(r: dict[str, Any]) -> list[str]:
    return [f"{p['symbol']} {p['qty']:g} @ {p['avg_price']:.2f}, realized "
            f"{p['realized_pnl']:+.2f} (at {_when(p['ts_event_ns'])})" for p in r["positions"]]


def _pnl_lines(r: dict[str, Any]) -> list[str]:
    p = r["pnl"]
    if p is None:
        return []
    ret = "-" if p["return"] is None else f"{p['return'] * 100:+.2f} %"
    return [f"equity {p['equity']:.2f} ({ret} since {p['start_equity']:.2f}), cash "
            f"{p['cash']:.2f}, max drawdown {p['max_drawdown'] * 100:.2f} %, fees "
            f"{p['fees']:.2f}, realized {p['realized_pnl']:+.2f} (at {_when(p['ts_event_ns'])})"]


# -- the command --------------------------------------------------------------------------------

def default_db() -> Path:
    """state/live.db or state/paper.db, whichever exists (the newer if both do)."""
    found = [p for p in _DEFAULT_DBS if p.is_file()]
    if not found:
        raise AresError("no state/live.db or state/paper.db here: pass --db FILE")
    return max(found, key=lambda p: p.stat().st_mtime)


def main_status(args_db: str | Path | Sequence[str | Path] | None, as_json: bool) -> int:
    """The body of ``ares-stream status``: print the report — of several databases (shards),
    each one's line and their totals; a user error raises AresError."""
    paths = [default_db()] if args_db is None else \
        [args_db] if isinstance(args_db, str | Path) else list(args_db)
    reports = [status_report(p) for p in paths]
    for report in reports:
        if problems := report["integrity"]["problems"]:
            print(f"ares-stream status: warning: {report['db']} fails SQLite's integrity check "
                  f"({problems[0]}); showing what can be read", file=sys.stderr)
    if len(reports) == 1:
        text = json.dumps(reports[0], indent=2) if as_json else format_status(reports[0])
    else:
        agg = aggregate(reports)
        text = json.dumps(agg, indent=2) if as_json else format_aggregate(agg)
    sys.stdout.write(text + "\n")
    return 0


def shard_databases(directory: str | Path) -> list[Path]:
    """The shard databases in ``directory`` (``<mode>-shard<K>of<N>.db``), by mode, N and K."""
    found = []
    for p in Path(directory).glob("*-shard*of*.db"):
        m = re.fullmatch(r"(.+)-shard(\d+)of(\d+)\.db", p.name)
        if m:
            found.append(((m[1], int(m[3]), int(m[2])), p))
    if not found:
        raise AresError(f"no shard databases (<mode>-shard<K>of<N>.db) in {directory}")
    return [p for _, p in sorted(found)]


# -- several databases: the shards of one market ------------------------------------------------

def aggregate(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Each database's report and their totals (``status --db A --db B``, ``--shards``).

    JSON, schema 1: ``{"schema": 1, "now_ns", "shards": [report, ...], "total": {"databases",
    "healthy", "red": [db], "equity", "start_equity", "return", "positions", "drift_events",
    "champions", "lag_p99_ms_max", "heartbeat_age_s_max", "gaps_last_hour",
    "reconnects_last_hour"}}`` — sums over the databases; ``return`` is the summed equity over
    the summed start equity (null without any).
    """
    pnl = [r["pnl"] for r in reports if r["pnl"]]
    equity = sum(p["equity"] for p in pnl) if pnl else None
    start = sum(p["start_equity"] for p in pnl) if pnl else None
    lags = [r["lag"]["p99_ms"] for r in reports if r["lag"]]
    ages = [r["heartbeat"]["age_s"] for r in reports if r["heartbeat"].get("age_s") is not None]
    red = [r["db"] for r in reports if r["run"] is not None and not r["health"]["ok"]]
    return {"schema": SCHEMA, "now_ns": max(r["now_ns"] for r in reports), "shards": reports,
            "total": {
                "databases": len(reports), "healthy": len(reports) - len(red), "red": red,
                "equity": equity, "start_equity": start,
                "return": equity / start - 1 if equity is not None and start else None,
                "positions": sum(1 for r in reports for p in r["positions"] if p["qty"]),
                "drift_events": sum(r["drift"]["count"] for r in reports),
                "champions": sum(len(r["champions"]) for r in reports),
                "lag_p99_ms_max": max(lags) if lags else None,
                "heartbeat_age_s_max": max(ages) if ages else None,
                "gaps_last_hour": sum(r["feed_health"]["last_hour"]["gaps"] for r in reports),
                "reconnects_last_hour": sum(r["feed_health"]["last_hour"]["reconnects"]
                                            for r in reports)}}


def format_aggregate(agg: dict[str, Any]) -> str:
    """One line per database, then the totals."""
    lines = [f"ares-stream status: {len(agg['shards'])} databases"]
    for r in agg["shards"]:
        health = "-" if r["run"] is None else "ok" if r["health"]["ok"] else "RED"
        hb = r["heartbeat"]
        beat = _age(hb["age_s"]) if hb.get("age_s") is not None else "-"
        pnl = r["pnl"]
        eq = f"{pnl['equity']:,.2f}" if pnl else "-"
        lag = f"{r['lag']['p99_ms']:.1f} ms" if r["lag"] else "-"
        why = "" if health != "RED" else f" ({r['health']['reason']})"
        lines.append(f"  {Path(r['db']).name:<28} {health:<3} heartbeat {beat:<9} equity {eq:>12}"
                     f"  lag p99 {lag:>9}  champions {len(r['champions'])}{why}")
    t = agg["total"]
    ret = f" ({t['return'] * 100:+.2f} %)" if t["return"] is not None else ""
    eq = f"{t['equity']:,.2f}{ret}" if t["equity"] is not None else "-"
    lag = f"{t['lag_p99_ms_max']:.1f} ms" if t["lag_p99_ms_max"] is not None else "-"
    lines += [f"total        healthy {t['healthy']}/{t['databases']}, equity {eq}, "
              f"{t['positions']} open positions, {t['champions']} champions, "
              f"{t['drift_events']} drift events, worst lag p99 {lag}, last hour: "
              f"{t['gaps_last_hour']} gaps, {t['reconnects_last_hour']} reconnects"]
    return "\n".join(lines)
