"""The report page: every section and figure, nothing fetched from outside, every database string
escaped, numbers formatted for people."""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pytest

import ares_stream
from ares_stream.report.figures import render
from ares_stream.report.html import page
from ares_stream.report.model import ReportData, Validation

SECTIONS = {"summary": "Summary", "equity": "Equity and drawdown", "risk": "Risk",
            "price": "Price, position and fills",
            "learners": "Learners: rolling log loss and accuracy",
            "uses": "What the models use", "validation": "Walk-forward validation",
            "feed-health": "Feed health"}
KEYS = ("equity", "price", "learners", "feed_health")
FAKE = {k: b"\x89PNG\r\n\x1a\n" + k.encode() for k in KEYS}  # the page only embeds the bytes
# an attribute or CSS that makes a browser fetch: anything but a PNG data URI or a #fragment
REFERENCE = re.compile(r"""(?:src|href|action|poster|data|srcset)\s*=\s*["']?
                           (?!data:image/png;base64,)(?!\#)[^"'\s>]+
                           |url\(|@import|<link|<script[^>]*\bsrc|<iframe|<object""",
                       re.I | re.X)
Build = Callable[..., ReportData]


def _sections(html: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([\w-]+)">(.*?)</section>', html, re.S))


def _text(fragment: str) -> str:
    """The visible text of an HTML fragment, tags replaced by spaces."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))


def test_every_section_heading_and_figure_is_on_the_page(full: ReportData) -> None:
    """The eight sections carry their headings in order, and each real figure is an ``<img>`` whose
    data URI decodes to the PNG it was given."""
    figures = render(full)
    html = page(full, figures)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    sections = _sections(html)
    assert list(sections) == list(SECTIONS)
    for sid, heading in SECTIONS.items():
        assert f"<h2>{heading}</h2>" in sections[sid]
    for key, png in figures.items():
        found = re.search(rf'<img id="fig-{key}" alt="[^"<]+" src="data:image/png;base64,'
                          r'([A-Za-z0-9+/=]+)">', html)
        assert found and base64.b64decode(found[1]) == png
    assert "<figcaption>" in sections["feed-health"]


@pytest.mark.parametrize("which", ["full", "empty"])
def test_nothing_on_the_page_is_fetched_from_outside(which: str,
                                                     request: pytest.FixtureRequest) -> None:
    """No URL, protocol-relative or relative path, stylesheet link, CSS url() or script source:
    only PNG data URIs and in-page #fragments."""
    html = page(request.getfixturevalue(which), FAKE)
    assert REFERENCE.search(html) is None, REFERENCE.search(html)
    assert not re.search(r"https?:|//[\w.]|file:", html.replace("<!DOCTYPE html>", ""))
    assert "<script" not in html and html.count("<style>") == 1


def test_database_text_is_escaped(full: ReportData) -> None:
    """A reason with ``<script>``, details with tags, a hostile symbol and path are shown as
    text, never as markup; details are cut to 120 characters."""
    full.run.db_path = '/tmp/"><img src=x>.db'
    full.prices[0].symbol = "<b>X</b>"
    html = page(full, FAKE, extra=[("a b<", "Findings <i>", "line <one>\n  two")])
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>" not in html and "<img src=x>" not in html and "<i>" not in html
    assert "&lt;b&gt;gap&lt;/b&gt;" in html and '<section id="a-b">' in html
    details = re.findall(r"<td>(detail &lt;b&gt;[^<]*)</td>", _sections(html)["feed-health"])
    assert details and all(len(d.replace("&lt;", "<").replace("&gt;", ">")) <= 120
                           for d in details)
    assert all(d.endswith("…") for d in details)


def test_the_header_names_the_run(full: ReportData) -> None:
    """Run id, mode, status, database, interval, symbols, covered period, window, generation
    time and version are in the header."""
    full.run.since = np.datetime64("2024-05-01T00:10:00", "ns")
    html = page(full, FAKE, generated=datetime(2024, 5, 2, 3, 4, 5, tzinfo=UTC))
    header = _text(html.split("</header>")[0])
    for text in ("run 7", "replay", "finished", "/tmp/state/replay.db", "1s", "BTCUSDT, ETHUSDT",
                 "2024-05-01 00:00:00 UTC → 2024-05-01 00:49:59 UTC",
                 "events from 2024-05-01 00:10:00 UTC", "2024-05-02 03:04:05 UTC",
                 ares_stream.__version__):
        assert text in header, text


def test_the_summary_is_formatted_for_people(full: ReportData) -> None:
    """Percentages with two decimals and a sign for the return, money with separators, ratios
    with two decimals, infinity as ∞, the notes and the model table."""
    summary = _text(_sections(page(full, FAKE))["summary"])
    for text in ("Return +1.23 %", "10,000.00 → 10,123.45", "Sharpe (annualised) 1.23",
                 "from 90 daily returns ×√365; 90 % CI 0.20 … 2.30 (block bootstrap)",
                 "Sortino (annualised) 2.10", "Volatility (annualised) 45.00 %",
                 "Max drawdown 3.21 % lasted 3h 20m", "Calmar ∞",
                 "Hit rate 55.00 % of 100 closed round trips", "Fees paid 1,234.57 200 fills",
                 "Turnover 3.20", "0.83 hours", "a run of 0.03 days &lt;short&gt;.",
                 "river 0.6912 52.00 %", "booster n/a n/a", "ensemble 0.6901 53.00 %",
                 "constant baseline 0.6931", "3,000 labelled predictions", "2 drift events",
                 "1 promotion "):
        assert text in summary, text


def test_undefined_figures_say_why(full: ReportData) -> None:
    """A run that never traded says so, and its undefined ratios read ``n/a (no trades)``."""
    full.summary |= {"traded": False, "sharpe": math.nan, "hit_rate": math.nan,
                     "calmar": math.nan, "round_trips": 0}
    summary = _text(_sections(page(full, FAKE))["summary"])
    assert "No trades in this run." in summary
    assert "Sharpe (annualised) n/a (no trades)" in summary
    assert "Hit rate n/a (no trades)" in summary


def test_a_run_shorter_than_30_days_has_no_daily_ratios_but_shows_the_per_bar_ones(
        full: ReportData) -> None:
    """Below 30 daily returns Sharpe and Sortino read ``n/a (run shorter than 30 days)``, with the
    per-bar figures beside them labelled indicative only."""
    full.summary |= {"daily_returns": 12, "sharpe": math.nan, "sortino": math.nan,
                     "volatility": math.nan}
    summary = _text(_sections(page(full, FAKE))["summary"])
    assert "Sharpe (annualised) n/a (run shorter than 30 days) per-bar, indicative only: 2.50 " \
           "on 1s returns ×√31,536,000" in summary
    assert "Sortino (annualised) n/a (run shorter than 30 days) per-bar" in summary
    assert "Volatility (annualised) n/a (run shorter than 30 days)" in summary


def test_an_empty_run_reads_clearly(empty: ReportData) -> None:
    """No broker, no validations, no incidents: each is said in words, every section present."""
    html = page(empty, FAKE)
    sections = _sections(html)
    assert list(sections) == list(SECTIONS)
    assert "No trades in this run: it had no broker." in sections["summary"]
    assert "Sharpe (annualised) n/a (no broker)" in _text(sections["summary"])
    assert ("No walk-forward validation in this run (batch learning off or not yet due)."
            in sections["validation"])
    assert "No incidents recorded." in sections["feed-health"]
    assert "no events" in html.split("</header>")[0]


def test_decisions_newest_first_and_the_newest_fold_table_per_symbol(full: ReportData) -> None:
    """At most 20 decisions, newest first; one fold table per symbol from its newest decision,
    with a blank cell for a missing key and n/a / ∞ for NaN / infinity."""
    older = full.validations[0]
    full.validations = [Validation(older.time + np.timedelta64(i, "s"), older.symbol, f"c{i}",
                                   "inc", 0.001 * i, False, f"reason {i}", older.folds)
                        for i in range(25)] + full.validations[1:]
    validation = _sections(page(full, FAKE))["validation"]
    decisions = re.findall(r"<td>(c\d+)</td>", validation)
    assert len(re.findall(r"<tr[^>]*><td>2024", validation)) == 20
    assert decisions == [f"c{i}" for i in range(24, 6, -1)]  # after the two newer decisions
    headings = re.findall(r"<h3>([^<]*)</h3>", validation)
    assert headings[1:] == ["BTCUSDT: booster-2 vs booster-1 at 2024-05-01 00:25:00 UTC "
                            "(promoted)", "ETHUSDT: booster-2 vs booster-1 at 2024-05-01 "
                            "00:25:00 UTC (kept the incumbent)"]
    first_row = re.search(r"<tr><td class=\"num\">0</td>.*?</tr>", validation)
    assert first_row
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", first_row[0])
    assert cells == ["0", "river", "120", "0.6900", "0.2490", "n/a", "0.5100", "0.0010", "1.50",
                     "0.0100", ""]
    assert '<td class="num">∞</td>' in validation and '<td class="num">+0.0021</td>' in validation


def test_feed_health_lists_totals_and_the_last_incidents(build: Build) -> None:
    """The totals table and at most 20 incidents, newest first."""
    data = build(3000)
    h = data.health
    n = 30
    h.time = np.datetime64("2024-05-01T00:00:00", "ns") + np.arange(n) * np.timedelta64(1, "m")
    h.kind = np.array(["gap"] * n, dtype=object)
    h.count = np.arange(n, dtype=np.int64)
    h.detail = np.array([f"d{i}" for i in range(n)], dtype=object)
    section = _sections(page(data, FAKE))["feed-health"]
    assert "<td>frames</td> <td class=\"num\">1,234,567</td>" in section
    assert re.findall(r"<td>(d\d+)</td>", section) == [f"d{i}" for i in range(29, 9, -1)]


def test_the_models_use_section_escapes_and_bounds_its_tables(full: ReportData) -> None:
    """Each champion gets a ranking, drifted features sit beside the loss drifts, the fills
    table shows the last 50 fills with the top 3 reasons of their order, and feature names
    from the database are escaped."""
    uses = _sections(page(full, render(full)))["uses"]
    assert uses.count("champion booster v5") == 2 and "none yet" not in uses
    assert "<td>vol_ewma</td>" in uses and "drift event (adwin)" in uses
    assert 'id="fig-coefficients"' in uses and "PSI 0.4000 &gt; 0.3000" in uses
    assert "&lt;i&gt;x&lt;/i&gt;" in uses and "<i>x</i>" not in uses
    assert "&lt;b&gt;odd&lt;/b&gt;" in uses and "<b>odd</b>" not in uses
    why = re.findall(r"<td>(flow_imb=[^<]*)</td>", uses)
    assert len(why) == 50 and set(why) == {"flow_imb=0.5 (+1.200), ret_1=n/a (-0.300), "
                                           "macd=0.0001 (+0.100)"}
