"""The feature drift check in a replay (ares_stream/batch/featuredrift.py)."""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

import pytest

from ares_stream.batch.featuredrift import windows
from ares_stream.config import load_config, replace_values
from ares_stream.learners.buffer import SampleBuffer
from ares_stream.replay import run_replay
from ares_stream.sim.simulator import write_recording

START = 1_735_689_600 * 10**9
HOUR = 3600 * 10**9

ROOT = Path(__file__).resolve().parents[2]


def replay(tmp: Path, vol_regimes: tuple[tuple[float, float], ...]) -> sqlite3.Connection:
    path = tmp / "six.gz"
    write_recording(path, seconds=6 * 3600, seed=5, vol_regimes=vol_regimes,
                    concept=((0.0, 0.8),))
    cfg = replace_values(load_config(ROOT / "configs" / "demo.toml"), {"drift": {  # mechanics,
        "feature_every": "10m", "feature_window": 200,  # not the measured defaults
        "psi_null_factor": 1.0, "features_drifted": 2}})
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



def test_the_windows_hold_the_training_rows_and_only_rows_after_them() -> None:
    """The reference is the rows from train_start to train_end; the recent window the newest
    rows after train_end (none before that many exist), stamped with the newest row's time."""
    buf = SampleBuffer("X", ["a", "b"])
    for i in range(1, 501):
        buf.add(i, {"a": float(i), "b": -float(i)}, i % 2, 0.0)
    assert windows(buf, 101, 300, 201) is None  # only 200 rows after train_end
    w = windows(buf, 101, 300, 150)
    assert w is not None and w.ts_event == 500
    assert w.reference[:, 0].tolist() == [float(i) for i in range(101, 301)]
    assert w.recent[:, 0].tolist() == [float(i) for i in range(351, 501)]


@pytest.mark.slow
def test_no_check_reads_a_value_from_after_its_event_time(tmp_path: Path) -> None:
    """Replaying the recording cut at 3 h gives exactly the checks (PSI, KS, threshold, verdict,
    reference model) the full 4 h replay stored before 3 h: nothing later reached them."""
    full = tmp_path / "full.gz"
    write_recording(full, seconds=4 * 3600, seed=8, vol_regimes=((0.0, 1.0), (0.5, 2.0)),
                    concept=((0.0, 0.8),))
    cut = START + 3 * HOUR
    part = tmp_path / "part.gz"
    with gzip.open(full, "rt") as src, gzip.open(part, "wt") as dst:
        for line in src:
            if int(line.split(" ", 1)[0]) >= cut:
                break
            dst.write(line)
    cfg = replace_values(load_config(ROOT / "configs" / "demo.toml"), {"drift": {
        "feature_every": "10m", "feature_window": 100}})
    rows = []
    for path in (full, part):
        db = tmp_path / f"{path.stem}.db"
        run_replay([str(path)], cfg, db_path=db)
        with sqlite3.connect(db) as conn:
            rows.append(conn.execute(
                "SELECT ts_event, feature, psi, ks, threshold, drifted, model_id FROM "
                "feature_drift WHERE ts_event < ? ORDER BY ts_event, feature",
                (cut - HOUR // 6,)).fetchall())
    assert len({r[0] for r in rows[0]}) >= 5, "checks to compare"
    assert rows[0] == rows[1]
