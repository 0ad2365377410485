"""Synthetic :class:`ReportData`: a realistic run of ``n`` bars, and an empty one."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from ares_stream.report.model import (
    Coefficients,
    Drift,
    Equity,
    FeatureDrift,
    Fills,
    Health,
    Importance,
    Prices,
    ReportData,
    RunInfo,
    Scores,
    Uses,
    Validation,
)
from ares_stream.report.risk import assess

START = np.datetime64("2024-05-01T00:00:00", "ns")
SECOND = np.timedelta64(1_000_000_000, "ns")


def run_info(symbols: list[str]) -> RunInfo:
    """A finished replay of 1-second bars."""
    return RunInfo(7, "replay", "finished", "/tmp/state/replay.db", "1s", 10**9, symbols,
                   1_714_521_600 * 10**9, 1_714_608_000 * 10**9)


def make_data(n: int = 3000, symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"),
              seed: int = 0) -> ReportData:
    """A run of ``n`` 1-second bars per symbol with trades, scores, drifts and incidents."""
    rng = np.random.default_rng(seed)
    t = START + np.arange(n) * SECOND
    prices = [_prices(rng, t, s, 60_000.0 / (i + 1)) for i, s in enumerate(symbols)]
    fills = _fills(rng, prices)
    for p in prices:
        _positions(p, fills)
    equity = _equity(rng, t, fills)
    scores = _scores(rng, t)
    drifts = Drift(t[[n // 3, 2 * n // 3]], np.array(list(symbols[:1]) * 2, dtype=object),
                   np.array([0.5, 0.6]), np.array([0.6, 0.45]))
    validations = [_validation(t[n // 4], symbols[0], False, "gain -0.0012 < 0.001", -0.0012),
                   _validation(t[n // 2], symbols[0], True, "promoted"),
                   _validation(t[n // 2], symbols[-1], False, "<script>alert(1)</script>", None)]
    health = _health(rng, t)
    data = ReportData(run_info(list(symbols)), equity, prices, fills, scores, drifts,
                      [v for v in validations if v.promoted], validations, health, {},
                      _uses(rng, t, symbols, fills))
    data.summary = summary(n, len(fills.time))
    data.risk = assess(data)
    return data


def long_data(days: int = 90, seed: int = 0) -> ReportData:
    """``days`` of hourly bars of BTCUSDT from 07:00 UTC: a strategy's equity (autocorrelated
    hourly returns, a day a week without a mark) and the symbol's closes, summarised as
    :func:`ares_stream.report.data.load` does, with its risk section."""
    from ares_stream.report import risk
    from ares_stream.report import summary as metrics

    rng = np.random.default_rng(seed)
    t = START + np.timedelta64(7, "h") + np.arange(days * 24) * np.timedelta64(1, "h")
    shocks = rng.standard_t(4, t.size) * 4e-3
    equity = 10_000.0 * np.cumprod(1.0 + shocks + 0.3 * np.r_[0.0, shocks[:-1]])
    marked = (t - t[0]) // np.timedelta64(1, "D") % 7 != 3
    close = 60_000.0 * np.exp(np.cumsum(rng.normal(0, 6e-3, t.size)))
    eq = Equity(t[marked], equity[marked], 1.0 - equity[marked]
                / np.maximum.accumulate(equity[marked]), np.zeros(int(marked.sum())))
    info = RunInfo(9, "replay", "finished", "/tmp/long.db", "1h", 3600 * 10**9, ["BTCUSDT"],
                   0, 1)
    data = ReportData(info, eq, [Prices("BTCUSDT", t, close)], Fills(), Scores(), Drift(), [],
                      [], Health(), {})
    data.summary = metrics.summary(data, {})
    data.risk = risk.assess(data)
    return data


def empty_data() -> ReportData:
    """A run with nothing in it: no broker, no bars, no scores, no incidents."""
    data = ReportData(run_info([]), Equity(), [], Fills(), Scores(), Drift(), [], [], Health(),
                      {})
    nan = math.nan
    data.summary = summary(0, 0) | {
        "traded": False, "has_equity": False, "start_equity": nan, "end_equity": nan,
        "return": nan, "max_drawdown": nan, "turnover": nan, "fees": 0.0, "labelled": 0,
        "log_loss": dict.fromkeys(("river", "booster", "ensemble", "constant"), nan),
        "accuracy": dict.fromkeys(("river", "booster", "ensemble"), nan), "drift_events": 0,
        "promotions": 0, "notes": []}
    return data


def summary(n: int, fills: int) -> dict[str, Any]:
    """What ``metrics.summary`` returns, with plausible values (NaN where undefined)."""
    nan = math.nan
    return {"start_equity": 10_000.0, "end_equity": 10_123.45, "return": 0.012345,
            "sharpe": 1.234 if fills else nan, "sortino": 2.1 if fills else nan,
            "sharpe_ci": (0.2, 2.3) if fills else (nan, nan),
            "sortino_ci": (0.4, 3.9) if fills else (nan, nan), "volatility": 0.45,
            "volatility_ci": (0.38, 0.52), "daily_returns": 90 if fills else 0,
            "sharpe_bar": 2.5 if fills else nan, "sortino_bar": 4.0 if fills else nan,
            "max_drawdown": 0.0321, "max_drawdown_duration": "3h 20m" if fills else "",
            "calmar": math.inf if fills else nan, "hit_rate": 0.55 if fills else nan,
            "round_trips": fills // 2, "turnover": 3.2, "fees": 1234.5678, "fills": fills,
            "period": "1s", "periods_per_year": 31_536_000.0, "days": n / 86_400,
            "traded": fills > 0, "has_equity": True,
            "log_loss": {"river": 0.6912, "booster": nan, "ensemble": 0.6901, "constant": 0.6931},
            "accuracy": {"river": 0.52, "booster": nan, "ensemble": 0.53},
            "labelled": n, "drift_events": 2, "promotions": 1,
            "notes": ["Annualised figures extrapolate a run of 0.03 days <short>."]}


def _prices(rng: np.random.Generator, t: np.ndarray, symbol: str, level: float) -> Prices:
    close = level * np.exp(np.cumsum(rng.normal(0, 2e-4, len(t))))
    return Prices(symbol, t, close)


def _fills(rng: np.random.Generator, prices: list[Prices]) -> Fills:
    rows = []
    for p in prices:
        at = np.sort(rng.choice(len(p.time), size=min(len(p.time), max(1, len(p.time) // 30)),
                                replace=False))
        for k, i in enumerate(at):
            rows.append((p.time[i], p.symbol, "BUY" if k % 2 == 0 else "SELL", p.close[i]))
    rows.sort(key=lambda r: r[0])
    qty = np.full(len(rows), 0.01)
    price = np.array([r[3] for r in rows], dtype=np.float64)
    return Fills(np.array([r[0] for r in rows], dtype="datetime64[ns]"),
                 np.array([r[1] for r in rows], dtype=object),
                 np.array([r[2] for r in rows], dtype=object), qty, price, price * qty * 1e-3)


def _positions(p: Prices, fills: Fills) -> None:
    mine = fills.symbol == p.symbol
    p.position_time = fills.time[mine]
    p.position = np.cumsum(np.where(fills.side[mine] == "BUY", 1.0, -1.0) * fills.qty[mine])


def _equity(rng: np.random.Generator, t: np.ndarray, fills: Fills) -> Equity:
    equity = 10_000.0 * np.exp(np.cumsum(rng.normal(1e-6, 1e-4, len(t))))
    peak = np.maximum.accumulate(equity) if len(t) else equity
    fees = np.cumsum(np.isin(t, fills.time) * 0.6)
    return Equity(t, equity, 1.0 - equity / peak, fees)


def _scores(rng: np.random.Generator, t: np.ndarray) -> Scores:
    label = (rng.random(len(t)) < 0.5).astype(np.float64)
    river = np.clip(0.5 + 0.1 * (label - 0.5) + rng.normal(0, 0.1, len(t)), 0.01, 0.99)
    booster = np.clip(0.5 + 0.15 * (label - 0.5) + rng.normal(0, 0.1, len(t)), 0.01, 0.99)
    booster[: len(t) // 3] = np.nan  # no champion booster yet
    ensemble = np.where(np.isnan(booster), river, (river + booster) / 2)
    return Scores(t, label, river, booster, ensemble)


FEATURES = ("flow_imb", "ret_1", "vol_ewma", "spread_bps", "macd", "rsi_14", "book_imb",
            "hl_range", "vwap_dev", "<b>odd</b>")


def _uses(rng: np.random.Generator, t: np.ndarray, symbols: tuple[str, ...],
          fills: Fills) -> Uses:
    """Five booster versions per symbol, two feature drift checks, reasons for every fill."""
    rows = [(s, v, 10 * i + v, f, rng.random()) for i, s in enumerate(symbols)
            for v in range(1, 6) for f in FEATURES]
    shap = np.array([r[4] for r in rows])
    model = np.array([r[2] for r in rows], dtype=np.int64)
    share = shap / np.array([shap[model == m].sum() for m in model])
    imp = Importance(np.array([r[0] for r in rows], dtype=object),
                     np.array([r[1] for r in rows], dtype=np.int64), model,
                     np.array([r[3] for r in rows], dtype=object), share, share, shap)
    at = np.repeat([len(t) // 3, 2 * len(t) // 3], 2) if len(t) else np.array([], dtype=int)
    drifted = FeatureDrift(t[at], np.array([symbols[0]] * len(at), dtype=object),
                           np.array(["vol_ewma", "<i>x</i>"] * (len(at) // 2), dtype=object),
                           np.full(len(at), 0.4), np.full(len(at), 0.2), np.full(len(at), 0.3))
    every = np.arange(0, len(t), max(1, len(t) // 24))
    coefs = Coefficients(np.repeat(t[every], len(FEATURES)),
                         np.array([symbols[0]] * (len(every) * len(FEATURES)), dtype=object),
                         np.array(list(FEATURES) * len(every), dtype=object),
                         rng.normal(0, 0.3, len(every) * len(FEATURES)))
    fills.client_id = np.array([f"c{i}" for i in range(len(fills.time))], dtype=object)
    reasons = {str(c): [("flow_imb", 0.5, 1.2), ("ret_1", None, -0.3), ("macd", 1e-4, 0.1),
                        ("rsi_14", 55.0, 0.01)] for c in fills.client_id}
    return Uses(imp, {s: 10 * i + 5 for i, s in enumerate(symbols)}, drifted, reasons, coefs)


def _validation(time: np.datetime64, symbol: str, promoted: bool, reason: str,
                improvement: float | None = 0.0021) -> Validation:
    folds = [{"fold": f, "candidate": c, "n": 120, "log_loss": 0.69 - 0.002 * f,
              "brier": 0.249, "roc_auc": math.nan if f == 0 else 0.52, "accuracy": 0.51,
              "total_return": 0.001, "sharpe": math.inf if c == "prior" else 1.5,
              "max_drawdown": 0.01}  # no hit_rate: a missing key is a blank cell
             for f in range(3) for c in ("river", "booster", "prior")]
    return Validation(time, symbol, "booster-2", "booster-1", improvement, promoted, reason,
                      folds)


def _health(rng: np.random.Generator, t: np.ndarray) -> Health:
    kinds = ["gap", "disconnected", "connected", "rejected", "silence", "gap", "lag",
             "server_shutdown"]
    at = np.sort(rng.choice(len(t), size=min(len(t), len(kinds)), replace=False))
    kind = np.array(kinds[: len(at)], dtype=object)
    count = np.array([12, 1, 1, 3, 1, 5, 40, 1][: len(at)], dtype=np.int64)
    detail = np.array([f"detail <b>{k}</b> " + "x" * 200 for k in kind], dtype=object)
    totals = {"frames": 1_234_567, "rejected frames": int(count[kind == "rejected"].sum()),
              "gaps": int((kind == "gap").sum()), "reconnects": int((kind == "disconnected").sum())}
    return Health(t[at], kind, count, detail, totals)


@pytest.fixture
def full() -> ReportData:
    """A realistic run of 3,000 bars of two symbols."""
    return make_data()


@pytest.fixture
def empty() -> ReportData:
    """A run with no rows anywhere."""
    return empty_data()


@pytest.fixture
def build() -> Callable[..., ReportData]:
    """The :func:`make_data` builder, for sizes and edge cases of the test's own."""
    return make_data
