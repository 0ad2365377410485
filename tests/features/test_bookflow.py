"""Every bar's book features equal an exact batch recomputation from the recorded book states
(plain dicts, ``sorted``, Fractions), on any sequence of snapshots, diffs and bar closes, and on
the real BTCUSDT capture, where the order-flow imbalance moves with the mid as the paper says."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ares_stream.features.book import BookSync, OrderBook
from ares_stream.features.bookflow import BookFeatures, ofi_event
from tests.features.test_book import SPOT_0808, _levels, _set, spot_capture

Side = dict[float, float]
Top = tuple[float, float, float, float]
Log = list[tuple[Any, ...]]  # ("update", run, top | None) and ("bar", run, bids, asks, synced)

# --- the batch definition, from the recorded states only


def _top(bids: Side, asks: Side) -> Top | None:
    if not bids or not asks:
        return None
    pb, pa = max(bids), min(asks)
    return pb, bids[pb], pa, asks[pa]


def _e(prev: Top, top: Top) -> Fraction:
    """The paper's e_n, exactly."""
    pb, qb, pa, qa = map(Fraction, top)
    ppb, pqb, ppa, pqa = map(Fraction, prev)
    return ((qb if pb >= ppb else 0) - (pqb if pb <= ppb else 0)
            - (qa if pa <= ppa else 0) + (pqa if pa >= ppa else 0))  # fmt: skip


def _imb(b: Fraction, a: Fraction) -> Fraction:
    return (b - a) / (b + a) if b + a else Fraction(0)


def _inside(levels: Side, bid: bool, mid: float, bps: float) -> Fraction:
    """The levels within ``bps`` of the mid, by the documented float condition, summed exactly."""
    sign = -1.0 if bid else 1.0
    return sum((Fraction(q) for p, q in levels.items() if sign * (p - mid) * 1e4 <= bps * mid),
               Fraction(0))  # fmt: skip


def _depth(bids: Side, asks: Side, levels: int) -> tuple[Fraction, Fraction]:
    """The bid and ask quantity of the top ``levels`` levels, exactly."""
    b = sum((Fraction(q) for _, q in sorted(bids.items(), reverse=True)[:levels]), Fraction(0))
    return b, sum((Fraction(q) for _, q in sorted(asks.items())[:levels]), Fraction(0))


def _features(bids: Side, asks: Side, pairs: Sequence[tuple[Top | None, Top | None]],
              prev_total: Fraction, levels: int, bps: float) -> dict[str, float]:  # fmt: skip
    """One bar's features; ``pairs`` holds (previous, current) best levels of the bar's updates."""
    b, a = _depth(bids, asks, levels)
    top = _top(bids, asks)
    assert top is not None
    pb, qb, pa, qa = map(Fraction, top)
    mid = (pb + pa) / 2
    fmid = (top[0] + top[2]) / 2.0  # the float mid decides which levels are inside ``bps``
    flow = sum((_e(p, t) for p, t in pairs if p and t), Fraction(0))
    depth = [(Fraction(t[1]) + Fraction(t[3])) / 2 for _, t in pairs if t]
    mean = sum(depth, Fraction(0)) / len(depth) if depth else Fraction(0)
    return {
        "depth_imb_k": float(_imb(b, a)),
        "depth_imb_bps": float(_imb(_inside(bids, True, fmid, bps),
                                    _inside(asks, False, fmid, bps))),
        "microprice_dev": float(((pa * qb + pb * qa) / (qb + qa) - mid) / mid * 10_000),
        "ofi": float(flow / mean) if mean else 0.0,
        "book_spread_bps": float((pa - pb) / mid * 10_000),
        "depth_chg": math.log(float((b + a) / prev_total)),
    }  # fmt: skip


def batch(log: Log, levels: int, bps: float) -> list[dict[str, float] | None]:
    """Each bar's features: None unless the book is synced with both sides at this close and was
    at the previous close too, with no reload (a new ``run``) between them. A bar's OFI pairs
    each of its updates with the update before it (maybe in the previous bar) in the same run."""
    out: list[dict[str, float] | None] = []
    updates: list[tuple[int, Top | None]] = []
    start, last_close = 0, None
    for entry in log:
        if entry[0] == "update":
            updates.append(entry[1:])
            continue
        _, run, bids, asks, synced = entry
        pairs = [(updates[n - 1][1] if n and updates[n - 1][0] == run else None, updates[n][1])
                 for n in range(start, len(updates))]  # fmt: skip
        start = len(updates)
        ok = synced and _top(bids, asks) is not None
        prev, last_close = last_close, ((run, sum(_depth(bids, asks, levels))) if ok else None)
        if not ok or prev is None or prev[0] != run:
            out.append(None)
        else:
            out.append(_features(bids, asks, pairs, prev[1], levels, bps))
    return out


def assert_bars_equal(
    got: list[dict[str, float] | None], want: list[dict[str, float] | None]
) -> None:
    """The same warm-up, the same keys in ``names`` order, every value to rtol 1e-9."""
    assert [g is None for g in got] == [w is None for w in want]
    for g, w in zip(got, want, strict=True):
        if g is None or w is None:
            continue
        assert tuple(g) == BookFeatures.names
        for k in g:
            assert math.isclose(g[k], w[k], rel_tol=1e-9, abs_tol=1e-12), (k, g[k], w[k])


# --- random books, diffs and bar closes

PRICES = (59_000.0, 59_950.0, 59_990.0, 59_999.5, 59_999.98, 59_999.99, 60_000.0, 60_000.01,
          60_000.5, 60_010.0, 60_050.0, 61_000.0)  # fmt: skip
bid_price = st.sampled_from(PRICES[:6]) | st.floats(59_000.0, 59_999.99)
ask_price = st.sampled_from(PRICES[6:]) | st.floats(60_000.0, 61_000.0)
qty = st.sampled_from([0.0, 0.0, 1e-8, 0.00123, 1.5, 40.0]) | st.floats(1e-8, 1e3)
sides = st.tuples(st.lists(st.tuples(bid_price, qty), max_size=6),
                  st.lists(st.tuples(ask_price, qty), max_size=6))  # fmt: skip
op = st.one_of(
    *[st.tuples(st.just("apply"), sides)] * 4,
    st.tuples(st.just("load"), sides),
    st.tuples(st.just("clear"), st.none()),
    st.tuples(st.just("wipe"), st.booleans()),  # a diff that empties one side (True: the bids)
    *[st.tuples(st.just("bar"), st.just(True))] * 2,
    st.tuples(st.just("bar"), st.just(False)),  # the caller's BookSync is not synced
)


def replay(ops: list[tuple[str, Any]], scale: float, levels: int, bps: float) -> tuple[
        list[dict[str, float] | None], Log]:  # fmt: skip
    """Drive an OrderBook and BookFeatures; record every update's best levels and every close."""
    book, features = OrderBook(), BookFeatures(levels, bps)
    bids: Side = {}
    asks: Side = {}
    got: list[dict[str, float] | None] = []
    log: Log = []
    run = 0
    for kind, arg in ops:
        if kind == "bar":
            got.append(features.on_bar(book, arg))
            log.append(("bar", run, dict(bids), dict(asks), arg))
            continue
        if kind == "wipe":
            b, a = ([(p, 0.0) for p in bids], []) if arg else ([], [(p, 0.0) for p in asks])
            kind = "apply"
        else:
            b, a = ([(p * scale, q) for p, q in side] for side in (arg or ([], [])))
        if kind in ("load", "clear"):
            run += 1
            bids, asks = {}, {}
            book.load(b, a)
        else:
            book.apply(b, a)
        _set(bids, b)
        _set(asks, a)
        features.on_update(book)
        log.append(("update", run, _top(bids, asks)))
    return got, log


@settings(max_examples=400, deadline=None)
@given(
    sides,
    st.lists(op, max_size=60),
    st.sampled_from([1.0, 1e-4, 0.37]),
    st.sampled_from([1, 2, 3, 10]),
    st.sampled_from([0.0, 0.5, 1.7, 10.0, 250.0]),
)
def test_features_equal_the_batch_definition(first: tuple[list[Any], list[Any]],
                                             ops: list[tuple[str, Any]], scale: float,
                                             levels: int, bps: float) -> None:  # fmt: skip
    """On any snapshots, diffs, clears and closes, each bar equals the exact batch value."""
    got, log = replay([("load", first), *ops], scale, levels, bps)
    assert_bars_equal(got, batch(log, levels, bps))


# --- pinned behaviour


@pytest.mark.parametrize(("prev", "top", "e"), [
    ((99.0, 2.0, 101.0, 1.0), (99.5, 1.0, 101.0, 1.0), 1.0),  # a better bid: + its size
    ((99.0, 2.0, 101.0, 1.0), (99.0, 5.0, 101.0, 1.0), 3.0),  # the bid grows
    ((99.0, 2.0, 101.0, 1.0), (98.5, 4.0, 101.0, 1.0), -2.0),  # the bid is taken out
    ((99.0, 2.0, 101.0, 1.0), (99.0, 2.0, 100.5, 3.0), -3.0),  # a better ask
    ((99.0, 2.0, 101.0, 1.0), (99.0, 2.0, 101.5, 3.0), 1.0),  # the ask is taken out
])  # fmt: skip
def test_ofi_event_signs(prev: Top, top: Top, e: float) -> None:
    """Each of the paper's cases: bids arriving add flow, asks arriving remove it."""
    assert ofi_event(prev, top) == e


def test_warm_up_sync_and_reload() -> None:
    """The first bar after a snapshot, an unsynced bar and the bar after it, and the bar after a
    reload are None; a bar without an update has ofi 0.0."""
    book, f = OrderBook(), BookFeatures(levels=2)
    book.load([(99.0, 1.0)], [(101.0, 1.0)])
    f.on_update(book)
    assert f.on_bar(book) is None
    out = f.on_bar(book)
    assert out is not None and out["ofi"] == 0.0 and out["depth_chg"] == 0.0
    assert f.on_bar(book, synced=False) is None and f.on_bar(book) is None
    assert f.on_bar(book) is not None
    book.load([(99.0, 1.0)], [(101.0, 1.0)])  # seen through book.epoch
    assert f.on_bar(book) is None and f.on_bar(book) is not None
    f.reset()
    assert f.on_bar(book) is None
    book.clear()
    assert f.on_bar(book) is None


def test_a_side_missing_for_a_while() -> None:
    """Updates while a side is empty add no flow and no depth; the bar still closes normally."""
    book, f = OrderBook(), BookFeatures(levels=2)
    book.load([(99.0, 1.0)], [(101.0, 1.0)])
    f.on_update(book)
    assert f.on_bar(book) is None
    for bids, asks in (([], [(101.0, 0.0)]), ([], [(101.5, 2.0)]), ([(99.0, 3.0)], [])):
        book.apply(bids, asks)
        f.on_update(book)
    out = f.on_bar(book)
    assert out is not None and out["ofi"] == 2.0 / ((1.5 + 2.5) / 2)  # only the last pair counts


def test_arguments_are_checked() -> None:
    """levels must be a positive int and bps a finite non-negative number."""
    for bad in ({"levels": 0}, {"levels": 2.0}, {"bps": -1.0}, {"bps": math.nan},
                {"bps": math.inf}):  # fmt: skip
        with pytest.raises(ValueError):
            BookFeatures(**bad)


# --- the real capture


def test_real_capture_bars_equal_batch_and_ofi_moves_the_mid() -> None:
    """BTCUSDT spot, one-second bars of exchange time: 346 bars, only the first None, every bar
    equal to the batch value from a dict book, and the bar's OFI correlated with its change of
    mid (Cont, Kukanov & Stoikov's linear price impact; 0.48 here) above 0.3."""
    sync, features = BookSync(), BookFeatures()
    bids: Side = {}
    asks: Side = {}
    got: list[dict[str, float] | None] = []
    log: Log = []
    mids: list[float | None] = []
    pending: list[tuple[int, list[tuple[float, float]], list[tuple[float, float]]]] = []
    bar = None
    for kind, d in spot_capture(SPOT_0808):
        if kind == "snapshot":
            last = d["lastUpdateId"]
            applied = sync.on_snapshot(last, _levels(d["bids"]), _levels(d["asks"]))
            assert applied == sum(u > last for u, _, _ in pending) == 1
            bids, asks = dict(_levels(d["bids"])), dict(_levels(d["asks"]))
            for _, b, a in (p for p in pending if p[0] > last):
                _set(bids, b)
                _set(asks, a)
            features.on_update(sync.book)
            log.append(("update", 1, _top(bids, asks)))
        elif kind == "depth@100ms":
            if bar is not None and d["E"] // 1000 != bar:
                got.append(features.on_bar(sync.book, sync.synced))
                log.append(("bar", 1, dict(bids), dict(asks), sync.synced))
                mids.append(sync.book.mid())
            bar = d["E"] // 1000
            b, a = _levels(d["b"]), _levels(d["a"])
            verdict = sync.on_diff(d["U"], d["u"], None, b, a)
            if verdict == "buffered":
                pending.append((d["u"], b, a))
            elif verdict == "applied":
                _set(bids, b)
                _set(asks, a)
                features.on_update(sync.book)
                log.append(("update", 1, _top(bids, asks)))
    assert len(got) == 346 and [n for n, g in enumerate(got) if g is None] == [0]
    assert_bars_equal(got, batch(log, features.levels, features.bps))
    moves = zip(got[1:], mids[1:], mids[:-1], strict=True)
    pairs = [(g["ofi"], math.log(m / p)) for g, m, p in moves if g and m and p]
    assert statistics.correlation(*zip(*pairs, strict=True)) > 0.3
