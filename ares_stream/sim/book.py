"""The simulator's order book: price levels behind its quotes, and the depth diffs they make.

A :class:`Book` holds :data:`LEVELS` price levels a side, prices in integer ticks and quantities
in integer lots, like the simulator's trades. Its best bid and ask are the simulator's quotes
(its ``bookTicker`` updates): a quote sets the best level of each side, and the levels it moved
through vanish (the takers who moved the price consumed them, or their makers pulled them). The
makers act behind the best levels, never on them: a maker event (Poisson, :data:`MAKER_RATE` a
second at the base volatility, more when it is higher) adds lots to a level (35%), cancels part
of one (25%) or all of it (20%), or opens a new level between the best and the deepest (20%). A
side with fewer levels than :data:`LEVELS` refills at its deep end (gaps of ``1 + Geometric``
ticks, :data:`GAP_PPM` of the first price on average), a side with more drops its deepest.
So the top of the book changes with the quotes alone, and ``bookTicker`` agrees with the book at
every instant. (A trade does not shrink the best level between quotes: the simulator's trades
print at its quotes, and most come with a quote at their instant carrying fresh sizes.)

Each 100 ms window that changed levels gives one diff
(:class:`~ares_stream.sim.frames.DepthDiffs`): the levels whose quantity differs from the last
diff's, with their new quantities (0: removed); every such level is one update id, so ``U`` is
the previous diff's ``u`` + 1 and ``u − U + 1`` the number of levels listed. The first diff lists
every level of the initial book (ids from 1): a client that starts from an empty book and applies
every diff holds the book.

>>> book = Book(6_000_000, 6_000_001, 100, 300, np.random.default_rng(0), start_ns=0)
>>> quote = ([5 * MS], [6_000_010], [6_000_012], [50], [70])  # at 5 ms: bid, ask, their lots
>>> d = book.chunk(0, NS, tuple(map(np.array, quote)), speed=np.ones(1))
>>> book.top(), [len(side) for side in book.levels()]
((6000010, 50, 6000012, 70), [20, 20])
>>> int(d.ns[0]), int(d.first_id[0]), int(d.last_id[0])  # at 100 ms: the 40 levels
(100000000, 1, 40)
>>> bool(np.all(d.first_id[1:] == d.last_id[:-1] + 1))
True
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np

from ares_stream.sim.frames import MS, NS, DepthDiffs

__all__ = ["GAP_PPM", "LEVELS", "MAKER_RATE", "WINDOW_NS", "Book"]

LEVELS = 20  # price levels a side
WINDOW_NS = 100 * MS  # a diff per window with changes
MAKER_RATE = 10.0  # maker events a second (both sides) at the base volatility
GAP_PPM = 6.0  # mean gap between levels, parts per million of the first price (36 ticks at 60,000)
QTY_MEDIAN = 0.3  # median lots of a new level or a refill, base asset (as the quotes' sizes)
_LOT = 1e-5
_SHARES = (0.35, 0.60, 0.80)  # maker action thresholds: refill < cancel part < cancel all < new
_POOL = 4096  # random gaps and sizes drawn at a time
_Quotes = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class _Side:
    """One side's levels by key, ascending from the best (bids: −price, asks: price)."""

    __slots__ = ("changed", "keys", "lots", "worst")

    def __init__(self, worst: int) -> None:
        self.keys: list[int] = []
        self.lots: dict[int, int] = {}
        self.changed: dict[int, int] = {}  # key → its lots at the last diff (0: none)
        self.worst = worst  # the largest key allowed (bids: a price of one tick)

    def set(self, key: int, lots: int) -> None:
        self.changed.setdefault(key, self.lots.get(key, 0))
        self.lots[key] = lots

    def drop(self, key: int) -> None:
        self.changed.setdefault(key, self.lots.pop(key))

    def diff(self) -> tuple[list[int], list[int]]:
        """The keys whose lots differ from the last diff's, best first, and their lots now;
        forgets the changes."""
        get, was = self.lots.get, self.changed
        keys = [k for k, v in was.items() if get(k, 0) != v]
        keys.sort()
        was.clear()
        return keys, [get(k, 0) for k in keys]

    def quote(self, key: int, lots: int) -> None:
        """The best level becomes ``key``: the levels better than it vanish."""
        keys = self.keys
        better = bisect.bisect_left(keys, key)
        for k in keys[:better]:
            self.drop(k)
        del keys[:better]
        if not keys or keys[0] != key:
            keys.insert(0, key)
        self.set(key, lots)


class Book:
    """The simulated book: see the module docstring. ``start_ns`` is the market's first instant
    (a whole second); ``block_ns`` and ``record`` keep the book at the end of every block."""

    def __init__(self, bid: int, ask: int, bid_lots: int, ask_lots: int,
                 rng: np.random.Generator, *, start_ns: int, gap: float = 36.0,
                 block_ns: int = 0, record: bool = False) -> None:
        self.bids, self.asks = _Side(-1), _Side(2**62)
        self._rng, self._gap = rng, gap
        self._gaps: list[int] = []
        self._sizes: list[int] = []
        self._window = start_ns // WINDOW_NS  # the window whose changes are pending
        self._next_id = 1
        self._block_ns, self._start_ns = block_ns, start_ns
        self._next_block = start_ns + block_ns
        self.recorded: list[tuple[int, dict[int, int], dict[int, int]]] | None = (
            [] if record else None)
        self._out: tuple[list[int], ...] = ([], [], [], [], [], [])
        self._quote(bid, ask, bid_lots, ask_lots)

    def top(self) -> tuple[int, int, int, int]:
        """Best bid (ticks), its lots, best ask, its lots."""
        b, a = self.bids.keys[0], self.asks.keys[0]
        return -b, self.bids.lots[b], a, self.asks.lots[a]

    def levels(self) -> tuple[dict[int, int], dict[int, int]]:
        """Copies of the bids and asks, price (ticks) → lots."""
        return ({-k: v for k, v in self.bids.lots.items()}, dict(self.asks.lots))

    def chunk(self, start_ns: int, end_ns: int, quotes: _Quotes, speed: np.ndarray) -> DepthDiffs:
        """Play ``[start_ns, end_ns)`` (whole seconds): the quotes (times in ns from ``start_ns``,
        bid, ask, bid lots, ask lots) and maker events at ``MAKER_RATE × speed`` per second
        (``speed``: one value a second). The diffs of its windows. A measured hot loop."""
        mt, (side, action, pick, frac, size) = self._makers(speed)
        qt = quotes[0]
        times = (np.concatenate((qt, mt)) + start_ns).tolist()
        order = np.argsort(np.concatenate((qt, mt)), kind="stable").tolist()
        nq, (qb, qa, qbl, qal) = qt.size, (q.tolist() for q in quotes[1:])
        sides, window = (self.bids, self.asks), self._window
        for j in order:
            t = times[j]
            if t // WINDOW_NS != window:
                self._close_window(t)
                window = self._window
            if j < nq:
                self._quote(qb[j], qa[j], qbl[j], qal[j])
            else:
                j -= nq
                self._maker(sides[side[j]], action[j], pick[j], frac[j], size[j])
        self._close_window(end_ns)
        return self._diffs()

    def _close_window(self, t: int) -> None:
        """Emit the pending window's diff, record the block ends up to ``t``, go to its window."""
        self._flush((self._window + 1) * WINDOW_NS)
        while self.recorded is not None and self._next_block <= t:
            self.recorded.append((self._next_block, *self.levels()))
            self._next_block += self._block_ns
        self._window = t // WINDOW_NS

    def _makers(self, speed: np.ndarray) -> tuple[np.ndarray, tuple[list[Any], ...]]:
        """This chunk's maker events: times (ns from its start); side (0 bid, 1 ask), action,
        level pick, fraction and lots of each."""
        rng = self._rng
        sec = np.repeat(np.arange(speed.size), rng.poisson(MAKER_RATE * speed))
        t = np.sort(sec * NS + rng.integers(0, NS, sec.size))
        u = rng.random((4, t.size))
        return t, ((u[0] < 0.5).astype(np.int64).tolist(), u[1].tolist(), u[2].tolist(),
                   u[3].tolist(), self._draw_sizes(t.size).tolist())

    def _draw_sizes(self, n: int) -> np.ndarray:
        return 1 + np.round(self._rng.lognormal(math.log(QTY_MEDIAN / _LOT), 1.0, n)).astype(
            np.int64)

    def _size(self) -> int:
        if not self._sizes:
            self._sizes = self._draw_sizes(_POOL).tolist()[::-1]
        return self._sizes.pop()

    def _step(self) -> int:
        if not self._gaps:
            self._gaps = self._rng.geometric(1.0 / self._gap, _POOL).tolist()[::-1]
        return int(self._gaps.pop())

    def _quote(self, bid: int, ask: int, bid_lots: int, ask_lots: int) -> None:
        self.bids.quote(-bid, bid_lots)
        self.asks.quote(ask, ask_lots)
        self._fit(self.bids)
        self._fit(self.asks)

    def _fit(self, side: _Side) -> None:
        """Drop the deepest levels beyond :data:`LEVELS`, refill the deep end up to it."""
        keys = side.keys
        while len(keys) > LEVELS:
            side.drop(keys.pop())
        while len(keys) < LEVELS:  # (rarer: after a quote crossed levels or a level went)
            key = keys[-1] + self._step()
            if key > side.worst:
                return
            keys.append(key)
            side.set(key, self._size())

    def _maker(self, side: _Side, action: float, pick: float, frac: float, size: int) -> None:
        """One maker event behind the best level (see the module docstring)."""
        keys = side.keys
        if action >= _SHARES[2]:  # a new level strictly between the best and the deepest
            lo, hi = keys[0] + 1, keys[-1]
            if hi <= lo:
                return
            key = lo + int(frac * (hi - lo))
            if key in side.lots:
                side.set(key, side.lots[key] + size)
                return
            bisect.insort(keys, key)
            side.set(key, size)
            self._fit(side)
            return
        if len(keys) < 2:
            return
        i = 1 + int(pick * (len(keys) - 1))
        key = keys[i]
        if action < _SHARES[0]:
            side.set(key, side.lots[key] + size)
        elif action < _SHARES[1]:
            side.set(key, max(1, int(side.lots[key] * frac)))
        else:
            del keys[i]
            side.drop(key)
            self._fit(side)

    def _flush(self, end_ns: int) -> None:
        """The pending changes as one diff ending at ``end_ns`` (none without changes)."""
        if not self.bids.changed and not self.asks.changed:
            return
        (kb, lb), (ka, la) = self.bids.diff(), self.asks.diff()
        n = len(kb) + len(ka)
        if not n:
            return
        ns, first, last, nbids, prices, lots = self._out
        ns.append(end_ns)
        first.append(self._next_id)
        last.append(self._next_id + n - 1)
        nbids.append(len(kb))
        prices.extend([-k for k in kb])
        prices.extend(ka)
        lots.extend(lb)
        lots.extend(la)
        self._next_id += n

    def _diffs(self) -> DepthDiffs:
        """The diffs emitted since the last call."""
        ns, first, last, nbids, prices, lots = (np.array(v, dtype=np.int64) for v in self._out)
        self._out = ([], [], [], [], [], [])
        return DepthDiffs(ns=ns, first_id=first, last_id=last, bids=nbids,
                          count=last - first + 1, price=prices, lots=lots)
