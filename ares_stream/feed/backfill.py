"""REST backfill: fetch what a websocket gap lost, as the frames the websocket would have sent.

The one module that touches Binance's REST API (through python-binance's ``AsyncClient``). A
:class:`BackfillRequest` names a hole — aggregate trade ids, trade ids or kline open times — and
:meth:`Backfiller.fetch` pages through ``aggTrades`` / ``historicalTrades`` / ``klines`` from the
first missing item to the last, turning each REST item into a *synthetic websocket frame*, so the
normal :class:`~ares_stream.feed.binance.Decoder` decodes backfilled and live data alike:

>>> frame = agg_trade_frame("BTCUSDT", {"a": 7, "p": "1.5", "q": "2", "f": 9, "l": 9,
...                                      "T": 1723161255342, "m": True, "M": True})
>>> frame[:45]
b'{"stream":"btcusdt@aggTrade","data":{"e":"agg'
>>> from ares_stream.feed.binance import Decoder
>>> trade = Decoder().decode(frame, ts_init=0)
>>> trade.trade_id, trade.price, trade.is_agg, trade.ts_event
(7, 1.5, True, 1723161255342000000)

A fetch is bounded by wall time (``max_seconds``) and request weight, never by an item count: it
pages on while REST has the data. With an ``on_page`` callback each page's frames go to the caller
as they arrive (the daemon feeds them to the engine and checkpoints as it goes), so memory stays one
page however long the range; a cancelled fetch has delivered whole pages only.

Limits: request weight is tracked from the ``X-MBX-USED-WEIGHT-1M`` header (the documented weight
when absent) and the backfiller waits for the next minute rather than exceed
``max_weight_per_minute``. HTTP 429 waits ``Retry-After`` seconds (else backs off exponentially)
and retries up to ``max_retries`` times; 418 (IP banned) stops at once and refuses further fetches
until the ban's ``Retry-After`` has passed. ``fetch`` never raises for network or HTTP errors: the
result says how far it got and why it stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp
import msgspec
from binance import AsyncClient
from binance.exceptions import BinanceAPIException, BinanceRequestException

from ares_stream.feed import RawFrame
from ares_stream.feed.gate import BackfillRequest

__all__ = [
    "BackfillRequest", "BackfillResult", "Backfiller", "OnPage",
    "agg_trade_frame", "kline_frame", "snapshot_frame", "trade_frame",
]  # fmt: skip

PAGE = 1000  # Binance's largest page for all three endpoints
KINDS = ("agg_id", "trade_id", "kline_time")
DEFAULT_URLS = {"spot": "https://api.binance.com", "usdm": "https://fapi.binance.com"}
_WEIGHTS = {  # documented request weight, (market, kind) → weight of a 1,000-item page
    ("spot", "agg_id"): 4, ("spot", "trade_id"): 25, ("spot", "kline_time"): 2,
    ("usdm", "agg_id"): 20, ("usdm", "trade_id"): 20, ("usdm", "kline_time"): 5,
}  # fmt: skip
_METHODS = {  # (market, kind) → AsyncClient method name
    ("spot", "agg_id"): "get_aggregate_trades", ("spot", "trade_id"): "get_historical_trades",
    ("spot", "kline_time"): "get_klines", ("usdm", "agg_id"): "futures_aggregate_trades",
    ("usdm", "trade_id"): "futures_historical_trades", ("usdm", "kline_time"): "futures_klines",
    ("spot", "depth"): "get_order_book", ("usdm", "depth"): "futures_order_book",
}  # fmt: skip
SNAPSHOT_LIMIT = 1000  # levels a side of a depth snapshot (Binance's documented choice)
_DEPTH_WEIGHTS = {"spot": 50, "usdm": 20}  # weight of a 1,000-level snapshot
_NS_PER_MS = 1_000_000
_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
_BACKOFF_S = (0.5, 30.0)  # first retry delay, cap; doubled on each retry
_BAN_S = 60.0  # how long a 418 without Retry-After blocks requests
_CLOCK_SKEW_NS = 2_000_000_000  # a kline closing this close to our clock may still be open
_MINUTE_MARGIN_S = 0.05  # wait this far past the minute so the server's window has rolled

_encode = msgspec.json.Encoder().encode

OnPage = Callable[[list[RawFrame]], None]
"""Takes one page's synthetic frames, in order, as soon as they arrive."""


@dataclass
class BackfillResult:
    """Synthetic frames, in id/time order, covering a prefix of the range (all when complete);
    with an ``on_page`` callback they went to it and ``frames`` stays empty."""

    request: BackfillRequest
    frames: list[RawFrame] = field(default_factory=list)
    complete: bool = False
    reason: str = ""  # why incomplete: "not_available", "time_limit", "rate_limited", "http 400"…
    requests: int = 0
    items: int = 0  # frames fetched: in ``frames``, or given to ``on_page``


class _Stop(Exception):
    """Ends a fetch early; ``args[0]`` is the result's reason."""


# ---- synthetic websocket frames --------------------------------------------------------------


def agg_trade_frame(symbol: str, item: Mapping[str, Any]) -> bytes:
    """The ``@aggTrade`` frame for one ``aggTrades`` REST item (``E`` = trade time)."""
    data = {"e": "aggTrade", "E": item["T"], "s": symbol, "a": item["a"], "p": item["p"],
            "q": item["q"], "f": item["f"], "l": item["l"], "T": item["T"], "m": item["m"]}
    if "M" in item:  # spot only
        data["M"] = item["M"]
    return _encode({"stream": f"{symbol.lower()}@aggTrade", "data": data})


def trade_frame(symbol: str, item: Mapping[str, Any]) -> bytes:
    """The ``@trade`` frame for one ``historicalTrades`` REST item (``E`` = trade time)."""
    data = {"e": "trade", "E": item["time"], "s": symbol, "t": item["id"], "p": item["price"],
            "q": item["qty"], "T": item["time"], "m": item["isBuyerMaker"]}
    if "isBestMatch" in item:  # spot only
        data["M"] = item["isBestMatch"]
    return _encode({"stream": f"{symbol.lower()}@trade", "data": data})


def kline_frame(symbol: str, interval: str, row: list[Any]) -> bytes:
    """The closing ``@kline_<interval>`` frame for one ``klines`` REST row.

    ``E`` is the close time + 1 ms; REST gives no first/last trade ids, so ``f`` = ``L`` = -1.
    """
    k = {"t": row[0], "T": row[6], "s": symbol, "i": interval, "f": -1, "L": -1, "o": row[1],
         "c": row[4], "h": row[2], "l": row[3], "v": row[5], "n": row[8], "x": True,
         "q": row[7], "V": row[9], "Q": row[10], "B": row[11]}  # fmt: skip
    data = {"e": "kline", "E": row[6] + 1, "s": symbol, "k": k}
    return _encode({"stream": f"{symbol.lower()}@kline_{interval}", "data": data})


def snapshot_frame(symbol: str, snapshot: Mapping[str, Any]) -> bytes:
    """A REST depth snapshot as the frame our recordings keep: wrapped in stream
    ``<symbol>@depthSnapshot``, so the decoder knows its symbol and a replay rebuilds the book."""
    data = {"lastUpdateId": snapshot["lastUpdateId"], "bids": snapshot["bids"],
            "asks": snapshot["asks"]}
    if "T" in snapshot:  # futures: the transaction time
        data["T"] = snapshot["T"]
    return _encode({"stream": f"{symbol.lower()}@depthSnapshot", "data": data})


# ---- the backfiller --------------------------------------------------------------------------


class Backfiller:
    """Fill holes from Binance's REST API (``market`` "spot" or "usdm"); use ``async with``.

    ``rest_url`` is the API root (the default for the market when None), e.g. a local
    exchange's ``http://127.0.0.1:PORT``. Requests are serialised, so concurrent fetches share
    one weight budget; ``max_seconds`` (None: no bound) ends a fetch that has paged on that
    long (reason ``time_limit``). ``stats``: ``requests``, ``items``, ``retries``, ``rate_limited``
    (429 answers), ``banned`` (418 answers), ``weight_used`` (documented weight sent),
    ``weight_waits`` (waits for the next minute's budget).
    """

    def __init__(
        self,
        rest_url: str | None = None,
        *,
        market: str = "spot",
        max_weight_per_minute: int = 3000,
        max_retries: int = 5,
        max_seconds: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if market not in DEFAULT_URLS:
            raise ValueError(f"market must be one of {sorted(DEFAULT_URLS)}, not {market!r}")
        self.rest_url = (rest_url or DEFAULT_URLS[market]).rstrip("/")
        self.market = market
        self.max_weight_per_minute = max_weight_per_minute
        self.max_retries = max_retries
        self.max_seconds = max_seconds
        self.sleep = sleep
        self.stats: dict[str, int] = dict.fromkeys(
            ("requests", "items", "retries", "rate_limited", "banned", "weight_used",
             "weight_waits"), 0)  # fmt: skip
        self._client: AsyncClient | None = None
        self._lock = asyncio.Lock()
        self._used = 0  # weight used in minute self._minute, as the server last said
        self._minute = 0
        self._banned_until = 0.0  # time.monotonic() before which no request is sent

    async def __aenter__(self) -> Backfiller:
        client = AsyncClient(api_key=None, api_secret=None)
        client.API_URL = f"{self.rest_url}/api"
        client.FUTURES_URL = f"{self.rest_url}/fapi"
        self._client = client
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.close_connection()
            self._client = None

    async def fetch(self, request: BackfillRequest, on_page: OnPage | None = None
                    ) -> BackfillResult:
        """Page through the request's range while REST has it, within ``max_seconds``; an
        incomplete result says why it stopped. ``on_page`` takes each page's frames as they come
        (its exceptions are the caller's: they propagate)."""
        result = BackfillResult(request)
        page = self._kline_page if request.kind == "kline_time" else self._id_page
        cursor, started = request.first_missing, time.monotonic()
        if request.kind not in KINDS:
            result.reason = f"unknown kind {request.kind!r}"
        while not result.reason and cursor <= request.last_missing:
            frames: list[RawFrame] = []
            try:
                cursor = await page(request, cursor, result, frames)
            except _Stop as stop:
                result.reason = str(stop)
            except (KeyError, IndexError, TypeError) as exc:  # a malformed REST item
                result.reason = f"bad_response: {type(exc).__name__}: {exc}"
            self._deliver(result, frames, on_page)
            more = not result.reason and cursor <= request.last_missing
            if more and self._over_time(started):
                result.reason = "time_limit"
        result.complete = not result.reason
        return result

    async def exchange_info(self) -> dict[str, Any]:
        """``exchangeInfo`` of the market (every symbol, its status and assets); network and
        HTTP errors propagate (a start-up that needs it cannot go on without it)."""
        if self._client is None:
            raise RuntimeError("Backfiller used outside `async with`")
        get = (self._client.get_exchange_info if self.market == "spot"
               else self._client.futures_exchange_info)
        info: dict[str, Any] = await get()
        self.stats["requests"] += 1
        return info

    async def snapshot(self, symbol: str, limit: int = SNAPSHOT_LIMIT) -> RawFrame | str:
        """The symbol's REST depth snapshot as a frame (:func:`snapshot_frame`) stamped with
        its receive time, or why there is none (an error reason after the retries)."""
        request = BackfillRequest(symbol, "depth", 0, 0)
        result = BackfillResult(request)
        try:
            body, ts_init = await self._call(request, result, limit=limit)
            return RawFrame(ts_init, snapshot_frame(symbol, body))
        except _Stop as stop:
            return str(stop)
        except (KeyError, TypeError) as exc:  # a malformed answer
            return f"bad_response: {type(exc).__name__}: {exc}"

    def _deliver(self, result: BackfillResult, frames: list[RawFrame],
                 on_page: OnPage | None) -> None:
        result.items += len(frames)
        self.stats["items"] += len(frames)
        if on_page is None:
            result.frames.extend(frames)
        elif frames:
            on_page(frames)

    def _over_time(self, started: float) -> bool:
        return self.max_seconds is not None and time.monotonic() - started >= self.max_seconds

    async def _id_page(self, request: BackfillRequest, cursor: int, result: BackfillResult,
                       frames: list[RawFrame]) -> int:
        """One page of trades or aggregate trades from id ``cursor`` into ``frames``; returns
        the next cursor."""
        agg = request.kind == "agg_id"
        limit = min(PAGE, request.last_missing - cursor + 1)
        items, ts_init = await self._call(request, result, fromId=cursor, limit=limit)
        key, make = ("a", agg_trade_frame) if agg else ("id", trade_frame)
        first = cursor == request.first_missing
        if first and items and cursor < items[0][key] <= request.last_missing:
            cursor = items[0][key]  # REST's history begins later: from there (the gate judges)
        start = cursor
        for item in items:
            if item[key] != cursor or cursor > request.last_missing:
                break  # a hole at the source, or past the range
            frames.append(RawFrame(ts_init, make(request.symbol, item)))
            cursor += 1
        return self._after_page(cursor, request, cursor - start < limit)

    async def _kline_page(self, request: BackfillRequest, cursor: int, result: BackfillResult,
                          frames: list[RawFrame]) -> int:
        """One page of closed klines opening at or after ``cursor`` (ns) into ``frames``; returns
        the next cursor."""
        limit = PAGE
        start_cursor = cursor
        start_ms = -(-cursor // _NS_PER_MS)
        rows, ts_init = await self._call(
            request, result, interval=request.interval, startTime=start_ms, limit=limit
        )
        for row in rows:
            open_ns, close_ns = row[0] * _NS_PER_MS, row[6] * _NS_PER_MS
            if open_ns < cursor:
                continue
            if open_ns > request.last_missing:
                return request.last_missing + 1  # the exchange has later klines: range covered
            if close_ns >= ts_init - _CLOCK_SKEW_NS:
                raise _Stop("not_available")  # still open: its final values do not exist yet
            frame = kline_frame(request.symbol, request.interval, row)
            frames.append(RawFrame(ts_init, frame))
            cursor = close_ns + _NS_PER_MS
        return self._after_page(cursor, request, len(rows) < limit or cursor == start_cursor)

    def _after_page(self, cursor: int, request: BackfillRequest, short: bool) -> int:
        """``cursor``, unless a short page left part of the range: that part does not exist yet."""
        if cursor <= request.last_missing and short:
            raise _Stop("not_available")
        return cursor

    # ---- one request, with limits and retries ----------------------------------------------

    async def _call(
        self, request: BackfillRequest, result: BackfillResult, **params: Any
    ) -> tuple[Any, int]:
        """One REST page: (items, receive time ns), after waits and retries; or :class:`_Stop`."""
        if self._client is None:
            raise RuntimeError("use the Backfiller inside `async with`")
        method = getattr(self._client, _METHODS[self.market, request.kind])
        depth = request.kind == "depth"
        weight = _DEPTH_WEIGHTS[self.market] if depth else _WEIGHTS[self.market, request.kind]
        async with self._lock:
            for attempt in range(self.max_retries + 1):
                if time.monotonic() < self._banned_until:
                    raise _Stop("ip_banned")
                await self._wait_for_budget(weight)
                result.requests += 1
                self.stats["requests"] += 1
                self.stats["weight_used"] += weight
                try:
                    items = await method(symbol=request.symbol, **params)
                    ts_init = time.time_ns()
                    self._note_weight(self._client.response, weight)
                except BinanceAPIException as exc:
                    self._note_weight(exc.response, weight)
                    delay, reason = self._on_http_error(exc, attempt)
                except (aiohttp.ClientError, TimeoutError, BinanceRequestException) as exc:
                    delay, reason = _backoff(attempt), f"network: {type(exc).__name__}"
                else:
                    if not isinstance(items, dict if depth else list):
                        raise _Stop(f"bad_response: {type(items).__name__}")
                    return items, ts_init
                if attempt < self.max_retries:
                    self.stats["retries"] += 1
                    await self.sleep(delay)
        raise _Stop(reason)

    def _on_http_error(self, exc: BinanceAPIException, attempt: int) -> tuple[float, str]:
        """(delay, reason) for an answer worth retrying (429, 5xx); :class:`_Stop` otherwise."""
        status = int(exc.status_code)
        if status == 418:
            self.stats["banned"] += 1
            ban = _retry_after(exc.response)
            self._banned_until = time.monotonic() + (_BAN_S if ban is None else ban)
            raise _Stop("ip_banned")
        if status == 429:
            self.stats["rate_limited"] += 1
            wait = _retry_after(exc.response)
            return (_backoff(attempt) if wait is None else wait), "rate_limited"
        if status >= 500:
            return _backoff(attempt), f"http {status}"
        raise _Stop(f"http {status}: {exc.message}")

    async def _wait_for_budget(self, weight: int) -> None:
        """Sleep to the next minute if ``weight`` more would pass ``max_weight_per_minute``."""
        now = time.time()
        if int(now // 60) != self._minute:
            self._used = 0
        if self._used + weight <= self.max_weight_per_minute:
            return
        self.stats["weight_waits"] += 1
        await self.sleep(60 - now % 60 + _MINUTE_MARGIN_S)
        self._used, self._minute = 0, int(now // 60) + 1  # the slept-to minute starts afresh

    def _note_weight(self, response: Any, weight: int) -> None:
        """Remember the minute's used weight: the server's header, else our own count."""
        minute = int(time.time() // 60)
        header = _header(response, _WEIGHT_HEADER)
        if header.isdigit():
            self._used = int(header)
        else:
            self._used = (self._used if minute == self._minute else 0) + weight
        self._minute = minute


def _header(response: Any, name: str) -> str:
    headers = getattr(response, "headers", None)
    return str(headers.get(name, "")) if headers is not None else ""


def _retry_after(response: Any) -> float | None:
    """The ``Retry-After`` header in seconds, if the answer has a usable one."""
    try:
        seconds = float(_header(response, "Retry-After"))
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86_400 * 7 else None


def _backoff(attempt: int) -> float:
    first, cap = _BACKOFF_S
    return min(cap, first * 2**attempt)
