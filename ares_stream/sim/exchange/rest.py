"""The local exchange's REST market-data API (aiohttp), shaped like Binance's ``/api/v3``.

``ping``, ``time``, ``exchangeInfo``, ``aggTrades``, ``trades``, ``historicalTrades``, ``klines``
and ``depth`` with Binance's parameters, defaults, error codes and field names; with an
:class:`~ares_stream.sim.exchange.account.Account`, the signed trading endpoints (``order``,
``order/test``, ``openOrders``, ``account``, ``myTrades``) too. Only what the
broadcast clock has already sent is served: the future does not exist yet. Every response carries
``X-MBX-USED-WEIGHT-1M`` (request weights summed per wall-clock minute, Binance's weights); the
``rest_429`` / ``rest_418`` faults answer market-data requests with ``Retry-After: 1``.

``/api/v3/depth?symbol=&limit=`` (limit 1-5000, default 100; weight 5, 25, 50 or 250 by limit as
Binance's table) is the book the broadcast depth diffs rebuild, ``lastUpdateId`` the ``u`` of the
last one (see :mod:`~ares_stream.sim.exchange.depth`): a client that buffers diffs, fetches it,
drops the diffs with ``u <= lastUpdateId`` and applies the rest holds the exchange's book. A
symbol without depth frames has an empty book (id 0); one whose book the tape cannot tell (diffs
and no snapshot) answers 503, code -1000. The ``stale_depth`` fault serves the book
:data:`STALE_ITEMS` depth frames old.

python-binance reaches it by its ``API_URL`` (the class attribute it formats with the tld), e.g.
``type("LocalClient", (AsyncClient,), {"API_URL": rest_url + "/api"})`` then ``await
LocalClient.create()``; or ``client = AsyncClient(); client.API_URL = rest_url + "/api"``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from ares_stream.sim.exchange.faults import Faults, take
from ares_stream.sim.exchange.tape import INTERVALS, Series, Tape

if TYPE_CHECKING:  # account.py imports this module
    from ares_stream.sim.exchange.account import Account

__all__ = ["NOT_TRADING", "STALE_ITEMS", "WEIGHTS", "RestServer", "depth_weight",
           "exchange_info"]

WEIGHTS = {  # request weight of each endpoint (Binance spot, 2024; USD-M futures under /fapi/v1)
    "/api/v3/ping": 1, "/api/v3/time": 1, "/api/v3/exchangeInfo": 20, "/api/v3/aggTrades": 4,
    "/api/v3/klines": 2, "/api/v3/trades": 25, "/api/v3/historicalTrades": 25,
    "/api/v3/depth": 5,  # at the default limit: see depth_weight
    "/fapi/v1/ping": 1, "/fapi/v1/time": 1, "/fapi/v1/exchangeInfo": 1, "/fapi/v1/aggTrades": 20,
    "/fapi/v1/klines": 5, "/fapi/v1/trades": 5, "/fapi/v1/historicalTrades": 20,
    "/api/v3/order": 1, "/api/v3/order/test": 1, "/api/v3/openOrders": 6, "/api/v3/account": 20,
    "/api/v3/myTrades": 20,
}  # fmt: skip
_SIGNED = (  # the trading endpoints, answered by the account
    ("POST", "/api/v3/order"), ("POST", "/api/v3/order/test"), ("GET", "/api/v3/order"),
    ("DELETE", "/api/v3/order"), ("GET", "/api/v3/openOrders"), ("GET", "/api/v3/account"),
    ("GET", "/api/v3/myTrades"),
)
_MARKET_DATA = frozenset(
    {"/api/v3/aggTrades", "/api/v3/klines", "/api/v3/trades", "/api/v3/historicalTrades",
     "/api/v3/depth",
     "/fapi/v1/aggTrades", "/fapi/v1/klines", "/fapi/v1/trades", "/fapi/v1/historicalTrades"}
)
_MAX_LIMIT = 1000
_DEPTH_LIMITS = (100, 5000)  # default, maximum
_DEPTH_WEIGHTS = ((100, 5), (500, 25), (1000, 50), (5000, 250))  # (up to limit, weight)
STALE_ITEMS = 10  # a stale depth snapshot is this many depth frames old (1 s of 100 ms diffs)
_QUOTES = ("USDT", "FDUSD", "USDC", "TUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL")
_SYMBOL = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
_NONE = Series()  # the rows of a symbol the tape has none of
NOT_TRADING = (("LUNAUSDT", "BREAK"), ("BCCBTC", "BREAK"), ("HALTUSDT", "HALT"),
               ("AUCTIONUSDT", "AUCTION_MATCH"))  # listed by exchangeInfo, not traded
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A Binance error reply: HTTP status, ``code`` and ``msg``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(data), status=status, content_type="application/json"
    )


def _int(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text is None or text == "":
        return None
    if not text.isdigit():
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                       "'^[0-9]{1,20}$'.")  # fmt: skip
    return int(text)


def _limit(request: web.Request) -> int:
    limit = _int(request, "limit")
    return 500 if limit is None else min(max(limit, 1), _MAX_LIMIT)


def _depth_limit(request: web.Request) -> int:
    limit = _int(request, "limit")
    return _DEPTH_LIMITS[0] if limit is None else min(max(limit, 1), _DEPTH_LIMITS[1])


def depth_weight(limit: int) -> int:
    """The request weight of ``/api/v3/depth`` at ``limit`` (Binance's table).

    >>> [depth_weight(n) for n in (1, 100, 101, 500, 1000, 5000)]
    [5, 5, 25, 25, 50, 250]
    """
    return next((w for top, w in _DEPTH_WEIGHTS if limit <= top), _DEPTH_WEIGHTS[-1][1])


def _required(request: web.Request, name: str) -> str:
    value = request.query.get(name, "")
    if not value:
        raise ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or "
                       "malformed.")  # fmt: skip
    return value


def _split_symbol(symbol: str) -> tuple[str, str]:
    """``BTCUSDT`` → ``("BTC", "USDT")`` by the longest known quote suffix."""
    for quote in sorted(_QUOTES, key=len, reverse=True):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-3], symbol[-3:]


def _step(values: list[str]) -> str:
    """The smallest decimal step the ``values`` use (``"0.01000"`` → ``"0.01000000"``)."""
    places = 0
    for value in values:
        places = max(places, len(value.partition(".")[2].rstrip("0")))
    return f"{10.0**-places:.8f}"


def exchange_info(tape: Tape, symbols: list[str] | None = None,
                  others: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """A plausible ``/api/v3/exchangeInfo`` for the tape's symbols (all TRADING) and ``others``
    (``(symbol, status)`` pairs, not on the tape); tick and lot sizes are guessed from the
    decimals the tape's trades use."""
    entries = [_symbol_info(tape, s) for s in (symbols or tape.symbols)]
    entries += [{**_symbol_info(tape, s), "status": status} for s, status in others]
    return {
        "timezone": "UTC",
        "serverTime": int(time.time() * 1000),
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 6000,
            },
            {
                "rateLimitType": "RAW_REQUESTS",
                "interval": "MINUTE",
                "intervalNum": 5,
                "limit": 61000,
            },
        ],
        "exchangeFilters": [],
        "symbols": entries,
    }


def _symbol_info(tape: Tape, symbol: str) -> dict[str, Any]:
    base, quote = _split_symbol(symbol)
    rows = tape.agg_trades.get(symbol) or tape.trades.get(symbol)
    sample = rows.rows[:1000] if rows else []
    prices = [r.get("p") or r.get("price") or "0.01" for r in sample] or ["0.01"]
    qtys = [r.get("q") or r.get("qty") or "0.00001" for r in sample] or ["0.00001"]
    tick, lot = _step(prices), _step(qtys)
    return {
        "symbol": symbol, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8,
        "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True, "ocoAllowed": True, "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False, "permissions": [], "permissionSets": [["SPOT"]],
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000",
             "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": lot, "maxQty": "9000.00000000", "stepSize": lot},
            {"filterType": "MIN_NOTIONAL", "minNotional": "5.00000000", "applyToMarket": True,
             "avgPriceMins": 5},
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
        ],
    }  # fmt: skip


class RestServer:
    """Binance's REST market data over ``tape``, up to ``position()`` frames of it."""

    def __init__(
        self,
        tape: Tape,
        position: Callable[[], int],
        faults: Faults,
        stats: dict[str, int],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        account: Account | None = None,
    ) -> None:
        self.tape, self.position, self.faults, self.stats = tape, position, faults, stats
        self.host, self.port, self.account = host, port, account
        self.url = ""
        self.asked: Counter[str] = Counter()  # requests naming each symbol
        self._runner: web.AppRunner | None = None
        self._minute, self._used = 0, 0
        for key in ("rest_requests", "rest_429", "rest_418", "stale_depth"):
            stats.setdefault(key, 0)

    async def start(self) -> None:
        """Listen on ``port`` of ``host`` (0: a free one); sets :attr:`url`."""
        app = web.Application(middlewares=[self._middleware])
        for prefix in ("/api/v3", "/fapi/v1"):  # spot, and USD-M futures (same market data shapes)
            app.router.add_get(f"{prefix}/ping", self._ping)
            app.router.add_get(f"{prefix}/time", self._time)
            app.router.add_get(f"{prefix}/exchangeInfo", self._exchange_info)
            app.router.add_get(f"{prefix}/aggTrades", self._agg_trades)
            app.router.add_get(f"{prefix}/trades", self._trades)
            app.router.add_get(f"{prefix}/historicalTrades", self._historical_trades)
            app.router.add_get(f"{prefix}/klines", self._klines)
        app.router.add_get("/api/v3/depth", self._depth)
        for method, path in _SIGNED:
            app.router.add_route(method, path, self._signed)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{port}"

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _weigh(self, request: web.Request) -> int:
        """Add a request's weight to this minute's total; the total."""
        minute = int(time.time() // 60)
        if minute != self._minute:
            self._minute, self._used = minute, 0
        if request.path == "/api/v3/depth":
            text = request.query.get("limit", "")
            self._used += depth_weight(int(text) if text.isdigit() else _DEPTH_LIMITS[0])
        else:
            self._used += WEIGHTS.get(request.path, 1)
        return self._used

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        self.stats["rest_requests"] += 1
        used = self._weigh(request)
        if self.faults.rest_delay_s and request.path in _MARKET_DATA:
            await asyncio.sleep(self.faults.rest_delay_s)  # a far exchange, or a slow one
        try:
            response = await self._fault(request.path) or await handler(request)
        except ApiError as exc:
            response = _json({"code": exc.code, "msg": exc.msg}, exc.status)
        except web.HTTPNotFound:
            response = _json({"code": -1000, "msg": f"Unknown path {request.path}"}, 404)
        response.headers["X-MBX-USED-WEIGHT-1M"] = str(used)
        return response

    async def _fault(self, path: str) -> web.Response | None:
        """A 429 or 418 answer when a fault asks for one (market data only)."""
        if path not in _MARKET_DATA:
            return None
        for status, name, msg in (
            (418, "rest_418", "Way too many requests; IP banned until 1 second from now."),
            (
                429,
                "rest_429",
                "Too many requests; current limit is 6000 request weight per minute.",
            ),
        ):
            if take(self.faults, name):
                self.stats[name] += 1
                response = _json({"code": -1003, "msg": msg}, status)
                response.headers["Retry-After"] = "1"
                return response
        return None

    def _symbol(self, request: web.Request) -> str:
        symbol = _required(request, "symbol")
        if not _SYMBOL.match(symbol):
            raise ApiError(-1100, "Illegal characters found in parameter 'symbol'; legal range "
                           "is '^[A-Z0-9-_.]{1,20}$'.")  # fmt: skip
        if symbol not in self.tape.symbols:
            raise ApiError(-1121, "Invalid symbol.")
        self.asked[symbol] += 1
        return symbol

    async def _signed(self, request: web.Request) -> web.Response:
        """A trading endpoint: the account answers (no account: no key is valid)."""
        if self.account is None:
            raise ApiError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        answer = self.account.call(request.method, request.path, request.headers,
                                   request.rel_url.raw_query_string, await request.text())
        if answer is None:  # a fault ate the answer: cut the connection instead
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        return _json(answer[1], answer[0])

    async def _ping(self, request: web.Request) -> web.Response:
        return _json({})

    async def _time(self, request: web.Request) -> web.Response:
        return _json({"serverTime": int(time.time() * 1000)})

    async def _exchange_info(self, request: web.Request) -> web.Response:
        if "symbol" in request.query:
            return _json(exchange_info(self.tape, [self._symbol(request)]))
        return _json(exchange_info(self.tape, None, NOT_TRADING))

    async def _agg_trades(self, request: web.Request) -> web.Response:
        series = self.tape.agg_trades.get(self._symbol(request), _NONE)
        bounds = {"from_id": _int(request, "fromId"), "start": _int(request, "startTime")}
        end, limit = _int(request, "endTime"), _limit(request)
        return _json(series.query(self.position(), **bounds, end=end, limit=limit))

    async def _trades(self, request: web.Request) -> web.Response:
        series = self.tape.trades.get(self._symbol(request), _NONE)
        return _json(series.query(self.position(), limit=_limit(request)))

    async def _historical_trades(self, request: web.Request) -> web.Response:
        series = self.tape.trades.get(self._symbol(request), _NONE)
        from_id, limit = _int(request, "fromId"), _limit(request)
        return _json(series.query(self.position(), from_id=from_id, limit=limit))

    async def _klines(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request)
        interval = _required(request, "interval")
        if interval not in INTERVALS:
            raise ApiError(-1120, "Invalid interval.")
        rows = self.tape.klines(
            symbol, interval, self.position(), start=_int(request, "startTime"),
            end=_int(request, "endTime"), limit=_limit(request),
        )  # fmt: skip
        return _json(rows)

    async def _depth(self, request: web.Request) -> web.Response:
        symbol, limit = self._symbol(request), _depth_limit(request)
        lag = STALE_ITEMS if take(self.faults, "stale_depth") else 0
        if lag:
            self.stats["stale_depth"] += 1
        book = self.tape.order_book(symbol, self.position(), limit=limit, lag=lag)
        if book is None:
            raise ApiError(-1000, "No order book for this symbol on the tape at this point.", 503)
        return _json(book)
