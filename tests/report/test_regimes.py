"""The risk section's regime table and stress results (ares_stream/report/regimes.py)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ares_stream.report.html import page
from ares_stream.report.model import ReportData, Scores
from ares_stream.report.regimes import by_regime, save_stress, stress_results
from ares_stream.validation import regimes

from .conftest import long_data


def _with_scores(data: ReportData, seed: int = 1) -> ReportData:
    """Labels and traded probabilities on every other bar of the long run's symbol."""
    rng = np.random.default_rng(seed)
    t = data.prices[0].time[::2]
    label = (rng.random(t.size) < 0.4).astype(float)
    p = np.clip(0.4 + 0.2 * (label - 0.4) + rng.normal(0, 0.1, t.size), 0.01, 0.99)
    data.scores = Scores(t, label, p, p, p, np.full(t.size, "BTCUSDT", dtype=object))
    data.regimes = by_regime(data)
    return data


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_regime_table_scores_the_traded_probability_per_causal_regime() -> None:
    """Per regime, the rows and log loss equal regimes.table on the run's closes, labels and
    traded probabilities; the account's return over the regime's bars is its PnL."""
    data = _with_scores(long_data(90))
    close, t = data.prices[0].close, data.prices[0].time
    y, p = np.full(t.size, np.nan), np.full(t.size, np.nan)
    y[::2], p[::2] = data.scores.label, data.scores.ensemble
    want = regimes.table(regimes.label(close), y, p)
    got = data.regimes["BTCUSDT"]
    assert [(r.regime, r.n, r.log_loss) for r in got] == [(r.regime, r.n, r.log_loss)
                                                          for r in want]
    assert any(r.pnl != 0.0 for r in got)
    text = _text(page(data, {}))
    assert "By market regime" in text and "BTCUSDT high-vol up" in text


def test_the_last_stress_run_kept_beside_the_database_is_shown(tmp_path: Path) -> None:
    """A stress run saved beside the database comes back as it was and fills the table; a
    damaged file is no stress run (and no error)."""
    db = tmp_path / "run.db"
    save_stress(db, {"ran_at": 10**18, "summary": "stress: all 1 scenarios passed",
                     "scenarios": [{"symbol": "SIMUSDT", "scenario": "crash", "verdict": "PASS",
                                    "return": -0.005, "max_drawdown": 0.006, "fills": 266,
                                    "fees": 29.0, "slippage": 10.8, "kill_switch": "",
                                    "kill_switch_at": None, "skipped": ""}]})
    kept = stress_results(db)
    assert kept["scenarios"][0]["fills"] == 266
    data = long_data(40)
    data.stress = kept
    text = _text(page(data, {}))
    assert "Stress scenarios" in text and "SIMUSDT crash PASS" in text
    assert "stress: all 1 scenarios passed" in text
    Path(f"{db}.stress.json").write_text("{not json", encoding="utf-8")
    assert stress_results(db) == {}
