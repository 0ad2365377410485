"""The clocks: event-time jobs in replay, APScheduler live (a real scheduler, scaled-down time)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from ares_stream.clock import LiveClock, ReplayClock
from tests.conftest import until

# ---------------------------------------------------------------- replay


def recorder(log: list[tuple[str, int]], name: str) -> Callable[[int], None]:
    return lambda now: log.append((name, now))


def test_replay_runs_jobs_at_their_event_times() -> None:
    """A job with a start runs at start, start + interval, ... as event time reaches them."""
    clock, log = ReplayClock(), []
    clock.every("a", 10, recorder(log, "a"), start_ns=100)
    runs = [clock.advance(t) for t in (99, 100, 105, 110, 119, 120)]
    assert runs == [0, 1, 0, 1, 0, 1]
    assert log == [("a", 100), ("a", 110), ("a", 120)]


def test_replay_first_run_one_interval_after_first_event() -> None:
    """Without a start, the first run comes one interval after the first advance()."""
    clock, log = ReplayClock(), []
    clock.every("a", 10, recorder(log, "a"))
    for t in (1000, 1005, 1009, 1010, 1015, 1020):
        clock.advance(t)
    assert log == [("a", 1010), ("a", 1020)]


def test_replay_coalesces_a_jump() -> None:
    """A jump over several periods runs the job once, counts the skipped periods, keeps the grid."""
    clock, log = ReplayClock(), []
    clock.every("a", 10, recorder(log, "a"), start_ns=10)
    clock.advance(10)
    assert clock.advance(57) == 1  # due at 20, 30, 40, 50: one run, three missed
    clock.advance(59)
    clock.advance(60)
    assert log == [("a", 10), ("a", 57), ("a", 60)]
    assert clock.stats["a"] == {"runs": 3, "missed": 3, "failed": 0}


def test_replay_order_is_time_then_registration() -> None:
    """Due jobs run by scheduled time, ties broken by registration order, the same every time."""

    def run() -> list[tuple[str, int]]:
        clock, log = ReplayClock(), []
        clock.every("late", 10, recorder(log, "late"), start_ns=20)
        clock.every("b", 10, recorder(log, "b"), start_ns=10)
        clock.every("a", 10, recorder(log, "a"), start_ns=10)
        for t in (5, 25, 30):
            clock.advance(t)
        return log

    first = run()
    assert first == [("b", 25), ("a", 25), ("late", 25), ("late", 30), ("b", 30), ("a", 30)]
    assert run() == first


def test_replay_time_never_goes_back() -> None:
    """An older event time runs nothing."""
    clock, log = ReplayClock(), []
    clock.every("a", 10, recorder(log, "a"), start_ns=10)
    clock.advance(10)
    assert clock.advance(5) == 0 and clock.advance(10) == 0 and log == [("a", 10)]


def test_replay_failing_job_is_counted_and_clock_continues() -> None:
    """A raising job is counted as failed and neither stops the clock nor the other jobs."""
    clock, log = ReplayClock(), []

    def boom(now: int) -> None:
        raise ValueError("boom")

    clock.every("boom", 10, boom, start_ns=10)
    clock.every("ok", 10, recorder(log, "ok"), start_ns=10)
    assert clock.advance(10) == 2 and clock.advance(20) == 2
    assert clock.stats["boom"] == {"runs": 2, "missed": 0, "failed": 2}
    assert log == [("ok", 10), ("ok", 20)]


# ---------------------------------------------------------------- live

FAST = 0.05  # s: the interval of the live tests


def run_live(setup: Callable[[LiveClock], None], done: Callable[[LiveClock], object],
             **kw: float) -> tuple[LiveClock, float]:
    """Start a LiveClock inside asyncio.run, let it tick until ``done(clock)``, shut it down;
    the clock and the seconds it ran. (``asyncio.run`` returns once the executor's threads have
    ended, so every run that started has finished by then.)"""
    clock = LiveClock(**kw)
    setup(clock)

    async def main() -> float:
        began = time.monotonic()
        await clock.start()
        await until(lambda: done(clock), what="the clock's runs")
        await clock.shutdown()
        return time.monotonic() - began

    return clock, asyncio.run(main())


def test_live_start_needs_a_running_loop() -> None:
    """start() outside of a running event loop raises a clear RuntimeError."""
    coro = LiveClock().start()
    with pytest.raises(RuntimeError, match="running event loop"):
        coro.send(None)
    coro.close()


def test_live_jobs_run_off_the_loop_thread() -> None:
    """Jobs run every interval in the loop's executor, not on the event loop's thread."""
    threads: list[int] = []
    times: list[int] = []

    def job(now: int) -> None:
        threads.append(threading.get_ident())
        times.append(now)

    loop_thread = threading.get_ident()  # asyncio.run drives the loop on this thread
    before = time.time_ns()
    clock, took = run_live(lambda c: c.every("tick", FAST, job), lambda c: len(times) >= 3)
    assert 3 <= len(threads) <= took / FAST + 1  # never more often than the interval
    assert loop_thread not in threads
    assert times == sorted(times) and before <= times[0] and times[-1] <= time.time_ns()
    assert clock.stats["tick"]["runs"] == len(threads) and clock.stats["tick"]["failed"] == 0


def test_live_slow_job_never_overlaps_itself() -> None:
    """A job slower than its interval runs one instance at a time; the skipped runs are counted."""
    running, peak, lock = [0], [0], threading.Lock()

    def slow(now: int) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1

    clock, took = run_live(lambda c: c.every("slow", FAST, slow),
                           lambda c: c.stats["slow"]["runs"] >= 2
                           and c.stats["slow"]["max_instances"] >= 3)
    stats = clock.stats["slow"]
    # one at a time: the runs that started fit end to end into the time the clock ran
    assert peak[0] == 1 and 2 <= stats["runs"] <= took / 0.2 + 1
    assert stats["max_instances"] >= 3 and stats["failed"] == 0


def test_live_timeout_counts_as_failed_and_is_not_overlapped() -> None:
    """A run past timeout_s is failed; its thread is not joined by a new run until it ends."""
    running, peak, lock = [0], [0], threading.Lock()
    release = threading.Event()  # the first run is stuck until the test lets it go

    def stuck(now: int) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(60)
        with lock:
            running[0] -= 1

    def done(c: LiveClock) -> bool:
        stats = c.stats["stuck"]
        if stats["failed"] >= 1 and stats["max_instances"] >= 2:
            release.set()  # timed out and skipped while stuck: now let it end
        return release.is_set() and stats["runs"] >= 2

    clock, _ = run_live(lambda c: c.every("stuck", FAST, stuck), done, timeout_s=0.1)
    stats = clock.stats["stuck"]
    assert stats["failed"] >= 1 and stats["max_instances"] >= 2 and peak[0] == 1


def test_live_raising_job_is_counted_and_the_others_go_on() -> None:
    """A raising job is counted as failed at every run; the clock and other jobs carry on."""
    ok: list[int] = []

    def boom(now: int) -> None:
        raise ValueError("boom")

    def setup(c: LiveClock) -> None:
        c.every("boom", FAST, boom)
        c.every("ok", FAST, ok.append)

    clock, _ = run_live(setup, lambda c: c.stats["boom"]["failed"] >= 3 and len(ok) >= 3)
    boom_stats = clock.stats["boom"]  # a run cut short by shutdown is neither ok nor failed
    assert boom_stats["failed"] >= 3 and boom_stats["failed"] >= boom_stats["runs"] - 1
    assert len(ok) >= 3 and clock.stats["ok"]["failed"] == 0


def test_live_shutdown_stops_further_runs() -> None:
    """After shutdown() no job runs again, even with the loop still going."""
    seen: list[int] = []
    clock = LiveClock()
    clock.every("tick", FAST, seen.append)

    async def main() -> int:
        await clock.start()
        await until(lambda: len(seen) >= 2, what="two runs")
        await clock.shutdown()
        for _ in range(10):  # a run handed to the loop just before shutdown starts now
            await asyncio.sleep(0)
        count = clock.stats["tick"]["runs"]
        await until(lambda: len(seen) == count, what="the runs started to finish")
        await asyncio.sleep(6 * FAST)  # six intervals: no run may come any more
        return count

    count = asyncio.run(main())
    assert count >= 2 and len(seen) == count == clock.stats["tick"]["runs"]


def test_live_job_blocked_past_grace_is_missed() -> None:
    """A run that cannot start within the misfire grace (loop blocked by a job on it) is missed."""
    victim: list[int] = []

    def setup(c: LiveClock) -> None:
        # Registered before start: both fire together, "a_block" (name order) first; it runs on
        # the loop itself and blocks it past the 1 s grace, so "b_victim" starts too late.
        c.every("a_block", 0.1, lambda now: time.sleep(1.1), run_in_executor=False)
        c.every("b_victim", 0.1, victim.append)

    clock, _ = run_live(setup, lambda c: c.stats["b_victim"]["missed"] >= 1, misfire_grace_s=1.0)
    assert clock.stats["b_victim"]["missed"] >= 1
    assert clock.stats["a_block"]["runs"] >= 1


# ---------------------------------------------------------------- replay: the heap


class ScanClock:
    """The reference: the replay clock as it was, scanning every job on every advance."""

    def __init__(self) -> None:
        self.jobs: dict[str, list] = {}  # name -> [interval, func, order, next, anchored]
        self.now: int | None = None
        self.stats: dict[str, dict[str, int]] = {}

    def every(self, name: str, interval: int, func: Callable[[int], None], *,
              start_ns: int | None = None) -> None:
        if start_ns is None and self.now is not None:
            start_ns = self.now + interval
        order = self.jobs[name][2] if name in self.jobs else len(self.jobs)
        self.jobs[name] = [interval, func, order, start_ns or 0, start_ns is not None]
        self.stats.setdefault(name, {"runs": 0, "missed": 0, "failed": 0})

    def advance(self, now: int) -> int:
        if self.now is not None and now < self.now:
            return 0
        self.now = now
        for j in self.jobs.values():
            if not j[4]:
                j[3], j[4] = now + j[0], True
        due = sorted(((n, j) for n, j in self.jobs.items() if j[3] <= now),
                     key=lambda nj: (nj[1][3], nj[1][2]))
        for name, j in due:
            behind = (now - j[3]) // j[0]
            j[3] += (behind + 1) * j[0]
            st = self.stats[name]
            st["runs"], st["missed"] = st["runs"] + 1, st["missed"] + behind
            try:
                j[1](now)
            except Exception:
                st["failed"] += 1
        return len(due)


def play(clock: ScanClock | ReplayClock, script: list[tuple]) -> tuple[list, list, dict]:
    """Run a script of ("every", name, interval, start, fails) and ("advance", now) steps on
    ``clock``; what ran (in order), what each advance returned, the stats."""
    ran: list[tuple[str, int]] = []
    counts = []

    def job(name: str, fails: bool) -> Callable[[int], None]:
        def run(now: int) -> None:
            ran.append((name, now))
            if fails:
                raise ValueError(name)
        return run

    for step in script:
        if step[0] == "every":
            _, name, interval, start, fails = step
            clock.every(name, interval, job(name, fails), start_ns=start)
        else:
            counts.append(clock.advance(step[1]))
    return ran, counts, clock.stats


STEP = st.one_of(
    st.tuples(st.just("every"), st.sampled_from([f"j{i}" for i in range(12)]),
              st.integers(1, 50), st.none() | st.integers(0, 300), st.booleans()),
    st.tuples(st.just("advance"), st.integers(0, 600)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=60))
def test_replay_clock_equals_the_scan_on_any_schedule(script: list[tuple]) -> None:
    """On any schedule of registrations (new, replaced, anchored or not, failing) and advances
    (forwards, repeated, backwards), the heap runs what the scan ran, in its order, with its
    counts and stats."""
    with capture_logs():
        assert play(ReplayClock(), script) == play(ScanClock(), script)


def test_replay_clock_equals_the_scan_with_thousands_of_jobs() -> None:
    """Three thousand jobs (two per symbol, as the batch learner registers them, some added and
    replaced mid-replay) over a thousand random advances: the same runs as the scan."""
    rng = random.Random(21)
    script: list[tuple] = []
    for i in range(3000):
        start = None if i % 3 else rng.randrange(0, 10_000)
        script.append(("every", f"s{i // 2}-{i % 2}", rng.randrange(50, 5_000), start, i % 97 == 0))
    now = 0
    for k in range(1000):
        now += rng.choice((0, 1, 7, 30, 400))
        script.append(("advance", now if k % 50 else now - 5))
        if k % 100 == 0:
            i = rng.randrange(3000)
            script.append(("every", f"s{i // 2}-{i % 2}", rng.randrange(50, 5_000), None, False))
    with capture_logs():
        ran, counts, stats = play(ReplayClock(), script)
        assert (ran, counts, stats) == play(ScanClock(), script)
    assert len(ran) > 10_000  # the schedule really ran jobs
