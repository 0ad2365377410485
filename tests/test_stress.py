"""``ares-stream stress``: a real champion (trained by a replay of the simulator with the demo's
config) through the simulated and historical scenarios, by the real CLI."""

from __future__ import annotations

import gzip
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ares_stream.cli import main
from ares_stream.config import load_config
from ares_stream.replay import run_replay
from ares_stream.sim.simulator import write_recording
from ares_stream.store.db import open_db

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database whose replay promoted a champion booster (10 s bars, configs/demo.toml)."""
    tmp = tmp_path_factory.mktemp("stress")
    rec = tmp / "sim.gz"
    write_recording(rec, seconds=6 * 3600, seed=7)
    path = tmp / "demo.db"
    run_replay([str(rec)], load_config(ROOT / "configs" / "demo.toml"), db_path=path)
    return path


def _counts(path: Path) -> tuple[int, ...]:
    with sqlite3.connect(path) as conn:
        return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                     for t in ("runs", "models", "validations", "fills"))


def test_every_simulated_scenario_runs_in_under_a_minute(
        db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """crash, vol_spike and liquidity each report a verdict, fills, fees, slippage and time."""
    before = _counts(db)
    code = main(["stress", "--db", str(db), "--scenario", "crash", "vol_spike", "liquidity"])
    out = capsys.readouterr().out
    assert code in (0, 1)
    for name in ("crash", "vol_spike", "liquidity"):
        line = next(x for x in out.splitlines() if x.startswith(name))
        assert re.search(r"(PASS|FAIL) +return [-+]\d+\.\d+%, max drawdown \d+\.\d+%, [\d,]+ "
                         r"fills, fees [\d,.]+, slippage [\d,.]+ \([\d,]+ bars, [\d.]+ s\)", line)
        assert float(re.findall(r"([\d.]+) s\)", line)[0]) < 60
    assert "champion booster" in out and out.splitlines()[-1].startswith("stress: ")
    assert _counts(db) == before  # the champion is frozen: nothing trained, nothing written
    from ares_stream.report.data import load  # the run's report shows the stress results

    kept = load(db).stress
    assert [x["scenario"] for x in kept["scenarios"]] == ["crash", "vol_spike", "liquidity"]
    assert kept["summary"] == out.splitlines()[-1]


def test_a_loss_past_the_limit_fails_with_exit_1(
        db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Limits no scenario can meet: FAIL, exit 1, and the summary says which failed."""
    cfg = tmp_path / "tight.toml"
    cfg.write_text("[trading]\nfee_bps = 1.0\nenter = 0.6\n"
                   "[stress]\nmax_loss = 0.000001\nmax_drawdown = 0.000001\n")
    assert main(["stress", "--db", str(db), "--config", str(cfg), "--scenario", "crash"]) == 1
    out = capsys.readouterr().out
    assert "crash        FAIL" in out
    assert out.splitlines()[-1].startswith("stress: FAILED — 1 of 1 scenarios past the limits")


def test_a_kill_switch_is_reported_with_its_time(
        db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A drawdown switch set at a hair trips; the report names it and when, into the run."""
    cfg = tmp_path / "switch.toml"
    cfg.write_text("[trading]\nfee_bps = 1.0\nenter = 0.6\nmax_drawdown = 0.0005\n")
    main(["stress", "--db", str(db), "--config", str(cfg), "--scenario", "crash"])
    out = capsys.readouterr().out
    assert re.search(r"kill switch: drawdown kill switch at 2025-01-01 \d\d:\d\d:\d\d UTC "
                     r"\(\+\d:\d\d:\d\d in\)", out)


def test_coarser_candles_skip_the_historical_scenario(
        db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Hourly candles cannot make 10 s bars: historical is skipped, and says why."""
    path = _candles(tmp_path / "h.csv.gz", step_s=3600, n=500)
    assert main(["stress", "--db", str(db), "--scenario", "historical",
                 "--candles", str(path)]) == 0
    out = capsys.readouterr().out
    assert "historical   SKIPPED  h.csv.gz has 1h candles; the champion trades 10s bars" in out
    assert out.splitlines()[-1] == "stress: all 0 scenarios passed, 1 skipped"


def test_finer_candles_are_resampled_and_the_worst_windows_replayed(
        db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """1 s candles become the champion's 10 s bars; the 3 worst falls run, worst first."""
    path = _candles(tmp_path / "s.csv", step_s=1, n=40_000)
    main(["stress", "--db", str(db), "--scenario", "historical", "--candles", str(path)])
    out = capsys.readouterr().out
    runs = [x for x in out.splitlines() if x.startswith("historical 20")]
    assert len(runs) == 3 and all(re.search(r"(PASS|FAIL) +return", x) for x in runs)
    falls = [float(f) for f in re.findall(r"the close fell ([\d.]+)%", out)]
    assert falls == sorted(falls, reverse=True) and falls[0] > 0


def _candles(path: Path, *, step_s: int, n: int) -> Path:
    """A candle CSV of a seeded random walk with a few sharp falls."""
    rng = np.random.default_rng(3)
    steps = rng.normal(0, 0.001, n)
    for at in (n // 4, n // 2, 3 * n // 4):
        steps[at:at + 200] -= 0.0005
    close = 60_000 * np.exp(np.cumsum(steps))
    open_ms = 1_735_689_600_000 + np.arange(n) * step_s * 1000
    rows = "".join(f"{t},{o:.2f},{max(o, c):.2f},{min(o, c):.2f},{c:.2f},1.5\n"
                   for t, o, c in zip(open_ms, np.r_[close[0], close[:-1]], close, strict=True))
    text = "open_time,open,high,low,close,volume\n" + rows
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize(("args", "message"), [
    (["--db", "{tmp}/nothing.db"], "nothing.db: no such database"),
    (["--db", "{empty}"], "no champion booster to stress: run a replay or the daemon"),
    (["--db", "{db}", "--scenario", "meltdown"], "unknown scenario 'meltdown' (known: crash, "
                                                 "vol_spike, liquidity, historical)"),
    (["--db", "{db}", "--scenario", "historical", "--candles", "{tmp}/no.csv"],
     "--candles {tmp}/no.csv: no such file"),
])
def test_a_users_mistake_is_one_line_and_exit_2(
        db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        message: str) -> None:
    """A missing database, one without champions, a typo, a missing file: one line, exit 2."""
    empty = tmp_path / "empty.db"
    open_db(empty).conn.close()
    fill = {"tmp": str(tmp_path), "empty": str(empty), "db": str(db)}
    assert main(["stress", *[a.format(**fill) for a in args]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(**fill) in err
