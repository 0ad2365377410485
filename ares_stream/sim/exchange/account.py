"""The local exchange's account: Binance's signed spot trading API over balances it keeps.

Signed requests carry ``X-MBX-APIKEY`` (else -2015, HTTP 401), a ``timestamp`` within
``recvWindow`` (default 5,000 ms, at most 60,000) of the server's clock (else -1021) and
``signature`` = HMAC-SHA256(secret, query string + body as sent, without the signature) in hex
(else -1022) — what python-binance's ``AsyncClient`` sends unmodified: it sorts the parameters,
signs ``k=v&…`` and sends them in the query (GET) or a form body (POST, DELETE).

Orders (:mod:`ares_stream.sim.exchange.orders`) are checked against the filters ``exchangeInfo``
publishes, then matched against what the broadcast clock has sent for the symbol: the last
``bookTicker`` (a BUY takes the ask, a SELL the bid), else the last trade.

**Commission** is the taker fee ``fee_bps`` (default 10 bps). With ``commission="quote"`` (the
default) it is charged in the quote asset on both sides, so a BUY needs ``qty × price × (1 +
fee)`` of quote; ``commission="base"`` charges a BUY in the base asset, as Binance does when the
fee is not paid in BNB (the buyer receives ``qty × (1 − fee)``). Either way a fill says which
asset paid in ``commissionAsset``.

Faults, each a "next N" budget: ``drop_requests`` cuts the connection before an order executes,
``lose_responses`` executes it and cuts the connection instead of answering (the client cannot
tell which happened: it must query the order).

>>> account = Account({"USDT": "1000"}, api_key="k" * 64, api_secret="s" * 64)
>>> account.balance("USDT"), account.balance("BTC")
((Decimal('1000'), Decimal('0')), (Decimal('0'), Decimal('0')))
>>> account.call("GET", "/api/v3/account", {}, "timestamp=1", "")
(401, {'code': -2015, 'msg': 'Invalid API-key, IP, or permissions for action.'})
>>> account.call("GET", "/api/v3/account", {"X-MBX-APIKEY": "k" * 64}, "timestamp=1", "")[1]
{'code': -1021, 'msg': 'Timestamp for this request is outside of the recvWindow.'}
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from ares_stream.sim.exchange.orders import OPEN, Book, dec, missing, num
from ares_stream.sim.exchange.rest import ApiError
from ares_stream.sim.exchange.tape import Tape

__all__ = ["INVALID_KEY", "ROUTES", "Account"]

INVALID_KEY = "Invalid API-key, IP, or permissions for action."
ROUTES = {  # (method, path) → handler: the signed endpoints
    ("POST", "/api/v3/order"): "new_order", ("POST", "/api/v3/order/test"): "test_order",
    ("GET", "/api/v3/order"): "query_order", ("DELETE", "/api/v3/order"): "cancel_order",
    ("GET", "/api/v3/openOrders"): "open_orders", ("GET", "/api/v3/account"): "account",
    ("GET", "/api/v3/myTrades"): "my_trades",
}  # fmt: skip
_MAX_WINDOW = 60_000
_AHEAD_MS = 1_000


def _unsigned(text: str) -> str:
    """A query string or body as sent, without its ``signature`` parameter."""
    return "&".join(p for p in text.split("&") if p and not p.startswith("signature="))


class Account:
    """One account (one API key) of the local exchange; :class:`LocalExchange` binds it to the
    tape. ``balances`` maps an asset to its free amount (decimal strings or numbers)."""

    def __init__(
        self,
        balances: Mapping[str, str | float | Decimal] | None = None,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        fee_bps: float = 10.0,
        commission: str = "quote",
    ) -> None:
        if commission not in ("quote", "base"):
            raise ValueError(f"commission must be 'quote' or 'base', not {commission!r}")
        self.api_key = api_key or secrets.token_hex(32)
        self.api_secret = api_secret or secrets.token_hex(32)
        self.book = Book(fee_bps, commission)
        for asset, amount in (balances or {}).items():
            self.book.credit(asset, dec(str(amount)))
        self.drop_requests = 0  # faults: see the module docstring
        self.lose_responses = 0
        self._stats: dict[str, int] = {}

    def __repr__(self) -> str:  # the key and secret stay out of reprs (and so out of logs)
        return f"Account(assets={sorted(self.book.balances)})"

    def bind(self, tape: Tape, position: Callable[[], int], stats: dict[str, int]) -> None:
        """Trade against ``tape`` up to ``position()`` frames; count into ``stats``."""
        self.book.bind(tape, position)
        self._stats = stats
        for key in ("orders", "order_rejects"):
            stats.setdefault(key, 0)

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        """``(free, locked)`` of ``asset``."""
        free, locked = self.book.balances.get(asset, (Decimal(0), Decimal(0)))
        return free, locked

    # -- the HTTP boundary ----------------------------------------------------------------------

    def call(self, method: str, path: str, headers: Mapping[str, str], query: str,
             body: str) -> tuple[int, Any] | None:
        """Answer one signed request: ``(HTTP status, JSON data)``, or None when a fault
        swallows the answer (the server then cuts the connection)."""
        placing = (method, path) == ("POST", "/api/v3/order")
        if placing:
            self._stats["orders"] = self._stats.get("orders", 0) + 1
        try:
            params = self._authenticate(headers, query, body)
            if placing and self._take("drop_requests"):
                return None
            data = getattr(self, ROUTES[(method, path)])(params)
        except ApiError as exc:
            if placing:
                self._stats["order_rejects"] = self._stats.get("order_rejects", 0) + 1
            return exc.status, {"code": exc.code, "msg": exc.msg}
        if placing and self._take("lose_responses"):
            return None
        return 200, data

    def _take(self, fault: str) -> bool:
        left: int = getattr(self, fault)
        if left > 0:
            setattr(self, fault, left - 1)
        return left > 0

    def _authenticate(self, headers: Mapping[str, str], query: str, body: str) -> dict[str, str]:
        """The request's parameters, once its key, timestamp and signature check out."""
        if not hmac.compare_digest(headers.get("X-MBX-APIKEY", ""), self.api_key):
            raise ApiError(-2015, INVALID_KEY, 401)
        params = dict(parse_qsl(query, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        timestamp = num(params, "timestamp")
        window = num(params, "recvWindow", default=5_000)
        if window > _MAX_WINDOW:
            raise ApiError(-1131, "recvWindow must be less than 60000")
        now = int(time.time() * 1000)
        if timestamp >= now + _AHEAD_MS:
            raise ApiError(-1021, "Timestamp for this request was 1000ms ahead of the server's "
                           "time.")  # fmt: skip
        if now - timestamp > window:
            raise ApiError(-1021, "Timestamp for this request is outside of the recvWindow.")
        signature = params.pop("signature", "")
        if not signature:
            raise missing("signature")
        payload = (_unsigned(query) + _unsigned(body)).encode()
        expected = hmac.new(self.api_secret.encode(), payload, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise ApiError(-1022, "Signature for this request is not valid.")
        return params

    # -- endpoints ------------------------------------------------------------------------------

    def new_order(self, params: dict[str, str]) -> dict[str, Any]:
        """POST /api/v3/order: place, match, answer (ACK, RESULT or FULL)."""
        order = self.book.place(params)
        return order.answer(params.get("newOrderRespType", "FULL"))

    def test_order(self, params: dict[str, str]) -> dict[str, Any]:
        """POST /api/v3/order/test: every check of a new order, nothing placed."""
        self.book.place(params, test=True)
        return {}

    def query_order(self, params: dict[str, str]) -> dict[str, Any]:
        """GET /api/v3/order by ``orderId`` or ``origClientOrderId``."""
        order = self.book.find(params)
        if order is None:
            raise ApiError(-2013, "Order does not exist.")
        return order.view()

    def cancel_order(self, params: dict[str, str]) -> dict[str, Any]:
        """DELETE /api/v3/order: cancel an open order (-2011 for any other)."""
        order = self.book.find(params)
        if order is None or order.status not in OPEN:
            raise ApiError(-2011, "Unknown order sent.")
        self.book.cancel(order)
        answer = order.answer("RESULT")
        for key in ("workingTime", "fills", "origQuoteOrderQty"):
            answer.pop(key, None)
        answer["origClientOrderId"] = order.client_id
        answer["clientOrderId"] = params.get("newClientOrderId") or secrets.token_hex(11)
        return answer

    def open_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """GET /api/v3/openOrders, of one symbol or all."""
        symbol = self.book.symbol(params) if params.get("symbol") else None
        return [o.view() for o in self.book.orders.values()
                if o.status in OPEN and symbol in (None, o.symbol)]

    def account(self, params: dict[str, str]) -> dict[str, Any]:
        """GET /api/v3/account: permissions, commission rates and every balance."""
        rate = f"{self.book.fee:.8f}"
        bps = int(self.book.fee * 10_000)
        return {
            "makerCommission": bps, "takerCommission": bps, "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {"maker": rate, "taker": rate, "buyer": "0.00000000",
                                "seller": "0.00000000"},
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False,
            "updateTime": self.book.updated, "accountType": "SPOT",
            "balances": [{"asset": a, "free": f"{b[0]:.8f}", "locked": f"{b[1]:.8f}"}
                         for a, b in sorted(self.book.balances.items())],
            "permissions": ["SPOT"], "uid": 1,
        }  # fmt: skip

    def my_trades(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """GET /api/v3/myTrades of a symbol (optionally one ``orderId``), oldest first."""
        symbol = self.book.symbol(params)
        order_id = num(params, "orderId", default=-1)
        limit = min(num(params, "limit", default=500), 1000)
        rows = [t for t in self.book.trades
                if t["symbol"] == symbol and order_id in (-1, t["orderId"])]
        return rows[-limit:]
