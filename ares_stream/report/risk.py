"""The numbers and the figure of the section "Risk": bootstrapped equity paths, daily VaR/ES of
the strategy and of buy-and-hold, and the Monte Carlo's distributions (:mod:`ares_stream.
validation.risk` does the statistics).

**Which returns.** With at least 30 daily returns (:data:`~.summary.MIN_DAYS`) the Monte Carlo
resamples the strategy's daily returns (UTC day ends), ×√365 for its Sharpe. A shorter run is
resampled on an intraday grid — the bar interval, coarsened so the run has at most
:data:`MAX_STEPS` periods — and its annualised Sharpe is marked indicative (intraday returns are
autocorrelated); under :data:`MIN_RETURNS` periods there is no Monte Carlo at all. Each path has
the run's length, so the realised equity is one draw among the fan's. VaR and ES are per day
only: the strategy's equity and each symbol's close, held, sampled at the UTC day's end, and
only with 30 daily returns or more.

>>> from ares_stream.report.model import Risk
>>> figure = fan_chart(Risk())
>>> figure.axes[0].texts[0].get_text()
'no Monte Carlo: no equity'
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from ares_stream.validation import risk

from .canvas import _GREY, _empty, _figure, _num, _time_axis
from .model import ReportData, Risk
from .summary import MIN_DAYS, duration

__all__ = ["MAX_STEPS", "MIN_RETURNS", "N_PATHS", "assess", "fan_chart", "grid_step"]

N_PATHS = 1000  # bootstrapped paths of the Monte Carlo
MIN_RETURNS = 200  # periods of an intraday grid needed for a Monte Carlo
MAX_STEPS = 2000  # periods of an intraday grid at most (the bar interval is coarsened to fit)


def assess(data: ReportData) -> Risk:
    """The section's numbers for ``data``: Monte Carlo on the strategy's returns, daily VaR/ES
    of the strategy and of each symbol held."""
    ts, equity = data.equity.time.astype(np.int64), data.equity.equity
    out = Risk()
    _tails(out, "strategy", ts, equity)
    for p in data.prices:
        _tails(out, f"{p.symbol} buy-and-hold", p.time.astype(np.int64), p.close)
    ok = np.isfinite(equity)
    if ok.sum() < 2:
        return out
    ts, equity = ts[ok], equity[ok]
    out.intraday = out.days.get("strategy", 0) < MIN_DAYS
    step = grid_step(ts, data.run.bar_ns) if out.intraday else risk.DAY_NS
    returns = risk.period_returns(ts, equity, step)
    out.basis = duration(step / 1e9) if out.intraday else "daily"
    if out.intraday and returns.size < MIN_RETURNS:
        out.why = f"{returns.size} returns of {out.basis}, fewer than {MIN_RETURNS}"
        return out
    out.time, out.realised = _grid(ts, equity, step, returns)
    out.monte_carlo = risk.monte_carlo(returns, 365 * risk.DAY_NS / step, n_paths=N_PATHS)
    return out


def grid_step(ts: np.ndarray, bar_ns: int) -> int:
    """The intraday grid: the bar interval, times the smallest factor that leaves at most
    :data:`MAX_STEPS` periods over ``ts``.

    >>> grid_step(np.array([0, 21_600 * 10**9]), 10 * 10**9)  # 6 h of 10 s bars
    20000000000
    """
    bars = int((ts[-1] - ts[0]) // bar_ns) + 1 if ts.size else 1
    return bar_ns * max(1, math.ceil(bars / MAX_STEPS))


def _tails(out: Risk, name: str, ts: np.ndarray, values: np.ndarray) -> None:
    daily = risk.daily_returns(ts, values)
    if daily.size:  # a series within one day has no daily return: no row at all
        out.days[name] = int(daily.size)
    if daily.size >= MIN_DAYS:
        out.tails[name] = risk.var_es(daily)


def _grid(ts: np.ndarray, equity: np.ndarray, step: int,
          returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """End times of the periods (the first period's end first, the last mark last) and the
    equity sampled there."""
    first = equity[ts // step == ts[0] // step][-1]
    k = np.arange(returns.size + 1, dtype=np.int64)
    ends = np.minimum((ts[0] // step + 1 + k) * step, ts[-1])
    realised = first * np.concatenate(([1.0], np.cumprod(1.0 + returns)))
    return ends.astype("datetime64[ns]"), realised


def fan_chart(r: Risk) -> Figure:
    """The Monte Carlo's fan: 5–95 % and 25–75 % bands and the median of the bootstrapped
    equity paths, with the realised equity over them."""
    mc = r.monte_carlo
    if mc is None or not r.time.size:
        return _empty(f"no Monte Carlo: {r.why}")
    fig = _figure(4.8)
    ax = fig.add_subplot()
    x, start = _num(r.time), float(r.realised[0])
    bands = mc.growth * start
    ax.fill_between(x, bands[0], bands[4], color="tab:blue", alpha=0.15, lw=0,
                    label="5–95 % of paths")
    ax.fill_between(x, bands[1], bands[3], color="tab:blue", alpha=0.3, lw=0,
                    label="25–75 % of paths")
    ax.plot(x, bands[2], color="tab:blue", lw=1.2, ls="--", label="median path")
    ax.plot(x, r.realised, color="black", lw=1.3, label="realised")
    ax.axhline(start, color=_GREY, ls=":", lw=1)
    note = " — intraday: indicative only" if r.intraday else ""
    ax.set_title(f"{mc.n_paths:,} bootstrapped paths of {mc.horizon:,} {r.basis} returns "
                 f"(circular blocks of {mc.block}){note}", loc="left")
    ax.set_ylabel("equity (quote)")
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax.legend(loc="upper left", fontsize=9)
    _time_axis(ax, (r.time[0], r.time[-1]))
    ax.set_xlabel("time (UTC)")
    return fig
