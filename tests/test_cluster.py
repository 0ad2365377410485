"""Past one machine, on Ray — tested on a local Ray started here (``num_cpus=2``): batch jobs as
Ray tasks give the replay the process pool gives; ``ares-stream cluster`` places one actor per
shard, and a shard actor killed is restarted by Ray and its daemon resumes from its checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ares_stream import shards
from ares_stream.config import Config, replace_values
from ares_stream.replay import run_replay
from ares_stream.sim.exchange import Faults, Tape
from ares_stream.sim.simulator import write_recording
from tests.conftest import wait_until
from tests.daemon.test_ingest import exchange_in_thread
from tests.paper import NO_BATCH, ROOT, query, recordings, symbols_in, write_config

ray = pytest.importorskip("ray")

SYMBOLS = ["SIMAUSDT", "SIMBUSDT", "SIMCUSDT", "SIMDUSDT"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray of two CPUs, started for these tests; its address."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="ares-stream",
             configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def test_batch_jobs_as_ray_tasks_replay_as_the_worker_process_does(
        cluster: str, tmp_path: Path) -> None:
    """The same replay with the worker process and with Ray tasks: the same boosters and the
    same decisions (results apply at the same event times whoever computed them)."""
    rec = tmp_path / "sim.gz"
    write_recording(rec, seconds=4 * 3600, seed=3, symbol="SIMUSDT")
    base = replace_values(Config(), {
        "bars": {"interval": "10s"}, "labels": {"horizon": 1, "threshold_bps": 2.0},
        "batch": {"min_rows": 300, "update_rows": 300, "validate_every": "30m",
                  "validate_rows": 300, "folds": 3, "bootstrap": 200, "rounds_refit": 20,
                  "max_trees": 60}})
    out = {}
    for executor in ("process", "ray"):
        cfg = replace_values(base, {"batch": {"executor": executor, "ray_address": cluster}})
        db = tmp_path / f"{executor}.db"
        run_replay([rec], cfg, db_path=db)
        out[executor] = (
            query(db, "select symbol, version, how, n_trees, train_start, train_end, rows "
                      "from models order by id"),
            query(db, "select ts_event, challenger, promoted, challenger_loss, reason "
                      "from validations order by id"))
    assert out["process"][0], "no booster was trained"
    assert out["ray"] == out["process"]


SHARDS = NO_BATCH + """
[store]
dir = "{tmp}"
"""


def test_the_cluster_places_a_shard_per_actor_and_a_killed_one_resumes(
        cluster: str, tmp_path: Path) -> None:
    paths = recordings(tmp_path, SYMBOLS, seconds=900, seed=40)
    config = write_config(tmp_path, SHARDS.format(tmp=tmp_path))
    dbs = [tmp_path / f"paper-shard{k}of2.db" for k in (1, 2)]
    want = [set(shards.select(SYMBOLS, shards.Shard(k, 2))) for k in (1, 2)]
    with exchange_in_thread(Tape.from_recording(paths), rate=600, faults=Faults()) as urls:
        runner = subprocess.Popen(
            [sys.executable, "-m", "ares_stream.cli", "cluster", "--shards", "2", "--address",
             cluster, "--workdir", str(tmp_path), "--every", "0.5", "--", "--paper",
             "--symbols", ",".join(SYMBOLS), "--streams", "aggTrade,bookTicker",
             "--ws-url", urls["ws"], "--rest-url", urls["rest"],
             "--config", str(config), "--log-json", "--checkpoint-every", "1"],
            cwd=ROOT, stdout=(tmp_path / "runner.out").open("w"), stderr=subprocess.STDOUT,
            text=True)
        try:
            for db, symbols in zip(dbs, want, strict=True):
                wait_until(lambda db=db, s=symbols: symbols_in(db) == s
                           or runner.poll() is not None, what=f"the symbols of {db.name}",
                           timeout=180)
            assert runner.poll() is None, (tmp_path / "runner.out").read_text()
            actor = ray.get_actor("ares-shard-1of2", namespace="ares-stream")
            before = ray.get(actor.status.remote(), timeout=60)
            wait_until(lambda: query(dbs[0], "select count(*) from checkpoints")[0][0] > 0,
                       what="a checkpoint of shard 1")
            ray.kill(actor, no_restart=False)  # the actor's process dies; Ray restarts it

            def restarted() -> bool:
                try:
                    now = ray.get(ray.get_actor("ares-shard-1of2", namespace="ares-stream")
                                  .status.remote(), timeout=10)
                except Exception:  # still restarting
                    return False
                return bool(now["pid"] != before["pid"] and now["returncode"] is None)
            wait_until(restarted, what="the shard's actor and daemon restarted", timeout=180)
            wait_until(lambda: '"resumed": true' in (tmp_path / "shard-1of2.log").read_text(),
                       what="the restarted daemon resuming", timeout=120)
            newest = query(dbs[0], "select max(ts_event) from predictions")[0][0]
            wait_until(lambda: query(dbs[0], "select max(ts_event) from predictions")[0][0]
                       > newest, what="bars after the restart")
        finally:
            runner.terminate()
            code = runner.wait(timeout=180)
    out = (tmp_path / "runner.out").read_text()
    assert code == 0, out
    pids = {line.split()[4] for line in out.splitlines() if line.startswith("shard 1/2: running")}
    assert "cluster: 2 shards" in out and len(pids) >= 2, out  # restarted: another daemon
    assert [r[0] for r in query(dbs[0], "select count(*) from runs")] == [1]  # resumed, not new
    assert query(dbs[0], "select symbol, ts_event, count(*) from predictions group by 1, 2 "
                         "having count(*) > 1") == []
    starts = [json.loads(line) for line in (tmp_path / "shard-1of2.log").read_text().splitlines()
              if '"daemon_started"' in line]
    assert [s["resumed"] for s in starts] == [False, True]
    assert "Traceback" not in (tmp_path / "shard-1of2.log").read_text()
    assert [r[0] for r in query(dbs[1], "select count(*) from runs")] == [1]
