"""REST backfill against the local exchange through the real python-binance AsyncClient."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest

from ares_stream.events import Kline, Trade
from ares_stream.feed import RawFrame, backfill
from ares_stream.feed.backfill import (
    Backfiller,
    BackfillRequest,
    BackfillResult,
    agg_trade_frame,
    kline_frame,
    trade_frame,
)
from ares_stream.feed.binance import Decoder
from ares_stream.feed.recording import RecordingSource
from ares_stream.sim.exchange import Faults, LocalExchange, Tape
from tests.conftest import DEADLINE, shared_path

T0 = 1_723_161_600_000  # 2024-08-09 00:00:00 UTC, ms
MS = 1_000_000
BTC_0808 = "ws/binance-spot-btcusdt-20240808.gz"


def run(coro: Coroutine[Any, Any, Any], timeout: float = 2 * DEADLINE) -> Any:
    """Run one async test body, failing (not hanging) after ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def agg_frames(n: int, start_id: int = 1) -> list[RawFrame]:
    """``n`` BTCUSDT aggregate trades as the websocket sends them, ids from ``start_id``."""
    body = (b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":%d,"s":"BTCUSDT","a":%d,'
            b'"p":"6%04d.%02d000000","q":"0.%05d000","f":%d,"l":%d,"T":%d,"m":%s,"M":true}}')
    out = []
    for i in range(n):
        a, t = start_id + i, T0 + 37 * i
        data = body % (t + 2, a, i % 9973, i % 100, i % 99991, 3 * a, 3 * a + 2, t,
                       b"true" if a % 3 else b"false")
        out.append(RawFrame((t + 5) * MS, data))
    return out


def kline_frames(n: int) -> list[RawFrame]:
    """``n`` consecutive 1m BTCUSDT candles: an open update and the closing frame of each."""
    body = (b'{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":%d,"s":"BTCUSDT","k":{"t":%d,'
            b'"T":%d,"s":"BTCUSDT","i":"1m","f":%d,"L":%d,"o":"61%03d.10000000",'
            b'"c":"61%03d.20000000","h":"61%03d.90000000","l":"60%03d.00000000",'
            b'"v":"%d.50000000","n":%d,"x":%s,"q":"1234.56780000","V":"0.25000000",'
            b'"Q":"17.00000000","B":"0"}}}')
    out = []
    for i in range(n):
        t = T0 + 60_000 * i
        for e, x in ((t + 30_000, b"false"), (t + 60_000 + 204, b"true")):
            data = body % (e, t, t + 59_999, 10 * i, 10 * i + 9, i, i + 1, i + 2, i, i, 10, x)
            out.append(RawFrame(e * MS, data))
    return out


@asynccontextmanager
async def exchange(frames: list[RawFrame], **faults: int) -> AsyncIterator[LocalExchange]:
    """A local exchange that has already broadcast all of ``frames`` (its REST history)."""
    async with LocalExchange(Tape(frames), faults=Faults(**faults), start_on_subscribe=False) as ex:
        await asyncio.wait_for(ex.done.wait(), DEADLINE)
        yield ex


class Sleeps:
    """An injected sleep that records each wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def fill(frames: list[RawFrame], request: BackfillRequest, sleeps: Sleeps | None = None,
               faults: dict[str, int] | None = None, **options: Any) -> BackfillResult:
    """Start an exchange over ``frames`` and fetch ``request`` from it."""
    async with exchange(frames, **(faults or {})) as ex:
        backfiller = Backfiller(ex.rest_url, sleep=sleeps or Sleeps(), **options)
        async with backfiller:
            return await backfiller.fetch(request)


def decoded(frames: list[RawFrame]) -> list[Any]:
    decoder = Decoder()
    return [decoder.decode(f.data, f.ts_init) for f in frames]


def same_event(event: Trade | Kline, original: Trade | Kline, **changes: Any) -> bool:
    """Equal apart from ts_init (the receive time) and any ``changes``."""
    fields = event.__struct_fields__
    want = {name: getattr(original, name) for name in fields} | changes
    return all(getattr(event, n) == want[n] for n in fields if n != "ts_init")


def test_agg_id_gap_is_filled_exactly_in_three_pages() -> None:
    """2,500 missing aggregate trades come back in 3 pages of frames that decode like the live."""
    frames = agg_frames(4_000)
    result = run(fill(frames, BackfillRequest("BTCUSDT", "agg_id", 101, 2_600)))
    assert result.complete and result.reason == "" and result.requests == 3
    events = decoded(result.frames)
    assert [e.trade_id for e in events] == list(range(101, 2_601))
    originals = decoded(frames[100:2_600])
    assert all(same_event(e, o) for e, o in zip(events, originals, strict=True))


def test_trade_id_gap_is_filled_from_historical_trades() -> None:
    """Missing ids of the real BTCUSDT @trade capture come back, boundaries included, as @trade."""
    trades = [f for f in RecordingSource([shared_path(BTC_0808)]) if b"@trade" in f.data]
    originals = decoded(trades)
    first, last = originals[10].trade_id, originals[1_510].trade_id
    result = run(fill(trades, BackfillRequest("BTCUSDT", "trade_id", first, last)))
    assert result.complete and result.requests == 2
    assert all(f.data.startswith(b'{"stream":"btcusdt@trade"') for f in result.frames)
    events = decoded(result.frames)
    assert [e.trade_id for e in events] == list(range(first, last + 1))
    assert all(same_event(e, o) for e, o in zip(events, originals[10:1_511], strict=True))


def test_kline_time_gap_is_filled_with_closed_candles() -> None:
    """Missing 1m candles come back closed, first and last open time included, as the stream's."""
    frames = kline_frames(30)
    first, last = (T0 + 60_000 * 5) * MS, (T0 + 60_000 * 24) * MS
    result = run(fill(frames, BackfillRequest("BTCUSDT", "kline_time", first, last, "1m")))
    assert result.complete and result.requests == 1
    events = decoded(result.frames)
    assert [e.open_time for e in events] == list(range(first, last + 1, 60_000 * MS))
    closing = decoded(frames[1::2][5:25])
    assert all(e.closed for e in events)
    # the stream's E came 204 ms after the close; REST has no event time: close + 1 ms
    pairs = zip(events, closing, strict=True)
    assert all(same_event(e, o, ts_event=e.close_time + MS) for e, o in pairs)


def test_a_single_missing_id_is_one_frame() -> None:
    """first_missing == last_missing asks for one item and gets exactly it."""
    result = run(fill(agg_frames(50), BackfillRequest("BTCUSDT", "agg_id", 17, 17)))
    assert result.complete and [e.trade_id for e in decoded(result.frames)] == [17]


def test_ids_beyond_the_broadcast_give_the_available_prefix() -> None:
    """A range past what the exchange has sent ends 'not_available' after the ids it has."""
    result = run(fill(agg_frames(1_200), BackfillRequest("BTCUSDT", "agg_id", 1_101, 1_500)))
    assert not result.complete and result.reason == "not_available"
    assert [e.trade_id for e in decoded(result.frames)] == list(range(1_101, 1_201))
    assert result.requests == 1  # a short page says there is no more: no second request


def test_a_hole_at_the_source_ends_the_fill_before_it() -> None:
    """Ids the exchange itself lacks (101–149) end the fill 'not_available' after id 100."""
    frames = agg_frames(100) + agg_frames(100, start_id=150)
    result = run(fill(frames, BackfillRequest("BTCUSDT", "agg_id", 90, 200)))
    assert not result.complete and result.reason == "not_available"
    assert [e.trade_id for e in decoded(result.frames)] == list(range(90, 101))


def test_klines_beyond_the_broadcast_are_not_available() -> None:
    """Candles after the exchange's last closed one are reported missing, not invented."""
    first, last = (T0 + 60_000 * 8) * MS, (T0 + 60_000 * 15) * MS
    request = BackfillRequest("BTCUSDT", "kline_time", first, last, "1m")
    result = run(fill(kline_frames(10), request))
    assert not result.complete and result.reason == "not_available"
    assert [e.open_time for e in decoded(result.frames)] == [first, first + 60_000 * MS]


def test_two_429_answers_are_waited_out_then_the_fill_completes() -> None:
    """Two 429s are retried after their Retry-After (1 s) each; the third request succeeds."""
    sleeps = Sleeps()
    request = BackfillRequest("BTCUSDT", "agg_id", 1, 10)
    result = run(fill(agg_frames(20), request, sleeps, {"rest_429": 2}))
    assert result.complete and len(result.frames) == 10 and result.requests == 3
    assert sleeps.waits == [1.0, 1.0]


def test_429_beyond_max_retries_gives_up_rate_limited() -> None:
    """With more 429s than retries the fill stops 'rate_limited' after max_retries + 1 requests."""
    sleeps = Sleeps()
    request = BackfillRequest("BTCUSDT", "agg_id", 1, 10)
    result = run(fill(agg_frames(20), request, sleeps, {"rest_429": 5}, max_retries=2))
    assert not result.complete and result.reason == "rate_limited"
    assert result.requests == 3 and sleeps.waits == [1.0, 1.0] and result.frames == []


def test_418_stops_at_once_and_refuses_until_the_ban_ends(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An IP ban ends the fill after one request, without retrying, and blocks the next fetch."""
    # The ban (Retry-After: 1 s) is kept on time.monotonic(): stopped here, so that the second
    # fetch comes within it however long a busy machine takes between the two.
    stopped = time.monotonic()
    monkeypatch.setattr(backfill, "time", SimpleNamespace(
        monotonic=lambda: stopped, time=time.time, time_ns=time.time_ns))

    async def body() -> tuple[BackfillResult, BackfillResult, Backfiller, Sleeps]:
        sleeps = Sleeps()
        request = BackfillRequest("BTCUSDT", "agg_id", 1, 10)
        async with exchange(agg_frames(20), rest_418=1) as ex:
            backfiller = Backfiller(ex.rest_url, sleep=sleeps)
            async with backfiller:
                first = await backfiller.fetch(request)
                second = await backfiller.fetch(request)
        return first, second, backfiller, sleeps

    first, second, backfiller, sleeps = run(body())
    assert (first.complete, first.reason, first.requests) == (False, "ip_banned", 1)
    assert (second.reason, second.requests) == ("ip_banned", 0)  # Retry-After: 1 s not over
    assert sleeps.waits == [] and backfiller.stats["banned"] == 1


def test_the_weight_budget_makes_the_backfiller_wait_for_the_next_minute() -> None:
    """With a 5-weight budget, every 4-weight page after the first waits for the next minute."""
    sleeps = Sleeps()
    request = BackfillRequest("BTCUSDT", "agg_id", 1, 3_500)
    result = run(fill(agg_frames(3_500), request, sleeps, max_weight_per_minute=5))
    assert result.complete and result.requests == 4 and len(result.frames) == 3_500
    # 3 waits (2 if the wall-clock minute happens to roll over between two pages), each < 61 s
    assert len(sleeps.waits) in (2, 3) and all(0 < w <= 60.05 for w in sleeps.waits)


def test_max_items_caps_a_huge_range() -> None:
    """A range larger than max_items stops 'max_items' after exactly that many frames."""
    request = BackfillRequest("BTCUSDT", "agg_id", 1, 10**9)
    result = run(fill(agg_frames(1_500), request, max_items=1_200))
    assert not result.complete and result.reason == "max_items" and len(result.frames) == 1_200
    assert result.requests == 2


def test_a_client_error_is_reported_without_retry() -> None:
    """An unknown symbol (HTTP 400) ends the fill with the exchange's message, no retries."""
    sleeps = Sleeps()
    result = run(fill(agg_frames(5), BackfillRequest("ETHUSDT", "agg_id", 1, 5), sleeps))
    assert result.reason == "http 400: Invalid symbol." and result.requests == 1
    assert sleeps.waits == []


def test_usdm_fills_from_the_futures_api() -> None:
    """market='usdm' pages /fapi/v1/aggTrades through python-binance's futures methods."""
    result = run(fill(agg_frames(5), BackfillRequest("BTCUSDT", "agg_id", 1, 5), market="usdm"))
    assert result.complete and len(result.frames) == 5


def test_a_refused_connection_is_retried_with_backoff_then_reported() -> None:
    """Nothing listening: exponential backoff for max_retries, then a 'network' reason."""
    with socket.socket() as sock:  # a port that was free a moment ago: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps = Sleeps()

    async def body() -> BackfillResult:
        async with Backfiller(f"http://127.0.0.1:{port}", sleep=sleeps, max_retries=3) as bf:
            return await bf.fetch(BackfillRequest("BTCUSDT", "agg_id", 1, 5))

    result = run(body())
    assert result.reason == "network: ClientConnectorError" and result.requests == 4
    assert sleeps.waits == [0.5, 1.0, 2.0]


def test_an_unknown_kind_is_an_incomplete_result() -> None:
    """A request of an unknown kind returns a reason instead of raising or sending anything."""
    result = run(fill(agg_frames(5), BackfillRequest("BTCUSDT", "depth_id", 1, 5)))
    assert result.reason == "unknown kind 'depth_id'" and result.requests == 0


@pytest.mark.parametrize(
    ("name", "make"),
    [("http_spot_market_agg_trades.json", agg_trade_frame),
     ("http_spot_market_historical_trades.json", trade_frame)],
)
def test_real_rest_trades_become_decodable_frames(name: str, make: Any) -> None:
    """Every item of a real Binance REST answer becomes a frame the decoder reads back."""
    items = json.loads(shared_path(f"rest/{name}").read_text())
    events = decoded([RawFrame(7, make("BTCUSDT", item)) for item in items])
    for event, item in zip(events, items, strict=True):
        assert event.trade_id == item.get("a", item.get("id"))
        assert event.price == float(item.get("p", item.get("price")))
        assert event.ts_event == item.get("T", item.get("time")) * MS
        assert event.is_buyer_maker == item.get("m", item.get("isBuyerMaker"))


def test_real_rest_klines_become_closed_kline_frames() -> None:
    """Every row of a real klines answer decodes to the closed candle it describes."""
    rows = json.loads(shared_path("rest/http_spot_market_klines.json").read_text())
    events = decoded([RawFrame(7, kline_frame("BTCUSDT", "1m", row)) for row in rows])
    for k, row in zip(events, rows, strict=True):
        assert (k.open_time, k.close_time, k.trade_count) == (row[0] * MS, row[6] * MS, row[8])
        assert (k.open, k.high, k.low, k.close) == tuple(float(v) for v in row[1:5])
        assert k.closed and k.ts_event == (row[6] + 1) * MS and k.interval == "1m"
