"""Does mean |SHAP| find the planted signal? And what does explaining a trade cost?

On the simulator the signed order flow of a block predicts the next block's return: the signal
lives in ``flow_imb``. Per seed, a day is simulated and replayed with ``configs/demo.toml``; for
every booster registered after warm-up (the first ``--warmup`` boosters left out) we check that
``flow_imb`` ranks first by mean |SHAP| and by gain share, and count orders with stored reasons.
``--no-flip`` removes the simulator's half-way concept flip (beta +0.8 -> -0.8): across the flip
a booster's window holds both signs, so the signal partly cancels there.

    PYTHONPATH=. python bench/explain.py --seeds 10            # the issue's 10 seeds
    PYTHONPATH=. python bench/explain.py --seeds 2 --no-flip
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from ares_stream import logs
from ares_stream.config import load_config
from ares_stream.replay import run_replay
from ares_stream.sim.harness import load_schedule
from ares_stream.sim.simulator import SimSpec, write_recording

ROOT = Path(__file__).resolve().parents[1]


def one_seed(seed: int, warmup: int, flip: bool, tmp: Path) -> tuple[dict[str, float], list[str]]:
    """Replay a simulated day; how often flow_imb leads, orders explained, and each booster
    whose leader is another feature: its leader, flow_imb's rank and the share of its training
    rows after the concept flip."""
    path = tmp / f"day{seed}.gz"
    concept = SimSpec().concept if flip else ((0.0, 0.8),)
    write_recording(path, seconds=86_400, seed=seed, concept=concept)
    db = tmp / f"run{seed}.db"
    started = time.perf_counter()
    run_replay([str(path)], load_config(ROOT / "configs" / "demo.toml"), db_path=db)
    schedule = load_schedule(Path(f"{path}.schedule.json"))
    flips = list(schedule.concept_drifts_ns) if schedule is not None else []
    with sqlite3.connect(db) as conn:
        ids = [i for (i,) in conn.execute("SELECT id FROM models WHERE kind = 'xgboost' "
                                          "ORDER BY id")][warmup:]
        first = {how: sum(_top(conn, i, how) == "flow_imb" for i in ids)
                 for how in ("shap", "gain")}
        misses = [_miss(conn, i, flips) for i in ids if _top(conn, i, "shap") != "flow_imb"]
        orders = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        explained = conn.execute("SELECT count(DISTINCT client_id) FROM order_reasons"
                                 ).fetchone()[0]
    return {"boosters": len(ids), "shap_first": first["shap"], "gain_first": first["gain"],
            "orders": orders, "explained": explained,
            "seconds": time.perf_counter() - started}, misses


def _miss(conn: sqlite3.Connection, model_id: int, flips: list[int]) -> str:
    """One booster that does not rank flow_imb first: what leads, and where its window lies."""
    ranked = [f for (f,) in conn.execute("SELECT feature FROM model_importance WHERE model_id = ? "
                                         "ORDER BY shap DESC", (model_id,))]
    start, end = conn.execute("SELECT train_start, train_end FROM models WHERE id = ?",
                              (model_id,)).fetchone()
    after = [max(0, end - f) / max(1, end - start) for f in flips if f < end]
    where = f"{after[-1]:.0%} of its window after the flip" if after else "before the flip"
    rank = ranked.index("flow_imb") + 1 if "flow_imb" in ranked else 0
    return f"model {model_id}: {ranked[0]} first, flow_imb #{rank}, {where}"


def _top(conn: sqlite3.Connection, model_id: int, measure: str) -> str:
    row = conn.execute(f"SELECT feature FROM model_importance WHERE model_id = ? "  # fixed names
                       f"ORDER BY {measure} DESC LIMIT 1", (model_id,)).fetchone()
    return "" if row is None else str(row[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2, help="first boosters left out")
    ap.add_argument("--no-flip", action="store_true", help="no concept flip half-way")
    args = ap.parse_args()
    logs.configure(level="error")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            r, misses = one_seed(seed, args.warmup, not args.no_flip, Path(tmp))
            print(f"seed {seed}: flow_imb first by mean |SHAP| in {r['shap_first']}/"
                  f"{r['boosters']} boosters, by gain in {r['gain_first']}/{r['boosters']}; "
                  f"orders with reasons {r['explained']}/{r['orders']} ({r['seconds']:.0f} s)",
                  flush=True)
            for miss in misses:
                print(f"    {miss}", flush=True)


if __name__ == "__main__":
    main()
