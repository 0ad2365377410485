#!/usr/bin/env python3
"""Project tasks needing nothing but Python 3.11 and pip: ``python3 tasks.py demo|test|bench|lint``.

Each task creates ``.venv`` and installs the project into it when missing (or when pyproject.toml
changed), then runs inside it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed"


def ensure_venv() -> None:
    """Create .venv and install the project with its dev extras, once per pyproject change."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    if not (BIN / "python").exists():
        print("creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    print("installing ares-stream and its dependencies into .venv", flush=True)
    run([*pip, "--upgrade", "pip"], quiet=True)
    run([*pip, "-e", f"{ROOT}[dev]"], quiet=True)
    STAMP.write_text(digest)


def run(cmd: list[str], quiet: bool = False) -> None:
    """Run ``cmd``; a quiet one shows its output only when it fails."""
    result = subprocess.run(cmd, cwd=ROOT, capture_output=quiet, text=True)
    if result.returncode != 0:
        if quiet:
            print(result.stdout, result.stderr, sep="\n", file=sys.stderr)
        sys.exit(result.returncode)


def demo() -> None:
    """The paper daemon against the simulated exchange: 12 simulated hours at 800x real time
    (about a minute), then what it learned and a report, under state/demo/. Extra arguments go
    to the daemon (a later flag wins: ``python3 tasks.py demo --sim-seconds 3600``)."""
    out = ROOT / "state" / "demo"
    out.mkdir(parents=True, exist_ok=True)
    if "--db" not in sys.argv[2:]:  # a fresh run every time, never a resumed one
        for suffix in ("", "-wal", "-shm"):
            (out / f"paper.db{suffix}").unlink(missing_ok=True)
    run([str(BIN / "python"), str(ROOT / "daemon.py"), "--paper", "--feed", "sim",
         "--sim-seconds", "43200", "--speed", "800", "--seed", "7",
         "--config", str(ROOT / "configs" / "demo.toml"), "--db", str(out / "paper.db"),
         "--report", str(out), "--quiet", *sys.argv[2:]])


def lint() -> None:
    run([str(BIN / "ruff"), "check", "ares_stream", "tests", "bench", "tasks.py", "daemon.py"])
    run([str(BIN / "mypy"), "ares_stream"])


def test() -> None:
    """Lint, type-check, then the whole test suite (doctests included)."""
    lint()
    run([str(BIN / "pytest"), *sys.argv[2:]])


def bench() -> None:
    run([str(BIN / "python"), str(ROOT / "bench" / "replay.py"), *sys.argv[2:]])


TASKS = {"demo": demo, "test": test, "lint": lint, "bench": bench}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        sys.exit(f"usage: python3 tasks.py {{{'|'.join(TASKS)}}} [args]")
    ensure_venv()
    TASKS[sys.argv[1]]()
