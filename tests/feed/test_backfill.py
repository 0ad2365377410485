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

from ares_stream.events import Gap, Kline, Trade
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
from ares_stream.feed.gate import HOLD, Gate
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


async def fill_gate(frames: list[RawFrame], cursor: int, live: int, **options: Any
                    ) -> tuple[list[Any], BackfillResult, list[int]]:
    """A live agg trade ``live`` held behind a gap after ``cursor``, filled from an exchange over
    ``frames`` page by page (each page into the gate at once, as the daemon does): what the gate
    released, in order; the fetch's result; the size of each page."""
    gate = Gate(backfill=True, cursors={("BTCUSDT", "agg_id"): cursor})
    assert gate.admit(Trade("BTCUSDT", 0, 0, live, 1.0, 1.0, False, True)) == HOLD
    (request,) = gate.take_requests()
    out: list[Any] = []
    pages: list[int] = []

    def on_page(page: list[RawFrame]) -> None:
        pages.append(len(page))
        out.extend(ev for ev, _, _ in gate.advance(request, [(e, 0, None) for e in decoded(page)]))

    async with exchange(frames) as ex, Backfiller(ex.rest_url, **options) as backfiller:
        result = await backfiller.fetch(request, on_page)
    out.extend(ev for ev, _, _ in gate.resolve(request, [], result.complete))
    return out, result, pages


def test_a_huge_gap_is_filled_to_the_end_page_by_page() -> None:
    """250,000 missing ids (no item-count cap) come back whole, page by page into the gate:
    each id once, in order, then the held live one; no Gap, and no frame kept in memory."""
    out, result, pages = run(fill_gate(agg_frames(250_001), 0, 250_001))
    assert result.complete and result.reason == "" and result.items == 250_000
    assert result.frames == [] and pages == [1000] * 250
    assert [type(ev) for ev in out] == [Trade] * 250_001
    assert [ev.trade_id for ev in out] == list(range(1, 250_002))


def test_a_fetch_has_no_item_cap() -> None:
    """Without ``on_page`` too, a 250,000-id range comes back whole: never 'max_items'."""
    request = BackfillRequest("BTCUSDT", "agg_id", 1, 250_000)
    result = run(fill(agg_frames(250_000), request))
    assert result.complete and result.reason == "" and result.requests == 250
    assert [e.trade_id for e in decoded(result.frames)] == list(range(1, 250_001))


def test_what_rest_lacks_at_either_end_is_a_gap_and_only_that() -> None:
    """REST's history begins at 5,001 and ends at 12,000 in a hole of 1-14,999: Gaps of exactly
    1-5,000 and 12,001-14,999, every id REST has in between, then the held live one."""
    out, result, _ = run(fill_gate(agg_frames(7_000, start_id=5_001), 0, 15_000))
    assert not result.complete and result.reason == "not_available"
    gaps = [(ev.first_missing, ev.last_missing) for ev in out if type(ev) is Gap]
    assert gaps == [(1, 5_000), (12_001, 14_999)]
    assert type(out[0]) is Gap and type(out[-2]) is Gap
    trades = [ev.trade_id for ev in out if type(ev) is Trade]
    assert trades == [*range(5_001, 12_001), 15_000]


def test_a_fetch_stops_at_its_time_limit_after_a_whole_page() -> None:
    """``max_seconds`` bounds a fetch by wall time: past it, no further page ('time_limit')."""
    request = BackfillRequest("BTCUSDT", "agg_id", 1, 3_000)
    result = run(fill(agg_frames(3_000), request, max_seconds=0.0))
    assert not result.complete and result.reason == "time_limit"
    assert result.requests == 1 and len(result.frames) == result.items == 1_000


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


def test_a_depth_snapshot_comes_over_python_binance_as_a_recordable_frame(tmp_path: Any) -> None:
    """Backfiller.snapshot asks the local exchange's /api/v3/depth through python-binance (weight
    50 for 1,000 levels) and gives the frame the daemon records: it decodes to the symbol's
    snapshot, the book as of the last diff the exchange broadcast."""
    from ares_stream.events import DepthSnapshot
    from ares_stream.sim.simulator import write_recording

    path = tmp_path / "depth.gz"
    write_recording(path, seconds=120, seed=2, symbol="SIMUSDT",
                    streams=("aggTrade", "depth@100ms"))
    tape = Tape.from_recording([path])

    async def main() -> tuple[Any, dict[str, int]]:
        async with LocalExchange(tape, ping_interval=None, start_on_subscribe=False) as ex:
            await asyncio.wait_for(ex.done.wait(), DEADLINE)  # the whole tape broadcast
            async with backfill.Backfiller(ex.rest_url) as b:
                return await b.snapshot("SIMUSDT"), dict(b.stats)

    frame, stats = run(main())
    assert isinstance(frame, RawFrame) and stats["weight_used"] == 50
    event = Decoder().decode(frame.data, frame.ts_init)
    assert isinstance(event, DepthSnapshot) and event.symbol == "SIMUSDT"
    assert event.last_update_id > 1000 and event.bids and event.asks
    assert event.bids[0][0] < event.asks[0][0]
