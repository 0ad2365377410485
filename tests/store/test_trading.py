"""The trading store: signal-gate rows, written in the flush's transaction, idempotently."""

from __future__ import annotations

from pathlib import Path

from ares_stream.store.db import open_db
from ares_stream.store.trading import TradingStore, signal_gates

T0 = 1_767_225_600 * 10**9  # 2026-01-01 00:00 UTC


def test_gate_changes_wait_for_the_flush_and_are_read_back_in_order(tmp_path: Path) -> None:
    """A gate change counts as a waiting row until the flush writes it; the reader returns each
    run's changes by symbol and time, ``trading`` as 0/1."""
    db = open_db(tmp_path / "t.db")
    store = TradingStore(db, run_id=4)
    store.signal_gate("ETHUSDT", T0 + 60, True, "")
    store.signal_gate("BTCUSDT", T0 + 120, True, "")
    store.signal_gate("BTCUSDT", T0 + 60, False, "no validated edge")
    TradingStore(db, run_id=5).signal_gate("BTCUSDT", T0, False, "another run")
    assert store.pending == 3 and signal_gates(db, 4) == []
    store.flush()
    assert store.pending == 0
    assert [tuple(g.values()) for g in signal_gates(db, 4)] == [
        ("BTCUSDT", T0 + 60, 0, "no validated edge"), ("BTCUSDT", T0 + 120, 1, ""),
        ("ETHUSDT", T0 + 60, 1, "")]


def test_a_gate_change_written_twice_is_kept_once(tmp_path: Path) -> None:
    """A run resumed from an older checkpoint rewrites the change of the same run, symbol and bar:
    the first write wins, in another flush or the same one."""
    db = open_db(tmp_path / "t.db")
    first = TradingStore(db, run_id=1)
    first.signal_gate("BTCUSDT", T0, False, "no validated edge")
    first.flush()
    again = TradingStore(db, run_id=1)
    again.signal_gate("BTCUSDT", T0, False, "no validated edge")
    again.signal_gate("BTCUSDT", T0 + 60, True, "")
    again.signal_gate("BTCUSDT", T0 + 60, True, "")
    again.flush()
    assert [(g["ts_event"], g["trading"]) for g in signal_gates(db, 1)] == [(T0, 0),
                                                                         (T0 + 60, 1)]
