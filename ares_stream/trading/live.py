"""The live broker: the paper broker's decisions, sent to a Binance-compatible exchange.

:class:`LiveBroker` inherits every decision of :class:`~ares_stream.trading.paper.PaperBroker`
(signal, signal gate, risk limits, kill switches, marks and equity rows) and changes only how an
order meets the market:

- **the order** is a LIMIT IOC at the last price × (1 ± ``max_slippage_bps``), rounded to the
  tick toward that price — a marketable limit that caps slippage — for a quantity rounded *down*
  to the lot step (a BUY also cut to the cash not already promised to orders in flight, a SELL to
  the position). One the symbol's filters would refuse is refused here (status ``rejected``,
  reason naming the filter) and never sent; a SELL of a position below the exchange's minimum
  (dust) is skipped as ``order_blocked``. The client id is the paper broker's deterministic id
  behind ``ares-`` (cut and hashed past Binance's 36 characters), so reconciliation knows ours;
- **sending** never blocks the engine: the engine's callbacks are synchronous, so
  :meth:`LiveBroker._submit` schedules a task and returns. Trades on the tape fill nothing; the
  exchange's answer does: every ``fills`` entry is booked (a commission in the base asset cuts
  the base received and is valued at the fill price; in the quote asset it is the fee) and the
  order gets its final status (``filled``, ``partial``, ``expired``) and ``exchange_id``;
- **errors**: an API error rejects the order (``order_rejected``, code and message in the
  reason). A network error, a timeout or a 5xx leaves the outcome *unknown*: the order is queried
  by its client id with backoff — never resent, which could double the position. "No such
  order" is believed only once ``recvWindow`` has passed since sending (the exchange refuses the
  request after that); an order still unknown after every retry stays in flight, blocking its
  symbol, and is queried again at the symbol's next bar.

:meth:`LiveBroker.start` loads the filters and reconciles (:mod:`ares_stream.trading.reconcile`);
:meth:`LiveBroker.close` waits (bounded) for orders in flight and closes the client's session.
Only this module imports ``binance``: paper mode never loads it.

>>> client_id("r3-BTCUSDT-1767225660000000000")
'ares-r3-BTCUSDT-1767225660000000000'
>>> client_id("r123-BTCUSDT-1767225660000000000-k4")
'ares-r123-BTCUSDT-1767225-2ee690eb83'
>>> order_url(TradingConfig()), order_url(TradingConfig(testnet=False))
('https://testnet.binance.vision', 'https://api.binance.com')
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

import aiohttp
import structlog
from binance import AsyncClient
from binance.exceptions import BinanceAPIException, BinanceRequestException

from ares_stream.config import Config, TradingConfig
from ares_stream.events import NS_PER_MS, Bar, Trade
from ares_stream.redact import redacting
from ares_stream.store.trading import TradingStore
from ares_stream.trading.credentials import Credentials, load_credentials
from ares_stream.trading.filters import SymbolFilters, text
from ares_stream.trading.paper import Order, PaperBroker, Position
from ares_stream.trading.reconcile import PREFIX, Reconciliation, reconcile

__all__ = ["PREFIX", "Credentials", "LiveBroker", "Reconciliation", "client_id", "connect",
           "for_run", "load_credentials", "order_url"]

log = structlog.get_logger("ares_stream.trading")

_CLIENT_ID = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")
NETWORK_ERRORS = (TimeoutError, aiohttp.ClientError, BinanceRequestException, OSError)
_STATUS = {"FILLED": "filled", "CANCELED": "cancelled", "REJECTED": "rejected",
           "EXPIRED": "expired", "EXPIRED_IN_MATCH": "expired"}
_OPEN = ("NEW", "PARTIALLY_FILLED")
_SKEW_MS = 1_000  # clock margin on top of recvWindow before "no such order" is believed


def order_url(cfg: TradingConfig) -> str:
    """The order API's base URL (without ``/api``)."""
    if cfg.rest_url:
        return cfg.rest_url.rstrip("/")
    return "https://testnet.binance.vision" if cfg.testnet else "https://api.binance.com"


async def connect(cfg: TradingConfig, creds: Credentials) -> AsyncClient:
    """A python-binance client for :func:`order_url`; it sends nothing until used."""
    client = AsyncClient(creds.api_key, creds.api_secret)
    client.API_URL = order_url(cfg) + "/api"
    return client


def client_id(paper_id: str) -> str:
    """Our ``newClientOrderId`` for a paper broker id: ``ares-<id>``; when that would break
    Binance's ``^[a-zA-Z0-9-_]{1,36}$``, its first 20 characters and a hash of all of it.
    Deterministic."""
    if paper_id.startswith(PREFIX):
        return paper_id
    cid = PREFIX + paper_id
    if _CLIENT_ID.fullmatch(cid):
        return cid
    digest = hashlib.blake2b(paper_id.encode(), digest_size=15).hexdigest()
    short = f"{PREFIX}{paper_id[:20]}-{digest[:10]}"  # still readable: run, symbol, time
    return short if _CLIENT_ID.fullmatch(short) else PREFIX + digest


def _unknown(exc: BinanceAPIException) -> bool:
    """An API error after which the order may or may not exist (Binance: 5xx, -1006, -1007)."""
    return exc.status_code >= 500 or exc.code in (-1006, -1007)


class LiveBroker(PaperBroker):
    """The paper broker's decisions as orders on the exchange behind ``client``."""

    def __init__(self, cfg: TradingConfig, store: TradingStore | None, client: AsyncClient, *,
                 run_id: int | None = None, request_timeout: float = 10.0,
                 resolve_delays: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)) -> None:
        super().__init__(cfg, store, run_id=run_id)
        self.client = client
        self.request_timeout = request_timeout  # per REST call, s
        self.resolve_delays = tuple(resolve_delays)  # between queries of an unknown order, s
        self.filters: dict[str, SymbolFilters] = {}
        self.quote_asset = ""
        self.rejected = 0
        self.restored = False  # restore() ran: keep the risk limits' history at start()
        self._live: dict[str, list[Any]] = {}  # client id → [qty, price, ref price, sent ms]
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy: set[str] = set()  # client ids a task is sending or querying

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, symbols: Sequence[str]) -> Reconciliation:
        """Load the symbols' filters, then adopt the exchange's state (see reconcile)."""
        return await reconcile(self, [s.upper() for s in symbols])

    async def wait(self, timeout: float = 10.0) -> bool:
        """Wait up to ``timeout`` s for the orders being sent or queried; whether all ended."""
        if not self._tasks:
            return True
        _, late = await asyncio.wait(set(self._tasks), timeout=timeout)
        return not late

    async def close(self, timeout: float = 10.0) -> None:
        """Wait up to ``timeout`` s for orders in flight, then close the client's session.
        Orders still unknown then stay in flight in the checkpoint; the next start settles them."""
        if not await self.wait(timeout):
            log.warning("orders_in_flight_at_close", client_ids=sorted(self._busy))
            late = set(self._tasks)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.client.close_connection()

    async def call(self, method: Callable[..., Awaitable[Any]], **params: Any) -> Any:
        """One REST call, bounded by ``request_timeout``."""
        return await asyncio.wait_for(method(**params), self.request_timeout)

    @property
    def in_flight(self) -> list[Order]:
        """Orders sent (or being sent) whose outcome is not booked yet."""
        return list(self._pending)

    def last_price(self, symbol: str, default: float) -> float:
        """The last price seen for ``symbol``, or ``default`` before any."""
        return self._last.get(symbol, default)

    def note_price(self, symbol: str, price: float) -> None:
        """Remember ``price`` as ``symbol``'s last price (one fetched over REST, say)."""
        self._last[symbol] = price

    # -- the engine's callbacks -----------------------------------------------------------------

    def on_trade(self, t: Trade) -> None:
        """Note the price and that the feed is alive; the tape fills no live order."""
        self._last[t.symbol] = t.price
        self._seen[t.symbol] = t.ts_event
        self.risk.on_trade_seen(t.ts_event)

    def on_bar(self, bar: Bar, p: float, blocked: str = "") -> None:
        """The paper broker's bar (signal gate included); then sell what a tripped switch left,
        re-query the unknown."""
        flattened = self._flattened_for
        super().on_bar(bar, p, blocked)
        if self.risk.tripped is not None and flattened == self.risk.tripped:
            self.flatten(bar.ts_event, self.risk.tripped)  # an earlier sale expired, or dust
        for o in [o for o in self._pending if o.symbol == bar.symbol]:
            if o.client_id not in self._busy:
                self._spawn(o, self.resolve(o, "still unknown"))

    def flatten(self, ts_event: int, reason: str, sent_at: int | None = None) -> None:
        """Sell every position with nothing in flight (orders in flight are IOC: they end
        by themselves and cannot be taken back). Sent now: ``sent_at`` is the paper broker's."""
        busy = {o.symbol for o in self._pending}
        for sym, pos in sorted(self.positions.items()):
            if pos.qty > 0.0 and sym not in busy:
                cid = f"{self._prefix}{sym}-{ts_event}-k{self.orders}"
                self._submit(Order(cid, sym, "SELL", pos.qty, ts_event, ts_event))

    def _fill_at_bar(self, bar: Bar) -> None:
        """Bars fill no live order either."""

    # -- sending --------------------------------------------------------------------------------

    def _submit(self, o: Order) -> None:
        o.client_id = client_id(o.client_id)
        qty, price, refusal = self._size(o)
        if refusal.startswith("dust"):
            self._block(o.symbol, o.ts_event, refusal)
            return
        self.orders += 1
        if self.store is not None:
            self.store.order(o.client_id, o.symbol, o.side, float(qty), o.ts_event,
                             time.time_ns(), mode="live", type="LIMIT")
        if refusal:
            self._reject(o, refusal)
            return
        o.qty = float(qty)
        self._pending.append(o)
        self._live[o.client_id] = [text(qty), text(price), self._last[o.symbol], 0]
        log.info("order_submitted", client_id=o.client_id, symbol=o.symbol, side=o.side,
                 qty=text(qty), price=text(price), type="LIMIT", time_in_force="IOC")
        self._spawn(o, self._send(o))

    def _size(self, o: Order) -> tuple[Any, Any, str]:
        """``(quantity, limit price, refusal)`` of an order ('' when it may be sent)."""
        f, last = self.filters.get(o.symbol), self._last.get(o.symbol)
        if f is None or not last:
            why = "no exchangeInfo for the symbol" if f is None else "no price yet"
            return 0, 0, why
        price = f.limit_price(last, o.side, self.cfg.max_slippage_bps)
        if o.side == "BUY":
            per_unit = float(price) * (1.0 + self.cfg.fee_bps / 1e4)
            qty = f.round_qty(min(o.qty, max(self._available(), 0.0) / per_unit))
        else:
            pos = self.positions.get(o.symbol, Position())
            qty = f.round_qty(round(min(o.qty, pos.qty), 10))
        refusal = f.refusal(qty, price)
        if refusal and o.side == "SELL" and f.is_dust(qty, price):
            return qty, price, f"dust: {refusal}"
        return qty, price, refusal

    def _available(self) -> float:
        """Cash not promised to BUY orders in flight (their limit, fee included)."""
        fee = 1.0 + self.cfg.fee_bps / 1e4
        held = sum(o.qty * float(self._live[o.client_id][1]) * fee for o in self._pending
                   if o.side == "BUY" and o.client_id in self._live)
        return self.cash - held

    def _spawn(self, o: Order, work: Coroutine[Any, Any, None]) -> None:
        self._busy.add(o.client_id)
        task = asyncio.get_running_loop().create_task(self._guard(o, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, o: Order, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception as exc:  # a bug must not vanish with its task: log it, keep trading
            log.error("order_task_failed", client_id=o.client_id, error=redacting(repr(exc)))
        finally:
            self._busy.discard(o.client_id)

    async def _send(self, o: Order) -> None:
        qty, price = self._live[o.client_id][:2]
        self._live[o.client_id][3] = int(time.time() * 1000)
        try:
            answer = await self.call(
                self.client.create_order, symbol=o.symbol, side=o.side, type="LIMIT",
                timeInForce="IOC", quantity=qty, price=price, newClientOrderId=o.client_id,
                newOrderRespType="FULL")  # fmt: skip
        except BinanceAPIException as exc:
            if _unknown(exc):
                await self.resolve(o, f"{exc.code} {exc.message}")
            else:
                self._reject(o, f"{exc.code} {exc.message}")
            return
        except NETWORK_ERRORS as exc:
            await self.resolve(o, repr(exc) or type(exc).__name__)
            return
        if answer.get("status") in _OPEN:  # an IOC is never open; if it is, settle it by query
            await self.resolve(o, f"answered {answer.get('status')}")
            return
        self._settle(o, answer, answer.get("fills", []))

    async def resolve(self, o: Order, why: str) -> None:
        """Find out what became of an order whose answer was lost; book it."""
        log.warning("order_outcome_unknown", client_id=o.client_id, reason=redacting(why))
        for delay in self.resolve_delays:
            await asyncio.sleep(delay)
            try:
                if await self._query(o):
                    return
            except BinanceAPIException as exc:
                if exc.code == -2013 and self._expired(o):
                    self._reject(o, "not placed: the exchange has no such order")
                    return
            except NETWORK_ERRORS:
                pass
        log.error("order_unresolved", client_id=o.client_id, symbol=o.symbol,
                  attempts=len(self.resolve_delays))

    async def _query(self, o: Order) -> bool:
        """Query the order; book it when final (an open one is cancelled first). Done?"""
        order = await self.call(self.client.get_order, symbol=o.symbol,
                                origClientOrderId=o.client_id)
        if order["status"] in _OPEN:
            await self.call(self.client.cancel_order, symbol=o.symbol, orderId=order["orderId"])
            return False
        trades = []
        if float(order["executedQty"]) > 0.0:
            trades = await self.call(self.client.get_my_trades, symbol=o.symbol,
                                     orderId=order["orderId"])
        self._settle(o, order, [{**t, "tradeId": t["id"]} for t in trades])
        return True

    def _expired(self, o: Order) -> bool:
        """Whether the exchange would now refuse the order's request as too old."""
        window = getattr(self.client, "REQUEST_RECVWINDOW", None) or 5_000
        sent = self._live.get(o.client_id, [0, 0, 0, 0])[3]
        return time.time() * 1000 - sent > window + _SKEW_MS

    # -- outcomes -------------------------------------------------------------------------------

    def _reject(self, o: Order, reason: str) -> None:
        reason = redacting(reason)
        self.rejected += 1
        self._forget(o)
        if self.store is not None:
            self.store.order_status(o.client_id, "rejected", reason)
        log.warning("order_rejected", client_id=o.client_id, symbol=o.symbol, side=o.side,
                    reason=reason)

    def _forget(self, o: Order) -> list[Any]:
        if o in self._pending:
            self._pending.remove(o)
        return self._live.pop(o.client_id, [0, 0, 0.0, 0])

    def _settle(self, o: Order, order: dict[str, Any], fills: list[dict[str, Any]]) -> None:
        """Book an order's final state and every fill of it."""
        ref = self._forget(o)[2]
        pos = self.positions.setdefault(o.symbol, Position())
        ms = order.get("transactTime") or order.get("updateTime") or time.time() * 1000
        ts = int(ms) * NS_PER_MS
        qty_sum = quote_sum = fee_sum = 0.0
        for fill in fills:
            qty, price = float(fill["qty"]), float(fill["price"])
            booked, fee = self._net(o, qty, price, float(fill["commission"]),
                                    fill["commissionAsset"])
            self._apply(pos, o.side, booked, price, fee, ts)
            qty_sum, quote_sum, fee_sum = qty_sum + qty, quote_sum + qty * price, fee_sum + fee
        self.fills += len(fills)
        status = _STATUS.get(order["status"], order["status"].lower())
        if status in ("expired", "cancelled") and qty_sum > 0.0:
            status = "partial"
        reason = "" if status == "filled" else f"exchange status {order['status']}"
        vwap = quote_sum / qty_sum if qty_sum else 0.0
        if self.store is not None:
            if fills:  # one row per order: its executions summed, at their average price
                slip = (vwap / ref - 1.0) * 1e4 * (1.0 if o.side == "BUY" else -1.0) if ref else 0.0
                self.store.fill(o.client_id, o.symbol, o.side, qty_sum, vwap, fee_sum, ts, slip)
                self.store.position(o.symbol, pos.qty, pos.avg_price, pos.realized_pnl, ts)
            self.store.order_status(o.client_id, status, reason, exchange_id=str(order["orderId"]))
        log.info("order_filled" if fills else "order_closed", client_id=o.client_id,
                 symbol=o.symbol, side=o.side, status=status, qty=qty_sum, price=vwap,
                 fee=fee_sum, exchange_id=order["orderId"])

    def _net(self, o: Order, qty: float, price: float, commission: float,
             asset: str) -> tuple[float, float]:
        """``(base quantity to book, fee in quote)`` of one fill."""
        f = self.filters.get(o.symbol)
        if f is not None and asset == f.base:  # paid in base: less bought, or more sold
            return (qty - commission if o.side == "BUY" else qty + commission), commission * price
        if f is None or asset == f.quote:
            return qty, commission
        log.warning("commission_not_valued", client_id=o.client_id, asset=asset,
                    commission=commission)  # e.g. BNB: paid from another balance
        return qty, 0.0

    # -- checkpoints ----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The paper broker's state plus each order in flight's price and send time."""
        return {**super().state(), "live": {k: list(v) for k, v in self._live.items()}}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state`'s output, orders in flight included; sets ``restored``."""
        super().restore(state)
        self._live = {k: list(v) for k, v in state.get("live", {}).items()}
        self.restored = True


def for_run(config: Config, store: Any, client: AsyncClient, *,
            flush_rows: int = 2000) -> LiveBroker:
    """The live broker of a run (``store``: the run store, with ``.db`` and ``.run_id``)."""
    return LiveBroker(config.trading, TradingStore(store.db, store.run_id, flush_rows=flush_rows),
                      client)
