"""The section "Risk": the fan chart, daily VaR/ES equal to :func:`risk.var_es` on the run's
daily returns, the Monte Carlo table, an intraday fan for a short run, and "none yet" without
data."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ares_stream.report import risk as report_risk
from ares_stream.report.figures import render
from ares_stream.report.html import cell, page
from ares_stream.report.model import ReportData
from ares_stream.validation import risk

from .conftest import long_data

pytestmark = pytest.mark.filterwarnings("error")


def _section(html: str) -> str:
    found = re.search(r'<section id="risk">(.*?)</section>', html, re.S)
    assert found
    return found[1]


def _text(fragment: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))


@pytest.fixture(scope="module")
def long() -> ReportData:
    """90 days of hourly equity and closes."""
    return long_data(90)


def test_a_long_run_shows_the_fan_chart_and_both_tables(long: ReportData) -> None:
    """90 days: the fan chart is an ``<img>``, the Monte Carlo table has its three rows and
    P(loss), and the VaR table has 95 and 99 % rows for the strategy and buy-and-hold."""
    text = _section(page(long, render(long)))
    assert re.search(r'<img id="fig-fan" alt="[^"]+" src="data:image/png;base64,', text)
    plain = _text(text)
    for row in ("Final return", "Max drawdown", "Sharpe (annualised)", "P(loss) over the horizon",
                "1,000 paths of 90 daily returns"):
        assert row in plain, row
    assert plain.count("strategy 95 %") == 1 and plain.count("BTCUSDT buy-and-hold 99 %") == 1
    assert "Regime table (labelled bars with a known regime): none yet." in plain
    assert "Stress results (run `ares-stream stress --db …`): none yet." in plain


def test_the_var_rows_equal_var_es_on_the_runs_daily_returns(long: ReportData) -> None:
    """Each VaR/ES row is :func:`risk.var_es` of the strategy's (or the symbol's) daily
    returns, to the cell."""
    eq, close = long.equity, long.prices[0]
    for name, ts, values in (("strategy", eq.time, eq.equity),
                             ("BTCUSDT buy-and-hold", close.time, close.close)):
        want = risk.var_es(risk.daily_returns(ts.astype(np.int64), values))
        assert long.risk.tails[name] == want
        plain = _text(_section(page(long, {})))
        for t in want:
            row = (f"{name} {t.level:.0%} {cell(t.var, 'pct0')} {cell(t.var_ci[0], 'pct0')} … "
                   f"{cell(t.var_ci[1], 'pct0')} {cell(t.es, 'pct0')}").replace("%", " %")
            assert row.replace("  ", " ") in plain, row


def test_the_monte_carlo_resamples_the_daily_returns(long: ReportData) -> None:
    """The section's Monte Carlo is :func:`risk.monte_carlo` of the daily returns (√365), and
    the realised equity on its grid starts and ends at the day-end marks."""
    eq = long.equity
    daily = risk.daily_returns(eq.time.astype(np.int64), eq.equity)
    want = risk.monte_carlo(daily, 365.0, n_paths=report_risk.N_PATHS)
    got = long.risk.monte_carlo
    assert got is not None and got.final_return == want.final_return
    assert got.sharpe == want.sharpe and got.p_loss == want.p_loss
    assert long.risk.basis == "daily" and not long.risk.intraday
    assert long.risk.realised.size == daily.size + 1 == long.risk.time.size
    assert long.risk.realised[-1] == pytest.approx(eq.equity[-1])


def test_a_short_run_gets_an_intraday_fan_and_no_daily_var() -> None:
    """Ten days of hourly bars: the fan resamples the hourly grid, marked indicative; the VaR
    rows say n/a with the number of daily returns."""
    short = long_data(10)
    r = short.risk
    assert r.intraday and r.basis == "1h" and r.monte_carlo is not None and not r.tails
    plain = _text(_section(page(short, render(short))))
    assert "indicative only" in plain and "n/a (10 daily returns, needs 30)" in plain


def test_an_empty_run_says_none_yet(empty: ReportData) -> None:
    """No equity, no prices: every part of the section says "none yet", and the fan figure
    is a message."""
    empty.risk = report_risk.assess(empty)
    text = _section(page(empty, render(empty)))
    plain = _text(text)
    for what in ("Monte Carlo paths (no equity): none yet.", "Monte Carlo distribution: none yet.",
                 "Value at risk: none yet.",
                 "Regime table (labelled bars with a known regime): none yet.",
                 "Stress results (run `ares-stream stress --db …`): none yet."):
        assert what in plain, what
    assert "fig-fan" not in text


def test_extra_parts_close_the_section(long: ReportData) -> None:
    """The regime table and stress results are parts the section takes: given HTML, it shows
    them after the VaR table."""
    from ares_stream.report import html

    text = html._risk(long, {}, "<h3>Regimes</h3>", "<table><tr><td>calm</td></tr></table>")
    assert text.index("Daily value at risk") < text.index("<td>calm</td>") < text.index(
        "</section>")
