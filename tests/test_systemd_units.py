"""The systemd units: required directives, systemd-analyze verify and security, MDWE safety."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNITS = {"live": ROOT / "systemd" / "ares-stream.service",
         "paper": ROOT / "systemd" / "ares-stream-paper.service"}
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
INSTALLED_PYTHON = "/opt/ares-stream/.venv/bin/python"
# Directives that differ between the two units on purpose; every other line must be equal.
PER_UNIT = {"Description", "ExecStart", "WorkingDirectory", "StateDirectory", "EnvironmentFile",
            "InaccessiblePaths"}


def parse(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as ordered (key, value) lists (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def values(path: Path, section: str, key: str) -> list[str]:
    return [v for k, v in parse(path)[section] if k == key]


def one(path: Path, section: str, key: str) -> str:
    found = values(path, section, key)
    assert len(found) == 1, f"{path.name}: [{section}] {key}= appears {len(found)} times"
    return found[0]


def seconds(text: str) -> float:
    """A systemd time span in seconds ("45", "45s", "1min 30s")."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    return sum(float(n) * units[u] for n, u in parts)


def runnable_copy(unit: Path, tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at this checkout's interpreter and daemon.py."""
    text = unit.read_text().replace(INSTALLED_PYTHON, sys.executable)
    text = text.replace("/opt/ares-stream/daemon.py", str(ROOT / "daemon.py"))
    copy = tmp_path / unit.name  # verify checks the unit type from the file name
    copy.write_text(text)
    return copy


@pytest.mark.parametrize("mode", UNITS)
def test_required_directives(mode: str) -> None:
    """Type=notify, watchdog, restart with a start limit, stop timeout above 30 s, user, state."""
    unit = UNITS[mode]
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert seconds(one(unit, "Service", "WatchdogSec")) == 30
    assert one(unit, "Service", "Restart") == "on-failure"
    assert seconds(one(unit, "Unit", "StartLimitIntervalSec")) == 300
    assert one(unit, "Unit", "StartLimitBurst") == "5"
    assert seconds(one(unit, "Service", "TimeoutStopSec")) > 30  # the daemon's shutdown bound
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    assert one(unit, "Service", "User") == "ares"
    assert one(unit, "Service", "StateDirectory") == f"ares-stream{'-paper' * (mode == 'paper')}"
    assert f"--{mode}" in one(unit, "Service", "ExecStart").split()


def test_keys_only_for_the_live_unit() -> None:
    """Only the live unit reads the keys file; the paper unit cannot even see it."""
    assert values(UNITS["live"], "Service", "EnvironmentFile") == ["-/etc/ares-stream/keys.env"]
    assert values(UNITS["paper"], "Service", "EnvironmentFile") == []
    hidden = one(UNITS["paper"], "Service", "InaccessiblePaths").split()
    assert {"-/etc/ares-stream/keys.env", "-/var/lib/ares-stream"} <= set(hidden)


def test_units_share_their_hardening() -> None:
    """Apart from the per-mode lines, both units carry exactly the same directives."""
    def common(unit: Path) -> list[tuple[str, str, str]]:
        return [(s, k, v) for s, kv in parse(unit).items() for k, v in kv if k not in PER_UNIT]
    assert common(UNITS["live"]) == common(UNITS["paper"])


@needs_analyze
@pytest.mark.parametrize("mode", UNITS)
def test_security_exposure_at_most_2(mode: str) -> None:
    """systemd-analyze security --offline=yes rates each unit's exposure at 2.0 or lower."""
    result = subprocess.run([str(ANALYZE), "security", "--offline=yes", str(UNITS[mode])],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= 2.0


@needs_analyze
@pytest.mark.parametrize("mode", UNITS)
def test_verify_clean(mode: str, tmp_path: Path) -> None:
    """systemd-analyze verify is silent once ExecStart names an interpreter that exists here."""
    result = subprocess.run([str(ANALYZE), "verify", str(runnable_copy(UNITS[mode], tmp_path))],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_analyze
@pytest.mark.skipif(Path(INSTALLED_PYTHON).exists(), reason="ares-stream is installed here")
def test_verify_only_misses_the_installed_interpreter() -> None:
    """On the unit as shipped, verify's one complaint is the absent /opt/ares-stream venv."""
    result = subprocess.run([str(ANALYZE), "verify", str(UNITS["live"])],
                            capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert lines == [f"ares-stream.service: Command {INSTALLED_PYTHON} is not executable: "
                     "No such file or directory"]


MDWE_PROBE = textwrap.dedent("""
    import ctypes, mmap, sys
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context
    if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0):  # PR_SET_MDWE, REFUSE_EXEC_GAIN
        sys.exit(77)
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        sys.exit("W+X mapping was allowed: MDWE is not in force")
    except OSError:
        pass
    import numpy as np, river.linear_model, xgboost, ares_stream.engine
    x = np.random.default_rng(0).random((500, 5))
    booster = xgboost.train({"nthread": 2}, xgboost.DMatrix(x, x[:, 0] > 0.5), 5)
    assert booster.inplace_predict(x[:2]).shape == (2,)
    river.linear_model.LogisticRegression().learn_one({"a": 1.0}, True)
    assert ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda v: v + 1)(41) == 42
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        assert pool.submit(abs, -3).result() == 3
    print("ok")
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_MDWE is Linux-only")
def test_stack_runs_under_memory_deny_write_execute() -> None:
    """numpy, XGBoost, River, ctypes callbacks and a spawn pool work with W+X memory refused."""
    result = subprocess.run([sys.executable, "-c", MDWE_PROBE], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    if result.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3)")
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr[-2000:]



# -- the shard template: ares-stream@K-of-N ----------------------------------------------------

TEMPLATE = ROOT / "systemd" / "ares-stream@.service"


def test_the_shard_template_is_the_paper_unit_per_shard() -> None:
    """Every directive of the paper unit, the same hardening; its own state directory and the
    shard from the instance name; no keys, the live state out of sight."""
    def common(unit: Path) -> list[tuple[str, str, str]]:
        return [(s, k, v) for s, kv in parse(unit).items() for k, v in kv if k not in PER_UNIT]
    assert common(TEMPLATE) == common(UNITS["paper"])
    argv = one(TEMPLATE, "Service", "ExecStart").split()
    assert "--paper" in argv and argv[argv.index("--shard") + 1] == "%i"
    assert one(TEMPLATE, "Service", "StateDirectory") == "ares-stream-shards"
    assert values(TEMPLATE, "Service", "EnvironmentFile") == []
    assert one(TEMPLATE, "Service", "InaccessiblePaths") == one(UNITS["paper"], "Service",
                                                                  "InaccessiblePaths")


@needs_analyze
def test_the_shard_template_verifies_and_keeps_its_exposure(tmp_path: Path) -> None:
    """An instance (``ares-stream@1-of-2``) verifies clean; the exposure stays at 2.0 or lower."""
    instance = runnable_copy(TEMPLATE, tmp_path).rename(tmp_path / "ares-stream@1-of-2.service")
    result = subprocess.run([str(ANALYZE), "verify", str(instance)], capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    result = subprocess.run([str(ANALYZE), "security", "--offline=yes", str(instance)],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match and float(match.group(1)) <= 2.0, result.stdout[-2000:] + result.stderr
