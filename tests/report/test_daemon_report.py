"""The paper daemon's periodic report: an APScheduler job, a child process, one directory each."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_paper_daemon_writes_a_report_every_period(tmp_path: Path) -> None:
    """``daemon.py --paper --feed sim`` with ``report.every_hours`` of ~3 s writes several
    reports while it runs, each complete and self-contained, the later ones covering only what
    came after the previous one; the run itself is unharmed."""
    reports = tmp_path / "reports"
    (tmp_path / "c.toml").write_text(
        '[metrics]\nport = 0\n[batch]\nenabled = false\n[bars]\ninterval = "10s"\n'
        f'[report]\nevery_hours = 0.0008\ndir = "{reports}"\n')
    done = subprocess.run(
        [sys.executable, "daemon.py", "--paper", "--feed", "sim", "--seed", "3", "--config",
         str(tmp_path / "c.toml"), "--db", str(tmp_path / "p.db"), "--sim-seconds", "2400",
         "--speed", "200", "--report", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    written = sorted(reports.glob("paper-run1-*/report.html"))
    assert len(written) >= 2, done.stderr[-3000:]
    assert len(re.findall(r"report_written", done.stderr)) == len(written)
    first, second = (p.read_text(encoding="utf-8") for p in written[:2])
    for page in (first, second):
        assert page.count("data:image/png;base64,") == 4 and "feed-health" in page
    assert "from 20" in second and "from 20" not in first  # the second starts where one ended
    assert (tmp_path / "report.html").is_file()  # and the end-of-run report of --feed sim
