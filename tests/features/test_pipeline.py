"""The feature vector: order, warm-up, applicability per source, reset after a gap."""

from __future__ import annotations

import math
import random

import pytest

from ares_stream.events import Bar
from ares_stream.features.indicators import FlowImbalance, LogReturn, Macd, RollingZ
from ares_stream.features.pipeline import FeatureSet

MIN = 60_000_000_000


def bars(n: int, *, book: bool = True, taker: bool = True, counts: bool = True) -> list[Bar]:
    """``n`` one-minute bars of a 60,000 random walk, with or without each optional input."""
    rng, close, out = random.Random(n), 60_000.0, []
    for i in range(n):
        prev, close = close, close * math.exp(rng.gauss(0, 1e-3))
        vol = rng.lognormvariate(0, 1)
        quote = (close - 0.5, close + 0.5, rng.random(), rng.random()) if book else (None,) * 4
        out.append(Bar(
            "BTCUSDT", (i + 1) * MIN, (i + 1) * MIN + 7, i * MIN, MIN, prev,
            max(prev, close) * 1.0005, min(prev, close) * 0.9995, close, vol,
            vol * rng.random() if taker else None, rng.randrange(1, 900) if counts else None,
            (prev + close) / 2, *quote,
        ))  # fmt: skip
    return out


def run(fs: FeatureSet, series: list[Bar]) -> list[dict[str, float] | None]:
    return [fs.update(b) for b in series]


def test_names_are_ordered_and_follow_the_parameters() -> None:
    """Names list every feature in a fixed order; horizons and the RSI period appear in them."""
    fs = FeatureSet(return_horizons=(2, 3), rsi_period=7)
    assert fs.names == (
        "ret_2", "ret_3", "vol_ewma", "rsi_7", "macd", "macd_signal", "boll_z", "vwap_dev",
        "flow_imb", "intensity", "hl_range", "spread_bps", "book_imb", "volume_z",
    )  # fmt: skip


def test_vector_appears_after_warmup_with_every_feature_in_order() -> None:
    """With every input present the first vector comes at bar ``warmup`` and lists all names."""
    fs = FeatureSet()
    out = run(fs, bars(60))
    first = next(i for i, v in enumerate(out) if v is not None)
    assert first + 1 == fs.warmup == 34
    assert all(v is not None for v in out[first:])
    assert tuple(out[-1] or ()) == fs.names
    assert all(math.isfinite(x) for x in (out[-1] or {}).values())


def test_candles_without_taker_volume_or_book_still_get_a_vector() -> None:
    """Inapplicable features are left out: no buy volume → no flow_imb, no book → no spread."""
    out = run(FeatureSet(), bars(40, book=False, taker=False, counts=False))[-1]
    assert out is not None
    missing = set(FeatureSet().names) - set(out)
    assert missing == {"flow_imb", "intensity", "spread_bps", "book_imb"}


@pytest.mark.parametrize(
    ("kwargs", "absent"),
    [({"book": False}, {"spread_bps", "book_imb"}), ({"taker": False}, {"flow_imb"}),
     ({"counts": False}, {"intensity"})],
)  # fmt: skip
def test_each_optional_input_gates_its_features(kwargs: dict[str, bool], absent: set[str]) -> None:
    """Each missing input removes exactly the features that read it."""
    out = run(FeatureSet(), bars(40, **kwargs))[-1]
    assert out is not None and set(FeatureSet().names) - set(out) == absent


def test_book_features_come_from_the_bar_book_top() -> None:
    """spread_bps and book_imb are computed from the bar's bid/ask and their sizes."""
    series = bars(40)
    out = run(FeatureSet(), series)[-1]
    b = series[-1]
    assert b.bid is not None and b.ask is not None and b.bid_qty is not None and b.ask_qty
    assert out is not None
    assert out["spread_bps"] == pytest.approx((b.ask - b.bid) / ((b.ask + b.bid) / 2) * 1e4)
    assert out["book_imb"] == pytest.approx((b.bid_qty - b.ask_qty) / (b.bid_qty + b.ask_qty))


def test_reset_warms_up_again() -> None:
    """After reset (a data gap) the set is silent for warmup - 1 bars, then speaks again."""
    fs, series = FeatureSet(), bars(120)
    run(fs, series[:60])
    fs.reset()
    out = run(fs, series[60:])
    assert out.index(next(v for v in out if v is not None)) == fs.warmup - 1


def test_values_equal_the_standalone_indicators() -> None:
    """The set feeds each indicator the bar fields its definition names."""
    series = bars(50)
    out = run(FeatureSet(), series)[-1]
    ret, macd, boll, flow = LogReturn(5), Macd(12, 26, 9), RollingZ(20), FlowImbalance(20)
    for b in series:
        ret.update(b.close)
        macd.update(b.close)
        boll.update(b.close)
        flow.update(b.buy_volume or 0.0, b.volume - (b.buy_volume or 0.0))
    assert out is not None
    got = (out["ret_5"], out["macd"], out["macd_signal"], out["boll_z"], out["flow_imb"])
    assert got == (ret.get(), macd.get(), macd.signal(), boll.get(), flow.get())


def test_small_windows_warm_up_sooner() -> None:
    """warmup follows the parameters: the longest window decides."""
    fs = FeatureSet(return_horizons=(1,), vol_span=3, rsi_period=3, macd=(2, 4, 2), boll_window=3,
                    vwap_window=3, flow_window=3, intensity_span=3, volume_window=3)  # fmt: skip
    out = run(fs, bars(10))
    assert fs.warmup == 5 and out[3] is None and out[4] is not None


@pytest.mark.parametrize(
    "kwargs", [{"return_horizons": ()}, {"return_horizons": (1, 1)}, {"macd": (12, 26)},
               {"rsi_period": 0}, {"boll_window": -2}],
)  # fmt: skip
def test_bad_parameters_are_rejected(kwargs: dict[str, object]) -> None:
    """Empty or repeated horizons, a short MACD tuple and non-positive windows are ValueErrors."""
    with pytest.raises(ValueError):
        FeatureSet(**kwargs)  # type: ignore[arg-type]
