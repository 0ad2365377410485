"""One replay split over 2 shards: 2 local processes against 2 Ray tasks (a local Ray).

    .venv/bin/python bench/cluster.py [--symbols 8] [--hours 3] [--shards 2] [--runs 2]

The input: ``--symbols`` simulated symbols (``ares-stream simulate``'s simulator, one seed
each) of ``--hours`` each. Each shard replays all the files with ``--shard K/N`` (its symbols
only), with ``configs/quick.toml``'s batch learning:

- **processes**: ``ares-stream replay … --shard K/N`` as N processes at once;
- **Ray**: N Ray tasks at once on a local Ray (``num_cpus`` = N), each calling the same
  ``run_replay`` with ``feed.shard = K/N``. Ray's start is timed apart.

Printed: wall time of each way per run (the two alternate, so the machine's drift hits both),
the Ray/processes ratio of the medians, and whether each shard's predictions are identical
row for row both ways.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ares_stream.config import load_config, replace_values  # noqa: E402
from ares_stream.replay import run_replay  # noqa: E402
from ares_stream.sim.simulator import write_recording  # noqa: E402

QUICK = ROOT / "configs" / "quick.toml"


def replay_shard(paths: list[str], shard: str, db: str) -> float:
    """One shard's replay in this process; its wall seconds."""
    cfg = replace_values(load_config(QUICK), {"feed": {"shard": shard},
                                              "bars": {"interval": "1s"}})
    t = time.perf_counter()
    run_replay(paths, cfg, db_path=db)
    return time.perf_counter() - t


def rows(db: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT symbol, ts_event, model, proba, value, label FROM predictions"
                            " ORDER BY symbol, ts_event").fetchall()


def by_processes(paths: list[str], n: int, out: Path) -> float:
    t = time.perf_counter()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "ares_stream.cli", "replay", *paths, "--shard", f"{k}/{n}",
         "--db", str(out / f"proc-{k}.db"), "--interval", "1s", "--config", str(QUICK),
         "--quiet", "--no-report"], cwd=ROOT, stdout=subprocess.DEVNULL)
        for k in range(1, n + 1)]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"a replay process failed: exit codes {codes}")
    return time.perf_counter() - t


def by_ray(ray: Any, paths: list[str], n: int, out: Path) -> float:
    task = ray.remote(num_cpus=1)(replay_shard)
    t = time.perf_counter()
    ray.get([task.remote(paths, f"{k}/{n}", str(out / f"ray-{k}.db")) for k in range(1, n + 1)])
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=8)
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    import ray

    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    paths = []
    for i in range(args.symbols):
        path = tmp / f"SIM{i:02d}USDT.gz"
        write_recording(path, seconds=int(args.hours * 3600), seed=100 + i,
                        symbol=f"SIM{i:02d}USDT")
        paths.append(str(path))
    t = time.perf_counter()
    ray.init(num_cpus=args.shards, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    ray_start = time.perf_counter() - t
    walls: dict[str, list[float]] = {"processes": [], "ray": []}
    identical: list[bool] = []
    counts: list[int] = []
    for r in range(args.runs):
        out = tmp / f"run{r}"
        out.mkdir()
        order = ("processes", "ray") if r % 2 == 0 else ("ray", "processes")
        for way in order:
            walls[way].append(by_processes(paths, args.shards, out) if way == "processes"
                              else by_ray(ray, paths, args.shards, out))
        counts = [len(rows(out / f"ray-{k}.db")) for k in range(1, args.shards + 1)]
        identical.append(all(rows(out / f"proc-{k}.db") == rows(out / f"ray-{k}.db")
                             for k in range(1, args.shards + 1)) and sum(counts) > 0)
    ray.shutdown()
    frames = sum(1 for p in paths for _ in __import__("gzip").open(p, "rt"))
    print(f"{args.symbols} symbols x {args.hours:g} h ({frames:,} frames), {args.shards} "
          f"shards (predictions per shard: {counts}), 1 s bars, configs/quick.toml; local Ray "
          f"started in {ray_start:.1f} s")
    print()
    print("| way | runs | wall s (each) | median | frames/s |")
    print("|---|---|---|---|---|")
    for way, w in walls.items():
        med = statistics.median(w)
        print(f"| {way} | {len(w)} | {', '.join(f'{x:.1f}' for x in w)} | {med:.1f} | "
              f"{frames / med:,.0f} |")
    ratio = statistics.median(walls["ray"]) / statistics.median(walls["processes"])
    print(f"\nRay / processes (median wall): {ratio:.2f}; predictions identical per shard in "
          f"every run: {all(identical)}")


if __name__ == "__main__":
    main()
