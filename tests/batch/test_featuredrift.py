"""The feature drift check in a replay (ares_stream/batch/featuredrift.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ares_stream.config import load_config, replace_values
from ares_stream.replay import run_replay
from ares_stream.sim.simulator import write_recording

ROOT = Path(__file__).resolve().parents[2]


def replay(tmp: Path, vol_regimes: tuple[tuple[float, float], ...]) -> sqlite3.Connection:
    path = tmp / "six.gz"
    write_recording(path, seconds=6 * 3600, seed=5, vol_regimes=vol_regimes,
                    concept=((0.0, 0.8),))
    cfg = replace_values(load_config(ROOT / "configs" / "demo.toml"), {"drift": {
        "feature_every": "10m", "feature_window": 200}})
    run_replay([str(path)], cfg, db_path=tmp / "run.db")
    return sqlite3.connect(tmp / "run.db")


@pytest.mark.slow
def test_a_volatility_shift_raises_one_features_event_and_an_early_refit(tmp_path: Path) -> None:
    """Volatility tripled half-way: after the switch the check stores drifted rows (the volatility
    features among them), a "features" drift event follows, then a refit from scratch."""
    conn = replay(tmp_path, ((0.0, 1.0), (0.5, 3.0)))
    switch = 1_735_689_600 * 10**9 + 3 * 3600 * 10**9
    events = conn.execute("select ts_event, action from drift_events "
                          "where detector = 'features'").fetchall()
    assert events and all(ts > switch for ts, _ in events)
    assert conn.execute("select count(*) from feature_drift where drifted = 1 and ts_event > ?",
                        (switch,)).fetchone()[0] >= 2
    assert "vol_ewma" in events[0][1]
    judged = conn.execute("select psi, threshold, drifted from feature_drift "
                          "where psi is not null").fetchall()
    assert all(bool(d) == (t is not None and p > t) for p, t, d in judged)
    assert any(t is not None for _, t, _ in judged)
    first = events[0][0]
    assert conn.execute("select count(*) from models where how = 'refit' and created >= ?",
                        (first,)).fetchone()[0] >= 1

