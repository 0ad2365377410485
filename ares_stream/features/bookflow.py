"""Order-book and order-flow features of one bar, read from a local :class:`OrderBook`.

:meth:`BookFeatures.on_update` runs after every change of the book (each applied diff, each
snapshot) and costs O(1): it accumulates the order-flow imbalance (OFI) of Cont, Kukanov & Stoikov
(2014, "The price impact of order book events") from the best levels of consecutive updates::

    e_n = 1{Pb[n] >= Pb[n-1]} qb[n] - 1{Pb[n] <= Pb[n-1]} qb[n-1]
        - 1{Pa[n] <= Pa[n-1]} qa[n] + 1{Pa[n] >= Pa[n-1]} qa[n-1]

:meth:`BookFeatures.on_bar` runs at each bar's close and costs O(levels) plus the levels within
``bps`` of the mid. It returns, in the order of ``names``:

* ``depth_imb_k``: ``(B - A) / (B + A)``, B and A the bid and ask quantity of the top ``levels``;
* ``depth_imb_bps``: the same over the levels within ``bps`` basis points of the mid (0.0 if none);
* ``microprice_dev``: ``(microprice - mid) / mid`` in bps, microprice
  ``(Pa qb + Pb qa) / (qb + qa)`` at the best levels, computed as
  ``(Pa - Pb) (qb - qa) / (2 (qb + qa))``: the same number, without subtracting two prices of
  60,000 that differ in the 9th digit;
* ``ofi``: the bar's summed ``e_n`` over the mean top-of-book depth ``(qb + qa) / 2`` of the bar's
  updates, so it is scale-free; 0.0 for a bar without an update. The sum is compensated (Neumaier):
  it is a net flow, and plain float additions of large opposite terms would lose it;
* ``book_spread_bps``: ``(Pa - Pb) / mid * 1e4``;
* ``depth_chg``: ``log((B + A) / (B + A at the previous bar's close))``.

``on_bar(book, synced)`` returns None while the book is not synced or lacks a side (a
:class:`BookSync` clears its book on a break), and for the first bar after the book was (re)loaded
or cleared: ``depth_chg`` has no previous close then, and the whole set warms up together rather
than carrying a NaN into a model. A reload is seen through ``OrderBook.epoch``, so no call from the
caller is needed (:meth:`BookFeatures.reset` is there for a caller that wants one). Pairs of updates
across a reload, or with a side missing, add no ``e_n``.

>>> book, f = OrderBook(), BookFeatures(levels=2, bps=50.0)
>>> book.load([(99.0, 2.0), (98.0, 1.0)], [(101.0, 1.0), (102.0, 2.0)]); f.on_update(book)
>>> f.on_bar(book) is None  # the first bar after a snapshot warms up
True
>>> book.apply([(99.0, 3.0)], []); f.on_update(book)  # the bid grows by 1: OFI +1
>>> {k: round(v, 4) for k, v in f.on_bar(book).items()}  # doctest: +NORMALIZE_WHITESPACE
{'depth_imb_k': 0.1429, 'depth_imb_bps': 0.0, 'microprice_dev': 50.0, 'ofi': 0.5,
 'book_spread_bps': 200.0, 'depth_chg': 0.1542}
"""

from __future__ import annotations

import math

from ares_stream.features.book import OrderBook

_fsum = math.fsum
NAMES = ("depth_imb_k", "depth_imb_bps", "microprice_dev", "ofi", "book_spread_bps", "depth_chg")
Top = tuple[float, float, float, float]  # best bid price, its qty, best ask price, its qty


def _imbalance(b: float, a: float) -> float:
    """``(b - a) / (b + a)``; 0.0 when both are 0."""
    tot = b + a
    return (b - a) / tot if tot > 0.0 else 0.0


def _top_of(book: OrderBook) -> Top | None:
    """The best levels, or None when a side is empty."""
    bid, ask = book.best_bid(), book.best_ask()
    if bid is None or ask is None:
        return None
    return bid[0], bid[1], ask[0], ask[1]


def ofi_event(prev: Top, top: Top) -> float:
    """One update's order-flow imbalance ``e_n`` (Cont, Kukanov & Stoikov 2014), correctly
    rounded: ``prev`` and ``top`` are ``(bid price, bid qty, ask price, ask qty)``.

    >>> ofi_event((99.0, 2.0, 101.0, 1.0), (99.5, 1.0, 101.0, 3.0))  # a new better bid, ask +2
    -1.0
    """
    pb, qb, pa, qa = top
    ppb, pqb, ppa, pqa = prev
    return _fsum((qb if pb >= ppb else 0.0, -pqb if pb <= ppb else 0.0,
                  -qa if pa <= ppa else 0.0, pqa if pa >= ppa else 0.0))  # fmt: skip


class BookFeatures:
    """The order-book and order-flow features of each bar (see the module docstring).

    >>> f = BookFeatures(); f.names[:2], f.levels, f.bps
    (('depth_imb_k', 'depth_imb_bps'), 10, 10.0)
    """

    names = NAMES
    __slots__ = ("_comp", "_depth", "_epoch", "_n", "_ofi", "_prev", "_total", "bps", "levels")

    def __init__(self, levels: int = 10, bps: float = 10.0) -> None:
        if not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be a positive integer, got {levels!r}")
        if not bps >= 0.0 or math.isinf(bps):
            raise ValueError(f"bps must be a finite non-negative number, got {bps!r}")
        self.levels, self.bps = levels, bps
        self._epoch = -1  # the book epoch the state belongs to
        self._prev: Top | None = None  # the best levels at the last update
        self._total: float | None = None  # top-levels depth at the last bar's close
        self._ofi = self._comp = self._depth = 0.0  # the bar's OFI sum (+ compensation), depth sum
        self._n = 0  # the bar's updates with both sides

    def reset(self) -> None:
        """Forget the accumulations and the previous close: the next bar warms up again."""
        self._prev = self._total = None
        self._start_bar()

    def _start_bar(self) -> None:
        self._ofi = self._comp = self._depth = 0.0
        self._n = 0

    def _follow(self, book: OrderBook) -> None:
        """Start over when the book was reloaded or cleared since the last call."""
        if book.epoch != self._epoch:
            self.reset()
            self._epoch = book.epoch

    def on_update(self, book: OrderBook) -> None:
        """Take the book after a change: add the update's ``e_n`` and top-of-book depth."""
        self._follow(book)
        top = _top_of(book)
        prev, self._prev = self._prev, top
        if top is None:
            return
        if prev is not None:
            e = ofi_event(prev, top)
            s = self._ofi + e  # Neumaier's compensated sum
            if abs(self._ofi) >= abs(e):
                self._comp += (self._ofi - s) + e
            else:
                self._comp += (e - s) + self._ofi
            self._ofi = s
        self._depth += (top[1] + top[3]) / 2.0
        self._n += 1

    def on_bar(self, book: OrderBook, synced: bool = True) -> dict[str, float] | None:
        """Close the bar: its features (keys ``names``); None while the book is not ``synced``
        or lacks a side, and for the first bar after a (re)load. Then start the next bar."""
        self._follow(book)
        top = _top_of(book) if synced else None
        if top is None:  # no close to measure from; the last update's top stays the one the
            self._total = None  # next update pairs with (the same book: a reload resets)
            self._start_bar()
            return None
        k = self.levels
        b = _fsum(q for _, q in book.top("bid", k))
        a = _fsum(q for _, q in book.top("ask", k))
        ofi, n, depth = self._ofi + self._comp, self._n, self._depth
        prev_total, self._total = self._total, b + a
        self._start_bar()
        if prev_total is None:
            return None
        pb, qb, pa, qa = top
        mid = (pb + pa) / 2.0
        return {
            "depth_imb_k": _imbalance(b, a),
            "depth_imb_bps": _imbalance(book.depth_within("bid", self.bps),
                                        book.depth_within("ask", self.bps)),
            "microprice_dev": (pa - pb) * (qb - qa) / (2.0 * (qb + qa)) / mid * 1e4,
            "ofi": ofi / (depth / n) if n and depth > 0.0 else 0.0,
            "book_spread_bps": (pa - pb) / mid * 1e4,
            "depth_chg": math.log((b + a) / prev_total),
        }  # fmt: skip
