"""The figures of the section "What the models use": booster importance across versions, and the
features that drifted beside the loss drifts.

Both draw on the Agg canvas of :mod:`.figures` (no pyplot), and with empty data carry a centred
message instead.

>>> from ares_stream.report.model import Uses
>>> top_features(Uses().importance, "BTCUSDT")
[]
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .canvas import Span, _empty, _figure, _num, _time_axis, _vlines
from .model import Importance, ReportData

__all__ = ["TOP_COEFFICIENTS", "TOP_FEATURES", "coefficient_lines", "drift_timeline",
           "importance_heatmap", "top_features"]

TOP_FEATURES = 8  # features of a symbol's heatmap: the largest mean |SHAP| share over versions
MAX_VERSIONS = 40  # newest versions per heatmap
TOP_COEFFICIENTS = 6  # lines per symbol: the largest |coefficient| at any reading


def top_features(imp: Importance, symbol: str, top: int = TOP_FEATURES) -> list[str]:
    """The ``top`` features of ``symbol``'s boosters by mean |SHAP| share over their versions."""
    mine = (imp.symbol == symbol) & np.isfinite(imp.share)
    names, group = np.unique(imp.feature[mine].astype(str), return_inverse=True)
    if not names.size:
        return []
    mean = np.bincount(group, weights=imp.share[mine]) / np.bincount(group)
    order = np.lexsort((names, -mean))  # largest share first, ties by name
    return [str(names[i]) for i in order[:top]]


def importance_heatmap(data: ReportData) -> Figure:
    """Per symbol, a heatmap of the top features' mean |SHAP| share (rows) by booster version."""
    imp = data.uses.importance
    symbols = sorted({str(s) for s in imp.symbol[np.isfinite(imp.share)]})
    if not symbols:
        return _empty("No booster importance stored yet")
    fig = _figure(1.2 + 2.6 * len(symbols))
    for i, symbol in enumerate(symbols):
        ax = fig.add_subplot(len(symbols), 1, i + 1)
        features = top_features(imp, symbol)
        versions = np.unique(imp.version[imp.symbol == symbol])[-MAX_VERSIONS:]
        grid = _grid(imp, symbol, features, versions)
        shown = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0,
                          vmax=max(float(np.nanmax(grid)), 1e-9), interpolation="nearest")
        ax.set_yticks(range(len(features)), features)
        ax.set_xticks(range(len(versions)), [f"v{v}" for v in versions], fontsize=8)
        ax.set_title(f"{symbol}: mean |SHAP| share per booster version (top {len(features)})",
                     fontsize=10, loc="left")
        fig.colorbar(shown, ax=ax, label="share", fraction=0.03)
    return fig


def _grid(imp: Importance, symbol: str, features: list[str], versions: np.ndarray) -> np.ndarray:
    """Rows: ``features``; columns: ``versions``; NaN where a version did not measure one."""
    grid = np.full((len(features), len(versions)), np.nan)
    row = {f: i for i, f in enumerate(features)}
    col = {int(v): j for j, v in enumerate(versions)}
    for s, v, f, share in zip(imp.symbol, imp.version, imp.feature, imp.share, strict=True):
        if s == symbol and f in row and int(v) in col:
            grid[row[f], col[int(v)]] = share
    return grid


def coefficient_lines(data: ReportData, span: Span) -> Figure:
    """Per symbol, the online learner's coefficients on standardized inputs over time (the
    ``TOP_COEFFICIENTS`` features with the largest |coefficient| at any reading), with the loss
    drifts as vertical lines."""
    c = data.uses.coefficients
    symbols = sorted({str(s) for s in c.symbol})
    if not symbols:
        return _empty("No online learner coefficients stored yet (a linear learner records "
                      "them every drift.feature_every)")
    fig = _figure(1.2 + 2.6 * len(symbols))
    axes = []
    for i, symbol in enumerate(symbols):
        ax = fig.add_subplot(len(symbols), 1, i + 1)
        axes.append(ax)
        mine = c.symbol == symbol
        names, group = np.unique(c.feature[mine].astype(str), return_inverse=True)
        peak = np.zeros(len(names))
        np.maximum.at(peak, group, np.abs(np.nan_to_num(c.coef[mine])))
        for j in np.lexsort((names, -peak))[:TOP_COEFFICIENTS]:
            at = group == j
            ax.plot(_num(c.time[mine][at]), c.coef[mine][at], lw=1.2, label=str(names[j]))
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_ylabel("coefficient")
        ax.set_title(f"{symbol}: online learner coefficients (standardized inputs)",
                     fontsize=10, loc="left")
        ax.legend(loc="upper left", fontsize=8, ncol=3)
        _time_axis(ax, span)
    dr = data.drifts
    loss = dr.detector != "features" if dr.detector.size == dr.time.size else np.ones(
        dr.time.size, dtype=bool)
    _vlines(axes, dr.time[loss], "loss drift (ADWIN)", colors="tab:red", linestyles="--", lw=1.0)
    return fig


def drift_timeline(data: ReportData, span: Span) -> Figure:
    """Drifted features as dots on a time line (one row per symbol and feature), with the loss
    drifts (ADWIN) and the feature drift events as vertical lines."""
    fd, dr = data.uses.feature_drift, data.drifts
    if not fd.time.size and not dr.time.size:
        return _empty("No feature or loss drift yet")
    several = len(set(fd.symbol) | set(dr.symbol)) > 1
    labels = [f"{s} {f}" if several else str(f) for s, f in zip(fd.symbol, fd.feature,
                                                                  strict=True)]
    rows = sorted(set(labels))
    fig = _figure(1.6 + 0.28 * max(len(rows), 3))
    ax = fig.add_subplot()
    if rows:
        y = np.array([rows.index(label) for label in labels])
        ax.scatter(_num(fd.time), y, s=28, color="tab:purple", zorder=3,
                   label="feature drifted (PSI past threshold)")
        ax.set_yticks(range(len(rows)), rows)
        ax.set_ylim(-0.7, len(rows) - 0.3)
    else:
        ax.set_yticks([])
    loss = dr.detector != "features" if dr.detector.size == dr.time.size else np.ones(
        dr.time.size, dtype=bool)
    _vlines([ax], dr.time[loss], "loss drift (ADWIN)", colors="tab:red", linestyles="--", lw=1.2)
    _vlines([ax], dr.time[~loss], "feature drift event", colors="tab:purple", linestyles=":",
            lw=1.2)
    _time_axis(ax, span)
    ax.legend(loc="upper left", fontsize=8)
    return fig
