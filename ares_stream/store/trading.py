"""The trading store: orders, fills, equity, positions and signal gates of one run, in batches.

Rows wait in memory and go to SQLite in one transaction per :meth:`TradingStore.flush` (the
broker's owner calls it on its flush timer, before a checkpoint and at the end), orders before the
fills that reference them; ``flush_rows`` waiting rows flush on their own. Positions are
upserted: one row per (run, symbol), the latest state. The signal gate gets one row each time a
symbol's signal starts or stops trading (the broker writes only changes).

Writes are idempotent — an order or its fill (by client id) and a gate change (by run, symbol
and bar) already in the file are kept, equity and positions are replaced — so a run resumed from a
checkpoint older than the last flush rewrites the rows the crash left behind instead of failing
on them: the first write wins.
The reading helpers serve ``ares-stream status``.

>>> from ares_stream.store.db import open_db
>>> db = open_db(":memory:")
>>> store = TradingStore(db, run_id=1)
>>> store.order("BTCUSDT-60", "BTCUSDT", "BUY", 0.5, 60, 60, mode="paper")
>>> store.fill("BTCUSDT-60", "BTCUSDT", "BUY", 0.5, 100.1, 0.05, 70, 10.0)
>>> store.order_status("BTCUSDT-60", "filled")
>>> store.position("BTCUSDT", 0.5, 100.1, 0.0, 70)
>>> store.equity(70, 9_949.9, 50.0, 9_999.9, 0.0, 0.05)
>>> store.signal_gate("BTCUSDT", 120, False, "no validated edge")
>>> store.flush()
>>> [(g["ts_event"], g["trading"], g["reason"]) for g in signal_gates(db, 1)]
[(120, 0, 'no validated edge')]
>>> [(p["symbol"], p["qty"], p["avg_price"]) for p in positions(db)]
[('BTCUSDT', 0.5, 100.1)]
>>> last_equity(db)["equity"], equity_curve(db, 1)
(9999.9, [(70, 9999.9)])
>>> empty = open_db(":memory:")
>>> positions(empty), last_equity(empty), equity_curve(empty, 1)
([], None, [])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import sqlite_utils

from ares_stream.store.db import write_batches
from ares_stream.store.importance import INSERT_REASON

_INSERT_ORDER = (
    "INSERT OR IGNORE INTO orders (run_id, client_id, symbol, side, qty, type, ts_event, "
    "ts_submit, status, reason, mode) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'new', '', ?)"
)
_UPDATE_ORDER = (  # exchange_id: kept when not given
    "UPDATE orders SET status = ?, reason = ?, exchange_id = coalesce(?, exchange_id) "
    "WHERE client_id = ?"
)
_INSERT_FILL = (  # one fill per order (the paper broker fills an order at one trade)
    "INSERT INTO fills (run_id, client_id, symbol, side, qty, price, fee, ts_event, slippage_bps) "
    "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM fills WHERE client_id = ?)"
)


class Reason(Protocol):
    """One feature's part in a prediction (:class:`ares_stream.learners.importance.Reason`)."""

    @property
    def feature(self) -> str: ...
    @property
    def value(self) -> float: ...
    @property
    def contribution(self) -> float: ...


_INSERT_EQUITY = (
    "INSERT OR REPLACE INTO equity (run_id, ts_event, cash, positions_value, equity, drawdown, "
    "fees) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_GATE = (  # one change per (run, symbol, bar): a resumed run does not write it twice
    "INSERT INTO signal_gate (run_id, symbol, ts_event, trading, reason) SELECT ?, ?, ?, ?, ? "
    "WHERE NOT EXISTS (SELECT 1 FROM signal_gate WHERE run_id = ? AND symbol = ? AND ts_event = ?)"
)
_UPSERT_POSITION = (
    "INSERT OR REPLACE INTO positions (run_id, symbol, qty, avg_price, realized_pnl, ts_event) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


class TradingStore:
    """One run's trading rows; nothing reaches the file before :meth:`flush`."""

    def __init__(self, db: sqlite_utils.Database, run_id: int, *, flush_rows: int = 2000) -> None:
        self.db = db
        self.run_id = run_id
        self.flush_rows = flush_rows
        self._orders: list[tuple[Any, ...]] = []
        self._status: list[tuple[Any, ...]] = []
        self._fills: list[tuple[Any, ...]] = []
        self._equity: list[tuple[Any, ...]] = []
        self._positions: dict[str, tuple[Any, ...]] = {}
        self._gates: list[tuple[Any, ...]] = []
        self._reasons: list[tuple[Any, ...]] = []

    def order(self, client_id: str, symbol: str, side: str, qty: float, ts_event: int,
              ts_submit: int, *, mode: str, type: str = "MARKET") -> None:
        """A new order (status ``new``): MARKET (paper) or LIMIT (live)."""
        self._orders.append((self.run_id, client_id, symbol, side, qty, type, ts_event,
                             ts_submit, mode))

    def order_status(self, client_id: str, status: str, reason: str = "",
                     exchange_id: str | None = None) -> None:
        """An order became ``filled``, ``partial``, ``expired``, ``rejected`` or
        ``cancelled``; ``exchange_id``: the exchange's orderId, once known."""
        self._status.append((status, reason, exchange_id, client_id))

    def fill(self, client_id: str, symbol: str, side: str, qty: float, price: float, fee: float,
             ts_event: int, slippage_bps: float) -> None:
        """A fill (one per order: another for the same ``client_id`` is ignored at the flush)."""
        self._fills.append((self.run_id, client_id, symbol, side, qty, price, fee, ts_event,
                            slippage_bps, client_id))

    def equity(self, ts_event: int, cash: float, positions_value: float, equity: float,
               drawdown: float, fees: float) -> None:
        """A mark to market (a second row at the same ``ts_event`` replaces the first)."""
        self._equity.append((self.run_id, ts_event, cash, positions_value, equity, drawdown,
                             fees))
        if len(self._equity) >= self.flush_rows:
            self.flush()

    def position(self, symbol: str, qty: float, avg_price: float, realized_pnl: float,
                 ts_event: int) -> None:
        """The symbol's position now (only the latest per flush is written)."""
        self._positions[symbol] = (self.run_id, symbol, qty, avg_price, realized_pnl, ts_event)

    def signal_gate(self, symbol: str, ts_event: int, trading: bool, reason: str) -> None:
        """The symbol's signal started (``trading``) or stopped trading at bar ``ts_event``."""
        self._gates.append((self.run_id, symbol, ts_event, int(trading), reason, self.run_id,
                            symbol, ts_event))

    def reasons(self, client_id: str, model_id: int | None, reasons: Sequence[Reason]) -> None:
        """Why an order was sent: the top contributions of ``model_id``'s prediction, ranked."""
        self._reasons.extend((client_id, rank, self.run_id, model_id, r.feature, r.value,
                              r.contribution) for rank, r in enumerate(reasons, 1))

    @property
    def pending(self) -> int:
        """Rows waiting for :meth:`flush`."""
        return (len(self._orders) + len(self._status) + len(self._fills) + len(self._equity)
                + len(self._positions) + len(self._gates) + len(self._reasons))

    def flush(self) -> None:
        """Write every waiting row in one transaction."""
        if not self.pending:
            return
        write_batches(self.db, [(_INSERT_ORDER, self._orders), (_INSERT_FILL, self._fills),
                                (_UPDATE_ORDER, self._status), (_INSERT_EQUITY, self._equity),
                                (_UPSERT_POSITION, list(self._positions.values())),
                                (_INSERT_GATE, self._gates), (INSERT_REASON, self._reasons)])
        for rows in (self._orders, self._status, self._fills, self._equity, self._gates,
                     self._reasons):
            rows.clear()
        self._positions.clear()


def _rows(db: sqlite_utils.Database, sql: str,
          params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    cur = db.conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _latest_run(db: sqlite_utils.Database, table: str) -> int | None:
    row = db.conn.execute(f"SELECT max(run_id) FROM {table}").fetchone()  # table: a fixed name
    return None if row is None else row[0]


def positions(db: sqlite_utils.Database, run_id: int | None = None) -> list[dict[str, Any]]:
    """The positions of ``run_id`` (default: the latest run that has any), by symbol."""
    run = _latest_run(db, "positions") if run_id is None else run_id
    return _rows(db, "SELECT * FROM positions WHERE run_id = ? ORDER BY symbol", (run,))


def equity_curve(db: sqlite_utils.Database, run_id: int) -> list[tuple[int, float]]:
    """``(ts_event, equity)`` of every mark of the run, in time order."""
    cur = db.conn.execute(
        "SELECT ts_event, equity FROM equity WHERE run_id = ? ORDER BY ts_event", (run_id,))
    return [(int(ts), float(eq)) for ts, eq in cur.fetchall()]


def signal_gates(db: sqlite_utils.Database, run_id: int) -> list[dict[str, Any]]:
    """The signal gate changes of the run, by symbol and time."""
    return _rows(db, "SELECT symbol, ts_event, trading, reason FROM signal_gate WHERE run_id = ? "
                     "ORDER BY symbol, ts_event", (run_id,))


def last_equity(db: sqlite_utils.Database) -> dict[str, Any] | None:
    """The latest equity row of the latest run that has one, or ``None``."""
    run = _latest_run(db, "equity")
    rows = _rows(db, "SELECT * FROM equity WHERE run_id = ? ORDER BY ts_event DESC LIMIT 1",
                 (run,))
    return rows[0] if rows else None
