"""The drawing helpers every report figure shares: the Agg canvas (never pyplot), date axes,
vertical event lines, and the figure that says what is missing.

>>> _png(_empty("nothing yet"))[:4]
b'\\x89PNG'
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["DPI", "WIDTH", "Span"]

WIDTH, DPI = 12.0, 100  # inches, dots per inch: 1200 px wide
_GREY = "0.45"
Span = tuple[np.datetime64, np.datetime64] | None  # first and last event time of the report


def _figure(height: float) -> Figure:
    return Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    fig.clear()
    return buffer.getvalue()


def _num(t: np.ndarray) -> np.ndarray:
    """Matplotlib date numbers (days) of UTC ``datetime64`` times."""
    return np.asarray(mdates.date2num(np.asarray(t, dtype="datetime64[ns]")), dtype=np.float64)


def _message(ax: Axes, text: str, size: int = 13) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color=_GREY,
            fontsize=size)


def _empty(text: str, height: float = 2.5) -> Figure:
    fig = _figure(height)
    ax = fig.add_subplot()
    ax.set_xticks([])
    ax.set_yticks([])
    _message(ax, text)
    return fig


def _time_axis(ax: Axes, span: Span) -> None:
    """Concise UTC dates on the x axis (shared axes follow), limited to the report's span."""
    if span is None:  # nothing happened at any time: no dates to show
        ax.set_xticks([])
        return
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    lo, hi = _num(np.array(span))
    pad = max((hi - lo) * 0.01, 30 / 86_400)  # 1 %, or ±30 s around a single instant
    ax.set_xlim(lo - pad, hi + pad)


def _vlines(axes: list[Axes], t: np.ndarray, label: str, **style: Any) -> None:
    """Vertical lines at times ``t`` on every axis, in the first axis' legend once."""
    if len(t) == 0:
        return
    x = _num(t)
    for i, ax in enumerate(axes):
        ax.vlines(x, 0, 1, transform=ax.get_xaxis_transform(),
                  label=label if i == 0 else "_nolegend_", **style)
