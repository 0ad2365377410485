"""Higher-timeframe bars equal a pandas group-by of the base bars; their features are causal."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ares_stream.events import NS_PER_MS, Bar
from ares_stream.features.bars import parse_interval
from ares_stream.features.pipeline import FeatureSet
from ares_stream.features.timeframes import BOOK_TOP_FEATURES, BarAggregator, MultiTimeframe
from tests.conftest import shared_path

MIN = 60_000_000_000
T0 = 28_333_320 * MIN  # 2023-11-14 22:00 UTC, on a day boundary of every interval used here
RTOL, ATOL = 1e-9, 1e-12
LABELS = ("5m", "15m")


def small_features() -> FeatureSet:
    """A feature set that is warm after 5 bars, so short streams reach higher-timeframe vectors."""
    return FeatureSet(return_horizons=(1, 2), vol_span=3, rsi_period=3, macd=(2, 3, 2),
                      boll_window=3, vwap_window=3, flow_window=3, intensity_span=3,
                      volume_window=3)  # fmt: skip


def tiny_features() -> FeatureSet:
    """Every window 1: the second bar gives a vector."""
    return FeatureSet(return_horizons=(1,), vol_span=1, rsi_period=1, macd=(1, 1, 1),
                      boll_window=1, vwap_window=1, flow_window=1, intensity_span=1,
                      volume_window=1)  # fmt: skip


def base_bar(i: int, close: float, prev: float, rng: np.random.Generator, **opt: bool) -> Bar:
    """The 1m bar opening at minute ``i`` after T0; ``opt`` says which optional inputs it has."""
    high, low = max(prev, close) * (1 + rng.exponential(1e-3)), min(prev, close) * 0.999
    vol = float(rng.lognormal(0.0, 1.5)) * float(rng.random() > 0.1)
    book = (close - 0.01, close + 0.01, float(rng.random()), float(rng.random()))
    return Bar(
        "BTCUSDT", T0 + (i + 1) * MIN, T0 + (i + 1) * MIN + int(rng.integers(0, 10**9)),
        T0 + i * MIN, MIN, prev, high, low, close, vol,
        vol * float(rng.random()) if opt["taker"] else None,
        int(rng.integers(0, 500)) if opt["counts"] else None,
        low + (high - low) * float(rng.random()), *(book if opt["book"] else (None,) * 4),
    )  # fmt: skip


@st.composite
def streams(draw: st.DrawFn) -> list[Bar]:
    """1m bars of a random walk with quiet minutes, skipped 5m/15m boundaries and longer gaps;
    taker volume, trade counts and the book top present in all, none or some of the bars."""
    n = draw(st.integers(1, 240))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    quiet = draw(st.sampled_from([0.0, 0.05, 0.3, 0.7]))
    has = {k: draw(st.sampled_from([0.0, 1.0, 0.9])) for k in ("taker", "counts", "book")}
    minute, close, out = int(rng.integers(0, 30)), 60_000.0, []
    for _ in range(n):
        prev, close = close, close * math.exp(rng.normal(0.0, 1e-3))
        opt = {k: bool(rng.random() < p) for k, p in has.items()}
        out.append(base_bar(minute, close, prev, rng, **opt))
        minute += 1 if rng.random() >= quiet else int(rng.choice([2, 3, 7, 16, 61]))
    return out


# --- the batch definitions


def frame(base: list[Bar]) -> pd.DataFrame:
    cols = ("open_time", "ts_event", "open", "high", "low", "close", "volume", "vwap")
    df = pd.DataFrame({c: [getattr(b, c) for b in base] for c in cols})
    df["buy"] = pd.Series([b.buy_volume for b in base], dtype=float)
    df["count"] = pd.Series([b.trade_count for b in base], dtype=float)
    df["pv"] = df.vwap * df.volume
    return df


def grouped(base: list[Bar], interval: int) -> pd.DataFrame:
    """``groupby(open_time // interval)`` with first/max/min/last/sum; only complete groups (all
    but the last, which is complete when its last base bar ends at the boundary)."""
    df = frame(base)
    g = df.groupby(df.open_time // interval)
    out = g.agg(
        open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"),
        volume=("volume", "sum"), buy=("buy", "sum"), count=("count", "sum"), pv=("pv", "sum"),
        last_end=("ts_event", "max"),
    )  # fmt: skip
    out["buy"] = out.buy.mask(g.buy.apply(lambda s: s.isna().any()))
    out["count"] = out["count"].mask(g["count"].apply(lambda s: s.isna().any()))
    out["open_time"] = out.index * interval
    out["ts_event"] = out.open_time + interval
    out["vwap"] = (out.pv / out.volume).where(out.volume > 0, out.close)
    done = (out.last_end == out.ts_event) | (np.arange(len(out)) < len(out) - 1)
    return out[done].reset_index(drop=True)


def aggregate(base: list[Bar], interval: int) -> list[tuple[int, Bar]]:
    """(index of the base bar that emitted it, higher bar), incrementally."""
    agg = BarAggregator(interval)
    return [(i, h) for i, b in enumerate(base) for h in agg.update(b)]


def batch_bars(base: list[Bar], interval: int) -> list[Bar]:
    """The higher bars as pandas aggregates them (book top of each group's last base bar)."""
    out, last = [], {b.open_time // interval: b for b in base}
    for r in grouped(base, interval).itertuples():
        b = last[r.open_time // interval]
        out.append(Bar(
            "BTCUSDT", r.ts_event, 0, r.open_time, interval, r.open, r.high, r.low, r.close,
            r.volume, None if math.isnan(r.buy) else r.buy,
            None if math.isnan(r.count) else int(r.count), r.vwap, b.bid, b.ask, b.bid_qty,
            b.ask_qty,
        ))  # fmt: skip
    return out


def expected_features(base: list[Bar]) -> list[dict[str, float] | None]:
    """At each base bar ending at t: each timeframe's batch vector of its last bar ending <= t."""
    per_label = []
    for label in LABELS:
        fs, higher = small_features(), batch_bars(base, parse_interval(label))
        vectors = [(h.ts_event, fs.update(h)) for h in higher]
        per_label.append((label, vectors))
    out: list[dict[str, float] | None] = []
    for b in base:
        merged: dict[str, float] | None = {}
        for label, vectors in per_label:
            seen = [v for end, v in vectors if end <= b.ts_event]
            vec = seen[-1] if seen else None
            if vec is None or merged is None:
                merged = None
                continue
            merged |= {f"{k}@{label}": v for k, v in vec.items() if k not in BOOK_TOP_FEATURES}
        out.append(merged)
    return out


def assert_same(got: dict[str, float] | None, want: dict[str, float] | None, where: int) -> None:
    if want is None:
        assert got is None, f"base bar {where}: {got} where the batch has no vector"
        return
    assert got is not None and list(got) == list(want), (where, got, want)
    for k, v in want.items():
        assert math.isclose(got[k], v, rel_tol=RTOL, abs_tol=ATOL), (where, k, got[k], v)


# --- BarAggregator


@pytest.mark.parametrize("label", ["1m", "5m", "15m", "1h"])
@settings(max_examples=60, deadline=None)
@given(base=streams())
def test_higher_bars_equal_a_pandas_groupby(label: str, base: list[Bar]) -> None:
    """Every complete group of base bars is one higher bar: OHLC and counts exact, sums 1e-12."""
    iv = parse_interval(label)
    got, want = [h for _, h in aggregate(base, iv)], grouped(base, iv)
    assert len(got) == len(want)
    if not got:
        return
    cols = ["open_time", "ts_event", "open", "high", "low", "close"]
    exact = [[getattr(h, c) for c in cols] for h in got]
    np.testing.assert_array_equal(np.array(exact, dtype=object), want[cols].to_numpy(object))
    assert all(h.interval_ns == iv and h.symbol == "BTCUSDT" for h in got)
    for field, col in [("volume", "volume"), ("buy_volume", "buy"), ("vwap", "vwap")]:
        vals = np.array([np.nan if getattr(h, field) is None else getattr(h, field) for h in got])
        np.testing.assert_allclose(vals, want[col], rtol=1e-12, atol=1e-300)  # pandas: Kahan sum
    counts = [np.nan if h.trade_count is None else h.trade_count for h in got]
    np.testing.assert_array_equal(counts, want["count"])


@settings(max_examples=100, deadline=None)
@given(base=streams())
def test_a_higher_bar_is_emitted_by_the_first_base_bar_at_or_after_its_end(
    base: list[Bar],
) -> None:
    """Emitted once known complete, never earlier; ts_init and book top from the right bars."""
    iv = 15 * MIN
    for i, h in aggregate(base, iv):
        first = next(j for j, b in enumerate(base) if b.ts_event >= h.ts_event)
        assert i == first
        assert h.ts_init == base[i].ts_init
        last = [b for b in base if h.open_time <= b.open_time < h.ts_event][-1]
        assert (h.bid, h.ask, h.bid_qty, h.ask_qty) == (last.bid, last.ask, last.bid_qty,
                                                        last.ask_qty)  # fmt: skip


def one(i: int, *, buy: float | None = 1.0, vol: float = 2.0, count: int | None = 3) -> Bar:
    """The 1m bar opening at minute ``i`` (close ``i``, received 1 ms after its end)."""
    return Bar("X", (i + 1) * MIN, (i + 1) * MIN + NS_PER_MS, i * MIN, MIN, 1.0 + i, 2.0 + i,
               0.5 + i, 1.0 + i, vol, buy, count, 1.0 + i)  # fmt: skip


def test_one_base_bar_can_complete_a_late_and_its_own_higher_bar() -> None:
    """A quiet last minute: the next 5m bar's closing minute emits both bars, oldest first."""
    agg = BarAggregator(5 * MIN)
    assert agg.update(one(0)) == agg.update(one(3)) == ()
    late, own = agg.update(one(9))
    assert (late.open_time, late.ts_event, late.close, late.volume) == (0, 5 * MIN, 4.0, 4.0)
    assert (own.open_time, own.ts_event, own.open) == (5 * MIN, 10 * MIN, 10.0)
    assert late.ts_init == own.ts_init == one(9).ts_init


def flat(open_time: int, end: int, interval: int) -> Bar:
    return Bar("X", end, end, open_time, interval, 1.0, 1.0, 1.0, 1.0, 1.0, None, None, 1.0)


def test_interval_must_be_a_multiple_of_the_base_interval() -> None:
    """A 15m aggregator refuses 7m bars, and a bar that crosses its boundary."""
    with pytest.raises(ValueError, match="not a multiple"):
        BarAggregator(15 * MIN).update(flat(0, 7 * MIN, 7 * MIN))
    crossing = flat(14 * MIN + 1, 16 * MIN, MIN)
    with pytest.raises(ValueError, match="crosses"):
        BarAggregator(15 * MIN).update(crossing)
    with pytest.raises(ValueError, match="positive"):
        BarAggregator(0)


def test_late_or_repeated_base_bars_are_skipped_and_counted() -> None:
    """A base bar that starts before the previous one ended adds nothing and is counted."""
    agg = BarAggregator(5 * MIN)
    for i in (0, 1, 1, 0, 2, 3):
        agg.update(one(i))
    (h,) = agg.update(one(4))
    assert agg.late == 2 and h.volume == 10.0 and h.trade_count == 15


def test_missing_inputs_and_zero_volume() -> None:
    """buy_volume or trade_count missing in any part → None; no volume → the VWAP is the close."""
    agg = BarAggregator(2 * MIN)
    agg.update(one(0, buy=None, vol=0.0))
    (h,) = agg.update(one(1, count=None, vol=0.0))
    assert (h.buy_volume, h.trade_count, h.vwap, h.close) == (None, None, 2.0, 2.0)


def test_reset_drops_the_open_higher_bar() -> None:
    """After a gap the partial higher bar is gone: the next one holds only bars after the reset."""
    agg = BarAggregator(5 * MIN)
    agg.update(one(0))
    agg.update(one(2))
    agg.reset()
    agg.update(one(3))
    (h,) = agg.update(one(4))
    assert (h.open_time, h.open, h.low, h.volume, h.trade_count) == (0, 4.0, 3.5, 4.0, 6)


def test_real_btcusdt_minutes_match_a_pandas_resample() -> None:
    """Real 1m candles → 15m and 1h bars equal pandas' resample of the same candles."""
    path = shared_path("klines/BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz")
    df = pd.read_csv(path)
    df["typical"] = (df.high + df.low + df.close) / 3.0
    base = [Bar("BTCUSDT", (t + 60_000) * NS_PER_MS, (t + 60_000) * NS_PER_MS, t * NS_PER_MS, MIN,
                o, h, lo, c, v, None, None, tp)
            for t, o, h, lo, c, v, tp in df.itertuples(index=False)]  # fmt: skip
    df.index = pd.to_datetime(df.open_time, unit="ms")
    df["pv"] = df.typical * df.volume
    for label, rule in [("15m", "15min"), ("1h", "1h")]:
        got = [h for _, h in aggregate(base, parse_interval(label))]
        r = df.resample(rule)
        want = r.agg({"open": "first", "high": "max", "low": "min", "close": "last",
                      "volume": "sum", "pv": "sum", "open_time": "count"})  # fmt: skip
        want = want[want.open_time > 0]
        if base[-1].ts_event % parse_interval(label):
            want = want.iloc[:-1]  # the last group is still open
        assert len(got) == len(want) > 2_000
        np.testing.assert_array_equal([h.open_time for h in got], want.index.as_unit("ns").asi8)
        ohlc = [(h.open, h.high, h.low, h.close) for h in got]
        np.testing.assert_array_equal(ohlc, want[["open", "high", "low", "close"]].to_numpy())
        np.testing.assert_allclose([h.volume for h in got], want.volume, rtol=1e-12)
        np.testing.assert_allclose([h.vwap for h in got], want.pv / want.volume, rtol=1e-12)


# --- MultiTimeframe


@settings(max_examples=80, deadline=None)
@given(base=streams())
def test_features_equal_the_batch_features_of_the_last_closed_higher_bar(base: list[Bar]) -> None:
    """At each base bar t, ``@5m``/``@15m`` are the batch vectors of the last bars ending <= t."""
    mtf = MultiTimeframe(LABELS, small_features)
    for i, (b, want) in enumerate(zip(base, expected_features(base), strict=True)):
        got = mtf.update(b)
        assert_same(got, want, i)
        assert got is None or set(got) <= set(mtf.names)


@settings(max_examples=60, deadline=None)
@given(base=streams(), data=st.data())
def test_no_value_from_the_future(base: list[Bar], data: st.DataObject) -> None:
    """Changing, adding or dropping bars after t never changes the features at t."""
    cut = data.draw(st.integers(0, len(base) - 1))
    scale = data.draw(st.floats(0.5, 2.0))
    tail = [Bar(b.symbol, b.ts_event, b.ts_init, b.open_time, b.interval_ns, b.open * scale,
                b.high * scale, b.low * scale, b.close * scale, b.volume * 3.0, b.buy_volume,
                b.trade_count, b.vwap * scale) for b in base[cut + 1 :]]  # fmt: skip
    first, second = MultiTimeframe(LABELS, small_features), MultiTimeframe(LABELS, small_features)
    got = [first.update(b) for b in base]
    other = [second.update(b) for b in base[: cut + 1] + tail[::2]]
    assert got[: cut + 1] == other[: cut + 1]


def test_the_higher_bar_a_base_bar_closes_is_used_at_once() -> None:
    """The 1m bar ending at minute 10 closes the 5m bar [5, 10) and already sees its return."""
    mtf = MultiTimeframe(("5m",), tiny_features)
    out = [mtf.update(one(i)) for i in range(11)]
    assert all(o is None for o in out[:9])
    assert out[9] is not None and out[9]["ret_1@5m"] == math.log(10.0 / 5.0)
    assert out[10] == out[9]  # minute 11 is inside the open 5m bar: nothing new


def test_names_are_fixed_without_the_book_top() -> None:
    """names are each timeframe's FeatureSet names minus spread/book, suffixed, in order."""
    mtf = MultiTimeframe(("15m", "1h"), FeatureSet)
    base = [n for n in FeatureSet().names if n not in BOOK_TOP_FEATURES]
    assert mtf.names == (*(f"{n}@15m" for n in base), *(f"{n}@1h" for n in base))
    assert "ret_1@15m" in mtf.names and "spread_bps@1h" not in mtf.names


def test_inapplicable_features_are_left_out_like_the_feature_set() -> None:
    """Candles without taker volume or counts: the dict lacks flow_imb and intensity, in order."""
    mtf = MultiTimeframe(("5m",), small_features)
    out = [mtf.update(one(i, buy=None, count=None)) for i in range(60)][-1]
    assert out is not None
    assert set(mtf.names) - set(out) == {"flow_imb@5m", "intensity@5m"}
    assert list(out) == [n for n in mtf.names if n in out]


def test_reset_warms_every_timeframe_up_again() -> None:
    """After reset the first vector needs warm-up-many closed higher bars again."""
    mtf = MultiTimeframe(("5m",), small_features)
    assert [mtf.update(one(i)) for i in range(60)][-1] is not None
    mtf.reset()
    out = [mtf.update(one(i)) for i in range(60, 120)]
    assert next(i for i, o in enumerate(out) if o is not None) == 5 * small_features().warmup - 1


@pytest.mark.parametrize("intervals", [(), ("5m", "5m"), ("1h", "60m"), ("1w",)])
def test_bad_intervals_are_rejected(intervals: tuple[str, ...]) -> None:
    """No timeframe, the same length twice, or a calendar interval: ValueError."""
    with pytest.raises(ValueError):
        MultiTimeframe(intervals, small_features)
