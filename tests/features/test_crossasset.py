"""The reference symbol's features equal their pandas definitions and never come from after t."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ares_stream.events import Bar
from ares_stream.features.crossasset import CrossAsset

MIN = 60_000_000_000
T0 = 28_333_320 * MIN
REF, OTHER = "BTCUSDT", "ETHUSDT"
HORIZONS, SPAN, LAG = (1, 3), 4, 2
RTOL, ATOL = 1e-9, 1e-12


def bar(symbol: str, minute: int, close: float) -> Bar:
    """The 1m bar of ``symbol`` opening ``minute`` minutes after T0."""
    end = T0 + (minute + 1) * MIN
    return Bar(symbol, end, end, end - MIN, MIN, close, close, close, close, 1.0, None, None, close)


def small() -> CrossAsset:
    return CrossAsset(REF, return_horizons=HORIZONS, vol_span=SPAN, max_lag_bars=LAG)


def walk(rng: np.random.Generator, n: int, quiet: float) -> tuple[np.ndarray, np.ndarray]:
    """Minutes with quiet stretches (some longer than the lag allows) and a random walk."""
    steps = np.where(rng.random(n) < quiet, rng.choice([2, 3, 4, 9], n), 1)
    return np.cumsum(steps), 60_000.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))


@st.composite
def shards(draw: st.DrawFn) -> list[Bar]:
    """A reference and another symbol, each in time order, interleaved as a shard may see them:
    by end time, but any bar may be handled a few minutes late (its closing trade came late)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    quiet = draw(st.sampled_from([0.0, 0.2, 0.6]))
    lateness = draw(st.sampled_from([0, 1, 5]))
    queues = []
    for symbol in (REF, OTHER):
        minutes, closes = walk(rng, draw(st.integers(1, 60)), quiet)
        handled = np.maximum.accumulate(minutes + rng.integers(0, lateness + 1, len(minutes)))
        bars = [bar(symbol, int(m), float(c)) for m, c in zip(minutes, closes, strict=True)]
        queues.append(list(zip(handled.tolist(), bars, strict=True)))
    out = []
    while queues[0] or queues[1]:  # merge by handling time; ties either way
        keys = [q[0][0] if q else math.inf for q in queues]
        pick = int(rng.integers(0, 2)) if keys[0] == keys[1] else int(keys[1] < keys[0])
        out.append(queues[pick].pop(0)[1])
    return out


def pandas_values(ref: list[Bar]) -> list[dict[str, float] | None]:
    """Each reference bar's values: log returns and the EWMA vol as in EwmaVol's docstring."""
    close = pd.Series([b.close for b in ref], dtype=float)
    cols = {f"ref_ret_{k}": np.log(close / close.shift(k)) for k in HORIZONS}
    r2 = np.log(close / close.shift(1)).pow(2)
    cols["ref_vol"] = r2.ewm(span=SPAN, adjust=False, min_periods=SPAN).mean().pow(0.5)
    rows = pd.DataFrame(cols).to_dict("records")
    return [None if any(math.isnan(v) for v in r.values()) else r for r in rows]


def expected_at(
    t: int, ref: list[Bar], values: list[dict[str, float] | None], history: int
) -> dict[str, float] | None:
    """The last handled reference bar ending <= t, unless stale or beyond the history kept."""
    j = max((i for i, b in enumerate(ref) if b.ts_event <= t), default=None)
    if j is None or len(ref) - j > history or t - ref[j].ts_event > LAG * MIN:
        return None
    return values[j]


def assert_same(got: dict[str, float] | None, want: dict[str, float] | None) -> None:
    if want is None:
        assert got is None
        return
    assert got is not None and list(got) == list(want)
    for k, v in want.items():
        assert math.isclose(got[k], v, rel_tol=RTOL, abs_tol=ATOL), (k, got[k], v)


@settings(max_examples=150, deadline=None)
@given(shard=shards())
def test_values_at_each_bar_equal_pandas_on_the_reference_bars_before_it(shard: list[Bar]) -> None:
    """At another symbol's bar ending at t: pandas' values of the last reference bar ending <= t."""
    ca = small()
    values = pandas_values([b for b in shard if b.symbol == REF])
    handled: list[Bar] = []
    for b in shard:
        ca.on_bar(b)
        if b.symbol == REF:
            handled.append(b)
            assert_same(ca.get(), values[len(handled) - 1])
            continue
        assert_same(ca.get_at(b.ts_event), expected_at(b.ts_event, handled, values, ca.history))


@settings(max_examples=150, deadline=None)
@given(shard=shards(), data=st.data())
def test_a_reference_bar_after_t_never_shows_at_t(shard: list[Bar], data: st.DataObject) -> None:
    """Feeding every reference bar or only those ending <= t gives the same values at t."""
    ref = [b for b in shard if b.symbol == REF]
    t = ref[data.draw(st.integers(0, len(ref) - 1))].ts_event + data.draw(st.integers(-1, 3)) * MIN
    full, past = small(), small()
    for b in ref:
        full.on_bar(b)
        if b.ts_event <= t:
            past.on_bar(b)
    assert full.get_at(t) == past.get_at(t)
    assert full.age_ns(t) == past.age_ns(t)


def warm(ca: CrossAsset, minutes: range) -> None:
    for m in minutes:
        ca.on_bar(bar(REF, m, 100.0 * 1.01**m))


def test_a_stalled_reference_feeds_nothing() -> None:
    """Up to max_lag_bars intervals after the reference's last bar: values; later: None."""
    ca = small()
    warm(ca, range(10))  # the last reference bar ends at minute 10
    assert ca.get_at(T0 + 12 * MIN) == ca.get() is not None
    assert ca.get_at(T0 + 12 * MIN + 1) is None and ca.age_ns(T0 + 13 * MIN) == 3 * MIN
    strict = CrossAsset(REF, HORIZONS, SPAN, max_lag_bars=0)
    warm(strict, range(10))
    assert strict.get_at(T0 + 10 * MIN) is not None and strict.get_at(T0 + 11 * MIN) is None


def test_the_reference_itself_does_not_get_them() -> None:
    """for_symbol is False for the reference, True for the others; other symbols change nothing."""
    ca = CrossAsset()
    assert (ca.reference, ca.for_symbol("BTCUSDT"), ca.for_symbol("SOLUSDT")) == (REF, False, True)
    for m in range(40):
        ca.on_bar(bar(OTHER, m, 3_000.0 + m))
    assert ca.get() is None and ca.get_at(T0 + 41 * MIN) is None


def test_names_and_warm_up_follow_the_parameters() -> None:
    """Names in a fixed order; the first values after max(horizon) + 1 and span + 1 closes."""
    assert CrossAsset().names == ("ref_ret_1", "ref_ret_5", "ref_ret_15", "ref_vol")
    ca = CrossAsset(return_horizons=(2,), vol_span=5)
    assert ca.names == ("ref_ret_2", "ref_vol")
    warm(ca, range(5))
    assert ca.get() is None
    warm(ca, range(5, 6))
    assert ca.get() is not None and ca.get() is not ca.get()  # a new dict each time


def test_queries_older_than_the_history_kept_get_nothing() -> None:
    """Only the last ``history`` reference bars are kept: an older t cannot be answered."""
    ca = CrossAsset(REF, (1,), 1, max_lag_bars=5, history=3)
    warm(ca, range(10))  # kept: the bars ending at minutes 8, 9, 10
    assert ca.get_at(T0 + 8 * MIN) is not None
    assert ca.get_at(T0 + 8 * MIN - 1) is None and ca.age_ns(T0 + 7 * MIN) is None


def test_late_reference_bars_are_skipped_and_reset_warms_up_again() -> None:
    """A reference bar not ending after the last one is counted and ignored; reset forgets all."""
    ca = CrossAsset(REF, (1,), 1)
    warm(ca, range(3))
    before = ca.get()
    ca.on_bar(bar(REF, 2, 1.0))
    ca.on_bar(bar(REF, 0, 1.0))
    assert ca.late == 2 and ca.get() == before
    ca.reset()
    assert ca.get() is None and ca.get_at(T0 + 3 * MIN) is None
    warm(ca, range(3, 5))
    assert ca.get() is not None


@pytest.mark.parametrize(
    "kwargs", [{"return_horizons": ()}, {"return_horizons": (1, 1)}, {"vol_span": 0},
               {"max_lag_bars": -1}, {"history": 0}],
)  # fmt: skip
def test_bad_parameters_are_rejected(kwargs: dict[str, object]) -> None:
    """Empty or repeated horizons, a non-positive span or history, a negative lag: ValueError."""
    with pytest.raises(ValueError):
        CrossAsset(**kwargs)  # type: ignore[arg-type]
