"""How often does the feature drift check fire on stationary data, and how fast on a planted shift?

``python bench/featuredrift.py [SEEDS]`` replays one simulated day per seed twice with the demo
config — once stationary (one volatility regime, one concept), once with the simulator's
volatility switches (x2 at 6 h, x1 at 12 h, x2 at 18 h: a virtual drift) — with the check on every
10 minutes and events off (threshold 1e9, so the reference is the champion the validations pick).
From the stored PSI of every check it prints, per threshold and ``features_drifted``: checks that
would have raised an event per 10k bars on the stationary day, and the delay from each switch to
the first check that would (in bars of 10 s; "-" when none within 6 h).
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from ares_stream.config import load_config, replace_values
from ares_stream.replay import run_replay
from ares_stream.sim.simulator import write_recording

ROOT = Path(__file__).resolve().parents[1]
BAR_NS = 10 * 10**9
THRESHOLDS = (0.1, 0.2, 0.25, 0.3, 0.5)
KS = (1, 2, 3)


def checks(seed: int, stationary: bool,
           tmp: Path) -> tuple[list[tuple[int, list[float]]], list[int]]:
    """(check time, PSI of each feature) per check, and the vol switch times."""
    path = tmp / f"{seed}-{stationary}.gz"
    extra = {"vol_regimes": ((0.0, 1.0),), "concept": ((0.0, 0.8),)} if stationary else {}
    sched = write_recording(path, seconds=86_400, seed=seed, **extra)
    cfg = replace_values(load_config(ROOT / "configs" / "demo.toml"), {"drift": {
        "feature_every": "10m", "feature_window": 500, "psi_threshold": 1e9}})
    db = tmp / f"{seed}-{stationary}.db"
    run_replay([str(path)], cfg, db_path=db)
    by: dict[int, list[float]] = defaultdict(list)
    with sqlite3.connect(db) as conn:
        for ts, psi in conn.execute(
                "select ts_event, psi from feature_drift where psi is not null"):
            by[ts].append(psi)
    switches = [] if stationary else sorted({r.start_ns for r in sched.regimes[1:]})
    return sorted(by.items()), switches


def main(seeds: list[int]) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for seed in seeds:
            calm, _ = checks(seed, True, tmp)
            shifted, switches = checks(seed, False, tmp)
            bars = 8640
            for t in THRESHOLDS:
                for k in KS:
                    fp = sum(sum(p > t for p in ps) >= k for _, ps in calm)
                    delays = []
                    for s in switches:
                        hit = [ts for ts, ps in shifted
                               if s <= ts < s + 6 * 3600 * 10**9 and sum(p > t for p in ps) >= k]
                        delays.append(str((hit[0] - s) // BAR_NS) if hit else "-")
                    print(f"seed={seed} psi>{t} k={k} checks={len(calm)} "
                          f"false_per_10k_bars={fp * 10_000 / bars:.1f} delays_bars={delays}",
                          flush=True)


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [1, 2, 3])
