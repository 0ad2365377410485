"""Binance frames for a chunk of simulated market: the formatting half of the simulator.

A :class:`Chunk` holds an interval of market as numpy arrays (taker orders, book updates, depth
diffs); :class:`ChunkFormatter` turns it into spot-format payloads for the selected streams —
``trade``, ``aggTrade``, ``depth@100ms``, ``depth``, ``bookTicker``, ``kline_1s``, ``kline_1m`` —
merged in event-time order with strictly increasing receive times (event time +
:data:`LATENCY_NS`). Prices are integer ticks of 0.01 and quantities integer lots of 0.00001,
printed with Binance's 8 decimals. Ids increase by one per stream: aggTrade ``a``; trade ``t``
(an aggTrade's fills are ``f``…``l``); bookTicker ``u``; depth diffs ``U``…``u``, each ``U`` the
previous ``u`` + 1 (the depth ids are their own sequence, not the bookTicker's).
Klines are epoch-aligned; an interval without trades repeats the last close with ``f = L = -1``.
``kline_1s`` sends each second's closed candle; ``kline_1m`` an update every 2 s, the last one of
the minute closed (``x``: true). ``depth@100ms`` is the chunk's :class:`DepthDiffs` as they are;
``depth`` (Binance's 1000 ms diffs) merges each second's: the last quantity of every level that
changed, ``U`` of its first diff, ``u`` of its last (so, as on Binance, it may remove a level
that came and went within the second: a client ignores a removal of a level it does not hold).
At equal event times a diff goes out before a bookTicker (a window's diff holds the changes
strictly before its end). String formatting per frame is the generator's cost: numbers are
formatted once per distinct value.

>>> fmt = ChunkFormatter("XUSDT", ("aggTrade", "kline_1s"))
>>> c = Chunk(start_ns=0, end_ns=2 * NS, agg_ns=np.array([NS // 2]), price=np.array([123456]),
...           lots=np.array([150]), buy=np.array([True]), fills=np.array([2]), first_agg=7,
...           first_tid=np.array([11]), prev_close=123400, book_ns=np.array([], dtype=np.int64),
...           bid=np.array([]), ask=np.array([]), bid_lots=np.array([]), ask_lots=np.array([]),
...           first_u=1)
>>> recv, streams, payloads = fmt.format(c)
>>> streams
['xusdt@aggTrade', 'xusdt@kline_1s', 'xusdt@kline_1s']
>>> print(payloads[0][:62]); print(payloads[0][62:])
{"e":"aggTrade","E":500,"s":"XUSDT","a":7,"p":"1234.56000000",
"q":"0.00150000","f":11,"l":12,"T":500,"m":false,"M":true}
>>> import json
>>> for k in (json.loads(p)["k"] for p in payloads[1:]):  # the second second has no trade
...     print(k["t"], k["x"], k["n"], k["f"], k["L"], k["o"], k["v"])
0 True 2 11 12 1234.56000000 0.00150000
1000 True 0 -1 -1 1234.56000000 0.00000000
>>> recv[0] - 500 * MS == LATENCY_NS, recv[1] > recv[0]
(True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LATENCY_NS", "MS", "NS", "STREAMS", "Chunk", "ChunkFormatter", "DepthDiffs"]

NS = 1_000_000_000
MS = 1_000_000
LATENCY_NS = 2 * MS  # receive time = event time + 2 ms (then nudged to strictly increase)
STREAMS = (  # order = rank at ties
    "trade", "aggTrade", "depth@100ms", "depth", "bookTicker", "kline_1s", "kline_1m")
KLINES = {"kline_1s": (NS, NS), "kline_1m": (60 * NS, 2 * NS)}  # interval, update period (ns)
_BIG = 1 << 40  # separates kline intervals in running max/min (more ticks than any price)

Payloads = tuple[np.ndarray, list[str]]  # event times (ns), formatted payloads


@dataclass
class DepthDiffs:
    """Depth diffs in time order: per diff, its entries back to back (bids best first, then asks
    best first); an entry of 0 lots removes the level."""

    ns: np.ndarray  # event time of each diff (its window's end), ns
    first_id: np.ndarray  # U
    last_id: np.ndarray  # u
    bids: np.ndarray  # bid entries of each diff (its first ones)
    count: np.ndarray  # entries of each diff
    price: np.ndarray  # each entry's price, ticks
    lots: np.ndarray  # each entry's quantity, lots


@dataclass
class Chunk:
    """``[start_ns, end_ns)`` of market: taker orders and book updates, in time order."""

    start_ns: int
    end_ns: int
    agg_ns: np.ndarray  # taker order (aggTrade) times, ns
    price: np.ndarray  # its price, ticks
    lots: np.ndarray  # its quantity, lots
    buy: np.ndarray  # taker bought (is_buyer_maker false)
    fills: np.ndarray  # trades it filled
    first_agg: int  # aggTrade id of the first order
    first_tid: np.ndarray  # trade id of each order's first fill
    prev_close: int  # price (ticks) of the last trade before the chunk
    book_ns: np.ndarray  # book update times, ns
    bid: np.ndarray  # ticks
    ask: np.ndarray  # ticks
    bid_lots: np.ndarray
    ask_lots: np.ndarray
    first_u: int  # update id of the first book update
    depth: DepthDiffs | None = None  # depth diffs (when a depth stream is selected)


class ChunkFormatter:
    """Formats chunks for one symbol and set of streams; keeps the last receive time."""

    def __init__(self, symbol: str, streams: Sequence[str]) -> None:
        self.symbol = symbol
        self.streams = [s for s in STREAMS if s in streams]
        self._names = {s: f"{symbol.lower()}@{s}" for s in STREAMS}
        self._recv = 0  # last receive time handed out

    def format(self, c: Chunk) -> tuple[list[int], list[str], list[str]]:
        """Receive times, stream names and payloads of the chunk's frames, in receive order."""
        parts = [self._payloads(s, c) for s in self.streams]
        times = np.concatenate([t for t, _ in parts])
        ranks = np.concatenate([np.full(t.size, i) for i, (t, _) in enumerate(parts)])
        order = np.lexsort((ranks, times))
        recv = times[order] + LATENCY_NS - np.arange(order.size)
        recv = np.maximum(np.maximum.accumulate(recv), self._recv + 1) + np.arange(order.size)
        if recv.size:
            self._recv = int(recv[-1])
        payloads = [p for _, ps in parts for p in ps]
        names = [self._names[s] for s, (t, _) in zip(self.streams, parts, strict=True)
                 for _ in range(t.size)]
        idx = order.tolist()
        return recv.tolist(), [names[i] for i in idx], [payloads[i] for i in idx]

    def _payloads(self, stream: str, c: Chunk) -> Payloads:
        if stream == "aggTrade":
            return c.agg_ns, self._agg_trades(c)
        if stream == "trade":
            return self._trades(c)
        if stream == "bookTicker":
            return c.book_ns, self._book(c)
        if stream.startswith("depth"):
            return self._depth(c.depth, stream == "depth")
        return self._klines(stream, c)

    def _agg_trades(self, c: Chunk) -> list[str]:
        """aggTrade payloads. A measured hot loop (~0.6 µs a frame)."""
        sym, ms = self.symbol, (c.agg_ns // MS).tolist()
        ids = range(c.first_agg, c.first_agg + c.agg_ns.size)
        last = (c.first_tid + c.fills - 1).tolist()
        return [f'{{"e":"aggTrade","E":{t},"s":"{sym}","a":{a},"p":"{p}","q":"{q}","f":{f},'
                f'"l":{lt},"T":{t},"m":{"false" if b else "true"},"M":true}}'
                for t, a, p, q, f, lt, b in zip(ms, ids, _dec(c.price, 2), _dec(c.lots, 5),
                                                c.first_tid.tolist(), last, c.buy.tolist(),
                                                strict=True)]

    def _trades(self, c: Chunk) -> Payloads:
        """trade payloads: each order's fills share its price and time; its lots split evenly."""
        owner = np.repeat(np.arange(c.fills.size), c.fills)
        k = np.arange(owner.size) - np.repeat(np.cumsum(c.fills) - c.fills, c.fills)
        share = c.lots[owner] // c.fills[owner]
        last = k == c.fills[owner] - 1
        lots = np.where(last, c.lots[owner] - share * (c.fills[owner] - 1), share)
        t, sym = c.agg_ns[owner], self.symbol
        ids = (c.first_tid[owner] + k).tolist()
        return t, [f'{{"e":"trade","E":{ms},"s":"{sym}","t":{i},"p":"{p}","q":"{q}","T":{ms},'
                   f'"m":{"false" if b else "true"},"M":true}}'
                   for ms, i, p, q, b in zip((t // MS).tolist(), ids, _dec(c.price[owner], 2),
                                             _dec(lots, 5), c.buy[owner].tolist(), strict=True)]

    def _book(self, c: Chunk) -> list[str]:
        """bookTicker payloads (spot: no event time)."""
        sym, n = self.symbol, c.book_ns.size
        return [f'{{"u":{u},"s":"{sym}","b":"{b}","B":"{bq}","a":"{a}","A":"{aq}"}}'
                for u, b, bq, a, aq in zip(range(c.first_u, c.first_u + n), _dec(c.bid, 2),
                                           _dec(c.bid_lots, 5), _dec(c.ask, 2),
                                           _dec(c.ask_lots, 5), strict=True)]

    def _depth(self, d: DepthDiffs | None, per_second: bool) -> Payloads:
        """depthUpdate payloads, of the 100 ms diffs or of each second's merged."""
        if d is None:
            return np.zeros(0, dtype=np.int64), []
        if per_second:
            d = _per_second(d)
        pairs = [f'["{p}","{q}"]' for p, q in zip(_dec(d.price, 2), _dec(d.lots, 5), strict=True)]
        ends = np.cumsum(d.count)
        starts, sym = ends - d.count, self.symbol
        return d.ns, [
            f'{{"e":"depthUpdate","E":{e},"s":"{sym}","U":{u0},"u":{u1},'
            f'"b":[{",".join(pairs[i:m])}],"a":[{",".join(pairs[m:j])}]}}'
            for e, u0, u1, i, m, j in zip((d.ns // MS).tolist(), d.first_id.tolist(),
                                          d.last_id.tolist(), starts.tolist(),
                                          (starts + d.bids).tolist(), ends.tolist(), strict=True)
        ]

    def _klines(self, stream: str, c: Chunk) -> Payloads:
        """Kline payloads at every update time in ``(start_ns, end_ns]``."""
        iv, period = KLINES[stream]
        at = np.arange((c.start_ns // period + 1) * period, c.end_ns + 1, period, dtype=np.int64)
        opens = (at - 1) // iv * iv
        i0 = np.searchsorted(c.agg_ns, opens, side="left")
        i1 = np.searchsorted(c.agg_ns, at, side="left")
        k, empty = _KlineSums(c, iv), i1 == i0
        before = np.where(i0 > 0, k.price[i0 - 1], c.prev_close)  # [-1]: the padding
        o, close, high, low = (np.where(empty, before, v) for v in (
            k.price[i0], k.price[i1 - 1], k.high[i1 - 1], k.low[i1 - 1]))
        first, last = (np.where(empty, -1, v) for v in (k.first_tid[i0], k.last_tid[i1 - 1]))
        v, n, q, bv, bq = (s[i1] - s[i0] for s in (k.lots, k.n, k.quote, k.buy_lots, k.buy_quote))
        sym, i, width = self.symbol, stream[6:], iv // MS - 1
        return at, [
            f'{{"e":"kline","E":{e},"s":"{sym}","k":{{"t":{t},"T":{t + width},"s":"{sym}",'
            f'"i":"{i}","f":{f},"L":{lt},"o":"{oo}","c":"{cc}","h":"{hh}","l":"{ll}",'
            f'"v":"{vv}","n":{nn},"x":{"true" if x else "false"},"q":"{qq}","V":"{bvv}",'
            f'"Q":"{bqq}","B":"0"}}}}'
            for e, t, f, lt, oo, cc, hh, ll, vv, nn, x, qq, bvv, bqq in zip(
                (at // MS).tolist(), (opens // MS).tolist(), first.tolist(), last.tolist(),
                _dec(o, 2), _dec(close, 2), _dec(high, 2), _dec(low, 2), _dec(v, 5),
                n.tolist(), (at % iv == 0).tolist(), _dec(q, 7), _dec(bv, 5), _dec(bq, 7),
                strict=True)
        ]


class _KlineSums:
    """Per order, padded with one trailing entry: prices, running high/low within its interval,
    fill ids; running sums with a leading 0."""

    def __init__(self, c: Chunk, iv: int) -> None:
        seg = (c.agg_ns - c.start_ns // iv * iv) // iv
        self.price = _pad(c.price)
        self.high = _pad(np.maximum.accumulate(c.price + seg * _BIG) - seg * _BIG)
        self.low = _pad(np.minimum.accumulate(c.price - seg * _BIG) + seg * _BIG)
        self.first_tid = _pad(c.first_tid)
        self.last_tid = _pad(c.first_tid + c.fills - 1)
        quote = c.price * c.lots  # units of 1e-7 quote asset
        self.lots, self.n, self.quote = _cum(c.lots), _cum(c.fills), _cum(quote)
        self.buy_lots, self.buy_quote = _cum(c.lots * c.buy), _cum(quote * c.buy)


def _per_second(d: DepthDiffs) -> DepthDiffs:
    """Each second's diffs merged into one (at the second's end): a level's last entry wins."""
    sec = (d.ns - 1) // NS
    n = d.price.size
    is_bid = np.arange(n) - np.repeat(np.cumsum(d.count) - d.count, d.count) < np.repeat(
        d.bids, d.count)
    entry_sec, key = np.repeat(sec, d.count), np.where(is_bid, -d.price, d.price)
    order = np.lexsort((-np.arange(n), key, ~is_bid, entry_sec))  # the latest entry first
    entry_sec, key, is_bid = entry_sec[order], key[order], is_bid[order]
    keep = np.ones(n, dtype=bool)
    keep[1:] = (np.diff(entry_sec) != 0) | (np.diff(key) != 0) | (is_bid[1:] != is_bid[:-1])
    secs, first = np.unique(sec, return_index=True)
    last = np.append(first[1:], sec.size) - 1
    kept = np.searchsorted(secs, entry_sec[keep])
    return DepthDiffs(ns=(secs + 1) * NS, first_id=d.first_id[first], last_id=d.last_id[last],
                      bids=np.bincount(kept, weights=is_bid[keep], minlength=secs.size)
                      .astype(np.int64),
                      count=np.bincount(kept, minlength=secs.size),
                      price=d.price[order][keep], lots=d.lots[order][keep])


def _pad(values: np.ndarray) -> np.ndarray:
    return np.append(values.astype(np.int64), 0)


def _cum(values: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(values, dtype=np.int64)))


def _dec(values: np.ndarray, digits: int) -> list[str]:
    """Integers in units of 10**-digits as 8-decimal strings, formatted once per distinct value.

    >>> _dec(np.array([600001, 5, 600001]), 2)
    ['6000.01000000', '0.05000000', '6000.01000000']
    """
    if not values.size:
        return []
    uniq, inverse = np.unique(values, return_inverse=True)
    d, fmt = 10**digits, f"%d.%0{digits}d{'0' * (8 - digits)}"  # %: measured 2x an f-string
    strs = [fmt % divmod(x, d) for x in uniq.tolist()]
    return [strs[i] for i in inverse.tolist()]
