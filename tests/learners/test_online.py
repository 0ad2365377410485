"""The online learner: River's prequential loop, River's contracts, our scaler, drift handling."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import checks, evaluate, linear_model, metrics, preprocessing, utils

from ares_stream.config import Config, replace_values
from ares_stream.errors import ConfigError
from ares_stream.features.labels import LabelQueue
from ares_stream.learners.online import (
    MODELS,
    BinnedROCAUC,
    DriftReport,
    FastLogLoss,
    OnlineLearner,
    ShrunkClassifier,
    make_model,
    model_options,
)
from ares_stream.learners.policies import learner_for
from ares_stream.learners.scaler import RunningStandardScaler
from ares_stream.learners.scores import log_losses, prequential_rate

NAMES = [f"f{j}" for j in range(14)]
# River's StandardScaler() | LogisticRegression(): the learner before [learner]'s options existed
RIVER = {"lr": 0.01, "intercept_lr": 0.01, "l2": 0.0, "clip": 0.0, "warmup": 0, "shrink": False}
# River's default SGD step: the drift tests plant strong signals that a learner must pick up within
# a few hundred samples (the default step, chosen on real candles, is slower; bench/online.py)
FAST = {"lr": 0.01}


def _bars(n: int, seed: int, beta: float = 0.3) -> tuple[list[dict[str, float]], list[float]]:
    """A stationary bar series: 14 AR(1) features, next return = 0.1% × (beta × f0 + noise)."""
    rng = np.random.default_rng(seed)
    shocks = rng.standard_normal((n, 14)) * math.sqrt(1 - 0.9**2)
    f = np.zeros((n, 14))
    for t in range(1, n):
        f[t] = 0.9 * f[t - 1] + shocks[t]
    r = np.zeros(n)
    r[1:] = 0.001 * (beta * f[:-1, 0] + rng.standard_normal(n - 1))
    closes = (100.0 * np.exp(np.cumsum(r))).tolist()
    return [dict(zip(NAMES, row, strict=True)) for row in f.tolist()], closes


def _replay(xs: list, closes: list[float], horizon: int, learner: OnlineLearner) -> list:
    """The engine's loop: reveal due labels and learn them, then predict and queue the bar."""
    q, reports = LabelQueue(horizon, threshold=0.0), []
    for t, (x, close) in enumerate(zip(xs, closes, strict=True)):
        for r in q.resolve(close):
            report = learner.learn(r.x, r.label, r.payload)
            if report is not None:
                reports.append(report)
        q.push(x, close, ts_event=t, payload=None if x is None else learner.predict(x))
    return reports


def _flip_stream(n: int, seed: int, at: int, flip: bool, noise: tuple[float, float]):
    """iid samples, y = [s × f0 + σ × ε > 0]; from sample ``at`` the sign or the noise changes."""
    rng = np.random.default_rng(seed)
    x, eps = rng.standard_normal((n, 14)), rng.standard_normal(n)
    after = np.arange(n) >= at
    sign = np.where(after & flip, -1.0, 1.0)
    sigma = np.where(after, noise[1], noise[0])
    ys = ((sign * x[:, 0] + sigma * eps) > 0).astype(int).tolist()
    return [dict(zip(NAMES, row, strict=True)) for row in x.tolist()], ys


def _learn_all(learner: OnlineLearner, xs: list, ys: list) -> tuple[np.ndarray, list]:
    """Predict then learn each sample; return per-sample log losses and (index, report) pairs."""
    losses, reports = [], []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        p = learner.predict(x)
        losses.append(-math.log(max(p if y else 1.0 - p, 1e-15)))
        report = learner.learn(x, y, p)
        if report is not None:
            reports.append((i, report))
    return np.array(losses), reports


# --- River equivalence ---------------------------------------------------------------------


@pytest.mark.parametrize("metric", [metrics.LogLoss, metrics.Accuracy])
def test_prequential_loop_matches_progressive_val_score(metric: type) -> None:
    """LabelQueue + OnlineLearner score exactly what progressive_val_score(delay=5) scores."""
    xs, closes = _bars(3000, seed=3)
    xs = [None if t < 30 or 1000 <= t < 1010 else x for t, x in enumerate(xs)]  # warm-up, hole
    learner = OnlineLearner(horizon=5, delta=None)
    bar_of = {id(x): t for t, x in enumerate(xs) if x is not None}
    q, labelled = LabelQueue(5, threshold=0.0), []
    for t, (x, close) in enumerate(zip(xs, closes, strict=True)):
        for r in q.resolve(close):
            learner.learn(r.x, r.label, r.payload)
            labelled.append((r.x, r.label))
        q.push(x, close, ts_event=t, payload=None if x is None else learner.predict(x))
    score = evaluate.progressive_val_score(  # the learner builds its model with delay=horizon
        labelled, make_model("logreg", delay=5), metric(), moment=lambda x: bar_of[id(x)], delay=5
    )
    ours = learner.metrics()["logloss" if metric is metrics.LogLoss else "accuracy"]
    assert len(labelled) > 2900 and abs(score.get() - ours) <= 1e-12


def test_rolling_metrics_equal_rivers_rolling_metrics() -> None:
    """The rolling values are River's metrics wrapped in utils.Rolling over the same window."""
    rng = np.random.default_rng(0)
    learner = OnlineLearner(rolling_window=300, delta=None)
    refs = {
        "logloss": utils.Rolling(metrics.LogLoss, window_size=300),
        "rocauc": utils.Rolling(metrics.ROCAUC, window_size=300),
        "accuracy": utils.Rolling(metrics.Accuracy, window_size=300),
    }
    for _ in range(1000):
        x = {"a": float(rng.standard_normal())}
        y, p = int(x["a"] + rng.standard_normal() > 0), learner.predict(x)
        learner.learn(x, y, p)
        refs["logloss"].update(y, p)
        refs["rocauc"].update(y, p)
        refs["accuracy"].update(y, p > 0.5)
    got = learner.metrics()
    for name, ref in refs.items():
        assert got[f"{name}_rolling"] == pytest.approx(ref.get(), abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.floats(0.0, 1.0)), min_size=1, max_size=80))
def test_fast_metrics_equal_rivers_with_reverts(pairs: list[tuple[int, float]]) -> None:
    """BinnedROCAUC and FastLogLoss give River's ROCAUC and LogLoss values, reverts included."""
    ours, refs = (BinnedROCAUC(), FastLogLoss()), (metrics.ROCAUC(), metrics.LogLoss())
    for y, p in pairs:
        for m in (*ours, *refs):
            m.update(y, p)
    for y, p in pairs[: len(pairs) // 2]:
        for m in (*ours, *refs):
            m.revert(y, p)
    for mine, ref in zip(ours, refs, strict=True):
        assert mine.get() == pytest.approx(ref.get(), abs=1e-12)


# --- the models ------------------------------------------------------------------------


def test_logreg_pipeline_predicts_as_with_rivers_scaler() -> None:
    """Without clip, warm-up or shrinkage, and with River's SGD steps, make_model("logreg") is
    River's StandardScaler | LogisticRegression, prediction for prediction."""
    xs, closes = _bars(2000, seed=1)
    ours = make_model("logreg", **RIVER)
    ref = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for x, c0, c1 in zip(xs, closes, closes[1:], strict=False):
        y = c1 > c0
        assert abs(ours.predict_proba_one(x)[True] - ref.predict_proba_one(x)[True]) <= 1e-12
        ours.learn_one(x, y)
        ref.learn_one(x, y)


_BUILT: dict[str, Callable[[], Any]] = {
    **{name: partial(make_model, name) for name in MODELS},
    "logreg-delay-10": partial(make_model, "logreg", delay=10),
    "hat-delay-10": partial(make_model, "hat", delay=10),
    "logreg-river": partial(make_model, "logreg", **RIVER),
    "scaler": RunningStandardScaler,
}
_CONTRACTS = [
    (name, check)
    for name, build in _BUILT.items()
    for model in [build()]
    for check in checks.yield_checks(model)
    if check.__name__ not in model._unit_test_skips()
]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(
    ("name", "check"), _CONTRACTS, ids=[f"{n}-{c.__name__}" for n, c in _CONTRACTS]
)
def test_river_contract_checks(name: str, check: Callable[..., None]) -> None:
    """Every estimator we build (shrunk, delayed or River's plain pipeline), and our scaler,
    passes River's own estimator checks."""
    check(_BUILT[name]())


# --- the learner ---------------------------------------------------------------------------


def test_model_names_and_tasks_are_validated() -> None:
    """An unknown model name or a model of the wrong task is refused naming the valid choices."""
    with pytest.raises(ValueError, match="logreg, hat, arf, linreg, hatr, arfr"):
        make_model("xgb")
    with pytest.raises(ValueError, match="logreg, hat, arf"):
        OnlineLearner("linreg")
    with pytest.raises(ValueError, match="task"):
        OnlineLearner(task="ranking")


@pytest.mark.parametrize("name", ["logreg", "hat", "linreg", "hatr"])
def test_predict_is_pure_and_neutral_before_learning(name: str) -> None:
    """Extra predict calls change nothing that follows; a classifier says 0.5 before any label."""
    task = "classification" if name in ("logreg", "hat") else "regression"
    xs, ys = _flip_stream(600, seed=4, at=600, flip=False, noise=(0.5, 0.5))
    quiet, chatty = OnlineLearner(name, task=task), OnlineLearner(name, task=task)
    if task == "classification":
        assert quiet.predict(xs[0]) == 0.5
    for x, y in zip(xs, ys, strict=True):
        for probe in xs[:3]:
            chatty.predict({**probe, "extra": 1.0})
        p = quiet.predict(x)
        assert chatty.predict(x) == p
        quiet.learn(x, y, p)
        chatty.learn(x, y, p)
    assert quiet.metrics() == chatty.metrics()


@pytest.mark.parametrize(("name", "task"), [("logreg", "classification"), ("hatr", "regression")])
def test_learner_pickles_and_resumes_identically(name: str, task: str) -> None:
    """A pickled learner, restored, predicts, scores and resets exactly as the original."""
    xs, ys = _flip_stream(4000, seed=2, at=2000, flip=True, noise=(0.3, 0.3))
    targets = ys if task == "classification" else [y - 0.5 for y in ys]
    learner = OnlineLearner(name, task=task, horizon=2, warm_samples=50, rolling_window=100)
    for x, y in zip(xs[:1500], targets[:1500], strict=True):
        learner.learn(x, y, learner.predict(x))
    twin = pickle.loads(pickle.dumps(learner))
    for x, y in zip(xs[1500:], targets[1500:], strict=True):
        p, q = learner.predict(x), twin.predict(x)
        assert p == q and learner.learn(x, y, p) == twin.learn(x, y, q)
    assert learner.metrics() == twin.metrics() and learner.n_drifts == twin.n_drifts
    assert learner.n_drifts >= (task == "classification")  # the flip is inside the resumed part


# --- bounded, calibrated, shrunk toward the label frequency --------------------------------


def _scored(xs: list, closes: list[float], horizon: int, learner: OnlineLearner,
            threshold: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The engine's loop (see ``_replay``); the labels and the predictions they scored."""
    q, ys, ps = LabelQueue(horizon, threshold=threshold), [], []
    for x, close in zip(xs, closes, strict=True):
        for r in q.resolve(close):
            learner.learn(r.x, r.label, r.payload)
            ys.append(r.label)
            ps.append(r.payload)
        q.push(x, close, ts_event=0, payload=learner.predict(x))
    return np.array(ys, dtype=float), np.array(ps)


def _excess(y: np.ndarray, p: np.ndarray) -> float:
    """Mean log loss of ``p`` minus that of the prequential label frequency on the same rows."""
    return float(log_losses(y, p).mean() - log_losses(y, prequential_rate(y)).mean())


def test_an_extreme_value_after_four_samples_stays_moderate() -> None:
    """Four samples of a feature that barely moved, labels split, then a value a little off:
    River's plain pipeline scales it to thousands of deviations and says p = 1; the learner
    stays near the label frequency (the feature scales to 0 while warming up, then to at most
    5 deviations, and the model shares the prediction with the frequency)."""
    rows = [(1.0, 0), (1.0, 1), (1.0, 0), (1.0001, 1)]
    river, ours = OnlineLearner(delta=None, **RIVER), OnlineLearner(delta=None)
    for learner in (river, ours):
        for v, y in rows:
            learner.learn({"spread": v}, y, learner.predict({"spread": v}))
    assert river.predict({"spread": 1.5}) > 0.9999
    assert 0.3 < ours.predict({"spread": 1.5}) < 0.7
    for v, y in rows * 10:  # warm: the value is 5 deviations, no more
        ours.learn({"spread": v}, y, ours.predict({"spread": v}))
    assert 0.3 < ours.predict({"spread": 1e9}) < 0.7


@pytest.mark.parametrize(("seed", "horizon"), [(0, 10), (1, 10), (2, 10), (3, 1), (4, 1)])
def test_on_noise_the_log_loss_is_within_5_millinats_of_the_constant(
    seed: int, horizon: int
) -> None:
    """20,000 bars of AR(1) features and a random walk they do not predict, labels of the next
    bar or 10 overlapping bars, through the engine's loop: the default learner's prequential
    log loss is within 0.005 nats of the prequential label frequency's on the same rows, where
    River's plain pipeline is more than 0.005 worse (~0.04 with 10-bar labels)."""
    xs, closes = _bars(20_000, seed=seed, beta=0.0)
    ours = _excess(*_scored(xs, closes, horizon, OnlineLearner(horizon=horizon)))
    river = _excess(*_scored(xs, closes, horizon, OnlineLearner(horizon=horizon, **RIVER)))
    assert ours < 0.005 < river


def test_where_the_model_has_signal_the_mixture_follows_it() -> None:
    """Labels [f0 + noise > 0] known 5 samples late: the model's weight goes to 1 and the
    learner's log loss ends far below the label frequency's (it does not just say the prior)."""
    xs, ys = _flip_stream(6_000, seed=5, at=6_000, flip=False, noise=(1.0, 1.0))
    learner = OnlineLearner(horizon=5)
    losses, _ = _learn_all(learner, xs, ys)
    y = np.array(ys, dtype=float)
    constant = log_losses(y, prequential_rate(y))
    assert learner.estimator.weight > 0.99
    assert losses[3_000:].mean() < constant[3_000:].mean() - 0.1


def test_scoring_with_the_label_delay_is_what_shrinks_on_overlapping_labels() -> None:
    """On a random walk with 10-bar labels, scored right after learning the previous
    (overlapping) label the model looks better than the label frequency and keeps its weight;
    scored as it predicted (delay 10) it loses it."""
    xs, closes = _bars(20_000, seed=6, beta=0.0)
    models = {d: make_model("logreg", lr=0.01, delay=d) for d in (1, 10)}
    q = LabelQueue(10, threshold=0.0)
    for x, close in zip(xs, closes, strict=True):
        for r in q.resolve(close):
            for model in models.values():
                model.learn_one(r.x, r.label)
        q.push(x, close, ts_event=0)
    assert models[1].weight > 0.5 and models[10].weight < 0.05


def test_learner_options_reach_the_model() -> None:
    """[learner]'s options reach the engine's learner, and make_model with model_options and
    the label horizon builds the same estimator: identical predictions on the same samples."""
    cfg = replace_values(Config(), {"learner": {"lr": 0.05, "clip": 3.0, "discount": 0.99},
                                    "drift": {"enabled": False}, "labels": {"horizon": 3}})
    engine = learner_for(cfg)
    model = make_model("logreg", seed=cfg.learner.seed, delay=3, **model_options(cfg.learner))
    assert isinstance(model, ShrunkClassifier) and model.delay == 3 and model.discount == 0.99
    assert model.classifier["RunningStandardScaler"].clip == 3.0
    assert model.classifier["LogisticRegression"].optimizer.learning_rate == 0.05
    xs, ys = _flip_stream(500, seed=7, at=500, flip=False, noise=(1.0, 1.0))
    for x, y in zip(xs, ys, strict=True):
        p = engine.predict(x)
        assert p == model.predict_proba_one(x)[True]
        engine.learn(x, y, p)
        model.learn_one(x, y)


def test_bad_options_are_refused() -> None:
    """Options out of range are ValueErrors from make_model, ConfigErrors from the config."""
    for bad in ({"lr": 0.0}, {"discount": 1.5}, {"clip": -1.0}, {"warmup": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            make_model("logreg", **bad)
        with pytest.raises(ConfigError, match=f"learner.*{next(iter(bad))}"):
            replace_values(Config(), {"learner": bad})
    with pytest.raises(ValueError, match="delay"):
        ShrunkClassifier(linear_model.LogisticRegression(), delay=0)


def test_a_learner_pickled_before_the_options_resumes() -> None:
    """A learner pickled before [learner]'s options existed (no ``options``, a plain River
    pipeline whose scaler has no clip or warm-up) loads, predicts as it did, keeps learning,
    and builds its fresh models with the current defaults."""
    xs, ys = _flip_stream(300, seed=8, at=300, flip=False, noise=(0.5, 0.5))
    learner = OnlineLearner(horizon=2, warm_samples=50, **RIVER)
    for x, y in zip(xs[:200], ys[:200], strict=True):
        learner.learn(x, y, learner.predict(x))
    del learner.__dict__["options"]
    scaler = learner.estimator["RunningStandardScaler"]
    del scaler.__dict__["clip"], scaler.__dict__["warmup"]
    twin = pickle.loads(pickle.dumps(learner))
    for x, y in zip(xs[200:250], ys[200:250], strict=True):
        p = learner.predict(x)
        assert twin.predict(x) == p
        learner.learn(x, y, p)
        twin.learn(x, y, p)
    assert twin.restart(zip(xs[250:], ys[250:], strict=True)) == 50
    assert isinstance(twin.estimator, ShrunkClassifier) and twin.estimator.delay == 2


# --- drift -----------------------------------------------------------------------------------


def test_blocks_keep_adwin_quiet_where_per_sample_losses_alarm() -> None:
    """50k stationary samples, 10-bar overlapping labels: blocks of 10 give at most 2 alarms,
    while the same losses fed one by one (block size 1) alarm several times more."""
    xs, closes = _bars(50_010, seed=0)
    blocks, per_sample = OnlineLearner(horizon=10), OnlineLearner(horizon=1)
    _replay(xs, closes, 10, blocks)
    _replay(xs, closes, 10, per_sample)
    assert blocks.n_learned == per_sample.n_learned == 50_000
    block_alarms = blocks.n_drifts + blocks.improvements  # measured: 0 (per sample: 4)
    assert blocks.n_drifts <= 2 and block_alarms <= 2
    assert per_sample.n_drifts + per_sample.improvements >= 3 * max(block_alarms, 1)


def test_planted_flip_is_detected_as_a_rise_and_the_reset_recovers() -> None:
    """When the sign of f0 flips at 10,000: one 'up' drift soon after, a fresh model warmed on
    the post-change samples only, and a loss far below that of the learner left alone."""
    xs, ys = _flip_stream(13_000, seed=0, at=10_000, flip=True, noise=(0.3, 0.3))
    learner, alone = OnlineLearner(horizon=5, **FAST), OnlineLearner(horizon=5, delta=None, **FAST)
    losses, reports = _learn_all(learner, xs, ys)
    alone_losses, _ = _learn_all(alone, xs, ys)
    (i, report), *_ = reports
    assert 10_000 <= i < 10_500 and all(j >= 10_000 for j, _ in reports)
    assert isinstance(report, DriftReport) and report.action == "reset"
    assert report.mean_after > report.mean_before and report.samples_seen == i + 1
    assert abs((i + 1 - report.warmed) - 10_000) <= 50  # the warm set starts at the change
    assert learner.n_drifts == len(reports) and alone.n_drifts == 0
    assert losses[10_000:11_000].mean() < 0.75 * alone_losses[10_000:11_000].mean()
    assert losses[12_000:].mean() < losses[9_000:10_000].mean() + 0.1


def test_an_improvement_is_detected_but_not_reacted_to() -> None:
    """When the label noise drops at 10,000 the loss falls: ADWIN fires, nothing is reset."""
    xs, ys = _flip_stream(13_000, seed=0, at=10_000, flip=False, noise=(2.0, 0.3))
    learner = OnlineLearner(horizon=5)
    losses, reports = _learn_all(learner, xs, ys)
    assert losses[11_000:].mean() < 0.6 * losses[9_000:10_000].mean()
    assert reports == [] and learner.n_drifts == 0 and learner.improvements >= 1


def test_regression_error_rise_resets_the_regressor() -> None:
    """A tree regressor whose target flips sign reports an 'up' drift in normalised-error units
    and is warmed on the samples after the flip."""
    xs, _ = _flip_stream(6_000, seed=1, at=3_000, flip=True, noise=(0.3, 0.3))
    targets = [x["f0"] * (1.0 if i < 3_000 else -1.0) for i, x in enumerate(xs)]
    learner = OnlineLearner("hatr", task="regression", horizon=3)
    reports = [
        r
        for x, y in zip(xs, targets, strict=True)
        if (r := learner.learn(x, y, learner.predict(x)))
    ]
    assert reports and 3_000 < reports[0].samples_seen < 3_500
    assert abs(reports[0].samples_seen - reports[0].warmed - 3_000) <= 30
    assert 0.0 <= reports[0].mean_before < reports[0].mean_after <= 1.0
    assert set(learner.metrics()) == {"mae", "r2", "mae_rolling", "r2_rolling"}


def test_no_detector_when_delta_is_none() -> None:
    """delta=None disables drift handling: the planted flip goes unreported."""
    xs, ys = _flip_stream(12_000, seed=0, at=10_000, flip=True, noise=(0.3, 0.3))
    learner = OnlineLearner(horizon=5, delta=None)
    _, reports = _learn_all(learner, xs, ys)
    assert reports == [] and learner.n_drifts == learner.improvements == 0
