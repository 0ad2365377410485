"""The online learner: a River estimator scored prequentially on delayed labels, watched by ADWIN.

Per resolved sample the order is River's ``progressive_val_score``: the prediction made at bar *t*
(``predict``, pure) is scored against the label once it exists (``learn``: metrics first, then
``learn_one``), then the sample's loss is handed to the drift detector.

Drift handling, and why it is not just ``ADWIN.update(loss)`` (each choice measured with
``bench/drift.py``, tuned on seeds 0-9 and confirmed on 100-109):

- **Bounded loss.** ADWIN's cut bound assumes values in ``[0, 1]`` and pays for the whole range.
  Classification feeds the log loss with the probability given to what happened floored at 10%
  (so capped at ``LOSS_CAP = log(10)``), divided by the cap. A 1% floor (cap ``log(100)``) left
  the usual losses (0.2-1.5 nats) in a third of the range and made ADWIN wait 2-3x longer.
  Regression feeds the absolute error over four times the running mean ``|y|``, capped at 1.
- **Overlapping labels.** With a horizon of H bars, consecutive labels share H - 1 of their H
  future returns, so consecutive losses are strongly autocorrelated while ADWIN assumes independent
  values: fed per sample it alarms over and over on a stationary stream (the tests pin this). The
  detector gets one value per block of H consecutive samples, their mean loss, and tests for a cut
  after every block (``clock=1``; River's default checks every 32nd value, up to 31 bars late).
- **Two-sided.** ADWIN fires when the mean changes either way, and River cuts its window at bucket
  granularity, far from the change. So on a detection we locate the change inside the ring buffer
  of recent losses (``warm_samples`` long) as the split maximising the standardised absolute
  difference of mean loss (CUSUM / binary segmentation; at least 10 samples after it, since ADWIN
  has just confirmed a change that may be that recent), and compare the mean loss after that split
  with ADWIN's window mean before the update. Only when the recent mean is higher did the error
  rise. A fall is counted in ``improvements``; River's wrapper would then empty the window, which
  left the detector blind to a drift right after a fall, so the window restarts from the losses
  ADWIN itself kept.
- **A challenger, not a blind reset.** After a rise a fresh model, warmed on the buffered samples
  after the split (the new regime only), learns alongside the current one; both are scored on
  every sample before learning it, and the challenger takes over once its summed loss since the
  detection is lower (after at least 30 samples and 10 horizons), or is dropped after
  ``warm_samples`` samples. ``learn`` returns a :class:`DriftReport` at the detection. On real
  one-minute BTCUSDT candles, where the loss wanders without a new concept, blind resets cost log
  loss; the challenger keeps the trained model unless the fresh one is better. A new rise while a
  challenger is judged replaces it (the first detection may have been early or false). On a swap
  ADWIN and the buffer restart: the losses to watch are the new model's.
- **Warm start.** A gradient learner goes over a short warm set several times (:meth:`restart`).

The estimator itself (:func:`make_model`, options from ``[learner]`` via :func:`model_options`,
each default measured with ``bench/online.py``) is bounded and calibrated: the scaler clips to
5 running deviations and leaves a feature at 0 for its first 20 values (River's unbounded scaler
turned a value 4 samples in into p = 0.999999), and a :class:`ShrunkClassifier` mixes the model
with the label frequency by their discounted log losses, scored as the model predicted (labels
``horizon`` late). On pure noise River's pipeline was 0.04 nats worse than the constant with
10-bar labels; the shrunk learner is within 0.001. On the real one-minute BTCUSDT candles
(20 bps, 10 bars) it is 0.015 nats better (River's pipeline: 0.006). SGD's step is 0.002: with
0.01 the shrunk learner gains only 0.008 there, with 0.001 no more than with 0.002.

``DriftReport`` means are in loss units: clipped log loss (nats) for classification, the
normalised absolute error for regression.

>>> learner = OnlineLearner("logreg", horizon=1)
>>> x = {"momentum": 1.0}
>>> p = learner.predict(x)
>>> p
0.5
>>> learner.learn(x, 1, p) is None, learner.n_learned, round(learner.metrics()["logloss"], 4)
(True, 1, 0.6931)
>>> learner.predict(x) > 0.5
True
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, cast

import msgspec
import numpy as np
from river import base, drift, forest, linear_model, metrics, optim, tree, utils

from ares_stream.config import LearnerConfig
from ares_stream.learners.rings import RollingPairs, WarmRing
from ares_stream.learners.scaler import RunningStandardScaler
from ares_stream.learners.scores import log_loss_one
from ares_stream.learners.shrink import ShrunkClassifier

__all__ = [
    "LOSS_CAP",
    "MODELS",
    "BinnedROCAUC",
    "DriftReport",
    "FastLogLoss",
    "OnlineLearner",
    "ShrunkClassifier",
    "make_model",
    "model_options",
]

LOSS_CAP = math.log(10.0)  # classification: P(what happened) floored at 10%
_P_FLOOR = 0.1
_WARM_PASSES = 10  # most passes over a short warm set (gradient learners only)
_REPLAYED = frozenset({"logreg", "linreg"})  # SGD learners: a repeated warm set is more epochs
_MIN_AFTER = 10  # fewest samples after a located change (ADWIN has confirmed one)
_MIN_CHALLENGE = 30  # fewest samples (and 10 horizons) a challenger is judged on before a swap
_log, _exp = math.log, math.exp
_REG_SCALE = 4.0  # regression loss: |error| / (4 × mean |y|), capped at 1

_LC = LearnerConfig()  # make_model's option defaults are [learner]'s defaults
MODELS = ("logreg", "hat", "arf", "linreg", "hatr", "arfr")
_CLASSIFIERS = frozenset({"logreg", "hat", "arf"})
_TREES: dict[str, Callable[[int], base.Estimator]] = {
    "hat": lambda seed: tree.HoeffdingAdaptiveTreeClassifier(seed=seed),
    "arf": lambda seed: forest.ARFClassifier(n_models=10, seed=seed),
    "hatr": lambda seed: tree.HoeffdingAdaptiveTreeRegressor(seed=seed),
    "arfr": lambda seed: forest.ARFRegressor(n_models=10, seed=seed),
}


def make_model(
    name: str,
    *,
    seed: int = 0,
    lr: float = _LC.lr,
    intercept_lr: float = _LC.intercept_lr,
    l2: float = _LC.l2,
    clip: float = _LC.clip,
    warmup: int = _LC.warmup,
    shrink: bool = _LC.shrink,
    discount: float = _LC.discount,
    handicap: float = _LC.handicap,
    delay: int = 1,
) -> base.Estimator:
    """Build a fresh River estimator by name (``MODELS``); ``seed`` seeds the stochastic ones.

    The options are ``[learner]``'s (:func:`model_options`) and default to its defaults; a model
    ignores those that do not apply to it. ``lr``, ``intercept_lr``, ``l2``: the SGD of
    ``logreg``; ``clip`` (deviations, 0: unbounded) and ``warmup``: the
    :class:`~ares_stream.learners.scaler.RunningStandardScaler` of ``logreg`` and ``linreg``;
    ``shrink``: a classifier comes wrapped in a :class:`ShrunkClassifier` with ``discount``,
    ``handicap`` and ``delay`` (the label horizon in samples: give it whenever labels arrive that
    late, as :class:`OnlineLearner` does). River's ``StandardScaler() | LogisticRegression()`` is
    ``make_model("logreg", lr=0.01, intercept_lr=0.01, l2=0.0, clip=0.0, warmup=0,
    shrink=False)``, value for value (the tests pin it).

    >>> model = make_model("logreg")
    >>> type(model).__name__, list(model.classifier.steps)
    ('ShrunkClassifier', ['RunningStandardScaler', 'LogisticRegression'])
    >>> type(make_model("hat", shrink=False)).__name__
    'HoeffdingAdaptiveTreeClassifier'
    >>> make_model("svm")
    Traceback (most recent call last):
    ValueError: unknown model 'svm'; valid names: logreg, hat, arf, linreg, hatr, arfr
    >>> make_model("logreg", discount=0.0)
    Traceback (most recent call last):
    ValueError: discount must be in (0, 1], got 0.0
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    _check_options(lr, intercept_lr, l2, clip, warmup, discount)
    if name == "logreg":
        glm = linear_model.LogisticRegression(optim.SGD(lr), l2=l2, intercept_lr=intercept_lr)
        model: base.Estimator = RunningStandardScaler(clip or None, warmup) | glm
    elif name == "linreg":
        model = RunningStandardScaler(clip or None, warmup) | linear_model.LinearRegression()
    else:
        model = _TREES[name](seed)
    if shrink and name in _CLASSIFIERS:
        clf = cast(base.Classifier, model)  # a pipeline ending in a classifier is one
        return ShrunkClassifier(clf, discount=discount, handicap=handicap, delay=delay)
    return model


def _check_options(lr: float, intercept_lr: float, l2: float, clip: float, warmup: int,
                   discount: float) -> None:
    """Raise ValueError naming the first option out of its range."""
    for ok, message in (
        (lr > 0.0, f"lr must be > 0, got {lr}"),
        (intercept_lr >= 0.0, f"intercept_lr must be >= 0, got {intercept_lr}"),
        (l2 >= 0.0, f"l2 must be >= 0, got {l2}"),
        (clip >= 0.0, f"clip must be >= 0 deviations (0: unbounded), got {clip}"),
        (warmup >= 0, f"warmup must be >= 0 observations, got {warmup}"),
        (0.0 < discount <= 1.0, f"discount must be in (0, 1], got {discount}"),
    ):
        if not ok:
            raise ValueError(message)


def model_options(config: LearnerConfig) -> dict[str, Any]:
    """The :func:`make_model` options of a ``[learner]`` section.

    ``make_model(name, seed=seed, delay=horizon, **model_options(config.learner))`` builds the
    engine's estimator (:class:`OnlineLearner` passes ``delay``, the label horizon, itself).

    >>> sorted(model_options(LearnerConfig()))
    ['clip', 'discount', 'handicap', 'intercept_lr', 'l2', 'lr', 'shrink', 'warmup']
    """
    return {
        "lr": config.lr, "intercept_lr": config.intercept_lr, "l2": config.l2,
        "clip": config.clip, "warmup": config.warmup, "shrink": config.shrink,
        "discount": config.discount, "handicap": config.handicap,
    }  # fmt: skip


class DriftReport(msgspec.Struct, frozen=True):
    """ADWIN saw the loss rise; a fresh challenger now competes with the learner (loss units)."""

    mean_before: float  # mean loss of ADWIN's window before the detection
    mean_after: float  # mean loss after the located change
    samples_seen: int  # samples learned when the drift was detected
    action: str = "reset"  # a fresh model warmed on the new regime takes over once it scores better
    warmed: int = 0  # samples the fresh model was warmed on


class BinnedROCAUC(metrics.ROCAUC):
    """River's ``ROCAUC`` (same thresholds, same value) with O(log n) updates instead of O(n).

    River updates one confusion matrix per threshold on every sample. Thresholds are sorted, so a
    prediction is positive at exactly the thresholds below it: a histogram of positives and
    negatives by threshold bin gives every confusion matrix when ``get`` is called.

    >>> m, ref = BinnedROCAUC(), metrics.ROCAUC()
    >>> for y, p in [(0, 0.1), (0, 0.4), (1, 0.35), (1, 0.8)]:
    ...     m.update(y, p)
    ...     ref.update(y, p)
    >>> print(m.get(), ref.get())
    0.875 0.875
    """

    def __init__(self, n_thresholds: int = 10, pos_val: Any = True) -> None:
        super().__init__(n_thresholds=n_thresholds, pos_val=pos_val)
        self.cms = []  # River's per-threshold matrices, replaced by the two histograms
        self._pos = [0.0] * (n_thresholds + 1)  # bin k: predictions above exactly k thresholds
        self._neg = [0.0] * (n_thresholds + 1)

    def update(self, y_true: Any, y_pred: Any, w: float = 1.0) -> None:
        """Count one prediction (a probability, or River's ``{True: p}``) in its threshold bin."""
        p = y_pred.get(True, 0.0) if isinstance(y_pred, dict) else y_pred
        (self._pos if y_true == self.pos_val else self._neg)[bisect_left(self.thresholds, p)] += w

    def revert(self, y_true: Any, y_pred: Any, w: float = 1.0) -> None:
        """Take back a prediction counted by :meth:`update` (it left the rolling window)."""
        p = y_pred.get(True, 0.0) if isinstance(y_pred, dict) else y_pred
        (self._pos if y_true == self.pos_val else self._neg)[bisect_left(self.thresholds, p)] -= w

    def get(self) -> float:
        """The ROC AUC over River's thresholds, from the two histograms (trapezoidal rule)."""
        n_pos, n_neg = sum(self._pos), sum(self._neg)
        tprs, fprs = [], []
        for i in range(self.n_thresholds):  # positive at threshold i <=> bin > i
            tp, fp = sum(self._pos[i + 1 :]), sum(self._neg[i + 1 :])
            tprs.append(tp / n_pos if n_pos else 0.0)
            fprs.append(fp / n_neg if n_neg else 0.0)
        return float(-np.trapezoid(tprs, fprs))


class FastLogLoss(metrics.LogLoss):
    """River's ``LogLoss`` (same clamp to ``[1e-15, 1 - 1e-15]``, same value), ~2x cheaper.

    River clamps through a generic helper; :func:`~ares_stream.learners.scores.log_loss_one`
    halves the cost, and the learner pays it three times per sample (run, rolling update,
    rolling revert).

    >>> m, ref = FastLogLoss(), metrics.LogLoss()
    >>> for y, p in [(1, 0.9), (0, 0.2), (1, 0.0), (0, {True: 0.6, False: 0.4})]:
    ...     m.update(y, p)
    ...     ref.update(y, p)
    >>> m.get() == ref.get()
    True
    """

    def _eval(self, y_true: Any, y_pred: Any) -> float:
        p = y_pred.get(True, 0.0) if isinstance(y_pred, dict) else y_pred
        return log_loss_one(p, y_true)


class _ClassificationScores:
    """Log loss, accuracy at 0.5 and ROC AUC of P(label=1), as one rollable unit."""

    def __init__(self) -> None:
        self.logloss, self.accuracy = FastLogLoss(), metrics.Accuracy()
        self.rocauc = BinnedROCAUC()

    def update(self, y: int, p: float) -> None:
        """Add one label and its predicted P(label = 1) to the three scores."""
        self.logloss.update(y, p)
        self.accuracy.update(y, p > 0.5)
        self.rocauc.update(y, p)

    def revert(self, y: int, p: float) -> None:
        """Remove a sample added by :meth:`update` (it left the rolling window)."""
        self.logloss.revert(y, p)
        self.accuracy.revert(y, p > 0.5)
        self.rocauc.revert(y, p)

    def get(self) -> dict[str, float]:
        """The scores by name: ``logloss``, ``accuracy`` and ``rocauc``."""
        return {
            "logloss": self.logloss.get(),
            "accuracy": self.accuracy.get(),
            "rocauc": self.rocauc.get(),
        }


class _RegressionScores:
    """Mean absolute error and R², as one rollable unit."""

    def __init__(self) -> None:
        self.mae, self.r2 = metrics.MAE(), metrics.R2()

    def update(self, y: float, y_pred: float) -> None:
        """Add one target and its prediction to both scores."""
        self.mae.update(y, y_pred)
        self.r2.update(y, y_pred)

    def revert(self, y: float, y_pred: float) -> None:
        """Remove a sample added by :meth:`update` (it left the rolling window)."""
        self.mae.revert(y, y_pred)
        self.r2.revert(y, y_pred)

    def get(self) -> dict[str, float]:
        """The scores by name: ``mae`` and ``r2``."""
        return {"mae": self.mae.get(), "r2": self.r2.get()}


def _change_point(losses: Sequence[float], min_before: int = 1, min_after: int = 1) -> int:
    """Index where the mean of ``losses`` most significantly shifts, either way (0 if never).

    The split maximising ``|mean(after) - mean(before)| * sqrt(k (n - k) / n)``: the CUSUM /
    binary-segmentation estimate of a single mean shift, with at least ``min_before`` values
    before the split and ``min_after`` after it.

    >>> _change_point([0.1] * 30 + [0.9] * 5, min_before=10, min_after=2)
    30
    >>> _change_point([0.1] * 30 + [0.9] * 5, min_before=10, min_after=10)  # too close to the end
    25
    """
    n, total = len(losses), math.fsum(losses)
    best, best_k = 0.0, 0
    first = max(min_before, 1)
    head = math.fsum(losses[: first - 1])
    for k in range(first, n - max(min_after, 1) + 1):
        head += losses[k - 1]
        stat = abs((total - head) / (n - k) - head / k) * math.sqrt(k * (n - k) / n)
        if stat > best:
            best, best_k = stat, k
    return best_k


class OnlineLearner:
    """A River model learned online on delayed labels, with prequential metrics and ADWIN.

    ``model`` names a :func:`make_model` estimator of the ``task`` ("classification": labels 0/1,
    ``predict`` is P(label=1); "regression": ``predict`` is the forward return), built with
    ``options`` (:func:`model_options`; defaults: ``[learner]``'s). ``horizon`` is
    the label horizon in bars, the size of the loss blocks fed to ADWIN. ``delta`` is ADWIN's
    confidence (``None`` disables drift detection). ``warm_samples`` bounds the ring buffer a fresh
    model is warmed from; ``rolling_window`` is the length of the rolling metrics.

    The warm-start buffer and the rolling window are numpy rings (:mod:`ares_stream.learners.
    rings`): ``learn`` copies ``x``'s values, and a sample read back is equal to the one learned.

    Examples
    --------
    >>> learner = OnlineLearner("linreg", task="regression", delta=None)
    >>> for _ in range(1000):
    ...     _ = learner.learn({"a": 1.0}, 0.5, learner.predict({"a": 1.0}))
    >>> round(learner.predict({"a": 1.0}), 3), sorted(learner.metrics())
    (0.5, ['mae', 'mae_rolling', 'r2', 'r2_rolling'])
    >>> OnlineLearner("hat", task="regression")
    Traceback (most recent call last):
    ValueError: model 'hat' does not do regression; use one of linreg, hatr, arfr
    """

    # class defaults: learners saved before these attributes existed still load and run
    _restarts = _challenged = n_swaps = 0
    _challenger: Any = None
    _edge = 0.0
    options: Mapping[str, Any] = MappingProxyType({})  # older states: fresh models get defaults

    def __init__(
        self,
        model: str = "logreg",
        *,
        task: str = "classification",
        horizon: int = 1,
        delta: float | None = 0.1,
        warm_samples: int = 500,
        rolling_window: int = 1000,
        seed: int = 0,
        **options: Any,
    ) -> None:
        _check_task(model, task)
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.model, self.task, self.horizon, self.delta = model, task, horizon, delta
        self.warm_samples, self.rolling_window, self.seed = warm_samples, rolling_window, seed
        self.options = options
        self._clf = task == "classification"
        self._estimator: Any = self._make(seed)
        scores = _ClassificationScores if self._clf else _RegressionScores
        self._run: Any = scores()
        self._rolling: Any = RollingPairs(scores, rolling_window, int_labels=self._clf)
        self._adwin = None if delta is None else self._new_adwin()
        self._buffer = WarmRing(warm_samples, int_labels=self._clf)
        self._block_sum, self._block_n = 0.0, 0
        self._abs_y = 0.0  # running mean |y|: the regression loss scale
        self.n_learned = self.n_drifts = self.improvements = self.n_swaps = 0
        self._restarts = 0  # fresh models built so far (seeds each one differently)
        self._challenger: Any = None  # a fresh model competing with the estimator, or None
        self._edge, self._challenged = 0.0, 0  # its summed loss advantage; samples compared

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a saved learner; one saved before the numpy rings (a deque of samples, a River
        ``utils.Rolling``) gets the same samples in rings."""
        self.__dict__.update(state)
        clf = state.get("_clf", state.get("task", "classification") == "classification")
        old = state.get("_buffer")
        if isinstance(old, deque):
            ring = self._buffer = WarmRing(old.maxlen or len(old), int_labels=clf)
            for x, y, loss in old:
                ring.append(x, y, loss)
        if isinstance(state.get("_rolling"), utils.Rolling):
            self._rolling = RollingPairs.of(state["_rolling"], int_labels=clf)

    @property
    def version(self) -> int:
        """How many times the estimator in use was replaced (a challenger took over)."""
        return self.n_swaps

    @property
    def estimator(self) -> Any:
        """The current River estimator (replaced when a challenger takes over, or by restart)."""
        return self._estimator

    def predict(self, x: dict[str, float]) -> float:
        """P(label=1) (0.5 before any learning) or the predicted value. Pure."""
        return self._predict(self._estimator, x)

    def _predict(self, estimator: Any, x: dict[str, float]) -> float:
        if self._clf:
            proba = estimator.predict_proba_one(x)
            return proba.get(1, 0.0) if proba else 0.5
        return estimator.predict_one(x)

    def learn(self, x: dict[str, float], y: float, y_pred: float) -> DriftReport | None:
        """Score ``y_pred`` (made on ``x`` ``horizon`` bars ago) against ``y``; learn; watch drift.

        Runs once per resolved sample: the measured hot path of the learner.
        """
        self._run.update(y, y_pred)
        self._rolling.update(y, y_pred)
        challenger = self._challenger
        if challenger is not None:
            self._compete(challenger, x, y)
        self._estimator.learn_one(x, y)
        self.n_learned += 1
        if challenger is not None:
            self._settle()
        if self._adwin is None:
            return None
        if self._clf:  # log loss with P(what happened) floored at 10%, scaled to [0, 1]
            q = y_pred if y else 1.0 - y_pred
            loss = -_log(q if q > _P_FLOOR else _P_FLOOR) / LOSS_CAP
        else:
            loss = self._reg_loss(y, y_pred)
        self._buffer.append(x, y, loss)
        self._block_sum += loss
        self._block_n += 1
        if self._block_n < self.horizon:
            return None
        block = self._block_sum / self._block_n
        self._block_sum, self._block_n = 0.0, 0
        return self._detect(block)

    def metrics(self) -> dict[str, float]:
        """Prequential metrics over the whole run and over the last ``rolling_window`` samples."""
        out: dict[str, float] = self._run.get()
        out.update({f"{k}_rolling": v for k, v in self._rolling.get().items()})
        return out

    def _reg_loss(self, y: float, y_pred: float) -> float:
        """|error| / (4 × running mean |y| before this sample), capped at 1."""
        scale = _REG_SCALE * self._abs_y
        self._abs_y += (abs(y) - self._abs_y) / self.n_learned
        return min(abs(y - y_pred) / scale, 1.0) if scale > 0.0 else 0.0

    def _detect(self, block: float) -> DriftReport | None:
        """Feed one block mean to ADWIN; on a detection tell a rise from a fall."""
        adwin = self._adwin
        assert adwin is not None
        # River's ADWIN wipes its window on the update following a detection.
        fresh = adwin.drift_detected or adwin.width == 0
        before = block if fresh else (adwin.total + block) / (adwin.width + 1)
        adwin.update(block)
        if not adwin.drift_detected:
            return None
        recent = list(self._buffer)
        losses = [s[2] for s in recent]
        h = self.horizon
        split = _change_point(losses, max(2 * h, len(recent) // 10), max(2 * h, _MIN_AFTER))
        after = math.fsum(losses[split:]) / max(len(recent) - split, 1)
        if after <= before:
            self.improvements += 1
            self._reseed(losses[max(len(losses) - int(adwin.width) * h, 0) :])
            return None
        return self._reset(before, after, recent[split:])

    def _new_adwin(self) -> drift.ADWIN:
        """ADWIN testing for a cut after every block (River's default: every 32nd)."""
        return drift.ADWIN(delta=self.delta, clock=1)

    def _reseed(self, kept: list[float]) -> None:
        """After a fall: a window of the block means of ``kept``, the part ADWIN kept."""
        adwin = self._adwin = self._new_adwin()
        h = self.horizon
        for i in range(len(kept) % h, len(kept), h):
            adwin.update(math.fsum(kept[i : i + h]) / h)

    def _reset(self, before: float, after: float, warm: list[Any]) -> DriftReport:
        """Start a challenger warmed on the new-regime samples ``warm`` (replacing any other)."""
        self.n_drifts += 1
        self._challenger = self._fresh((x, y) for x, y, _ in warm)
        self._edge, self._challenged = 0.0, 0
        unit = LOSS_CAP if self._clf else 1.0
        return DriftReport(before * unit, after * unit, self.n_learned, "reset", len(warm))

    def _compete(self, challenger: Any, x: dict[str, float], y: float) -> None:
        """Score the estimator and the challenger on ``x`` before either learns it."""
        self._edge += self._loss(self._estimator, x, y) - self._loss(challenger, x, y)
        self._challenged += 1
        challenger.learn_one(x, y)

    def _settle(self) -> None:
        """Swap the challenger in once it has scored better; drop it if it never does."""
        if self._challenged >= max(_MIN_CHALLENGE, 10 * self.horizon) and self._edge > 0.0:
            self._estimator, self._challenger = self._challenger, None
            self.n_swaps += 1
            if self._adwin is not None:  # the losses to watch are the new estimator's from here
                self._adwin = self._new_adwin()
                self._buffer.clear()
                self._block_sum, self._block_n = 0.0, 0
        elif self._challenged >= self.warm_samples:
            self._challenger = None

    def _loss(self, estimator: Any, x: dict[str, float], y: float) -> float:
        """Log loss (classification) or absolute error of ``estimator`` on one sample."""
        p = self._predict(estimator, x)
        if not self._clf:
            return abs(y - p)
        return log_loss_one(p, y)

    def restart(self, warm: Iterable[tuple[dict[str, float], float]] = ()) -> int:
        """Replace the estimator by a fresh one trained on the ``(x, y)`` pairs of ``warm``.

        A gradient learner (``logreg``, ``linreg``) goes over a short warm set again, up to
        ``_WARM_PASSES`` times, until it has made about ``warm_samples`` updates: a model restarted
        on 50 samples then starts as trained as one restarted on 500 instead of starting from
        scratch. Trees learn each sample once (their split test takes a repeat for new evidence).
        Only the first pass weighs a :class:`ShrunkClassifier`'s mixture: on a repeat the model
        would be scored on a sample it has learned. The metrics, the detector and the counters
        carry on; a pending challenger is dropped. Returns the number of warm samples. Retraining
        policies use it (:mod:`ares_stream.learners.policies`); drift challengers are built the
        same way.
        """
        samples = list(warm)
        self._estimator, self._challenger = self._fresh(samples), None
        return len(samples)

    def _make(self, seed: int) -> Any:
        """A fresh estimator: ``make_model`` with the options, its labels ``horizon`` late."""
        return make_model(self.model, seed=seed, **{"delay": self.horizon, **self.options})

    def _fresh(self, warm: Iterable[tuple[dict[str, float], float]]) -> Any:
        """A new estimator trained on ``warm`` (see :meth:`restart`)."""
        self._restarts += 1
        estimator: Any = self._make(self.seed + self._restarts)
        samples = list(warm)
        for x, y in samples:
            estimator.learn_one(x, y)
        if samples and self.model in _REPLAYED:  # repeats teach the model, not the mixture
            shrunk = isinstance(estimator, ShrunkClassifier)
            inner: Any = estimator.classifier if shrunk else estimator
            for _ in range(min(_WARM_PASSES, -(-self.warm_samples // len(samples))) - 1):
                for x, y in samples:
                    inner.learn_one(x, y)
        return estimator


def _check_task(model: str, task: str) -> None:
    """Raise ValueError unless ``model`` is a known estimator of ``task``."""
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    if model not in MODELS:
        make_model(model)  # raises, listing the valid names
    if (model in _CLASSIFIERS) != (task == "classification"):
        names = [m for m in MODELS if (m in _CLASSIFIERS) == (task == "classification")]
        raise ValueError(f"model {model!r} does not do {task}; use one of {', '.join(names)}")
