"""The feature_selection table: a selection and its evidence round-trip through SQLite."""

from __future__ import annotations

import math
from pathlib import Path

from ares_stream.store import selection as store
from ares_stream.store.db import open_db


def _rows(ts: int, kept: bool) -> list[store.SelectionRow]:
    return [store.SelectionRow(3, "BTCUSDT", ts, "ret_1", 0.021, 0.004, 0.038, True,
                               (0.01, 0.02, 0.033), (2, 3, 4), 3, 0.9, 17),
            store.SelectionRow(3, "BTCUSDT", ts, "rsi_14", -0.001, -0.003, 0.001, kept,
                               (0.0, -0.002, math.nan), (2, 3, 4), 3, 0.9, 17)]


def test_rows_round_trip_through_a_real_file(tmp_path: Path) -> None:
    """What is written is what is read back, NaN included, after reopening the file."""
    rows = _rows(60, False)
    store.insert(open_db(tmp_path / "s.db"), rows)
    back = store.latest(open_db(tmp_path / "s.db"), "BTCUSDT")
    assert [r._replace(per_fold=()) for r in back] == [r._replace(per_fold=()) for r in rows]
    assert back[1].per_fold[:2] == (0.0, -0.002) and math.isnan(back[1].per_fold[2])


def test_latest_is_the_newest_selection_and_history_keeps_all() -> None:
    """latest() gives the newest selection's rows only; history() every selection in order."""
    db = open_db(":memory:")
    store.insert(db, _rows(60, False))
    store.insert(db, _rows(120, True))
    assert {r.ts_event for r in store.latest(db, "BTCUSDT")} == {120}
    assert [[r.kept for r in s] for s in store.history(db, "BTCUSDT")] == [[True, False],
                                                                        [True, True]]
    assert store.latest(db, "ETHUSDT") == []
