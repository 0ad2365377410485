"""The local order book equals a plain-dict book; BookSync never serves a wrong book, on random
streams with lost, repeated and reordered diffs and on real spot and USD-M futures captures."""

from __future__ import annotations

import bisect
import gzip
import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ares_stream.features.book import BookSync, OrderBook
from tests.conftest import shared_path

Side = dict[float, float]

# --- OrderBook against two plain dicts


def _set(side: Side, levels: list[tuple[float, float]]) -> None:
    for p, q in levels:
        if q:
            side[p] = q
        else:
            side.pop(p, None)


def _best_first(side: Side, bid: bool) -> list[tuple[float, float]]:
    return sorted(side.items(), reverse=bid)


def _within(side: Side, bid: bool, mid: float, bps: float) -> float:
    """Every level filtered by the documented condition, summed best first."""
    sign = -1.0 if bid else 1.0
    total = 0.0
    for p, q in _best_first(side, bid):
        if sign * (p - mid) * 1e4 <= bps * mid:
            total += q
    return total


def _levels_of(book: OrderBook) -> tuple[Side, Side]:
    return dict(book.top("bid", 10**9)), dict(book.top("ask", 10**9))


def _assert_same(book: OrderBook, bids: Side, asks: Side) -> None:
    """Every query of ``book`` answers as the dict book does."""
    assert _levels_of(book) == (bids, asks) and len(book) == len(bids) + len(asks)
    bb = max(bids.items()) if bids else None
    ba = min(asks.items()) if asks else None
    assert (book.best_bid(), book.best_ask()) == (bb, ba)
    mid = (bb[0] + ba[0]) / 2.0 if bb and ba else None
    assert book.mid() == mid
    assert book.crossed() == bool(bb and ba and bb[0] >= ba[0])
    for k in (0, 1, 3):
        assert book.top("bid", k) == _best_first(bids, True)[:k]
        assert book.top("ask", k) == _best_first(asks, False)[:k]
    for bps in (0.0, 1.0, 25.0, 1e4):
        for side, levels, bid in (("bid", bids, True), ("ask", asks, False)):
            want = 0.0 if mid is None else _within(levels, bid, mid, bps)
            assert book.depth_within(side, bps) == want


price = st.sampled_from([60_000.0, 60_000.01, 60_000.02, 60_003.5, 59_990.0, 60_012.0]) | st.floats(
    59_000.0, 61_000.0)  # fmt: skip
qty = st.sampled_from([0.0, 0.0, 1e-8, 0.00123, 1.5, 40.0]) | st.floats(1e-8, 1e3)
levels = st.lists(st.tuples(price, qty), max_size=8)
ops = st.lists(st.tuples(st.sampled_from(["load", "apply", "apply", "clear"]), levels, levels),
               max_size=25)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(ops)
def test_order_book_equals_a_dict_book(ops: list[tuple[str, list[Any], list[Any]]]) -> None:
    """After any sequence of snapshots, diffs and clears every query equals the dict book's."""
    book, bids, asks = OrderBook(), {}, {}
    for op, b, a in ops:
        if op == "clear":
            book.clear()
            bids, asks = {}, {}
        else:
            if op == "load":
                book.load(b, a)
                bids, asks = {}, {}
            else:
                book.apply(b, a)
            _set(bids, b)
            _set(asks, a)
        _assert_same(book, bids, asks)


def test_order_book_basics() -> None:
    """Removing an absent level is a no-op, a snapshot replaces everything, sides are checked."""
    book = OrderBook()
    assert book.best_bid() is None and book.mid() is None and book.depth_within("bid", 10) == 0.0
    book.load([(10.0, 1.0), (9.0, 0.0)], [(11.0, 2.0)])
    book.apply([(8.0, 0.0)], [(12.0, 0.0)])
    assert _levels_of(book) == ({10.0: 1.0}, {11.0: 2.0})
    book.load([(5.0, 1.0)], [])
    assert _levels_of(book) == ({5.0: 1.0}, {}) and not book.crossed()
    book.apply([], [(5.0, 1.0)])
    assert book.crossed()
    with pytest.raises(ValueError, match="side"):
        book.top("buy", 1)


# --- a random stream: single updates grouped into diffs, the truth at every update id


@dataclass
class Stream:
    """One symbol's updates (id → one level set) grouped into diffs, as Binance sends them."""

    futures: bool
    base: int  # the update id of the initial book
    initial: tuple[Side, Side]
    ids: list[int] = field(default_factory=list)
    updates: list[tuple[int, float, float]] = field(default_factory=list)  # side, price, qty
    diffs: list[tuple[int, int, int | None, list[Any], list[Any]]] = field(default_factory=list)

    def state(self, upto: int) -> tuple[Side, Side]:
        """The true book after every update with id <= ``upto``."""
        book = (dict(self.initial[0]), dict(self.initial[1]))
        for uid, (side, p, q) in zip(self.ids, self.updates, strict=True):
            if uid > upto:
                break
            _set(book[side], [(p, q)])
        return book


def make_stream(rng: random.Random, futures: bool) -> Stream:
    """Bids on 90..99 and asks on 101..110, so the true book never crosses."""
    grid = ([90.0 + i for i in range(10)], [101.0 + i for i in range(10)])
    qtys = [0.0, 0.0, 0.5, 1.0, 2.25, 7.0]
    initial = tuple({p: rng.choice(qtys[2:]) for p in g if rng.random() < 0.6} for g in grid)
    s = Stream(futures, rng.randrange(10**6), (initial[0], initial[1]))
    uid = s.base
    for _ in range(rng.randint(1, 80)):
        uid += rng.randint(1, 4) if futures else 1  # futures ids are shared by every symbol
        side = rng.randrange(2)
        s.ids.append(uid)
        s.updates.append((side, rng.choice(grid[side]), rng.choice(qtys)))
    i, prev = 0, s.base
    while i < len(s.ids):
        j = min(i + rng.randint(1, 4), len(s.ids))
        sides: tuple[Side, Side] = ({}, {})
        for side, p, q in s.updates[i:j]:
            sides[side][p] = q  # the diff carries each touched level's last quantity
        pu = prev if futures else None
        s.diffs.append((s.ids[i], s.ids[j - 1], pu, list(sides[0].items()), list(sides[1].items())))
        i, prev = j, s.ids[j - 1]
    return s


def deliveries(rng: random.Random, s: Stream, lossy: bool) -> Iterator[tuple[str, Any]]:
    """The diffs as a flaky feed delivers them, with snapshots and resets at random points."""
    pool = [s.base, *s.ids]
    p_drop, p_dup, p_swap = (rng.choice([0.0, 0.05, 0.2]) for _ in range(3)) if lossy else (0, 0, 0)
    k = 0
    while k < len(s.diffs):
        if rng.random() < 0.15:
            at = pool[max(0, min(pool.index(s.diffs[k][1]) + rng.randint(-8, 4), len(pool) - 1))]
            yield "snapshot", max(s.base, at - rng.choice([0, 0, 1]))  # futures: maybe no id
        if lossy and rng.random() < 0.02:
            yield "reset", None
        r = rng.random()
        if r < p_drop:
            pass
        elif r < p_drop + p_dup:
            yield from (("diff", k), ("diff", k))
        elif r < p_drop + p_dup + p_swap and k + 1 < len(s.diffs):
            yield from (("diff", k + 1), ("diff", k))
            k += 1
        else:
            yield "diff", k
        k += 1


def _snapshot(sync: BookSync, s: Stream, at: int) -> int:
    bids, asks = s.state(at)
    return sync.on_snapshot(at, list(bids.items()), list(asks.items()))


def _check_diff(sync: BookSync, s: Stream, k: int) -> str:
    """Deliver diff ``k`` and pin the verdict wherever the ids decide it alone."""
    first, final, pu, _, _ = diff = s.diffs[k]
    before = sync.update_id
    verdict = sync.on_diff(*diff)
    if before is None:
        assert verdict == "buffered"
    elif final < before or (final == before and not s.futures):
        assert verdict == "stale" and sync.update_id == before  # a duplicate or a late diff
    elif (first <= before + 1 <= final) if pu is None else (pu == before):
        assert verdict == "applied" and sync.update_id == final  # it continues the book
    elif first > before + 1 and (pu is None or pu != before):
        assert verdict == "break" and not sync.synced  # a diff was lost
    return verdict


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans(), st.booleans(), st.sampled_from([1, 3, 10_000]))
def test_sync_never_serves_a_wrong_book(seed: int, futures: bool, lossy: bool, cap: int) -> None:
    """Whatever is lost, repeated or reordered, a synced book equals the truth at its update id."""
    rng = random.Random(seed)
    s = make_stream(rng, futures)
    sync = BookSync(max_buffer=cap)
    for kind, arg in deliveries(rng, s, lossy):
        if kind == "diff":
            _check_diff(sync, s, arg)
        elif kind == "snapshot":
            _snapshot(sync, s, arg)
        else:
            sync.reset()
        if sync.synced:
            assert sync.update_id is not None and not sync.needs_snapshot
            assert _levels_of(sync.book) == s.state(sync.update_id)
        else:
            assert len(sync.book) == 0


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans())
def test_sync_on_a_clean_feed_catches_up(seed: int, futures: bool) -> None:
    """Every diff delivered once, in order, and a snapshot no older than the first one: the sync
    connects the buffer, never breaks, and ends at the last diff with the true book."""
    rng = random.Random(seed)
    s = make_stream(rng, futures)
    pool = [s.base, *s.ids]
    seen = rng.randint(0, len(s.diffs))  # diffs buffered before the snapshot
    lo = pool.index(s.diffs[0][0]) - 1  # the state just before the first diff
    at = pool[rng.randint(lo, len(pool) - 1)]
    sync, verdicts = BookSync(), Counter()
    for k in range(seen):
        verdicts[_check_diff(sync, s, k)] += 1
    applied = _snapshot(sync, s, at)
    for k in range(seen, len(s.diffs)):
        verdicts[_check_diff(sync, s, k)] += 1
    assert sync.synced and sync.breaks == sync.rejected == 0 and "break" not in verdicts
    assert sync.update_id == max(at, s.ids[-1])
    assert _levels_of(sync.book) == s.state(s.ids[-1])
    assert applied + verdicts["applied"] == sync.applied
    assert sync.applied + sync.stale == len(s.diffs)


def test_a_lost_diff_breaks_and_asks_once() -> None:
    """Spot: a hole breaks the book; needs_snapshot holds until asked(), and again after a break."""
    sync = BookSync()
    assert sync.needs_snapshot
    sync.asked()
    assert not sync.needs_snapshot and not sync.synced
    assert sync.on_snapshot(100, [(9.0, 1.0)], [(11.0, 1.0)]) == 0
    assert sync.on_diff(95, 100, None, [], []) == "stale"  # u <= lastUpdateId
    assert sync.on_diff(101, 105, None, [(9.5, 1.0)], []) == "applied"
    assert sync.on_diff(101, 105, None, [(9.5, 1.0)], []) == "stale"  # a duplicate
    assert sync.on_diff(107, 109, None, [], []) == "break"  # 106 is missing
    assert (sync.synced, sync.needs_snapshot, len(sync.book)) == (False, True, 0)
    assert (sync.applied, sync.stale, sync.breaks) == (1, 2, 1)
    assert sync.on_snapshot(106, [(9.0, 2.0)], [(11.0, 1.0)]) == 1  # the breaking diff, kept
    assert sync.update_id == 109


def test_futures_continuity_follows_pu() -> None:
    """USD-M: the first diff must straddle lastUpdateId (u == lastUpdateId counts), later ones
    chain on pu == the previous u, whatever their U."""
    sync = BookSync()
    sync.on_diff(40, 50, 30, [], [])
    sync.on_diff(60, 70, 50, [(9.0, 3.0)], [])
    assert sync.on_snapshot(70, [(9.0, 1.0)], [(11.0, 1.0)]) == 1  # u == 70 is applied
    assert sync.stale == 1 and sync.update_id == 70
    assert sync.on_diff(90, 95, 70, [], [(10.0, 1.0)]) == "applied"  # U jumps: other symbols
    assert sync.on_diff(96, 99, 94, [], []) == "break"  # pu != 95
    sync.on_snapshot(150, [(9.0, 1.0)], [(11.0, 1.0)])  # too new for the buffered diff: stale
    assert sync.on_diff(160, 170, 140, [], []) == "break"  # no diff straddles 150
    sync.on_snapshot(140, [], [])
    assert sync.synced and sync.update_id == 170  # pu == lastUpdateId also connects


def test_snapshot_too_old_or_a_hole_in_the_buffer_waits() -> None:
    """A snapshot older than the first buffered diff, or a hole inside the buffer, is rejected:
    the book stays empty and a new snapshot is asked for."""
    sync = BookSync()
    sync.on_diff(110, 120, None, [], [])
    sync.on_diff(121, 130, None, [], [])
    sync.asked()
    assert sync.on_snapshot(100, [(9.0, 1.0)], [(11.0, 1.0)]) == 0  # 101..109 never seen
    assert (sync.synced, sync.rejected, sync.needs_snapshot, len(sync.book)) == (False, 1, True, 0)
    assert sync.on_snapshot(115, [(9.0, 1.0)], [(11.0, 1.0)]) == 2 and sync.update_id == 130
    sync.on_diff(140, 150, None, [], [])  # break: 131..139 lost
    sync.on_diff(151, 160, None, [], [])
    sync.on_diff(171, 180, None, [], [])  # 161..170 lost while waiting
    assert sync.on_snapshot(145, [], []) == 0 and not sync.synced  # the hole inside
    assert sync.on_snapshot(175, [(9.0, 1.0)], []) == 1 and sync.update_id == 180


def test_buffer_keeps_the_newest_diffs() -> None:
    """Only the newest max_buffer diffs are kept while waiting for a snapshot."""
    sync = BookSync(max_buffer=2)
    for u in range(101, 106):
        assert sync.on_diff(u, u, None, [(float(u), 1.0)], []) == "buffered"
    assert sync.on_snapshot(101, [], []) == 0  # 102 was pushed out: a hole
    assert sync.on_snapshot(103, [], []) == 2
    assert _levels_of(sync.book) == ({104.0: 1.0, 105.0: 1.0}, {})
    with pytest.raises(ValueError, match="max_buffer"):
        BookSync(max_buffer=0)


def test_crossed_book_and_reset() -> None:
    """A diff that crosses the book is a break; reset forgets the book and the buffer."""
    sync = BookSync()
    sync.on_snapshot(10, [(9.0, 1.0)], [(11.0, 1.0)])
    assert sync.on_diff(11, 11, None, [(11.5, 1.0)], []) == "break"
    assert len(sync.book) == 0 and sync.breaks == 1
    sync.on_diff(12, 12, None, [], [])
    sync.reset()
    assert sync.on_snapshot(12, [(9.0, 1.0)], [(11.0, 1.0)]) == 0 and sync.update_id == 12


# --- real captures

SPOT_0808 = "ws/binance-spot-btcusdt-20240808.gz"
USDM = "ws/cryptofeed-binance-usdm.ws.txt"


def _levels(rows: list[list[str]]) -> list[tuple[float, float]]:
    return [(float(p), float(q)) for p, q in rows]


def spot_capture(relative: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(kind, payload)`` per line: "snapshot" (the REST depth), or the stream's suffix."""
    with gzip.open(shared_path(relative), "rt") as f:
        for line in f:
            msg = json.loads(line.split(" ", 1)[1])
            if "lastUpdateId" in msg:
                yield "snapshot", msg
            else:
                yield msg["stream"].split("@", 1)[1], msg["data"]


def test_real_spot_capture_syncs_and_matches_book_ticker() -> None:
    """BTCUSDT spot, 3,451 diffs: the snapshot (line 8) connects to the 3 diffs buffered before
    it, nothing breaks or crosses, and the best levels equal the bookTicker at the same update id.

    bookTicker carries the book's update id ``u``, so each applied diff (ending at ``u``) is
    compared with the newest bookTicker whose ``u`` is not after it, rather than by receive time
    (bookTicker runs ahead of the 100 ms depth stream). Prices and quantities agree for all 3,448
    here; on the next day's file 2 of 3,044 do not (bookTicker frames missing from the capture)."""
    sync, verdicts, tops, tickers = BookSync(), Counter(), [], []
    for kind, d in spot_capture(SPOT_0808):
        if kind == "snapshot":
            assert sync.on_snapshot(d["lastUpdateId"], _levels(d["bids"]), _levels(d["asks"])) == 1
        elif kind == "depth@100ms":
            verdicts[sync.on_diff(d["U"], d["u"], None, _levels(d["b"]), _levels(d["a"]))] += 1
            assert not sync.book.crossed()
            if sync.synced:
                tops.append((d["u"], sync.book.best_bid(), sync.book.best_ask()))
        elif kind == "bookTicker":
            tickers.append((d["u"], (float(d["b"]), float(d["B"])), (float(d["a"]), float(d["A"]))))
    assert verdicts == {"buffered": 3, "applied": 3448}
    assert (sync.applied, sync.stale, sync.breaks, sync.rejected) == (3449, 2, 0, 0)
    ids = [t[0] for t in tickers]
    agree = sum(tickers[bisect.bisect_right(ids, u) - 1][1:] == (bb, ba) for u, bb, ba in tops)
    assert agree == len(tops) == 3448


def test_real_futures_capture_chains_on_pu() -> None:
    """USD-M futures, 4 symbols: from an empty snapshot at each symbol's first ``u`` every later
    diff chains on ``pu`` (no break), and the partial book never crosses."""
    syncs: dict[str, BookSync] = {}
    with open(shared_path(USDM)) as f:
        frames = [json.loads(line.split(": ", 1)[1]) for line in f if ": {" in line]
    for msg in frames:
        if "@depth" not in msg["stream"]:
            continue
        d = msg["data"]
        if d["s"] not in syncs:
            syncs[d["s"]] = BookSync()
            syncs[d["s"]].on_snapshot(d["u"], [], [])
        sync = syncs[d["s"]]
        assert sync.on_diff(d["U"], d["u"], d["pu"], _levels(d["b"]), _levels(d["a"])) == "applied"
        assert not sync.book.crossed()
    assert {s: x.applied for s, x in syncs.items()} == {
        "SUSHIUSDT": 255,
        "AKROUSDT": 189,
        "CTKUSDT": 185,
        "KEEPUSDT": 135,
    }
