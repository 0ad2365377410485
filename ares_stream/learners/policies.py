"""Retraining policies: when the online learner starts again from a fresh model.

Three policies, compared side by side by ``bench/drift.py``; ``[drift] policy`` picks the engine's:

- ``adwin`` (ours): ADWIN watches the learner's loss; when the loss *rose* the learner is replaced
  by a fresh model warmed on the samples after the located change
  (:class:`~ares_stream.learners.online.OnlineLearner` with a ``delta``);
- ``timer``: FreqAI's approach — retrain on a fixed schedule whatever the data do: every
  ``timer_bars`` learned samples (one per labelled bar) the learner is replaced by a fresh model
  warmed on the last ``warm_samples`` samples (:class:`TimerLearner`);
- ``never``: one model for the whole run; it keeps learning online but is never replaced.

Every policy keeps learning online sample by sample; they differ only in when the model restarts.

>>> timer = make_learner("timer", timer_bars=3, warm_samples=2)
>>> for y in [1, 0, 1, 1, 0, 1, 1]:
...     _ = timer.learn({"a": 1.0}, y, timer.predict({"a": 1.0}))
>>> timer.n_retrains, timer.n_drifts, type(make_learner("never")).__name__
(2, 0, 'OnlineLearner')
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ares_stream.config import Config
from ares_stream.learners.online import DriftReport, OnlineLearner, model_options

__all__ = ["POLICIES", "TimerLearner", "learner_for", "make_learner"]

POLICIES = ("adwin", "timer", "never")


class TimerLearner(OnlineLearner):
    """An :class:`OnlineLearner` without a detector, restarted every ``timer_bars`` samples.

    Each restart is a fresh model warmed on the last ``warm_samples`` labelled samples (the
    buffer a FreqAI retrain would fit on). A restart is not a drift: ``learn`` returns ``None``,
    ``n_drifts`` stays 0 and ``n_retrains`` counts the restarts.

    >>> learner = TimerLearner(timer_bars=2, warm_samples=1)
    >>> [learner.learn({"a": 1.0}, 1, 0.5) for _ in range(4)], learner.n_retrains
    ([None, None, None, None], 2)
    """

    def __init__(self, model: str = "logreg", *, timer_bars: int = 200,
                 warm_samples: int = 500, **kwargs: Any) -> None:
        if timer_bars < 1:
            raise ValueError(f"timer_bars must be >= 1, got {timer_bars}")
        super().__init__(model, delta=None, warm_samples=warm_samples, **kwargs)
        self.timer_bars = timer_bars
        self.n_retrains = 0
        self._recent: deque[tuple[dict[str, float], float]] = deque(maxlen=warm_samples)

    @property
    def version(self) -> int:
        """How many times the timer replaced the model."""
        return self.n_retrains

    def learn(self, x: dict[str, float], y: float, y_pred: float) -> DriftReport | None:
        """Score, learn and remember the sample; restart when the timer is due."""
        super().learn(x, y, y_pred)
        self._recent.append((x, y))
        if self.n_learned % self.timer_bars == 0:
            self.n_retrains += 1
            self.restart(self._recent)
        return None


def make_learner(policy: str, model: str = "logreg", *, delta: float = 0.1,
                 timer_bars: int = 200, **kwargs: Any) -> OnlineLearner:
    """A learner following ``policy`` (``POLICIES``); ``kwargs`` go to :class:`OnlineLearner`.

    >>> make_learner("adwin").delta, make_learner("never").delta
    (0.1, None)
    >>> make_learner("weekly")
    Traceback (most recent call last):
    ValueError: unknown policy 'weekly'; valid: adwin, timer, never
    """
    if policy == "adwin":
        return OnlineLearner(model, delta=delta, **kwargs)
    if policy == "timer":
        return TimerLearner(model, timer_bars=timer_bars, **kwargs)
    if policy == "never":
        return OnlineLearner(model, delta=None, **kwargs)
    raise ValueError(f"unknown policy {policy!r}; valid: {', '.join(POLICIES)}")


def learner_for(config: Config) -> OnlineLearner:
    """The engine's learner for one symbol: ``[learner]`` (model, options) and ``[drift]``.

    ``drift.enabled = false`` means ``never``, whatever ``drift.policy`` says.

    >>> from ares_stream.config import replace_values
    >>> cfg = replace_values(Config(), {"drift": {"policy": "timer", "timer_bars": 50}})
    >>> type(learner_for(cfg)).__name__, learner_for(cfg).timer_bars
    ('TimerLearner', 50)
    """
    d, lc = config.drift, config.learner
    return make_learner(
        d.policy if d.enabled else "never", lc.model, delta=d.delta, timer_bars=d.timer_bars,
        task=lc.task, horizon=config.labels.horizon, warm_samples=d.warm_samples,
        rolling_window=lc.rolling_window, seed=lc.seed, **model_options(lc),
    )
