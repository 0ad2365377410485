"""The paper broker: fill time and price rules, fees, slippage, limits, SQLite, checkpoints."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, target
from hypothesis import strategies as st
from structlog.testing import capture_logs

from ares_stream.config import Config, TradingConfig, replace_values
from ares_stream.engine import Engine
from ares_stream.events import Bar, BookTop, Trade
from ares_stream.features.bars import BarBuilder
from ares_stream.store.db import open_db
from ares_stream.store.trading import (
    TradingStore,
    equity_curve,
    last_equity,
    positions,
    signal_gates,
)
from ares_stream.trading.paper import PaperBroker
from ares_stream.trading.risk import DAILY_LOSS, DRAWDOWN, STALE
from tests.conftest import shared_path
from tests.test_engine import ListSink

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


def step(broker: PaperBroker, end: int, close: float, p: float, blocked: str = "") -> None:
    """A trade inside the bar, then the bar (decided at its end: no closing trade is fed)."""
    broker.on_trade(trade(end - S, close))
    broker.on_bar(bar(end, close), p, blocked)


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


def test_an_order_never_fills_at_the_trade_that_closed_its_bar() -> None:
    """The trade that closes a bar comes first (as the engine feeds it): the bar is decided at
    that trade, so its order fills at a later trade at least ``latency_ms`` after it."""
    b = PaperBroker(BPS, None)
    b.on_trade(trade(T0 + MIN - S, 100.0, 1))
    closing = trade(T0 + MIN + 100 * MS, 100.0, 2)  # 100 ms past the bar's end: > latency
    b.on_trade(closing)
    b.on_bar(bar(T0 + MIN, 100.0), 0.6)
    assert b.state()["pending"][0][4:] == [T0 + MIN, closing.ts_event]  # ts_event, ts_submit
    b.on_trade(trade(T0 + MIN + 149 * MS, 95.0, 3))  # latency after the bar, not the decision
    assert b.fills == 0
    b.on_trade(trade(T0 + MIN + 150 * MS, 101.0, 4))
    assert b.fills == 1 and b.positions[SYM].ts_event == T0 + MIN + 150 * MS
    zero = PaperBroker(replace(BPS, latency_ms=0.0), None)  # no latency: still not the closer
    zero.on_trade(closing)
    zero.on_bar(bar(T0 + MIN, 100.0), 0.6)
    assert zero.fills == 0
    zero.on_trade(trade(closing.ts_event, 102.0, 3))  # the next trade, in the same instant
    assert zero.positions[SYM].avg_price == pytest.approx(102.0 * 1.0002)


def tape(seconds: int, start: int = T0) -> list[Trade]:
    """Trades at 150, 450 and 750 ms of every second: each 1-s bar closes 150 ms after its end."""
    out = []
    for i in range(3 * seconds):
        ts = start + (i // 3) * S + (150 + 300 * (i % 3)) * MS
        out.append(Trade(SYM, ts, ts, i + 1, 100.0 + (i % 7) * 0.1 + (i % 13) * 0.05, 0.5,
                         i % 2 == 0, True))
    return out


def test_through_the_engine_an_order_is_sent_at_the_closing_trade_and_fills_after_it(
        tmp_path: Path) -> None:
    """Driven by the engine, every order is sent at the trade that closed its bar (150 ms after
    the bar's end) and fills at the next trade at least 50 ms later (450 ms), not the closer."""
    cfg = replace_values(Config(), {"bars": {"interval": "1s"},
                                    "labels": {"horizon": 3, "threshold_bps": 0.0},
                                    "trading": {"enter": 0.0, "slippage": "bps",
                                                "require_edge": False}})
    db = open_db(tmp_path / "paper.db")
    broker = PaperBroker(cfg.trading, TradingStore(db, 1))
    engine = Engine(cfg, ListSink(), broker=broker)
    for t in tape(400):
        engine.on_event(t)
    flush(broker)
    rows = db.execute("select o.ts_event, o.ts_submit, f.ts_event from orders o "
                      "join fills f using (client_id)").fetchall()
    assert len(rows) >= 2  # enter, scale in to the cap (and top up as the price falls)
    for bar_end, sent, filled in rows:
        assert (sent - bar_end, filled - sent) == (150 * MS, 300 * MS)


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


def book(ts: int, bid: float = 99.9, ask: float = 100.1) -> BookTop:
    return BookTop(SYM, ts, ts, 1, bid, 1.0, ask, 1.0)


def test_book_slippage_pays_the_spread_and_falls_back_to_bps() -> None:
    """With ``slippage = "book"`` BUY pays the ask, SELL gets the bid; a stale book is not used."""
    cfg = replace(BPS, slippage="book")
    b = PaperBroker(cfg, None)
    step(b, T0 + MIN, 100.0, 0.6)
    b.on_book(book(T0 + MIN + S - 500 * MS))
    b.on_trade(trade(T0 + MIN + S, 100.0))
    assert b.positions[SYM].avg_price == 100.1
    step(b, T0 + 2 * MIN, 100.0, 0.3)  # the book is now a minute old: stale
    b.on_trade(trade(T0 + 2 * MIN + S, 100.0))
    assert b.positions[SYM].realized_pnl == pytest.approx(10.0 * (99.98 - 100.1))
    bps = PaperBroker(BPS, None)  # slippage = "bps" ignores the book
    bps.on_book(book(T0 + MIN + S - 500 * MS))
    step(bps, T0 + MIN, 100.0, 0.6)
    bps.on_trade(trade(T0 + MIN + S, 100.0))
    assert bps.positions[SYM].avg_price == pytest.approx(100.02)


def test_a_book_top_older_than_book_max_age_is_not_used() -> None:
    """With the default ``book_max_age_ms`` (1 s) a book top 2 s older than the fill is not used
    (the trade's price plus ``slippage_bps`` is); one 0.9 s old is."""
    cfg = replace(BPS, slippage="book")
    assert cfg.book_max_age_ms == 1000.0
    for age, paid in ((2 * S, 100.0 * 1.0002), (900 * MS, 100.1)):
        b = PaperBroker(cfg, None)
        step(b, T0 + MIN, 100.0, 0.6)
        b.on_book(book(T0 + MIN + S - age))
        b.on_trade(trade(T0 + MIN + S, 100.0))
        assert b.positions[SYM].avg_price == pytest.approx(paid)


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


def test_a_halted_broker_sends_no_order_until_the_halt_is_lifted() -> None:
    """The daemon halts the broker while its checkpoints fail (an order that cannot be recorded
    is not sent): bars that would trade are blocked, with the reason counted; lifted, it trades."""
    b = PaperBroker(replace(BPS, slippage_bps=0.0), None)
    b.halted = "checkpoint failing: cannot write paper.db"
    for k in range(1, 4):
        step(b, T0 + k * MIN, 100.0, 0.9)
    assert b.orders == 0 and b.blocked["checkpoint failing: cannot write paper.db"] == 3
    b.halted = ""
    step(b, T0 + 4 * MIN, 100.0, 0.9)
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


def test_candle_fills_pay_the_candle_slippage_at_the_open_plus_latency(tmp_path: Path) -> None:
    """With no trade tape a BUY pays the next open × (1 + ``candle_slippage_bps``) and a SELL
    gets open × (1 − it), at the open's time + latency, whatever the book says; the fill rows
    record the slippage."""
    db = open_db(tmp_path / "paper.db")
    cfg = replace(BPS, slippage="book", slippage_bps=0.0, candle_slippage_bps=5.0)
    b = PaperBroker(cfg, TradingStore(db, 1))
    b.on_bar(bar(T0 + MIN, 100.0), 0.9)
    b.on_book(book(T0 + 2 * MIN, 99.0, 99.5))  # a quote from the bar's end: after the fill
    b.on_bar(bar(T0 + 2 * MIN, 102.0, open_=101.0), 0.3)
    b.on_bar(bar(T0 + 3 * MIN, 104.0, open_=103.0), 0.52)
    flush(b)
    fills = db.execute("select side, price, ts_event, slippage_bps from fills order by id")
    assert fills.fetchall() == [
        ("BUY", pytest.approx(101.0 * 1.0005), T0 + MIN + 50 * MS, pytest.approx(5.0)),
        ("SELL", pytest.approx(103.0 * 0.9995), T0 + 2 * MIN + 50 * MS, pytest.approx(5.0))]


NO_EDGE = "no validated edge: river CI [-0.01, 0.002]"


def test_a_blocked_signal_goes_flat_and_its_gate_is_stored_once_per_change(
        tmp_path: Path) -> None:
    """``blocked`` sells the open position with a normal market order and buys nothing; the
    gate is logged and stored once per change (flat, another reason, trading), not per bar; a
    NaN probability decides nothing and changes no gate."""
    db = open_db(tmp_path / "paper.db")
    b = PaperBroker(replace(BPS, slippage_bps=0.0), TradingStore(db, 2))
    gates = ["", NO_EDGE, NO_EDGE, NO_EDGE, "no champion", None, ""]
    with capture_logs() as logs:
        for k, blocked in enumerate(gates, start=1):
            if blocked is None:
                b.on_bar(bar(T0 + k * MIN, 100.0), math.nan, NO_EDGE)
            else:
                step(b, T0 + k * MIN, 100.0, 0.9, blocked)
            b.on_trade(trade(T0 + k * MIN + S, 100.0))
    flush(b)
    orders = db.execute("select client_id, side from orders order by id").fetchall()
    assert orders == [(f"r2-{SYM}-{T0 + MIN}", "BUY"), (f"r2-{SYM}-{T0 + 2 * MIN}", "SELL"),
                      (f"r2-{SYM}-{T0 + 7 * MIN}", "BUY")]
    assert b.fills == 3 and b.positions[SYM].qty == 10.0
    assert [(g["ts_event"], g["trading"], g["reason"]) for g in signal_gates(db, 2)] == [
        (T0 + 2 * MIN, 0, NO_EDGE), (T0 + 5 * MIN, 0, "no champion"), (T0 + 7 * MIN, 1, "")]
    changes = [(e["trading"], e["reason"]) for e in logs if e["event"] == "signal_gate_changed"]
    assert changes == [(False, NO_EDGE), (False, "no champion"), (True, "")]


def test_a_restored_broker_writes_no_second_gate_row(tmp_path: Path) -> None:
    """The gate is in the checkpoint: a broker restored while its signal is still blocked writes
    no new row, and one restored from before the change rewrites none twice."""
    db = open_db(tmp_path / "paper.db")
    b = PaperBroker(BPS, TradingStore(db, 1))
    before = json.dumps(b.state())
    step(b, T0 + MIN, 100.0, 0.9, NO_EDGE)
    flush(b)
    for checkpoint in (json.dumps(b.state()), before):
        again = PaperBroker(BPS, TradingStore(db, 1))
        again.restore(json.loads(checkpoint))
        step(again, T0 + MIN, 100.0, 0.9, NO_EDGE)
        step(again, T0 + 2 * MIN, 100.0, 0.9, NO_EDGE)
        flush(again)
        assert again.orders == 0
    assert [(g["ts_event"], g["trading"]) for g in signal_gates(db, 1)] == [(T0 + MIN, 0)]


def crash_tape() -> list[Trade]:
    """Trades every 2 s around UTC midnight (T0 + DAY): 100 until 23:45, 80 from then on."""
    start, crash = T0 + DAY - 20 * MIN, T0 + DAY - 15 * MIN
    return [trade(ts, 100.0 if ts < crash else 80.0, i)
            for i, ts in enumerate(range(start, T0 + DAY + 20 * MIN, 2 * S))]


def buys_between(db: Any, lo: int, hi: int) -> int:
    return int(db.execute("select count(*) from orders where side = 'BUY' and ts_submit >= ? "
                          "and ts_submit < ?", (lo, hi)).fetchone()[0])


def test_in_a_replay_over_two_utc_days_the_daily_loss_switch_clears_on_day_two(
        tmp_path: Path) -> None:
    """Bars built from the tape as the engine builds them: a 400-quote loss trips the daily
    switch on day 1 (sold, no entry for the rest of the day); from the first decision of day 2
    (UTC, event time) the broker enters again."""
    db = open_db(tmp_path / "paper.db")
    cfg = replace(BPS, slippage_bps=0.0, max_daily_loss=100.0, max_drawdown=0.9)
    b = PaperBroker(cfg, TradingStore(db, 1))
    with capture_logs() as logs:
        run(b, crash_tape(), [0.9])
    flush(b)
    (trip,) = [e["ts_event"] for e in logs if e["event"] == "kill_switch_tripped"]
    assert T0 + DAY - 15 * MIN <= trip < T0 + DAY and b.blocked[DAILY_LOSS] > 0
    assert buys_between(db, trip, T0 + DAY) == 0 and buys_between(db, T0 + DAY, T0 + 2 * DAY) == 2
    assert b.risk.tripped is None and b.positions[SYM].qty == pytest.approx(2_000.0 / 80.0)


def test_a_tripped_drawdown_switch_survives_a_day_change_and_a_restart(tmp_path: Path) -> None:
    """Tripped on day 1, the drawdown switch still blocks every entry on day 2, across a
    state()/restore() round trip in between: nothing in a run resets it."""
    db = open_db(tmp_path / "paper.db")
    cfg = replace(BPS, slippage_bps=0.0, max_daily_loss=1e9, max_drawdown=0.03)
    trades = crash_tape()
    cut = next(i for i, t in enumerate(trades) if t.ts_event >= T0 + DAY + 5 * MIN)
    first = PaperBroker(cfg, TradingStore(db, 1))
    run(first, trades, [0.9], stop=cut)
    assert first.risk.tripped == DRAWDOWN and first.positions[SYM].qty == 0.0
    flush(first)
    second = PaperBroker(cfg, TradingStore(db, 1))
    second.restore(json.loads(json.dumps(first.state())))
    run(second, trades, [0.9], start=cut)
    flush(second)
    assert second.risk.tripped == DRAWDOWN and second.blocked[DRAWDOWN] > first.blocked[DRAWDOWN]
    assert buys_between(db, T0 + DAY - 15 * MIN, T0 + 2 * DAY) == 0
    assert second.positions[SYM].qty == 0.0


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
        stop: int | None = None, interval: int = 10 * S, gates: list[str] | None = None) -> int:
    """Drive the broker over ``trades[start:stop]`` as the engine does — each trade before the bar
    it closes — (bars are rebuilt from the first trade so that a resumed run sees the same bars),
    with ``gates`` the bars' ``blocked`` reasons, cycled; return the number of bars closed."""
    builder = BarBuilder(SYM, interval)
    bars = 0
    for i, t in enumerate(trades[:stop]):
        if i >= start:
            broker.on_trade(t)
        closed = builder.on_trade(t)
        if closed is not None:
            bars += 1
            if i >= start:
                blocked = gates[(bars - 1) % len(gates)] if gates else ""
                broker.on_bar(closed, probs[(bars - 1) % len(probs)], blocked)
    return bars


GATES = [""] * 6 + [NO_EDGE] * 3 + ["no champion"] * 2  # the bars' signal gates, cycled


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
    decided = db.execute("select ts_event, ts_submit from orders where run_id = 3").fetchall()
    assert all(sent in times and sent >= bar_end for bar_end, sent in decided)  # closing trades
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
    same rows as one that ran straight through (signal gates included); client ids are
    deterministic."""
    trades = real_trades()
    half = cut_in_flight(trades)
    db_whole = open_db(tmp_path / "a.db")
    whole = PaperBroker(BPS, TradingStore(db_whole, 1))
    run(whole, trades, scripted(200), gates=GATES)
    db = open_db(tmp_path / "b.db")
    first = PaperBroker(BPS, TradingStore(db, 1))
    run(first, trades, scripted(200), stop=half, gates=GATES)
    assert first.state()["pending"] and first.state()["positions"]
    flush(first)
    second = PaperBroker(BPS, TradingStore(db, 1))
    second.restore(json.loads(json.dumps(first.state())))
    run(second, trades, scripted(200), start=half, gates=GATES)
    assert second.state() == whole.state()
    for broker in (whole, second):
        flush(broker)
    sql = "select client_id, side, qty, price, fee, ts_event from fills order by id"
    assert list(db.execute(sql)) == list(db_whole.execute(sql))
    sql = "select client_id, status, ts_submit from orders order by id"
    assert list(db.execute(sql)) == list(db_whole.execute(sql))
    assert signal_gates(db, 1) == signal_gates(db_whole, 1) and len(signal_gates(db, 1)) > 5


def test_resume_from_an_older_checkpoint_rewrites_the_rows_a_crash_left(tmp_path: Path) -> None:
    """Restored from a checkpoint older than the last flush, the broker rewrites the same rows
    without failing, and the file ends as a straight run's does."""
    trades = real_trades()
    cut = cut_in_flight(trades)
    db_whole = open_db(tmp_path / "a.db")
    whole = PaperBroker(BPS, TradingStore(db_whole, 1))
    run(whole, trades, scripted(200), gates=GATES)
    db = open_db(tmp_path / "b.db")
    crashed = PaperBroker(BPS, TradingStore(db, 1))
    run(crashed, trades, scripted(200), stop=cut, gates=GATES)
    checkpoint = json.dumps(crashed.state())
    run(crashed, trades, scripted(200), start=cut, stop=cut + 1500, gates=GATES)
    flush(crashed)  # rows past the checkpoint reached the file, then the process died
    resumed = PaperBroker(BPS, TradingStore(db, 1))
    resumed.restore(json.loads(checkpoint))
    run(resumed, trades, scripted(200), start=cut, gates=GATES)
    flush(resumed)
    flush(whole)
    for sql in ("select client_id, side, qty, price, fee, ts_event from fills order by id",
                "select client_id, status, ts_submit from orders order by id",
                "select * from equity order by ts_event", "select * from positions",
                "select symbol, ts_event, trading, reason from signal_gate order by id"):
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


MANY = replace(BPS, max_position_notional=1e9, order_notional=300.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 39), st.floats(50.0, 150.0), st.floats(0.0, 1.0)),
                min_size=1, max_size=300), st.integers(0, 300))
def test_mark_equals_cash_plus_every_position_on_random_fills(
        steps: list[tuple[int, float, float]], restore_at: int) -> None:
    """On random bars and fills over forty symbols (positions opened, added to, closed, opened
    again; a checkpoint restored midway) every mark's equity is, to the last bit, cash plus the
    sum over every position ever held at its last price, in the order of ``positions``."""
    b = PaperBroker(MANY, None)
    with capture_logs():
        for k, (i, price, p) in enumerate(steps):
            if k == restore_at:
                again = PaperBroker(MANY, None)
                again.restore(json.loads(json.dumps(b.state())))
                b = again
            sym, end = f"S{i:02d}USDT", T0 + (k + 1) * MIN
            b.on_trade(Trade(sym, end - S, end - S, k, price, 0.5, False, True))
            b.on_bar(Bar(sym, end, end, end - MIN, MIN, price, price, price, price, 1.0, None, 1,
                         price), p)
            value = sum(pos.qty * b._last.get(s, pos.avg_price) for s, pos in b.positions.items())
            assert b.equity == b.cash + value
    target(float(b.fills))  # search towards many fills
