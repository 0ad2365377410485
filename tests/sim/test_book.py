"""The simulator's order book: diffs that rebuild it, consecutive ids, bookTicker agreeing."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ares_stream.sim.book import LEVELS, Book
from ares_stream.sim.frames import MS, NS
from ares_stream.sim.simulator import STREAMS, SimSpec, books, frames

START = SimSpec().start_ns
HOUR = 3600
DEPTH = ("depth@100ms", "depth", "bookTicker")
decode = msgspec.json.decode

Levels = dict[Decimal, Decimal]


def apply(book: tuple[Levels, Levels], diff: dict[str, Any]) -> None:
    """Apply one depthUpdate to ``(bids, asks)`` as a Binance client does (0 removes a level)."""
    for side, key in zip(book, "ba", strict=True):
        for price, qty in diff[key]:
            if Decimal(qty) == 0:
                side.pop(Decimal(price), None)  # Binance: a level we lack may be removed
            else:
                side[Decimal(price)] = Decimal(qty)


def ticks(levels: dict[int, int]) -> Levels:
    """The simulator's levels (ticks → lots) as decimal prices and quantities."""
    return {Decimal(p) / 100: Decimal(q) / 100_000 for p, q in levels.items()}


def replay(spec: SimSpec) -> Iterator[tuple[str, dict[str, Any], tuple[Levels, Levels]]]:
    """Every frame of ``spec`` decoded, with the book the 100 ms diffs rebuilt so far."""
    book: tuple[Levels, Levels] = ({}, {})
    for _, stream, payload in frames(spec):
        data = decode(payload)
        if stream.endswith("@depth@100ms"):
            apply(book, data)
        yield stream.partition("@")[2], data, book


def top(book: tuple[Levels, Levels]) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    bids, asks = book
    bid, ask = max(bids), min(asks)
    return bid, bids[bid], ask, asks[ask]


@pytest.fixture(scope="module")
def two_hours() -> list[tuple[str, dict[str, Any], tuple[Levels, Levels]]]:
    """Two hours (across a chunk boundary, odd block) of both depth streams and bookTicker; each
    frame with a copy of the book rebuilt from the 100 ms diffs up to it."""
    spec = SimSpec(seconds=2 * HOUR, seed=3, block=7, streams=DEPTH, start_ns=START - 1234 * NS)
    return [(kind, data, (dict(book[0]), dict(book[1])) if kind == "depth@100ms" else book)
            for kind, data, book in replay(spec)]


def test_diff_ids_are_consecutive_and_windows_are_100_ms(two_hours: list[Any]) -> None:
    """Each diff's U is the previous u + 1 from 1; 100 ms diffs end windows, 1 s diffs seconds."""
    for kind, period in (("depth@100ms", 100), ("depth", 1000)):
        diffs = [d for k, d, _ in two_hours if k == kind]
        assert [d["U"] for d in diffs] == [1] + [d["u"] + 1 for d in diffs[:-1]]
        assert all(d["E"] % period == 0 and d["s"] == "SIMUSDT" for d in diffs)
        assert len({d["E"] for d in diffs}) == len(diffs)
    fast = [d for k, d, _ in two_hours if k == "depth@100ms"]
    assert len(fast) > 0.6 * 2 * HOUR * 10  # most windows change something
    assert all(d["u"] - d["U"] + 1 == len(d["b"]) + len(d["a"]) for d in fast)
    slow = [d for k, d, _ in two_hours if k == "depth"]
    assert slow[-1]["u"] == fast[-1]["u"]  # both streams share the update ids


def test_the_first_diff_lists_the_whole_initial_book(two_hours: list[Any]) -> None:
    """The first diff (ids 1…40) lists 20 levels a side and no removal: start from empty."""
    first = next(d for k, d, _ in two_hours if k == "depth@100ms")
    assert (first["U"], first["u"], len(first["b"]), len(first["a"])) == (1, 2 * LEVELS, 20, 20)
    assert all(Decimal(q) > 0 for _, q in first["b"] + first["a"])


def test_the_book_keeps_twenty_levels_a_side_and_the_bookticker_agrees(
    two_hours: list[Any],
) -> None:
    """After every diff: 20 levels a side, uncrossed, and the top is the last bookTicker's."""
    quote = None
    checked = 0
    for kind, data, book in two_hours:
        if kind == "bookTicker":
            quote = tuple(Decimal(data[k]) for k in "bBaA")
        elif kind == "depth@100ms":
            assert len(book[0]) == len(book[1]) == LEVELS
            assert max(book[0]) < min(book[1])
            if quote is not None:
                assert top(book) == quote
                checked += 1
    assert checked > 50_000


def test_the_one_second_diffs_rebuild_the_same_book(two_hours: list[Any]) -> None:
    """Applying the 1 s diffs alone gives, at each second's end, the 100 ms diffs' book."""
    slow: tuple[Levels, Levels] = ({}, {})
    fast: tuple[Levels, Levels] = ({}, {})
    for kind, data, book in two_hours:
        if kind == "depth@100ms":
            fast = book
        elif kind == "depth":
            apply(slow, data)
            assert slow == fast


def test_the_rebuilt_book_is_the_simulators_at_every_block() -> None:
    """The book the diffs rebuild equals the simulator's own book at the end of every block."""
    spec = SimSpec(seconds=HOUR + 600, seed=9, block=30, streams=("depth@100ms",),
                   start_ns=START - 300 * NS)
    own = books(spec)
    ends = 0
    ns, bids, asks = next(own)
    book: tuple[Levels, Levels] = ({}, {})
    for _, _, payload in frames(spec):
        diff = decode(payload)
        while diff["E"] * MS > ns:  # the diffs up to the block's end are applied
            assert book == (ticks(bids), ticks(asks)), ns
            ends += 1
            ns, bids, asks = next(own)
        apply(book, diff)
    assert book == (ticks(bids), ticks(asks)) and next(own, None) is None  # the market's end
    assert ends + 1 == (HOUR + 600) // 30


def test_depth_leaves_every_other_stream_unchanged() -> None:
    """Selecting depth streams adds frames; the others stay byte-identical."""
    others = tuple(s for s in STREAMS if not s.startswith("depth"))
    spec = SimSpec(seconds=1800, seed=4, streams=others)
    plain = list(frames(spec))
    with_depth = [f for f in frames(SimSpec(seconds=1800, seed=4, streams=STREAMS))
                  if not f[1].partition("@")[2].startswith("depth")]
    assert [(s, p) for _, s, p in with_depth] == [(s, p) for _, s, p in plain]


def test_a_low_price_keeps_its_bids_above_zero() -> None:
    """At a price of 1.00 the levels are a tick apart and no bid goes below one tick."""
    for _, bids, asks in books(SimSpec(seconds=900, seed=2, price0=1.0, block=60)):
        assert min(bids) >= 1 and max(bids) < min(asks) and len(asks) == LEVELS


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), quotes=st.lists(
    st.tuples(st.integers(0, NS - 1), st.integers(-500, 500), st.integers(1, 2),
              st.integers(1, 10**6), st.integers(1, 10**6)), max_size=40))
def test_any_quotes_keep_the_book_consistent(
    seed: int, quotes: list[tuple[int, int, int, int, int]]
) -> None:
    """Any quotes: the top is the last quote, 20 levels a side, and the diffs rebuild the book."""
    quotes.sort()
    t, move, spread, bid_lots, ask_lots = (np.array([q[i] for q in quotes], dtype=np.int64)
                                           for i in range(5))
    book = Book(10_000, 10_001, 5, 7, np.random.default_rng(seed), start_ns=0, gap=3.0)
    diffs = book.chunk(0, NS, (t, 10_000 + move, 10_000 + move + spread, bid_lots, ask_lots),
                       speed=np.array([3.0]))
    rebuilt: tuple[dict[int, int], dict[int, int]] = ({}, {})
    ends = np.cumsum(diffs.count)
    for i, (start, end) in enumerate(zip(ends - diffs.count, ends, strict=True)):
        for j in range(start, end):
            side = rebuilt[0] if j - start < diffs.bids[i] else rebuilt[1]
            price, lots = int(diffs.price[j]), int(diffs.lots[j])
            if lots:
                side[price] = lots
            else:
                del side[price]  # the 100 ms diffs only remove levels that were there
    assert rebuilt == book.levels()
    assert list(diffs.first_id) == [1, *(diffs.last_id[:-1] + 1)]
    if quotes:
        assert book.top() == (10_000 + move[-1], bid_lots[-1], 10_000 + move[-1] + spread[-1],
                              ask_lots[-1])
    assert [len(side) for side in rebuilt] == [LEVELS, LEVELS]
