"""Batch jobs as Ray tasks: a :class:`concurrent.futures.Executor` over a Ray cluster.

The batch learner submits plain functions (:mod:`ares_stream.batch.jobs`) to an executor and
applies each result between frames; with ``[batch] executor = "ray"`` that executor is this one,
so training, validation and the hyperparameter search run on any node of the cluster instead of
the daemon's own worker process. The functions and their arguments (numpy windows, UBJSON
boosters) travel by Ray's serialization; results come back as futures, applied exactly as the
process pool's are — a replay stays deterministic whichever executor ran its jobs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from ares_stream.errors import AresError

__all__ = ["RayExecutor", "RayMissing", "connect"]


class RayMissing(AresError):
    """Ray is not installed (``pip install 'ares-stream[cluster]'``) or not reachable."""


def connect(address: str | None = None, **init: Any) -> Any:
    """The ``ray`` module, connected: to ``address`` (else ``RAY_ADDRESS``, else a local Ray
    started here with ``init``'s options)."""
    try:
        import ray
    except ImportError:
        raise RayMissing("Ray is not installed: pip install 'ares-stream[cluster]' "
                         "(or ray>=2.30)") from None
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, namespace="ares-stream", **init)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RayMissing(f"cannot reach the Ray cluster at {address}: {exc}") from None
    return ray


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


class RayExecutor(Executor):
    """Each :meth:`submit` is one Ray task (``num_cpus`` each); futures as the pool's."""

    def __init__(self, address: str | None = None, *, num_cpus: float = 1.0) -> None:
        self.ray = connect(address)
        self._task = self.ray.remote(num_cpus=num_cpus, max_retries=1)(_call)
        self._running: dict[Future[Any], Any] = {}
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._closed:
            raise RuntimeError("cannot submit after shutdown")
        ref = self._task.remote(fn, *args, **kwargs)
        future: Future[Any] = ref.future()
        self._running[future] = ref
        future.add_done_callback(lambda f: self._running.pop(f, None))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking jobs; ``cancel_futures`` cancels the running tasks, ``wait`` waits for
        the rest. The connection to the cluster stays (others in the process may use it)."""
        self._closed = True
        if cancel_futures:
            for ref in list(self._running.values()):
                self.ray.cancel(ref, force=True)
        if wait:
            for future in list(self._running):
                with contextlib.suppress(Exception):  # cancelled or failed: nothing to wait for
                    future.result()
