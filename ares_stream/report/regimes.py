"""The risk section's regime table and stress results.

**Regimes**: per symbol, every predicted bar labelled causally (volatility tercile x trend,
:mod:`ares_stream.validation.regimes`) from the run's own closes; per regime and at transitions,
the log loss and hit rate of the traded probability on the labelled bars, and the account's
return over those bars (the whole account: with several symbols it is shared).

**Stress results**: ``ares-stream stress`` keeps its last run beside the database, in
``<db>.stress.json`` (plain JSON: read, never executed); the report shows it as it was.

>>> from ares_stream.report.model import Equity, ReportData, RunInfo, Scores, Drift, Fills, Health
>>> run = RunInfo(1, "replay", "finished", "/nonexistent/x.db", "1m", 60 * 10**9, [], 0, None)
>>> empty = ReportData(run, Equity(), [], Fills(), Scores(), Drift(), [], [], Health(), {})
>>> by_regime(empty), stress_results(Path(run.db_path))
({}, {})
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ares_stream.validation import regimes

from .model import ReportData

__all__ = ["STRESS_SUFFIX", "by_regime", "save_stress", "stress_results"]

STRESS_SUFFIX = ".stress.json"


def by_regime(data: ReportData) -> dict[str, list[regimes.RegimeRow]]:
    """Per symbol with labelled predictions, its regime rows (empty when none)."""
    out = {}
    for prices in data.prices:
        rows = _symbol_rows(data, prices.symbol, prices.time, prices.close)
        if rows:
            out[prices.symbol] = rows
    return out


def _symbol_rows(data: ReportData, symbol: str, t: np.ndarray,
                 close: np.ndarray) -> list[regimes.RegimeRow]:
    sc = data.scores
    mine = sc.symbol == symbol if sc.symbol.size == sc.time.size else np.ones(sc.time.size, bool)
    if not mine.any() or t.size < 2:
        return []
    at = np.searchsorted(t, sc.time[mine])
    ok = (at < t.size) & (t[np.minimum(at, t.size - 1)] == sc.time[mine])
    y, p = np.full(t.size, np.nan), np.full(t.size, np.nan)
    y[at[ok]], p[at[ok]] = sc.label[mine][ok], sc.ensemble[mine][ok]
    p[np.isnan(y)] = np.nan
    return regimes.table(regimes.label(close), y, p, _account_returns(data, t))


def _account_returns(data: ReportData, t: np.ndarray) -> np.ndarray:
    """The account's simple return over each bar ending at ``t`` (0 before the first mark)."""
    eq = data.equity
    if eq.time.size == 0:
        return np.zeros(t.size)
    i = np.searchsorted(eq.time, t, side="right") - 1
    level = np.where(i >= 0, eq.equity[np.maximum(i, 0)], np.nan)
    out = np.zeros(t.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[1:] = level[1:] / level[:-1] - 1.0
    return np.nan_to_num(out)


def stress_results(db_path: Path) -> dict[str, Any]:
    """The last stress run kept beside ``db_path`` ({} when none or unreadable)."""
    path = Path(f"{db_path}{STRESS_SUFFIX}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and isinstance(data.get("scenarios"), list) else {}


def save_stress(db_path: Path, result: dict[str, Any]) -> None:
    """Keep a stress run beside the database (written whole, then renamed into place)."""
    path = Path(f"{db_path}{STRESS_SUFFIX}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
