"""Why each trade: an order a bar's decision sends stores the top SHAP contributions of the
booster prediction behind it; a kill switch's sale stores none. Real booster, real SQLite file."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np

from ares_stream.learners import booster as bst
from ares_stream.learners.importance import TOP_K, Reason, contributions
from ares_stream.learners.registry import Registry
from ares_stream.store.db import open_db
from ares_stream.store.importance import reasons
from ares_stream.store.trading import TradingStore
from ares_stream.trading.paper import PaperBroker
from tests.trading.test_paper import BPS, MIN, MS, SYM, T0, flush, step, trade

FEATURES = ("ret_1", "flow_imb", "vol_20", "spread", "rsi_14", "ema_gap")


def _booster() -> bst.TrainedBooster:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1_000, len(FEATURES)))
    y = (X[:, 1] + 0.5 * X[:, 0] + 0.3 * rng.normal(size=1_000) > 0).astype(float)
    return bst.fit(X, y, np.arange(1_000), FEATURES, bst.BoosterSettings(rounds_refit=30))


def test_an_order_stores_the_top_contributions_of_its_prediction(tmp_path: Path) -> None:
    """The order's reasons rows exist, rank 1..k, name the booster's real features with the
    bar's values, and reproduce its top contributions; a kill switch's sale has none."""
    db = open_db(tmp_path / "paper.db")
    tb = _booster()
    model_id = Registry(db).add_booster(SYM, tb, created=0).id
    x = {"ret_1": 0.4, "flow_imb": 1.5, "vol_20": -0.2, "spread": 0.1, "rsi_14": 0.0,
         "ema_gap": -0.7}
    asked: list[str] = []

    def explain(symbol: str) -> tuple[int | None, list[Reason]]:
        asked.append(symbol)
        return model_id, contributions(tb, x)

    broker = PaperBroker(BPS, TradingStore(db, 1))
    broker.explain = explain
    step(broker, T0 + MIN, 100.0, 0.5)  # no order: never asked
    assert asked == []
    step(broker, T0 + 2 * MIN, 100.0, 0.7)  # BUY
    broker.on_trade(trade(T0 + 2 * MIN + 60 * MS, 100.0))  # fills it
    broker.flatten(T0 + 2 * MIN + 70 * MS, "test")  # a kill switch's SELL: no prediction
    flush(broker)
    got = reasons(db, 1)
    assert asked == [SYM] and list(got) == [f"r1-{SYM}-{T0 + 2 * MIN}"]
    rows = next(iter(got.values()))
    assert [r["rank"] for r in rows] == list(range(1, TOP_K + 1))
    assert {r["feature"] for r in rows} <= set(FEATURES) and rows[0]["feature"] == "flow_imb"
    assert all(r["value"] == x[r["feature"]] and r["model_id"] == model_id for r in rows)
    want = contributions(tb, x)
    assert [r["contribution"] for r in rows] == [w.contribution for w in want]
    with sqlite3.connect(tmp_path / "paper.db") as conn:  # the order row it references exists
        assert conn.execute("SELECT count(*) FROM orders o JOIN order_reasons r "
                            "ON o.client_id = r.client_id").fetchone()[0] == TOP_K
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 2


def test_explaining_a_trade_costs_under_a_millisecond() -> None:
    """The top-k contributions of one row of a 100-tree booster: under 1 ms (median)."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2_000, len(FEATURES)))
    tb = bst.fit(X, (X[:, 1] > 0).astype(float), np.arange(2_000), FEATURES,
                 bst.BoosterSettings())
    x = dict(zip(FEATURES, X[0], strict=True))
    times = []
    for _ in range(200):
        started = time.perf_counter()
        contributions(tb, x)
        times.append(time.perf_counter() - started)
    assert float(np.median(times)) < 1e-3  # measured: ~0.2 ms, 90th percentile ~0.35 ms
