"""Retraining policies (adwin with a challenger, timer, never) and the drift benchmark's scoring."""

from __future__ import annotations

import argparse
import doctest
import math

import numpy as np
import pytest

from ares_stream.config import Config, replace_values
from ares_stream.errors import ConfigError
from ares_stream.learners.online import OnlineLearner, make_model
from ares_stream.learners.policies import TimerLearner, learner_for, make_learner
from ares_stream.sim.simulator import SimSpec
from bench import drift as bench

NAMES = [f"f{j}" for j in range(14)]
# River's default SGD step: these streams plant strong signals a model must learn within a few
# hundred samples; [learner]'s default step was chosen on real candles (bench/online.py)
FAST = {"lr": 0.01}


def _stream(n: int, seed: int, changes: list[tuple[int, float, float]]) -> tuple[list, list]:
    """iid samples, y = [sign × f0 + sigma × ε > 0]; each (at, sign, sigma) applies from ``at``."""
    rng = np.random.default_rng(seed)
    x, eps = rng.standard_normal((n, 14)), rng.standard_normal(n)
    sign, sigma = np.ones(n), np.zeros(n)
    for at, s, sd in changes:
        sign[at:], sigma[at:] = s, sd
    ys = ((sign * x[:, 0] + sigma * eps) > 0).astype(int).tolist()
    return [dict(zip(NAMES, row, strict=True)) for row in x.tolist()], ys


def _run(learner: OnlineLearner, xs: list, ys: list) -> tuple[list[int], list[int], np.ndarray]:
    """Predict then learn each sample: report indices, estimator identity and loss per sample."""
    reports, ids, losses = [], [], []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        p = learner.predict(x)
        losses.append(-math.log(max(p if y else 1.0 - p, 1e-15)))
        if learner.learn(x, y, p) is not None:
            reports.append(i)
        ids.append(id(learner.estimator))
    return reports, ids, np.array(losses)


def _log_loss(ps: list[float], ys: list[int]) -> float:
    return float(np.mean([-math.log(p if y else 1 - p) for p, y in zip(ps, ys, strict=True)]))


def _changes(ids: list[int]) -> list[int]:
    return [i for i in range(1, len(ids)) if ids[i] != ids[i - 1]]


# --- policies --------------------------------------------------------------------------------


def test_timer_restarts_on_schedule_and_never_reports() -> None:
    """The timer swaps in a fresh model after every 50th learned sample, and nothing else."""
    xs, ys = _stream(160, seed=0, changes=[(0, 1.0, 0.3)])
    timer = make_learner("timer", timer_bars=50, warm_samples=20)
    reports, ids, _ = _run(timer, xs, ys)
    assert isinstance(timer, TimerLearner) and reports == []
    assert _changes(ids) == [49, 99, 149] and timer.n_retrains == 3 and timer.n_drifts == 0


def test_timer_warms_on_its_last_samples() -> None:
    """Restarted after 300 samples on the last 100 (the flipped sign), the timer's model has
    the new sign, while a model that learned all 300 still leans to the old one."""
    xs, ys = _stream(300, seed=1, changes=[(0, 1.0, 0.2), (200, -1.0, 0.2)])
    timer, never = TimerLearner(timer_bars=300, warm_samples=100), make_learner("never")
    _run(timer, xs, ys)
    _run(never, xs, ys)
    assert timer.n_retrains == 1 and timer.predict({"f0": 2.0}) < 0.5 < never.predict({"f0": 2.0})


def test_never_keeps_one_model_through_a_flip() -> None:
    """The never policy reports nothing and keeps its one estimator through a sign flip."""
    xs, ys = _stream(3_000, seed=0, changes=[(0, 1.0, 0.3), (2_000, -1.0, 0.3)])
    never = make_learner("never")
    reports, ids, _ = _run(never, xs, ys)
    assert reports == [] and _changes(ids) == [] and never.n_drifts == never.n_swaps == 0


def test_adwin_reports_at_detection_and_swaps_the_challenger_in_later() -> None:
    """A flip is reported once, soon; the model changes 30 or more samples after the report,
    once the challenger scored better, and then beats the learner left alone."""
    xs, ys = _stream(4_000, seed=0, changes=[(0, 1.0, 0.3), (2_000, -1.0, 0.3)])
    ours, alone = make_learner("adwin"), make_learner("never")
    reports, ids, losses = _run(ours, xs, ys)
    _, _, alone_losses = _run(alone, xs, ys)
    assert len(reports) == 1 and 2_000 <= reports[0] < 2_100
    (swap,) = _changes(ids)
    assert reports[0] + 30 <= swap < reports[0] + 500 and ours.n_swaps == ours.n_drifts == 1
    assert losses[2_100:2_600].mean() < 0.75 * alone_losses[2_100:2_600].mean()


def test_a_challenger_that_does_not_win_is_dropped() -> None:
    """A 20-sample burst of random labels is reported, but the challenger warmed on it never
    beats the mature model once the burst is over: the model is kept."""
    xs, ys = _stream(6_000, seed=0, changes=[(0, 1.0, 0.3), (5_000, 1.0, 100.0), (5_020, 1.0, 0.3)])
    ours = make_learner("adwin", **FAST)
    reports, ids, losses = _run(ours, xs, ys)
    assert reports and 5_000 <= reports[0] < 5_020
    assert _changes(ids) == [] and ours.n_swaps == 0 and losses[5_600:].mean() < 0.3


def test_a_restart_goes_over_a_short_warm_set_again() -> None:
    """A logistic regression restarted on 40 samples is trained as if on ~500 (10 passes):
    its log loss on new samples is well below that of one pass over the same samples."""
    xs, ys = _stream(540, seed=2, changes=[(0, 1.0, 0.1)])
    learner = OnlineLearner(warm_samples=500, delta=None, **FAST)
    assert learner.restart(zip(xs[:40], ys[:40], strict=True)) == 40
    once = make_model("logreg", **FAST)
    for x, y in zip(xs[:40], ys[:40], strict=True):
        once.learn_one(x, y)

    restarted = [learner.predict(x) for x in xs[40:]]
    one_pass = [once.predict_proba_one(x)[1] for x in xs[40:]]
    assert _log_loss(restarted, ys[40:]) < 0.8 * _log_loss(one_pass, ys[40:])


def test_learner_for_follows_the_drift_section() -> None:
    """[drift] policy picks the engine's learner; enabled = false means never."""
    def learner(**drift: object) -> OnlineLearner:
        return learner_for(replace_values(Config(), {"drift": drift}))

    assert learner().delta == Config().drift.delta and type(learner()) is OnlineLearner
    assert learner(policy="timer", timer_bars=7).timer_bars == 7  # type: ignore[attr-defined]
    assert learner(policy="never").delta is None
    assert learner(policy="adwin", enabled=False).delta is None


@pytest.mark.parametrize("drift", [{"policy": "weekly"}, {"timer_bars": 0}])
def test_bad_drift_settings_are_refused(drift: dict[str, object]) -> None:
    """An unknown policy or a timer period below one bar is a config error naming the key."""
    with pytest.raises(ConfigError, match=r"drift\.(policy|timer_bars)"):
        replace_values(Config(), {"drift": drift})


# --- the benchmark ---------------------------------------------------------------------------


def test_bench_scoring_doctests_pass() -> None:
    """The examples in bench/drift.py (delay, false alarms, recovery) hold."""
    result = doctest.testmod(bench)
    assert result.attempted >= 6 and result.failed == 0


def test_delays_and_false_alarms_at_the_window_edges() -> None:
    """A detection exactly ``window`` bars after a drift is a hit, one bar later a false alarm."""
    assert bench.delays([100], [100], 200) == [0]
    assert bench.delays([100], [300], 200) == [200]
    assert bench.delays([100], [301], 200) == [None]
    assert bench.false_alarms([100], [99, 300, 301], 200) == 2


def test_recovery_counts_only_windows_after_the_drift() -> None:
    """The rolling window never reaches back before the drift; flat losses recover at once."""
    flat = [0.5] * 20
    assert bench.recovery(flat, 10, 20, pre=10, roll=4) == 4
    assert bench.recovery([0.5] * 10 + [0.6] * 10, 10, 20, pre=10, roll=4) is None


def test_end_to_end_one_strong_flip_is_detected_without_false_alarm() -> None:
    """1,200 ten-second bars of the simulator, flow's sign flipping at half-time: our policy
    detects it within 200 bars, raises no other alarm, and the timer retrains on schedule."""
    config = bench.bench_config(argparse.Namespace(timer_bars=200, delta=None))
    spec = SimSpec(seed=0, seconds=12_000, concept=((0.0, 0.8), (0.5, -0.8)))
    run = bench.run_stream(spec, config)
    drifts, detections = bench.in_bars(run, run.drifts_ns), bench.in_bars(run, run.detections_ns)
    assert drifts == [600] and run.bars > 1_150
    (delay,) = bench.delays(drifts, detections, bench.WINDOW)
    assert delay is not None and bench.false_alarms(drifts, detections, bench.WINDOW) == 0
    assert run.swaps == 1 and len(run.losses["timer"]) == len(run.sample_ts)
