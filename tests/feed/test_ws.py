"""The websocket feed against a real, scripted websockets server on 127.0.0.1 (time in ms)."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import Request, Response, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ares_stream.feed import RawFrame
from ares_stream.feed.ws import (
    CONTROL_SPACING,
    FeedError,
    FeedNotice,
    WsFeed,
    WsSettings,
    backoff,
    process_exception,
    stream_names,
    stream_url,
)
from tests.conftest import DEADLINE, until

SHUTDOWN = b'{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}'
Plan = Callable[[int, ServerConnection, "Fake"], Awaitable[None]]


def frame(i: int) -> str:
    """A combined-stream aggTrade frame with trade id ``i``."""
    return f'{{"stream":"btcusdt@aggTrade","data":{{"e":"aggTrade","s":"BTCUSDT","a":{i}}}}}'


def trade_id(f: RawFrame) -> int | None:
    """The trade id of a data frame, None for anything else."""
    data = json.loads(f.data).get("data", {})
    return data.get("a") if data.get("e") == "aggTrade" else None


def run(coro: Coroutine[Any, Any, Any], timeout: float = 2 * DEADLINE) -> Any:
    """Run ``coro`` on a fresh loop; a hang fails after ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Policy:
    """A fast reconnect policy that records every delay it hands out."""

    def __init__(self, delay: float = 0.01) -> None:
        self.delay, self.calls = delay, 0
        self.used: list[float] = []

    def __call__(self) -> Generator[float, None, None]:
        self.calls += 1
        return self._delays()

    def _delays(self) -> Generator[float, None, None]:
        for _ in range(1000):
            self.used.append(self.delay)
            yield self.delay


class Fake:
    """A scripted Binance-like server: ``plan(n, ws, fake)`` serves the n-th connection."""

    def __init__(self, plan: Plan, refuse: int = 0, status: int = 503) -> None:
        self.plan, self.refuse, self.status = plan, refuse, status
        self.url = ""
        self.accepted = self.open = self.max_open = 0
        self.paths: list[str] = []
        self.messages: list[tuple[int, float, dict[str, Any]]] = []  # (connection, time, message)
        self.client_closed: list[bool] = []  # per finished connection: did the client close it?

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        self.paths.append(request.path)
        if self.refuse > 0:
            self.refuse -= 1
            return conn.respond(self.status, "go away\n")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        n, self.accepted = self.accepted, self.accepted + 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        listener = asyncio.create_task(self._listen(n, ws))
        try:
            await self.plan(n, ws, self)
        except ConnectionClosed:
            pass
        finally:
            self.open -= 1
            await ws.close()
            self.client_closed.append(bool(ws.protocol.close_rcvd_then_sent))
            listener.cancel()

    async def _listen(self, n: int, ws: ServerConnection) -> None:
        async for text in ws:
            message = json.loads(text)
            self.messages.append((n, time.monotonic(), message))
            await ws.send(json.dumps({"result": None, "id": message["id"]}))


@asynccontextmanager
async def serving(plan: Plan, refuse: int = 0, status: int = 503) -> AsyncIterator[Fake]:
    """A :class:`Fake` listening on 127.0.0.1 (any free port)."""
    fake = Fake(plan, refuse, status)
    async with serve(fake.handler, "127.0.0.1", 0, process_request=fake.process_request,
                     compression=None) as server:
        fake.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        yield fake


@asynccontextmanager
async def running(feed: WsFeed) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``feed`` in a task; stop it on exit and require that run() ends."""
    task = asyncio.create_task(feed.run())
    try:
        yield task
    finally:
        feed.stop()
        await asyncio.wait_for(task, DEADLINE)


async def ended(fake: Fake) -> None:
    """Wait until the server has seen every connection end (``client_closed`` is complete)."""
    await until(lambda: len(fake.client_closed) == fake.accepted, what="the connections to end")


def scripted(batches: list[range], ends: list[str]) -> Plan:
    """Connection n sends ``batches[n]`` then ends by "abort", "close", "silent" or "open"."""

    async def plan(n: int, ws: ServerConnection, fake: Fake) -> None:
        for i in batches[n]:
            await ws.send(frame(i))
        if ends[n] == "abort":
            ws.transport.abort()
        elif ends[n] == "close":
            await ws.close(1001, "maintenance")
        else:  # "silent" or "open": no more frames, wait for the client
            await ws.wait_closed()

    return plan


def tape(dt: float = 0.005, shutdown_after: int | None = None,
         mute: frozenset[int] = frozenset()) -> Plan:
    """An endless live tape, as an exchange broadcasts it: one clock sends id k at t0 + k*dt
    to every open connection, oldest first, so a connection gets every id after the one it
    joined at, and no connection is sent an id before an older one was. It goes on until the
    client hangs up (after a minute the server closes: 1001), whatever the machine's speed.

    With ``shutdown_after``, the first connection gets serverShutdown after its that-many-th
    frame, then frames on until the client has handed over and closed it (Binance closes a
    while later; the tests do not bet on how long a handover takes). Connections numbered in
    ``mute`` get nothing.
    """
    listeners: dict[int, ServerConnection] = {}
    clock: list[asyncio.Task[None]] = []

    async def broadcast() -> None:
        t0 = time.monotonic()
        sent: dict[int, int] = {}  # frames sent to each connection
        k = 0
        while time.monotonic() < t0 + 60:
            k += 1
            await asyncio.sleep(max(0.0, t0 + k * dt - time.monotonic()))  # pacing
            for n, ws in sorted(listeners.items()):
                try:
                    await ws.send(frame(k))
                    sent[n] = sent.get(n, 0) + 1
                    if n == 0 and sent[n] == shutdown_after:
                        await ws.send(SHUTDOWN)
                except ConnectionClosed:
                    listeners.pop(n, None)
        for ws in list(listeners.values()):
            await ws.close(1001, "shutdown")

    async def plan(n: int, ws: ServerConnection, fake: Fake) -> None:
        if n not in mute:
            listeners[n] = ws
            if not clock:
                clock.append(asyncio.create_task(broadcast()))
        try:
            await ws.wait_closed()
        finally:
            listeners.pop(n, None)

    return plan


async def take(feed: WsFeed, until: Callable[[list[RawFrame]], bool]) -> list[RawFrame]:
    """Frames from the feed's queue until ``until(frames)`` holds."""
    frames: list[RawFrame] = []
    while not until(frames):
        frames.append(await feed.queue.get())
    return frames


def ids(frames: list[RawFrame]) -> list[int]:
    return [i for i in map(trade_id, frames) if i is not None]


def settings(fake: Fake, **kw: Any) -> WsSettings:
    return WsSettings(base_url=fake.url, symbols=("BTCUSDT",), open_timeout=30.0, **kw)


# ---- pure functions ----------------------------------------------------------------------------


def test_stream_url_spot_usdm_and_microseconds() -> None:
    """URLs join lower-cased symbol@stream names for spot, USD-M and µs timestamps."""
    spot = WsSettings(symbols=("BTCUSDT", "ETHUSDT"), streams=("aggTrade", "bookTicker"))
    assert stream_url(spot) == ("wss://stream.binance.com:9443/stream?streams=btcusdt@aggTrade/"
                                "btcusdt@bookTicker/ethusdt@aggTrade/ethusdt@bookTicker")
    usdm = WsSettings(base_url="wss://fstream.binance.com", symbols=("BTCUSDT",),
                      streams=("depth@100ms", "kline_1m"))
    assert stream_url(usdm) == ("wss://fstream.binance.com/stream?streams="
                                "btcusdt@depth@100ms/btcusdt@kline_1m")
    micro = WsSettings(base_url="wss://data-stream.binance.vision", symbols=("btcusdt",),
                       streams=("trade",), time_unit="MICROSECOND")
    assert stream_url(micro) == ("wss://data-stream.binance.vision/stream?streams=btcusdt@trade"
                                 "&timeUnit=MICROSECOND")
    assert stream_url(WsSettings()) == "wss://stream.binance.com:9443/stream"
    assert stream_names(["X", "x"], ["trade"]) == ["x@trade"]
    with pytest.raises(ValueError, match="1024"):
        stream_names([f"s{i}" for i in range(1025)], ["trade"])


def test_backoff_grows_caps_jitters_and_is_seedable() -> None:
    """Delays double up to the cap, jitter only shortens them, and a seeded rng repeats them."""
    exact = backoff(initial=0.5, factor=3.0, cap=10.0, jitter=0.0)()
    assert [next(exact) for _ in range(5)] == [0.5, 1.5, 4.5, 10.0, 10.0]
    delays = backoff(initial=1.0, factor=2.0, cap=60.0, jitter=0.5, rng=random.Random(1))()
    drawn = [next(delays) for _ in range(12)]
    bases = [min(60.0, 2.0**i) for i in range(12)]
    assert all(b * 0.5 <= d <= b for d, b in zip(drawn, bases, strict=True))
    assert len(set(d / b for d, b in zip(drawn, bases, strict=True))) > 6  # really jittered
    again = backoff(rng=random.Random(1))()
    assert [next(again) for _ in range(12)] == drawn
    other = backoff(rng=random.Random(2))()
    assert [next(other) for _ in range(12)] != drawn
    with pytest.raises(ValueError):
        backoff(jitter=1.5)


def test_process_exception_retries_transient_errors_only() -> None:
    """Network errors, timeouts, 5xx and 429 are retried; other 4xx are fatal FeedErrors."""

    def status(code: int) -> InvalidStatus:
        return InvalidStatus(Response(code, "X", Headers()))

    for exc in (OSError("refused"), TimeoutError(), status(503), status(500), status(429)):
        assert process_exception(exc) is None
    for code in (400, 403, 404, 418):
        err = process_exception(status(code))
        assert isinstance(err, FeedError) and f"HTTP {code}" in str(err)
    assert isinstance(process_exception(ValueError("odd")), FeedError)


# ---- against a real server ---------------------------------------------------------------------


def test_frames_arrive_in_order_with_increasing_stamps() -> None:
    """Every frame reaches the queue as bytes, in order, stamped at receipt."""

    async def main() -> None:
        before = time.time_ns()
        async with serving(scripted([range(50)], ["open"])) as fake:
            feed = WsFeed(settings(fake))
            async with running(feed):
                frames = await take(feed, lambda f: len(f) == 50)
            assert fake.paths == ["/stream?streams=btcusdt@aggTrade"]
            assert ids(frames) == list(range(50))
            assert all(isinstance(f.data, bytes) for f in frames)
            stamps = [f.ts_init for f in frames]
            assert stamps == sorted(stamps) and stamps[0] < stamps[-1]
            assert before <= stamps[0] and stamps[-1] <= time.time_ns()  # wall-clock ns
            assert feed.stats["frames"] == 50 and feed.stats["connects"] == 1

    run(main())


def test_reconnects_after_abrupt_drops() -> None:
    """A dropped transport is reported as disconnected and the next connection carries on."""

    async def main() -> None:
        notices: list[FeedNotice] = []
        policy = Policy()
        plan = scripted([range(10), range(10, 20), range(20, 30)], ["abort", "abort", "open"])
        async with serving(plan) as fake:
            feed = WsFeed(settings(fake), reconnect_delays=policy, on_notice=notices.append)
            async with running(feed):
                frames = await take(feed, lambda f: len(f) == 30)
        assert ids(frames) == list(range(30))
        assert feed.stats["connects"] == 3 and feed.stats["disconnects"] == 2
        assert [n.kind for n in notices] == ["connected", "disconnected"] * 2 + ["connected"]
        assert "no close frame" in notices[1].detail
        assert len(policy.used) >= 2  # the delays after each drop came from the policy

    run(main())


def test_reconnects_after_clean_close_with_code_and_reason() -> None:
    """A clean server close is reported with its code and reason, then the feed reconnects."""

    async def main() -> None:
        notices: list[FeedNotice] = []
        async with serving(scripted([range(5), range(5, 10)], ["close", "open"])) as fake:
            feed = WsFeed(settings(fake), reconnect_delays=Policy(), on_notice=notices.append)
            async with running(feed):
                frames = await take(feed, lambda f: len(f) == 10)
        assert ids(frames) == list(range(10))
        assert feed.stats["connects"] == 2
        gone = [n for n in notices if n.kind == "disconnected"]
        assert len(gone) == 1 and "1001" in gone[0].detail and "maintenance" in gone[0].detail

    run(main())


def test_refused_handshakes_back_off_with_the_injected_policy() -> None:
    """Three 503 refusals are retried after the policy's delays, then frames flow."""

    async def main() -> None:
        policy = Policy(delay=0.05)
        async with serving(scripted([range(3)], ["open"]), refuse=3) as fake:
            feed = WsFeed(settings(fake), reconnect_delays=policy)
            start = time.monotonic()
            async with running(feed):
                frames = await take(feed, lambda f: len(f) == 3)
            elapsed = time.monotonic() - start
        assert ids(frames) == [0, 1, 2]
        assert len(fake.paths) == 4 and feed.stats["connects"] == 1
        assert policy.calls == 1 and len(policy.used) == 3
        assert elapsed >= 3 * 0.05

    run(main())


def test_429_is_retried_and_404_is_fatal() -> None:
    """A 429 refusal is retried; a 404 ends run() with a FeedError naming the status."""

    async def main() -> None:
        async with serving(scripted([range(1)], ["open"]), refuse=1, status=429) as fake:
            feed = WsFeed(settings(fake), reconnect_delays=Policy())
            async with running(feed):
                assert ids(await take(feed, lambda f: len(f) == 1)) == [0]
        async with serving(scripted([range(1)], ["open"]), refuse=1, status=404) as fake:
            feed = WsFeed(settings(fake), reconnect_delays=Policy())
            with pytest.raises(FeedError, match="HTTP 404"):
                await asyncio.wait_for(feed.run(), DEADLINE)
            assert len(fake.paths) == 1

    run(main())


def test_silence_watchdog_reconnects() -> None:
    """A connection that sends nothing for silence_timeout is closed and replaced."""
    # The test waits out one silence; shorter ones would turn a stall of a busy machine (the
    # reader not run for that long) into a silence the test did not plant.
    silence = 1.0

    async def main() -> None:
        notices: list[FeedNotice] = []
        async with serving(scripted([range(5), range(5, 10)], ["silent", "open"])) as fake:
            feed = WsFeed(settings(fake, silence_timeout=silence), reconnect_delays=Policy(),
                          on_notice=notices.append)
            async with running(feed):
                frames = await take(feed, lambda f: len(f) == 10)
            await ended(fake)
            assert fake.client_closed[0] is True  # the client hung up on the silent server
        assert ids(frames) == list(range(10))
        assert feed.stats["silences"] == 1 and feed.stats["connects"] == 2
        kinds = [n.kind for n in notices]
        assert kinds == ["connected", "silence", "disconnected", "connected"]
        assert frames[5].ts_init - frames[4].ts_init >= silence * 1e9

    run(main())


def test_server_shutdown_hands_over_before_the_old_connection_closes() -> None:
    """serverShutdown is forwarded and a new connection takes over with no id missing."""

    async def main() -> None:
        notices: list[FeedNotice] = []
        async with serving(tape(shutdown_after=15)) as fake:
            feed = WsFeed(settings(fake), reconnect_delays=Policy(), on_notice=notices.append)
            async with running(feed):
                frames = await take(feed, lambda f: feed.stats["rotations"] >= 1)
                frames += await take(feed, lambda f: len(f) == 10)  # the successor streams on
            await ended(fake)
            assert fake.max_open == 2 and fake.client_closed[0] is True
        got = ids(frames)
        assert set(got) == set(range(got[0], max(got) + 1))  # no hole; duplicates allowed
        assert SHUTDOWN in [f.data for f in frames]
        kinds = [n.kind for n in notices]
        assert kinds == ["connected", "server_shutdown", "connected", "rotated"]
        assert feed.stats["server_shutdowns"] == 1 and feed.stats["disconnects"] == 0

    run(main())


def test_rotation_overlaps_connections_without_loss() -> None:
    """After rotate_after a second connection overlaps the first; no id is lost across it."""

    async def main() -> None:
        notices: list[FeedNotice] = []
        async with serving(tape()) as fake:
            feed = WsFeed(settings(fake, rotate_after=0.3), reconnect_delays=Policy(),
                          on_notice=notices.append)
            async with running(feed):
                frames = await take(feed, lambda f: feed.stats["rotations"] >= 2)
                frames += await take(feed, lambda f: len(f) == 10)
            await ended(fake)
            assert fake.max_open == 2
            assert fake.client_closed[:2] == [True, True]
        got = ids(frames)
        assert set(got) == set(range(got[0], max(got) + 1))
        assert feed.stats["rotations"] >= 2 and feed.stats["disconnects"] == 0
        assert [n.detail for n in notices if n.kind == "rotated"][:2] == ["age", "age"]
        assert "disconnected" not in [n.kind for n in notices]

    run(main())


def test_rotation_keeps_the_old_connection_when_the_successor_is_silent() -> None:
    """A successor that delivers nothing is dropped; the old connection serves on, no gap."""

    async def main() -> None:
        notices: list[FeedNotice] = []
        async with serving(tape(mute=frozenset({1}))) as fake:
            # silence_timeout: how long the silent successor is waited for, once; shorter, a
            # stall of a busy machine could pass for a silence of the streaming connection
            feed = WsFeed(settings(fake, rotate_after=0.15, silence_timeout=1.0),
                          reconnect_delays=Policy(), on_notice=notices.append)
            async with running(feed):
                frames = await take(feed, lambda f: feed.stats["rotations"] >= 1)
                frames += await take(feed, lambda f: len(f) == 10)
            await ended(fake)
        got = ids(frames)
        assert set(got) == set(range(got[0], max(got) + 1))
        kinds = [n.kind for n in notices]
        assert kinds[:5] == ["connected", "connected", "handover_failed", "connected", "rotated"]
        assert "disconnected" not in kinds and fake.client_closed[0] is True

    run(main())


def test_subscribe_is_batched_and_paced_under_five_per_second(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SUBSCRIBE messages carry batched params, sent CONTROL_SPACING apart: never 6 in a second.

    The spacing is measured where it is made, as the client sends: on arrival a busy machine
    can bunch messages that left on time."""
    sent: list[float] = []
    send = ClientConnection.send

    async def timed_send(self: ClientConnection, message: Any, *args: Any, **kw: Any) -> None:
        sent.append(time.monotonic())
        await send(self, message, *args, **kw)

    monkeypatch.setattr(ClientConnection, "send", timed_send)

    async def main() -> None:
        names = [f"s{i}usdt@trade" for i in range(1020)]
        connected = asyncio.Event()
        async with serving(scripted([range(0)], ["open"])) as fake:
            feed = WsFeed(settings(fake), on_notice=lambda n: connected.set())
            async with running(feed):
                await connected.wait()
                for part in (names[:400], names[400:800], names[800:]):
                    await feed.subscribe(part)
                replies = await take(feed, lambda f: len(f) == 6)
        assert len(fake.messages) == 6 and feed.stats["subscribe_messages"] == 6  # 200 each
        assert len(sent) == 6 and sent[5] - sent[0] > 1.0  # never 6 in a second
        assert all(b - a >= CONTROL_SPACING - 1e-3 for a, b in itertools.pairwise(sent))
        assert [p for _, _, m in fake.messages for p in m["params"]] == names
        assert {m["method"] for _, _, m in fake.messages} == {"SUBSCRIBE"}
        assert [json.loads(f.data)["id"] for f in replies] == [m["id"] for _, _, m in fake.messages]
        more = WsFeed(settings(fake))
        with pytest.raises(ValueError, match="1024"):
            await more.subscribe([f"x{i}@trade" for i in range(1024)])

    run(main())


def test_subscriptions_are_replayed_on_the_next_connection() -> None:
    """A live subscription is sent again on every new connection."""

    async def main() -> None:
        async def plan(n: int, ws: ServerConnection, fake: Fake) -> None:
            await until(lambda: any(c == n for c, _, _ in fake.messages), what="the SUBSCRIBE")
            await ws.send(frame(n))
            if n == 0:
                ws.transport.abort()
            await ws.wait_closed()

        connected = asyncio.Event()
        async with serving(plan) as fake:
            feed = WsFeed(settings(fake), reconnect_delays=Policy(),
                          on_notice=lambda n: connected.set())
            async with running(feed):
                await connected.wait()
                await feed.subscribe(["ethusdt@trade"])
                await take(feed, lambda f: 1 in ids(f))
        assert [(c, m["params"]) for c, _, m in fake.messages] == [
            (0, ["ethusdt@trade"]), (1, ["ethusdt@trade"])]

    run(main())


def test_bounded_queue_applies_backpressure_and_loses_nothing() -> None:
    """A slow consumer never sees more than queue_size frames queued, and gets all of them."""

    # silence_timeout: the test waits it out once; shorter, a stall of a busy machine after the
    # last frame (the server sends no more) could pass for a silence
    silence = 1.0

    async def main() -> None:
        async with serving(scripted([range(150)], ["open"])) as fake:
            feed = WsFeed(settings(fake, queue_size=8, silence_timeout=silence))
            async with running(feed):
                await until(lambda: feed.queue.qsize() == 8, what="a full queue")
                # the reader waits on us longer than silence_timeout: that is no silence
                await asyncio.sleep(silence + 0.2)
                assert feed.lag_ns() >= (silence + 0.2) * 1e9
                frames, sizes = [], []
                for _ in range(150):
                    sizes.append(feed.queue.qsize())
                    frames.append(await feed.queue.get())
                    await asyncio.sleep(0.002)
                assert feed.lag_ns() == 0
        assert ids(frames) == list(range(150))
        assert max(sizes) == 8 and feed.stats["max_queue"] == 8
        assert feed.stats["queue_full_waits"] > 100
        assert feed.stats["silences"] == 0 and feed.stats["connects"] == 1  # waiting ≠ silence

    run(main())


def test_error_frames_are_noticed_and_forwarded() -> None:
    """An error frame from the server raises an error_frame notice and still reaches the queue."""

    async def main() -> None:
        async def plan(n: int, ws: ServerConnection, fake: Fake) -> None:
            await ws.send('{"code":2,"msg":"Invalid request"}')
            await ws.wait_closed()

        notices: list[FeedNotice] = []
        async with serving(plan) as fake:
            feed = WsFeed(settings(fake), on_notice=notices.append)
            async with running(feed):
                frames = await take(feed, lambda f: len(f) == 1)
        assert frames[0].data == b'{"code":2,"msg":"Invalid request"}'
        assert [n.kind for n in notices] == ["connected", "error_frame"]
        assert feed.stats["error_frames"] == 1

    run(main())


def test_stop_ends_run_promptly_when_streaming_and_when_backing_off() -> None:
    """stop() ends run() at once, whether frames are flowing (for another minute) or a 2-minute
    backoff is pending: well within the 60 s allowed, which only a stop that waits for the
    stream or the backoff would take."""

    async def main() -> None:
        async with serving(tape(dt=0.002)) as fake:
            feed = WsFeed(settings(fake))
            task = asyncio.create_task(feed.run())
            await take(feed, lambda f: len(f) == 10)
            feed.stop()
            await asyncio.wait_for(task, DEADLINE)
            await ended(fake)
            assert fake.client_closed == [True]
        async with serving(scripted([range(1)], ["open"]), refuse=100) as fake:
            feed = WsFeed(settings(fake), reconnect_delays=Policy(delay=120.0))
            task = asyncio.create_task(feed.run())
            await until(lambda: feed.stats["connect_failures"] >= 1, what="a refused attempt")
            feed.stop()
            await asyncio.wait_for(task, DEADLINE)
            assert len(fake.paths) == 1
        feed.stop()  # a stopped feed stays stopped
        await asyncio.wait_for(feed.run(), DEADLINE)

    run(main())
