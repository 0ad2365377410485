"""`ares-stream replay` end to end: real captures, candles, errors a user can make."""

from __future__ import annotations

import gzip
import io
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ares_stream.cli import main
from ares_stream.config import Config, load_config, replace_values
from ares_stream.replay import run_replay
from ares_stream.sim.simulator import write_recording
from tests.conftest import shared_path


def rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "select symbol, ts_event, ts_init, model, horizon, proba, value, close, ts_label,"
            " forward_return, label, loss from predictions order by symbol, ts_event"
        ).fetchall()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "sample.gz"
    write_recording(path, seconds=3 * 3600, seed=3)
    return path


def test_replay_sample_prints_summary_and_writes_db(sample: Path, tmp_path: Path, capsys) -> None:
    """Replaying a simulated recording exits 0, prints the summary and stores predictions."""
    db = tmp_path / "run.db"
    assert main(["replay", str(sample), "--interval", "10s", "--db", str(db), "--quiet"]) == 0
    out = capsys.readouterr().out
    for word in ("frames", "bars", "predictions", "log loss", "constant baseline", "drift events",
                 "throughput", str(db)):
        assert word in out
    assert len(rows(db)) > 500


def test_replaying_twice_stores_identical_predictions(sample: Path, tmp_path: Path) -> None:
    """The same input replayed twice gives identical prediction rows."""
    for name in ("a.db", "b.db"):
        assert main(["replay", str(sample), "--interval", "10s", "--db",
                     str(tmp_path / name), "--quiet"]) == 0
    assert rows(tmp_path / "a.db") == rows(tmp_path / "b.db")


def test_truncated_recording_replays_up_to_last_whole_line(sample: Path, tmp_path: Path) -> None:
    """A recording cut off mid-write still replays what it holds."""
    raw = gzip.decompress(sample.read_bytes())
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(raw)[: len(gzip.compress(raw)) // 2])
    assert main(["replay", str(cut), "--interval", "10s", "--db", str(tmp_path / "c.db"),
                 "--quiet"]) == 0
    assert len(rows(tmp_path / "c.db")) > 100


def test_missing_path_is_one_line_error(tmp_path: Path, capsys) -> None:
    """A path that does not exist ends with exit 2 and one line naming it."""
    assert main(["replay", str(tmp_path / "nope.gz"), "--db", str(tmp_path / "x.db")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.gz" in err[0]


def test_bad_config_key_is_one_line_error(sample: Path, tmp_path: Path, capsys) -> None:
    """An unknown config key ends with exit 2 and a line naming the key and the file."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[labels]\nhorizn = 3\n")
    assert main(["replay", str(sample), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "labels.horizn" in err and "bad.toml" in err


def test_bad_row_names_file_and_line_and_skip_bad_counts(tmp_path: Path, capsys) -> None:
    """A malformed CSV row stops the replay naming file:line; --skip-bad carries on."""
    csv = tmp_path / "BTCUSDT-aggTrades-2024-01-01.csv"
    good = [f"{i},100.{i % 10},1.0,{i},{i},{1_700_000_000_000 + i * 1000},True,True"
            for i in range(1, 400)]
    csv.write_text("\n".join([*good[:100], "101,abc,1.0,101,101,1700000100000,True,True",
                              *good[101:]]) + "\n")
    assert main(["replay", str(csv), "--db", str(tmp_path / "a.db"), "--quiet"]) == 2
    assert f"{csv}:101" in capsys.readouterr().err
    assert main(["replay", str(csv), "--db", str(tmp_path / "b.db"), "--quiet",
                 "--skip-bad"]) == 0


def test_cli_error_shows_no_traceback(tmp_path: Path) -> None:
    """Run as a process, a user error prints no Python traceback."""
    proc = subprocess.run([sys.executable, "-m", "ares_stream.cli", "replay",
                           str(tmp_path / "missing.gz")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_replay_real_btcusdt_captures(tmp_path: Path, capsys) -> None:
    """The two real BTCUSDT captures replay with no rejected frame and no id gap."""
    files = [str(shared_path(f"ws/binance-spot-btcusdt-2024080{d}.gz")) for d in (8, 9)]
    db = tmp_path / "ws.db"
    assert main(["replay", *files, "--interval", "1s", "--db", str(db), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "(0 rejected)" in out
    with sqlite3.connect(db) as conn:
        kinds = conn.execute("select kind, count(*) from feed_health group by kind").fetchall()
    assert kinds == [("totals", 1)]
    with sqlite3.connect(db) as conn:
        (frames,) = conn.execute("select count from feed_health where kind = 'totals'").fetchone()
    assert frames == 99_574
    assert len(rows(db)) > 300


def test_replay_real_hourly_candles_records_the_outage_gaps(tmp_path: Path) -> None:
    """The hourly candle file's 28 exchange-outage gaps (128 bars) are recorded as gaps."""
    path = shared_path("klines/BTCUSDT-1h-2017-08-17_2024-04-21.csv.gz")
    db = tmp_path / "h.db"
    cfg = tmp_path / "hourly.toml"
    cfg.write_text("[batch]\nenabled = false\n")  # the gaps, not 2,400 daily validations
    assert main(["replay", str(path), "--db", str(db), "--quiet", "--config", str(cfg)]) == 0
    with sqlite3.connect(db) as conn:
        n, missing = conn.execute(
            "select count(*), sum(count) from feed_health where kind = 'gap'").fetchone()
    assert (n, missing) == (28, 128)


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("kind", ["recording", "candles"])
def test_progress_line_shows_rate_and_eta(kind: str, sample: Path, tmp_path: Path) -> None:
    """On a terminal the replay shows frames, frames/s, a share done and an ETA, then clears."""
    path = sample if kind == "recording" else shared_path(
        "klines/BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz")
    out = FakeTerminal()
    cfg = replace_values(Config(), {"bars": {"interval": "1s"}, "batch": {"enabled": False}})
    run_replay([str(path)], cfg, db_path=tmp_path / "p.db", progress=out)
    shown = [line for line in out.getvalue().split("\r") if "frames" in line]
    assert shown, "at least one progress line"
    assert all(re.search(r"\d+\.\d% +[\d,]+ frames +[\d,]+/s +ETA +\d+\.\d s", s) for s in shown)
    assert out.getvalue().endswith("\r")


def test_demo_config_detects_the_planted_concept_drift(tmp_path: Path) -> None:
    """With the demo config, the simulator's sign flip is detected as one drift within 200 bars."""
    path = tmp_path / "day.gz"
    sched = write_recording(path, seconds=86_400, seed=7)
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "demo.toml")
    run_replay([str(path)], cfg, db_path=tmp_path / "d.db")
    with sqlite3.connect(tmp_path / "d.db") as conn:
        drifts = [t for (t,) in conn.execute("select ts_event from drift_events")]
    (planted,) = sched.concept_drifts_ns
    assert len(drifts) == 1
    assert 0 < drifts[0] - planted <= 200 * 10 * 10**9


def test_hourly_candles_that_could_never_train_a_booster_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With 1h candles 30 buffer days hold 720 samples, fewer than min_rows = 2000: the replay
    stops at the first candle with one line naming the keys, instead of silently training
    nothing."""
    src = shared_path("klines/BTCUSDT-1h-2017-08-17_2024-04-21.csv.gz")
    with gzip.open(src, "rt") as fh:
        head = "".join(next(fh) for _ in range(50))
    csv = tmp_path / "BTCUSDT-1h-head.csv"
    csv.write_text(head)
    cfg = tmp_path / "month.toml"
    cfg.write_text("[batch]\nbuffer_days = 30.0\n")
    assert main(["replay", str(csv), "--db", str(tmp_path / "h.db"), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "BTCUSDT has 1h candles" in err[0]
    assert "batch.buffer_days" in err[0] and "batch.min_rows" in err[0]
