"""Domain events: the typed, frozen values that flow from the feed through the engine.

Every event carries ``symbol``, ``ts_event`` and ``ts_init``:

- ``ts_event``: when it happened, in exchange time;
- ``ts_init``: when we received it (receive time of the raw frame);

both **integer nanoseconds since the Unix epoch** — the one time unit of the whole code base.
Binance sends milliseconds (or microseconds for streams opened with ``timeUnit=MICROSECOND`` and
for data.binance.vision spot files since 2025); the decoders convert at the edge.

Prices and quantities are floats parsed by :func:`ares_stream.feed.binance.parse_decimal`, the one
place that rejects NaN, infinities and negatives.

>>> t = Trade("BTCUSDT", 1_000_000_000, 1_000_000_500, 7, 61837.63, 0.02, True, False)
>>> t.notional
1236.7526
>>> Bar.__struct_fields__[:4]
('symbol', 'ts_event', 'ts_init', 'open_time')
"""

from __future__ import annotations

import math

import msgspec

NS_PER_MS = 1_000_000
NS_PER_US = 1_000
NS_PER_S = 1_000_000_000


class Trade(msgspec.Struct, frozen=True, gc=False):
    """One trade (``@trade``) or aggregate trade (``@aggTrade``, ``is_agg=True``)."""

    symbol: str
    ts_event: int  # trade time (T), ns
    ts_init: int  # receive time, ns
    trade_id: int  # t for @trade, a for @aggTrade
    price: float
    qty: float
    is_buyer_maker: bool  # m: True means the seller was the aggressor (a sell)
    is_agg: bool = False

    @property
    def notional(self) -> float:
        """Price times quantity, in the quote asset."""
        return self.price * self.qty


class BookTop(msgspec.Struct, frozen=True, gc=False):
    """Best bid and ask (``@bookTicker``).

    Spot bookTicker frames carry no event time: ``ts_event`` is then the receive time.
    """

    symbol: str
    ts_event: int
    ts_init: int
    update_id: int  # u
    bid: float  # b
    bid_qty: float  # B
    ask: float  # a
    ask_qty: float  # A


class Kline(msgspec.Struct, frozen=True, gc=False):
    """A candle (``@kline_<interval>``, REST klines or a candle file).

    Only ``closed`` candles become bars.
    """

    symbol: str
    ts_event: int  # E for a stream frame; close time for a file row
    ts_init: int
    interval: str  # "1m", "1h", ...
    open_time: int  # ns
    close_time: int  # ns, last instant inside the candle (Binance: open + interval - 1 ms)
    open: float
    high: float
    low: float
    close: float
    volume: float
    trade_count: int | None = None
    taker_buy_volume: float | None = None  # None where the source does not carry it
    closed: bool = True


class DepthUpdate(msgspec.Struct, frozen=True, gc=False):
    """Diff depth (``@depth``, ``@depth@100ms``): the levels that changed (qty 0 removes one),
    applied to the local book (:mod:`ares_stream.features.book`) when book features are on."""

    symbol: str
    ts_event: int
    ts_init: int
    first_update_id: int  # U
    final_update_id: int  # u
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]
    prev_final_update_id: int | None = None  # pu: USD-M futures only (the previous event's u)


class DepthSnapshot(msgspec.Struct, frozen=True, gc=False):
    """A REST depth snapshot inside a recording: our daemon records it wrapped as stream
    ``<symbol>@depthSnapshot`` (the symbol is known); a bare snapshot line (as at the head of
    other recorders' captures) names no symbol (``""``): the engine gives it to the symbol of the
    next depth diff."""

    symbol: str
    ts_event: int  # no exchange time in the payload: the receive time
    ts_init: int
    last_update_id: int
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]


class Control(msgspec.Struct, frozen=True, gc=False):
    """A non-market frame: a subscription reply (``kind="reply"``), an error frame
    (``kind="error"``) or a server notice such as ``serverShutdown`` (``kind="event"``)."""

    kind: str
    ts_init: int
    id: int | str | None = None
    code: int | None = None
    msg: str = ""
    symbol: str = ""
    ts_event: int = 0


class Gap(msgspec.Struct, frozen=True, gc=False):
    """A hole in the data: missing trade ids, a jump in kline open times or a recording marker.

    ``first_missing``/``last_missing`` are ids for id gaps and ns times for time gaps.
    Features warm up again after a gap; no bar is invented across it.
    """

    symbol: str
    ts_event: int
    ts_init: int
    kind: str  # "trade_id" | "agg_id" | "kline_time" | "marker"
    first_missing: int
    last_missing: int

    @property
    def size(self) -> int:
        """Missing items, both ends included: ids for an id gap (a span of ns for a time gap)."""
        return self.last_missing - self.first_missing + 1


class Bar(msgspec.Struct, frozen=True, gc=False):
    """A closed time bar. ``ts_event`` is the bar's end (``open_time + interval``)."""

    symbol: str
    ts_event: int
    ts_init: int  # receive time of the frame that closed the bar
    open_time: int
    interval_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    buy_volume: float | None  # taker-buy volume; None where the source does not say
    trade_count: int | None
    vwap: float
    bid: float | None = None  # book top at the bar's close, where bookTicker frames are present
    ask: float | None = None
    bid_qty: float | None = None
    ask_qty: float | None = None

    @property
    def sell_volume(self) -> float | None:
        """Taker-sell volume (``volume - buy_volume``); None where the source does not say."""
        return None if self.buy_volume is None else self.volume - self.buy_volume


class Prediction(msgspec.Struct, frozen=True, gc=False):
    """What the online learner said at bar ``ts_event`` about the label ``horizon`` bars later."""

    symbol: str
    ts_event: int
    ts_init: int
    model: str
    horizon: int
    proba_up: float  # classification: P(label = 1); regression: NaN
    value: float  # regression: predicted forward log return; classification: proba_up
    close: float
    booster: float = math.nan  # P(label = 1) of the champion booster; NaN without one


class Outcome(msgspec.Struct, frozen=True, gc=False):
    """The label of the prediction made at ``ts_event``, known at ``ts_label``."""

    symbol: str
    ts_event: int
    ts_init: int
    ts_label: int
    forward_return: float  # log(close[t + horizon] / close[t])
    label: int  # 1 if forward_return > threshold (a long would have paid its fees), else 0
    loss: float  # the loss of the prediction against this label


class DriftDetected(msgspec.Struct, frozen=True, gc=False):
    """ADWIN found that the online learner's loss rose; the learner was replaced."""

    symbol: str
    ts_event: int
    ts_init: int
    detector: str
    mean_before: float
    mean_after: float
    samples_seen: int
    action: str


Event = Trade | BookTop | Kline | DepthUpdate | DepthSnapshot | Control | Gap
