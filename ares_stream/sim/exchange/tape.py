"""The local exchange's whole history: the frames it broadcasts and the REST views built from them.

A :class:`Tape` is made from raw frames (a recording), or from the simulator's ``(receive ns,
stream, payload)`` tuples (:meth:`Tape.from_frames`, no file in between): combined-stream frames
keep their stream name, raw frames get one from their payload (``<symbol>@<event type>``);
replies, errors and gap markers are skipped, and so are REST depth snapshots (a bare
``{"lastUpdateId":…}`` line, given to the symbol of the next depth diff, or a
``<symbol>@depthSnapshot`` frame), which are not broadcast but start the symbol's book. Each frame
keeps its receive time (``times``, ns), by which a paced exchange schedules it. Per symbol it
keeps what REST serves: aggregate trades, trades and closed klines, each row with the tape
position at which it became known, and the order book its depth diffs rebuild
(:class:`~ares_stream.sim.exchange.depth.DepthBook`), so that REST can serve exactly what the
broadcast clock has already sent.

>>> agg = b'{"e":"aggTrade","s":"BTCUSDT","a":%d,"p":"1.5","q":"2","f":1,"l":1,"T":%d,"m":true}'
>>> tape = Tape([RawFrame(0, agg % (7, 1000)), RawFrame(0, agg % (8, 61000)),
...              RawFrame(0, b'{"result":null,"id":1}')])
>>> [stream for stream, _ in tape.frames], tape.symbols, tape.times
(['btcusdt@aggTrade', 'btcusdt@aggTrade'], ['BTCUSDT'], [0, 0])
>>> Tape.from_frames([(5, "btcusdt@aggTrade", agg % (9, 1000))]).times
[5]
>>> series = tape.agg_trades["BTCUSDT"]
>>> [row["a"] for row in series.query(1)], [row["a"] for row in series.query(2, from_id=8)]
([7], [8])
>>> print(tape.klines("BTCUSDT", "1m", position=2))  # doctest: +NORMALIZE_WHITESPACE
[[0, '1.50000000', '1.50000000', '1.50000000', '1.50000000', '2.00000000', 59999,
  '3.00000000', 1, '0.00000000', '0.00000000', '0']]
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from msgspec import UNSET, Raw, Struct, UnsetType

from ares_stream.feed import RawFrame
from ares_stream.sim.exchange.depth import DepthBook

__all__ = ["INTERVALS", "Series", "Tape", "many_symbols"]

INTERVALS = {  # kline interval → length in ms (1M is calendar months, handled apart)
    "1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000,
    "30m": 1_800_000, "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000,
    "8h": 28_800_000, "12h": 43_200_000, "1d": 86_400_000, "3d": 259_200_000,
    "1w": 604_800_000, "1M": 0,
}  # fmt: skip
_MONDAY = 4 * 86_400_000  # 1970-01-05, the first Monday: Binance weeks start on Mondays
_NEVER = 2**62  # a position beyond any tape
_ZERO = Decimal(0)
_PLACES = Decimal("1e-8")  # Binance prints prices and quantities with 8 decimals


class _Top(Struct, gc=False):
    """Keys that tell a frame's kind (combined wrapper, or a raw payload)."""

    stream: str | None = None  # combined stream name
    data: Raw | UnsetType = UNSET  # combined stream payload
    e: str | None = None  # event type of a raw payload
    s: str | None = None  # symbol of a raw payload
    u: int | None = None  # update id: a spot bookTicker has it but no "e"
    lastUpdateId: int | None = None  # a REST depth snapshot
    k: dict[str, Any] | None = None  # kline body (for its interval)


class _AggTrade(Struct, gc=False):
    a: int  # aggregate trade id
    p: str  # price
    q: str  # quantity
    f: int  # first trade id
    l: int  # last trade id  # noqa: E741 (Binance's name)
    T: int  # trade time
    m: bool  # is the buyer the maker?
    M: bool = True  # best price match


class _Trade(Struct, gc=False):
    t: int  # trade id
    p: str  # price
    q: str  # quantity
    T: int  # trade time
    m: bool  # is the buyer the maker?
    M: bool = True  # best price match


class _KlineBody(Struct, gc=False):
    t: int  # open time
    T: int  # close time
    i: str  # interval
    o: str  # open
    h: str  # high
    low: str = msgspec.field(name="l")  # low
    c: str = "0"  # close
    v: str = "0"  # base volume
    n: int = 0  # number of trades
    x: bool = False  # closed?
    q: str = "0"  # quote volume
    V: str = "0"  # taker buy base volume
    Q: str = "0"  # taker buy quote volume


class _Kline(Struct, gc=False):
    k: _KlineBody  # the candle


class Series:
    """One symbol's rows of one kind in id order, each with the tape position it appeared at.

    Ids must increase: a row whose id is not above the last one (a duplicate) is skipped.
    ``times`` must not decrease (trade times do not, kline open times do not).
    """

    __slots__ = ("ids", "positions", "rows", "times")

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.times: list[int] = []
        self.positions: list[int] = []
        self.rows: list[Any] = []

    def add(self, position: int, row_id: int, time: int, row: Any) -> bool:
        """Append a row seen at ``position``; False (and nothing kept) for a stale id."""
        if self.ids and row_id <= self.ids[-1]:
            return False
        self.ids.append(row_id)
        self.times.append(time)
        self.positions.append(position)
        self.rows.append(row)
        return True

    def visible(self, position: int) -> int:
        """How many rows the first ``position`` frames of the tape revealed."""
        return bisect.bisect_left(self.positions, position)

    def query(
        self,
        position: int,
        *,
        from_id: int | None = None,
        start: int | None = None,
        end: int | None = None,
        limit: int = 500,
    ) -> list[Any]:
        """Binance's slice: from ``from_id``/``start`` (inclusive) on, else the most recent rows
        (up to ``end``, inclusive), at most ``limit``, among those known at ``position``."""
        n = self.visible(position)
        hi = n if end is None else bisect.bisect_right(self.times, end, 0, n)
        lo: int | None = None
        if from_id is not None:
            lo = bisect.bisect_left(self.ids, from_id, 0, n)
        if start is not None:
            lo = max(lo or 0, bisect.bisect_left(self.times, start, 0, n))
        if lo is None:
            lo = max(hi - limit, 0)
        return self.rows[lo : min(hi, lo + limit)]


def _quote(price: str, qty: str) -> str:
    """``price × qty`` as Binance prints it (8 decimals)."""
    return f"{(Decimal(price) * Decimal(qty)).quantize(_PLACES):f}"


def _symbol(stream: str) -> str:
    name = stream.partition("@")[0]
    return "" if name.startswith("!") else name.upper()


class Tape:
    """The exchange's whole history, built from raw frames (a recording) or simulator tuples.

    ``frames`` holds ``(stream name, payload JSON bytes)`` in tape order and ``times`` their
    receive times (ns since the epoch); ``agg_trades`` and ``trades`` map a symbol to its
    :class:`Series`; ``kline_series`` maps ``(symbol, interval)`` to the closed klines of kline
    frames; ``depth`` a symbol to its :class:`DepthBook`. ``skipped`` counts the lines not
    broadcast (depth snapshots included), ``bad`` market frames whose payload did not decode
    (they are still broadcast).
    """

    def __init__(self, frames: Iterable[RawFrame | Any] = ()) -> None:
        self.frames: list[tuple[str, bytes]] = []
        self.times: list[int] = []
        self.symbols: list[str] = []
        self.agg_trades: dict[str, Series] = {}
        self.trades: dict[str, Series] = {}
        self.kline_series: dict[tuple[str, str], Series] = {}
        self.depth: dict[str, DepthBook] = {}
        self.skipped = 0
        self.bad = 0
        self._snapshot: tuple[int, bytes] | None = None  # a bare one, for the next depth diff
        self._derived: dict[tuple[str, str], tuple[int, list[list[Any]]]] = {}
        top = msgspec.json.Decoder(_Top).decode
        for frame in frames:
            named = _name(top, frame.data) if isinstance(frame, RawFrame) else None
            if named is None:
                self.skipped += 1
            else:
                self._add(*named, frame.ts_init)

    @classmethod
    def from_recording(cls, paths: Sequence[str | Path]) -> Tape:
        """A tape of recording files (see :class:`~ares_stream.feed.recording.RecordingSource`)."""
        from ares_stream.feed.recording import RecordingSource

        return cls(RecordingSource(paths))

    @classmethod
    def from_frames(cls, frames: Iterable[tuple[int, str, bytes]]) -> Tape:
        """A tape of ``(receive ns, stream name, payload)`` tuples, e.g. the simulator's
        :func:`~ares_stream.sim.simulator.frames`, consumed as they come."""
        tape = cls()
        for ts, stream, payload in frames:
            tape._add(stream, payload, ts)
        return tape

    def __iter__(self) -> Iterator[tuple[int, str, bytes]]:
        """The frames as ``(receive ns, stream, payload)``, in tape order."""
        return (
            (ts, stream, payload)
            for ts, (stream, payload) in zip(self.times, self.frames, strict=True)
        )

    def order_book(self, symbol: str, position: int = _NEVER, *, limit: int = 5000,
                   lag: int = 0) -> dict[str, Any] | None:
        """``/api/v3/depth`` once ``position`` frames were broadcast (``lag`` depth items back):
        an empty book for a symbol without depth frames; None if its book is not known."""
        book = self.depth.get(symbol)
        if book is None:
            return {"lastUpdateId": 0, "bids": [], "asks": []}
        return book.at(position, limit=limit, lag=lag)

    def _add(self, stream: str, payload: bytes, ts: int) -> None:
        position, symbol = len(self.frames), _symbol(stream)
        kind = stream.partition("@")[2].lower()
        if kind == "depthsnapshot":  # a REST snapshot: not broadcast, it starts the book
            self.skipped += 1
            if symbol:
                self._depth(symbol).add_snapshot(position, payload)
            else:
                self._snapshot = position, payload
            return
        self.frames.append((stream, payload))
        self.times.append(ts)
        if symbol and symbol not in self.symbols:
            self.symbols.append(symbol)
        if kind in ("depth", "depth@100ms") and symbol:
            book = self._depth(symbol)
            if self._snapshot is not None:
                book.add_snapshot(*self._snapshot)
                self._snapshot = None
            book.add_diff(position)
        try:
            if kind == "aggtrade":
                self._add_agg(symbol, position, msgspec.json.decode(payload, type=_AggTrade))
            elif kind == "trade":
                self._add_trade(symbol, position, msgspec.json.decode(payload, type=_Trade))
            elif kind.startswith("kline_"):
                self._add_kline(symbol, position, msgspec.json.decode(payload, type=_Kline).k)
        except (msgspec.DecodeError, msgspec.ValidationError, ArithmeticError, ValueError):
            self.bad += 1

    def _depth(self, symbol: str) -> DepthBook:
        book = self.depth.get(symbol)
        if book is None:
            book = self.depth[symbol] = DepthBook(self.frames)
        return book

    def _add_agg(self, symbol: str, position: int, m: _AggTrade) -> None:
        row = {"a": m.a, "p": m.p, "q": m.q, "f": m.f, "l": m.l, "T": m.T, "m": m.m, "M": m.M}
        self.agg_trades.setdefault(symbol, Series()).add(position, m.a, m.T, row)

    def _add_trade(self, symbol: str, position: int, m: _Trade) -> None:
        row = {
            "id": m.t, "price": m.p, "qty": m.q, "quoteQty": _quote(m.p, m.q), "time": m.T,
            "isBuyerMaker": m.m, "isBestMatch": m.M,
        }  # fmt: skip
        self.trades.setdefault(symbol, Series()).add(position, m.t, m.T, row)

    def _add_kline(self, symbol: str, position: int, k: _KlineBody) -> None:
        if k.x:
            row = [k.t, k.o, k.h, k.low, k.c, k.v, k.T, k.q, k.n, k.V, k.Q, "0"]
            self.kline_series.setdefault((symbol, k.i), Series()).add(position, k.t, k.t, row)

    def klines(
        self,
        symbol: str,
        interval: str,
        position: int = _NEVER,
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int = 500,
    ) -> list[list[Any]]:
        """Closed klines known at ``position``: from kline frames of that interval when the tape
        has them, else built from its trades (or aggregate trades); ``start``/``end`` bound the
        open time (inclusive)."""
        series = self.kline_series.get((symbol, interval))
        if series is not None:
            return series.query(position, start=start, end=end, limit=limit)
        built = Series()
        for row in self._derive(symbol, interval, position):
            built.add(0, row[0], row[0], row)
        return built.query(1, start=start, end=end, limit=limit)

    def _derive(self, symbol: str, interval: str, position: int) -> list[list[Any]]:
        """Klines from trades, cached per (symbol, interval) and number of visible trades."""
        trades = self.trades.get(symbol) or self.agg_trades.get(symbol)
        if trades is None:
            return []
        n = trades.visible(position)
        cached = self._derived.get((symbol, interval))
        if cached is None or cached[0] != n:
            cached = (n, _klines_from(trades.rows[:n], interval))
            self._derived[(symbol, interval)] = cached
        return cached[1]


def _name(top: Any, data: bytes) -> tuple[str, bytes] | None:
    """``(stream, payload)`` of a market frame; None for anything else."""
    try:
        frame = top(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if frame.stream is not None:
        return None if frame.data is UNSET else (frame.stream, bytes(frame.data))
    if frame.lastUpdateId is not None and frame.s is None:  # a bare REST depth snapshot
        return "@depthSnapshot", data
    if frame.s is None:  # a reply, an error, …
        return None
    symbol = frame.s.lower()
    if frame.e is None:
        return (f"{symbol}@bookTicker", data) if frame.u is not None else None
    if frame.e == "kline" and frame.k is not None:
        return f"{symbol}@kline_{frame.k.get('i')}", data
    return f"{symbol}@{'depth' if frame.e == 'depthUpdate' else frame.e}", data


def _open_time(ts: int, interval: str) -> tuple[int, int]:
    """``(open time, next open time)`` of the ``interval`` candle holding ``ts`` (ms, UTC)."""
    if interval == "1M":
        day = datetime.fromtimestamp(ts / 1000, UTC)
        first = datetime(day.year, day.month, 1, tzinfo=UTC)
        nxt = datetime(day.year + day.month // 12, day.month % 12 + 1, 1, tzinfo=UTC)
        return int(first.timestamp() * 1000), int(nxt.timestamp() * 1000)
    size = INTERVALS[interval]
    base = _MONDAY if interval == "1w" else 0
    start = (ts - base) // size * size + base
    return start, start + size


def _klines_from(rows: list[dict[str, Any]], interval: str) -> list[list[Any]]:
    """Closed klines of trade (or aggregate trade) rows; the candle of the last row is open.

    Candles without trades between two traded ones are flat at the previous close (as Binance
    serves them). Builds every candle of the rows: a cached loop, hence its length.
    """
    keys = ("price", "qty", "time", "isBuyerMaker")
    if rows and "a" in rows[0]:
        keys = ("p", "q", "T", "m")
    out: list[list[Any]] = []
    candle: list[Any] = []
    for row in rows:
        t, price, qty = row[keys[2]], Decimal(row[keys[0]]), Decimal(row[keys[1]])
        if candle and t > candle[6]:  # the trade closes the candle (and any empty ones after it)
            out.append(_finish(candle))
            out.extend(_flat(candle[6] + 1, _open_time(t, interval)[0], candle[4], interval))
            candle = []
        if not candle:
            opened, nxt = _open_time(t, interval)
            candle = [opened, price, price, price, price, _ZERO, nxt - 1, _ZERO, 0, _ZERO, _ZERO]
        candle[2], candle[3], candle[4] = max(candle[2], price), min(candle[3], price), price
        candle[5] += qty
        candle[7] += price * qty
        candle[8] += 1
        if not row[keys[3]]:  # the buyer took liquidity
            candle[9] += qty
            candle[10] += price * qty
    return out


def _flat(opened: int, until: int, close: Decimal, interval: str) -> list[list[Any]]:
    """The empty candles from ``opened`` up to (not including) ``until``, flat at ``close``."""
    out = []
    while opened < until:
        nxt = _open_time(opened, interval)[1]
        flat = [opened, close, close, close, close, _ZERO, nxt - 1, _ZERO, 0, _ZERO, _ZERO]
        out.append(_finish(flat))
        opened = nxt
    return out


def _finish(c: list[Any]) -> list[Any]:
    """A working candle → Binance's 12-field kline array (decimals printed with 8 places)."""
    o, h, low, close, volume, quote, buy, buy_quote = (
        f"{v.quantize(_PLACES):f}" for v in (c[1], c[2], c[3], c[4], c[5], c[7], c[9], c[10])
    )
    return [c[0], o, h, low, close, volume, c[6], quote, c[8], buy, buy_quote, "0"]


def many_symbols(source: Tape, n: int, *, quotes: Sequence[str] = ("USDT",),
                 frames: int | None = None) -> Tape:
    """A tape of ``n`` symbols, each playing the (first ``frames``) frames of one-symbol
    ``source`` under its own name: ``S0000USDT``, ``S0001BTC`` … (the quotes taken in turn).
    The market moves at once: each source frame goes out for every symbol, in symbol order, so
    every symbol's ids run as the source's do.

    >>> agg = b'{"e":"aggTrade","s":"BTCUSDT","a":%d,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true}'
    >>> tape = many_symbols(Tape([RawFrame(0, agg % 7), RawFrame(0, agg % 8)]), 3,
    ...                     quotes=("USDT", "BTC"))
    >>> tape.symbols
    ['S0000USDT', 'S0001BTC', 'S0002USDT']
    >>> [s for s, _ in tape.frames][2:4]
    ['s0002usdt@aggTrade', 's0000usdt@aggTrade']
    >>> [row["a"] for row in tape.agg_trades["S0001BTC"].rows]
    [7, 8]
    """
    if len(source.symbols) != 1:
        raise ValueError(f"many_symbols needs a one-symbol tape, not {source.symbols}")
    old = source.symbols[0].encode()
    names = [f"S{k:04d}{quotes[k % len(quotes)]}" for k in range(n)]
    played = list(source)[:frames]

    def relabelled() -> Iterator[tuple[int, str, bytes]]:
        for ts, stream, payload in played:
            kind = stream.partition("@")[2]
            for name in names:
                new = payload.replace(b'"s":"%s"' % old, b'"s":"%s"' % name.encode())
                yield ts, f"{name.lower()}@{kind}", new

    return Tape.from_frames(relabelled())
