"""The simulator: its schedule, its frames (Binance format, ids, klines, book) and its market."""

from __future__ import annotations

import gzip
import time
from collections import defaultdict
from dataclasses import dataclass
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ares_stream.config import Config, replace_values
from ares_stream.errors import AresError
from ares_stream.feed.binance import Decoder
from ares_stream.replay import run_replay
from ares_stream.sim.frames import LATENCY_NS
from ares_stream.sim.simulator import (
    NS,
    STREAMS,
    Regime,
    Schedule,
    SimSpec,
    _Market,
    _market_chunks,
    frames,
    schedule_of,
    write_recording,
)

START = SimSpec().start_ns
HOUR = 3600
decode = msgspec.json.decode


def payloads(spec: SimSpec, kind: str) -> list[dict[str, Any]]:
    """Decoded payloads of one stream kind, in receive order."""
    suffix = f"@{kind}"
    return [decode(p) for _, s, p in frames(spec) if s.endswith(suffix)]


@dataclass
class Tape:
    """A simulated market's aggTrades as arrays: time from the start (ns), price, qty, taker buy."""

    spec: SimSpec
    t: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    buy: np.ndarray

    def block_returns(self) -> np.ndarray:
        """Log return of each block but the first (close = its last trade), and block flows."""
        blk = self.t // (self.spec.block * NS)
        closes = np.full(self.spec.seconds // self.spec.block, np.nan)
        closes[blk] = self.price  # trades are in time order: the last one of a block wins
        for i in np.flatnonzero(np.isnan(closes)):
            closes[i] = closes[i - 1]
        return np.diff(np.log(closes))

    def block_flow(self) -> np.ndarray:
        """Signed taker volume of each block."""
        blk = self.t // (self.spec.block * NS)
        signed = np.where(self.buy, self.qty, -self.qty)
        return np.bincount(blk, weights=signed, minlength=self.spec.seconds // self.spec.block)


@pytest.fixture(scope="module")
def tape() -> Tape:
    """Six simulated hours: beta 0.8, then 0, then -0.8; volatility doubled in quarters 2 and 4."""
    spec = SimSpec(seconds=6 * HOUR, seed=4, streams=("aggTrade",),
                   concept=((0.0, 0.8), (1 / 3, 0.0), (2 / 3, -0.8)))
    rows = payloads(spec, "aggTrade")
    return Tape(spec, np.array([r["T"] for r in rows]) * 1_000_000 - spec.start_ns,
                np.array([float(r["p"]) for r in rows]), np.array([float(r["q"]) for r in rows]),
                np.array([not r["m"] for r in rows]))


# ---- the schedule -----------------------------------------------------------------------------


def test_default_schedule_is_pinned() -> None:
    """The default day: quarters of volatility 1, 2, 1, 2 and beta 0.8 flipping to -0.8 at noon."""
    sched = schedule_of(SimSpec())
    q = 21_600 * NS
    assert sched.regimes == [Regime(START, START + q, 0.8, 1.0),
                             Regime(START + q, START + 2 * q, 0.8, 2.0),
                             Regime(START + 2 * q, START + 3 * q, -0.8, 1.0),
                             Regime(START + 3 * q, START + 4 * q, -0.8, 2.0)]
    assert sched.concept_drifts_ns == [START + 2 * q]
    assert sched.volatility_switches_ns == [START + q, START + 2 * q, START + 3 * q]
    assert (sched.frames, sched.start_ns, sched.seconds) == (0, START, 86_400)


def test_boundaries_round_down_to_a_block_and_equal_regimes_merge() -> None:
    """A boundary lands on the block it falls in; a 'change' to the same beta is no drift."""
    spec = SimSpec(seconds=1001, block=10, concept=((0.0, 0.5), (0.3, 0.5), (0.7, -0.5)),
                   vol_regimes=((0.0, 1.0), (0.555, 3.0)))
    sched = schedule_of(spec)
    assert [((r.start_ns - START) // NS, r.beta, r.vol) for r in sched.regimes] == [
        (0, 0.5, 1.0), (550, 0.5, 3.0), (700, -0.5, 3.0)]
    assert sched.regimes[-1].end_ns == START + 1001 * NS
    assert sched.concept_drifts_ns == [START + 700 * NS]
    assert sched.volatility_switches_ns == [START + 550 * NS]


def test_several_planted_drifts_are_all_scheduled() -> None:
    """A benchmark-style concept (flips every fifth of a day) schedules four concept drifts."""
    concept = ((0.0, 0.8), (0.2, -0.8), (0.4, 0.8), (0.6, -0.8), (0.8, 0.8))
    sched = schedule_of(SimSpec(concept=concept, vol_regimes=((0.0, 1.0),)))
    assert [(t - START) // NS for t in sched.concept_drifts_ns] == [17_280, 34_560, 51_840, 69_120]
    assert sched.volatility_switches_ns == []
    assert [r.beta for r in sched.regimes] == [0.8, -0.8, 0.8, -0.8, 0.8]


def test_schedule_json_round_trips() -> None:
    """to_json/from_json give back the same schedule, spec (and its book_beta) included."""
    spec = SimSpec(seconds=5000, seed=9, symbol="ABCUSDT", streams=("trade", "depth@100ms"),
                   concept=((0.0, 0.1), (0.4, -0.3)), book_beta=2e-4)
    sched = schedule_of(spec)
    sched.frames = 123
    assert Schedule.from_json(sched.to_json()) == sched


@pytest.mark.parametrize(("changes", "named"), [
    ({"seconds": 0}, "seconds"),
    ({"streams": ("aggTrade", "depth5")}, "'depth5'"),
    ({"book_beta": float("inf")}, "book_beta"),
    ({"streams": ()}, "streams"),
    ({"concept": ((0.1, 0.8),)}, "concept"),
    ({"concept": ((0.0, 0.8), (0.6, 0.1), (0.5, -0.8))}, "concept"),
    ({"vol_regimes": ((0.0, 1.0), (1.0, 2.0))}, "vol_regimes"),
    ({"vol_regimes": ((0.0, -1.0),)}, "vol_regimes"),
    ({"sigma": float("nan")}, "sigma"),
    ({"start_ns": START + 1}, "start_ns"),
    ({"symbol": "sim-usdt"}, "symbol"),
])
def test_an_invalid_spec_is_refused_naming_the_field(changes: dict[str, Any], named: str) -> None:
    """A spec that cannot be simulated raises a ValueError (an AresError) that names the problem."""
    with pytest.raises(ValueError, match=named) as info:
        SimSpec(**changes)
    assert isinstance(info.value, AresError)


# ---- frames ------------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    """Frames are a function of the spec: a seed repeats them exactly, another changes them."""
    spec = SimSpec(seconds=900, seed=5, streams=STREAMS)
    first = list(frames(spec))
    assert list(frames(spec)) == first
    assert list(frames(SimSpec(seconds=900, seed=6, streams=STREAMS))) != first


def test_frame_count_and_first_trade_of_a_seed_are_pinned() -> None:
    """Seed 5's first hour: a pinned number of frames and a pinned first aggTrade."""
    spec = SimSpec(seconds=HOUR, seed=5)
    out = list(frames(spec))
    assert len(out) == 34_441
    assert out[0] == (1735689600637378841, "simusdt@aggTrade",
                      b'{"e":"aggTrade","E":1735689600635,"s":"SIMUSDT","a":1,"p":"60000.05000000",'
                      b'"q":"0.00199000","f":1,"l":1,"T":1735689600635,"m":false,"M":true}')


def test_the_market_does_not_depend_on_the_streams_chosen() -> None:
    """Adding streams adds frames but leaves the aggTrades byte-identical."""
    alone = payloads(SimSpec(seconds=1200, seed=2, streams=("aggTrade",)), "aggTrade")
    assert payloads(SimSpec(seconds=1200, seed=2, streams=STREAMS), "aggTrade") == alone


def test_frames_are_generated_lazily_in_chunks() -> None:
    """The first frame of a 100-day market comes at once: nothing beyond the first hour is built.

    (Building all 100 days, some 70 million frames, would take many minutes: the generous bound
    tells the two apart on a busy machine too.)"""
    started = time.perf_counter()
    next(frames(SimSpec(seconds=100 * 86_400)))
    assert time.perf_counter() - started < 30.0


@settings(max_examples=25, deadline=None)
@given(seconds=st.integers(1, 400), block=st.integers(1, 5000), offset=st.integers(0, 2 * HOUR),
       seed=st.integers(0, 2**32), streams=st.sets(st.sampled_from(STREAMS), min_size=1))
def test_any_spec_gives_decodable_ordered_consecutive_frames(
    seconds: int, block: int, offset: int, seed: int, streams: set[str]
) -> None:
    """Any spec: receive times increase, all frames decode, ids and kline times are consecutive."""
    spec = SimSpec(seconds=seconds, block=block, seed=seed, streams=tuple(streams),
                   start_ns=START - HOUR * NS + offset * NS, trades_per_second=5.0)
    decoder, last_recv = Decoder(), 0
    ids: dict[str, list[int]] = defaultdict(list)
    for recv, stream, payload in frames(spec):
        assert recv > last_recv
        last_recv = recv
        event = decoder.decode(b'{"stream":"%s","data":%s}' % (stream.encode(), payload), recv)
        assert event is not None and event.symbol == "SIMUSDT"
        assert spec.start_ns <= event.ts_event <= spec.start_ns + (seconds + 1) * NS
        kind = stream.partition("@")[2]
        if kind.startswith("kline"):
            ids[kind].append(event.open_time)  # type: ignore[union-attr]
        elif kind.startswith("depth"):
            ids[kind].extend(range(event.first_update_id,  # type: ignore[union-attr]
                                   event.final_update_id + 1))  # type: ignore[union-attr]
        else:
            ids[kind].append(getattr(event, "trade_id", None) or event.update_id)  # type: ignore[union-attr]
    for kind in ("trade", "aggTrade", "bookTicker", "depth@100ms", "depth"):
        assert ids[kind] == list(range(1, len(ids[kind]) + 1))
    assert np.all(np.diff(np.unique(ids["kline_1s"])) == NS)
    assert np.all(np.diff(np.unique(ids["kline_1m"])) == 60 * NS)
    assert len(ids["kline_1s"]) == len(set(ids["kline_1s"]))


def test_trades_are_the_fills_of_the_agg_trades() -> None:
    """Each aggTrade's f..l trades share its price, time and side, and their qty sums to its qty."""
    spec = SimSpec(seconds=1800, seed=3, streams=("trade", "aggTrade"))
    trades = {t["t"]: t for t in payloads(spec, "trade")}
    for agg in payloads(spec, "aggTrade"):
        fills = [trades.pop(i) for i in range(agg["f"], agg["l"] + 1)]
        assert {(f["p"], f["T"], f["m"]) for f in fills} == {(agg["p"], agg["T"], agg["m"])}
        assert round(sum(float(f["q"]) for f in fills), 5) == float(agg["q"])
    assert not trades


def test_the_book_after_a_trade_quotes_its_price() -> None:
    """A buy fills at the ask and a sell at the bid of the book update that follows it, if any."""
    spec = SimSpec(seconds=1800, seed=8, streams=("aggTrade", "bookTicker"))
    seen = [(s.endswith("aggTrade"), decode(p)) for _, s, p in frames(spec)]
    spreads = {round(float(b["a"]) - float(b["b"]), 2) for is_agg, b in seen if not is_agg}
    assert spreads == {0.01, 0.02}
    pairs = [(a, b) for (agg, a), (agg_next, b) in pairwise(seen) if agg and not agg_next]
    assert len(pairs) > 0.7 * sum(agg for agg, _ in seen)  # 1 - exp(-1.5) of trades have one
    assert all(a["p"] == (b["b"] if a["m"] else b["a"]) for a, b in pairs)


def test_klines_summarise_the_trades() -> None:
    """Closed 1m klines carry the open, high, low, close, volumes and trade ids of their trades."""
    spec = SimSpec(seconds=1800, seed=6, streams=("aggTrade", "kline_1m"))
    aggs = payloads(spec, "aggTrade")
    klines = [k["k"] for k in payloads(spec, "kline_1m")]
    assert [k["x"] for k in klines[:30]] == [False] * 29 + [True]
    for k in (k for k in klines if k["x"]):
        inside = [a for a in aggs if k["t"] <= a["T"] <= k["T"]]
        prices = [float(a["p"]) for a in inside]
        assert [float(k[f]) for f in "ochl"] == [prices[0], prices[-1], max(prices), min(prices)]
        assert float(k["v"]) == round(sum(float(a["q"]) for a in inside), 5)
        assert float(k["V"]) == round(sum(float(a["q"]) for a in inside if not a["m"]), 5)
        assert float(k["q"]) == pytest.approx(sum(p * float(a["q"]) for p, a in zip(
            prices, inside, strict=True)), abs=1e-6)
        assert (k["f"], k["L"], k["n"]) == (inside[0]["f"], inside[-1]["l"],
                                            inside[-1]["l"] - inside[0]["f"] + 1)


def test_recording_replays_with_no_rejected_frames_and_no_gaps(tmp_path: Path) -> None:
    """A two-hour recording of every stream replays: all frames decoded, no gap, no duplicate."""
    path = tmp_path / "sim.gz"
    spec = SimSpec(seconds=2 * HOUR, seed=12, streams=STREAMS, start_ns=START - 1830 * NS)
    sched = write_recording(path, spec)
    assert Schedule.from_json(Path(f"{path}.schedule.json").read_bytes()) == sched
    cfg = replace_values(Config(), {"bars": {"interval": "10s"}, "batch": {"enabled": False}})
    result = run_replay([str(path)], cfg, db_path=tmp_path / "r.db")
    counts = result.summary["counts"]
    assert result.frames == sched.frames > 40_000
    assert [counts.get(k, 0) for k in ("rejected", "gaps", "duplicates")] == [0, 0, 0]
    assert result.summary["bars"] >= 700


def test_the_old_keyword_call_still_writes_a_recording(tmp_path: Path) -> None:
    """write_recording(path, seconds=…, seed=…, symbol=…) writes one line per frame (plain text)."""
    sched = write_recording(tmp_path / "x.txt", seconds=60, seed=1, symbol="XUSDT")
    lines = (tmp_path / "x.txt").read_bytes().splitlines()
    assert len(lines) == sched.frames > 100
    assert lines[0].split(b" ", 1)[1].startswith(b'{"stream":"xusdt@aggTrade","data":{')
    gz = write_recording(tmp_path / "x.gz", seconds=60, seed=1, symbol="XUSDT")
    assert gzip.decompress((tmp_path / "x.gz").read_bytes()).splitlines() == lines
    assert gz.concept_drifts_ns == [gz.start_ns + 30 * NS]


# ---- the market --------------------------------------------------------------------------------


def test_block_flow_predicts_the_next_block_return_with_the_sign_of_beta(tape: Tape) -> None:
    """Flow → next return: strongly positive while beta = 0.8, nil at 0, negative at -0.8."""
    flow, ret = tape.block_flow()[:-1], tape.block_returns()
    third = len(ret) // 3
    corr = [np.corrcoef(flow[i * third:(i + 1) * third], ret[i * third:(i + 1) * third])[0, 1]
            for i in range(3)]
    assert corr[0] > 0.4 and abs(corr[1]) < 0.15 and corr[2] < -0.4, corr


def test_past_returns_do_not_predict(tape: Tape) -> None:
    """The signal is only in the order flow: block returns are not autocorrelated."""
    ret = tape.block_returns()
    assert abs(np.corrcoef(ret[:-1], ret[1:])[0, 1]) < 0.1


def test_volatility_regimes_show_in_realised_volatility_and_trade_rate(tape: Tape) -> None:
    """Quarters 2 and 4 (multiplier 2) have about twice the volatility and twice the trades."""
    ret = tape.block_returns()
    high = (np.arange(ret.size) * 4 // ret.size) % 2 == 1
    assert 1.4 < ret[high].std() / ret[~high].std() < 3.0  # 1.7-2.6 over seeds 0-11
    quarter = tape.t * 4 // (tape.spec.seconds * NS)
    assert 1.4 < np.sum(quarter % 2 == 1) / np.sum(quarter % 2 == 0) < 3.0  # 1.8-2.5


def test_volatility_is_stochastic_and_trade_intensity_follows_it(tape: Tape) -> None:
    """Within one regime, 5-minute trade counts vary far beyond Poisson and track realised vol."""
    ret = tape.block_returns()[: tape.spec.seconds // 4 // tape.spec.block]  # first quarter
    window = 300 // tape.spec.block
    vol = ret[: ret.size // window * window].reshape(-1, window).std(axis=1)
    counts = np.bincount(tape.t // (300 * NS))[: vol.size]
    assert counts.std() / counts.mean() > 2 / np.sqrt(counts.mean())  # twice the Poisson spread
    assert np.corrcoef(counts, vol)[0, 1] > 0.5


def test_trade_sizes_are_heavy_tailed(tape: Tape) -> None:
    """Sizes have a Pareto tail of index about 2.2 (Hill estimate) and a huge kurtosis."""
    q = np.sort(tape.qty)[::-1]
    k = q.size // 50
    hill = 1 / np.mean(np.log(q[:k] / q[k]))
    kurtosis = np.mean((q - q.mean()) ** 4) / q.var() ** 2
    assert 1.7 < hill < 2.8 and kurtosis > 20 and q.min() >= 0.001
    assert np.all(np.round(q, 5) == q)


def test_a_long_spec_streams_its_first_hours() -> None:
    """The first 25,000 frames (under an hour of default streams) of a long spec stream out.

    How fast (well under a second here, fast enough to serve) is a benchmark's to measure: a
    test on a busy machine can only say that they come."""
    n = sum(1 for _ in islice(frames(SimSpec(seed=1)), 25_000))
    assert n == 25_000


def book_slope(book_beta: float, seed: int = 0) -> float:
    """OLS slope of each block's log mid return on the top-of-book imbalance at its start, over
    six hours of bookTicker (no flow signal, one volatility regime)."""
    spec = SimSpec(seconds=6 * HOUR, seed=seed, streams=("bookTicker",), book_beta=book_beta,
                   concept=((0.0, 0.0),), vol_regimes=((0.0, 1.0),))
    quotes = [(recv - LATENCY_NS, decode(p)) for recv, _, p in frames(spec)]  # ≈ event time
    t = np.array([q[0] for q in quotes])
    bid, ask, bid_qty, ask_qty = (np.array([float(q[1][k]) for q in quotes]) for k in "baBA")
    starts = spec.start_ns + np.arange(1, spec.seconds // spec.block) * spec.block * NS
    last = np.searchsorted(t, starts) - 1  # the last quote before each block starts
    imbalance = ((bid_qty - ask_qty) / (bid_qty + ask_qty))[last]
    returns = np.diff(np.log((bid + ask) / 2)[last])
    return float(np.polyfit(imbalance[:-1], returns, 1)[0])


def test_the_planted_book_imbalance_predicts_the_next_block_return() -> None:
    """With book_beta the next block's return has slope ≈ book_beta on the top imbalance; 0 without.

    The quote before a block's end comes about half a second early, so the measured block
    return misses that much of the planted drift: the slope reads ~5% low (0.91-0.97 of
    book_beta over seeds 0-3); without the effect it is within ±2e-5 (a standard error ~1.2e-5)."""
    assert 0.85 * 5e-4 < book_slope(5e-4) < 1.02 * 5e-4
    assert abs(book_slope(0.0)) < 4e-5


def test_book_beta_changes_prices_only() -> None:
    """The book effect moves the path (so the prices), not the times, sizes, sides or ids."""
    plain = payloads(SimSpec(seconds=900, seed=7, streams=("aggTrade",)), "aggTrade")
    tilted = payloads(SimSpec(seconds=900, seed=7, streams=("aggTrade",), book_beta=1e-3),
                      "aggTrade")
    assert [{**a, "p": 0} for a in tilted] == [{**a, "p": 0} for a in plain]
    assert [a["p"] for a in tilted] != [a["p"] for a in plain]


@pytest.mark.parametrize(("block", "offset", "seconds"), [(7, 1234, 2 * HOUR + 50),
                                                          (5000, 100, 4 * HOUR), (1, 3599, 7300)])
def test_the_planted_imbalance_is_the_books_top_at_each_block_start(
    block: int, offset: int, seconds: int
) -> None:
    """The imbalance each block's drift uses is the depth book's top imbalance at the block's
    start (0 in the first block), also for blocks that span chunks (private: the carry)."""
    spec = SimSpec(seconds=seconds, seed=3, block=block, start_ns=START - offset * NS,
                   book_beta=1e-3)
    market = _Market(spec, schedule_of(spec), depth=True, record=True)
    planted, per_second = [], market._imbalance.per_second

    def spy(*args: Any) -> np.ndarray:
        planted.append(per_second(*args))
        return planted[-1]

    market._imbalance.per_second = spy  # type: ignore[method-assign]
    tops = []
    for _ in _market_chunks(market):
        assert market.book is not None and market.book.recorded is not None
        for _, bids, asks in market.book.recorded:
            bid, ask = bids[max(bids)], asks[min(asks)]
            tops.append((bid - ask) / (bid + ask))
        market.book.recorded.clear()
    seconds_block = np.arange(seconds) // block
    drift = np.concatenate(planted)
    assert np.all(drift[seconds_block == 0] == 0.0)
    starts = np.searchsorted(seconds_block, np.arange(1, seconds_block[-1] + 1))
    assert np.allclose(drift[starts], tops[:starts.size])
