"""The README's first command, ``python3 tasks.py demo``, run as a user runs it (shortened to six
simulated hours at 2000x): the paper daemon against the simulated exchange, then the summary."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_demo_task_exits_0_and_lists_planted_and_detected_drifts(tmp_path: Path) -> None:
    """The demo exits 0; its summary lists the planted concept drift, the drift event that
    caught it within 200 bars, no false alarm, the boosters and paper PnL; the report exists."""
    if not (ROOT / ".venv" / ".installed").exists():
        pytest.skip("tasks.py demo runs in the project's .venv: `python3 tasks.py test` makes it")
    done = subprocess.run(
        [sys.executable, "tasks.py", "demo", "--sim-seconds", "21600", "--speed", "2000",
         "--db", str(tmp_path / "paper.db"), "--report", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    found = re.search(r"planted drift \+3:00:00 +detected at \+3:\d\d:\d\d, (\d+) bars later", out)
    assert found and int(found[1]) <= 200, out
    assert "false alarms 0" in out and "volatility switches     +1:30:00, +3:00:00" in out
    assert re.search(r"boosters trained +[1-9]", out) and "paper trading" in out
    page = (tmp_path / "report.html").read_text()
    assert "Planted regimes" in page and page.count("data:image/png;base64,") == 4
    assert "Traceback" not in done.stderr
