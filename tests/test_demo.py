"""The README's first command, ``python3 tasks.py demo``, as a user runs it (shortened to six
simulated hours at 2000x): the paper daemon against the simulated exchange, then the summary."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_task_exits_0_and_lists_planted_and_detected_drifts(tmp_path: Path) -> None:
    """The demo exits 0; its summary lists the planted concept drift, the drift event that
    caught it within 200 bars, no false alarm, the boosters and paper PnL; the report exists.

    The daemon runs with the demo task's own arguments (``tasks.DEMO_ARGS``) in whatever
    environment runs the tests — what ``tasks.py demo`` adds is only making ``.venv``."""
    spec = importlib.util.spec_from_file_location("tasks", ROOT / "tasks.py")
    assert spec is not None and spec.loader is not None
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    done = subprocess.run(
        [sys.executable, "daemon.py", *tasks.DEMO_ARGS, "--sim-seconds", "21600", "--speed",
         "2000", "--db", str(tmp_path / "paper.db"), "--report", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    found = re.search(r"planted drift \+3:00:00 +detected at \+3:\d\d:\d\d, (\d+) bars later", out)
    assert found and int(found[1]) <= 200, out
    assert "false alarms 0" in out and "volatility switches     +1:30:00, +3:00:00" in out
    assert re.search(r"boosters trained +[1-9]", out) and "paper trading" in out
    page = (tmp_path / "report.html").read_text()
    # equity, the risk section's fan chart, price, learners, feed health; what the models use:
    # importance, the online learner's coefficients, the drift timeline
    assert "Planted regimes" in page and page.count("data:image/png;base64,") == 8
    assert "Traceback" not in done.stderr
