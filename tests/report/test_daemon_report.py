"""The paper daemon's periodic report: an APScheduler job, a child process, one directory each."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import DEADLINE, wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_paper_daemon_writes_a_report_every_period(tmp_path: Path) -> None:
    """``daemon.py --paper --feed sim`` with ``report.every_hours`` of ~3 s writes several
    reports while it runs, each complete and self-contained, the later ones covering only what
    came after the previous one; the run itself is unharmed."""
    reports = tmp_path / "reports"
    (tmp_path / "c.toml").write_text(
        '[metrics]\nport = 0\n[batch]\nenabled = false\n[bars]\ninterval = "10s"\n'
        f'[report]\nevery_hours = 0.0008\ndir = "{reports}"\n')
    log = tmp_path / "daemon.log"
    # A tape of 36 s at speed 200, stopped (SIGTERM, the normal shutdown) as soon as the daemon
    # has logged two periodic reports: however long a busy machine takes to write them.
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "daemon.py", "--paper", "--feed", "sim", "--seed", "3", "--config",
             str(tmp_path / "c.toml"), "--db", str(tmp_path / "p.db"), "--sim-seconds", "7200",
             "--speed", "200", "--report", str(tmp_path)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, text=True)
        try:
            wait_until(lambda: proc.poll() is not None
                       or log.read_text().count("report_written") >= 2,
                       timeout=5 * DEADLINE, every=0.1, what="two periodic reports")
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=5 * DEADLINE)
        finally:
            proc.kill()
    stderr = log.read_text()
    assert code == 0, stderr[-3000:]
    written = sorted(reports.glob("paper-run1-*/report.html"))
    assert len(written) >= 2, stderr[-3000:]
    assert len(re.findall(r"report_written", stderr)) == len(written)
    first, second = (p.read_text(encoding="utf-8") for p in written[:2])
    for page in (first, second):
        drawn = set(re.findall(r'<img id="fig-([a-z_]+)"', page))  # what the period holds
        assert {"equity", "price", "learners", "feed_health"} <= drawn, drawn
        assert page.count("data:image/png;base64,") == len(drawn) and "feed-health" in page
    assert "from 20" in second and "from 20" not in first  # the second starts where one ended
    assert (tmp_path / "report.html").is_file()  # and the end-of-run report of --feed sim


def test_a_failed_periodic_report_is_logged_and_its_period_carried_over(tmp_path: Path) -> None:
    """When the report cannot be written (its directory is a file) the job returns None and
    keeps the window's start, so the next report covers the failed period too."""
    from ares_stream.config import Config, replace_values
    from ares_stream.daemon.ingest import build_ingest
    from ares_stream.daemon.lifecycle import Daemon, DaemonOptions
    from ares_stream.store.db import open_db
    from ares_stream.store.runs import RunStore

    blocker = tmp_path / "reports"
    blocker.write_text("not a directory")
    cfg = replace_values(Config(), {"report": {"dir": str(blocker)},
                                    "batch": {"enabled": False},
                                    "feed": {"symbols": ["SIMUSDT"]}})
    daemon = Daemon(cfg, DaemonOptions(mode="paper", db_path=tmp_path / "p.db"))
    daemon.store = RunStore(open_db(tmp_path / "p.db"), mode="paper", config={}, sources=[])
    daemon.store.close("finished", {})
    daemon.ingest, _ = build_ingest(cfg, daemon.store)
    daemon.ingest.engine.last_ts = 5 * 10**18
    assert daemon.write_report(0) is None and daemon._reported_until == 0
    blocker.unlink()
    written = daemon.write_report(0)
    assert written is not None and written.is_file() and daemon._reported_until == 5 * 10**18
