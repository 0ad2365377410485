"""``ares-stream cluster``: N shards as Ray actors, supervised until Ctrl-C.

    ares-stream cluster --shards 4 [--address HOST:PORT] -- --paper --config shards.toml

Everything after ``--`` is the shards' ``run`` arguments (the same for every shard, each
adding its own ``--shard K/N``). Without ``--address`` a local Ray is started with
``--num-cpus``. Each shard is a named actor (``ares-shard-<K>of<N>``, namespace
``ares-stream``) restarted by Ray when it dies (``max_restarts=-1``): its new daemon resumes
from the shard's checkpoint. The runner prints each shard's state when it changes and, every
``--every`` seconds, asks each actor to restart a daemon that failed. SIGINT/SIGTERM stop every
shard cleanly (each daemon checkpoints), then the runner disconnects.

Shards keep their state (the database, recordings) in ``--workdir`` on the node that runs
them: on a cluster of several machines, pin them (``--pin``: each actor stays on the node it
was first placed on, so a restart finds its checkpoint) or give the nodes a shared directory.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from ares_stream.batch.rayexec import connect
from ares_stream.cluster.actor import ShardActor
from ares_stream.errors import AresError

__all__ = ["NAMESPACE", "actor_name", "run_cluster"]

NAMESPACE = "ares-stream"


def actor_name(k: int, n: int) -> str:
    return f"ares-shard-{k}of{n}"


def run_cluster(run_args: list[str], shards: int, *, address: str | None = None,
                num_cpus: int | None = None, workdir: str | Path = ".", every: float = 2.0,
                pin: bool = False, out: TextIO = sys.stdout,
                stop: threading.Event | None = None) -> int:
    """Place the shards, supervise them until ``stop`` (or SIGINT/SIGTERM), stop them; 0."""
    if shards < 1:
        raise AresError(f"--shards must be >= 1, got {shards}")
    if "--live" in run_args:
        raise AresError("cluster shards trade on paper only (--paper): live shards would share "
                        "one account's balance between processes")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ray = connect(address, **({"num_cpus": num_cpus} if num_cpus and not address else {}))
    stop = stop or _signal_stop()
    actors = [_place(ray, run_args, k, shards, str(workdir), pin) for k in range(1, shards + 1)]
    print(f"cluster: {shards} shards on {ray.get_runtime_context().gcs_address}", file=out,
          flush=True)
    seen: dict[str, Any] = {}
    try:
        while not stop.is_set():
            for k, actor in enumerate(actors, 1):
                state = _state(ray, actor)
                if seen.get(actor_name(k, shards)) != state:
                    seen[actor_name(k, shards)] = state
                    print(f"shard {k}/{shards}: {state}", file=out, flush=True)
            stop.wait(every)
    finally:
        for k, actor in enumerate(actors, 1):
            try:
                code = ray.get(actor.stop.remote(), timeout=90)
                print(f"shard {k}/{shards}: stopped (exit {code})", file=out, flush=True)
            except Exception as exc:  # a dead actor, a lost node: nothing left to stop
                print(f"shard {k}/{shards}: not stopped cleanly ({type(exc).__name__})",
                      file=out, flush=True)
            ray.kill(actor, no_restart=True)
    return 0


def _place(ray: Any, run_args: list[str], k: int, n: int, workdir: str, pin: bool) -> Any:
    options: dict[str, Any] = {"name": actor_name(k, n), "namespace": NAMESPACE,
                               "max_restarts": -1, "max_task_retries": 0, "num_cpus": 0.5,
                               "get_if_exists": False}
    if pin:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = ray.get_runtime_context().get_node_id()
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
    cls = ray.remote(ShardActor)
    return cls.options(**options).remote(run_args, f"{k}/{n}", workdir)


def _state(ray: Any, actor: Any) -> str:
    """``running pid P (start S)``, ``exited C``, or ``restarting`` while Ray restarts it."""
    try:
        s = ray.get(actor.check.remote(), timeout=30)
    except Exception as exc:  # the actor died: Ray is restarting it
        return f"restarting ({type(exc).__name__})"
    if s["returncode"] is None:
        return f"running pid {s['pid']} on {s['host']} (start {s['starts']})"
    return f"exited {s['returncode']}"


def _signal_stop() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop
