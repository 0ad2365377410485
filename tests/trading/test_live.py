"""The live broker against the local exchange: real AsyncClient, real SQLite file, no mocks.

Bars and trades are fed as the engine feeds them; the exchange has broadcast a small tape (trades
at 100.51, tick and lot 0.01, minimum notional 5) and keeps the account the broker trades.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlite_utils
from structlog.testing import capture_logs

from ares_stream import logs
from ares_stream.config import Config, TradingConfig
from ares_stream.errors import AresError
from ares_stream.events import Bar, Trade
from ares_stream.redact import clear_secrets, redacting
from ares_stream.sim.exchange import Account, LocalExchange, Tape
from ares_stream.store.db import open_db
from ares_stream.store.trading import TradingStore
from ares_stream.trading.live import (
    Credentials,
    LiveBroker,
    client_id,
    connect,
    for_run,
    load_credentials,
    order_url,
)
from tests.conftest import DEADLINE
from tests.sim.exchange.test_account import agg

KEY, SECRET = "LiveKey" + "7" * 57, "LiveSecret" + "9" * 54
S = 10**9
MIN = 60 * S
T0 = 1_767_225_600 * S  # 2026-01-01 00:00 UTC
SYM = "BTCUSDT"
CFG = TradingConfig(fee_bps=10.0, order_notional=1_000.0, max_position_notional=2_000.0,
                    max_slippage_bps=20.0, max_drawdown=0.2)


@pytest.fixture(autouse=True)
def _no_secrets_left() -> Iterator[None]:
    yield
    clear_secrets()


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 2 * DEADLINE))


def step(broker: LiveBroker, end: int, price: float, p: float, blocked: str = "") -> None:
    """A trade inside the bar, then the bar closing at ``end`` with probability ``p``."""
    broker.on_trade(Trade(SYM, end - S, end - S, end // S, price, 0.5, False, True))
    broker.on_bar(Bar(SYM, end, end, end - MIN, MIN, price, price, price, price, 1.0, None, 1,
                      price), p, blocked)


def account(usdt: str = "10000", **kw: Any) -> Account:
    return Account({"USDT": usdt}, api_key=KEY, api_secret=SECRET, **kw)


@contextlib.asynccontextmanager
async def exchange(acct: Account) -> AsyncIterator[LocalExchange]:
    async with LocalExchange(Tape([agg(i) for i in range(1, 6)]), start_on_subscribe=False,
                             account=acct) as ex:
        await asyncio.wait_for(ex.done.wait(), DEADLINE)
        yield ex


async def broker_for(ex: LocalExchange, db: sqlite_utils.Database, cfg: TradingConfig = CFG,
                     **kw: Any) -> LiveBroker:
    cfg = replace(cfg, rest_url=ex.rest_url + "/")
    client = await connect(cfg, Credentials(KEY, SECRET))
    kw.setdefault("resolve_delays", (0.05,) * 4)
    return LiveBroker(cfg, TradingStore(db, 1), client, **kw)


def balances(ex: LocalExchange) -> dict[str, float]:
    assert ex.account is not None
    return {a: float(b[0] + b[1]) for a, b in ex.account.book.balances.items()}


def rows(db: sqlite_utils.Database, sql: str) -> list[tuple[Any, ...]]:
    return list(db.execute(sql).fetchall())


def test_orders_reach_the_exchange_rounded_and_the_books_match_its_account(
        tmp_path: Path) -> None:
    """A BUY and a SELL go out as LIMIT IOC at last × (1 ± 20 bps) on the tick, quantity down
    to the lot; fills are booked, and cash and position equal the exchange's balances."""
    acct = account()

    async def body() -> None:
        async with exchange(acct) as ex:
            db = open_db(tmp_path / "live.db")
            broker = await broker_for(ex, db)
            rec = await broker.start(["btcusdt"])
            assert rec.balances == {"USDT": (10_000.0, 0.0)} and rec.differences == {}
            step(broker, T0 + MIN, 100.51, 0.6)
            assert len(broker.in_flight) == 1 and ex.stats["orders"] == 0  # sent in a task
            assert await broker.wait(DEADLINE)
            buy = acct.book.orders[1]
            assert (buy.client_id, buy.type, buy.tif, buy.qty, buy.price) == (
                client_id(f"r1-{SYM}-{T0 + MIN}"), "LIMIT", "IOC", Decimal("9.94"),
                Decimal("100.71"))
            assert broker.positions[SYM].qty == balances(ex)["BTC"] == 9.94
            assert broker.cash == pytest.approx(balances(ex)["USDT"], abs=1e-9)
            step(broker, T0 + 2 * MIN, 100.51, 0.3)
            assert await broker.wait(DEADLINE)
            sell = acct.book.orders[2]
            assert (sell.side, sell.qty, sell.price) == ("SELL", Decimal("9.94"), Decimal("100.31"))
            assert broker.positions[SYM].qty == balances(ex)["BTC"] == 0.0
            assert broker.cash == pytest.approx(balances(ex)["USDT"], abs=1e-9)
            assert broker.fees_paid == pytest.approx(2 * 9.94 * 100.51 * 0.001)
            await broker.close()
            assert broker.store is not None
            broker.store.flush()
            orders = rows(db, "select side, qty, type, status, mode, exchange_id from orders "
                              "order by id")
            assert orders == [("BUY", 9.94, "LIMIT", "filled", "live", "1"),
                              ("SELL", 9.94, "LIMIT", "filled", "live", "2")]
            fills = rows(db, "select side, qty, price, round(fee, 7) from fills order by id")
            assert fills == [("BUY", 9.94, 100.51, 0.9990694), ("SELL", 9.94, 100.51, 0.9990694)]

    run(body())


def test_a_base_asset_commission_cuts_the_position_and_dust_is_not_sent(tmp_path: Path) -> None:
    """Commission in BTC: the BUY books qty − commission, valued at the fill price; the SELL
    rounds the position down to the lot; the dust left is skipped, never sent."""
    acct = account(commission="base")

    async def body() -> None:
        async with exchange(acct) as ex:
            broker = await broker_for(ex, open_db(tmp_path / "live.db"))
            await broker.start([SYM])
            step(broker, T0 + MIN, 100.51, 0.6)
            await broker.wait(DEADLINE)
            assert broker.positions[SYM].qty == pytest.approx(9.93006) == balances(ex)["BTC"]
            assert broker.fees_paid == pytest.approx(0.00994 * 100.51)
            assert broker.cash == pytest.approx(balances(ex)["USDT"], abs=1e-9)
            step(broker, T0 + 2 * MIN, 100.51, 0.3)
            await broker.wait(DEADLINE)
            assert acct.book.orders[2].qty == Decimal("9.93")
            assert broker.positions[SYM].qty == pytest.approx(0.00006) == balances(ex)["BTC"]
            step(broker, T0 + 3 * MIN, 100.51, 0.3)
            assert ex.stats["orders"] == 2 and not broker.in_flight
            assert [r for r in broker.blocked if r.startswith("dust: LOT_SIZE")]
            await broker.close()

    run(body())


def test_filters_refuse_before_sending(tmp_path: Path) -> None:
    """3 USDT buys 0.02 BTC: below the minimum notional, refused here — the exchange never
    sees it — with the filter named in the order's reason."""
    acct = account("3")

    async def body() -> None:
        async with exchange(acct) as ex:
            db = open_db(tmp_path / "live.db")
            broker = await broker_for(ex, db)
            await broker.start([SYM])
            with capture_logs() as captured:
                step(broker, T0 + MIN, 100.51, 0.6)
            assert not broker.in_flight and ex.stats["orders"] == 0 and broker.rejected == 1
            rejected = [e for e in captured if e["event"] == "order_rejected"]
            assert rejected[0]["reason"] == "NOTIONAL: notional 2.0142 below minNotional 5"
            await broker.close()
            assert broker.store is not None
            broker.store.flush()
            assert rows(db, "select qty, status, reason from orders") == [
                (0.02, "rejected", "NOTIONAL: notional 2.0142 below minNotional 5")]

    run(body())


def test_an_exchange_rejection_is_booked_with_its_code(tmp_path: Path) -> None:
    """The exchange charges 1 % where we assumed 0.1 %: -2010, booked as rejected with code and
    message; nothing is filled and the symbol trades again at the next bar."""
    acct = account("1000", fee_bps=100.0)

    async def body() -> None:
        async with exchange(acct) as ex:
            db = open_db(tmp_path / "live.db")
            broker = await broker_for(ex, db)
            await broker.start([SYM])
            with capture_logs() as captured:
                step(broker, T0 + MIN, 100.51, 0.6)
                await broker.wait(DEADLINE)
            events = [e["event"] for e in captured]
            assert events == ["order_submitted", "order_rejected"]
            assert captured[1]["reason"] == (
                "-2010 Account has insufficient balance for requested action.")
            assert ex.stats["order_rejects"] == 1 and SYM not in broker.positions
            assert broker.cash == 1000.0 and not broker.in_flight
            step(broker, T0 + 2 * MIN, 100.51, 0.6)
            assert len(broker.in_flight) == 1
            await broker.close()

    run(body())


def test_a_lost_answer_is_queried_not_resent(tmp_path: Path) -> None:
    """The exchange fills the order but the connection drops before the answer: the broker
    queries it by client id and books its fills; the exchange saw one order."""
    acct = account()

    async def body() -> None:
        async with exchange(acct) as ex:
            db = open_db(tmp_path / "live.db")
            broker = await broker_for(ex, db)
            await broker.start([SYM])
            acct.lose_responses = 1
            with capture_logs() as captured:
                step(broker, T0 + MIN, 100.51, 0.6)
                await broker.wait(DEADLINE)
            assert [e["event"] for e in captured] == [
                "order_submitted", "order_outcome_unknown", "order_filled"]
            assert ex.stats["orders"] == 1 and len(acct.book.orders) == 1
            assert broker.positions[SYM].qty == balances(ex)["BTC"] == 9.94
            assert broker.cash == pytest.approx(balances(ex)["USDT"], abs=1e-9)
            await broker.close()
            assert broker.store is not None
            broker.store.flush()
            assert rows(db, "select status, exchange_id from orders") == [("filled", "1")]
            assert rows(db, "select qty from fills") == [(9.94,)]

    run(body())


def test_an_order_that_never_arrived_is_closed_after_recv_window(tmp_path: Path) -> None:
    """The connection drops before the order executes: "no such order" is believed only once
    recvWindow has passed; the order is closed as not placed, and the symbol trades again."""
    acct = account()

    async def body() -> None:
        async with exchange(acct) as ex:
            broker = await broker_for(ex, open_db(tmp_path / "live.db"),
                                      resolve_delays=(0.25,) * 40)
            # ms: the exchange's limit on late requests; every request of the test must reach
            # it within that, also on a busy machine, and "no such order" is believed 1 s later
            broker.client.REQUEST_RECVWINDOW = 2_000
            await broker.start([SYM])
            acct.drop_requests = 1
            with capture_logs() as captured:
                step(broker, T0 + MIN, 100.51, 0.6)
                await broker.wait(DEADLINE)
            rejected = [e for e in captured if e["event"] == "order_rejected"]
            assert rejected[0]["reason"] == "not placed: the exchange has no such order"
            assert ex.stats["orders"] == 1 and not acct.book.orders
            assert SYM not in broker.positions and broker.cash == 10_000.0
            step(broker, T0 + 2 * MIN, 100.51, 0.6)
            await broker.wait(DEADLINE)
            assert broker.positions[SYM].qty == 9.94 == balances(ex)["BTC"]
            await broker.close()

    run(body())


def test_an_unresolved_order_is_settled_at_the_next_start_from_the_checkpoint(
        tmp_path: Path) -> None:
    """An order still unknown at shutdown stays in flight in the checkpoint; the next broker
    queries it at start and books its fills — then its books equal the exchange's."""
    acct = account()

    async def body() -> None:
        async with exchange(acct) as ex:
            db = open_db(tmp_path / "live.db")
            first = await broker_for(ex, db, resolve_delays=())
            await first.start([SYM])
            acct.lose_responses = 1
            step(first, T0 + MIN, 100.51, 0.6)
            await first.wait(DEADLINE)
            assert len(first.in_flight) == 1 and SYM not in first.positions
            saved = json.loads(json.dumps(first.state()))
            await first.close()
            second = await broker_for(ex, db)
            second.restore(saved)
            rec = await second.start([SYM])
            assert rec.resolved == [client_id(f"r1-{SYM}-{T0 + MIN}")] and rec.differences == {}
            assert second.positions[SYM].qty == balances(ex)["BTC"] == 9.94
            assert second.cash == pytest.approx(balances(ex)["USDT"], abs=1e-9)
            assert not second.in_flight and ex.stats["orders"] == 1
            await second.close()

    run(body())


def test_reconciliation_adopts_balances_and_cancels_only_our_open_orders(
        tmp_path: Path) -> None:
    """Pre-seeded 5,000 USDT and 2 BTC, a stale open order of ours and a foreign one: ours is
    cancelled, the foreign one left; cash and position become the exchange's; the risk limits
    start from the exchange's equity."""
    acct = Account({"USDT": "5000", "BTC": "2"}, api_key=KEY, api_secret=SECRET)

    async def body() -> None:
        async with exchange(acct) as ex:
            broker = await broker_for(ex, open_db(tmp_path / "live.db"))
            for cid, side, price in (("ares-r0-BTCUSDT-1", "SELL", "200"),
                                     ("manual-1", "BUY", "50")):
                await broker.client.create_order(symbol=SYM, side=side, type="LIMIT",
                                                 timeInForce="GTC", quantity="1", price=price,
                                                 newClientOrderId=cid)
            with capture_logs() as captured:
                rec = await broker.start([SYM])
            assert (rec.cancelled, rec.foreign) == (["ares-r0-BTCUSDT-1"], ["manual-1"])
            assert rec.balances == {"USDT": (4949.95, 50.05), "BTC": (2.0, 0.0)}
            assert rec.differences == {"USDT": -5_000.0, "BTC": 2.0}
            assert [o.status for o in acct.book.orders.values()] == ["CANCELED", "NEW"]
            assert broker.cash == 5_000.0
            assert (broker.positions[SYM].qty, broker.positions[SYM].avg_price) == (2.0, 100.51)
            assert broker.risk.peak == broker.equity == pytest.approx(5_000 + 2 * 100.51)
            events = {e["event"] for e in captured}
            assert {"foreign_order_left", "order_cancelled", "reconciled"} <= events
            await broker.close()

    run(body())


def test_a_kill_switch_sells_the_position_on_the_exchange(tmp_path: Path) -> None:
    """A drawdown past the limit flattens with a live SELL (client id ``…-k<n>``)."""
    acct = account()

    async def body() -> None:
        async with exchange(acct) as ex:
            broker = await broker_for(ex, open_db(tmp_path / "live.db"),
                                      replace(CFG, max_drawdown=0.01))
            await broker.start([SYM])
            step(broker, T0 + MIN, 100.51, 0.6)
            await broker.wait(DEADLINE)
            step(broker, T0 + 2 * MIN, 50.0, 0.52)  # marked at 50: a 5 % drawdown
            assert broker.risk.tripped == "drawdown kill switch"
            await broker.wait(DEADLINE)
            kill = acct.book.orders[2]
            assert kill.client_id == client_id(f"r1-{SYM}-{T0 + 2 * MIN}-k1")
            assert kill.side == "SELL" and kill.client_id.startswith("ares-r1-BTCUSDT-")
            assert broker.positions[SYM].qty == balances(ex)["BTC"] == 0.0
            await broker.close()

    run(body())


def test_a_blocked_signal_sells_on_the_exchange_and_stores_its_gate(tmp_path: Path) -> None:
    """The paper broker's signal gate, live: a blocked bar sells the position with a normal
    order (``<symbol>-<bar>``), buys nothing while blocked, and stores the change once."""
    acct = account()

    async def body() -> None:
        async with exchange(acct) as ex:
            db = open_db(tmp_path / "live.db")
            broker = await broker_for(ex, db)
            await broker.start([SYM])
            step(broker, T0 + MIN, 100.51, 0.6)
            await broker.wait(DEADLINE)
            for k in (2, 3):
                step(broker, T0 + k * MIN, 100.51, 0.6, "no validated edge")
                await broker.wait(DEADLINE)
            sell = acct.book.orders[2]
            assert (sell.client_id, sell.side) == (client_id(f"r1-{SYM}-{T0 + 2 * MIN}"), "SELL")
            assert ex.stats["orders"] == 2 and broker.positions[SYM].qty == balances(ex)["BTC"]
            assert broker.positions[SYM].qty == 0.0
            await broker.close()
            assert broker.store is not None
            broker.store.flush()
            assert rows(db, "select ts_event, trading, reason from signal_gate") == [
                (T0 + 2 * MIN, 0, "no validated edge")]

    run(body())


def test_load_credentials_from_environment_and_private_file(tmp_path: Path) -> None:
    """The environment first; a 0600 keys file completes it; 0644, a missing file and missing
    keys are errors naming the file or the variable; values never show in a repr."""
    env = {"ARES_API_KEY": KEY, "ARES_API_SECRET": SECRET}
    creds = load_credentials(TradingConfig(), env)
    assert creds == (KEY, SECRET) and KEY not in repr(creds) and SECRET not in str(creds)
    assert redacting(f"sent {KEY}") == "sent ***"
    keys = tmp_path / "keys.env"
    keys.write_text(f"# binance testnet\nexport ARES_API_KEY={KEY}\nARES_API_SECRET='{SECRET}'\n")
    keys.chmod(0o600)
    cfg = TradingConfig(keys_file=str(keys))
    assert load_credentials(cfg, {}) == (KEY, SECRET)
    assert load_credentials(cfg, {"ARES_API_KEY": "EnvKey" + "1" * 20}).api_secret == SECRET
    keys.chmod(0o644)
    with pytest.raises(AresError, match=rf"{keys}: .*open to group or others \(mode 0644\)"):
        load_credentials(cfg, {})
    with pytest.raises(AresError, match="cannot read the keys file"):
        load_credentials(TradingConfig(keys_file=str(tmp_path / "nope")), {})
    keys.write_text(f"ARES_API_KEY={KEY}\n")
    keys.chmod(0o600)
    with pytest.raises(AresError, match=r"needs ARES_API_SECRET: set it .* in .*keys.env"):
        load_credentials(cfg, {})
    with pytest.raises(AresError, match="needs ARES_API_KEY and ARES_API_SECRET"):
        load_credentials(TradingConfig(), {})


def test_keys_reach_neither_logs_nor_the_database(tmp_path: Path) -> None:
    """Through credentials, orders, a rejection, a lost answer and reconciliation, neither the
    key nor the secret appears in a log line (JSON renderer) or in the database file."""
    out = io.StringIO()
    logs.configure(stream=out, json=True, level="debug")
    acct = account("1000", fee_bps=100.0)
    keys = tmp_path / "keys.env"
    keys.write_text(f"ARES_API_KEY={KEY}\nARES_API_SECRET={SECRET}\n")
    keys.chmod(0o600)
    creds = load_credentials(TradingConfig(keys_file=str(keys)), {})

    async def body() -> None:
        async with exchange(acct) as ex:
            db = open_db(tmp_path / "live.db")
            cfg = replace(CFG, rest_url=ex.rest_url, keys_file=str(keys))
            broker = for_run(Config(trading=cfg), SimpleNamespace(db=db, run_id=1),
                             await connect(cfg, creds))
            broker.resolve_delays = (0.05,) * 4
            await broker.start([SYM])
            step(broker, T0 + MIN, 100.51, 0.6)  # 1 % fee: rejected
            await broker.wait(DEADLINE)
            acct.book.fee, acct.lose_responses = Decimal("0.001"), 1  # now it fills
            step(broker, T0 + 2 * MIN, 100.51, 0.6)
            await broker.wait(DEADLINE)
            assert broker.positions[SYM].qty > 0
            await broker.close()
            assert broker.store is not None
            broker.store.flush()
            db.conn.close()

    run(body())
    text = out.getvalue()
    assert "order_rejected" in text and "order_outcome_unknown" in text and "reconciled" in text
    assert KEY not in text and SECRET not in text
    for path in tmp_path.glob("live.db*"):
        data = path.read_bytes()
        assert KEY.encode() not in data and SECRET.encode() not in data


def test_order_url_and_the_modules_paper_mode_loads_import_no_binance() -> None:
    """``rest_url`` wins, else testnet or production; filters, credentials and reconcile (which
    paper-side code may import) do not load python-binance."""
    assert order_url(TradingConfig(rest_url="http://127.0.0.1:9/")) == "http://127.0.0.1:9"
    code = ("import sys, ares_stream.trading.filters, ares_stream.trading.credentials, "
            "ares_stream.trading.reconcile, ares_stream.trading.paper; "
            "print('binance' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, env=env)
    assert result.stdout.strip() == "False"
