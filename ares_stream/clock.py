"""Clocks for periodic jobs: event time drives them in replay, APScheduler drives them live.

A job is a plain function of the current time in ns (``func(now_ns)``): a booster update, a
re-validation, a checkpoint. Both clocks coalesce (a job that fell several periods behind runs
once), never run a job concurrently with itself, and survive a failing job: it is counted in
``stats`` and logged as ``job_failed`` with its name, and the clock carries on.

>>> clock = ReplayClock()
>>> seen = []
>>> clock.every("checkpoint", 10, seen.append, start_ns=10)
>>> [clock.advance(t) for t in (5, 10, 15, 45)]
[0, 1, 0, 1]
>>> seen, clock.stats["checkpoint"]
([10, 45], {'runs': 2, 'missed': 2, 'failed': 0})
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

__all__ = ["LiveClock", "ReplayClock"]

log = structlog.get_logger(__name__)

_EVENT_KEYS = {EVENT_JOB_MISSED: "missed", EVENT_JOB_ERROR: "failed",
               EVENT_JOB_MAX_INSTANCES: "max_instances"}


def _new_stats() -> dict[str, int]:
    return {"runs": 0, "missed": 0, "failed": 0}


@dataclass
class _ReplayJob:
    name: str
    interval_ns: int
    func: Callable[[int], None]
    order: int
    next_ns: int
    anchored: bool  # False: first run one interval after the first advance()


class ReplayClock:
    """Event time drives the jobs: deterministic.

    ``advance(now_ns)`` runs every job whose next time is ``<= now_ns``, sorted by (next time,
    registration order), each at most once per call and with ``func(now_ns)``. A job registered
    without ``start_ns`` first runs one interval after the first ``advance`` (as the live clock
    first runs one interval after it starts). A jump over several periods runs the job once and
    counts the skipped periods in ``missed``. Time never goes backwards: an older ``now_ns`` runs
    nothing.

    The jobs wait in a heap on (next time, registration order): an ``advance`` costs O(log n) per
    job due and O(1) when none is, however many jobs there are (a job per symbol and kind: two
    thousand with a thousand symbols). A replaced job's entry stays in the heap, stale, and is
    dropped when it surfaces.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, _ReplayJob] = {}
        self._heap: list[tuple[int, int, int, _ReplayJob]] = []  # (next_ns, order, seq, job)
        self._unanchored: list[_ReplayJob] = []  # waiting for the first advance
        self._seq = 0  # ties of stale and live entries never compare jobs
        self._now: int | None = None
        self.stats: dict[str, dict[str, int]] = {}

    def every(
        self, name: str, interval_ns: int, func: Callable[[int], None], *,
        start_ns: int | None = None,
    ) -> None:
        """Run ``func(now_ns)`` every ``interval_ns`` of event time; a name registered again is
        replaced (its stats are kept)."""
        if interval_ns <= 0:
            raise ValueError(f"job {name!r}: interval_ns must be positive, got {interval_ns}")
        if start_ns is None and self._now is not None:
            start_ns = self._now + interval_ns
        order = self._jobs[name].order if name in self._jobs else len(self._jobs)
        job = self._jobs[name] = _ReplayJob(name, interval_ns, func, order, start_ns or 0,
                                            anchored=start_ns is not None)
        if job.anchored:
            self._push(job)
        else:
            self._unanchored.append(job)
        self.stats.setdefault(name, _new_stats())

    def advance(self, now_ns: int) -> int:
        """Run the jobs due at ``now_ns``; returns how many ran."""
        if self._now is not None and now_ns < self._now:
            return 0
        self._now = now_ns
        if self._unanchored:
            self._anchor(now_ns)
        heap = self._heap
        if not heap or heap[0][0] > now_ns:
            return 0
        due = []
        while heap and heap[0][0] <= now_ns:
            job = heapq.heappop(heap)[3]
            if self._live(job):
                due.append(job)
        for job in due:
            self._run(job, now_ns)
            if self._live(job):  # not replaced while it ran
                self._push(job)
        return len(due)

    def _anchor(self, now_ns: int) -> None:
        for job in self._unanchored:
            job.next_ns, job.anchored = now_ns + job.interval_ns, True
            if self._live(job):
                self._push(job)
        self._unanchored.clear()

    def _live(self, job: _ReplayJob) -> bool:
        return self._jobs.get(job.name) is job

    def _push(self, job: _ReplayJob) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (job.next_ns, job.order, self._seq, job))

    def _run(self, job: _ReplayJob, now_ns: int) -> None:
        behind = (now_ns - job.next_ns) // job.interval_ns
        job.next_ns += (behind + 1) * job.interval_ns
        stats = self.stats[job.name]
        stats["runs"] += 1
        stats["missed"] += behind
        try:
            job.func(now_ns)
        except Exception as exc:
            stats["failed"] += 1
            log.exception("job_failed", job=job.name, ts_event=now_ns, error=repr(exc))


class LiveClock:
    """APScheduler's ``AsyncIOScheduler``, started inside the running loop.

    Each run calls ``func(time.time_ns())`` in the loop's default executor (off the event loop)
    under ``asyncio.wait_for(timeout_s)``. A thread cannot be interrupted: a run that times out is
    counted as failed, its thread finishes in the background, and further runs of that job are
    skipped (counted in ``max_instances``) until it has, so a job never overlaps itself.
    ``run_in_executor=False`` runs a quick job on the loop itself, where no timeout can apply.
    ``stats[name]``: ``runs`` (started), ``missed`` (started later than the misfire grace, which
    APScheduler 3 takes in whole seconds: rounded up, at least 1 s), ``failed`` (raised or timed
    out), ``max_instances`` (skipped because the previous run was still going). Jobs registered
    before :meth:`start` share one phase: equal intervals fire together, in name order.
    """

    def __init__(self, *, misfire_grace_s: float = 30.0, timeout_s: float = 300.0) -> None:
        self.misfire_grace_s = misfire_grace_s
        self.timeout_s = timeout_s
        self.stats: dict[str, dict[str, int]] = {}
        self._busy: dict[str, asyncio.Future[Any]] = {}  # each job's last thread
        self._scheduler: AsyncIOScheduler | None = None
        self._pending: list[tuple[str, float, Callable[[], Any]]] = []

    def every(
        self, name: str, interval_s: float, func: Callable[[int], Any], *,
        run_in_executor: bool = True,
    ) -> None:
        """Run ``func(now_ns)`` every ``interval_s`` seconds (first run one interval from now)."""
        if interval_s <= 0:
            raise ValueError(f"job {name!r}: interval_s must be positive, got {interval_s}")
        self.stats.setdefault(name, {**_new_stats(), "max_instances": 0})

        async def job() -> None:
            """What APScheduler calls: one run of ``func``, counted in ``stats``."""
            await self._run(name, func, run_in_executor)

        if self._scheduler is None:
            self._pending.append((name, interval_s, job))
        else:
            self._add(name, interval_s, job)

    def _add(self, name: str, interval_s: float, job: Callable[[], Any],
             anchor: datetime | None = None) -> None:
        assert self._scheduler is not None
        start = (anchor or datetime.now(UTC)) + timedelta(seconds=interval_s)
        self._scheduler.add_job(
            job, IntervalTrigger(seconds=interval_s, start_date=start, timezone=UTC), id=name,
            name=name, coalesce=True, max_instances=1, replace_existing=True,
            # APScheduler 3 takes whole seconds only: round up, at least 1 s.
            misfire_grace_time=max(1, math.ceil(self.misfire_grace_s)),
        )

    async def _run(self, name: str, func: Callable[[int], Any], in_executor: bool) -> None:
        stats = self.stats[name]
        previous = self._busy.get(name)
        if previous is not None and not previous.done():
            stats["max_instances"] += 1
            log.warning("job_max_instances", job=name, reason="a timed-out run is still going")
            return
        stats["runs"] += 1
        try:
            if not in_executor:
                func(time.time_ns())
                return
            fut = asyncio.get_running_loop().run_in_executor(None, func, time.time_ns())
            fut.add_done_callback(_consume_exception)
            self._busy[name] = fut
            await asyncio.wait_for(asyncio.shield(fut), self.timeout_s)
        except TimeoutError:
            stats["failed"] += 1
            log.error("job_failed", job=name, error="timeout", timeout_s=self.timeout_s)
        except asyncio.CancelledError:  # the scheduler shut down under a running job
            log.info("job_cancelled", job=name)
        except Exception as exc:
            stats["failed"] += 1
            log.exception("job_failed", job=name, error=repr(exc))

    def _on_event(self, event: JobEvent) -> None:
        stats = self.stats.get(event.job_id)
        if stats is not None:
            key = _EVENT_KEYS[event.code]
            stats[key] += 1
            log.warning(f"job_{key}", job=event.job_id)

    async def start(self) -> None:
        """Start the scheduler on the running loop (raises RuntimeError outside of one)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("LiveClock.start() must be awaited inside a running event loop") \
                from None
        if self._scheduler is not None:
            raise RuntimeError("LiveClock already started")
        self._scheduler = AsyncIOScheduler(event_loop=loop, timezone=UTC)
        self._scheduler.add_listener(
            self._on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES)
        anchor = datetime.now(UTC)  # jobs registered before start share their phase
        for name, interval_s, job in self._pending:
            self._add(name, interval_s, job, anchor)
        self._pending.clear()
        self._scheduler.start()

    async def shutdown(self) -> None:
        """Stop scheduling; runs in progress are abandoned (their threads finish on their own)."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is None or not scheduler.running:
            return
        scheduler.shutdown(wait=False)  # scheduled onto the loop with call_soon_threadsafe
        while scheduler.running:
            await asyncio.sleep(0)


def _consume_exception(fut: asyncio.Future[Any]) -> None:
    """Retrieve the result of a run abandoned by its timeout, so asyncio does not warn."""
    if not fut.cancelled():
        fut.exception()
