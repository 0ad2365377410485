"""The report's figures as PNG bytes: equity and drawdown, the bootstrapped equity paths (drawn by
:mod:`.risk`), price with position and fills, the learners' rolling scores, feed health, and
(drawn by :mod:`.uses`) booster importance across versions and the drift timeline.

Drawn on :class:`~matplotlib.figure.Figure` with the Agg canvas only, never pyplot: pyplot keeps a
global figure registry that is not thread-safe, and the daemon renders in a worker thread. Long
series go through :func:`decimate` (each bucket's min and max survive, so do spikes and drawdowns),
which keeps a day of 1-second bars well under a second per figure. Every figure draws with empty
data: the axes then carry a centred message saying what is missing.

>>> from ares_stream.report.model import Health, RunInfo, Scores, Drift, Equity, Fills, ReportData
>>> run = RunInfo(1, "replay", "finished", "state.db", "1s", 10**9, [], 0, None)
>>> empty = ReportData(run, Equity(), [], Fills(), Scores(), Drift(), [], [], Health(), {})
>>> {k: v[:4] for k, v in render(empty).items()}  # doctest: +NORMALIZE_WHITESPACE
{'equity': b'\\x89PNG', 'fan': b'\\x89PNG', 'price': b'\\x89PNG', 'learners': b'\\x89PNG',
 'feed_health': b'\\x89PNG', 'importance': b'\\x89PNG', 'coefficients': b'\\x89PNG',
 'drift_timeline': b'\\x89PNG'}
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ares_stream.learners.scores import log_losses, prequential_rate

from . import risk, uses
from .canvas import _GREY, Span, _empty, _figure, _message, _num, _png, _time_axis, _vlines
from .model import Fills, Health, Prices, ReportData, Scores

__all__ = ["MAX_FILLS", "MAX_POINTS", "MAX_SYMBOLS", "decimate", "render", "rolling_mean",
           "time_span"]

MAX_POINTS = 4000  # points per drawn line after decimation
MAX_SYMBOLS = 6  # price panels
MAX_FILLS = 2000  # fill markers per symbol
# the ensemble is a broad translucent band under the others: it often equals one of them
_MODELS = (("river", {"color": "tab:blue", "lw": 1.0, "zorder": 3}),
           ("booster", {"color": "tab:orange", "lw": 1.0, "zorder": 3}),
           ("ensemble", {"color": "black", "lw": 2.6, "alpha": 0.35, "zorder": 2}))
_FEED_LINES = (("gap", "gap incidents", False, "tab:red"),  # kind, label, sum counts?, colour
               ("disconnected", "reconnects", False, "tab:purple"),
               ("rejected", "rejected frames", True, "tab:brown"))
_ROUTINE = {"gap", "disconnected", "rejected", "connected"}  # not in the strip of other kinds


def render(data: ReportData, *, rolling: int = 500) -> dict[str, bytes]:
    """PNG bytes of the ``equity``, ``fan`` (:mod:`.risk`), ``price``, ``learners`` and
    ``feed_health`` figures, and of ``importance``, ``coefficients`` and ``drift_timeline``
    (:mod:`.uses`)."""
    span = time_span(data)
    feed_span, own_clock = health_span(data.health, span)
    return {"equity": _png(_equity(data, span)), "fan": _png(risk.fan_chart(data.risk)),
            "price": _png(_price(data, span)),
            "learners": _png(_learners(data, span, rolling)),
            "feed_health": _png(_feed_health(data.health, feed_span, own_clock)),
            "importance": _png(uses.importance_heatmap(data)),
            "coefficients": _png(uses.coefficient_lines(data, span)),
            "drift_timeline": _png(uses.drift_timeline(data, span))}


def decimate(t: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS,
             ) -> tuple[np.ndarray, np.ndarray]:
    """At most ~``max_points`` of a line, in order: the min and max of each of ``max_points / 2``
    buckets, and both ends. NaN is skipped unless a whole bucket is NaN (the gap stays a gap).

    >>> t = np.arange(100_000.0)
    >>> y = np.sin(t / 5000); y[31_337] = 9.0; y[77_777] = -9.0
    >>> td, yd = decimate(t, y, max_points=1000)
    >>> len(td) <= 1002, float(yd.max()), float(yd.min()), bool(np.all(np.diff(td) > 0))
    (True, 9.0, -9.0, True)
    """
    n = len(y)
    if n <= max_points:
        return t, y
    size = -(-n // max(1, max_points // 2))
    rows = -(-n // size)
    flat = np.full(rows * size, np.nan)
    flat[:n] = y
    grid = flat.reshape(rows, size)
    nan = np.isnan(grid)
    start = np.arange(rows) * size
    lo = start + np.where(nan, np.inf, grid).argmin(axis=1)
    hi = start + np.where(nan, -np.inf, grid).argmax(axis=1)
    keep = np.unique(np.concatenate(([0, n - 1], lo, hi)))
    return t[keep], y[keep]


def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """The mean of the last ``window`` values at each row (of all so far at the start), O(n).

    >>> rolling_mean(np.array([1.0, 2.0, 3.0, 4.0]), 2).tolist()
    [1.0, 1.5, 2.5, 3.5]
    """
    sums = np.concatenate(([0.0], np.cumsum(x, dtype=np.float64)))
    end = np.arange(1, len(x) + 1)
    begin = np.maximum(end - max(1, window), 0)
    return (sums[end] - sums[begin]) / np.maximum(end - begin, 1)


def time_span(data: ReportData) -> Span:
    """The first and last event time anywhere in the report (None: no time at all). Feed
    incidents are on receive time and left out (see :func:`health_span`)."""
    arrays = [data.equity.time, data.fills.time, data.scores.time, data.drifts.time,
              np.array([v.time for v in data.promotions], "datetime64[ns]")]
    for p in data.prices:
        arrays += [p.time, p.position_time]
    times = np.concatenate([np.asarray(a, dtype="datetime64[ns]") for a in arrays])
    times = times[~np.isnat(times)]
    return (times.min(), times.max()) if times.size else None


def health_span(h: Health, span: Span) -> tuple[Span, bool]:
    """The feed figure's time range, and whether it is the incidents' own clock.

    Incidents carry their receive time. Live, that is the event time give or take latency, and
    the figure shares the others' range; a simulated or sped-up feed stamps connection notices
    with the wall clock, far from its event times — then the figure keeps its own range rather
    than squashing every other figure into a corner.

    >>> t = np.array(["2025-01-01T01", "2025-01-01T02"], dtype="datetime64[ns]")
    >>> day = (np.datetime64("2025-01-01T00", "ns"), np.datetime64("2025-01-02T00", "ns"))
    >>> health_span(Health(t, np.array(["gap", "gap"]), np.ones(2, dtype=np.int64)), day)[1]
    False
    >>> later = Health(t + np.timedelta64(700, "D"), np.array(["gap", "gap"]), np.ones(2, int))
    >>> health_span(later, day)[1]
    True
    """
    t = h.time[~np.isnat(h.time)] if h.time.size else h.time
    if not t.size:
        return span, False
    if span is not None:
        slack = max((span[1] - span[0]) / 20, np.timedelta64(60, "s"))
        if t.min() >= span[0] - slack and t.max() <= span[1] + slack:
            return span, False
    return (t.min(), t.max()), span is not None


# -- equity -----------------------------------------------------------------------------------

def _equity(data: ReportData, span: Span) -> Figure:
    eq = data.equity
    if not np.isfinite(eq.equity).any():
        broker = data.summary.get("has_equity", True)
        return _empty("no equity: this run had no broker" if not broker
                      else "no equity marked in this period")
    fig = _figure(5.5)
    top, low = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    x = _num(eq.time)
    start = _start_equity(data)
    top.plot(*decimate(x, eq.equity), color="tab:blue", lw=1.2, label="equity")
    top.axhline(start, color=_GREY, ls="--", lw=1, label=f"start {start:,.2f}")
    top.ticklabel_format(axis="y", style="plain", useOffset=False)
    top.set_ylabel("equity (quote)")
    top.legend(loc="upper left", fontsize=9)
    top.set_title("Equity and drawdown", loc="left")
    _drawdown(low, x, eq.drawdown)
    _time_axis(top, span)
    low.set_xlabel("time (UTC)")
    return fig


def _start_equity(data: ReportData) -> float:
    """The broker's start equity, or the first marked equity if the summary lacks it."""
    start = data.summary.get("start_equity")
    if isinstance(start, int | float) and np.isfinite(start):
        return float(start)
    return float(data.equity.equity[np.isfinite(data.equity.equity)][0])


def _drawdown(ax: Axes, x: np.ndarray, drawdown: np.ndarray) -> None:
    xd, dd = decimate(x, -100.0 * np.asarray(drawdown, dtype=np.float64))
    ax.fill_between(xd, dd, 0, color="tab:red", alpha=0.35, lw=0)
    ax.plot(xd, dd, color="tab:red", lw=0.8)
    if np.isfinite(dd).any():
        worst = int(np.nanargmin(dd))
        ax.plot(xd[worst], dd[worst], "v", color="darkred", label=f"max {dd[worst]:.2f} %")
        ax.legend(loc="lower left", fontsize=9)
    ax.set_ylabel("drawdown %")


# -- price ------------------------------------------------------------------------------------

def _price(data: ReportData, span: Span) -> Figure:
    shown = data.prices[:MAX_SYMBOLS]
    if not shown:
        return _empty("no prices in this run")
    fig = _figure(3.3 * len(shown) + 0.4)
    grid = fig.add_gridspec(2 * len(shown), 1, height_ratios=[3, 1] * len(shown))
    first: Axes | None = None
    for i, prices in enumerate(shown):
        ax = fig.add_subplot(grid[2 * i], sharex=first)
        held = fig.add_subplot(grid[2 * i + 1], sharex=ax)
        first = first or ax
        _price_panel(ax, prices, data.fills)
        _position_panel(held, prices, span)
        held.tick_params(labelbottom=i == len(shown) - 1)
    assert first is not None
    _time_axis(first, span)
    held.set_xlabel("time (UTC)")
    more = len(data.prices) - len(shown)
    if more:
        fig.suptitle(f"+{more} more symbols not shown", x=0.99, ha="right", fontsize=10,
                     color=_GREY)
    return fig


def _price_panel(ax: Axes, prices: Prices, fills: Fills) -> None:
    ax.plot(*decimate(_num(prices.time), prices.close), color="0.25", lw=1, label="close")
    mine = np.flatnonzero(fills.symbol == prices.symbol)
    total, sides = len(mine), fills.side[mine]
    if total > MAX_FILLS:  # evenly, in time order
        mine = mine[np.unique(np.linspace(0, total - 1, MAX_FILLS).astype(np.int64))]
    size = 6.0 if len(mine) <= 200 else 4.0 if len(mine) <= 1000 else 3.0  # dense: smaller
    for side, marker, colour in (("BUY", "^", "tab:green"), ("SELL", "v", "tab:red")):
        at = mine[fills.side[mine] == side]
        if len(at):
            ax.plot(_num(fills.time[at]), fills.price[at], marker, color=colour, ms=size,
                    ls="none", mec="black", mew=0.3, alpha=0.85,
                    label=f"{side} ({int((sides == side).sum()):,})")
    shown = f", {len(mine):,} shown" if total > len(mine) else ""
    ax.set_title(f"{prices.symbol}: {total:,} fills{shown}" if total else
                 f"{prices.symbol}: no trades in this run", loc="left", fontsize=11)
    ax.set_ylabel("price")
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    if not np.isfinite(prices.close).any():
        _message(ax, "no closes for this symbol", 11)
    ax.legend(loc="upper left", fontsize=8, ncols=3)
    ax.tick_params(labelbottom=False)


def _position_panel(ax: Axes, prices: Prices, span: Span) -> None:
    ax.set_ylabel("held", fontsize=9)
    if len(prices.position) == 0:
        _message(ax, "no position held", 9)
        return
    x, held = _num(prices.position_time), np.asarray(prices.position, dtype=np.float64)
    if span is not None:  # the last position holds until the end of the report
        x, held = np.append(x, _num(np.array([span[1]]))), np.append(held, held[-1])
    ax.fill_between(x, held, 0, step="post", color="tab:green", alpha=0.3, lw=0)
    ax.step(x, held, where="post", color="tab:green", lw=0.8)


# -- learners ---------------------------------------------------------------------------------

def _learners(data: ReportData, span: Span, window: int) -> Figure:
    sc = data.scores
    labelled = np.isfinite(sc.label)
    if not labelled.any():
        return _empty("no labelled predictions in this run")
    fig = _figure(7.0)
    loss_ax, acc_ax = fig.subplots(2, 1, sharex=True)
    for name, style in _MODELS:
        curves = _model_curves(sc, name, window)
        if curves is not None:
            _draw_model(loss_ax, acc_ax, name, style, *curves)
    t, loss, mean = _baseline(sc.time[labelled], sc.label[labelled], window)
    loss_ax.plot(*decimate(t, loss), color=_GREY, ls=":", lw=1.5,
                 label=f"baseline: predict the running label frequency (whole run: {mean:.4f})")
    acc_ax.axhline(0.5, color=_GREY, ls=":", lw=1)
    _vlines([loss_ax, acc_ax], data.drifts.time, "drift detected", colors="tab:red",
            linestyles="--", lw=0.9)
    _vlines([loss_ax, acc_ax], np.array([v.time for v in data.promotions], "datetime64[ns]"),
            "model promoted", colors="tab:green", lw=1.4)
    loss_ax.set_title(f"Rolling over the last {window:,} labelled predictions", loc="left")
    loss_ax.set_ylabel("log loss (lower is better)")
    acc_ax.set_ylabel("accuracy")
    acc_ax.set_xlabel("time (UTC)")
    fig.legend(*loss_ax.get_legend_handles_labels(), loc="outside upper center", ncols=3,
               fontsize=9, frameon=False)
    _time_axis(loss_ax, span)
    return fig


_Curves = tuple[np.ndarray, np.ndarray, np.ndarray, float, float]


def _model_curves(sc: Scores, name: str, window: int) -> _Curves | None:
    """Time, rolling log loss, rolling accuracy over the rows the model scored, and the means."""
    p = np.asarray(getattr(sc, name), dtype=np.float64)
    ok = np.isfinite(p) & np.isfinite(sc.label)
    if not ok.any():
        return None
    y, q = sc.label[ok], p[ok]
    loss = log_losses(y, q)
    hit = ((q > 0.5) == (y == 1)).astype(np.float64)
    first = _warmup(len(y), window)
    return (_num(sc.time[ok])[first:], rolling_mean(loss, window)[first:],
            rolling_mean(hit, window)[first:], float(loss.mean()), float(hit.mean()))


def _warmup(n: int, window: int) -> int:
    """The first row drawn: a full window, or half the rows of a shorter run."""
    return min(window, (n + 1) // 2) - 1


def _draw_model(loss_ax: Axes, acc_ax: Axes, name: str, style: dict[str, Any], x: np.ndarray,
                loss: np.ndarray, hit: np.ndarray, mean_loss: float, mean_hit: float) -> None:
    marker = "o" if len(x) == 1 else None
    loss_ax.plot(*decimate(x, loss), marker=marker, **style,
                 label=f"{name} (whole run: log loss {mean_loss:.4f}, accuracy {mean_hit:.1%})")
    acc_ax.plot(*decimate(x, hit), marker=marker, **style)


def _baseline(t: np.ndarray, y: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Rolling log loss of predicting the label frequency seen so far — the summary's constant
    baseline (:func:`~ares_stream.learners.scores.prequential_rate`)."""
    loss = log_losses(y, prequential_rate(y))
    first = _warmup(len(y), window)
    return _num(t)[first:], rolling_mean(loss, window)[first:], float(loss.mean())


# -- feed health ------------------------------------------------------------------------------

def _feed_health(h: Health, span: Span, own_clock: bool = False) -> Figure:
    others = sorted({str(k) for k in h.kind} - _ROUTINE)
    fig = _figure(4.8 if others else 3.6)
    if others:
        top, strip = fig.subplots(2, 1, sharex=True,
                                  gridspec_kw={"height_ratios": [3, 0.4 + 0.35 * len(others)]})
        _other_kinds(strip, h, others)
    else:
        top = strip = fig.add_subplot()
    drawn = [_cumulative(top, h, *line, span) for line in _FEED_LINES]
    if any(drawn):
        top.legend(loc="upper left", fontsize=9)
        top.yaxis.set_major_locator(MaxNLocator(integer=True))
        top.set_ylim(bottom=0)
    else:
        top.set_yticks([])
        _message(top, "no gaps, reconnects or rejected frames")
    top.set_ylabel("cumulative count")
    top.set_title("Feed incidents", loc="left")
    strip.set_xlabel("receive time (UTC): the feed's clock, not the event time of the other "
                     "figures (a simulated or sped-up feed)" if own_clock else "time (UTC)")
    _time_axis(top, span)
    return fig


def _cumulative(ax: Axes, h: Health, kind: str, label: str, summed: bool, colour: str,
                span: Span) -> bool:
    """A step line of the running total of one kind (rows, or their counts); False if none."""
    at = h.kind == kind
    if not at.any():
        return False
    x, n = _num(h.time[at]), np.cumsum(h.count[at] if summed else np.ones(int(at.sum())))
    if kind == "gap":
        label = f"{label} ({int(h.count[at].sum()):,} ids/bars missing)"
    if span is not None:  # flat from the start of the report, held until its end
        x = np.concatenate((_num(np.array([span[0]])), x, _num(np.array([span[1]]))))
        n = np.concatenate(([0], n, n[-1:]))
    ax.step(x, n, where="post", color=colour, lw=1.4, label=f"{label}: {int(n[-1]):,}")
    return True


def _other_kinds(ax: Axes, h: Health, kinds: list[str]) -> None:
    for row, kind in enumerate(kinds):
        at = h.kind == kind
        ax.plot(_num(h.time[at]), np.full(int(at.sum()), row), "|", ms=9, mew=1.5,
                color=f"C{row % 10}")
    ax.set_yticks(range(len(kinds)), [f"{k} ({int((h.kind == k).sum())})" for k in kinds],
                  fontsize=8)
    ax.set_ylim(-0.7, len(kinds) - 0.3)
