#!/usr/bin/env python3
"""Project tasks needing nothing but Python 3.11 and pip: ``python3 tasks.py TASK [args]``.

    demo                     the paper daemon against the simulated exchange (README)
    test [PYTEST ARGS]       ruff + mypy + the whole suite on two workers (what CI runs;
                             -n 0: in one process)
    test --latest            the same in .venv-latest, built from the newest releases that
                             pyproject.toml allows: a coming break shows before the lock moves
    test --under-load        the suite --runs times (3) while --burners (2) CPU-bound processes
                             compete for the cores; a table of the results
    lint                     ruff + mypy
    lock                     refresh requirements.lock and requirements-dev.lock (uv)
    bench [NAME] [ARGS]      bench/NAME.py (default: replay)

``.venv`` is made from the lock files — exact versions, every file checked against its hash —
then the project itself is installed with ``--no-deps``; it is made anew whenever a lock file or
pyproject.toml changes, so it never holds a package the lock does not name.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LATEST = ROOT / ".venv-latest"
LOCK = ROOT / "requirements.lock"  # the runtime: what a deployment installs
DEV_LOCK = ROOT / "requirements-dev.lock"  # the runtime's exact pins + the dev tools
BUILD = "setuptools>=68"  # pyproject's build backend, pinned in both locks (--no-build-isolation)
PYTHON = "3.11"  # the oldest Python we support: the locks resolve for it on every platform
WORKERS = 2  # pytest-xdist processes of `test` (-n 0: the suite in one process)


def bin_dir(env: Path) -> Path:
    return env / ("Scripts" if os.name == "nt" else "bin")


def ensure_venv() -> Path:
    """``.venv`` from the dev lock (made anew when a lock or pyproject.toml changed)."""
    stamp = VENV / ".installed"
    digest = _digest(ROOT / "pyproject.toml", LOCK, DEV_LOCK)
    if stamp.exists() and stamp.read_text() == digest:
        return VENV
    print(f"creating .venv from {DEV_LOCK.name}", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    pip = _pip(VENV)
    run([*pip, "--require-hashes", "--no-deps", "-r", str(DEV_LOCK)], quiet=True)
    run([*pip, "--no-deps", "--no-build-isolation", "-e", str(ROOT)], quiet=True)
    stamp.write_text(digest)
    return VENV


def ensure_latest() -> Path:
    """``.venv-latest``: the newest releases pyproject.toml allows, upgraded on every call."""
    if not (bin_dir(LATEST) / "python").exists():
        print("creating .venv-latest", flush=True)
        venv.EnvBuilder(with_pip=True).create(LATEST)
    print("installing the newest releases pyproject.toml allows into .venv-latest", flush=True)
    pip = _pip(LATEST)
    run([*pip, "--upgrade", "pip", "setuptools"], quiet=True)
    run([*pip, "--upgrade", "--upgrade-strategy", "eager", "-e", f"{ROOT}[dev]"], quiet=True)
    _report_drift(LATEST)
    return LATEST


def _pip(env: Path) -> list[str]:
    return [str(bin_dir(env) / "python"), "-m", "pip", "install",
            "--disable-pip-version-check", "-q"]


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.read_bytes() if path.exists() else b"-")
    return h.hexdigest()


def _pins(lock: Path) -> dict[str, str]:
    """``name -> version`` of a lock file (the first pin of a name: Python 3.11's)."""
    pins: dict[str, str] = {}
    for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", lock.read_text(), re.M):
        pins.setdefault(_norm(m[1]), m[2])
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _report_drift(env: Path) -> None:
    """Print which installed releases differ from the dev lock's pins."""
    if not DEV_LOCK.exists():
        return
    out = subprocess.run([str(bin_dir(env) / "python"), "-m", "pip", "list", "--format=freeze",
                          "--disable-pip-version-check"], capture_output=True, text=True).stdout
    pins = _pins(DEV_LOCK)
    moved = [f"{name} {pins[_norm(name)]} -> {version}"
             for name, _, version in (line.partition("==") for line in out.splitlines())
             if _norm(name) in pins and pins[_norm(name)] != version]
    print("newer than the lock: " + (", ".join(moved) if moved else "nothing"), flush=True)


def run(cmd: list[str], quiet: bool = False) -> None:
    """Run ``cmd``; exit with its code if it fails (a quiet one shows its output only then)."""
    result = subprocess.run(cmd, cwd=ROOT, capture_output=quiet, text=True)
    if result.returncode != 0:
        if quiet:
            print(result.stdout, result.stderr, sep="\n", file=sys.stderr)
        sys.exit(result.returncode)


# -- tasks --------------------------------------------------------------------------------------

DEMO_ARGS = ["--paper", "--feed", "sim", "--sim-seconds", "43200", "--speed", "800", "--seed",
             "7", "--config", "configs/demo.toml", "--quiet"]


def demo(args: list[str]) -> None:
    """The paper daemon against the simulated exchange: 12 simulated hours at 800x real time
    (about a minute), then what it learned and a report, under state/demo/. Extra arguments go
    to the daemon (a later flag wins: ``python3 tasks.py demo --sim-seconds 3600``)."""
    env = ensure_venv()
    out = ROOT / "state" / "demo"
    out.mkdir(parents=True, exist_ok=True)
    if "--db" not in args:  # a fresh run every time, never a resumed one
        for suffix in ("", "-wal", "-shm"):
            (out / f"paper.db{suffix}").unlink(missing_ok=True)
    run([str(bin_dir(env) / "python"), str(ROOT / "daemon.py"), *DEMO_ARGS,
         "--db", str(out / "paper.db"), "--report", str(out), *args])


def lint(args: list[str], env: Path | None = None) -> None:
    b = bin_dir(env or ensure_venv())
    run([str(b / "ruff"), "check", "ares_stream", "tests", "bench", "tasks.py", "daemon.py"])
    run([str(b / "mypy"), "ares_stream"])


def test(args: list[str]) -> None:
    """Lint, type-check, then the whole test suite (doctests included)."""
    ap = argparse.ArgumentParser(prog="tasks.py test", add_help=False)
    ap.add_argument("--latest", action="store_true")
    ap.add_argument("--under-load", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--burners", type=int, default=2)
    opts, pytest_args = ap.parse_known_args(args)
    env = ensure_latest() if opts.latest else ensure_venv()
    lint([], env)
    workers = [] if any(a.startswith(("-n", "--numprocesses")) for a in pytest_args) \
        else ["-n", str(WORKERS)]
    pytest = [str(bin_dir(env) / "pytest"), *workers, *pytest_args]
    if opts.under_load:
        sys.exit(under_load(pytest, runs=opts.runs, burners=opts.burners))
    run(pytest)


def under_load(pytest: list[str], *, runs: int, burners: int) -> int:
    """The suite ``runs`` times while ``burners`` processes spin on the CPU; 1 if any failed."""
    spin = [sys.executable, "-c", "while True: pass"]
    procs = [subprocess.Popen(spin) for _ in range(burners)]
    results = []
    try:
        for i in range(1, runs + 1):
            print(f"--- run {i} of {runs}, {burners} CPU burners, load "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
            t = time.monotonic()
            proc = subprocess.Popen([*pytest, "-q", "-p", "no:cacheprovider"], cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert proc.stdout is not None
            last = ""
            for line in proc.stdout:
                sys.stdout.write(line)
                if line.strip():
                    last = line.strip()
            code = proc.wait()
            results.append((i, code, time.monotonic() - t, os.getloadavg()[0], last))
    finally:
        for p in procs:
            p.kill()
            p.wait()
    print(f"\n{'run':>3} {'exit':>4} {'minutes':>7} {'load':>5}  summary")
    for i, code, secs, load, last in results:
        print(f"{i:>3} {code:>4} {secs / 60:7.1f} {load:5.1f}  {last.strip('= ')}")
    return 1 if any(code != 0 for _, code, *_ in results) else 0


def lock(args: list[str]) -> None:
    """Resolve pyproject.toml's ranges to exact versions with hashes, for Python 3.11 on every
    platform (uv's universal resolution), into requirements.lock (runtime + build backend) and
    requirements-dev.lock (the same pins + the dev tools)."""
    env = ensure_venv() if DEV_LOCK.exists() else _bootstrap_uv()
    uv = str(bin_dir(env) / "uv")
    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp) / "build.in"
        build.write_text(BUILD + "\n")
        common = ["pip", "compile", "pyproject.toml", str(build), "--universal",
                  "--python-version", PYTHON, "--generate-hashes", "--no-header",
                  "--annotation-style", "line", "--quiet", "--upgrade", *args]
        for out, extra in ((LOCK, []), (DEV_LOCK, ["--extra", "dev", "-c", str(LOCK)])):
            new = Path(tmp) / out.name
            run([uv, *common, *extra, "-o", str(new)])
            header = (f"# {out.name}: made by `python3 tasks.py lock` (uv pip compile "
                      f"--universal --python-version {PYTHON} --generate-hashes"
                      f"{' --extra dev' if extra else ''}) from pyproject.toml and {BUILD!r}.\n"
                      "# Do not edit: change pyproject.toml, then run `python3 tasks.py lock`.\n")
            out.write_text(header + new.read_text().replace(str(build), "build backend"))
    print(f"wrote {LOCK.name} ({len(_pins(LOCK))} packages) and {DEV_LOCK.name} "
          f"({len(_pins(DEV_LOCK))} packages)")
    shutil.rmtree(ROOT / ".venv-tools", ignore_errors=True)  # the first lock's bootstrap


def _bootstrap_uv() -> Path:
    """A throwaway venv with uv, for the very first lock."""
    tools = ROOT / ".venv-tools"
    venv.EnvBuilder(with_pip=True, clear=True).create(tools)
    run([*_pip(tools), "uv"], quiet=True)
    return tools


def bench(args: list[str]) -> None:
    env = ensure_venv()
    name = args[0] if args and not args[0].startswith("-") else "replay"
    rest = args[1:] if args and not args[0].startswith("-") else args
    run([str(bin_dir(env) / "python"), str(ROOT / "bench" / f"{name}.py"), *rest])


TASKS = {"demo": demo, "test": test, "lint": lint, "lock": lock, "bench": bench}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        sys.exit(__doc__)
    TASKS[sys.argv[1]](sys.argv[2:])
