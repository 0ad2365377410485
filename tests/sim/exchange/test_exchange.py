"""The local exchange: tape, websocket protocol, every fault, REST slices, python-binance."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Coroutine
from typing import Any

import aiohttp
import pytest
from binance import AsyncClient
from binance.exceptions import BinanceAPIException
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ares_stream.errors import ParseError
from ares_stream.feed import RawFrame
from ares_stream.feed.binance import Decoder
from ares_stream.feed.recording import RecordingSource
from ares_stream.sim.exchange import STAT_KEYS, Faults, LocalExchange, Tape, many_symbols
from ares_stream.sim.exchange.rest import NOT_TRADING
from tests.conftest import DEADLINE, shared_path, until

BTC_0808 = "ws/binance-spot-btcusdt-20240808.gz"
T0 = 1_723_161_600_000  # 2024-08-09 00:00:00 UTC, ms
AGG = "btcusdt@aggTrade"


def run(coro: Coroutine[Any, Any, Any], timeout: float = DEADLINE) -> Any:
    """Run one async test body, failing (not hanging) after ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def agg_frame(a: int, t: int, price: str = "100.51", combined: bool = True) -> RawFrame:
    data = (
        b'{"e":"aggTrade","E":%d,"s":"BTCUSDT","a":%d,"p":"%s","q":"0.25000","f":%d,"l":%d,'
        b'"T":%d,"m":%s,"M":true}'
    ) % (t + 1, a, price.encode(), 2 * a, 2 * a + 1, t, b"true" if a % 3 else b"false")
    return RawFrame(
        t * 1_000_000, b'{"stream":"%s","data":%s}' % (AGG.encode(), data) if combined else data
    )


def agg_tape(n: int = 40, start_id: int = 1, step_ms: int = 1_000) -> Tape:
    """``n`` aggregate trades of BTCUSDT, ids from ``start_id``, one every ``step_ms``."""
    return Tape(agg_frame(start_id + i, T0 + i * step_ms) for i in range(n))


def ids(messages: list[str]) -> list[int]:
    return [json.loads(m)["data"]["a"] for m in messages]


async def receive(ws: ClientConnection, n: int, timeout: float = 30.0) -> list[str]:
    """The next ``n`` messages. (A websockets client that leaves more than 16 unread stops
    reading its socket, so closing it then waits for its close timeout: tests read it all.)"""
    return [str(await asyncio.wait_for(ws.recv(), timeout)) for _ in range(n)]


async def receive_all(ws: ClientConnection, timeout: float = 30.0) -> list[str]:
    """Every message until the connection ends."""
    out: list[str] = []
    try:
        while True:
            out.append(str(await asyncio.wait_for(ws.recv(), timeout)))
    except ConnectionClosed:
        return out


async def reply(ws: ClientConnection, rid: object) -> dict[str, Any]:
    """The next reply (a message with an ``id``) to request ``rid``, skipping stream frames."""
    for _ in range(100):
        message = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if "id" in message and message["id"] == rid:
            return dict(message)
    raise AssertionError(f"no reply to {rid}")


async def collect(ws: ClientConnection, into: list[int]) -> None:
    """Append the trade id of every message to ``into`` until the connection ends. Reading all
    the time, the client never leaves messages unread, however long the tape."""
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            into.append(json.loads(message)["data"]["a"])


def btc_tape(frames: int = 3_000) -> Tape:
    """The first ``frames`` lines of the real 2024-08-08 BTCUSDT capture (snapshot included)."""
    return Tape(itertools.islice(RecordingSource([shared_path(BTC_0808)]), frames))


# ---- tape --------------------------------------------------------------------------------------


def test_tape_from_recording_keeps_market_frames_in_order() -> None:
    """A recording becomes (stream, payload) frames in order; the REST snapshot line is skipped."""
    source = list(itertools.islice(RecordingSource([shared_path(BTC_0808)]), 3_000))
    tape = Tape(source)
    wrapped = [f.data for f in source if f.data.startswith(b'{"stream"')]
    assert tape.skipped == len(source) - len(wrapped) == 1
    rebuilt = [b'{"stream":"%s","data":%s}' % (s.encode(), p) for s, p in tape.frames]
    assert rebuilt == wrapped
    trades = [s for s, _ in tape.frames if s == "btcusdt@trade"]
    assert len(tape.trades["BTCUSDT"].rows) == len(trades) > 100
    assert tape.symbols == ["BTCUSDT"] and tape.bad == 0


def test_tape_names_raw_frames_and_skips_duplicates() -> None:
    """Raw payloads are named ``<symbol>@<event>``; a repeated aggregate id is not served twice."""
    book = RawFrame(0, b'{"u":7,"s":"ETHBTC","b":"0.05","B":"1","a":"0.051","A":"2"}')
    tape = Tape([agg_frame(5, T0, combined=False), agg_frame(5, T0), book, RawFrame(0, b"{oops")])
    assert [s for s, _ in tape.frames] == [AGG, AGG, "ethbtc@bookTicker"]
    assert tape.skipped == 1 and tape.symbols == ["BTCUSDT", "ETHBTC"]
    assert [r["a"] for r in tape.agg_trades["BTCUSDT"].rows] == [5]


def test_klines_from_kline_frames_and_from_trades() -> None:
    """Closed kline frames are served as 12-field arrays; without them klines come from trades."""
    k = (
        b'{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1,"s":"BTCUSDT","k":{"t":%d,'
        b'"T":%d,"s":"BTCUSDT","i":"1m","f":1,"L":2,"o":"1","c":"2","h":"3","l":"0.5","v":"10",'
        b'"n":2,"x":%s,"q":"15","V":"4","Q":"6","B":"0"}}}'
    )
    frames = [
        RawFrame(0, k % (T0, T0 + 59_999, b"false")),
        RawFrame(0, k % (T0, T0 + 59_999, b"true")),
    ]
    tape = Tape(frames)
    row = [T0, "1", "3", "0.5", "2", "10", T0 + 59_999, "15", 2, "4", "6", "0"]
    assert tape.klines("BTCUSDT", "1m") == [row]
    assert tape.klines("BTCUSDT", "1m", position=1) == []  # only the open candle was broadcast
    trades = agg_tape(200, step_ms=1_000)  # 200 s: candles 0..2 closed, 3 open
    candles = trades.klines("BTCUSDT", "1m")
    assert [c[0] for c in candles] == [T0, T0 + 60_000, T0 + 120_000]
    assert [c[8] for c in candles] == [60, 60, 60] and candles[0][5] == "15.00000000"
    assert candles[0][1] == "100.51000000" and candles[0][6] == T0 + 59_999


def test_klines_from_trades_fill_quiet_minutes_flat() -> None:
    """A minute without trades between two traded ones is a flat candle at the previous close."""
    tape = Tape([agg_frame(1, T0, "10.00"), agg_frame(2, T0 + 150_000, "11.00"),
                 agg_frame(3, T0 + 200_000, "12.00")])  # fmt: skip
    candles = tape.klines("BTCUSDT", "1m")
    assert [(c[0], c[1], c[4], c[8]) for c in candles] == [
        (T0, "10.00000000", "10.00000000", 1),
        (T0 + 60_000, "10.00000000", "10.00000000", 0),
        (T0 + 120_000, "11.00000000", "11.00000000", 1),
    ]


# ---- websocket ---------------------------------------------------------------------------------


def test_combined_stream_delivers_the_real_tape_in_order() -> None:
    """A combined-stream client receives every frame of a real capture, wrapped, in tape order."""
    tape = btc_tape()

    async def body() -> None:
        async with LocalExchange(tape) as ex:
            url = ex.ws_url + "/stream?streams=btcusdt@trade/btcusdt@bookTicker/btcusdt@depth@100ms"
            async with connect(url) as ws:
                got = await receive(ws, len(tape.frames))
            await asyncio.wait_for(ex.done.wait(), 30)
            assert ex.position == len(tape.frames) and ex.stats["connections"] == 1
        assert [g.encode() for g in got] == [
            b'{"stream":"%s","data":%s}' % (s.encode(), p) for s, p in tape.frames
        ]

    run(body())


def test_raw_path_delivers_only_its_stream_unwrapped() -> None:
    """``/ws/btcusdt@trade`` (any case) gets the trade payloads alone, unwrapped, in order."""
    tape = btc_tape()
    trades = [p for s, p in tape.frames if s == "btcusdt@trade"]

    async def body() -> list[str]:
        async with LocalExchange(tape) as ex, connect(ex.ws_url + "/ws/BTCUSDT@Trade") as ws:
            return await receive(ws, len(trades))

    assert [g.encode() for g in run(body())] == trades


def test_subscribe_list_unsubscribe_and_errors() -> None:
    """SUBSCRIBE starts the clock; replies and error codes follow Binance's documented shapes."""

    async def body() -> None:
        async with LocalExchange(agg_tape(30), rate=200) as ex, connect(ex.ws_url + "/ws") as ws:
            await asyncio.sleep(0.05)
            assert ex.position == 0  # nobody subscribed: the clock waits
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": [AGG], "id": 1}))
            assert json.loads(await ws.recv()) == {"result": None, "id": 1}
            assert json.loads(await ws.recv())["a"] == 1  # raw payloads on /ws
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 3}))
            assert await reply(ws, 3) == {"result": [AGG], "id": 3}
            await asyncio.sleep(1.0)  # keep under 5 messages a second
            await ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": [AGG], "id": "u1"}))
            assert await reply(ws, "u1") == {"result": None, "id": "u1"}
            await ws.send(json.dumps({"method": "FOO", "id": 4}))
            error = await reply(ws, 4)
            assert error["code"] == 2
            assert error["msg"].startswith("Invalid request: unknown variant `FOO`")
            await ws.send("{not json")
            error = await reply(ws, None)
            assert error["code"] == 3 and error["msg"].startswith("Invalid JSON")
            assert ex.stats["subscribe_messages"] == 5

    run(body())


def test_more_than_five_messages_a_second_disconnects() -> None:
    """Five control messages in a second are answered; a sixth gets the connection closed."""

    async def body() -> None:
        async with LocalExchange(agg_tape(5)) as ex:
            for _ in range(10):
                async with connect(ex.ws_url + "/ws") as ws:
                    began = time.monotonic()
                    for i in range(5):
                        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
                    assert len(await receive(ws, 5)) == 5
                    await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 6}))
                    try:
                        await receive(ws, 1)
                    except ConnectionClosed:
                        assert ws.close_code == 1008
                        break
                    # Answered: only right if the six did not all reach the server within one
                    # second (a machine that stalled); then try again on a new connection.
                    assert time.monotonic() - began >= 1.0, "a sixth message within 1 s answered"
            else:
                raise AssertionError("never got six messages to the server within one second")
            assert ex.stats["rate_limited"] == 1

    run(body())


def test_microsecond_time_unit() -> None:
    """``timeUnit=MICROSECOND`` turns a trade's E and T into microseconds."""

    async def body() -> dict[str, Any]:
        async with (
            LocalExchange(agg_tape(3)) as ex,
            connect(ex.ws_url + f"/ws/{AGG}?timeUnit=MICROSECOND") as ws,
        ):
            return dict(json.loads(await ws.recv()))

    first = run(body())
    assert first["T"] == T0 * 1000 and first["E"] == (T0 + 1) * 1000


def test_two_clients_see_the_same_frames_and_a_late_one_misses_the_past() -> None:
    """One clock: a late client gets the same frames as an early one, from where it joined."""

    async def body() -> tuple[list[int], list[int]]:
        # 60 s of tape: the late client joins while it plays however slow the machine, and the
        # test ends once that client has its 100 frames, not at the end of the tape.
        early_ids: list[int] = []
        late_ids: list[int] = []
        async with LocalExchange(agg_tape(12_000), rate=200) as ex:
            url = ex.ws_url + "/stream?streams=" + AGG
            async with connect(url) as early:
                early_reader = asyncio.create_task(collect(early, early_ids))
                await until(lambda: early_ids, what="the early client's first frame")
                async with connect(url) as late:
                    late_reader = asyncio.create_task(collect(late, late_ids))
                    await until(lambda: len(late_ids) >= 100, what="100 frames to the late one")
                    await until(lambda: len(early_ids) >= late_ids[99],
                                what="the early client to reach the late one's 100th frame")
            await asyncio.gather(early_reader, late_reader)
        return early_ids, late_ids[:100]

    early_ids, late_ids = run(body())
    assert early_ids == list(range(1, len(early_ids) + 1))
    assert late_ids[0] > 1 and late_ids == list(range(late_ids[0], late_ids[0] + 100))
    assert late_ids == early_ids[late_ids[0] - 1:late_ids[0] + 99]


def test_rate_paces_the_clock_and_done_is_set_at_the_end() -> None:
    """At 500 frames/s frame i goes out no earlier than i / 500 s after the clock's start, so a
    100-frame tape takes at least 0.2 s; ``done`` is set once it is all out, not before.

    How late the frames may come is a matter of the machine's speed (bench/), not checked here."""

    async def body() -> None:
        async with LocalExchange(agg_tape(100), rate=500, start_on_subscribe=False) as ex:
            loop = asyncio.get_running_loop()
            samples: list[tuple[float, int]] = []
            deadline = loop.time() + DEADLINE
            while not ex.done.is_set():
                assert ex.position < 100, "the whole tape is out but done is not set"
                samples.append((loop.time(), ex.position))
                assert loop.time() < deadline, "the tape never ended"
                await asyncio.sleep(0.005)
            ended = loop.time()
            assert ex.position == 100 and ex.started is not None
            # frame i (position i + 1) may go out up to 1 ms early: the clock catches up there
            for t, position in samples:
                if position:
                    assert position <= (t - ex.started + 0.001) * 500 + 1, (t, position)
            assert ended - ex.started >= 99 / 500 - 0.001

    run(body())


def test_slow_client_is_dropped_when_its_queue_overflows() -> None:
    """A client that does not read is dropped once its outbound queue is full; others are not."""
    big = b"[" + b",".join([b'["61837.63000000","0.00100000"]'] * 600) + b"]"
    depth = b'{"stream":"btcusdt@depth","data":{"e":"depthUpdate","s":"BTCUSDT","b":%s}}' % big
    tape = Tape([RawFrame(0, depth)] * 3_000)  # ~60 MB: more than the socket buffers hold

    async def body() -> None:
        ex = LocalExchange(tape, max_queue=50)
        async with ex, connect(ex.ws_url + "/ws/btcusdt@depth", max_queue=4) as ws:
            await asyncio.wait_for(ex.done.wait(), 30)
            assert ex.stats["overflows"] == 1
            await receive_all(ws)
            assert ws.close_code == 1006

    run(body())


# ---- faults ------------------------------------------------------------------------------------


def faulty(n: int = 40, **faults: int) -> LocalExchange:
    return LocalExchange(agg_tape(n), faults=Faults(**faults))


def test_drop_aborts_without_close_frame() -> None:
    """``drop_every=10``: ten frames, then the connection is cut with no close frame."""

    async def body() -> None:
        async with faulty(drop_every=10) as ex, connect(ex.ws_url + "/stream?streams=" + AGG) as ws:
            assert ids(await receive_all(ws)) == list(range(1, 11))
            assert ws.close_code == 1006 and ex.stats["drops"] == 1

    run(body())


def test_clean_close_after_n_frames() -> None:
    """``close_every=10``: ten frames, then a clean 1000 close."""

    async def body() -> None:
        async with (
            faulty(close_every=10) as ex,
            connect(ex.ws_url + "/stream?streams=" + AGG) as ws,
        ):
            assert ids(await receive_all(ws)) == list(range(1, 11))
            assert ws.close_code == 1000 and ex.stats["closes"] == 1

    run(body())


def test_max_drops_limits_connection_ending_faults() -> None:
    """``max_drops=2``: the first two connections are dropped, the third is left alone."""

    async def body() -> None:
        # 30 s of tape: the third connection comes while it plays, however slow the machine
        ex = LocalExchange(agg_tape(12_000), rate=400, faults=Faults(drop_every=3, max_drops=2))
        async with ex:
            for _ in range(2):
                async with connect(ex.ws_url + "/stream?streams=" + AGG) as ws:
                    assert len(await receive_all(ws)) == 3
            third: list[int] = []
            async with connect(ex.ws_url + "/stream?streams=" + AGG) as ws:
                reader = asyncio.create_task(collect(ws, third))
                await until(lambda: len(third) >= 10, what="10 frames on the third connection")
            await reader
            assert ex.stats["drops"] == 2 and ex.stats["connections"] == 3

    run(body())


def test_malformed_frames_are_rejected_by_the_decoder() -> None:
    """``malformed_every=5``: after every 5th frame a bad one (truncated, NaN price) follows."""

    async def body() -> list[str]:
        async with faulty(20, malformed_every=5) as ex:
            async with connect(ex.ws_url + "/stream?streams=" + AGG) as ws:
                got = await receive(ws, 24)
            assert ex.stats["malformed"] == 4
            return got

    decoder, good, bad = Decoder(), [], 0
    for message in run(body()):
        try:
            good.append(decoder.decode(message, 0).trade_id)
        except ParseError:
            bad += 1
    assert good == list(range(1, 21)) and bad == 4


def test_duplicates_and_swaps() -> None:
    """``duplicate_every=5`` repeats frames 5, 10, …; ``swap_every=4`` sends 4 after 5 (and the
    held last frame still goes out when the tape ends)."""

    async def body(**faults: int) -> tuple[list[int], dict[str, int]]:
        async with faulty(12, **faults) as ex:
            async with connect(ex.ws_url + "/stream?streams=" + AGG) as ws:
                got = ids(await receive(ws, 12 + faults.get("duplicate_every", 0) // 5 * 2))
            return got, ex.stats

    got, stats = run(body(duplicate_every=5))
    assert got == [1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10, 10, 11, 12] and stats["duplicates"] == 2
    got, stats = run(body(swap_every=4))
    assert got == [1, 2, 3, 5, 4, 6, 7, 9, 8, 10, 11, 12] and stats["swaps"] == 3


def test_silence_keeps_the_connection_open_and_answers_pings() -> None:
    """``silence_after=10``: ten frames, then nothing, though the connection still answers pings."""

    async def body() -> None:
        async with (
            faulty(silence_after=10) as ex,
            connect(ex.ws_url + "/stream?streams=" + AGG) as ws,
        ):
            assert ids(await receive(ws, 10)) == list(range(1, 11))
            await asyncio.wait_for(ex.done.wait(), 30)
            with pytest.raises(TimeoutError):  # (a frame after the tape's end would come now)
                await asyncio.wait_for(ws.recv(), 0.2)
            await asyncio.wait_for(await ws.ping(), 30)
            assert ex.stats["silences"] == 1

    run(body())


def test_refused_handshakes_then_accepted() -> None:
    """``refuse_connections=2``: two handshakes get HTTP 503, the third connects."""

    async def body() -> None:
        async with faulty(refuse_connections=2) as ex:
            for _ in range(2):
                with pytest.raises(InvalidStatus) as refused:
                    await connect(ex.ws_url + "/ws/" + AGG)
                assert refused.value.response.status_code == 503
            async with connect(ex.ws_url + "/ws/" + AGG) as ws:
                assert [json.loads(m)["a"] for m in await receive(ws, 40)] == list(range(1, 41))
            assert ex.stats["refused"] == 2 and ex.stats["connections"] == 1

    run(body())


def test_server_shutdown_event_then_close() -> None:
    """``shutdown_after=10``: ten frames, the documented serverShutdown event, then a close."""

    async def body() -> None:
        before = int(time.time() * 1000)
        async with (
            faulty(shutdown_after=10) as ex,
            connect(ex.ws_url + "/stream?streams=" + AGG) as ws,
        ):
            got = await receive_all(ws)
            assert ids(got[:10]) == list(range(1, 11)) and len(got) == 11
            event = json.loads(got[10])
            assert event["stream"] == "!serverShutdown" and event["data"]["e"] == "serverShutdown"
            assert before <= event["data"]["E"] <= time.time() * 1000  # the wall clock, in ms
            assert ws.close_code == 1001 and ex.stats["shutdowns"] == 1
        assert Decoder().decode(got[10], 0).msg == "serverShutdown"

    run(body())


def test_unknown_path_is_404() -> None:
    """A handshake on a path Binance does not serve is refused with 404."""

    async def body() -> None:
        async with faulty() as ex:
            with pytest.raises(InvalidStatus) as refused:
                await connect(ex.ws_url + "/nope")
            assert refused.value.response.status_code == 404

    run(body())


def test_long_request_lines_are_414_and_over_1024_streams_refused() -> None:
    """A request line over 8 KB is refused 414 (at either limit), more than 1,024 streams 400
    in the URL and an error reply to SUBSCRIBE; the highest figures seen are kept."""
    names = [f"s{k:04d}usdt@aggTrade" for k in range(1100)]

    async def body() -> None:
        async with faulty() as ex:
            for count in (440, 600):  # 8.4 KB, 11.4 KB
                with pytest.raises(InvalidStatus) as refused:
                    await connect(ex.ws_url + "/stream?streams=" + "/".join(names[:count]))
                assert refused.value.response.status_code == 414
            await until(lambda: ex.stats["uri_too_long"] == 2, what="both refusals counted")
            short = [f"{k}@t" for k in range(1025)]  # 1,025 streams in 6 KB
            with pytest.raises(InvalidStatus) as refused:
                await connect(ex.ws_url + "/stream?streams=" + "/".join(short))
            assert refused.value.response.status_code == 400
            async with connect(ex.ws_url + "/stream?streams=" + "/".join(short[:24])) as ws:
                await ws.send(json.dumps({"method": "SUBSCRIBE", "params": names[:1000], "id": 1}))
                assert await reply(ws, 1) == {"result": None, "id": 1}
                await ws.send(json.dumps({"method": "SUBSCRIBE", "params": names[1000:], "id": 2}))
                assert (await reply(ws, 2))["msg"] == "Invalid request: too many streams"
            assert ex.stats["over_cap"] == 2 and ex.stats["max_conn_streams"] == 1024
            assert 6000 < ex.stats["max_request_line"] <= 8192 and ex.stats["max_msg_rate"] == 2

    run(body())


def test_many_symbols_are_played_and_dropped_by_stream() -> None:
    """A tape relabelled into many symbols is served per symbol; drop() aborts the connection
    carrying a stream and no other."""
    tape = many_symbols(agg_tape(5), 300)

    async def body() -> None:
        async with LocalExchange(tape, start_after_streams=300) as ex:
            first = "/".join(f"s{k:04d}usdt@aggTrade" for k in range(150))
            second = "/".join(f"s{k:04d}usdt@aggTrade" for k in range(150, 300))
            async with connect(ex.ws_url + "/stream?streams=" + first) as a, \
                    connect(ex.ws_url + "/stream?streams=" + second) as b:
                await asyncio.wait_for(ex.done.wait(), DEADLINE)
                got = [json.loads(m)["data"]["s"] for m in await receive(b, 750)]
                assert got[:2] == ["S0150USDT", "S0151USDT"] and len(set(got)) == 150
                assert ex.drop("s0000usdt@aggTrade") == 1 and ex.stats["drops"] == 1
                await b.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
                assert len((await reply(b, 1))["result"]) == 150
                assert len(await receive_all(a)) == 750  # what it had; then the abort
                assert a.close_code == 1006
        assert len(tape.symbols) == 300 and len(tape.frames) == 1500

    run(body())


# ---- REST --------------------------------------------------------------------------------------


async def get(url: str, **params: Any) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as response:
        return response.status, await response.json(), response.headers


def test_rest_agg_trades_slices() -> None:
    """fromId, startTime/endTime, limit and "most recent" slices as Binance serves them."""

    async def body() -> None:
        async with LocalExchange(agg_tape(1_200), start_on_subscribe=False) as ex:
            await asyncio.wait_for(ex.done.wait(), 30)
            url = ex.rest_url + "/api/v3/aggTrades"
            _, rows, headers = await get(url, symbol="BTCUSDT", fromId=100, limit=3)
            assert [r["a"] for r in rows] == [100, 101, 102] and headers["X-MBX-USED-WEIGHT-1M"]
            assert set(rows[0]) == {"a", "p", "q", "f", "l", "T", "m", "M"}
            _, rows, _ = await get(
                url, symbol="BTCUSDT", startTime=T0 + 10_000, endTime=T0 + 12_000
            )
            assert [r["a"] for r in rows] == [11, 12, 13]
            _, rows, _ = await get(url, symbol="BTCUSDT")
            assert [r["a"] for r in rows] == list(range(701, 1_201))  # default 500, most recent
            _, rows, _ = await get(url, symbol="BTCUSDT", fromId=1, limit=5_000)
            assert len(rows) == 1_000  # the maximum
            _, rows, _ = await get(url, symbol="BTCUSDT", fromId=5_000)
            assert rows == []

    run(body())


def test_rest_serves_only_what_was_broadcast() -> None:
    """Before the clock starts REST knows nothing; while it runs, no row beyond its position."""

    async def body() -> None:
        # 50 s of tape: it still plays when REST is asked, however slow the machine
        async with LocalExchange(agg_tape(40_000), rate=800) as ex:
            url = ex.rest_url + "/api/v3/aggTrades"
            _, rows, _ = await get(url, symbol="BTCUSDT", fromId=1, limit=1000)
            assert rows == []
            seen: list[int] = []
            async with connect(ex.ws_url + "/stream?streams=" + AGG) as ws:
                reader = asyncio.create_task(collect(ws, seen))
                await until(lambda: len(seen) >= 100, what="100 frames")
                before = ex.position
                _, rows, _ = await get(url, symbol="BTCUSDT", fromId=1, limit=1000)
                after = ex.position
            await reader
            assert min(before, 1000) <= len(rows) <= after < 40_000  # limit 1000 caps the page
            assert [r["a"] for r in rows] == list(range(1, len(rows) + 1))
            assert seen[:100] == list(range(1, 101))

    run(body())


def test_rest_trades_klines_and_errors_on_a_real_tape() -> None:
    """trades, historicalTrades and klines match the tape; Binance's error codes for bad input."""
    tape = btc_tape(20_000)
    trades = tape.trades["BTCUSDT"].rows

    async def body() -> None:
        async with LocalExchange(tape, start_on_subscribe=False) as ex:
            await asyncio.wait_for(ex.done.wait(), 30)
            api = ex.rest_url + "/api/v3/"
            first = trades[0]["id"]
            _, rows, _ = await get(api + "historicalTrades", symbol="BTCUSDT", fromId=first + 10)
            assert rows == trades[10:510]
            _, rows, _ = await get(api + "trades", symbol="BTCUSDT", limit=7)
            assert rows == trades[-7:]
            status, rows, _ = await get(api + "klines", symbol="BTCUSDT", interval="1m")
            assert status == 200 and len(rows[0]) == 12 and rows[0][1] == trades[0]["price"]
            assert sum(r[8] for r in rows) == sum(t["time"] < rows[-1][6] for t in trades)
            for params, code in [
                ({"symbol": "ETHUSDT"}, -1121), ({}, -1102), ({"symbol": "btcusdt"}, -1100),
                ({"symbol": "BTCUSDT", "fromId": "x"}, -1100),
            ]:  # fmt: skip
                status, body, _ = await get(api + "aggTrades", **params)
                assert (status, body["code"]) == (400, code)
            status, body, _ = await get(api + "klines", symbol="BTCUSDT", interval="7m")
            assert (status, body["code"]) == (400, -1120)
            status, body, _ = await get(api + "klines", symbol="BTCUSDT")
            assert (status, body["code"]) == (400, -1102)

    run(body())


def test_rest_429_418_retry_after_and_weight() -> None:
    """429 and 418 faults answer market data with Retry-After: 1; weights add up per minute."""

    async def body() -> None:
        async with LocalExchange(agg_tape(5), faults=Faults(rest_429=1, rest_418=1)) as ex:
            url = ex.rest_url + "/api/v3/aggTrades"
            status, _, headers = await get(ex.rest_url + "/api/v3/ping")
            assert status == 200  # ping is not market data: no fault
            used = int(headers["X-MBX-USED-WEIGHT-1M"])
            answers = [await get(url, symbol="BTCUSDT") for _ in range(3)]
            assert [a[0] for a in answers] == [418, 429, 200]
            assert [a[2].get("Retry-After") for a in answers] == ["1", "1", None]
            assert int(answers[2][2]["X-MBX-USED-WEIGHT-1M"]) == used + 3 * 4
            assert ex.stats["rest_429"] == ex.stats["rest_418"] == 1
            assert ex.stats["rest_requests"] == 4

    run(body())


def test_exchange_info_describes_the_tape_symbols() -> None:
    """exchangeInfo lists the tape's symbols, TRADING, with assets and filters guessed, and a
    few symbols that do not trade."""
    tape = Tape(
        [agg_frame(1, T0), RawFrame(0, b'{"u":7,"s":"ETHBTC","b":"1","B":"1","a":"1","A":"1"}')]
    )

    async def body() -> Any:
        async with LocalExchange(tape) as ex:
            return (await get(ex.rest_url + "/api/v3/exchangeInfo"))[1]

    info = run(body())
    btc, eth = [s for s in info["symbols"] if s["status"] == "TRADING"]
    others = {s["symbol"]: s["status"] for s in info["symbols"][2:]}
    assert others == dict(NOT_TRADING) and "TRADING" not in others.values()
    assert (btc["baseAsset"], btc["quoteAsset"], btc["status"]) == ("BTC", "USDT", "TRADING")
    assert (eth["baseAsset"], eth["quoteAsset"]) == ("ETH", "BTC")
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert set(filters) == {"PRICE_FILTER", "LOT_SIZE", "MIN_NOTIONAL", "NOTIONAL"}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.01000000"


def test_python_binance_round_trip() -> None:
    """The real python-binance AsyncClient, pointed at rest_url, reads back what the tape holds."""
    aggs = [agg_frame(i, T0 + i * 1_000) for i in range(1, 301)]
    tape = Tape([*aggs, *itertools.islice(RecordingSource([shared_path(BTC_0808)]), 2_000)])

    async def body() -> None:
        async with LocalExchange(tape, start_on_subscribe=False) as ex:
            await asyncio.wait_for(ex.done.wait(), 30)
            local = type("LocalClient", (AsyncClient,), {"API_URL": ex.rest_url + "/api"})
            client = await local.create()
            try:
                rows = await client.get_aggregate_trades(symbol="BTCUSDT", fromId=5)
                assert [r["a"] for r in rows] == list(range(5, 301))
                trades = tape.trades["BTCUSDT"].rows
                fetched = await client.get_historical_trades(
                    symbol="BTCUSDT", fromId=trades[3]["id"]
                )
                assert fetched == trades[3:503]
                klines = await client.get_klines(symbol="BTCUSDT", interval="1m")
                assert klines == tape.klines("BTCUSDT", "1m")
                ex.faults.rest_429 = 1
                with pytest.raises(BinanceAPIException) as limited:
                    await client.get_klines(symbol="BTCUSDT", interval="1m")
                assert limited.value.status_code == 429
                assert limited.value.response.headers["Retry-After"] == "1"
            finally:
                await client.close_connection()

    run(body())


def test_stats_keys_are_all_present() -> None:
    """Every documented counter is in ``stats`` from the start, at zero."""
    assert LocalExchange(agg_tape(1)).stats == dict.fromkeys(STAT_KEYS, 0)
