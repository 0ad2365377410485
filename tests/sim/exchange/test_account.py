"""The local exchange's signed trading API, through the real python-binance AsyncClient and raw
HTTP: authentication, filters, balances, matching, order queries and the order faults."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Coroutine
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from binance import AsyncClient
from binance.exceptions import BinanceAPIException

from ares_stream.feed import RawFrame
from ares_stream.sim.exchange import Account, LocalExchange, Tape
from tests.conftest import DEADLINE

KEY, SECRET = "k3y" * 21, "s3cr3t" * 10
T0 = 1_723_161_600_000
SYM = "BTCUSDT"


def agg(a: int, price: str = "100.51") -> RawFrame:
    data = (b'{"e":"aggTrade","E":%d,"s":"BTCUSDT","a":%d,"p":"%s","q":"0.25000","f":%d,"l":%d,'
            b'"T":%d,"m":false,"M":true}') % (T0 + a, a, price.encode(), a, a, T0 + a)
    return RawFrame(0, b'{"stream":"btcusdt@aggTrade","data":%s}' % data)


def book(u: int, bid: str, ask: str) -> RawFrame:
    return RawFrame(0, b'{"u":%d,"s":"BTCUSDT","b":"%s","B":"1","a":"%s","A":"1"}'
                    % (u, bid.encode(), ask.encode()))


def tape(with_book: bool = False) -> Tape:
    """Trades at 100.51 (tick and lot 0.01), then optionally a book top 100.40 / 100.60."""
    frames = [agg(i) for i in range(1, 6)]
    return Tape(frames + ([book(1, "100.40", "100.60")] if with_book else []))


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 2 * DEADLINE))


@contextlib.asynccontextmanager
async def trading(t: Tape | None = None, account: Account | None = None, *,
                  broadcast: bool = True) -> AsyncIterator[tuple[LocalExchange, AsyncClient]]:
    """A local exchange with an account (10,000 USDT) and a python-binance client for it."""
    account = account or Account({"USDT": "10000"}, api_key=KEY, api_secret=SECRET)
    async with LocalExchange(t or tape(), start_on_subscribe=not broadcast,
                             account=account) as ex:
        if broadcast:
            await asyncio.wait_for(ex.done.wait(), DEADLINE)
        client = AsyncClient(account.api_key, account.api_secret)
        client.API_URL = ex.rest_url + "/api"
        try:
            yield ex, client
        finally:
            await client.close_connection()


async def raw(ex: LocalExchange, method: str, path: str, params: dict[str, Any], *,
              key: str | None = KEY, secret: str = SECRET, sign: bool = True,
              body: bool = False) -> tuple[int, Any]:
    """One hand-made signed request (query string, or a form body)."""
    text = urlencode({"timestamp": int(time.time() * 1000), **params})
    if sign:
        text += "&signature=" + hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    headers = {"X-MBX-APIKEY": key} if key is not None else {}
    url = ex.rest_url + path
    async with aiohttp.ClientSession() as session:
        if body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            response = await session.request(method, url, data=text, headers=headers)
        else:
            response = await session.request(method, f"{url}?{text}", headers=headers)
        async with response:
            return response.status, await response.json()


async def code_of(call: Coroutine[Any, Any, Any]) -> tuple[int, int, str]:
    """``(HTTP status, code, message)`` of a call that must fail with an API error."""
    with pytest.raises(BinanceAPIException) as info:
        await call
    return info.value.status_code, info.value.code, info.value.message


def test_limit_ioc_fills_at_the_last_trade_with_a_quote_commission() -> None:
    """A marketable LIMIT IOC fills all at the last price (not its limit); the FULL answer, the
    order query, myTrades and the balances agree, and the commission is in USDT."""

    async def body() -> None:
        async with trading() as (ex, client):
            answer = await client.create_order(
                symbol=SYM, side="BUY", type="LIMIT", timeInForce="IOC", quantity="9.94",
                price="100.71", newClientOrderId="ares-test-1")  # fmt: skip
            assert answer["status"] == "FILLED" and answer["executedQty"] == "9.94000000"
            assert answer["fills"] == [{"price": "100.51000000", "qty": "9.94000000",
                                        "commission": "0.99906940", "commissionAsset": "USDT",
                                        "tradeId": 1}]
            assert answer["cummulativeQuoteQty"] == "999.06940000"
            query = await client.get_order(symbol=SYM, origClientOrderId="ares-test-1")
            assert query["orderId"] == answer["orderId"] and query["status"] == "FILLED"
            trades = await client.get_my_trades(symbol=SYM, orderId=answer["orderId"])
            assert [t["id"] for t in trades] == [1] and trades[0]["isBuyer"] is True
            balances = {b["asset"]: b for b in (await client.get_account())["balances"]}
            assert balances["BTC"]["free"] == "9.94000000"
            assert Decimal(balances["USDT"]["free"]) == Decimal("10000") - Decimal(
                "999.0694") - Decimal("0.9990694")
            assert ex.stats["orders"] == 1 and ex.stats["order_rejects"] == 0

    run(body())


def test_market_orders_take_the_book_top_and_a_base_commission() -> None:
    """With a book top broadcast, a BUY pays the ask and a SELL gets the bid; commission="base"
    charges the BUY in BTC, the SELL in USDT."""
    account = Account({"USDT": "10000"}, api_key=KEY, api_secret=SECRET, commission="base")

    async def body() -> None:
        async with trading(tape(with_book=True), account) as (_, client):
            buy = await client.create_order(symbol=SYM, side="BUY", type="MARKET", quantity="2")
            assert buy["fills"][0]["price"] == "100.60000000"
            assert (buy["fills"][0]["commission"], buy["fills"][0]["commissionAsset"]) == (
                "0.00200000", "BTC")
            assert account.balance("BTC") == (Decimal("1.998"), 0)
            sell = await client.create_order(symbol=SYM, side="SELL", type="MARKET",
                                             quantity="1.99")
            assert sell["fills"][0]["price"] == "100.40000000"
            assert sell["fills"][0]["commissionAsset"] == "USDT"
            assert account.balance("BTC")[0] == Decimal("0.008")

    run(body())


def test_limit_orders_expire_or_rest_and_cancel() -> None:
    """A non-marketable IOC expires and unlocks; a GTC rests (locked), is listed open, cancels
    once (-2011 after), and unknown orders are -2013."""
    async def body() -> None:
        async with trading() as (_, client):
            ioc = await client.create_order(symbol=SYM, side="BUY", type="LIMIT",
                                            timeInForce="IOC", quantity="1", price="100.00")
            assert ioc["status"] == "EXPIRED" and ioc["fills"] == []
            gtc = await client.create_order(symbol=SYM, side="BUY", type="LIMIT",
                                            timeInForce="GTC", quantity="10", price="50.00")
            assert gtc["status"] == "NEW"
            usdt = {b["asset"]: b for b in (await client.get_account())["balances"]}["USDT"]
            assert (usdt["free"], usdt["locked"]) == ("9499.50000000", "500.50000000")
            assert [o["orderId"] for o in await client.get_open_orders()] == [gtc["orderId"]]
            cancelled = await client.cancel_order(symbol=SYM, orderId=gtc["orderId"])
            assert cancelled["status"] == "CANCELED"
            assert cancelled["origClientOrderId"] == gtc["clientOrderId"]
            assert await client.get_open_orders(symbol=SYM) == []
            assert (await client.get_account())["balances"][-1]["free"] == "10000.00000000"
            again = client.cancel_order(symbol=SYM, orderId=gtc["orderId"])
            assert await code_of(again) == (400, -2011, "Unknown order sent.")
            missing = client.get_order(symbol=SYM, origClientOrderId="nope")
            assert await code_of(missing) == (400, -2013, "Order does not exist.")

    run(body())


def test_filters_balance_duplicates_and_parameters_have_binance_codes() -> None:
    """Filter failures are -1013 naming the filter; no funds and duplicate client ids -2010;
    bad parameters -1117/-1116/-1102/-1106; each counts as an order reject."""
    async def body() -> None:
        async with trading() as (ex, client):
            def order(**p: Any) -> Coroutine[Any, Any, Any]:
                return client.create_order(**{"symbol": SYM, "side": "BUY", "type": "LIMIT",
                                              "timeInForce": "IOC", "price": "100.71", **p})
            cases = [
                (order(quantity="0.005"), -1013, "Filter failure: LOT_SIZE"),
                (order(quantity="1.005"), -1013, "Filter failure: LOT_SIZE"),
                (order(quantity="1", price="100.705"), -1013, "Filter failure: PRICE_FILTER"),
                (order(quantity="0.04"), -1013, "Filter failure: MIN_NOTIONAL"),
                (order(quantity="100"), -2010,
                 "Account has insufficient balance for requested action."),
                (order(quantity="1", side="SELL"), -2010,
                 "Account has insufficient balance for requested action."),
                (order(quantity="1", side="HOLD"), -1117, "Invalid side."),
                (order(quantity="1", type="STOP"), -1116, "Invalid orderType."),
                (client.create_order(symbol=SYM, side="BUY", type="MARKET", quantity="1",
                                     price="1"), -1106,
                 "Parameter 'price' sent when not required."),
                (client.create_order(symbol=SYM, side="BUY", type="MARKET"), -1102,
                 "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed."),
            ]  # fmt: skip
            for call, code, msg in cases:
                assert await code_of(call) == (400, code, msg)
            await order(quantity="1", newClientOrderId="ares-dup")
            dup = order(quantity="1", newClientOrderId="ares-dup")
            assert await code_of(dup) == (400, -2010, "Duplicate order sent.")
            assert ex.stats["orders"] == len(cases) + 2
            assert ex.stats["order_rejects"] == len(cases) + 1
            test = client.create_test_order(symbol=SYM, side="SELL", type="MARKET", quantity="1")
            assert await test == {}  # checked (the BTC bought above), not placed:
            assert ex.account is not None and ex.account.balance("BTC") == (1, 0)

    run(body())


def test_api_key_signature_and_timestamp_are_checked() -> None:
    """Missing or wrong key: -2015 (401); bad or missing signature: -1022 / -1102; a timestamp
    outside recvWindow or ahead of the server: -1021; recvWindow over 60 s: -1131."""
    async def body() -> None:
        async with trading() as (ex, _):
            path = "/api/v3/account"
            status, data = await raw(ex, "GET", path, {})
            assert status == 200 and data["canTrade"] and data["balances"][0]["asset"] == "USDT"
            assert (await raw(ex, "GET", path, {}, key=None))[1]["code"] == -2015
            status, err = await raw(ex, "GET", path, {}, key="wrong")
            assert (status, err["code"], err["msg"]) == (
                401, -2015, "Invalid API-key, IP, or permissions for action.")
            status, err = await raw(ex, "GET", path, {}, secret="wrong")
            assert (status, err) == (400, {"code": -1022,
                                           "msg": "Signature for this request is not valid."})
            assert (await raw(ex, "GET", path, {}, sign=False))[1]["code"] == -1102
            # 30 s off: the answers hold however long a busy machine takes to send the request
            old = {"timestamp": int(time.time() * 1000) - 30_000}
            assert (await raw(ex, "GET", path, old))[1]["code"] == -1021
            assert (await raw(ex, "GET", path, {**old, "recvWindow": 59_000}))[0] == 200
            ahead = {"timestamp": int(time.time() * 1000) + 30_000}
            assert (await raw(ex, "GET", path, ahead))[1]["code"] == -1021
            assert (await raw(ex, "GET", path, {"recvWindow": 70_000}))[1]["code"] == -1131
            form = {"symbol": SYM, "side": "BUY", "type": "MARKET", "quantity": "1"}
            status, placed = await raw(ex, "POST", "/api/v3/order", form, body=True)
            assert status == 200 and placed["status"] == "FILLED"

    run(body())


def test_without_an_account_every_key_is_refused() -> None:
    """A local exchange without an account answers the trading endpoints -2015."""
    async def body() -> None:
        async with LocalExchange(tape()) as ex:
            status, err = await raw(ex, "GET", "/api/v3/account", {})
            assert (status, err["code"]) == (401, -2015) and ex.account is None

    run(body())


def test_market_order_before_any_trade_expires() -> None:
    """Before the clock has broadcast a trade there is nothing to match: EXPIRED, no fill."""
    async def body() -> None:
        async with trading(broadcast=False) as (ex, client):
            answer = await client.create_order(symbol=SYM, side="BUY", type="MARKET",
                                               quantity="1")
            assert ex.position == 0 and answer["status"] == "EXPIRED" and answer["fills"] == []

    run(body())


def test_faults_cut_the_connection_before_or_after_the_order() -> None:
    """``lose_responses``: the order executes, the answer is lost; ``drop_requests``: the
    order never executes. The client sees the same disconnect either way."""
    account = Account({"USDT": "10000"}, api_key=KEY, api_secret=SECRET)

    async def body() -> None:
        async with trading(account=account) as (ex, client):
            account.lose_responses, account.drop_requests = 1, 0
            with pytest.raises(aiohttp.ClientError):
                await client.create_order(symbol=SYM, side="BUY", type="MARKET", quantity="1",
                                          newClientOrderId="lost")
            assert (await client.get_order(symbol=SYM, origClientOrderId="lost"))[
                "status"] == "FILLED"
            account.drop_requests = 1
            with pytest.raises(aiohttp.ClientError):
                await client.create_order(symbol=SYM, side="BUY", type="MARKET", quantity="1",
                                          newClientOrderId="dropped")
            gone = client.get_order(symbol=SYM, origClientOrderId="dropped")
            assert (await code_of(gone))[1] == -2013
            assert ex.stats["orders"] == 2 and account.balance("BTC")[0] == 1

    run(body())
