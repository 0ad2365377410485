"""``[monitor] enabled``: the daemon serves its dashboard from a child process that reads the
database read-only, ends with the daemon (even killed with SIGKILL), and never stops the daemon
when it cannot start."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from ares_stream.sim.exchange import Faults, Tape
from tests.conftest import wait_until
from tests.daemon.conftest import SYMBOL
from tests.daemon.test_ingest import exchange_in_thread
from tests.paper import NO_BATCH, count, paper_daemon, write_config

MONITOR = NO_BATCH + """
[monitor]
enabled = true
port = {port}
"""


def daemon(urls: dict[str, str], tmp: Path) -> subprocess.Popen[str]:
    return paper_daemon(urls, tmp, "--db", str(tmp / "paper.db"), symbols=SYMBOL)


def events(tmp: Path, name: str) -> list[dict[str, Any]]:
    out = []
    for line in (tmp / "daemon.log").read_text().splitlines():
        if f'"{name}"' in line:
            out.append(json.loads(line))
    return out


def gone(pid: int) -> bool:
    """The process ended (a zombie nobody reaped counts: it runs no more)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state


def snapshot(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "api/snapshot", timeout=30) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def test_the_daemon_serves_its_dashboard_and_a_kill_ends_it(tape: Tape, tmp_path: Path) -> None:
    write_config(tmp_path, MONITOR.format(port=0))
    with exchange_in_thread(tape, rate=300, faults=Faults()) as urls:
        proc = daemon(urls, tmp_path)
        try:
            wait_until(lambda: events(tmp_path, "dashboard_started") or proc.poll() is not None,
                       what="the dashboard's URL")
            started = events(tmp_path, "dashboard_started")[0]
            url, child = started["url"], started["pid"]
            assert url.startswith("http://127.0.0.1:")
            wait_until(lambda: count(tmp_path / "paper.db", "predictions") > 0,
                       what="a bar in the file")
            wait_until(lambda: snapshot(url).get("state") == "live", what="the dashboard live")
            assert snapshot(url)["run"]["mode"] == "paper"
            proc.kill()
            proc.wait(timeout=60)
            wait_until(lambda: gone(child), what="the dashboard to end with its daemon")
        finally:
            proc.kill()
            proc.wait(timeout=60)


def test_a_dashboard_that_cannot_start_is_a_warning_and_the_daemon_goes_on(
        tape: Tape, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        write_config(tmp_path, MONITOR.format(port=port))
        with exchange_in_thread(tape, rate=300, faults=Faults()) as urls:
            proc = daemon(urls, tmp_path)
            try:
                wait_until(lambda: events(tmp_path, "dashboard_failed") or proc.poll() is not None,
                           what="the dashboard's failure")
                failed = events(tmp_path, "dashboard_failed")[0]
                assert str(port) in failed["error"] and failed["level"] == "warning"
                wait_until(lambda: count(tmp_path / "paper.db", "predictions") > 0
                           or proc.poll() is not None, what="a bar in the file")
                assert proc.poll() is None
            finally:
                proc.terminate()
                assert proc.wait(timeout=120) == 0
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()
