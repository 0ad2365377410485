"""The local exchange's order book: the tape rebuilds it from depth frames (simulated or a real
capture with its snapshot line), REST serves it to python-binance, and the depth faults break it
the way a client following Binance's book procedure must survive."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Awaitable, Callable, Coroutine
from decimal import Decimal
from typing import Any

import aiohttp
from binance import AsyncClient
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ares_stream.feed.recording import RecordingSource
from ares_stream.sim.exchange import Faults, LocalExchange, Tape
from ares_stream.sim.exchange.rest import STALE_ITEMS
from ares_stream.sim.simulator import SimSpec, books, frames
from tests.conftest import DEADLINE, shared_path, until

BTC_0808 = "ws/binance-spot-btcusdt-20240808.gz"
SPEC = SimSpec(seconds=600, seed=21, streams=("depth@100ms", "bookTicker", "aggTrade"))
DIFFS = "simusdt@depth@100ms"

Book = tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]
Snapshot = Callable[[], Awaitable[dict[str, Any]]]


def run(coro: Coroutine[Any, Any, Any], timeout: float = DEADLINE) -> Any:
    """Run one async test body, failing (not hanging) after ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def apply(book: Book, diff: dict[str, Any]) -> None:
    """Set the diff's levels in ``book``; quantity 0 removes one (if there)."""
    for side, key in zip(book, "ba", strict=True):
        for price, qty in diff[key]:
            if Decimal(qty) == 0:
                side.pop(Decimal(price), None)
            else:
                side[Decimal(price)] = Decimal(qty)


def levels(snapshot: dict[str, Any]) -> Book:
    return ({Decimal(p): Decimal(q) for p, q in snapshot["bids"]},
            {Decimal(p): Decimal(q) for p, q in snapshot["asks"]})


def rebuilt(diffs: list[dict[str, Any]], last_id: int, start: Book | None = None) -> Book:
    """The book after the diffs up to id ``last_id`` (from ``start``, or empty)."""
    book: Book = ({}, {}) if start is None else (dict(start[0]), dict(start[1]))
    for diff in diffs:
        if diff["u"] <= last_id:
            apply(book, diff)
    return book


def sim_book(spec: SimSpec) -> Book:
    """The simulator's own book at the end of ``spec`` (a whole number of blocks)."""
    *_, (_, bids, asks) = books(spec)
    return ({Decimal(p) / 100: Decimal(q) / 100_000 for p, q in bids.items()},
            {Decimal(p) / 100: Decimal(q) / 100_000 for p, q in asks.items()})


class Follower:
    """A client keeping a local book as Binance documents: buffer the diffs, fetch a snapshot
    (again if it is older than the first buffered diff), drop the diffs with ``u <=
    lastUpdateId``, apply the rest while each ``U`` is the book's id + 1; at a break, fetch a new
    snapshot."""

    def __init__(self, ws: ClientConnection, snapshot: Snapshot) -> None:
        self.ws, self.snapshot = ws, snapshot
        self.diffs: list[dict[str, Any]] = []  # every diff received, in order
        self.book: Book | None = None
        self.last = 0
        self.fetches = self.breaks = 0
        self._applied = 0  # diffs of self.diffs handled
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        """Receive every diff until the connection ends."""
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                self.diffs.append(json.loads(message)["data"])

    async def sync(self) -> None:
        """Handle the diffs received so far (fetching snapshots when needed)."""
        while self._applied < len(self.diffs):
            if self.book is None:
                await self._resync()
                continue
            diff = self.diffs[self._applied]
            if diff["U"] > self.last + 1:
                self.breaks += 1
                self.book = None
                continue
            if diff["u"] > self.last:
                apply(self.book, diff)
                self.last = diff["u"]
            self._applied += 1

    async def _resync(self) -> None:
        first = self.diffs[self._applied]["U"]
        snap = await self.snapshot()
        self.fetches += 1
        if snap["lastUpdateId"] + 1 < first:  # older than what we buffered: ask again
            return
        self.book, self.last = levels(snap), snap["lastUpdateId"]
        while self._applied < len(self.diffs) and self.diffs[self._applied]["u"] <= self.last:
            self._applied += 1


async def python_binance(ex: LocalExchange) -> AsyncClient:
    local = type("LocalClient", (AsyncClient,), {"API_URL": ex.rest_url + "/api"})
    return await local.create()


async def follow_to_the_end(ex: LocalExchange, followers: list[Follower]) -> None:
    """Sync the followers once the tape is out and they received its last diff."""
    await until(lambda: ex.done.is_set(), what="the end of the tape")
    last = json.loads(ex.tape.frames[max(i for i, (s, _) in enumerate(ex.tape.frames)
                                         if s == DIFFS)][1])["u"]
    for f in followers:
        await until(lambda f=f: f.diffs and f.diffs[-1]["u"] == last, what="the last diff")
        await f.sync()
        await f.ws.close()
        await f.reader


# ---- the tape ---------------------------------------------------------------------------------


def test_the_tape_serves_the_simulators_book_as_broadcast() -> None:
    """At any position the tape's book is the one its broadcast diffs rebuild, id their last u."""
    tape = Tape.from_frames(frames(SPEC))
    assert tape.order_book("SIMUSDT", 0) == {"lastUpdateId": 0, "bids": [], "asks": []}
    diffs: list[dict[str, Any]] = []
    for position, (stream, payload) in enumerate(tape.frames, 1):
        if stream == DIFFS:
            diffs.append(json.loads(payload))
        if position % 97 == 0 or position == len(tape.frames):
            book = tape.order_book("SIMUSDT", position)
            assert book is not None and book["lastUpdateId"] == diffs[-1]["u"]
            assert levels(book) == rebuilt(diffs, diffs[-1]["u"])
    assert levels(tape.order_book("SIMUSDT", limit=3) or {}) == tuple(
        dict(sorted(side.items(), reverse=i == 0)[:3]) for i, side in enumerate(sim_book(SPEC)))
    assert tape.order_book("SIMUSDT", 10) == tape.order_book("SIMUSDT", 10)  # back in time


def test_the_tape_serves_the_real_capture_from_its_snapshot_line() -> None:
    """The real capture: its bare snapshot line (after three diffs) plus the diffs after it; before
    the line, that snapshot with the diffs already broadcast; a trades-only symbol: empty."""
    source = list(itertools.islice(RecordingSource([shared_path(BTC_0808)]), 3_000))
    tape = Tape(source)
    snap = next(json.loads(f.data) for f in source if f.data.startswith(b'{"lastUpdateId"'))
    diffs = [json.loads(p) for s, p in tape.frames if s == "btcusdt@depth@100ms"]
    at = [i + 1 for i, (s, _) in enumerate(tape.frames) if s == "btcusdt@depth@100ms"]
    assert [d["u"] for d in diffs[:3]] == [50093239202, 50093239207, 50093239224]
    assert diffs[0]["u"] < snap["lastUpdateId"] < diffs[2]["u"]
    start = levels(snap)
    for k, position in enumerate(at):
        book = tape.order_book("BTCUSDT", position)
        assert book is not None
        want = max(diffs[k]["u"], snap["lastUpdateId"])
        assert book["lastUpdateId"] == want
        assert levels(book) == rebuilt([d for d in diffs[:k + 1] if d["u"] > snap["lastUpdateId"]],
                                       want, start)
    first, last = tape.order_book("BTCUSDT", 0), tape.order_book("BTCUSDT", limit=7)
    assert first is not None and first["lastUpdateId"] == snap["lastUpdateId"]
    assert last is not None and len(last["bids"]) == len(last["asks"]) == 7
    assert tape.skipped == 1 and tape.order_book("ETHUSDT") == {
        "lastUpdateId": 0, "bids": [], "asks": []}


def test_diffs_without_a_snapshot_have_no_book() -> None:
    """Diffs that start mid-stream with no snapshot line: the tape cannot tell the book."""
    lines = itertools.islice(RecordingSource([shared_path(BTC_0808)]), 3_000)
    tape = Tape(f for f in lines if not f.data.startswith(b'{"lastUpdateId"'))
    assert tape.order_book("BTCUSDT") is None


# ---- REST and websocket -----------------------------------------------------------------------


def test_a_python_binance_client_following_the_procedure_holds_the_exchanges_book() -> None:
    """A real websocket client and python-binance's get_order_book, mid-stream: every snapshot is
    the book its own diffs rebuild up to lastUpdateId, and it ends with the simulator's book."""

    async def body() -> None:
        tape = Tape.from_frames(frames(SPEC))
        async with LocalExchange(tape, rate=4_000) as ex:
            client = await python_binance(ex)
            snapshots: list[dict[str, Any]] = []

            async def snapshot() -> dict[str, Any]:
                snapshots.append(await client.get_order_book(symbol="SIMUSDT", limit=1000))
                return snapshots[-1]

            try:
                async with connect(f"{ex.ws_url}/stream?streams={DIFFS}") as ws:
                    follower = Follower(ws, snapshot)
                    while not ex.done.is_set():
                        await until(lambda: len(follower.diffs) > 200 + 400 * len(snapshots)
                                    or ex.done.is_set(), what="diffs")
                        follower.book = None  # throw the book away: sync again
                        await follower.sync()
                    await follow_to_the_end(ex, [follower])
                assert len(snapshots) >= 3 and follower.breaks == 0
                for snap in snapshots:
                    assert levels(snap) == rebuilt(follower.diffs, snap["lastUpdateId"])
                assert follower.book == sim_book(SPEC) == levels(await snapshot())
                few = await client.get_order_book(symbol="SIMUSDT", limit=5)
                assert [len(few["bids"]), len(few["asks"])] == [5, 5]
            finally:
                await client.close_connection()

    run(body())


def test_depth_weights_and_errors() -> None:
    """Weights by limit as Binance's table; an unknown symbol -1121; a book the tape lacks 503."""
    lines = itertools.islice(RecordingSource([shared_path(BTC_0808)]), 500)
    no_snapshot = Tape(f for f in lines if not f.data.startswith(b'{"lastUpdateId"'))

    async def body() -> None:
        async with LocalExchange(no_snapshot, start_on_subscribe=False) as ex:
            url = ex.rest_url + "/api/v3/depth"
            used = []
            async with aiohttp.ClientSession() as session:
                for limit in ("", "100", "101", "1000", "5000", "9999"):
                    params = {"symbol": "BTCUSDT", **({"limit": limit} if limit else {})}
                    async with session.get(url, params=params) as response:
                        used.append(int(response.headers["X-MBX-USED-WEIGHT-1M"]))
                        assert response.status == 503
                        assert (await response.json())["code"] == -1000
                async with session.get(url, params={"symbol": "ETHUSDT"}) as response:
                    assert (response.status, (await response.json())["code"]) == (400, -1121)
            assert [b - a for a, b in itertools.pairwise([0, *used])] == [5, 5, 25, 50, 250, 250]

    run(body())


# ---- faults -----------------------------------------------------------------------------------


def test_a_skipped_diff_breaks_one_connection_which_resyncs() -> None:
    """``skip_depth=1`` mid-stream: one connection's U jumps past its last u + 1, the other's
    does not; the broken client notices, fetches a new snapshot and ends with the right book."""

    async def body() -> None:
        tape = Tape.from_frames(frames(SPEC))
        async with LocalExchange(tape, rate=4_000) as ex:
            client = await python_binance(ex)
            try:
                url = f"{ex.ws_url}/stream?streams={DIFFS}"
                async def snapshot() -> dict[str, Any]:
                    return dict(await client.get_order_book(symbol="SIMUSDT"))

                async with connect(url) as one, connect(url) as two:
                    followers = [Follower(one, snapshot), Follower(two, snapshot)]
                    await until(lambda: all(len(f.diffs) >= 50 for f in followers),
                                what="50 diffs on both connections")
                    for f in followers:
                        await f.sync()  # both hold the book
                    ex.faults.skip_depth = 1
                    await follow_to_the_end(ex, followers)
            finally:
                await client.close_connection()
            gaps = [[(a["u"], b["U"]) for a, b in itertools.pairwise(f.diffs)
                     if b["U"] != a["u"] + 1] for f in followers]
            assert sorted(len(g) for g in gaps) == [0, 1] and ex.stats["depth_skips"] == 1
            broken = followers[0] if gaps[0] else followers[1]
            assert (broken.breaks, broken.fetches) == (1, 2)
            assert followers[0].book == followers[1].book == sim_book(SPEC)

    run(body())


def test_every_nth_diff_skipped_and_a_stale_snapshot() -> None:
    """``skip_depth_every=5`` leaves out diffs 5, 10, … of each connection; ``stale_depth=1``
    answers the book STALE_ITEMS diffs back once, then the current one."""
    tape = Tape.from_frames(frames(SimSpec(seconds=60, seed=2, streams=("depth@100ms",))))
    diffs = [json.loads(p) for _, p in tape.frames]

    async def body() -> None:
        async with LocalExchange(tape, faults=Faults(skip_depth_every=5, stale_depth=1)) as ex:
            async with connect(f"{ex.ws_url}/ws/{DIFFS}") as ws:
                got = [json.loads(m)["U"] for m in [await asyncio.wait_for(ws.recv(), 30)
                                                      for _ in range(len(diffs) - len(diffs) // 5)]]
            assert got == [d["U"] for i, d in enumerate(diffs, 1) if i % 5]
            await until(lambda: ex.done.is_set(), what="the end of the tape")
            async with aiohttp.ClientSession() as session:
                answers = []
                for _ in range(2):
                    async with session.get(ex.rest_url + "/api/v3/depth",
                                           params={"symbol": "SIMUSDT"}) as response:
                        answers.append(await response.json())
            stale_id = diffs[-1 - STALE_ITEMS]["u"]
            assert [a["lastUpdateId"] for a in answers] == [stale_id, diffs[-1]["u"]]
            assert levels(answers[0]) == rebuilt(diffs, stale_id)
            assert ex.stats["stale_depth"] == 1
            assert ex.stats["depth_skips"] == len(diffs) // 5

    run(body())
