"""The report's figures: valid PNGs for full, empty and degenerate runs, fast on a day of 1 s bars,
drawn without pyplot and without warnings."""

from __future__ import annotations

import gc
import io
import math
import subprocess
import sys
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from ares_stream.report import figures
from ares_stream.report.figures import decimate, render, rolling_mean
from ares_stream.report.model import Equity, Fills, Prices, ReportData, Scores

pytestmark = pytest.mark.filterwarnings("error")  # a warning is a failure
KEYS = ["equity", "fan", "price", "learners", "feed_health", "importance", "coefficients",
        "drift_timeline"]
Build = Callable[..., ReportData]
START = np.datetime64("2024-05-01T00:00:00", "ns")
SECOND = np.timedelta64(1_000_000_000, "ns")


def _size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(png)) as image:
        image.verify()
        return image.size


def _all_nan(data: ReportData) -> ReportData:
    """Every float of every table NaN (lengths kept)."""
    for table in (data.equity, data.scores, *data.prices):
        for name, value in vars(table).items():
            if isinstance(value, np.ndarray) and value.dtype == np.float64:
                setattr(table, name, np.full(len(value), np.nan))
    data.fills.price = np.full(len(data.fills.price), np.nan)
    return data


def _no_broker(data: ReportData) -> ReportData:
    data.equity, data.fills = Equity(), Fills()
    for p in data.prices:
        p.position_time, p.position = Fills().time, Fills().price
    data.summary |= {"has_equity": False, "traded": False}
    return data


def _no_booster(data: ReportData) -> ReportData:
    data.scores.booster = np.full(len(data.scores.time), np.nan)
    return data


def _fills_only(data: ReportData) -> ReportData:
    data.prices = [Prices(p.symbol, position_time=p.position_time, position=p.position)
                   for p in data.prices]
    data.scores = Scores()
    return data


def test_every_figure_of_a_full_run_is_a_png_in_order(full: ReportData) -> None:
    """A realistic run gives the eight figures, in order, each a valid ~1200 px wide PNG."""
    pngs = render(full)
    assert list(pngs) == KEYS
    for png in pngs.values():
        width, height = _size(png)
        assert 1100 <= width <= 1300 and 200 < height < 2500


def test_an_empty_run_draws_every_figure_with_a_message(empty: ReportData) -> None:
    """No rows anywhere (no broker, no bars, no scores, no incidents): eight PNGs, no error."""
    pngs = render(empty)
    assert list(pngs) == KEYS and all(_size(p)[0] > 1000 for p in pngs.values())


@pytest.mark.parametrize("edit", [_all_nan, _no_broker, _no_booster, _fills_only],
                         ids=["all-nan", "no-broker", "no-booster", "no-closes"])
def test_degenerate_runs_still_draw(build: Build, edit: Callable[[ReportData], ReportData]) -> None:
    """All-NaN values, no broker, no booster, fills without closes: every figure still renders
    without a warning."""
    pngs = render(edit(build(300)))  # the default window of 500 is longer than the run
    assert list(pngs) == KEYS and all(_size(p) for p in pngs.values())


def test_more_symbols_than_panels_says_how_many_are_hidden(build: Build) -> None:
    """Nine symbols draw six price panels (each with its position strip) and name the rest."""
    data = build(50, symbols=tuple(f"S{i}USDT" for i in range(9)))
    fig = figures._price(data, figures.time_span(data))
    assert len(fig.axes) == 12 and fig.get_suptitle() == "+3 more symbols not shown"
    assert _size(figures._png(fig))


def test_a_run_of_one_bar_draws(build: Build) -> None:
    """A run of a single instant (one bar, one fill, one score) renders."""
    assert all(_size(p) for p in render(build(1)).values())


def test_decimate_keeps_extremes_and_order() -> None:
    """A spike and a trough survive decimation of 86,400 points to ~4,000, times stay ordered,
    and a short series comes back untouched."""
    t = START + np.arange(86_400) * SECOND
    y = np.cumsum(np.random.default_rng(1).normal(size=86_400))
    y[12_345], y[54_321] = y.max() + 100, y.min() - 100
    td, yd = decimate(t, y)
    assert len(td) <= 4002 and np.all(np.diff(td) > np.timedelta64(0))
    assert yd.max() == y.max() and yd.min() == y.min()
    assert set(td.tolist()) >= {t[0].item(), t[-1].item(), t[12_345].item(), t[54_321].item()}
    short_t, short_y = decimate(t[:10], y[:10])
    assert short_t is t[:10].base or np.array_equal(short_t, t[:10])
    assert np.array_equal(short_y, y[:10])


def test_decimate_keeps_a_gap_that_fills_a_bucket() -> None:
    """A run of NaN longer than a bucket stays NaN (a line break), other NaN are skipped."""
    y = np.arange(10_000.0)
    y[3_000:4_000] = np.nan
    _, yd = decimate(np.arange(10_000.0), y, max_points=100)
    assert np.isnan(yd).any() and np.nanmax(yd) == 9_999.0


def test_rolling_mean_equals_the_direct_mean() -> None:
    """The cumulative-sum rolling mean equals the mean of each window computed directly."""
    x = np.random.default_rng(2).normal(size=1_000)
    direct = [x[max(0, i - 49): i + 1].mean() for i in range(len(x))]
    assert np.allclose(rolling_mean(x, 50), direct)
    assert rolling_mean(np.array([]), 5).size == 0


def test_fills_are_subsampled_evenly_in_order(build: Build) -> None:
    """A symbol with more than 2,000 fills draws at most 2,000 markers, spread over the whole
    run and in time order; the legend still counts all of them."""
    data = build(12_000, symbols=("BTCUSDT",))
    n = 3_200
    at = np.linspace(0, 11_999, n).astype(np.int64)
    price = data.prices[0].close[at]
    data.fills = Fills(data.prices[0].time[at], np.full(n, "BTCUSDT", dtype=object),
                       np.array(["BUY", "SELL"] * (n // 2), dtype=object), np.full(n, 0.01),
                       price, price * 1e-5)
    fig = figures._price(data, figures.time_span(data))
    markers = [line for line in fig.axes[0].get_lines() if line.get_marker() in ("^", "v")]
    xs = np.concatenate([np.asarray(m.get_xdata()) for m in markers])
    assert len(xs) <= 2_000 and all(np.all(np.diff(m.get_xdata()) > 0) for m in markers)
    assert np.ptp(xs) > 0.99 * np.ptp(figures._num(data.fills.time))
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "BUY (1,600)" in labels and "SELL (1,600)" in labels


def test_learners_mark_drift_and_promotions_once_in_the_legend(full: ReportData) -> None:
    """Drift events and promotions appear once each in the learners' legend, with the three
    models and the constant baseline."""
    fig = figures._learners(full, figures.time_span(full), 200)
    labels = fig.legends[0].get_texts()
    text = [t.get_text() for t in labels]
    assert text.count("drift detected") == 1 and text.count("model promoted") == 1
    assert sum(t.startswith(("river", "booster", "ensemble", "baseline")) for t in text) == 4


def test_a_figure_is_freed_once_drawn(full: ReportData) -> None:
    """Nothing keeps a rendered figure alive (no pyplot registry): it is collected."""
    fig = figures._equity(full, figures.time_span(full))
    ref = weakref.ref(fig)
    figures._png(fig)
    del fig
    gc.collect()
    assert ref() is None


def test_rendering_never_imports_pyplot() -> None:
    """Rendering in a fresh interpreter leaves ``matplotlib.pyplot`` unimported."""
    code = ("import sys; sys.path.insert(0, 'tests/report'); from conftest import make_data;"
            "from ares_stream.report.figures import render; render(make_data(100));"
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_concurrent_renders_are_identical(build: Build) -> None:
    """Two threads rendering the same run at once produce the same, valid bytes."""
    data = build(200)
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: render(data, rolling=50), range(2))
    assert first == second and all(_size(p) for p in first.values())


def test_a_day_of_one_second_bars_renders(build: Build) -> None:
    """86,400 bars, equity rows and scores, and ~5,800 fills: all eight figures render.

    How fast (about 1 s here) is bench/report.py's to measure: a test on a busy machine can
    only say that it ends."""
    data = build(86_400)
    assert len(data.fills.time) > 5_000
    pngs = render(data)
    assert all(math.prod(_size(p)) > 0 for p in pngs.values())


def test_feed_incidents_on_another_clock_do_not_squash_the_other_figures(full: ReportData) -> None:
    """A simulated feed stamps connection notices with the wall clock, years from its event
    times: the event figures keep the event span and the feed figure gets its own range, labelled
    as receive time."""
    h = full.health
    h.time = h.time + np.timedelta64(700, "D")
    span = figures.time_span(full)
    assert span is not None and span[1] < h.time.min()
    feed_span, own_clock = figures.health_span(h, span)
    assert own_clock and feed_span == (h.time.min(), h.time.max())
    fig = figures._feed_health(h, feed_span, own_clock)
    assert "receive time" in fig.axes[-1].get_xlabel()
    lo, _ = fig.axes[0].get_xlim()
    assert lo >= figures._num(np.array([span[1]]))[0]
