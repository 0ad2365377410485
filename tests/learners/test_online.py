"""The online learner: River's prequential loop, River's contracts, our scaler, drift handling."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import checks, evaluate, linear_model, metrics, preprocessing, utils

from ares_stream.features.labels import LabelQueue
from ares_stream.learners.online import (
    MODELS,
    BinnedROCAUC,
    DriftReport,
    FastLogLoss,
    OnlineLearner,
    make_model,
)
from ares_stream.learners.scaler import RunningStandardScaler

NAMES = [f"f{j}" for j in range(14)]


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
    score = evaluate.progressive_val_score(
        labelled, make_model("logreg"), metric(), moment=lambda x: bar_of[id(x)], delay=5
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


# --- the scaler ----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.dictionaries(st.sampled_from("abcd"), st.floats(-1e6, 1e6), min_size=1), min_size=1)
)
def test_scaler_equals_river_standard_scaler(rows: list[dict[str, float]]) -> None:
    """On any stream, features appearing and vanishing, our scaler gives River's values."""
    ours, ref = RunningStandardScaler(), preprocessing.StandardScaler()
    for row in rows:
        ours.learn_one(row)
        ref.learn_one(row)
        probe = {**row, "unseen": 1.0}
        got, want = ours.transform_one(probe), ref.transform_one(probe)
        assert got.keys() == want.keys()
        assert all(abs(got[k] - want[k]) <= 1e-12 * max(1.0, abs(want[k])) for k in want)


def test_logreg_pipeline_predicts_as_with_rivers_scaler() -> None:
    """Swapping River's StandardScaler for ours leaves the logistic regression unchanged."""
    xs, closes = _bars(2000, seed=1)
    ours = make_model("logreg")
    ref = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for x, c0, c1 in zip(xs, closes, closes[1:], strict=False):
        y = c1 > c0
        assert abs(ours.predict_proba_one(x)[True] - ref.predict_proba_one(x)[True]) <= 1e-12
        ours.learn_one(x, y)
        ref.learn_one(x, y)


_CONTRACTS = [
    (name, check)
    for name in (*MODELS, "scaler")
    for model in [RunningStandardScaler() if name == "scaler" else make_model(name)]
    for check in checks.yield_checks(model)
    if check.__name__ not in model._unit_test_skips()
]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(
    ("name", "check"), _CONTRACTS, ids=[f"{n}-{c.__name__}" for n, c in _CONTRACTS]
)
def test_river_contract_checks(name: str, check: Callable[..., None]) -> None:
    """Every estimator we build, and our scaler, passes River's own estimator checks."""
    check(RunningStandardScaler() if name == "scaler" else make_model(name))


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
    learner, alone = OnlineLearner(horizon=5), OnlineLearner(horizon=5, delta=None)
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
