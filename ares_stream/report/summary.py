"""The report's summary numbers, from what the broker and the learners recorded.

**Returns** are the equity's simple returns per bar interval: the marked equity is sampled on the
bar grid (last mark of each bar, carried over bars without one), so a 1-second run is judged on
1-second returns. Sharpe and Sortino (:mod:`ares_stream.validation.metrics`, zero risk-free rate)
are annualised by √(periods per year) with a 365-day year — crypto trades every day. Calmar is
the annual return over the maximum drawdown: compounded (CAGR) from 30 days, simple below (a few
hours compounded to a year is a number no one can read); either way a short run extrapolates, and
the summary says so.

**Trades.** A round trip runs from flat to flat in one symbol; its PnL is what was sold less what
was bought less every fee paid on the way, and the hit rate is the share of closed round trips with
a positive PnL. Turnover is the notional traded per day over the mean equity.

>>> r = bar_returns(np.array([0, 10, 25, 30]), np.array([100.0, 110.0, 99.0, 99.0]), 10)
>>> r.round(4).tolist()
[0.1, -0.1, 0.0]
>>> round_trips(np.array(["A", "A", "A", "A"], dtype=object),
...             np.array(["BUY", "SELL", "BUY", "SELL"], dtype=object),
...             np.array([1.0, 1.0, 2.0, 2.0]), np.array([100.0, 101.0, 50.0, 49.0]),
...             np.array([0.1, 0.1, 0.1, 0.1])).round(2).tolist()
[0.8, -2.2]
>>> dd, seconds = underwater(np.array([0, 60, 120, 180, 240]) * 10**9,
...                          np.array([1.0, 0.9, 0.95, 1.0, 0.8]))
>>> round(dd, 6), seconds
(0.2, 180)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ares_stream.learners.scores import prequential_rate
from ares_stream.validation import metrics as vm

if TYPE_CHECKING:
    from ares_stream.report.model import ReportData, Scores

__all__ = ["YEAR_NS", "bar_returns", "duration", "round_trips", "summary", "underwater"]

YEAR_NS = 365 * 86_400 * 10**9
DAY_NS = 86_400 * 10**9
_NAN = float("nan")


def bar_returns(ts: np.ndarray, equity: np.ndarray, bar_ns: int) -> np.ndarray:
    """Simple returns of ``equity`` sampled at the end of every bar interval (last mark wins)."""
    if ts.size < 2:
        return np.array([], dtype=np.float64)
    slot = (ts - ts[0]) // bar_ns
    last = np.r_[slot[1:] != slot[:-1], True]  # the last mark of each slot
    grid = np.full(int(slot[-1]) + 1, np.nan)
    grid[slot[last]] = equity[last]
    filled = grid[np.maximum.accumulate(np.where(np.isnan(grid), 0, np.arange(grid.size)))]
    return np.asarray(filled[1:] / filled[:-1] - 1.0, dtype=np.float64)


def round_trips(symbol: np.ndarray, side: np.ndarray, qty: np.ndarray, price: np.ndarray,
                fee: np.ndarray) -> np.ndarray:
    """Net PnL of every flat-to-flat round trip, in the order they closed."""
    held: dict[str, float] = {}
    cash: dict[str, float] = {}
    out = []
    for sym, sd, q, p, f in zip(symbol, side, qty, price, fee, strict=True):
        sign = 1.0 if sd == "BUY" else -1.0
        pos = held.get(sym, 0.0) + sign * q
        cash[sym] = cash.get(sym, 0.0) - sign * q * p - f
        if abs(pos) <= 1e-9 * max(q, 1e-12):  # flat again: the trip is closed
            out.append(cash.pop(sym))
            pos = 0.0
        held[sym] = pos
    return np.array(out, dtype=np.float64)


def underwater(ts: np.ndarray, equity: np.ndarray) -> tuple[float, int]:
    """Maximum drawdown (a fraction) and the longest time from a peak to its recovery (or to
    the end, if never recovered), in seconds."""
    if not equity.size:
        return _NAN, 0
    peak = np.maximum.accumulate(equity)
    dd = 1.0 - equity / peak
    at_peak = np.r_[True, equity[1:] >= peak[:-1]]
    peak_time = ts[np.maximum.accumulate(np.where(at_peak, np.arange(ts.size), 0))]
    under = (dd[:-1] > 0) | (dd[1:] > 0)  # a step that starts or ends below the peak
    spans = (ts[1:] - peak_time[:-1])[under]
    return float(dd.max()), int(spans.max() // 10**9) if spans.size else 0


def duration(seconds: float) -> str:
    """``3d 4h``, ``2h 5m``, ``40s`` — the two largest units.

    >>> duration(3 * 86400 + 4 * 3600 + 60), duration(7500), duration(40), duration(0)
    ('3d 4h', '2h 5m', '40s', '')
    """
    s = int(seconds)
    if s <= 0:
        return ""
    units = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    first = next(i for i, (n, _) in enumerate(units) if n)
    return " ".join(f"{n}{u}" for n, u in units[first:first + 2] if n)


def summary(data: ReportData, config: dict[str, Any]) -> dict[str, Any]:
    """The numbers of the summary table (see :mod:`ares_stream.report.html`)."""
    out: dict[str, Any] = {"period": data.run.interval,
                           "periods_per_year": YEAR_NS / data.run.bar_ns, "notes": []}
    out |= _trading(data, out["periods_per_year"])
    out |= _models(data.scores)
    out["drift_events"] = int(data.drifts.time.size)
    out["promotions"] = len(data.promotions)
    if out["has_equity"] and 0 < out["days"] < 30:
        out["notes"].append(f"Annualised figures (Sharpe, Sortino, Calmar) extrapolate a run of "
                            f"{duration(out['days'] * 86400) or 'under a second'}; below 30 days "
                            "Calmar uses the simple annual rate (return × 365 / days).")
    if not out["has_equity"]:
        out["notes"].append("This run had no broker: no equity, trades or fees to report.")
    elif not out["traded"]:
        out["notes"].append("No trades in this run: the signal never crossed its entry level.")
    return out


def _trading(data: ReportData, ppy: float) -> dict[str, Any]:
    eq, fills = data.equity, data.fills
    ts = eq.time.astype(np.int64)
    days = float(ts[-1] - ts[0]) / DAY_NS if ts.size else 0.0
    r = bar_returns(ts, eq.equity, data.run.bar_ns)
    mdd, under_s = underwater(ts, eq.equity)
    trips = round_trips(fills.symbol, fills.side, fills.qty, fills.price, fills.fee)
    total = float(eq.equity[-1] / eq.equity[0] - 1.0) if ts.size else _NAN
    annual = _annual_rate(total, days)
    notional = float(np.sum(fills.qty * fills.price))
    mean_eq = float(np.mean(eq.equity)) if ts.size else _NAN
    return {
        "has_equity": bool(ts.size), "traded": bool(fills.time.size),
        "start_equity": float(eq.equity[0]) if ts.size else _NAN,
        "end_equity": float(eq.equity[-1]) if ts.size else _NAN,
        "return": total, "annual_return": annual,
        "sharpe": vm.sharpe(r, ppy) if r.size else _NAN,
        "sortino": vm.sortino(r, ppy) if r.size else _NAN,
        "max_drawdown": mdd, "max_drawdown_duration": duration(under_s),
        "calmar": annual / mdd if mdd > 0 and not math.isnan(annual) else _NAN,
        "hit_rate": float(np.mean(trips > 0)) if trips.size else _NAN,
        "round_trips": int(trips.size),
        "turnover": notional / mean_eq / days if days > 0 and mean_eq > 0 else _NAN,
        "fees": float(np.sum(fills.fee)), "fills": int(fills.time.size), "days": days,
    }


def _annual_rate(total: float, days: float) -> float:
    """The annual return: compounded (CAGR) over 30 days or more, simple below — compounding
    a few hours' return to a year gives numbers no one can read (10²⁰ and more)."""
    if days <= 0 or math.isnan(total):
        return _NAN
    return vm.annualise(total, 365.0 / days) if days >= 30 else total * 365.0 / days


def _models(s: Scores) -> dict[str, Any]:
    """Log loss and accuracy of each model over the rows where it had a probability."""
    losses: dict[str, float] = {}
    hits: dict[str, float] = {}
    scored: dict[str, int] = {"constant": int(s.label.size)}
    for name in ("river", "booster", "ensemble"):
        p = getattr(s, name)
        ok = ~np.isnan(p)
        scored[name] = int(ok.sum())
        losses[name] = vm.log_loss(s.label[ok], p[ok]) if ok.any() else _NAN
        hits[name] = vm.accuracy(s.label[ok], p[ok]) if ok.any() else _NAN
    losses["constant"] = vm.log_loss(s.label, prequential_rate(s.label)) if s.label.size else _NAN
    return {"log_loss": losses, "accuracy": hits, "scored": scored, "labelled": int(s.label.size)}

