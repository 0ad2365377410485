"""The report's summary numbers, from what the broker and the learners recorded.

**Sharpe, Sortino and volatility come from daily returns**: the marked equity sampled at each
UTC day's end (:func:`ares_stream.validation.risk.daily_returns`), annualised by √365 (crypto
trades every day), each with a 90 % block bootstrap interval (:func:`~ares_stream.validation.risk.
annualised`). Per-bar returns annualised by √(bars per year) assume the bars independent, and
intraday returns are not: bid-ask bounce, fees paid in bursts when the position turns, volatility
clusters. On a run of 1-minute bars the per-bar Sharpe read −10.9 where the same equity sampled
daily gave −5.6. The rule: **at least 30
daily returns** (:data:`MIN_DAYS`), or the ratios are n/a — a daily Sharpe from fewer days has
an interval several units wide, and the per-bar figure is then shown beside it, labelled
indicative only (``sharpe_bar``, ``sortino_bar``: simple returns on the bar grid, last mark of
each bar, ×√(bars per year), zero risk-free rate). Calmar is the annual return over the maximum
drawdown: compounded (CAGR) from 30 days, simple below (a few hours compounded to a year is a
number no one can read); either way a short run extrapolates, and the summary says so.

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
from ares_stream.validation import risk

if TYPE_CHECKING:
    from ares_stream.report.model import ReportData, Scores

__all__ = ["MIN_DAYS", "YEAR_NS", "bar_returns", "daily_ratios", "duration", "round_trips",
           "summary", "underwater"]

YEAR_NS = 365 * 86_400 * 10**9
DAY_NS = 86_400 * 10**9
MIN_DAYS = 30  # daily returns for a Sharpe, Sortino or daily VaR the report shows
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
        out["notes"].append(f"Annualised figures extrapolate a run of "
                            f"{duration(out['days'] * 86400) or 'under a second'}: Sharpe and "
                            f"Sortino need {MIN_DAYS} daily returns (the per-bar figures beside "
                            "them are indicative only), and below 30 days Calmar uses the simple "
                            "annual rate (return × 365 / days).")
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
        "sharpe_bar": vm.sharpe(r, ppy) if r.size else _NAN,
        "sortino_bar": vm.sortino(r, ppy) if r.size else _NAN,
        "max_drawdown": mdd, "max_drawdown_duration": duration(under_s),
        "calmar": annual / mdd if mdd > 0 and not math.isnan(annual) else _NAN,
        "hit_rate": float(np.mean(trips > 0)) if trips.size else _NAN,
        "round_trips": int(trips.size),
        "turnover": notional / mean_eq / days if days > 0 and mean_eq > 0 else _NAN,
        "fees": float(np.sum(fills.fee)), "fills": int(fills.time.size), "days": days,
    } | daily_ratios(ts, eq.equity)


def daily_ratios(ts: np.ndarray, equity: np.ndarray) -> dict[str, Any]:
    """Sharpe, Sortino and volatility from daily returns with their 90 % intervals, NaN with
    fewer than :data:`MIN_DAYS` daily returns; ``daily_returns`` counts them.

    >>> day = np.arange(10) * DAY_NS
    >>> out = daily_ratios(day, np.linspace(100.0, 110.0, 10))
    >>> out["daily_returns"], out["sharpe"]
    (9, nan)
    """
    daily = risk.daily_returns(ts, equity)
    out: dict[str, Any] = {"daily_returns": int(daily.size)}
    if daily.size < MIN_DAYS:
        return out | {k: _NAN for k in ("sharpe", "sortino", "volatility")} | {
            k: (_NAN, _NAN) for k in ("sharpe_ci", "sortino_ci", "volatility_ci")}
    r = risk.annualised(daily)
    return out | {"sharpe": r.sharpe, "sharpe_ci": r.sharpe_ci, "sortino": r.sortino,
                  "sortino_ci": r.sortino_ci, "volatility": r.volatility,
                  "volatility_ci": r.volatility_ci, "block": r.block}


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

