import sys
from pathlib import Path
from ares_stream.config import load_config, replace_values
from ares_stream.replay import run_replay
from ares_stream.sim.simulator import write_recording
ROOT = Path('/work/wip16')
def one(seed, kind):
    out = Path(__import__('os').environ.get('FD_DB', '/tmp/fd2/db')); out.mkdir(parents=True, exist_ok=True)
    path = out / f"{seed}-{kind}.gz"
    extra = {"stationary": {"vol_regimes": ((0.0, 1.0),), "concept": ((0.0, 0.8),)},
             "vol": {"concept": ((0.0, 0.8),)},
             "concept": {"vol_regimes": ((0.0, 1.0),)}}[kind]
    write_recording(path, seconds=86_400, seed=seed, **extra)
    cfg = replace_values(load_config(ROOT / "configs" / "demo.toml"), {"drift": {
        "feature_every": "10m", "feature_window": 500, "psi_threshold": 1e9}})
    run_replay([str(path)], cfg, db_path=out / f"{seed}-{kind}.db")
    path.unlink()
if __name__ == "__main__":
    one(int(sys.argv[1]), sys.argv[2])
