"""Binance wire decoding: real recorded frames, documented payloads, malformed input, fuzzing."""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ares_stream.errors import ParseError
from ares_stream.events import BookTop, Control, DepthSnapshot, DepthUpdate, Kline, Trade
from ares_stream.feed.binance import KINDS, Decoder, parse_decimal, to_ns
from tests.conftest import shared_path
from tests.feed import fixtures_binance as fx

MS = 1_000_000  # ns per ms
TS_INIT = 1_723_161_254_087_896_568


def spot_lines(day: str) -> Iterator[tuple[int, bytes]]:
    """``(receive ns, frame)`` for every line of the hftbacktest BTCUSDT capture of ``day``."""
    with gzip.open(shared_path(f"ws/binance-spot-btcusdt-{day}.gz"), "rb") as lines:
        for line in lines:
            ts, _, frame = line.rstrip(b"\n").partition(b" ")
            yield int(ts), frame


def cryptofeed_lines(market: str) -> list[tuple[int, bytes]]:
    """``(receive ns, frame)`` of a cryptofeed sample: URL header skipped, ``<secs>: `` stripped."""
    text = shared_path(f"ws/cryptofeed-binance-{market}.ws.txt").read_bytes()
    out = []
    for line in text.splitlines()[1:]:
        if line:
            secs, _, frame = line.partition(b": ")
            out.append((int(float(secs) * 1e9), frame))
    return out


def first(lines: Iterator[tuple[int, bytes]] | list[tuple[int, bytes]], marker: bytes) -> bytes:
    """The first frame containing ``marker``."""
    return next(frame for _, frame in lines if marker in frame)


# ---- parse_decimal / to_ns ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("61837.63000000", 61837.63),
        ("0.00000000", 0.0),
        ("0", 0.0),
        ("7", 7.0),
        ("000123.5", 123.5),
        ("1e-8", 1e-8),
        ("2.5E+3", 2500.0),
        ("1.5e3", 1500.0),
    ],
)
def test_parse_decimal_accepts(text: str, value: float) -> None:
    """Strict decimals, with or without fraction and exponent, parse to their float value."""
    assert parse_decimal(text) == value
    assert parse_decimal(text) == value  # a second time, from the cache


@pytest.mark.parametrize(
    "text",
    [
        "", "NaN", "nan", "inf", "-inf", "Infinity", "-1", "-0", "-0.0", "+1", " 1", "1 ", "1\n",
        "1_000", "1.", ".5", "1.e5", "1.E5", "1e", "1e400", "9" * 400, "0x10", "1,5", "1.2.3",
        "١٢٣", "1١2", "٣.٥", "abc",
    ],
)  # fmt: skip
def test_parse_decimal_rejects(text: str) -> None:
    """NaN, infinities, signs, whitespace, underscores, bare dots, non-ASCII digits: refused."""
    with pytest.raises(ParseError):
        parse_decimal(text)


@pytest.mark.parametrize("value", [None, 1.5, 3, b"1.0", ["1"]])
def test_parse_decimal_rejects_non_strings(value: object) -> None:
    """Anything but a str raises ParseError, not TypeError."""
    with pytest.raises(ParseError):
        parse_decimal(value)  # type: ignore[arg-type]


GRAMMAR = re.compile(r"[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")


@settings(max_examples=400)
@given(st.text(alphabet="0123456789.eE+-_ \tnaif١", max_size=12))
def test_parse_decimal_is_exactly_the_grammar(text: str) -> None:
    """A string is accepted iff it matches the decimal grammar and its value is finite."""
    expected_ok = GRAMMAR.fullmatch(text) is not None and math.isfinite(float(text))
    try:
        value = parse_decimal(text)
    except ParseError:
        assert not expected_ok
    else:
        assert expected_ok
        assert value == float(text)


@pytest.mark.parametrize(
    ("ts", "ns"),
    [
        (1723161255342, 1723161255342 * MS),  # ms
        (1, MS),  # the smallest ms
        (1741046401123456, 1741046401123456000),  # µs
        (10**14, 10**17),  # the smallest µs
        (1741046401123456789, 1741046401123456789),  # ns
        (2**63 - 1, 2**63 - 1),  # the largest int64 ns
    ],
)
def test_to_ns_by_magnitude(ts: int, ns: int) -> None:
    """ms, µs and ns timestamps are told apart by magnitude and converted to ns."""
    assert to_ns(ts) == ns


@pytest.mark.parametrize("ts", [0, -1, -1723161255342, 2**63, 10**14 - 1, 10**17 - 1])
def test_to_ns_rejects(ts: int) -> None:
    """Zero, negatives and timestamps whose ns overflow int64 raise ParseError."""
    with pytest.raises(ParseError):
        to_ns(ts)


# ---- real recorded frames -------------------------------------------------------------------


def test_real_spot_trade() -> None:
    """A recorded combined-stream @trade frame becomes a Trade with ns times."""
    ts_init, frame = next((t, f) for t, f in spot_lines("20240808") if b"@trade" in f)
    event = Decoder().decode(frame, ts_init)
    assert event == Trade(
        "BTCUSDT", 1723161255342 * MS, ts_init, 3735683259, 61837.63, 0.02, True, False
    )


def test_real_spot_book_ticker_uses_receive_time() -> None:
    """A recorded spot bookTicker (no e/E) becomes a BookTop stamped with the receive time."""
    event = Decoder().decode(first(spot_lines("20240808"), b"@bookTicker"), TS_INIT)
    assert event == BookTop(
        "BTCUSDT", TS_INIT, TS_INIT, 50093239212, 61837.63, 3.78826, 61837.64, 1.54698
    )


def test_real_spot_depth_update() -> None:
    """A recorded @depth@100ms frame becomes a DepthUpdate with parsed levels."""
    event = Decoder().decode(first(spot_lines("20240808"), b"@depth"), TS_INIT)
    assert isinstance(event, DepthUpdate)
    assert (event.symbol, event.ts_event) == ("BTCUSDT", 1723161255208 * MS)
    assert (event.first_update_id, event.final_update_id) == (50093239189, 50093239202)
    assert event.bids == ((61737.63, 0.0), (61730.17, 0.0), (56854.58, 0.0))
    assert len(event.asks) == 9 and event.asks[0] == (61837.64, 1.54698)


def test_real_depth_snapshot_line() -> None:
    """The unwrapped REST depth snapshot inside the capture becomes a DepthSnapshot."""
    ts_init, frame = next((t, f) for t, f in spot_lines("20240808") if b"lastUpdateId" in f)
    event = Decoder().decode(frame, ts_init)
    assert isinstance(event, DepthSnapshot)
    assert (event.symbol, event.ts_event, event.ts_init) == ("", ts_init, ts_init)
    assert event.last_update_id == 50093239218
    assert len(event.bids) == len(event.asks) == 1000
    assert event.bids[0] == (61837.63, 3.78826) and event.asks[-1] == (62053.18, 0.0001)


def test_a_recorded_snapshot_names_its_symbol_by_its_stream() -> None:
    """The snapshot our daemon records (REST body wrapped as ``<symbol>@depthSnapshot``) decodes
    to the same DepthSnapshot as the bare line, with the stream's symbol."""
    from ares_stream.feed.backfill import snapshot_frame

    ts_init, frame = next((t, f) for t, f in spot_lines("20240808") if b"lastUpdateId" in f)
    bare = Decoder().decode(frame, ts_init)
    wrapped = Decoder().decode(snapshot_frame("BTCUSDT", json.loads(frame)), ts_init)
    assert isinstance(bare, DepthSnapshot) and isinstance(wrapped, DepthSnapshot)
    assert wrapped.symbol == "BTCUSDT" and wrapped.bids == bare.bids and wrapped.asks == bare.asks
    assert wrapped.last_update_id == bare.last_update_id


def test_real_spot_agg_trade_and_kline() -> None:
    """Recorded spot @aggTrade and @kline_1m frames become a Trade (is_agg) and a Kline."""
    lines = cryptofeed_lines("spot")
    decoder = Decoder()
    trade = decoder.decode(first(lines, b"nknusdt@aggTrade"), 0)
    assert trade == Trade("NKNUSDT", 1633998523963 * MS, 0, 15683430, 0.3528, 58.0, False, True)
    kline = decoder.decode(first(lines, b"nknusdt@kline_1m"), 0)
    assert isinstance(kline, Kline)
    assert (kline.open_time, kline.close_time) == (1633998480000 * MS, 1633998539999 * MS)
    assert (kline.open, kline.high, kline.low, kline.close) == (0.3527, 0.3528, 0.3522, 0.3528)
    assert (kline.volume, kline.trade_count, kline.taker_buy_volume) == (25877.0, 30, 58.0)
    assert (kline.interval, kline.closed, kline.ts_event) == ("1m", False, 1633998523963 * MS)


def test_real_futures_agg_trade() -> None:
    """A recorded USD-M aggTrade (no M field) becomes a Trade; extra fields are ignored."""
    event = Decoder().decode(first(cryptofeed_lines("usdm"), b"ctkusdt@aggTrade"), 0)
    assert event == Trade("CTKUSDT", 1626992741421 * MS, 0, 16599292, 1.011, 10.0, False, True)


def test_real_futures_closed_kline() -> None:
    """A recorded closed USD-M kline has closed=True and every candle field."""
    event = Decoder().decode(first(cryptofeed_lines("usdm"), b'"x":true'), 5)
    assert event == Kline(
        "SUSHIUSDT", 1626992760203 * MS, 5, "1m", 1626992700000 * MS, 1626992759999 * MS,
        7.608, 7.618, 7.607, 7.617, 3005.0, 113, 1900.0, True,
    )  # fmt: skip


def test_real_futures_book_ticker_uses_transaction_time() -> None:
    """A recorded USD-M bookTicker is stamped with its transaction time T."""
    event = Decoder().decode(first(cryptofeed_lines("usdm"), b"@bookTicker"), 9)
    assert event == BookTop(
        "SUSHIUSDT", 1626992741012 * MS, 9, 600859600576, 7.611, 2.0, 7.612, 297.0
    )


def test_real_futures_depth_update() -> None:
    """A recorded USD-M depthUpdate (extra T, pu) is stamped with T, keeps its levels and the
    previous event's final id (pu: futures continuity)."""
    event = Decoder().decode(first(cryptofeed_lines("usdm"), b"sushiusdt@depth"), 9)
    assert event == DepthUpdate(
        "SUSHIUSDT", 1626992741024 * MS, 9, 600859599090, 600859600917,
        ((7.504, 813.0), (7.609, 0.0), (7.611, 2.0)), ((7.615, 1563.0), (7.622, 3284.0)),
        600859598061,
    )  # fmt: skip


@pytest.mark.parametrize(("day", "trades"), [("20240808", 9757), ("20240809", 10147)])
def test_whole_spot_capture_decodes(day: str, trades: int) -> None:
    """Every line of the BTCUSDT capture decodes without a ParseError; trades are all counted."""
    decoder = Decoder()
    for ts_init, frame in spot_lines(day):
        assert decoder.decode(frame, ts_init) is not None
    assert decoder.counts["trade"] == trades
    assert decoder.counts["unknown"] == 0


@pytest.mark.parametrize(
    ("market", "counts"),
    [
        ("spot", {"aggTrade": 2, "kline": 2, "bookTicker": 84, "depthUpdate": 177}),
        ("usdm", {"aggTrade": 91, "kline": 67, "bookTicker": 613, "depthUpdate": 764}),
    ],
)
def test_whole_cryptofeed_samples_decode(market: str, counts: dict[str, int]) -> None:
    """Every frame of the cryptofeed spot and USD-M samples decodes, each counted by kind."""
    decoder = Decoder()
    for ts_init, frame in cryptofeed_lines(market):
        assert decoder.decode(frame, ts_init) is not None
    assert {k: v for k, v in decoder.counts.items() if v} == counts


# ---- documented payloads: raw and combined, every kind --------------------------------------


@pytest.mark.parametrize("wrapped", [False, True])
def test_documented_trade_raw_and_combined(wrapped: bool) -> None:
    """The documented @trade payload decodes the same with or without the wrapper."""
    frame = fx.wrap("bnbbtc@trade", fx.TRADE) if wrapped else fx.TRADE
    event = Decoder().decode(frame, 1)
    assert event == Trade("BNBBTC", 1672515782136 * MS, 1, 12345, 0.001, 100.0, True, False)


def test_microsecond_timestamps() -> None:
    """A timeUnit=MICROSECOND trade frame gets ns times from its µs fields, raw and wrapped."""
    expected = Trade("TRXUSDT", 1741046401123456000, 2, 571822367, 0.2355, 1042.1, False, False)
    decoder = Decoder()
    assert decoder.decode(fx.TRADE_US, 2) == expected
    assert decoder.decode(fx.wrap("trxusdt@trade", fx.TRADE_US).encode(), 2) == expected


def test_documented_agg_trade_raw() -> None:
    """An unwrapped aggTrade frame is recognised by its e field."""
    event = Decoder().decode(fx.AGG_TRADE, 1)
    assert event == Trade("BNBBTC", 1672515782136 * MS, 1, 12345, 0.001, 100.0, True, True)


@pytest.mark.parametrize("stream", ["bnbbtc@kline_1m", "bnbbtc@kline_1d@+08:00"])
def test_documented_kline(stream: str) -> None:
    """Kline streams (UTC and with a timezone offset) decode to an open Kline."""
    event = Decoder().decode(fx.wrap(stream, fx.KLINE), 1)
    assert event == Kline(
        "BNBBTC", 1672515782136 * MS, 1, "1m", 1672515780000 * MS, 1672515839999 * MS,
        0.001, 0.0025, 0.0015, 0.002, 1000.0, 100, 500.0, False,
    )  # fmt: skip


def test_documented_spot_book_ticker_unwrapped() -> None:
    """An unwrapped spot bookTicker is recognised by its keys (u, s, b, B, a, A; no e)."""
    event = Decoder().decode(fx.BOOK_TICKER, 3)
    assert event == BookTop("BNBUSDT", 3, 3, 400900217, 25.3519, 31.21, 25.3652, 40.66)


def test_futures_book_ticker_without_transaction_time_uses_event_time() -> None:
    """A futures bookTicker without T is stamped with its event time E."""
    event = Decoder().decode(fx.FUTURES_BOOK_TICKER_NO_T, 3)
    assert isinstance(event, BookTop) and event.ts_event == 1568014460893 * MS


def test_documented_depth_update() -> None:
    """The documented diff-depth payload decodes to a DepthUpdate, raw and wrapped."""
    expected = DepthUpdate(
        "BNBBTC", 1672515782136 * MS, 4, 157, 160, ((0.0024, 10.0),), ((0.0026, 100.0),)
    )
    decoder = Decoder()
    assert decoder.decode(fx.DEPTH, 4) == expected
    assert decoder.decode(fx.wrap("bnbbtc@depth", fx.DEPTH), 4) == expected


def test_partial_depth_streams() -> None:
    """Partial depth is a snapshot on spot and a depthUpdate on futures."""
    decoder = Decoder()
    spot = decoder.decode(fx.wrap("bnbbtc@depth5@100ms", fx.PARTIAL_DEPTH), 4)
    assert spot == DepthSnapshot("", 4, 4, 160, ((0.0024, 10.0),), ((0.0026, 100.0),))
    futures = decoder.decode(fx.wrap("btcusdt@depth5", fx.FUTURES_PARTIAL_DEPTH), 4)
    assert isinstance(futures, DepthUpdate) and futures.ts_event == 1571889248276 * MS
    assert futures.bids == ((7403.89, 0.002), (7403.9, 3.906))


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (fx.REPLY, Control("reply", 6, id=1)),
        (fx.LIST_REPLY, Control("reply", 6, id=3, msg='["btcusdt@aggTrade"]')),
        (fx.ERROR, Control("error", 6, code=2, msg="Invalid request: too many parameters")),
        (fx.ERROR_WITH_ID, Control("error", 6, id=5, code=0, msg="Unknown property")),
        (
            fx.NESTED_ERROR,
            Control(
                "error", 6, id=7, code=2, msg="Invalid request: property name must be a string"
            ),
        ),
        (
            fx.SERVER_SHUTDOWN,
            Control("event", 6, msg="serverShutdown", ts_event=1770123456789 * MS),
        ),
        (
            fx.wrap("!serverShutdown", fx.SERVER_SHUTDOWN),
            Control("event", 6, msg="serverShutdown", ts_event=1770123456789 * MS),
        ),
    ],
)
def test_control_frames(frame: str, expected: Control) -> None:
    """Replies, both error forms and the documented serverShutdown notice become Control events."""
    assert Decoder().decode(frame, 6) == expected


@pytest.mark.parametrize(
    "frame",
    [
        fx.wrap("bnbbtc@miniTicker", fx.MINI_TICKER),
        fx.MINI_TICKER,
        fx.wrap("!miniTicker@arr", f"[{fx.MINI_TICKER}]"),
        f"[{fx.MINI_TICKER}]",
        '{"id":1}',
        "{}",
    ],
)
def test_unknown_frames_are_none_and_counted(frame: str) -> None:
    """Streams and event types we do not decode give None and count as unknown."""
    decoder = Decoder()
    assert decoder.decode(frame, 0) is None
    assert decoder.counts["unknown"] == 1


def test_counts_per_kind() -> None:
    """counts has every kind from the start and adds one per decoded frame of that kind."""
    decoder = Decoder()
    assert set(decoder.counts) == set(KINDS) and not any(decoder.counts.values())
    for frame in (fx.TRADE, fx.TRADE, fx.AGG_TRADE, fx.KLINE, fx.BOOK_TICKER, fx.REPLY):
        decoder.decode(frame, 1)
    with pytest.raises(ParseError):
        decoder.decode(b"{", 1)  # rejected frames are not counted here
    expected = {"trade": 2, "aggTrade": 1, "kline": 1, "bookTicker": 1, "reply": 1}
    assert {k: v for k, v in decoder.counts.items() if v} == expected


# ---- malformed frames -----------------------------------------------------------------------

BAD_FRAMES = {
    "bad json": b'{"stream":"btcusdt@trade","data":{"e":"trade",}}',
    "not json": b"hello",
    "empty": b"",
    "missing field": fx.wrap("bnbbtc@trade", fx.TRADE.replace('"t":12345,', "")),
    "wrong type": fx.wrap("bnbbtc@trade", fx.TRADE.replace('"t":12345', '"t":"12345"')),
    "float id": fx.TRADE.replace('"t":12345', '"t":12345.5'),
    "NaN price": fx.wrap("bnbbtc@trade", fx.TRADE.replace('"p":"0.001"', '"p":"NaN"')),
    "negative qty": fx.wrap("bnbbtc@aggTrade", fx.AGG_TRADE.replace('"q":"100"', '"q":"-100"')),
    "numeric price": fx.TRADE.replace('"p":"0.001"', '"p":0.001'),
    "bad level": fx.DEPTH.replace('["0.0024","10"]', '["0.0024"]'),
    "bad kline low": fx.KLINE.replace('"l":"0.0015"', '"l":"inf"'),
    "zero time": fx.TRADE.replace('"T":1672515782136', '"T":0'),
    "huge time": fx.TRADE.replace('"T":1672515782136', '"T":99999999999999999999999'),
    "truncated": fx.wrap("bnbbtc@trade", fx.TRADE)[:-7],
    "wrapper without data": '{"stream":"bnbbtc@trade"}',
    "stream/event mismatch": fx.wrap("bnbbtc@trade", fx.AGG_TRADE),
    "data not an object": '{"stream":"bnbbtc@trade","data":[1,2]}',
    "stream not a string": '{"stream":5,"data":{}}',
    "bad utf-8": b'{"stream":"btc\xff@trade","data":{}}',
    "deep nesting": b'{"stream":"x@trade","data":' + b"[" * 5000 + b"]" * 5000 + b"}",
    "bookTicker without price": fx.BOOK_TICKER.replace('"b":"25.35190000",', ""),
    "error without code": '{"error":{"msg":"x"},"id":1}',
}


@pytest.mark.parametrize("frame", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_malformed_frames_raise_parse_error(frame: bytes | str) -> None:
    """Every malformed frame raises ParseError, which carries the frame's first bytes."""
    with pytest.raises(ParseError) as info:
        Decoder().decode(frame, 1)
    assert info.value.head == frame[:120]


@pytest.mark.parametrize("frame", [None, 12, bytearray(b"{"), ["x"]])
def test_wrong_input_types_raise_parse_error(frame: object) -> None:
    """Input that is not bytes or str at all still raises only ParseError."""
    with pytest.raises(ParseError):
        Decoder().decode(frame, 1)  # type: ignore[arg-type]


def test_every_proper_prefix_of_a_real_frame_is_rejected() -> None:
    """A frame cut off anywhere (a truncated recording line) raises ParseError."""
    frame = first(spot_lines("20240808"), b"@trade")
    decoder = Decoder()
    for end in range(len(frame)):
        with pytest.raises(ParseError):
            decoder.decode(frame[:end], 1)


# ---- properties -----------------------------------------------------------------------------

EVENT_TYPES = (Trade, BookTop, Kline, DepthUpdate, DepthSnapshot, Control)


def decode_or_reject(decoder: Decoder, frame: bytes | str) -> object:
    """Decode, mapping ParseError to the string "rejected"; any other exception propagates."""
    try:
        return decoder.decode(frame, 1)
    except ParseError:
        return "rejected"


def assert_sane(result: object) -> None:
    """A decode result is None, "rejected" or an event with no negative or NaN price."""
    assert result is None or result == "rejected" or isinstance(result, EVENT_TYPES)
    for name in ("price", "qty", "bid", "ask", "bid_qty", "ask_qty", "open", "low", "volume"):
        value = getattr(result, name, 0.0)
        assert value >= 0.0 and math.isfinite(value)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_arbitrary_input_never_escapes(frame: bytes | str) -> None:
    """Arbitrary bytes or text decode to an event or None, or raise ParseError — nothing else."""
    assert_sane(decode_or_reject(Decoder(), frame))


@settings(max_examples=200)
@given(st.data())
def test_mutated_real_frames_never_escape(data: st.DataObject) -> None:
    """A real frame with one byte changed decodes, is ignored or is rejected — nothing else."""
    frame = bytearray(data.draw(st.sampled_from([fx.TRADE, fx.KLINE, fx.DEPTH, fx.REPLY])).encode())
    frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    assert_sane(decode_or_reject(Decoder(), bytes(frame)))


KEYS = ["e", "E", "s", "t", "a", "p", "q", "T", "m", "u", "U", "b", "B", "A", "k", "x", "n"]
KEYS += ["lastUpdateId", "bids", "asks", "result", "id", "code", "msg", "error", "stream", "data"]
EVENT_NAMES = ["trade", "aggTrade", "kline", "bookTicker", "depthUpdate", "serverShutdown", "x"]
DECIMALS = ["0.1", "-1", "NaN", "1e999", "61837.63", "0"]
SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
SCALARS |= st.text(max_size=8) | st.sampled_from(DECIMALS) | st.sampled_from(EVENT_NAMES)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=6)
    ),
    max_leaves=20,
)
STREAMS = [
    "btcusdt@trade", "btcusdt@aggTrade", "btcusdt@kline_1m", "btcusdt@bookTicker", "btcusdt@depth",
    "btcusdt@depth10@100ms", "!serverShutdown", "btcusdt@ticker", "weird",
]  # fmt: skip


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(STREAMS) | st.text(max_size=12),
    st.dictionaries(st.sampled_from(KEYS), JSON, max_size=10),
    st.booleans(),
)
def test_structured_wrong_json_never_escapes(stream: str, payload: dict, wrapped: bool) -> None:
    """Valid wrappers (or raw frames) around random data dicts raise nothing but ParseError."""
    body = {"stream": stream, "data": payload} if wrapped else payload
    frame = json.dumps(body, allow_nan=True)
    assert_sane(decode_or_reject(Decoder(), frame))


@settings(max_examples=200)
@given(
    st.decimals(min_value=0, max_value=10**9, places=8),
    st.decimals(min_value=0, max_value=10**6, places=8),
    st.integers(1, 2**53),
    st.sampled_from([1, 1_000]),  # ms or µs (timeUnit=MICROSECOND)
    st.booleans(),
)
def test_valid_agg_trades_round_trip(
    price: object, qty: object, agg_id: int, unit: int, maker: bool
) -> None:
    """Any well-formed aggTrade decodes to exactly its id, price, quantity, side and ns time."""
    trade_ms = 1_723_161_255_342
    payload = {
        "e": "aggTrade", "E": trade_ms * unit, "s": "BTCUSDT", "a": agg_id, "p": f"{price:f}",
        "q": f"{qty:f}", "f": 1, "l": 2, "T": trade_ms * unit, "m": maker,
    }  # fmt: skip
    event = Decoder().decode(json.dumps({"stream": "btcusdt@aggTrade", "data": payload}), 3)
    expected_price, expected_qty = float(f"{price:f}"), float(f"{qty:f}")
    assert event == Trade(
        "BTCUSDT", trade_ms * MS, 3, agg_id, expected_price, expected_qty, maker, True
    )
