"""Every incremental feature equals its pandas definition, at every bar, and reads no future bar."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ares_stream.features.indicators import (
    BookImbalance,
    EwmaVol,
    FlowImbalance,
    HighLowRange,
    Intensity,
    LogReturn,
    Macd,
    RollingZ,
    Rsi,
    SpreadBps,
    VwapDeviation,
)

RTOL, ATOL = 1e-9, 1e-12
SMALL = {"rsi": 5, "span": 6, "window": 7, "fast": 3, "slow": 8, "signal": 4}


# --- random bar frames


def _columns(close: np.ndarray, volume: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    n = len(close)
    wick = rng.exponential(1e-3, (2, n))
    high, low = close * (1 + wick[0]), close / (1 + wick[1])
    buy = volume * rng.choice([0.0, 1.0, 0.5, 0.3, 0.99], n)
    half = close * rng.choice([0.0, 1e-5, 1e-4, 3e-3], n)
    return pd.DataFrame({
        "close": close, "high": high, "low": low, "volume": volume, "buy": buy,
        "sell": volume - buy, "vwap": low + (high - low) * rng.random(n),
        "count": rng.choice([0, 1, 7, 300, 20_000], n), "interval_ns": 60_000_000_000,
        "bid": close - half, "ask": close + half,
        "bid_qty": rng.choice([0.0, 0.001, 1.0, 250.0], n),
        "ask_qty": rng.choice([0.0, 2.0, 7.5], n),
    })  # fmt: skip


@st.composite
def walks(draw: st.DrawFn) -> pd.DataFrame:
    """A geometric random walk at a realistic level (60,000, 1.0, 0.0014 …) with small moves."""
    n = draw(st.integers(1, 90))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    level = draw(st.sampled_from([60_000.0, 3_000.0, 1.0, 0.0014]) | st.floats(1e-3, 1e5))
    sigma = draw(st.sampled_from([1e-5, 1e-4, 1e-3, 2e-2]))
    close = level * np.exp(np.cumsum(rng.normal(0.0, sigma, n)))
    volume = rng.lognormal(0.0, 2.0, n) * (rng.random(n) > 0.1)  # some bars without volume
    return _columns(close, volume, rng)


@st.composite
def arbitrary(draw: st.DrawFn) -> pd.DataFrame:
    """Arbitrary positive prices and non-negative volumes in a sane range (spikes, ties, zeros)."""
    n = draw(st.integers(1, 70))
    price = st.floats(0.01, 1e4, allow_nan=False, allow_infinity=False)
    close = np.array(draw(st.lists(price, min_size=n, max_size=n)))
    vol = st.just(0.0) | st.floats(1e-8, 1e4, allow_nan=False, allow_infinity=False)  # lot 1e-8
    volume = np.array(draw(st.lists(vol, min_size=n, max_size=n)))
    return _columns(close, volume, np.random.default_rng(draw(st.integers(0, 2**32 - 1))))


frames = walks() | arbitrary()


# --- the features: incremental feed and pandas batch definition


def _ewm(x: pd.Series, span: int) -> pd.Series:
    return x.ewm(span=span, adjust=False, min_periods=span).mean()


def _rsi(f: pd.DataFrame, n: int) -> pd.Series:
    d = f.close.diff()
    g = d.clip(lower=0).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    loss = (-d).clip(lower=0).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    return (g / (g + loss)).mask(g + loss == 0, 0.5)


def _macd(f: pd.DataFrame, fast: int, slow: int) -> pd.Series:
    return (_ewm(f.close, fast) - _ewm(f.close, slow)) / f.close


def _exact_z(w: np.ndarray) -> float:
    """z of the window's last value, each window evaluated exactly (shifted two-pass, fsum)."""
    d = w - w[0]
    dev = d - math.fsum(d) / len(w)
    var = math.fsum(dev * dev) / len(w)
    return 0.0 if var == 0.0 else float(dev[-1] / math.sqrt(var))


def _zscore(x: pd.Series, n: int) -> pd.Series:
    """``((x - m) / sd).mask(sd == 0, 0)``; evaluated per window because pandas' own rolling std
    keeps running sums that drift ~1e-9 relative after a spike leaves the window."""
    return x.rolling(n).apply(_exact_z, raw=True)


def _rsum(x: pd.Series, n: int) -> pd.Series:
    """``x.rolling(n).sum()``, each window summed exactly: pandas' running sum turns a window of
    (1e-79, 0, …) after a 1.0 into 0 (found by hypothesis: an inf VWAP)."""
    return x.rolling(n).apply(math.fsum, raw=True)


def _vwap_dev(f: pd.DataFrame, n: int) -> pd.Series:
    v = _rsum(f.volume, n)
    return np.log(f.close * v / _rsum(f.vwap * f.volume, n)).mask(v == 0, 0.0)


def _flow(f: pd.DataFrame, n: int) -> pd.Series:
    b, s = _rsum(f.buy, n), _rsum(f.sell, n)
    return ((b - s) / (b + s)).mask(b + s == 0, 0.0)


def _intensity(f: pd.DataFrame, n: int) -> pd.Series:
    rate = (f["count"] + 1) / (f.interval_ns / 1e9)
    return np.log(rate / _ewm(rate, n))


Feed = Callable[[Any, Any], None]
W, S = SMALL["window"], SMALL["span"]
FAST, SLOW, SIG = SMALL["fast"], SMALL["slow"], SMALL["signal"]

# name -> (new indicator, feed one row, read the value, batch definition over the frame)
FEATURES: dict[str, tuple[Callable[[], Any], Feed, Callable[[Any], Any], Callable[..., Any]]] = {
    "ret_1": (lambda: LogReturn(1), lambda i, r: i.update(r.close), lambda i: i.get(),
              lambda f: np.log(f.close / f.close.shift(1))),
    "ret_5": (lambda: LogReturn(5), lambda i, r: i.update(r.close), lambda i: i.get(),
              lambda f: np.log(f.close / f.close.shift(5))),
    "vol_ewma": (lambda: EwmaVol(S), lambda i, r: i.update(r.close), lambda i: i.get(),
                 lambda f: _ewm(np.log(f.close / f.close.shift(1)).pow(2), S).pow(0.5)),
    "rsi": (lambda: Rsi(SMALL["rsi"]), lambda i, r: i.update(r.close), lambda i: i.get(),
            lambda f: _rsi(f, SMALL["rsi"])),
    "macd": (lambda: Macd(FAST, SLOW, SIG), lambda i, r: i.update(r.close), lambda i: i.get(),
             lambda f: _macd(f, FAST, SLOW)),
    "macd_signal": (lambda: Macd(FAST, SLOW, SIG), lambda i, r: i.update(r.close),
                    lambda i: i.signal(), lambda f: _ewm(_macd(f, FAST, SLOW), SIG)),
    "boll_z": (lambda: RollingZ(W), lambda i, r: i.update(r.close), lambda i: i.get(),
               lambda f: _zscore(f.close, W)),
    "volume_z": (lambda: RollingZ(W), lambda i, r: i.update(r.volume), lambda i: i.get(),
                 lambda f: _zscore(f.volume, W)),
    "vwap_dev": (lambda: VwapDeviation(W), lambda i, r: i.update(r.close, r.vwap, r.volume),
                 lambda i: i.get(), lambda f: _vwap_dev(f, W)),
    "flow_imb": (lambda: FlowImbalance(W), lambda i, r: i.update(r.buy, r.sell),
                 lambda i: i.get(), lambda f: _flow(f, W)),
    "intensity": (lambda: Intensity(S), lambda i, r: i.update(r.count, r.interval_ns),
                  lambda i: i.get(), lambda f: _intensity(f, S)),
    "hl_range": (HighLowRange, lambda i, r: i.update(r.high, r.low), lambda i: i.get(),
                 lambda f: np.log(f.high / f.low)),
    "spread_bps": (SpreadBps, lambda i, r: i.update(r.bid, r.ask), lambda i: i.get(),
                   lambda f: (f.ask - f.bid) / ((f.ask + f.bid) / 2) * 1e4),
    "book_imb": (BookImbalance, lambda i, r: i.update(r.bid_qty, r.ask_qty), lambda i: i.get(),
                 lambda f: ((f.bid_qty - f.ask_qty) / (f.bid_qty + f.ask_qty))
                 .mask(f.bid_qty + f.ask_qty == 0, 0.0)),
}  # fmt: skip


def incremental(name: str, frame: pd.DataFrame) -> list[float | None]:
    make, feed, read, _ = FEATURES[name]
    ind = make()
    out = []
    for row in frame.itertuples(index=False):
        feed(ind, row)
        out.append(read(ind))
    return out


def assert_matches(got: list[float | None], want: np.ndarray) -> None:
    for t, (g, w) in enumerate(zip(got, want, strict=True)):
        if math.isnan(w):
            assert g is None, f"bar {t}: {g} where the batch value is NaN"
        else:
            assert g is not None and math.isclose(g, w, rel_tol=RTOL, abs_tol=ATOL), (t, g, w)


# --- properties


@pytest.mark.parametrize("name", FEATURES)
@settings(max_examples=60, deadline=None)
@given(frame=frames)
def test_incremental_equals_batch(name: str, frame: pd.DataFrame) -> None:
    """At every bar the incremental value equals the pandas definition; None exactly on its NaNs."""
    assert_matches(incremental(name, frame), FEATURES[name][3](frame).to_numpy(float))


@pytest.mark.parametrize("name", FEATURES)
@settings(max_examples=25, deadline=None)
@given(frame=frames, data=st.data())
def test_causal(name: str, frame: pd.DataFrame, data: st.DataObject) -> None:
    """The value at bar t equals the batch value computed on the prefix ending at t."""
    t = data.draw(st.integers(0, len(frame) - 1))
    want = FEATURES[name][3](frame.iloc[: t + 1]).to_numpy(float)[-1]
    assert_matches(incremental(name, frame)[t : t + 1], np.array([want]))


@pytest.mark.parametrize("name", ["boll_z", "volume_z", "vwap_dev", "flow_imb", "vol_ewma"])
def test_long_series_do_not_drift(name: str) -> None:
    """Over 20,000 bars at 60,000 with cent-sized moves and volume spikes the sums stay exact."""
    rng = np.random.default_rng(7)
    n = 20_000
    close = 60_000.0 + np.round(np.cumsum(rng.normal(0, 0.05, n)), 2)
    volume = rng.lognormal(0, 1, n) * np.where(rng.random(n) < 0.01, 1e5, 1.0)
    frame = _columns(close, volume, rng)
    got = incremental(name, frame)[-3000:]
    assert_matches(got, FEATURES[name][3](frame).to_numpy(float)[-3000:])


def test_boll_z_beats_pandas_rolling_std_at_60000() -> None:
    """At 60,000 with 1e-4 moves boll_z is exact to 1e-12 and within 1e-8 of pandas' rolling std
    (whose running sums drift ~3e-9 here: why the property tests evaluate windows exactly)."""
    rng = np.random.default_rng(3)
    close = pd.Series(60_000.0 * np.exp(np.cumsum(rng.normal(0, 1e-4, 2_000))))
    m, sd = close.rolling(20).mean(), close.rolling(20).std(ddof=0)
    plain = ((close - m) / sd).mask(sd == 0, 0.0).to_numpy()
    z = RollingZ(20)
    got = []
    for c in close:
        z.update(c)
        got.append(z.get())
    exact = _zscore(close, 20).to_numpy()
    np.testing.assert_allclose(np.array(got[19:], float), exact[19:], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.array(got[19:], float), plain[19:], rtol=1e-8)


def test_flat_window_after_a_spike_is_exactly_zero() -> None:
    """A window of equal values after a huge one left scores 0, not rounding noise."""
    z = RollingZ(5)
    for x in [1e4, *([0.1] * 5)]:
        z.update(x)
    assert z.get() == 0.0


@pytest.mark.parametrize(
    ("make", "kwargs"),
    [(LogReturn, {"k": 0}), (EwmaVol, {"span": -1}), (Rsi, {"period": 1.5}),
     (Macd, {"fast": 0}), (RollingZ, {"window": 0}), (Intensity, {"span": 0})],
)  # fmt: skip
def test_bad_parameters_are_rejected(make: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """A window or span that is not a positive integer is a ValueError naming the argument."""
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        make(**kwargs)


def test_constructor_arguments_are_stored_verbatim() -> None:
    """Constructor arguments stay readable under their own names, River-style."""
    m = Macd(5, 11, 3)
    assert (m.fast, m.slow, m.signal_span) == (5, 11, 3)
    assert (LogReturn(4).k, EwmaVol(9).span, Rsi().period, RollingZ(3).window) == (4, 9, 14, 3)
