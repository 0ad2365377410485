"""The summary's ratios: Sharpe, Sortino and volatility from daily returns with their intervals,
n/a below 30 days with the per-bar figures kept beside them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ares_stream.report import summary
from ares_stream.validation import metrics as vm
from ares_stream.validation import risk

from .conftest import long_data


def test_the_ratios_of_a_long_run_come_from_its_daily_returns() -> None:
    """90 days of hourly equity: Sharpe, Sortino, volatility and their intervals are those of
    :func:`risk.annualised` on the UTC day-end returns, not of the hourly bars."""
    data = long_data(90)
    ts, equity = data.equity.time.astype(np.int64), data.equity.equity
    daily = risk.daily_returns(ts, equity)
    want = risk.annualised(daily)
    s = data.summary
    assert s["daily_returns"] == daily.size == 90  # 91 UTC days touched
    assert s["sharpe"] == want.sharpe and s["sharpe_ci"] == want.sharpe_ci
    assert s["sortino"] == want.sortino and s["sortino_ci"] == want.sortino_ci
    assert s["volatility"] == want.volatility and s["volatility_ci"] == want.volatility_ci
    hourly = summary.bar_returns(ts, equity, 3600 * 10**9)
    assert s["sharpe_bar"] == pytest.approx(vm.sharpe(hourly, 365 * 24))
    assert s["sharpe_bar"] != pytest.approx(s["sharpe"], rel=0.05)
    assert s["sharpe_ci"][0] < s["sharpe"] < s["sharpe_ci"][1]


def test_a_run_shorter_than_30_days_has_no_daily_ratios() -> None:
    """29 daily returns are too few: the daily ratios are NaN and the per-bar ones remain."""
    s = long_data(29).summary
    assert s["daily_returns"] == 29 and math.isnan(s["sharpe"]) and math.isnan(s["sortino"])
    assert all(math.isnan(v) for v in s["sharpe_ci"]) and math.isfinite(s["sharpe_bar"])
    assert any("need 30 daily returns" in n for n in s["notes"])
    assert math.isfinite(long_data(30).summary["sharpe"])
