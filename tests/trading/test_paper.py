"""The paper broker: fill time and price rules, fees, slippage, limits, SQLite, checkpoints."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ares_stream.config import TradingConfig
from ares_stream.events import Bar, BookTop, Trade
from ares_stream.features.bars import BarBuilder
from ares_stream.store.db import open_db
from ares_stream.store.trading import TradingStore, equity_curve, last_equity, positions
from ares_stream.trading.paper import PaperBroker
from ares_stream.trading.risk import DAILY_LOSS, DRAWDOWN, STALE
from tests.conftest import shared_path

S = 10**9
MS = 10**6
MIN = 60 * S
DAY = 86_400 * S
T0 = 1_767_225_600 * S  # 2026-01-01 00:00 UTC
SYM = "BTCUSDT"
BPS = TradingConfig(fee_bps=10.0, latency_ms=50.0, slippage="bps", slippage_bps=2.0,
                    starting_cash=10_000.0, order_notional=1_000.0,
                    max_position_notional=2_000.0)


def trade(ts: int, price: float, i: int = 0) -> Trade:
    return Trade(SYM, ts, ts, i, price, 0.5, False, True)


def bar(end: int, close: float, open_: float | None = None, interval: int = MIN) -> Bar:
    o = close if open_ is None else open_
    return Bar(SYM, end, end, end - interval, interval, o, max(o, close), min(o, close), close,
               1.0, None, 1, close)


def flush(broker: PaperBroker) -> None:
    assert broker.store is not None
    broker.store.flush()


def step(broker: PaperBroker, end: int, close: float, p: float) -> None:
    """A bar closed by the trade just after it: the trade inside the bar, the bar, then the rest."""
    broker.on_trade(trade(end - S, close))
    broker.on_bar(bar(end, close), p)


def test_fills_at_the_first_trade_at_least_latency_after_the_order() -> None:
    """Trades before ``ts_submit + latency`` (the deciding bar's own, late ones) do not fill."""
    b = PaperBroker(BPS, None)
    step(b, T0 + MIN, 100.0, 0.6)
    b.on_trade(trade(T0 + MIN - 1, 90.0))  # a late trade of the deciding bar
    b.on_trade(trade(T0 + MIN + 49 * MS, 91.0))  # inside the latency
    assert b.fills == 0 and SYM not in b.positions
    b.on_trade(trade(T0 + MIN + 50 * MS, 101.0))
    b.on_trade(trade(T0 + MIN + 60 * MS, 150.0))
    pos = b.positions[SYM]
    assert b.fills == 1 and pos.ts_event == T0 + MIN + 50 * MS
    assert pos.avg_price == pytest.approx(101.0 * 1.0002)


def test_fees_on_both_legs_and_bps_slippage_both_ways(tmp_path: Path) -> None:
    """A round trip pays ``fee_bps`` on each leg; BUY fills above, SELL below the trade price."""
    db = open_db(tmp_path / "paper.db")
    b = PaperBroker(BPS, TradingStore(db, 1))
    step(b, T0 + MIN, 100.0, 0.6)
    b.on_trade(trade(T0 + MIN + S, 100.0))
    step(b, T0 + 2 * MIN, 100.0, 0.3)
    b.on_trade(trade(T0 + 2 * MIN + S, 100.0))
    flush(b)
    sql = "select side, qty, price, fee, slippage_bps from fills order by id"
    rows = db.execute(sql).fetchall()
    (buy, qty, pb, fb, sb), (sell, qty2, ps, fs, ss) = rows
    assert (buy, sell) == ("BUY", "SELL") and qty == qty2 == 10.0  # 1,000 at the close
    assert (pb, ps) == (pytest.approx(100.02), pytest.approx(99.98))
    assert (sb, ss) == (pytest.approx(2.0), pytest.approx(2.0))
    assert fb == pytest.approx(qty * pb * 1e-3) and fs == pytest.approx(qty * ps * 1e-3)
    assert b.fees_paid == pytest.approx(fb + fs)
    assert b.cash == pytest.approx(10_000.0 - qty * (pb - ps) - fb - fs)
    assert b.positions[SYM].realized_pnl == pytest.approx(qty * (ps - pb))


def test_book_slippage_pays_the_spread_and_falls_back_to_bps() -> None:
    """With ``slippage = "book"`` BUY pays the ask, SELL gets the bid; a stale book is not used."""
    cfg = replace(BPS, slippage="book")
    b = PaperBroker(cfg, None)
    b.on_book(BookTop(SYM, T0 + MIN - S, T0 + MIN - S, 1, 99.9, 1.0, 100.1, 1.0))
    step(b, T0 + MIN, 100.0, 0.6)
    b.on_trade(trade(T0 + MIN + S, 100.0))
    assert b.positions[SYM].avg_price == 100.1
    step(b, T0 + 2 * MIN, 100.0, 0.3)  # the book is now 61 s old: stale
    b.on_trade(trade(T0 + 2 * MIN + S, 100.0))
    assert b.positions[SYM].realized_pnl == pytest.approx(10.0 * (99.98 - 100.1))
    bps = PaperBroker(BPS, None)  # slippage = "bps" ignores the book
    bps.on_book(BookTop(SYM, T0 + MIN - S, T0 + MIN - S, 1, 99.9, 1.0, 100.1, 1.0))
    step(bps, T0 + MIN, 100.0, 0.6)
    bps.on_trade(trade(T0 + MIN + S, 100.0))
    assert bps.positions[SYM].avg_price == pytest.approx(100.02)


def test_position_cap_limits_scaling_in() -> None:
    """Bars above ``enter`` scale in by ``order_notional`` until ``max_position_notional``."""
    b = PaperBroker(replace(BPS, slippage_bps=0.0), None)
    for k in range(1, 6):
        step(b, T0 + k * MIN, 100.0, 0.9)
        b.on_trade(trade(T0 + k * MIN + S, 100.0))
    assert b.orders == 2 and b.positions[SYM].qty == pytest.approx(20.0)


def test_an_order_in_flight_blocks_new_decisions() -> None:
    """While an order waits for its trade, the symbol's next bar sends nothing."""
    b = PaperBroker(BPS, None)
    b.on_trade(trade(T0 + MIN - S, 100.0))
    b.on_bar(bar(T0 + MIN, 100.0), 0.9)
    b.on_bar(bar(T0 + 2 * MIN, 100.0), 0.9)
    assert b.orders == 1


def test_buy_is_cut_to_the_cash_available() -> None:
    """A BUY bigger than the cash (fee included) fills for what the cash pays."""
    b = PaperBroker(replace(BPS, starting_cash=500.0, slippage_bps=0.0), None)
    step(b, T0 + MIN, 100.0, 0.9)
    b.on_trade(trade(T0 + MIN + S, 100.0))
    assert b.cash == pytest.approx(0.0, abs=1e-9)
    assert b.positions[SYM].qty == pytest.approx(500.0 / 100.1)


def test_daily_loss_flattens_and_blocks_entries_until_the_next_utc_day(tmp_path: Path) -> None:
    """Past ``max_daily_loss`` the broker sells everything at the next trade and enters no more
    that day; the next UTC day it trades again."""
    db = open_db(tmp_path / "paper.db")
    cfg = replace(BPS, slippage_bps=0.0, max_daily_loss=100.0, max_drawdown=0.9)
    b = PaperBroker(cfg, TradingStore(db, 7))
    step(b, T0 + MIN, 100.0, 0.9)
    b.on_trade(trade(T0 + MIN + S, 100.0))
    step(b, T0 + 2 * MIN, 85.0, 0.52)  # -150 on 10 BTC-units: tripped at this bar's mark
    assert b.risk.tripped == DAILY_LOSS
    b.on_trade(trade(T0 + 2 * MIN + S, 84.0))
    assert b.positions[SYM].qty == 0.0 and b.fills == 2
    step(b, T0 + 3 * MIN, 90.0, 0.9)
    assert b.orders == 2 and b.blocked[DAILY_LOSS] == 1
    step(b, T0 + DAY + MIN, 90.0, 0.9)  # next UTC day
    assert b.risk.tripped is None and b.orders == 3
    flush(b)
    ids = [r[0] for r in db.execute("select client_id from orders order by id")]
    assert ids == [f"r7-{SYM}-{T0 + MIN}", f"r7-{SYM}-{T0 + 2 * MIN}-k1",
                   f"r7-{SYM}-{T0 + DAY + MIN}"]


def test_drawdown_switch_flattens_and_stays_tripped() -> None:
    """Past ``max_drawdown`` from the peak the broker flattens and trades no more, for days."""
    cfg = replace(BPS, slippage_bps=0.0, fee_bps=0.0, max_daily_loss=1e9, max_drawdown=0.01)
    b = PaperBroker(cfg, None)
    step(b, T0 + MIN, 100.0, 0.9)
    b.on_trade(trade(T0 + MIN + S, 100.0))
    step(b, T0 + 2 * MIN, 89.0, 0.52)  # 110 of 10,000: 1.1 % down
    b.on_trade(trade(T0 + 2 * MIN + S, 89.0))
    assert b.risk.tripped == DRAWDOWN and b.positions[SYM].qty == 0.0
    step(b, T0 + 3 * DAY, 90.0, 0.9)
    assert b.orders == 2 and b.blocked[DRAWDOWN] == 1


def test_stale_feed_blocks_orders() -> None:
    """A bar decided more than ``stale_feed_s`` after the last trade sends no order."""
    b = PaperBroker(BPS, None)
    b.on_trade(trade(T0, 100.0))
    b.on_bar(bar(T0 + 2 * MIN, 100.0), 0.9)
    assert b.orders == 0 and b.blocked[STALE] == 1
    step(b, T0 + 3 * MIN, 100.0, 0.9)
    assert b.orders == 1


def test_candle_replay_fills_at_the_next_bars_open() -> None:
    """With no trade tape, an order fills at the next bar's open, at ``ts_submit + latency``."""
    b = PaperBroker(BPS, None)
    b.on_bar(bar(T0 + MIN, 100.0), 0.9)
    assert b.orders == 1 and b.fills == 0
    b.on_bar(bar(T0 + 2 * MIN, 110.0, open_=101.0), 0.52)
    pos = b.positions[SYM]
    assert pos.ts_event == T0 + MIN + 50 * MS and pos.avg_price == pytest.approx(101.0 * 1.0002)


def scripted(n: int) -> list[float]:
    """A probability sequence that enters, scales, holds, exits, again and again."""
    cycle = [0.6, 0.6, 0.6, 0.52, 0.45, 0.5, 0.58, 0.4]
    return [cycle[i % len(cycle)] for i in range(n)]


def real_trades() -> list[Trade]:
    path = shared_path("aggtrades/BTCUSDT-aggTrades-2026-01-01-first5000.csv")
    with path.open(newline="") as f:
        return [Trade(SYM, int(r[5]) * 1000, int(r[5]) * 1000, int(r[0]), float(r[1]),
                      float(r[2]), r[6] == "True", True) for r in csv.reader(f)]


def run(broker: PaperBroker, trades: list[Trade], probs: list[float], start: int = 0,
        stop: int | None = None, interval: int = 10 * S) -> int:
    """Drive the broker over ``trades[start:stop]`` as the engine does (bars are rebuilt from the
    first trade so that a resumed run sees the same bars); return the number of bars closed."""
    builder = BarBuilder(SYM, interval)
    bars = 0
    for i, t in enumerate(trades[:stop]):
        closed = builder.on_trade(t)
        if closed is not None:
            bars += 1
            if i >= start:
                broker.on_bar(closed, probs[(bars - 1) % len(probs)])
        if i >= start:
            broker.on_trade(t)
    return bars


def cut_in_flight(trades: list[Trade]) -> int:
    """The first index past the middle at which an order waits for its fill."""
    probe = PaperBroker(BPS, None)
    for cut in range(len(trades) // 2, len(trades)):
        run(probe, trades, scripted(200), start=cut, stop=cut + 1)
        if probe.state()["pending"]:
            return cut + 1
    raise AssertionError("no order in flight")


def reconstruct(db: Any, run_id: int, starting_cash: float) -> tuple[float, float, float]:
    """Cash, BTC held and fees as the fills table tells them."""
    cash, qty, fees = starting_cash, 0.0, 0.0
    for side, q, price, fee in db.execute(
            "select side, qty, price, fee from fills where run_id = ? order by id", (run_id,)):
        sign = 1.0 if side == "BUY" else -1.0
        cash -= sign * q * price + fee
        qty += sign * q
        fees += fee
    return cash, qty, fees


def test_real_trades_fill_at_the_first_eligible_trade_and_reconcile_with_sqlite(
        tmp_path: Path) -> None:
    """Over 5,000 real aggTrades, each fill is at the first trade ≥ latency after its order,
    at that trade's price ± slippage; the fills in SQLite rebuild the broker's cash and position."""
    trades = real_trades()
    db = open_db(tmp_path / "paper.db")
    cfg = replace(BPS, latency_ms=250.0)
    b = PaperBroker(cfg, TradingStore(db, 3))
    bars = run(b, trades, scripted(200))
    b.mark(trades[-1].ts_event, {SYM: trades[-1].price})
    flush(b)
    assert bars > 60 and b.fills >= 20 and b.fills == b.orders
    times = [t.ts_event for t in trades]
    orders = dict(db.execute("select client_id, ts_submit from orders where run_id = 3"))
    for cid, ts, price in db.execute("select client_id, ts_event, price from fills"):
        first = next(t for t in trades if t.ts_event >= orders[cid] + 250 * MS)
        assert ts == first.ts_event and ts in times
        assert price in (pytest.approx(first.price * 1.0002), pytest.approx(first.price * 0.9998))
    cash, qty, fees = reconstruct(db, 3, cfg.starting_cash)
    assert cash == pytest.approx(b.cash, abs=1e-6) and fees == pytest.approx(b.fees_paid)
    assert qty == pytest.approx(b.positions[SYM].qty, abs=1e-12)
    (row,) = positions(db, 3)
    assert row["qty"] == pytest.approx(b.positions[SYM].qty)
    last = last_equity(db)
    assert last is not None and last["equity"] == pytest.approx(b.equity)
    assert len(equity_curve(db, 3)) == bars + 1  # one mark per bar and the last


def test_state_restore_continues_identically(tmp_path: Path) -> None:
    """A broker restored from a JSON checkpoint mid-stream ends in the same state and writes the
    same rows as one that ran straight through; client ids are deterministic."""
    trades = real_trades()
    half = cut_in_flight(trades)
    db_whole = open_db(tmp_path / "a.db")
    whole = PaperBroker(BPS, TradingStore(db_whole, 1))
    run(whole, trades, scripted(200))
    db = open_db(tmp_path / "b.db")
    first = PaperBroker(BPS, TradingStore(db, 1))
    run(first, trades, scripted(200), stop=half)
    assert first.state()["pending"] and first.state()["positions"]
    flush(first)
    second = PaperBroker(BPS, TradingStore(db, 1))
    second.restore(json.loads(json.dumps(first.state())))
    run(second, trades, scripted(200), start=half)
    assert second.state() == whole.state()
    for broker in (whole, second):
        flush(broker)
    sql = "select client_id, side, qty, price, fee, ts_event from fills order by id"
    assert list(db.execute(sql)) == list(db_whole.execute(sql))
    sql = "select client_id, status, ts_submit from orders order by id"
    assert list(db.execute(sql)) == list(db_whole.execute(sql))


def test_resume_from_an_older_checkpoint_rewrites_the_rows_a_crash_left(tmp_path: Path) -> None:
    """Restored from a checkpoint older than the last flush, the broker rewrites the same rows
    without failing, and the file ends as a straight run's does."""
    trades = real_trades()
    cut = cut_in_flight(trades)
    db_whole = open_db(tmp_path / "a.db")
    whole = PaperBroker(BPS, TradingStore(db_whole, 1))
    run(whole, trades, scripted(200))
    db = open_db(tmp_path / "b.db")
    crashed = PaperBroker(BPS, TradingStore(db, 1))
    run(crashed, trades, scripted(200), stop=cut)
    checkpoint = json.dumps(crashed.state())
    run(crashed, trades, scripted(200), start=cut, stop=cut + 1500)
    flush(crashed)  # rows past the checkpoint reached the file, then the process died
    resumed = PaperBroker(BPS, TradingStore(db, 1))
    resumed.restore(json.loads(checkpoint))
    run(resumed, trades, scripted(200), start=cut)
    flush(resumed)
    flush(whole)
    for sql in ("select client_id, side, qty, price, fee, ts_event from fills order by id",
                "select client_id, status, ts_submit from orders order by id",
                "select * from equity order by ts_event", "select * from positions"):
        assert list(db.execute(sql)) == list(db_whole.execute(sql))


def test_paper_mode_imports_no_exchange_client() -> None:
    """Building the paper broker imports no python-binance module (no client, no keys)."""
    code = ("import sys\n"
            "from ares_stream.config import TradingConfig\n"
            "from ares_stream.trading.paper import PaperBroker\n"
            "PaperBroker(TradingConfig(), None)\n"
            "print(sorted(m for m in sys.modules if m == 'binance' or m.startswith('binance.')))\n")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
