"""What a simulated run learned, set against what the simulator planted: summary and report.

:func:`summarize` reads a finished run's database (read-only) and the simulator's
:class:`~ares_stream.sim.simulator.Schedule`; :func:`format_findings` is the end-of-run summary
the daemon prints after ``--feed sim`` (the README's first command); :func:`write_report` writes
it, with its tables, as the first section of the run's HTML report (:mod:`ares_stream.report`).

Scoring against the schedule: a planted concept drift is **detected** by the first drift event
at or after it (and before the next planted one); its delay is counted in bars. Any other drift
event within ``NEAR_BARS`` bars after a volatility switch is put down to that switch (virtual
drift: the noise changed, not the relationship); the rest are **false alarms**.

>>> match_drifts([100, 200], [130, 140, 260, 400], bar_ns=10, switches=[390])
([(100, 130, 3), (200, 260, 6)], [400], [140])
>>> hms(3_725 * 10**9)
'+1:02:05'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ares_stream.features.bars import parse_interval
from ares_stream.learners.scores import log_loss, prequential_rate
from ares_stream.store import history
from ares_stream.store.status import equity_summary, latest_run, open_readonly

if TYPE_CHECKING:
    from ares_stream.sim.simulator import Schedule

__all__ = ["NEAR_BARS", "Findings", "format_findings", "hms", "match_drifts", "summarize",
           "write_report"]

NEAR_BARS = 200  # a drift event this many bars after a volatility switch is put down to it


@dataclass
class Findings:
    """A finished run, scored against its schedule (times in ns)."""

    run: dict[str, Any]
    config: dict[str, Any]
    bar_ns: int
    start_ns: int  # the schedule's start, else the first prediction's bar
    schedule: Schedule | None
    drifts: list[dict[str, Any]]  # every drift event, in time order
    detected: list[tuple[int, int | None, int | None]]  # (planted, detected, delay in bars)
    near_switch: list[int] = field(default_factory=list)
    false_alarms: list[int] = field(default_factory=list)
    regimes: list[dict[str, Any]] = field(default_factory=list)  # losses per planted regime
    overall: dict[str, Any] = field(default_factory=dict)
    models: dict[str, int] = field(default_factory=dict)  # how -> boosters trained
    validations: list[dict[str, Any]] = field(default_factory=list)
    paper: dict[str, Any] | None = None


def hms(offset_ns: int) -> str:
    """An offset from the start as ``+H:MM:SS``."""
    s = round(offset_ns / 1e9)
    return f"+{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def match_drifts(planted: Sequence[int], events: Sequence[int], *, bar_ns: int,
                 switches: Sequence[int] = ()) -> tuple[list[tuple[int, int | None, int | None]],
                                                        list[int], list[int]]:
    """``(planted, detected, delay in bars)`` per planted drift, the events put down to a
    volatility switch, and the false alarms."""
    matched, used = [], set()
    for i, p in enumerate(planted):
        end = planted[i + 1] if i + 1 < len(planted) else math.inf
        hit = next((e for e in events if p <= e < end), None)
        if hit is not None:
            used.add(hit)
        matched.append((p, hit, None if hit is None else math.ceil((hit - p) / bar_ns)))
    rest = [e for e in events if e not in used]
    near = [e for e in rest if any(0 <= e - s <= NEAR_BARS * bar_ns for s in switches)]
    return matched, near, [e for e in rest if e not in near]


def summarize(db_path: str | Path, schedule: Schedule | None = None) -> Findings:
    """Read the newest run of ``db_path`` and score it against ``schedule``."""
    with open_readonly(db_path) as conn:
        run = latest_run(conn) or {"id": None, "status": "none", "mode": "?"}
        rid = run["id"]
        config = history.run_config(conn, rid)
        drifts = history.drift_rows(conn, rid)
        rows = history.labelled_predictions(conn, rid)
        models = history.boosters_by_how(conn, rid)
        validations = history.decision_rows(conn, rid)
        paper = _paper(conn, rid, config)
    # each row with the constant baseline's probability: the label frequency known before it
    rates = prequential_rate(np.array([r[3] for r in rows], dtype=np.float64))
    preds = [(*r, rate) for r, rate in zip(rows, rates.tolist(), strict=True)]
    bar_ns = parse_interval(config.get("bars", {}).get("interval", "1m"))
    start = schedule.start_ns if schedule is not None else (preds[0][0] if preds else 0)
    planted = list(schedule.concept_drifts_ns) if schedule is not None else []
    switches = list(schedule.volatility_switches_ns) if schedule is not None else []
    detected, near, false = match_drifts(planted, [d["ts_event"] for d in drifts],
                                         bar_ns=bar_ns, switches=switches)
    return Findings(run, config, bar_ns, start, schedule, drifts, detected, near, false,
                    _regimes(preds, schedule), _losses(preds), models, validations, paper)


def _paper(conn: Any, run_id: int | None, config: dict[str, Any]) -> dict[str, Any] | None:
    eq = equity_summary(conn)
    if eq is None:
        return None
    start = float(config.get("trading", {}).get("starting_cash", eq["first"]["equity"]))
    fills = history.fill_count(conn, run_id)
    end = float(eq["last"]["equity"])
    return {"start": start, "equity": end, "return": end / start - 1, "fees": eq["last"]["fees"],
            "fills": fills, "max_drawdown": eq["max_drawdown"] or 0.0}


def _losses(preds: Sequence[tuple[Any, ...]]) -> dict[str, Any]:
    """Log loss of the online and traded probabilities, the constant-probability baseline
    (the label frequency known before each row, as in the replay summary: no hindsight) and the
    traded accuracy."""
    n = len(preds)
    if not n:
        return {"n": 0}
    _, online, traded, y, stored, rate = (np.array(c, dtype=np.float64)
                                          for c in zip(*preds, strict=True))
    missing = np.isnan(stored)  # the stored loss of the traded probability, where there is one
    traded_loss = (stored[~missing].sum() + log_loss(y[missing], traded[missing]) * missing.sum()
                   if missing.any() else stored.sum())
    return {
        "n": n,
        "online": log_loss(y, online),
        "traded": float(traded_loss) / n,
        "constant": log_loss(y, rate),
        "accuracy": float(np.mean((traded >= 0.5) == (y == 1.0))),
    }


def _regimes(preds: Sequence[tuple[Any, ...]], schedule: Schedule | None) -> list[dict[str, Any]]:
    if schedule is None:
        return []
    out = []
    for r in schedule.regimes:
        rows = [p for p in preds if r.start_ns <= p[0] < r.end_ns]
        out.append({"start": r.start_ns, "end": r.end_ns, "beta": r.beta, "vol": r.vol,
                    **_losses(rows)})
    return out


def format_findings(f: Findings) -> str:
    """The end-of-run summary a person reads: planted against found, models, paper PnL."""
    rows = [("run", f"{f.run['id']} ({f.run['status']}), {f.config.get('bars', {}).get('interval')}"
                    f" bars, {f.overall.get('n', 0):,} labelled predictions")]
    rows += _drift_rows(f)
    o = f.overall
    if o.get("n"):
        rows.append(("log loss", f"online {o['online']:.4f}, traded {o['traded']:.4f} "
                     f"(constant {o['constant']:.4f}); accuracy {o['accuracy']:.1%}"))
    for r in f.regimes:
        if r.get("n"):
            rows.append((f"  regime {hms(r['start'] - f.start_ns)}",
                         f"beta {r['beta']:+.2f}, vol x{r['vol']:g}: online {r['online']:.4f} "
                         f"vs constant {r['constant']:.4f} over {r['n']:,} bars"))
    rows.append(("boosters trained", _models(f.models)))
    promoted = sum(1 for v in f.validations if v["promoted"])
    rows.append(("validations", f"{len(f.validations):,}, {promoted:,} promotions"))
    if f.paper is not None:
        p = f.paper
        rows.append(("paper trading", f"equity {p['equity']:,.2f} ({p['return']:+.2%}), "
                     f"{p['fills']:,} fills, fees {p['fees']:,.2f}, max drawdown "
                     f"{p['max_drawdown']:.2%}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def _drift_rows(f: Findings) -> list[tuple[str, str]]:
    rows = []
    for planted, hit, delay in f.detected:
        found = "NOT detected" if hit is None else \
            f"detected at {hms(hit - f.start_ns)}, {delay} bars later"
        rows.append((f"planted drift {hms(planted - f.start_ns)}", found))
    if f.schedule is not None:
        switches = ", ".join(hms(t - f.start_ns) for t in f.schedule.volatility_switches_ns)
        rows.append(("volatility switches", f"{switches or 'none'} "
                     f"({len(f.near_switch)} drift events after them)"))
    if f.schedule is None:  # nothing planted to score against
        times = ", ".join(hms(d["ts_event"] - f.start_ns) for d in f.drifts)
        return [*rows, ("drift events", f"{len(f.drifts)}" + (f" at {times}" if times else ""))]
    alarms = ", ".join(hms(t - f.start_ns) for t in f.false_alarms)
    rows.append(("drift events", f"{len(f.drifts)}; false alarms {len(f.false_alarms)}"
                 + (f" ({alarms})" if alarms else "")))
    return rows


def _models(models: dict[str, int]) -> str:
    total = sum(models.values())
    parts = ", ".join(f"{n} {how.replace('_', ' ')}" for how, n in sorted(models.items()))
    return f"{total}" + (f" ({parts})" if parts else "")


def write_report(db_path: str | Path, out_dir: str | Path,
                 schedule: Schedule | None = None) -> Path:
    """The HTML report of the newest run of ``db_path`` (:mod:`ares_stream.report`) into
    ``out_dir``, with the findings against the schedule as its first section; its path."""
    from ares_stream.report import write_report as write_html

    f = summarize(db_path, schedule)
    text = [format_findings(f), ""]
    text += _table("Drift events", ["time", "symbol", "loss before", "loss after", "samples"],
                   [[hms(d["ts_event"] - f.start_ns), d["symbol"], f"{d['mean_before']:.4f}",
                     f"{d['mean_after']:.4f}", f"{d['samples_seen']:,}"] for d in f.drifts])
    text += _table("Planted regimes", ["from", "to", "beta", "vol", "bars", "online log loss",
                                       "constant", "accuracy"],
                   [[hms(r["start"] - f.start_ns), hms(r["end"] - f.start_ns),
                     f"{r['beta']:+.2f}", f"x{r['vol']:g}", f"{r.get('n', 0):,}",
                     *(f"{r[k]:.4f}" if r.get("n") else "-" for k in ("online", "constant")),
                     f"{r['accuracy']:.1%}" if r.get("n") else "-"] for r in f.regimes])
    return write_html(db_path, out_dir, run_id=f.run["id"],
                      extra=[("findings", "What the simulator planted, and what was found",
                              "\n".join(text))])


def _table(title: str, head: list[str], rows: list[list[str]]) -> list[str]:
    """A plain-text table (fixed-width columns) under its title."""
    if not rows:
        return [title, "  none", ""]
    cells = [head, *rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(head))]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return [title, *(f"  {line}" for line in lines), ""]
